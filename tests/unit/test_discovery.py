"""Targets by discovery: an account's projects in some regions, from IAM, trusted no further
than they must be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.actions.catalog import CATALOG
from engine.api.auth import StaticTokenAuth
from engine.api.transport import HttpRequest, HttpResponse
from engine.errors import UsageError
from engine.run.discovery import MAX_PROJECTS, discover
from engine.runbook import load_runbook

P1 = "1" * 32

RUNBOOK = f"""\
version: 1
name: discovery
accounts:
  prod: {{token_env: PROD_TOKEN}}
  dr: {{token_env: DR_TOKEN}}
targets:
  - {{account: prod, project_id: "{P1}", region: cn-north-4, name: orders}}
  - {{account: prod, regions: [cn-north-4, ap-southeast-1]}}
  - {{account: dr, regions: [cn-north-4]}}
steps:
  - id: select
    action: drs.select_jobs
"""


def _project(pid: str, name: str, enabled: bool = True) -> dict[str, Any]:
    return {"id": pid, "name": name, "enabled": enabled, "domain_id": "d" * 32}


class FakeIam:
    """Answers GET /v3/auth/projects per token, and records what was asked."""

    def __init__(self, answers: dict[str, HttpResponse]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    async def send(self, request: HttpRequest) -> HttpResponse:
        token = request.headers.get("X-Auth-Token", "")
        self.asked.append((request.method, request.url))
        return self.answers[token]


def _ok(projects: list[Any]) -> HttpResponse:
    return HttpResponse(status=200, body=json.dumps({"projects": projects}).encode())


async def _discover(tmp_path: Path, iam: FakeIam) -> tuple[Any, list[str]]:
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK, encoding="utf-8")
    runbook = load_runbook(path, CATALOG)
    return await discover(
        runbook,
        transport=iam,
        iam_endpoint=lambda d: "https://iam.example",
        auth_for=lambda account: StaticTokenAuth(f"token-of-{account}"),
    )


async def test_each_account_is_asked_once_and_its_projects_become_targets_in_order(
    tmp_path: Path,
) -> None:
    iam = FakeIam(
        {
            "token-of-prod": _ok(
                [
                    _project("b" * 32, "cn-north-4_payments"),
                    _project(P1, "cn-north-4"),  # named as a target already
                    _project("a" * 32, "ap-southeast-1"),
                    _project("c" * 32, "cn-north-4_old", enabled=False),
                    _project("e" * 32, "MOS"),  # no region
                ]
            ),
            "token-of-dr": _ok([_project("d" * 32, "cn-north-4")]),
        }
    )
    expanded, notes = await _discover(tmp_path, iam)
    assert iam.asked == [("GET", "https://iam.example/v3/auth/projects")] * 2
    assert [(t.label, t.account, t.region, t.project_id) for t in expanded.targets] == [
        ("orders", "prod", "cn-north-4", P1),
        ("prod/cn-north-4_payments", "prod", "cn-north-4", "b" * 32),
        ("prod/ap-southeast-1", "prod", "ap-southeast-1", "a" * 32),
        ("dr/cn-north-4", "dr", "cn-north-4", "d" * 32),
    ]
    assert expanded.discoveries == ()
    assert notes[0] == (
        "discovered 1 project(s) of account prod in cn-north-4: cn-north-4_payments "
        "(1 named as targets already)"
    )


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (HttpResponse(status=401, body=b'{"error": {"code": 401, "message": "no"}}'), "HTTP 401"),
        (HttpResponse(status=302, headers={"Location": "https://evil.example/x"}), "not followed"),
        (HttpResponse(status=200, body=b"<html>"), "no list of projects"),
        (HttpResponse(status=200, body=b'{"projects": {"a": 1}}'), "no list of projects"),
        (_ok([{"id": "not-hex", "name": "cn-north-4"}]), "well-formed id"),
        (_ok([_project("f" * 32, "cn-north-4")] * (MAX_PROJECTS + 1)), "more than"),
    ],
)
async def test_a_surprising_answer_is_an_error_naming_the_account_never_a_smaller_fleet(
    tmp_path: Path, answer: HttpResponse, words: str
) -> None:
    iam = FakeIam({"token-of-prod": answer, "token-of-dr": _ok([])})
    with pytest.raises(UsageError) as caught:
        await _discover(tmp_path, iam)
    assert "account 'prod'" in str(caught.value)
    assert words in str(caught.value)
