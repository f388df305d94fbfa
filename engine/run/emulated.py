"""A run against the in-process emulator: the emulator seeded with the runbook's targets, and
what it saw (its own count of requests, which the run writes next to its reports)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from engine.emulator import Emulator, EmulatorConfig, ProjectSpec
from engine.emulator.accounts import demo_account
from engine.report.files import EMULATOR_STATS
from engine.run.inputs import EmulatorSettings
from engine.run.wiring import EmulatorLogin
from engine.runbook import Runbook, Target

# Projects the in-process emulator gives each discovery target (an account in one region).
DISCOVERED_PER_REGION = 2


def emulator_for(runbook: Runbook, settings: EmulatorSettings) -> Emulator:
    """An emulator serving each of the runbook's projects (once, in the target's region); with
    ``accounts:``, one emulator account per runbook account, holding its targets' projects and,
    for each discovery, ``DISCOVERED_PER_REGION`` projects of its own in that region."""
    knobs: dict[str, Any] = {
        "jobs_per_project": settings.jobs,
        "seed": settings.seed,
        "time_scale": settings.time_scale,
    }
    if not runbook.accounts:
        return Emulator(EmulatorConfig(projects=_projects(runbook.targets), **knobs))
    accounts = []
    for number, name in enumerate(runbook.accounts, start=1):
        projects = list(_projects(t for t in runbook.targets if t.account == name))
        for discovery in (d for d in runbook.discoveries if d.account == name):
            projects += _invented(name, discovery.region, settings.seed)
        accounts.append(demo_account(number, tuple(projects), settings.seed, name=name))
    return Emulator(EmulatorConfig.for_accounts(tuple(accounts), **knobs))


def _projects(targets: Iterable[Target]) -> tuple[ProjectSpec, ...]:
    seen: dict[str, ProjectSpec] = {}
    for target in targets:
        seen.setdefault(
            target.project_id,
            ProjectSpec(project_id=target.project_id, region=target.region or "cn-north-4"),
        )
    return tuple(seen.values())


def _invented(account: str, region: str, seed: int) -> list[ProjectSpec]:
    """Projects only discovery knows of, with ids drawn from the account, region and seed."""
    rng = random.Random(f"{seed}:discovered:{account}:{region}")
    return [
        ProjectSpec(project_id=f"{rng.getrandbits(128):032x}", region=region)
        for _ in range(DISCOVERED_PER_REGION)
    ]


def login_of(emulator: Emulator, number: int = 1) -> EmulatorLogin:
    """The IAM user of the emulator's account ``number`` (1-based)."""
    spec = emulator.config.accounts[number - 1]
    return EmulatorLogin(
        url=emulator.url, user=spec.user, password=spec.password, domain=spec.domain
    )


def logins_of(emulator: Emulator, runbook: Runbook) -> dict[str | None, EmulatorLogin]:
    """Each runbook account's emulator user, in the order ``emulator_for`` made them
    (``None``: a run without accounts)."""
    return {
        None: login_of(emulator),
        **{name: login_of(emulator, k) for k, name in enumerate(runbook.accounts, start=1)},
    }


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
