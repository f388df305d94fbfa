"""How the HTML report looks: its stylesheet, the colour of each disposition, and the way
text, times and dispositions are written into the page (escaping included)."""

from __future__ import annotations

import html
import re

# Disposition -> colour; similar outcomes share a hue (greens good, reds failed, ...).
COLOURS = {
    "recovered": "#1a7f37",
    "healthy": "#4ac26b",
    "skipped": "#8c959f",
    "selected": "#b6c2cf",
    "retry_accepted": "#54aeff",
    "failed_again": "#cf222e",
    "failed": "#82071e",
    "timed_out": "#e16f24",
    "retry_rejected": "#8250df",
    "pause_rejected": "#a475f9",
    "retry_unknown": "#bf8700",
    "pause_unknown": "#d4a72c",
    "not_found": "#57606a",
    "not_retried": "#6e7781",
    "not_verified": "#0969da",
    "cancelled": "#424a53",
    "paused": "#0550ae",
}

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --good: #1a7f37;
  --bad: #cf222e; --warn: #bf8700; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font: 14px/1.5 system-ui, -apple-system,
  "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 28px 48px; }
.kicker { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .06em; }
h1 { font-size: 24px; margin: 0 0 4px; font-weight: 600; }
h2 { font-size: 17px; margin: 36px 0 10px; padding-bottom: 6px; font-weight: 600;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; font-weight: 600; }
.meta, .note { color: var(--muted); font-size: 13px; }
.note { margin: 6px 0 10px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: 12px; }
.headline { margin: 16px 0 14px; padding: 12px 18px; border-radius: 8px; font-size: 18px;
  font-weight: 600; border-left: 6px solid var(--good); background: #dafbe1; }
.headline.bad { border-color: var(--bad); background: #ffebe9; }
.headline.warn { border-color: var(--warn); background: #fff8c5; }
.headline small { display: block; font-size: 13px; font-weight: 400; color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card b { display: block; font-size: 24px; font-weight: 600; line-height: 1.3; }
.card span { display: block; font-size: 13px; }
.card small { display: block; color: var(--muted); font-size: 12px; }
.card.good b { color: var(--good); } .card.bad b { color: var(--bad); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.zero { color: #c5ccd3; }
tr.total td { font-weight: 600; background: var(--soft); }
.pill { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-size: 12px;
  white-space: nowrap; }
.verdict { padding: 1px 10px; border-radius: 10px; color: #fff; font-size: 13px;
  vertical-align: 2px; } .verdict.good { background: var(--good); }
.verdict.bad { background: var(--bad); }
.status-ok { color: var(--good); font-weight: 600; } .status-failed { color: var(--bad);
  font-weight: 600; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
details.events { margin: 0; } details.events summary { font-weight: 400; color: var(--muted); }
details.events pre { margin: 4px 0 0; font-size: 12px; }
td code, td.nw { white-space: nowrap; }
table.narrow { width: auto; min-width: 50%; }
td.detail { min-width: 220px; }
.scroll { overflow-x: auto; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 6px 0 10px; font-size: 12.5px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
.legend i.wait { height: 2px; vertical-align: 3px; background: #8c959f; }
.chart { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
.chart svg { display: block; font-family: inherit; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
@media print { details { display: block; } .chart { overflow: visible; } }
"""


def rank(disposition: str) -> int:
    order = list(COLOURS)
    return order.index(disposition) if disposition in order else len(order)


def pill(disposition: str) -> str:
    colour = COLOURS.get(disposition, "#8c959f")
    return f'<span class="pill" style="background:{colour}">{escape(disposition)}</span>'


def clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def secs(value: float | None) -> str:
    if value is None:
        return ""
    if 0 < value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f}s" if value < 600 else f"{value / 60:.1f} min"


def escape(value: object) -> str:
    """Text for HTML content or a quoted attribute; None is empty. Ids, names and statuses
    rarely hold a character to escape: looking costs a fifth of escaping."""
    if value is None:
        return ""
    text = str(value)
    return text if _NOT_PLAIN.search(text) is None else html.escape(text, quote=True)


# What html.escape(quote=True) changes.
_NOT_PLAIN = re.compile("[&<>\"']")
