"""The emulator's seeded fleet and its clock-driven state machine, driven by a fake clock."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from fakes import FakeClock

from engine.emulator import EmulatorConfig, Fate, Fleet, Job, ProjectSpec
from engine.emulator.state import ActionVerdict, RetryVerdict, available_actions, job_info
from engine.emulator.wire import (
    ACTION_PAUSE,
    ACTION_RETRY,
    FAILED_STATUSES,
    HEALTHY_STATUSES,
    DbUseType,
    JobStatus,
)


def default_config(**overrides: object) -> EmulatorConfig:
    return EmulatorConfig(projects=EmulatorConfig.generate_projects(3, 0), **overrides)  # type: ignore[arg-type]


def fleet_snapshot(fleet: Fleet) -> list[dict[str, object]]:
    return [
        {**job_info(job), "fate": job.fate}
        for project in fleet.projects
        for job in fleet.top_level_jobs(project)
    ]


def read(fleet: Fleet, job: Job) -> JobStatus:
    """The job's status after the fleet applied due transitions."""
    found = fleet.find(job.project_id, job.id)
    assert found is job
    return job.status


def pick(fleet: Fleet, *, status: JobStatus, fate: Fate, child: bool = False) -> Job:
    return next(
        job
        for job in fleet.all_jobs()
        if job.status is status and job.fate is fate and (job.parent_id is not None) == child
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


# --------------------------------------------------------------------------- generation


def test_generated_projects_are_deterministic_hex_ids_with_cycling_regions() -> None:
    projects = EmulatorConfig.generate_projects(4, 7)
    assert projects == EmulatorConfig.generate_projects(4, 7)
    assert projects != EmulatorConfig.generate_projects(4, 8)
    assert all(re.fullmatch(r"[0-9a-f]{32}", p.project_id) for p in projects)
    assert [p.region for p in projects] == [
        "cn-north-4",
        "ap-southeast-1",
        "eu-west-101",
        "cn-north-4",
    ]


def test_same_seed_same_fleet_and_different_seed_different_fleet(clock: FakeClock) -> None:
    one = fleet_snapshot(Fleet(default_config(), clock=clock))
    assert one == fleet_snapshot(Fleet(default_config(), clock=clock))
    assert one != fleet_snapshot(Fleet(default_config(seed=1), clock=clock))


def test_a_project_does_not_depend_on_the_other_projects(clock: FakeClock) -> None:
    projects = EmulatorConfig.generate_projects(3, 0)
    alone = Fleet(EmulatorConfig(projects=projects[1:2]), clock=clock)
    together = Fleet(EmulatorConfig(projects=projects), clock=clock)
    pid = projects[1].project_id
    assert [j.id for j in alone.top_level_jobs(pid)] == [j.id for j in together.top_level_jobs(pid)]


def test_each_project_has_the_documented_mix(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    for project in fleet.projects:
        jobs = fleet.top_level_jobs(project)
        assert len(jobs) == 20
        statuses = Counter(j.current_status() for j in jobs)
        failed = sum(n for s, n in statuses.items() if s in FAILED_STATUSES)
        assert 3 <= failed <= 6
        assert statuses[JobStatus.PAUSING] >= 2
        assert sum(n for s, n in statuses.items() if s in HEALTHY_STATUSES) >= 10
        assert any(
            s in {JobStatus.CREATE_FAILED, JobStatus.RELEASE_RESOURCE_FAILED} for s in statuses
        )
        retryable = [
            j
            for j in fleet.all_jobs()
            if j.project_id == project and j.fate is not None and not j.is_dual_active_parent
        ]
        assert len(retryable) >= 4
        names = [j.name for j in jobs]
        assert len(set(names)) == len(names)
        assert all(re.fullmatch(r"[a-z]+-[a-z]+-(migr|sync|dr)-\d{2}", n) for n in names)
        assert all(
            re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-\w{12}", j.id)
            for j in jobs
        )


def test_every_project_has_a_dual_active_parent_whose_failed_status_also_lists_retry(
    clock: FakeClock,
) -> None:
    fleet = Fleet(default_config(), clock=clock)
    for project in fleet.projects:
        top_ids = {j.id for j in fleet.top_level_jobs(project)}
        parents = [j for j in fleet.top_level_jobs(project) if j.is_dual_active_parent]
        assert parents
        for parent in parents:
            wire = job_info(parent)
            assert wire["db_use_type"] == DbUseType.CLOUD_DATA_GUARD
            assert len(wire["children"]) == 2
            assert wire["status"] in FAILED_STATUSES
            assert ACTION_RETRY in wire["job_action"]["available_actions"]  # the trap
            children = wire["children"]
            assert any(ACTION_RETRY in c["job_action"]["available_actions"] for c in children)
            assert all(c["error_msg"] is not None for c in children)
            assert not {c["id"] for c in children} & top_ids
            for child in children:
                assert fleet.find(project, child["id"]) is not None


def test_default_fleet_for_seed_0_holds_every_fate(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    fates = Counter(j.fate for j in fleet.all_jobs() if j.fate is not None)
    assert set(fates) == set(Fate)
    # Only jobs the API would retry carry a fate; a parent never does.
    for job in fleet.all_jobs():
        will_accept = fleet.retry_verdict(job.project_id, job.id) is RetryVerdict.ACCEPTED
        assert (job.fate is not None) == will_accept


def test_fate_rates_of_zero_make_every_retry_recover(clock: FakeClock) -> None:
    fleet = Fleet(default_config(fail_again_rate=0.0, stuck_rate=0.0), clock=clock)
    assert {j.fate for j in fleet.all_jobs() if j.fate} == {Fate.RECOVER}


# --------------------------------------------------------------------------- state machine


def test_resumed_paused_job_goes_through_starting_statuses_to_incremental(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = pick(fleet, status=JobStatus.PAUSING, fate=Fate.RECOVER)

    assert fleet.retry(job.project_id, job.id) is RetryVerdict.ACCEPTED
    assert fleet.find(job.project_id, job.id) is job
    assert job.status is JobStatus.STARTJOBING
    actions = job_info(job)["job_action"]
    assert actions["available_actions"] == []
    assert actions["current_action"] == ACTION_RETRY

    seen: list[JobStatus] = [job.status]
    for _ in range(40):
        clock.advance(0.1)
        status = read(fleet, job)
        if status is not seen[-1]:
            seen.append(status)
    assert seen == [
        JobStatus.STARTJOBING,
        JobStatus.WAITING_FOR_START,
        JobStatus.INCRE_TRANSFER_STARTED,
    ]
    assert ACTION_PAUSE in job_info(job)["job_action"]["available_actions"]
    assert job.retries_accepted == 1


def test_transitions_wait_for_the_clock(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = pick(fleet, status=JobStatus.PAUSING, fate=Fate.RECOVER)
    fleet.retry(job.project_id, job.id)
    clock.advance(0.49)
    assert read(fleet, job) is JobStatus.STARTJOBING
    clock.advance(3.6)
    assert read(fleet, job) is JobStatus.INCRE_TRANSFER_STARTED


def test_time_scale_shortens_every_delay(clock: FakeClock) -> None:
    fleet = Fleet(default_config(time_scale=0.05), clock=clock)
    job = pick(fleet, status=JobStatus.PAUSING, fate=Fate.RECOVER)
    fleet.retry(job.project_id, job.id)
    clock.advance(0.2)
    assert read(fleet, job) is JobStatus.INCRE_TRANSFER_STARTED


def test_retried_full_transfer_failure_restarts_the_full_transfer(clock: FakeClock) -> None:
    fleet = Fleet(default_config(fail_again_rate=0.0, stuck_rate=0.0), clock=clock)
    job = pick(fleet, status=JobStatus.FULL_TRANSFER_FAILED, fate=Fate.RECOVER)
    fleet.retry(job.project_id, job.id)
    clock.advance(4.0)
    assert read(fleet, job) is JobStatus.FULL_TRANSFER_STARTED


def test_fail_again_fails_once_then_the_second_retry_recovers(clock: FakeClock) -> None:
    fleet = Fleet(default_config(fail_again_rate=1.0), clock=clock)
    job = pick(fleet, status=JobStatus.INCRE_TRANSFER_FAILED, fate=Fate.FAIL_AGAIN)
    assert job.fate is Fate.FAIL_AGAIN

    fleet.retry(job.project_id, job.id)
    clock.advance(4.0)
    assert read(fleet, job) is JobStatus.INCRE_TRANSFER_FAILED
    assert ACTION_RETRY in job_info(job)["job_action"]["available_actions"]

    assert fleet.retry(job.project_id, job.id) is RetryVerdict.ACCEPTED
    clock.advance(4.0)
    assert read(fleet, job) is JobStatus.INCRE_TRANSFER_STARTED
    assert job.retries_accepted == 2


def test_stuck_job_stays_waiting_for_start_forever(clock: FakeClock) -> None:
    fleet = Fleet(default_config(stuck_rate=1.0, fail_again_rate=0.0), clock=clock)
    job = pick(fleet, status=JobStatus.PAUSING, fate=Fate.STUCK)
    fleet.retry(job.project_id, job.id)
    clock.advance(1e6)
    assert read(fleet, job) is JobStatus.WAITING_FOR_START
    assert fleet.retry(job.project_id, job.id) is RetryVerdict.STATUS_FORBIDS


def test_dr_children_retry_to_incremental_and_the_parent_follows(clock: FakeClock) -> None:
    """DR children run through the ordinary statuses: CHILD_TRANSFER_* are re-edit sub-task
    statuses (the fact sheet), so a retried child lands in INCRE_TRANSFER_STARTED."""
    fleet = Fleet(default_config(fail_again_rate=0.0, stuck_rate=0.0), clock=clock)
    parent = next(j for j in fleet.all_jobs() if j.is_dual_active_parent)
    assert fleet.retry(parent.project_id, parent.id) is RetryVerdict.DUAL_ACTIVE_PARENT
    for child in parent.children:
        if child.fate is not None:
            assert fleet.retry(child.project_id, child.id) is RetryVerdict.ACCEPTED
    assert parent.current_status() is JobStatus.STARTJOBING
    clock.advance(4.0)
    fleet.find(parent.project_id, parent.id)
    assert {c.status for c in parent.children} == {JobStatus.INCRE_TRANSFER_STARTED}
    assert parent.current_status() is JobStatus.INCRE_TRANSFER_STARTED
    assert ACTION_RETRY not in job_info(parent)["job_action"]["available_actions"]


@pytest.mark.parametrize("reading", ["worst_child", "own"])
def test_a_parents_status_follows_its_children_or_stays_its_own(
    clock: FakeClock, reading: str
) -> None:
    config = default_config(fail_again_rate=0.0, stuck_rate=0.0, parent_status=reading)
    fleet = Fleet(config, clock=clock)
    parent = next(j for j in fleet.all_jobs() if j.is_dual_active_parent)
    assert parent.current_status() is JobStatus.INCRE_TRANSFER_FAILED  # both agree at first
    for child in parent.children:
        if child.fate is not None:
            assert fleet.retry(child.project_id, child.id) is RetryVerdict.ACCEPTED
    clock.advance(4.0)
    fleet.find(parent.project_id, parent.id)
    assert {c.status for c in parent.children} == {JobStatus.INCRE_TRANSFER_STARTED}
    wire = job_info(parent)
    if reading == "own":  # its children do not move it: still failed, still offering RETRY
        assert wire["status"] == "INCRE_TRANSFER_FAILED"
        assert ACTION_RETRY in wire["job_action"]["available_actions"]
        assert wire["error_msg"] == parent.failure_message
    else:
        assert wire["status"] == "INCRE_TRANSFER_STARTED"
        assert ACTION_RETRY not in wire["job_action"]["available_actions"]
    # Either way the API refuses the parent itself.
    assert fleet.retry(parent.project_id, parent.id) is RetryVerdict.DUAL_ACTIVE_PARENT
    assert fleet.pause(parent.project_id, parent.id) is ActionVerdict.DUAL_ACTIVE_PARENT


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (JobStatus.INCRE_TRANSFER_STARTED, RetryVerdict.STATUS_FORBIDS),
        (JobStatus.CREATE_FAILED, RetryVerdict.STATUS_FORBIDS),
        (JobStatus.RELEASE_RESOURCE_FAILED, RetryVerdict.STATUS_FORBIDS),
        (JobStatus.INCRE_TRANSFER_FAILED, RetryVerdict.ACCEPTED),
        (JobStatus.PAUSING, RetryVerdict.ACCEPTED),
    ],
)
def test_retry_is_decided_by_available_actions(
    clock: FakeClock, status: JobStatus, verdict: RetryVerdict
) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = next(j for j in fleet.all_jobs() if j.status is status and not j.is_dual_active_parent)
    assert fleet.retry(job.project_id, job.id) is verdict
    if verdict is RetryVerdict.STATUS_FORBIDS:
        assert job.status is status
        assert job.retries_accepted == 0


def test_a_job_being_started_cannot_be_retried_again(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = pick(fleet, status=JobStatus.PAUSING, fate=Fate.RECOVER)
    fleet.retry(job.project_id, job.id)
    assert fleet.retry(job.project_id, job.id) is RetryVerdict.STATUS_FORBIDS
    assert job.retries_accepted == 1


def test_unknown_and_foreign_ids_are_unknown(clock: FakeClock) -> None:
    projects = (
        ProjectSpec(project_id="a" * 32, region="cn-north-4"),
        ProjectSpec(project_id="b" * 32, region="cn-north-4"),
    )
    fleet = Fleet(EmulatorConfig(projects=projects), clock=clock)
    foreign = fleet.top_level_jobs("b" * 32)[0]
    assert fleet.retry("a" * 32, foreign.id) is RetryVerdict.UNKNOWN_JOB
    assert fleet.retry("a" * 32, "no-such-job") is RetryVerdict.UNKNOWN_JOB
    assert fleet.find("a" * 32, foreign.id) is None


# --------------------------------------------------------------------------- pause, variety


def test_pause_moves_a_running_job_to_paused_and_resume_recovers(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = next(
        j for j in fleet.all_jobs() if j.status is JobStatus.INCRE_TRANSFER_STARTED and not j.fate
    )
    assert fleet.pause(job.project_id, job.id) is ActionVerdict.ACCEPTED
    assert job.status is JobStatus.PAUSING
    assert job.fate is Fate.RECOVER
    assert ACTION_RETRY in job_info(job)["job_action"]["available_actions"]
    assert fleet.pause(job.project_id, job.id) is ActionVerdict.STATUS_FORBIDS
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.ACCEPTED
    clock.advance(4.0)
    assert read(fleet, job) is JobStatus.INCRE_TRANSFER_STARTED


def test_pause_refuses_parents_dr_children_starting_jobs_and_unknown_ids(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    parent = next(j for j in fleet.all_jobs() if j.is_dual_active_parent)
    child = next(c for c in parent.children if c.status is JobStatus.INCRE_TRANSFER_FAILED)
    starting = pick(fleet, status=JobStatus.PAUSING, fate=Fate.RECOVER)
    fleet.retry(starting.project_id, starting.id)
    assert fleet.pause(parent.project_id, parent.id) is ActionVerdict.DUAL_ACTIVE_PARENT
    assert fleet.pause(child.project_id, child.id) is ActionVerdict.STATUS_FORBIDS  # DR
    assert fleet.pause(starting.project_id, starting.id) is ActionVerdict.STATUS_FORBIDS
    assert fleet.pause(child.project_id, "no-such-job") is ActionVerdict.UNKNOWN_JOB
    assert child.status is JobStatus.INCRE_TRANSFER_FAILED
    assert starting.status is JobStatus.STARTJOBING


_PAUSABLE = {
    JobStatus.FULL_TRANSFER_STARTED,
    JobStatus.FULL_TRANSFER_FAILED,
    JobStatus.FULL_TRANSFER_COMPLETE,
    JobStatus.INCRE_TRANSFER_STARTED,
    JobStatus.INCRE_TRANSFER_FAILED,
}


@pytest.mark.parametrize("use", list(DbUseType))
def test_only_migration_and_sync_tasks_in_the_five_documented_statuses_offer_pause(
    use: DbUseType,
) -> None:
    offering = {s for s in JobStatus if ACTION_PAUSE in available_actions(s, db_use_type=use)}
    assert offering == (set() if use is DbUseType.CLOUD_DATA_GUARD else _PAUSABLE)


def test_a_failed_incremental_job_can_be_paused_and_resumes_into_incremental(
    clock: FakeClock,
) -> None:
    fleet = Fleet(default_config(fail_again_rate=0.0, stuck_rate=0.0), clock=clock)
    job = next(
        j
        for j in fleet.all_jobs()
        if j.status is JobStatus.INCRE_TRANSFER_FAILED
        and j.db_use_type is not DbUseType.CLOUD_DATA_GUARD
    )
    assert ACTION_PAUSE in job_info(job)["job_action"]["available_actions"]
    assert fleet.pause(job.project_id, job.id) is ActionVerdict.ACCEPTED
    assert job.status is JobStatus.PAUSING
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.ACCEPTED
    clock.advance(4.0)
    assert read(fleet, job) is JobStatus.INCRE_TRANSFER_STARTED


def test_a_full_only_task_paused_in_full_transfer_resumes_its_full_transfer(
    clock: FakeClock,
) -> None:
    fleet = Fleet(default_config(), clock=clock)
    job = next(
        j
        for j in fleet.all_jobs()
        if j.status is JobStatus.FULL_TRANSFER_STARTED and j.task_type == "FULL_TRANS"
    )
    assert fleet.pause(job.project_id, job.id) is ActionVerdict.ACCEPTED
    assert fleet.retry(job.project_id, job.id) is ActionVerdict.ACCEPTED
    seen = set()
    for _ in range(50):
        clock.advance(0.1)
        seen.add(read(fleet, job))
    assert job.status is JobStatus.FULL_TRANSFER_STARTED  # not INCRE_TRANSFER_STARTED
    assert JobStatus.INCRE_TRANSFER_STARTED not in seen


def test_re_edit_sub_task_statuses_belong_to_sync_tasks_only(clock: FakeClock) -> None:
    config = EmulatorConfig(projects=EmulatorConfig.generate_projects(5, 0), jobs_per_project=40)
    fleet = Fleet(config, clock=clock)
    re_edit = [j for j in fleet.all_jobs() if "CHILD_TRANSFER" in j.status.value]
    assert re_edit
    assert {j.db_use_type for j in re_edit} == {DbUseType.SYNC}
    assert all(j.parent_id is None for j in re_edit)  # never a dual-active child


def test_a_large_fleet_shows_every_status_of_the_fact_sheet(clock: FakeClock) -> None:
    config = EmulatorConfig(projects=EmulatorConfig.generate_projects(5, 0), jobs_per_project=40)
    fleet = Fleet(config, clock=clock)
    assert {job.status for job in fleet.all_jobs()} == set(JobStatus)
    # Only jobs the API would retry carry a fate, in a large fleet too.
    for job in fleet.all_jobs():
        will_accept = fleet.retry_verdict(job.project_id, job.id) is RetryVerdict.ACCEPTED
        assert (job.fate is not None) == will_accept


def test_failed_jobs_carry_a_code_and_a_reason(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    for job in fleet.all_jobs():
        assert re.fullmatch(r"DRS\.Z\d{4}", job.failure_code)
        assert job.failure_message == f"{job.failure_code}: {job.failure_reason}"


def test_listed_create_time_is_written_as_the_reference_example(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    times = [job_info(j)["create_time"] for j in fleet.all_jobs()]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", t) for t in times)
    for project in fleet.projects:  # still newest first
        listed = [job_info(j)["create_time"] for j in fleet.top_level_jobs(project)]
        assert listed == sorted(listed, reverse=True)


def test_a_failed_top_level_job_carries_error_msg_in_the_list(clock: FakeClock) -> None:
    fleet = Fleet(default_config(), clock=clock)
    tops = [j for p in fleet.projects for j in fleet.top_level_jobs(p)]
    failed = [j for j in tops if j.current_status() in FAILED_STATUSES]
    assert failed
    for job in failed:
        wire = job_info(job)
        assert wire["error_msg"]
        if not job.children:
            assert wire["error_msg"] == job.failure_message
    running = next(j for j in tops if j.current_status() in HEALTHY_STATUSES)
    assert "error_msg" not in job_info(running)
