"""Search spaces over any run option: float, int and categorical dimensions, parsed, checked, refined.

A space is ``dict[name, Dimension]``; NAME is a run option's long name without dashes (``lr``,
``hidden``, ``activation``, ...) and ``SEARCHABLE`` maps it to its place in ``RunConfig``, its default
scale and the limits its option accepts. Each dimension suggests itself on an Optuna trial, makes
grid points, refines (narrows, widens, drops categories) from ranked trials with a note saying
how, and serialises itself for the study's ``space`` attribute. ``refine_space`` is a pure function.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from engine.activations import ACTIVATION_REGISTRY
from engine.errors import ConfigError
from engine.formats import is_number_text
from engine.init import DEFAULT_STD, INITIALISERS
from engine.layers import LOSSES
from engine.model import ACTIVATIONS, MIN_KEEP
from engine.optim import MOMENTUM_OPTIMIZERS, OPTIMIZERS
from engine.trainer import CLASS_WEIGHTS
from search.config import MAX_DEPTH, RunConfig
from search.errors import SearchError
from studies.records import value_text

if TYPE_CHECKING:
    import optuna

INF = math.inf


@dataclass(frozen=True)
class Searchable:
    """Where a searchable option lives in RunConfig, its default scale, and the closed range of values it accepts."""

    path: str
    kind: str  # "float", "int" or "categorical"
    log: bool = False
    limits: tuple[float, float] = (-INF, INF)
    choices: tuple[Any, ...] = ()
    # (another searchable option, its values with which this one has an effect); None: it always has one
    applies_with: tuple[str, tuple[Any, ...]] | None = None
    # the highest value refinement widens a range to by itself, where the limits allow far more than any run can use
    widen_high: float = INF
    # the lowest, where the values below it the limits allow have no effect
    widen_low: float = -INF


# The one table of searchable options. Limits are the option's own (dropout is a keep probability
# in [MIN_KEEP, 1]); widening a range stops at them. Open bounds are closed a little inside. Widening lr stops at
# 10 too: every run above it explodes (sgd and adam on digits explode at 3 and at 1), where a 10-trial coarse stage
# whose best sat near 1 was widened to 1e4 and more. reg and init_std, which accept any value above 0, stop at 10
# as well, where a best at the upper bound widened them by the range's width or more each fine stage (reg 1e-6:10
# to 5e4, 1e12, 8e26): a 5-epoch run on digits (adam, lr 3e-3) ends at val_acc 0.24 at reg 1 and at 0.09 (chance)
# at reg 10, its L2 term 0.5 * reg * sum(W^2) swamping the data loss; with init normal it starts at a loss of 57
# at init_std 10 (ln 10 is 2.3), still ending at 0.89, and at 5705 at init_std 100, ending at 0.27. Downward, reg
# stops at 1e-8 (it went from 1e-6 to 2e-11 and on, and search auto chose reg=4.13e-12): the L2 term of a digits
# network of 435 hidden units (sum(W^2) about 900 as it is initialised) is 4.5e-6 there, 0.05 % of a loss of 0.01.
# init_std stops at 1e-6 downward (1e-5:1 went to 3e-9 in one stage): on digits (init normal, 10 epochs) Adam at lr
# 1e-3 ends at val_acc 0.89-0.91 from 1e-6 to 1e-12 alike, and sgd at lr 0.1, or Adam with 3 hidden layers, learns
# nothing (0.07) from 1e-4 down already. relu_bias stops at 1 upward (the lecture's 0.01 is 1 % of it): Adam at lr
# 1e-3 on digits ends at 0.91-0.95 from 0 to 1, at 0.81-0.89 at 5, 0.72-0.83 at 10, and explodes at 100; sgd at lr
# 0.05 explodes from 5 on.
SEARCHABLE: dict[str, Searchable] = {
    "lr": Searchable("train.lr", "float", log=True, limits=(1e-12, INF), widen_high=10.0),
    "reg": Searchable("train.reg", "float", log=True, limits=(0.0, INF), widen_low=1e-8, widen_high=10.0),
    "hidden": Searchable("arch.hidden", "int", log=True, limits=(1, 1_000_000)),
    "depth": Searchable("arch.depth", "int", limits=(1, MAX_DEPTH)),
    "dropout": Searchable("arch.dropout", "float", limits=(MIN_KEEP, 1.0)),
    "batch_size": Searchable("train.batch_size", "int", log=True, limits=(1, INF)),
    "lr_decay": Searchable("train.lr_decay", "float", limits=(0.01, 1.0)),
    "momentum": Searchable("train.momentum", "float", limits=(0.0, 0.999),
                           applies_with=("optimizer", MOMENTUM_OPTIMIZERS)),
    "init_std": Searchable("arch.init.std", "float", log=True, limits=(0.0, INF), widen_low=1e-6, widen_high=10.0,
                           applies_with=("init", tuple(DEFAULT_STD))),
    "relu_bias": Searchable("arch.relu_bias", "float", limits=(0.0, INF), widen_high=1.0,
                            applies_with=("activation", tuple(a for a, f in ACTIVATION_REGISTRY.items()
                                                              if f.relu_family))),
    "activation": Searchable("arch.activation", "categorical", choices=ACTIVATIONS),
    "init": Searchable("arch.init.name", "categorical", choices=tuple(sorted(INITIALISERS))),
    "optimizer": Searchable("train.optimizer", "categorical", choices=tuple(OPTIMIZERS)),
    "batchnorm": Searchable("arch.batchnorm", "categorical", choices=(True, False)),
    "loss": Searchable("arch.loss", "categorical", choices=tuple(LOSSES)),
    "class_weight": Searchable("train.class_weight", "categorical", choices=CLASS_WEIGHTS),
}

# run options every trial of a stage shares, and why
FIXED_PER_STAGE = {
    "preprocess": "a stage prepares its data once, so its trials share one --preprocess; start a campaign for "
                  "each (--preprocess NAME --campaign NAME)",
}


def searchable(name: str) -> tuple[str, Searchable]:
    """(canonical name, its entry) for NAME with ``-`` or ``_``; SearchError listing the names otherwise."""
    key = name.strip().replace("-", "_")
    if key in FIXED_PER_STAGE:
        raise SearchError(f"{key} cannot be searched: {FIXED_PER_STAGE[key]}")
    if key not in SEARCHABLE:
        raise SearchError(f"{name!r} is not a searchable option; searchable: {', '.join(SEARCHABLE)}")
    return key, SEARCHABLE[key]


# --------------------------------------------------------------------------- numeric ranges
@dataclass(frozen=True)
class FloatRange:
    """A closed interval [low, high] searched on a log scale (the default) or a linear one."""

    low: float
    high: float
    log: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise SearchError(f"range {self.low:g}:{self.high:g} must have finite bounds")
        if self.low > self.high or (self.low == self.high and not self._point_allowed()):
            raise SearchError(f"range {self.low:g}:{self.high:g} needs low < high")
        if self.log and self.low <= 0:
            raise SearchError(f"range {self.low:g}:{self.high:g} is on a log scale, so both bounds must be > 0")

    def _point_allowed(self) -> bool:
        return False

    # ---- coordinates in which the range is uniform
    def to_unit(self, value: float) -> float:
        """The coordinate in which sampling is uniform (log10 for log ranges)."""
        return math.log10(value) if self.log else float(value)

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

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def grid(self, k: int) -> list[Any]:
        """``k`` evenly spaced values in the range's coordinate, bounds included."""
        lo, hi = self.to_unit(self.low), self.to_unit(self.high)
        units = [(lo + hi) / 2] if k == 1 else list(np.linspace(lo, hi, k))
        # within the bounds whatever the rounding: exp(log(50)) is 49.99999999999999
        return [min(max(float(self.from_unit(u)), self.low), self.high) for u in units]

    def near_bound(self, value: float, edge: float) -> str | None:
        """``"low"`` or ``"high"`` when value lies within ``edge`` x width of that bound, else None."""
        u = self.to_unit(value)
        if u - self.to_unit(self.low) <= edge * self.width:
            return "low"
        if self.to_unit(self.high) - u <= edge * self.width:
            return "high"
        return None

    def _make(self, low: float, high: float) -> FloatRange:
        return FloatRange(low, high, self.log)

    def refine(self, name: str, ranked: Sequence[tuple[Any, float]], top: int, edge: float,
               limits: tuple[float, float], flat: str | None = None,
               limit_name: str | tuple[str, str] = "the option's limit") -> tuple[FloatRange, str]:
        """Span the top trials (+10 % of the width each side); widen past a bound the best sits near, up to ``limits``
        (``limit_name`` says what they are: one name, or the lower one's and the upper one's), unless ``flat`` says
        why the range has no measurable effect (``insensitive``'s evidence)."""
        values = [v for v, _ in ranked[:top]]
        best = values[0]
        us = [self.to_unit(v) for v in values]
        lo_old, hi_old = self.to_unit(self.low), self.to_unit(self.high)
        pad = 0.1 * self.width
        lo, hi = max(lo_old, min(us) - pad), min(hi_old, max(us) + pad)
        side = self.near_bound(best, edge)
        shift = max(0.25 * self.width, hi - lo)
        limit_note = ""
        if side is not None:
            limit_name = limit_name if isinstance(limit_name, str) else limit_name[side == "high"]
        if side is not None and flat is None:
            limit = limits[1] if side == "high" else limits[0]
            if side == "high":
                hi = hi_old + shift
                if self.from_unit(hi) > limit:
                    hi, limit_note = self.to_unit(limit), f"; stopped at {limit_name} {limit:g}"
            else:
                lo = lo_old - shift
                if self.from_unit(lo) < limit:
                    if self.log and limit <= 0:
                        pass  # a log range never reaches a limit of 0
                    else:
                        lo, limit_note = self.to_unit(limit), f"; stopped at {limit_name} {limit:g}"
        new = self._make(*self._bounds(self.from_unit(lo), self.from_unit(hi), values))
        pct = round(edge * 100)
        if side is not None:
            bound, old_bound = ("upper", self.high) if side == "high" else ("lower", self.low)
            moved = new.high > self.high if side == "high" else new.low < self.low
            how = (f"not widened: {flat}" if flat is not None
                   else f"widened {'upward' if side == 'high' else 'downward'}{limit_note}" if moved
                   else f"not widened: that bound is {limit_name}")
            # the distance in the range's own scale: "1.78e-06 is within 10 % of the lower bound 1e-06" read as a
            # value 10 % above 1e-06, where it was 0.25 of the range's 8 decades from it; and that "0.25 of" as a
            # share, which "(within 10 %)" then contradicted: the distance, then its share of the width
            distance = abs(self.to_unit(best) - self.to_unit(old_bound))
            unit = "decades" if self.log else "units"
            return new, (f"{name}: best {best:.3g} is {distance:.2g} {unit} from the {bound} bound {old_bound:.3g}, "
                         f"{100 * distance / self.width:.2g} % of the range's {self.width:.3g} (within {pct} %); "
                         f"new range {new.text(name)} ({how})")
        around = f"the top {len(values)} trials" if len(values) > 1 else "the best trial"  # not "the top 1 trials"
        if new.width >= self.width:  # the top trials spread over the whole range (or an int range's rounding does)
            spread = (f"{around} span it" if len(values) > 1  # one trial spans nothing: its range rounded out does
                      else f"{around}'s range, rounded out to whole numbers, covers it")
            return new, f"{name}: best {best:.3g} is inside {self.text(name)}; kept: {spread}"
        unit = "decades" if self.log else "units"
        # as many digits as show the widths differ: "narrowed ... (3 of 3 decades)" read as kept (2.999 of 3)
        digits = next((d for d in range(2, 7) if f"{new.width:.{d}g}" != f"{self.width:.{d}g}"), 6)
        return new, (f"{name}: best {best:.3g} is inside {self.text(name)}; narrowed around {around} "
                     f"to {new.text(name)} ({new.width:.{digits}g} of {self.width:.{digits}g} {unit})")

    def _bounds(self, low: float, high: float, values: Sequence[Any]) -> tuple[Any, Any]:
        return low, high

    def moved(self, new: Dimension, tolerance: float) -> bool:
        """Whether a bound moved by more than ``tolerance`` x this range's width (in its coordinate)."""
        if not isinstance(new, FloatRange):
            return True
        limit = tolerance * self.width
        return (abs(self.to_unit(new.low) - self.to_unit(self.low)) > limit
                or abs(self.to_unit(new.high) - self.to_unit(self.high)) > limit)

    def as_attr(self) -> dict[str, Any]:
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}

    def __str__(self) -> str:
        return f"{self.low:.3g}:{self.high:.3g}" + ("" if self.log else ":linear")

    def text(self, name: str) -> str:
        """The range as ``--space NAME=`` reads it back: ``:log`` said where NAME's own scale is linear (once printed
        ``dropout=0.5:1``, which --space reads as a linear range, and a stage refused as another space)."""
        plain = str(self)
        if not self.log or name not in SEARCHABLE or SEARCHABLE[name].log:
            return plain
        return plain[:-len(":int")] + ":log:int" if isinstance(self, IntRange) else plain + ":log"


