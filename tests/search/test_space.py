"""Ranges, log-uniform sampling and the pure refinement function."""
from __future__ import annotations

import math

import numpy as np
import pytest

from search.errors import SearchError
from search.space import ParamRange, parse_range, ranges_moved, refine_ranges


def test_log_uniform_sampling_stays_in_range_and_covers_it_in_log_space():
    r = ParamRange(1e-6, 1e-1)
    x = r.sample(np.random.default_rng(0), 20000)
    assert x.min() >= 1e-6 and x.max() <= 1e-1
    # each of the 5 decades gets ~1/5 of the samples (uniform in log10), within 1.5 points
    counts, _ = np.histogram(np.log10(x), bins=5, range=(-6, -1))
    assert np.all(np.abs(counts / x.size - 0.2) < 0.015), counts
    # a linear sampler would put ~90 % in the top decade; log sampling puts ~20 %
    assert abs(np.mean(x > 1e-2) - 0.2) < 0.015


def test_grid_is_log_spaced_with_bounds():
    assert np.allclose(ParamRange(1e-4, 1e-1).grid(4), [1e-4, 1e-3, 1e-2, 1e-1])


@pytest.mark.parametrize("text,fragment", [
    ("1e-2:1e-3", "low < high"), ("1:1", "low < high"), ("0:1", "> 0"), ("-1:1", "> 0"),
    ("nan:1", "finite"), ("1e-3:inf", "finite"), ("abc", "LOW:HIGH"), ("a:b", "not a number"),
])
def test_bad_ranges_are_refused_with_the_reason(text, fragment):
    with pytest.raises(SearchError, match=fragment):
        parse_range(text)


def _trials(best: dict[str, float], others: list[dict[str, float]]):
    return [(best, 0.99)] + [(p, 0.9 - 0.01 * i) for i, p in enumerate(others)]


SPACE = {"lr": ParamRange(1e-6, 1.0), "reg": ParamRange(1e-6, 10.0)}


def test_refine_narrows_around_the_top_trials_when_the_best_is_inside():
    trials = _trials({"lr": 1e-3, "reg": 1e-3},
                     [{"lr": 3e-3, "reg": 1e-4}, {"lr": 5e-4, "reg": 1e-2}, {"lr": 1e-1, "reg": 1.0}])
    new, notes = refine_ranges(SPACE, trials, top=3, edge=0.1)
    # lr: top-3 span 5e-4..3e-3, padded by 0.6 decades each side
    assert math.isclose(math.log10(new["lr"].low), math.log10(5e-4) - 0.6, abs_tol=1e-9)
    assert math.isclose(math.log10(new["lr"].high), math.log10(3e-3) + 0.6, abs_tol=1e-9)
    for name in SPACE:
        assert new[name].width < SPACE[name].width / 2  # narrowed by more than half
        assert new[name].low <= trials[0][0][name] <= new[name].high  # always contains the best
        assert "narrowed" in next(n for n in notes if n.startswith(name))


@pytest.mark.parametrize("name", ["lr", "reg"])
def test_refine_widens_upward_when_the_best_sits_at_the_upper_bound(name):
    best = {"lr": 1e-3, "reg": 1e-3, name: SPACE[name].high * 0.8}
    trials = _trials(best, [{"lr": 1e-3, "reg": 1e-3, name: SPACE[name].high * 0.3}])
    new, notes = refine_ranges(SPACE, trials, top=2, edge=0.1)
    assert new[name].high > SPACE[name].high  # past the old bound
    assert new[name].low <= best[name]
    note = next(n for n in notes if n.startswith(name))
    assert "upper bound" in note and "widened upward" in note


@pytest.mark.parametrize("name", ["lr", "reg"])
def test_refine_widens_downward_when_the_best_sits_at_the_lower_bound(name):
    best = {"lr": 1e-3, "reg": 1e-3, name: SPACE[name].low * 1.5}
    trials = _trials(best, [{"lr": 1e-3, "reg": 1e-3, name: SPACE[name].low * 4}])
    new, notes = refine_ranges(SPACE, trials, top=2, edge=0.1)
    assert new[name].low < SPACE[name].low
    assert new[name].high >= best[name]
    assert "widened downward" in next(n for n in notes if n.startswith(name))


def test_refine_needs_trials_and_reports_movement():
    with pytest.raises(SearchError, match="no finished trials"):
        refine_ranges(SPACE, [], top=5)
    assert not ranges_moved(SPACE, SPACE)
    assert ranges_moved(SPACE, {"lr": ParamRange(1e-3, 1.0), "reg": SPACE["reg"]})
