"""``runbook init``: start a runbook from the starter or from one of the shipped examples."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli import say
from engine.errors import UsageError
from engine.example_files import SCHEMA_FILE_NAME, STARTER, example_names, write_example


class ExampleName(click.Choice[str]):
    """``--example``'s value: one of the shipped examples, whose names are read when first
    needed (a value to check, completion, ``init --help``), not when this module is imported:
    ``runbook --help`` imports every command's module, and must not read package data."""

    def __init__(self) -> None:
        super().__init__(())
        self._names: tuple[str, ...] | None = None  # not read yet

    @property
    def choices(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(example_names())
        return self._names

    @choices.setter
    def choices(self, names: tuple[str, ...]) -> None:
        self._names = tuple(names)


def _list_examples(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        for name in example_names():
            click.echo(name)
        ctx.exit()


@click.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option(
    "--example",
    type=ExampleName(),
    help=f"Write this shipped example (default: {STARTER}, the commented starter); without "
    "FILE, to NAME.yaml here.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option(
    "--list",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_examples,
    help="Print the names of the shipped examples and exit.",
)
def init(file: Path | None, example: str | None, force: bool) -> None:
    """Write a commented starter runbook to FILE, or with --example NAME a shipped example.

    The file validates and runs against the emulator as written (runbook run FILE --emulator).
    Its first line points editors at runbook.schema.json beside it: runbook schema > that file.
    """
    if file is None:
        if example is None:
            raise UsageError(
                "init needs the FILE to write, such as `runbook init my-runbook.yaml` (or "
                "--example NAME, which writes NAME.yaml here)"
            )
        file = Path(f"{example}.yaml")
    name = example or STARTER
    written = write_example(file, name, overwrite=force)
    say(f"wrote {written} ({name}); check it with: runbook validate {written}", file=str(written))
    schema = written.parent / SCHEMA_FILE_NAME
    if not schema.exists():
        say(f"for editor checks as you type: runbook schema > {schema}")
