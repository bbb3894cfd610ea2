"""Ranges, log-uniform sampling and the pure refinement function."""
from __future__ import annotations

import math

import numpy as np
import pytest

from search.errors import SearchError
from search.space import FloatRange, parse_dimension, refine_space, space_moved


def test_log_uniform_sampling_stays_in_range_and_covers_it_in_log_space():
    r = FloatRange(1e-6, 1e-1)
    x = r.sample(np.random.default_rng(0), 20000)
    assert x.min() >= 1e-6 and x.max() <= 1e-1
    # each of the 5 decades gets ~1/5 of the samples (uniform in log10), within 1.5 points
    counts, _ = np.histogram(np.log10(x), bins=5, range=(-6, -1))
    assert np.all(np.abs(counts / x.size - 0.2) < 0.015), counts
    # a linear sampler would put ~90 % in the top decade; log sampling puts ~20 %
    assert abs(np.mean(x > 1e-2) - 0.2) < 0.015


def test_grid_is_log_spaced_with_bounds():
    assert np.allclose(FloatRange(1e-4, 1e-1).grid(4), [1e-4, 1e-3, 1e-2, 1e-1])
    # exp(log(50)) is 49.99999999999999: search grid --lr 50:100 stored lr below its range, and Optuna warned so
    for low, high, log in ((50.0, 100.0, True), (1e-6, 1.0, True), (0.1, 0.7, False)):
        points = FloatRange(low, high, log).grid(4)
        assert (points[0], points[-1]) == (low, high)
        assert all(low <= p <= high for p in points)


@pytest.mark.parametrize("text,fragment", [
    ("1e-2:1e-3", "low < high"), ("1:1", "low < high"), ("0:1", "> 0"), ("-1:1", "> 0"),
    ("nan:1", "finite"), ("1e-3:inf", "finite"), ("abc", "LOW:HIGH"), ("a:b", "not a number"),
])
def test_bad_ranges_are_refused_with_the_reason(text, fragment):
    with pytest.raises(SearchError, match=fragment):
        parse_dimension("lr", text)


@pytest.mark.parametrize("name,text,message", [
    ("hidden", "16.5:256", "range 16.5:256 needs whole-number bounds: hidden is a whole number"),  # once "for :int"
    ("depth", "1:2.5:linear", "range 1:2.5:linear needs whole-number bounds: depth is a whole number"),
    ("lr_decay", "0.5:2.5:int", "range 0.5:2.5:int needs whole-number bounds for :int"),
])
def test_fractional_bounds_of_a_whole_number_range_say_why_it_is_one(name, text, message):
    with pytest.raises(SearchError) as raised:
        parse_dimension(name, text)
    assert str(raised.value) == message


def _trials(best: dict[str, float], others: list[dict[str, float]]):
    return [(best, 0.99)] + [(p, 0.9 - 0.01 * i) for i, p in enumerate(others)]


SPACE = {"lr": FloatRange(1e-6, 1.0), "reg": FloatRange(1e-6, 10.0)}


def test_refine_narrows_around_the_top_trials_when_the_best_is_inside():
    trials = _trials({"lr": 1e-3, "reg": 1e-3},
                     [{"lr": 3e-3, "reg": 1e-4}, {"lr": 5e-4, "reg": 1e-2}, {"lr": 1e-1, "reg": 1.0}])
    new, notes = refine_space(SPACE, trials, top=3, edge=0.1)
    # lr: top-3 span 5e-4..3e-3, padded by 0.6 decades each side
    assert math.isclose(math.log10(new["lr"].low), math.log10(5e-4) - 0.6, abs_tol=1e-9)
    assert math.isclose(math.log10(new["lr"].high), math.log10(3e-3) + 0.6, abs_tol=1e-9)
    for name in SPACE:
        assert new[name].width < SPACE[name].width / 2  # narrowed by more than half
        assert new[name].low <= trials[0][0][name] <= new[name].high  # always contains the best
        assert "narrowed" in next(n for n in notes if n.startswith(name))


@pytest.mark.parametrize("name", ["lr", "reg"])
def test_refine_widens_upward_when_the_best_sits_at_the_upper_bound(name):
    space = {**SPACE, "reg": FloatRange(1e-6, 1.0)}  # below reg's widening limit, 10
    best = {"lr": 1e-3, "reg": 1e-3, name: space[name].high * 0.8}
    trials = _trials(best, [{"lr": 1e-3, "reg": 1e-3, name: space[name].high * 0.3}])
    new, notes = refine_space(space, trials, top=2, edge=0.1)
    assert new[name].high > space[name].high  # past the old bound
    assert new[name].low <= best[name]
    note = next(n for n in notes if n.startswith(name))
    assert "upper bound" in note and "widened upward" in note


