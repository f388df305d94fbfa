"""Run an example runbook against the embedded emulator and screenshot its HTML report.

    python docs/make_screenshot.py [--out docs/report-html.png] [--keep DIR]
    python docs/make_screenshot.py --drill          # runbooks/dr-drill.yaml -> docs/drill-html.png

Needs headless Chromium at /usr/bin/chromium (Debian: ``apt-get install chromium``). Nothing
leaves the machine: the emulator listens on loopback and the page loads nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.report.document import Report  # noqa: E402
from engine.report.html_page import to_html  # noqa: E402

RUNBOOK = REPO / "runbooks" / "retry-failed-jobs.yaml"
DRILL = REPO / "runbooks" / "dr-drill.yaml"
CHROMIUM = "/usr/bin/chromium"


def run_example(report_dir: Path, runbook: Path = RUNBOOK) -> dict[str, object]:
    """``runbook run`` with ``--emulator``; exit 1 (some jobs need a human) is the point."""
    command = [
        sys.executable,
        "-c",
        "import sys; from engine.cli import main; main(sys.argv[1:])",
        "run",
        str(runbook.relative_to(REPO)),  # cwd is REPO: the report names it as a user would
        "--emulator",
        "--quiet",
        "--report-dir",
        str(report_dir),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        sys.exit(f"runbook run exited {done.returncode}:\n{done.stderr}")
    # --report-dir names the directory itself; the default layout adds <run_id>/.
    found = sorted(report_dir.glob("report.json")) or sorted(report_dir.glob("*/report.json"))
    if not found:
        sys.exit(f"no report.json under {report_dir}")
    report: dict[str, object] = json.loads(found[-1].read_text(encoding="utf-8"))
    return report


def screenshot(page: Path, png: Path, *, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: docs/report-html.png, drill-html.png")
    parser.add_argument("--drill", action="store_true", help="run runbooks/dr-drill.yaml")
    parser.add_argument("--keep", type=Path, help="write report.json and report.html here")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, help="default 1800; 2700 with --drill (its timeline)")
    args = parser.parse_args()
    args.height = args.height or (2700 if args.drill else 1800)
    runbook = DRILL if args.drill else RUNBOOK
    args.out = args.out or REPO / "docs" / ("drill-html.png" if args.drill else "report-html.png")
    with tempfile.TemporaryDirectory(prefix="report-") as scratch:
        # A fresh run directory every time: a run directory holds exactly one run.
        report = run_example(Path(scratch) / "run", runbook)
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        (work / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        page = work / "report.html"
        page.write_text(to_html(Report.from_json(report)), encoding="utf-8")
        screenshot(page, args.out.resolve(), width=args.width, height=args.height)
    sys.stdout.write(f"wrote {args.out}\n")


if __name__ == "__main__":
    main()
