"""The runbook language: safe YAML with locations, JSON Schema, expressions, checks, the model.

    load_runbook(path, catalog)          ->  Runbook, or RunbookInvalidError with every Diagnostic
    bind_params(runbook, given, file)    ->  {param: value}, or RunbookInvalidError
    evaluate(expr, scope), resolve(value, scope)   expressions at run time (ExpressionError)
    lint(runbook, catalog_mutating)      ->  warnings
    render_diagnostics(diags), diagnostics_json(diags), schema_text()   for the CLI
    ci_diagnostics.diagnostics_sarif / _github / _gitlab (diags, root=)  for CI tools

Parse problems (unreadable file, bad YAML, duplicate keys, aliases) stop at the parse; schema
and semantic problems of a parsed file are all reported together, in source order.
The language is documented in docs/runbook-language.md.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import Diagnostic, RunbookInvalidError
from engine.runbook.binding import bind_params
from engine.runbook.check import check
from engine.runbook.diagnostics import diagnostics_json, render_diagnostics
from engine.runbook.evaluation import evaluate, resolve
from engine.runbook.expressions import Expression, ExpressionError, Scope
from engine.runbook.lint import lint
from engine.runbook.model import OnFailure, Runbook, Step, StepRetries, Target, build_runbook
from engine.runbook.params import Param
from engine.runbook.parse import read_yaml, with_source_lines
from engine.runbook.schema import ActionCatalog, schema_text, validate

__all__ = [
    "ActionCatalog",
    "Expression",
    "ExpressionError",
    "OnFailure",
    "Param",
    "Runbook",
    "Scope",
    "Step",
    "StepRetries",
    "Target",
    "bind_params",
    "diagnostics_json",
    "evaluate",
    "lint",
    "load_runbook",
    "render_diagnostics",
    "resolve",
    "schema_text",
]


def load_runbook(path: Path, catalog: ActionCatalog) -> Runbook:
    """Read, validate and model the runbook at ``path``.

    ``catalog`` maps each action to its output types (``engine.actions.CATALOG``); a
    catalog of output names only (``engine.actions.CATALOG``) leaves outputs untyped.
    Raises RunbookInvalidError, and nothing else, for any problem in the file's content.
    """
    parsed = read_yaml(path)
    found = validate(parsed, catalog)
    # A node with a wrong shape gets only that message: its semantics would be noise.
    wrong_shape = {diagnostic.location for diagnostic in found}
    checked = check(parsed, catalog)
    found += [d for d in checked.diagnostics if d.location not in wrong_shape]
    if found:
        unique = dict.fromkeys(found)
        ordered = sorted(unique, key=_source_order)
        raise RunbookInvalidError(with_source_lines(ordered, parsed.source.lines))
    return build_runbook(parsed, checked.expressions)


def _source_order(diagnostic: Diagnostic) -> tuple[int, int, str]:
    return diagnostic.location.line, diagnostic.location.col, diagnostic.message
