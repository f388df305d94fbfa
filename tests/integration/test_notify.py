"""Notifications (issue 17) received by a webhook on 127.0.0.1: ``runbook run`` in a subprocess,
as a user runs it, against the embedded emulator, POSTing to a loopback aiohttp server that
answers as the test says (200, 500 then 200, 429 with Retry-After, a redirect, never).

Every test checks the documents against ``schemas/notification.schema.json``, the run's exit
code against its report, and that the webhook's URL (a fake token in its path) is nowhere in
stdout, stderr, the journal or the reports.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from harness import EXAMPLE, REPO, fast_copy

from engine.run.notify import DRAIN_S, NOTIFICATION_SCHEMA

TOKEN = "T0FAKE/B0FAKE/xoxbFakeToken4f9a2c77"
HOOK_PATH = f"/services/{TOKEN}"
INCIDENT = REPO / "runbooks" / "incident-retry.yaml"
SCHEMA = json.loads((REPO / "schemas" / "notification.schema.json").read_text(encoding="utf-8"))
FAST = ["--emulator", "--emulator-time-scale", "0.05"]
SELECT_ONLY = """\
version: 1
name: select-only
targets:
  - name: orders-prod
    project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
"""


@dataclass
class Received:
    path: str
    content_type: str
    body: dict[str, Any]
    at: float  # time.monotonic() when it arrived


@dataclass
class Webhook:
    """A loopback webhook: records every POST and answers with ``answers`` in turn (the last
    one again and again): a status, ``"redirect"``, or ``"hang"`` (no answer until the test
    ends, 30 s at most)."""

    answers: list[int | str] = field(default_factory=lambda: [200])
    seen: list[Received] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.seen.append(
            Received(
                path=request.path,
                content_type=request.headers.get("Content-Type", ""),
                body=json.loads(raw) if request.path == HOOK_PATH else {},
                at=time.monotonic(),
            )
        )
        answer = self.answers[min(len(self.seen) - 1, len(self.answers) - 1)]
        if answer == "hang":
            # Bounded: the fixture releases it when the test ends.
            await asyncio.wait_for(self.released.wait(), timeout=30)
            return web.Response(status=200)
        if answer == "redirect":
            raise web.HTTPFound(location=f"{self.url}/elsewhere")
        if answer == 429:
            return web.Response(status=429, headers={"Retry-After": "1"})
        assert isinstance(answer, int)
        return web.Response(status=answer, text="taken" if answer < 300 else "oops")

    def events(self) -> list[str]:
        return [r.body["event"] for r in self.seen if r.path == HOOK_PATH]

    def documents(self) -> list[dict[str, Any]]:
        return [r.body for r in self.seen if r.path == HOOK_PATH]


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hook.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield hook
    finally:
        hook.released.set()
        await runner.cleanup()


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    started: float
    ended: float
    run_dir: Path

    def report(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.run_dir / "report.json").read_text())
        return loaded


async def start(
    runbook: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """``runbook -v run RUNBOOK --emulator ... ARGS`` in a subprocess (-v: log lines are
    checked for the webhook's URL too)."""
    command = ["-c", "from engine.cli import main; main()", "-v", "run", str(runbook), *FAST]
    command += ["--report-dir", str(tmp_path / "run"), "-q", *args]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(runbook: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Ran:
    started = time.monotonic()
    proc = await start(runbook, tmp_path, *args, env=env)
    return await ended(proc, tmp_path, started)


async def ended(proc: asyncio.subprocess.Process, tmp_path: Path, started: float) -> Ran:
    """The run's end: its output, checked for tracebacks and the webhook's URL."""
    run_dir = tmp_path / "run"
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    ran = Ran(
        code=proc.returncode if proc.returncode is not None else -1,
        out=out.decode(),
        err=err.decode(),
        started=started,
        ended=time.monotonic(),
        run_dir=run_dir,
    )
    assert "Traceback" not in ran.out + ran.err, ran.err
    assert ran.code == ran.report()["exit_code"], ran.err  # notifications never change it
    _assert_no_url(ran)
    return ran


def _assert_no_url(ran: Ran) -> None:
    texts = {"stdout": ran.out, "stderr": ran.err}
    for path in ran.run_dir.iterdir():
        texts[path.name] = path.read_text(encoding="utf-8", errors="replace")
    assert "journal.jsonl" in texts
    for name, text in texts.items():
        for part in (TOKEN, "xoxbFakeToken4f9a2c77", HOOK_PATH):
            assert part not in text, f"{part!r} in {name}"


def select_only(tmp_path: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "select-only.yaml"
    path.write_text(SELECT_ONLY, encoding="utf-8")
    return path


def _valid(documents: list[dict[str, Any]]) -> None:
    for document in documents:
        jsonschema.validate(document, SCHEMA, cls=jsonschema.Draft202012Validator)
        assert document["schema"] == NOTIFICATION_SCHEMA


# ----------------------------------------------------------------------------- what is told


async def test_an_approved_run_tells_its_approval_then_its_end_with_the_reports_counts(
    webhook: Webhook, tmp_path: Path
) -> None:
    runbook = fast_copy(INCIDENT, tmp_path / "incident.yaml", timeout="3s")
    with runbook.open("a", encoding="utf-8") as text:
        text.write("notify:\n  - url_env: RUNBOOK_TEST_WEBHOOK\n")

    ran = await run(
        runbook, tmp_path, "--yes", env={"RUNBOOK_TEST_WEBHOOK": webhook.url + HOOK_PATH}
    )

    report = ran.report()
    assert webhook.events() == ["approval", "finished"]
    documents = webhook.documents()
    _valid(documents)
    approval, finished = documents
    assert {r.content_type for r in webhook.seen} == {"application/json"}
    for document in documents:
        assert document["run_id"] == report["run_id"]
        assert document["runbook"] == {"name": "incident-retry", "path": str(runbook)}
        assert document["run_dir"] == str(ran.run_dir)
    assert approval["step"] == {
        "id": "approve",
        "name": "A human confirms the list",
        "action": "approve",
        "how": "--yes",
    }
    assert approval["counts"]["selected"] == report["totals"]["selected"]
    # What the approval covered: every selected job the service had not brought back itself.
    acted = [
        job
        for target in report["targets"]
        for job in target["jobs"]
        if job["disposition"] not in {"skipped", "recovered_by_service"}
    ]
    assert approval["text"] == (
        f"runbook incident-retry, run {report['run_id']}: approved by --yes at step "
        f"'approve' (Retry these jobs in production?): {len(acted)} job(s) to act on in 2 "
        "project(s)"
    )
    assert (approval["exit_code"], approval["verdict"], approval["reports"]) == (None, None, [])
    assert finished["counts"] == report["totals"]
    assert finished["exit_code"] == ran.code == 1  # the demo fleet has jobs that never recover
    assert finished["verdict"] == "needs_a_human"
    assert finished["reports"][0] == str(ran.run_dir / "report.json")
    first, second = finished["text"].split("\n")
    needs = report["totals"]["needs_attention"]
    assert first == (
        f"runbook incident-retry, run {report['run_id']}: ended with exit code 1: {needs} of "
        f"{report['totals']['selected']} job(s) need a human"
    )
    assert f"{report['totals']['recovered']} recovered" in second
    assert "warning: notification" not in ran.err


async def test_a_guard_rail_that_stops_the_run_is_told_before_its_end(
    webhook: Webhook, tmp_path: Path
) -> None:
    runbook = fast_copy(EXAMPLE, tmp_path / "retry.yaml", timeout="2s")

    ran = await run(runbook, tmp_path, "--max-jobs-total", "1", "--notify", webhook.url + HOOK_PATH)

    report = ran.report()
    assert webhook.events() == ["stopped", "finished"]
    _valid(webhook.documents())
    stopped, finished = webhook.documents()
    selected = report["totals"]["selected"]
    why = (
        f"{selected} jobs selected across all targets, more than max_jobs_total 1; "
        "nothing was changed"
    )
    assert stopped["headline"] == why
    assert stopped["text"] == (
        f"runbook retry-failed-jobs, run {report['run_id']}: stopped by a guard rail: {why}"
    )
    assert finished["exit_code"] == ran.code == 1
    assert finished["counts"] == report["totals"]
    assert report["totals"]["not_retried"] == selected  # nothing was sent


async def test_a_run_stopped_by_sigterm_still_tells_its_end_as_interrupted(
    webhook: Webhook, tmp_path: Path
) -> None:
    # A verify long enough to be stopped in: the signal comes once the approval was told.
    runbook = fast_copy(INCIDENT, tmp_path / "incident.yaml", timeout="60s")
    started = time.monotonic()
    proc = await start(runbook, tmp_path, "--yes", "--notify", webhook.url + HOOK_PATH)
    for _ in range(600):  # 60 s at most
        if webhook.events() or proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    assert webhook.events() == ["approval"]
    await asyncio.sleep(0.5)  # into the retry and the verify
    proc.send_signal(signal.SIGTERM)

    ran = await ended(proc, tmp_path, started)

    assert ran.code == 130
    assert webhook.events() == ["approval", "finished"]
    _valid(webhook.documents())
    finished = webhook.documents()[1]
    assert (finished["exit_code"], finished["verdict"]) == (130, "interrupted")
    assert finished["counts"] == ran.report()["totals"]
    assert finished["headline"].startswith("interrupted; ")


# ----------------------------------------------------------------------------- delivery


@pytest.mark.parametrize(("first", "least_wait_s"), [(500, 0.0), (429, 1.0)])
async def test_a_refusing_answer_is_retried_and_the_notification_delivered(
    webhook: Webhook, tmp_path: Path, first: int, least_wait_s: float
) -> None:
    webhook.answers = [first, 200]

    ran = await run(select_only(tmp_path), tmp_path, "--notify", webhook.url + HOOK_PATH)

    assert ran.code == 0
    assert webhook.events() == ["finished", "finished"]  # the same document, sent again
    once, again = webhook.seen
    assert once.body == again.body
    assert again.at - once.at >= least_wait_s * 0.9  # a 429's Retry-After: 1 is honoured
    assert "warning: notification" not in ran.err


async def test_a_webhook_that_never_answers_holds_the_end_of_the_run_at_most_the_drain(
    webhook: Webhook, tmp_path: Path
) -> None:
    webhook.answers = ["hang"]

    ran = await run(select_only(tmp_path), tmp_path, "--notify", webhook.url + HOOK_PATH)

    assert ran.code == 0
    told = webhook.seen[0]  # (a second attempt may have begun before the drain gave up)
    assert set(webhook.events()) == {"finished"}
    assert ran.ended - told.at < DRAIN_S + 3  # the drain, and the process winding down
    assert "warning: 1 notification(s) not delivered within 5s of the end of the run" in ran.err


async def test_a_refused_connection_is_a_warning_within_the_bound_and_not_a_failure(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    baseline = await run(select_only(tmp_path / "b"), tmp_path / "b")

    ran = await run(
        select_only(tmp_path), tmp_path, "--notify", f"http://127.0.0.1:{port}{HOOK_PATH}"
    )

    assert ran.code == baseline.code == 0
    assert (ran.ended - ran.started) - (baseline.ended - baseline.started) < DRAIN_S + 2
    assert f"warning: notification to --notify 127.0.0.1:{port} not delivered" in ran.err
    assert "cannot connect" in ran.err


async def test_a_redirect_is_not_followed(webhook: Webhook, tmp_path: Path) -> None:
    webhook.answers = ["redirect"]

    ran = await run(select_only(tmp_path), tmp_path, "--notify", webhook.url + HOOK_PATH)

    assert ran.code == 0
    assert [r.path for r in webhook.seen] == [HOOK_PATH]  # /elsewhere was never asked
    port = webhook.url.rsplit(":", 1)[1]
    assert (
        f"warning: notification to --notify 127.0.0.1:{port} not delivered: answered 302 "
        "(a redirect, not followed)"
    ) in ran.err
