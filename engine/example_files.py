"""Where the example runbooks ship, and the text ``runbook init`` writes from one of them.

Like the schemas (``engine.schema_files``), the examples are inside the package in a wheel
(``engine/examples/``, put there by pyproject's ``force-include``) and beside it in a source
checkout (``runbooks/``). ``starter`` is the commented starter runbook ``runbook init`` writes
when no example is named; it is an example like the others, so every test of the examples
validates, plans and runs it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import engine
from engine.errors import UsageError

STARTER = "starter"
# Where the examples are in the repository, as their comments name them.
REPOSITORY_DIR = "runbooks"

# The editor line of a runbook init writes: yaml-language-server resolves a relative $schema
# against the runbook's own directory, where `runbook schema > runbook.schema.json` puts the
# schema of the installed version. The examples' own line (../schemas/...) only works in a
# checkout, so init replaces it with this one.
SCHEMA_FILE_NAME = "runbook.schema.json"
EDITOR_HEADER = f"# yaml-language-server: $schema={SCHEMA_FILE_NAME}"
_HEADER = re.compile(r"\A# yaml-language-server: \$schema=[^\n]*\n?")


def examples_dir() -> Path:
    """The directory of the example runbooks in this installation."""
    package = Path(engine.__file__).parent
    for candidate in (package / "examples", package.parent / REPOSITORY_DIR):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the example runbooks are missing from the installation")


def example_names() -> list[str]:
    """Every example's name (its file stem), sorted."""
    return sorted(path.stem for path in examples_dir().glob("*.yaml"))


def example_text(name: str, path: Path | None = None) -> str:
    """The example ``name`` as ``runbook init`` writes it to ``path``: its editor line is
    ``EDITOR_HEADER``, and its comments that name it by its place in the repository
    (``runbook run runbooks/NAME.yaml --emulator``) name ``path`` instead (shell-quoted, as
    the commands they show are to be pasted). Without ``path``, or when its name holds a
    character a YAML comment cannot carry (a line break, a control character: the rest of the
    name would become YAML), those comments are as shipped."""
    if name not in (names := example_names()):
        raise UsageError(f"no example runbook named {name!r}; the examples are {', '.join(names)}")
    text = _HEADER.sub("", (examples_dir() / f"{name}.yaml").read_text(encoding="utf-8"), count=1)
    if path is not None and str(path).isprintable():
        shipped, written = f"{REPOSITORY_DIR}/{name}.yaml", shlex.quote(str(path))
        text = "".join(
            line.replace(shipped, written) if line.lstrip().startswith("#") else line
            for line in text.splitlines(keepends=True)
        )
    return f"{EDITOR_HEADER}\n{text}"


def write_example(path: Path, name: str = STARTER, *, overwrite: bool = False) -> Path:
    """Write the example ``name`` (the starter by default) to ``path``, creating its directory;
    an existing file is replaced only with ``overwrite``. Returns ``path``."""
    text = example_text(name, path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give the name of the file to write in it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w" if overwrite else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise UsageError(
            f"{path} already exists; pass --force to overwrite it, or choose another FILE"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}; choose another FILE"
        ) from exc
    return path
