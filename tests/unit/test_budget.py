"""The error budget's arithmetic."""

from __future__ import annotations

from engine.actions.budget import ErrorBudget


def exhausted(budget: ErrorBudget) -> bool:
    """Read through a call: mypy would keep an asserted property narrowed across ``fail()``."""
    return budget.exhausted


def test_max_errors_is_exceeded_by_the_error_after_the_last_allowed() -> None:
    budget = ErrorBudget(max_errors=2)
    budget.attempt(10)
    budget.fail(2)
    assert not exhausted(budget)
    budget.fail()
    assert exhausted(budget)
    assert budget.describe() == "3 error(s) in 10 job(s) exceed max_errors 2"


def test_zero_max_errors_stops_at_the_first_error() -> None:
    budget = ErrorBudget(max_errors=0)
    assert not budget.exhausted
    budget.fail()
    assert budget.exhausted


def test_ratio_counts_errors_over_jobs_attempted() -> None:
    budget = ErrorBudget(max_error_ratio=0.25)
    budget.attempt(8)
    budget.fail(2)
    assert not budget.exhausted  # 0.25 is allowed
    budget.fail()
    assert budget.exhausted


def test_no_limits_never_exhaust() -> None:
    budget = ErrorBudget()
    budget.attempt(5)
    budget.fail(5)
    assert not budget.exhausted