@pytest.mark.parametrize("name", ["lr", "reg"])
def test_refine_widens_downward_when_the_best_sits_at_the_lower_bound(name):
    best = {"lr": 1e-3, "reg": 1e-3, name: SPACE[name].low * 1.5}
    trials = _trials(best, [{"lr": 1e-3, "reg": 1e-3, name: SPACE[name].low * 4}])
    new, notes = refine_space(SPACE, trials, top=2, edge=0.1)
    assert new[name].low < SPACE[name].low
    assert new[name].high >= best[name]
    assert "widened downward" in next(n for n in notes if n.startswith(name))


def test_refine_needs_trials_and_reports_movement():
    with pytest.raises(SearchError, match="no finished trials"):
        refine_space(SPACE, [], top=5)
    assert not space_moved(SPACE, SPACE)
    assert space_moved(SPACE, {"lr": FloatRange(1e-3, 1.0), "reg": SPACE["reg"]})


# --------------------------------------------------------------------------- every dimension type
from search.config import RunConfig  # noqa: E402
from search.space import Choice, IntRange, check_space, space_attr, space_from_attr  # noqa: E402


class FakeTrial:
    """Records what a dimension asks of an Optuna trial."""

    def __init__(self):
        self.calls = []

    def suggest_float(self, name, low, high, log=False):
        self.calls.append(("float", name, low, high, log))
        return low

    def suggest_int(self, name, low, high, log=False):
        self.calls.append(("int", name, low, high, log))
        return high

    def suggest_categorical(self, name, choices):
        self.calls.append(("categorical", name, tuple(choices)))
        return choices[-1]


def test_each_dimension_suggests_itself_with_its_type_and_scale():
    trial = FakeTrial()
    assert FloatRange(0.5, 1.0, log=False).suggest(trial, "dropout") == 0.5
    assert IntRange(16, 1024).suggest(trial, "hidden") == 1024
    assert Choice(("relu", "tanh")).suggest(trial, "activation") == "tanh"
    assert trial.calls == [("float", "dropout", 0.5, 1.0, False), ("int", "hidden", 16, 1024, True),
                           ("categorical", "activation", ("relu", "tanh"))]


def test_parsing_uses_each_names_default_scale_and_flags():
    assert parse_dimension("hidden", "16:1024:log:int") == IntRange(16, 1024, log=True)
    assert parse_dimension("hidden", "16:1024:int") == IntRange(16, 1024, log=True)  # hidden is log by default
    assert parse_dimension("depth", "1:4:int") == IntRange(1, 4, log=False)  # depth is linear by default
    assert parse_dimension("dropout", "0.5:1") == FloatRange(0.5, 1.0, log=False)
    assert parse_dimension("lr", "1e-4:1e-1") == FloatRange(1e-4, 0.1, log=True)
    assert parse_dimension("batch-size", "16:256:int") == IntRange(16, 256, log=True)  # '-' or '_'
    assert parse_dimension("activation", "relu, tanh,elu") == Choice(("relu", "tanh", "elu"))
    assert parse_dimension("batchnorm", "true,false") == Choice((True, False))
    assert parse_dimension("hidden", "16:1024:log") == IntRange(16, 1024)  # a width is whole whatever the flags
    with pytest.raises(SearchError, match="not a searchable option; searchable: lr, reg, hidden"):
        parse_dimension("colour", "1:2")


@pytest.mark.parametrize("name,spec,fragment", [
    ("dropout", "0.5:1.5:linear", "1.5 is not accepted: dropout keep probability must be in"),
    ("hidden", "0:10:linear:int", "0 is not accepted: hidden sizes must be >= 1"),
    ("activation", "relu,swish", "swish is not accepted: unknown activation"),
    ("momentum", "0.5:1:linear", "1 is not accepted: momentum must be in"),
])
def test_bounds_the_option_itself_refuses_name_the_dimension(name, spec, fragment):
    with pytest.raises(SearchError, match=f"--space {name}: .*{fragment}"):
        check_space({name: parse_dimension(name, spec)}, RunConfig())


