"""`runbook validate` starts fast because it loads only what validation needs.

Wall time is measured in bench/ (not in a timed test); this holds the import graph that makes it
fast: validating must not load the executor, asyncio, the HTTP stack or the report renderers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "asyncio",
    "aiohttp",
    "rich",
    "engine.actions.registry",
    "engine.actions.context",
    "engine.api.types",
    "engine.api.credentials",
    "engine.run.executor",
    "engine.report.render",
)

PROBE = """
import json, sys
from engine.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
"""


def _loaded_by(*args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["code"], answer["loaded"]


def test_validate_and_lint_load_nothing_heavy() -> None:
    for command in ("validate", "lint"):
        code, loaded = _loaded_by(command, "runbooks/retry-failed-jobs.yaml")
        assert code == 0
        assert loaded == [], f"`runbook {command}` imported {loaded}"


def test_an_invalid_runbook_is_reported_without_loading_the_executor(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nsteps: nope\n", encoding="utf-8")
    code, loaded = _loaded_by("validate", str(broken))
    assert code == 2
    assert loaded == []


def test_init_loads_nothing_heavy(tmp_path: Path) -> None:
    code, loaded = _loaded_by("init", str(tmp_path / "new.yaml"))
    assert code == 0
    assert loaded == []
