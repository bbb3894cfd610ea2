"""The per-run diagnosis on constructed curves and nets: each label at its threshold."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest

from engine.diagnostics import (
    THRESHOLDS, LayerStats, describe_diagnosis, diagnose, expected_initial_loss, unit_stats,
)
from engine.init import InitSpec
from engine.model import FullyConnectedNet, ModelConfig

LN10 = math.log(10)


def _falling(first: float, last: float, n: int = 100) -> list[float]:
    """A loss from ``first`` levelling off at ``last`` (a run that converged)."""
    return list(last + (first - last) * np.exp(-np.arange(n) / 8))


def _still_falling(first: float, last: float, n: int = 100) -> list[float]:
    """A loss falling in a straight line from ``first`` to ``last``: still falling steeply at its end."""
    return list(np.linspace(first, last, n))


def _run(loss=None, status="completed", train=0.95, val=0.94, initial=LN10, layers=(), chance=None, reg_loss=0.0,
         initial_reg_loss=None):
    return diagnose(status, loss if loss is not None else _falling(LN10, 0.3), train, val, initial, LN10,
                    list(layers), chance=chance, final_reg_loss=reg_loss, initial_reg_loss=initial_reg_loss)


def test_a_healthy_run_is_healthy():
    d = _run()
    assert d.labels == ("healthy",)
    assert d.numbers["loss_change"] == pytest.approx((LN10 - np.mean(_falling(LN10, 0.3)[-10:])) / LN10, abs=1e-4)


@pytest.mark.parametrize("status", ["exploded", "diverged"])
def test_an_exploded_or_nan_run_had_a_learning_rate_too_high(status):
    assert _run(loss=[2.3, 9.0], status=status).labels == ("lr_too_high",)


def test_a_run_that_exploded_in_its_first_epoch_is_described_without_accuracies():
    # no epoch finished: no train or validation accuracy; search explain of such a trial ended in a TypeError
    d = _run(loss=[3.9, 84.0, 45.0, 84.0], status="exploded", train=math.nan, val=math.nan)
    assert d.labels == ("lr_too_high",)
    d = replace(d, numbers={**d.numbers, "train_acc": None, "val_acc": None, "train_val_gap": None})  # as stored
    assert describe_diagnosis(d) == [
        "the loss exploded, went NaN or ended well above its first value: the learning rate is too high"]


def test_a_completed_run_whose_loss_ended_above_its_first_had_a_learning_rate_too_high():
    # a run nothing stopped (search auto's final stage): up 2.3x and staying there is no lr too low
    assert _run(loss=[2.3] + [5.3] * 99, train=0.2, val=0.2).labels == ("lr_too_high",)
    assert _run(loss=[2.3] + [2.3 * 1.05] * 99, train=0.2, val=0.2).labels[0] == "lr_too_low"  # barely moved: +5 %
    # a few minibatches are noise: up 13 % in 6 iterations of a tiny lr is no lr too high
    assert _run(loss=[1.96, 2.0, 1.9, 2.1, 2.0, 2.21], train=0.4, val=0.4).labels[0] == "lr_too_low"
    assert _run(loss=[1.96] * 4 + [2.21] * 6, train=0.4, val=0.4).labels[0] == "lr_too_high"  # 10 iterations
    assert _run(loss=[2.0, 9.0, 20.0], train=0.1, val=0.1).labels[0] == "lr_too_high"  # above twice its first
    # wine at lr 0.66, stopped by asha after 2 iterations 75 % up: "rose by 75.2% ...: the learning rate is too low"
    assert _run(loss=[1.0943, 1.9173], train=0.39, val=0.41).labels[0] == "lr_too_high"
    assert _run(loss=[1.0, 1.45], train=0.39, val=0.41).labels[0] == "lr_too_low"  # +45 %: within a short run's noise


def test_a_loss_that_fell_by_half_and_came_back_up_had_a_learning_rate_too_high_not_too_low():
    # wine, Adam at lr 0.53 (train 0.99): its last loss 7.9 % under its first read "the learning rate is too low"
    bounced = [1.115, 2.986, 2.708, 0.856, 1.516, 0.849, 0.217, 1.212, 0.242, 0.929, 0.365, 1.028]
    d = _run(loss=bounced, train=0.9912, val=0.96)
    assert d.labels == ("lr_too_high",)
    assert d.numbers["loss_change"] == 0.0780 and d.numbers["loss_low"] == 0.4780  # (0.849 + 0.217) / 2 / 1.115
    assert describe_diagnosis(d, "completed") == [
        "the loss fell to 47.8% of its first value, then came back up to 92.2% of it (the mean of its last tenth of "
        "iterations): its steps overshoot: the learning rate is too high"]
    # wine at lr 0.25, 6 iterations: down to 2.6 % of its first (two iterations' mean), ended 32 % above it (a short
    # run's noise alone)
    up = _run(loss=[1.094, 0.378, 0.13, 0.047, 0.01, 1.443], train=0.9823, val=0.96)
    assert up.labels == ("lr_too_high",) and up.numbers["loss_low"] == 0.0261
    assert describe_diagnosis(up, "completed")[0].startswith("the loss fell to 2.6% of its first value, then came "
                                                            "back up to 131.9% of it (")
    # runs whose learning rate is too low never go that far down: digits at lr 2e-5 and 6e-5, wine at lr 4e-4
    assert _run(loss=[2.643] * 10 + [2.63] * 65, train=0.68, val=0.69).labels[0] == "lr_too_low"
    assert _run(loss=[1.101, 1.092, 1.089, 1.083, 1.076, 1.076], train=0.92, val=0.88).labels == ("lr_too_low",)
    # the lowest tenth is a mean: one low minibatch of a long noisy run is no fall by half
    noisy = [2.3] * 50 + [1.0] + [2.3] * 49
    assert _run(loss=noisy, train=0.3, val=0.3).labels[0] == "lr_too_low"
    assert _run(loss=[2.3] * 45 + [1.0] * 10 + [2.2] * 45, train=0.3, val=0.3).labels[0] == "lr_too_high"
    # nor of a short one, whose tenth is one minibatch: two at least
    for short in ([2.3] * 5 + [1.1] + [2.3] * 6, [2.3, 2.2, 1.1, 2.25, 2.2, 2.1]):
        assert _run(loss=short, train=0.3, val=0.3).labels[0] == "lr_too_low", short
    assert _run(loss=[2.3] * 5 + [1.1, 1.0] + [2.3] * 5, train=0.3, val=0.3).labels[0] == "lr_too_high"

def test_a_loss_that_barely_moves_means_the_learning_rate_is_too_low():
    # the mean of the last tenth is 9.5 % below the first loss: just under the 10 % threshold
    assert "lr_too_low" in _run(loss=[2.0] + [2.0 * (1 - 0.095)] * 99, train=0.3, val=0.3).labels
    assert "lr_too_low" not in _run(loss=[2.0] + [2.0 * (1 - 0.105)] * 99).labels


def test_a_loss_held_up_by_its_l2_term_is_over_regularised_not_a_learning_rate_too_low():
    # lr 1e-4 and reg 0.3 on digits: 32.0 -> 30.1 in 3 epochs, 92 % of it the L2 term; called lr_too_low
    barely = [32.0] + [30.0] * 99  # fell 6.25 %
    d = _run(loss=barely, train=0.764, val=0.737, reg_loss=0.75 * 30.0)
    assert d.labels == ("underfitting",) and d.numbers["reg_share"] == 0.75
    assert describe_diagnosis(d) == [
        "the loss fell by only 6.2% of its first value, and its L2 term is 75.0% of it at the end (>= 75%): the "
        "weights' penalty holds it up, not a small step; underfitting: lower regularisation"]
    assert _run(loss=barely, train=0.764, val=0.737, reg_loss=0.74 * 30.0).labels == ("lr_too_low",)
    assert _run(reg_loss=0.9 * 0.3).labels == ("healthy",)  # the loss fell: the share alone says nothing
    # the L2 term fell 10 % from its first value: the weights moved, and the penalty held the loss up
    assert _run(loss=barely, train=0.764, val=0.737, reg_loss=0.75 * 30.0,
                initial_reg_loss=0.75 * 30.0 / 0.9).labels == ("underfitting",)


def test_a_loss_held_up_by_an_l2_term_that_did_not_move_is_a_learning_rate_too_low():
    # lr 1.2e-7 at reg 0.0345 on breast cancer (standardised): 83 % of the loss is L2 term, and it never moved from
    # where the initialisation put it; it was "underfitting: lower regularisation", where lr 1e-2 trains to 0.98
    barely = [4.15] * 100
    d = _run(loss=barely, train=0.88, val=0.88, reg_loss=0.834 * 4.15, initial_reg_loss=0.834 * 4.15 * 1.0005)
    assert d.labels == ("lr_too_low",) and d.numbers["reg_change"] == 0.0005
    assert describe_diagnosis(d) == [
        "the loss did not fall (instead of falling by 10% or more): the learning rate is too low; its L2 term, 83.4% "
        "of it at the end, moved by only 0.1% of its first value: the step did not move the weights (whether reg "
        "is too high shows with a larger lr)"]
    # a term that moved 9.9 % is still one the step barely moved
    assert _run(loss=barely, train=0.88, val=0.88, reg_loss=0.834 * 4.15,
                initial_reg_loss=0.834 * 4.15 / 0.901).labels == ("lr_too_low",)

def test_the_train_val_gap_decides_over_and_underfitting():
    gap = THRESHOLDS.gap_overfit
    assert _run(train=0.99, val=0.99 - gap - 0.001).labels == ("overfitting",)
    assert _run(train=0.99, val=0.99 - gap + 0.001).labels == ("healthy",)
    assert _run(train=0.80, val=0.795).labels == ("underfitting",)  # no gap, training set not learned
    assert _run(train=0.95, val=0.945).labels == ("healthy",)  # no gap, but it learned the training set


def test_a_gap_within_the_noise_of_few_samples_is_no_overfitting():
    # iris: train accuracy on 102 samples, validation on 24 (one sample is 4 points); a 7-point gap is noise
    def run(samples):
        return diagnose("completed", _falling(1.1, 0.4), 0.8627, 0.7917, 1.1, math.log(3), [], chance=1 / 3,
                        samples=samples)

    small = run((102, 24))
    assert small.labels == ("healthy",)
    # twice the standard error of the difference: 2 * sqrt(0.8627 * 0.1373 / 102 + 0.7917 * 0.2083 / 24)
    assert small.numbers["gap_limit"] == pytest.approx(0.1792, abs=1e-4)
    large = run((1000, 1000))  # the same accuracies on 1000 samples each: the 5-point threshold decides
    assert large.labels == ("overfitting",) and large.numbers["gap_limit"] == 0.05
    assert describe_diagnosis(large) == [
        "train accuracy 0.8627 is 7.1 points above validation (> 5 points): overfitting; raise regularisation or "
        "lower capacity"]
    big_gap = diagnose("completed", _falling(1.1, 0.4), 1.0, 0.75, 1.1, math.log(3), [], chance=1 / 3,
                       samples=(102, 24))
    assert big_gap.labels == ("overfitting",)
    assert describe_diagnosis(big_gap) == [
        "train accuracy 1.0000 is 25.0 points above validation (> 17.8 points, twice the standard error of the gap "
        "on so few samples): overfitting; raise regularisation or lower capacity"]


def test_units_saturated_by_an_exploding_run_are_blamed_on_its_learning_rate_not_its_initialisation():
    # fine-1:7 on an image folder, tanh at lr 41.8: "the initial weights are too large for tanh/sigmoid"
    saturated = [LayerStats(1, 0.0, 1.0, 0.9936, 0.0)]
    exploded = _run(loss=[2.3, 9.0], status="exploded", layers=saturated)
    assert exploded.labels == ("lr_too_high", "saturated_units")
    assert describe_diagnosis(exploded)[1] == (
        "saturated outputs: 99% of layer 1 (> 20% in a layer): the updates blew the weights up past what "
        "tanh/sigmoid can use (the learning rate, not the initialisation)")
    trained = _run(layers=saturated)  # a run that trained: its weights are where the initialisation put them
    assert describe_diagnosis(trained) == [
        "saturated outputs: 99% of layer 1 (> 20% in a layer): the initial weights are too large for tanh/sigmoid"]


def test_a_run_that_did_not_learn_the_training_set_underfits_whatever_its_gap():
    # reg 10 on digits crushes the weights: the loss falls (its reg part does), train 0.2, validation near chance
    learned = 0.1 + THRESHOLDS.learned_fraction * 0.9  # 0.325 on 10 classes
    assert _run(train=0.205, val=0.10, chance=0.1).labels == ("underfitting",)  # a 10.5-point gap: no overfitting
    assert _run(train=0.109, val=0.0889, chance=0.1).labels == ("underfitting",)  # a 2-point gap
    assert _run(train=learned - 0.001, val=learned - 0.2, chance=0.1).labels == ("underfitting",)
    assert _run(train=learned + 0.001, val=learned - 0.2, chance=0.1).labels == ("overfitting",)
    assert _run(train=0.5, val=0.47, chance=0.125).labels == ("healthy",)  # a short run on a hard problem
    assert _run(train=0.99, val=0.93, chance=0.1).labels == ("overfitting",)
    assert _run(train=0.95, val=0.94, chance=0.1).labels == ("healthy",)


def test_unit_statistics_of_outputs_near_the_float32_limit_are_numbers_and_warn_nothing():
    # a ReLU bias of 1e38: the float32 sum overflowed, and every such trial printed NumPy's RuntimeWarning (twice)
    model = FullyConnectedNet(ModelConfig(hidden=(20,), relu_bias=1e38), 8, 3, np.random.default_rng(0))
    X = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = unit_stats(model, X)
    assert stats[0].mean == pytest.approx(1e38, rel=1e-6) and math.isfinite(stats[0].std) and stats[0].dead == 0.0


def test_only_relu_units_die_and_a_dead_layer_is_no_learning_rate_too_low():
    # every bias at -100: maxout, leaky ReLU, PReLU and ELU units output <= 0 on every sample yet pass a gradient
    # (the lecture: they do not die); ReLU units are all dead
    X = np.random.default_rng(0).standard_normal((256, 50)).astype(np.float32)
    dead = {}
    for activation in ("relu", "leaky_relu", "prelu", "elu", "maxout"):
        model = FullyConnectedNet(ModelConfig(hidden=(100,), activation=activation), 50, 10, np.random.default_rng(1))
        model.params["b1"][:] = -100
        dead[activation] = unit_stats(model, X)[0].dead
    assert dead == {"relu": 1.0, "leaky_relu": 0.0, "prelu": 0.0, "elu": 0.0, "maxout": 0.0}
    # a flat loss with a layer all dead: the units, not the learning rate
    flat = [LN10] * 100
    assert _run(loss=flat, train=0.1, val=0.1, layers=[LayerStats(1, 0.0, 0.0, 0.0, 1.0)]).labels == (
        "dead_units",)
    assert _run(loss=flat, train=0.1, val=0.1, layers=[LayerStats(1, 0.0, 0.1, 0.0, 0.99)]).labels[0] == "lr_too_low"


def test_the_l2_share_is_at_most_the_whole_loss():
    # the data loss near 0 and the weights still growing: the final L2 term 0.0102 over a tail mean of 0.0100
    d = _run(loss=[LN10] + [0.0100] * 99, train=1.0, val=0.97, reg_loss=0.0102)
    assert d.numbers["reg_share"] == 1.0 and d.labels == ("healthy",)


def test_dead_and_saturated_units_and_a_bad_initial_loss():
    dead = [LayerStats(1, 0.1, 0.2, 0.0, 0.51), LayerStats(2, 0.1, 0.2, 0.0, 0.1)]
    assert _run(layers=dead).labels == ("dead_units",)
    assert _run(layers=[LayerStats(1, 0.0, 0.9, 0.21, 0.0)]).labels == ("saturated_units",)
    assert _run(layers=[LayerStats(1, 0.0, 0.9, 0.19, 0.0)]).labels == ("healthy",)
    assert _run(initial=LN10 + 0.51).labels == ("bad_initial_loss",)
    assert expected_initial_loss("svm", 10) == 9.0


def test_a_bad_initial_loss_names_the_inputs_scale_beside_the_weights_and_where_to_tell_them_apart():
    # it said "the output scale is wrong" of pixels of 0..255, read as they are, where the output layer was fine
    d = _run(initial=LN10 + 0.85)
    assert describe_diagnosis(d) == [
        f"initial data loss {round(LN10 + 0.85, 4)}, expected about 2.3026: the initial class scores are far from 0, "
        "from the initial weights or from inputs far from unit scale (pixels of 0..255); search sanity with the "
        "run's options says which"]


def test_a_learning_rate_too_low_is_said_with_the_first_layers_update_to_weight_ratio_where_measured():
    # the lecture reads a learning rate by ||dW|| / ||W|| (about 1e-3); the sentence gave the loss alone
    flat = [2.3] + [2.29] * 99
    d = diagnose("completed", flat, 0.2, 0.2, LN10, LN10, [], update_ratio=3.5678e-06)
    assert d.labels == ("lr_too_low",) and d.numbers["update_ratio"] == 3.57e-06
    assert describe_diagnosis(d) == [
        "the loss fell by only 0.4% of its first value (< 10%): the learning rate is too low; the first layer's last "
        "update was 3.6e-06 of its weights' norm (about 1e-3 with a good learning rate)"]
    unmeasured = _run(loss=flat, train=0.2, val=0.2)
    assert "update_ratio" not in unmeasured.numbers and describe_diagnosis(unmeasured) == [
        "the loss fell by only 0.4% of its first value (< 10%): the learning rate is too low"]


def test_dead_and_saturated_units_are_said_per_layer_in_words():
    # search explain printed them as Python lists: "dead units per layer [0.62, 0.0312] (> 50% in a layer)"
    d = _run(layers=[LayerStats(1, 0.1, 0.2, 0.25, 0.62), LayerStats(2, 0.1, 0.2, 0.0, 0.0312)])
    assert d.labels == ("dead_units", "saturated_units")
    assert describe_diagnosis(d) == [
        "dead units: 62% of layer 1, 3% of layer 2 (> 50% in a layer): a bad initialisation or a learning rate "
        "that knocked them off",
        "saturated outputs: 25% of layer 1, 0% of layer 2 (> 20% in a layer): the initial weights are too large "
        "for tanh/sigmoid",
    ]


def test_a_fraction_just_over_its_threshold_is_not_rounded_down_to_it():
    # 50.2 % dead is dead_units (> 50 %); "50% of layer 1 (> 50% in a layer)" contradicted the label
    d = _run(layers=[LayerStats(1, 0.1, 0.2, 0.2004, 0.502), LayerStats(2, 0.1, 0.2, 0.0, 0.5)])
    assert d.labels == ("dead_units", "saturated_units")
    assert describe_diagnosis(d) == [
        "dead units: 50.2% of layer 1, 50% of layer 2 (> 50% in a layer): a bad initialisation or a learning rate "
        "that knocked them off",
        "saturated outputs: 20.04% of layer 1, 0% of layer 2 (> 20% in a layer): the initial weights are too large "
        "for tanh/sigmoid",
    ]


def test_a_gap_or_loss_change_just_past_its_limit_is_not_rounded_to_it():
    # "is 5.0% above validation (> 5%)" and "fell by only 10.0% of its first value (< 10%)" contradicted their labels;
    # a gap of accuracies is in points (of 100 %), as the README, the thresholds and the report say it
    over = _run(train=0.99, val=0.9396)
    assert over.labels == ("overfitting",)
    assert describe_diagnosis(over) == [
        "train accuracy 0.9900 is 5.04 points above validation (> 5 points): overfitting; raise regularisation or "
        "lower capacity"]
    slow = _run(loss=[2.0] + [2.0 * (1 - 0.0996)] * 99)
    assert slow.labels == ("lr_too_low",)
    assert describe_diagnosis(slow) == [
        "the loss fell by only 9.96% of its first value (< 10%): the learning rate is too low"]
    noisy = diagnose("completed", _falling(1.1, 0.4), 0.9619, 0.7917, 1.1, math.log(3), [], chance=1 / 3,
                     samples=(102, 24))
    assert noisy.labels == ("overfitting",) and noisy.numbers["gap_limit"] == 0.1701
    assert describe_diagnosis(noisy)[0].startswith(
        "train accuracy 0.9619 is 17.02 points above validation (> 17.0 points, ")


def test_a_loss_that_rose_a_little_says_it_rose_not_that_it_fell_by_a_negative_share():
    # wine/fine-1:21 was "the loss fell by only -3.2% of its first value, and its L2 term is 101.1% of it": a share
    # of the loss is at most all of it
    held_up = _run(loss=[1.1] + [1.1352] * 99, train=0.9919, val=1.0, reg_loss=1.0112 * 1.1352)
    assert held_up.labels == ("underfitting",) and held_up.numbers["loss_change"] == -0.032
    assert describe_diagnosis(held_up) == [
        "the loss rose by 3.2% of its first value, and its L2 term is 100.0% of it at the end (>= 75%): the weights' "
        "penalty holds it up, not a small step; underfitting: lower regularisation"]
    slow = _run(loss=[2.0] + [2.0 * 1.05] * 99, train=0.3, val=0.3)
    assert slow.labels[0] == "lr_too_low" and describe_diagnosis(slow)[0] == (
        "the loss rose by 5.0% of its first value (instead of falling by 10% or more): the learning rate is too low")


def test_the_train_accuracy_is_said_to_4_decimals_as_search_trials_gives_it():
    # "train accuracy 0.8" where search trials, the report and search auto give accuracies as 0.8000
    assert describe_diagnosis(_run(train=0.80, val=0.795)) == [
        "train accuracy 0.8000, train-val gap 0.5 points: the training set is not learned; underfitting: raise "
        "capacity or lower regularisation"]


def test_the_reason_given_for_underfitting_is_the_one_its_stored_numbers_show():
    # a loss that fell 9.996 %, 80 % of it L2 term, was underfitting (over-regularised), but its loss change was
    # stored as 0.1, and search explain, reading it, gave the other reason: "the training set is not learned" for a
    # run at train accuracy 0.95
    d = _run(loss=[1.0] + [0.90004] * 99, reg_loss=0.8 * 0.90004)
    assert d.numbers["loss_change"] == 0.1 and d.labels == ("healthy",)
    d = _run(loss=[1.0] + [0.9001] * 99, reg_loss=0.8 * 0.9001)
    assert d.labels == ("underfitting",) and describe_diagnosis(d) == [
        "the loss fell by only 9.99% of its first value, and its L2 term is 80.0% of it at the end (>= 75%): the "
        "weights' penalty holds it up, not a small step; underfitting: lower regularisation"]


def test_unit_statistics_of_real_nets():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 50))
    saturating = FullyConnectedNet(ModelConfig(hidden=(100,), activation="tanh", init=InitSpec("normal", 1.0)),
                                   50, 10, np.random.default_rng(1))
    assert unit_stats(saturating, X)[0].saturated > 0.6  # pre-activation std ~ sqrt(50): most outputs at +-1
    tame = FullyConnectedNet(ModelConfig(hidden=(100,), activation="tanh", init=InitSpec("xavier")),
                             50, 10, np.random.default_rng(1))
    assert unit_stats(tame, X)[0].saturated < 0.05
    dead = FullyConnectedNet(ModelConfig(hidden=(100,), relu_bias=0.0), 50, 10, np.random.default_rng(1))
    dead.params["b1"][:60] = -100.0  # 60 of 100 units can never fire
    assert unit_stats(dead, X)[0].dead == pytest.approx(0.6)


def test_a_loss_that_rose_a_little_is_not_said_to_have_fallen_by_a_negative_share():
    # once "the loss fell by only -0.0% of its first value (< 10%)"
    flat = _run(loss=[2.0] + [2.0 * 1.0004] * 99)
    assert flat.labels == ("lr_too_low",) and flat.numbers["loss_change"] == -0.0004
    assert describe_diagnosis(flat) == [
        "the loss rose by 0.04% of its first value (instead of falling by 10% or more): the learning rate is too low"]
    flat.numbers["loss_change"] = -0.0  # as a rise under 0.00005 is stored
    assert describe_diagnosis(flat) == [
        "the loss did not fall (instead of falling by 10% or more): the learning rate is too low"]


def test_a_diagnosis_stored_without_some_numbers_is_described_by_those_it_has():
    # an older version stored no reg_share or gap_limit; other code may store fewer numbers still
    from engine.diagnostics import Diagnosis

    assert describe_diagnosis(Diagnosis(("lr_too_high",), {})) == [
        "the loss exploded, went NaN or ended well above its first value: the learning rate is too high"]
    older = Diagnosis(("underfitting",), {"loss_change": 0.4, "train_val_gap": 0.011, "train_acc": 0.741})
    assert describe_diagnosis(older) == [
        "train accuracy 0.7410, train-val gap 1.1 points: the training set is not learned; underfitting: raise "
        "capacity or lower regularisation"]
    assert describe_diagnosis(Diagnosis(("dead_units",), {})) == [
        "dead units: - (> 50% in a layer): a bad initialisation or a learning rate that knocked them off"]


def test_a_learning_rate_too_high_is_told_by_what_its_loss_did():
    # every such run read "the loss exploded, went NaN or ended well above its first value", whichever it was
    stopped = _run(loss=[2.3, 9.0], status="exploded")
    assert describe_diagnosis(stopped, "exploded") == [
        "the loss exploded, and the run was stopped there: the learning rate is too high"]
    assert describe_diagnosis(_run(loss=[2.3, math.nan], status="diverged"), "nan") == [
        "the loss went NaN or inf: the learning rate is too high"]
    rose = _run(loss=[2.0] + [2.5] * 99, train=0.5, val=0.5)  # a run nothing stopped: its last tenth 25 % above
    assert rose.labels[0] == "lr_too_high" and rose.numbers["loss_change"] == -0.25
    assert describe_diagnosis(rose, "completed")[0] == (
        "the loss ended 25.0% above its first value (the mean of its last tenth of iterations): the learning rate is "
        "too high")
    far = _run(loss=[2.0] + [5.0] * 99, train=0.5, val=0.5)
    assert describe_diagnosis(far, "completed")[0].startswith("the loss ended at 2.5 times its first value (")
    assert describe_diagnosis(rose)[0] == (  # no stop reason known: all three ways
        "the loss exploded, went NaN or ended well above its first value: the learning rate is too high")


def test_a_healthy_run_whose_fall_is_mostly_its_l2_term_shrinking_says_so():
    # reg 10 on breast cancer: the loss 990 -> 641, 97 % of it the L2 term, read "healthy: the loss fell by 34.0%"
    # as if the data were being fitted
    falling = [990.0] + [653.0] * 99
    d = _run(loss=falling, train=0.9118, val=0.907, reg_loss=0.9746 * 653.0, initial_reg_loss=0.9746 * 653.0 / 0.6434)
    assert d.labels == ("healthy",) and d.numbers["reg_change"] == 0.3566
    assert describe_diagnosis(d) == [
        "healthy: the loss fell by 34.0%, train-val gap 0.5 points; but its L2 term is 97.5% of it at the end and fell "
        "by 35.7% of its first value: the curve shows the penalty shrinking the weights more than the data being "
        "fitted"]
    # a net fitting separable data grows its weights: a share near 100 % with a term that rose says nothing of it
    grown = _run(loss=falling, train=1.0, val=0.99, reg_loss=0.98 * 653.0, initial_reg_loss=0.5 * 653.0)
    assert describe_diagnosis(grown) == ["healthy: the loss fell by 34.0%, train-val gap 1.0 points"]


def test_a_net_that_always_guesses_the_most_frequent_class_has_not_learned_the_training_set():
    # 95 % of a CSV's rows were one class: a net crushed by reg 30 guessed it every time, train 0.953, validation
    # 0.949, and was "healthy" (chance was taken as 1/C = 0.5)
    d = _run(train=0.9530, val=0.9492, chance=0.9505)
    assert d.labels == ("underfitting",) and d.numbers["chance"] == 0.9505
    assert describe_diagnosis(d) == [
        "train accuracy 0.9530 (always guessing the most frequent class scores 0.9505), train-val gap 0.4 points: the "
        "training set is not learned; underfitting: raise capacity or lower regularisation"]
    assert _run(train=0.9530, val=0.9492, chance=0.5).labels == ("healthy",)


def test_a_run_that_underfits_with_saturated_or_dead_units_points_at_them():
    # sigmoid at init std 5 on digits: "underfitting: raise capacity or lower regularisation" beside 67 % of its
    # outputs saturated, where more units of the same kind would saturate as well
    saturated = [LayerStats(1, 0.5, 0.45, 0.67, 0.0)]
    d = _run(train=0.854, val=0.863, layers=saturated, chance=0.1)
    assert d.labels == ("underfitting", "saturated_units")
    assert describe_diagnosis(d)[0] == (
        "train accuracy 0.8540, train-val gap -0.9 points: the training set is not learned; underfitting: raise "
        "capacity or lower regularisation, or first mend the saturated units (below), which pass little or no "
        "gradient and may be why")
    assert describe_diagnosis(_run(train=0.854, val=0.863))[0].endswith("raise capacity or lower regularisation")


def test_a_deep_net_whose_outputs_collapsed_names_its_initialisation_beside_the_learning_rate():
    # 5 layers of 100 at normal std 0.01 on digits: the loss never moved and the run read "the learning rate is too
    # low" alone, where the lecture's reading is the collapse of its activations (std 0.0127 -> 3.16e-06)
    stds = [0.0127, 0.00094, 7e-05, 4.8e-06, 3.16e-06]
    collapsed = [LayerStats(i, 0.0, s, 0.0, 0.0) for i, s in enumerate(stds, start=1)]
    d = _run(loss=[2.3026] * 100, train=0.1, val=0.09, layers=collapsed, chance=0.1)
    assert d.labels == ("lr_too_low",) and d.numbers["layer_std"] == stds
    assert describe_diagnosis(d) == [
        "the loss did not fall (instead of falling by 10% or more): the learning rate is too low; or the "
        "initialisation is too small for this depth: the outputs collapse from std 0.0127 in layer 1 to 3.16e-06 in "
        "layer 5 (under 0.1 x), and the weights' gradients with them (search layers shows it)"]
    kept = [LayerStats(i, 0.0, s, 0.0, 0.0) for i, s in enumerate([0.26, 0.37, 0.59], start=1)]
    assert describe_diagnosis(_run(loss=[2.3026] * 100, train=0.1, val=0.09, layers=kept, chance=0.1)) == [
        "the loss did not fall (instead of falling by 10% or more): the learning rate is too low"]


def test_a_run_far_from_its_training_set_whose_loss_still_falls_steeply_is_still_learning():
    # one hidden layer of 3 units, 20 epochs on 300 digits: train 0.60, validation 0.52, the loss still falling
    # 6.5 % per tenth of the run; with its 7.8-point gap within noise it was called "healthy"
    d = _run(loss=_still_falling(LN10, 1.0), train=0.60, val=0.56)
    slope = (LN10 - 1.0) / 99  # per iteration; the last 30 of 100 losses have their mean 14.5 iterations above 1.0
    assert d.labels == ("still_learning",)
    assert d.numbers["late_loss_fall"] == pytest.approx(slope * 10 / (1.0 + 14.5 * slope), abs=1e-4)
    assert d.numbers["late_loss_limit"] == THRESHOLDS.late_fall  # a straight line: no noise
    assert describe_diagnosis(d) == [
        "the loss is still falling steeply at the end (11.1% of it per tenth of the run over its last 30% of "
        "iterations, > 3%), with train accuracy 0.6000 and a train-val gap of 4.0 points: still learning, not "
        "converged; train longer (more epochs) before judging its capacity or regularisation"]
    # the same accuracies with a loss that levelled off (a problem whose labels are a quarter noise tops out at
    # 0.75): nothing says more epochs or more capacity would help
    assert _run(loss=_falling(LN10, 1.0), train=0.60, val=0.56).labels == ("healthy",)
    # a training set learned: the loss still falling is no reason to call it anything else
    assert _run(loss=_still_falling(LN10, 1.0), train=0.95, val=0.94).labels == ("healthy",)


def test_a_late_fall_must_pass_three_percent_a_tenth_and_twice_its_noise():
    # 1.4 -> 1.0: 3.8 % of the loss per tenth of the run over its last 30 %; 1.4 -> 1.2: 1.8 %
    assert _run(loss=_still_falling(1.4, 1.0), train=0.60, val=0.56).labels == ("still_learning",)
    assert _run(loss=_still_falling(1.2, 1.0), train=0.60, val=0.56).labels == ("healthy",)
    # the same 3.8 % under minibatch noise of +-0.5: twice the slope's standard error is 21 % a tenth
    noisy = _run(loss=list(np.array(_still_falling(1.4, 1.0)) + 0.5 * (-1.0) ** np.arange(100)), train=0.60,
                 val=0.56)
    assert noisy.labels == ("healthy",) and noisy.numbers["late_loss_limit"] > 0.2
    assert _run(loss=_still_falling(LN10, 1.0)[:9], train=0.60, val=0.56).numbers["late_loss_fall"] is None


def test_an_underfitting_run_whose_loss_still_falls_is_told_to_train_longer_not_to_grow():
    # 3 epochs of Adam at lr 1e-3 on digits: train 0.81, no gap, the loss still falling 10 % a tenth: "raise capacity"
    d = _run(loss=_still_falling(LN10, 1.0), train=0.80, val=0.795)
    assert d.labels == ("underfitting",)  # as refinement reads it
    assert describe_diagnosis(d) == [
        "train accuracy 0.8000, train-val gap 0.5 points: the training set is not learned; underfitting, but the loss "
        "is still falling steeply at the end (11.1% of it per tenth of the run over its last 30% of iterations, > 3%): "
        "train longer first, then raise capacity or lower regularisation if it levels off this low"]
    levelled = _run(loss=_falling(LN10, 1.0), train=0.80, val=0.795)
    assert describe_diagnosis(levelled) == [
        "train accuracy 0.8000, train-val gap 0.5 points: the training set is not learned; underfitting: raise "
        "capacity or lower regularisation"]


def test_a_loss_that_falls_as_a_strong_penalty_decays_at_chance_is_not_still_learning():
    # digits, lr 0.174, reg 6.02, 178 units, 3 epochs: the loss fell from 1070 (almost all L2) to 2.59 and still fell
    # 19.5 % a tenth at the end, yet train accuracy stayed at chance: the weights decay, the net does not learn, and
    # "train longer first" sent the student the wrong way (the remedy is less regularisation)
    loss = list(2.38 + 1067.0 * np.exp(-np.arange(75) / 9))
    d = _run(loss=loss, train=0.106, val=0.089, chance=0.109, reg_loss=0.21, initial=2.3015, initial_reg_loss=1067.0)
    assert d.numbers["late_loss_fall"] > d.numbers["late_loss_limit"]  # the loss does still fall
    assert d.numbers["final_data_loss"] == pytest.approx(np.mean(loss[-7:]) - 0.21, abs=1e-4)
    assert d.numbers["final_data_loss"] > d.numbers["initial_data_loss"] == 2.3015
    assert d.labels == ("underfitting",)
    assert describe_diagnosis(d)[0].endswith("underfitting: raise capacity or lower regularisation")
    # the same fall with a data loss below where it started is a net still learning
    learning = _run(loss=_still_falling(LN10, 1.0), train=0.80, val=0.795, reg_loss=0.01)
    assert learning.numbers["final_data_loss"] < learning.numbers["initial_data_loss"]
    assert "train longer first" in describe_diagnosis(learning)[0]


def _curves(train_hist, val_hist, n_val=1000):
    return diagnose("completed", _falling(LN10, 0.5), train_hist[-1], val_hist[-1], LN10, LN10, [],
                    samples=(1000, n_val), train_acc_history=train_hist, val_acc_history=val_hist)


def test_a_validation_curve_fallen_from_an_early_peak_while_train_rises_is_overfitting():
    train, val = [0.80, 0.84, 0.86, 0.87, 0.88], [0.81, 0.87, 0.86, 0.85, 0.845]  # the final gap: 3.5 points
    d = _curves(train, val)
    limit = round(2 * math.sqrt(0.87 * 0.13 / 1000), 4)  # twice the binomial standard error at the peak
    assert d.labels == ("overfitting",)
    keys = ("val_peak_epoch", "val_peak", "val_drop", "val_drop_limit", "train_rise", "val_fell")
    assert {k: d.numbers[k] for k in keys} == {
        "val_peak_epoch": 2, "val_peak": 0.87, "val_drop": 0.025, "val_drop_limit": limit, "train_rise": 0.04,
        "val_fell": True}
    assert describe_diagnosis(d) == [
        "validation accuracy peaked at 0.8700 in epoch 2 and fell 2.5 points by the end (> 2.1 points, twice its "
        "standard error) while train accuracy rose 4.0 points to 0.8800, though the final gap is 3.5 points: "
        "overfitting; stop near epoch 2 or raise regularisation"]
    assert _curves(train, val, n_val=270).labels == ("healthy",)  # 2.5 points is noise on 270 samples (4.1)
    # train fell with it (to 0.83, 1.5 points under validation): no overfitting
    assert _curves([0.80, 0.86, 0.85, 0.84, 0.83], val).labels == ("underfitting",)
    assert _curves(train, [0.81, 0.83, 0.84, 0.845, 0.85]).labels == ("healthy",)  # still rising at the end
    big = _curves([0.80, 0.94, 0.97, 0.99], [0.81, 0.93, 0.91, 0.89])  # both signs: a gap of 10 points, a fall of 4
    assert describe_diagnosis(big) == [
        "train accuracy 0.9900 is 10.0 points above validation (> 5 points); validation accuracy peaked at 0.9300 in "
        "epoch 2 and fell 4.0 points by the end (> 2 points) while train accuracy rose 5.0 points to 0.9900: "
        "overfitting; stop near epoch 2 or raise regularisation"]


def _noisy_spiral_run(hidden: int, flip: float = 0.2):
    """A net of ``hidden`` units trained 300 epochs on the spiral (700 train, 200 val) with ``flip`` of its labels
    flipped at random to another class, and diagnosed with its label-noise reading."""
    from engine.data import make_spiral
    from engine.diagnostics import label_noise
    from engine.trainer import TrainConfig, train

    rng = np.random.default_rng(0)
    X, y = make_spiral(300, 3, rng)
    flipped = rng.random(len(y)) < flip
    y[flipped] = (y[flipped] + rng.integers(1, 3, flipped.sum())) % 3
    order = rng.permutation(len(y))
    Xt, yt, Xv, yv = X[order[:700]], y[order[:700]], X[order[700:]], y[order[700:]]
    model = FullyConnectedNet(ModelConfig(hidden=(hidden,)), 2, 3, np.random.default_rng(0))
    reg0 = model.reg_loss(1e-4)
    res = train(model, TrainConfig(epochs=300, lr=1e-2, reg=1e-4, seed=0), Xt, yt, Xv, yv)
    return diagnose(res.status, res.loss_history, res.train_acc, res.val_acc, res.initial_loss - reg0, math.log(3),
                    unit_stats(model, Xv), chance=1 / 3, samples=(700, 200), final_reg_loss=model.reg_loss(1e-4),
                    initial_reg_loss=reg0, train_acc_history=res.train_acc_history,
                    val_acc_history=res.val_acc_history, label_noise=label_noise(model, Xt, yt))


def test_a_run_at_the_ceiling_of_its_noisy_labels_is_not_underfitting():
    # a fifth of the labels flipped: 100 units level off at train 0.77, validation 0.81, the loss flat; it was
    # "underfitting: raise capacity", but it confidently contradicts three quarters of the labels it misses, and fits
    # 93 % of the rest
    at_ceiling = _noisy_spiral_run(100)
    n = at_ceiling.numbers
    assert at_ceiling.labels == ("healthy",)
    assert (n["train_acc"], n["val_acc"], n["train_val_gap"]) == (0.7686, 0.805, -0.0364)
    assert n["late_loss_fall"] < n["late_loss_limit"]
    assert (n["contradicted_errors"], n["uncontradicted_acc"]) == (0.7542, 0.9314)
    assert describe_diagnosis(at_ceiling)[0].endswith(
        "train accuracy 0.7686 with no gap is the ceiling its labels allow, not too little capacity: it confidently "
        "contradicts 75.4% of the labels it misses (their probability under 0.4 of its own answer's; >= 67% of them: "
        "noisy or ambiguous labels), and fits 0.9314 of the other training samples (>= 0.9): more capacity would "
        "only memorise those labels")
    # 3 units on the same labels: errors at its boundary, and short of the rest: too little capacity still
    small = _noisy_spiral_run(3)
    assert small.labels == ("underfitting",)
    assert (small.numbers["train_acc"], small.numbers["contradicted_errors"], small.numbers["uncontradicted_acc"]) == (
        0.55, 0.1991, 0.603)
    assert describe_diagnosis(small)[0].endswith("underfitting: raise capacity or lower regularisation")


def test_a_loss_not_finite_before_any_update_is_a_bad_initialisation_not_a_learning_rate_too_high():
    # the first minibatch's loss is taken before the first step: a NaN there (init std 1e10 through 4 ReLU layers
    # overflows float32) was lr_too_high, "try a lower --lr", and refinement could lower lr's upper bound on it
    for first in (math.nan, math.inf):
        d = _run(loss=[first], status="diverged", train=math.nan, val=math.nan, initial=first)
        assert d.labels == ("bad_initial_loss",)
        assert describe_diagnosis(d, "nan") == [
            "the loss was NaN or inf at the first minibatch, before any update: the initial weights or the inputs "
            "are too large for the network's floats, whatever the learning rate"]
    assert _run(loss=[2.3, math.nan], status="diverged").labels == ("lr_too_high",)  # after a step: the step

