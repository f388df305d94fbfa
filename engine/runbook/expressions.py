"""The expression language of ``${{ ... }}``: tokenizer, parser, AST, evaluation; durations, rates.

    Expression              one parsed value as stored in the model: a whole ``${{ expr }}``
                            (typed) or a string with ``${{ }}`` parts inside (a string)
    evaluate(expr, scope)   its value in a Scope (params, target, step outputs, env)
    resolve(value, scope)   ``value`` with every Expression in it (lists, mappings) evaluated
    ExpressionError         an expression failed at run time (exit 1)

An expression is data, never code. A hand-written tokenizer and a Pratt parser build an AST of
frozen dataclasses, and evaluation walks it: there is no ``eval``, no attribute access into Python
objects and no indexing. Names are only ``params.<p>``, ``target.<field>``,
``steps.<id>.<output>`` and ``env.<NAME>``; the functions are the few in FUNCTIONS. Static types
are checked when a runbook is validated (``engine.runbook.typecheck``), not here.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineError, Location

EXPRESSION_START = "${{"
EXPRESSION_END = "}}"
MAX_EXPRESSION_LENGTH = 1000
MAX_DEPTH = 32
MAX_RESULT_LENGTH = 100_000

FUNCTIONS = ("contains", "endsWith", "filter", "format", "join", "length", "startsWith")
NAMESPACES = ("params", "target", "steps", "env")
TARGET_FIELDS = ("endpoint", "name", "project_id", "region")
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?) */ *(s|m|h)")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", ".", "-")


class ExpressionError(EngineError):
    """An expression could not be evaluated at run time, such as a step output that is missing.

    Not a validation error: those are Diagnostics of RunbookInvalidError, found before a run.
    """

    exit_code = 1

    def __init__(self, expression: Expression, detail: str) -> None:
        self.expression = expression
        self.detail = detail
        super().__init__(f"{expression.location}: {expression.text}: {detail}")


class ExpressionSyntaxError(ValueError):
    """An expression does not parse; ``offset`` is where in the written string."""

    def __init__(self, offset: int, message: str, hint: str | None = None) -> None:
        self.offset = offset
        self.message = message
        self.hint = hint
        super().__init__(message)


# ----------------------------------------------------------------------------- the AST

Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Literal:
    value: Scalar
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ListLiteral:
    items: tuple[Node, ...]
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Name:
    """A dotted name such as ``steps.select.jobs``; ``offsets`` locate each part."""

    parts: tuple[str, ...]
    offsets: tuple[int, ...]

    @property
    def offset(self) -> int:
        return self.offsets[0]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unary:
    op: str  # "not" or "-"
    operand: Node
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Binary:
    op: str  # "and", "or", or one of COMPARISONS
    left: Node
    right: Node
    offset: int  # of the operator


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    function: str
    args: tuple[Node, ...]
    offset: int


Node = Literal | ListLiteral | Name | Unary | Binary | Call


@dataclass(frozen=True, slots=True, kw_only=True)
class Expression:
    """One parsed value as written in the runbook: ``${{ expr }}``, or text with ``${{ }}`` parts.

    A whole expression evaluates to its typed value; an interpolated string to a string.
    ``static_type`` is the type the validator inferred (``string``, ``integer``, ``number``,
    ``boolean``, ``null``, ``list[...]`` or ``any``).
    """

    text: str
    location: Location
    static_type: str
    parts: tuple[str | Node, ...]

    @property
    def whole(self) -> bool:
        """Whether the value is exactly one ``${{ }}`` (typed), not a string around them."""
        return len(self.parts) == 1 and not isinstance(self.parts[0], str)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """The values names refer to while a step runs for one target."""

    params: Mapping[str, Any]
    target: Mapping[str, Any]
    steps: Mapping[str, Mapping[str, Any]]
    env: Mapping[str, str]


# ----------------------------------------------------------------------------- parsing


def is_expression(value: object) -> bool:
    """Whether ``value`` is a string that means to hold an expression (and must parse)."""
    return isinstance(value, str) and EXPRESSION_START in value


def parse_template(text: str) -> tuple[str | Node, ...]:
    """The literal text and expression ASTs of ``text``, in order; a whole ``${{ }}`` gives one.

    Raises ExpressionSyntaxError, and nothing else, for any malformed input.
    """
    parts: list[str | Node] = []
    position = 0
    while (start := text.find(EXPRESSION_START, position)) >= 0:
        if start > position:
            parts.append(text[position:start])
        tokens, position = _tokenize(text, start + len(EXPRESSION_START))
        parts.append(_Parser(tokens, start).parse())
    if position < len(text):
        parts.append(text[position:])
    if len(parts) == 1 and not isinstance(parts[0], str):
        return tuple(parts)
    stripped = [p for p in parts if not (isinstance(p, str) and not p.strip())]
    if len(stripped) == 1 and not isinstance(stripped[0], str):
        return tuple(stripped)  # only blanks around one expression: still a typed value
    return tuple(parts)


def parse_expression(
    text: str, location: Location | None = None, static_type: str = "any"
) -> Expression:
    """An Expression from its text, unchecked (for tests and tools; the validator types them).

    Raises ExpressionSyntaxError for malformed input.
    """
    here = location or Location(path="<expression>", line=1, col=1)
    parts = parse_template(text)
    whole = len(parts) == 1 and not isinstance(parts[0], str)
    kind = static_type if whole else "string"
    return Expression(text=text, location=here, static_type=kind, parts=parts)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "string", "name", "op", "end"
    text: str
    offset: int
    value: Scalar = None


def _tokenize(text: str, start: int) -> tuple[list[_Token], int]:
    """The tokens from ``start`` up to and including ``}}``, and the offset after it."""
    tokens: list[_Token] = []
    position = start
    opened = start - len(EXPRESSION_START)
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position - start > MAX_EXPRESSION_LENGTH:
            raise ExpressionSyntaxError(
                opened, f"expression is longer than {MAX_EXPRESSION_LENGTH} characters"
            )
        if position >= len(text):
            raise ExpressionSyntaxError(opened, "unterminated expression: missing '}}'")
        char = text[position]
        if text.startswith(EXPRESSION_END, position):
            tokens.append(_Token("end", EXPRESSION_END, position))
            return tokens, position + len(EXPRESSION_END)
        if char in "'\"":
            value, after = _string(text, position)
            tokens.append(_Token("string", text[position:after], position, value))
            position = after
        elif match := _NUMBER.match(text, position):
            literal = match[0]
            if len(literal) > 30:
                raise ExpressionSyntaxError(position, "number literal is too long")
            number: int | float = float(literal) if match[1] else int(literal)
            tokens.append(_Token("number", literal, position, number))
            position = match.end()
        elif match := _NAME.match(text, position):
            tokens.append(_Token("name", match[0], position))
            position = match.end()
        else:
            operator = next((op for op in _OPERATORS if text.startswith(op, position)), None)
            if operator is None:
                hint = "use '==' to compare" if char == "=" else None
                hint = "use 'and', 'or', 'not'" if char in "&|!" else hint
                raise ExpressionSyntaxError(position, f"unexpected character {char!r}", hint)
            tokens.append(_Token("op", operator, position))
            position += len(operator)


def _string(text: str, start: int) -> tuple[str, int]:
    """A quoted string literal at ``start``; the quote is escaped by doubling it (``'it''s'``)."""
    quote = text[start]
    chunks: list[str] = []
    position = start + 1
    while True:
        end = text.find(quote, position)
        if end < 0:
            raise ExpressionSyntaxError(start, "unterminated string literal")
        chunks.append(text[position:end])
        if text.startswith(quote * 2, end):
            chunks.append(quote)
            position = end + 2
        else:
            return "".join(chunks), end + 1


# Binding powers of infix operators; comparisons do not chain.
_INFIX = {"or": 10, "and": 20, **dict.fromkeys(COMPARISONS, 40)}
_PREFIX_NOT = 30
_PREFIX_MINUS = 60


class _Parser:
    """A Pratt parser over the tokens of one ``${{ }}``."""

    def __init__(self, tokens: list[_Token], opened: int) -> None:
        self._tokens = tokens
        self._index = 0
        self._depth = 0
        self._opened = opened

    def parse(self) -> Node:
        if self._peek().kind == "end":
            raise ExpressionSyntaxError(self._opened, "empty expression")
        node = self._expression(0)
        token = self._peek()
        if token.kind != "end":
            raise ExpressionSyntaxError(token.offset, f"unexpected {_show(token)}")
        return node

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def _expect(self, text: str) -> _Token:
        token = self._next()
        if token.kind != "op" or token.text != text:
            raise ExpressionSyntaxError(token.offset, f"expected '{text}', got {_show(token)}")
        return token

    def _infix_operator(self) -> str | None:
        token = self._peek()
        if token.kind == "op" and token.text in COMPARISONS:
            return token.text
        if token.kind == "name" and token.text in ("and", "or", "in"):
            return token.text
        following = self._tokens[self._index + 1] if token.kind != "end" else token
        if token.kind == "name" and token.text == "not" and following.text == "in":
            return "not in"
        return None

    def _expression(self, min_power: int) -> Node:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ExpressionSyntaxError(
                self._peek().offset, f"expression is nested too deeply (more than {MAX_DEPTH})"
            )
        left = self._prefix()
        while (op := self._infix_operator()) is not None and _INFIX[op] > min_power:
            token = self._next()
            if op == "not in":
                self._next()
            power = _INFIX[op]
            right = self._expression(power)
            left = Binary(op=op, left=left, right=right, offset=token.offset)
            if power == _INFIX["=="] and (chained := self._infix_operator()) in COMPARISONS:
                raise ExpressionSyntaxError(
                    self._peek().offset,
                    f"comparisons cannot be chained: '{chained}' after '{op}'",
                    "combine them with 'and'",
                )
        self._depth -= 1
        return left

    def _prefix(self) -> Node:
        token = self._next()
        if token.kind in ("number", "string"):
            return Literal(value=token.value, offset=token.offset)
        if token.kind == "op" and token.text == "(":
            node = self._expression(0)
            self._expect(")")
            return node
        if token.kind == "op" and token.text == "[":
            return self._list(token)
        if token.kind == "op" and token.text == "-":
            operand = self._expression(_PREFIX_MINUS)
            if isinstance(operand, Literal) and _is_number(operand.value):
                assert isinstance(operand.value, int | float)
                return Literal(value=-operand.value, offset=token.offset)
            return Unary(op="-", operand=operand, offset=token.offset)
        if token.kind == "name":
            return self._word(token)
        raise ExpressionSyntaxError(token.offset, f"expected a value, got {_show(token)}")

    def _word(self, token: _Token) -> Node:
        words: dict[str, Scalar] = {"true": True, "false": False, "null": None}
        if token.text in words:
            return Literal(value=words[token.text], offset=token.offset)
        if token.text == "not":
            return Unary(op="not", operand=self._expression(_PREFIX_NOT), offset=token.offset)
        if token.text in KEYWORDS:
            raise ExpressionSyntaxError(token.offset, f"expected a value, got '{token.text}'")
        if self._peek().text == "(" and self._peek().kind == "op":
            return self._call(token)
        parts, offsets = [token.text], [token.offset]
        while self._peek().kind == "op" and self._peek().text == ".":
            self._next()
            part = self._next()
            if part.kind != "name":
                raise ExpressionSyntaxError(
                    part.offset, f"expected a name after '.', got {_show(part)}"
                )
            parts.append(part.text)
            offsets.append(part.offset)
        return Name(parts=tuple(parts), offsets=tuple(offsets))

    def _call(self, token: _Token) -> Node:
        self._expect("(")
        args: list[Node] = []
        if not (self._peek().kind == "op" and self._peek().text == ")"):
            args.append(self._expression(0))
            while self._peek().kind == "op" and self._peek().text == ",":
                self._next()
                args.append(self._expression(0))
        self._expect(")")
        return Call(function=token.text, args=tuple(args), offset=token.offset)

    def _list(self, opening: _Token) -> Node:
        items: list[Node] = []
        if not (self._peek().kind == "op" and self._peek().text == "]"):
            items.append(self._expression(0))
            while self._peek().kind == "op" and self._peek().text == ",":
                self._next()
                items.append(self._expression(0))
        self._expect("]")
        return ListLiteral(items=tuple(items), offset=opening.offset)


def _show(token: _Token) -> str:
    return "end of expression" if token.kind == "end" else f"'{token.text[:30]}'"


# ----------------------------------------------------------------------------- evaluation


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


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(left: object, right: object) -> bool:
    """Equality without Python's ``True == 1``: values of different types are never equal."""
    if _is_number(left) and _is_number(right):
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
        if not _is_number(operand):
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
        ordered = (_is_number(left) and _is_number(right)) or (
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


# ----------------------------------------------------------------------------- durations, rates


def parse_duration(value: int | float | str) -> float:
    """Seconds in a duration: a number of seconds, or ``250ms``, ``90s``, ``10m``, ``2h``.

    Raises ValueError for anything else, including negative, infinite and NaN values.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")  # noqa: TRY004 (one error type)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"expected a duration such as 250ms, 90s, 10m or 2h, got {value!r}")
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}")  # noqa: TRY004
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a finite duration >= 0, got {value!r}")
    return seconds


def parse_rate(value: str) -> float:
    """Events per second in a rate: ``20/s`` is 20.0, ``300/m`` is 5.0, ``1/h`` is 1/3600.

    Raises ValueError for anything else, and for a rate that is not > 0.
    """
    match = _RATE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a rate such as 20/s, 300/m or 1/h, got {value!r}")
    per_second = float(match[1]) / _UNIT_SECONDS[match[2]]
    if not math.isfinite(per_second) or per_second <= 0:
        raise ValueError(f"expected a rate > 0, got {value!r}")
    return per_second
