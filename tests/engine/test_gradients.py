"""Analytic gradients of every layer and of whole networks agree with centred differences in float64."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from engine import layers as L
from engine.diagnostics import check_model_gradients, numerical_gradient, relative_error
from engine.init import InitSpec
from engine.model import ACTIVATIONS, FullyConnectedNet, ModelConfig

TOL = 1e-6


def _rng() -> np.random.Generator:
    return np.random.default_rng(1)


def test_affine_gradients():
    rng = _rng()
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    dout = rng.standard_normal((5, 3))
    out, cache = L.affine_forward(x, w, b)
    dx, dw, db = L.affine_backward(dout, cache)
    f = lambda: float(np.sum(L.affine_forward(x, w, b)[0] * dout))
    assert relative_error(numerical_gradient(f, x), dx) < TOL
    assert relative_error(numerical_gradient(f, w), dw) < TOL
    assert relative_error(numerical_gradient(f, b), db) < TOL
    assert L.affine_backward(dout, cache, need_dx=False)[0] is None


@pytest.mark.parametrize(
    "name,forward,backward",
    [
        ("relu", L.relu_forward, L.relu_backward),
        ("sigmoid", L.sigmoid_forward, L.sigmoid_backward),
        ("tanh", L.tanh_forward, L.tanh_backward),
        ("leaky_relu", lambda x: L.leaky_relu_forward(x, 0.1), L.leaky_relu_backward),
        ("elu", lambda x: L.elu_forward(x, 1.0), L.elu_backward),
        ("maxout", L.maxout_forward, L.maxout_backward),
    ],
)
def test_elementwise_gradients(name, forward, backward):
    rng = _rng()
    x = rng.standard_normal((6, 8))
    x[np.abs(x) < 1e-3] = 0.5  # keep kinks away from the finite-difference step
    dout = rng.standard_normal(forward(x)[0].shape)
    dx = backward(dout, forward(x)[1])
    num = numerical_gradient(lambda: float(np.sum(forward(x)[0] * dout)), x)
    assert relative_error(num, dx) < TOL, name


def test_prelu_gradients():
    rng = _rng()
    x, alpha = rng.standard_normal((6, 5)), rng.uniform(0.05, 0.5, 5)
    dout = rng.standard_normal((6, 5))
    dx, dalpha = L.prelu_backward(dout, L.prelu_forward(x, alpha)[1])
    f = lambda: float(np.sum(L.prelu_forward(x, alpha)[0] * dout))
    assert relative_error(numerical_gradient(f, x), dx) < TOL
    assert relative_error(numerical_gradient(f, alpha), dalpha) < TOL


def test_batchnorm_gradients_and_modes():
    rng = _rng()
    x = rng.standard_normal((10, 4)) * 3 + 2
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    mean, var = np.zeros(4), np.ones(4)
    dout = rng.standard_normal((10, 4))
    out, cache, (new_mean, new_var) = L.batchnorm_forward(x, gamma, beta, mean, var, train=True)
    dx, dgamma, dbeta = L.batchnorm_backward(dout, cache)
    f = lambda: float(np.sum(L.batchnorm_forward(x, gamma, beta, mean, var, True)[0] * dout))
    assert relative_error(numerical_gradient(f, x), dx) < TOL
    assert relative_error(numerical_gradient(f, gamma), dgamma) < TOL
    assert relative_error(numerical_gradient(f, beta), dbeta) < TOL
    # train mode normalises with batch statistics; the caller's running stats are not modified
    xhat = (out - beta) / gamma
    assert np.allclose(xhat.mean(axis=0), 0, atol=1e-10) and np.allclose(xhat.std(axis=0), 1, atol=1e-3)
    assert np.array_equal(mean, np.zeros(4)) and np.allclose(new_mean, 0.1 * x.mean(axis=0))
    # eval mode uses the running averages it is given
    ev, _, stats = L.batchnorm_forward(x, gamma, beta, new_mean, new_var, train=False)
    assert np.allclose(ev, gamma * (x - new_mean) / np.sqrt(new_var + 1e-5) + beta)
    assert stats[0] is new_mean


def test_batchnorm_running_averages_weigh_the_old_by_momentum_and_take_the_biased_variance():
    rng = _rng()
    x = rng.standard_normal((8, 3)) * 2 + 1
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([1.0, 4.0, 0.25])
    _, _, (new_mean, new_var) = L.batchnorm_forward(x, np.ones(3), np.zeros(3), mean, var, train=True, momentum=0.8)
    np.testing.assert_allclose(new_mean, 0.8 * mean + 0.2 * x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(new_var, 0.8 * var + 0.2 * x.var(axis=0), rtol=1e-14)  # ddof 0, as CS231n


def test_dropout_is_inverted_and_off_in_eval():
    rng = np.random.default_rng(0)
    x = np.ones((2000, 50))
    out, mask = L.dropout_forward(x, 0.5, True, rng)
    assert abs(out.mean() - 1.0) < 0.02  # expectation preserved by the 1/p scaling
    assert abs(np.mean(out == 0) - 0.5) < 0.02
    assert np.array_equal(L.dropout_backward(x, mask), out)
    assert L.dropout_forward(x, 0.5, False, rng)[0] is x


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_loss_gradients(loss):
    rng = _rng()
    scores, y = rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
    value, dscores = L.LOSSES[loss](scores, y)
    num = numerical_gradient(lambda: L.LOSSES[loss](scores, y)[0], scores)
    assert relative_error(num, dscores) < TOL


def test_loss_values_by_hand():
    scores = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 0])
    # -log softmax: log(1 + e^-1 + e^-2) and log 3
    assert L.softmax_loss(scores, y)[0] == pytest.approx((math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(3)) / 2,
                                                         rel=1e-15)
    # hinge, margin 1, summed over the wrong classes: (0 + 0) for row 0 (3 beats 2 and 1 by >= 1), (1 + 1) for row 1
    assert L.svm_loss(scores, y)[0] == pytest.approx(1.0, rel=1e-15)
    assert L.svm_loss(scores, np.array([0, 0]))[0] == pytest.approx(((2 - 1 + 1) + (3 - 1 + 1) + 2) / 2, rel=1e-15)
    model = FullyConnectedNet(ModelConfig(hidden=(3,), activation="prelu", batchnorm=True, dtype="float64"), 2, 2,
                              np.random.default_rng(0))
    weights = sum(float((model.params[n] ** 2).sum()) for n in ("W1", "W2"))  # not gamma, beta, alpha nor b2
    assert model.weight_names == ["W1", "W2"] and model.reg_loss(0.3) == pytest.approx(0.15 * weights, rel=1e-15)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_network_gradients(activation, batchnorm, loss):
    rng = np.random.default_rng(3)
    config = ModelConfig(
        hidden=(7, 5), activation=activation, init=InitSpec("xavier_normal"),
        batchnorm=batchnorm, loss=loss, dtype="float64", output_scale=1.0, relu_bias=0.01,
    )
    model = FullyConnectedNet(config, 6, 4, rng)
    X, y = rng.standard_normal((8, 6)), rng.integers(0, 4, 8)
    errors = check_model_gradients(model, X, y, reg=0.1)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst}: {errors[worst]:.2e}"
    assert len(errors) == len(model.params)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_network_gradients_with_dropout(batchnorm):
    # the check draws the same masks for every finite difference; it raised AttributeError (no generator) before
    rng = np.random.default_rng(4)
    config = ModelConfig(hidden=(9, 6), init=InitSpec("xavier_normal"), batchnorm=batchnorm, dropout=0.6,
                         dtype="float64", output_scale=1.0, relu_bias=0.01)
    model = FullyConnectedNet(config, 5, 3, rng)
    X, y = rng.standard_normal((12, 5)), rng.integers(0, 3, 12)
    errors = check_model_gradients(model, X, y, reg=0.1)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst}: {errors[worst]:.2e}"
    # the masks matter: the same check without them (keep 1.0) gives other gradients
    _, with_masks = model.loss(X, y, 0.1, rng=np.random.default_rng(0))
    model.config = dataclasses.replace(config, dropout=1.0)
    _, without = model.loss(X, y, 0.1)
    assert relative_error(with_masks["W1"], without["W1"]) > 0.05


def test_sgd_weight_decay_is_the_l2_gradient_step():
    """SGD's fused weight decay gives the same update as adding reg * W to the gradient."""
    from engine.optim import SGD

    rng = np.random.default_rng(0)
    config = ModelConfig(hidden=(5,), dtype="float64")
    a = FullyConnectedNet(config, 6, 3, np.random.default_rng(1))
    b = FullyConnectedNet(config, 6, 3, np.random.default_rng(1))
    X, y = rng.standard_normal((10, 6)), rng.integers(0, 3, 10)
    loss_a, grads_a = a.loss(X, y, reg=0.3)
    loss_b, grads_b = b.loss(X, y, reg=0.3, reg_grad=False)
    assert loss_a == loss_b
    SGD().step(a.params, grads_a, lr=0.1)
    SGD(weight_decay=0.3, decayed=frozenset(b.weight_names)).step(b.params, grads_b, lr=0.1)
    for name in a.params:
        assert np.allclose(a.params[name], b.params[name], rtol=1e-12, atol=1e-14), name


