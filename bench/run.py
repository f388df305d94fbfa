"""Measure drs-runbook against its emulator: wall, CPU, RSS, API calls against the minimum.

Issue 7 groundwork: this measures, it does not optimise. For every scenario and every repeat it
starts ``runbook emulator`` as a separate process (as tests/integration/harness.py does), writes a
select -> retry -> verify runbook for the projects the emulator serves (modelled on
runbooks/retry-failed-jobs.yaml), runs ``runbook run FILE --endpoint URL --yes -q --report-dir``
as a child process with the emulator's pre-issued token in ``DRS_AUTH_TOKEN``, and reads the
child's rusage (``os.wait4``), ``report.json`` and ``GET /_emulator/stats``. It prints medians.

It is not a pass/fail test and not a load generator: every request goes to the emulator on
loopback, and every child process is bounded by ``--run-timeout``.

Run it with the project's Python (the one ``engine`` is installed into)::

    python bench/run.py                       # scenarios a,b,d,d-adaptive,e, 3 repeats each
    python bench/run.py --scenario a,b --repeat 5 --time-scale 0.05
    python bench/run.py --scenario b --repeat 1 --profile   # + one cProfile'd engine run

The minimum number of calls (docs/performance.md explains it) per project p:

    list     sum over the runbook's db_use_types t of max(1, ceil(n_pt / 100))
             (n_pt: top-level jobs of type t; per_page <= 100, db_use_type is required)
    retry    ceil(selected_p / 100)            (batch_size <= 100)
    status   a lower bound: ceil(accepted_p / 100) (each job needs one status answer after
             its retry, at most 100 ids a call: one call after the last verdict)
             and, beside it, what a fixed poll cadence makes:
             ceil(accepted_p / 100) + (R_p - 1) * ceil(max(1, timed_out_p) / 100)
             R_p = floor(W_p / poll) + 1 poll rounds, W_p = the step's timeout when a job timed
             out, else the time from the verify step's start to its last verdict
    iam      0 (a ready token; IAM password auth would need one per project)

Under a gateway rate limit r per route (d, e, f) the least wall time a run can take (the bound):

    recovery  the fleet's own recovery time: the verify timeout when a job timed out (it never
              recovers), else the longest time from a verify step's start to its last verdict
    bound     max((list + 1) / r, retry / r) + recovery   (minimum calls: the list route serves
              every listing, the last target's retry follows its own listing, and its jobs then
              take the recovery time; routes have budgets of their own, as at the gateway)
    bound, one budget   (list + retry) / r + recovery   (every route paced by one bucket, as the
              client paced an endpoint before issue 18)

Scenario i (accounts and shards) serves two accounts from one emulator (``--accounts 2``, the
gateway's limit per account per route) and runs the fleet three ways, each against an emulator
of its own: two shard processes in parallel ``--shard-by account`` (then ``runbook merge``), one
process, and two shards ``--shard-by target``. Every account has its own budgets, so the bound
is the formula above per account, over that account's targets, and a layout's bound the largest
of its accounts'; a shard's bound is over its own targets' calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
MODEL_RUNBOOK = REPO / "runbooks" / "retry-failed-jobs.yaml"
ENGINE_MAIN = "from engine.cli import main; main()"
# cProfile.run catches the SystemExit of main() and still writes the profile.
PROFILED_MAIN = (
    "import cProfile, sys; from engine.cli import main; cProfile.run('main()', sys.argv.pop(1))"
)

# Limits from /work/shared/drs-api.md (and the engine's own batch_size cap), not from the engine.
MAX_PER_PAGE = 100  # list jobs: per_page 0..100
MAX_RETRY_BATCH = 100  # batch-retry-task: batch_size <= 100
MAX_IDS_PER_STATUS = 100  # batch-status: <= 100 ids per call

DB_USE_TYPES = ("migration", "sync", "cloudDataGuard")
ROUTE_LIST = "POST /v3/{project_id}/jobs"
ROUTE_STATUS = "POST /v3/{project_id}/jobs/batch-status"
ROUTE_RETRY = "POST /v3/{project_id}/jobs/batch-retry-task"
ROUTE_TOKENS = "POST /v3/auth/tokens"
ROUTES = {"list": ROUTE_LIST, "retry": ROUTE_RETRY, "status": ROUTE_STATUS, "iam": ROUTE_TOKENS}
VERDICT_EVENTS = frozenset({"recovered", "failed_again", "not_found"})
# Credentials that would win over DRS_AUTH_TOKEN (engine.api.credentials): never passed on.
CREDENTIAL_PREFIXES = ("HUAWEICLOUD_SDK_", "DRS_IAM_", "DRS_AUTH_TOKEN")

MODEL_POLL_S = 2.0  # runbooks/retry-failed-jobs.yaml: verify timeout 30s, poll_interval 2s
MODEL_TIMEOUT_S = 30.0
MAX_CONCURRENCY = 64  # the runbook schema's maximum
DEFAULT_TIME_SCALE = 0.1
SHARDS = 2  # scenario i's shard processes
# Scenario i's layouts: how the fleet is split between processes (--shard-by; None: one process).
LAYOUTS: dict[str, str | None] = {"by_account": "account", "one": None, "by_target": "target"}
LAYOUT_TITLES = {
    "by_account": f"{SHARDS} shards --shard-by account",
    "one": "one process",
    "by_target": f"{SHARDS} shards --shard-by target",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One fleet and gateway setting to measure; ``time_scale`` None means the global default."""

    key: str
    title: str
    projects: int
    jobs: int
    faults: str = ""
    emulator_rate_limit: str | None = None
    runbook_rate_limit: str | None = None
    time_scale: float | None = None
    # The verify step polls at a fixed pace (max_poll_interval = poll_interval) instead of
    # backing off while nothing changes.
    fixed_poll: bool = False
    # More than one: the emulator serves that many accounts of ``projects`` each, and the fleet
    # is run in every one of ``LAYOUTS`` (scenario i).
    accounts: int = 1