@pytest.mark.parametrize("name,spec", [("depth", "1,2,3.5"), ("hidden", "32.5,64")])
def test_a_choice_the_option_refuses_is_said_in_the_options_name_not_its_place_in_the_run(name, spec):
    # once "--space depth: 3.5 is not accepted: arch.depth needs an integer, got 3.5"
    bad = spec.split(",")[0 if name == "hidden" else 2]
    with pytest.raises(SearchError) as refused:
        check_space({name: parse_dimension(name, spec)}, RunConfig())
    assert str(refused.value) == f"--space {name}: {bad} is not accepted: {name} needs an integer, got {float(bad)}"


@pytest.mark.parametrize("space,base,message", [
    ({"init_std": "1e-3:1"}, RunConfig(),
     "--space init_std has no effect with init he: it applies only with init normal, uniform, constant, sparse or "
     "orthogonal (set --init or search it too)"),
    ({"momentum": "0.5:0.99:linear"}, RunConfig(),
     "--space momentum has no effect with optimizer adam: it applies only with optimizer momentum or nesterov (set "
     "--optimizer or search it too)"),
    ({"momentum": "0.5:0.99:linear", "optimizer": "adam,sgd"}, RunConfig(),
     "--space momentum has no effect with optimizer adam, sgd: it applies only with optimizer momentum or nesterov "
     "(set --optimizer or search it too)"),
    ({"relu_bias": "0:0.1:linear"}, RunConfig().with_params({"arch.activation": "tanh"}),
     "--space relu_bias has no effect with activation tanh: it applies only with activation relu, leaky_relu, prelu, "
     "elu or maxout (set --activation or search it too)"),
    ({"relu_bias": "0:0.1:linear"}, RunConfig(), None),
    ({"momentum": "0.5:0.99:linear"}, RunConfig().with_params({"train.optimizer": "nesterov"}), None),
    ({"momentum": "0.5:0.99:linear", "optimizer": "adam,momentum"}, RunConfig(), None),
    ({"init_std": "1e-3:1", "init": "he,normal"}, RunConfig(), None),
])
def test_an_option_searched_beside_a_fixed_one_that_ignores_it_is_refused(space, base, message):
    dims = {name: parse_dimension(name, spec) for name, spec in space.items()}
    if message is None:
        check_space(dims, base)
    else:
        with pytest.raises(SearchError) as raised:
            check_space(dims, base)
        assert str(raised.value) == message


def test_grids_of_each_type():
    assert IntRange(1, 100, log=True).grid(3) == [1, 10, 100]
    assert IntRange(1, 3, log=False).grid(10) == [1, 2, 3]  # never more values than integers in the range
    assert np.allclose(FloatRange(0.5, 1.0, log=False).grid(3), [0.5, 0.75, 1.0])
    assert Choice(("relu", "tanh", "elu")).grid(1) == ["relu", "tanh", "elu"]  # every category whatever k


def test_a_range_narrowed_around_one_trial_says_the_best_trial():
    new, note = FloatRange(1e-4, 1.0).refine("lr", [(0.01, 0.9), (0.1, 0.8)], top=1, edge=0.1, limits=(0.0, math.inf))
    assert note == ("lr: best 0.01 is inside 0.0001:1; narrowed around the best trial to 0.00398:0.0251 (0.8 of 4 "
                    "decades)")


def test_a_range_narrowed_a_little_shows_widths_that_differ():
    # once "narrowed around the top 3 trials to 0.0001:0.0976 (3 of 3 decades)"
    ranked = [(0.00866, 0.9), (0.0489, 0.8), (0.0002, 0.7)]
    new, note = FloatRange(1e-4, 0.1).refine("lr", ranked, top=3, edge=0.1, limits=(1e-12, math.inf))
    assert note == ("lr: best 0.00866 is inside 0.0001:0.1; narrowed around the top 3 trials to 0.0001:0.0976 (2.99 "
                    "of 3 decades)")


def test_a_range_the_top_trials_span_is_kept_and_says_so():
    ranked = [(1e-3, 0.99), (1.1e-6, 0.98), (0.9, 0.97), (1e-4, 0.5)]
    new, note = FloatRange(1e-6, 1.0).refine("lr", ranked, top=3, edge=0.01, limits=(0.0, math.inf))
    assert new == FloatRange(1e-6, 1.0)
    assert note == "lr: best 0.001 is inside 1e-06:1; kept: the top 3 trials span it"


