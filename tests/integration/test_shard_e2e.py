"""A fleet split across runners with --shard I/N, and the shards' reports merged into one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import FINAL, fetch, jobs_of, run_cli, runbook_for

from engine.report.contract import validate_report


def _run_shard(runbook: Path, url: str, shard: str, out: Path, capsys: Any) -> int:
    code, _, _ = run_cli(
        ["run", str(runbook), "--endpoint", url, "--shard", shard, "--report-dir", str(out), "-q"],
        capsys,
    )
    return code


def test_two_shards_take_each_target_once_and_merge_into_one_report(
    emulator_token: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = emulator_token["url"]
    runbook = runbook_for(emulator_token, tmp_path / "rb.yaml")
    projects = [p["project_id"] for p in emulator_token["projects"]]

    codes = [_run_shard(runbook, url, f"{i}/2", tmp_path / f"s{i}", capsys) for i in (1, 2)]
    shards = [json.loads((tmp_path / f"s{i}" / "report.json").read_text()) for i in (1, 2)]
    # Shard 2's report is gone: merge reads its journal instead (a runner killed before the end).
    (tmp_path / "s2" / "report.json").unlink()

    code, out, err = run_cli(
        ["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--report-dir", str(tmp_path / "m")],
        capsys,
    )  # fmt: skip
    assert (tmp_path / "m" / "report.json").is_file(), err
    merged = json.loads((tmp_path / "m" / "report.json").read_text())

    assert [s["shard"] for s in shards] == ["1/2", "2/2"]
    assert [[t["project_id"] for t in s["targets"]] for s in shards] == [[p] for p in projects]
    assert validate_report(merged) == []
    assert [t["project_id"] for t in merged["targets"]] == projects
    assert merged["merged_from"] == [s["run_id"] for s in shards]
    assert {j["id"] for j in jobs_of(merged)} == {j["id"] for s in shards for j in jobs_of(s)}
    assert {j["disposition"] for j in jobs_of(merged)} <= FINAL
    assert merged["totals"]["jobs"] == sum(s["totals"]["jobs"] for s in shards)
    assert code == max(codes) == merged["exit_code"]
    assert "need a human" in out or merged["exit_code"] == 0
    assert (tmp_path / "m" / "junit.xml").is_file()
    # One retry request per retried job across both shards: no target ran twice.
    assert set(fetch(f"{url}/_emulator/stats")["retry_requests_per_job"].values()) == {1}


def test_a_shard_with_no_target_or_a_malformed_shard_is_a_usage_error(
    emulator_token: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = runbook_for(emulator_token, tmp_path / "rb.yaml")
    url = emulator_token["url"]
    for shard, message in (
        ("3/3", f"--shard 3/3 takes no target: {runbook} has 2, so N can be at most 2"),
        ("3/2", "--shard must be I/N with 1 <= I <= N, such as 1/4; got '3/2'"),
    ):
        code, out, err = run_cli(
            ["plan", str(runbook), "--endpoint", url, "--shard", shard], capsys
        )
        assert code == 2
        assert message in err
        assert "Traceback" not in out + err


def test_merge_refuses_a_shard_given_twice(
    emulator_token: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = runbook_for(emulator_token, tmp_path / "rb.yaml")
    _run_shard(runbook, emulator_token["url"], "1/2", tmp_path / "s1", capsys)
    code, _, err = run_cli(["merge", str(tmp_path / "s1"), str(tmp_path / "s1")], capsys)
    assert code == 2
    assert "are both shard 1/2" in err
