"""JSON log lines of real runs: every line of stderr parses, each request's line carries its
request id, route and status with the run, target and step, progress lines are records with
their fields, and every record of a run names it; text lines keep their times."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import EXAMPLE, REPO, cli_command, fast_copy, runbook_for

from engine.cli import configure_logging
from engine.run.inputs import EmulatorSettings
from engine.session import run_runbook_async


async def test_every_line_of_a_run_is_json_and_requests_carry_their_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    configure_logging(2, "json")
    outcome = await run_runbook_async(
        fast_copy(EXAMPLE, tmp_path / "retry.yaml", timeout="2s"),
        emulator=EmulatorSettings(seed=3, jobs=8, time_scale=0.05),
        report_dir=tmp_path / "run",
        yes=True,
        formats=(),
    )
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)

    requests = [line for line in lines if line["logger"] == "engine.api.client"]
    assert len(requests) == sum(outcome.report.api_calls.values())
    labels = {t.label for t in outcome.report.targets}
    steps = {s.id for t in outcome.report.targets for s in t.steps}
    for line in requests:
        assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"])
        assert line["route"].startswith("POST /v3/{project_id}/jobs")
        assert line["status"] == 200
        assert line["run_id"] == outcome.report.run_id
        assert line["target"] in labels
        assert line["step"] in steps
    assert {line["step"] for line in requests} == {"select", "retry", "verify"}


# ----------------------------------------------------------------------------- the command's stderr
# `runbook ... --log-format json` in a subprocess, as a log shipper or `jq` reads it: every line
# of stderr is one JSON object, from the first (before the run) to the last (after the report).

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
FOUR = {"ts", "level", "logger", "message"}
INCIDENT = REPO / "runbooks" / "incident-retry.yaml"
# Records the OpenTelemetry SDK logs from threads of its own: they know no run.
SDK_THREADS = ("opentelemetry",)


def _env(**extra: str) -> dict[str, str]:
    """This environment without what would change the logs (OTEL_*, RUNBOOK_LOG_FORMAT)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k != "RUNBOOK_LOG_FORMAT"
    }
    return {**env, **extra}


def _records(stderr: str) -> list[dict[str, Any]]:
    """Every line of ``stderr``, each of which must be one JSON object with the four fields."""
    records = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a line of stderr is not JSON: {line!r}")
        assert isinstance(record, dict), line
        assert record.keys() >= FOUR, line
        assert ISO.fullmatch(record["ts"]), line
        records.append(record)
    return records


def _one_run_id(records: list[dict[str, Any]]) -> str:
    """The run id, which every record has from the first that has it on."""
    first = next(i for i, r in enumerate(records) if "run_id" in r)
    run_id: str = records[first]["run_id"]
    for record in records[first:]:
        if not record["logger"].startswith(SDK_THREADS):
            assert record.get("run_id") == run_id, record
    return run_id


