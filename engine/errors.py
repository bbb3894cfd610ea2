"""The engine's exceptions: every error the engine raises on purpose derives from EngineError."""
from __future__ import annotations


class EngineError(Exception):
    """Root of the engine's own errors; ``exit_code`` is what a CLI should exit with."""

    exit_code = 2


class ConfigError(EngineError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range number)."""


class DataError(EngineError):
    """A dataset cannot be found, read or trusted."""
