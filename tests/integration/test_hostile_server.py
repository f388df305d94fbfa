"""Runs against a server that misbehaves on purpose (issue 14): it redirects, lies about counts,
pages in circles, drips bytes, sends huge or malformed bodies, echoes the request's headers and
answers batches oddly, or sends text no UTF-8 file can hold. Each test runs ``runbook run`` as a
user would (a subprocess, the token in the environment) and asserts the clear error or the right
disposition, no traceback, an end within its bound, and not one byte of the token (raw,
URL-encoded, base64 or hex) in the run directory, stdout or stderr; the header bytes, which
aiohttp's server cannot send, are sent from a raw socket to the transport itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from engine.api.transport import AiohttpTransport, HttpRequest

PROJECT = "0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10"
TOKEN = "tok-Hostile/Secret+4f9a2c=77"
FAILED = "INCRE_TRANSFER_FAILED"
RUNBOOK = f"""\
version: 1
name: hostile
targets:
  - project_id: {PROJECT}
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
    timeout: 30s
    with:
      engine_type: mysql  # all it has: no notice that other engines might be missing
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{{{ steps.select.jobs }}}}
      reconcile_grace: 1s
  - id: verify
    action: drs.verify_status
    timeout: 3s
    with:
      jobs: ${{{{ steps.retry.accepted }}}}
      poll_interval: 0.3s
"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def wire_job(job_id: str, status: str = FAILED) -> dict[str, Any]:
    return {
        "id": job_id,
        "name": f"name-{job_id}",
        "status": status,
        "db_use_type": "migration",
        "engine_type": "mysql",
        "job_action": {"available_actions": ["RETRY"], "unavailable_actions": []},
    }


@dataclass
class Hostile:
    """A DRS look-alike: three failed jobs, and ``routes`` overriding what misbehaves."""

    routes: dict[str, Handler] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=lambda: {f"j{n}": FAILED for n in range(3)})
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = request.path.split(f"/v3/{PROJECT}", 1)[-1] or "/"
        self.seen.append((route, dict(request.headers)))
        if route in self.routes:
            return await self.routes[route](request)
        body = await request.json()
        if route == "/jobs":
            ours = body["db_use_type"] == "migration"  # every job here is a migration
            listed = [wire_job(j, s) for j, s in self.jobs.items()] if ours else []
            total = len(listed)
            listed = listed if body["cur_page"] == 1 else []
            return web.json_response({"total_record": total, "jobs": listed})
        if route == "/jobs/batch-status":
            results = [{"id": j, "status": self.jobs[j]} for j in body["jobs"] if j in self.jobs]
            return web.json_response({"results": results, "count": len(results)})
        if route == "/jobs/batch-detail":
            old = str(int((time.time() - 3600) * 1000))
            results = [{"id": j, "status": self.jobs[j], "update_time": old} for j in body["jobs"]]
            return web.json_response({"results": results, "count": len(results)})
        if route == "/jobs/batch-retry-task":
            ids = [j["job_id"] for j in body["jobs"]]
            for job_id in ids:
                self.jobs[job_id] = "INCRE_TRANSFER_STARTED"
            results = [{"id": j, "status": "success"} for j in ids]
            return web.json_response({"results": results, "count": len(results)})
        return web.json_response({"error_code": "APIGW.0101", "error_msg": "no route"}, status=404)


async def _serve(handler: Handler, host: str) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[Hostile, str]]:
    server = Hostile()
    runner, url = await _serve(server.handle, "127.0.0.1")
    try:
        yield server, url
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    seconds: float
    run_dir: Path

    def report(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.run_dir / "report.json").read_text())
        return loaded

    def step(self, step_id: str) -> dict[str, Any]:
        [target] = self.report()["targets"]
        return next(s for s in target["steps"] if s["id"] == step_id)


