"""Weight initialisers by name: each maps (fan_in, fan_out, rng, std) to a (fan_in, fan_out) matrix; ``InitSpec.draw``
casts it to the network's dtype."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.errors import ConfigError, shown

Initialiser = Callable[[int, int, np.random.Generator, float], np.ndarray]
# inputs whose std is above this are far from the unit scale the he, xavier and lecun initialisers assume (pixels of
# 0..255: 60-90): the initial class scores are far from 0, the initial loss off ln C
INPUT_STD_HIGH = 3.0


def zeros(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """All zeros: every unit computes the same thing (the lecture's first failure)."""
    return np.zeros((fan_in, fan_out))


def constant(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """Every weight equal to ``std`` (the init-std value)."""
    return np.full((fan_in, fan_out), std)


def normal(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """N(0, std^2): std 0.01 collapses deep tanh nets, std 1.0 saturates them."""
    return rng.standard_normal((fan_in, fan_out)) * std


def uniform(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """U(-a, a) with a = sqrt(3) * std, so the standard deviation is ``std``."""
    a = np.sqrt(3.0) * std
    return rng.uniform(-a, a, (fan_in, fan_out))


def xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """Glorot normal: std = sqrt(2 / (fan_in + fan_out))."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))


def xavier_uniform(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """Glorot uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, (fan_in, fan_out))


def xavier(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """The lecture's Xavier: N(0, 1) / sqrt(fan_in)."""
    return rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)


def he_normal(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """He/Kaiming normal for ReLU: N(0, 1) * sqrt(2 / fan_in)."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def he_uniform(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """He/Kaiming uniform: U(-a, a), a = sqrt(6 / fan_in)."""
    a = np.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, (fan_in, fan_out))


def lecun(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """LeCun normal: N(0, 1 / fan_in) (same scale as the lecture's Xavier)."""
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(1.0 / fan_in)


def orthogonal(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """Orthogonal rows or columns from the SVD of a Gaussian matrix, scaled by gain ``std``."""
    a = rng.standard_normal((fan_in, fan_out))
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    q = u if u.shape == (fan_in, fan_out) else vt
    return q * std


def sparse(fan_in: int, fan_out: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """Each output unit gets 10 % of its inputs (at least one) drawn from N(0, std^2), the rest zero."""
    w = np.zeros((fan_in, fan_out))
    k = max(1, int(round(0.1 * fan_in)))
    for j in range(fan_out):
        rows = rng.choice(fan_in, size=k, replace=False)
        w[rows, j] = rng.standard_normal(k) * std
    return w


INITIALISERS: dict[str, Initialiser] = {
    "zeros": zeros,
    "constant": constant,
    "normal": normal,
    "uniform": uniform,
    "xavier": xavier,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "glorot_normal": xavier_normal,
    "glorot_uniform": xavier_uniform,
    "he": he_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "lecun": lecun,
    "orthogonal": orthogonal,
    "sparse": sparse,
}

# default ``std`` argument when the user gives none: the scale for normal/uniform/sparse, the gain for orthogonal
DEFAULT_STD: dict[str, float] = {"normal": 0.01, "uniform": 0.01, "constant": 0.01, "sparse": 0.01, "orthogonal": 1.0}


@dataclass(frozen=True)
class InitSpec:
    """An initialiser by name with its std (ignored by the fan-based ones)."""

    name: str = "he"
    std: float | None = None

    def __post_init__(self) -> None:
        check_init_name(self.name)
        if self.std is not None and not (np.isfinite(self.std) and self.std >= 0):
            raise ConfigError(f"init std must be a finite number >= 0, got {shown(self.std)}")

    def draw(self, fan_in: int, fan_out: int, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        """A (fan_in, fan_out) weight matrix in ``dtype``."""
        std = self.std if self.std is not None else DEFAULT_STD.get(self.name, 1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            W = INITIALISERS[self.name](fan_in, fan_out, rng, std).astype(dtype)
        if not np.isfinite(W).all():
            raise ConfigError(f"init std {std:g} gives weights beyond {np.dtype(dtype).name}'s range")
        return W


def check_init_name(name: str) -> None:
    """Raise ConfigError listing the known initialisers when ``name`` is not one of them."""
    if name not in INITIALISERS:
        raise ConfigError(f"unknown init {name!r}; known: {', '.join(sorted(INITIALISERS))}")
