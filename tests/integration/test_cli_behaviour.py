"""The `runbook` command's promises: plan is read-only, guard rails, step controls, interrupts,
usage errors without tracebacks, and no secret in any output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import (
    EXAMPLE,
    FINAL,
    REPO,
    RETRY_STEPS,
    RUNBOOKS,
    fast_copy,
    fetch,
    jobs_of,
    run_cli,
    runbook_for,
)

from engine.cli import emulator as cli_emulator
from engine.emulator import EmulatorConfig
from engine.run.journal import read_journal


def test_plan_makes_no_mutating_request_and_lists_what_run_would_send(
    emulator_token: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = emulator_token
    runbook = runbook_for(emulator, tmp_path / "rb.yaml", RETRY_STEPS)

    code, out, _ = run_cli(["plan", str(runbook), "--endpoint", emulator["url"]], capsys)

    stats = fetch(f"{emulator['url']}/_emulator/stats")
    assert code == 0
    assert stats["mutating_requests"] == 0
    assert stats["retry_requests_per_job"] == {}
    assert "no changes made" in out
    assert "retry (drs.batch_retry) would send" in out
    assert "verify (drs.verify_status): not run: a plan makes no changes" in out
    assert "dual-active parent" in out  # the skipped parents are named with the reason

    # The run shows the same plan before its first change, then sends exactly those jobs.
    planned = _would_send(out)
    code, _, err = run_cli(
        ["run", str(runbook), "--endpoint", emulator["url"], "--report-dir", str(tmp_path / "r")],
        capsys,
    )
    assert code in (0, 1)
    assert _would_send(err) == planned
    assert set(fetch(f"{emulator['url']}/_emulator/stats")["retry_requests_per_job"]) == planned


def _would_send(text: str) -> set[str]:
    """The job ids listed under "would send" headings (plan output, or run's before changes)."""
    ids: set[str] = set()
    rows_at: int | None = None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if "would send" in line:
            rows_at = indent + 2
        elif rows_at is not None and indent == rows_at:
            ids.add(line.split()[0])
        else:
            rows_at = None
    assert ids, text
    return ids


def test_a_retry_step_cut_short_is_reconciled_and_nothing_is_sent_twice(
    emulator_token: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = emulator_token
    steps = RETRY_STEPS.replace("    action: drs.batch_retry\n",
                                "    action: drs.batch_retry\n    timeout: 1ms\n")  # fmt: skip
    runbook = runbook_for(emulator, tmp_path / "rb.yaml", steps)

    code, _, _ = run_cli(["run", str(runbook), "--endpoint", emulator["url"], "-q",
                          "--report-dir", str(tmp_path / "r")], capsys)  # fmt: skip

    report = json.loads((tmp_path / "r" / "report.json").read_text())
    per_job = fetch(f"{emulator['url']}/_emulator/stats")["retry_requests_per_job"]
    assert code == 1
    assert set(per_job.values()) <= {1}
    for job in jobs_of(report):
        assert job["disposition"] in FINAL
        if job["id"] in per_job:
            # Reached the server: either reconciled (moved on) or honestly unknown.
            assert job["disposition"] in {"not_verified", "retry_unknown"}, job


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=[p.stem for p in RUNBOOKS])
def test_every_example_runbook_validates_plans_and_runs(
    runbook: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    fast = tmp_path / runbook.name
    text = re.sub(r"(?m)^(\s+timeout:).*$", r"\1 3s", runbook.read_text())
    fast.write_text(re.sub(r"(?m)^(\s+poll_interval:).*$", r"\1 0.2s", text))
    params = ["--param", "name=*"] if "required: true" in text else []
    emulator_args = ["--emulator", "--emulator-time-scale", "0.05", *params]

    assert run_cli(["validate", str(runbook)], capsys)[0] == 0
    assert run_cli(["plan", str(fast), *emulator_args], capsys)[0] == 0
    code, _, _ = run_cli(["run", str(fast), *emulator_args, "--yes",
                          "--report-dir", str(tmp_path / "r")], capsys)  # fmt: skip

    report = json.loads((tmp_path / "r" / "report.json").read_text())
    stats = json.loads((tmp_path / "r" / "emulator-stats.json").read_text())
    assert code == report["exit_code"]
    assert code in {0, 1}
    assert jobs_of(report)
    assert all(j["disposition"] in FINAL for j in jobs_of(report))
    assert set(stats["retry_requests_per_job"].values()) <= {1}


def _signalled_while_verifying(
    tmp_path: Path, *signals: signal.Signals, timeout: float = 60
) -> tuple[int, str, Path]:
    """The demo run on its in-process emulator, sent ``signals`` once it starts verifying;
    (exit code, stderr after the signals, run directory)."""
    reports = tmp_path / "r"
    command = [
        sys.executable, "-c", "from engine.cli import main; main()", "run", str(EXAMPLE),
        "--emulator", "--emulator-time-scale", "20", "--report-dir", str(reports),
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "verify (drs.verify_status) started" in line:
                break
        for signum in signals:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err, reports


def test_interrupt_writes_a_report_with_cancelled_jobs(tmp_path: Path) -> None:
    code, err, reports = _signalled_while_verifying(tmp_path, signal.SIGINT)

    report = json.loads((reports / "report.json").read_text())
    assert code == 130
    assert report["interrupted"] is True
    assert report["exit_code"] == 130
    verify = [s for t in report["targets"] for s in t["steps"] if s["id"] == "verify"]
    assert ("failed", "interrupted while running") in {(s["status"], s["message"]) for s in verify}
    dispositions = {j["disposition"] for j in jobs_of(report)}
    assert "cancelled" in dispositions
    assert dispositions <= FINAL
    assert "Traceback" not in err


def test_a_second_sigterm_exits_at_once_and_leaves_a_readable_journal(tmp_path: Path) -> None:
    # Impatient: the second signal leaves no time to reconcile or write a report.
    code, err, reports = _signalled_while_verifying(
        tmp_path, signal.SIGTERM, signal.SIGTERM, timeout=20
    )

    assert code == 130
    assert "Traceback" not in err
    state = read_journal(reports / "journal.jsonl")  # whole lines only, as after a SIGKILL
    assert not state.finished or state.interrupted
    sent = [
        e for t in state.targets.values() for r in t.records.values() for e in r.events
        if e.kind.value == "retry_acknowledged"
    ]  # fmt: skip
    assert sent  # what the run did before the signals is in the journal


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "ftp://x"], "--endpoint must be an http(s) URL"),
        (["--endpoint", "localhost:9"], "--endpoint must be an http(s) URL"),
        (["--endpoint", "http://u:S3cret@127.0.0.1:9"], "--endpoint must not carry credentials"),
        (["--emulator", "--endpoint", "http://127.0.0.1:9"], "cannot be used together"),
        (["--emulator", "--report-dir", "/proc/no/such"], "cannot write reports to /proc/no/such"),
        (["--emulator", "--param", "novalue"], "--param expects NAME=VALUE, got 'novalue'"),
    ],
)
def test_usage_mistakes_are_one_sentence_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["run", str(EXAMPLE), *args], capsys)
    assert code == 2
    assert err.startswith("runbook: ")
    assert message in err
    assert "S3cret" not in err
    assert "Traceback" not in out + err


