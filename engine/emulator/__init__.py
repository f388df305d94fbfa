"""The embedded DRS v3 emulator: a seeded fleet behind DRS and IAM routes on loopback.

It is an independent model of the API: it imports nothing from the client (``engine.api``,
actions, run, report) and owns its wire vocabulary (``engine.emulator.wire``), so tests against
it prove something. Its gateway can throttle, expire tokens, verify AK/SK signatures and inject
faults, all from the seed; its jobs move through their statuses and fall behind or catch up
(``engine.emulator.lag``) on an injected clock. It serves one or several accounts, each with its
own credentials and projects, authorised, throttled and counted per account
(``engine.emulator.accounts``, ``engine.emulator.accounting``).
"""

from engine.emulator.accounts import AccountSpec, ProjectSpec, generate_accounts
from engine.emulator.app import Emulator, build_app
from engine.emulator.faults import FaultConfig
from engine.emulator.fleet import Fleet
from engine.emulator.state import EmulatorConfig, Fate, Job

__all__ = [
    "AccountSpec",
    "Emulator",
    "EmulatorConfig",
    "Fate",
    "FaultConfig",
    "Fleet",
    "Job",
    "ProjectSpec",
    "build_app",
    "generate_accounts",
]
