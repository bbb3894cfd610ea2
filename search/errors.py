"""The search layer's exceptions; the CLI turns these, EngineError and StudyError into one line and an exit code."""
from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# the exit code of a command (or a worker) stopped by Ctrl-C or by SIGTERM, as a shell gives a process the signal ended
STOP_EXIT_CODES = {"interrupted": 130, "terminated": 143}
# the commands that write a study database: only after them is there a stage to continue
WRITING_COMMANDS = frozenset({"coarse", "fine", "grid", "auto", "worker", "compare"})


def interrupted_line(how: str, args: Sequence[str], campaign: str | None = None) -> str:
    """The last line of ``search ARGS`` stopped by a signal (``how``: "interrupted" or "terminated"); the group
    takes no option but --help, so ``args[0]`` names the command. ``campaign``: the campaign the command named
    itself (search compare's compare-<UTC timestamp>), which the same command run again would not continue."""
    if args and args[0] in WRITING_COMMANDS:
        again = "again" if campaign is None else f"with --campaign {shlex.quote(campaign)}"
        return f"{how}: the database is consistent; run the same command {again} to continue"
    return how


class SearchError(Exception):
    """Root of the search layer's own errors; ``exit_code`` 2 means bad usage or input."""

    exit_code = 2


class SearchFailed(SearchError):
    """The work itself failed (not the user's input)."""

    exit_code = 1


class Interrupted(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so the running trial is recorded as interrupted."""


# What a signal raised (KeyboardInterrupt or Interrupted), kept in case Python dropped it: raised inside a __del__
# or a weakref callback (garbage collection runs them at any instruction), an exception is printed as "Exception
# ignored in ..." and lost, and Ctrl-C would be ignored. ``raise_pending`` raises it again at safe points.
_pending: list[type[BaseException]] = []
_hooks: list[Any] = []  # the unraisable hook ``raise_on`` replaced


def raise_on(signum: int, exception: type[BaseException]) -> Any:
    """Make signal ``signum`` raise ``exception`` in the main thread, never lost (see ``_pending``); returns the
    previous handler."""
    if sys.unraisablehook is not _unraisable:
        _hooks[:] = [sys.unraisablehook]
        sys.unraisablehook = _unraisable

    def handler(signum: int, frame: Any) -> None:
        _pending.append(exception)
        raise exception()

    return signal.signal(signum, handler)


def pending() -> type[BaseException] | None:
    """The interrupt a signal asked for since the command started (KeyboardInterrupt or Interrupted), or None."""
    return _pending[0] if _pending else None


def raise_pending() -> None:
    """Raise the interrupt a signal asked for, if there was one (its first raise may have been dropped)."""
    if _pending:
        raise _pending[0]()


def forget_pending() -> None:
    """Once the interrupt is handled: nothing pending for whatever runs next in this process (tests, a library
    caller)."""
    _pending.clear()


def _unraisable(unraisable: Any) -> None:
    # a dropped interrupt is raised again at the next safe point: no "Exception ignored" traceback for it
    if not (_pending and isinstance(unraisable.exc_value, (KeyboardInterrupt, Interrupted))):
        (_hooks[0] if _hooks else sys.__unraisablehook__)(unraisable)


@contextmanager
def stops_held(block: bool = False) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM, the signals that stop a command, while the block runs, then act on the first one
    received as the handler in place would have: a second one asks for the same stop, and the command ends by the
    first one's exit code (130 or 143).

    They are noted as they come (two within one call into C, a database statement, are noted in signal-number order,
    Ctrl-C's first). With ``block`` they are blocked in this thread too, so processes started here inherit them
    blocked (they unblock them when ready); a copy another thread takes is only noted, and the ones held till the
    end are noted then, in signal-number order. Outside the main thread, which no handler runs in, nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = {signal.SIGINT, signal.SIGTERM}
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda number, frame: caught.append(number)) for signum in stops}
    if block:
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        yield
    finally:
        if block:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)  # the ones held till now are noted here
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])
