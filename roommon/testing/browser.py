"""Headless Chromium as the display's browser tests and bench run it.

The browser is Debian's ``chromium`` (``.ci/run`` installs it where missing);
Playwright for Python drives it through ``executable_path`` and never
downloads a browser of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)


def chromium_executable() -> str:
    """The Debian chromium binary, or a clear error naming the package."""
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if path is None:
        raise RuntimeError("the chromium binary is needed (Debian package 'chromium')")
    return path
