"""The ``search`` command line: one click group; errors become one line and an exit code here, in one place.

Commands live in one module per family (``run``, ``stages``, ``db``, ``report``), registered below
with ``add_command``; shared options are in ``options``.
"""
from __future__ import annotations

import errno
import io
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from engine.errors import EngineError
from search.errors import (STOP_EXIT_CODES, Interrupted, SearchError, forget_pending, interrupted_line, raise_on,
                           raise_pending)
from search.text import visible, wrapped
from studies.errors import StudyError


# click 8.2 and later raise this for a group run with no command (printed as an error, "error: Usage: ..."); 8.1
# printed the help itself
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class SearchGroup(click.Group):
    """A click group whose errors print as one line on stderr with the contract's exit codes."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # noqa: D102
        extra.pop("standalone_mode", None)
        given = self.given = list(sys.argv[1:] if args is None else args)
        started = time.monotonic()
        forget_pending()
        closed_stdout = sys.stdout is None
        if closed_stdout:  # started with stdout closed (`>&-`, a daemon's): what it prints is kept, and its loss said
            from search.cli.output import LostOutput

            sys.stdout = LostOutput()
        _buffer_raw_stdout()
        for stream in (sys.stdout, sys.stderr):  # a campaign named "ünï" on an ASCII-only stream: ? not a traceback
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(errors="replace")
        hook = sys.unraisablehook
        previous = raise_on(signal.SIGTERM, Interrupted)
        try:
            rv = super().main(args=args, prog_name=prog_name or "search", standalone_mode=False, **extra)
            raise_pending()  # a signal whose exception was dropped (see search.errors) still ends the command
            if closed_stdout and sys.stdout.getvalue():
                click.echo("error: cannot write the output: stdout is closed", err=True)
                sys.exit(1)
            sys.stdout.flush()  # a full disk under `> out.csv` fails here, not silently at exit
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort, Interrupted) as stop:
            _exit_interrupted(stop, given)
        except _NO_ARGS_IS_HELP as e:  # `search` alone: its help on stdout, as `search --help` and click 8.1 print it
            click.echo(e.format_message())
            sys.exit(0)
        except click.ClickException as e:
            click.echo(f"error: {visible(self._campaign_data_hint(e) or e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except (EngineError, StudyError, SearchError) as e:
            click.echo(f"error: {visible(single_spaced(str(e)))}", err=True)
            sys.exit(e.exit_code)
        except OSError as e:
            if e.errno not in _OUTPUT_FAILURES:
                raise
            _output_failed(e, given)
        except Exception as e:
            # the database failing outside a worker's retried writes (creating or loading a stage, summarising it):
            # a lock held longer than the busy timeout, a full disk, a server gone
            from search.stages import is_storage_error
            from studies.store import describe_storage_error, unreadable_stored_value

            if not is_storage_error(e):
                # a value changed by hand, which Optuna or this service cannot read: one line naming it, not the
                # traceback it made
                try:
                    unreadable = unreadable_stored_value(since=started)
                except (KeyboardInterrupt, Interrupted) as stop:  # while the database is looked through: as ever
                    _exit_interrupted(stop, given)
                if not unreadable:
                    raise
                click.echo(f"error: {visible(single_spaced(unreadable))}; it was written by another program or changed "
                           "since, and is left as it is", err=True)
                sys.exit(2)
            click.echo(f"error: the database failed: {visible(single_spaced(describe_storage_error(e)))}; run the same "
                       "command again", err=True)
            sys.exit(1)
        finally:
            if "studies.store" in sys.modules:  # a command that read a SQLite file: the -wal and -shm reading made
                sys.modules["studies.store"].tidy_read_side_files()
            signal.signal(signal.SIGTERM, previous)
            sys.unraisablehook = hook
            forget_pending()  # handled above: nothing left pending for what runs next in this process
        sys.exit(rv if isinstance(rv, int) else 0)

    def _campaign_data_hint(self, e: click.ClickException) -> str | None:
        """Where a command of a campaign takes its data from, when it was given a data option (search fine --data),
        in place of click's "No such option" and its guesses ("Did you mean '--state'?")."""
        command = e.ctx.command if isinstance(e, click.NoSuchOption) and e.ctx else None
        if command is None or not any(p.name == "campaign" for p in command.params):
            return None
        from search.cli.options import SECTIONS

        data = {o for p in self.commands["coarse"].params if p.name in SECTIONS["Data"] for o in p.opts}
        if e.option_name not in data:
            return None
        return (f"search {command.name} takes no {e.option_name}: it works on a campaign, which keeps the data it was "
                "created with; choose the campaign with --campaign NAME (search studies lists them)")

    # click's own main ends a write to a closed pipe with exit 1 (``| head``), before the handler above sees it
    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:  # noqa: D102 (--help prints here)
        with _output_checked(getattr(self, "given", [])):
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:  # noqa: D102
        with _output_checked(getattr(self, "given", [])):
            return super().invoke(ctx)


