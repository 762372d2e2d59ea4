"""Open vramcap HTML run reports in a real headless Chromium: no console errors, every part drawn.

    python benchmarks/check_html_report.py reports/vramcap-*.html --screenshot docs/images/run-report.png

It needs Playwright (pip install playwright) and Debian's chromium (apt-get install chromium):
Playwright drives it through ``executable_path``, no browser download. The page is opened from
``file://`` with the network blocked, so anything it tried to fetch would show as an error.
For each report it prints what was drawn (SVG charts, timeline bars, verdicts) and every console
message; exit 1 on a console or page error, a request, or a report that drew nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from browser_check import verdict, watched_page
from playwright.sync_api import sync_playwright


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="HTML reports written by pytest --vram-profile")
    parser.add_argument("--screenshot", type=Path, default=None, help="save the first report's full page here")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    failed = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for index, path in enumerate(args.reports):
            page, messages = watched_page(browser)
            page.on("request", lambda request, log=messages: None if request.url.startswith("file://")
                    else log.append(f"error: fetched {request.url}"))
            page.route("http*://**", lambda route: route.abort())
            page.goto(path.resolve().as_uri())
            drawn = page.evaluate("""() => ({
                title: document.querySelector("h1") ? document.querySelector("h1").innerText : "",
                svgs: document.querySelectorAll("svg").length,
                bars: document.querySelectorAll("svg rect").length,
                dots: document.querySelectorAll("svg circle").length,
                scenarios: document.querySelectorAll(".scenario").length,
                verdicts: document.querySelectorAll("details").length,
                pending: document.body.innerText.includes("drawing the report"),
            })""")
            if drawn["pending"] or drawn["svgs"] == 0 or drawn["scenarios"] == 0:
                messages.append(f"error: the report was not drawn: {drawn}")
            if index == 0 and args.screenshot is not None:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.screenshot), full_page=True)
            failed |= verdict(f"{path}: {drawn}", messages)
            page.close()
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
