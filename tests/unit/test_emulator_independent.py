"""The emulator stays an independent model of the API: it imports nothing of the client.

When the emulator and the client share a type, a misspelt key is mirrored on both sides and
every test passes (``node_new_framework`` did). So every module under ``engine/emulator/`` is
read with ``ast`` (every import, those under ``TYPE_CHECKING`` or inside functions too,
relative ones resolved) and held to an allow-list, and importing ``engine.emulator.app`` in a
fresh interpreter must not load the client.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EMULATOR = REPO / "engine" / "emulator"

# The product's packages the emulator must never import: the client's wire layer and
# everything built on it (its types would become the emulator's vocabulary).
FORBIDDEN = (
    "engine.api",
    "engine.actions",
    "engine.run",
    "engine.report",
    "engine.runbook",
    "engine.cli",
)
# What the emulator may import of the product outside engine/emulator/, each with why:
ALLOWED = {
    # The one grammar of durations and rates ("50ms", "20/s") shared by runbooks and the
    # emulator's own options (--faults latency=50ms, --pause-delay 5s); standard library only,
    # and no wire vocabulary (no field name, status or error code) lives there.
    "engine.units",
}
# Besides the standard library, the emulator's one dependency: its HTTP server.
THIRD_PARTY = {"aiohttp"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, *, package: bool = False) -> Iterator[list[str]]:
    """The modules each import statement of ``source`` (the text of ``module``) may load:
    ``[module]`` for ``import module``; for ``from X import a, b``, ``[X, X.a, X.b]`` (``a`` may
    be a module: ``from engine import api``), relative ones resolved."""
    base = module.split(".") if package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ([alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                name = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            yield [name, *(f"{name}.{alias.name}" for alias in node.names)]


def statement_violations(names: list[str], module: str) -> list[str]:
    """The module imported from, if it is not allowed; else each name imported from it."""
    first, *rest = names
    return violations(first, module) or [v for name in rest for v in violations(name, module)]


def violations(name: str, module: str) -> list[str]:
    """Why importing ``name`` from ``module`` breaks the emulator's independence ([] if not)."""

    def within(package: str) -> bool:
        return name == package or name.startswith(package + ".")

    top = name.split(".")[0]
    if within("engine.emulator") or name in ALLOWED:
        return []
    if any(within(p) for p in FORBIDDEN):
        return [f"{module} imports {name}, part of the client"]
    if top == "engine":
        if name == "engine" or _is_attribute_of_allowed(name):
            return []
        return [f"{module} imports {name}, which is not on the emulator's allow-list"]
    if top in sys.stdlib_module_names or top in THIRD_PARTY or top == "__future__":
        return []
    return [f"{module} imports {name}, a dependency the emulator does not have"]


def _is_attribute_of_allowed(name: str) -> bool:
    """``from engine.units import parse_duration`` also yields ``engine.units.parse_duration``."""
    return any(name.startswith(allowed + ".") for allowed in ALLOWED)


def emulator_modules() -> list[Path]:
    return sorted(EMULATOR.rglob("*.py"))


def test_no_emulator_module_imports_the_client() -> None:
    modules = emulator_modules()
    assert len(modules) >= 15, "the walk found too few modules: it checks nothing"
    problems = []
    for path in modules:
        module = module_name(path)
        package = path.name == "__init__.py"
        for names in imported(path.read_text(encoding="utf-8"), module, package=package):
            problems += statement_violations(names, module)
    assert problems == []


def test_every_allowed_import_is_in_use() -> None:
    """An allowance nothing needs any more is a door left open: drop it from ALLOWED."""
    used = {
        name
        for path in emulator_modules()
        for names in imported(
            path.read_text(encoding="utf-8"), module_name(path), package=path.name == "__init__.py"
        )
        for name in names
    }
    assert used >= ALLOWED


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        (
            "from engine.api.types import JobStatus",
            "engine.emulator.wire",
            ["engine.emulator.wire imports engine.api.types, part of the client"],
        ),
        (
            "from ..api import client",
            "engine.emulator.app",
            ["engine.emulator.app imports engine.api, part of the client"],
        ),
        (
            "from engine import actions",
            "engine.emulator.fleet",
            ["engine.emulator.fleet imports engine.actions, part of the client"],
        ),
        (
            "import engine.ledger",
            "engine.emulator.state",
            [
                "engine.emulator.state imports engine.ledger, which is not on the emulator's "
                "allow-list"
            ],
        ),
        (
            "if TYPE_CHECKING:\n    from engine.report.model import Report",
            "engine.emulator.app",
            ["engine.emulator.app imports engine.report.model, part of the client"],
        ),
        (
            "import yaml",
            "engine.emulator.app",
            ["engine.emulator.app imports yaml, a dependency the emulator does not have"],
        ),
        ("from engine.units import parse_duration\nimport aiohttp", "engine.emulator.faults", []),
        ("from .state import Job\nfrom . import wire", "engine.emulator.fleet", []),
    ],
)
def test_the_checker_catches_what_it_exists_for(
    source: str, module: str, expected: list[str]
) -> None:
    found = [v for names in imported(source, module) for v in statement_violations(names, module)]
    assert found == expected


def test_importing_the_emulator_app_loads_none_of_the_client() -> None:
    code = (
        "import json, sys\n"
        "import engine.emulator.app\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'engine')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "engine.emulator.app" in loaded
    assert "engine.api" not in loaded
    assert not {m for m in loaded for p in FORBIDDEN if m == p or m.startswith(p + ".")}
    outside = {m for m in loaded if m != "engine" and not m.startswith("engine.emulator")}
    assert outside <= ALLOWED
