"""A run directory on a small tmpfs (issue 14, item 5): too little room at the start is a usage
error before anything is sent; a disk that fills up mid-run stops the run's changes with one
sentence and exit 3, and a resume once there is room finishes without sending anything twice.

Mounting a tmpfs needs privileges: where the machine does not allow it the tests are skipped
(the journal's own ENOSPC handling is tested without a mount in tests/unit/test_journal.py).
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import (
    FINAL,
    cli_command,
    fetch,
    jobs_of,
    resume_in_a_subprocess,
    runbook_for,
    serve_emulator,
)

STEPS = """\
  - id: select
    action: drs.select_jobs
  - id: settle
    action: sleep
    with:
      duration: 3s
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{ steps.select.jobs }}
      batch_size: 1
      reconcile_grace: 2s
  - id: verify
    action: drs.verify_status
    timeout: 10s
    with:
      jobs: ${{ steps.retry.accepted }}
      poll_interval: 0.3s
"""


def _mount(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or 'not permitted'}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "small", "1m")


@pytest.fixture
def roomy_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "roomy", "72m")  # just above the 64 MiB a run asks for


@pytest.fixture
def emulator() -> Iterator[dict[str, Any]]:
    with serve_emulator(
        "--projects", "2", "--jobs", "12", "--seed", "5", "--time-scale", "0.3",
        "--faults", "answer_delay=300ms",
    ) as described:  # fmt: skip
        yield described


def _env(emulator: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, "DRS_AUTH_TOKEN": emulator["token"]}


def _fill(disk: Path, *, leave: int) -> Path:
    """Fill ``disk`` up, then give back ``leave`` bytes (tmpfs counts whole pages)."""
    filler = disk / "filler"
    full: OSError | None = None
    with filler.open("wb") as out:
        for _ in range(1024):  # at most 1 GiB: the tmpfs is far smaller
            try:
                out.write(b"\0" * (1 << 20))
                out.flush()
            except OSError as exc:
                full = exc
                break
    assert full is not None
    assert full.errno == errno.ENOSPC
    with filler.open("r+b") as out:
        out.truncate(max(0, filler.stat().st_size - leave))
    return filler


def test_too_little_room_at_the_start_is_a_usage_error_and_nothing_is_sent(
    emulator: dict[str, Any], small_disk: Path, tmp_path: Path
) -> None:
    runbook = runbook_for(emulator, tmp_path / "rb.yaml", STEPS)
    ran = subprocess.run(
        cli_command("run", str(runbook), "--endpoint", emulator["url"], "--report-dir",
             str(small_disk / "run"), "-q"),
        env=_env(emulator), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("runbook: only 1.0 MiB free where ")
    assert "a run needs at least 64 MiB" in line
    stats = fetch(f"{emulator['url']}/_emulator/stats")
    assert stats["mutating_requests"] == 0


def test_a_disk_full_mid_run_stops_the_changes_and_a_resume_finishes_without_duplicates(
    emulator: dict[str, Any], roomy_disk: Path, tmp_path: Path
) -> None:
    runbook = runbook_for(emulator, tmp_path / "rb.yaml", STEPS)
    run_dir = roomy_disk / "run"
    env = _env(emulator)
    command = cli_command(
        "run", str(runbook), "--endpoint", emulator["url"], "--report-dir", str(run_dir), "-q"
    )
    stats_url = f"{emulator['url']}/_emulator/stats"
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 30
        journal = run_dir / "journal.jsonl"
        while b"retry_acknowledged" not in (journal.read_bytes() if journal.exists() else b""):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run never retried a job"
            time.sleep(0.02)
        # Full: the journal goes on only into the rest of its last page, then meets ENOSPC.
        filler = _fill(roomy_disk, leave=0)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 3, err
    assert "Traceback" not in out + err
    said = [line for line in err.splitlines() if line.startswith("runbook: ")]
    assert len(said) == 1, err
    assert said[0].startswith(f"runbook: cannot write the journal {journal}: No space left")
    assert f"runbook resume {run_dir}" in said[0]
    assert journal.read_bytes().endswith(b"\n")  # whole lines only: readable, resumable
    sent_before = fetch(stats_url)["retry_requests_per_job"]
    assert len(sent_before) > 0, "the disk filled before any retry: the test proves nothing"

    filler.unlink()  # room again
    report = resume_in_a_subprocess(run_dir, env)
    jobs = jobs_of(report)
    assert all(job["disposition"] in FINAL for job in jobs), [j["disposition"] for j in jobs]
    per_job = fetch(stats_url)["retry_requests_per_job"]
    assert max(per_job.values()) == 1, per_job  # nothing sent twice, before or after
    assert set(sent_before) <= set(per_job)
    assert report["resumed_at"]
