"""`runbook validate` over the whole invalid corpus: exit 2, diagnostics only, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main

INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def test_the_corpus_is_large() -> None:
    assert len(INVALID) >= 40


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_runbook_exits_2_with_located_diagnostics(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--format", "json", str(path)])
    out, err = capsys.readouterr()
    problems = json.loads(out)
    assert exited.value.code == 2
    assert problems
    assert all(p["path"] == str(path) and p["line"] >= 1 and p["col"] >= 1 for p in problems)
    assert all(p["severity"] == "error" for p in problems)
    assert "Traceback" not in out + err


def test_text_format_shows_the_source_line_and_a_caret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "version: 1\nname: t\ntargets:\n  - project_id: 0a5c6e1f3b2d4c8e9f7a6b5c4d3e2f10\n"
        "    region: cn-north-4\nsteps:\n  - id: s\n    action: drs.select_jobs\n"
        "    timout: 5s\n"
    )
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(path)])
    out = capsys.readouterr().out
    assert exited.value.code == 2
    assert out.splitlines() == [
        f"{path}:9:5: step 's' (drs.select_jobs): unknown key 'timout'",
        "      timout: 5s",
        "      ^",
        "  hint: did you mean 'timeout'?",
    ]