# Latency and the gateway's rate limit are real time, so the runbook keeps its real cadence
# (30 s timeout, 2 s polls) here: scaling it would demand 10x the request rate. d and e measure
# pacing against the gateway's limit, so their verify step keeps a fixed poll pace and its load
# stays on the gateway; "d-adaptive" is d with the default, adaptive polling (fewer calls, a
# quiet verify tail).
_RATE_LIMITED = Scenario(
    key="d",
    title="50x20 50ms 20/s, runbook 20/s",
    projects=50,
    jobs=20,
    faults="latency=50ms",
    emulator_rate_limit="20/s",
    runbook_rate_limit="20/s",
    time_scale=1.0,
    fixed_poll=True,
)
SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario(key="a", title="demo 3x20", projects=3, jobs=20),
        Scenario(key="b", title="100x100", projects=100, jobs=100),
        Scenario(key="c", title="1000x100", projects=1000, jobs=100),
        _RATE_LIMITED,
        dataclasses.replace(
            _RATE_LIMITED, key="d-adaptive", title="as d, adaptive polling", fixed_poll=False
        ),
        dataclasses.replace(
            _RATE_LIMITED,
            key="e",
            title="50x20 50ms 20/s, no runbook limit",
            runbook_rate_limit=None,
        ),
        # Issue 18: the schedule at the rate limit's bound, and the cost of many small targets
        # against few large ones (the same 10,000 jobs).
        dataclasses.replace(
            _RATE_LIMITED, key="f", title="50x200 50ms 20/s, runbook 20/s", jobs=200
        ),
        Scenario(key="g", title="5000x2", projects=5000, jobs=2),
        Scenario(key="h", title="10x1000", projects=10, jobs=1000),
        dataclasses.replace(
            _RATE_LIMITED,
            key="i",
            title="2 accounts x 25x200 50ms 20/s, shards",
            projects=25,
            jobs=200,
            accounts=2,
        ),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How every scenario is run (from the command line)."""

    python: str
    seed: int
    time_scale: float | None
    batch_size: int
    verify_timeout_s: float | None
    poll_s: float | None
    concurrency: int | None
    run_timeout_s: float
    keep: Path | None
    max_delay_s: float | None = None  # the verify step's max_delay (None: not judged)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One scenario's resolved settings: what the emulator and the runbook are given."""

    scenario: Scenario
    time_scale: float
    verify_timeout_s: float
    poll_s: float
    concurrency: int
    batch_size: int
    max_delay_s: float | None = None

    @staticmethod
    def of(scenario: Scenario, settings: Settings) -> Plan:
        if settings.time_scale is not None:
            scale = settings.time_scale
        elif scenario.time_scale is not None:
            scale = scenario.time_scale
        else:
            scale = DEFAULT_TIME_SCALE
        return Plan(
            scenario=scenario,
            time_scale=scale,
            verify_timeout_s=settings.verify_timeout_s or round(MODEL_TIMEOUT_S * scale, 3),
            poll_s=settings.poll_s or round(MODEL_POLL_S * scale, 3),
            concurrency=settings.concurrency
            or min(scenario.projects * scenario.accounts, MAX_CONCURRENCY),
            batch_size=settings.batch_size,
            max_delay_s=settings.max_delay_s,
        )

    @property
    def rate_per_route(self) -> float | None:
        """The gateway's limit per route in requests/s (``--rate-limit N/s``), if any."""
        text = self.scenario.emulator_rate_limit
        return float(text.removesuffix("/s")) if text else None


@dataclass(slots=True, kw_only=True)
class Sample:
    """The figures of one run of one scenario."""

    ok: bool
    note: str = ""
    values: dict[str, float] = field(default_factory=dict)


class BenchError(Exception):
    """A run could not be measured (the emulator did not start, a child timed out, ...)."""


# --------------------------------------------------------------------------- processes


def _child_env(token: str | None, credentials: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CREDENTIAL_PREFIXES)}
    env.update(credentials or {})
    env["NO_COLOR"] = "1"
    # `python -c` would put the working directory (this checkout) first on sys.path, so
    # --python PY would measure this checkout's engine, not the one PY has installed.
    env["PYTHONSAFEPATH"] = "1"
    # Bytecode caching on, as on an operator's machine: some sandboxes set this, and every
    # engine process would then compile the engine from source first.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if token is not None:
        env["DRS_AUTH_TOKEN"] = token
    return env


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a running process, in clock ticks (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields_after_name = stat.rsplit(")", 1)[1].split()
    return int(fields_after_name[11]) + int(fields_after_name[12])


class EmulatorProcess:
    """``runbook emulator`` in a child process; ``described`` is its first stdout line."""

    def __init__(self, settings: Settings, plan: Plan, log: Path) -> None:
        scenario = plan.scenario
        command = [
            settings.python,
            "-c",
            ENGINE_MAIN,
            "emulator",
            "--port",
            "0",
            "--projects",
            str(scenario.projects),
            "--jobs",
            str(scenario.jobs),
            "--seed",
            str(settings.seed),
            "--time-scale",
            f"{plan.time_scale:g}",
        ]
        if scenario.faults:
            command += ["--faults", scenario.faults]
        if scenario.emulator_rate_limit:
            command += ["--rate-limit", scenario.emulator_rate_limit]
        if scenario.accounts > 1:
            command += ["--accounts", str(scenario.accounts)]
        self._log = log.open("w", encoding="utf-8")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, text=True, env=_child_env(None)
        )
        try:
            self.described = self._first_line(timeout_s=300.0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - started
        self.url: str = self.described["url"]
        self.token: str = self.described["token"]

    def _first_line(self, timeout_s: float) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        if not ready:
            raise BenchError(f"the emulator printed nothing in {timeout_s:g}s")
        line = stdout.readline()
        if not line:
            raise BenchError(f"the emulator exited ({self.proc.wait()}) before describing itself")
        described: dict[str, Any] = json.loads(line)
        return described

    def cpu_s(self) -> float:
        return _cpu_ticks(self.proc.pid) / os.sysconf("SC_CLK_TCK")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=120) as response:  # loopback only
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildUsage:
    """What ``os.wait4`` says about a finished child."""

    exit_code: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    max_rss_mb: float


