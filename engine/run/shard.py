"""``--shard I/N``: the slice of a runbook's targets one runner takes when a fleet is split
across CI runners (every N-th target, starting at the I-th, in the runbook's order)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from engine.errors import UsageError

T = TypeVar("T")

_SHAPE = re.compile(r"([0-9]+)/([0-9]+)")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = _SHAPE.fullmatch(text.strip())
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise UsageError(f"--shard must be I/N with 1 <= I <= N, such as 1/4; got '{text}'")
        return cls(index=int(match[1]), count=int(match[2]))

    def pick(self, targets: Sequence[T]) -> tuple[T, ...]:
        """This shard's targets: together, the N shards take each target exactly once."""
        return tuple(targets[self.index - 1 :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
