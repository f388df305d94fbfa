"""The wheel as a user gets it: built from the checkout, installed in a fresh virtualenv outside
it, and run from elsewhere — init, validate, schema, completion and the demo on the emulator.

Nothing is downloaded: the wheel is built without build isolation (hatchling is in the test
extra), installed with ``--no-index --no-deps``, and the fresh virtualenv finds the
dependencies through a ``.pth`` file naming this interpreter's site-packages (plain paths, so
an editable install's own ``.pth`` there, which points at the checkout, is not followed).
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from harness import fast_copy, jobs_of

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.stem for p in (REPO / "runbooks").glob("*.yaml"))
# Nothing of the checkout may reach the installed copy through the environment.
ENV = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
ENV["NO_COLOR"] = "1"


def _run(
    args: Sequence[str | Path], cwd: Path, *, timeout: float = 30, env: dict[str, str] = ENV
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built offline."""
    out = tmp_path_factory.mktemp("wheel")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "-w", out, REPO],
        out,
        timeout=60,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("drs_runbook-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed, its dependencies borrowed from ours."""
    root = tmp_path_factory.mktemp("venv") / "fresh"
    created = _run([sys.executable, "-m", "venv", "--without-pip", root], root.parent)
    assert created.returncode == 0, created.stderr
    python = root / "bin" / "python"
    installed = _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--quiet", wheel],
        root.parent,
        timeout=60,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    # After the install, so that pip saw only the fresh environment.
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root)
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib.stdout.strip(), "_dependencies.pth").write_text("\n".join(ours) + "\n")
    return root


def test_the_wheel_holds_the_license_the_schemas_and_every_example(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        license_text = archive.read(f"{dist_info}/licenses/LICENSE")
        metadata = archive.read(f"{dist_info}/METADATA").decode()

    assert license_text == (REPO / "LICENSE").read_bytes()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert {"engine/schemas/runbook.schema.json", "engine/schemas/report.schema.json"} <= names
    assert {n for n in names if n.startswith("engine/examples/")} == {
        f"engine/examples/{name}.yaml" for name in EXAMPLES
    }
    assert "starter" in EXAMPLES


def test_installed_runbook_inits_validates_and_runs_the_demo_outside_the_checkout(
    venv: Path, tmp_path: Path
) -> None:
    assert REPO not in tmp_path.parents
    runbook = venv / "bin" / "runbook"

    imported = _run(
        [venv / "bin" / "python", "-c", "import engine; print(engine.__file__)"], tmp_path
    )
    assert Path(imported.stdout.strip()).is_relative_to(venv), imported.stdout + imported.stderr

    listed = _run([runbook, "init", "--list"], tmp_path)
    assert (listed.returncode, listed.stdout.splitlines()) == (0, EXAMPLES)

    started = _run([runbook, "init", "starter.yaml"], tmp_path)
    assert started.returncode == 0, started.stderr
    assert _run([runbook, "init", "starter.yaml"], tmp_path).returncode == 2  # no overwrite
    checked = _run([runbook, "validate", "starter.yaml"], tmp_path)
    assert (checked.returncode, checked.stderr) == (0, "starter.yaml: ok\n")

    demo = _run([runbook, "init", "--example", "retry-failed-jobs"], tmp_path)
    assert demo.returncode == 0, demo.stderr
    checked = _run([runbook, "validate", "retry-failed-jobs.yaml"], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    schema = _run([runbook, "schema"], tmp_path)
    assert schema.returncode == 0
    assert json.loads(schema.stdout) == json.loads(
        (REPO / "schemas" / "runbook.schema.json").read_text(encoding="utf-8")
    )

    completion = _run([runbook], tmp_path, env={**ENV, "_RUNBOOK_COMPLETE": "bash_source"})
    assert completion.returncode == 0
    assert "complete -o nosort -F _runbook_completion runbook" in completion.stdout

    # The demo, with short deadlines on a fast emulator: its fleet has jobs that never recover.
    fast = fast_copy(tmp_path / "retry-failed-jobs.yaml", tmp_path / "fast.yaml")
    ran = _run(
        [runbook, "run", fast, "--emulator", "--emulator-time-scale", "0.05", "-q",
         "--report-dir", "reports"],
        tmp_path,
        timeout=60,
    )  # fmt: skip
    assert ran.returncode == 1, ran.stderr
    report = json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))
    assert report["exit_code"] == 1
    assert len(report["targets"]) == 3
    assert {j["disposition"] for j in jobs_of(report)} >= {"recovered", "failed_again"}
