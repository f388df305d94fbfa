"""`runbook init`: the starter and the shipped examples, written valid; shell completion."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from engine.cli import cli, main
from engine.errors import UsageError
from engine.example_files import (
    EDITOR_HEADER,
    STARTER,
    example_names,
    examples_dir,
    write_example,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.stem for p in (REPO / "runbooks").glob("*.yaml"))


def _runbook(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_in_a_checkout_the_examples_are_the_runbooks_folder() -> None:
    assert examples_dir() == REPO / "runbooks"
    assert example_names() == EXAMPLES
    assert STARTER in EXAMPLES


def test_init_writes_the_starter_which_validates_and_lints_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = tmp_path / "ops" / "new.yaml"

    code, out, err = _runbook(["init", str(written)], capsys)

    assert code == 0
    assert out == ""
    schema = tmp_path / "ops" / "runbook.schema.json"
    assert err.splitlines() == [
        f"wrote {written} (starter); check it with: runbook validate {written}",
        f"for editor checks as you type: runbook schema > {schema}",
    ]
    lines = written.read_text(encoding="utf-8").splitlines()
    shipped = (REPO / "runbooks" / "starter.yaml").read_text(encoding="utf-8").splitlines()
    # The editor line points beside the file; everything after it is the shipped starter.
    assert lines[0] == EDITOR_HEADER == "# yaml-language-server: $schema=runbook.schema.json"
    assert shipped[0] == "# yaml-language-server: $schema=../schemas/runbook.schema.json"
    assert lines[1:] == shipped[1:]
    assert _runbook(["validate", str(written)], capsys)[0] == 0
    assert _runbook(["lint", "--strict", str(written)], capsys)[0] == 0


def test_the_starter_points_only_to_what_an_installed_user_has() -> None:
    """The wheel ships the starter, not the repository's docs: each command its comments name
    exists with the options they give, and a document is named as the repository's."""
    comments = [
        line for line in (REPO / "runbooks" / "starter.yaml").read_text().splitlines()
        if line.startswith("#")
    ]  # fmt: skip
    text = " ".join(line.lstrip("# ") for line in comments)
    # runbook COMMAND, then its options and placeholders: "runbook plan FILE --emulator"
    named = re.findall(r"(?<![\w-])runbook ([a-zA-Z-]+)((?: (?:[A-Z]+|--?[a-z-]+))*)", text)
    assert {command for command, _ in named} >= {"validate", "plan", "run", "schema", "init"}
    context = click.Context(cli)
    for command, options in named:
        if command.startswith("-"):  # runbook --help
            given = {opt for p in cli.get_params(context) for opt in p.opts}
            assert {command} <= given, command
            continue
        if command == "COMMAND":  # runbook COMMAND --help
            continue
        found = cli.get_command(context, command)
        assert found is not None, f"runbook {command} is no command"
        known = {opt for p in found.get_params(context) for opt in p.opts}
        wanted = {word for word in options.split() if word.startswith("-")}
        assert wanted <= known, f"runbook {command}{options}"
    assert "README" not in text
    for document in re.findall(r"\S*docs/\S+", text):
        assert f"{document} in the drs-runbook repository" in text


def test_init_says_nothing_about_the_schema_when_it_is_already_beside_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, schema, _ = _runbook(["schema"], capsys)
    assert code == 0
    (tmp_path / "runbook.schema.json").write_text(schema, encoding="utf-8")

    code, _, err = _runbook(["init", str(tmp_path / "a.yaml")], capsys)

    assert code == 0
    assert "runbook schema >" not in err


@pytest.mark.parametrize("name", EXAMPLES)
def test_init_example_writes_it_valid_with_the_editor_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = tmp_path / f"mine-{name}.yaml"

    code, _, err = _runbook(["init", str(written), "--example", name], capsys)

    assert code == 0, err
    text = written.read_text(encoding="utf-8")
    assert text.splitlines()[0] == EDITOR_HEADER
    assert text.count("yaml-language-server") == 1
    assert f"name: {name}\n" in text
    assert _runbook(["validate", str(written)], capsys)[0] == 0