def test_int_refinement_rounds_outward_and_keeps_the_best():
    ranked = [(64, 0.99), (90, 0.98), (50, 0.97), (500, 0.5), (16, 0.4)]
    new, note = IntRange(16, 1024).refine("hidden", ranked, top=3, edge=0.1, limits=(1, 1_000_000))
    # top-3 span log10 50..90 padded by 0.1 x 1.806 decades each side: 32.99..136.4 -> 32..137
    assert new == IntRange(32, 137)
    assert "narrowed around the top 3" in note


def test_int_refinement_widens_past_a_bound_and_stops_at_the_options_limit():
    ranked = [(1, 0.99), (2, 0.9)]
    new, note = IntRange(1, 8, log=False).refine("depth", ranked, top=2, edge=0.1, limits=(1, 100))
    assert new.low == 1 and "not widened: that bound is the option's limit" in note
    dropout = [(0.99, 0.9), (0.7, 0.8)]
    new, note = FloatRange(0.5, 1.0, log=False).refine("dropout", dropout, top=2, edge=0.1, limits=(0.01, 1.0))
    assert new.high == 1.0 and "limit" in note


def test_batch_size_is_widened_no_further_than_the_training_set():
    trials = [({"batch_size": 98}, 0.9), ({"batch_size": 60}, 0.8)]
    new, notes = refine_space({"batch_size": IntRange(16, 100)}, trials, top=2, train_size=120)
    assert new["batch_size"] == IntRange(49, 120)
    assert notes == ["batch_size: best 98 is 0.0088 decades from the upper bound 100, 1.1 % of the range's 0.796 "
                     "(within 10 %); new range 49:120:int (widened upward; stopped at the training set's size 120)"]
    trials = [({"batch_size": 118}, 0.9), ({"batch_size": 60}, 0.8)]
    new, notes = refine_space({"batch_size": IntRange(16, 120)}, trials, top=2, train_size=120)
    assert new["batch_size"] == IntRange(49, 120)
    assert notes == ["batch_size: best 118 is 0.0073 decades from the upper bound 120, 0.83 % of the range's 0.875 "
                     "(within 10 %); new range 49:120:int (not widened: that bound is the training set's size)"]


def test_categorical_refinement_drops_a_category_that_never_reached_the_top():
    trials = [({"activation": "relu"}, 0.98), ({"activation": "elu"}, 0.97), ({"activation": "relu"}, 0.96),
              ({"activation": "tanh"}, 0.90), ({"activation": "tanh"}, 0.80)]
    space = {"activation": Choice(("relu", "tanh", "elu"))}
    new, notes = refine_space(space, trials, top=3, edge=0.1)
    assert new["activation"] == Choice(("relu", "elu"))
    assert notes == ["activation: kept relu, elu (among the top 3: 2 with relu, 1 with elu); "
                     "dropped tanh (2 trials, best 0.9, mean 0.85)"]
    kept, notes = refine_space(space, trials, top=5, edge=0.1)
    assert kept["activation"] == space["activation"] and "kept all of relu, tanh, elu" in notes[0]
    assert space_moved(space, new) and not space_moved(space, kept)
    unseen = refine_space({"activation": Choice(("relu", "tanh", "elu", "sigmoid"))}, trials, top=3, edge=0.1)[1]
    assert unseen == ["activation: kept relu, elu (among the top 3: 2 with relu, 1 with elu); dropped tanh (2 trials, "
                      "best 0.9, mean 0.85); sigmoid (none of the 5 trials ranked had it)"]  # once "(0 trials)"
    # numbers as categories: once "(among the top 5: 1 3, 2 2)"
    depths = [({"depth": d}, 0.9 - 0.01 * i) for i, d in enumerate((1, 2, 1, 2, 1, 3))]
    new, notes = refine_space({"depth": Choice((1, 2, 3))}, depths, top=5)
    assert notes == ["depth: kept 1, 2 (among the top 5: 3 with 1, 2 with 2); dropped 3 (1 trial, best 0.85, mean "
                     "0.85)"]
    # --top 1 once noted "(among the top 1: 1 with relu)", and one trial ranked "(none of the 1 trials ranked had it)"
    new, notes = refine_space(space, trials, top=1, edge=0.1)
    assert notes == ["activation: kept relu (the best trial's); dropped tanh (2 trials, best 0.9, mean 0.85); elu (1 "
                     "trial, best 0.97, mean 0.97)"]
    notes = refine_space(space, trials[:1], top=3, edge=0.1)[1]
    assert notes == ["activation: kept relu (the best trial's); dropped tanh, elu (the one trial ranked had none of "
                     "them)"]


