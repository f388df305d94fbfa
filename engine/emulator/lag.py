"""The emulator's replication-delay model: how far behind its source each job is, when read.

Lazy, like the state machine of ``engine.emulator.fleet``: there is no background task and no
tick. A ``Lag`` remembers one anchor — the delay at one moment of the fleet clock and whether
the job was running then — and computes the delay at any later moment from it; a status change
(``Lag.turn``) or a spike moves the anchor. So a test drives a fake clock and reads again.

The numbers (fleet-clock seconds; none of them a measurement of the real service):

- A job that is not running (paused, failed, restarting: every status outside the healthy
  group) falls behind 1 s per second: its source keeps writing, nothing is applied.
- A running job catches up at ``CATCH_UP_PER_S`` seconds of delay per second (net of the time
  that passes), divided by ``time_scale`` as every other delay of the emulator is multiplied by
  it, down to its floor, and then stays there.
- Its floor: ``FLOOR_S`` (1-8 s, drawn per job) for most jobs; ``BEHIND_FLOOR_S`` (90-600 s)
  for the jobs that "recover but stay behind" (``EmulatorConfig.behind_rate``, dealt by quota in
  ``engine.emulator.seeding``): they run again, yet never catch up below a minute and a half.
- A job that was not running when the emulator started carries ``PRE_START_BACKLOG_S`` (120 s)
  then, and rises from there: the emulator does not model what happened before it started, and
  a retried long-failed job must not need hours to drain. Retried at once, it is under 60 s
  behind about 2 s x ``time_scale`` after it runs again, and at its floor within 5 s.
- A job that never stopped runs at its floor.
- A lag spike (``--faults lag_spike_rate=R,lag_spike=DURATION``, drawn by the fleet) adds its
  duration to a running job's delay at the moment batch-progress reads it; it drains like any
  backlog.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CATCH_UP_PER_S = 30.0
FLOOR_S = (1.0, 8.0)
BEHIND_FLOOR_S = (90.0, 600.0)
PRE_START_BACKLOG_S = 120.0


def draw_floor(seed: int, job_id: str, *, stays_behind: bool) -> float:
    """A job's floor, from its own generator (no other draw of the fleet moves)."""
    rng = random.Random(f"{seed}:{job_id}:lag")
    low, high = BEHIND_FLOOR_S if stays_behind else FLOOR_S
    return round(rng.uniform(low, high), 3)


@dataclass(slots=True, kw_only=True)
class Lag:
    """One job's replication delay: an anchor (``at``, ``delay_s``, ``running``) and the rules.

    Not a timer: nothing happens between reads. Every method takes the moment it applies to;
    moments must not go backwards (the fleet clock does not).
    """

    floor_s: float
    catch_up_per_s: float
    at: float
    delay_s: float
    running: bool

    def delay(self, now: float) -> float:
        """The delay in seconds at ``now``."""
        elapsed = max(0.0, now - self.at)
        if self.running:
            return max(self.floor_s, self.delay_s - self.catch_up_per_s * elapsed)
        return self.delay_s + elapsed

    def turn(self, at: float, *, running: bool) -> None:
        """The job starts or stops running at ``at``: re-anchor there."""
        if running is self.running:
            return
        self.delay_s, self.at, self.running = self.delay(at), at, running

    def spike(self, at: float, by_s: float) -> None:
        """The delay jumps by ``by_s`` at ``at`` (then drains, if the job runs)."""
        self.delay_s, self.at = self.delay(at) + by_s, at
