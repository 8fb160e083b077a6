"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by playwright's
driver (no browser download), with the flags this closed network needs."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

__all__ = ["ARGS", "CHROMIUM", "chromium", "playwright"]

CHROMIUM = os.environ.get("TCS_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling out, and the closed network
# refuses each attempt; the rest keep a root, GPU-less, headless run quiet.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The Chromium binary, or skip the test with how to install it."""
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.skip(f"Chromium is not installed ({CHROMIUM}): apt-get install -y chromium")
    return path


def playwright() -> Any:
    """``async_playwright``, or skip the test with how to install it."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed: pip install playwright")
    return async_playwright
