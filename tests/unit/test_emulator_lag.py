"""The emulator's replication-delay model and the service's own retries, on a fake clock."""

from __future__ import annotations

import math

import pytest
from fakes import FakeClock

from engine.emulator import EmulatorConfig, Fate, FaultConfig, Fleet, Job, ProjectSpec
from engine.emulator.detail import job_detail
from engine.emulator.lag import BEHIND_FLOOR_S, CATCH_UP_PER_S, FLOOR_S, PRE_START_BACKLOG_S, Lag
from engine.emulator.seeding import SELF_RETRY_AFTER_S, SERVICE_TRIES
from engine.emulator.state import ActionVerdict, WireTimes, job_info
from engine.emulator.wire import ACTION_PAUSE, ACTION_RETRY, FAILED_STATUSES, JobStatus

RUNBOOK_PROJECTS = (
    "0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10",
    "1b6d7f2a4c3e5d9f0a8b7c6d5e4f3a21",
    "2c7e8a3b5d4f6e0a1b9c8d7e6f5a4b32",
)


def default_config(**overrides: object) -> EmulatorConfig:
    return EmulatorConfig(projects=EmulatorConfig.generate_projects(3, 0), **overrides)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def delay(fleet: Fleet, job: Job) -> float:
    found = fleet.find(job.project_id, job.id)
    assert found is job
    return fleet.delay_of(job)


def status(fleet: Fleet, job: Job) -> JobStatus:
    fleet.find(job.project_id, job.id)
    return job.status


def running_job(fleet: Fleet) -> Job:
    return next(
        j
        for j in fleet.all_jobs()
        if j.status is JobStatus.INCRE_TRANSFER_STARTED
        and j.fate is None
        and j.parent_id is None
        and j.db_use_type != "cloudDataGuard"
    )


def until_running(fleet: Fleet, clock: FakeClock, job: Job, *, step: float = 0.1) -> float:
    """Advance the clock until the job runs; returns the seconds it took (bounded)."""
    for n in range(1, 200):
        clock.advance(step)
        fleet.find(job.project_id, job.id)
        if job.status is JobStatus.INCRE_TRANSFER_STARTED:
            return n * step
    raise AssertionError(f"{job.name} never ran again: {job.status}")


# --------------------------------------------------------------------------- the model


