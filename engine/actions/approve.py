"""``approve``: a gate where every target stops until a human (or ``--yes``) approves.

A gate is not run per target: the executor stops every target in front of it, shows what the
next change would do, and asks once for all of them (``engine.run.approval``). ``message`` is
shown with the question.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.actions import fields
from engine.actions.context import ActionContext
from engine.actions.spec import Action


@dataclass(frozen=True, slots=True, kw_only=True)
class ApproveParams:
    message: str | None = None

    @classmethod
    def from_with(cls, raw: Mapping[str, Any]) -> ApproveParams:
        return cls(message=fields.text(raw, "message", "") or None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApproveOutputs:
    approved: bool = False


async def run(ctx: ActionContext, params: ApproveParams) -> ApproveOutputs:
    raise AssertionError("approve is a gate: the executor answers it, once for all targets")


ACTION = Action(
    name="approve",
    params=ApproveParams.from_with,
    outputs=ApproveOutputs,
    run=run,
    gate=True,
    runs_in_plan=False,
    plan_skip_reason="a plan asks for no approval",
)