def test_adam_weight_decay_is_the_l2_gradient_step_to_the_bit():
    """Adam adding the L2 gradient itself gives exactly the update of the model adding it, over several steps."""
    from engine.optim import Adam

    rng = np.random.default_rng(0)
    config = ModelConfig(hidden=(5,), dtype="float32")
    a = FullyConnectedNet(config, 6, 3, np.random.default_rng(1))
    b = FullyConnectedNet(config, 6, 3, np.random.default_rng(1))
    rule_a, rule_b = Adam(), Adam(weight_decay=0.3, decayed=frozenset(b.weight_names))
    for _ in range(3):
        X, y = rng.standard_normal((10, 6)).astype(np.float32), rng.integers(0, 3, 10)
        loss_a, grads_a = a.loss(X, y, reg=0.3)
        loss_b, grads_b = b.loss(X, y, reg=0.3, reg_grad=False)
        assert loss_a == loss_b
        rule_a.step(a.params, grads_a, lr=0.1)
        rule_b.step(b.params, grads_b, lr=0.1)
    for name in a.params:
        assert np.array_equal(a.params[name], b.params[name]), name
    assert not np.array_equal(a.params["W1"], FullyConnectedNet(config, 6, 3, np.random.default_rng(1)).params["W1"])


def test_an_init_std_beyond_the_dtypes_range_is_a_config_error_not_a_warning(recwarn):
    from engine.errors import ConfigError

    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match=r"init std 1e\+300 gives weights beyond float32.s range"):
        InitSpec("normal", 1e300).draw(4, 3, rng, np.float32)
    assert InitSpec("normal", 1e300).draw(4, 3, rng, np.float64).shape == (4, 3)  # float64 holds it
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_relu_bias_beyond_the_dtypes_range_is_a_config_error_not_a_warning(recwarn):
    # --relu-bias 1e39 printed NumPy's "overflow encountered in cast" and trained on inf biases to a NaN loss
    from engine.errors import ConfigError

    for bias in (1e39, -1e300, math.nan):
        with pytest.raises(ConfigError, match=r"relu bias (1e\+39|-1e\+300|nan) is beyond float32.s range"):
            ModelConfig(hidden=(4,), relu_bias=bias)
    assert ModelConfig(hidden=(4,), relu_bias=1e39, dtype="float64").relu_bias == 1e39  # float64 holds it
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_dropout_keep_probability_below_min_keep_is_a_config_error():
    # 1e-30 dropped every unit in training (read as a learning rate too low); 1e-300, 0 in float32, made a NaN loss
    from engine.errors import ConfigError

    for keep in (1e-300, 1e-30, 0.0099, 0.0, 1.5):
        with pytest.raises(ConfigError) as raised:
            ModelConfig(hidden=(4,), dropout=keep)
        assert str(raised.value) == f"dropout keep probability must be in [0.01, 1], got {keep:g}"
    for keep in (0.01, 0.5, 1.0):
        assert ModelConfig(hidden=(4,), dropout=keep).dropout == keep


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_class_weighted_loss_gradients_and_values(loss):
    # --class-weight balanced weights each sample's loss: sum(w_i * loss_i) / N, and its gradient with it
    rng = _rng()
    scores, y = rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
    weights = rng.uniform(0.2, 5.0, 7)
    value, dscores = L.LOSSES[loss](scores, y, weights)
    num = numerical_gradient(lambda: L.LOSSES[loss](scores, y, weights)[0], scores)
    error = relative_error(num, dscores)
    assert error < TOL, error
    each = [L.LOSSES[loss](scores[i:i + 1], y[i:i + 1])[0] for i in range(7)]
    assert value == pytest.approx(float(np.dot(weights, each)) / 7, rel=1e-12)
    ones = L.LOSSES[loss](scores, y, np.ones(7))
    assert ones[0] == pytest.approx(L.LOSSES[loss](scores, y)[0], rel=1e-15)
    assert np.allclose(ones[1], L.LOSSES[loss](scores, y)[1], rtol=1e-15, atol=0)