def test_an_argument_that_is_not_utf8_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """Python reads such bytes as lone surrogates, which the journal, the reports and the
    notifications cannot write (the journal's header raised TypeError: a traceback). The
    argument is named, never shown: it may be a secret nothing has registered yet."""
    runbook = tmp_path / os.fsdecode(b"rb-\xff.yaml")
    runbook.write_bytes(EXAMPLE.read_bytes())
    run_dir = tmp_path / "run"
    at = len(str(tmp_path)) + len("/rb-") + 1
    hook = b"https://hooks.example.com/services/T000/B000/SuperSecretToken\xff"
    cases: list[tuple[list[str | bytes | Path], str, bytes]] = [
        ([runbook], f"argument 2 is not UTF-8 text (byte 0xff at character {at}", b"rb-"),
        ([EXAMPLE, "--param", b"token=S3cret\xe9"], "the value of --param is not UTF-8 text "
         "(byte 0xe9 at character 13", b"S3cret"),
        ([EXAMPLE, b"--notify=" + hook], "the value of --notify is not UTF-8 text (byte 0xff at "
         "character 71", b"SuperSecretToken"),
    ]  # fmt: skip
    for args, said, secret in cases:
        done = subprocess.run(
            [sys.executable, "-c", "from engine.cli import main; main()", "run", *args,
             "--emulator", "--yes", "-q", "--report-dir", run_dir],
            capture_output=True, timeout=60, check=False,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )  # fmt: skip
        err = done.stderr.decode("utf-8")
        assert done.returncode == 2, err
        assert err == (
            f"runbook: {said}; not shown, as it may be a secret): the journal and reports are "
            "UTF-8, so give it in UTF-8 (rename the file, or set the value again)\n"
        )
        assert secret not in done.stderr
        assert not run_dir.exists()


