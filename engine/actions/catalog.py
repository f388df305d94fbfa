"""What validation needs to know about each action, as plain data.

Kept free of imports on purpose: ``runbook validate`` and ``lint`` read it without loading the
executor, asyncio or the HTTP stack. The registry (``engine.actions.registry``) builds on it, and
a test holds the two, and the schema's action enum, to the same names.
"""

from __future__ import annotations

from collections.abc import Mapping

# Action name -> output name -> its type in the expression language: string, integer, number,
# boolean, list[string]. What `runbook validate` checks references against.
CATALOG: dict[str, Mapping[str, str]] = {
    "drs.select_jobs": {"jobs": "list[string]", "skipped": "list[string]", "count": "integer"},
    "drs.batch_retry": {"accepted": "list[string]", "rejected": "list[string]"},
    "drs.verify_status": {
        "recovered": "list[string]",
        "failed": "list[string]",
        "timed_out": "list[string]",
        "lagging": "list[string]",
        "flapping": "list[string]",
        "recovered_ratio": "number",
        "rto_p50_s": "number",
        "rto_p95_s": "number",
        "rto_max_s": "number",
        "drill_rto_p95_s": "number",
        "delay_max_s": "number",
    },
    "drs.pause_jobs": {"paused": "list[string]", "rejected": "list[string]"},
    "sleep": {"slept_s": "number"},
    "assert": {"passed": "boolean"},
    "approve": {"approved": "boolean"},
}

# The actions that change jobs: lint and the executor's guard rails key on them.
_CHANGING = frozenset({"drs.batch_retry", "drs.pause_jobs"})
MUTATING: dict[str, bool] = {name: name in _CHANGING for name in CATALOG}
