"""Notifications without a socket: the runbook's notify: entries, which URLs a run accepts (and
how it names them), the bodies of each format, and the notifier's no-op when nobody listens.
The deliveries themselves are received on 127.0.0.1 in tests/integration/test_notify.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.actions.catalog import CATALOG
from engine.cli import cli, main
from engine.errors import Location, UsageError
from engine.ledger import JobRecord
from engine.redact import REDACTED, redact
from engine.run.approval import HOW_PLAN, HOW_TERMINAL, HOW_YES, ApprovalRequest, approve_all
from engine.run.notify import (
    DeliveryPolicy,
    Notifier,
    RunRef,
    Webhook,
    approval_document,
    body,
    webhooks,
)
from engine.runbook import load_runbook
from engine.runbook.model import Notify, NotifyEvent, NotifyFormat

HEAD = """\
version: 1
name: notify
targets:
  - project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10
    region: cn-north-4
steps:
  - id: select
    action: drs.select_jobs
"""
SLACK = "https://hooks.slack.com/services/T0UNIT/B0UNIT/unitFakeToken9d3e"
WHERE = Location(path="rb.yaml", line=4, col=5)


def entry(url_env: str = "OPS_WEBHOOK") -> Notify:
    return Notify(
        url_env=url_env, events=frozenset(NotifyEvent), format=NotifyFormat.JSON, location=WHERE
    )


def test_the_runbooks_notify_entries_default_to_every_event_as_json(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(
        HEAD + "notify:\n  - url_env: OPS_WEBHOOK\n  - url_env: LARK_BOT\n"
        "    events: [approval]\n    format: feishu\n"
    )

    everything, lark = load_runbook(path, CATALOG).notify

    assert (everything.url_env, everything.events, everything.format) == (
        "OPS_WEBHOOK",
        frozenset({NotifyEvent.APPROVAL, NotifyEvent.STOPPED, NotifyEvent.FINISHED}),
        NotifyFormat.JSON,
    )
    assert (lark.url_env, lark.events, lark.format) == (
        "LARK_BOT",
        frozenset({NotifyEvent.APPROVAL}),
        NotifyFormat.FEISHU,
    )
    assert (everything.location.line, lark.location.line) == (10, 11)


def test_a_webhook_is_read_from_its_variable_and_named_by_it_and_its_host() -> None:
    warnings: list[str] = []

    [hook] = webhooks([entry()], environ={"OPS_WEBHOOK": SLACK}, warn=warnings.append)

    assert hook.url == SLACK
    assert hook.shown_as == "$OPS_WEBHOOK (hooks.slack.com)"
    assert warnings == []
    # From now on, no text the run shows can carry it, nor its path alone.
    assert redact(f"posting to {SLACK}") == f"posting to {REDACTED}"
    assert "unitFakeToken9d3e" not in redact("GET /services/T0UNIT/B0UNIT/unitFakeToken9d3e")


def test_an_unset_variable_leaves_that_webhook_out_with_a_warning() -> None:
    warnings: list[str] = []

    found = webhooks([entry()], environ={"OPS_WEBHOOK": "  "}, warn=warnings.append)

    assert found == ()
    assert warnings == [
        "warning: rb.yaml:4:5: notify: $OPS_WEBHOOK is not set; the run goes on without that "
        "webhook"
    ]


def test_a_command_line_url_is_told_everything_and_named_by_its_host_and_port() -> None:
    [hook] = webhooks([], ["https://chat.example:8443/hooks/unitTokenA1b2c3"], environ={},
                      warn=print)  # fmt: skip

    assert hook.shown_as == "--notify chat.example:8443"
    assert hook.events == frozenset(NotifyEvent)
    assert hook.format is NotifyFormat.JSON


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "hooks.example/unitTokenC4d5e6",
            "--notify is not an http(s) URL with a host; a webhook is https://host/path (the "
            "value is not shown: a webhook URL is a secret)",
        ),
        (  # urlsplit refuses it: a sentence, not a traceback
            "https://[::1/unitTokenR2s3",
            "--notify is not an http(s) URL with a host; a webhook is https://host/path (the "
            "value is not shown: a webhook URL is a secret)",
        ),
        (  # an empty label: no HTTP stack can send it (it crashed the run when sent)
            "https://a..b/unitTokenT4u5",
            "--notify a..b is not an http(s) URL with a host; a webhook is https://host/path "
            "(the value is not shown: a webhook URL is a secret)",
        ),
        (
            "https://bot:unitPassF7g8h9@hooks.example/x",
            "--notify hooks.example: a webhook URL must not carry a user name or password",
        ),
        (
            "http://hooks.example/unitTokenJ1k2l3",
            "--notify hooks.example is plain http to another machine: the webhook's token would "
            "cross the network in clear; use https, or pass --allow-insecure-http if you must",
        ),
    ],
)
def test_a_url_that_is_not_a_safe_webhook_is_refused_without_showing_it(
    url: str, message: str
) -> None:
    with pytest.raises(UsageError) as refused:
        webhooks([], [url], environ={}, warn=print)
    assert refused.value.format_message() == message


def test_plain_http_is_taken_to_loopback_and_elsewhere_only_when_allowed() -> None:
    local = webhooks([], ["http://127.0.0.1:9/unitTokenM4n5"], environ={}, warn=print)
    remote = webhooks([], ["http://hooks.example/unitTokenP6q7"], allow_insecure_http=True,
                      environ={}, warn=print)  # fmt: skip
    assert [h.shown_as for h in (*local, *remote)] == [
        "--notify 127.0.0.1:9",
        "--notify hooks.example",
    ]


def test_a_variable_holding_a_bad_url_is_refused_by_the_variables_name() -> None:
    with pytest.raises(UsageError) as refused:
        webhooks([entry()], environ={"OPS_WEBHOOK": "ftp://files.example/unitTokenR8s9"},
                 warn=print)  # fmt: skip
    said = refused.value.format_message()
    assert said.startswith("rb.yaml:4:5: notify: $OPS_WEBHOOK is not an http(s) URL with a host")
    assert "unitTokenR8s9" not in said


def test_a_variable_holding_bytes_that_are_not_utf8_is_refused_by_the_variables_name() -> None:
    url = "https://hooks.example/unitTokenV1w2\udcff"  # a byte 0xff, read by surrogateescape
    with pytest.raises(UsageError) as refused:
        webhooks([entry()], environ={"OPS_WEBHOOK": url}, warn=print)  # before: a traceback
    assert refused.value.format_message() == (
        "rb.yaml:4:5: notify: $OPS_WEBHOOK is not UTF-8 text (the value is not shown: a webhook "
        "URL is a secret)"
    )


DOCUMENT = {"schema": "drs-runbook.notification/1", "event": "finished", "text": "two\nlines"}


@pytest.mark.parametrize(
    ("format", "expected"),
    [
        (NotifyFormat.JSON, DOCUMENT),
        (NotifyFormat.SLACK, {"text": "two\nlines"}),
        (NotifyFormat.FEISHU, {"msg_type": "text", "content": {"text": "two\nlines"}}),
        (NotifyFormat.DINGTALK, {"msgtype": "text", "text": {"content": "two\nlines"}}),
    ],
)
def test_each_format_carries_the_text_where_its_chat_reads_it(
    format: NotifyFormat, expected: dict[str, object]
) -> None:
    assert json.loads(body(DOCUMENT, format)) == expected


async def test_a_notifier_without_webhooks_changes_nothing(tmp_path: Path) -> None:
    about = RunRef(run_id="r1", runbook_name="n", runbook_path="rb.yaml", run_dir=tmp_path)
    async with Notifier((), run=about, warn=print) as notifier:
        assert notifier.observing(None) is None
        assert notifier.asking(approve_all, "--yes") is approve_all
        notifier.stopped("nothing listens")  # nothing to send, nothing raised


async def test_a_delivery_that_fails_unexpectedly_never_cancels_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    about = RunRef(run_id="r1", runbook_name="n", runbook_path="rb.yaml", run_dir=tmp_path)
    hook = Webhook(url="https://hooks.example/x", shown_as="--notify hooks.example",
                   events=frozenset(NotifyEvent))  # fmt: skip
    warnings: list[str] = []
    attempts = 0

    async def broken(url: str, payload: bytes) -> tuple[int, float | None]:
        nonlocal attempts
        attempts += 1
        raise (ValueError("unsendable") if attempts == 1 else RuntimeError("a bug of the stack"))

    policy = DeliveryPolicy(max_attempts=2, backoff_s=0.0, drain_s=2.0)
    async with Notifier([hook], run=about, warn=warnings.append, policy=policy) as notifier:
        monkeypatch.setattr(notifier, "_post", broken)
        notifier.stopped("a guard rail")
        for _ in range(20):  # the run goes on while the delivery fails: never cancelled
            await asyncio.sleep(0.01)
        went_on = True
    assert went_on
    assert attempts == 2  # the ValueError was a failed attempt, retried; the bug ended it


GATED = (
    HEAD
    + """\
  - id: approve
    action: approve
    with:
      message: Retry these jobs in production?
