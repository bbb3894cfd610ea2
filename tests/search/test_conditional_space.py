"""Dimensions that have an effect only with some value of another (momentum with momentum/nesterov, init_std with
the std-scaled initialisers, relu_bias with ReLU-family units): refused where they never apply, sampled only in
the trials where they do, and handled where trials lack them (grid, refinement, promotion, tables, importance)."""
from __future__ import annotations

import json
import os

import optuna
import pandas as pd
import pytest

from search.config import RunConfig
from search.space import Choice, FloatRange, applies, refine_space
from search.stages import Stage, promotion_stage
from studies.report import campaign_report, param_importance
from studies.store import open_storage
from tests.search.conftest import cwd_study, one_line_error

OPTIMIZERS = ["--space", "optimizer=adam,momentum,sgd", "--space", "momentum=0.5:0.99", "--space", "lr=1e-3:1e-1"]


@pytest.mark.parametrize("args, line", [
    (["--space", "momentum=0.5:0.99"],
     "error: --space momentum has no effect with optimizer adam: it applies only with optimizer momentum or "
     "nesterov (set --optimizer or search it too)"),
    (["--space", "momentum=0.5:0.99", "--space", "optimizer=adam,sgd"],
     "error: --space momentum has no effect with optimizer adam, sgd: it applies only with optimizer momentum or "
     "nesterov (set --optimizer or search it too)"),
    (["--space", "init_std=1e-3:1", "--init", "xavier"],
     "error: --space init_std has no effect with init xavier: it applies only with init normal, uniform, constant, "
     "sparse or orthogonal (set --init or search it too)"),
    (["--space", "relu_bias=0:0.1", "--activation", "tanh"],
     "error: --space relu_bias has no effect with activation tanh: it applies only with activation relu, "
     "leaky_relu, prelu, elu or maxout (set --activation or search it too)"),
])
def test_a_dimension_that_can_never_have_an_effect_is_refused_before_the_database_is_made(run_cli, args, line):
    assert one_line_error(run_cli("coarse", *args, "--trials", "2", "--epochs", "1")) == line
    assert not os.path.exists("search.db")


@pytest.mark.parametrize("args, line", [
    (["train", "--init-std", "0.1"],
     "error: --init-std has no effect with init he: it applies only with init normal, uniform, constant, sparse or "
     "orthogonal (set --init)"),
    (["train", "--momentum", "0.5"],
     "error: --momentum has no effect with optimizer adam: it applies only with optimizer momentum or nesterov (set "
     "--optimizer)"),
    (["coarse", "--relu-bias", "0.1", "--activation", "tanh"],
     "error: --relu-bias has no effect with activation tanh: it applies only with activation relu, leaky_relu, prelu, "
     "elu or maxout (set --activation)"),
    (["coarse", "--momentum", "0.5", "--space", "optimizer=adam,sgd"],
     "error: --momentum has no effect with optimizer adam, sgd: it applies only with optimizer momentum or nesterov "
     "(set --optimizer)"),
])
def test_an_option_given_where_it_has_no_effect_is_refused(run_cli, args, line):
    assert one_line_error(run_cli(*args, "--epochs", "1")) == line
    assert not os.path.exists("search.db")


def test_search_layers_refuses_an_init_std_its_init_ignores_as_search_train_does(run_cli, tmp_path):
    # `search layers --init-std 0.01` printed the default xavier's statistics, "keeps its scale", as if of std 0.01
    assert one_line_error(run_cli("layers", "--init-std", "0.01", "--plot", "x.png")) == (
        "error: --init-std has no effect with init xavier: it applies only with init normal, uniform, constant, "
        "sparse or orthogonal (set --init)")
    assert not (tmp_path / "x.png").exists()
    assert one_line_error(run_cli("layers", "--init", "he", "--init-std", "0.1")).startswith(
        "error: --init-std has no effect with init he: ")
    collapsed = run_cli("layers", "--init", "normal", "--init-std", "0.01", "--json")
    assert collapsed.exit_code == 0 and json.loads(collapsed.stdout)[-1]["std"] < 1e-5
    assert run_cli("layers", "--init", "orthogonal", "--init-std", "2", "--depth", "2").exit_code == 0

def test_an_option_given_for_the_trials_that_use_it_is_accepted(run_cli):
    result = run_cli("coarse", "--momentum", "0.5", "--space", "optimizer=adam,momentum", "--trials", "4",
                     "--epochs", "1", "--train-size", "200")
    assert result.exit_code == 0, result.output
    configs = [RunConfig.from_dict(t.system_attrs["config"]) for t in cwd_study("digits/coarse").get_trials()]
    assert {c.train.optimizer for c in configs} == {"adam", "momentum"}
    assert all(c.train.momentum == 0.5 for c in configs)
    assert run_cli("train", "--init", "normal", "--init-std", "0.1", "--epochs", "1",
                   "--train-size", "200").exit_code == 0


