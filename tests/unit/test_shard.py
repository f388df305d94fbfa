"""--shard I/N picks a slice of the targets; `runbook merge` joins the shards' reports."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from reports import as_json, fleet, jobs_of, make_report

from engine.errors import UsageError
from engine.report.contract import validate_report
from engine.report.document import Report, RunbookRef
from engine.report.merge import merge_reports
from engine.report.render import render
from engine.run.shard import Shard


def test_shard_parses_i_of_n_and_refuses_anything_else() -> None:
    assert Shard.parse(" 2/4 ") == Shard(index=2, count=4)
    assert str(Shard.parse("1/1")) == "1/1"
    for text in ("0/4", "5/4", "2", "2/", "a/b", "-1/4", "1/0", "1 / 4"):
        with pytest.raises(UsageError, match=r"--shard must be I/N with 1 <= I <= N"):
            Shard.parse(text)


def test_the_shards_of_a_split_take_every_target_exactly_once() -> None:
    targets = [f"t{i}" for i in range(11)]
    for count in range(1, 13):
        picked = [Shard(index=i, count=count).pick(targets) for i in range(1, count + 1)]
        assert sorted(t for part in picked for t in part) == sorted(targets)
        assert max(map(len, picked)) - min(map(len, picked)) <= 1  # balanced
    assert Shard(index=2, count=3).pick(targets) == ("t1", "t4", "t7", "t10")


def _shard(project: str, run_id: str, shard: str, **changes: Any) -> Report:
    report = make_report({project: fleet(project.split("-")[0])})
    return dataclasses.replace(report, run_id=run_id, shard=shard, **changes)


def test_merged_report_adds_up_to_the_report_of_the_whole_run() -> None:
    whole = make_report()  # orders-prod and pay in one run
    one = _shard("orders-prod", "20261129T060000Z-aaaa", "1/2")
    two = _shard("pay", "20261129T060001Z-bbbb", "2/2", exit_code=0)
    merged = merge_reports([("a", one), ("b", two)])

    assert validate_report(as_json(merged)) == []
    assert merged.merged_from == ["20261129T060000Z-aaaa", "20261129T060001Z-bbbb"]
    assert as_json(merged)["merged_from"] == merged.merged_from  # written last, only when set
    assert "merged_from" not in as_json(whole)
    assert merged.shard is None
    assert merged.totals == whole.totals
    assert merged.time_to_recover_s == whole.time_to_recover_s
    assert [t.name for t in merged.targets] == ["orders-prod", "pay"]
    assert {j.id for j in jobs_of(merged)} == {j.id for j in jobs_of(whole)}
    assert merged.api_calls == {k: 2 * v for k, v in whole.api_calls.items()}
    assert merged.api_resilience["sends"] == 2 * whole.api_resilience["sends"]
    assert merged.exit_code == 1  # the worst shard's
    for output_format in ("md", "html", "junit"):
        text = render(merged, output_format)
        assert all(j.id in text for j in jobs_of(merged))


@pytest.mark.parametrize(
    ("second", "problem"),
    [
        (
            _shard("pay", "r2", "1/2"),
            r"b and a are both shard 1/2",
        ),
        (
            _shard("pay", "r2", "2/3"),
            r"the reports come from different splits \(a: 1/2, b: 2/3\)",
        ),
        (
            _shard("orders-prod", "r2", "2/2"),
            r"target orders-prod is in both a and b: a shard was given twice, or the shards",
        ),
        (
            _shard(
                "pay", "r2", "2/2", runbook=RunbookRef(name="other", path="x", description=None)
            ),
            r"b and a differ in their runbook: only shards of one run of one runbook merge",
        ),
        (
            _shard("pay", "r2", "2/2", params={"env": "other"}),
            r"b and a differ in their params: only shards of one run of one runbook merge",
        ),
    ],
)
def test_merge_refuses_reports_that_are_not_the_shards_of_one_run(
    second: Report, problem: str
) -> None:
    first = _shard("orders-prod", "r1", "1/2")
    with pytest.raises(UsageError, match=problem):
        merge_reports([("a", first), ("b", second)])


def test_merge_needs_two_reports() -> None:
    with pytest.raises(UsageError, match="at least two shards"):
        merge_reports([("a", _shard("pay", "r1", "1/1"))])