def test_a_healthy_untouched_job_runs_at_its_small_floor(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = running_job(fleet)
    first = delay(fleet, job)
    assert FLOOR_S[0] <= first <= FLOOR_S[1]
    clock.advance(600)
    assert delay(fleet, job) == first


def test_delay_rises_one_second_per_second_while_paused(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = running_job(fleet)
    floor = delay(fleet, job)
    assert fleet.pause(job.project_id, job.id) is ActionVerdict.ACCEPTED
    clock.advance(50.0)
    assert delay(fleet, job) == pytest.approx(floor + 50.0)
    clock.advance(25.0)
    assert delay(fleet, job) == pytest.approx(floor + 75.0)


def test_delay_drains_after_resume_down_to_the_floor(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = running_job(fleet)
    floor = delay(fleet, job)
    fleet.pause(job.project_id, job.id)
    clock.advance(100.0)
    fleet.retry(job.project_id, job.id)
    took = until_running(fleet, clock, job)
    at_resume = delay(fleet, job)
    # It kept rising while restarting, then drains at the catch-up rate.
    assert at_resume == pytest.approx(floor + 100.0 + took, abs=CATCH_UP_PER_S * 0.1 + 0.01)
    clock.advance(1.0)
    assert delay(fleet, job) == pytest.approx(at_resume - CATCH_UP_PER_S, abs=0.01)
    clock.advance(10.0)
    assert delay(fleet, job) == floor


def test_a_long_failed_job_retried_at_once_is_under_a_minute_behind_within_seconds(
    clock: FakeClock,
) -> None:
    fleet = Fleet(default_config(fail_again_rate=0.0, stuck_rate=0.0), clock=clock)
    job = next(
        j
        for j in fleet.all_jobs()
        if j.status is JobStatus.INCRE_TRANSFER_FAILED
        and not j.children
        and not j.stays_behind
        and j.failed_ago_s is None
    )
    assert delay(fleet, job) == PRE_START_BACKLOG_S
    clock.advance(1.0)
    fleet.retry(job.project_id, job.id)
    took = until_running(fleet, clock, job)
    assert took <= 4.0
    clock.advance(3.0)
    assert delay(fleet, job) < 60.0  # the demo judges it within ~10 s of the run's start
    clock.advance(5.0)
    assert delay(fleet, job) <= FLOOR_S[1]


def test_a_stay_behind_job_recovers_but_never_drains_below_its_floor(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = next(j for j in fleet.all_jobs() if j.stays_behind)
    assert job.fate is Fate.RECOVER
    assert BEHIND_FLOOR_S[0] <= job.lag.floor_s <= BEHIND_FLOOR_S[1]  # type: ignore[union-attr]
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.ACCEPTED
    until_running(fleet, clock, job)
    clock.advance(30.0)
    behind = delay(fleet, job)
    assert behind > 60.0
    clock.advance(3600.0)
    assert delay(fleet, job) == behind == job.lag.floor_s  # type: ignore[union-attr]


def test_a_lag_spike_jumps_a_running_job_behind_and_then_drains(clock: FakeClock) -> None:
    faults = FaultConfig(lag_spike_rate=1.0, lag_spike_s=300.0)
    fleet = Fleet(default_config(faults=faults), clock=clock)
    job = running_job(fleet)
    floor = job.lag.floor_s  # type: ignore[union-attr]
    assert delay(fleet, job) == pytest.approx(floor + 300.0)
    paused = next(j for j in fleet.all_jobs() if j.status is JobStatus.PAUSING and not j.children)
    before = paused.lag.delay(clock())  # type: ignore[union-attr]
    assert delay(fleet, paused) == before  # only a running job spikes
    # The spike drains like any backlog (read through the model: a read would spike again).
    clock.advance(300.0 / CATCH_UP_PER_S)
    assert job.lag.delay(clock()) == pytest.approx(floor)  # type: ignore[union-attr]


def test_lag_spikes_are_drawn_from_the_seed() -> None:
    def spikes(seed: int) -> list[bool]:
        clock = FakeClock(0.0)
        faults = FaultConfig(lag_spike_rate=0.3, lag_spike_s=100.0)
        fleet = Fleet(default_config(seed=seed, faults=faults), clock=clock)
        job = running_job(fleet)
        seen = []
        for _ in range(40):
            clock.advance(100.0)  # drained between reads
            seen.append(delay(fleet, job) > 50.0)
        return seen

    assert spikes(4) == spikes(4)
    assert any(spikes(4))
    assert not all(spikes(4))


def test_lag_turn_is_continuous_and_ignores_a_repeated_state() -> None:
    lag = Lag(floor_s=2.0, catch_up_per_s=10.0, at=0.0, delay_s=2.0, running=False)
    assert lag.delay(8.0) == 10.0
    lag.turn(8.0, running=False)
    assert (lag.at, lag.delay_s) == (0.0, 2.0)
    lag.turn(8.0, running=True)
    assert lag.delay(8.5) == 5.0
    assert lag.delay(100.0) == 2.0


# --------------------------------------------------------------------------- quotas


def retryable(fleet: Fleet, project: str) -> list[Job]:
    return [j for j in fleet.all_jobs() if j.project_id == project and j.fate is not None]


@pytest.mark.parametrize("rate", [0.1, 0.3, 1.0])
def test_stay_behind_jobs_are_dealt_by_quota(clock: FakeClock, rate: float) -> None:
    fleet = Fleet(default_config(behind_rate=rate), clock=clock)
    for project in fleet.projects:
        jobs = retryable(fleet, project)
        behind = [j for j in jobs if j.stays_behind]
        candidates = [
            j
            for j in jobs
            if j.fate is Fate.RECOVER
            and j.failed_ago_s is None
            and j.status is not JobStatus.FULL_TRANSFER_FAILED
        ]
        assert len(behind) == min(len(candidates), math.ceil(len(jobs) * rate - 1e-9))
        assert all(j.fate is Fate.RECOVER for j in behind)


def test_the_new_draws_change_no_generated_job(clock: FakeClock) -> None:
    def snapshot(fleet: Fleet) -> list[tuple[str, str, str, object]]:
        return [(j.id, j.name, j.status.value, j.fate) for j in fleet.all_jobs()]

    plain = Fleet(default_config(behind_rate=0.0, self_retry_rate=0.0), clock=clock)
    dealt = Fleet(default_config(behind_rate=0.5, self_retry_rate=0.5), clock=clock)
    assert snapshot(plain) == snapshot(dealt)
    assert not any(j.stays_behind or j.failed_ago_s for j in plain.all_jobs())


def test_the_default_demo_fleets_hold_laggards_and_one_or_two_service_retries(
    clock: FakeClock,
) -> None:
    runbook = tuple(ProjectSpec(project_id=p, region="cn-north-4") for p in RUNBOOK_PROJECTS)
    for projects in (EmulatorConfig.generate_projects(3, 0), runbook):
        fleet = Fleet(EmulatorConfig(projects=projects), clock=clock)
        assert sum(j.stays_behind for j in fleet.all_jobs()) >= 2
        assert 1 <= sum(j.failed_ago_s is not None for j in fleet.all_jobs()) <= 2


# --------------------------------------------------------------------------- service retries


def service_retried(fleet: Fleet) -> Job:
    return next(j for j in fleet.all_jobs() if j.failed_ago_s is not None)


def test_the_service_retries_a_recently_failed_job_by_itself(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = service_retried(fleet)
    failed_status = job.status
    assert failed_status in FAILED_STATUSES
    assert job.changed_at == pytest.approx(clock() - job.failed_ago_s)  # type: ignore[operator]
    times = WireTimes(0.0, fleet.started)
    detail = job_detail(job, times, region="cn-north-4")
    assert float(detail["update_time"]) / 1000 == pytest.approx(job.changed_at)
    begins = job.changed_at + SELF_RETRY_AFTER_S  # type: ignore[operator]
    clock.now = begins - 0.01
    fleet.find(job.project_id, job.id)
    assert job.status is failed_status
    clock.now = begins
    fleet.find(job.project_id, job.id)
    assert job.status is JobStatus.STARTJOBING
    actions = job_info(job)["job_action"]
    assert actions["current_action"] == ACTION_RETRY
    assert ACTION_RETRY not in actions["available_actions"]
    # Our retry while the service's is under way is refused like any retry of a non-failed job.
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.STATUS_FORBIDS
    until_running(fleet, clock, job)
    assert job.retries_accepted == 0
    assert job.started_at == begins


def test_a_client_retry_before_the_services_calls_the_service_retry_off(
    clock: FakeClock,
) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = service_retried(fleet)
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.ACCEPTED
    until_running(fleet, clock, job)
    clock.advance(SELF_RETRY_AFTER_S)
    fleet.find(job.project_id, job.id)
    assert job.status is JobStatus.INCRE_TRANSFER_STARTED
    assert job.retries_accepted == 1
    assert job.service_retry_at is None


def watch_statuses(fleet: Fleet, clock: FakeClock, job: Job, seconds: float) -> list[JobStatus]:
    """The job's statuses over ``seconds`` of fleet time in 0.1 s steps, repeats collapsed."""
    seen = [status(fleet, job)]
    for _ in range(round(seconds / 0.1)):
        clock.advance(0.1)
        if (now := status(fleet, job)) is not seen[-1]:
            seen.append(now)
    return seen


def test_with_no_try_working_the_service_fails_three_times_then_leaves_the_job_failed(
    clock: FakeClock,
) -> None:
    fleet = Fleet(default_config(self_retry_success_rate=0.0), clock=clock)
    job = service_retried(fleet)
    failed_status = job.status
    # Each try begins 20 s after the failure before it and takes at most 4 s: 3 tries are over
    # within 3 x 24 s of the first failure; watch a minute more to see nothing else happen.
    seen = watch_statuses(fleet, clock, job, 3 * (SELF_RETRY_AFTER_S + 4.0) + 60.0)
    assert seen.count(JobStatus.STARTJOBING) == SERVICE_TRIES == 3
    assert seen.count(failed_status) == 1 + SERVICE_TRIES  # failed before, and after each try
    assert seen[-1] is failed_status
    assert job.service_tries_begun(clock()) == 3
    assert [b - a for a, b in zip(job.service_tries, job.service_tries[1:], strict=False)] == [
        pytest.approx(SELF_RETRY_AFTER_S, abs=4.0)
    ] * 2
    assert job.retries_accepted == 0
    assert job_info(job)["job_action"]["current_action"] is None
    # Failed for good: a client retry is taken again, and the job's own fate decides it.
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.ACCEPTED
    until_running(fleet, clock, job)


def test_with_every_try_working_the_service_recovers_the_job_at_its_first_try(
    clock: FakeClock,
) -> None:
    fleet = Fleet(default_config(self_retry_success_rate=1.0), clock=clock)
    job = service_retried(fleet)
    seen = watch_statuses(fleet, clock, job, 3 * (SELF_RETRY_AFTER_S + 4.0) + 60.0)
    assert seen.count(JobStatus.STARTJOBING) == 1
    assert seen[-1] is JobStatus.INCRE_TRANSFER_STARTED
    assert job.service_tries_begun(clock()) == 1


def test_the_tries_that_work_are_drawn_from_the_seed(clock: FakeClock) -> None:
    def tries(seed: int) -> list[int]:
        config = default_config(seed=seed, self_retry_rate=1.0, self_retry_success_rate=0.5)
        return [len(j.service_tries) for j in Fleet(config, clock=clock).all_jobs()]

    assert tries(3) == tries(3)
    assert {1, 2, 3} <= set(tries(3) + tries(4))  # some work at once, some later, some never


def test_a_client_retry_between_the_services_tries_calls_the_rest_off(clock: FakeClock) -> None:
    fleet = Fleet(default_config(self_retry_success_rate=0.0), clock=clock)
    job = service_retried(fleet)
    seen = [status(fleet, job)]
    for _ in range(400):  # until the first try has failed (bounded: 40 s)
        clock.advance(0.1)
        seen.append(status(fleet, job))
        if seen[-1] in FAILED_STATUSES and JobStatus.STARTJOBING in seen:
            break
    assert job.service_tries_begun(clock()) == 1
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.ACCEPTED
    until_running(fleet, clock, job)
    clock.advance(3 * SELF_RETRY_AFTER_S)
    assert status(fleet, job) is JobStatus.INCRE_TRANSFER_STARTED
    assert (job.service_retry_at, job.service_tries_begun(clock())) == (None, 1)


def test_a_recently_failed_job_carries_only_its_few_seconds_of_backlog(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = service_retried(fleet)
    assert delay(fleet, job) == pytest.approx(job.lag.floor_s + job.failed_ago_s)  # type: ignore[union-attr,operator]


# --------------------------------------------------------------------------- pause delay


def test_a_pause_takes_pause_delay_s_to_show(clock: FakeClock) -> None:
    fleet = Fleet(default_config(pause_delay_s=5.0), clock=clock)
    job = running_job(fleet)
    assert fleet.pause(job.project_id, job.id) is ActionVerdict.ACCEPTED
    clock.advance(4.9)
    assert status(fleet, job) is JobStatus.INCRE_TRANSFER_STARTED
    actions = job_info(job)["job_action"]
    assert actions["current_action"] == ACTION_PAUSE
    assert ACTION_PAUSE not in actions["available_actions"]
    assert fleet.pause(job.project_id, job.id) is ActionVerdict.STATUS_FORBIDS
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.STATUS_FORBIDS
    clock.advance(0.1)
    assert status(fleet, job) is JobStatus.PAUSING
    assert job_info(job)["job_action"]["current_action"] is None
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.ACCEPTED


def test_without_a_pause_delay_a_pause_shows_at_once(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = running_job(fleet)
    fleet.pause(job.project_id, job.id)
    assert job.status is JobStatus.PAUSING


def test_bad_rates_and_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="behind_rate"):
        default_config(behind_rate=1.5)
    with pytest.raises(ValueError, match="pause_delay_s"):
        default_config(pause_delay_s=-1.0)