def test_an_argument_refused_before_parsing_is_said_in_the_log_format_asked_for() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", "run", str(EXAMPLE),
         "--emulator", "--param", b"token=S3cret\xe9", "--log-format", "json"],
        capture_output=True, timeout=60, check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    assert done.returncode == 2
    (record,) = [json.loads(line) for line in done.stderr.decode("utf-8").splitlines()]
    assert record["level"] == "ERROR"
    assert record["message"].startswith("runbook: the value of --param is not UTF-8 text")
    assert b"S3cret" not in done.stderr


def test_unknown_and_mistyped_params_name_the_param(capsys: pytest.CaptureFixture[str]) -> None:
    runbook = REPO / "runbooks" / "retry-by-name.yaml"
    code, _, err = run_cli(
        ["run", str(runbook), "--emulator", "--param", "nme=x", "--param", "batch_size=ten"],
        capsys,
    )
    assert code == 2
    assert "unknown param 'nme'" in err
    assert "param 'batch_size': expected integer, got 'ten' (from --param)" in err
    assert "did you mean 'name'?" in err
    assert "param 'name' is required" in err


def test_no_secret_reaches_any_output_even_at_debug_level(
    emulator: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DRS_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("DRS_IAM_USER", emulator["user"])
    monkeypatch.setenv("DRS_IAM_PASSWORD", emulator["password"])
    monkeypatch.setenv("DRS_IAM_DOMAIN", emulator["domain"])
    runbook = runbook_for(emulator, tmp_path / "rb.yaml", RETRY_STEPS)
    reports = tmp_path / "r"

    code, out, err = run_cli(["-vv", "run", str(runbook), "--endpoint", emulator["url"],
                              "--report-dir", str(reports)], capsys)  # fmt: skip
    # A wrong password: the error names the user, never the password.
    monkeypatch.setenv("DRS_IAM_PASSWORD", "Wr0ng-" + emulator["password"])
    bad_code, bad_out, bad_err = run_cli(["-vv", "run", str(runbook), "--endpoint",
                                          emulator["url"], "--report-dir", str(tmp_path / "b")],
                                         capsys)  # fmt: skip

    assert code == 1
    assert "DEBUG" in err  # debug logging really was on
    outputs = [out, err, bad_out, bad_err]
    outputs += [p.read_text() for d in (reports, tmp_path / "b") for p in d.iterdir()]
    secrets = [emulator["password"], emulator["token"], "Wr0ng-"]
    for text in outputs:
        for secret in secrets:
            assert secret not in text
    assert bad_code == 1
    assert emulator["user"] in bad_out + bad_err


def test_validate_json_format_is_machine_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("batch_size: 100", "batch_size: ten"))
    code, out, _ = run_cli(["validate", "--format", "json", str(bad)], capsys)
    problems = json.loads(out)
    assert code == 2
    assert problems == [
        {
            "path": str(bad),
            "line": problems[0]["line"],
            "col": 19,
            "severity": "error",
            "rule": "schema",
            "message": "step 'retry' (drs.batch_retry): with.batch_size: 'ten' is not of type"
            " 'integer'",
            "hint": None,
        }
    ]
    assert bad.read_text().splitlines()[problems[0]["line"] - 1].endswith("batch_size: ten")


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["schema"], capsys)
    assert code == 0
    assert json.loads(out) == json.loads((REPO / "schemas" / "runbook.schema.json").read_text())


def test_emulator_refuses_a_non_loopback_bind_without_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(["emulator", "--host", "0.0.0.0"], capsys)
    assert code == 2
    assert "not a loopback address" in err


def test_emulator_settings_reach_the_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[EmulatorConfig] = []

    async def serve(config: EmulatorConfig, host: str, port: int) -> None:
        seen.append(config)

    monkeypatch.setattr(cli_emulator, "_serve_emulator", serve)
    faults = "lag_spike_rate=0.2,lag_spike=2m,too_frequent_rate=0.1,busy_rate=0.3"
    args = ["emulator", "--behind-rate", "0.5", "--self-retry-rate", "0", "--pause-delay", "3s",
            "--self-retry-success-rate", "0.25", "--parent-status", "own",
            "--faults", faults]  # fmt: skip
    code, _, _ = run_cli(args, capsys)
    assert code == 0
    (config,) = seen
    assert (config.behind_rate, config.self_retry_rate, config.pause_delay_s) == (0.5, 0.0, 3.0)
    assert (config.self_retry_success_rate, config.parent_status) == (0.25, "own")
    assert (config.faults.lag_spike_rate, config.faults.lag_spike_s) == (0.2, 120.0)
    assert (config.faults.too_frequent_rate, config.faults.busy_rate) == (0.1, 0.3)


