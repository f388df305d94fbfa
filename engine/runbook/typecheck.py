"""Static types of expressions: every name resolved, every operator and function type-checked.

Types are strings as messages show them: ``string``, ``integer``, ``number``, ``boolean``,
``null``, ``list[T]`` (T one of the scalar types or ``any``) and ``any`` (nothing is known, such
as the output of an action that declares no types). ``integer`` fits where ``number`` is expected;
``null`` fits only ``==`` and ``!=``. The checker reports problems, it never raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from engine.rules import Rule
from engine.runbook.evaluation import kind_of, placeholders
from engine.runbook.expressions import (
    COMPARISONS,
    FUNCTIONS,
    NAMESPACES,
    TARGET_FIELDS,
    Binary,
    Call,
    ListLiteral,
    Literal,
    Name,
    Node,
    Unary,
)
from engine.runbook.schema import suggest

SCALARS = ("string", "integer", "number", "boolean")
ANY = "any"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One problem of an expression: where in the written string, what, and maybe a hint;
    ``rule`` is ``REFERENCE`` for a name that does not exist there, ``TYPE`` for the rest."""

    offset: int
    message: str
    rule: Rule
    hint: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Names:
    """What names mean at one place of the runbook.

    ``steps`` maps each step id to (its index, its action or None when unknown); ``outputs`` maps
    an action to its output types; ``here`` is the index of the step the expression is in.
    """

    params: Mapping[str, str] = field(default_factory=dict)
    env: frozenset[str] = frozenset()
    steps: Mapping[str, tuple[int, str | None]] = field(default_factory=dict)
    outputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    here: int = 0


def is_list(kind: str) -> bool:
    return kind.startswith("list[")


def item_type(kind: str) -> str:
    """The item type of ``list[T]``; ``any`` for ``any``."""
    return kind[5:-1] if is_list(kind) else ANY


def fits(actual: str, expected: str) -> bool:
    """Whether a value of type ``actual`` may stand where ``expected`` is required."""
    if ANY in (actual, expected) or actual == expected:
        return True
    if actual == "integer" and expected == "number":
        return True
    return is_list(actual) and is_list(expected) and fits(item_type(actual), item_type(expected))


def _numeric(kind: str) -> bool:
    return kind in ("integer", "number", ANY)