@dataclass(frozen=True)
class IntRange(FloatRange):
    """An integer interval [low, high] on a log or linear scale; may be one value when the top trials agree."""

    low: int
    high: int
    log: bool = True

    def __post_init__(self) -> None:
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not math.isfinite(bound) or int(bound) != bound:
                raise SearchError(f"integer range {self.low}:{self.high} needs whole-number bounds")
        object.__setattr__(self, "low", int(self.low))
        object.__setattr__(self, "high", int(self.high))
        super().__post_init__()

    def _point_allowed(self) -> bool:
        return True

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def grid(self, k: int) -> list[Any]:
        """Up to ``k`` distinct integers evenly spaced in the range's coordinate."""
        return sorted({int(round(v)) for v in super().grid(k)})

    def _make(self, low: float, high: float) -> IntRange:
        return IntRange(low, high, self.log)

    def _bounds(self, low: float, high: float, values: Sequence[Any]) -> tuple[int, int]:
        """Whole bounds around [low, high]; one value only when the top trials all agree on it."""
        lo, hi = math.floor(low + 1e-9), math.ceil(high - 1e-9)
        lo = max(lo, 1) if self.log else lo
        hi = max(hi, lo + (1 if len(set(values)) > 1 else 0))
        return lo, hi

    def as_attr(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}

    def __str__(self) -> str:
        return f"{self.low}:{self.high}" + ("" if self.log else ":linear") + ":int"


