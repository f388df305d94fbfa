"""--target / --skip-target (issue 16): which targets a run takes, and that a resume keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import UsageError
from engine.run.inputs import TargetLimit, prepare
from engine.run.journal import RunHeader, runbook_digest
from engine.run.resumption import resumed_inputs

RUNBOOK = """\
version: 1
name: limited
targets:
  - {name: orders-prod, project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10, region: cn-north-4}
  - {name: orders-dr, project_id: 1b6d7f2a4c3e5d9f0a8b7c6d5e4f3a21, region: ap-southeast-1}
  - {name: payments-prod, project_id: 2c7e8a3b5d4f6e0a1b9c8d7e6f5a4b32, region: eu-west-101}
steps:
  - id: select
    action: drs.select_jobs
"""


@pytest.fixture
def runbook(tmp_path: Path) -> Path:
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK)
    return path


def names(path: Path, limit: TargetLimit) -> list[str]:
    return [t.label for t in prepare(path, limit=limit).runbook.targets]


def test_targets_by_name_glob_and_project_id_and_skips(runbook: Path) -> None:
    assert names(runbook, TargetLimit(only=("orders-*",))) == ["orders-prod", "orders-dr"]
    assert names(runbook, TargetLimit(skip=("orders-dr",))) == ["orders-prod", "payments-prod"]
    by_id = TargetLimit(only=("2c7e8a3b5d4f6e0a1b9c8d7e6f5a4b32",))
    assert names(runbook, by_id) == ["payments-prod"]
    both = TargetLimit(only=("orders-*",), skip=("*-dr",))
    assert names(runbook, both) == ["orders-prod"]
    assert names(runbook, TargetLimit()) == ["orders-prod", "orders-dr", "payments-prod"]


def test_a_pattern_matching_nothing_or_a_limit_leaving_nothing_is_a_usage_error(
    runbook: Path,
) -> None:
    with pytest.raises(UsageError, match=r"--target 'ordres-\*' matches no target of .*"):
        names(runbook, TargetLimit(only=("ordres-*",)))
    with pytest.raises(UsageError, match="--skip-target 'nope' matches no target"):
        names(runbook, TargetLimit(skip=("nope",)))
    with pytest.raises(UsageError, match="leave no target"):
        names(runbook, TargetLimit(only=("orders-prod",), skip=("orders-*",)))


def test_a_resumed_run_takes_the_targets_its_journal_says(runbook: Path, tmp_path: Path) -> None:
    limit = TargetLimit(only=("orders-*",), skip=("orders-dr",))
    header = RunHeader(
        run_id="r",
        started_at="2026-12-02T00:00:00+00:00",
        started_epoch=0.0,
        runbook_path=str(runbook),
        runbook_sha256=runbook_digest(runbook.read_bytes()),
        params={},
        overrides={},
        endpoint=None,
        credentials_file=None,
        emulator=False,
        limit=limit.as_json(),
    )
    read_back = RunHeader.from_line(header.as_line())
    inputs = resumed_inputs(read_back, tmp_path, None)
    assert [t.label for t in inputs.runbook.targets] == ["orders-prod"]
    assert inputs.limit == limit


def test_the_approver_is_the_ci_actor_when_a_ci_system_names_one() -> None:
    from engine.run.approval import approver_identity

    assert approver_identity({"GITHUB_ACTOR": "octocat"}) == "octocat (GitHub Actions)"
    assert approver_identity({"GITLAB_USER_LOGIN": "jo"}) == "jo (GitLab CI)"
    assert "@" in approver_identity({})  # user@host
