"""The HTML report: self-contained, every job in it, all text escaped, large runs capped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from reports import FATES, JobSpec, fleet, jobs_of, make_report

from engine.report.html_chart import CHART_NEEDS_A_HUMAN, CHART_SAMPLE
from engine.report.html_page import to_html

# Void elements have no end tag; everything else must be closed, in order.
_VOID = {"meta", "br", "line", "rect", "circle", "path", "img", "hr", "input", "link"}


class _Checker(HTMLParser):
    """Collects tags and attributes, and checks that elements nest properly."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in _VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:]}")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.problems == []
    assert checker.open == []
    return checker


def test_page_names_every_job_and_parses() -> None:
    report = make_report()
    page = to_html(report)

    parsed = _parse(page)
    text = "".join(parsed.text)
    for job in jobs_of(report):
        assert job.id in text
    assert page.startswith("<!DOCTYPE html>")
    assert "6 of 10 job(s) need a human" in text


def test_page_loads_nothing_from_anywhere() -> None:
    page = to_html(make_report())
    tags = _parse(page).tags

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not [t for t, _ in tags if t in {"script", "link", "img", "iframe", "object"}]
    assert "@import" not in page
    assert "url(" not in page
    [csp] = [a for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert (csp["content"] or "").startswith("default-src 'none'")


def test_hostile_names_are_escaped() -> None:
    evil = "<script>alert(1)</script>"
    spec = JobSpec(job_id='id"><img src=x>', name=evil, fate="failed_again")
    report = make_report({f"{evil}-proj": [spec]})
    page = to_html(report)

    parsed = _parse(page)
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not [t for t, _ in parsed.tags if t in {"script", "img"}]
    assert evil in "".join(parsed.text)  # shown to the reader, as text
    assert "retry failed jobs &lt;and&gt; verify" in page  # the runbook's description too


def test_needs_a_human_lists_reasons_and_error_codes_before_the_tables() -> None:
    page = to_html(make_report())
    needs = page.index("Needs a human")
    assert needs < page.index("<h2>Projects</h2>") < page.index("<h2>Timeline</h2>")
    section = page[needs : page.index("<h2>Projects</h2>")]
    assert "DRS.M05004" in section
    assert "the job is not in a state that allows retry" in section
    assert "status INCRE_TRANSFER_FAILED after the retry" in section
    assert "orders-recovered-0" not in section


def test_timeline_draws_each_job_acted_on_with_a_legend_and_axis() -> None:
    report = make_report()
    page = to_html(report)
    svg = page[page.index("<svg") : page.index("</svg>")]

    acted_on = [j for j in jobs_of(report) if j.disposition != "skipped"]
    assert svg.count("<rect") == len(acted_on)
    assert "seconds since the run started" in svg
    assert ">30s</text>" in svg  # the axis reaches the last timeout
    legend = page[page.index('<div class="legend">') :]
    for disposition in ("recovered", "failed_again", "timed_out", "retry_rejected"):
        assert disposition in legend[: legend.index("</div>")]


def test_large_run_caps_the_chart_and_says_so() -> None:
    per_project = 2500
    fates = [FATES[i % 4] for i in range(per_project)]  # recovered x2, failed_again, timed_out
    report = make_report({f"p{i}": fleet(f"p{i}", fates) for i in range(4)})
    assert report.totals.jobs == 10_000

    page = to_html(report)

    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count("<rect") == CHART_NEEDS_A_HUMAN + CHART_SAMPLE
    assert (
        f"{CHART_NEEDS_A_HUMAN + CHART_SAMPLE} of 10000 jobs drawn: an even sample of "
        f"{CHART_NEEDS_A_HUMAN} of the 5000 that need a human and an even sample of "
        f"{CHART_SAMPLE} of the 5000 others"
    ) in page
    # The sample keeps every project and every way of failing on the chart.
    for project in ("p0", "p3"):
        assert f">{project}</text>" in svg
    assert svg.count("timed_out") > CHART_NEEDS_A_HUMAN / 4
    assert "the first 500 of 5000 are listed here" in page
    assert page.count("<code>p3-02499-jb101</code>") == 1  # still in the full job list
    assert len(page) < 8_000_000


def test_clean_run_says_nothing_needs_a_human() -> None:
    page = to_html(make_report({"p": fleet("p", ("recovered", "healthy", "skipped"))}))
    assert "All 2 selected job(s) healthy" in page
    assert "nothing: every selected job is fine" in page
    assert 'class="headline good"' in page


def test_projects_table_counts_as_the_terminal_and_markdown_do() -> None:
    # One summary table for every format: "selected" is every job the run selected (the HTML
    # once counted only the jobs left in the intermediate "selected" disposition: 0).
    report = make_report()
    page = to_html(report)
    table = page[page.index("<h2>Projects</h2>") : page.index("<h2>Timeline</h2>")]
    cells = re.findall(r'<td class="n(?: zero)?">(\d+)</td>', table.split('class="total"')[1])
    assert cells[:7] == ["10", "4", "2", "2", "2", "0", "2"]
    assert report.totals.selected == 10