def test_categorical_refinement_names_ten_dropped_categories_of_each_kind_and_counts_the_others():
    # one note a category: a choice of 5,000 values refined from one trial made 240 KB of notes
    choice = Choice(tuple(range(1, 5001)))
    new, notes = refine_space({"hidden": choice}, [({"hidden": 2222}, 0.9)], top=3, edge=0.1)
    assert new["hidden"] == Choice((2222,))
    assert notes == ["hidden: kept 2222 (the best trial's); dropped 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 4989 more (the "
                     "one trial ranked had none of them)"]
    trials = [({"hidden": h}, 0.5 + h / 100) for h in range(1, 31)]
    notes = refine_space({"hidden": Choice(tuple(range(1, 41)))}, trials, top=1, edge=0.1)[1]
    assert notes == ["hidden: kept 30 (the best trial's); dropped " + "; ".join(
        f"{h} (1 trial, best {0.5 + h / 100:.4g}, mean {0.5 + h / 100:.4g})" for h in range(1, 11)) + "; and 19 more "
        "that ranked trials had; 31, 32, 33, 34, 35, 36, 37, 38, 39, 40 (none of the 30 trials ranked had them)"]


def test_spaces_round_trip_through_the_study_attribute():
    space = {"lr": FloatRange(1e-4, 1.0), "hidden": IntRange(8, 256), "depth": IntRange(1, 3, log=False),
             "activation": Choice(("relu", "tanh")), "batchnorm": Choice((True, False))}
    assert space_from_attr(space_attr(space)) == space
    assert space_from_attr({"lr": [1e-6, 1.0, "log"]}) == {"lr": FloatRange(1e-6, 1.0)}  # the older form


def test_widening_stops_where_the_runs_above_the_best_exploded():
    trials = [({"lr": 0.7}, 0.95), ({"lr": 0.03}, 0.9), ({"lr": 0.001}, 0.85)]
    space = {"lr": FloatRange(1e-4, 1.0)}
    widened, _ = refine_space(space, trials, top=2, edge=0.1, diagnoses=[["healthy"]] * 3)
    assert widened["lr"].high == 10.0  # the lecture's rule alone widens to lr's widening limit
    capped, notes = refine_space(space, trials, top=2, edge=0.1, diagnoses=[["healthy"]] * 3,
                                 exploded=[{"lr": 0.8}, {"lr": 0.9}, {"lr": 0.95}])
    assert capped["lr"].high == 0.8 and capped["lr"].low == widened["lr"].low
    assert notes[-1] == ("lr: diagnosis: all 3 trials at lr >= 0.8 exploded (lr_too_high); upper bound lowered to "
                         "0.8; new range 0.0119:0.8")


def test_lr_is_widened_no_further_than_10_where_every_run_explodes():
    # a 10-trial coarse stage whose best sat near its upper bound 1 was widened to 8.51e+04: each
    # padded top trial's span added to the bound
    trials = [({"lr": 0.3}, 0.95), ({"lr": 1e-5}, 0.9), ({"lr": 0.001}, 0.85), ({"lr": 2e-6}, 0.5)]
    new, notes = refine_space({"lr": FloatRange(1e-6, 1.0)}, trials, top=3)
    assert new["lr"].high == 10.0 and math.isclose(new["lr"].low, 10**-5.6)
    assert notes == ["lr: best 0.3 is 0.52 decades from the upper bound 1, 8.7 % of the range's 6 (within 10 %); new "
                     "range 2.51e-06:10 (widened upward; stopped at lr's widening limit 10)"]
    # a range given above the limit keeps its bound: it is not widened further, nor cut down to 10
    new, notes = refine_space({"lr": FloatRange(0.01, 100.0)}, [({"lr": 90.0}, 0.9), ({"lr": 0.1}, 0.8)], top=2)
    assert new["lr"].high == 100.0
    # not said to be the limit of 10 itself
    assert notes[0].endswith("new range 0.0398:100 (not widened: that bound is lr's widening limit (10) or above)")