"""
)
PLAN_HASH = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c"


def approval_request(tmp_path: Path) -> ApprovalRequest:
    path = tmp_path / "rb.yaml"
    path.write_text(GATED)
    runbook = load_runbook(path, CATALOG)
    [target] = runbook.targets
    jobs = [
        JobRecord(job_id=f"j{n}", name=f"job-{n}", status_at_selection="FAILED") for n in (1, 2)
    ]
    return ApprovalRequest(step=runbook.steps[1], selected={target: jobs}, next_steps=())


@pytest.mark.parametrize(
    ("how", "what"),
    [
        (HOW_TERMINAL, "waiting for approval"),
        (HOW_YES, "approved by --yes"),
        (HOW_PLAN, "approved by the plan file 9f2c4e6a8b0d"),
    ],
)
def test_an_approval_is_told_as_waiting_only_when_a_terminal_asks(
    tmp_path: Path, how: str, what: str
) -> None:
    about = RunRef(run_id="r1", runbook_name="gated", runbook_path="rb.yaml", run_dir=tmp_path)

    told = approval_document(
        about, approval_request(tmp_path), how, {"selected": 2}, plan_hash=PLAN_HASH
    )

    assert told["text"] == (
        f"runbook gated, run r1: {what} at step 'approve' (Retry these jobs in production?): "
        "2 job(s) to act on in 1 project(s)"
    )
    assert told["headline"] == f"{what} at step 'approve': 2 job(s) to act on in 1 project(s)"
    assert told["step"]["how"] == how


async def test_an_applied_plans_approval_names_the_plan_file_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    about = RunRef(run_id="r1", runbook_name="gated", runbook_path="rb.yaml", run_dir=tmp_path)
    hook = Webhook(url="https://hooks.example/x", shown_as="--notify hooks.example",
                   events=frozenset(NotifyEvent))  # fmt: skip
    posted: list[dict[str, object]] = []

    async def taken(url: str, payload: bytes) -> tuple[int, float | None]:
        posted.append(json.loads(payload))
        return 200, None

    async with Notifier([hook], run=about, warn=print) as notifier:
        monkeypatch.setattr(notifier, "_post", taken)
        approver = notifier.asking(approve_all, HOW_PLAN, plan_hash=PLAN_HASH)
        assert approver is not None
        assert await approver(approval_request(tmp_path)) is True

    [approval] = posted
    assert approval["headline"] == (
        "approved by the plan file 9f2c4e6a8b0d at step 'approve': 2 job(s) to act on in "
        "1 project(s)"
    )


def test_an_unsafe_notify_url_stops_the_run_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(HEAD)
    with pytest.raises(SystemExit) as exited:
        main(["run", str(path), "--emulator", "--report-dir", str(tmp_path / "r"),
              "--notify", "http://hooks.example/services/unitTokenU1v2"])  # fmt: skip
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert err == (
        "runbook: --notify hooks.example is plain http to another machine: the webhook's token "
        "would cross the network in clear; use https, or pass --allow-insecure-http if you "
        "must\n"
    )
    assert not (tmp_path / "r").exists()  # no run directory: nothing ran


@pytest.mark.parametrize("value", ["$OPS_WEBHOOK", "${OPS_WEBHOOK}"])
def test_notify_expands_no_variable_and_names_url_env_instead(
    value: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPS_WEBHOOK", SLACK)  # set: still not read from --notify
    path = tmp_path / "rb.yaml"
    path.write_text(HEAD)
    with pytest.raises(SystemExit) as exited:
        main(["run", str(path), "--emulator", "--report-dir", str(tmp_path / "r"),
              "--notify", value])  # fmt: skip
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert err == (
        f"runbook: --notify {value} is a variable's name, not a URL: the engine does not expand "
        "variables (hint: name the variable in the runbook's notify: with url_env, which keeps "
        "the URL out of the process list)\n"
    )
    assert "unitFakeToken9d3e" not in err
    assert not (tmp_path / "r").exists()


def test_notify_help_says_the_url_is_taken_as_given() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"], prog_name="runbook", terminal_width=200)
    assert result.exit_code == 0
    said = " ".join(result.output.split())
    assert "The URL is taken as given ($NAME is not expanded)" in said
    assert "or $VARIABLE here" not in said
