"""The minibatch loop."""
from __future__ import annotations

import numpy as np
import pytest

from engine import kernels
from engine.model import FullyConnectedNet, ModelConfig
from engine.optim import SGD, Adam
from engine.trainer import TrainConfig, train


def _run(optimizer: str, fused: bool, monkeypatch) -> tuple[list[float], dict[str, np.ndarray], list[bool]]:
    """Four iterations of a 600-500-10 network (W1 of 300,000 weights) with or without the one-pass loops."""
    monkeypatch.setattr(kernels, "MIN_SIZE", 1 << 18 if fused else 1 << 62)
    rule = {"adam": Adam, "sgd": SGD}[optimizer]
    compiled_at_steps = []
    step = rule.step

    def recording_step(self, params, grads, lr):
        compiled_at_steps.append(kernels._compiled.get((optimizer, "float32")) is not None)
        step(self, params, grads, lr)

    monkeypatch.setattr(rule, "step", recording_step)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((80, 600)).astype(np.float32), rng.integers(0, 10, 80)
    model = FullyConnectedNet(ModelConfig(hidden=(500,)), 600, 10, np.random.default_rng(2))
    result = train(model, TrainConfig(epochs=1, batch_size=20, optimizer=optimizer, lr=1e-2, reg=1e-3),
                   X, y, X[:20], y[:20])
    return result.loss_history, model.params, compiled_at_steps


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_large_layers_loop_is_compiled_before_the_timed_steps_with_numpys_numbers(optimizer, monkeypatch):
    monkeypatch.setattr(kernels, "_compiled", {})
    losses, params, compiled_at_steps = _run(optimizer, True, monkeypatch)
    assert compiled_at_steps == [True] * 4  # compiled before the first step, outside the step time
    numpy_losses, numpy_params, _ = _run(optimizer, False, monkeypatch)
    assert losses == numpy_losses and len(set(losses)) == 4
    for name, value in params.items():
        assert np.array_equal(value.view(np.uint32), numpy_params[name].view(np.uint32)), name


@pytest.mark.parametrize("hidden, named", [
    ((10**6,) * 50, "network 64-(50 hidden layers of 1000000)-10: 49,000,074,000,000 weights would need"),
    (tuple(10**5 + i for i in range(12)),
     "network 64-100000-100001-100002-...(12 hidden layers)...-100010-100011-10: "),
    ((10**5, 10**5), "network 64-100000-100000-10: 10,007,400,000 weights would need"),
])
def test_a_network_too_large_for_memory_is_named_in_a_line_of_a_readable_length(hidden, named):
    # 50 layers of 1000000 were spelled out one by one: a line of over 400 characters
    from engine.errors import DataError
    from engine.model import ModelConfig, check_network_memory

    with pytest.raises(DataError) as refused:
        check_network_memory(ModelConfig(hidden=hidden), 64, 10)
    assert str(refused.value).startswith(named) and len(str(refused.value)) < 200


def test_balanced_accuracy_is_scikit_learns():
    from sklearn.metrics import balanced_accuracy_score

    from engine.model import balanced_accuracy

    rng = np.random.default_rng(0)
    y = rng.choice(4, size=200, p=[0.7, 0.2, 0.05, 0.05])
    predicted = rng.integers(0, 5, 200)  # class 4 is predicted, never a label: it counts in no recall
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = balanced_accuracy_score(y, predicted)
    assert balanced_accuracy(y, predicted) == pytest.approx(expected, rel=1e-15)
    assert balanced_accuracy(y, np.zeros(200, dtype=np.int64)) == 0.25  # the majority class alone: 1 / classes
    assert np.isnan(balanced_accuracy(y[:0], predicted[:0]))


def test_each_epoch_records_its_last_updates_size_against_the_weights_per_layer():
    """The lecture's update/weight ratio: plain SGD on one full batch an epoch moves W by lr * dW."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((40, 12)).astype(np.float32), rng.integers(0, 3, 40)
    config = ModelConfig(hidden=(8,), dtype="float64")
    model = FullyConnectedNet(config, 12, 3, np.random.default_rng(4))
    copy = FullyConnectedNet(config, 12, 3, np.random.default_rng(4))
    _, grads = copy.loss(X.astype(np.float64), y, 0.0, np.random.default_rng(0))
    result = train(model, TrainConfig(epochs=2, batch_size=40, optimizer="sgd", lr=0.05, reg=0.0), X, y, X, y)
    assert [sorted(r) for r in result.update_ratio_history] == [["W1", "W2"], ["W1", "W2"]]
    for name in ("W1", "W2"):
        expected = 0.05 * np.linalg.norm(grads[name]) / np.linalg.norm(copy.params[name])
        assert result.update_ratio_history[0][name] == pytest.approx(expected, rel=1e-6)