# --------------------------------------------------------------------------- categorical
MAX_NAMED_CATEGORIES = 10  # the dropped categories a refinement's note names, of each kind; the others are counted


@dataclass(frozen=True)
class Choice:
    """A categorical dimension over ``choices`` (strings, numbers or booleans)."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise SearchError("a choice needs at least one value")
        if len(set(self.choices)) != len(self.choices):
            raise SearchError(f"choice {self} repeats a value")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)

    def grid(self, k: int) -> list[Any]:
        """Every category (a grid cannot sample a category partly)."""
        return list(self.choices)

    def refine(self, name: str, ranked: Sequence[tuple[Any, float]], top: int, edge: float,
               limits: tuple[float, float],
               limit_name: str | tuple[str, str] = "the option's limit") -> tuple[Choice, str]:
        """Keep the categories seen among the top trials (the best's always); name each dropped one (``limits`` and
        ``limit_name`` are a range's: categories are never widened)."""
        leaders = [v for v, _ in ranked[:top]]
        kept = tuple(c for c in self.choices if c in leaders)
        counts = ", ".join(f"{leaders.count(c)} with {value_text(c)}" for c in kept)  # "1 3" read badly for depth
        if kept == self.choices:
            return self, (f"{name}: kept all of {', '.join(map(value_text, kept))}: each appears among the top "
                          f"{len(leaders)} trials ({counts})")
        dropped, unseen = [], []
        for c in self.choices:
            if c in kept:
                continue
            scores = [value for v, value in ranked if v == c]
            if scores:
                trials = f"{len(scores)} trial{'s' if len(scores) != 1 else ''}"
                dropped.append(f"{value_text(c)} ({trials}, best {max(scores):.4g}, "
                               f"mean {sum(scores) / len(scores):.4g})")
            else:
                unseen.append(value_text(c))
        if len(dropped) > MAX_NAMED_CATEGORIES:
            dropped[MAX_NAMED_CATEGORIES:] = [f"and {len(dropped) - MAX_NAMED_CATEGORIES} more that ranked trials had"]
        if unseen:  # named together: one note a category made 240 KB of notes for a choice of 5,000 values
            # of the trials ranked: 4 promoted runs without tanh said "(0 trials)" of a category the stage tried
            listed = named_first(unseen)
            one = len(unseen) == 1
            dropped.append(f"{listed} (none of the {len(ranked)} trials ranked had {'it' if one else 'them'})"
                           if len(ranked) > 1 else
                           f"{listed} (the one trial ranked {'did not have it' if one else 'had none of them'})")
        # --top 1: not "among the top 1: 1 with relu", as a range says "the best trial", not "the top 1 trials"
        where = f"among the top {len(leaders)}: {counts}" if len(leaders) > 1 else "the best trial's"
        return Choice(kept), (f"{name}: kept {', '.join(map(value_text, kept))} ({where}); dropped "
                              f"{'; '.join(dropped)}")

    def moved(self, new: Dimension, tolerance: float) -> bool:
        return new != self

    def as_attr(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}

    def __str__(self) -> str:
        return ",".join(map(value_text, self.choices))

    def text(self, name: str) -> str:
        return str(self)


Dimension = Union[FloatRange, IntRange, Choice]
Space = Mapping[str, Dimension]
# what a stage searches where no --space, --space-file, --lr or --reg is given (search auto adds the hidden width)
DEFAULT_SPACE: dict[str, Dimension] = {"lr": FloatRange(1e-6, 1.0), "reg": FloatRange(1e-6, 10.0)}


# --------------------------------------------------------------------------- parsing and checking
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_dimension(name: str, spec: str | list[str]) -> Dimension:
    """A dimension from ``LOW:HIGH[:log|:linear][:int]`` or ``A,B,C``, with NAME's default scale and type; a list
    (of a --space-file) is the texts of the choices, a choice even of one value."""
    key, entry = searchable(name)
    if isinstance(spec, list):
        return _choice(key, entry, [part.strip() for part in spec])
    text = spec.strip()
    if entry.kind == "categorical" or ("," in text and ":" not in text):
        parts = [part.strip() for part in text.split(",")]
        if any(parts) and not all(parts):  # relu, or relu,,tanh: a value left out, not read as relu or relu,tanh
            raise SearchError(f"choice {text} has an empty value: give each value between commas")
        return _choice(key, entry, [part for part in parts if part])
    parts = [p.strip() for p in text.split(":")]
    if len(parts) < 2 and is_number_text(text):  # A of A,B,C: the one value every trial takes, as [A] in a space file
        return Choice((_parse_choice(key, entry, text),))
    if len(parts) < 2:
        raise SearchError(f"{spec!r} must look like LOW:HIGH[:log|:linear][:int] or A,B,C")
    try:
        low, high = _number(parts[0]), _number(parts[1])
    except ValueError:
        raise SearchError(f"{spec!r} has a bound that is not a number{_separators(parts[:2])}") from None
    log, is_int = entry.log, entry.kind == "int"
    if {"log", "linear"} <= set(parts[2:]):
        raise SearchError(f"{spec!r} names both log and linear: give one scale")
    twice = next((flag for flag in parts[2:] if parts[2:].count(flag) > 1), None)
    if twice is not None:  # a typo, as 16:32:int:int: said, not read as something else
        raise SearchError(f"{spec!r} names {twice!r} twice: give each flag once")
    for flag in parts[2:]:
        if flag == "log":
            log = True
        elif flag == "linear":
            log = False
        elif flag == "int":
            is_int = True
        else:
            raise SearchError(f"{spec!r}: unknown flag {flag!r} (log, linear or int)")
    if is_int:
        whole = [_whole(part) if math.isfinite(bound) else None for part, bound in zip(parts, (low, high))]
        if None in whole:
            why = f": {key} is a whole number" if entry.kind == "int" else " for :int"  # :int not typed for hidden
            raise SearchError(f"range {spec} needs whole-number bounds{why}")
        if whole[0] >= whole[1]:
            raise SearchError(f"range {spec} needs low < high")
        return IntRange(whole[0], whole[1], log)
    return FloatRange(low, high, log)


def _whole(text: str) -> int | None:
    """The whole number a number's text is exactly, None where it is not one: 1e23 is 10**23, where int(1e23) is
    99999999999999991611392 (a float's nearest), and 99999999999999999999999 is itself, not 1e23."""
    value = Decimal(text)
    return int(value) if value.is_finite() and value == value.to_integral_value() else None


def _number(text: str) -> float:
    """``float(text)``, but ValueError for Python's digit separators (``1_0`` is 10 to float), as a CSV cell, and
    for digits of other scripts (the full-width １６ is 16 to float), as the number options."""
    if not is_number_text(text) or not text.isascii():
        raise ValueError(f"{text!r} is not a number")
    return float(text)


def _separators(texts: Sequence[str]) -> str:
    """What an error on ``texts`` adds when one of them has a digit separator or another script's digits."""
    if any("_" in t for t in texts):
        return " (a number is written without '_')"
    return " (a number is written in the digits 0-9)" if not all(t.isascii() for t in texts) else ""


def _choice(key: str, entry: Searchable, texts: list[str]) -> Choice:
    """The choice of ``texts``; a value given twice is named as written (true and 1 are both true)."""
    values = [_parse_choice(key, entry, text) for text in texts]
    for j, value in enumerate(values):
        i = values.index(value)
        if i < j:
            same = texts[i] if texts[i] == texts[j] else (
                f"a value: {texts[i]} and {texts[j]} are both {value_text(value)}")
            raise SearchError(f"choice {','.join(texts)} repeats {same}")
    return Choice(tuple(values))


def _parse_choice(key: str, entry: Searchable, text: str) -> Any:
    if entry.choices and isinstance(entry.choices[0], bool):
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise SearchError(f"{text!r} is not true or false")
    if entry.kind == "categorical":
        return text.lower()
    try:
        number = _number(text)
    except ValueError:
        raise SearchError(f"{text!r} is not a number{_separators([text])}") from None
    if not math.isfinite(number):
        raise SearchError(f"{text!r} is not a finite number")
    whole = _whole(text) if entry.kind == "int" else None
    return number if whole is None else whole


def check_space(space: Space, base: RunConfig, where: Mapping[str, str] | None = None) -> None:
    """Every dimension's bounds or choices are values its option accepts, applied to ``base``, and each has an
    effect in some trial (momentum needs optimizer momentum or nesterov, fixed or searched); else SearchError naming
    the dimension as ``where`` does (``--space-file s.toml: activation``; by default ``--space activation``)."""
    for name, dim in space.items():
        said = (where or {}).get(name, f"--space {name}")
        entry = SEARCHABLE[name]
        values = list(dim.choices) if isinstance(dim, Choice) else [dim.low, dim.high]
        for value in values:
            if entry.kind != "categorical" and not entry.limits[0] <= value <= entry.limits[1]:
                number, low, high = (value_text(v) if isinstance(v, int) else f"{v:g}" for v in (value, *entry.limits))
                option, limits = f"--{name.replace('_', '-')}", f"({low} to {high})"  # 10**23 as 1e23, not 1e+23
                try:  # the option may take it where a search may not: an open bound is searched a little inside
                    base.with_params({entry.path: value})
                except ConfigError as e:  # the option's own reason: the search's limits are not what it accepts
                    raise SearchError(f"{said}: {number} is not accepted: {_named(e, entry, name)}") from None
                raise SearchError(f"{said}: {number} is outside the range {name} is searched in {limits}, "
                                  f"though {option} accepts it: ranges are searched and widened only within these")
            try:
                base.with_params({entry.path: value})
            except ConfigError as e:
                raise SearchError(f"{said}: {value_text(value)} is not accepted: {_named(e, entry, name)}") from None
    for name in space:  # a dimension that can have no effect in any trial is refused, not sampled for nothing
        inert = _inert(name, space, base)
        if inert:
            raise SearchError(f"{(where or {}).get(name, f'--space {name}')} {inert} or search it too)")


def _named(error: ConfigError, entry: Searchable, name: str) -> str:
    """A run option's refusal in the words of --space: the option's name where it named its place in the run
    configuration (``depth needs an integer``, not ``arch.depth needs an integer``)."""
    return str(error).replace(entry.path, name)


def largest_network(space: Space, base: RunConfig) -> RunConfig:
    """``base`` with each searched width, depth and activation at its value of most weights (to check that the
    stage's largest network fits in memory before a trial tries it)."""
    values: dict[str, Any] = {}
    for name in ("hidden", "depth"):
        dim = space.get(name)
        if dim is not None:
            values[SEARCHABLE[name].path] = max(dim.choices) if isinstance(dim, Choice) else dim.high
    activation = space.get("activation")
    if isinstance(activation, Choice):
        values["arch.activation"] = max(activation.choices, key=lambda a: ACTIVATION_REGISTRY[a].pieces)
    return base.with_params(values)


def check_fixed(fixed: Iterable[str], space: Space, base: RunConfig) -> None:
    """An option given on the command line that has no effect in any trial (``--init-std`` with ``--init he``) is
    refused as a searched one is: SearchError."""
    for name in fixed:
        inert = _inert(name, space, base)
        if inert:
            raise SearchError(f"--{name.replace('_', '-')} {inert})")


def _inert(name: str, space: Space, base: RunConfig) -> str | None:
    """"has no effect with ... (set --PARENT" when option NAME acts in no trial of ``space`` over ``base``."""
    condition = applies_with(name)
    if condition is None:
        return None
    parent, values = condition
    given = list(space[parent].choices) if isinstance(space.get(parent), Choice) else [_option(base, parent)]
    if any(v in values for v in given):
        return None
    return (f"has no effect with {parent} {', '.join(map(value_text, given))}: it applies only with {parent} "
            f"{_either(values)} (set --{parent}")


def _either(values: Sequence[Any]) -> str:
    """``a, b or c``."""
    texts = [value_text(v) for v in values]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}"


