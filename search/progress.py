"""Progress of a stage: a tqdm bar on a terminal, one log line per trial otherwise, nothing with --json."""
from __future__ import annotations

import math
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from search.stages import FINISHED, STORAGE_OUTAGE, is_storage_error
from search.text import visible, wrapped
from studies.records import params_text


class _Bar(tqdm):
    """tqdm without its monitor thread, which outlived the bar: a process with it forks no helper to draw a report's
    figures (see studies.plots.render_pngs), as search compare's report, drawn after its bars, was not."""

    monitor_interval = 0


# shorter than tqdm's default (no percentage beside the count, no rate): at 80 columns a long stage name and every
# count after the bar still fit
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}"
# the stage's counts are read from the database when a trial of this process ends, at most this often
READ_EVERY_SECONDS = 1.0
# a bar told of this process's trials only (search worker, a --jobs 1 stage beside other workers) is also redrawn
# from the stage's counts this often, one query each: the trials other processes finish show as they end, not only
# when one of this process's does (a worker's bar stood at 1/12 while 3 were finished)
REDRAW_EVERY_SECONDS = 2.0
# without a bar (a log file, CI), a line with the elapsed time, the time left and the best so far, at most this often
STATUS_EVERY_SECONDS = 60.0


# the times a bar's name leaves room for at least: minutes, as most stages take
SHORT_TIMES = "00:00<00:00"


def bar_name(name: str, total: int, width: int, pruned: int = 0, failed: int = 0, times: str = SHORT_TIMES) -> str:
    """``name`` shortened in its campaign part (``campaign…/stage``) so that a bar of ``width`` columns keeps its
    counts, times (``times``, the elapsed and remaining ones as the bar shows them, when longer than minutes) and best
    value whole, ``pruned`` and ``failed`` trials once one failed: tqdm cuts a line that does not fit at its end."""
    times = max(times, SHORT_TIMES, key=len)  # the name keeps its length while the times are shorter ("00:03<?")
    rest = len(f": {total}/{total} || {times}, best 0.0000 pruned {total}") + 2  # and a bar of 2 columns
    if failed:  # shown once a trial failed, as a Ctrl-C ends the bar (its running trial failed as interrupted)
        shown = f": {total}/{total} || {times}, best 0.0000 pruned {pruned} failed {failed}"
        rest = max(rest, len(shown) + 1)  # and a bar of 1 column, the fewest tqdm draws
    room = width - rest
    if len(name) <= room:
        return name
    campaign, sep, stage = name.rpartition("/")
    tail = sep + stage
    if room - len(tail) < 4:  # no room left for a useful part of the campaign
        return "…" + name[-max(room - 1, 1):]
    return campaign[:room - len(tail) - 1] + "…" + tail


