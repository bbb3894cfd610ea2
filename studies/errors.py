"""The study database's exceptions: every error ``studies`` raises on purpose derives from StudyError."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class StudyError(Exception):
    """Root of the studies package's own errors; ``exit_code`` is what a CLI should exit with."""

    exit_code = 2


class StorageError(StudyError):
    """The storage is bad, unreachable, unreadable, not a database, or has a schema we cannot use."""


class EmptyDatabaseError(StorageError):
    """A server database (PostgreSQL) that exists and holds no table yet: the first search coarse or search auto on it
    makes Optuna's."""


class StorageBusyError(StorageError):
    """Another process held the database's lock past the wait (the busy timeout, or a query's time limit): the
    input may be fine, the same command can be run again (exit code 1)."""

    exit_code = 1


class OutputError(StudyError):
    """A report's files could not be written (a full disk, a file size limit): not the input, so exit code 1."""

    exit_code = 1


class UnknownStudyError(StudyError):
    """A study or campaign name is not in the storage (the message lists the known names)."""


class QueryError(StudyError):
    """A read-only SQL statement was refused or failed."""


@contextmanager
def attribute_read(study: str, key: str) -> Iterator[None]:
    """Reading user attribute ``key`` of ``study`` in the block: a value inside it of another kind than this service
    writes (a list where it wrote a number, changed by hand) is a StudyError naming them, not the TypeError,
    ValueError, KeyError, IndexError or AttributeError its reader ended in."""
    try:
        yield
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        raise StudyError(f"study {study}, user attribute {key!r} cannot be read (a value inside it is of another kind "
                         "than this service writes); it was written by another program or changed since, and is "
                         "left as it is") from None