async def run(url: str, tmp_path: Path, *extra: str) -> Ran:
    """``runbook run`` against ``url``, with -v so log lines are checked for secrets too."""
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK)
    run_dir = tmp_path / "run"
    command = ["-c", "from engine.cli import main; main()", "-v", "run", str(path)]
    command += ["--endpoint", url, "--report-dir", str(run_dir), "-q", *extra]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        env={**os.environ, "DRS_AUTH_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    ran = Ran(
        code=proc.returncode or 0,
        out=out.decode(),
        err=err.decode(),
        seconds=time.monotonic() - started,
        run_dir=run_dir,
    )
    assert "Traceback" not in ran.out + ran.err, ran.err
    _assert_no_secret(ran)
    return ran


SECRET_FORMS = {
    TOKEN,
    quote(TOKEN, safe=""),
    base64.b64encode(TOKEN.encode()).decode(),
    TOKEN.encode().hex(),
    TOKEN[4:20],  # a long part of it, wherever it is cut
}


def _assert_no_secret(ran: Ran) -> None:
    texts = {"stdout": ran.out, "stderr": ran.err}
    if ran.run_dir.exists():
        for path in ran.run_dir.iterdir():
            texts[path.name] = path.read_text(encoding="utf-8", errors="replace")
    for name, text in texts.items():
        for form in SECRET_FORMS:
            assert form not in text, f"{form!r} in {name}"


async def drip(request: web.Request) -> web.StreamResponse:
    """An answer that never ends: a byte every 0.5 s, so no read timeout ever fires."""
    answer = web.StreamResponse(headers={"Content-Type": "application/json"})
    answer.content_length = 10_000
    await answer.prepare(request)
    for _ in range(240):  # 2 minutes at most
        await answer.write(b" ")
        await asyncio.sleep(0.5)
    return answer


# ----------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("redirect", [web.HTTPFound, web.HTTPTemporaryRedirect])
async def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(
    hostile: tuple[Hostile, str], tmp_path: Path, redirect: type[web.HTTPMove]
) -> None:
    server, url = hostile
    thief = Hostile()
    thief_runner, thief_url = await _serve(thief.handle, "127.0.0.2")  # another host
    try:

        async def moved(request: web.Request) -> web.StreamResponse:
            raise redirect(f"{thief_url}/steal?from=drs")

        server.routes["/jobs"] = moved
        ran = await run(url, tmp_path)
    finally:
        await thief_runner.cleanup()
    assert thief.seen == []  # nothing reached the other host: no token, no request
    assert ran.code == 1  # before: "all 0 selected job(s) healthy", exit 0
    message = ran.step("select")["message"]
    status = redirect.status_code
    assert f"HTTP {status} HTTP_{status}: redirected to 127.0.0.2, not followed" in message
    assert "steal" not in message  # only the host is named


# ----------------------------------------------------------------------------- listing


