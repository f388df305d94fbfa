"""Evaluating expressions at run time: walking the AST in a Scope, never ``eval``.

    evaluate(expr, scope)   the value of an Expression (params, target, step outputs, env)
    resolve(value, scope)   ``value`` with every Expression in it (lists, mappings) evaluated
    kind_of(value)          the expression-language type of a value, for messages
    explain(expr, scope)    why a comparison is false: both sides with their values

Failures are ``ExpressionError``s naming the expression and its location.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from engine.runbook.expressions import (
    COMPARISONS,
    MAX_RESULT_LENGTH,
    Binary,
    Call,
    Expression,
    ExpressionError,
    ListLiteral,
    Literal,
    Name,
    Node,
    Scope,
    Unary,
    is_number,
    unparse,
)

# A comparison that is false, said the way round that holds: ``6.04 > 1`` for ``a <= b``.
_NEGATED = {
    "==": "!=",
    "!=": "==",
    "<": ">=",
    "<=": ">",
    ">": "<=",
    ">=": "<",
    "in": "not in",
    "not in": "in",
}


def evaluate(expr: Expression, scope: Scope) -> Any:
    """The value of ``expr`` in ``scope``; raises ExpressionError when it cannot be computed."""
    evaluator = _Evaluator(expr, scope)
    if expr.whole:
        node = expr.parts[0]
        assert not isinstance(node, str)
        return evaluator.value(node)
    text = "".join(part if isinstance(part, str) else evaluator.text(part) for part in expr.parts)
    if len(text) > MAX_RESULT_LENGTH:
        raise ExpressionError(expr, f"result is longer than {MAX_RESULT_LENGTH} characters")
    return text


def resolve(value: Any, scope: Scope) -> Any:
    """``value`` with every Expression in it (in lists and mappings too) evaluated in ``scope``."""
    if isinstance(value, Expression):
        return evaluate(value, scope)
    if isinstance(value, Mapping):
        return {key: resolve(item, scope) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(item, scope) for item in value]
    return value


def explain(expr: Expression, scope: Scope) -> str | None:
    """Why ``expr``, a whole expression that came out false, did: each side of its comparison
    with the value it had (``steps.v.p95_s = 6.04 > params.budget = 1``); for an ``and``, its
    first false part. None when the expression is no comparison or a side has no value (the
    run's message then stands alone)."""
    if not expr.whole:
        return None
    node = expr.parts[0]
    assert not isinstance(node, str)
    try:
        return _Evaluator(expr, scope).explain(node)
    except ExpressionError:
        return None


def show_value(value: object) -> str:
    """A value as a message shows it: numbers without float noise, strings quoted, lists by
    their size."""
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    if value is None or isinstance(value, bool):
        return as_text(value) or "null"
    return str(value)


def kind_of(value: object) -> str:
    """The expression-language type of a runtime value (lists without their item type)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def equal(left: object, right: object) -> bool:
    """Equality without Python's ``True == 1``: values of different types are never equal."""
    if is_number(left) and is_number(right):
        return left == right
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(
            equal(a, b) for a, b in zip(left, right, strict=True)
        )
    return kind_of(left) == kind_of(right) and left == right


def as_text(value: object) -> str:
    """A scalar as interpolation writes it: ``true``/``false``, null as empty, numbers as is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Evaluator:
    def __init__(self, expr: Expression, scope: Scope) -> None:
        self._expr = expr
        self._scope = scope

    def _fail(self, detail: str) -> ExpressionError:
        return ExpressionError(self._expr, detail)

    def text(self, node: Node) -> str:
        value = self.value(node)
        if isinstance(value, list | tuple | Mapping):
            raise self._fail(f"cannot interpolate a {kind_of(value)} into a string")
        return as_text(value)

    def value(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, ListLiteral):
            return [self.value(item) for item in node.items]
        if isinstance(node, Name):
            return self._name(node)
        if isinstance(node, Unary):
            return self._unary(node)
        if isinstance(node, Binary):
            return self._binary(node)
        return self._call(node)

    def explain(self, node: Node) -> str | None:
        """``explain`` for one node that evaluated to false."""
        if isinstance(node, Binary) and node.op == "and":
            for side in (node.left, node.right):
                if self.value(side) is False:
                    return self.explain(side)
            return None
        if not isinstance(node, Binary) or node.op not in COMPARISONS:
            return None
        if self._binary(node) is not False:
            return None
        left, right = (self._side(side) for side in (node.left, node.right))
        return f"{left} {_NEGATED[node.op]} {right}"

    def _side(self, node: Node) -> str:
        """One side of a comparison: its text and value, or the value alone for a literal."""
        value = show_value(self.value(node))
        return value if isinstance(node, Literal) else f"{unparse(node)} = {value}"

    def _name(self, node: Name) -> Any:
        parts = node.parts
        scope = self._scope
        try:
            if parts[0] == "params" and len(parts) == 2:
                return scope.params[parts[1]]
            if parts[0] == "target" and len(parts) == 2:
                return scope.target[parts[1]]
            if parts[0] == "env" and len(parts) == 2:
                return scope.env[parts[1]]
            if parts[0] == "steps" and len(parts) == 3:
                outputs = scope.steps[parts[1]]
                return outputs[parts[2]]
        except KeyError:
            if parts[0] == "steps":
                raise self._fail(
                    f"{node.dotted} has no value: step '{parts[1]}' gave none"
                ) from None
            if parts[0] == "env":
                raise self._fail(f"environment variable '{parts[1]}' is not set") from None
            raise self._fail(f"{node.dotted} has no value") from None
        raise self._fail(f"unknown name '{node.dotted}'")

    def _unary(self, node: Unary) -> Any:
        operand = self.value(node.operand)
        if node.op == "not":
            return not self._boolean(operand, "not")
        if not is_number(operand):
            raise self._fail(f"cannot negate {kind_of(operand)}")
        return -operand

    def _boolean(self, value: object, op: str) -> bool:
        if not isinstance(value, bool):
            raise self._fail(f"'{op}' needs boolean operands, got {kind_of(value)}")
        return value

    def _binary(self, node: Binary) -> Any:
        op = node.op
        left = self.value(node.left)
        if op == "and":
            return self._boolean(left, op) and self._boolean(self.value(node.right), op)
        if op == "or":
            return self._boolean(left, op) or self._boolean(self.value(node.right), op)
        right = self.value(node.right)
        if op == "==":
            return equal(left, right)
        if op == "!=":
            return not equal(left, right)
        if op in ("in", "not in"):
            return self._contains(right, left, op) == (op == "in")
        ordered = (is_number(left) and is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        )
        if not ordered:
            raise self._fail(f"cannot compare {kind_of(left)} with {kind_of(right)}")
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        if op == ">":
            return left > right
        return left >= right

    def _contains(self, container: object, item: object, op: str) -> bool:
        if isinstance(container, list | tuple):
            return any(equal(item, element) for element in container)
        if isinstance(container, str) and isinstance(item, str):
            return item in container
        raise self._fail(f"'{op}' needs a list or a string, got {kind_of(container)}")

    def _call(self, node: Call) -> Any:
        args = [self.value(arg) for arg in node.args]
        name = node.function
        if name == "length" and len(args) == 1 and isinstance(args[0], str | list | tuple):
            return len(args[0])
        if name == "contains" and len(args) == 2:
            return self._contains(args[0], args[1], "contains")
        if name in ("startsWith", "endsWith") and len(args) == 2:
            text, affix = args
            if isinstance(text, str) and isinstance(affix, str):
                return text.startswith(affix) if name == "startsWith" else text.endswith(affix)
        if name == "filter" and len(args) == 2:
            items, pattern = args
            if isinstance(items, list | tuple) and isinstance(pattern, str):
                return [i for i in items if isinstance(i, str) and fnmatch.fnmatchcase(i, pattern)]
        if name == "join" and len(args) == 2:
            items, separator = args
            if isinstance(items, list | tuple) and isinstance(separator, str):
                return separator.join(as_text(item) for item in items)
        if name == "format" and args and isinstance(args[0], str):
            try:
                return format_text(args[0], [as_text(arg) for arg in args[1:]])
            except ValueError as exc:
                raise self._fail(str(exc)) from None
        kinds = ", ".join(kind_of(arg) for arg in args)
        raise self._fail(f"{name}() cannot take ({kinds})")


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([0-9]{1,2})\}|[{}]")


def format_text(template: str, args: list[str]) -> str:
    """``format('{0}-{1}', a, b)``: ``{N}`` is argument N, ``{{`` and ``}}`` are braces."""

    def replace(match: re.Match[str]) -> str:
        token = match[0]
        if token in ("{{", "}}"):
            return token[0]
        if match[1] is None:
            raise ValueError(f"format: stray {token!r}; write {token * 2} for a brace")
        index = int(match[1])
        if index >= len(args):
            raise ValueError(f"format: {{{index}}} has no argument ({len(args)} given)")
        return args[index]

    return _PLACEHOLDER.sub(replace, template)


def placeholders(template: str) -> list[int]:
    """The argument indexes ``{N}`` of a format template (ValueError for a stray brace)."""
    found: list[int] = []
    for match in _PLACEHOLDER.finditer(template):
        if match[0] in ("{{", "}}"):
            continue
        if match[1] is None:
            raise ValueError(f"stray {match[0]!r}; write {match[0] * 2} for a brace")
        found.append(int(match[1]))
    return found
