"""The emulator's ``batch-detail`` view of a job: every field of the SDK's ``QueryJobResp``.

The key set is the SDK model's (``huaweicloudsdkdrs`` 3.1.219, 63 keys; the nested
``Endpoint``, ``InstInfo`` ... whole too), written here from the model and its docstrings, not
imported: the contract tests hold the two together. A field the emulator knows (status, times,
instances, network, direction, the failure) carries its value; a field it models nothing for
is ``null`` (an object, a string) or ``[]`` (a list), as a service with nothing to say would
send. A few plain settings take the value a console-made task usually has (``struct_trans``,
``index_trans`` true; ``conflict_policy`` ``ignore`` for migration and DR, ``overwrite`` for
sync): the emulator's choice, nothing reads them.

Nothing here draws from a random generator: the values derived per job or project (the
replication instance's address, VPC, subnet and security group ids) are hashes of the ids, so
no seeded fleet changes. No secret is ever answered: ``db_password``, ``ssl_cert_password`` and
``ssl_cert_key`` are always ``null`` (the emulator holds none; the service is not known to
echo them).
"""

from __future__ import annotations

import uuid
import zlib
from typing import Any

from engine.emulator.state import Job, WireTimes
from engine.emulator.wire import FAILED_STATUSES, DbUseType, JobStatus

# The database engines at either end of a task, by engine_type (the SDK's Endpoint.db_type
# values), and the port each listens on by default.
_ENDS: dict[str, tuple[str, str]] = {
    "mysql": ("mysql", "mysql"),
    "postgresql": ("postgresql", "postgresql"),
    "gaussdbv5": ("gaussdbv5", "gaussdbv5"),
    "mysql-to-kafka": ("mysql", "kafka"),
    "cloudDataGuard-mysql": ("mysql", "mysql"),
}
_PORTS = {"mysql": 3306, "postgresql": 5432, "gaussdbv5": 8000, "kafka": 9092}
# InstInfo.status: the replication instance is gone once the task released its resources.
_INSTANCE_GONE = frozenset({JobStatus.RELEASE_RESOURCE_COMPLETE, JobStatus.DELETED})
_VOLUMES_GB = (50, 100, 200)
_NAMESPACE = uuid.UUID("6f1c2a9e-3b7d-4e8f-9a0b-1c2d3e4f5a6b")  # the emulator's own ids


def _derived_id(*parts: str) -> str:
    """A stable UUID for a resource the emulator only names (VPC, subnet, EIP ...)."""
    return str(uuid.uuid5(_NAMESPACE, ":".join(parts)))


def _address(seed_text: str, prefix: str) -> str:
    h = zlib.crc32(seed_text.encode())
    return f"{prefix}.{h % 256}.{(h >> 8) % 254 + 1}"


def _endpoint(job: Job, *, source: bool, region: str, network: dict[str, str]) -> dict[str, Any]:
    """``source_endpoint`` / ``target_endpoint`` (SDK ``Endpoint``, 24 keys)."""
    labels = job.labels
    db_type = _ENDS.get(job.engine_type, ("mysql", "mysql"))[0 if source else 1]
    return {
        "db_type": db_type,
        "az_code": f"{region}a",
        "region": region,
        "inst_id": labels.source_instance_id if source else labels.target_instance_id,
        "vpc_id": network["vpc_id"],
        "subnet_id": network["subnet_id"],
        "security_group_id": network["security_group_id"],
        "project_id": job.project_id,
        "db_name": None,
        "db_password": None,  # never answered
        "db_port": _PORTS[db_type],
        "db_user": None,
        "inst_name": None,
        "ip": labels.source_ip if source else labels.target_ip,
        "mongo_ha_mode": None,
        "safe_mode": None,
        "ssl_cert_password": None,  # never answered
        "ssl_cert_check_sum": None,
        "ssl_cert_key": None,  # never answered
        "ssl_cert_name": None,
        "ssl_link": False,
        "topic": job.name if db_type == "kafka" else None,
        "cluster_mode": None,
        "kafka_security_config": None,
    }


def _inst_info(job: Job, status: JobStatus) -> dict[str, Any]:
    """``inst_info`` (SDK ``InstInfo``): the task's replication instance."""
    h = zlib.crc32(job.id.encode())
    eip = job.net_type == "eip"
    return {
        "engine_type": job.engine_type,
        "inst_type": "high",
        "ip": _address(f"{job.id}:instance", "192.168"),
        "public_ip": _address(f"{job.id}:eip", "100.85") if eip else None,
        "start_time": None,  # no scheduled start
        "status": "deleted" if status in _INSTANCE_GONE else "active",
        "volume_size": _VOLUMES_GB[h % len(_VOLUMES_GB)],
    }


