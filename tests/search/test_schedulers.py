"""--scheduler asha: successive halving inside a stage, on a real SQLite study database."""
from __future__ import annotations

import json
from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

from engine.data import DataSpec
from search.campaign import DEFAULT_SPACE, Execution, coarse_stage, execute_stage, final_stage, with_fine_choices
from search.config import RunConfig
from search.schedulers import ASHA_REDUCTION, asha_min_epochs, asha_rungs
from search.stages import Stage, make_pruner, promotion_stage, refined_stage
from studies.store import open_storage
from tests.search.conftest import one_line_error

RUN = RunConfig(data=DataSpec("digits", train_size=400)).with_params({"train.epochs": 9})
N = 12


@pytest.fixture(scope="module")
def asha_study(tmp_path_factory) -> optuna.Study:
    """A 12-trial, 9-epoch asha stage (rungs at epochs 1 and 3) run by one worker."""
    url = f"sqlite:///{tmp_path_factory.mktemp('asha') / 'search.db'}"
    stage = coarse_stage("a", RUN, DEFAULT_SPACE, N, seed=3, scheduler="asha")
    execute_stage(Execution(url, jobs=1, progress="quiet"), stage)
    return optuna.load_study(study_name="a/coarse", storage=open_storage(url))


def test_asha_rungs_are_m_3m_9m_before_the_last_epoch():
    assert [asha_rungs(e) for e in (1, 3, 9, 12, 24, 100)] == [[], [1], [1, 3], [1, 3, 9], [3, 9], [12, 36]]
    assert asha_min_epochs(24) == 3 and ASHA_REDUCTION == 3


