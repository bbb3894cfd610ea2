"""Balanced accuracy (the mean of the classes' recalls) beside accuracy wherever a final score is said."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def noise(tmp_path):
    # 70/20/10 % labels and a feature with nothing in it: a network learns the class frequencies alone
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 140 + ["b"] * 40 + ["c"] * 20)
    pd.DataFrame({"x": rng.normal(size=200), "label": labels}).to_csv(tmp_path / "noise.csv", index=False)


def test_train_says_the_balanced_accuracy_of_a_network_that_predicts_the_majority_alone(run_cli, noise, monkeypatch):
    # val_acc 0.7000 of a network always predicting 'a' read as a result; its balanced accuracy is 1/3
    monkeypatch.setenv("COLUMNS", "200")
    out = run_cli("train", "--data", "noise.csv", "--epochs", "1", "--test")
    assert out.exit_code == 0, out.output
    assert "val_acc 0.7000 (balanced 0.3333), best_val_acc 0.7000 (epoch 1)" in out.stdout
    assert "test_acc 0.7000 (balanced 0.3333)" in out.stdout.splitlines()
    got = json.loads(run_cli("train", "--data", "noise.csv", "--epochs", "1", "--test", "--json").stdout)
    assert (got["val_acc"], got["val_balanced_accuracy"]) == (0.7, pytest.approx(1 / 3, rel=1e-15))
    assert (got["test_acc"], got["test_balanced_accuracy"]) == (0.7, pytest.approx(1 / 3, rel=1e-15))
    assert "test_balanced_accuracy" not in json.loads(run_cli("train", "--data", "noise.csv", "--epochs", "1",
                                                              "--json").stdout)


def test_predict_says_the_balanced_accuracy_beside_the_accuracy(run_cli, noise, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert run_cli("train", "--data", "noise.csv", "--epochs", "1", "--save", "m.npz").exit_code == 0
    said = run_cli("predict", "--model", "m.npz", "--data", "noise.csv", "--out", "p.csv")
    assert said.stderr.splitlines()[1] == (
        "200 samples scored with m.npz; accuracy 0.7000 (140 of 200 labels), balanced accuracy 0.3333; wrote p.csv")
    got = json.loads(run_cli("predict", "--model", "m.npz", "--data", "noise.csv", "--out", "p.csv", "--json").stdout)
    assert (got["accuracy"], got["balanced_accuracy"]) == (0.7, pytest.approx(1 / 3, rel=1e-15))


def test_trials_best_and_auto_keep_the_balanced_accuracy(run_cli, noise, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    auto = run_cli("auto", "--data", "noise.csv", "--trials", "2", "--epochs", "1", "--max-fine", "0", "--top", "1",
                   "--repeats", "1", "--retrain-seeds", "2", "--jobs", "1", "--json")
    assert auto.exit_code == 0, auto.output
    retrained = json.loads(auto.stdout)["final"]["retrained"]
    assert (retrained["test_acc"], retrained["test_balanced_accuracy"]) == (0.7, pytest.approx(1 / 3, rel=1e-15))
    best = run_cli("best")
    assert "  retrained 2x: val_acc 0.7000, test_acc 0.7000 +- 0.0000, balanced 0.3333" in best.stdout.splitlines()
    assert "val_balanced_accuracy  0.3333" in best.stdout.splitlines()
    got = json.loads(run_cli("best", "--format", "json").stdout)
    assert got["user_attrs"]["val_balanced_accuracy"] == pytest.approx(1 / 3, rel=1e-15)
    assert got["auto_choice"]["retrained"]["test_balanced_accuracy"] == pytest.approx(1 / 3, rel=1e-15)
    csv_head = run_cli("best", "--format", "csv").stdout.splitlines()[0].split(",")
    assert csv_head[-3:] == ["auto_trial", "val_balanced_accuracy", "initial_data_loss"]  # added columns come last
    assert run_cli("report", "--campaign", "noise").exit_code == 0
    text = " ".join(open("report-noise/report.md").read().split())
    assert "test accuracy 0.7000 ± 0.0000 (mean ± std), balanced accuracy 0.3333." in text
    summary = json.load(open("report-noise/summary.json"))
    assert summary["chosen"]["retrained"]["test_balanced_accuracy"] == pytest.approx(1 / 3, rel=1e-15)
