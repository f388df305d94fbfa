"""``runbook emulator``: serve the DRS emulator on loopback until interrupted."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import click

from engine.cli import say
from engine.emulator import Emulator, EmulatorConfig, FaultConfig, generate_accounts
from engine.emulator.accounts import MAX_ACCOUNTS
from engine.errors import UsageError
from engine.units import parse_duration, parse_rate

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--allow-non-loopback",
    is_flag=True,
    help="Allow --host to be an address other than loopback (the emulator has demo credentials).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to bind; 0 picks a free one.",
)
@click.option(
    "--accounts",
    type=click.IntRange(1, MAX_ACCOUNTS),
    default=1,
    show_default=True,
    help="Accounts (domains), each with its own user, password, AK/SK, token and projects; "
    "requests are authorised and throttled per account.",
)
@click.option(
    "--projects",
    type=click.IntRange(1, 10_000),
    default=3,
    show_default=True,
    help="Projects per account, spread over regions.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="Top-level jobs per project.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Multiply every state-transition delay.",
)
@click.option(
    "--fail-again-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.15,
    show_default=True,
    help="Share of retried jobs whose first retry fails again (within a few seconds).",
)
@click.option(
    "--behind-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.1,
    show_default=True,
    help="Share of each project's retryable jobs that recover but stay 90-600 s behind "
    "(batch-progress incre_trans_delay); at least one per project when above 0.",
)
@click.option(
    "--self-retry-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.15,
    show_default=True,
    help="Share (rounded down) of each project's retryable jobs that failed seconds before the "
    "start and that the service retries by itself, up to 3 times, each try 20 s after the "
    "failure before it.",
)
@click.option(
    "--self-retry-success-rate",
    type=click.FloatRange(0.0, 1.0),
    default=1.0,
    show_default=True,
    help="Chance that each of the service's own tries works (drawn per job under --seed); "
    "0: all 3 fail and the job stays failed until a client retries it.",
)
@click.option(
    "--pause-delay",
    metavar="DURATION",
    help="How long an accepted pause takes to show PAUSING, e.g. 5s (the job keeps its running "
    "status meanwhile); default 0: at once.",
)
@click.option(
    "--parent-refusal",
    type=click.Choice(["per_job", "request"]),
    default="per_job",
    show_default=True,
    help="How a dual-active parent in batch-retry-task is refused: a per-job failure "
    "in a 200, or a 400 for the whole request.",
)
@click.option(
    "--parent-status",
    type=click.Choice(["worst-child", "own"]),
    default="worst-child",
    show_default=True,
    help="What a dual-active parent's status shows (no source says): its worst child's, or "
    "its own, which its children never move (it stays INCRE_TRANSFER_FAILED).",
)
@click.option(
    "--faults",
    default="",
    metavar="LIST",
    help="Injected faults, e.g. latency=50ms,error_rate=0.05,error_status=422,reset_rate=0.02,"
    "answer_delay=2s,lost_response_rate=0.02,slow_rate=0.01,slow=3s; lag spikes of running "
    "jobs read by batch-progress: lag_spike_rate=0.1,lag_spike=5m; whole-request refusals of "
    "batch-retry-task / batch-pause-task: too_frequent_rate=0.1 (400 DRS.M01503), "
    "busy_rate=0.1 (202 DRS.M01504). Deterministic under --seed.",
)
@click.option(
    "--rate-limit",
    metavar="RATE",
    help="Throttle each API per account, e.g. 20/s (429 APIGW.0308).",
)
@click.option(
    "--token-ttl",
    metavar="DURATION",
    help="Lifetime of IAM tokens, e.g. 5s (then 401 APIGW.0307); default 24h.",
)
@click.option(
    "--expire-static-token",
    is_flag=True,
    help="Let the pre-issued token expire after --token-ttl too.",
)
def emulator(
    host: str,
    allow_non_loopback: bool,
    port: int,
    accounts: int,
    projects: int,
    jobs: int,
    seed: int,
    time_scale: float,
    fail_again_rate: float,
    behind_rate: float,
    self_retry_rate: float,
    self_retry_success_rate: float,
    pause_delay: str | None,
    parent_refusal: str,
    parent_status: str,
    faults: str,
    rate_limit: str | None,
    token_ttl: str | None,
    expire_static_token: bool,
) -> None:
    """Serve the DRS emulator until interrupted.

    Its one line on stdout is a JSON object: url, projects, token, user, password, domain,
    ak, sk (the first account's), and accounts (every account: name, domain, domain_id, user,
    password, ak, sk, token, projects); where it listens is said on stderr, in the log format.
    It binds 127.0.0.1 unless told otherwise.
    """
    if host not in LOOPBACK_HOSTS and not allow_non_loopback:
        raise UsageError(
            f"--host {host} is not a loopback address; the emulator serves demo credentials, "
            "add --allow-non-loopback if you really mean it"
        )
    try:
        config = EmulatorConfig.for_accounts(
            generate_accounts(accounts, projects, seed),
            jobs_per_project=jobs,
            seed=seed,
            time_scale=time_scale,
            fail_again_rate=fail_again_rate,
            behind_rate=behind_rate,
            self_retry_rate=self_retry_rate,
            self_retry_success_rate=self_retry_success_rate,
            pause_delay_s=0.0 if pause_delay is None else parse_duration(pause_delay),
            parent_refusal="request" if parent_refusal == "request" else "per_job",
            parent_status="own" if parent_status == "own" else "worst_child",
            faults=FaultConfig.parse(faults),
            rate_limit_per_s=None if rate_limit is None else parse_rate(rate_limit),
            token_ttl_s=86400.0 if token_ttl is None else parse_duration(token_ttl),
            expire_static_token=expire_static_token,
        )
    except ValueError as exc:
        raise UsageError(f"emulator settings: {exc}") from exc
    asyncio.run(_serve_emulator(config, host, port))


async def _serve_emulator(config: EmulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator(config, host=host, port=port) as emu:
        click.echo(json.dumps(emu.describe()))
        sys.stdout.flush()
        say(f"DRS emulator listening on {emu.url} (IAM at {emu.url}/v3/auth/tokens)", url=emu.url)
        say(f"stats: GET {emu.url}/_emulator/stats; stop with Ctrl-C")
        await stop.wait()
