"""A run against the in-process emulator: the emulator seeded with the runbook's targets, and
what it saw (its own count of requests, which the run writes next to its reports)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from engine.emulator import Emulator, EmulatorConfig, ProjectSpec
from engine.report.files import EMULATOR_STATS
from engine.run.inputs import EmulatorSettings
from engine.run.wiring import EmulatorLogin
from engine.runbook import Runbook


def emulator_for(runbook: Runbook, settings: EmulatorSettings) -> Emulator:
    """An emulator serving each of the runbook's projects (once, in the target's region)."""
    seen: dict[str, ProjectSpec] = {}
    for target in runbook.targets:
        seen.setdefault(
            target.project_id,
            ProjectSpec(project_id=target.project_id, region=target.region or "cn-north-4"),
        )
    config = EmulatorConfig(
        projects=tuple(seen.values()),
        jobs_per_project=settings.jobs,
        seed=settings.seed,
        time_scale=settings.time_scale,
    )
    return Emulator(config)


def login_of(emulator: Emulator) -> EmulatorLogin:
    config = emulator.config
    return EmulatorLogin(
        url=emulator.url, user=config.user, password=config.password, domain=config.domain
    )


async def emulator_stats(url: str) -> dict[str, Any]:
    """``GET /_emulator/stats`` of a running emulator (loopback: it is this process's own)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_emulator/stats") as resp:
        stats: dict[str, Any] = await resp.json()
        return stats


def write_stats(directory: Path, stats: Mapping[str, Any]) -> tuple[Path, str]:
    """Write the stats next to the reports; the file and a line saying what the emulator saw."""
    path = directory / EMULATOR_STATS
    path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    per_job = stats.get("retry_requests_per_job", {})
    paused = stats.get("pause_requests_per_job", {})
    said = (
        f"emulator saw {stats.get('mutating_requests', 0)} mutating request(s); retries named "
        f"{len(per_job)} job(s), at most {max(per_job.values(), default=0)} time(s) each"
    )
    if paused:
        said += f"; pauses named {len(paused)} job(s), at most {max(paused.values())} time(s) each"
    return path, said