def _replay_asha(trials: list, rungs: list[int]) -> int:
    """Successive halving replayed in trial order from the stored per-epoch values: how many reach the end."""
    seen: dict[int, list[float]] = {r: [] for r in rungs}
    reached = 0
    for t in sorted(trials, key=lambda t: t.number):
        if t.user_attrs["stop_reason"] in ("exploded", "nan"):
            continue
        promoted = True
        for rung in rungs:
            value = t.intermediate_values[rung]
            seen[rung].append(value)
            ranked = sorted(seen[rung], reverse=True)
            if value < ranked[max(len(ranked) // ASHA_REDUCTION - 1, 0)]:
                promoted = False
                break
        reached += promoted
    return reached


def test_asha_stage_prunes_at_rungs_and_still_ends_with_exactly_n_finished(asha_study):
    trials = asha_study.get_trials()
    assert len(trials) == N
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    reasons = [t.user_attrs["stop_reason"] for t in trials]
    # the runs at lr 0.4 and 0.7 explode; with 8 iterations an epoch the explosion test judges them at the end of
    # epoch 1, where its verdict is kept over the scheduler's
    assert (reasons.count("completed"), reasons.count("pruned"), reasons.count("exploded")) == (3, 7, 2)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == _replay_asha(trials, [1, 3]) == 3
    for t in complete:
        assert sorted(t.intermediate_values) == list(range(1, 10)) and t.value == t.intermediate_values[9]
    for t in trials:
        if t.user_attrs["stop_reason"] == "pruned":
            assert t.state == TrialState.PRUNED
            assert max(t.intermediate_values) in (1, 3)  # stopped at a rung, never at the last epoch
            assert t.value == t.intermediate_values[max(t.intermediate_values)]
            assert t.user_attrs["iterations"] == max(t.intermediate_values) * 8  # 400 samples, batch 50
    assert asha_study.user_attrs["scheduler"] == "asha"


def test_the_summary_of_an_asha_stage_tells_the_schedulers_stops_from_explosions(asha_study, capsys, monkeypatch):
    # "3 complete, 9 pruned of 12": 7 stopped by successive halving and 2 whose loss exploded, told apart by the
    # report alone
    from search.campaign import summarise
    from search.cli.stages import print_summary

    monkeypatch.setenv("COLUMNS", "200")
    summary = summarise(asha_study, created=False, errors=[])
    assert summary.pruned_by == {"pruned": 7, "exploded": 2}
    print_summary(summary)
    assert capsys.readouterr().out.splitlines()[1].startswith(
        "a/coarse: 3 complete, 9 pruned (7 by the scheduler, 2 exploded) of 12; 9 epochs a trial")


def test_fine_stages_inherit_the_scheduler_and_fixed_stages_never_use_one(asha_study):
    fine = refined_stage(asha_study, top=2, edge=0.1, epochs=None, n_trials=None)
    assert fine.scheduler == "asha" and with_fine_choices(fine, "tpe", "none").scheduler == "none"
    assert with_fine_choices(fine, "tpe", None).sampler == "tpe"
    assert promotion_stage(asha_study, None, 2).scheduler == "none"
    assert final_stage(asha_study, top=2, repeats=2).scheduler == "none"
    assert isinstance(make_pruner(fine), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner(replace(fine, scheduler="none")), optuna.pruners.NopPruner)


def test_a_stage_stored_without_the_scheduler_attribute_loads_as_none():
    attrs = coarse_stage("old", RUN, DEFAULT_SPACE, 5, seed=0).attrs()
    del attrs["scheduler"]
    assert Stage.from_attrs(attrs).scheduler == "none"


@pytest.mark.parametrize("command", ["coarse", "fine", "auto"])
def test_a_bad_scheduler_is_one_line_exit_2_and_nothing_written(run_cli, tmp_path, command):
    one_line_error(run_cli(command, "--scheduler", "fifo"), "--scheduler", "fifo")
    assert not (tmp_path / "search.db").exists()


def test_scheduler_help_has_an_example(run_cli):
    out = run_cli("coarse", "--help").output
    assert "--scheduler [asha|none]" in out and "search coarse --scheduler asha" in out


def test_two_workers_share_the_rungs_through_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    execute_stage(Execution(url, jobs=2, progress="quiet"), coarse_stage("two", RUN, DEFAULT_SPACE, N, seed=3,
                                                                         scheduler="asha"))
    trials = optuna.load_study(study_name="two/coarse", storage=open_storage(url)).get_trials()
    assert len(trials) == N and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    ran = [t for t in trials if t.user_attrs["stop_reason"] not in ("exploded", "nan")]
    assert all("completed_rung_0" in t.system_attrs for t in ran)  # each trial's epoch-1 value, seen by the other
    assert 1 <= sum(t.state == TrialState.COMPLETE for t in trials) < len(ran)


def test_a_trial_the_scheduler_stopped_says_at_which_epoch_in_explain_and_in_its_rerun(run_cli):
    # explain once said "pruned (pruned)", and `train --from-trial` put the full rerun's val_acc beside the value
    # stored at the rung epoch without saying so ("stored value of trial ...: 0.8519" after 9 epochs at 0.9259)
    assert run_cli("coarse", "--scheduler", "asha", "--trials", "6", "--epochs", "3", "--train-size", "200",
                   "--jobs", "1").exit_code == 0
    rows = json.loads(run_cli("trials", "digits/coarse", "--state", "pruned", "--format", "json").stdout)
    stopped = [r for r in rows if r["stop_reason"] == "pruned"][0]
    ref = f"digits/coarse:{stopped['number']}"
    explained = " ".join(run_cli("explain", ref).stdout.split())
    assert explained.startswith(f"{ref}: pruned by the scheduler at epoch 1 of 3, value {stopped['value']:.4f}, "
                                f"best_val_acc {stopped['best_val_acc']:.4f} (epoch 1);")
    rerun = run_cli("train", "--from-trial", ref)
    assert (f"stored value of trial {ref}: {stopped['value']:.4f} (at epoch 1 of 3: the scheduler stopped it "
            f"there)") in " ".join(rerun.stdout.split())  # wrapped at the terminal's width


def test_the_json_of_a_rerun_says_which_epoch_the_stored_value_is_from(run_cli):
    # `train --from-trial --json` gave the stored value beside the full rerun's numbers and no word that it was
    # measured at an earlier epoch (the scheduler's rung, or the last epoch before the run exploded)
    assert run_cli("coarse", "--scheduler", "asha", "--trials", "6", "--epochs", "3", "--train-size", "200",
                   "--jobs", "1").exit_code == 0
    rows = json.loads(run_cli("trials", "digits/coarse", "--format", "json").stdout)
    stopped = [r for r in rows if r["stop_reason"] == "pruned"][0]
    rerun = json.loads(run_cli("train", "--from-trial", f"digits/coarse:{stopped['number']}", "--json").stdout)
    assert (rerun["trial_value"], rerun["trial_value_epoch"], rerun["trial_stop_reason"], rerun["epochs"]) == (
        stopped["value"], 1, "pruned", 3)
    done = [r for r in rows if r["stop_reason"] == "completed"][0]
    rerun = json.loads(run_cli("train", "--from-trial", f"digits/coarse:{done['number']}", "--json").stdout)
    assert (rerun["trial_value"], rerun["trial_value_epoch"], rerun["trial_stop_reason"]) == (
        done["value"], 3, "completed")
    # 4 minibatches an epoch: the explosion test judges the first epoch at its end, after its value is reported
    assert run_cli("coarse", "--campaign", "hot", "--lr", "1:10", "--trials", "1", "--epochs", "3",
                   "--train-size", "200").exit_code == 0
    hot = json.loads(run_cli("trials", "hot/coarse", "--format", "json").stdout)[0]
    assert hot["stop_reason"] == "exploded"
    rerun = run_cli("train", "--from-trial", "hot/coarse:0", "--json")
    assert rerun.exit_code == 1  # it explodes again
    out = json.loads(rerun.stdout)
    assert (out["trial_value"], out["trial_value_epoch"], out["trial_stop_reason"]) == (hot["value"], 1, "exploded")
    text = " ".join(run_cli("train", "--from-trial", "hot/coarse:0").stdout.split())
    assert f"stored value of trial hot/coarse:0: {hot['value']:.4f} (at epoch 1 of 3, the last it finished: it " \
           f"exploded)" in text
