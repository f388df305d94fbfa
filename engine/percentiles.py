"""Nearest-rank percentiles: the one definition every time-to-recover figure uses.

A verify step's ``rto_*`` outputs, the report's ``time_to_recover_s`` and a merged report's
figures all come from here, so the same jobs give the same numbers wherever they are read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(ordered: Sequence[float], pct: int) -> float:
    """The ``pct``-th nearest-rank percentile of values sorted ascending (not empty)."""
    if not ordered:
        raise ValueError("no values: a percentile of nothing is undefined")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