@pytest.mark.parametrize("name", EXAMPLES)
def test_init_example_comments_name_the_written_file_not_the_repository_path(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = tmp_path / "ops team" / f"{name}.yaml"  # a space: the commands quote it
    shipped = (REPO / "runbooks" / f"{name}.yaml").read_text(encoding="utf-8")

    code, _, err = _runbook(["init", str(written), "--example", name], capsys)

    assert code == 0, err
    text = written.read_text(encoding="utf-8")
    assert "runbooks/" not in text
    assert "../schemas/" not in text
    assert text.splitlines()[0] == EDITOR_HEADER
    # Each comment that named the example's repository path names the written file (the
    # starter names none: its commands say FILE).
    quoted = f"'{written}'"
    assert [line for line in text.splitlines() if quoted in line] == [
        line.replace(f"runbooks/{name}.yaml", quoted)
        for line in shipped.splitlines()
        if f"runbooks/{name}.yaml" in line
    ]
    assert (name == STARTER) is (quoted not in text)
    # The YAML itself is the example's, byte for byte: only comment lines changed.
    body = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert body == [line for line in shipped.splitlines() if not line.lstrip().startswith("#")]
    assert _runbook(["validate", str(written)], capsys)[0] == 0


def test_init_example_names_a_plain_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    code, _, _ = _runbook(["init", "ops/retry.yaml", "--example", "incident-retry"], capsys)

    assert code == 0
    head = (tmp_path / "ops" / "retry.yaml").read_text(encoding="utf-8").splitlines()[:6]
    assert head[3:6] == [
        "#   runbook plan ops/retry.yaml --emulator            # what would happen",
        "#   runbook run  ops/retry.yaml --emulator            # asks y/N on the terminal",
        "#   runbook run  ops/retry.yaml --emulator --yes      # automation",
    ]


def test_init_example_keeps_the_shipped_comments_for_a_name_a_comment_cannot_carry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A line break in the name would end the comment: the rest of the name became YAML
    # (`steps: []` here, a duplicate key), and the file written did not validate.
    written = tmp_path / "a\nsteps: []\n#.yaml"

    code, _, _ = _runbook(["init", str(written), "--example", "incident-retry"], capsys)

    assert code == 0
    text = written.read_text(encoding="utf-8")
    assert "runbook plan runbooks/incident-retry.yaml --emulator" in text
    assert "steps: []" not in text
    assert _runbook(["validate", str(written)], capsys)[0] == 0


def test_importing_the_init_command_reads_no_example_until_one_is_needed() -> None:
    probe = """
import engine.example_files as files
reads = []
real = files.examples_dir
files.examples_dir = lambda: reads.append(1) or real()
from engine.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print(len(reads))
try:
    main(["init", "--example", "nope", "x.yaml"])
except SystemExit:
    pass
print(len(reads) > 0)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.stdout.splitlines()[-2:] == ["0", "True"], done.stderr
    assert "  init " in done.stdout  # --help listed the commands, init's among them


def test_init_example_without_file_writes_name_yaml_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    code, _, _ = _runbook(["init", "--example", "dr-drill"], capsys)

    assert code == 0
    assert "name: dr-drill\n" in (tmp_path / "dr-drill.yaml").read_text(encoding="utf-8")


def test_init_without_file_or_example_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    code, out, err = _runbook(["init"], capsys)

    assert code == 2
    assert out == ""
    assert err == (
        "runbook: init needs the FILE to write, such as `runbook init my-runbook.yaml` (or "
        "--example NAME, which writes NAME.yaml here)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "mine.yaml"
    existing.write_text("my work\n", encoding="utf-8")

    code, _, err = _runbook(["init", str(existing)], capsys)

    assert code == 2
    assert err == (
        f"runbook: {existing} already exists; pass --force to overwrite it, or choose another "
        "FILE\n"
    )
    assert existing.read_text(encoding="utf-8") == "my work\n"

    assert _runbook(["init", str(existing), "--force", "--example", "dr-drill"], capsys)[0] == 0
    assert "name: dr-drill\n" in existing.read_text(encoding="utf-8")


def test_init_into_a_directory_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _runbook(["init", str(tmp_path), "--force"], capsys)

    assert code == 2
    assert err == f"runbook: {tmp_path} is a directory; give the name of the file to write in it\n"


def test_init_unknown_example_lists_the_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _runbook(["init", str(tmp_path / "a.yaml"), "--example", "nope"], capsys)

    names = ", ".join(f"'{n}'" for n in EXAMPLES)
    assert code == 2
    assert err.splitlines()[-1] == (
        f"Error: Invalid value for '--example': 'nope' is not one of {names}."
    )
    assert not (tmp_path / "a.yaml").exists()


def test_init_list_prints_every_example_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _runbook(["init", "--list"], capsys)

    assert code == 0
    assert out.splitlines() == EXAMPLES


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _runbook_completion runbook"),
        ("zsh", "#compdef runbook"),
        ("fish", "complete --no-files --command runbook"),
    ],
)
def test_completion_variable_prints_a_completion_script(shell: str, marker: str) -> None:
    result = CliRunner().invoke(
        cli, [], prog_name="runbook", env={"_RUNBOOK_COMPLETE": f"{shell}_source"}
    )

    assert result.exit_code == 0
    assert marker in result.output


def test_completion_completes_commands_and_example_names() -> None:
    def complete(words: str) -> list[str]:
        env = {
            "_RUNBOOK_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        }
        result = CliRunner().invoke(cli, [], prog_name="runbook", env=env)
        assert result.exit_code == 0
        return result.output.splitlines()

    assert complete("runbook in") == ["plain,init"]
    assert complete("runbook init --example ") == [f"plain,{n}" for n in EXAMPLES]


def test_an_unknown_example_from_python_is_a_usage_error_naming_the_examples(
    tmp_path: Path,
) -> None:
    with pytest.raises(UsageError) as raised:
        write_example(tmp_path / "a.yaml", "nope")

    assert str(raised.value) == (
        f"no example runbook named 'nope'; the examples are {', '.join(EXAMPLES)}"
    )
    assert not (tmp_path / "a.yaml").exists()
