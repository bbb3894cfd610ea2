"""Every trial of a stage diagnosed on digits, the diagnosis explained and used by refinement."""
from __future__ import annotations

import json

import optuna

from studies.store import open_storage


def _trials(name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_storage("sqlite:///search.db", create=False))
    return study.get_trials()


def test_a_coarse_stage_over_eight_decades_of_lr_is_read_like_the_lecture(run_cli):
    assert run_cli("coarse", "--lr", "1e-7:1e1", "--trials", "30", "--epochs", "3").exit_code == 0
    trials = _trials("digits/coarse")
    low = [t for t in trials if t.params["lr"] < 1e-5]
    exploded = [t for t in trials if t.state.name == "PRUNED"]
    assert low and exploded
    assert sum("lr_too_low" in t.user_attrs["diagnosis"] for t in low) == len(low)
    assert all(t.user_attrs["diagnosis"] == ["lr_too_high"] for t in exploded)
    numbers = low[0].system_attrs["diagnosis_numbers"]
    assert numbers["loss_change"] < 0.10 and len(numbers["dead_fraction"]) == 1
    explained = run_cli("explain", f"digits/coarse:{low[0].number}", "--plot", "t.png")
    assert explained.exit_code == 0 and "the learning rate is too low" in " ".join(explained.stdout.split())
    fine = json.loads(run_cli("fine", "--trials", "2", "--json").stdout)["stages"][-1]
    assert any(note.startswith("lr:") for note in fine["range_notes"])


def test_a_wide_net_on_100_samples_overfits_and_the_fine_stage_raises_reg(run_cli):
    args = ["coarse", "--train-size", "100", "--hidden", "500", "--lr", "1e-3:1e-2", "--reg", "1e-6:1e-1",
            "--epochs", "40", "--trials", "10"]
    assert run_cli(*args).exit_code == 0
    trials = [t for t in _trials("digits/coarse") if t.state.name == "COMPLETE"]
    overfit = [t for t in trials if "overfitting" in t.user_attrs["diagnosis"]]
    assert len(overfit) >= 8
    notes = json.loads(run_cli("fine", "--trials", "2", "--json").stdout)["stages"][-1]["range_notes"]
    moved = [n for n in notes if n.startswith("reg: diagnosis:")]
    assert len(moved) == 1 and "overfitting; lower bound raised" in moved[0]


def test_tanh_with_large_initial_weights_is_saturated(run_cli):
    assert run_cli("coarse", "--activation", "tanh", "--init", "normal", "--init-std", "1.0", "--lr", "1e-3:1e-2",
                   "--trials", "3", "--epochs", "2").exit_code == 0
    assert all("saturated_units" in t.user_attrs["diagnosis"] for t in _trials("digits/coarse"))
