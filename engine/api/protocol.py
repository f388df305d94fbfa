"""The seam between the actions and the DRS API: the calls a run makes, as a protocol.

``engine.api.client.DrsClient`` is the real implementation; tests pass fakes. The executor takes
one ready client per target and never builds a transport itself (``engine.run.wiring`` does).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from engine.api.progress import ProgressResult
from engine.api.types import BatchActionResult, JobListing, RetryItem, StatusResult

if TYPE_CHECKING:
    from engine.api.client import JobDetail


class DrsApi(Protocol):
    """The DRS calls of one project; every method may raise ``engine.errors.ApiError``."""

    async def list_jobs(
        self,
        *,
        db_use_type: str,
        engine_type: str | None = None,
        status: str | None = None,
        name: str | None = None,
        net_type: str | None = None,
        statuses: Collection[str] | None = None,
        tags: Mapping[str, str] | None = None,
        enterprise_project_id: str | None = None,
        instance_ids: Sequence[str] | None = None,
    ) -> JobListing: ...

    async def batch_status(self, job_ids: Sequence[str]) -> list[StatusResult]: ...

    async def batch_progress(self, job_ids: Sequence[str]) -> list[ProgressResult]: ...

    async def batch_detail(self, job_ids: Sequence[str]) -> list[JobDetail]: ...

    async def batch_retry(self, jobs: Sequence[RetryItem]) -> list[BatchActionResult]: ...

    async def batch_pause(
        self, job_ids: Sequence[str], *, pause_mode: str
    ) -> list[BatchActionResult]: ...
