"""Tell webhooks when a run waits for an approval, when a guard rail stops it, and when it ends.

    webhooks(runbook.notify, ["https://..."], allow_insecure_http=False)  ->  (Webhook, ...)
    async with Notifier(hooks, run=RunRef(...), warn=...) as notifier:
        observer = notifier.observing(observer)    # tells "stopped" (a RunObserver)
        approver = notifier.asking(approver, how, plan_hash=...)  # tells "approval", then asks
        ...
        notifier.finished(report, reports=...)

Each event is one small JSON document (``NOTIFICATION_SCHEMA``, pinned by
``schemas/notification.schema.json``) with a ``text`` field that Slack, Mattermost and
Rocket.Chat incoming webhooks show as the message; a webhook entry may ask for Feishu's or
DingTalk's envelope instead (``NotifyFormat``).

A notifier is not part of the run's outcome: every delivery runs in a background task of the
notifier's own task group, is retried with backoff (connection errors, 5xx, 429 with its
Retry-After, bounded), never follows a redirect, and when it fails it is a warning line naming
the webhook by its environment variable and host, never its URL (the URL carries the token).
Leaving the ``async with`` waits at most ``DRAIN_S`` for what is still in flight, then gives up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import orjson

from engine import __version__
from engine.api.endpoints import sends_in_clear
from engine.errors import UsageError
from engine.ledger import Disposition, JobBook
from engine.redact import keep_secret, redact
from engine.report.document import Report, Totals
from engine.report.summary import headline
from engine.run.approval import HOW_PLAN, HOW_YES, ApprovalRequest, Approver
from engine.run.executor import RunObserver
from engine.run.result import StepOutcome
from engine.run.step import StepTiming
from engine.runbook import Step, Target
from engine.runbook.model import Notify, NotifyEvent, NotifyFormat
from engine.surrogates import lone_surrogate_at

logger = logging.getLogger(__name__)

NOTIFICATION_SCHEMA = "drs-runbook.notification/1"

# Delivery bounds: attempts in all (the first and 3 retries), each within ATTEMPT_TIMEOUT_S
# from connecting to the answer's status; full-jitter backoff between them, and a Retry-After
# honoured up to MAX_BACKOFF_S. At the end of the run, DRAIN_S in all for what is in flight.
MAX_ATTEMPTS = 4
ATTEMPT_TIMEOUT_S = 5.0
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
DRAIN_S = 5.0
# Of an answer's body, at most this much is read (and thrown away).
MAX_ANSWER_BYTES = 64 * 1024
_RETRIED_STATUSES = frozenset({408, 425, 429})
# A --notify value that is a shell variable's name the shell did not expand ('$NAME', ${NAME}).
_VARIABLE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    """How hard a notification is pushed; the defaults are the module's bounds (tests narrow
    them). Not the run's request timeout: a webhook is not the DRS API."""

    max_attempts: int = MAX_ATTEMPTS
    attempt_timeout_s: float = ATTEMPT_TIMEOUT_S
    backoff_s: float = BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    drain_s: float = DRAIN_S


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """Where one notification goes. ``url`` is a secret: only ``shown_as`` is ever shown."""

    url: str
    shown_as: str  # "$RUNBOOK_SLACK_WEBHOOK (hooks.slack.com)", or "--notify hooks.slack.com"
    events: frozenset[NotifyEvent]
    format: NotifyFormat = NotifyFormat.JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRef:
    """The run every notification is about."""

    run_id: str
    runbook_name: str
    runbook_path: str
    run_dir: Path


# ----------------------------------------------------------------------------- configuration


def webhooks(
    entries: Sequence[Notify],
    urls: Sequence[str] = (),
    *,
    allow_insecure_http: bool = False,
    environ: Mapping[str, str],
    warn: Callable[[str], None],
) -> tuple[Webhook, ...]:
    """The webhooks of a run: the runbook's ``notify:`` entries (each URL read from its
    environment variable now) and the command line's ``--notify URL``s (told everything, as
    the JSON document), taken as given: ``$NAME`` is not expanded (such a value is refused,
    naming ``url_env``). An entry whose variable is unset or empty is left out with a warning
    (the run is not stopped for a missing notification); a URL that is not one, or is plain
    http to another machine without ``allow_insecure_http``, is a ``UsageError`` before
    anything is sent. Every URL is registered with ``engine.redact`` as a secret."""
    found: list[Webhook] = []
    for entry in entries:
        url = environ.get(entry.url_env, "").strip()
        if not url:
            warn(
                f"warning: {entry.location}: notify: ${entry.url_env} is not set; the run "
                "goes on without that webhook"
            )
            continue
        host = _host_of(url)
        shown = f"${entry.url_env} ({host})" if host else f"${entry.url_env}"
        _check(url, shown, f"{entry.location}: notify: ${entry.url_env}", allow_insecure_http)
        found.append(Webhook(url=url, shown_as=shown, events=entry.events, format=entry.format))
    for url in urls:
        if _VARIABLE.fullmatch(url.strip()):  # a name, not the secret: it may be shown
            raise UsageError(
                f"--notify {url.strip()} is a variable's name, not a URL: the engine does not "
                "expand variables (hint: name the variable in the runbook's notify: with "
                "url_env, which keeps the URL out of the process list)"
            )
        host = _host_of(url)
        shown = f"--notify {host}" if host else "--notify"
        _check(url, shown, shown, allow_insecure_http)
        found.append(Webhook(url=url, shown_as=shown, events=frozenset(NotifyEvent)))
    return tuple(found)