async def test_a_listing_that_pages_in_circles_ends_with_an_error(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    server, url = hostile
    calls = 0

    async def circles(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        jobs = [wire_job(f"c{n}") for n in range(100)]
        return web.json_response({"total_record": 10**9, "jobs": jobs})

    server.routes["/jobs"] = circles
    ran = await run(url, tmp_path)
    assert ran.code == 1
    assert "page 2 lists only jobs of earlier pages" in ran.step("select")["message"]
    assert calls == 2  # before: 106,667 requests in 120 s


async def test_a_total_record_too_low_loses_no_job_and_the_report_says_so(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    server, url = hostile
    server.jobs = {f"j{n:03}": FAILED for n in range(300)}

    async def low(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["db_use_type"] != "migration":
            return web.json_response({"total_record": 0, "jobs": []})
        page = body["cur_page"]
        ids = list(server.jobs)[(page - 1) * 100 : page * 100]
        return web.json_response({"total_record": 200, "jobs": [wire_job(j) for j in ids]})

    server.routes["/jobs"] = low
    ran = await run(url, tmp_path)
    report = ran.report()
    assert report["totals"]["selected"] == 300  # before: 200 of 300, exit 0
    notice = (
        "the service counted 200 migration job(s) (total_record) but listed 300; "
        "every listed job was considered"
    )
    assert ran.step("select")["notices"] == [notice]
    assert notice in (ran.run_dir / "report.md").read_text()
    assert notice in ran.out  # the terminal summary


# ----------------------------------------------------------------------------- bodies


async def test_an_answer_that_drips_is_cut_at_the_request_deadline(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    server, url = hostile

    server.routes["/jobs"] = drip
    ran = await run(url, tmp_path, "--request-timeout", "1s")
    assert ran.code == 1
    assert "no complete answer within 1s" in ran.step("select")["message"]
    assert ran.seconds < 40  # 5 attempts of 1 s and their backoff; before: for ever


async def test_a_dripping_status_answer_does_not_keep_verify_past_its_timeout(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    server, url = hostile

    server.routes["/jobs/batch-status"] = drip
    ran = await run(url, tmp_path)  # verify: timeout 3s; a request may take 60 s
    verify = ran.step("verify")
    assert verify["duration_s"] < 3 + 2  # before: 3 s + the 30 s margin
    jobs = ran.report()["targets"][0]["jobs"]
    assert {job["disposition"] for job in jobs} == {"timed_out"}
    assert all("batch-status never gave its status" in job["reason"] for job in jobs)


async def test_a_huge_answer_is_not_read(hostile: tuple[Hostile, str], tmp_path: Path) -> None:
    server, url = hostile

    async def huge(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"Content-Type": "application/json"})
        await answer.prepare(request)  # chunked: no Content-Length to refuse it by
        for _ in range(20):
            await answer.write(b" " * (1 << 20))
        return answer

    server.routes["/jobs"] = huge
    ran = await run(url, tmp_path)
    assert ran.code == 1
    assert "the answer is larger than 16 MiB; not read" in ran.step("select")["message"]


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (200, "<html><body>Welcome to the portal</body></html>", "expected a JSON object"),
        (200, '{"jobs": "not a list", "total_record": 1}', "expected a list in 'jobs'"),
        (200, '{"jobs": [], "total_record": "many"}', "expected an integer 'total_record'"),
        (403, "<html><h1>Forbidden by proxy</h1></html>", "HTTP_403: <html><h1>Forbidden"),
    ],
)
async def test_malformed_and_html_bodies_are_clear_errors(
    hostile: tuple[Hostile, str], tmp_path: Path, status: int, body: str, said: str
) -> None:
    server, url = hostile

    async def malformed(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type="text/html")

    server.routes["/jobs"] = malformed
    ran = await run(url, tmp_path)
    assert ran.code == 1
    assert said in ran.step("select")["message"]


async def test_echoed_headers_never_show_the_token(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    server, url = hostile

    async def echo(request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        reflected = {
            "error_code": "DRS.M00200",
            "error_msg": f"bad request {headers} {base64.b64encode(TOKEN.encode()).decode()}",
        }
        return web.json_response(
            reflected, status=400, headers={"X-Request-Id": headers["X-Auth-Token"]}
        )

    server.routes["/jobs/batch-retry-task"] = echo
    ran = await run(url, tmp_path)  # run() asserts no form of the token anywhere
    [target] = ran.report()["targets"]
    reasons = [job["reason"] for job in target["jobs"]]
    assert reasons
    assert all("[REDACTED]" in (reason or "") for reason in reasons), reasons
    assert all(job["disposition"] == "retry_rejected" for job in target["jobs"])


# ----------------------------------------------------------------------------- batch answers


async def test_odd_batch_answers_are_reconciled_and_reported(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    server, url = hostile

    async def odd(request: web.Request) -> web.StreamResponse:
        for job_id in server.jobs:
            server.jobs[job_id] = "INCRE_TRANSFER_STARTED"  # all three were applied
        results = [
            {"id": "j0", "status": "success"},
            {"id": "j1", "status": "success"},
            {"id": "j1", "status": "failed", "error_msg": "or not"},
            {"id": "j2", "status": "queued"},
            {"id": "someone-else", "status": "success"},
        ]
        return web.json_response({"results": results, "count": 5})

    server.routes["/jobs/batch-retry-task"] = odd
    ran = await run(url, tmp_path)
    assert ran.code == 0, ran.out
    retries = [route for route, _ in server.seen if route == "/jobs/batch-retry-task"]
    assert len(retries) == 1  # nothing sent twice
    assert ran.step("select")["notices"] == []  # an honest count says nothing
    notices = ran.step("retry")["notices"]
    assert len(notices) == 3
    assert "not in the request (someone-else)" in notices[0]
    assert "more than once (j1)" in notices[1]
    assert "job j2 with status 'queued', which the API does not define" in notices[2]
    dispositions = {job["id"]: job["disposition"] for job in ran.report()["targets"][0]["jobs"]}
    assert dispositions == {"j0": "recovered", "j1": "recovered", "j2": "recovered"}
    junit = (ran.run_dir / "junit.xml").read_text()
    assert "<system-err>step retry: notice: batch-retry-task answered" in junit
    assert "Notices (3)" in (ran.run_dir / "report.html").read_text()


# ----------------------------------------------------------------------------- in clear


async def test_plain_http_to_another_machine_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from engine.cli import main; main()",
        "run", str(path), "--endpoint", "http://drs.example.com", "--report-dir",
        str(tmp_path / "run"),
        env={**os.environ, "DRS_AUTH_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert err.decode().strip() == (
        "runbook: --endpoint http://drs.example.com is plain http to another machine: the "
        "token, signature or IAM password would cross the network in clear; use https, or "
        "pass --allow-insecure-http if you must"
    )
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- text


async def test_lone_surrogates_in_answers_become_replacement_characters_in_every_report(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    server, url = hostile

    async def listing(request: web.Request) -> web.StreamResponse:
        if (await request.json())["db_use_type"] != "migration":
            return web.json_response({"total_record": 0, "jobs": []})
        jobs = [wire_job(j) for j in server.jobs]
        jobs[0]["name"] = "\ud800x"  # json.dumps writes it as the escape "\ud800x"
        jobs[1]["name"] = "\U0001f600 pair"  # a whole pair, "\ud83d\ude00": kept as it is
        return web.json_response({"total_record": len(jobs), "jobs": jobs})

    async def refused(request: web.Request) -> web.StreamResponse:
        answer = {"error_code": "DRS.M00200", "error_msg": "refused \udfff here"}
        return web.json_response(answer, status=400)

    server.routes["/jobs"] = listing
    server.routes["/jobs/batch-retry-task"] = refused
    ran = await run(url, tmp_path)
    assert ran.code == 1, ran.err  # the retries were refused: a run that ended, not a crash
    raw = (ran.run_dir / "report.json").read_bytes()
    assert b"\\ud800" not in raw.lower()
    assert b"\\udfff" not in raw.lower()
    jobs = {job["id"]: job for job in ran.report()["targets"][0]["jobs"]}
    assert jobs["j0"]["name"] == "\ufffdx"
    assert jobs["j1"]["name"] == "\U0001f600 pair"
    assert {job["disposition"] for job in jobs.values()} == {"retry_rejected"}
    assert all("refused \ufffd here" in job["reason"] for job in jobs.values())
    for name in ("report.md", "report.html", "junit.xml", "journal.jsonl"):
        text = (ran.run_dir / name).read_text(encoding="utf-8")  # strict: whole UTF-8
        assert "\ufffdx" in text, name
        assert "refused \ufffd here" in text, name


async def test_header_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    """aiohttp decodes a header's bytes that are not UTF-8 as lone surrogates (the request id
    goes into reports and errors); the transport hands on U+FFFD instead."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nX-Request-Id: req-\xff-\xed\xa0\x80\r\nX-Plain: caf\xc3\xa9\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    request = HttpRequest(method="GET", url=f"http://127.0.0.1:{port}/", headers={}, body=b"")
    try:
        async with asyncio.timeout(30), AiohttpTransport(request_timeout_s=10) as transport:
            response = await transport.send(request)
    finally:
        server.close()
        await server.wait_closed()
    assert response.request_id == "req-\ufffd-\ufffd\ufffd\ufffd"  # was "req-\udcff-\udced..."
    assert response.header("X-Plain") == "caf\u00e9"  # UTF-8 is read as it is
