"""Where the JSON Schemas ship: inside the package in a wheel, beside it in a source checkout."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import engine

# A schema's $id: a name, not an address. No server answers for these schemas, so no ``$id`` may
# look like one (a tool would try to fetch it); every ``$ref`` in them is local (``#/$defs/...``).
SCHEMA_ID_PREFIX = "urn:drs-runbook:schema:"


def schema_id(name: str) -> str:
    """The ``$id`` of the schema file ``name``: ``urn:drs-runbook:schema:<name>``."""
    return SCHEMA_ID_PREFIX + name


def schema_path(name: str) -> Path:
    """The schema file ``name`` (``runbook.schema.json``, ``report.schema.json``)."""
    package = Path(engine.__file__).parent
    for candidate in (package / "schemas" / name, package.parent / "schemas" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} is missing from the installation")


@functools.cache
def load_schema_file(name: str) -> Mapping[str, Any]:
    """The schema ``name`` as data (read once)."""
    schema: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return schema