class _Checker:
    def __init__(self, names: Names) -> None:
        self.names = names
        self.problems: list[Problem] = []

    def fail(self, offset: int, message: str, hint: str | None = None) -> str:
        """A type problem at ``offset``."""
        self.problems.append(Problem(offset=offset, message=message, rule=Rule.TYPE, hint=hint))
        return ANY  # an erroneous node says nothing more about its parents

    def missing(self, offset: int, message: str, hint: str | None = None) -> str:
        """A name that does not exist where it is used."""
        problem = Problem(offset=offset, message=message, rule=Rule.REFERENCE, hint=hint)
        self.problems.append(problem)
        return ANY

    def infer(self, node: Node) -> str:
        if isinstance(node, Literal):
            return kind_of(node.value)
        if isinstance(node, ListLiteral):
            return self._list(node)
        if isinstance(node, Name):
            return self._name(node)
        if isinstance(node, Unary):
            return self._unary(node)
        if isinstance(node, Binary):
            return self._binary(node)
        return self._call(node)

    def _list(self, node: ListLiteral) -> str:
        kinds = [self.infer(item) for item in node.items]
        known = {k for k in kinds if k != ANY}
        if any(is_list(k) for k in known):
            return self.fail(node.offset, "lists of lists are not supported")
        if "null" in known:
            return self.fail(node.offset, "a list cannot hold null")
        if known == {"integer", "number"}:
            known = {"number"}
        if len(known) > 1:
            mixed = " and ".join(sorted(known))
            return self.fail(node.offset, f"list items must have one type, got {mixed}")
        return f"list[{known.pop() if known else ANY}]"

    def _name(self, node: Name) -> str:
        parts, offsets = node.parts, node.offsets
        root = parts[0]
        if root not in NAMESPACES:
            return self.missing(
                node.offset,
                f"unknown name '{node.dotted}'; names start with params., target., steps. or env.",
                suggest(root, NAMESPACES),
            )
        expected = 3 if root == "steps" else 2
        if len(parts) != expected:
            shape = {
                "params": "params.<name>",
                "target": "target.<field>",
                "steps": "steps.<id>.<output>",
                "env": "env.<NAME>",
            }[root]
            return self.missing(node.offset, f"expected {shape}, got {node.dotted}")
        if root == "params":
            return self._param(parts[1], offsets[1])
        if root == "target":
            if parts[1] not in TARGET_FIELDS:
                return self.missing(
                    offsets[1],
                    f"target has no field '{parts[1]}'; fields: {', '.join(TARGET_FIELDS)}",
                    suggest(parts[1], TARGET_FIELDS),
                )
            return "string"
        if root == "env":
            if parts[1] not in self.names.env:
                listed = self.names.env
                hint = suggest(parts[1], listed) or f"add {parts[1]} to the top-level env: list"
                return self.missing(offsets[1], f"env '{parts[1]}' is not allowed", hint)
            return "string"
        return self._output(node)

    def _param(self, name: str, offset: int) -> str:
        params = self.names.params
        if name not in params:
            known = f"; params: {', '.join(sorted(params))}" if params else "; no params defined"
            return self.missing(offset, f"unknown param '{name}'{known}", suggest(name, params))
        return params[name]

    def _output(self, node: Name) -> str:
        _, step_id, output = node.parts
        steps = self.names.steps
        if step_id not in steps:
            return self.missing(
                node.offsets[1], f"unknown step '{step_id}'", suggest(step_id, steps)
            )
        index, action = steps[step_id]
        if index == self.names.here:
            return self.missing(node.offsets[1], f"step '{step_id}' cannot use its own outputs")
        if index > self.names.here:
            return self.missing(node.offsets[1], f"step '{step_id}' is defined after this step")
        if action is None or action not in self.names.outputs:
            return ANY  # that step's own diagnostic says what is wrong with it
        outputs = self.names.outputs[action]
        if output not in outputs:
            return self.missing(
                node.offsets[2],
                f"step '{step_id}' ({action}) has no output '{output}'; "
                f"outputs: {', '.join(sorted(outputs))}",
                suggest(output, outputs),
            )
        return outputs[output]

    def _unary(self, node: Unary) -> str:
        kind = self.infer(node.operand)
        if node.op == "not":
            if kind not in ("boolean", ANY):
                return self.fail(node.offset, f"'not' needs a boolean, got {kind}")
            return "boolean"
        if not _numeric(kind):
            return self.fail(node.offset, f"cannot negate {kind}")
        return kind

    def _binary(self, node: Binary) -> str:
        left, right = self.infer(node.left), self.infer(node.right)
        op = node.op
        if op in ("and", "or"):
            for kind in (left, right):
                if kind not in ("boolean", ANY):
                    return self.fail(node.offset, f"'{op}' needs boolean operands, got {kind}")
            return "boolean"
        assert op in COMPARISONS
        if op in ("==", "!="):
            if "null" in (left, right) or fits(left, right) or fits(right, left):
                return "boolean"
            return self.fail(node.offset, f"cannot compare {left} with {right}")
        if op in ("in", "not in"):
            return self._membership(node.offset, op, left, right)
        if (_numeric(left) and _numeric(right)) or {left, right} <= {"string", ANY}:
            return "boolean"
        hint = (
            "use length(...) to compare a list's size" if is_list(left) or is_list(right) else None
        )
        return self.fail(node.offset, f"cannot compare {left} with {right}", hint)

    def _membership(self, offset: int, op: str, item: str, container: str) -> str:
        if container == ANY or (container == "string" and item in ("string", ANY)):
            return "boolean"
        if is_list(container) and (
            item == "null" or fits(item, item_type(container)) or fits(item_type(container), item)
        ):
            return "boolean"
        if is_list(container) or container == "string":
            return self.fail(offset, f"'{op}': cannot look for {item} in {container}")
        return self.fail(offset, f"'{op}' needs a list or a string on the right, got {container}")

    def _call(self, node: Call) -> str:
        name = node.function
        if name not in FUNCTIONS:
            return self.missing(
                node.offset,
                f"unknown function '{name}'; functions: {', '.join(FUNCTIONS)}",
                suggest(name, FUNCTIONS),
            )
        kinds = [self.infer(arg) for arg in node.args]
        arity = {"length": 1, "contains": 2, "startsWith": 2, "endsWith": 2, "filter": 2}
        arity["join"] = 2
        if name in arity and len(kinds) != arity[name]:
            return self.fail(
                node.offset, f"{name}() takes {arity[name]} argument(s), got {len(kinds)}"
            )
        return _SIGNATURES[name](self, node, kinds)


