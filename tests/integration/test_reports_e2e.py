"""The reports of a real run against the emulator: the JSON contract, every job in every format,
re-rendering without the API, and not one byte of a secret anywhere in the run directory."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from harness import jobs_of, run_cli, runbook_for

from engine.report.contract import validate_report

SECRET_KEYS = ("token", "password", "ak", "sk")


def _run(
    emulator: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    credentials: dict[str, str],
) -> Path:
    for name in ("DRS_AUTH_TOKEN", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "DRS_IAM_USER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    runbook = runbook_for(emulator, tmp_path / "rb.yaml")
    run_dir = tmp_path / "run"
    args = ["run", str(runbook), "--endpoint", emulator["url"], "--report-dir", str(run_dir)]
    code, out, err = run_cli(args, capsys)
    assert code in (0, 1), err
    for name in ("report.json", "report.md", "report.html", "junit.xml"):
        assert str(run_dir / name) in out  # the paths are printed at the end
    return run_dir


@pytest.mark.parametrize("scheme", ["aksk", "iam_password"])
def test_no_secret_reaches_any_byte_of_the_run_directory(
    emulator: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    credentials = (
        {"HUAWEICLOUD_SDK_AK": emulator["ak"], "HUAWEICLOUD_SDK_SK": emulator["sk"]}
        if scheme == "aksk"
        else {
            "DRS_IAM_USER": emulator["user"],
            "DRS_IAM_PASSWORD": emulator["password"],
            "DRS_IAM_DOMAIN": emulator["domain"],
        }
    )
    run_dir = _run(emulator, tmp_path, capsys, monkeypatch, credentials)
    files = sorted(p for p in run_dir.iterdir() if p.is_file())
    assert {p.name for p in files} >= {
        "report.json", "report.md", "report.html", "junit.xml", "journal.jsonl", "runbook.yaml",
    }  # fmt: skip
    secrets = [emulator[key] for key in SECRET_KEYS]
    assert all(len(s) >= 8 for s in secrets)  # long enough not to match by accident
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret[:3]}... in {path.name}"


def test_every_format_holds_every_job_and_the_json_keeps_its_contract(
    emulator: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir = _run(emulator, tmp_path, capsys, monkeypatch, {"DRS_AUTH_TOKEN": emulator["token"]})
    report = json.loads((run_dir / "report.json").read_text())
    assert validate_report(report) == []
    ids = {job["id"] for job in jobs_of(report)}
    assert len(ids) > 10
    markdown = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    assert all(job_id in markdown for job_id in ids)
    assert all(job_id in html for job_id in ids)
    junit = ET.fromstring((run_dir / "junit.xml").read_text())
    cases = junit.findall(".//testcase")
    retried = {j["id"] for j in jobs_of(report) if j["disposition"] != "skipped"}
    named = " ".join(case.get("name", "") for case in cases)
    assert all(job_id in named for job_id in ids)
    failures = [c for c in cases if c.find("failure") is not None]
    not_good = [j for j in jobs_of(report) if j["disposition"] not in {"recovered", "skipped"}]
    assert len(failures) == len(not_good)
    assert retried


def test_report_re_renders_a_past_run_without_the_api_even_from_its_journal(
    emulator: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir = _run(emulator, tmp_path, capsys, monkeypatch, {"DRS_AUTH_TOKEN": emulator["token"]})
    monkeypatch.delenv("DRS_AUTH_TOKEN")
    for fmt, name in (("md", "report.md"), ("junit", "junit.xml"), ("json", "report.json")):
        code, out, _ = run_cli(["report", str(run_dir), "--format", fmt], capsys)
        assert code == 0
        assert out == (run_dir / name).read_text()
    written = json.loads((run_dir / "report.json").read_text())

    # A run killed before its report: the journal alone gives every job, as far as it went.
    (run_dir / "report.json").unlink()
    code, out, _ = run_cli(["report", str(run_dir), "--format", "json"], capsys)
    assert code == 0
    rebuilt = json.loads(out)
    assert validate_report(rebuilt) == []
    assert {j["id"] for j in jobs_of(rebuilt)} == {j["id"] for j in jobs_of(written)}
    by_id = {j["id"]: j for j in jobs_of(written)}
    for job in jobs_of(rebuilt):
        # The journal has every event; only the final touch of the run is not in it.
        assert [e["kind"] for e in job["events"]] == [e["kind"] for e in by_id[job["id"]]["events"]]
    html_path = tmp_path / "again.html"
    code, _, _ = run_cli(["report", str(run_dir), "--format", "html", "-o", str(html_path)], capsys)
    assert code == 0
    assert "<svg" in html_path.read_text()
