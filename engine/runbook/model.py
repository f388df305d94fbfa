"""The runbook model: frozen dataclasses built from data the schema and the checks accepted.

The model is not a validator: :func:`build_runbook` trusts its input's shape. Action
parameters (``with_``) stay plain data, except that each reference string becomes a
:class:`~engine.runbook.expressions.Reference`; the actions apply their own defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.api.types import Language
from engine.errors import Location
from engine.runbook.expressions import is_expression, parse_duration, parse_reference
from engine.runbook.parse import JsonPath, ParsedYaml, SourceMap

DEFAULT_CONCURRENCY = 4
DEFAULT_LANGUAGE = Language.EN_US.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One DRS project the steps run against."""

    project_id: str
    region: str | None
    endpoint: str | None
    name: str | None
    location: Location

    @property
    def label(self) -> str:
        """How progress output and reports name the target."""
        return self.name or self.project_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One action with its parameters; ``with_`` holds References where the runbook has them."""

    id: str
    name: str | None
    action: str
    with_: Mapping[str, Any] = field(hash=False)
    timeout_s: float | None
    location: Location


@dataclass(frozen=True, slots=True, kw_only=True)
class Runbook:
    """A validated runbook: its targets and its steps, in file order."""

    path: str
    version: int
    name: str
    description: str | None
    concurrency: int
    language: str
    targets: tuple[Target, ...]
    steps: tuple[Step, ...]


def build_runbook(parsed: ParsedYaml) -> Runbook:
    """The model of a runbook that passed the schema and the semantic checks."""
    data, source = parsed.data, parsed.source
    targets = tuple(
        Target(
            project_id=target["project_id"],
            region=target.get("region"),
            endpoint=target.get("endpoint"),
            name=target.get("name"),
            location=source.value(("targets", index)),
        )
        for index, target in enumerate(data["targets"])
    )
    steps = tuple(
        Step(
            id=step["id"],
            name=step.get("name"),
            action=step["action"],
            with_=MappingProxyType(
                _with_references(step.get("with", {}), ("steps", index, "with"), source)
            ),
            timeout_s=None if step.get("timeout") is None else parse_duration(step["timeout"]),
            location=source.value(("steps", index)),
        )
        for index, step in enumerate(data["steps"])
    )
    return Runbook(
        path=source.path,
        version=int(data["version"]),
        name=data["name"],
        description=data.get("description"),
        concurrency=int(data.get("concurrency", DEFAULT_CONCURRENCY)),
        language=data.get("language", DEFAULT_LANGUAGE),
        targets=targets,
        steps=steps,
    )


def _with_references(value: Any, at: JsonPath, source: SourceMap) -> Any:
    """``value`` with every reference string replaced by its Reference."""
    if is_expression(value):
        reference = parse_reference(value, source.value(at))
        return value if reference is None else reference
    if isinstance(value, dict):
        return {key: _with_references(item, (*at, key), source) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_references(item, (*at, index), source) for index, item in enumerate(value)]
    return value
