"""The engine's exceptions (each one it raises on purpose derives from EngineError) and how a message shows a value."""
from __future__ import annotations

import numpy as np


class EngineError(Exception):
    """Root of the engine's own errors; ``exit_code`` is what a CLI should exit with."""

    exit_code = 2


class ConfigError(EngineError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range number)."""


class DataError(EngineError):
    """A dataset cannot be found, read or trusted."""


class WriteError(EngineError):
    """An output file could not be written (the system refused: a folder gone, no permission, a full disk)."""

    exit_code = 1


def shown(value: object) -> str:
    """repr of ``value`` for a message, NumPy scalars (also in a tuple or list) as Python ones: 0.5, not np.float64(0.5)."""
    if isinstance(value, (tuple, list)):
        inner = ", ".join(shown(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value.item() if isinstance(value, np.generic) else value)
