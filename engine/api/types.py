"""Wire types of DRS v3: statuses, job info and batch results, exactly as the API spells them.

This module is the only code the client and the emulator share. It knows field names and
status values; it knows nothing about retries, paging or state transitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.redact import redact, redact_word


class JobStatus(StrEnum):
    """Every DRS job status of the fact sheet; values are the wire strings."""

    # healthy / running
    FULL_TRANSFER_STARTED = "FULL_TRANSFER_STARTED"
    FULL_TRANSFER_COMPLETE = "FULL_TRANSFER_COMPLETE"
    INCRE_TRANSFER_STARTED = "INCRE_TRANSFER_STARTED"
    CHILD_TRANSFER_STARTED = "CHILD_TRANSFER_STARTED"
    CHILD_TRANSFER_COMPLETE = "CHILD_TRANSFER_COMPLETE"
    # in progress
    CREATING = "CREATING"
    CONFIGURATION = "CONFIGURATION"
    STARTJOBING = "STARTJOBING"
    WAITING_FOR_START = "WAITING_FOR_START"
    CHILD_TRANSFER_STARTING = "CHILD_TRANSFER_STARTING"
    RELEASE_RESOURCE_STARTED = "RELEASE_RESOURCE_STARTED"
    REBUILD_NODE_STARTED = "REBUILD_NODE_STARTED"
    CHANGE_JOB_STARTED = "CHANGE_JOB_STARTED"
    NODE_UPGRADE_START = "NODE_UPGRADE_START"
    RELEASE_CHILD_TRANSFER_STARTED = "RELEASE_CHILD_TRANSFER_STARTED"
    # failed (retry candidates)
    FULL_TRANSFER_FAILED = "FULL_TRANSFER_FAILED"
    INCRE_TRANSFER_FAILED = "INCRE_TRANSFER_FAILED"
    START_JOB_FAILED = "START_JOB_FAILED"
    CHILD_TRANSFER_FAILED = "CHILD_TRANSFER_FAILED"
    REBUILD_NODE_FAILED = "REBUILD_NODE_FAILED"
    CHANGE_JOB_FAILED = "CHANGE_JOB_FAILED"
    NODE_UPGRADE_FAILED = "NODE_UPGRADE_FAILED"
    CREATE_FAILED = "CREATE_FAILED"
    RELEASE_RESOURCE_FAILED = "RELEASE_RESOURCE_FAILED"
    # paused (resume candidate): PAUSING means *paused*
    PAUSING = "PAUSING"
    # ended
    RELEASE_RESOURCE_COMPLETE = "RELEASE_RESOURCE_COMPLETE"
    RELEASE_CHILD_TRANSFER_COMPLETE = "RELEASE_CHILD_TRANSFER_COMPLETE"
    DELETED = "DELETED"
    NODE_UPGRADE_COMPLETE = "NODE_UPGRADE_COMPLETE"


class StatusGroup(StrEnum):
    """How the engine reads a status; values are the report strings."""

    HEALTHY = "healthy"
    IN_PROGRESS = "in_progress"
    FAILED = "failed"
    PAUSED = "paused"
    ENDED = "ended"
    UNKNOWN = "unknown"


S = JobStatus
HEALTHY_STATUSES = frozenset(
    {
        S.FULL_TRANSFER_STARTED,
        S.FULL_TRANSFER_COMPLETE,
        S.INCRE_TRANSFER_STARTED,
        S.CHILD_TRANSFER_STARTED,
        S.CHILD_TRANSFER_COMPLETE,
    }
)
IN_PROGRESS_STATUSES = frozenset(
    {
        S.CREATING,
        S.CONFIGURATION,
        S.STARTJOBING,
        S.WAITING_FOR_START,
        S.CHILD_TRANSFER_STARTING,
        S.RELEASE_RESOURCE_STARTED,
        S.REBUILD_NODE_STARTED,
        S.CHANGE_JOB_STARTED,
        S.NODE_UPGRADE_START,
        S.RELEASE_CHILD_TRANSFER_STARTED,
    }
)
FAILED_STATUSES = frozenset(
    {
        S.FULL_TRANSFER_FAILED,
        S.INCRE_TRANSFER_FAILED,
        S.START_JOB_FAILED,
        S.CHILD_TRANSFER_FAILED,
        S.REBUILD_NODE_FAILED,
        S.CHANGE_JOB_FAILED,
        S.NODE_UPGRADE_FAILED,
        S.CREATE_FAILED,
        S.RELEASE_RESOURCE_FAILED,
    }
)
PAUSED_STATUSES = frozenset({S.PAUSING})
ENDED_STATUSES = frozenset(
    {
        S.RELEASE_RESOURCE_COMPLETE,
        S.RELEASE_CHILD_TRANSFER_COMPLETE,
        S.DELETED,
        S.NODE_UPGRADE_COMPLETE,
    }
)
_GROUPS: dict[str, StatusGroup] = {
    **dict.fromkeys(HEALTHY_STATUSES, StatusGroup.HEALTHY),
    **dict.fromkeys(IN_PROGRESS_STATUSES, StatusGroup.IN_PROGRESS),
    **dict.fromkeys(FAILED_STATUSES, StatusGroup.FAILED),
    **dict.fromkeys(PAUSED_STATUSES, StatusGroup.PAUSED),
    **dict.fromkeys(ENDED_STATUSES, StatusGroup.ENDED),
}


def status_group(status: str) -> StatusGroup:
    """The group of a wire status; a status this engine does not know is UNKNOWN, not an error."""
    return _GROUPS.get(status, StatusGroup.UNKNOWN)


class DbUseType(StrEnum):
    MIGRATION = "migration"
    SYNC = "sync"
    CLOUD_DATA_GUARD = "cloudDataGuard"


class Language(StrEnum):
    EN_US = "en-us"
    ZH_CN = "zh-cn"


ACTION_RETRY = "RETRY"
ACTION_PAUSE = "PAUSE"

# Documented limits of the API.
MAX_PER_PAGE = 100
MAX_IDS_PER_NAME_FILTER = 100
MAX_IDS_PER_BATCH_STATUS = 100
# No maximum is published for batch-retry-task / batch-pause-task; the engine sends at most this
# many jobs per request (the page and id-list limits of the other calls).
MAX_JOBS_PER_ACTION = 100
# The batch-detail documentation recommends at most 10 ids per call.
MAX_IDS_PER_BATCH_DETAIL = 10
# The list filter instance_ids takes at most this many (the fact sheet).
MAX_INSTANCE_IDS = 10


def _text(value: Any) -> str | None:
    """A wire value as text, None kept (cheap: it runs for every field of every listed job)."""
    return value if value is None or value.__class__ is str else str(value)


def _said(value: Any) -> str | None:
    """A free text of the server's (a name, an error message): what it reflects of the run's
    secrets redacted (``engine.redact``)."""
    return None if value is None else redact(value if value.__class__ is str else str(value))


def wire_epoch(value: Any) -> float | None:
    """An instant the service wrote, in epoch seconds; None when it is not one for certain.

    Read: epoch milliseconds or seconds (a number, or digits as text, like ``create_time`` in
    the emulator), and ISO-8601 text with a time zone. Text without a zone ("2020-12-21
    10:57:49", the reference's create_time example) is None: the service's zone is not
    documented, and a guess could be hours off.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) or (
        isinstance(value, str) and value.isascii() and value.isdigit()
    ):
        number = float(value)
        return _plausible(number / 1000 if number >= 1e11 else number)  # ms from 1973 on
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        return None if moment.tzinfo is None else _plausible(moment.timestamp())
    except (ValueError, OverflowError, OSError):
        return None


