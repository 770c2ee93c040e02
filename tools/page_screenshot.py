"""Take a screenshot of the bridge's page in headless chromium (for the README).

Usage: ``python tools/page_screenshot.py URL FILE.png [--wait S]``. The page is given ``--wait``
seconds to fill its charts first.
"""

from __future__ import annotations

import argparse
import shutil
import time

from playwright.sync_api import sync_playwright


def main() -> None:
    """Open the page at a tablet's width, wait, and save a full-page screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("file")
    parser.add_argument("--wait", type=float, default=20.0)
    arguments = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 900, "height": 1200})
        page.goto(arguments.url)
        time.sleep(arguments.wait)
        page.screenshot(path=arguments.file, full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
