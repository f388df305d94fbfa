"""Plan files that apply must refuse whole, with one sentence, never a traceback (issue 16)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.errors import UsageError
from engine.run.journal import runbook_digest
from engine.run.planfile import read_plan


def forged(tmp_path: Path, **changes: Any) -> Path:
    """A plan file whose fields are ``changes`` away from a sound one, hash recomputed."""
    runbook = tmp_path / "rb.yaml"
    runbook.write_text("version: 1\n")
    body: dict[str, Any] = {
        "plan_version": 1,
        "created_at": "2026-12-02T10:00:00+00:00",
        "runbook": {"path": str(runbook), "name": "rb", "sha256": runbook_digest(b"version: 1\n")},
        "params": {},
        "overrides": {},
        "shard": None,
        "limit": {"only": [], "skip": []},
        "where": {"emulator": True, "endpoint": None},
        "targets": [],
        "planned": {"p" * 32: {"retry": [{"id": "a", "name": "a", "status": "PAUSING"}]}},
    }
    body.update(changes)
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({**body, "plan_hash": digest}))
    return path


def test_a_sound_plan_reads_back(tmp_path: Path) -> None:
    saved = read_plan(forged(tmp_path), max_age_s=10**9)
    assert saved.jobs == 1
    assert saved.planned == {"p" * 32: {"retry": {"a": "PAUSING"}}}


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"created_at": "2026-12-02T10:00:00"}, "malformed"),
        ({"created_at": "2099-01-01T00:00:00+00:00"}, "made in the future"),
        ({"limit": {"only": [1]}}, "malformed"),
        ({"limit": {"only": "orders-prod"}}, "malformed"),
        ({"shard": 3}, "malformed"),
        ({"overrides": {"bogus": 1}}, "malformed"),
        ({"overrides": {"max_jobs": 10**15}}, "malformed"),
        ({"planned": {"p": {"retry": [{"id": "a", "name": "a", "status": 3}]}}}, "malformed"),
        ({"planned": []}, "malformed"),
    ],
)
def test_a_forged_plan_is_refused_in_one_sentence(
    tmp_path: Path, changes: dict[str, Any], said: str
) -> None:
    with pytest.raises(UsageError, match=said):
        read_plan(forged(tmp_path, **changes), max_age_s=10**9)
