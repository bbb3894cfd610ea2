"""The ``search`` program (console script and ``python -m search``): the CLI, and Ctrl-C or SIGTERM while it starts
or once it is over."""
from __future__ import annotations

import os
import signal
import sys
from typing import Any

from search.errors import STOP_EXIT_CODES, interrupted_line, raise_on


def _interrupted_while_starting(signum: int, frame: Any) -> None:
    # Nothing is open while the CLI's modules import, so leave at once: an exception would print the traceback
    # of whichever import it cut (or be swallowed by a library's own handler around one)
    how = "interrupted" if signum == signal.SIGINT else "terminated"
    sys.stderr.write(interrupted_line(how, sys.argv[1:]) + "\n")
    sys.stderr.flush()
    os._exit(STOP_EXIT_CODES[how])


def main() -> None:
    """Console-script entry point."""
    quiet = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # a spawned worker keeps it ignored
    if quiet:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # the CLI's own handler takes over once it runs
        signal.signal(signal.SIGTERM, _interrupted_while_starting)
    from search.cli import main as cli_main  # NumPy, click, ...: most of a command's start-up

    if quiet:
        raise_on(signal.SIGINT, KeyboardInterrupt)  # from here Ctrl-C records what it cuts
    try:
        cli_main()
    except SystemExit:
        # the command is over (done, failed or interrupted, its last line printed): a Ctrl-C or SIGTERM now must
        # not cut the shutdown (a few tenths of a second) short (Python puts SIGINT back to the system default while
        # it shuts down, SIGTERM is there already: a signal then ends the process silently, killed, instead of with
        # the command's exit code)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise
    finally:
        _forget_caught_interrupt()


def _forget_caught_interrupt() -> None:
    # CPython remembers a KeyboardInterrupt that ended a string exec (dataclasses, namedtuple and SQLAlchemy run
    # generated code that way) even when it was caught, and under ``python -m`` it then ends the process with
    # SIGINT instead of the exit code (-2, not 130, when Ctrl-C cut such an exec). The next string exec resets
    # that memory; an interrupt that does leave main() still ends the process with SIGINT, as Python intends.
    exec("")  # noqa: S102


if __name__ == "__main__":
    main()
