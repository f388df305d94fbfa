"""Report figures and renderers on hand-made documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from reports import JobSpec, as_json, make_report

from engine.ledger import Disposition
from engine.report.build import rto_summary
from engine.report.document import Report, RtoSummary, Totals
from engine.report.files import write_reports
from engine.report.markdown import to_markdown
from engine.report.render import REPORT_FILES, render
from engine.report.terminal import terminal_summary


def test_rto_summary_uses_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert rto_summary(values) == RtoSummary(count=20, p50=10.0, p95=19.0, max=20.0)
    assert rto_summary([]) == RtoSummary(count=0, p50=None, p95=None, max=None)
    assert rto_summary([3.5]) == RtoSummary(count=1, p50=3.5, p95=3.5, max=3.5)


def _report(jobs: list[dict[str, Any]], exit_code: int) -> Report:
    totals = {"jobs": len(jobs), "selected": len(jobs), "ok": 0, "needs_attention": 0}
    for job in jobs:
        totals[job["disposition"]] = totals.get(job["disposition"], 0) + 1
    totals["needs_attention"] = sum(1 for j in jobs if j["disposition"] != "recovered")
    target = {
        "project_id": "a" * 32,
        "name": "orders|prod",
        "region": "cn-north-4",
        "endpoint": "x",
        "status": "ok",
        "totals": totals,
        "jobs": jobs,
        "steps": [
            {
                "id": "verify",
                "name": None,
                "action": "drs.verify_status",
                "attempts": 1,
                "status": "succeeded",
                "started_t": 0.0,
                "duration_s": 1.0,
                "message": None,
                "outputs": {"recovered": 1},
            }
        ],
    }
    return Report.from_json(
        {
            "report_version": 1,
            "run_id": "r1",
            "runbook": {"name": "rb", "path": "rb.yaml", "description": None},
            "engine": {"version": "0"},
            "plan": False,
            "params": {},
            "settings": {
                "concurrency": 8,
                "concurrency_per_target": 2,
                "rate_limit_per_s": None,
                "max_jobs": None,
                "max_jobs_total": None,
                "max_errors": None,
                "max_error_ratio": None,
            },
            "started_at": "t0",
            "finished_at": "t1",
            "wall_s": 1.0,
            "exit_code": exit_code,
            "totals": totals,
            "time_to_recover_s": {"count": 0, "p50": None, "p95": None, "max": None},
            "api_calls": {},
            "targets": [target],
        }
    )


def _job(job_id: str, disposition: str, reason: str | None = None) -> dict[str, Any]:
    return {
        "id": job_id,
        "name": f"name-{job_id}",
        "parent_id": None,
        "engine_type": None,
        "db_use_type": None,
        "status_at_selection": "INCRE_TRANSFER_FAILED",
        "last_status": "INCRE_TRANSFER_FAILED",
        "disposition": disposition,
        "reason": reason,
        "error_code": None,
        "time_to_recover_s": 1.5 if disposition == "recovered" else None,
        "paused_at_t": None,
        "events": [],
    }


def test_summary_and_markdown_name_the_jobs_that_need_a_human() -> None:
    report = _report([_job("ok1", "recovered"), _job("bad1", "failed_again", "status X")], 1)

    summary = terminal_summary(report)
    markdown = to_markdown(report)

    assert summary.startswith("run r1: 1 of 2 job(s) need a human\n")
    assert "  orders|prod  bad1  name-bad1  failed_again: status X" in summary
    assert "ok1" not in summary.split("needs a human:")[1]
    assert "## Needs a human" in markdown
    assert "| orders\\|prod | `bad1` | name-bad1 | failed_again |" in markdown
    assert "`ok1`" in markdown  # every job is in the per-project table


def test_summary_of_a_clean_run_says_so() -> None:
    report = _report([_job("ok1", "recovered")], 0)
    assert terminal_summary(report).startswith("run r1: all 1 selected job(s) healthy\n")
    assert "## Needs a human" not in to_markdown(report)


def test_a_run_writes_each_report_file_as_its_renderer_spells_it(tmp_path: Path) -> None:
    # The text formats are written line by line (never joined into one string); the files must
    # still be exactly what `runbook report` renders, and report.json the document itself.
    report = make_report()
    written = write_reports(tmp_path, report, tuple(REPORT_FILES))

    assert sorted(p.name for p in written) == sorted(REPORT_FILES.values())
    for output_format, name in REPORT_FILES.items():
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert text == render(report, output_format), output_format
        assert text.endswith("\n")
        assert not text.endswith("\n\n")
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8")) == as_json(report)


def test_totals_selected_counts_every_job_not_skipped_even_with_jobs_still_selected() -> None:
    # A run killed mid-way, rendered from its journal: some jobs acted on, some not yet. The
    # per-disposition count of "selected" once overwrote the sum of the same name (2 -> 1).
    totals = Totals.of([Disposition.SELECTED, Disposition.RETRY_ACCEPTED, Disposition.SKIPPED])
    assert (totals.jobs, totals.selected, totals.needs_attention) == (3, 2, 0)
    assert totals == {"jobs": 3, "selected": 2, "ok": 0, "needs_attention": 0,
                      "skipped": 1, "retry_accepted": 1}  # fmt: skip


def delayed_report() -> Report:
    return make_report(
        {
            "orders": [
                JobSpec(job_id="lag-1", name="orders-lag", fate="lagging", delays=(240.0, 400.0)),
                JobSpec(job_id="ok-1", name="orders-ok", fate="recovered", delays=(3.0, 12.0)),
                JobSpec(job_id="full-1", name="orders-full", fate="recovered"),
            ]
        }
    )


def test_each_job_carries_its_last_and_largest_delay_in_report_json() -> None:
    raw = as_json(delayed_report())
    jobs = {j["id"]: j for j in raw["targets"][0]["jobs"]}
    assert (jobs["lag-1"]["delay_s"], jobs["lag-1"]["delay_max_s"]) == (240.0, 400.0)
    assert (jobs["full-1"]["delay_s"], jobs["full-1"]["delay_max_s"]) == (None, None)
    assert jobs["lag-1"]["disposition"] == "lagging"
    assert raw["totals"]["lagging"] == 1
    assert raw["totals"]["needs_attention"] == 1


def test_markdown_and_terminal_show_delays_only_when_a_verify_step_read_them() -> None:
    text = to_markdown(delayed_report())
    assert "| TTR | delay (last / max) | detail |" in text
    assert "| lagging |  | 240s / 400s | running (INCRE_TRANSFER_STARTED), but 240s behind" in text
    assert "| recovered | 4.0s | 3s / 12s |" in text
    assert "- Replication delay: median 3s, max 240s behind at the last poll (2 jobs); " in text
    assert "1 job(s) lagging" in text
    summary = terminal_summary(delayed_report())
    assert "replication delay: median 3s, max 240s" in summary
    assert "lagging: running (INCRE_TRANSFER_STARTED), but 240s behind" in summary
    plain = make_report()
    assert "delay" not in to_markdown(plain).lower()
    assert "replication delay" not in terminal_summary(plain)


def converging_report() -> Report:
    """One project with a job of each verdict a verify's convergence options add, beside a
    timed out and a failed-again one; another without them."""
    return make_report(
        {
            "orders": [
                JobSpec(job_id="lag-1", name="orders-lag", fate="lagging", delays=(240.0, 400.0)),
                JobSpec(job_id="flap-1", name="orders-flap", fate="flapping"),
                JobSpec(job_id="slow-1", name="orders-slow", fate="timed_out"),
                JobSpec(job_id="again-1", name="orders-again", fate="failed_again"),
                JobSpec(job_id="ok-1", name="orders-ok", fate="recovered"),
            ],
            "pay": [JobSpec(job_id="ok-2", name="pay-ok", fate="recovered")],
        }
    )


COUNTED = ["selected", "recovered", "failed again", "flapping", "rejected", "timed out",
           "lagging", "other", "skipped"]  # fmt: skip
ORDERS_ROW = ["5", "1", "1", "1", "0", "1", "1", "0", "0"]


def test_lagging_and_flapping_have_columns_of_their_own_in_every_summary_table() -> None:
    report = converging_report()
    assert (report.totals["lagging"], report.totals["flapping"]) == (1, 1)
    lines = terminal_summary(report).splitlines()
    header = next(line for line in lines if line.startswith("project"))
    assert header.split("  ")[0] == "project"
    assert [h.strip() for h in header.split("  ") if h.strip()][1:] == COUNTED
    orders = next(line for line in lines if line.startswith("orders "))
    assert orders.split()[1:] == ORDERS_ROW  # 1 timed out + 1 lagging, not "timed out 2"
    total = next(line for line in lines if line.startswith("total "))
    assert total.split()[1:] == ["6", "2", "1", "1", "0", "1", "1", "0", "0"]

    markdown = to_markdown(report)
    assert "| project | " + " | ".join(COUNTED) + " |" in markdown
    assert "| orders | " + " | ".join(ORDERS_ROW) + " |" in markdown

    page = render(report, "html")
    heads = "".join(f'<th class="n">{h}</th>' for h in COUNTED)
    assert f"<th>status</th>{heads}" in page
    # The exit code still has both needing a human.
    assert report.exit_code == 1
    assert report.totals.needs_attention == 4


def test_tables_of_a_run_without_lagging_or_flapping_jobs_leave_those_columns_out() -> None:
    report = make_report()
    usual = ["selected", "recovered", "failed again", "rejected", "timed out", "other", "skipped"]
    header = next(line for line in terminal_summary(report).splitlines() if "selected" in line)
    assert header.split()[1:] == ["selected", "recovered", "failed", "again", "rejected",
                                  "timed", "out", "other", "skipped"]  # fmt: skip
    assert "| project | " + " | ".join(usual) + " |" in to_markdown(report)
    page = render(report, "html")
    assert '<th class="n">lagging</th>' not in page
    assert '<th class="n">flapping</th>' not in page


def test_junit_and_html_show_each_jobs_delay() -> None:
    report = delayed_report()
    junit = render(report, "junit")
    cases = {c.get("name"): c for c in ElementTree.fromstring(junit).iter("testcase")}
    lagging = cases["orders-lag [lag-1] verify"]
    assert lagging.findtext("system-out") == "replication delay (last / max): 240s / 400s"
    failure = lagging.find("failure")
    assert failure is not None
    assert failure.get("type") == "lagging"
    passed = cases["orders-ok [ok-1] verify"]
    assert passed.find("failure") is None
    assert passed.findtext("system-out") == "replication delay (last / max): 3s / 12s"
    assert cases["orders-full [full-1] verify"].find("system-out") is None
    page = render(report, "html")
    assert '<th class="n">delay (last / max)</th>' in page
    assert '<td class="n">240s / 400s</td>' in page
    assert "largest delay" in page
    assert "delay (last / max)" not in render(make_report(), "html")


def _drawn_by_rich(headers: list[str], rows: list[list[str]], numbers_from: int) -> list[str]:
    """The summary table as rich's Table drew it before (dashes under the header only)."""
    import io

    from rich.box import Box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        box=Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True),
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index >= numbers_from else "left")
    for cells in rows:
        table.add_row(*cells)
    text = io.StringIO()
    Console(file=text, width=100_000, color_system=None, legacy_windows=False).print(table)
    return [line.rstrip() for line in text.getvalue().splitlines()]


def test_summary_table_is_drawn_as_rich_drew_it_wide_characters_included() -> None:
    from engine.report.terminal import _table

    headers = ["project", "selected", "failed again"]
    rows = [["a" * 40, "2", "10"], ["数据库迁移", "12345", ""], ["p", "", "7"]]

    assert _table(headers, rows, numbers_from=1) == _drawn_by_rich(headers, rows, 1)
