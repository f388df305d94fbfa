"""Test doubles the unit tests share."""

from __future__ import annotations


class FakeClock:
    """A virtual clock: ``sleep`` advances it instantly, so tests never wait."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
