"""The runbook model: frozen dataclasses built from data the schema and the checks accepted.

The model is not a validator: :func:`build_runbook` trusts its input's shape. Action
parameters (``with_``) stay plain data, except that each string holding ``${{ ... }}`` becomes
its typed :class:`~engine.runbook.expressions.Expression`; the actions apply their own defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.errors import Location
from engine.runbook.expressions import Expression, is_expression, parse_template
from engine.runbook.params import Param, build_params
from engine.runbook.parse import JsonPath, ParsedYaml
from engine.units import parse_duration, parse_rate

DEFAULT_CONCURRENCY = 8
DEFAULT_CONCURRENCY_PER_TARGET = 2
# engine.api.types.Language.EN_US, spelt out so validation does not load the wire types.
DEFAULT_LANGUAGE = "en-us"
DEFAULT_MAX_ATTEMPTS = 1
DEFAULT_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 30.0
# engine.actions.pause_jobs's name, spelt out so validation does not load the actions.
PAUSE_ACTION = "drs.pause_jobs"
VERIFY_ACTION = "drs.verify_status"
ASSERT_ACTION = "assert"


class NotifyEvent(StrEnum):
    """When a webhook is told about a run; values are the YAML words (``notify[].events``)."""

    APPROVAL = "approval"  # the run waits for an approve step's answer
    STOPPED = "stopped"  # a guard rail stopped it (max_jobs_total, the error budget)
    FINISHED = "finished"  # it ended, however (failed and interrupted too)


class NotifyFormat(StrEnum):
    """The body a webhook is sent; values are the YAML words (``notify[].format``)."""

    JSON = "json"  # the whole notification document, with its Slack-compatible ``text``
    SLACK = "slack"  # ``{"text": ...}`` alone (Slack, Mattermost, Rocket.Chat)
    FEISHU = "feishu"  # ``{"msg_type": "text", "content": {"text": ...}}`` (Feishu / Lark)
    DINGTALK = "dingtalk"  # ``{"msgtype": "text", "text": {"content": ...}}``


class OnFailure(StrEnum):
    """What a failed step does to the target's remaining steps; values are the YAML words."""

    ABORT = "abort"
    CONTINUE = "continue"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """An identity a runbook names by reference: where its credentials are, never what they are.

    Exactly one source is set: ``ak_env`` + ``sk_env`` (+ ``security_token_env``), ``token_env``,
    the IAM user's three variables, or ``credentials_file``. The values are read when the run
    starts, from the environment or the file, and never kept in the runbook, journal or report.
    """

    name: str
    location: Location
    ak_env: str | None = None
    sk_env: str | None = None
    security_token_env: str | None = None
    token_env: str | None = None
    iam_user_env: str | None = None
    iam_password_env: str | None = None
    iam_domain_env: str | None = None
    credentials_file: str | None = None
    iam_endpoint: str | None = None
    rate_limit_per_s: float | None = None  # overrides the runbook's for this account


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One DRS project the steps run against, in ``account`` (None: the run's own identity)."""

    project_id: str
    region: str | None
    endpoint: str | None
    name: str | None
    location: Location
    account: str | None = None

    @property
    def label(self) -> str:
        """How progress output and reports name the target."""
        return self.name or self.project_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovery:
    """Every project of ``account`` in ``region``, found when the run (or plan) starts
    (``engine.run.discovery``); ``{account: A, regions: [r1, r2]}`` in ``targets:`` is one per
    region."""

    account: str
    region: str
    location: Location
    endpoint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRetries:
    """How often a failed step is attempted: ``backoff_s`` doubles per attempt, up to the max.

    Not a rate limit and not a timeout: each attempt has the step's whole timeout.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One action with its parameters; ``with_`` holds Expressions where the runbook has them."""

    id: str
    name: str | None
    action: str
    with_: Mapping[str, Any] = field(hash=False)
    timeout_s: float | None
    location: Location
    when: Expression | None = None
    retries: StepRetries = StepRetries()
    on_failure: str = OnFailure.ABORT.value


class StopKind(StrEnum):
    """What a stop condition watches; values are the YAML keys that name it."""

    FILE = "file"
    ERROR_CODE = "error_code"
    FAILED_AGAIN = "failed_again"
    LAGGING = "lagging"


@dataclass(frozen=True, slots=True, kw_only=True)
class StopCondition:
    """One entry of ``stop_when:`` (or a ``--stop-file``): what trips the run's stop.

    ``threshold`` is the condition's number: for ``error_code`` the answers that trip it (its
    ``count``), for ``failed_again`` and ``lagging`` the jobs it allows (more trip it). Not a
    check by itself: ``engine.run.stop.StopSignal`` watches the run and evaluates these.
    """

    kind: StopKind
    written: str  # as the runbook or the command line spells it, for the report
    location: Location | None  # None for a --stop-file
    path: str | None = None  # FILE: absolute, ~ expanded
    error_code: str | None = None
    threshold: int = 0
    above_s: float | None = None  # LAGGING: the delay a job counts as lagging above

    @property
    def where(self) -> str:
        """Where it was written: ``stop_when`` in the runbook (file:line:col), or the CLI."""
        return "--stop-file" if self.location is None else f"stop_when at {self.location}"

    @classmethod
    def stop_file(cls, path: str | os.PathLike[str]) -> StopCondition:
        """A ``--stop-file PATH`` (relative to the working directory, ~ expanded)."""
        given = os.fspath(path)
        return cls(
            kind=StopKind.FILE,
            written=f"file: {given}",
            location=None,
            path=str(Path(given).expanduser().absolute()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """One ``notify:`` entry: the environment variable that holds a webhook's URL (the URL is a
    secret, read when the run starts, never kept in the model), what it is told and how."""

    url_env: str
    events: frozenset[NotifyEvent]
    format: NotifyFormat
    location: Location


@dataclass(frozen=True, slots=True, kw_only=True)
class Runbook:
    """A validated runbook: its params, targets and steps, in file order, and its run limits."""

    path: str
    version: int
    name: str
    description: str | None
    concurrency: int  # API requests in flight at once, all targets together
    language: str
    targets: tuple[Target, ...]
    steps: tuple[Step, ...]
    concurrency_per_target: int = DEFAULT_CONCURRENCY_PER_TARGET
    # Run against a target in which a step failed: undo what the run changed there.
    rollback: tuple[Step, ...] = ()
    params: tuple[Param, ...] = ()
    env: tuple[str, ...] = ()
    rate_limit_per_s: float | None = None
    max_jobs: int | None = None
    max_jobs_total: int | None = None
    max_errors: int | None = None
    max_error_ratio: float | None = None
    params_location: Location | None = None  # of the ``params:`` key, for unknown --param
    # The ``drill:`` key: None when the runbook does not say (then a pause step makes it one).
    declared_drill: bool | None = None
    accounts: Mapping[str, Account] = field(default_factory=dict, hash=False)
    # ``targets:`` entries that name an account and regions, not a project: expanded at run time.
    discoveries: tuple[Discovery, ...] = ()
    notify: tuple[Notify, ...] = ()
    stop_when: tuple[StopCondition, ...] = ()

    @property
    def drill(self) -> bool:
        """Whether its report carries a drill verdict: as declared, else when a step pauses
        jobs (the fault a drill injects)."""
        if self.declared_drill is not None:
            return self.declared_drill
        return any(step.action == PAUSE_ACTION for step in self.steps)


def build_runbook(parsed: ParsedYaml, expressions: Mapping[JsonPath, Expression]) -> Runbook:
    """The model of a runbook that passed the schema and the semantic checks.

    ``expressions`` are the typed expressions the checks parsed, by the path of their string.
    """
    data, source = parsed.data, parsed.source
    targets = tuple(
        Target(
            project_id=target["project_id"],
            region=target.get("region"),
            endpoint=target.get("endpoint"),
            name=target.get("name"),
            location=source.value(("targets", index)),
            account=target.get("account"),
        )
        for index, target in enumerate(data["targets"])
        if "regions" not in target
    )
    discoveries = tuple(
        Discovery(
            account=target["account"],
            region=region,
            endpoint=target.get("endpoint"),
            location=source.value(("targets", index, "regions", at)),
        )
        for index, target in enumerate(data["targets"])
        if "regions" in target
        for at, region in enumerate(target["regions"])
    )
    steps = tuple(
        _step(step, ("steps", index), parsed, expressions)
        for index, step in enumerate(data["steps"])
    )
    if isinstance(block := data.get("steady_state"), dict):
        steps = with_steady_state(steps, block, parsed, expressions)
    rollback = tuple(
        _step(step, ("rollback", index), parsed, expressions)
        for index, step in enumerate(data.get("rollback") or ())
    )
    rate = data.get("rate_limit")
    return Runbook(
        path=source.path,
        version=int(data["version"]),
        name=data["name"],
        description=data.get("description"),
        concurrency=int(data.get("concurrency", DEFAULT_CONCURRENCY)),
        concurrency_per_target=int(
            data.get("concurrency_per_target", DEFAULT_CONCURRENCY_PER_TARGET)
        ),
        language=data.get("language", DEFAULT_LANGUAGE),
        targets=targets,
        steps=steps,
        rollback=rollback,
        params=build_params(data, source),
        env=tuple(data.get("env") or ()),
        rate_limit_per_s=None if rate is None else parse_rate(rate),
        max_jobs=data.get("max_jobs"),
        max_jobs_total=data.get("max_jobs_total"),
        max_errors=data.get("max_errors"),
        max_error_ratio=None if "max_error_ratio" not in data else float(data["max_error_ratio"]),
        params_location=source.keys.get(("params",)),
        declared_drill=data.get("drill"),
        accounts=MappingProxyType(
            {
                name: _account(name, spec, source.value(("accounts", name)))
                for name, spec in (data.get("accounts") or {}).items()
            }
        ),
        discoveries=discoveries,
        notify=tuple(
            Notify(
                url_env=entry["url_env"],
                events=frozenset(NotifyEvent(e) for e in entry.get("events", NotifyEvent)),
                format=NotifyFormat(entry.get("format", NotifyFormat.JSON)),
                location=source.value(("notify", index)),
            )
            for index, entry in enumerate(data.get("notify") or ())
        ),
        stop_when=tuple(
            _stop_condition(entry, source.value(("stop_when", index)), source.path)
            for index, entry in enumerate(data.get("stop_when") or ())
        ),
    )


def _stop_condition(entry: Mapping[str, Any], location: Location, path: str) -> StopCondition:
    """A ``stop_when`` entry the schema accepted (exactly one kind, with its companion key)."""
    written = ", ".join(f"{key}: {value}" for key, value in entry.items())
    if "file" in entry:
        given = Path(str(entry["file"])).expanduser()
        # Relative to the runbook's directory, as the runbook's author sees it.
        resolved = given if given.is_absolute() else Path(path).absolute().parent / given
        return StopCondition(
            kind=StopKind.FILE, written=written, location=location, path=str(resolved)
        )
    if "error_code" in entry:
        return StopCondition(
            kind=StopKind.ERROR_CODE,
            written=written,
            location=location,
            error_code=str(entry["error_code"]),
            threshold=int(entry["count"]),
        )
    if "failed_again" in entry:
        return StopCondition(
            kind=StopKind.FAILED_AGAIN,
            written=written,
            location=location,
            threshold=int(entry["failed_again"]),
        )
    return StopCondition(
        kind=StopKind.LAGGING,
        written=written,
        location=location,
        threshold=int(entry["lagging"]),
        above_s=parse_duration(entry["above"]),
    )


def _account(name: str, spec: Mapping[str, Any], location: Location) -> Account:
    rate = spec.get("rate_limit")
    return Account(
        name=name,
        location=location,
        ak_env=spec.get("ak_env"),
        sk_env=spec.get("sk_env"),
        security_token_env=spec.get("security_token_env"),
        token_env=spec.get("token_env"),
        iam_user_env=spec.get("iam_user_env"),
        iam_password_env=spec.get("iam_password_env"),
        iam_domain_env=spec.get("iam_domain_env"),
        credentials_file=spec.get("credentials_file"),
        iam_endpoint=spec.get("iam_endpoint"),
        rate_limit_per_s=None if rate is None else parse_rate(rate),
    )


def _step(
    step: Mapping[str, Any],
    at: JsonPath,
    parsed: ParsedYaml,
    expressions: Mapping[JsonPath, Expression],
) -> Step:
    retries = step.get("retries") or {}
    return Step(
        id=step["id"],
        name=step.get("name"),
        action=step["action"],
        with_=MappingProxyType(_with_expressions(step.get("with", {}), (*at, "with"), expressions)),
        timeout_s=None if step.get("timeout") is None else parse_duration(step["timeout"]),
        location=parsed.source.value(at),
        when=expressions.get((*at, "when")),
        retries=StepRetries(
            max_attempts=int(retries.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            backoff_s=parse_duration(retries.get("backoff", DEFAULT_BACKOFF_S)),
            max_backoff_s=parse_duration(retries.get("max_backoff", DEFAULT_MAX_BACKOFF_S)),
        ),
        on_failure=step.get("on_failure", OnFailure.ABORT.value),
    )


def with_steady_state(
    steps: tuple[Step, ...],
    block: Mapping[str, Any],
    parsed: ParsedYaml,
    expressions: Mapping[JsonPath, Expression],
) -> tuple[Step, ...]:
    """The steps with the steady_state block's checks: a verify and an assert that it held,
    before the first pause (no fault is injected unless every job is healthy) and after the
    last step (the system came back to it)."""
    where = parsed.source.keys.get(("steady_state",)) or parsed.source.value(("steady_state",))
    timeout = block.get("timeout")
    verify_with = {k: v for k, v in block.items() if k != "timeout"}
    expanded = _with_expressions(verify_with, ("steady_state",), expressions)

    def check(when: str, message: str, on_failure: str) -> tuple[Step, Step]:
        verify = Step(
            id=f"steady_state_{when}",
            name=f"Steady state {when} the fault",
            action=VERIFY_ACTION,
            with_=MappingProxyType(dict(expanded)),
            timeout_s=None if timeout is None else parse_duration(timeout),
            location=where,
        )
        text = f"${{{{ steps.steady_state_{when}.recovered_ratio >= 1.0 }}}}"
        holds = Step(
            id=f"steady_state_{when}_holds",
            name=f"The steady state holds {when} the fault",
            action=ASSERT_ACTION,
            with_=MappingProxyType(
                {
                    "that": Expression(
                        text=text,
                        location=where,
                        static_type="boolean",
                        parts=parse_template(text),
                    ),
                    "message": message,
                }
            ),
            timeout_s=None,
            location=where,
            on_failure=on_failure,
        )
        return verify, holds

    first_pause = next(i for i, s in enumerate(steps) if s.action == PAUSE_ACTION)
    # After recovery: behind the last verify that follows the fault (the recovery's), so the
    # asserts after it judge a system that is back; at the end when there is none.
    verifies = [i for i, s in enumerate(steps) if i > first_pause and s.action == VERIFY_ACTION]
    recovered = verifies[-1] + 1 if verifies else len(steps)
    before = check(
        "before",
        "the steady state does not hold before the fault; nothing was paused",
        OnFailure.ABORT.value,
    )
    after = check(
        "after", "the steady state does not hold after recovery", OnFailure.CONTINUE.value
    )
    return (
        *steps[:first_pause],
        *before,
        *steps[first_pause:recovered],
        *after,
        *steps[recovered:],
    )


def _with_expressions(value: Any, at: JsonPath, expressions: Mapping[JsonPath, Expression]) -> Any:
    """``value`` with every expression string replaced by its Expression."""
    if is_expression(value):
        return expressions.get(at, value)
    if isinstance(value, dict):
        return {
            key: _with_expressions(item, (*at, key), expressions) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_with_expressions(item, (*at, i), expressions) for i, item in enumerate(value)]
    return value
