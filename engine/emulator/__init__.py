"""The embedded DRS v3 emulator: a seeded fleet behind DRS and IAM routes on loopback.

It is an independent model of the API: it shares only the wire types of ``engine.api.types``
with the client, never the client's logic, so tests against it prove something. Its gateway
can throttle, expire tokens, verify AK/SK signatures and inject faults, all from the seed.
"""

from engine.emulator.app import Emulator, build_app
from engine.emulator.faults import FaultConfig
from engine.emulator.fleet import Fleet
from engine.emulator.state import EmulatorConfig, Fate, Job, ProjectSpec

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "Fate",
    "FaultConfig",
    "Fleet",
    "Job",
    "ProjectSpec",
    "build_app",
]