def _check(url: str, shown: str, where: str, allow_insecure_http: bool) -> None:
    if lone_surrogate_at(url) is not None:  # bytes that are not UTF-8, read by surrogateescape
        raise UsageError(
            f"{where} is not UTF-8 text (the value is not shown: a webhook URL is a secret)"
        )
    keep_secret(url)
    host = _host_of(url)  # None also for what urlsplit cannot read (``https://[::1``)
    parts = urlsplit(url) if host is not None else None
    if parts is not None and parts.netloc:
        keep_secret(url.split(parts.netloc, 1)[1])  # the path and query hold the token
    if parts is None or parts.scheme not in {"http", "https"} or not _encodable(host or ""):
        raise UsageError(
            f"{where} is not an http(s) URL with a host; a webhook is https://host/path (the "
            "value is not shown: a webhook URL is a secret)"
        )
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"{where}: a webhook URL must not carry a user name or password")
    if not allow_insecure_http and sends_in_clear(url):
        raise UsageError(
            f"{where} is plain http to another machine: the webhook's token would cross the "
            "network in clear; use https, or pass --allow-insecure-http if you must"
        )
    logger.debug("notifications to %s", shown)


def _encodable(host: str) -> bool:
    """Whether a host name can be sent at all (``a..b`` has an empty label: IDNA refuses it)."""
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def _host_of(url: str) -> str | None:
    """What a message may say of a webhook: its host (and port), nothing of its path; None
    when it has no host (or no readable port)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return f"{host}:{port}" if port is not None else host


# ----------------------------------------------------------------------------- the documents


def _document(
    run: RunRef,
    event: NotifyEvent,
    *,
    text: str,
    headline: str,
    counts: Mapping[str, int],
    step: Mapping[str, Any] | None = None,
    exit_code: int | None = None,
    verdict: str | None = None,
    reports: Sequence[str] = (),
) -> dict[str, Any]:
    """One notification, as ``schemas/notification.schema.json`` describes it (the field
    order is the document's)."""
    return {
        "schema": NOTIFICATION_SCHEMA,
        "event": event.value,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run.run_id,
        "runbook": {"name": run.runbook_name, "path": run.runbook_path},
        "text": redact(text),
        "headline": redact(headline),
        "step": step,
        "exit_code": exit_code,
        "verdict": verdict,
        "counts": dict(counts),
        "run_dir": str(run.run_dir),
        "reports": list(reports),
    }


def approval_document(
    run: RunRef,
    request: ApprovalRequest,
    how: str,
    counts: Mapping[str, int],
    *,
    plan_hash: str | None = None,
) -> dict[str, Any]:
    """An approval step reached: "waiting for approval" only when a terminal prompt waits
    (``how`` is ``HOW_TERMINAL``); given by ``--yes`` or by the plan file ``plan_hash`` an
    apply ran, it says it was approved, and by what."""
    step = request.step
    message = step.with_.get("message")
    projects = sum(1 for jobs in request.selected.values() if jobs)
    said = f"{request.total} job(s) to act on in {projects} project(s)"
    asked = f" ({message})" if isinstance(message, str) and message else ""
    if how == HOW_YES:
        what = "approved by --yes"
    elif how == HOW_PLAN:
        what = "approved by the plan file" + (f" {plan_hash[:12]}" if plan_hash else "")
    else:
        what = "waiting for approval"
    return _document(
        run,
        NotifyEvent.APPROVAL,
        text=f"runbook {run.runbook_name}, run {run.run_id}: {what} at step "
        f"'{step.id}'{asked}: {said}",
        headline=f"{what} at step '{step.id}': {said}",
        counts=counts,
        step={"id": step.id, "name": step.name, "action": step.action, "how": how},
    )


def stopped_document(run: RunRef, why: str, counts: Mapping[str, int]) -> dict[str, Any]:
    return _document(
        run,
        NotifyEvent.STOPPED,
        text=f"runbook {run.runbook_name}, run {run.run_id}: stopped by a guard rail: {why}",
        headline=why,
        counts=counts,
    )


def finished_document(run: RunRef, report: Report, *, reports: Sequence[str]) -> dict[str, Any]:
    """The end of the run: its exit code and ``verdict`` are the report's (``RunVerdict``, as
    the trace's ``runbook.verdict``)."""
    said = headline(report)
    # The second line: how many jobs ended where, most common first (the report's columns).
    ended = sorted(
        (
            (n, d)
            for d in Disposition
            if d is not Disposition.SELECTED and (n := report.totals.of_disposition(d))
        ),
        key=lambda pair: -pair[0],
    )
    counted = ", ".join(f"{n} {d.value.replace('_', ' ')}" for n, d in ended)
    return _document(
        run,
        NotifyEvent.FINISHED,
        text=f"runbook {run.runbook_name}, run {run.run_id}: ended with exit code "
        f"{report.exit_code}: {said}" + (f"\n{counted}" if counted else ""),
        headline=said,
        counts=report.totals,
        exit_code=report.exit_code,
        verdict=report.verdict.value,
        reports=reports,
    )


def body(document: Mapping[str, Any], format: NotifyFormat) -> bytes:
    """What is POSTed to a webhook of ``format``."""
    text = document["text"]
    match format:
        case NotifyFormat.JSON:
            shaped: Mapping[str, Any] = document
        case NotifyFormat.SLACK:
            shaped = {"text": text}
        case NotifyFormat.FEISHU:
            shaped = {"msg_type": "text", "content": {"text": text}}
        case NotifyFormat.DINGTALK:
            shaped = {"msgtype": "text", "text": {"content": text}}
    return orjson.dumps(shaped)


def _counts(books: Iterable[JobBook]) -> Totals:
    return Totals.of(record.disposition for book in books for record in book)


# ----------------------------------------------------------------------------- delivery


class Notifier:
    """Sends a run's notifications to its webhooks in the background (an async context
    manager: its task group holds every delivery, and leaving it drains them, bounded).

    Not a queue that survives the process: what is not delivered within the bounds is given
    up with a warning. With no webhooks it does nothing at all."""

    def __init__(
        self,
        hooks: Sequence[Webhook],
        *,
        run: RunRef,
        warn: Callable[[str], None],
        policy: DeliveryPolicy = DeliveryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._hooks = tuple(hooks)
        self._run = run
        self._warn = warn
        self._policy = policy
        self._sleep = sleep
        self._books: Mapping[Target, JobBook] = {}
        self._open = False  # between __aenter__ and __aexit__: notifications are sent
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        if self._hooks:
            self._open = True
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=8),
                headers={"User-Agent": f"drs-runbook/{__version__}"},
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._session
        if not self._open or session is None:
            return
        self._open = False  # nothing new is sent; what is in flight goes on
        try:
            # Not after an interruption that did not let the run end (a second signal).
            if self._pending and not isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                _, late = await asyncio.wait(self._pending, timeout=self._policy.drain_s)
                if late:
                    self._warn(
                        f"warning: {len(late)} notification(s) not delivered within "
                        f"{self._policy.drain_s:g}s of the end of the run; given up"
                    )
        finally:
            pending = tuple(self._pending)
            for task in pending:
                task.cancel()
            try:
                # Deliveries are tasks of their own, not of the run: a delivery that fails
                # never cancels the run; here they are only waited for, once cancelled.
                await asyncio.gather(*pending, return_exceptions=True)
            finally:
                self._session = None
                await session.close()

    # ----------------------------------------------------------------------------- events

    def observing(self, observer: RunObserver | None) -> RunObserver | None:
        """``observer`` (a ``RunObserver``, or None) as the executor should get it: also told
        by this notifier's ``stopped``, and keeping the job books for the counts."""
        if not self._hooks:
            return observer
        return _Telling(observer, self)

    def asking(
        self, approver: Approver | None, how: str, *, plan_hash: str | None = None
    ) -> Approver | None:
        """``approver``, but each approval is told to the webhooks before it is asked (or,
        given by ``--yes`` or the plan file ``plan_hash``, as it is given)."""
        if approver is None or not self._hooks:
            return approver
        ask = approver

        async def approve(request: ApprovalRequest) -> bool:
            told = approval_document(
                self._run, request, how, self._now_counts(), plan_hash=plan_hash
            )
            self._send(told)
            return await ask(request)

        return approve

    def stopped(self, why: str) -> None:
        """A guard rail stopped the run (told once per guard, by the executor's observer)."""
        self._send(stopped_document(self._run, why, self._now_counts()))

    def finished(self, report: Report, *, reports: Sequence[Path]) -> None:
        """The run ended, however it ended: its report (its exit code is the run's, a storage
        failure's included) and files."""
        paths = [str(path) for path in reports]
        self._send(finished_document(self._run, report, reports=paths))

    def keep_books(self, books: Mapping[Target, JobBook]) -> None:
        self._books = books

    def _now_counts(self) -> Totals:
        return _counts(self._books.values())

    def _send(self, document: Mapping[str, Any]) -> None:
        if not self._open:
            return
        event = NotifyEvent(document["event"])
        for hook in self._hooks:
            if event in hook.events:
                deliver = self._deliver(hook, body(document, hook.format))
                task = asyncio.get_running_loop().create_task(deliver)
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    async def _deliver(self, hook: Webhook, payload: bytes) -> None:
        """POST ``payload`` until it is taken, or the attempts are spent (then a warning)."""
        policy = self._policy
        why = "no attempt made"
        for attempt in range(1, policy.max_attempts + 1):
            wait_s: float | None = None
            try:
                status, retry_after = await self._post(hook.url, payload)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                why = _failure_text(exc, policy.attempt_timeout_s)
            except ValueError as exc:  # a URL the HTTP stack cannot send (e.g. IDNA, yarl)
                why = type(exc).__name__  # its words may hold the URL: the type only
            else:
                if 200 <= status < 300:
                    logger.debug("notification delivered to %s (%d)", hook.shown_as, status)
                    return
                why = f"answered {status}"
                if 300 <= status < 400:
                    self._warn(
                        f"warning: notification to {hook.shown_as} not delivered: {why} "
                        "(a redirect, not followed)"
                    )
                    return
                if status < 500 and status not in _RETRIED_STATUSES:
                    self._warn(f"warning: notification to {hook.shown_as} not delivered: {why}")
                    return
                wait_s = retry_after
            if attempt == policy.max_attempts:
                break
            if wait_s is None:  # full jitter: uniform over [0, min(max, base * 2^(n-1))]
                ceiling = min(policy.max_backoff_s, policy.backoff_s * 2 ** (attempt - 1))
                wait_s = random.uniform(0, ceiling)
            await self._sleep(min(wait_s, policy.max_backoff_s))
        self._warn(
            f"warning: notification to {hook.shown_as} not delivered after "
            f"{policy.max_attempts} attempt(s): {why}"
        )

    async def _post(self, url: str, payload: bytes) -> tuple[int, float | None]:
        """One attempt: the answer's status and its Retry-After in seconds (if it gave one)."""
        session = self._session
        if session is None:
            raise RuntimeError("Notifier used outside 'async with'")
        async with (
            asyncio.timeout(self._policy.attempt_timeout_s),
            session.post(
                url,
                data=payload,
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            ) as answer,
        ):
            await answer.content.read(MAX_ANSWER_BYTES)  # read some, keep none
            return answer.status, _retry_after_s(answer.headers.get("Retry-After"))


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds, when it is a number of them (an HTTP date is not waited for)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _failure_text(exc: BaseException, timeout_s: float) -> str:
    """Why an attempt failed, without the URL (aiohttp's messages name the host only, and
    ``redact`` takes out anything of the URL a message might still carry)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    return redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class _Telling:
    """A ``RunObserver`` that passes everything on to the one it wraps (if any) and tells the
    notifier when a guard rail stops the run."""

    def __init__(self, inner: RunObserver | None, notifier: Notifier) -> None:
        self._inner = inner
        self._notifier = notifier

    def run_started(self, books: Mapping[Target, JobBook]) -> None:
        self._notifier.keep_books(books)
        if self._inner is not None:
            self._inner.run_started(books)

    def run_finished(self) -> None:
        if self._inner is not None:
            self._inner.run_finished()

    def note(self, text: str) -> None:
        if self._inner is not None:
            self._inner.note(text)
        else:
            logger.info("%s", text)

    def step_started(self, target: Target, step: Step, timing: StepTiming) -> None:
        if self._inner is not None:
            self._inner.step_started(target, step, timing)

    @property
    def shows_plan(self) -> bool:
        return bool(self._inner is not None and self._inner.shows_plan)

    def about_to_change(self, request: ApprovalRequest) -> None:
        if self._inner is not None:
            self._inner.about_to_change(request)

    def step_finished(self, target: Target, outcome: StepOutcome, jobs: JobBook) -> None:
        if self._inner is not None:
            self._inner.step_finished(target, outcome, jobs)

    def run_stopped(self, why: str) -> None:
        self._notifier.stopped(why)
        if self._inner is not None:
            self._inner.run_stopped(why)