def test_reg_and_init_std_are_widened_no_further_than_10_and_reg_no_lower_than_1e_8():
    # a best at the upper bound widened reg 1e-6:10 to 5.01e+04, then 1.26e+12, then 7.94e+26, one fine stage each
    trials = [({"reg": 9.0, "init_std": 0.9}, 0.9), ({"reg": 1e-3, "init_std": 0.01}, 0.5)]
    new, notes = refine_space({"reg": FloatRange(1e-6, 10.0), "init_std": FloatRange(1e-3, 1.0)}, trials, top=2)
    assert (new["reg"].high, new["init_std"].high) == (10.0, 10.0)
    assert notes[0].endswith("new range 0.0002:10 (not widened: that bound is reg's widening limit)")
    assert notes[1].endswith("new range 0.00501:10 (widened upward; stopped at init_std's widening limit 10)")
    new, notes = refine_space({"reg": FloatRange(1e-3, 1.0)}, [({"reg": 0.9}, 0.9), ({"reg": 1e-2}, 0.5)], top=2)
    assert new["reg"].high == 10.0 and notes[0].endswith("(widened upward; stopped at reg's widening limit 10)")
    # a range given above the limit keeps its bound, as lr's does
    new, _ = refine_space({"init_std": FloatRange(0.1, 100.0)}, [({"init_std": 90.0}, 0.9), ({"init_std": 1.0}, 0.8)],
                          top=2)
    assert new["init_std"].high == 100.0
    # downward, reg went from 1e-6 to 2e-11 and on (a run of search auto chose reg=4.13e-12), where its L2 term is
    # nothing: it stops at 1e-8
    new, notes = refine_space({"reg": FloatRange(1e-6, 10.0)}, [({"reg": 1.1e-6}, 0.9), ({"reg": 1e-3}, 0.5)], top=2)
    assert new["reg"].low == 1e-8
    assert notes[0].endswith("new range 1e-08:0.00501 (widened downward; stopped at reg's widening limit 1e-08)")
    new, notes = refine_space({"reg": FloatRange(1e-10, 1e-6)}, [({"reg": 1.1e-10}, 0.9), ({"reg": 1e-8}, 0.5)], top=2)
    assert new["reg"].low == 1e-10 and notes[0].endswith(
        "(not widened: that bound is reg's widening limit (1e-08) or below)")
    # lr's lower bound is the option's own limit, not its widening limit (10), which is an upper one
    _, notes = refine_space({"lr": FloatRange(1e-12, 1e-6)}, [({"lr": 1.1e-12}, 0.9), ({"lr": 1e-8}, 0.5)], top=2)
    assert notes[0].endswith("(not widened: that bound is the option's limit)")


def test_init_std_is_widened_no_lower_than_1e_6_and_relu_bias_no_higher_than_1():
    # a best at a bound widened each fine stage without a stop: init_std 1e-5:1 went down by the range's width
    new, notes = refine_space({"init_std": FloatRange(1e-5, 1.0)}, [({"init_std": 1.1e-5}, 0.9),
                                                                     ({"init_std": 1e-2}, 0.5)], top=2)
    assert new["init_std"].low == 1e-6
    assert notes[0].endswith("new range 1e-06:0.0316 (widened downward; stopped at init_std's widening limit 1e-06)")
    new, notes = refine_space({"relu_bias": FloatRange(0.0, 0.8, log=False)}, [({"relu_bias": 0.79}, 0.9),
                                                                              ({"relu_bias": 0.1}, 0.5)], top=2)
    assert new["relu_bias"].high == 1.0
    assert notes[0].endswith("(widened upward; stopped at relu_bias's widening limit 1)")
    # a range given past either limit keeps its bound
    new, _ = refine_space({"init_std": FloatRange(1e-8, 1e-4), "relu_bias": FloatRange(0.0, 5.0, log=False)},
                          [({"init_std": 1.1e-8, "relu_bias": 4.9}, 0.9), ({"init_std": 1e-5, "relu_bias": 1.0}, 0.5)],
                          top=2)
    assert (new["init_std"].low, new["relu_bias"].high) == (1e-8, 5.0)


def test_the_low_end_of_lr_all_too_low_raises_the_lower_bound():
    trials = [({"lr": 1e-2}, 0.98), ({"lr": 3e-3}, 0.95), ({"lr": 1e-7}, 0.1), ({"lr": 3e-7}, 0.1), ({"lr": 9e-7}, 0.11)]
    labels = [["healthy"], ["healthy"], ["lr_too_low"], ["lr_too_low"], ["lr_too_low"]]
    new, notes = refine_space({"lr": FloatRange(1e-7, 1.0)}, trials, top=5, edge=0.01, diagnoses=labels)
    assert new["lr"].low == 9e-7
    assert notes[-1].startswith("lr: diagnosis: all 3 trials in the lowest fifth of 1e-07:1 are lr_too_low; "
                                "lower bound raised to 9e-07")


