"""Plan files: what a plan would send, written down to be reviewed, approved, and applied.

``runbook plan FILE --out PLAN.json`` writes one; ``runbook apply PLAN.json`` runs the runbook
it names sending only the jobs it lists, as ``terraform plan -out`` / ``apply`` do. A plan file
holds:

    plan_version   1
    created_at     when the plan was made (UTC, ISO-8601)
    runbook        the file's path, name and sha256: apply refuses a changed runbook
    params, overrides, shard   what the plan was made with; apply uses exactly these
    targets        project id, region and name of each target
    planned        project id -> mutating step id -> [{id, name, status}]: the jobs each step
                   would send, with the status each was planned on
    plan_hash      sha256 of the canonical JSON of everything above: a plan edited after it was
                   made (or one of another runbook) is refused

Secret params are never written (a runbook with one cannot be planned to a file, as it cannot
be resumed). Apply refuses, as usage errors (exit 2), a file that is not a plan, a plan whose
hash does not match, one older than its ``max_age`` (default 1 h), and one whose runbook
changed since; it then treats each planned job as approved and leaves alone, as ``drifted``,
any job whose status moved since the plan, or that the plan does not list (but for one the
selection's settle wait saw the service bring back itself, which ends ``recovered_by_service``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from engine.bounded import FileRefusedError, read_file
from engine.errors import UsageError
from engine.ledger import WOULD_KINDS
from engine.report.document import Report
from engine.run.inputs import GUARD_RAILS, Inputs, TargetLimit, as_bound, read_bytes
from engine.run.journal import is_secret_param, runbook_digest
from engine.run.result import Planned
from engine.runbook.params import MAX_GUARD_RAIL
from engine.units import describe_seconds

PLAN_VERSION = 1
# A plan "made" further in the future than this is refused (clocks differ a little).
FUTURE_TOLERANCE_S = 300.0
DEFAULT_MAX_AGE_S = 3600.0
MAX_PLAN_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedPlan:
    """A plan file, read back and checked."""

    path: Path
    plan_hash: str
    created_at: datetime
    runbook_path: Path
    runbook_sha256: str
    params: Mapping[str, Any]
    overrides: Mapping[str, int]
    shard: str | None
    planned: Planned
    limit: TargetLimit
    where: Mapping[str, Any]

    @property
    def jobs(self) -> int:
        return sum(len(jobs) for steps in self.planned.values() for jobs in steps.values())


def plan_document(
    report: Report,
    inputs: Inputs,
    where: Mapping[str, Any],
    offered: Mapping[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """The plan file of a plan's report, its hash included; ``where`` says what it was made
    against (``{"emulator": bool, "endpoint": str | None}``): apply must go to the same."""
    secret = sorted(name for name in inputs.params if is_secret_param(name))
    if secret:
        raise UsageError(
            f"the param '{secret[0]}' is a secret, which a plan file does not keep; "
            "plan without --out, or pass the secret through the environment"
        )
    planned: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for target in report.targets:
        steps: dict[str, list[dict[str, Any]]] = {}
        for job in target.jobs:
            for event in job.events:
                if event["kind"] in WOULD_KINDS:
                    steps.setdefault(event["step"], []).append(
                        {
                            "id": job.id,
                            "name": job.name,
                            "status": job.last_status or "",
                            "job_action": {
                                "available_actions": list((offered or {}).get(job.id, ()))
                            },
                        }
                    )
        planned[target.project_id] = steps
    body: dict[str, Any] = {
        "plan_version": PLAN_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runbook": {
            "path": str(Path(inputs.path).resolve()),
            "name": inputs.runbook.name,
            "sha256": runbook_digest(inputs.source),
        },
        "params": dict(inputs.params),
        "overrides": dict(inputs.overrides),
        "shard": inputs.shard,
        "limit": inputs.limit.as_json(),
        "where": dict(where),
        "targets": [
            {"project_id": t.project_id, "region": t.region, "name": t.name}
            for t in inputs.runbook.targets
        ],
        "planned": planned,
    }
    return {**body, "plan_hash": _hash(body)}


def write_plan(path: Path, document: Mapping[str, Any]) -> None:
    """Write the plan file whole (a temporary name, then a rename), or raise UsageError."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        temporary.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write the plan file {path}: {exc.strerror or exc}") from None