# a write to stdout failing: disk full, quota, file size limit, I/O error, the reading end of a pipe closed
_OUTPUT_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPIPE}


def _exit_interrupted(stop: BaseException, given: list[str]) -> NoReturn:
    """End a command stopped by Ctrl-C (exit 130) or SIGTERM (``Interrupted``, exit 143) with its one line."""
    how = "terminated" if isinstance(stop, Interrupted) else "interrupted"
    # a campaign the command named itself (search compare's), on the signal's exception or on click's Abort made of it
    campaign = getattr(stop, "campaign", None) or getattr(stop.__cause__, "campaign", None)
    # wrapped at the terminal's width: a campaign named in it (compare-<timestamp>) made it too long for 80 columns
    click.echo(wrapped(interrupted_line(how, given, campaign)), err=True)
    sys.exit(STOP_EXIT_CODES[how])


# commands that only read and print: a reader of their output that left (| head) cut nothing short (predict writes
# its --out file, and layers its --plot, before they print)
READING_COMMANDS = frozenset({"studies", "trials", "best", "explain", "query", "data", "predict", "layers"})


def _only_reading(given: list[str]) -> bool:
    """Whether the command line ``given`` runs a reading command (or none: --help of the group)."""
    name = next((arg for arg in given if not arg.startswith("-")), None)
    return name is None or name in READING_COMMANDS or "--help" in given or "-h" in given


@contextmanager
def _output_checked(given: list[str]) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if e.errno not in _OUTPUT_FAILURES:
            raise
        _output_failed(e, given)


def _output_failed(e: OSError, given: list[str]) -> NoReturn:
    """End the command whose output could not be written: quietly with 0 where the reader of a pipe left a command
    that only reads (``search trials | head -1`` has what it wanted), else with one line and exit 1 (``search
    compare | head -1`` stopped the comparison: not a success)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left for the exit's flush
    except (OSError, ValueError):
        pass  # a stream without a file descriptor (captured): nothing flushes it at exit
    if e.errno == errno.EPIPE and _only_reading(given):
        sys.exit(0)
    click.echo(f"error: cannot write the output: {e.strerror}", err=True)
    sys.exit(1)


def _buffer_raw_stdout() -> None:
    """Under PYTHONUNBUFFERED stdout writes straight to its file, and Python drops what a short write left out
    (a disk filling up under ``search trials --format csv > out.csv``: a truncated file and exit 0); a buffered
    writer writes the rest, and raises when nothing more fits."""
    raw = getattr(sys.stdout, "buffer", None)
    if isinstance(raw, io.RawIOBase):
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=sys.stdout.encoding, errors=sys.stdout.errors,
                                      line_buffering=True)


def single_spaced(text: str) -> str:
    """``text`` with each run of white space (line breaks too) one space: an error said on one line."""
    return " ".join(text.split())


@click.group(cls=SearchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Coarse-to-fine hyperparameter search for small NumPy networks.

    \b
    Quick start on the bundled digits data:
      search auto                      # coarse -> fine stages -> test score
      search train --epochs 30 --plot loss.png
      search studies                   # what is in ./search.db
    """
    from engine.formats import on_long_read

    on_long_read(_say_long_read)


def _say_long_read(path: Any, size: int) -> None:
    """One line on stderr before a large table is read, which takes seconds (stdout stays for --json)."""
    click.echo(visible(f"reading {path} ({size / 1e6:.0f} MB)..."), err=True)


def main() -> None:
    """Console-script entry point."""
    cli.main()


def _register() -> None:
    from search.cli import db, report, run, stages

    for module in (run, stages, db, report):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
