"""A fleet in two accounts, against `runbook emulator --accounts 2`: each account's projects are
asked for only with its own credentials, one report; shards by account run in parallel without
sharing a rate budget, and their merge is the whole fleet once."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from harness import RETRY_STEPS, cli_command, fetch, serve_emulator

SECRET_VARS = ("PROD_AK", "PROD_SK", "DR_TOKEN")


def _runbook(emulator: dict[str, Any], path: Path, *, discover: bool = False) -> Path:
    prod, dr = emulator["accounts"]
    lines = [
        "version: 1",
        "name: two-accounts",
        "rate_limit: 8/s",
        "accounts:",
        "  prod: {ak_env: PROD_AK, sk_env: PROD_SK}",
        "  dr: {token_env: DR_TOKEN}",
        "targets:",
    ]
    for name, account in (("prod", prod), ("dr", dr)):
        projects = account["projects"][:1] if discover and name == "dr" else account["projects"]
        lines += [
            f"  - {{account: {name}, project_id: '{p['project_id']}', region: {p['region']}, "
            f"name: {name}-{i}}}"
            for i, p in enumerate(projects)
        ]
    if discover:
        regions = sorted({p["region"] for p in dr["projects"]})
        lines.append(f"  - {{account: dr, regions: [{', '.join(regions)}]}}")
    path.write_text("\n".join(lines) + "\nsteps:\n" + RETRY_STEPS, encoding="utf-8")
    return path


def _env(emulator: dict[str, Any]) -> dict[str, str]:
    prod, dr = emulator["accounts"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_", "DRS_"))}
    return {**env, "PROD_AK": prod["ak"], "PROD_SK": prod["sk"], "DR_TOKEN": dr["token"]}


def _run(runbook: Path, url: str, env: dict[str, str], out: Path, *extra: str) -> Any:
    return subprocess.Popen(
        [*cli_command("run", str(runbook), "--endpoint", url, "--report-dir", str(out)), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_each_accounts_projects_are_asked_for_with_its_own_credentials_only(
    tmp_path: Path,
) -> None:
    with serve_emulator(
        "--accounts", "2", "--projects", "2", "--jobs", "8", "--seed", "11",
        "--time-scale", "20", "--rate-limit", "10/s",
    ) as emulator:  # fmt: skip
        runbook = _runbook(emulator, tmp_path / "rb.yaml", discover=True)
        env = _env(emulator)
        proc = _run(runbook, emulator["url"], env, tmp_path / "r")
        out, err = proc.communicate(timeout=120)
        stats = fetch(f"{emulator['url']}/_emulator/stats")

    assert proc.returncode in (0, 1), err
    accounts = stats["accounts"]
    prod, dr = emulator["accounts"]
    assert accounts[prod["name"]]["requests"] > 0
    assert accounts[dr["name"]]["requests"] > 0
    # no request of one account ever carried the other's credentials
    assert accounts[prod["name"]]["refused_other_account"] == 0
    assert accounts[dr["name"]]["refused_other_account"] == 0
    assert stats["throttled"] == 0  # each account paced on its own budgets
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    labels = sorted(t["name"] for t in report["targets"])
    dr_names = {p["project_id"]: p["name"] for p in dr["projects"]}
    # dr's first project is named; discovery added the others of its regions, once each
    assert labels == sorted(
        ["prod-0", "prod-1", "dr-0"]
        + [f"dr/{name}" for pid, name in dr_names.items() if pid != dr["projects"][0]["project_id"]]
    ), labels
    assert "discovered" in err
    assert {t["name"].split("-")[0].split("/")[0]: t["account"] for t in report["targets"]} == {
        "prod": "prod",
        "dr": "dr",
    }
    for text in (out, err, *(p.read_text() for p in (tmp_path / "r").iterdir() if p.is_file())):
        for name in SECRET_VARS:
            assert env[name] not in text  # names only, never the secrets


def test_shards_by_account_in_parallel_share_no_budget_and_merge_into_the_whole_fleet(
    tmp_path: Path,
) -> None:
    seed = ("--accounts", "2", "--projects", "2", "--jobs", "8", "--seed", "12")
    fleet = (*seed, "--time-scale", "20", "--rate-limit", "8/s")
    with serve_emulator(*fleet) as whole:
        runbook = _runbook(whole, tmp_path / "rb.yaml")
        one = _run(runbook, whole["url"], _env(whole), tmp_path / "one")
        one.communicate(timeout=120)
    with serve_emulator(*fleet) as emulator:
        env = _env(emulator)
        shards = [
            _run(runbook, emulator["url"], env, tmp_path / f"s{i}", "--shard", f"{i}/2",
                 "--shard-by", "account")
            for i in (1, 2)
        ]  # fmt: skip
        for shard in shards:
            _, err = shard.communicate(timeout=120)
            assert shard.returncode in (0, 1), err
        stats = fetch(f"{emulator['url']}/_emulator/stats")
    assert stats["throttled"] == 0
    for account in stats["accounts"].values():
        assert account["throttled"] == 0
    reports = [json.loads((tmp_path / f"s{i}" / "report.json").read_text()) for i in (1, 2)]
    assert [r["shard"] for r in reports] == ["1/2 by account", "2/2 by account"]
    merge = subprocess.run(
        cli_command("merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--report-dir",
                    str(tmp_path / "all")),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert merge.returncode in (0, 1), merge.stderr
    merged = json.loads((tmp_path / "all" / "report.json").read_text())
    single = json.loads((tmp_path / "one" / "report.json").read_text())
    assert sorted(t["name"] for t in merged["targets"]) == sorted(
        t["name"] for t in single["targets"]
    )
    assert merged["totals"]["selected"] == single["totals"]["selected"]

    def jobs(report: dict[str, Any]) -> set[str]:
        return {job["id"] for t in report["targets"] for job in t["jobs"]}

    assert jobs(merged) == jobs(single)
