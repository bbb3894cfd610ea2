"""The search layer's exceptions; the CLI turns these, EngineError and StudyError into one line and an exit code."""
from __future__ import annotations

import signal
import sys
from typing import Any

INTERRUPTED_LINE = "interrupted: the database is consistent; run the same command again to continue"


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


def raise_on(signum: int, exception: type[BaseException]) -> Any:
    """Make signal ``signum`` raise ``exception`` in the main thread, never lost (see ``_pending``); returns the
    previous handler."""
    sys.unraisablehook = _unraisable

    def handler(signum: int, frame: Any) -> None:
        _pending.append(exception)
        raise exception()

    return signal.signal(signum, handler)


def raise_pending() -> None:
    """Raise the interrupt a signal asked for, if there was one (its first raise may have been dropped)."""
    if _pending:
        raise _pending[0]()


def forget_pending() -> None:
    """A new command in the same process (tests, a library caller) starts with no interrupt pending."""
    _pending.clear()


def _unraisable(unraisable: Any) -> None:
    # a dropped interrupt is raised again at the next safe point: no "Exception ignored" traceback for it
    if not (_pending and isinstance(unraisable.exc_value, (KeyboardInterrupt, Interrupted))):
        sys.__unraisablehook__(unraisable)
