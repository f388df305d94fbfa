"""The emulator's own wire vocabulary, written from ``../shared/drs-api.md`` and the official
SDK's models (``huaweicloudsdkdrs`` 3.1.219), never from the engine's client.

The emulator is an independent model of the service: if it shared the client's wire types, a
misspelt key would be mirrored on both sides and every test would pass (``node_new_framework``
did, where the SDK reads ``node_newFramework``). So this module repeats what the client also
knows — statuses, error codes, limits — on purpose, and the contract tests hold both to the
SDK. Nothing here imports ``engine.api``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """Every DRS job status of the fact sheet ("Job statuses")."""

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
    HEALTHY = "healthy"
    IN_PROGRESS = "in_progress"
    FAILED = "failed"
    PAUSED = "paused"
    ENDED = "ended"


S = JobStatus
_BY_GROUP: dict[StatusGroup, frozenset[JobStatus]] = {
    StatusGroup.HEALTHY: frozenset(
        {
            S.FULL_TRANSFER_STARTED,
            S.FULL_TRANSFER_COMPLETE,
            S.INCRE_TRANSFER_STARTED,
            S.CHILD_TRANSFER_STARTED,
            S.CHILD_TRANSFER_COMPLETE,
        }
    ),
    StatusGroup.IN_PROGRESS: frozenset(
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
    ),
    StatusGroup.FAILED: frozenset(
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
    ),
    StatusGroup.PAUSED: frozenset({S.PAUSING}),
    StatusGroup.ENDED: frozenset(
        {
            S.RELEASE_RESOURCE_COMPLETE,
            S.RELEASE_CHILD_TRANSFER_COMPLETE,
            S.DELETED,
            S.NODE_UPGRADE_COMPLETE,
        }
    ),
}
HEALTHY_STATUSES = _BY_GROUP[StatusGroup.HEALTHY]
IN_PROGRESS_STATUSES = _BY_GROUP[StatusGroup.IN_PROGRESS]
FAILED_STATUSES = _BY_GROUP[StatusGroup.FAILED]
PAUSED_STATUSES = _BY_GROUP[StatusGroup.PAUSED]
ENDED_STATUSES = _BY_GROUP[StatusGroup.ENDED]
_GROUP_OF = {status: group for group, members in _BY_GROUP.items() for status in members}


def status_group(status: JobStatus) -> StatusGroup:
    return _GROUP_OF[status]


class DbUseType(StrEnum):
    MIGRATION = "migration"
    SYNC = "sync"
    CLOUD_DATA_GUARD = "cloudDataGuard"


class Language(StrEnum):
    """``X-Language``: the language of ``error_msg``."""

    EN_US = "en-us"
    ZH_CN = "zh-cn"


# job_action names
ACTION_START = "START"
ACTION_PAUSE = "PAUSE"
ACTION_RETRY = "RETRY"
ACTION_SWITCH_OVER = "SWITCH_OVER"
ACTION_DELETE = "DELETE"
ALL_ACTIONS = (ACTION_START, ACTION_PAUSE, ACTION_RETRY, ACTION_SWITCH_OVER, ACTION_DELETE)

# Documented limits
MAX_PER_PAGE = 100
MAX_IDS_PER_NAME_FILTER = 100
MAX_IDS_PER_BATCH_STATUS = 100
MAX_INSTANCE_IDS = 10  # the list filter instance_ids (SDK QueryJobsReq)

# Error codes ("Errors" in the fact sheet)
ERR_PARAMETER = "DRS.M00200"
ERR_PARAMETER_EMPTY = "DRS.M00201"
ERR_PARAMETER_INVALID = "DRS.M00202"
ERR_TASK_NOT_QUERYABLE = "DRS.K02000"  # unverified: in no published table
ERR_TOKEN_INVALID = "APIGW.0301"  # also every AK/SK failure but clock skew (Huawei's FAQs)
ERR_TOKEN_EXPIRED = "APIGW.0307"
ERR_SIGNATURE_INVALID = "APIGW.0303"  # seen with an X-Sdk-Date more than 15 minutes off
ERR_DUPLICATE_IDS = "DRS.M00301"
ERR_STATUS_FORBIDS = "DRS.M00304"
ERR_ONLY_SUBTASKS = "DRS.M00307"
ERR_INVALID_PROJECT = "DRS.M00261"
ERR_NO_PERMISSION = "DRS.M00102"
ERR_API_NOT_FOUND = "APIGW.0101"
ERR_THROTTLED = "APIGW.0308"
ERR_SERVICE_ABNORMAL = "DRS.M00004"
ERR_TOO_FREQUENT = "DRS.M01503"  # 400: operation too frequent (back off)
ERR_OPERATION_RUNNING = "DRS.M01504"  # 202: another operation is running on the task
ERR_JOB_NOT_FOUND = "DRS.M00289"  # what the Terraform provider sees for a deleted job


def job_action_json(available: tuple[str, ...], current: str | None) -> dict[str, Any]:
    """``job_action`` of a listed job (SDK ``JobActions``)."""
    return {
        "available_actions": list(available),
        "unavailable_actions": [a for a in ALL_ACTIONS if a not in available],
        "current_action": current,
    }


def status_json(
    job_id: str, status: str, *, error_code: str | None = None, error_message: str | None = None
) -> dict[str, Any]:
    """One batch-status result (SDK ``QueryJobStatusResp``: ``error_message``)."""
    wire: dict[str, Any] = {"id": job_id, "status": status}
    if error_code is not None:
        wire["error_code"] = error_code
    if error_message is not None:
        wire["error_message"] = error_message
    return wire


def action_result_json(
    job_id: str, *, success: bool, error_code: str | None = None, error_msg: str | None = None
) -> dict[str, Any]:
    """One batch-retry-task / batch-pause-task result (``error_msg``, not ``error_message``)."""
    wire: dict[str, Any] = {"id": job_id, "status": "success" if success else "failed"}
    if error_code is not None:
        wire["error_code"] = error_code
    if error_msg is not None:
        wire["error_msg"] = error_msg
    return wire


def error_json(code: str, message: str) -> dict[str, Any]:
    """The body of every 4xx/5xx answer of DRS and the gateway."""
    return {"error_code": code, "error_msg": message}
