"""The babysitting checklist on a small problem."""
from __future__ import annotations

import math

import pytest

from engine.data import DataSpec, load_dataset
from engine.diagnostics import sanity_checks
from engine.model import ModelConfig
from engine.trainer import TrainConfig


@pytest.mark.parametrize("dropout", [1.0, 0.5])
def test_the_checklist_runs_with_and_without_dropout(dropout):
    # with dropout the two initial-loss checks (train mode) had no generator for the masks: AttributeError
    ds = load_dataset(DataSpec("spiral", seed=0))
    checks = sanity_checks(ModelConfig(hidden=(20,), dropout=dropout), TrainConfig(epochs=1, batch_size=30, seed=0),
                           ds.X_train, ds.y_train, ds.X_val, ds.y_val, ds.num_classes)
    assert len(checks) == 5
    initial, with_reg = checks[0], checks[1]
    assert initial.passed and abs(initial.value - math.log(ds.num_classes)) < 0.05
    assert with_reg.passed and with_reg.value > initial.value