class Progress:
    """Trials done/total, pruned, failed and best so far of one stage, starting from what the database holds.

    ``before`` (the stage's trials by state name and best value, as the database counts them when the command
    starts) is what it finished before; ``read_stage`` (the same, read again) is for a process that is told only of
    its own trials while others run the same stage: the counts then come from the database, read as trials end.
    With ``told_all`` it is told of every process's trials (the watcher of --jobs N) from a first look taken with
    ``before``: the stage is read only as the bar ends (a read while trials are told would count twice the ones it
    holds that are told after it).
    """

    def __init__(self, name: str, total: int, before: tuple[dict[str, int], float | None] | None = None,
                 mode: str = "auto",
                 stream: TextIO | None = None,
                 read_stage: Callable[[], tuple[dict[str, int], float | None]] | None = None,
                 notes: Iterable[str] = (), told_all: bool = False):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        self.mode = mode  # "bar", "log" or "quiet"
        self.name, self.total = visible(name), total  # a campaign named after a file: shown, never obeyed
        self.seen: set[int] = set()
        self.done = self.pruned = self.failed = 0
        self.best = -math.inf
        self.read_stage = read_stage if self.mode != "quiet" else None  # nothing shown, nothing read
        self.told_all = told_all
        self.read_at = -math.inf
        if before is not None:
            self._take(*before)
        if self.read_stage is not None:
            self._read()
        self.started = self.status_at = time.monotonic()
        self.done_before = self.done  # the time left is judged on the trials finished since this command started
        if self.mode != "quiet":
            self.stream.write("".join(f"{visible(note)}\n" for note in notes))
            self.stream.flush()
        self.bar = None
        if self.mode == "bar":
            # three columns short of the terminal: a bar in the last column makes the terminal wrap, and
            # the ^C a terminal echoes after it would too
            size = shutil.get_terminal_size((80, 24))
            width = self.width = size.columns - 3
            # the height too: tqdm reads its own, and a terminal that reports 0 rows (some CI and container
            # terminals) makes it draw nothing at all
            # drawn only by _postfix, which shortens the name for the times it draws (an hour widens each by three
            # columns): never by tqdm's update, with the name as the times were at the last draw
            self.bar = _Bar(total=total, initial=self.done, desc=bar_name(self.name, total, width), file=self.stream,
                            ncols=width, nrows=size.lines, unit="trial", leave=True, bar_format=BAR_FORMAT,
                            mininterval=math.inf)
            self._postfix()
        self.lock = threading.Lock()  # the redrawing thread's reads and draws, and this process's trials'
        self.stopping = threading.Event()
        self.redrawer: threading.Thread | None = None
        if self.bar is not None and self.read_stage is not None and not told_all:
            self.redrawer = threading.Thread(target=self._redraw_every, daemon=True, name="progress-redraw")
            self.redrawer.start()
        self.said_before = STORAGE_OUTAGE.say  # restored by close
        if self.mode != "quiet":  # a failing database's lines above the bar, which is drawn again below them
            STORAGE_OUTAGE.say = self._say

    def _redraw_every(self) -> None:
        """Redraw the bar from the stage's counts every ``REDRAW_EVERY_SECONDS`` until it closes."""
        while not self.stopping.wait(REDRAW_EVERY_SECONDS):
            try:
                with self.lock:
                    self._redraw()
            except Exception:  # the database gone (StorageLost), a closed stream: the command's own next read or
                return  # write says so; the bar stays as it was last drawn

    def _redraw(self) -> None:
        """Read the stage's counts and draw the bar at them."""
        before = self.done
        self._read()
        self.bar.update(self.done - before)
        self._postfix()

    def _say(self, line: str) -> None:
        if self.bar is not None:
            _Bar.write(line, file=self.stream)
        else:
            self.stream.write(f"{line}\n")
            self.stream.flush()

    def _count(self, t: FrozenTrial) -> bool:
        if t.number in self.seen:
            return False
        self.seen.add(t.number)
        if t.state == TrialState.FAIL:
            self.failed += 1
        elif t.state in FINISHED:
            self.done += 1
            if t.state == TrialState.PRUNED:
                self.pruned += 1
            elif t.value is not None:
                self.best = max(self.best, t.value)
        return True

    def trial(self, t: FrozenTrial) -> None:
        """Record one trial that has just finished (COMPLETE, PRUNED or FAIL); a trial seen before is ignored."""
        with self.lock:
            self._trial(t)

    def _trial(self, t: FrozenTrial) -> None:
        before, best_before = self.done, self.best
        if not self._count(t):
            return
        if self.read_stage is not None and not self.told_all and time.monotonic() - self.read_at >= READ_EVERY_SECONDS:
            self._read()
        if self.mode == "log":
            self.stream.write(visible(self._line(t, best_before) + self._status()))
            self.stream.flush()
        elif self.bar is not None:
            self.bar.update(self.done - before)
            self._postfix()

    def _line(self, t: FrozenTrial, best_before: float) -> str:
        """A finished trial as a log line of at most 80 columns for a few params: STUDY:NUMBER (as `search explain`
        takes it), how it ended ("new best" above ``best_before``, the best value so far), its value, params and
        the stage's count; a trial's error, or why its worker was lost, on a line of its own. On a terminal a line
        wider than it goes on, indented, on the next (a parameter never cut); elsewhere (a pipe, a log file) a trial
        keeps one line, for grep."""
        reason = str(t.user_attrs.get("stop_reason") or "")
        # an error ('error: ...') or a lost worker ('worker lost: ...'): too long for the status column
        why = reason if t.state == TrialState.FAIL and reason != "interrupted" else ""
        if t.state == TrialState.COMPLETE:
            # above the best before it, and no other process's trial read since is better
            status = "new best" if t.value is not None and best_before < t.value >= self.best else "complete"
        elif why or not reason:
            status = "pruned" if t.state == TrialState.PRUNED else "failed"
        else:
            status = reason  # exploded, nan, pruned, interrupted
        value = "-" if t.value is None else f"{t.value:.4f}"
        number = f"{t.number:<{len(str(max(self.total - 1, 0)))}}"  # the columns after it align within a stage
        fields = [f"{self.name}:{number}", f"{status:8}", f"{value:6}", params_text(t.params),
                  f"[{self.done}/{self.total}]"]
        line = " ".join(f for f in fields if f)
        if self.stream.isatty():
            return wrapped(line) + "\n" + (wrapped(why, "    ") + "\n" if why else "")
        return line + "\n" + (f"    {why}\n" if why else "")

    def _status(self) -> str:
        """Every ``STATUS_EVERY_SECONDS`` while trials are left, what a bar shows: "NAME: 12/40 in 01:05, about
        02:10 left, best 0.9704"; else nothing."""
        now = time.monotonic()
        if now - self.status_at < STATUS_EVERY_SECONDS or self.done >= self.total:
            return ""
        self.status_at = now
        elapsed, ran = now - self.started, self.done - self.done_before
        left = f", about {tqdm.format_interval(elapsed / ran * (self.total - self.done))} left" if ran > 0 else ""
        line = f"{self.name}: {self.done}/{self.total} in {tqdm.format_interval(elapsed)}{left}, best {self._best()}"
        return (wrapped(line) if self.stream.isatty() else line) + "\n"

    def _read(self) -> None:
        """The stage's counts and best from the database, other processes' trials included; kept as they were
        while the database fails (the worker retries it)."""
        try:
            counts, best = self.read_stage()
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            return
        self.read_at = time.monotonic()
        self._take(counts, best)

    def _take(self, counts: dict[str, int], best: float | None) -> None:
        """The stage's counts and best value as the database gave them."""
        self.done, self.pruned = counts["COMPLETE"] + counts["PRUNED"], counts["PRUNED"]
        self.failed = counts["FAIL"]  # the stage's, before this process started too, as the stage summary counts
        if best is not None:
            self.best = max(self.best, best)

    def _best(self) -> str:
        return f"{self.best:.4f}" if math.isfinite(self.best) else "-"

    def _postfix(self) -> None:
        text = f"best {self._best()} pruned {self.pruned}" + (f" failed {self.failed}" if self.failed else "")
        # the times as tqdm draws them now (elapsed, and remaining at the rate so far)
        times = self.bar.format_meter(**{**self.bar.format_dict, "bar_format": "{elapsed}<{remaining}", "ncols": None})
        name = bar_name(self.name, self.total, self.width, self.pruned, self.failed, times)  # failures counted: shorter
        if name != self.bar.desc:
            self.bar.set_description_str(name, refresh=False)
        self.bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        """End the bar at the stage's counts: read once more, since the last trials another process finished may
        have ended within a second of the last read."""
        if self.redrawer is not None:
            self.stopping.set()
            self.redrawer.join()  # at most one read away; no thread is left behind the bar
        if STORAGE_OUTAGE.say == self._say:
            STORAGE_OUTAGE.say = self.said_before
        if self.bar is not None:
            if self.read_stage is not None:
                self._redraw()
            else:
                self._postfix()  # the times now, which the last line shows
            self.bar.close()