def test_emulator_refuses_a_bad_pause_delay(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["emulator", "--pause-delay", "soon"], capsys)
    assert code == 2
    assert "emulator settings" in err


INCIDENT = REPO / "runbooks" / "incident-retry.yaml"


def test_approve_without_a_terminal_or_yes_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["run", str(INCIDENT), "--emulator", "--report-dir",
                              str(tmp_path / "r")], capsys)  # fmt: skip
    assert code == 2
    assert err == (
        "runbook: step 'approve' asks for approval, but there is no terminal to ask on; "
        "run it on a terminal or pass --yes\n"
    )


def test_yes_approves_and_shows_what_was_approved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = fast_copy(INCIDENT, tmp_path / "incident.yaml", timeout="3s")
    code, _, err = run_cli(["run", str(runbook), "--emulator", "--emulator-time-scale", "0.05",
                            "--yes", "--report-dir", str(tmp_path / "r")], capsys)  # fmt: skip
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert code in {0, 1}
    assert "Retry these jobs in production?" in err
    assert "approval 'approve': " in err
    assert "approved (--yes)" in err
    steps = report["targets"][0]["steps"]
    assert [s["id"] for s in steps] == ["select", "approve", "retry", "verify"]
    assert steps[1]["status"] == "succeeded"
    assert steps[2]["status"] == "succeeded"


def test_a_declined_approval_sends_nothing_and_reports_every_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import click

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr(click, "confirm", lambda *args, **kwargs: False)
    code, _, _ = run_cli(["run", str(INCIDENT), "--emulator", "--emulator-time-scale", "0.05",
                          "--report-dir", str(tmp_path / "r")], capsys)  # fmt: skip

    report = json.loads((tmp_path / "r" / "report.json").read_text())
    stats = json.loads((tmp_path / "r" / "emulator-stats.json").read_text())
    assert code == 1
    assert stats["mutating_requests"] == 0
    for target in report["targets"]:
        assert [s["status"] for s in target["steps"]] == ["succeeded", "declined", "skipped",
                                                          "skipped"]  # fmt: skip
    # The runbook's settle left the jobs the service was retrying itself to it (before the
    # approval): those it brought back say so; every other selected job was not sent.
    left = [
        j for j in jobs_of(report) if j["disposition"] not in {"skipped", "recovered_by_service"}
    ]
    assert left
    assert {j["disposition"] for j in left} == {"not_retried"}
    assert all("not approved: declined by " in j["reason"] for j in left)
    # The decline is on record, and the headline says who declined, not "a step failed".
    [decision] = report["approvals"]
    assert (decision["approved"], decision["how"]) == (False, "terminal")
    assert decision["approved_by"]
    assert "a step failed" not in (tmp_path / "r" / "report.md").read_text()
    assert (
        f"declined by {decision['approved_by']} at step 'approve'"
        in (tmp_path / "r" / "report.md").read_text().lower()
    )


NULLS = """\
version: 1
name: nulls
params:
  pattern: {type: string}
  strict: {type: boolean}
targets:
  - project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
    on_failure: continue
    with:
      name: ${{ params.pattern }}
  - id: select_strict
    action: drs.select_jobs
    on_failure: continue
    with:
      retryable_only: ${{ params.strict }}
  - id: guarded
    action: drs.select_jobs
    when: ${{ params.strict }}
"""


def test_a_null_from_an_unset_param_fails_the_step_instead_of_changing_its_meaning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbook = tmp_path / "nulls.yaml"
    runbook.write_text(NULLS)
    code, _, _ = run_cli(["run", str(runbook), "--emulator", "-q", "--report-dir",
                          str(tmp_path / "r")], capsys)  # fmt: skip
    steps = json.loads((tmp_path / "r" / "report.json").read_text())["targets"][0]["steps"]
    assert code == 1
    assert [(s["status"], s["message"]) for s in steps] == [
        ("failed", "name must not be null"),
        ("failed", "retryable_only must not be null"),
        ("failed", "when ${{ params.strict }} gave null, not a boolean"),
    ]
