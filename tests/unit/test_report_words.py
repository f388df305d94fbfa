"""Words that match the outcome: no "ok" or "succeeded" over jobs that need a human."""

from __future__ import annotations

import re

from reports import fleet, make_report

from engine.report.html_page import to_html
from engine.report.markdown import to_markdown
from engine.report.summary import step_tallies, steps_ended, target_status
from engine.report.terminal import terminal_summary


def test_a_project_with_jobs_needing_a_human_is_not_ok_anywhere() -> None:
    report = make_report()  # per project: 2 recovered, 3 need a human, 1 skipped
    target = report.targets[0]
    assert target.status == "ok"  # report.json's field: no step failed
    assert target_status(target, mutating=True) == ("3 of 5 jobs need a human", False)

    html = to_html(report)
    projects = html[
        html.index("<h2>Projects</h2>") : html.index("</table>", html.index("<h2>Projects"))
    ]
    assert '<td class="status-failed">3 of 5 jobs need a human</td>' in projects
    assert "status-ok" not in projects
    assert ">ok<" not in projects

    markdown = to_markdown(report)
    assert "Status: 3 of 5 jobs need a human." in markdown
    # the verify step ran without failing, but it is not "succeeded" over failed jobs
    assert re.search(
        r"\| verify \| drs\.verify_status \| done: 2 of 4 jobs need a human \|", markdown
    )
    assert "| verify | drs.verify_status | succeeded |" not in markdown


def test_a_healthy_project_says_all_its_jobs_are_healthy() -> None:
    report = make_report({"calm": fleet("calm", ("recovered", "recovered"))})
    assert target_status(report.targets[0], mutating=True) == ("all 2 jobs healthy", True)
    assert '<td class="status-ok">all 2 jobs healthy</td>' in to_html(report)
    assert "| verify | drs.verify_status | succeeded |" in to_markdown(report)


def test_what_was_done_counts_the_jobs_each_step_left_needing_a_human() -> None:
    report = make_report()
    tallies = step_tallies(report.targets[0])
    assert tallies["verify"].need_a_human == 2  # failed_again and timed_out: verify's verdicts
    assert tallies["retry"].need_a_human == 1  # the rejected retry
    ended = steps_ended(report)
    assert ended["select"] == "succeeded in 2 project(s)"
    assert ended["verify"].startswith("done in 2 project(s): 4 of ")
    assert f"- `verify` (drs.verify_status): {ended['verify']}" in to_markdown(report)
    assert ended["verify"] in to_html(report)


def test_the_needs_a_human_rows_are_aligned_in_columns() -> None:
    summary = terminal_summary(make_report())  # projects "orders-prod" and "pay"
    rows = summary.split("needs a human:\n")[1].split("\n\n")[0].splitlines()
    assert {row.split()[0] for row in rows} == {"orders-prod", "pay"}
    # every row's job id, name and disposition start in the same columns
    for pattern in (r"\S+-\d{5}-jb101", r"\S+-\d+(?=\s+\w+:)", r"\w+: "):
        starts = {re.search(pattern, row).start() for row in rows}  # type: ignore[union-attr]
        assert len(starts) == 1, (pattern, rows)


def test_the_summary_table_right_aligns_its_numbers() -> None:
    lines = terminal_summary(make_report()).splitlines()
    header, rule, first, second, total = lines[2:7]
    assert set(rule.replace(" ", "")) == {"-"}
    assert total.startswith("total")
    end = header.index("selected") + len("selected")
    for row in (first, second, total):
        assert row[end - 1].isdigit(), row  # right-aligned under "selected"
        assert row[end] == " ", row