def job_detail(job: Job, times: WireTimes, *, region: str) -> dict[str, Any]:
    """One ``batch-detail`` result: every key of the SDK's ``QueryJobResp``.

    ``update_time`` is when the job last changed (a retry or pause accepted, a transition) and
    ``actual_start_time`` when it last started, both as epoch milliseconds in text: the
    reference does not show their format (an unverified choice; the client reads zoned ISO
    text too). ``create_time`` is ``YYYY-MM-DD hh:mm:ss``, as in the listing. The failure
    (``failed_reason``, ``error_code``, ``error_message``) is there while a job that is not a
    dual-active parent is failed, ``null`` otherwise. ``children`` are sub-jobs that failed to
    bind an EIP, not the job's sub-tasks (the fact sheet): the emulator has none.
    """
    status = job.current_status()
    changed = times.before_start(job) if job.changed_at is None else job.changed_at
    started = changed if job.started_at is None else job.started_at
    failed = status in FAILED_STATUSES and not job.is_dual_active_parent
    child = job.parent_id is not None
    dr = job.db_use_type is DbUseType.CLOUD_DATA_GUARD
    sync = job.db_use_type is DbUseType.SYNC
    network = {
        name: _derived_id(job.project_id, name)
        for name in ("vpc_id", "subnet_id", "security_group_id")
    }
    mysql_family = _ENDS.get(job.engine_type, ("", ""))[0] == "mysql"
    return {
        "id": job.id,
        "parent_id": job.parent_id,
        "name": job.name,
        "status": status.value,
        "description": job.description,
        "create_time": job.create_time,
        "task_type": job.task_type,
        "source_endpoint": _endpoint(job, source=True, region=region, network=network),
        "dmq_endpoint": None,
        "source_sharding": [],
        "target_endpoint": _endpoint(job, source=False, region=region, network=network),
        "net_type": job.net_type,
        "failed_reason": job.failure_reason if failed else None,
        "inst_info": _inst_info(job, status),
        "actual_start_time": times.wire(started),
        "full_transfer_complete_time": None,  # the emulator does not keep that moment
        "update_time": times.wire(changed),
        "job_direction": job.job_direction,
        "db_use_type": job.db_use_type.value,
        "need_restart": False,
        "is_target_readonly": not sync,
        "conflict_policy": "overwrite" if sync else "ignore",
        "filter_ddl_policy": "",  # "": no DDL filtered (the SDK's value list)
        "speed_limit": [],  # no flow control
        "schema_type": "Tungsten" if mysql_family else None,
        "node_num": 1,
        "object_switch": sync,
        "master_job_id": job.parent_id,
        "full_mode": None,
        "struct_trans": True,
        "index_trans": True,
        "replace_definer": mysql_family,
        "migrate_user": False,
        "sync_database": False,
        "error_code": job.failure_code if failed else None,
        "error_message": job.failure_message if failed else None,
        "target_root_db": None,
        "az_code": f"{region}a",
        "vpc_id": network["vpc_id"],
        "subnet_id": network["subnet_id"],
        "security_group_id": network["security_group_id"],
        "multi_write": dr,  # every DR task of the emulator is dual-active (parent or child)
        "support_ip_v6": False,
        "inherit_id": None,
        "gtid": None,
        "alarm_notify": None,  # no SMN alarm subscribed
        "incre_start_position": None,
        "is_multi_az": False,
        "az_name": "AZ1",
        "master_az": None,
        "slave_az": None,
        "node_role": ("master" if job.job_direction == "up" else "slave") if child else None,
        "period_order": None,  # pay-per-use: no yearly/monthly order
        "object_infos": [],
        "original_job_direction": job.job_direction,
        "data_transformation": None,
        "tags": [{"key": k, "value": v} for k, v in job.labels.tags],  # SDK list[Tag]
        "public_ip_list": [],
        "bind_public_ip_state": None,
        "children": [],
        "is_open_fast_clean": False,
        "job_kernel_direction": job.job_direction if dr else None,
        "sync_mode": "TABLE_LEVEL" if sync else None,
    }
