"""The babysitting checklist on a small problem."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.data import DataSpec, load_dataset
from engine.diagnostics import GRADIENT_CHECK_TOLERANCE, check_model_gradients, sanity_checks
from engine.model import FullyConnectedNet, ModelConfig
from engine.trainer import TrainConfig


@pytest.mark.parametrize("dropout", [1.0, 0.5])
def test_the_checklist_runs_with_and_without_dropout(dropout):
    # with dropout the two initial-loss checks (train mode) had no generator for the masks: AttributeError
    ds = load_dataset(DataSpec("spiral", seed=0))
    checks = sanity_checks(ModelConfig(hidden=(20,), dropout=dropout), TrainConfig(epochs=1, batch_size=30, seed=0),
                           ds.X_train, ds.y_train, ds.X_val, ds.y_val, ds.num_classes)
    assert len(checks) == 6
    initial, with_reg = checks[0], checks[1]
    assert initial.passed and abs(initial.value - math.log(ds.num_classes)) < 0.05
    assert with_reg.passed and with_reg.value > initial.value


def test_the_checklist_ends_with_a_gradient_check_that_catches_a_wrong_gradient():
    # the lecture's checklist starts from a gradient check; search sanity had none
    ds = load_dataset(DataSpec("spiral", seed=0))
    checks = sanity_checks(ModelConfig(hidden=(20,)), TrainConfig(epochs=1, batch_size=30, seed=0, reg=0.01),
                           ds.X_train, ds.y_train, ds.X_val, ds.y_val, ds.num_classes)
    grad = checks[-1]
    assert grad.name.startswith("gradient check (worst: ") and grad.passed
    assert 0 < grad.value < GRADIENT_CHECK_TOLERANCE and grad.expected == "relative error < 1e-05"
    model = FullyConnectedNet(ModelConfig(hidden=(20,), dtype="float64"), 2, 3, np.random.default_rng(0))
    X, y = ds.X_train[:5].astype(np.float64), ds.y_train[:5]
    right = check_model_gradients(model, X, y, 0.01, rng=np.random.default_rng(0))
    assert sorted(right) == ["W1", "W2", "b1", "b2"] and max(right.values()) < GRADIENT_CHECK_TOLERANCE
    loss = model.loss

    def off_by_a_tenth(*args, **kwargs):  # a backward pass that forgot a factor somewhere in W2
        value, grads = loss(*args, **kwargs)
        return value, {**grads, "W2": grads["W2"] * 1.1}

    model.loss = off_by_a_tenth
    wrong = check_model_gradients(model, X, y, 0.01, rng=np.random.default_rng(0))
    assert wrong["W2"] == pytest.approx(0.1 / 2.1, rel=1e-4) and wrong["W1"] < GRADIENT_CHECK_TOLERANCE


def test_a_failed_initial_loss_check_says_the_inputs_scale_is_why_where_it_is_far_from_one():
    # pixels of 0..255, zero-centred, started 3.12 for ln 10 and the checklist said no more than FAIL
    ds = load_dataset(DataSpec("spiral", seed=0))
    config, train = ModelConfig(hidden=(20,)), TrainConfig(epochs=1, batch_size=30, seed=0)
    scaled = ds.X_train * 100
    initial = sanity_checks(config, train, scaled, ds.y_train, ds.X_val * 100, ds.y_val, ds.num_classes)[0]
    assert not initial.passed and initial.value > math.log(3) + 0.05
    std, low, high = np.std(scaled[:500].astype(np.float64)), scaled[:500].min(), scaled[:500].max()
    assert initial.hint.startswith("the initial class scores have std ")
    assert initial.hint.endswith(
        f", where chance needs them near 0: the inputs' std is {std:.3g} (values {low:.4g} to {high:.4g}), where the "
        f"initialisation expects about 1; scale them: --preprocess standardize, or, for images, their pixels divided "
        f"by 255 in the file")
    fine = sanity_checks(config, train, ds.X_train, ds.y_train, ds.X_val, ds.y_val, ds.num_classes)[0]
    assert fine.passed and fine.hint is None and fine.as_dict()["hint"] is None
