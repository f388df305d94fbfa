"""The strict JUnit schema (Jenkins xUnit plugin's junit-10.xsd, vendored) and a check against it.

Loaded from tests/vendor/ with every network and out-of-folder access refused: a test never
downloads anything.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import xmlschema

JUNIT_XSD = Path(__file__).parent / "vendor" / "junit-10.xsd"


@cache
def junit_schema() -> xmlschema.XMLSchema10:
    return xmlschema.XMLSchema10(str(JUNIT_XSD), allow="sandbox", defuse="always")


def junit_errors(xml: str) -> list[str]:
    """Why ``xml`` is not valid against junit-10.xsd, one line per problem; [] when it is."""
    document = xmlschema.XMLResource(xml, allow="none", defuse="always")
    return [f"{error.path}: {error.reason}" for error in junit_schema().iter_errors(document)]
