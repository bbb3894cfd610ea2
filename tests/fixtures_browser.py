"""Headless Chromium for tests that look at rendered HTML.

``chromium_path`` (session scope) finds a Chromium/Chrome binary and checks that it
can take a screenshot; otherwise the tests that use it skip, with the reason.
``screenshot()`` renders a file or URL to a PNG.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

SCREENSHOT_TIMEOUT = 60.0  # seconds

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_FLAGS = (
    "--headless",
    "--no-sandbox",  # needed as root and in most containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _as_url(url_or_file) -> str:
    if isinstance(url_or_file, os.PathLike):
        return Path(url_or_file).resolve().as_uri()
    text = str(url_or_file)
    if "://" in text or text.startswith(("data:", "about:")):
        return text
    return Path(text).resolve().as_uri()


def _first_line(text: str) -> str:
    """First line of Chromium's stderr that looks like the reason it failed."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    # Chromium logs many harmless D-Bus errors in a container; skip those.
    useful = [ln for ln in lines if "dbus" not in ln.lower()]
    return (useful or lines or ["(no output)"])[0]


def screenshot(chromium_path, url_or_file, out_png, width: int = 1200, height: int = 2000) -> Path:
    """Render ``url_or_file`` (a URL, or a path turned into a file:// URL) with
    headless Chromium into ``out_png`` at ``width`` x ``height``; return its path.

    Raises RuntimeError if Chromium fails, times out or writes no PNG.
    """
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if out_png.exists():
        out_png.unlink()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    argv = [
        str(chromium_path),
        *_FLAGS,
        f"--user-data-dir={profile}",
        f"--screenshot={out_png}",
        f"--window-size={int(width)},{int(height)}",
        _as_url(url_or_file),
    ]
    try:
        # Own process group, so a hung browser and all its helpers can be killed.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=SCREENSHOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise RuntimeError(f"chromium timed out after {SCREENSHOT_TIMEOUT:.0f} s") from None
        if not out_png.is_file() or out_png.stat().st_size == 0:
            raise RuntimeError(
                f"chromium exited with {proc.returncode} and wrote no PNG: {_first_line(err or out)}"
            )
        return out_png
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium_path(tmp_path_factory):
    """Path of a Chromium binary that can take headless screenshots, or skip."""
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no Chromium found (/usr/bin/chromium, or chromium/chromium-browser/google-chrome "
            "on PATH); install the 'chromium' package"
        )
    out = tmp_path_factory.mktemp("chromium-check") / "x.png"
    try:
        screenshot(path, "data:text/html,<h1>x</h1>", out, width=400, height=300)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"Chromium at {path} cannot take a headless screenshot: {exc}")
    return path
