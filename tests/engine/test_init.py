"""Initialisers draw at the scale their names promise: statistics over a large layer."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.init import INITIALISERS, InitSpec

FAN_IN, FAN_OUT = 600, 400  # 240,000 weights: the sample std is within 0.2 % of the true one (one standard error)

EXPECTED_STD = {
    "normal": 0.01, "uniform": 0.01,  # the default init std
    "xavier": math.sqrt(1 / FAN_IN), "lecun": math.sqrt(1 / FAN_IN),
    "xavier_normal": math.sqrt(2 / (FAN_IN + FAN_OUT)), "xavier_uniform": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "glorot_normal": math.sqrt(2 / (FAN_IN + FAN_OUT)), "glorot_uniform": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "he": math.sqrt(2 / FAN_IN), "he_normal": math.sqrt(2 / FAN_IN), "he_uniform": math.sqrt(2 / FAN_IN),
    "kaiming_normal": math.sqrt(2 / FAN_IN), "kaiming_uniform": math.sqrt(2 / FAN_IN),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_STD))
def test_the_weights_have_zero_mean_and_the_promised_std(name):
    W = InitSpec(name).draw(FAN_IN, FAN_OUT, np.random.default_rng(0), np.float64)
    std = EXPECTED_STD[name]
    assert W.shape == (FAN_IN, FAN_OUT)
    assert abs(W.std() / std - 1) < 0.01
    assert abs(W.mean()) < 5 * std / math.sqrt(W.size)
    if "uniform" in name:  # U(-a, a) with a = sqrt(3) std
        assert np.abs(W).max() <= math.sqrt(3) * std and np.abs(W).max() > 0.99 * math.sqrt(3) * std


def test_every_initialiser_has_a_scale_check():
    assert set(INITIALISERS) == set(EXPECTED_STD) | {"zeros", "constant", "orthogonal", "sparse"}


def test_orthogonal_zeros_constant_and_sparse():
    rng = np.random.default_rng(0)
    tall = InitSpec("orthogonal", 0.5).draw(FAN_IN, FAN_OUT, rng, np.float64)
    np.testing.assert_allclose(tall.T @ tall, 0.25 * np.eye(FAN_OUT), atol=1e-12)  # orthogonal columns, gain 0.5
    wide = InitSpec("orthogonal").draw(FAN_OUT, FAN_IN, rng, np.float64)
    np.testing.assert_allclose(wide @ wide.T, np.eye(FAN_OUT), atol=1e-12)  # orthogonal rows, gain 1
    assert not InitSpec("zeros").draw(3, 2, rng, np.float64).any()
    assert np.array_equal(InitSpec("constant", 0.2).draw(3, 2, rng, np.float64), np.full((3, 2), 0.2))
    sparse = InitSpec("sparse", 0.1).draw(FAN_IN, FAN_OUT, rng, np.float64)
    assert ((sparse != 0).sum(axis=0) == 60).all()  # 10 % of the 600 inputs of every unit
    assert abs(sparse[sparse != 0].std() / 0.1 - 1) < 0.02
