"""The embedded DRS v3 emulator: a seeded fleet behind DRS and IAM routes on loopback.

It is an independent model of the API: it shares only the wire types of ``engine.api.types``
with the client, never the client's logic, so tests against it prove something.
"""

from engine.emulator.app import Emulator, build_app
from engine.emulator.state import EmulatorConfig, Fate, Fleet, Job, ProjectSpec

__all__ = ["Emulator", "EmulatorConfig", "Fate", "Fleet", "Job", "ProjectSpec", "build_app"]
