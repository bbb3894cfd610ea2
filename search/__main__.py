"""The ``search`` program (console script and ``python -m search``): the CLI, and Ctrl-C while it starts."""
from __future__ import annotations

import os
import signal
import sys
from typing import Any

from search.errors import interrupted_line, raise_on


def _interrupted_while_starting(signum: int, frame: Any) -> None:
    # Nothing is open while the CLI's modules import, so leave at once: an exception would print the traceback
    # of whichever import it cut (or be swallowed by a library's own handler around one)
    sys.stderr.write(interrupted_line("interrupted", sys.argv[1:]) + "\n")
    sys.stderr.flush()
    os._exit(130)


def main() -> None:
    """Console-script entry point."""
    quiet = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # a spawned worker keeps it ignored
    if quiet:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    from search.cli import main as cli_main  # NumPy, click, ...: most of a command's start-up

    if quiet:
        raise_on(signal.SIGINT, KeyboardInterrupt)  # from here Ctrl-C records what it cuts
    try:
        cli_main()
    except SystemExit:
        # the command is over (done, failed or interrupted, its last line printed): a Ctrl-C now must not cut the
        # shutdown short (Python puts SIGINT back to the system default while it shuts down: a signal then ends
        # the process with -2 instead of the command's exit code)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
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