def _check_args(
    checker: _Checker, node: Call, kinds: Sequence[str], expected: Sequence[str]
) -> bool:
    """Each argument against ``expected`` (``list`` means any list); False after a problem."""
    for index, (kind, want) in enumerate(zip(kinds, expected, strict=True)):
        ok = (is_list(kind) or kind == ANY) if want == "list" else fits(kind, want)
        if not ok:
            checker.fail(
                _offset(node.args[index]),
                f"{node.function}(): argument {index + 1} must be {want}, got {kind}",
            )
            return False
    return True


def _offset(node: Node) -> int:
    return node.offset


def _length(checker: _Checker, node: Call, kinds: Sequence[str]) -> str:
    [kind] = kinds
    if kind not in ("string", ANY) and not is_list(kind):
        checker.fail(_offset(node.args[0]), f"length() needs a list or a string, got {kind}")
    return "integer"


def _contains(checker: _Checker, node: Call, kinds: Sequence[str]) -> str:
    container, item = kinds
    return checker._membership(node.offset, "contains", item, container)


def _affix(checker: _Checker, node: Call, kinds: Sequence[str]) -> str:
    _check_args(checker, node, kinds, ("string", "string"))
    return "boolean"


def _filter(checker: _Checker, node: Call, kinds: Sequence[str]) -> str:
    if _check_args(checker, node, kinds, ("list[string]", "string")):
        return "list[string]"
    return ANY


def _join(checker: _Checker, node: Call, kinds: Sequence[str]) -> str:
    _check_args(checker, node, kinds, ("list", "string"))
    return "string"


def _format(checker: _Checker, node: Call, kinds: Sequence[str]) -> str:
    if not kinds:
        return checker.fail(node.offset, "format() needs a template string")
    if not fits(kinds[0], "string"):
        return checker.fail(
            _offset(node.args[0]), f"format(): the template must be string, got {kinds[0]}"
        )
    for arg, kind in zip(node.args[1:], kinds[1:], strict=True):
        if is_list(kind):
            checker.fail(_offset(arg), f"format(): cannot format {kind}; use join(...)")
    template = node.args[0]
    if isinstance(template, Literal) and isinstance(template.value, str):
        try:
            indexes = placeholders(template.value)
        except ValueError as exc:
            return checker.fail(template.offset, f"format(): {exc}")
        missing = sorted({i for i in indexes if i >= len(kinds) - 1})
        if missing:
            return checker.fail(
                template.offset,
                f"format(): {{{missing[0]}}} has no argument ({len(kinds) - 1} given)",
            )
    return "string"


_SIGNATURES = {
    "length": _length,
    "contains": _contains,
    "startsWith": _affix,
    "endsWith": _affix,
    "filter": _filter,
    "join": _join,
    "format": _format,
}


def infer(node: Node, names: Names) -> tuple[str, list[Problem]]:
    """The static type of ``node`` and every problem found in it."""
    checker = _Checker(names)
    kind = checker.infer(node)
    return kind, checker.problems


def interpolation_problems(node: Node, kind: str) -> Iterator[Problem]:
    """A problem if a value of ``kind`` cannot be written into a string."""
    if is_list(kind):
        yield Problem(
            offset=node.offset,
            rule=Rule.TYPE,
            message=f"cannot interpolate {kind} into a string",
            hint="use join(list, ', ') or make the expression the whole value",
        )
