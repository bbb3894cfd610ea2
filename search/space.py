"""Search spaces: parameter ranges on a log or linear scale, sampling, and refining ranges from trials."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from search.errors import SearchError


@dataclass(frozen=True)
class ParamRange:
    """A closed interval [low, high], searched on a log scale (the default) or a linear one."""

    low: float
    high: float
    log: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise SearchError(f"range {self.low:g}:{self.high:g} must have finite bounds")
        if self.low >= self.high:
            raise SearchError(f"range {self.low:g}:{self.high:g} needs low < high")
        if self.log and self.low <= 0:
            raise SearchError(f"range {self.low:g}:{self.high:g} is on a log scale, so both bounds must be > 0")

    # ---- coordinates in which the range is uniform
    def to_unit(self, value: float) -> float:
        """The coordinate in which sampling is uniform (log10 for log ranges)."""
        return math.log10(value) if self.log else value

    def from_unit(self, u: float) -> float:
        return 10.0**u if self.log else u

    @property
    def width(self) -> float:
        """Width in the uniform coordinate (decades for a log range)."""
        return self.to_unit(self.high) - self.to_unit(self.low)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` values drawn uniformly in the range's coordinate."""
        u = rng.uniform(self.to_unit(self.low), self.to_unit(self.high), size)
        return np.array([self.from_unit(x) for x in u])

    def grid(self, k: int) -> list[float]:
        """``k`` evenly spaced values in the range's coordinate, bounds included."""
        if k == 1:
            return [self.from_unit((self.to_unit(self.low) + self.to_unit(self.high)) / 2)]
        return [self.from_unit(u) for u in np.linspace(self.to_unit(self.low), self.to_unit(self.high), k)]

    def near_bound(self, value: float, edge: float) -> str | None:
        """``"low"`` or ``"high"`` when value lies within ``edge`` x width of that bound, else None."""
        u = self.to_unit(value)
        if u - self.to_unit(self.low) <= edge * self.width:
            return "low"
        if self.to_unit(self.high) - u <= edge * self.width:
            return "high"
        return None

    def as_attr(self) -> list:
        """JSON form stored in the study's ``space`` attribute: [low, high, "log"|"linear"]."""
        return [self.low, self.high, "log" if self.log else "linear"]

    @classmethod
    def from_attr(cls, attr: Sequence) -> ParamRange:
        return cls(float(attr[0]), float(attr[1]), attr[2] == "log")

    def __str__(self) -> str:
        return f"{self.low:.3g}:{self.high:.3g}"


def parse_range(text: str, log: bool = True) -> ParamRange:
    """Parse ``LOW:HIGH`` (e.g. ``1e-6:1e-1``); raises SearchError naming what is wrong."""
    parts = text.split(":")
    if len(parts) != 2:
        raise SearchError(f"range {text!r} must look like LOW:HIGH, e.g. 1e-5:1e-1")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise SearchError(f"range {text!r} has a bound that is not a number") from None
    return ParamRange(low, high, log)


Space = Mapping[str, ParamRange]


def space_attr(space: Space) -> dict[str, list]:
    return {name: r.as_attr() for name, r in space.items()}


def space_from_attr(attr: Mapping[str, Sequence]) -> dict[str, ParamRange]:
    return {name: ParamRange.from_attr(a) for name, a in attr.items()}


def refine_ranges(
    space: Space,
    trials: Sequence[tuple[Mapping[str, float], float]],
    top: int = 5,
    edge: float = 0.1,
) -> tuple[dict[str, ParamRange], list[str]]:
    """New ranges from finished trials ``(params, value)`` (higher is better) and notes saying why.

    Per parameter, in the range's own coordinate: the new range spans the ``top`` best trials'
    values, padded by 10 % of the old width on each side and kept inside the old range, so it
    narrows around the good region and always contains the best value. When the best value lies
    within ``edge`` x width of a bound, that bound is moved outward by max(25 % of the old
    width, the new width): the good region may continue past it.
    """
    if not trials:
        raise SearchError("no finished trials to refine the ranges from")
    if top < 1:
        raise SearchError(f"--top must be >= 1, got {top}")
    ranked = sorted(trials, key=lambda t: t[1], reverse=True)[:top]
    best = ranked[0][0]
    new: dict[str, ParamRange] = {}
    notes: list[str] = []
    for name, old in space.items():
        us = [old.to_unit(p[name]) for p, _ in ranked]
        lo_old, hi_old = old.to_unit(old.low), old.to_unit(old.high)
        pad = 0.1 * old.width
        lo, hi = max(lo_old, min(us) - pad), min(hi_old, max(us) + pad)
        side = old.near_bound(best[name], edge)
        shift = max(0.25 * old.width, hi - lo)
        if side == "high":
            hi = hi_old + shift
        elif side == "low":
            lo = lo_old - shift
        if old.log is False and side == "low" and lo_old > 0 >= lo:
            lo = lo_old / 2  # a linear range that started positive stays positive
        rng = ParamRange(old.from_unit(lo), old.from_unit(hi), old.log)
        new[name] = rng
        pct = round(edge * 100)
        if side == "high":
            notes.append(
                f"{name}: best {best[name]:.3g} is within {pct} % of the upper bound {old.high:.3g}; "
                f"new range {rng} (widened upward)"
            )
        elif side == "low":
            notes.append(
                f"{name}: best {best[name]:.3g} is within {pct} % of the lower bound {old.low:.3g}; "
                f"new range {rng} (widened downward)"
            )
        else:
            unit = "decades" if old.log else "units"
            notes.append(
                f"{name}: best {best[name]:.3g} is inside {old}; narrowed around the top {len(ranked)} trials "
                f"to {rng} ({rng.width:.2g} of {old.width:.2g} {unit})"
            )
    return new, notes


def ranges_moved(old: Space, new: Space, tolerance: float = 0.1) -> bool:
    """True when any bound moved by more than ``tolerance`` x the old width (in the range's coordinate)."""
    for name, o in old.items():
        n = new[name]
        limit = tolerance * o.width
        if abs(o.to_unit(n.low) - o.to_unit(o.low)) > limit or abs(o.to_unit(n.high) - o.to_unit(o.high)) > limit:
            return True
    return False