def _plausible(epoch: float) -> float | None:
    """An instant between 2000 and 2100, else None: a server's 10^20 is no time at all."""
    return epoch if 946_684_800 <= epoch <= 4_102_444_800 else None


def _word(value: Any) -> str:
    """A short word of the server's (a status, an engine type): redacted, cheaply."""
    return redact_word(value if value.__class__ is str else str(value)) if value else ""


def _word_or_none(value: Any) -> str | None:
    return None if value is None else _word(value)


def _texts(values: Any) -> tuple[str, ...]:
    return tuple(map(str, values)) if values else ()


@dataclass(frozen=True, slots=True, kw_only=True)
class JobActions:
    """``job_action`` of a JobInfo."""

    available_actions: tuple[str, ...] = ()
    unavailable_actions: tuple[str, ...] = ()
    current_action: str | None = None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any] | None) -> JobActions:
        if not raw:
            return _NO_ACTIONS
        # A listing repeats a handful of action sets across thousands of jobs: share them.
        key = (
            _texts(raw.get("available_actions")),
            _texts(raw.get("unavailable_actions")),
            _word_or_none(raw.get("current_action")),
        )
        known = _ACTION_SETS.get(key)
        if known is None:
            known = cls(available_actions=key[0], unavailable_actions=key[1], current_action=key[2])
            if len(_ACTION_SETS) < _ACTION_SETS_KEPT:
                _ACTION_SETS[key] = known
        return known

    def to_wire(self) -> dict[str, Any]:
        return {
            "available_actions": list(self.available_actions),
            "unavailable_actions": list(self.unavailable_actions),
            "current_action": self.current_action,
        }


