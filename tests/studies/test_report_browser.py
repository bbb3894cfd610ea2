"""The report and the study database as a person sees them: report.html and optuna-dashboard in headless Chromium.

Both skip with the reason when Chromium cannot take a headless screenshot here (install Debian's
``chromium``); the dashboard test also skips when optuna-dashboard is not installed (it is in the
``test`` extra, so CI has it).
"""
from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import optuna
import pytest
from PIL import Image

from studies.report import campaign_report, write_report
from studies.store import open_storage
from tests.fixtures_browser import _FLAGS, screenshot
from tests.fixtures_pg import free_port
from tests.studies.report_data import build_auto_campaign, build_campaign, build_mixed_campaign

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def finished_campaign(tmp_path_factory):
    """A database with a finished campaign (coarse, fine-1, grid); returns its URL."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'search.db'}"
    build_campaign(url, "demo", n_coarse=9, n_fine=6, curve_points=50)
    return url


def test_report_html_opens_in_chromium_and_shows_the_plots(chromium_path, finished_campaign, tmp_path):
    storage = open_storage(finished_campaign, create=False)
    written = write_report(campaign_report(storage, "demo"), tmp_path / "report")
    storage.engine.dispose()
    # the page must not need the PNG files beside it: open a copy alone in another folder
    alone = tmp_path / "alone" / "report.html"
    alone.parent.mkdir()
    shutil.copy(written["report.html"], alone)
    shot = screenshot(chromium_path, alone, tmp_path / "shot.png", width=1200, height=3000)

    image = Image.open(shot).convert("RGB")
    pixels = np.asarray(image, dtype=int)
    # Measured on this page: ~4,700 colours and 0.5 % strongly coloured pixels with the plots; the same
    # page with its <img> tags removed has ~220 colours and no coloured pixel (text and tables are grey).
    assert len(image.getcolors(maxcolors=1 << 24)) > 1000
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 60).mean() > 0.002
    # the plots come after the tables: the lower half of the page holds coloured content too
    assert (saturation[pixels.shape[0] // 2:] > 60).mean() > 0.002


def _page_widths(chromium: str, page, width: int) -> dict[str, int]:
    """The widths the page lays out to in a ``width``-pixel window: document, widest table, widest image."""
    probe = page.with_name("probe.html")
    script = ("<script>const w = s => Math.max(0, ...[...document.querySelectorAll(s)].map(e => "
              "Math.ceil(e.getBoundingClientRect().right)));"
              "document.body.dataset.widths = [document.documentElement.scrollWidth, window.innerWidth, "
              "w('table'), w('img')].join(',');</script>")
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        dom = subprocess.run(
            [chromium, *_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900", "--dump-dom",
             probe.as_uri()], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90, check=False,
        ).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'data-widths="(\d+),(\d+),(\d+),(\d+)"', dom)
    assert found, f"no widths in the page ({len(dom)} characters of DOM)"
    return dict(zip(("document", "window", "table", "image"), map(int, found.groups())))


def test_report_fits_a_normal_browser_window(chromium_path, tmp_path):
    """At 1280 and 1024 pixels wide the page needs no sideways scrolling: tables and figures fit the window."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_mixed_campaign(url, "mixed")
    storage = open_storage(url, create=False)
    written = write_report(campaign_report(storage, "mixed"), tmp_path / "report")
    storage.engine.dispose()
    for width in (1280, 1024):
        widths = _page_widths(chromium_path, written["report.html"], width)
        assert widths["document"] <= widths["window"], widths
        assert 0 < widths["table"] <= widths["window"] and 0 < widths["image"] <= widths["window"], widths


def _phone_widths(chromium: str, page, width: int = 390) -> tuple[int, list[str], list[int]]:
    """The page in a frame ``width`` pixels wide (a headless window is never narrower than 500): the width it lays
    out to, each element that reaches past the frame outside a sideways-scrolling box (tag and text), and the width
    in pixels of each image it chose to show."""
    probe = page.with_name("phone.html")
    probe.write_text(
        f"<html><body style='margin:0'><iframe id='f' src='{page.name}' style='width:{width}px;height:900px;border:0'>"
        "</iframe><script>document.getElementById('f').onload = () => {"
        "const d = document.getElementById('f').contentDocument;"
        f"const over = [...d.body.querySelectorAll('*')].filter(e => !e.parentElement.closest('.scroll') && "
        f"e.getBoundingClientRect().right > {width} + 0.5).map(e => e.tagName + ' ' + e.textContent.slice(0, 60));"
        "document.body.dataset.width = d.documentElement.scrollWidth;"
        "document.body.dataset.over = JSON.stringify(over);"
        "document.body.dataset.images = JSON.stringify([...d.images].map(i => i.naturalWidth));};"
        "</script></body></html>")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        dom = subprocess.run(
            [chromium, *_FLAGS, f"--user-data-dir={profile}", "--allow-file-access-from-files",
             "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90, check=False,
        ).stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'data-width="(\d+)" data-over="([^"]*)" data-images="([^"]*)"', dom)
    assert found, f"no widths in the page ({len(dom)} characters of DOM)"
    return int(found.group(1)), json.loads(html.unescape(found.group(2))), json.loads(html.unescape(found.group(3)))


def test_report_fits_a_phone_screen(chromium_path, tmp_path):
    """At 390 pixels wide nothing but a table's own box scrolls sideways: the chosen configuration's command to keep
    it (search train --from-trial ... --save model.npz) reached 130 pixels past a phone's screen. Each plot is its
    phone layout, at most 460 pixels wide (shown at 358: text at 3/4 of its size); three panels side by side, 1,380
    pixels shrunk to 358, read only with pinch-zoom."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_auto_campaign(url, "auto")
    storage = open_storage(url, create=False)
    written = write_report(campaign_report(storage, "auto"), tmp_path / "report")
    storage.engine.dispose()
    assert "search train --from-trial auto/final:" in re.sub(r"</?span[^>]*>", "", written["report.html"].read_text())
    width, over, images = _phone_widths(chromium_path, written["report.html"], 390)
    assert (width, over) == (390, [])
    assert len(images) == 8 and max(images) == 460, images


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"search dashboard exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"search dashboard did not listen on port {port} within {timeout:.0f} s")


def test_dashboard_lists_the_stages_of_a_finished_campaign(chromium_path, finished_campaign, tmp_path):
    if importlib.util.find_spec("optuna_dashboard") is None:
        pytest.skip("optuna-dashboard is not installed: pip install '.[dashboard]' (the test extra has it)")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from search.cli import main; main()", "dashboard", "--port", str(port),
         "--storage", finished_campaign],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True, cwd=tmp_path,
    )
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        _wait_for_port(port, server)
        dom = subprocess.run(
            [chromium_path, *_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
             f"http://127.0.0.1:{port}/dashboard"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90, check=False,
        ).stdout
        for stage in ("demo/coarse", "demo/fine-1", "demo/grid"):
            assert stage in dom, f"{stage} not in the dashboard page ({len(dom)} characters of DOM)"
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        server.stderr.close()