def _runbook(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("source", "extra"),
    [(EXAMPLE, ("-vv",)), (INCIDENT, ("--yes",))],
    ids=["demo-verbose", "incident-approved"],
)
def test_a_json_run_writes_nothing_but_json_lines_on_stderr(
    source: Path, extra: tuple[str, ...], tmp_path: Path
) -> None:
    runbook = fast_copy(source, tmp_path / "rb.yaml", timeout="2s", settle="1s")
    done = _runbook(
        "run", str(runbook), "--emulator", "--emulator-jobs", "8", "--emulator-time-scale",
        "0.05", "--report-dir", str(tmp_path / "run"), "--log-format", "json", *extra,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    records = _records(done.stderr)
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert _one_run_id(records) == report["run_id"]
    assert done.stdout.startswith(f"run {report['run_id']}: ")  # the summary stays on stdout

    progress = [r for r in records if r["logger"] == "engine.progress"]
    started = [r for r in progress if r["event"] == "step_started"]
    finished = [r for r in progress if r["event"] == "step_finished"]
    steps = {  # every step each target ran (an approval is the run's, not a target's)
        (t["name"], s["id"])
        for t in report["targets"]
        for s in t["steps"]
        if s["status"] != "skipped" and s["action"] != "approve"
    }
    assert {(r["target"], r["step"]) for r in finished} == steps
    assert {(r["target"], r["step"]) for r in started} == steps
    assert all(isinstance(r["deadline_s"], float) for r in started)
    for record in finished:
        assert record["outcome"] in {"succeeded", "failed"}
        assert record["elapsed_s"] >= 0
        assert 0 <= record["settled"] <= record["total"]
    verified = {r["target"]: r for r in finished if r["step"] == "verify"}
    for target in report["targets"]:
        counted = [j for j in target["jobs"] if j["disposition"] != "skipped"]
        assert verified[target["name"]]["total"] == len(counted)
    assert any(r["event"] == "note" and "emulator listening on" in r["message"] for r in progress)
    if "-vv" in extra:
        assert any(r["logger"] == "engine.api.client" and r.get("request_id") for r in records)
    if "--yes" in extra:
        said = [r for r in records if r["logger"] == "engine.cli"]
        assert [r["event"] for r in said] == ["approval", "approved"]
        assert said[0]["message"].startswith(
            "Retry these jobs in production?\napproval 'approve': "
        )
        assert said[0]["step"] == "approve"


def test_plan_and_apply_in_json_write_json_lines_only(tmp_path: Path) -> None:
    runbook = fast_copy(EXAMPLE, tmp_path / "rb.yaml", timeout="2s")
    fleet = ("--emulator", "--emulator-jobs", "8", "--emulator-time-scale", "0.05")
    planned = _runbook(
        "plan", str(runbook), *fleet, "--out", str(tmp_path / "plan.json"), "--log-format", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    records = _records(planned.stderr)
    assert _one_run_id(records).startswith("plan-")
    assert any(r.get("event") == "step_finished" for r in records)

    applied = _runbook(
        "apply", str(tmp_path / "plan.json"), *fleet, "--report-dir", str(tmp_path / "run"),
        "--log-format", "json", cwd=tmp_path,
    )  # fmt: skip
    assert applied.returncode in (0, 1), applied.stderr
    records = _records(applied.stderr)
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert records[0]["message"].startswith("applying plan ")  # before the run has an id
    assert "run_id" not in records[0]
    assert _one_run_id(records) == report["run_id"]


def _read_until(
    proc: subprocess.Popen[bytes], seen: Callable[[dict[str, Any]], bool], *, within_s: float = 60.0
) -> list[str]:
    """Lines of ``proc``'s stderr until one is a record ``seen`` holds for (bounded).

    ``proc`` has unbuffered pipes (``bufsize=0``): a buffered reader would take more than the
    line from the pipe, which ``select`` then no longer sees and ``communicate`` never returns,
    so lines would go unchecked and the wait would stall until the next write."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + within_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while len(lines) < 10_000:
            left = deadline - time.monotonic()
            assert left > 0, f"not seen within {within_s}s: {lines[-5:]}"
            if not selector.select(timeout=left):
                continue
            line = proc.stderr.readline().decode("utf-8")
            assert line, f"stderr ended first: {lines[-5:]}"
            lines.append(line)
            if seen(json.loads(line)):
                return lines
    pytest.fail("too many lines before the one looked for")


def test_the_emulator_an_interrupted_run_and_its_resume_write_json_lines_only(
    tmp_path: Path,
) -> None:
    """`runbook emulator`, a run against it stopped by SIGTERM while it verifies, and the
    resume that finishes it: all three in json, nothing else on stderr."""
    serve = ("emulator", "--projects", "2", "--jobs", "8", "--seed", "3", "--log-format", "json")
    emulator = subprocess.Popen(
        cli_command(*serve), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, bufsize=0,
    )  # fmt: skip
    try:
        assert emulator.stdout is not None
        described = json.loads(emulator.stdout.readline())  # its one line on stdout
        listening = _read_until(emulator, lambda r: "listening on" in r["message"])
        runbook = runbook_for(described, tmp_path / "rb.yaml")
        env = _env(DRS_AUTH_TOKEN=described["token"])
        run_dir = tmp_path / "run"
        command = cli_command(
            "run", str(runbook), "--endpoint", described["url"], "--report-dir", str(run_dir),
            "--log-format", "json",
        )  # fmt: skip
        with subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        ) as run:
            # At time scale 1 a retried job takes seconds to recover: the verify step waits.
            before = _read_until(
                run, lambda r: r.get("event") == "step_started" and r.get("step") == "verify"
            )
            run.send_signal(signal.SIGTERM)
            _, after = run.communicate(timeout=60)
        assert run.returncode == 130, after
        records = _records("".join(before) + after.decode("utf-8"))
        # Every line is here, none left in a reader's buffer: each target's selection started
        # and finished before its verify started.
        for event in ("step_started", "step_finished"):
            selects = {
                r["target"] for r in records if (r.get("event"), r.get("step")) == (event, "select")
            }
            assert len(selects) == len(described["projects"]), (event, records)
        run_id = _one_run_id(records)
        [resume] = [r for r in records if r["message"].startswith("resume with: ")]
        assert resume["message"] == f"resume with: runbook resume {run_dir}"
        assert resume["run_id"] == run_id

        resumed = _runbook("resume", str(run_dir), "--log-format", "json", cwd=tmp_path, env=env)
        assert resumed.returncode in (0, 1), resumed.stderr
        records = _records(resumed.stderr)
        assert _one_run_id(records) == run_id
        assert records[0]["message"].startswith(f"resuming run {run_id} ")
    finally:
        emulator.terminate()
        _, rest = emulator.communicate(timeout=10)
    served = _records("".join(listening) + rest.decode("utf-8"))
    assert [r["logger"] for r in served[: len(listening)]] == ["engine.cli"] * len(listening)
    assert served[0]["url"] == described["url"]


def test_validate_in_json_writes_records_on_stderr_and_diagnostics_on_stdout(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nname: x\ntargets: []\nsteps: []\n", encoding="utf-8")
    done = _runbook("validate", str(EXAMPLE), str(broken), "--log-format", "json", cwd=tmp_path)
    assert done.returncode == 2
    [ok] = _records(done.stderr)
    assert (ok["message"], ok["file"]) == (f"{EXAMPLE}: ok", str(EXAMPLE))
    assert f"{broken}:3:10: targets: must not be empty" in done.stdout  # the output: --format

    ran = _runbook("run", str(broken), "--emulator", "--log-format", "json", cwd=tmp_path)
    assert ran.returncode == 2
    records = _records(ran.stderr)
    assert [(r["level"], r["file"], r["line"]) for r in records] == [
        ("ERROR", str(broken), 3), ("ERROR", str(broken), 4)
    ]  # fmt: skip


def test_text_lines_open_with_their_time_as_before(tmp_path: Path) -> None:
    runbook = fast_copy(EXAMPLE, tmp_path / "rb.yaml", timeout="2s")
    done = _runbook(
        "run", str(runbook), "--emulator", "--emulator-jobs", "8", "--emulator-time-scale",
        "0.05", "--report-dir", str(tmp_path / "run"), "-v", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    lines = done.stderr.splitlines()
    progress = [line for line in lines if re.match(r"\d\d:\d\d:\d\dZ \[", line)]
    logged = [line for line in lines if ISO.match(line)]
    assert len(progress) >= 9  # select, retry and verify of 3 targets, started and finished
    assert all(
        re.match(ISO.pattern + r" (DEBUG|INFO|WARNING|ERROR) engine\.", line) for line in logged
    )
    assert any(" INFO engine.emulator.app: emulator listening on " in line for line in logged)
    # a note of the run: bare, as it always was
    assert any(line.startswith("emulator listening on http://127.0.0.1:") for line in lines)
    assert not any(line.startswith("{") for line in lines)


def _closed_port() -> int:
    """A loopback port nothing listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_collector_that_is_down_is_a_warning_line_without_a_traceback(
    log_format: str, tmp_path: Path
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    runbook = fast_copy(EXAMPLE, tmp_path / "rb.yaml", timeout="1s")
    env = _env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",  # seconds: the exporters give up within the flush bound
    )
    done = _runbook(
        "run", str(runbook), "--emulator", "--emulator-jobs", "4", "--emulator-time-scale",
        "0.05", "--report-dir", str(tmp_path / "run"), "-q", "--log-format", log_format,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr
    if log_format == "json":
        records = _records(done.stderr)
        told = [r for r in records if r["logger"].startswith(("opentelemetry", "engine.telemetry"))]
        assert told
        assert all(r["level"] in {"WARNING", "ERROR"} and "exc" not in r for r in told)
    else:
        assert all(ISO.match(line) for line in done.stderr.splitlines())