def run_child(
    command: Sequence[str], env: Mapping[str, str], out: Path, timeout_s: float
) -> ChildUsage:
    """Run a child to its end (SIGTERM, then SIGKILL, after ``timeout_s``); its rusage.

    The child is started by ``_Launcher``, a small process of its own: Linux counts the memory
    high-water mark of the process a child was forked from in the child's ``ru_maxrss``, and this
    bench grows to hundreds of MB once it has read a large run's report.
    """
    return run_children([command], env, [out], timeout_s)[0]


def run_children(
    commands: Sequence[Sequence[str]],
    env: Mapping[str, str],
    outs: Sequence[Path],
    timeout_s: float,
) -> list[ChildUsage]:
    """``run_child`` for several children at once (each from a launcher of its own)."""
    launchers = [_launcher(number) for number in range(len(commands))]
    for launcher, command, out in zip(launchers, commands, outs, strict=True):
        launcher.submit(
            {
                "command": list(command),
                "env": dict(env),
                "cwd": str(REPO),
                "stdout": str(out),
                "stderr": str(out.with_suffix(".err")),
                "timeout_s": timeout_s,
            }
        )
    results = [launcher.result() for launcher in launchers]
    for command, result in zip(commands, results, strict=True):
        if result["timed_out"]:
            raise BenchError(f"{command[3]} took longer than --run-timeout {timeout_s:g}s: stopped")
    return [
        ChildUsage(
            exit_code=result["exit_code"],
            wall_s=result["wall_s"],
            cpu_user_s=result["user_s"],
            cpu_sys_s=result["sys_s"],
            max_rss_mb=result["maxrss_kib"] / 1024,  # KiB on Linux
        )
        for result in results
    ]


# Reads one JSON request per line, runs it, answers one JSON line: see run_child.
_LAUNCHER_MAIN = r"""
import json, os, signal, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["stdout"], "w") as out, open(job["stderr"], "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(job["command"], stdout=out, stderr=err, env=job["env"],
                                cwd=job["cwd"])
        deadline, timed_out = started + job["timeout_s"], False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.perf_counter() > deadline and not timed_out:
                timed_out = True
                proc.send_signal(signal.SIGTERM)
                deadline += 20.0
            elif timed_out and time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.005)
        wall = time.perf_counter() - started
    print(json.dumps({"exit_code": os.waitstatus_to_exitcode(status), "wall_s": wall,
                      "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
                      "maxrss_kib": usage.ru_maxrss, "timed_out": timed_out}), flush=True)
"""


