"""Headless Chromium for the board's page tests, driven through playwright's Python API.

The browser is the system one (Debian's ``chromium``; ``SARFEWSHOT_CHROMIUM`` may name
another), never playwright's own download. Without a browser the tests skip with a message,
except under CI (``CI`` set), where that is a failure: CI installs the browser in ``.ci/run``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """The browser to drive: ``$SARFEWSHOT_CHROMIUM``, else the first system Chromium found."""
    env = os.environ.get("SARFEWSHOT_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail under CI, where the browser tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(f"{reason}; browser tests skipped")


def launch() -> Iterator[Any]:
    """Yield a launched headless Chromium (closed afterwards)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install 'sarfewshot[board]')")
    path = chromium_path()
    if path is None:
        unavailable("no Chromium found (apt-get install chromium, or set SARFEWSHOT_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """What a page did: requests that would have left it, console errors, dialogs."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def open_page(browser: Any, path: Path, width: int = 1280, height: int = 800) -> tuple[Any, Watch]:
    """``path`` opened from file://; any other request is recorded, and aborted unless it is
    a local file."""
    watch = Watch()
    context = browser.new_context(viewport={"width": width, "height": height})
    own = path.as_uri()

    def route(r: Any) -> None:
        url = r.request.url
        if url != own:
            watch.requests.append(url)
        if url.startswith("file:"):
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: watch.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watch.errors.append(str(e)))

    def dialog(d: Any) -> None:
        watch.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_selector("#curve-panels figure")  # drawn after the first paint
    return page, watch