def read_plan(path: Path, *, max_age_s: float = DEFAULT_MAX_AGE_S) -> SavedPlan:
    """A plan file, checked: whole, unedited, fresh enough, of an unchanged runbook."""
    try:
        raw = read_file(path, limit=MAX_PLAN_BYTES)
    except FileRefusedError as exc:
        raise UsageError(f"cannot read the plan file {path}: {exc.reason}") from None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UsageError(
            f"{path}: not a plan file (not JSON); make one with `runbook plan FILE --out`"
        ) from None
    if not isinstance(document, dict) or document.get("plan_version") != PLAN_VERSION:
        raise UsageError(f"{path}: not a plan file of this version (plan_version {PLAN_VERSION})")
    body = {k: v for k, v in document.items() if k != "plan_hash"}
    if document.get("plan_hash") != _hash(body):
        raise UsageError(
            f"{path}: its plan_hash does not match its contents: the plan was edited after it "
            "was made; make a new one with `runbook plan FILE --out`"
        )
    try:
        created = datetime.fromisoformat(document["created_at"])
        runbook = document["runbook"]
        _check_types(document, created)
        saved = SavedPlan(
            path=path,
            plan_hash=document["plan_hash"],
            created_at=created,
            runbook_path=Path(runbook["path"]),
            runbook_sha256=runbook["sha256"],
            params=dict(document["params"]),
            overrides={k: int(v) for k, v in document["overrides"].items()},
            shard=document["shard"],
            limit=TargetLimit.from_json(document.get("limit")),
            where=dict(document["where"]),
            planned={
                project: {
                    step: {job["id"]: job["status"] for job in jobs} for step, jobs in steps.items()
                }
                for project, steps in document["planned"].items()
            },
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path}: a malformed plan file ({exc!r})") from None
    age = (datetime.now(UTC) - created).total_seconds()
    if age < -FUTURE_TOLERANCE_S:
        raise UsageError(f"{path}: the plan was made in the future ({created.isoformat()})")
    if age > max_age_s:
        raise UsageError(
            f"{path}: the plan is {describe_seconds(round(age))} old, older than --max-age "
            f"{describe_seconds(max_age_s)}; the fleet may have changed since: make a new plan"
        )
    source = saved.runbook_path
    if runbook_digest(read_bytes(source)) != saved.runbook_sha256:  # as the parser reads it
        raise UsageError(
            f"{path}: the runbook {source} changed since the plan was made; make a new plan of it"
        )
    return saved


def planned_inputs(saved: SavedPlan) -> Inputs:
    """The runbook as the plan was made of it: its (unchanged) file, params, guard rails and
    shard."""
    return as_bound(
        saved.runbook_path,
        params=saved.params,
        overrides=saved.overrides,
        shard=saved.shard,
        limit=saved.limit,
    )


def _check_types(document: Mapping[str, Any], created: datetime) -> None:
    """The fields apply trusts, of the types ``plan_document`` writes (TypeError if not)."""
    if created.tzinfo is None:
        raise TypeError("created_at has no time zone")

    def strings(value: object) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    limit = document.get("limit") or {}
    if not (
        isinstance(limit, dict)
        and strings(limit.get("only", []))
        and strings(limit.get("skip", []))
    ):
        raise TypeError("limit must hold lists of target names")
    if document["shard"] is not None and not isinstance(document["shard"], str):
        raise TypeError("shard must be text or null")
    overrides = document["overrides"]
    if not isinstance(overrides, dict) or any(
        name not in GUARD_RAILS
        or isinstance(v, bool)
        or not isinstance(v, int)
        or not 0 <= v <= MAX_GUARD_RAIL
        for name, v in overrides.items()
    ):
        raise TypeError("overrides must be guard rails with whole values in range")
    if not isinstance(document["params"], dict) or not isinstance(document["where"], dict):
        raise TypeError("params and where must be mappings")
    for steps in document["planned"].values():
        for jobs in steps.values():
            if not all(isinstance(j["id"], str) and isinstance(j["status"], str) for j in jobs):
                raise TypeError("planned jobs need a text id and status")


def _hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
