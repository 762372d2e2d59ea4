"""Open Locust's web UI in a real headless Chromium: the VRAM tab and the /vramcap page.

Run against a Locust started with the locustfile, for example:

    locust -f locustfiles/agents.py --vram-profile 16gb --vramcap-model tiny:Q8_0 --vramcap-agents 4 \\
        --vramcap-ctx 1024 --autostart -u 2 -r 2 -t 300s --web-port 8099 &
    python benchmarks/check_web_ui.py http://127.0.0.1:8099 docs/images

It needs Playwright (pip install playwright) and Debian's chromium (apt-get install chromium):
Playwright drives it through ``executable_path``, no browser download. It saves one screenshot per
page, prints what each page shows and every console message, and exits 1 on a console error or a
page that did not show its content.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from browser_check import verdict, watched_page
from playwright.sync_api import sync_playwright

PAGES = (
    # (file, path, text that shows the content rendered from live data)
    ("locust-vram-tab.png", "/?tab=vramcap", "requests processing"),
    ("locust-vram-page.png", "/vramcap", "GPU memory now"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="Locust's web UI, e.g. http://127.0.0.1:8089")
    parser.add_argument("out", type=Path, help="folder for the screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for name, path, expected in PAGES:
            page, messages = watched_page(browser, width=1280)
            page.goto(args.url.rstrip("/") + path)
            try:
                page.get_by_text(expected, exact=False).first.wait_for(timeout=15_000)
                page.wait_for_timeout(2500)  # one more refresh, so the numbers are live
            except Exception as exc:  # the check reports it, whatever Playwright raised
                messages.append(f"error: {expected!r} never appeared: {exc}")
            page.screenshot(path=str(args.out / name), full_page=True)
            failed |= verdict(f"{path} -> {args.out / name}", messages)
            page.close()
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
