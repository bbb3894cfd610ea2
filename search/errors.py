"""The search layer's exceptions; the CLI turns these, EngineError and StudyError into one line and an exit code."""
from __future__ import annotations

INTERRUPTED_LINE = "interrupted: the database is consistent; run the same command again to continue"


class SearchError(Exception):
    """Root of the search layer's own errors; ``exit_code`` 2 means bad usage or input."""

    exit_code = 2


class SearchFailed(SearchError):
    """The work itself failed (not the user's input)."""

    exit_code = 1


class Interrupted(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so the running trial is recorded as interrupted."""