def test_a_fixed_parent_that_uses_it_is_accepted(run_cli):
    result = run_cli("coarse", "--optimizer", "nesterov", "--space", "momentum=0.5:0.99", "--trials", "3",
                     "--epochs", "1", "--train-size", "300")
    assert result.exit_code == 0, result.output
    assert [sorted(t.params) for t in cwd_study("digits/coarse").get_trials()] == [["momentum"]] * 3


def test_momentum_is_sampled_only_with_the_optimizers_that_use_it_and_each_stage_copes(run_cli):
    coarse = run_cli("coarse", *OPTIMIZERS, "--trials", "18", "--epochs", "2", "--train-size", "400")
    assert coarse.exit_code == 0, coarse.output
    trials = cwd_study("digits/coarse").get_trials()
    assert len(trials) == 18 and all(t.state.name == "COMPLETE" for t in trials)
    by_optimizer = {o: [t for t in trials if t.params["optimizer"] == o] for o in ("adam", "momentum", "sgd")}
    assert all(by_optimizer.values())  # 18 draws of 3 categories with this seed: each one at least once
    for optimizer, group in by_optimizer.items():
        for t in group:
            assert ("momentum" in t.params) == (optimizer == "momentum")
            config = RunConfig.from_dict(t.system_attrs["config"])
            assert config.train.optimizer == optimizer
            if optimizer == "momentum":
                assert config.train.momentum == t.params["momentum"]
    # the stage's table shows "-" where a trial has no momentum
    table = coarse.output[coarse.output.index("  trial    value"):].splitlines()
    assert table[0].split() == ["trial", "value", "optimizer", "momentum", "lr"]
    assert all((row.split()[3] == "-") == (row.split()[2] != "momentum") for row in table[1:6])

    # the promotion keeps the best configurations whatever their optimizer (an adam one lacks momentum)
    best_five = sorted(trials, key=lambda t: t.value, reverse=True)[:5]
    promoted = promotion_stage(cwd_study("digits/coarse"), None, 5)
    assert list(promoted.points) == [t.params for t in best_five]

    # the grid: 3 values of lr and momentum for momentum, 3 of lr for adam and sgd: 15 points within the 18 trials
    # (k = 2 by the count of categories alone, 8 points; k = 4 would be 24)
    grid = run_cli("grid")
    assert grid.exit_code == 0, grid.output
    text = " ".join(grid.stdout.split())  # said once, in the summary (it was also said before the trials)
    assert text.count("fewer than its budget") == 1 and "range: grid of 15 points" in text
    points = [t.params for t in cwd_study("digits/grid").get_trials()]
    assert len(points) == 15
    assert sum(p["optimizer"] == "momentum" for p in points) == 9
    assert all(("momentum" in p) == (p["optimizer"] == "momentum") for p in points)
    assert len({tuple(sorted(p.items())) for p in points}) == 15
    stage = Stage.from_attrs(cwd_study("digits/grid").user_attrs)
    assert stage.n_trials == 15 and stage.range_notes[0].startswith(
        "grid of 15 points (3 optimizer x 3 momentum x 3 lr, each combination once without the dimensions that have "
        "no effect in it) "
        "beside 18 trials of digits/coarse: 3 fewer than its budget")

    fine = run_cli("fine", "--trials", "6")
    assert fine.exit_code == 0, fine.output
    assert len(cwd_study("digits/fine-1").get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 6


def test_refinement_reads_a_conditional_dimension_from_the_trials_that_used_it():
    space = {"optimizer": Choice(("adam", "momentum")), "momentum": FloatRange(0.5, 0.99, log=False)}
    trials = [({"optimizer": "adam"}, 0.95), ({"optimizer": "momentum", "momentum": 0.9}, 0.9),
              ({"optimizer": "adam"}, 0.85), ({"optimizer": "momentum", "momentum": 0.7}, 0.8)]
    new, notes = refine_space(space, trials, top=2)
    assert notes[1] == ("momentum: in the 2 of 4 trials that used it, best 0.9 is inside 0.5:0.99:linear; narrowed "
                        "around the top 2 trials to 0.651:0.949:linear (0.3 of 0.49 units)")
    with_momentum = [(p, v) for p, v in trials if p["optimizer"] == "momentum"]  # every trial used it
    assert refine_space({"momentum": space["momentum"]}, with_momentum, top=2)[1] == [
        "momentum: best 0.9 is inside 0.5:0.99:linear; narrowed around the top 2 trials to 0.651:0.949:linear (0.3 of "
        "0.49 units)"]
    # one trial used it: nothing to narrow around (it had been narrowed to a sliver around that one value)
    one = trials[:3]
    new, notes = refine_space(space, one, top=2)
    assert new["momentum"] == space["momentum"] and notes[1] == "momentum: kept at 0.5:0.99:linear: 1 of 3 trials used it"
    only_adam = [(p, v) for p, v in trials if p["optimizer"] == "adam"]
    new, notes = refine_space({"momentum": space["momentum"]}, only_adam, top=2)  # the trials' optimizer was fixed
    assert new["momentum"] == space["momentum"]
    assert notes == ["momentum: kept at 0.5:0.99:linear: no finished trial used it"]
    # the top trials all adam: the optimizer keeps only adam, and momentum is not narrowed on the others
    mostly_adam = [({"optimizer": "adam"}, 0.95 - 0.01 * i) for i in range(4)] + trials[1::2]
    new, notes = refine_space(space, mostly_adam, top=3)
    assert new["optimizer"] == Choice(("adam",)) and new["momentum"] == space["momentum"]
    assert notes[1] == ("momentum: kept at 0.5:0.99:linear, unused from here: optimizer keeps only adam, with "
                        "which it has no effect")


def test_qmc_draws_a_conditional_dimension_anew_in_each_trial(run_cli):
    result = run_cli("coarse", "--sampler", "qmc", "--seed", "2", *OPTIMIZERS[:4], "--trials", "12", "--epochs", "1",
                     "--train-size", "200")
    assert result.exit_code == 0, result.output
    momenta = [t.params["momentum"] for t in cwd_study("digits/coarse").get_trials() if "momentum" in t.params]
    assert len(momenta) >= 4 and len(set(momenta)) == len(momenta)  # once, every such trial drew the same value
    assert "sampled independently" not in result.output


def test_a_grid_stage_stored_without_its_points_is_continued_as_before(run_cli):
    # grid stages stored before they kept their points: the same command finds the stage complete, no conflict
    assert run_cli("coarse", "--trials", "9", "--epochs", "1", "--train-size", "200").exit_code == 0
    assert run_cli("grid").exit_code == 0
    study = cwd_study("digits/grid")
    stage = Stage.from_attrs(study.user_attrs)
    study.set_user_attr("points", [])
    assert Stage.from_attrs(cwd_study("digits/grid").user_attrs).points == stage.points
    again = run_cli("grid")
    assert again.exit_code == 0, again.output
    assert "already complete" in again.output and len(study.get_trials()) == 9


def test_applies_reads_the_trial_first_then_the_fixed_option():
    base = RunConfig().with_params({"train.optimizer": "nesterov"})
    assert applies("momentum", {}, base) and applies("lr", {}, RunConfig())
    assert not applies("momentum", {"optimizer": "adam"}, base)
    assert applies("relu_bias", {"activation": "elu"}, base) and not applies("relu_bias", {"activation": "tanh"}, base)


def test_importance_rates_what_every_trial_has_and_names_what_it_left_out():
    rows = []
    for i in range(12):
        optimizer = ("adam", "momentum", "sgd")[i % 3]
        lr = 10 ** (-3 + 2 * i / 11)
        row = {"state": "COMPLETE", "value": 0.5 + 0.03 * i + (0.2 if optimizer == "adam" else 0.0),
               "param_optimizer": optimizer, "param_lr": lr, "param_momentum": 0.6 + 0.03 * i
               if optimizer == "momentum" else float("nan")}
        rows.append(row)
    space = {"optimizer": {"type": "categorical", "choices": ["adam", "momentum", "sgd"]},
             "momentum": {"type": "float", "low": 0.5, "high": 0.99, "log": False},
             "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}}
    out = param_importance(pd.DataFrame(rows), space)
    assert out["trials_used"] == 12 and out["left_out"] == ["momentum"]
    assert set(out["importance"]) == {"optimizer", "lr"}
    assert abs(sum(out["importance"].values()) - 1) < 1e-9


def test_coarse_help_shows_a_conditional_space_and_it_runs(run_cli):
    examples = run_cli("coarse", "--help").stdout.split("Examples:")[1].split("\n\n")[0].replace("\\\n", " ")
    conditional = [line.split("#")[0].split() for line in examples.splitlines() if "momentum=" in line]
    assert conditional == [["search", "coarse", "--space", "depth=1:4", "--space", "optimizer=adam,momentum", "--space",
                            "momentum=0.5:0.99"]]
    result = run_cli(*conditional[0][1:], "--trials", "4", "--epochs", "1", "--train-size", "200")
    assert result.exit_code == 0, result.output
    assert {("momentum" in t.params) == (t.params["optimizer"] == "momentum")
            for t in cwd_study("digits/coarse").get_trials()} == {True}


def test_the_pair_plot_without_importance_takes_dimensions_every_trial_has(run_cli):
    # once momentum x optimizer, the first two searched: every adam trial, the best among them, left out of the plot
    assert run_cli("coarse", "--space", "momentum=0.5:0.99", *OPTIMIZERS[:2], "--space", "lr=1e-3:1e-1",
                   "--trials", "6", "--epochs", "1", "--train-size", "200").exit_code == 0
    storage = open_storage("sqlite:///search.db", create=False)
    pair = campaign_report(storage, "digits", images=False).summary["pair"]
    storage.engine.dispose()
    assert pair == {"params": ["optimizer", "lr"], "reason": "no stage has an importance estimate: the first two "
                    "dimensions searched, those every trial has first"}
