"""The report's files: which formats a run writes, under which names, and rendering each one.

Every renderer is pure (a ``Report`` in, text out); a run writes each text format line by line
(``render_lines``), never as one string: at 100,000 jobs the HTML alone would be 31 MB in
memory, plus its 15 MB encoding.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.report.document import Report, to_json
from engine.report.html_page import html_lines
from engine.report.junit import junit_lines
from engine.report.markdown import markdown_lines

# The report files a run can write; report.json is always written (the others render from it).
REPORT_FILES: Mapping[str, str] = {
    "json": "report.json",
    "md": "report.md",
    "html": "report.html",
    "junit": "junit.xml",
}


def render(report: Report, output_format: str) -> str:
    """The report in one of the formats a run writes: json, md, html or junit."""
    if output_format == "json":
        return to_json(report)
    return "\n".join(render_lines(report, output_format)) + "\n"


def render_lines(report: Report, output_format: str) -> list[str]:
    """A text format (md, html or junit) line by line, without their line ends."""
    if output_format == "md":
        return markdown_lines(report)
    if output_format == "html":
        return html_lines(report)
    if output_format == "junit":
        return junit_lines(report)
    raise ValueError(f"unknown report format {output_format!r}")
