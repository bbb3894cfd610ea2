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
    assert any(not t.intermediate_values for t in exploded)  # stopped in its first epoch: no accuracy at all
    for t in exploded:  # such a trial's explanation once ended in a TypeError
        explained = run_cli("explain", f"digits/coarse:{t.number}", "--plot", "t.png")
        assert explained.exit_code == 0 and "the learning rate is too high" in " ".join(explained.stdout.split())
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


def test_a_slow_run_whose_l2_term_barely_moved_has_too_low_an_lr_however_large_its_share():
    # 3 epochs of lr 1e-4 on digits barely move the loss at any reg; at reg 0.3 the loss is 92 % L2 term, but the
    # term itself fell only 6.6 % (lr 1e-2 takes it down 99.9 %): the step did not move the weights, and calling it
    # underfitting ("lower regularisation, not a small step") misread a step too small at every reg
    from engine.data import DataSpec
    from engine.trainer import train
    from search.config import RunConfig
    from search.objective import diagnose_trial

    base = RunConfig(data=DataSpec("digits")).with_params({"train.epochs": 3, "train.lr": 1e-4})
    dataset = base.load()
    seen = {}
    for reg in (1e-4, 0.3):
        config = base.with_params({"train.reg": reg})
        model = config.build_model(dataset)
        initial_reg_loss = model.reg_loss(reg)
        result = train(model, config.train, dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
        diagnosis = diagnose_trial(result, model, dataset, config, initial_reg_loss)
        seen[reg] = (diagnosis.labels, diagnosis.numbers["loss_change"], diagnosis.numbers.get("reg_share"),
                     diagnosis.numbers.get("reg_change"))
    assert seen == {1e-4: (("lr_too_low",), 0.0275, 0.0043, 0.0137), 0.3: (("lr_too_low",), 0.0596, 0.9221, 0.0658)}


def test_chance_is_the_share_of_the_most_frequent_training_label():
    import numpy as np

    from search.objective import majority_share

    assert majority_share(np.array([0] * 19 + [1])) == 0.95
    assert majority_share(np.array([0, 1, 2, 0])) == 0.5


def _diagnosed(data_spec, params):
    from engine.trainer import train
    from search.config import RunConfig
    from search.objective import diagnose_trial

    config = RunConfig(data=data_spec).with_params(params)
    dataset = config.load()
    model = config.build_model(dataset)
    initial_reg_loss = model.reg_loss(config.train.reg)
    result = train(model, config.train, dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val)
    return diagnose_trial(result, model, dataset, config, initial_reg_loss)


def test_short_runs_still_falling_are_told_to_train_longer_and_a_levelled_small_net_to_grow():
    from engine.data import DataSpec
    from engine.diagnostics import describe_diagnosis

    # 3 epochs of SGD at lr 0.05 on digits: train 0.76, a 2.2-point gap, the loss still falling: it was "healthy"
    sgd = _diagnosed(DataSpec("digits"), {"train.epochs": 3, "train.optimizer": "sgd", "train.lr": 5e-2})
    assert sgd.labels == ("still_learning",) and sgd.numbers["train_acc"] < 0.9
    assert sgd.numbers["late_loss_fall"] > sgd.numbers["late_loss_limit"]
    # 3 epochs of Adam at lr 1e-3: train 0.81 and no gap, told "raise capacity", where 30 epochs reach 0.99
    adam = _diagnosed(DataSpec("digits"), {"train.epochs": 3})
    assert adam.labels == ("underfitting",)
    assert "train longer first, then raise capacity" in describe_diagnosis(adam)[0]
    # 2 hidden units for 30 epochs: train 0.68, its loss levelled off: too little capacity
    small = _diagnosed(DataSpec("digits"), {"train.epochs": 30, "train.lr": 1e-2, "arch.hidden": (2,)})
    assert small.labels == ("underfitting",) and small.numbers["late_loss_fall"] < small.numbers["late_loss_limit"]
    assert describe_diagnosis(small)[0].endswith("underfitting: raise capacity or lower regularisation")


def test_search_explain_reads_a_stored_trial_still_learning(run_cli):
    assert run_cli("coarse", "--lr", "1e-3:1.1e-3", "--trials", "1", "--epochs", "3").exit_code == 0
    trial = _trials("digits/coarse")[0]
    assert trial.user_attrs["diagnosis"] == ["underfitting"]
    explained = json.loads(run_cli("explain", "digits/coarse:0", "--json").stdout)
    assert "train longer first" in explained["sentences"][0]
    assert explained["diagnosis_numbers"]["late_loss_fall"] > explained["diagnosis_numbers"]["late_loss_limit"]


def test_a_table_with_noisy_labels_is_not_told_to_raise_capacity(run_cli, tmp_path):
    # breast cancer with 13 % of its labels flipped: train 0.82, validation 0.86, train accuracy flat for 5 epochs, and
    # "underfitting: raise capacity or lower regularisation"; 512 units for 40 epochs then overfitted (train 0.90,
    # validation 0.78): too little capacity and label noise look alike here, and the diagnosis says so
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    flip = np.random.default_rng(0).random(len(frame)) < 0.15
    frame.loc[flip, "target"] = 1 - frame.loc[flip, "target"]
    frame.to_csv(tmp_path / "noisy.csv", index=False)
    result = run_cli("train", "--data", str(tmp_path / "noisy.csv"), "--label-column", "target", "--epochs", "10",
                     "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    n = out["diagnosis_numbers"]
    assert out["diagnosis"] == ["healthy"]
    assert (n["train_acc"], n["val_acc"], n["contradicted_errors"], n["uncontradicted_acc"]) == (
        0.8246, 0.8588, 0.5571, 0.9139)
    assert (n["train_rise_from"], n["train_late_rise"], n["train_late_rise_limit"], n["train_levelled"]) == (
        6, 0.01, 0.0381, True)
    assert out["sentences"] == [
        "healthy: the loss fell by 33.1%, train-val gap -3.4 points; train accuracy 0.8246 with no gap stopped rising "
        "(up 1.0 points from epoch 6 to the end, <= 3.8 points, twice its standard error) as its loss levelled off: "
        "the run has reached what the data allow at this capacity. Too little capacity and noisy labels look alike "
        "here: it confidently contradicts 55.7% of the labels it misses (< 67%: no clear sign of noise) and fits "
        "0.9139 of the other training samples (>= 0.9: no clear sign of too little capacity). To tell them apart, "
        "train a wider net (twice --hidden): train accuracy rising while validation accuracy falls is label noise "
        "being memorised, both rising is too little capacity"]
    # the same numbers with train accuracy still rising, or with too few epochs to tell, stay underfitting
    from engine.diagnostics import THRESHOLDS, _noise_or_capacity

    assert _noise_or_capacity(n) and not _noise_or_capacity({**n, "train_levelled": False})
    assert not _noise_or_capacity({k: v for k, v in n.items() if k != "train_levelled"})
    assert not _noise_or_capacity({**n, "uncontradicted_acc": THRESHOLDS.train_acc_underfit - 0.01})


def test_a_trial_keeps_its_first_layers_update_to_weight_ratio_and_explain_says_it_of_a_slow_learning_rate(run_cli):
    # a stage's trial gave the loss alone as the sign of a learning rate too low, not the lecture's ||dW|| / ||W||
    assert run_cli("coarse", "--lr", "1e-7:2e-7", "--trials", "1", "--epochs", "2", "--train-size", "200",
                   "--jobs", "1").exit_code == 0
    explained = json.loads(run_cli("explain", "digits/coarse:0", "--json").stdout)
    ratio = explained["diagnosis_numbers"]["update_ratio"]
    assert explained["diagnosis"] == ["lr_too_low"] and 0 < ratio < 1e-5
    assert explained["sentences"][0].endswith(
        f"the learning rate is too low; the first layer's last update was {ratio:.1e} of its weights' norm (about "
        f"1e-3 with a good learning rate)")
