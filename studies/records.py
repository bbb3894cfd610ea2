"""A trial's bulky records (its run config, loss and accuracy curves, diagnosis numbers), kept as trial system
attributes so that Optuna's own tools (``optuna trials``, the dashboard) show a readable row of scalar user
attributes; databases written before keep them as user attributes, and are read the same way."""
from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial

RECORD_KEYS = ("config", "loss_curve", "train_acc_curve", "diagnosis_numbers")


def trial_record(trial: FrozenTrial, key: str, default: Any = None) -> Any:
    """Record ``key`` of ``trial`` (one of RECORD_KEYS): its system attribute, else its user attribute, else
    ``default``."""
    if key in trial.system_attrs:
        return trial.system_attrs[key]
    return trial.user_attrs.get(key, default)


def diagnosis_labels(trial: FrozenTrial) -> tuple[str, ...]:
    """The trial's diagnosis labels; () when it has none, or something else than a list of them (written by other
    code into the study)."""
    labels = trial.user_attrs.get("diagnosis")
    return tuple(str(label) for label in labels) if isinstance(labels, list) else ()
