"""Screenshot a board page in headless Chromium (how ``docs/images/board.png`` is made).

Usage:
    python scripts/board_screenshot.py SITE/index.html docs/images/board.png [--cell N]

``--cell N`` opens the detail of the N-th cell of the table (0-based) before the shot, so the
picture shows the per-class accuracy and confusion matrix too.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> None:
    """Open the page at 1280x800 and write the screenshot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--cell", type=int, default=None, help="open this cell's detail first")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.page.resolve().as_uri(), wait_until="load")
        page.wait_for_selector("#curve-panels figure")
        if args.cell is not None:
            page.locator("#board-table button.cell").nth(args.cell).click()
            page.evaluate("window.scrollTo(0, 0)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
