"""Update rules against their textbook formulas."""
from __future__ import annotations

import numpy as np

from engine.optim import Adam, Momentum, make_optimizer


def test_in_place_adam_is_the_textbook_update():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((50, 20))
    expected, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    rule = Adam()
    for t in range(1, 8):
        g = rng.standard_normal(w.shape)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected -= 1e-2 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-8)
        rule.step({"w": w}, {"w": g.copy()}, 1e-2)
    assert np.max(np.abs(w - expected)) < 1e-12


def test_momentum_takes_its_mu_from_the_config():
    rule = make_optimizer("nesterov", momentum=0.5)
    assert isinstance(rule, Momentum) and rule.mu == 0.5
    w = np.ones(3)
    momentum = make_optimizer("momentum", momentum=0.5)
    for _ in range(2):
        momentum.step({"w": w}, {"w": np.ones(3)}, 0.1)
    assert np.allclose(w, 1 - 0.1 - (0.5 * 0.1 + 0.1))  # v1 = -0.1, v2 = 0.5 v1 - 0.1