def _option(base: RunConfig, name: str) -> Any:
    """The value ``base`` gives the searchable option NAME."""
    value: Any = base
    for part in SEARCHABLE[name].path.split("."):
        value = getattr(value, part)
    return value


def applies_with(name: str) -> tuple[str, tuple[Any, ...]] | None:
    """(the option NAME depends on, its values with which NAME has an effect), or None: it always has one (also a
    stored space's name the table no longer knows)."""
    return SEARCHABLE[name].applies_with if name in SEARCHABLE else None


def applies(name: str, params: Mapping[str, Any], base: RunConfig) -> bool:
    """Whether dimension NAME has an effect in a run of ``base`` with ``params`` (momentum not with adam)."""
    condition = applies_with(name)
    if condition is None:
        return True
    parent, values = condition
    return (params[parent] if parent in params else _option(base, parent)) in values


def has_params(params: Mapping[str, Any], space: Space, base: RunConfig) -> bool:
    """Whether ``params`` holds every dimension of ``space`` that has an effect with them (a trial cut short while
    its values were suggested does not)."""
    return all(name in params for name in space if applies(name, params, base))


def suggest_params(trial: optuna.Trial, space: Space, base: RunConfig) -> dict[str, Any]:
    """The trial's values, each option another depends on first; a dimension is suggested only where it has an
    effect, so a trial of adam has no momentum (Optuna's samplers handle such conditional parameters)."""
    parents = {condition[0] for condition in map(applies_with, space) if condition}
    params: dict[str, Any] = {}
    for name in sorted(space, key=lambda n: n not in parents):  # stable: the given order otherwise
        if applies(name, params, base):
            params[name] = space[name].suggest(trial, name)
    return params


