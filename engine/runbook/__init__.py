"""The runbook language: safe YAML with locations, JSON Schema, semantic checks, the model.

    load_runbook(path, catalog)  ->  Runbook, or RunbookInvalidError with every Diagnostic

Parse problems (unreadable file, bad YAML, duplicate keys, aliases) stop at the parse; schema
and semantic problems of a parsed file are all reported together, in source order.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import Diagnostic, RunbookInvalidError
from engine.runbook.check import check
from engine.runbook.expressions import Reference
from engine.runbook.model import Runbook, Step, Target, build_runbook
from engine.runbook.parse import read_yaml
from engine.runbook.schema import ActionCatalog, validate

__all__ = ["ActionCatalog", "Reference", "Runbook", "Step", "Target", "load_runbook"]


def load_runbook(path: Path, catalog: ActionCatalog) -> Runbook:
    """Read, validate and model the runbook at ``path``.

    Raises RunbookInvalidError, and nothing else, for any problem in the file's content.
    """
    parsed = read_yaml(path)
    found = validate(parsed, catalog)
    # A node with a wrong shape gets only that message: its semantics would be noise.
    wrong_shape = {diagnostic.location for diagnostic in found}
    found += [d for d in check(parsed, catalog) if d.location not in wrong_shape]
    if found:
        unique = dict.fromkeys(found)
        raise RunbookInvalidError(sorted(unique, key=_source_order))
    return build_runbook(parsed)


def _source_order(diagnostic: Diagnostic) -> tuple[int, int, str]:
    return diagnostic.location.line, diagnostic.location.col, diagnostic.message
