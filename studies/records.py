"""A trial's bulky records (its run config, loss and accuracy curves, diagnosis numbers), kept as trial system
attributes so that Optuna's own tools (``optuna trials``, the dashboard) show a readable row of scalar user
attributes; databases written before keep them as user attributes, and are read the same way. Also how a
record's seconds and parameters are written (``seconds_text``, ``value_text``, ``params_text``), for the report and the
command line alike: here, not in the report, so that a stage does not load matplotlib to print them."""
from __future__ import annotations

from typing import Any

import numpy as np
from optuna.trial import FrozenTrial

RECORD_KEYS = ("config", "loss_curve", "train_acc_curve", "diagnosis_numbers")


def trial_record(trial: FrozenTrial, key: str, default: Any = None) -> Any:
    """Record ``key`` of ``trial`` (one of RECORD_KEYS): its system attribute, else its user attribute, else
    ``default``."""
    if key in trial.system_attrs:
        return trial.system_attrs[key]
    return trial.user_attrs.get(key, default)


def curve_points(curve: Any) -> list[float]:
    """A stored curve (``loss_curve``, ``train_acc_curve``) as floats, its None points (not finite when run) NaN;
    [] for anything but a list of numbers (written by other code into the study)."""
    if not isinstance(curve, list) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in curve):
        return []
    return [float("nan") if v is None else float(v) for v in curve]


def diagnosis_labels(trial: FrozenTrial) -> tuple[str, ...]:
    """The trial's diagnosis labels; () when it has none, or something else than a list of them (written by other
    code into the study)."""
    labels = trial.user_attrs.get("diagnosis")
    return tuple(str(label) for label in labels) if isinstance(labels, list) else ()


def seconds_text(x: float | None) -> str:
    """Seconds in the report and in the stage summaries of search coarse, fine and auto: two significant digits under
    a second (0.031, 0.42; 0.0 for none), one decimal (2.1, 12.3), whole with thousands separated from 1,000."""
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 1000 else f"{x:.1f}" if x >= 0.95 or x == 0 else f"{x:.2g}"


def value_text(value: Any) -> str:
    """A parameter value as people read it: ``true``, ``tanh``, ``128``, floats to 3 significant digits
    (``0.0123``); a whole number of more than 15 digits that ends in 3 zeros or more as written in short, exactly
    (``1e23``, ``-2.5e20``: never ``1e+23``, nor 24 digits), others in full (``99999999999999999999999``)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        digits = str(abs(int(value)))
        kept = digits.rstrip("0")
        if len(digits) <= 15 or len(digits) - len(kept) < 3:
            return str(int(value))
        return f"{'-' if value < 0 else ''}{kept[0]}{'.' + kept[1:] if len(kept) > 1 else ''}e{len(digits) - 1}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return str(value)


def params_text(params: dict[str, Any]) -> str:
    """A trial's parameters as people read them: ``lr=0.0123 hidden=128 activation=tanh`` ('' for none)."""
    return " ".join(f"{k}={value_text(v)}" for k, v in params.items())