def test_a_range_the_parent_stage_found_insensitive_is_narrowed_but_never_widened():
    # refined from a handful of promoted runs, reg went from 1e-8:1e-4 to 8.8e-12:1.67e-05 following the best of
    # them to the lower bound, where the parent's 40 trials had shown that reg changes nothing
    trials = _trials({"lr": 1e-3, "reg": 1.5e-6}, [{"lr": 1e-3, "reg": 4e-6}])
    new, notes = refine_space(SPACE, trials, top=2, edge=0.1, flat={"reg": "insensitive in d/coarse: (evidence)"})
    assert (new["reg"].low, round(new["reg"].high, 8)) == (1e-6, 2.005e-05)
    assert notes[1] == ("reg: best 1.5e-06 is 0.18 decades from the lower bound 1e-06, 2.5 % of the range's 7 (within "
                        "10 %); "
                        "new range 1e-06:2e-05 (not widened: insensitive in d/coarse: (evidence))")
    widened, _ = refine_space(SPACE, trials, top=2, edge=0.1)
    assert widened["reg"].low < 1e-6 and new["lr"] == widened["lr"]  # the other dimensions as without it


def test_an_int_range_kept_around_one_trial_does_not_say_the_top_1_trials_span_it():
    # once "depth: best 2 is inside 1:3:linear:int; kept: the top 1 trials span it"
    new, note = IntRange(1, 3, log=False).refine("depth", [(2, 0.9)], 1, 0.1, (1, 100))
    assert new == IntRange(1, 3, log=False)
    assert note == ("depth: best 2 is inside 1:3:linear:int; kept: the best trial's range, rounded out to whole "
                    "numbers, covers it")
    note = IntRange(1, 3, log=False).refine("depth", [(2, 0.9), (1, 0.8), (3, 0.7)], 3, 0.1, (1, 100))[1]
    assert note == "depth: best 2 is inside 1:3:linear:int; kept: the top 3 trials span it"


def test_a_range_narrowed_by_a_sliver_shows_as_many_digits_as_tell_its_width_from_the_old():
    # once "narrowed around the top 2 trials to 0.0001:0.0998 (3 of 3 decades)": 2.999 shows as 3 to three digits
    new, note = FloatRange(1e-4, 1e-1).refine("lr", [(0.05, 0.9), (1.2e-4, 0.8)], 5, 0.1, (1e-12, float("inf")))
    assert note == ("lr: best 0.05 is inside 0.0001:0.1; narrowed around the top 2 trials to 0.0001:0.0998 (2.999 of "
                    "3 decades)")


def test_underfitting_top_trials_still_learning_leave_the_width_alone():
    # the top 3 underfit; where 2 of them are still learning (loss still falling steeply), the remedy is more epochs
    trials = [({"hidden": 60, "lr": 1e-3}, 0.8), ({"hidden": 50, "lr": 2e-3}, 0.79), ({"hidden": 40, "lr": 5e-4}, 0.78),
              ({"hidden": 20, "lr": 1e-2}, 0.5)]
    space = {"hidden": IntRange(10, 200), "lr": FloatRange(1e-4, 1e-1)}
    levelled = [["underfitting"]] * 3 + [["healthy"]]
    widened, notes = refine_space(space, trials, top=3, edge=0.1, diagnoses=levelled)
    assert widened["hidden"] == IntRange(29, 120)
    assert notes[-1] == ("hidden: diagnosis: 3 of the top 3 trials are underfitting; upper bound raised to 120 (twice "
                         "the best's 60) for more capacity; new range 29:120:int")
    learning = [["underfitting", "still_learning"]] * 2 + [["underfitting"], ["healthy"]]
    kept, notes = refine_space(space, trials, top=3, edge=0.1, diagnoses=learning)
    assert kept["hidden"] == IntRange(29, 81)  # narrowed around the top 3 only
    assert notes[-1] == ("hidden: diagnosis: 3 of the top 3 trials are underfitting, but 2 of them still learning "
                         "(the loss still falling steeply at the end): more epochs, not more capacity; not moved")