def params_to_paths(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's params by name -> RunConfig paths (``hidden`` -> ``arch.hidden``)."""
    return {SEARCHABLE[name].path: value for name, value in params.items()}


def space_attr(space: Space) -> dict[str, dict[str, Any]]:
    return {name: dim.as_attr() for name, dim in space.items()}


def space_from_attr(attr: Mapping[str, Any]) -> dict[str, Dimension]:
    """The space from a study's ``space`` attribute (also the older ``[low, high, "log"|"linear"]`` form, linear
    without its third item)."""
    out: dict[str, Dimension] = {}
    for name, a in attr.items():  # each dimension checked first (studies.queries.check_stored_space)
        if isinstance(a, list):
            out[name] = FloatRange(float(a[0]), float(a[1]), a[2:] == ["log"])
        elif a["type"] == "categorical":
            out[name] = Choice(tuple(a["choices"]))
        elif a["type"] == "int":
            out[name] = IntRange(a["low"], a["high"], a["log"])
        else:
            out[name] = FloatRange(a["low"], a["high"], a["log"])
    return out


def named_first(texts: Sequence[str], separator: str = ", ") -> str:
    """``texts`` joined, the first ``MAX_NAMED_CATEGORIES`` named and the others counted (``a, b and 4990 more``)."""
    more = len(texts) - MAX_NAMED_CATEGORIES
    return separator.join(texts[:MAX_NAMED_CATEGORIES]) + (f" and {more} more" if more > 0 else "")


def spec_shown(text: str) -> str:
    """A dimension's text (``Dimension.text``) as a line shows it: a choice of its first values, the others counted
    (a choice of 5,000 values made a 24 KB line); a range as it is."""
    return text if ":" in text else named_first(text.split(","), ",")


def log_marked(space: Space) -> list[str]:
    """The dimensions whose text marks ``:log`` (a log range of an option whose own scale is linear): stored with a
    stage (its ``log_marked`` attribute), for ``search studies`` and ``search report`` to print its space as it does."""
    return [name for name, dim in space.items() if dim.text(name) != str(dim)]


def describe_space(space: Space) -> str:
    return " ".join(f"{name}={spec_shown(dim.text(name))}" for name, dim in space.items())


# --------------------------------------------------------------------------- refinement
def refine_space(
    space: Space,
    trials: Sequence[tuple[Mapping[str, Any], float]],
    top: int = 5,
    edge: float = 0.1,
    diagnoses: Sequence[Sequence[str]] | None = None,
    value_se: float | None = None,
    exploded: Sequence[Mapping[str, Any]] = (),
    flat: Mapping[str, str] | None = None,
    train_size: int | None = None,
) -> tuple[dict[str, Dimension], list[str]]:
    """New dimensions from finished trials ``(params, value)`` (higher is better) and one note per dimension.

    Ranges span the ``top`` best trials' values, padded by 10 % of the old width on each side and
    kept inside the old range, so they narrow and always contain the best value; when the best lies
    within ``edge`` x width of a bound, that bound moves outward by max(25 % of the old width, the
    new width), up to the option's own limits (lr, reg and init_std: up to 10, relu_bias: up to 1, their
    ``widen_high``, or their high bound when above; reg: down to 1e-8, init_std: down to 1e-6, their ``widen_low``,
    or their low bound when below).
    Categories keep those seen among the top trials.
    With ``value_se`` (the standard error of one trial's value), a range whose thirds score within
    2 standard errors of each other is "insensitive" and kept as it is: narrowing or widening it
    would follow noise. ``flat`` names the ranges other trials found insensitive so (the parent stage's, when
    ``trials`` are a handful of its configurations re-run), with the evidence: they narrow as ``trials`` say but
    are never widened past a bound, which would spend trials where the range has shown no effect; a diagnosis may
    still move them (keeping the diagnoses off them took clusters-12 of ``benchmarks/search_quality.py`` from 9 to
    6 seeds of 10 against TPE, +1.14 to +0.68 points). With ``diagnoses`` (each
    trial's labels; ``exploded``: the params of the runs stopped as lr_too_high, which have no value to rank),
    ``use_diagnoses`` moves bounds. With ``train_size`` (the training samples), batch_size is widened no further than
    it: a larger batch than the training set is refused.
    """
    if not trials:
        raise SearchError("no finished trials to refine the ranges from")
    if top < 1:
        raise SearchError(f"--top must be >= 1, got {top}")
    if not (math.isfinite(edge) and 0 < edge <= 0.5):
        raise SearchError(f"--edge must be in (0, 0.5], got {edge}")
    order = sorted(range(len(trials)), key=lambda i: trials[i][1], reverse=True)
    ranked = [trials[i] for i in order]
    new: dict[str, Dimension] = {}
    notes: list[str] = []
    flat_here = insensitive_dimensions(space, ranked, value_se) if value_se is not None else {}
    for name, dim in space.items():
        limits = SEARCHABLE[name].limits if name in SEARCHABLE else (-INF, INF)
        low_name = high_name = "the option's limit"
        if name == "batch_size" and train_size is not None and train_size < limits[1]:
            limits, high_name = (limits[0], train_size), "the training set's size"
        widen_low, widen_high = (SEARCHABLE[name].widen_low, SEARCHABLE[name].widen_high) if name in SEARCHABLE else (
            -INF, INF)
        if widen_high < limits[1] and not isinstance(dim, Choice):  # a range given above it is not cut down to it
            high_name = f"{name}'s widening limit" + ("" if dim.high <= widen_high else f" ({widen_high:g}) or above")
            limits = (limits[0], max(widen_high, dim.high))
        if widen_low > limits[0] and not isinstance(dim, Choice):  # nor one given below it raised to it
            low_name = f"{name}'s widening limit" + ("" if dim.low >= widen_low else f" ({widen_low:g}) or below")
            limits = (min(widen_low, dim.low), limits[1])
        limit_name = (low_name, high_name)
        values = [(p[name], v) for p, v in ranked if name in p]  # a conditional one: the trials it applied in
        if not values:
            new[name], note = dim, f"{name}: kept at {dim}: no finished trial used it"
            notes.append(note)
            continue
        if len(values) == 1 < len(ranked):  # a conditional one that a single trial used: no range to narrow to
            new[name], note = dim, f"{name}: kept at {dim}: 1 of {len(ranked)} trials used it"
            notes.append(note)
            continue
        if name in flat_here:
            new[name], note = dim, f"{name}: insensitive, range kept at {dim}: {flat_here[name]}"
        elif flat and name in flat:
            new[name], note = dim.refine(name, values, top, edge, limits, flat=flat[name], limit_name=limit_name)
        else:
            new[name], note = dim.refine(name, values, top, edge, limits, limit_name=limit_name)
        if len(values) < len(ranked):  # its best and top are those of the trials it applied in, not of all
            note = f"{name}: in the {len(values)} of {len(ranked)} trials that used it, {note[len(name) + 2:]}"
        notes.append(note)
    if diagnoses is not None:
        labelled = [(ranked[k][0], set(diagnoses[i])) for k, i in enumerate(order)]
        # a dimension shown not to matter is not moved on a diagnosis either
        movable = {k: v for k, v in new.items() if k not in flat_here}
        notes += use_diagnoses({k: v for k, v in space.items() if k in movable}, movable, labelled, top, exploded)
        new.update(movable)
    for k, name in enumerate(space):  # kept as it was where the refined parent leaves it no trial to act in
        condition = applies_with(name)
        if condition and isinstance(new.get(condition[0]), Choice) and not set(new[condition[0]].choices) & set(
                condition[1]):
            new[name] = space[name]
            notes[k] = (f"{name}: kept at {space[name]}, unused from here: {condition[0]} keeps only "
                        f"{_either(new[condition[0]].choices)}, with which it has no effect")
    return new, notes


def insensitive_dimensions(space: Space, ranked: Sequence[tuple[Mapping[str, Any], float]],
                           value_se: float) -> dict[str, str]:
    """The numeric ranges of ``space`` that ``insensitive`` finds without effect in the trials ``(params, value)``,
    ranked best first, with its evidence."""
    found = {}
    for name, dim in space.items():
        evidence = insensitive(dim, [(p[name], v) for p, v in ranked if name in p], value_se)
        if evidence is not None:
            found[name] = evidence
    return found


def insensitive(dim: Dimension, values: Sequence[tuple[Any, float]], value_se: float) -> str | None:
    """The evidence, when the best and worst thirds of a numeric range do not differ beyond noise.

    ``values`` are ranked best first; only the better half is used, so that the runs another
    dimension ruined (an lr far too low, say) do not pass for this one's effect. Each third's mean has a standard error of max(its values' std, ``value_se``) / sqrt(count); the
    range is insensitive when every third holds two or more of them and the highest and lowest means differ by
    less than twice the standard error of that difference. The other dimensions' effects count as noise here, as they should:
    they are what a change of this dimension alone has to stand out from.
    """
    if isinstance(dim, Choice) or len(values) < 6 or dim.width == 0:
        return None
    thirds: list[list[float]] = [[], [], []]
    for v, value in values[:max(6, len(values) // 2)]:  # the better half: a dominant dimension's misses left out
        k = min(2, int(3 * (dim.to_unit(v) - dim.to_unit(dim.low)) / dim.width))
        thirds[k].append(value)
    if any(len(t) < 2 for t in thirds):  # a third without good runs (none, or all pruned) is no evidence of a flat range
        return None
    stats = [(float(np.mean(t)), max(float(np.std(t, ddof=1)), value_se) / math.sqrt(len(t))) for t in thirds]
    (lo, se_lo), (hi, se_hi) = min(stats), max(stats)
    limit = 2 * math.sqrt(se_lo**2 + se_hi**2)
    if hi - lo >= limit:
        return None
    shown = "/".join(f"{np.mean(t):.3f}" for t in thirds)
    return (f"mean value per third {shown} ({'/'.join(str(len(t)) for t in thirds)} trials) differ by at most "
            f"{hi - lo:.3f}, within 2 standard errors ({limit:.3f})")


def use_diagnoses(space: Space, new: dict[str, Dimension], ranked: Sequence[tuple[Mapping[str, Any], set[str]]],
                  top: int, exploded: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Move ``new``'s bounds (in place) the way the lecture reads the runs; one note per move, with its counts.

    - The lowest fifth of the old lr range all ``lr_too_low`` (3 or more trials): lr's lower bound rises
      to the highest of them below the best, so no budget goes where the loss does not move. Every run
      from the lowest exploded lr above the best upward exploded (2 or more): lr's upper bound falls
      to that lr, so widening never reaches back where runs explode.
    - Most (>= 60 %) of the top trials ``overfitting``: reg's lower bound rises half way to the best's
      reg in its scale (or, reg not searched, the hidden width's upper bound falls to the best's).
    - Most of the top trials ``underfitting``: the hidden width's upper bound rises to twice the
      best's (or, hidden not searched, reg's upper bound falls to the best's). A trial ``underfitting`` and
      ``still_learning`` too (its loss still falling steeply at the end) does not count: it needs more epochs, which
      the next stage gives, not more capacity.
    """
    notes: list[str] = []
    best = ranked[0][0]
    leaders = ranked[:top]
    majority = max(2, math.ceil(0.6 * len(leaders)))

    def count(label: str) -> int:
        return sum(label in labels and (label != "underfitting" or "still_learning" not in labels)
                   for _, labels in leaders)

    lr = space.get("lr")
    if isinstance(lr, FloatRange) and not isinstance(lr, IntRange):
        fifth = lr.to_unit(lr.low) + 0.2 * lr.width
        low_end = [(p["lr"], labels) for p, labels in ranked if lr.to_unit(p["lr"]) <= fifth]
        if len(low_end) >= 3 and all("lr_too_low" in labels for _, labels in low_end):
            below = [v for v, _ in low_end if v < best["lr"]]
            current = new["lr"]
            if below and max(below) > current.low:
                new["lr"] = FloatRange(max(below), current.high, current.log)
                notes.append(f"lr: diagnosis: all {len(low_end)} trials in the lowest fifth of {lr} are lr_too_low; "
                             f"lower bound raised to {max(below):.3g}; new range {new['lr']}")
        blown = sorted(p["lr"] for p in exploded if p["lr"] > best["lr"])
        if blown:
            beyond = [labels for p, labels in ranked if p["lr"] >= blown[0]] + [{"lr_too_high"}] * len(blown)
            current = new["lr"]
            if len(beyond) >= 2 and all("lr_too_high" in labels for labels in beyond) and blown[0] < current.high:
                new["lr"] = FloatRange(current.low, blown[0], current.log)
                notes.append(f"lr: diagnosis: all {len(beyond)} trials at lr >= {blown[0]:.3g} exploded "
                             f"(lr_too_high); upper bound lowered to {blown[0]:.3g}; new range {new['lr']}")
    for label, first, second in (("overfitting", ("reg", "up"), ("hidden", "down")),
                                 ("underfitting", ("hidden", "up"), ("reg", "down"))):
        n = count(label)
        learning = sum({label, "still_learning"} <= labels for _, labels in leaders) if label == "underfitting" else 0
        if n + learning < majority:
            continue
        for name, direction in (first, second):
            if name in new and not isinstance(new[name], Choice):
                if n < majority:
                    notes.append(f"{name}: diagnosis: {n + learning} of the top {len(leaders)} trials are {label}, "
                                 f"but {learning} of them still learning (the loss still falling steeply at the end): "
                                 f"more epochs, not more capacity; not moved")
                    break
                note = _push(new, name, best[name], direction)
                if note:
                    notes.append(f"{name}: diagnosis: {n} of the top {len(leaders)} trials are {label}; {note}")
                break
    return notes


def _push(new: dict[str, Dimension], name: str, best: Any, direction: str) -> str:
    """Move one bound of ``new[name]`` past the best value in ``direction``; a note, or "" when nothing moved."""
    dim = new[name]
    limits = SEARCHABLE[name].limits
    if name == "hidden" and direction == "up":
        high = min(max(dim.high, 2 * int(best)), int(limits[1]))
        if high <= dim.high:
            return ""
        new[name] = dim._make(dim.low, high)
        return f"upper bound raised to {high} (twice the best's {best}) for more capacity; new range {new[name]}"
    if direction == "up":  # more regularisation: the lower bound half way (in its scale) to the best's value
        if best <= dim.low or best >= dim.high:
            return ""
        low = dim.from_unit((dim.to_unit(dim.low) + dim.to_unit(best)) / 2)
        new[name] = dim._make(*dim._bounds(low, dim.high, [best]))
        return (f"lower bound raised half way to the best's {best:.3g} for more regularisation; "
                f"new range {new[name]}")
    if best <= dim.low or best >= dim.high:  # less regularisation or capacity: nothing above the best's value
        return ""
    new[name] = dim._make(dim.low, best)
    return f"upper bound lowered to the best's {value_text(best)}; new range {new[name]}"


def space_moved(old: Space, new: Space, tolerance: float = 0.1) -> bool:
    """True when any dimension changed: a bound moved by more than ``tolerance`` x width, or a category went."""
    return any(dim.moved(new[name], tolerance) for name, dim in old.items())
