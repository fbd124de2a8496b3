"""Start headless Chromium through Playwright, or say why the browser tests must be skipped.

Chromium is Debian's (`/usr/bin/chromium`, or $NEGCLEAN_CHROMIUM); Playwright is only the driver and never
downloads a browser. `scripts/install-browser.sh` installs both; CI runs it before the tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Without the networking flags Chromium tries to reach Google's hosts at start, which this closed network refuses.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    env = os.environ.get("NEGCLEAN_CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None if they can."""
    if chromium_path() is None:
        return "headless Chromium not found (run scripts/install-browser.sh: Debian's chromium; CI has it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the 'playwright' Python package is not installed (run scripts/install-browser.sh; CI has it)"
    return None


def require_browser() -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)


@contextmanager
def chromium_page(*, width: int = 1280, height: int = 900) -> Iterator[object]:
    """A fresh Playwright page in a new headless Chromium with an empty profile; closed afterwards."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="negclean-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
            device_scale_factor=1,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            context.close()


def screenshot(page, name: str, tmp_path, *, publish: bool = True, **options) -> str:
    """Save a PNG under tmp_path (and, if ``publish``, under $NEGCLEAN_SCREENSHOTS when set, e.g. docs/img);
    returns the tmp path."""
    path = str(tmp_path / f"{name}.png")
    page.screenshot(path=path, **options)
    target = os.environ.get("NEGCLEAN_SCREENSHOTS")
    if target and publish:
        os.makedirs(target, exist_ok=True)
        shutil.copyfile(path, os.path.join(target, f"{name}.png"))
    return path


def assert_png(path: str, *, min_width: int, min_height: int) -> None:
    """The file is a PNG of at least this size (read from its IHDR header)."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert width >= min_width and height >= min_height, (width, height)
