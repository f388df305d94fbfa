"""Nearest-rank percentiles: the one definition every time-to-recover figure uses.

A verify step's ``rto_*`` outputs, the report's ``time_to_recover_s`` and a merged report's
figures all come from here, so the same jobs give the same numbers wherever they are read.

A drill's pause-to-recovery figures (``pause_outages``) count a paused job that did not recover
as an outage without end: a percentile that falls on one has no value, never the survivors'.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from engine.ledger import RECOVERED, Disposition


def nearest_rank(ordered: Sequence[float], pct: int) -> float:
    """The ``pct``-th nearest-rank percentile of values sorted ascending (not empty)."""
    if not ordered:
        raise ValueError("no values: a percentile of nothing is undefined")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def pause_outages(
    jobs: Iterable[tuple[Disposition, float | None]], pcts: Sequence[int]
) -> list[float | None]:
    """The ``pcts``-th nearest-rank percentiles of pause-to-recovery over the paused jobs given
    as (disposition, pause-to-recovery seconds): a job that did not recover (a disposition not
    in ``RECOVERED``, or no time measured) is an outage without end, ranked last; a percentile
    that falls on one, or of no jobs at all, is None. A drill's verify step and its report
    both read their figures here, so they cannot disagree."""
    ended, endless = [], 0
    for disposition, outage in jobs:
        if disposition in RECOVERED and outage is not None:
            ended.append(outage)
        else:
            endless += 1
    ranked = [*sorted(ended), *([math.inf] * endless)]
    if not ranked:
        return [None for _ in pcts]
    return [None if math.isinf(p := nearest_rank(ranked, pct)) else p for pct in pcts]
