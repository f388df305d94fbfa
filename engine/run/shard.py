"""``--shard I/N [--shard-by target|account|region]``: the slice of a runbook's targets one runner
takes when a fleet is split across CI runners.

By target (the default), every N-th target, starting at the I-th, in the runbook's order. By
account or region, every N-th *account* (or region) in order of first appearance, with all its
targets: shards that must not share a rate budget (the gateway's is per account, region and
API) never do. A discovery entry (an account's projects in one region) is one target here: its
projects are found by the shard that takes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from engine.errors import UsageError

T = TypeVar("T")

SHARD_BY = ("target", "account", "region")
_SHAPE = re.compile(r"([0-9]+)/([0-9]+)(?: by (target|account|region))?")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 1-based
    count: int
    by: str = "target"

    @classmethod
    def parse(cls, text: str, by: str | None = None) -> Shard:
        """``I/N`` (and ``by``), or the recorded form ``I/N by account``."""
        match = _SHAPE.fullmatch(text.strip())
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise UsageError(f"--shard must be I/N with 1 <= I <= N, such as 1/4; got '{text}'")
        chosen = by or match[3] or "target"
        if chosen not in SHARD_BY:
            raise UsageError(f"--shard-by must be one of {', '.join(SHARD_BY)}; got '{by}'")
        return cls(index=int(match[1]), count=int(match[2]), by=chosen)

    def pick(self, items: Sequence[T], key: Callable[[T], str] | None = None) -> tuple[T, ...]:
        """This shard's items: together, the N shards take each item exactly once. With ``key``
        (by account or region), whole groups of items that share a key."""
        if key is None or self.by == "target":
            return tuple(items[self.index - 1 :: self.count])
        order: dict[str, int] = {}
        for item in items:
            order.setdefault(key(item), len(order))
        return tuple(item for item in items if order[key(item)] % self.count == self.index - 1)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}" + ("" if self.by == "target" else f" by {self.by}")
