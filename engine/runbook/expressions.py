"""The expression language of ``${{ ... }}``: tokenizer, parser, AST and evaluation.

    Expression              one parsed value as stored in the model: a whole ``${{ expr }}``
                            (typed) or a string with ``${{ }}`` parts inside (a string)
    evaluate(expr, scope)   its value in a Scope (``engine.runbook.evaluation``)
    ExpressionError         an expression failed at run time (exit 1)

An expression is data, never code. A hand-written tokenizer and a Pratt parser build an AST of
frozen dataclasses, and evaluation walks it: there is no ``eval``, no attribute access into Python
objects and no indexing. Names are only ``params.<p>``, ``target.<field>``,
``steps.<id>.<output>`` and ``env.<NAME>``; the functions are the few in FUNCTIONS. Static types
are checked when a runbook is validated (``engine.runbook.typecheck``), not here.
"""

from __future__ import annotations

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
            if isinstance(operand, Literal) and is_number(operand.value):
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


def unparse(node: Node) -> str:
    """The expression ``node`` as it could be written again (names dotted, strings quoted,
    nested operators in parentheses): how a message names one side of a comparison."""
    if isinstance(node, Literal):
        return _literal_text(node.value)
    if isinstance(node, ListLiteral):
        return "[" + ", ".join(unparse(item) for item in node.items) + "]"
    if isinstance(node, Name):
        return node.dotted
    if isinstance(node, Unary):
        inner = unparse(node.operand)
        inner = f"({inner})" if isinstance(node.operand, Binary) else inner
        return f"not {inner}" if node.op == "not" else f"-{inner}"
    if isinstance(node, Binary):
        left, right = unparse(node.left), unparse(node.right)
        left = f"({left})" if isinstance(node.left, Binary) else left
        right = f"({right})" if isinstance(node.right, Binary) else right
        return f"{left} {node.op} {right}"
    return f"{node.function}(" + ", ".join(unparse(arg) for arg in node.args) + ")"


def _literal_text(value: Scalar) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _show(token: _Token) -> str:
    return "end of expression" if token.kind == "end" else f"'{token.text[:30]}'"


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