def test_balanced_class_weights_are_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    ours = L.balanced_class_weights(y, 3)
    assert np.allclose(ours, compute_class_weight("balanced", classes=np.arange(3), y=y), rtol=1e-15, atol=0)
    assert np.allclose(ours, [100 / 210, 100 / 60, 100 / 30], rtol=1e-15, atol=0)
    # a class the training split lacks: no sample carries it, and the others are weighted over those present
    assert np.allclose(L.balanced_class_weights(np.array([0, 0, 0, 2]), 3), [4 / 6, 0.0, 2.0], rtol=1e-15, atol=0)


def test_class_weighted_network_gradients():
    rng = _rng()
    model = FullyConnectedNet(ModelConfig(hidden=(6,), activation="tanh", dtype="float64"), 4, 3, rng)
    X, y = rng.standard_normal((9, 4)), np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    weights = L.balanced_class_weights(y, 3)
    _, grads = model.loss(X, y, reg=0.1, class_weights=weights)
    for name in ("W1", "b1", "W2", "b2"):
        num = numerical_gradient(lambda: model.loss(X, y, reg=0.1, class_weights=weights)[0], model.params[name])
        error = relative_error(num, grads[name])
        assert error < TOL, (name, error)
    assert not np.allclose(grads["W2"], model.loss(X, y, reg=0.1)[1]["W2"])  # the weights change the gradient