class _Launcher:
    """The process that starts the measured children (see ``run_child``)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER_MAIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def submit(self, job: Mapping[str, Any]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        """The answer to the job submitted last (waits for the child's end)."""
        assert self._proc.stdout is not None
        answer = self._proc.stdout.readline()
        if not answer:
            raise BenchError("the launcher of measured runs died")
        result: dict[str, Any] = json.loads(answer)
        return result


_LAUNCHERS: list[_Launcher] = []


def _launcher(number: int = 0) -> _Launcher:
    while len(_LAUNCHERS) <= number:
        _LAUNCHERS.append(_Launcher())
    return _LAUNCHERS[number]


# --------------------------------------------------------------------------- the runbook


def _token_variable(account: Mapping[str, Any]) -> str:
    """The variable an account's token is in (the runbook names it, the bench sets it)."""
    return f"BENCH_{account['name'].upper().replace('-', '_')}_TOKEN"


def account_tokens(described: Mapping[str, Any]) -> dict[str, str]:
    """Every account's token by its variable, when the emulator serves several accounts."""
    accounts = described["accounts"]
    return {_token_variable(a): a["token"] for a in accounts} if len(accounts) > 1 else {}


def runbook_text(plan: Plan, described: Mapping[str, Any]) -> str:
    """retry-failed-jobs.yaml's steps, for every project the emulator serves (of every account,
    account by account, each with its token from a variable when there are several)."""
    if plan.scenario.accounts > 1:
        accounts = "accounts:\n" + "".join(
            f"  {a['name']}: {{token_env: {_token_variable(a)}}}\n" for a in described["accounts"]
        )
        projects = [(f"    account: {a['name']}\n", p) for a in described["accounts"]
                    for p in a["projects"]]  # fmt: skip
    else:
        accounts, projects = "", [("", p) for p in described["projects"]]
    targets = "".join(
        f"  - project_id: {p['project_id']}\n    region: {p['region']}\n{account}"
        for account, p in projects
    )
    rate = (
        f"rate_limit: {plan.scenario.runbook_rate_limit}\n"
        if plan.scenario.runbook_rate_limit
        else ""
    )
    fixed_pace = f"      max_poll_interval: {plan.poll_s:g}s\n" if plan.scenario.fixed_poll else ""
    if plan.max_delay_s is not None:
        fixed_pace += f"      max_delay: {plan.max_delay_s:g}s\n"
    return f"""\
# Generated by bench/run.py from {MODEL_RUNBOOK.relative_to(REPO)} (scenario {plan.scenario.key}).
version: 1
name: bench-retry-failed-jobs
concurrency: {plan.concurrency}
max_jobs: {max(50, 2 * plan.scenario.jobs)}
{rate}{accounts}targets:
{targets}steps:
  - id: select
    action: drs.select_jobs
    with:
      db_use_type: [{", ".join(DB_USE_TYPES)}]
      statuses:
        - FULL_TRANSFER_FAILED
        - INCRE_TRANSFER_FAILED
        - START_JOB_FAILED
        - CHILD_TRANSFER_FAILED
        - PAUSING
      retryable_only: true
  - id: retry
    action: drs.batch_retry
    with:
      jobs: ${{{{ steps.select.jobs }}}}
      batch_size: {plan.batch_size}
  - id: verify
    action: drs.verify_status
    timeout: {plan.verify_timeout_s:g}s
    with:
      jobs: ${{{{ steps.retry.accepted }}}}
      poll_interval: {plan.poll_s:g}s
{fixed_pace}"""


# --------------------------------------------------------------------------- the minimum


def _step(target: Mapping[str, Any], step_id: str) -> Mapping[str, Any]:
    return next((s for s in target["steps"] if s["id"] == step_id), {})


def minimum_calls(
    report: Mapping[str, Any], fleet: Iterable[Mapping[str, Any]], plan: Plan
) -> dict[str, int]:
    """The fewest calls the run's work needs, per endpoint (formula in the module docstring)."""
    top_level: Counter[tuple[str, str]] = Counter(
        (job["project_id"], job["db_use_type"]) for job in fleet if job["parent_id"] is None
    )
    minimum = {
        "list": 0,
        "retry": 0,
        "retry_at_batch_size": 0,
        "status": 0,
        "status_lower": 0,
        "iam": 0,
    }
    for target in report["targets"]:
        project = target["project_id"]
        minimum["list"] += sum(
            max(1, math.ceil(top_level[(project, t)] / MAX_PER_PAGE)) for t in DB_USE_TYPES
        )
        selected = int(target["totals"].get("selected", 0))
        minimum["retry"] += math.ceil(selected / MAX_RETRY_BATCH)
        minimum["retry_at_batch_size"] += math.ceil(selected / plan.batch_size)
        minimum["status"] += _minimum_status_calls(target, plan)
        accepted = int(_step(target, "retry").get("outputs", {}).get("accepted", 0))
        minimum["status_lower"] += math.ceil(accepted / MAX_IDS_PER_STATUS)
    return minimum


def recovery_s(report: Mapping[str, Any], plan: Plan) -> float:
    """The fleet's own recovery time (module docstring): what no schedule can shorten."""
    longest = 0.0
    for target in report["targets"]:
        verify = _step(target, "verify")
        if int(verify.get("outputs", {}).get("timed_out", 0)):
            return plan.verify_timeout_s
        start = float(verify.get("started_t", 0.0))
        verdicts = [
            event["t"]
            for job in target["jobs"]
            for event in job["events"]
            if event.get("step") == "verify" and event["kind"] in VERDICT_EVENTS
        ]
        longest = max(longest, max(verdicts, default=start) - start)
    return longest


def bound_s(minimum: Mapping[str, int], recovery: float, rate: float) -> float:
    """The least wall under a limit ``rate`` per route (the module docstring's bound)."""
    return max((minimum["list"] + 1) / rate, minimum["retry"] / rate) + recovery


def bound_of_accounts(
    targets: Sequence[Mapping[str, Any]], fleet: Sequence[Mapping[str, Any]], plan: Plan
) -> float:
    """The largest bound of the accounts of ``targets``, each over its own targets' calls (an
    account's budgets are its own); NaN without a rate limit."""
    rate = plan.rate_per_route
    if rate is None or not targets:
        return math.nan
    by_account: dict[str, list[Mapping[str, Any]]] = {}
    for target in targets:
        by_account.setdefault(target.get("account") or "", []).append(target)
    return max(
        bound_s(
            minimum_calls({"targets": own}, fleet, plan), recovery_s({"targets": own}, plan), rate
        )
        for own in by_account.values()
    )


def _minimum_status_calls(target: Mapping[str, Any], plan: Plan) -> int:
    verify = _step(target, "verify")
    accepted = int(_step(target, "retry").get("outputs", {}).get("accepted", 0))
    if not accepted or verify.get("status") != "succeeded":
        return 0
    outputs = verify.get("outputs", {})
    timed_out = int(outputs.get("timed_out", 0))
    start = float(verify.get("started_t", 0.0))
    if timed_out:
        window = plan.verify_timeout_s
    else:
        verdicts = [
            event["t"]
            for job in target["jobs"]
            for event in job["events"]
            if event.get("step") == "verify" and event["kind"] in VERDICT_EVENTS
        ]
        window = max(verdicts, default=start) - start
    rounds = math.floor(window / plan.poll_s + 1e-9) + 1
    per_round = math.ceil(max(1, timed_out) / MAX_IDS_PER_STATUS)
    return math.ceil(accepted / MAX_IDS_PER_STATUS) + (rounds - 1) * per_round


# --------------------------------------------------------------------------- one run


def measure_once(settings: Settings, plan: Plan, workdir: Path, profile: Path | None) -> Sample:
    """Start an emulator, run the engine against it once, and collect every figure (for
    scenario i: in each of ``LAYOUTS``)."""
    if plan.scenario.accounts > 1:
        return measure_layouts(settings, plan, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    emulator = EmulatorProcess(settings, plan, workdir / "emulator.log")
    try:
        runbook = workdir / "runbook.yaml"
        runbook.write_text(runbook_text(plan, emulator.described), encoding="utf-8")
        reports = workdir / "report"
        main = [settings.python, "-c", ENGINE_MAIN]
        if profile is not None:
            main = [settings.python, "-c", PROFILED_MAIN, str(profile)]
        command = [
            *main,
            "run",
            str(runbook),
            "--endpoint",
            emulator.url,
            "--yes",
            "-q",
            "--report-dir",
            str(reports),
        ]
        emu_cpu_before = emulator.cpu_s()
        usage = run_child(
            command, _child_env(emulator.token), workdir / "engine.out", settings.run_timeout_s
        )
        emu_cpu = emulator.cpu_s() - emu_cpu_before
        stats = emulator.get("/_emulator/stats")
        fleet = emulator.get("/_emulator/jobs")["jobs"]
    finally:
        emulator.stop()
    if usage.exit_code not in (0, 1):
        err = (workdir / "engine.err").read_text(encoding="utf-8").strip().splitlines()
        raise BenchError(f"runbook run exited {usage.exit_code}: {err[-1] if err else ''}")
    report = json.loads((reports / "report.json").read_text(encoding="utf-8"))
    values = _figures(plan, emulator, usage, emu_cpu, report, stats, fleet)
    written = {p.name: p.stat().st_size / 2**20 for p in reports.iterdir() if p.is_file()}
    values["report_json_mb"] = written.get("report.json", 0.0)
    values["written_mb"] = sum(written.values())
    return Sample(ok=True, values=values)


def _figures(
    plan: Plan,
    emulator: EmulatorProcess,
    usage: ChildUsage,
    emu_cpu: float,
    report: Mapping[str, Any],
    stats: Mapping[str, Any],
    fleet: Sequence[Mapping[str, Any]],
) -> dict[str, float]:
    scenario = plan.scenario
    totals = report["totals"]
    calls = report["api_calls"]
    seen = stats["requests"]
    minimum = minimum_calls(report, fleet, plan)
    cpu = usage.cpu_user_s + usage.cpu_sys_s
    jobs = scenario.projects * scenario.jobs
    drs_requests = sum(v for k, v in seen.items() if k.startswith("POST /v3/{project_id}"))
    selects = [_step(t, "select") for t in report["targets"]]
    select_phase = max((s.get("started_t", 0) + s.get("duration_s", 0) for s in selects), default=0)
    stuck = sum(1 for j in fleet if j["fate"] == "stuck" and j["retries_accepted"] > 0)
    recovery = recovery_s(report, plan)
    figures: dict[str, float] = {
        "jobs": jobs,
        "selected": totals.get("selected", 0),
        "recovered": totals.get("recovered", 0),
        "failed_again": totals.get("failed_again", 0),
        "timed_out": totals.get("timed_out", 0),
        "stuck": stuck,
        "wall_s": usage.wall_s,
        "run_wall_s": report["wall_s"],
        "process_overhead_s": usage.wall_s - report["wall_s"],
        "select_phase_s": select_phase,
        "recovery_s": recovery,
        "cpu_s": cpu,
        "cpu_user_s": usage.cpu_user_s,
        "cpu_sys_s": usage.cpu_sys_s,
        "cpu_ms_per_job": 1000 * cpu / jobs,
        "cpu_ms_per_selected": 1000 * cpu / max(1, totals.get("selected", 0)),
        "rss_mb": usage.max_rss_mb,
        "emulator_cpu_s": emu_cpu,
        "emulator_startup_s": emulator.startup_s,
        "drs_requests": drs_requests,
        "throttled": stats["throttled"],
        "engine_retries": report["api_resilience"].get("retries", 0),
        "engine_waited_s": report["api_resilience"].get("waited_s", 0.0),
        "rate_avg_per_s": drs_requests / max(report["wall_s"], 1e-9),
        "rate_peak_per_s_all": stats.get("peak_rate_per_s_all", 0),
        "rate_peak_per_s_route": max(stats.get("peak_rate_per_s", {}).values(), default=0),
        "exit_code": usage.exit_code,
    }
    for name, route in ROUTES.items():
        figures[f"calls_{name}"] = calls.get(route, 0)
        figures[f"seen_{name}"] = seen.get(route, 0)
    for name, value in minimum.items():
        figures[f"min_{name}"] = value
    rate = plan.rate_per_route
    if rate is not None:
        per_route = bound_s(minimum, recovery, rate)
        one_budget = (minimum["list"] + minimum["retry"]) / rate + recovery
        figures["bound_s"] = per_route
        figures["bound_one_budget_s"] = one_budget
        figures["wall_per_bound"] = report["wall_s"] / per_route
        figures["wall_per_bound_one_budget"] = report["wall_s"] / one_budget
    return figures


# --------------------------------------------------------------------------- accounts and shards


def measure_layouts(settings: Settings, plan: Plan, workdir: Path) -> Sample:
    """Scenario i: the fleet in each of ``LAYOUTS``, each against an emulator of its own; the
    figures of layout L are named ``L_...``."""
    values: dict[str, float] = {}
    for layout, by in LAYOUTS.items():
        figures = measure_layout(settings, plan, workdir / layout, by)
        values.update({f"{layout}_{name}": value for name, value in figures.items()})
    return Sample(ok=True, values=values)


def measure_layout(
    settings: Settings, plan: Plan, workdir: Path, by: str | None
) -> dict[str, float]:
    """Run the fleet as ``SHARDS`` shard processes in parallel ``--shard-by BY`` (None: one
    process) against one emulator, merge their reports, and collect the figures: the layout's
    (merged), each account's 429s (the emulator's stats), and each shard's (``shardN_...``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    splits = [[]] if by is None else [
        ["--shard", f"{number}/{SHARDS}", "--shard-by", by] for number in range(1, SHARDS + 1)
    ]  # fmt: skip
    runs = [workdir / f"report-{number}" for number in range(1, len(splits) + 1)]
    emulator = EmulatorProcess(settings, plan, workdir / "emulator.log")
    try:
        runbook = workdir / "runbook.yaml"
        runbook.write_text(runbook_text(plan, emulator.described), encoding="utf-8")
        commands = [
            [settings.python, "-c", ENGINE_MAIN, "run", str(runbook), "--endpoint", emulator.url,
             "--yes", "-q", "--report-dir", str(run), *split]
            for run, split in zip(runs, splits, strict=True)
        ]  # fmt: skip
        env = _child_env(None, account_tokens(emulator.described))
        outs = [run.with_suffix(".out") for run in runs]
        usages = run_children(commands, env, outs, settings.run_timeout_s)
        stats = emulator.get("/_emulator/stats")
        fleet = emulator.get("/_emulator/jobs")["jobs"]
    finally:
        emulator.stop()
    for usage, out in zip(usages, outs, strict=True):
        if usage.exit_code not in (0, 1):
            err = out.with_suffix(".err").read_text(encoding="utf-8").strip().splitlines()
            raise BenchError(f"runbook run exited {usage.exit_code}: {err[-1] if err else ''}")
    reports = [json.loads((run / "report.json").read_text(encoding="utf-8")) for run in runs]
    merged = reports[0] if by is None else merge_reports(settings, runs, workdir / "merged")
    accounts = emulator.described["accounts"]
    expected = Counter((a["name"], p["project_id"]) for a in accounts for p in a["projects"])
    seen = Counter((t["account"], t["project_id"]) for t in merged["targets"])
    bound = bound_of_accounts(merged["targets"], fleet, plan)
    # The shards start together; the merged report's span is of whole seconds (its started_at
    # and finished_at), so the layout's run wall is its slowest shard's.
    run_wall = max(r["wall_s"] for r in reports)
    totals = merged["totals"]
    figures: dict[str, float] = {
        "processes": len(usages),
        "wall_s": max(u.wall_s for u in usages),
        "run_wall_s": run_wall,
        "merged_wall_s": merged["wall_s"],
        "bound_s": bound,
        "run_per_bound": run_wall / bound,
        "cpu_s": sum(u.cpu_user_s + u.cpu_sys_s for u in usages),
        "targets": seen.total(),
        "targets_once": float(seen == expected),  # every target of the fleet, each once
        "selected": totals.get("selected", 0),
        "recovered": totals.get("recovered", 0),
        "failed_again": totals.get("failed_again", 0),
        "timed_out": totals.get("timed_out", 0),
        "drs_requests": sum(v for k, v in stats["requests"].items() if k.startswith("POST /v3/{")),
        "throttled": stats["throttled"],
        "client_throttled": merged["api_resilience"].get("throttled", 0),
        "client_retries": merged["api_resilience"].get("retries", 0),
    }
    for number, account in enumerate(accounts, 1):
        figures[f"account{number}_throttled"] = stats["accounts"][account["name"]]["throttled"]
    for number, (usage, report) in enumerate(zip(usages, reports, strict=True), 1):
        own = bound_of_accounts(report["targets"], fleet, plan)
        figures |= {
            f"shard{number}_targets": len(report["targets"]),
            f"shard{number}_wall_s": usage.wall_s,
            f"shard{number}_run_wall_s": report["wall_s"],
            f"shard{number}_bound_s": own,
            f"shard{number}_run_per_bound": report["wall_s"] / own,
            f"shard{number}_cpu_s": usage.cpu_user_s + usage.cpu_sys_s,
            f"shard{number}_client_throttled": report["api_resilience"].get("throttled", 0),
        }
    return figures


def merge_reports(settings: Settings, runs: Sequence[Path], out: Path) -> dict[str, Any]:
    """``runbook merge`` of the shards' report directories; the merged report.json."""
    command = [settings.python, "-c", ENGINE_MAIN, "merge", *map(str, runs), "--report-dir",
               str(out), "--format", "json"]  # fmt: skip
    usage = run_child(command, _child_env(None), out.with_suffix(".out"), settings.run_timeout_s)
    if usage.exit_code not in (0, 1):
        err = out.with_suffix(".err").read_text(encoding="utf-8").strip().splitlines()
        raise BenchError(f"runbook merge exited {usage.exit_code}: {err[-1] if err else ''}")
    merged: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return merged


# --------------------------------------------------------------------------- output


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _table(rows: Sequence[Sequence[str]], stream: TextIO = sys.stdout) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        stream.write(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        stream.write("\n")
        if number == 0:
            stream.write("  ".join("-" * w for w in widths) + "\n")
    stream.flush()


def median_of(samples: Sequence[Sample], key: str) -> float:
    values = [s.values[key] for s in samples if s.ok and key in s.values]
    return statistics.median(values) if values else math.nan


def _ratio(actual: float, minimum: float) -> str:
    if math.isnan(actual) or math.isnan(minimum):
        return "-"
    if minimum == 0:
        return f"{actual:.0f}/0"
    return f"{actual:.0f}/{minimum:.0f} ({actual / minimum:.2f}x)"


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def print_tables(results: Mapping[str, tuple[Plan, list[Sample]]]) -> None:
    timing: list[list[str]] = [
        ["scenario", "jobs", "sel", "wall s", "run wall s", "recovery s", "bound s",
         "run/bound", "bound 1 budget s", "run/bound 1 budget", "select s", "overhead s",
         "CPU s", "CPU ms/job", "RSS MB", "written MB", "emu CPU s", "rec/again/t.o. (stuck)", "n"],
    ]  # fmt: skip
    calls: list[list[str]] = [
        ["scenario", "list (min)", "retry (min@100)", "retry@batch min", "status (lower bound)",
         "status (fixed cadence)",
         "iam", "429s", "retries", "backoff s", "req/s avg", "peak/s all", "peak/s route",
         "limit"],
    ]  # fmt: skip
    layouts = {k: result for k, result in results.items() if result[0].scenario.accounts > 1}
    for key, (plan, samples) in results.items():
        ok = [s for s in samples if s.ok]
        label = f"{key} {plan.scenario.title}"
        if key in layouts:
            continue
        if not ok:
            notes = "; ".join(s.note for s in samples if s.note)
            timing.append([label, *["-"] * (len(timing[0]) - 2), f"0/{len(samples)}"])
            calls.append([label, *["-"] * (len(calls[0]) - 1)])
            _err(f"scenario {key}: no successful run: {notes}")
            continue

        def m(name: str, samples: Sequence[Sample] = ok) -> float:
            return median_of(samples, name)

        limit = plan.scenario.emulator_rate_limit or "none"
        if plan.scenario.runbook_rate_limit:
            limit += f" (runbook {plan.scenario.runbook_rate_limit})"
        timing.append([
            label, f"{m('jobs'):.0f}", f"{m('selected'):.0f}", _fmt(m("wall_s")),
            _fmt(m("run_wall_s")), _fmt(m("recovery_s")), _fmt(m("bound_s")),
            _fmt(m("wall_per_bound"), 3), _fmt(m("bound_one_budget_s")),
            _fmt(m("wall_per_bound_one_budget"), 3),
            _fmt(m("select_phase_s")), _fmt(m("process_overhead_s")),
            _fmt(m("cpu_s")), _fmt(m("cpu_ms_per_job"), 3), _fmt(m("rss_mb"), 0),
            _fmt(m("written_mb"), 1), _fmt(m("emulator_cpu_s")),
            f"{m('recovered'):.0f}/{m('failed_again'):.0f}/{m('timed_out'):.0f} ({m('stuck'):.0f})",
            f"{len(ok)}/{len(samples)}",
        ])  # fmt: skip
        calls.append([
            label, _ratio(m("calls_list"), m("min_list")), _ratio(m("calls_retry"), m("min_retry")),
            f"{m('min_retry_at_batch_size'):.0f}",
            _ratio(m("calls_status"), m("min_status_lower")),
            _ratio(m("calls_status"), m("min_status")),
            f"{m('calls_iam'):.0f}", f"{m('throttled'):.0f}", f"{m('engine_retries'):.0f}",
            _fmt(m("engine_waited_s"), 1), _fmt(m("rate_avg_per_s"), 1),
            f"{m('rate_peak_per_s_all'):.0f}", f"{m('rate_peak_per_s_route'):.0f}", limit,
        ])  # fmt: skip
    if len(timing) > 1:
        _out("\ntime and resources (medians)")
        _table(timing)
        _out("\nAPI calls, engine's count (minimum), and throttling (medians)")
        _table(calls)
    for key, (plan, samples) in layouts.items():
        print_layouts(key, plan, samples)


def print_layouts(key: str, plan: Plan, samples: Sequence[Sample]) -> None:
    """Scenario i's table: each layout merged, and each of its shard processes."""
    ok = [s for s in samples if s.ok]
    if not ok:
        notes = "; ".join(s.note for s in samples if s.note)
        _err(f"scenario {key}: no successful run: {notes}")
        return
    rows: list[list[str]] = [
        ["layout", "process", "targets", "wall s", "run wall s", "bound s", "run/bound",
         "429s", "429s per account", "client retries", "CPU s", "rec/again/t.o."],
    ]  # fmt: skip
    accounts = range(1, plan.scenario.accounts + 1)
    for layout, by in LAYOUTS.items():

        def m(name: str, layout: str = layout) -> float:
            return median_of(ok, f"{layout}_{name}")

        processes = 1 if by is None else SHARDS
        for number in range(1, processes + 1) if processes > 1 else ():
            rows.append([
                LAYOUT_TITLES[layout] if number == 1 else "", f"shard {number}/{processes}",
                f"{m(f'shard{number}_targets'):.0f}", _fmt(m(f"shard{number}_wall_s")),
                _fmt(m(f"shard{number}_run_wall_s")), _fmt(m(f"shard{number}_bound_s")),
                _fmt(m(f"shard{number}_run_per_bound"), 3),
                f"{m(f'shard{number}_client_throttled'):.0f} (client)", "", "",
                _fmt(m(f"shard{number}_cpu_s")), "",
            ])  # fmt: skip
        once = "each once" if m("targets_once") == 1 else "NOT each once"
        rows.append([
            LAYOUT_TITLES[layout] if processes == 1 else "",
            "merged" if processes > 1 else "the process", f"{m('targets'):.0f} {once}",
            _fmt(m("wall_s")), _fmt(m("run_wall_s")), _fmt(m("bound_s")),
            _fmt(m("run_per_bound"), 3), f"{m('throttled'):.0f}",
            "/".join(f"{m(f'account{n}_throttled'):.0f}" for n in accounts),
            f"{m('client_retries'):.0f}", _fmt(m("cpu_s")),
            f"{m('recovered'):.0f}/{m('failed_again'):.0f}/{m('timed_out'):.0f}",
        ])  # fmt: skip
    _out(
        f"\n{key} {plan.scenario.title}: each layout against an emulator of its own, medians of "
        f"{len(ok)}/{len(samples)}; bound: each account's own routes, a shard's over its own "
        "calls; a layout's run wall: its slowest shard's"
    )
    _table(rows)


def measure_validate(settings: Settings, runs: int) -> dict[str, float]:
    """Median wall time of ``runbook validate`` on the model runbook, of ``--version``, and of
    the bare interpreter (``python -c pass``) for scale.

    One unmeasured run first writes the bytecode cache (see ``_child_env``)."""
    figures: dict[str, float] = {}
    env = _child_env(None)
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        out = Path(tmp) / "out"
        for name, command in (
            ("validate", [settings.python, "-c", ENGINE_MAIN, "validate", str(MODEL_RUNBOOK)]),
            ("version", [settings.python, "-c", ENGINE_MAIN, "--version"]),
            ("python", [settings.python, "-c", "pass"]),
        ):
            walls: list[float] = []
            for attempt in range(runs + 1):
                usage = run_child(command, env, out, 120.0)
                if usage.exit_code != 0:
                    raise BenchError(f"{' '.join(command)} exited {usage.exit_code}")
                if attempt:
                    walls.append(usage.wall_s)
            figures[f"{name}_median_s"] = statistics.median(walls)
            figures[f"{name}_min_s"] = min(walls)
    return figures


def print_profile(path: Path, top: int) -> None:
    import pstats

    for order in ("cumulative", "tottime"):
        _out(f"\nprofile {path.name}: top {top} by {order}")
        stats = pstats.Stats(str(path), stream=sys.stdout)
        stats.strip_dirs().sort_stats(order).print_stats(top)


# --------------------------------------------------------------------------- main


def _scenario_keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown or not keys:
        known = ", ".join(f"{s.key} ({s.title})" for s in SCENARIOS.values())
        raise argparse.ArgumentTypeError(f"unknown scenario {unknown or text!r}; known: {known}")
    return keys


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Measure drs-runbook's engine against its emulator (issue 7).",
        epilog="Scenarios: "
        + "; ".join(f"{s.key}: {s.title}" for s in SCENARIOS.values())
        + ". Default: a,b,d,d-adaptive,e (c takes minutes).",
    )
    parser.add_argument(
        "--scenario", type=_scenario_keys, default=_scenario_keys("a,b,d,d-adaptive,e")
    )
    parser.add_argument("--repeat", type=int, default=3, help="Runs per scenario (median).")
    parser.add_argument(
        "--time-scale",
        type=_positive(float),
        help="Emulator state-machine speed-up, and the factor on the model runbook's 30 s "
        f"timeout / 2 s poll interval (default {DEFAULT_TIME_SCALE:g}; scenarios d and e "
        "keep 1.0 unless this is given).",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=100, help="The runbook's batch_size.")
    parser.add_argument("--verify-timeout", type=_positive(float), help="Seconds (overrides).")
    parser.add_argument("--poll-interval", type=_positive(float), help="Seconds (overrides).")
    parser.add_argument(
        "--concurrency", type=int, help="The runbook's concurrency (default min(projects, 64))."
    )
    parser.add_argument(
        "--run-timeout", type=_positive(float), default=900.0, help="Stop a run after this long."
    )
    parser.add_argument("--validate-runs", type=int, default=10, help="0 skips validate timing.")
    parser.add_argument(
        "--profile", action="store_true", help="One extra cProfile'd engine run per scenario."
    )
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--json", type=Path, help="Write every sample and median here.")
    parser.add_argument("--keep", type=Path, help="Keep runbooks, reports and logs under here.")
    parser.add_argument("--python", default=sys.executable, help="Python with engine installed.")
    parser.add_argument(
        "--max-delay",
        type=_positive(float),
        help="Seconds: the verify step judges replication delay (batch-progress) too.",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for number in range(SHARDS):
        _launcher(number)  # forked now, while this process is small (see run_child)
    settings = Settings(
        python=args.python,
        seed=args.seed,
        time_scale=args.time_scale,
        batch_size=args.batch_size,
        verify_timeout_s=args.verify_timeout,
        poll_s=args.poll_interval,
        concurrency=args.concurrency,
        run_timeout_s=args.run_timeout,
        keep=args.keep,
        max_delay_s=args.max_delay,
    )
    results: dict[str, tuple[Plan, list[Sample]]] = {}
    with tempfile.TemporaryDirectory(prefix="drs-bench-") as tmp:
        root = args.keep or Path(tmp)
        for key in args.scenario:
            scenario = SCENARIOS[key]
            plan = Plan.of(scenario, settings)
            samples: list[Sample] = []
            _err(
                f"scenario {key} ({scenario.title}): time scale {plan.time_scale:g}, verify "
                f"timeout {plan.verify_timeout_s:g}s, poll {plan.poll_s:g}s, concurrency "
                f"{plan.concurrency}, batch_size {plan.batch_size}"
            )
            for number in range(1, args.repeat + 1):
                try:
                    sample = measure_once(settings, plan, root / key / f"run{number}", None)
                except (BenchError, OSError, KeyError, ValueError) as exc:
                    sample = Sample(ok=False, note=f"{type(exc).__name__}: {exc}")
                    _err(f"  run {number}: failed: {sample.note}")
                else:
                    _err(f"  run {number}: {_run_line(sample.values)}")
                samples.append(sample)
            results[key] = (plan, samples)
            if args.profile and scenario.accounts == 1:  # i runs several processes: not profiled
                profile = (args.keep or REPO / "bench") / f"profile-{key}.out"
                try:
                    measure_once(settings, plan, root / key / "profiled", profile)
                except (BenchError, OSError, KeyError, ValueError) as exc:
                    _err(f"  profiled run failed: {exc}")
                else:
                    _err(f"  profile written to {profile}")
        print_tables(results)
        validate = measure_validate(settings, args.validate_runs) if args.validate_runs else {}
        if validate:
            _out(
                f"\nrunbook validate {MODEL_RUNBOOK.relative_to(REPO)}: median "
                f"{validate['validate_median_s']:.3f}s (min {validate['validate_min_s']:.3f}s) "
                f"over {args.validate_runs} runs; runbook --version: median "
                f"{validate['version_median_s']:.3f}s; the bare interpreter (python -c pass): "
                f"median {validate['python_median_s']:.3f}s"
            )
        if args.profile:
            for key in results:
                path = (args.keep or REPO / "bench") / f"profile-{key}.out"
                if path.exists():
                    print_profile(path, args.profile_top)
    if args.json:
        document = {
            "commit": _git_describe(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "validate": validate,
            "scenarios": {
                key: _scenario_json(plan, samples) for key, (plan, samples) in results.items()
            },
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    failed = any(not s.ok for _, samples in results.values() for s in samples)
    return 1 if failed else 0


def _run_line(v: Mapping[str, float]) -> str:
    if "wall_s" not in v:  # scenario i: its layouts
        return "; ".join(
            f"{title}: run wall {v[f'{k}_run_wall_s']:.2f}s ({v[f'{k}_run_per_bound']:.3f}x the "
            f"bound), {v[f'{k}_throttled']:.0f} throttled"
            for k, title in LAYOUT_TITLES.items()
        )
    return (
        f"wall {v['wall_s']:.2f}s, cpu {v['cpu_s']:.2f}s, rss {v['rss_mb']:.0f}MB, "
        f"{v['drs_requests']:.0f} requests, {v['throttled']:.0f} throttled"
    )


def _scenario_json(plan: Plan, samples: Sequence[Sample]) -> dict[str, Any]:
    settings: dict[str, Any] = _fields(plan.scenario) | {
        "time_scale": plan.time_scale,
        "verify_timeout_s": plan.verify_timeout_s,
        "poll_s": plan.poll_s,
        "concurrency": plan.concurrency,
        "batch_size": plan.batch_size,
    }
    medians = {k: median_of(samples, k) for k in _keys(samples)}
    return {
        "plan": settings,
        "samples": [{"ok": s.ok, "note": s.note, **s.values} for s in samples],
        "medians": {k: None if math.isnan(v) else v for k, v in medians.items()},
    }


def _fields(scenario: Scenario) -> dict[str, Any]:
    return {f.name: getattr(scenario, f.name) for f in dataclasses.fields(scenario)}


def _keys(samples: Sequence[Sample]) -> list[str]:
    return sorted({k for s in samples if s.ok for k in s.values})


def _git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "engine"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty engine/" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
