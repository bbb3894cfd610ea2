"""Honest numbers: the last epoch as a trial's value, noise-aware refinement, the final re-evaluation, retrains."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from engine.data import DataSpec
from search.campaign import Execution, execute_stage
from search.config import RunConfig
from search.space import FloatRange, refine_space
from search.stages import Stage
from tests.search.conftest import cwd_study, one_line_error
from studies.store import open_storage


def test_a_dimension_whose_thirds_score_within_noise_is_kept_and_called_insensitive():
    # reg's thirds score about the same, with lr's spread inside each: no effect beyond noise
    trials = []
    for i, reg in enumerate([1e-7, 2e-7, 5e-7, 1e-5, 2e-5, 5e-5, 1e-3, 3e-3, 8e-3]):
        lr = [1e-3, 1e-2, 1e-1][i % 3]
        value = {1e-3: 0.86, 1e-2: 0.95, 1e-1: 0.90}[lr] + (0.01 if 1e-5 <= reg <= 5e-5 else 0.0)
        trials.append(({"lr": lr, "reg": reg}, value))
    space = {"lr": FloatRange(1e-4, 1.0), "reg": FloatRange(1e-8, 1e-2)}
    new, notes = refine_space(space, trials, top=3, edge=0.1, value_se=0.01)
    assert new["reg"] == space["reg"]
    reg_note = next(n for n in notes if n.startswith("reg"))
    # the better 6 of the 9 trials, two per third
    assert reg_note.startswith("reg: insensitive, range kept at 1e-08:0.01: mean value per third 0.925/0.935/0.925 "
                               "(2/2/2 trials)")
    strong = [({"lr": lr, "reg": 1e-3}, 0.5 + 0.4 * (lr == 1e-2)) for lr in [1e-4, 1e-3, 1e-2, 1e-2, 1e-1, 1e-4]]
    new, notes = refine_space({"lr": FloatRange(1e-4, 1.0)}, strong, top=2, edge=0.1, value_se=0.01)
    assert "insensitive" not in notes[0] and new["lr"].width < 4


def test_a_range_whose_upper_third_holds_no_good_trial_is_narrowed_not_called_insensitive():
    # lr 1e-4:1 (thirds split at 0.00215 and 0.0464): the completed runs score alike in the lower two thirds, and the
    # upper third has none (a scheduler pruned them there)
    trials = [({"lr": lr}, value) for lr, value in [(2e-4, 0.951), (3e-4, 0.95), (5e-4, 0.95), (3e-3, 0.951),
                                                     (5e-3, 0.95), (8e-3, 0.95)]]
    new, notes = refine_space({"lr": FloatRange(1e-4, 1.0)}, trials, top=5, edge=0.1, value_se=0.01)
    assert notes == ["lr: best 0.0002 is 0.3 decades from the lower bound 0.0001, 7.5 % of the range's 4 (within 10 "
                     "%); new range 7.96e-07:0.0126 (widened downward)"]
    assert new["lr"].high == pytest.approx(0.012559, rel=1e-4)


AUTO_ARGS = ("auto", "--space", "lr=1e-3:1e-1", "--space", "hidden=16:64:int", "--train-size", "300", "--trials", "6",
             "--epochs", "2", "--max-fine", "1", "--top", "2", "--repeats", "2", "--retrain-seeds", "2", "--promote", "3")


def test_auto_re_evaluates_the_top_configurations_and_retrains_the_best_mean(run_cli, monkeypatch):
    result = run_cli(*AUTO_ARGS, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    stages = [s["stage"] for s in out["stages"]]
    assert stages == ["coarse", "promote-1", "fine-1", "final"]
    storage = open_storage("sqlite:///search.db", create=False)
    samplers = {s.user_attrs["stage"]: s.user_attrs["sampler"] for s in storage.get_all_studies()}
    assert samplers == {"coarse": "random", "promote-1": "fixed", "fine-1": "tpe", "final": "fixed"}
    spikes = {s.user_attrs["stage"]: s.user_attrs["explode_factor"] for s in storage.get_all_studies()}
    assert spikes == {"coarse": 3.0, "promote-1": 3.0, "fine-1": 3.0, "final": None}  # final: as the retrains
    final = out["final"]
    assert final["runs"] == 2 and final["retrained"]["runs"] == 2 and final["epochs"] == 4 and final["stage"] == "final"
    study = optuna.load_study(study_name="digits/final", storage=open_storage("sqlite:///search.db", create=False))
    trials = study.get_trials()
    assert len(trials) == 4  # 2 configurations x 2 runs
    configs = {json.dumps(t.params, sort_keys=True) for t in trials}
    assert len(configs) == 2 and json.dumps(final["params"], sort_keys=True) in configs
    chosen = [t.value for t in trials if t.params == final["params"]]
    assert abs(final["value"] - sum(chosen) / 2) < 1e-12  # the reported number is the mean of its runs
    # the final stage's table ranks configurations as it chooses: by their mean over the runs
    top = out["stages"][-1]["top"]
    assert [row["runs"] for row in top] == [2, 2] and top[0]["value"] >= top[1]["value"]
    assert top[0]["params"] == final["params"] and set(top[0]) == {"runs", "value", "std", "params"}
    coarse_top = out["stages"][0]["top"]  # a searching stage's best trials: their parameters nested, as search best's
    assert set(coarse_top[0]) == {"number", "value", "params", "seconds"}
    assert coarse_top[0]["params"] == out["stages"][0]["best_params"]
    assert out["stages"][-1]["best_value"] == final["value"] and out["stages"][-1]["best_params"] == final["params"]
    other = [t.value for t in trials if t.params != final["params"]]
    assert abs(top[1]["value"] - sum(other) / 2) < 1e-12 and abs(top[1]["std"] - abs(other[0] - other[1]) / 2) < 1e-12
    assert 0.8 < final["retrained"]["test_acc"] <= 1.0  # 0.93 here; chance is 0.1
    stored = study.user_attrs["retrained"]  # the retrains' scores are kept with the campaign
    assert len(stored["test_acc"]) == 2 and abs(sum(stored["test_acc"]) / 2 - final["retrained"]["test_acc"]) < 1e-12
    # the population standard deviation of the two
    assert abs(final["retrained"]["test_std"] - abs(stored["test_acc"][0] - stored["test_acc"][1]) / 2) < 1e-12
    # the report's summary.json gives the same numbers under the same names
    from studies.report import campaign_report

    summary = campaign_report(storage, "digits", images=False).summary
    by_study = {s["study"]: s for s in summary["stages"]}
    assert all(abs(s["training_seconds"] - by_study[s["study"]]["training_seconds"]) < 1e-9 for s in out["stages"])
    assert all({k: by_study[s["study"]]["counts"][k] for k in s["counts"]} == s["counts"] for s in out["stages"])
    chosen = summary["chosen"]
    assert set(final) <= set(chosen) and {k: chosen[k] for k in final} == final  # why no further fine stage too
    assert final["stopped"] == "--max-fine 1: 1 fine stage ran"

    # the same command again: every stage of the chain is listed (not a grid beside it), nothing is trained (the
    # retrains are read back)
    assert run_cli("grid", "--campaign", "digits").exit_code == 0
    import search.campaign

    monkeypatch.setattr(search.campaign, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    again = run_cli(*AUTO_ARGS, "--json")
    assert again.exit_code == 0, again.output
    out_again = json.loads(again.stdout)
    assert [s["stage"] for s in out_again["stages"]] == stages and not any(s["ran"] for s in out_again["stages"])
    assert out_again["final"] == final
    text = " ".join(run_cli(*AUTO_ARGS).stdout.split())
    assert ("digits/coarse, digits/promote-1, digits/fine-1, digits/final were already complete; nothing to run"
            in text) and text.count("already complete") == 1


@pytest.mark.parametrize("factor", [3.0, None])
def test_a_stage_without_an_explode_factor_trains_through_a_loss_spike(tmp_path, factor):
    # Adam at lr 0.7 on 400 digits: the loss passes 3x its first in the first epoch and stays a number
    run = RunConfig(data=DataSpec("digits", train_size=400)).with_params({"train.epochs": 3})
    stage = Stage(campaign="x", stage="final", space={"lr": FloatRange(0.5, 0.9)}, n_trials=2, run=run,
                  sampler="fixed", points=({"lr": 0.7}, {"lr": 0.7}), explode_factor=factor)
    url = f"sqlite:///{tmp_path / 'spike.db'}"
    execute_stage(Execution(url, jobs=1, progress="quiet"), stage)
    study = optuna.load_study(study_name="x/final", storage=open_storage(url))
    assert Stage.from_attrs(study.user_attrs).explode_factor == factor  # None survives the stored attributes
    trials = study.get_trials()
    if factor is None:
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
        assert [t.user_attrs["iterations"] for t in trials] == [24, 24]  # 3 epochs of 8 minibatches
    else:
        assert [(t.state, t.user_attrs["stop_reason"]) for t in trials] == [(TrialState.PRUNED, "exploded")] * 2
        assert all(t.user_attrs["iterations"] <= 10 for t in trials)


def test_train_scores_the_test_split_when_asked(run_cli):
    out = json.loads(run_cli("train", "--epochs", "10", "--lr", "1e-2", "--test", "--json").stdout)
    assert 0.9 < out["test_acc"] <= 1.0
    assert "test_acc" not in json.loads(run_cli("train", "--epochs", "1", "--json").stdout)


def _first_explosion(losses: list[float]) -> int | None:
    from search.objective import ExplosionObserver

    observer = ExplosionObserver(3.0)
    return next((i for i, loss in enumerate(losses, start=1) if observer.on_iteration(i, loss)), None)


def test_a_loss_that_spikes_for_a_few_minibatches_is_not_an_explosion_and_one_that_stays_up_is():
    # what Adam's first steps on raw features of very different scales do (benchmarks/README.md, "False
    # explosions"): 3-10x the first loss for one to three minibatches, then training as well as any run
    assert _first_explosion([2.3, 9.3, 8.0, 7.1, 4.0, 2.5, 2.0] + [1.5] * 50) is None
    assert _first_explosion([2.3, 30.0] + [2.0] * 50) is None  # one wild minibatch: the mean of 10 is 4.8
    assert _first_explosion([2.3] + [8.0] * 50) == 10  # stays above 3x: stopped once 10 losses are averaged
    assert _first_explosion([2.3, 60.0] + [2.3] * 50) == 10  # a blow-up to 26x, then a dead net at chance
    # a steady climb: at iteration 28 the last 10 are 2.3, 2.3, 2, 4, ..., 16, whose mean 7.66 passes 6.9
    assert _first_explosion([2.3] * 20 + [2.0 * k for k in range(1, 30)]) == 28


def test_an_epoch_shorter_than_the_window_is_judged_on_the_losses_it_has():
    from search.objective import ExplosionObserver

    for losses, verdict in (([3.19, 66.1, 36.8, 40.3, 40.6, 39.1, 35.9, 35.2], "exploded"),  # lr 0.7, digits-400
                            ([2.3, 9.3, 8.0, 7.1, 4.0, 2.5, 2.0, 1.5], None)):  # a spike, then training (mean 4.6)
        observer = ExplosionObserver(3.0)
        assert [observer.on_iteration(i, loss) for i, loss in enumerate(losses, start=1)] == [None] * 8
        assert observer.on_epoch(1, 0.5, 0.5) == verdict
    # an epoch of two minibatches (wine in batches of 50): one spike is not judged; the next epochs fill the window
    observer = ExplosionObserver(3.0)
    assert [observer.on_iteration(i, loss) for i, loss in enumerate((1.10, 6.09), start=1)] == [None, None]
    assert observer.on_epoch(1, 0.9, 0.9) is None
    for i, loss in enumerate((1.0, 0.9), start=3):
        observer.on_iteration(i, loss)
    assert observer.on_epoch(2, 0.9, 0.9) is None  # 4 losses, mean 2.27 < 3.3
    diverging = ExplosionObserver(3.0)
    for i, loss in enumerate((1.10, 6.09, 8.0), start=1):
        diverging.on_iteration(i, loss)
    assert diverging.on_epoch(1, 0.1, 0.1) == "exploded"  # 3 losses, mean 5.06


def test_a_run_that_classifies_its_training_set_is_not_stopped_as_exploded_until_an_epoch_ends_below_it():
    from search.objective import ExplosionObserver

    # 2 updates an epoch: the window of 10 losses spans 5 epochs; wine at Adam lr 0.4 rose to 3.0-4.3x its first
    # loss (its L2 term grew) at training accuracy 0.9-1.0, and was stopped in epoch 3 to 5
    observer = ExplosionObserver(3.0, chance=0.4)  # spared from 0.4 + 0.8 x 0.6 = 0.88
    verdicts = []
    epochs = (((1.8, 2.0), 0.65), ((7.0, 8.0), 0.92), ((8.0, 7.0), 0.98), ((7.0, 7.0), 1.0), ((6.0, 6.0), 1.0))
    for epoch, (losses, train_acc) in enumerate(epochs, start=1):
        verdicts += [observer.on_iteration(2 * epoch - 2 + i, loss) for i, loss in enumerate(losses, start=1)]
        verdicts.append(observer.on_epoch(epoch, train_acc, 0.95))
    assert verdicts == [None] * 15  # the window's mean 5.98 passed 5.4 from iteration 6 on
    # its loss still up and its training accuracy down to 0.8 (below 0.88): stopped at the epoch's end
    assert [observer.on_iteration(11, 6.0), observer.on_iteration(12, 6.0)] == [None, None]
    assert observer.on_epoch(6, 0.8, 0.8) == "exploded"
    # the iterations of an epoch after one that ended below: judged as before
    observer = ExplosionObserver(3.0, chance=0.4)
    observer.on_iteration(1, 1.8)
    assert observer.on_epoch(1, 0.5, 0.5) is None
    assert [observer.on_iteration(i, 8.0) for i in range(2, 12)] == [None] * 8 + ["exploded"] * 2
    # the share is of the way from chance: 0.95 on 90 % of one class is not trained (0.98 is)
    observer = ExplosionObserver(3.0, chance=0.9)
    for i, loss in enumerate((1.0, 5.0, 5.0), start=1):
        observer.on_iteration(i, loss)
    assert observer.on_epoch(1, 0.95, 0.95) == "exploded"
    assert ExplosionObserver(3.0, chance=0.9).trained_from == pytest.approx(0.98)


def test_wine_at_a_high_learning_rate_trains_its_epochs_where_it_was_stopped_as_exploded(run_cli, tmp_path):
    # 124 training rows in batches of 50: the run reached training accuracy 1.0 in epoch 5, then was stopped there
    # as exploded (its loss 3.2x its first); run on, its loss came back under its first by epoch 20
    from sklearn.datasets import load_wine

    load_wine(as_frame=True).frame.to_csv(tmp_path / "wine.csv", index=False)
    result = run_cli("train", "--data", str(tmp_path / "wine.csv"), "--lr", "0.3967", "--reg", "0.007",
                     "--epochs", "20", "--seed", "1", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["stop_reason"], out["epochs"], out["iterations"]) == ("completed", 20, 40)
    first = out["loss_history"][0]
    assert max(out["loss_history"][10:20]) > 3 * first and min(out["train_acc_history"][2:]) >= 0.95
    assert sum(out["loss_history"][-10:]) < 10 * first and out["val_acc"] >= 0.9


def test_auto_after_a_fine_stage_added_past_its_final_says_why_it_cannot_go_on(run_cli):
    assert run_cli(*AUTO_ARGS).exit_code == 0
    assert run_cli("fine", "--campaign", "digits", "--trials", "2", "--promote", "2").exit_code == 0
    again = run_cli(*AUTO_ARGS)
    one_line_error(again, "stage digits/final chose from digits/fine-1, and digits/fine-2 was added after it",
                   "--campaign NAME")


def test_auto_again_with_a_higher_max_fine_reads_its_conclusion_back(run_cli):
    first = run_cli(*AUTO_ARGS, "--json")
    assert first.exit_code == 0, first.output
    more = [a if a != "1" or AUTO_ARGS[i - 1] != "--max-fine" else "3" for i, a in enumerate(AUTO_ARGS)]
    again = run_cli(*more, "--json")
    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    assert [s["stage"] for s in out["stages"]] == ["coarse", "promote-1", "fine-1", "final"]  # no fine-2 added
    assert not any(s["ran"] for s in out["stages"])
    assert out["final"]["stopped"] == "the campaign's final stage chose from digits/fine-1 before"
    assert out["final"]["params"] == json.loads(first.stdout)["final"]["params"]
    from studies.report import campaign_report  # the report keeps the first reason, not "chose ... before"

    chosen = campaign_report(open_storage("sqlite:///search.db", create=False), "digits",
                             images=False).summary["chosen"]
    assert chosen["stopped"] == json.loads(first.stdout)["final"]["stopped"] == "--max-fine 1: 1 fine stage ran"


def test_auto_run_again_says_it_reuses_a_coarse_stage_of_the_same_settings(run_cli):
    # the same search auto after it finished said "continuing from autoc/coarse as it was created (lr=...)", which
    # reads as if a setting had been changed
    small = ("--campaign", "same", "--train-size", "200", "--max-fine", "0", "--top", "1", "--repeats", "1",
             "--retrain-seeds", "1")
    first = run_cli("auto", *small)
    assert first.exit_code == 0, first.output
    assert "continuing from" not in first.stderr and "reusing" not in first.stderr
    again = run_cli("auto", *small)
    assert again.exit_code == 0, again.output
    assert " ".join(again.stderr.split()).startswith(
        "reusing same/coarse, which exists with the same settings (lr=1e-06:1 reg=1e-06:10 hidden=16:64:int, "
        "50 trials, 3 epochs, sampler random)")
    assert "as it was created" not in again.stderr


def test_auto_continues_a_campaign_begun_with_search_coarse_when_it_gives_no_search_setting(run_cli):
    # it refused: "stage c/coarse already exists with other settings", unless every setting was given again
    assert run_cli("coarse", "--campaign", "c", "--space", "hidden=16:64:int", "--trials", "4", "--epochs", "1",
                   "--train-size", "200").exit_code == 0
    small = ("--campaign", "c", "--train-size", "200", "--max-fine", "0", "--top", "1", "--repeats", "1",
             "--retrain-seeds", "1")
    refused = run_cli("auto", *small, "--trials", "5")  # a setting given: it must match, as before
    assert refused.exit_code == 2 and "--trials 5 where it has 4" in refused.output
    # another run option: refused without first saying that it continues from the coarse stage
    other_seed = run_cli("auto", *small, "--seed", "3")
    assert other_seed.exit_code == 2 and "--seed 3 where it has 0" in other_seed.stderr
    assert "continuing from" not in other_seed.stderr
    result = run_cli("auto", *small)
    assert result.exit_code == 0, result.output
    assert " ".join(result.stderr.split()).startswith(
        "continuing from c/coarse as it was created (hidden=16:64:int, 4 trials, 1 epoch, sampler random)")
    again = json.loads(run_cli("auto", *small, "--json").stdout)
    coarse = again["stages"][0]
    assert (coarse["study"], coarse["n_trials"], coarse["epochs"], coarse["space"]) == (
        "c/coarse", 4, 1, {"hidden": "16:64:int"})
    assert again["final"]["params"].keys() == {"hidden"}


def test_auto_continues_a_campaign_begun_on_other_data_without_its_data_options_again(run_cli):
    # it refused: "... data.name digits where it has spiral, data.train_size - where it has 200; run it with those
    # settings", where search fine --campaign s continues the same campaign with no option
    assert run_cli("coarse", "--campaign", "s", "--data", "spiral", "--train-size", "200", "--space",
                   "hidden=16:64:int", "--trials", "4", "--epochs", "1").exit_code == 0
    result = run_cli("auto", "--campaign", "s", "--max-fine", "0", "--top", "1", "--repeats", "1",
                     "--retrain-seeds", "1")
    assert result.exit_code == 0, result.output
    assert " ".join(result.stderr.split()).startswith(
        "continuing from s/coarse as it was created (hidden=16:64:int, 4 trials, 1 epoch, sampler random)")
    final = cwd_study("s/final")
    data = final.trials[0].system_attrs["config"]["data"]
    assert (data["name"], data["train_size"], len(final.trials)) == ("spiral", 200, 1)
    # a run option given: the command's run configuration, which must match the stage's, as before
    other = run_cli("auto", "--campaign", "s", "--train-size", "300", "--max-fine", "0")
    assert other.exit_code == 2 and "--train-size 300 where it has 200" in other.stderr
