"""The terminal as a person sees it: a resumed --jobs 2 stage in an 80-column tmux pane."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.search.procs import LONG

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", "search-test", *args], check=True, capture_output=True, text=True).stdout


def _run_in_pane(command: str, done: str, timeout: float = 120) -> None:
    _tmux("send-keys", "-t", "t", command, "Enter")
    deadline = time.monotonic() + timeout
    while done not in _screen():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {done!r}:\n{_screen()}")
        time.sleep(0.3)


def _screen() -> str:
    # -J joins lines the terminal wrapped, so a line wider than the pane shows as one long line
    return _tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-200")


@pytest.mark.slow
def test_a_resumed_two_job_stage_fits_80_columns_and_ends_at_exactly_n(tmp_path):
    _tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "40", "-c", str(tmp_path))
    try:
        # a short command line (the shell echoes it), trials of about a second so Ctrl-C lands mid-stage
        (tmp_path / "run.sh").write_text(f"{sys.executable} -m search coarse {' '.join(LONG)} --trials 30 --jobs 2\n")
        search = "sh run.sh"
        _tmux("send-keys", "-t", "t", "unset SEARCH_JOBS COLUMNS", "Enter")
        _tmux("send-keys", "-t", "t", search, "Enter")
        deadline = time.monotonic() + 120
        while not re.search(r"\b([3-9]|1\d)/30\b", _screen()):
            assert time.monotonic() < deadline, _screen()
            time.sleep(0.2)
        _tmux("send-keys", "-t", "t", "C-c", "")
        deadline = time.monotonic() + 60
        while "interrupted: the database is consistent" not in _screen():
            assert time.monotonic() < deadline, _screen()
            time.sleep(0.2)
        _tmux("send-keys", "-t", "t", "clear", "Enter")
        _run_in_pane(search + "; echo DONE$((40 + 2))", "DONE42", timeout=300)  # not in the typed line
        screen = _screen()
        printed = [line for line in screen.splitlines() if not line.startswith(("root@", "$", "#"))]  # not prompts
        assert max(len(line) for line in printed) <= 80, "\n".join(line for line in printed if len(line) > 80)
        assert "30/30" in screen  # the bar counts the stage, not only this run's trials
        assert not re.search(r"\b(3[1-9]|[4-9]\d)/30\b", screen)  # never past the budget
        counts = re.search(r"digits/coarse: (\d+) complete, (\d+) pruned of 30; (\d+) failed", screen)
        assert counts and int(counts.group(1)) + int(counts.group(2)) == 30, screen
        assert int(counts.group(3)) >= 1  # the trials Ctrl-C interrupted, each re-run once
    finally:
        subprocess.run(["tmux", "-L", "search-test", "kill-server"], capture_output=True)
