"""Time the emulator's listing: 30 pages of 100 from one project of 3,000 jobs (issue 18).

The emulator runs in this process (``engine.emulator.Emulator`` on loopback) and one aiohttp
client asks ``POST /v3/{project_id}/jobs`` for pages 1..30 of ``db_use_type: sync``, then, as a
reference for what HTTP and the client cost alone, 30 one-id ``batch-status`` calls. Each of
``--repeat`` rounds reports wall and process CPU (emulator and client together: one process);
the medians and the spread are printed. It measures; it asserts nothing::

    python bench/emulator_listing.py --repeat 7
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

from engine.emulator import Emulator, EmulatorConfig

PAGES = 30


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


async def _timed(call: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await call()
    return time.perf_counter() - wall, time.process_time() - cpu


async def measure(repeat: int, jobs: int) -> None:
    config = EmulatorConfig(
        projects=EmulatorConfig.generate_projects(1, 7), jobs_per_project=jobs, seed=7
    )
    async with Emulator(config) as emu, aiohttp.ClientSession() as session:
        project = config.projects[0].project_id
        headers = {"X-Auth-Token": emu.token, "Content-Type": "application/json"}
        listed: list[int] = []

        async def pages() -> None:
            listed.clear()
            for page in range(1, PAGES + 1):
                body = {"db_use_type": "sync", "cur_page": page, "per_page": 100}
                url = f"{emu.url}/v3/{project}/jobs"
                async with session.post(url, json=body, headers=headers) as resp:
                    listed.append(len((await resp.json())["jobs"]))

        async def statuses() -> None:
            for _ in range(PAGES):
                body = {"jobs": ["none"], "page_req": {"cur_page": 1, "per_page": 1}}
                url = f"{emu.url}/v3/{project}/jobs/batch-status"
                async with session.post(url, json=body, headers=headers) as resp:
                    await resp.read()

        for name, call in (("listing", pages), ("batch-status", statuses)):
            rounds = [await _timed(call) for _ in range(repeat)]
            walls = sorted(r[0] * 1000 for r in rounds)
            cpus = sorted(r[1] * 1000 for r in rounds)
            _say(
                f"{name:>12}: {PAGES} calls, wall median {statistics.median(walls):.0f} ms "
                f"({walls[0]:.0f}-{walls[-1]:.0f}), CPU median {statistics.median(cpus):.0f} ms "
                f"({cpus[0]:.0f}-{cpus[-1]:.0f}) over {repeat} rounds"
            )
        _say(f"listing returned {sum(listed)} jobs in {PAGES} pages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(measure(args.repeat, args.jobs))


if __name__ == "__main__":
    main()
