"""Read a runbook file as safe YAML into plain data, with the source location of every node.

The data is built from ``yaml.compose`` nodes with ``yaml.SafeLoader`` semantics rather than by
``yaml.safe_load``, which silently keeps the last of two duplicate keys and expands aliases.
Here a duplicate key, an alias, a non-string key or an unknown tag is a diagnostic, and no input
raises anything but :class:`~engine.errors.RunbookInvalidError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import yaml

from engine.bounded import FileRefusedError, read_file
from engine.errors import Diagnostic, Location, RunbookInvalidError
from engine.rules import Rule
from engine.surrogates import lone_surrogate_at

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64

_TOO_DEEP = f"runbook is nested too deeply (more than {MAX_DEPTH} levels)"

JsonPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STRING_TAGS = frozenset({f"{_TAG}str", f"{_TAG}timestamp", f"{_TAG}merge", f"{_TAG}value"})
# Scalar tags built by the SafeLoader's own constructors; a timestamp stays the text it was.
_SCALARS = yaml.SafeLoader("")


@dataclass(slots=True)
class SourceMap:
    """Where each value (and each mapping key) of the data was written in the file."""

    path: str
    values: dict[JsonPath, Location] = field(default_factory=dict)
    keys: dict[JsonPath, Location] = field(default_factory=dict)
    lines: tuple[str, ...] = ()

    def line(self, number: int) -> str | None:
        """The text of line ``number`` (1-based), if the file has it."""
        return self.lines[number - 1] if 1 <= number <= len(self.lines) else None

    def inside(self, at: JsonPath, text: str, offset: int) -> Location:
        """Where character ``offset`` of the string ``text`` at ``at`` was written.

        Exact for a plain or quoted scalar on one line whose source spells the text as is; the
        value's own location otherwise (block scalars, escapes, folded lines).
        """
        start = self.value(at)
        line = self.line(start.line)
        if line is None or offset <= 0:
            return start
        written = line[start.col - 1 :]
        skip = 1 if written[:1] in ("'", '"') else 0
        if written[skip:].startswith(text[:offset]) and "\n" not in text[:offset]:
            return Location(path=start.path, line=start.line, col=start.col + skip + offset)
        return start

    def value(self, at: JsonPath) -> Location:
        """The location of the value at ``at``, or of its nearest ancestor that has one."""
        for end in range(len(at), -1, -1):
            found = self.values.get(at[:end])
            if found is not None:
                return found
        return Location(path=self.path, line=1, col=1)

    def key(self, at: JsonPath) -> Location:
        """The location of the key of the mapping entry at ``at`` (its value's if it has none)."""
        return self.keys.get(at) or self.value(at)


@dataclass(frozen=True, slots=True)
class ParsedYaml:
    """A runbook's data (a mapping at the top) and where each part of it was written."""

    data: dict[str, Any]
    source: SourceMap


def read_yaml(
    path: Path, *, kind: str = "runbook", expected: str = "version, name, targets, steps"
) -> ParsedYaml:
    """Parse the file at ``path``; raise RunbookInvalidError listing every parse-level problem.

    ``kind`` names the file in messages ("runbook", "params file"); ``expected`` lists the keys
    its top-level mapping should have. Diagnostics carry their source line.
    """
    name = str(path)
    text = _read_text(path, name, kind)
    lines = tuple(text.splitlines())
    try:
        return _read_document(text, name, lines, kind, expected)
    except RunbookInvalidError as exc:
        raise RunbookInvalidError(with_source_lines(exc.diagnostics, lines)) from None


def _read_document(
    text: str, name: str, lines: tuple[str, ...], kind: str, expected: str
) -> ParsedYaml:
    builder = _Builder(name)
    builder.source.lines = lines
    try:
        root = _compose(text, name)
        if root is None:
            _fail(Rule.SCHEMA, name, 1, 1, f"{kind} is empty")
        data = builder.build(root, ())
    except RecursionError:
        _fail(Rule.YAML_SYNTAX, name, 1, 1, _TOO_DEEP.replace("runbook", kind))
    if builder.diagnostics:
        raise RunbookInvalidError(builder.diagnostics)
    if data is None:
        _fail(Rule.SCHEMA, name, 1, 1, f"{kind} is empty")
    if not isinstance(data, dict):
        mark = root.start_mark
        _fail(
            Rule.SCHEMA,
            name,
            mark.line + 1,
            mark.column + 1,
            f"{kind} must be a mapping ({expected}), got {_kind(data)}",
        )
    return ParsedYaml(data=data, source=builder.source)


def with_source_lines(diagnostics: Iterable[Diagnostic], lines: Sequence[str]) -> list[Diagnostic]:
    """``diagnostics`` with the text of the line each one points at (for a caret under it)."""
    found: list[Diagnostic] = []
    for diagnostic in diagnostics:
        number = diagnostic.location.line
        if diagnostic.source_line is None and 1 <= number <= len(lines):
            diagnostic = replace(diagnostic, source_line=lines[number - 1])
        found.append(diagnostic)
    return found


def _fail(
    rule: Rule, path: str, line: int, col: int, message: str, hint: str | None = None
) -> NoReturn:
    location = Location(path=path, line=line, col=col)
    raise RunbookInvalidError(
        [Diagnostic(location=location, message=message, rule=rule, hint=hint)]
    )


def _read_text(path: Path, name: str, kind: str) -> str:
    try:
        raw = read_file(path, limit=MAX_BYTES)
    except FileRefusedError as exc:
        if exc.oversize:
            _fail(
                Rule.FILE_UNREADABLE, name, 1, 1, f"{kind} is larger than {MAX_BYTES // 1024} KiB"
            )
        _fail(Rule.FILE_UNREADABLE, name, 1, 1, f"cannot read {kind}: {exc.reason}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"{kind} is not UTF-8 text: byte 0x{raw[exc.start]:02x}"
        _fail(Rule.FILE_UNREADABLE, name, line, col, message)


def _compose(text: str, name: str) -> yaml.Node | None:
    """Compose the single document, once its events show no alias and no absurd nesting.

    Refusing aliases before composing kills alias bombs; bounding the depth while streaming
    keeps PyYAML (quadratic in flow nesting, recursive when composing) fast and shallow.

    libyaml does the work when PyYAML has it (10x faster: a runbook with 1,000 targets takes
    0.05 s instead of 0.45 s); when it finds the text invalid, the pure-Python parser reads it
    again, so that the diagnostic is always worded the same.
    """
    if _LIBYAML is not None:
        try:
            return _compose_with(_LIBYAML, text, name)
        except yaml.YAMLError:
            pass
    try:
        return _compose_with(yaml.SafeLoader, text, name)
    except yaml.MarkedYAMLError as exc:
        tab = _indenting_tab(text, exc.problem_mark or exc.context_mark)
        if tab is not None:
            _fail(
                Rule.YAML_SYNTAX, name, *tab, "tab character in indentation", "indent with spaces"
            )
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or str(exc)
        if "'\\t'" in problem:
            message, hint = "invalid yaml: tab character here", "use spaces, not tabs"
            _fail(Rule.YAML_SYNTAX, name, line, col, message, hint)
        if problem.startswith("but ") and exc.context:
            problem = f"{exc.context}, {problem}"
        _fail(Rule.YAML_SYNTAX, name, line, col, f"invalid yaml: {problem}")
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"invalid yaml: character {exc.character!r} is not allowed"
        _fail(Rule.YAML_SYNTAX, name, line, col, message)
    except yaml.YAMLError as exc:
        _fail(Rule.YAML_SYNTAX, name, 1, 1, f"invalid yaml: {exc}")


# SafeLoader's semantics on libyaml, if PyYAML was built with it.
_LIBYAML: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def _compose_with(loader: Any, text: str, name: str) -> yaml.Node | None:
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        mark = event.start_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        if isinstance(event, yaml.AliasEvent):
            message = f"yaml aliases are not allowed in runbooks, got *{event.anchor}"
            _fail(Rule.YAML_UNSUPPORTED, name, line, col, message, "write the value out in full")
        depth += isinstance(event, yaml.CollectionStartEvent)
        depth -= isinstance(event, yaml.CollectionEndEvent)
        if depth > MAX_DEPTH:
            _fail(Rule.YAML_SYNTAX, name, line, col, _TOO_DEEP)
    node: yaml.Node | None = yaml.compose(text, Loader=loader)
    return node


def _indenting_tab(text: str, mark: yaml.Mark | None) -> tuple[int, int] | None:
    """The first tab used as indentation up to the line of a YAML error, as (line, col)."""
    last = mark.line if mark else 0
    for number, line in enumerate(text.splitlines()[: last + 1], start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            return number, indent.index("\t") + 1
    return None


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a scalar"


class _Builder:
    """Builds plain data from composed nodes, recording locations and collecting problems."""

    def __init__(self, path: str) -> None:
        self.source = SourceMap(path)
        self.diagnostics: list[Diagnostic] = []

    def _at(self, mark: yaml.Mark) -> Location:
        return Location(path=self.source.path, line=mark.line + 1, col=mark.column + 1)

    def _problem(self, rule: Rule, node: yaml.Node, message: str, hint: str | None = None) -> None:
        location = self._at(node.start_mark)
        diagnostic = Diagnostic(location=location, message=message, rule=rule, hint=hint)
        self.diagnostics.append(diagnostic)

    def build(self, node: yaml.Node, at: JsonPath) -> Any:
        self.source.values[at] = self._at(node.start_mark)
        if len(at) > MAX_DEPTH:
            self._problem(Rule.YAML_SYNTAX, node, _TOO_DEEP)
            return None
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if isinstance(node, yaml.SequenceNode) and node.tag == f"{_TAG}seq":
            return [self.build(item, (*at, index)) for index, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode) and node.tag == f"{_TAG}map":
            return self._mapping(node, at)
        self._problem(Rule.YAML_UNSUPPORTED, node, f"unsupported yaml tag '{_short(node.tag)}'")
        return None

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        try:
            if tag in _STRING_TAGS:
                text = str(node.value)
                if (index := lone_surrogate_at(text)) is not None:
                    self._lone_surrogate(node, text, index)
                    return None
                return text
            if tag == f"{_TAG}int":
                return _SCALARS.construct_yaml_int(node)
            if tag == f"{_TAG}float":
                return _SCALARS.construct_yaml_float(node)
            if tag == f"{_TAG}bool":
                return _SCALARS.construct_yaml_bool(node)
            if tag == f"{_TAG}null":
                return None
        except (ValueError, OverflowError, yaml.YAMLError):
            self._problem(
                Rule.YAML_SYNTAX, node, f"invalid {_short(tag)} value '{node.value[:40]}'"
            )
            return None
        self._problem(Rule.YAML_UNSUPPORTED, node, f"unsupported yaml tag '{_short(tag)}'")
        return None

    def _lone_surrogate(self, node: yaml.ScalarNode, text: str, index: int) -> None:
        """A double-quoted escape of half a UTF-16 pair (``"\\ud800"``), which PyYAML reads as
        a lone surrogate (libyaml refuses it): no UTF-8 file, report or journal can hold one.
        """
        code = ord(text[index])
        following = ord(text[index + 1]) if index + 1 < len(text) else 0
        if 0xD800 <= code <= 0xDBFF and 0xDC00 <= following <= 0xDFFF:
            whole = 0x10000 + ((code - 0xD800) << 10) + (following - 0xDC00)
            hint = f"write the pair as one escape, \\U{whole:08X}, or the character itself"
        else:
            hint = "write the character itself, or escape a whole code point (\\u00e9, \\U0001F600)"
        escape = re.compile(rf"\\u(?i:{code:04x})|\\U(?i:{code:08x})")
        location = self._at(node.start_mark)
        first, last = node.start_mark.line, node.end_mark.line
        for number in range(first, last + 1):
            line = self.source.line(number + 1) or ""
            found = escape.search(line, node.start_mark.column if number == first else 0)
            if found:
                location = Location(path=self.source.path, line=number + 1, col=found.start() + 1)
                break
        message = f"invalid yaml: \\u{code:04x} is half of a UTF-16 surrogate pair, not a character"
        self.diagnostics.append(
            Diagnostic(location=location, message=message, rule=Rule.YAML_SYNTAX, hint=hint)
        )

    def _mapping(self, node: yaml.MappingNode, at: JsonPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in _entries(node):
            if not isinstance(key_node, yaml.ScalarNode):
                message = "mapping keys must be strings, got a collection"
                self._problem(Rule.YAML_UNSUPPORTED, key_node, message)
                continue
            reported = len(self.diagnostics)
            key = self._scalar(key_node)
            if len(self.diagnostics) > reported:
                continue
            if not isinstance(key, str):
                kind = _KEY_KINDS.get(type(key), "a non-string value")
                self._problem(
                    Rule.YAML_UNSUPPORTED,
                    key_node,
                    f"mapping keys must be strings, got {key_node.value} ({kind} in YAML)",
                    f"quote the key: '{key_node.value}'",
                )
                continue
            if key in first_line:
                self._problem(
                    Rule.YAML_UNSUPPORTED,
                    key_node,
                    f"duplicate key '{key}' (first defined at line {first_line[key]})",
                )
                continue
            first_line[key] = key_node.start_mark.line + 1
            self.source.keys[(*at, key)] = self._at(key_node.start_mark)
            result[key] = self.build(value_node, (*at, key))
        return result


_KEY_KINDS: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _short(tag: str) -> str:
    """A tag as YAML spells it: ``!!python/object``, not ``tag:yaml.org,2002:python/object``."""
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _entries(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    yield from node.value