_NO_ACTIONS = JobActions()
_ACTION_SETS: dict[tuple[tuple[str, ...], tuple[str, ...], str | None], JobActions] = {}
_ACTION_SETS_KEPT = 256


@dataclass(frozen=True, kw_only=True)
class JobInfo:
    """One job of ``POST /v3/{project_id}/jobs``; a dual-active parent has ``children``.

    Not ``slots=True``, unlike the other wire types: ``from_wire`` runs for every listed job
    (32,000 in the 100,000-job bench) and fills the instance's ``__dict__`` in one update, where
    the frozen dataclass's ``__init__`` makes an ``object.__setattr__`` call per field (3.9 vs
    7.1 us). A job listing is short-lived, so the per-instance dict costs no lasting memory.
    """

    id: str
    name: str
    status: str
    create_time: str | None = None
    description: str | None = None
    engine_type: str | None = None
    net_type: str | None = None
    billing_tag: bool | None = None
    job_direction: str | None = None
    db_use_type: str | None = None
    task_type: str | None = None
    node_new_framework: bool | None = None
    error_msg: str | None = None
    job_action: JobActions = field(default_factory=JobActions)
    children: tuple[JobInfo, ...] = ()

    @property
    def is_dual_active_parent(self) -> bool:
        return bool(self.children)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> JobInfo:
        # Called for every job of every listing kept by the selection: no helper calls per
        # field beyond the cheap ``_text`` (``redact`` for the free texts), and one update of
        # the instance dict (see above).
        get = raw.get
        billing = get("billing_tag")
        node_new = get("node_newFramework")  # camel-case F, as the SDK spells it
        children = get("children")
        job = object.__new__(cls)
        job.__dict__.update(
            id=str(raw["id"]),
            name=redact(str(get("name") or "")),
            status=_word(get("status")),
            create_time=_word_or_none(get("create_time")),
            description=_said(get("description")),
            engine_type=_word_or_none(get("engine_type")),
            net_type=_word_or_none(get("net_type")),
            billing_tag=None if billing is None else bool(billing),
            job_direction=_word_or_none(get("job_direction")),
            db_use_type=_word_or_none(get("db_use_type")),
            task_type=_word_or_none(get("task_type")),
            node_new_framework=None if node_new is None else bool(node_new),
            error_msg=_said(get("error_msg")),
            job_action=JobActions.from_wire(get("job_action")),
            children=tuple(map(cls.from_wire, children)) if children else (),
        )
        return job

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "create_time": self.create_time,
            "description": self.description,
            "engine_type": self.engine_type,
            "net_type": self.net_type,
            "billing_tag": self.billing_tag,
            "job_direction": self.job_direction,
            "db_use_type": self.db_use_type,
            "task_type": self.task_type,
            "node_newFramework": self.node_new_framework,
            "job_action": self.job_action.to_wire(),
            "children": [c.to_wire() for c in self.children],
        }
        if self.error_msg is not None:
            wire["error_msg"] = self.error_msg
        return wire


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryItem:
    """One job of a batch-retry-task request."""

    job_id: str
    is_sync_re_edit: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"job_id": self.job_id}
        if self.is_sync_re_edit:  # the API wants it only when true
            wire["is_sync_re_edit"] = True
        return wire


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusResult:
    """One entry of ``batch-status`` results (note: ``error_message``, not ``error_msg``)."""

    id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> StatusResult:
        return cls(
            id=str(raw["id"]),
            status=_word(raw.get("status")),
            error_code=_said(raw.get("error_code")),
            error_message=_said(raw.get("error_message")),
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.error_code is not None:
            wire["error_code"] = self.error_code
        if self.error_message is not None:
            wire["error_message"] = self.error_message
        return wire


class BatchOutcome(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    # Any other word: the API defines none, so nobody can say whether the job was changed.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchActionResult:
    """One entry of ``batch-retry-task`` / ``batch-pause-task`` results (``error_msg``)."""

    id: str
    status: BatchOutcome
    error_code: str | None = None
    error_msg: str | None = None
    said: str | None = None  # the status word as the service wrote it, when it was UNKNOWN

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> BatchActionResult:
        outcome = raw.get("status")
        known = _OUTCOMES.get(outcome) if isinstance(outcome, str) else None
        return cls(
            id=str(raw["id"]),
            status=BatchOutcome.UNKNOWN if known is None else known,
            error_code=_said(raw.get("error_code")),
            error_msg=_said(raw.get("error_msg")),
            said=None if known is not None else redact(repr(outcome))[:40],
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "status": self.status.value}
        if self.error_code is not None:
            wire["error_code"] = self.error_code
        if self.error_msg is not None:
            wire["error_msg"] = self.error_msg
        return wire


_OUTCOMES = {"success": BatchOutcome.SUCCESS, "failed": BatchOutcome.FAILED}


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorBody:
    """The JSON body of every 4xx/5xx answer."""

    error_code: str
    error_msg: str

    def to_wire(self) -> dict[str, str]:
        return {"error_code": self.error_code, "error_msg": self.error_msg}


# Error codes of the fact sheet the engine acts on.
ERR_PARAMETER = "DRS.M00200"
ERR_PARAMETER_EMPTY = "DRS.M00201"
ERR_PARAMETER_INVALID = "DRS.M00202"
ERR_TASK_NOT_QUERYABLE = "DRS.K02000"
ERR_TOKEN_INVALID = "APIGW.0301"
ERR_TOKEN_EXPIRED = "APIGW.0307"
ERR_SIGNATURE_INVALID = "APIGW.0303"
ERR_STATUS_FORBIDS = "DRS.M00304"
ERR_ONLY_SUBTASKS = "DRS.M00307"
ERR_JOB_NOT_FOUND = "DRS.M00289"
ERR_JOB_NOT_FOUND_ALT = "DRS.M05004"
ERR_TOO_FREQUENT = "DRS.M01503"
ERR_OPERATION_RUNNING = "DRS.M01504"
ERR_INVALID_TOKEN_403 = "DRS.M00100"
ERR_NO_PERMISSION = "DRS.M00102"
ERR_INVALID_PROJECT = "DRS.M00261"
ERR_API_NOT_FOUND = "APIGW.0101"
ERR_THROTTLED = "APIGW.0308"
ERR_SERVICE_ABNORMAL = "DRS.M00004"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobListing:
    """What one paged list call found: the jobs kept (those with the wanted statuses), how
    many distinct jobs all pages listed, and how many the service said there were."""

    jobs: list[JobInfo]
    listed: int
    total_record: int | None  # as the last page said it; None when the service did not say
    # The engine_type of every job listed, whatever its status: whether a listing without an
    # engine_type filter covered more than mysql (which OTC says the service defaults to).
    engine_types: frozenset[str] = frozenset()

    @property
    def count_disagrees(self) -> bool:
        return self.total_record is not None and self.total_record != self.listed
