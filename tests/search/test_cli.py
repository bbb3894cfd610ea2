"""The search CLI end to end on digits: exit codes, one-line errors, coarse -> fine on real data."""
from __future__ import annotations

import csv
import io
import json
import math
import signal
import sqlite3
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from search.cli import cli
from tests.search.conftest import cwd_study, one_line_error, stages_made_only
from studies.store import open_storage


def test_coarse_then_fine_on_digits_reaches_97_percent(run_cli, tmp_path):
    coarse = run_cli("coarse", "--trials", "20", "--epochs", "3", "--json")
    assert coarse.exit_code == 0, coarse.output
    fine = run_cli("fine", "--trials", "10", "--json")
    assert fine.exit_code == 0, fine.output
    stage = json.loads(fine.stdout)["stages"][-1]  # after the promotion stage
    assert stage["study"] == "digits/fine-1" and stage["parent"] == "digits/coarse"
    assert stage["best_value"] >= 0.97
    assert stage["counts"]["complete"] + stage["counts"]["pruned"] == 10
    best = json.loads(run_cli("best", "--format", "json").stdout)
    assert best["value"] >= 0.97


def test_fine_widens_a_range_whose_upper_bound_is_below_the_good_learning_rates(run_cli):
    assert run_cli("coarse", "--campaign", "up", "--lr", "1e-7:1e-4", "--trials", "20", "--epochs", "2").exit_code == 0
    fine = run_cli("fine", "--campaign", "up", "--trials", "2", "--promote", "0")  # the lecture's rule alone
    assert fine.exit_code == 0
    text = " ".join(fine.stdout.split())  # as wrapped to the terminal
    assert "lr: best" in text and "widened upward" in text
    study = optuna.load_study(study_name="up/fine-1", storage=open_storage("sqlite:///search.db"))
    assert study.user_attrs["space"]["lr"]["high"] > 1e-4
    assert any("widened upward" in note for note in study.user_attrs["range_notes"])


def test_fine_widens_a_range_whose_lower_bound_is_above_the_good_learning_rates(run_cli):
    assert run_cli("coarse", "--campaign", "down", "--lr", "1e-1:1e1", "--trials", "10", "--epochs", "2").exit_code == 0
    fine = run_cli("fine", "--campaign", "down", "--trials", "2", "--promote", "0")
    assert fine.exit_code == 0
    assert "widened downward" in fine.stdout
    study = optuna.load_study(study_name="down/fine-1", storage=open_storage("sqlite:///search.db"))
    assert study.user_attrs["space"]["lr"]["low"] < 1e-1


@pytest.mark.parametrize("args,fragments", [
    (["coarse", "--lr", "1e-2:1e-3"], ["--lr", "low < high"]),
    (["coarse", "--reg", "0:1"], ["--reg", "> 0"]),
    (["coarse", "--lr", "nan:1"], ["--lr", "finite"]),
    (["coarse", "--lr", "fast"], ["--lr", "LOW:HIGH"]),
    (["coarse", "--trials", "0"], ["--trials", "0"]),
    (["coarse", "--jobs", "0"], ["--jobs"]),
    (["coarse", "--epochs", "-1"], ["--epochs"]),
    (["fine", "--campaign", "nope"], ["unknown campaign", "nope"]),
    (["trials", "nope/coarse"], ["nope/coarse"]),
    (["coarse", "--storage", "sqlite:///no/such/folder/x.db"], ["does not exist"]),
    (["train", "--activation", "swish"], ["--activation", "swish"]),
    (["train", "--init", "magic"], ["--init", "magic"]),
    (["train", "--lr", "-1"], ["--lr", "-1"]),
    (["train", "--data", "cifar10", "--data-dir", "/no/such/cifar"], ["/no/such/cifar"]),
    (["data", "--data", "cifar10"], ["cifar10 needs data_dir (--data-dir DIR): the cifar-10-batches-py folder"]),
    # the data's settings were named as in Python alone: "components applies only to pca and whiten"
    (["data", "--val-fraction", "0.5", "--test-fraction", "0.6"],
     ["val_fraction + test_fraction (--val-fraction, --test-fraction) must be below 1"]),
    (["data", "--train-size", "100000"], ["asked for train_size 100000 (--train-size) but only 1257 train samples"]),
    (["data", "--pca-components", "5"], ["components (--pca-components) applies only to pca and whiten, not "
                                         "'mean_image'"]),
    (["train", "--batch-size", "5000"], ["batch size", "5000"]),
])
def test_bad_input_exits_2_with_one_line(run_cli, args, fragments):
    if args[0] in ("fine", "trials"):
        assert run_cli("coarse", "--trials", "2", "--epochs", "1").exit_code == 0
    one_line_error(run_cli(*args), *fragments)
    if args[0] == "coarse":
        # nothing was written for a refused command
        assert not os.path.exists("search.db") or optuna.get_all_study_names("sqlite:///search.db") == []


def test_search_alone_prints_its_help_as_search_help_does(run_cli):
    # it printed "error: Usage: search [OPTIONS] COMMAND [ARGS]..." and the whole help after it, on stderr, exit 2
    alone, asked = run_cli(), run_cli("--help")
    assert (alone.exit_code, alone.stderr) == (0, "")
    assert alone.stdout == asked.stdout and alone.stdout.startswith("Usage: ")


def test_a_data_option_given_to_a_command_of_a_campaign_says_where_its_data_comes_from(run_cli, tmp_path):
    # search fine --data wine.csv said "No such option '--data'." and search trials --data added "Did you mean
    # '--state'?"
    one_line_error(run_cli("fine", "--data", "wine.csv"), "search fine takes no --data: it works on a campaign, which "
                   "keeps the data it was created with; choose the campaign with --campaign NAME (search studies "
                   "lists them)")
    assert "search grid takes no --label-column: " in one_line_error(run_cli("grid", "--label-column", "species"))
    assert "search trials takes no --data: " in one_line_error(run_cli("trials", "--data", "wine.csv"))
    # other unknown options, and a command of no campaign, keep click's message
    assert one_line_error(run_cli("fine", "--foo")) == "error: No such option '--foo'. Did you mean '--top'?"
    assert one_line_error(run_cli("layers", "--data", "x")).startswith("error: No such option '--data'.")
    assert not (tmp_path / "search.db").exists()


def test_query_refuses_a_delete_and_changes_nothing(run_cli):
    assert run_cli("coarse", "--trials", "3", "--epochs", "1").exit_code == 0
    count = 'SELECT count(*) AS n FROM trials'
    before = json.loads(run_cli("query", count, "--format", "json").stdout)[0]["n"]
    assert before == 3
    refused = run_cli("query", "DELETE FROM trials")
    assert one_line_error(refused) == (
        "error: refused: only read-only queries (EXPLAIN, SELECT, VALUES, WITH) may run, got 'DELETE'")
    assert json.loads(run_cli("query", count, "--format", "json").stdout)[0]["n"] == 3


def test_read_commands_leave_the_databases_folder_as_they_found_it(run_cli, tmp_path):
    # search studies, trials, best, query, report and explain each left a search.db-wal and a search.db-shm beside
    # the file they read: a read-only connection cannot remove them, as the last connection to close does
    from tests.search.procs import run

    (tmp_path / "db").mkdir()
    where = ("--storage", "sqlite:///db/search.db")
    # in a process of its own: its writing connections are closed when it ends
    assert run(["coarse", *where, "--trials", "2", "--epochs", "1", "--train-size", "100"], tmp_path).wait() == 0
    conn = sqlite3.connect("db/search.db")  # the last connection: SQLite removes its -wal and -shm as it closes
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    conn.close()
    assert os.listdir("db") == ["search.db"]
    stored = Path("db/search.db").read_bytes()
    for command in (["studies"], ["trials", "--campaign", "digits"], ["best"], ["query", "SELECT count(*) FROM trials"],
                    ["report", "--out", "report", "--json"], ["explain", "digits/coarse:0"]):
        result = run_cli(*command, *where)
        assert result.exit_code == 0, result.output
        assert (command[0], os.listdir("db")) == (command[0], ["search.db"])
        assert Path("db/search.db").read_bytes() == stored
    # one left beside it by another connection, still open, is left as it is
    conn = sqlite3.connect("db/search.db")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    try:
        assert run_cli("studies", *where).exit_code == 0
        assert sorted(os.listdir("db")) == ["search.db", "search.db-shm", "search.db-wal"]
    finally:
        conn.close()


def test_trials_and_studies_tables(run_cli):
    assert run_cli("coarse", "--trials", "4", "--epochs", "1").exit_code == 0
    rows = json.loads(run_cli("trials", "digits/coarse", "--format", "json", "--sort", "value").stdout)
    assert len(rows) == 4
    values = [r["value"] for r in rows if r["value"] is not None]
    assert values == sorted(values, reverse=True)
    studies = json.loads(run_cli("studies", "--format", "json").stdout)
    assert [s["study"] for s in studies] == ["digits/coarse"]
    assert studies[0]["complete"] + studies[0]["pruned"] == 4
    csv = run_cli("trials", "--campaign", "digits", "--format", "csv", "--limit", "2").stdout.splitlines()
    assert len(csv) == 3 and csv[0].startswith("study,")
    # the diagnosis column has one name and the same text in the table and in the SQL view
    table = run_cli("trials", "digits/coarse", "--columns", "number,diagnosis").stdout.split()
    flat = run_cli("query", "SELECT number, diagnosis FROM trials_flat ORDER BY number").stdout.split()
    # trial 1 (lr 3.2e-4, reg 0.11): its loss fell 5.8 %, 82 % of it the L2 term at the end, a term the step
    # barely moved in its one epoch: lr too low
    assert table == flat == ["number", "diagnosis", "0", "underfitting", "1", "lr_too_low", "2", "lr_too_low",
                             "3", "underfitting"], (table, flat)


def test_best_shows_its_numbers_as_the_other_tables_do(run_cli):
    # best once showed value 0.993 and lr 0.0316 where trials and studies showed 0.9926 and 0.03162 for the same
    # trial, and its diagnosis as a Python list, ['healthy']
    assert run_cli("coarse", "--trials", "4", "--epochs", "1", "--train-size", "200").exit_code == 0
    trial = json.loads(run_cli("trials", "digits/coarse", "--sort", "value", "--limit", "1", "--format",
                               "json").stdout)[0]
    fields = dict(line.split(None, 1) for line in run_cli("best").stdout.splitlines()[1:])
    fields = {k: v.strip() for k, v in fields.items()}
    listed = run_cli("trials", "digits/coarse", "--sort", "value", "--limit", "1", "--columns",
                     "value,lr,reg,diagnosis").stdout.split()[4:]
    assert [fields["value"], fields["param_lr"], fields["param_reg"], fields["diagnosis"]] == listed
    assert fields["value"] == f"{trial['value']:.4f}" and fields["diagnosis"] == trial["diagnosis"]
    assert fields["val_acc"] == f"{trial['val_acc']:.4f}" and fields["train_acc"] == f"{trial['train_acc']:.4f}"


def test_explain_and_a_rerun_give_the_validation_accuracy_per_epoch_under_one_name(run_cli):
    # explain --json called it val_acc_per_epoch, train --json val_acc_history: the same numbers
    assert run_cli("coarse", "--trials", "2", "--epochs", "3", "--train-size", "200", "--jobs", "1").exit_code == 0
    explained = json.loads(run_cli("explain", "digits/coarse:0", "--json").stdout)
    rerun = json.loads(run_cli("train", "--from-trial", "digits/coarse:0", "--json").stdout)
    assert "val_acc_per_epoch" not in explained and len(explained["val_acc_history"]) == 3
    assert explained["val_acc_history"] == rerun["val_acc_history"]


def test_a_trial_added_through_optunas_api_is_retrained_from_its_stage_with_its_parameters(run_cli):
    # search best chose a trial told with study.add_trial and said `keep it: search train --from-trial
    # digits/coarse:2`, which refused it in one line: "the trial has no stored config: state COMPLETE; ..."
    assert run_cli("coarse", "--trials", "2", "--epochs", "2", "--train-size", "200", "--jobs", "1").exit_code == 0
    study = cwd_study("digits/coarse")
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.01}, value=0.99,
                                              distributions={"lr": study.trials[0].distributions["lr"]}))
    keep = run_cli("best").stdout.splitlines()[-1]
    assert keep == "keep it: search train --from-trial digits/coarse:2 --save model.npz"

    added = run_cli("train", "--from-trial", "digits/coarse:2", "--json")

    assert added.exit_code == 0, added.output
    assert " ".join(added.stderr.split()).startswith(
        "digits/coarse:2 was not trained by this service (added through Optuna's API): trained with its stage's "
        "settings and its parameters; reg, which it does not give, at the stage's setting")
    assert json.loads(added.stdout)["trial_value"] == 0.99
    one_line_error(run_cli("explain", "digits/coarse:2"),  # it said "it never finished training"
                   "error: trial digits/coarse:2 has no diagnosis (state COMPLETE; it was not trained by this service "
                   "(added through Optuna's API): search train --from-trial digits/coarse:2 trains it)")
    # the run is the one a worker gives a trial of that number: trial 1 told without its config retrains to its value
    trial = study.trials[1]
    with sqlite3.connect("search.db") as db:
        db.execute("DELETE FROM trial_system_attributes WHERE key = 'config' AND trial_id = ?", (trial._trial_id,))
    rerun = json.loads(run_cli("train", "--from-trial", "digits/coarse:1", "--json").stdout)
    assert (rerun["val_acc"], rerun["final_loss"]) == (trial.value, trial.user_attrs["final_loss"])
    unknown = run_cli("coarse", "--campaign", "other", "--trials", "1", "--epochs", "1", "--train-size", "200",
                      "--jobs", "1")
    assert unknown.exit_code == 0
    other = cwd_study("other/coarse")
    other.add_trial(optuna.trial.create_trial(params={"width": 3}, value=0.5,
                                              distributions={"width": optuna.distributions.IntDistribution(1, 9)}))
    one_line_error(run_cli("train", "--from-trial", "other/coarse:1"),
                   "--from-trial other/coarse:1: the trial was not trained by this service (no stored config) and its "
                   "parameter 'width' is no run option")
    # a dimension with no effect at its parameters (momentum with adam) is not one it leaves out
    assert run_cli("coarse", "--campaign", "cond", "--space", "optimizer=adam,momentum", "--space",
                   "momentum=0.5:0.99", "--trials", "1", "--epochs", "1", "--train-size", "200").exit_code == 0
    cond = cwd_study("cond/coarse")
    cond.add_trial(optuna.trial.create_trial(params={"optimizer": "adam"}, value=0.5, distributions={
        "optimizer": optuna.distributions.CategoricalDistribution(["adam", "momentum"])}))
    adam = run_cli("train", "--from-trial", "cond/coarse:1", "--json")
    assert adam.exit_code == 0 and " ".join(adam.stderr.split()).endswith(
        "trained with its stage's settings and its parameters")


def test_explain_plot_draws_the_stored_loss_curve_over_the_iterations_the_trial_ran(run_cli, monkeypatch):
    # a trial of 240 iterations stores 200 loss points: its plot once ended at "iteration" 200, and had no title
    from studies import plots

    drawn = {}
    monkeypatch.setattr(plots, "save", lambda fig, path, **kw: drawn.setdefault("figure", fig))
    args = ["--trials", "1", "--epochs", "4", "--train-size", "300", "--batch-size", "5", "--hidden", "10"]
    assert run_cli("coarse", *args, "--jobs", "1").exit_code == 0
    trial = json.loads(run_cli("trials", "digits/coarse", "--format", "json").stdout)[0]
    assert trial["iterations"] == 240
    assert run_cli("explain", "digits/coarse:0", "--plot", "t.png").exit_code == 0
    figure = drawn["figure"]
    x = figure.axes[0].lines[0].get_xdata()
    assert (len(x), x[0], x[-1]) == (200, 1.0, 240.0)
    assert all(float(t).is_integer() for t in figure.axes[0].get_xticks())
    assert figure.get_suptitle() == f"digits/coarse:0: {trial['diagnosis']}"


def test_the_plot_of_a_run_stopped_in_its_first_epoch_says_no_epoch_finished():
    # an exploded trial's accuracy panel was an empty frame with one tick, "epoch 0"
    from studies import plots

    fig = plots.plot_training(plots.new_axes(1, 2)[0], [2.3, 9.0, 84.0], [], [], 10, "digits/coarse:4: lr_too_high")
    assert [t.get_text() for t in fig.axes[1].texts] == ["no epoch finished"] and not fig.axes[1].lines
    assert list(fig.axes[0].lines[0].get_xdata()) == [1.0, 5.5, 10.0]
    plots.plt.close(fig)


def test_explain_gives_the_best_epoch_beside_the_value_as_search_trials_names_it(run_cli):
    # explain gave the value alone: the best epoch's validation accuracy was in no line of it
    assert run_cli("coarse", "--trials", "2", "--epochs", "3", "--train-size", "200", "--jobs", "1").exit_code == 0
    row = json.loads(run_cli("trials", "digits/coarse", "--format", "json").stdout)[0]
    explained = json.loads(run_cli("explain", "digits/coarse:0", "--json").stdout)
    assert (explained["value"], explained["best_val_acc"], explained["best_epoch"]) == (
        row["value"], row["best_val_acc"], row["best_epoch"])
    # and the trial's identity, how it ended and its training seconds, under search trials' names
    same = ("study", "number", "state", "stop_reason", "value", "best_val_acc", "best_epoch", "seconds")
    assert {k: explained[k] for k in same} == {k: row[k] for k in same}
    assert (explained["study"], explained["number"], explained["trial"]) == ("digits/coarse", 0, "digits/coarse:0")
    text = " ".join(run_cli("explain", "digits/coarse:0").stdout.split())
    assert text.startswith(f"digits/coarse:0: complete, value {row['value']:.4f}, best_val_acc "
                           f"{row['best_val_acc']:.4f} (epoch {row['best_epoch']}); lr=")
    # a trial written without its best epoch (an earlier version's database) has no "(epoch None)"
    with sqlite3.connect("search.db") as db:
        db.execute("UPDATE trial_user_attributes SET value_json = 'null' WHERE key = 'best_epoch' AND trial_id = "
                   "(SELECT trial_id FROM trials WHERE number = 0)")
    text = " ".join(run_cli("explain", "digits/coarse:0").stdout.split())
    assert text.startswith(f"digits/coarse:0: complete, value {row['value']:.4f}, best_val_acc "
                           f"{row['best_val_acc']:.4f}; lr=")


def test_auto_keeps_its_stage_table_in_columns_beside_a_long_campaign_name(run_cli):
    # a campaign named after breast_cancer.csv: "breast_cancer/promote-1" pushed its row's numbers a column right
    auto = run_cli("auto", "--campaign", "breast_cancer", "--trials", "4", "--epochs", "1", "--train-size", "200",
                   "--max-fine", "1", "--promote", "2", "--top", "2", "--repeats", "1", "--retrain-seeds", "1",
                   "--jobs", "1")
    assert auto.exit_code == 0, auto.output
    lines = auto.stdout.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("stage "))):][:5]
    assert [line.split()[0] for line in table] == ["stage", "breast_cancer/coarse", "breast_cancer/promote-1",
                                                    "breast_cancer/fine-1", "breast_cancer/final"]
    ends = {len(line.rstrip().removesuffix(" (best mean)")) for line in table}
    assert ends == {len("breast_cancer/promote-1") + 1 + 43}, table  # the value column ends where the header does


def test_auto_names_a_campaign_too_long_for_its_table_once_above_it(run_cli, monkeypatch):
    # breast_cancer_wisconsin_diagnostic/promote-1 made rows of 84 and 92 characters in an 80-column terminal
    monkeypatch.setenv("COLUMNS", "80")
    name = "breast_cancer_wisconsin_diagnostic"
    auto = run_cli("auto", "--campaign", name, "--trials", "4", "--epochs", "1", "--train-size", "200",
                   "--max-fine", "0", "--top", "2", "--repeats", "1", "--retrain-seeds", "1", "--jobs", "1")
    assert auto.exit_code == 0, auto.output
    lines = auto.stdout.splitlines()
    at = lines.index(f"{name}:")
    assert [line.split()[0] for line in lines[at:at + 4]] == [f"{name}:", "stage", "coarse", "final"]
    assert lines[at + 3].endswith(" (best mean)") and all(len(line) <= 80 for line in lines[at:at + 4])


def test_best_after_search_auto_says_what_auto_chose(run_cli, monkeypatch):
    # after `search auto`, `search best` gave the best single trial and nothing said that auto had chosen another
    # configuration (the best mean of its final stage), the one it retrained and scored on test
    monkeypatch.setenv("COLUMNS", "200")  # the lines unwrapped
    auto = run_cli("auto", "--trials", "4", "--epochs", "1", "--train-size", "200", "--max-fine", "0", "--top", "2",
                   "--repeats", "1", "--retrain-seeds", "1", "--jobs", "1")
    assert auto.exit_code == 0, auto.output
    final = optuna.load_study(study_name="digits/final", storage=open_storage("sqlite:///search.db"))
    assert "stopped adding fine stages: --max-fine 0: 0 fine stages ran" in auto.stdout  # was "--max-fine 0 stages ran"
    # the final stage ranks configurations by their mean over repeats, not by their best trial as search studies
    # does; auto's table said "best val" for both
    lines = auto.stdout.splitlines()
    row = next(line for line in lines if line.startswith("digits/final "))
    header = next(line for line in lines if line.startswith("stage "))
    # the column search studies calls best_value ("best val" read as best_val_acc, the best epoch's)
    assert header.split() == ["stage", "n_trials", "pruned", "epochs", "seconds", "best_value"]
    assert row.index(" (best mean)") == header.index("best_value") + len("best_value")  # in the column, as the others
    assert row.split()[1:] == ["2", "0", "1", row.split()[4], f"{max(t.value for t in final.trials):.4f}", "(best",
                               "mean)"]
    chosen = final.user_attrs["retrained"]
    params = " ".join(f"{k}={v:.3g}" for k, v in chosen["asked"]["params"].items())
    # and said how to keep the best single trial only: a run of auto's choice in the final stage retrains it
    run = min(t.number for t in final.trials if t.params == chosen["asked"]["params"])
    value = next(t.value for t in final.trials if t.params == chosen["asked"]["params"])  # its 1 run's
    expected = (f"note: search auto chose {params} in digits/final (the best mean over repeats, {value:.4f} over 1 "
                f"run of 1 epoch (1 run: no spread); test_acc {chosen['test_acc'][0]:.4f}), not the single trial "
                f"shown; keep auto's choice with search train --from-trial digits/final:{run} --save model.npz")
    for fmt in ("csv", "json"):
        best = run_cli("best", "--format", fmt)
        assert best.exit_code == 0 and " ".join(best.stderr.split()) == expected, best.stderr
    # the table showed the single trial, and a note on stderr said auto had chosen another configuration: the table
    # shows auto's choice first, with its mean over repeats and the command that keeps it, and the single trial second
    best = run_cli("best")
    assert best.exit_code == 0 and best.stderr == ""
    lines = best.stdout.splitlines()
    assert lines[:7] == [
        "search auto's choice, the best mean over repeats (the one to keep):", f"  {params}",
        f"  digits/final: value {value:.4f} over 1 run of 1 epoch (1 run: no spread)",
        f"  retrained 1x: val_acc {chosen['val_acc'][0]:.4f}, test_acc {chosen['test_acc'][0]:.4f} (1 retrain: no "
        f"spread), balanced {chosen['test_balanced_accuracy'][0]:.4f}",
        f"keep it: search train --from-trial digits/final:{run} --save model.npz",
        "",
        "second, the best single trial (one run in a searching stage, not repeated):"]
    assert lines[7].split() == ["field", "value"] and lines[8].split()[0] == "study"
    assert sum(line.startswith("keep it:") for line in lines) == 1  # the single trial's is not said
    # and names that run, with its mean and std over its runs, where a script reads it
    shown = json.loads(run_cli("best", "--format", "json").stdout)
    assert shown["auto_trial"] == f"digits/final:{run}"
    assert list(shown)[0] == "auto_choice"
    assert {k: shown["auto_choice"][k] for k in ("study", "trial", "params", "value", "std", "runs", "epochs")} == {
        "study": "digits/final", "trial": f"digits/final:{run}", "params": chosen["asked"]["params"], "value": value,
        "std": 0.0, "runs": 1, "epochs": 1}
    assert shown["auto_choice"]["retrained"]["test_acc"] == chosen["test_acc"][0]
    plain = run_cli("coarse", "--campaign", "plain", "--trials", "1", "--epochs", "1", "--train-size", "200")
    assert plain.exit_code == 0
    assert json.loads(run_cli("best", "--json").stdout)["auto_trial"] is None


def test_a_worker_given_another_heartbeat_than_its_stage_says_it_keeps_the_stages(run_cli, monkeypatch):
    # search worker --heartbeat 5 on a stage created with 10 ran with 10 without a word
    from engine.data import DataSpec
    from search.campaign import DEFAULT_SPACE, coarse_stage
    from search.config import RunConfig
    from search.stages import create_stage

    monkeypatch.setenv("COLUMNS", "200")
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    storage = open_storage("sqlite:///search.db", heartbeat_interval=10)
    create_stage(storage, coarse_stage("hb", run, DEFAULT_SPACE, 2, seed=0))
    storage.engine.dispose()
    note = ("--heartbeat 5 not used: hb/coarse keeps the 10 s it was created with, by which every worker of it "
            "judges a trial stale")
    joined = run_cli("worker", "--campaign", "hb", "--heartbeat", "5")
    assert joined.exit_code == 0, joined.output
    assert note in joined.stderr.splitlines()
    create_stage(open_storage("sqlite:///search.db", heartbeat_interval=10),
                 coarse_stage("hb2", run, DEFAULT_SPACE, 2, seed=0))
    for same in (("--heartbeat", "10"), ()):  # given as the stage keeps it, or not given: nothing to say
        quiet = run_cli("worker", "--campaign", "hb2", *same)
        assert quiet.exit_code == 0 and "--heartbeat" not in quiet.stderr, quiet.output


def test_auto_help_gives_the_hidden_widths_floor_and_ceiling(run_cli):
    # "16 up to about a quarter of the training set": the wine table's 110 training rows searched 16:64, not 16:27
    from search.campaign import default_hidden_range

    text = " ".join(run_cli("auto", "--help").stdout.split())
    # "about a quarter" read as 314 for digits' 1257 training samples, where the range is 16:256
    assert ("The default space is lr, reg and the hidden width (16 up to the power of two nearest a quarter of the "
            "training set, at least 64 and at most 1024: 256 for digits).") in text
    assert [default_hidden_range(n).high for n in (110, 256, 1257, 100_000)] == [64, 64, 256, 1024]


def test_report_help_names_the_pair_plot_by_importance(run_cli):
    # it said "plots of lr x reg", where a campaign's pair plot is of its two most important parameters (lr x
    # batch_size on a table whose space has no reg)
    text = " ".join(run_cli("report", "--help").stdout.split())
    assert "plots of the two most important parameters against each other, each parameter alone" in text
    assert "lr x reg" not in text


def test_trials_help_says_how_to_sort_either_way(run_cli):
    # --sort -lr sorts descending, but the help only said "(value sorts best first)"
    text = " ".join(run_cli("trials", "--help").stdout.split())
    assert ("--sort NAME Column to sort by: value, val_acc, best_val_acc and train_acc best first, the others "
            "ascending; -NAME descending, +NAME ascending, e.g. --sort -lr.") in text
    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    rows = json.loads(run_cli("trials", "digits/coarse", "--sort", "-lr", "--format", "json").stdout)
    assert [r["param_lr"] for r in rows] == sorted((r["param_lr"] for r in rows), reverse=True)


def test_best_as_csv_gives_the_diagnosis_as_trials_does(run_cli):
    # best --format csv once gave the diagnosis as a Python list, ['lr_too_low'], where trials gives lr_too_low
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    best = list(csv.DictReader(io.StringIO(run_cli("best", "--format", "csv").stdout)))
    trials = list(csv.DictReader(io.StringIO(run_cli("trials", "digits/coarse", "--format", "csv").stdout)))
    [same] = [t for t in trials if t["number"] == best[0]["number"]]
    assert len(best) == 1 and best[0]["diagnosis"] == same["diagnosis"] and "[" not in same["diagnosis"]


def test_a_campaign_listing_names_each_trials_stage_even_when_one_stage_holds_them(run_cli):
    # trial numbers restart in every stage: "0 COMPLETE" alone does not say which trial it is
    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    assert run_cli("trials", "--campaign", "digits").stdout.splitlines()[0].split()[:3] == ["study", "number", "state"]
    assert run_cli("trials").stdout.splitlines()[0].split()[:3] == ["study", "number", "state"]
    assert run_cli("trials", "digits/coarse").stdout.splitlines()[0].split()[:2] == ["number", "state"]


def test_studies_shows_the_trials_an_unfinished_stage_is_running_and_still_has_to_run(run_cli, tmp_path, monkeypatch):
    # after Ctrl-C a stage of 10 listed n_trials 12 = 1 complete + 2 fail and nothing said 9 were still waiting
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    done = run_cli("studies").stdout.splitlines()
    assert done[0].split() == ["study", "n_trials", "best_value", "complete", "pruned", "fail", "epochs"]
    with sqlite3.connect(tmp_path / "search.db") as db:  # what an interrupted stage leaves: its budget WAITING
        db.execute("UPDATE trials SET state = 'WAITING' WHERE number >= 1")
    table = run_cli("studies").stdout.splitlines()
    assert table[0].split() == ["study", "n_trials", "best_value", "complete", "pruned", "fail", "waiting", "epochs"]
    assert table[1].split()[:2] + table[1].split()[3:7] == ["digits/coarse", "3", "1", "0", "0", "2"]
    assert json.loads(run_cli("studies", "--format", "json").stdout)[0]["waiting"] == 2
    with sqlite3.connect(tmp_path / "search.db") as db:  # a trial a worker is running now
        db.execute("UPDATE trials SET state = 'RUNNING' WHERE number = 1")
    table = run_cli("studies").stdout.splitlines()  # 80 columns: epochs is left for --wide
    assert table[0].split() == ["study", "n_trials", "best_value", "complete", "pruned", "fail", "running", "waiting"]
    assert table[1].split()[:2] + table[1].split()[3:8] == ["digits/coarse", "3", "1", "0", "0", "1", "1"]


def test_best_says_when_a_stage_of_its_campaign_is_unfinished(run_cli, tmp_path):
    # search best while workers ran a stage gave its best so far and a "keep it" line without a word that trials were
    # still to run
    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    for fmt in ("table", "json", "csv"):
        assert "unfinished" not in run_cli("best", "--format", fmt).stderr
    with sqlite3.connect(tmp_path / "search.db") as db:  # a trial a worker runs now, and one still to run
        db.execute("UPDATE trials SET state = 'RUNNING' WHERE number = 1")
        db.execute("UPDATE trials SET state = 'WAITING' WHERE number = 2")
    for fmt in ("table", "json", "csv"):
        shown = run_cli("best", "--format", fmt)
        assert shown.exit_code == 0
        assert " ".join(shown.stderr.split()).endswith(
            "note: digits/coarse is unfinished: 2 of its 3 trials have not finished (1 running, 1 waiting); the best "
            "may change once they have"), shown.stderr
    assert json.loads(run_cli("best", "--format", "json").stdout)["number"] == 0  # stdout stays JSON alone


def test_studies_lists_one_campaign_and_names_the_known_ones_for_an_unknown(run_cli):
    for campaign in ("one", "two"):
        assert run_cli("coarse", "--campaign", campaign, "--trials", "2", "--epochs", "1",
                       "--train-size", "200").exit_code == 0
    rows = json.loads(run_cli("studies", "--campaign", "two", "--format", "json").stdout)
    assert [r["study"] for r in rows] == ["two/coarse"]
    one_line_error(run_cli("studies", "--campaign", "three"), "unknown campaign 'three'; known campaigns: one, two")


def test_every_command_names_an_unknown_campaign_in_the_same_words(run_cli):
    # search fine said "known: digits" where search best said "known campaigns: digits"
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    lines = {command: one_line_error(run_cli(command, "--campaign", "digitz"))
             for command in ("fine", "grid", "worker", "best", "trials", "studies", "report")}
    assert set(lines.values()) == {"error: unknown campaign 'digitz'; known campaigns: digits"}, lines


def test_tables_fit_80_columns_and_json_is_plain(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli("coarse", "--space", "lr=1e-3:1e-1", "--space", "activation=relu,tanh", "--trials", "4",
                   "--epochs", "1", "--train-size", "200").exit_code == 0
    for args in (["studies"], ["trials", "digits/coarse"]):
        out = run_cli(*args).stdout
        assert max(len(line) for line in out.splitlines()) <= 80, out
    table = run_cli("trials", "digits/coarse").stdout
    assert table.splitlines()[0].split()[:5] == ["number", "state", "value", "lr", "activation"]
    activations = [line.split()[4] for line in table.splitlines()[1:]]
    assert len(activations) == 4 and set(activations) <= {"relu", "tanh"}, table  # categorical values, not indices
    raw = run_cli("studies", "--format", "json").stdout
    assert "\\/" not in raw
    row = json.loads(raw)[0]
    assert row["study"] == "digits/coarse" and row["n_trials"] == 4 and isinstance(row["n_trials"], int)
    picked = run_cli("trials", "digits/coarse", "--columns", "number,value").stdout
    assert picked.splitlines()[0].split() == ["number", "value"]
    by_shown_name = run_cli("trials", "digits/coarse", "--columns", "number,lr,param_activation").stdout
    assert by_shown_name.splitlines()[0].split() == ["number", "lr", "activation"]  # as the table names them
    one_line_error(run_cli("trials", "--columns", "nope"), "--columns", "nope")
    assert one_line_error(run_cli("trials", "digits/coarse", "--columns", ",,")).startswith(
        "error: --columns ',,' names no column; columns: study, campaign, stage, number, state, value, ")
    # --wide: every column at its full width, past the terminal's edge; no number cut short
    records = json.loads(run_cli("trials", "digits/coarse", "--format", "json").stdout)
    wide = run_cli("trials", "digits/coarse", "--wide", "--sort", "number").stdout.splitlines()
    assert wide[0].split() == [c.removeprefix("param_") for c in records[0]]
    for line, record in zip(wide[1:], sorted(records, key=lambda r: r["number"]), strict=True):
        cells = dict(zip(wide[0].split(), line.split()))  # the columns before the two timestamps line up
        assert cells["state"] == record["state"] and cells["lr"] == f"{record['param_lr']:.4g}", line
        assert cells["diagnosis"] == record["diagnosis"], line
    # --columns: the columns asked for, all of them, at full width (with --wide too)
    for extra in ([], ["--wide"]):
        asked = run_cli("trials", "digits/coarse", "--columns", "number,lr,stop_reason,diagnosis", *extra)
        assert asked.stdout.splitlines()[0].split() == ["number", "lr", "stop_reason", "diagnosis"], asked.stdout
        assert "more columns" not in asked.stderr
    more = run_cli("query", "SELECT * FROM trials_flat")
    hint = " ".join(more.stderr.split())  # wrapped at 80 columns
    assert "more columns" in hint and "select fewer, or --format csv" in hint
    assert "--wide" not in more.stderr  # query has no such option


def test_json_gives_the_times_csv_gives_to_the_microsecond(run_cli):
    # --format json cut datetime_start to the second ("2026-12-06T21:25:20") where csv gave 21:25:20.185026
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    as_json = json.loads(run_cli("trials", "digits/coarse", "--format", "json").stdout)
    as_csv = list(csv.DictReader(io.StringIO(run_cli("trials", "digits/coarse", "--format", "csv").stdout)))
    for column in ("datetime_start", "datetime_complete"):
        assert [r[column] for r in as_json] == [r[column].replace(" ", "T") for r in as_csv]
    assert len(as_json[0]["datetime_start"]) == len("2026-12-06T21:25:20.185026")
    created = json.loads(run_cli("studies", "--format", "json").stdout)[0]["created"]
    assert created == as_json[0]["datetime_start"]  # the stage's first trial's start
    table = run_cli("trials", "digits/coarse", "--columns", "number,datetime_start").stdout.splitlines()
    assert table[1].split()[1:] == as_json[0]["datetime_start"][:19].split("T")  # a table: to the second


def test_one_column_or_epoch_is_said_in_the_singular(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    narrow = run_cli("trials", "digits/coarse", "--columns", "number,diagnosis,seconds", "--sort", "number")
    assert "more column" not in narrow.stderr  # --columns: all of them
    monkeypatch.setenv("COLUMNS", "40")
    cut = run_cli("trials", "digits/coarse")
    assert " ".join(cut.stderr.split()).startswith("(3 more columns: "), cut.stderr
    one = run_cli("query", "SELECT number, state, value, stop_reason, diagnosis FROM trials_flat")
    assert " ".join(one.stderr.split()) == "(1 more column: diagnosis; select fewer, or --format csv)", one.stderr
    other = run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200")
    line = one_line_error(other, "already exists with other settings")
    assert "2 trials, 1 epoch, sampler random" in line


def test_a_stage_of_one_trial_is_said_in_the_singular_when_another_is_refused(run_cli):
    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200").exit_code == 0
    line = one_line_error(run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200"),
                          "already exists with other settings")
    assert "1 trial, 1 epoch, sampler random" in line, line


@pytest.mark.parametrize("args, given", [
    # the settings in brackets are the same in each: the line once ended there, so a changed --seed or --train-size
    # read as a stage that already had the command's own settings
    (["--seed", "5"], "--seed 5 where it has 0"),
    (["--train-size", "201"], "--train-size 201 where it has 200"),
    (["--epochs", "2"], "--epochs 2 where it has 1"),
    (["--val-size", "50", "--dropout", "0.75"], "--val-size 50 where it has (none), --dropout 0.75 where it has 1"),
    # continuing the stage, the stored factor was used and the command's left unsaid
    # options named as they are typed, not by the run configuration's paths and Python values ("arch.hidden (50,)
    # where it has (100,)", "explode_factor 5.0 where it has 3.0")
    (["--explode-factor", "5"], "--explode-factor 5 where it has 3"),
    (["--hidden", "50", "--activation", "tanh", "--batchnorm", "--optimizer", "sgd"],
     "--hidden 50 where it has 100, --activation tanh where it has relu, --batchnorm where it has --no-batchnorm "
     "(and 1 more)"),
])
def test_a_stage_refused_for_other_settings_names_the_ones_that_differ(run_cli, args, given):
    first = ["coarse", "--trials", "2", "--epochs", "1", "--train-size", "200"]
    assert run_cli(*first).exit_code == 0
    line = one_line_error(run_cli(*first, *args))
    assert line == ("error: stage digits/coarse already exists with other settings (lr=1e-06:1 reg=1e-06:10, 2 "
                    "trials, 1 epoch, sampler random), and this command gives (by its options, or their defaults "
                    f"where none is given) {given}; run it with those settings "
                    "or pass --campaign NAME to start another campaign")


def test_a_command_whose_stage_is_complete_says_so(run_cli):
    args = ["coarse", "--trials", "2", "--epochs", "1", "--train-size", "200"]
    assert run_cli(*args).exit_code == 0
    again = run_cli(*args)
    assert again.exit_code == 0 and "digits/coarse was already complete; nothing to run" in again.stdout


def test_auto_after_its_coarse_stage_says_it_continues_with_the_fine_stages(run_cli):
    # it said "digits/coarse was already complete; nothing to run" and then ran promote-1, fine-1 and final
    coarse = ["--trials", "4", "--epochs", "1", "--train-size", "200", "--space", "hidden=16:64:int"]
    assert run_cli("coarse", *coarse).exit_code == 0
    result = run_cli("auto", *coarse, "--max-fine", "1", "--top", "2", "--repeats", "1", "--retrain-seeds", "1")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "digits/coarse is complete (4 trials); continuing with the fine stages"
    text = " ".join(result.stdout.split())
    assert text.startswith("digits/coarse (4 trials) was already complete; continued with the stages after it "
                           "digits/coarse: 4 complete") and "nothing to run" not in text


def test_fine_whose_promoted_runs_all_explode_fails_with_exit_1_and_says_what_to_do(run_cli):
    # once exit 2 (bad input) after the promotion stage had run, and only "has no completed trials to refine the
    # ranges from"
    args = ["--trials", "3", "--epochs", "1", "--train-size", "100", "--jobs", "1"]
    assert run_cli("coarse", *args, "--lr", "1e3:1e4").exit_code == 0  # one epoch is too short to explode
    result = run_cli("fine", "--trials", "3", "--jobs", "1")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: stage digits/promote-1 has no completed trials to refine the ranges from (digits/coarse's best "
        "configurations re-run at 2 epochs: 3 exploded); --promote 0 refines on digits/coarse's own runs")
    assert run_cli("fine", "--trials", "3", "--jobs", "1", "--promote", "0").exit_code == 0


def test_fine_while_workers_run_the_coarse_stage_says_to_wait_for_them(run_cli, monkeypatch):
    # search fine while three workers ran the coarse stage said to run the command that started it again: a fourth
    # process for trials the workers were about to finish
    from search.stages import load_stage_study
    from studies import optuna_rdb

    assert stages_made_only(run_cli, monkeypatch, "coarse", "--trials", "3", "--epochs", "1").exit_code == 130
    storage = open_storage("sqlite:///search.db")
    study_id = storage.get_study_id_from_name("digits/coarse")
    for _ in range(2):  # two workers' claims
        optuna_rdb.claim_waiting_trial(storage, study_id, -1, {"worker": "elsewhere:1"})
    assert one_line_error(run_cli("fine", "--trials", "2")) == (
        "error: stage digits/coarse is not finished: 2 of its trials running now; run this command again once its "
        "workers are done, or, if none runs, run the command that started it again, or `search worker --campaign "
        "digits --stage coarse`, to complete it")
    assert [t.state.name for t in load_stage_study(storage, "digits/coarse").trials] == ["RUNNING"] * 2 + ["WAITING"]
    storage.engine.dispose()


def test_fine_after_an_unfinished_coarse_stage_says_so_and_writes_nothing(run_cli, tmp_path):
    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    with sqlite3.connect(tmp_path / "search.db") as db:  # what processes killed after failing them would leave
        db.execute("UPDATE trials SET state = 'FAIL'")
    def rows() -> list[tuple]:
        with sqlite3.connect(tmp_path / "search.db") as db:
            return db.execute("SELECT trial_id, number, state FROM trials ORDER BY trial_id").fetchall()

    before = rows()
    # "run it again (same command)" read as: run search fine again, which says the same
    assert one_line_error(run_cli("fine", "--campaign", "digits", "--trials", "2")) == (
        "error: stage digits/coarse is not finished; run the command that started it again, or `search worker "
        "--campaign digits --stage coarse`, to complete it")
    assert rows() == before  # its failed trials are re-enqueued by coarse, not here
    again = run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["stages"][0]["counts"]["complete"] + \
        json.loads(again.stdout)["stages"][0]["counts"]["pruned"] == 3


def test_query_prints_what_it_selected_as_text(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    # a join names study_id twice: the second is study_id.1, as pandas' CSV reader names it
    joined = run_cli("query", "SELECT t.number, t.study_id, s.study_id FROM trials t JOIN studies s "
                              "ON s.study_id = t.study_id ORDER BY t.number", "--format", "json")
    assert joined.exit_code == 0, joined.output
    assert json.loads(joined.stdout) == [{"number": 0, "study_id": 1, "study_id.1": 1},
                                         {"number": 1, "study_id": 1, "study_id.1": 1}]
    # square brackets are text, not styling (rich markup): "[/x]" once failed to parse, "[red]hi" lost its tag
    marked = run_cli("query", "SELECT '[/x]' AS a, '[red]hi' AS \"[b]\"")
    assert marked.exit_code == 0 and marked.stdout.split() == ["a", "[b]", "[/x]", "[red]hi"], marked.output
    # a long text shows its first 200 characters in a table, all of it in csv
    long = run_cli("query", "SELECT printf('%.*c', 1000, 'x') AS long")
    assert long.stdout.split()[1:] == ["x" * 200 + "...", "(1,000", "characters)"], long.stdout
    assert run_cli("query", "SELECT printf('%.*c', 1000, 'x') AS long", "--format", "csv").stdout.split() == \
        ["long", "x" * 1000]
    # :name: is text, not an emoji (rich's emoji codes), in a table that fits and in one folded to fit
    monkeypatch.setenv("COLUMNS", "80")
    for sql in ("SELECT ':smile:' AS a", f"SELECT ':smile: {'x' * 100}' AS a"):
        coded = run_cli("query", sql)
        assert coded.exit_code == 0 and coded.stdout.split()[:2] == ["a", ":smile:"], coded.output


def test_the_documented_best_value_query_gives_the_best_value_of_search_studies(run_cli):
    # "max(value) AS best" counted pruned trials, whose value is the validation accuracy of an earlier epoch (the
    # scheduler's rung, or the last before the run exploded); a stage's best value is its best completed trial's
    from optuna.trial import TrialState, create_trial

    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    study = optuna.load_study(study_name="digits/coarse", storage=open_storage("sqlite:///search.db"))
    first = study.trials[0]
    study.add_trial(create_trial(state=TrialState.PRUNED, value=0.999, params=first.params,
                                 distributions=first.distributions, intermediate_values={1: 0.999},
                                 user_attrs={"stop_reason": "pruned"}))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = [" ".join(re.search(r'search query "(SELECT study.*?)"', text, re.S)[1].split())
                  for text in (readme, run_cli("query", "--help").stdout)]
    best = json.loads(run_cli("studies", "--format", "json").stdout)[0]["best_value"]
    assert best == max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
    for sql in documented:
        (row,) = json.loads(run_cli("query", sql, "--format", "json").stdout)
        assert list(row.values())[-1] == best, sql


def test_query_help_lists_the_columns_of_trials_flat(run_cli):
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    text = " ".join(run_cli("query", "--help").stdout.split())
    listed = text[text.index("trials_flat: ") + len("trials_flat: "):text.index("; and Optuna")]
    names = [n.strip() for n in listed.replace("param_NAME for each searched NAME", "param_lr,param_reg").split(",")]
    columns = json.loads(run_cli("query", "SELECT * FROM trials_flat LIMIT 1", "--format", "json").stdout)[0]
    assert names == list(columns)


def test_query_tables_name_columns_as_the_sql_does(run_cli, monkeypatch):
    # the table once showed param_lr as "lr", and `WHERE lr > 0` then failed with "no such column: lr"
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    picked = run_cli("query", "SELECT number, param_lr, param_reg FROM trials_flat ORDER BY number")
    assert picked.exit_code == 0 and picked.stdout.splitlines()[0].split() == ["number", "param_lr", "param_reg"]
    every = run_cli("query", "SELECT * FROM trials_flat")
    assert "param_reg" in every.stdout.splitlines()[0] or "param_reg" in " ".join(every.stderr.split())
    assert run_cli("query", "SELECT param_lr FROM trials_flat WHERE param_lr > 0").exit_code == 0


def test_query_gives_whole_numbers_as_search_trials_does(run_cli):
    # trials_flat once gave param_hidden 94.0, iterations 10.0, model_parameters 1695.0 where `search trials` gave 94
    assert run_cli("coarse", "--space", "lr=1e-3:1e-1", "--space", "hidden=8:64:int", "--trials", "2", "--epochs",
                   "1", "--train-size", "200").exit_code == 0
    columns = "number, param_hidden, iterations, model_parameters"
    trials = json.loads(run_cli("trials", "digits/coarse", "--sort", "number", "--format", "json").stdout)
    rows = json.loads(run_cli("query", f"SELECT {columns} FROM trials_flat ORDER BY number", "--format",
                              "json").stdout)
    assert rows == [{k: t[k] for k in ("number", "param_hidden", "iterations", "model_parameters")} for t in trials]
    assert all(type(r[k]) is int for r in rows for k in r), rows
    # with a NULL among them (a trial that never ran): whole numbers and an empty cell, never 94.0
    csv = run_cli("query", "SELECT param_hidden FROM trials_flat WHERE number = 0 UNION ALL SELECT NULL",
                  "--format", "csv").stdout.splitlines()
    assert csv == ["param_hidden", str(trials[0]["param_hidden"]), "\"\""], csv  # an empty row is quoted


def test_query_has_a_time_limit_and_a_row_cap(run_cli):
    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    capped = run_cli("query", "SELECT number FROM trials_flat ORDER BY number", "--max-rows", "2", "--format", "csv")
    assert capped.exit_code == 0 and capped.stdout.split() == ["number", "0", "1"]
    assert "only the first 2 rows" in capped.stderr
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    stopped = run_cli("query", endless, "--timeout", "0.5")
    assert stopped.exit_code == 1 and len(stopped.stderr.strip().splitlines()) == 1


def _strict_json(text):
    """json.loads that refuses NaN and Infinity, as JSON itself (RFC 8259) and most parsers other than Python's do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_query_json_is_strict_json_with_numbers_as_numbers(run_cli):
    """An infinite value was printed as Infinity (not JSON); PostgreSQL's numeric (avg of integers, round(x, 2))
    came out as a string ("2.5000000000000000") where SQLite gives a number."""
    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200").exit_code == 0
    result = run_cli("query", "SELECT 1e999 AS inf, -1e999 AS ninf, 2.5 AS x, 7 AS n", "--format", "json")
    assert result.exit_code == 0, result.output
    assert _strict_json(result.stdout) == [{"inf": None, "ninf": None, "x": 2.5, "n": 7}]
    import decimal

    import pandas as pd

    from search.cli.output import frame_records

    numeric = pd.DataFrame({"avg": [decimal.Decimal("2.5000000000000000")], "sum": [decimal.Decimal("7")],
                            "nan": [decimal.Decimal("NaN")]})
    assert frame_records(numeric) == [{"avg": 2.5, "sum": 7, "nan": None}]
    assert type(frame_records(numeric)[0]["sum"]) is int


def test_table_cells_read_from_a_column_are_those_of_its_records():
    """A table's cells are made a column at a time from its Python values (5 times as fast as by frame_records):
    the same cells, missing values and accuracies too, for every kind of column."""
    import decimal

    import numpy as np
    import pandas as pd

    from search.cli.output import _column_cells, column_cell, frame_records

    frame = pd.DataFrame({
        "i": [1, -2**62, 3], "u": np.array([0, 7, 2**63], dtype="uint64"), "Int": pd.array([4, None, 5], dtype="Int64"),
        "f": [0.5, np.nan, np.inf], "value": [0.96301, np.nan, -np.inf], "Float": pd.array([1.25, None, np.nan]),
        "s": pd.Series(["a\nb", None, "2024-01-02T03:04:05.6"], dtype="str"),
        "string": pd.Series(["x" * 300, None, "\x1b[2J"], dtype="string"),
        "o": [decimal.Decimal("2.50"), [1, 0.5], None], "b": [True, False, True],
        "t": pd.to_datetime(["2024-01-02 03:04:05", None, "2025-06-07 00:00:00"]),
    })
    expected = {c: [column_cell(c, row[c]) for row in frame_records(frame)] for c in frame.columns}
    assert {c: _column_cells(c, frame[c]) for c in frame.columns} == expected
    assert expected["Int"] == ["4", "-", "5"] and expected["value"] == ["0.9630", "-", "-"]
    assert expected["f"] == ["0.5", "-", "inf"] and expected["s"] == ["a\\nb", "-", "2024-01-02 03:04:05"]


def test_query_table_shows_control_characters_instead_of_sending_them_to_the_terminal(run_cli, monkeypatch):
    """An escape sequence stored in the database (a worker on a shared PostgreSQL writes what it likes) reached the
    terminal raw from a table: ESC]0;...BEL retitles the window, ESC[31m colours what follows, ESC[2J clears it."""
    monkeypatch.setenv("COLUMNS", "200")
    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200").exit_code == 0
    shown = run_cli("query", "SELECT char(27) || '[31mRED' AS a, char(0) || char(127) || char(155) || 'x' AS b")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.split() == ["a", "b", "\\x1b[31mRED", "\\x00\\x7f\\x9bx"]
    named = run_cli("query", "SELECT 1 AS \"" + "\x1b" + "[2J\"")
    assert named.exit_code == 0 and named.stdout.split() == ["\\x1b[2J", "1"], named.output
    # a line break or tab in a name or value broke the table's rows in two and its columns out of line
    broken = run_cli("query", "SELECT 1 AS \"a" + "\n" + "b\", 'x' || char(10) || 'y' || char(9) || 'z' AS c")
    assert broken.exit_code == 0 and broken.stdout.split() == ["a\\nb", "c", "1", "x\\ny\\tz"]
    # machine formats keep the value itself
    raw = run_cli("query", "SELECT char(27) || '[31mRED' AS a", "--format", "json")
    assert json.loads(raw.stdout) == [{"a": "\x1b[31mRED"}]

@pytest.mark.parametrize("command", ["studies", "best"])  # a table laid out a line at a time, one folded by rich
def test_no_color_sends_no_escape_to_a_terminal(run_cli, monkeypatch, command):
    # NO_COLOR=1 still gave bold headings on a terminal: rich drops the colours only (TERM=dumb dropped the bold)
    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200").exit_code == 0
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich writes as to a terminal
    monkeypatch.setenv("COLUMNS", "30")
    monkeypatch.delenv("NO_COLOR", raising=False)
    bold = run_cli(command)
    assert bold.exit_code == 0 and "\x1b[1m" in bold.stdout.splitlines()[0]  # its heading, on a terminal
    monkeypatch.setenv("NO_COLOR", "yes")  # any value but an empty one (no-color.org)
    plain = run_cli(command)
    assert plain.exit_code == 0 and "\x1b" not in plain.output
    heading = {"studies": ["study", "n_trials"], "best": ["field", "value"]}[command]
    assert plain.stdout.splitlines()[0].split() == heading
    # the same table, its heading not bold (rich's bold heading kept its padding)
    assert [line.rstrip(" ") for line in re.sub("\x1b\\[[0-9;]*m", "", bold.stdout).splitlines()] == (
        plain.stdout.splitlines())


def test_reading_commands_in_an_empty_folder_create_no_database(run_cli, tmp_path):
    for args in (["studies"], ["fine"], ["grid"], ["worker"], ["trials"]):
        one_line_error(run_cli(*args), "no database")
    assert not (tmp_path / "search.db").exists()
    # run in another folder than search auto was, search report said only "no database at 'search.db' (...)"
    assert one_line_error(run_cli("report")) == (
        "error: no database at 'search.db' (storage sqlite:///search.db): search coarse or search auto makes one; a "
        "database made elsewhere is read from its folder, or with --storage")


@pytest.mark.parametrize("args", [["studies"], ["coarse", "--trials", "2"]])
def test_an_in_memory_storage_is_named_as_the_user_wrote_it(run_cli, tmp_path, args):
    # the line said "storage sqlite:///%3Amemory%3A", SQLAlchemy's escaping of the URL given
    assert one_line_error(run_cli(*args, "--storage", "sqlite:///:memory:")) == (
        "error: storage sqlite:///:memory: is an in-memory database, gone when the command ends: give a file, "
        "e.g. sqlite:///search.db")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["studies"], ["coarse", "--trials", "2"], ["query", "SELECT 1"]])
def test_a_postgresql_url_without_its_driver_says_what_to_install(run_cli, monkeypatch, args):
    # "database driver missing: No module named 'psycopg'" left a newcomer to guess the package
    monkeypatch.setitem(sys.modules, "psycopg", None)  # neither psycopg 3 nor psycopg2 importable
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    line = one_line_error(run_cli(*args, "--storage", "postgresql://u:secret@127.0.0.1:1/x"))
    assert line.startswith("error: storage postgresql://u:***@127.0.0.1:1/x: database driver missing (")
    assert line.endswith("): pip install '.[postgres]'")


TINY = ["--data", "digits", "--train-size", "200", "--epochs", "1", "--hidden", "20"]


@pytest.mark.parametrize("args,fragments", [
    (["train", *TINY, "--plot", "no/such/x.png"], ["--plot", "folder 'no/such' does not exist"]),
    (["layers", "--plot", "no/such/x.png"], ["--plot", "folder 'no/such' does not exist"]),
    (["explain", "digits/coarse:0", "--plot", "no/such/x.png"], ["--plot", "folder 'no/such' does not exist"]),
    (["train", *TINY, "--plot", "blocker/x.png"], ["--plot", "'blocker' is not a folder"]),
    (["train", *TINY, "--plot", ""], ["--plot", "must not be empty"]),
    # a file path ending in a slash names a folder: x.png/ was written as x.png, exit 0
    (["train", *TINY, "--plot", "x.png/"],
     ["--plot", "'x.png/' ends in '/', so it names a folder: give the file's name"]),
    (["train", *TINY, "--save", "x.npz/"],
     ["--save", "'x.npz/' ends in '/', so it names a folder: give the file's name"]),
    (["compare", *TINY, "--trials", "2", "--repeats", "1", "--out", "blocker/sub"],
     ["--out", "'blocker' is not a folder"]),
    (["train", "--from-trial", "digits/coarse:0", "--data", "digits"], ["drop --data"]),
    (["train", "--from-trial", "digits/coarse:0", "--train-size", "200"], ["drop --train-size"]),
    (["train", "--from-trial", "digits/coarse:0", "--val-fraction", "0.2"], ["drop --val-fraction"]),
    (["train", "--from-trial", "digits/coarse:0", "--data-dir", "cifar"], ["drop --data-dir"]),
    (["train", "--from-trial", "digits/coarse:0", "--seed", "3"], ["drop --seed"]),
    (["coarse", *TINY, "--trials", "2", "--space", "lr=1e-4:1e-1:linear:log"],
     ["--space lr=1e-4:1e-1:linear:log", "names both log and linear"]),
    (["coarse", *TINY, "--trials", "2", "--space", "hidden=8:64:log:int:linear"],
     ["--space hidden=8:64:log:int:linear", "names both log and linear"]),
    (["coarse", *TINY, "--trials", "2", "--space", "hidden=16:32:int:int"],
     ["--space hidden=16:32:int:int", "names 'int' twice: give each flag once"]),
    (["coarse", *TINY, "--trials", "2", "--data-dir", "no-such"], ["data_dir applies to the built-in cifar10 only"]),
    (["sanity", "--data", "digits", "--train-size", "200", "--hidden", "20", "--overfit-samples", "100000000"],
     ["--overfit-samples 100000000: only 200 training samples are available"]),
    (["report", "--campaign", ""], ["--campaign must not be empty"]),
    (["report", "--out", "-"], ["--out", "'-' (standard output) cannot hold a folder of files"]),
    (["best", "--campaign", ""], ["--campaign must not be empty"]),
    (["trials", "--campaign", " "], ["--campaign must not be empty"]),
    (["worker", "--campaign", ""], ["--campaign must not be empty"]),
    (["studies", "--storage", ""], ["--storage must not be empty"]),
    (["coarse", *TINY, "--trials", "2", "--storage", ""], ["--storage must not be empty"]),
    (["studies", "--storage", "search.db"], ["not a database URL; write sqlite:///search.db"]),
    # the scheme without its slashes: "write sqlite:///sqlite:search.db" suggested a file named sqlite:search.db
    (["studies", "--storage", "sqlite:search.db"],
     ["'sqlite:search.db': not a database URL; write sqlite:///search.db"]),
    (["studies", "--storage", "sqlite:///search.db?foo=bar"], ["SQLite takes no ?foo="]),
    # a value sqlite3.connect cannot take: a ValueError traceback, or "could not convert string to float: 'abc'"
    (["studies", "--storage", "sqlite:///search.db?uri=maybe"], ["?uri= must be true or false, got 'maybe'"]),
    (["coarse", *TINY, "--trials", "2", "--storage", "sqlite:///search.db?timeout=abc"],
     ["?timeout= must be a finite number of seconds >= 0, got 'abc'"]),
    # a timeout sqlite3.connect takes, though no wait can be nan, negative or endless: taken without a word
    *[(["studies", "--storage", f"sqlite:///search.db?timeout={t}"],
       [f"?timeout= must be a finite number of seconds >= 0, got '{t}'"]) for t in ("nan", "-5", "inf")],
    # the checks read search.db, the stage wrote a new file "search.db?mode=ro" that no later command read
    (["coarse", *TINY, "--trials", "2", "--storage", "sqlite:///search.db?uri=true&mode=ro"],
     ["SQLite's own URI arguments (?mode=) are not taken with a file path; give sqlite:///search.db"]),
])
def test_bad_input_is_refused_before_any_work(run_cli, tmp_path, args, fragments):
    (tmp_path / "blocker").write_text("x")
    result = run_cli(*args)
    one_line_error(result, *fragments)
    assert result.stdout == ""  # nothing trained, nothing reported
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # no database, no plot, no report


def test_an_unwritable_plot_folder_is_refused_before_training(run_cli, tmp_path):
    from tests.unwritable import unwritable

    (tmp_path / "ro").mkdir()
    with unwritable(tmp_path / "ro"):
        result = run_cli("train", *TINY, "--plot", "ro/x.png")
    one_line_error(result, "--plot", "folder 'ro' is not writable")
    assert result.stdout == ""


def test_a_command_leaves_the_processes_unraisable_hook_and_nothing_pending(run_cli, monkeypatch):
    import sys

    from search.errors import Interrupted, pending, raise_on

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    assert run_cli("data", "--data", "digits", "--json").exit_code == 0
    assert sys.unraisablehook == seen.append and pending() is None
    # while a handler is installed, other unraisable errors still reach the hook it replaced
    previous = raise_on(signal.SIGTERM, Interrupted)
    try:
        class Broken:
            def __del__(self):
                raise ValueError("in __del__")

        Broken()
        assert [type(u.exc_value) for u in seen] == [ValueError]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_worker_that_comes_after_the_campaign_is_done_says_so_and_exits_0(run_cli):
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    late = run_cli("worker", "--campaign", "digits")
    assert late.exit_code == 0 and late.stderr == "", late.output
    assert "nothing to join: every stage of campaign digits is complete" in late.stdout
    assert json.loads(run_cli("worker", "--campaign", "digits", "--json").stdout) == {"stages": []}


def test_a_stage_summary_of_many_parameters_fits_80_columns_and_names_the_rest(monkeypatch, capsys):
    from search.campaign import StageSummary
    from search.cli.stages import print_summary

    monkeypatch.setenv("COLUMNS", "80")
    params = {"lr": 0.00894, "reg": 0.000105, "hidden": 99, "batch_size": 23, "optimizer": "adam", "momentum": 0.514,
              "dropout": 0.854, "depth": 3, "batchnorm": True}
    summary = StageSummary(study="many/coarse", stage="coarse", parent=None,
                           counts={"complete": 24, "pruned": 0, "fail": 0}, n_trials=24, epochs=2,
                           space={name: "..." for name in params}, best_value=0.9741, best_params=params,
                           top=[{"number": 18, "value": 0.9741, "params": params, "seconds": 0.1}], range_notes=[],
                           created=True)
    print_summary(summary)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 79
    assert lines[-4:] == ["  trial    value         lr        reg     hidden batch_size  optimizer",
                          "     18   0.9741    0.00894   0.000105         99         23       adam",
                          "  (4 more parameters: momentum, dropout, depth, batchnorm; search trials",
                          "      many/coarse --wide)"]


def test_the_report_line_counts_in_words_that_agree(run_cli):
    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200").exit_code == 0
    assert run_cli("report").stdout.splitlines()[0] == "report of campaign digits (1 trial in 1 stage, all finished):"


def test_a_report_says_what_it_is_doing_on_stderr_and_nothing_with_json(run_cli):
    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    written = run_cli("report")
    assert written.stderr.splitlines()[0] == "report: digits/coarse: numbers and parameter importance"
    assert "report: plot 7 figures" in written.stderr.splitlines()  # 3 trials: no diagnosis example
    assert run_cli("report", "--json").stderr == ""


def test_a_reports_status_line_on_a_terminal_is_written_over_with_spaces_not_an_escape(run_cli, tmp_path, capsys):
    # it cleared its line with ESC[K, under NO_COLOR too, and a dumb terminal shows that escape
    import pty
    import subprocess

    from search.cli.report import report_progress
    from tests.search.procs import read_terminal

    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    terminal, stderr = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "NO_COLOR": "1", "COLUMNS": "60"}
    try:
        written = subprocess.run([sys.executable, "-m", "search", "report"], env=env, cwd=tmp_path, stderr=stderr,
                                 stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=120)
    finally:
        os.close(stderr)
    shown = read_terminal(terminal)
    assert written.returncode == 0 and written.stdout.startswith("report of campaign digits")
    steps = "report: digits/coarse: numbers and parameter importance", "report: plot 7 figures"
    # each step over the one before, cut or padded to 59 columns; the line blank, the cursor at its start, at the end
    assert shown == "".join(f"\r{step[:59]:<59}" for step in steps) + f"\r{'':59}\r"
    report_progress()("x\x1b[2J/coarse: a step")  # a study's name written out, as elsewhere (not a terminal here)
    assert capsys.readouterr().err == "report: x\\x1b[2J/coarse: a step\n"


def test_csv_shown_on_a_terminal_never_drives_it(run_cli, tmp_path):
    # --format csv went to the terminal as it is: a stored text holding ESC[2J cleared the screen (ESC]52 writes the
    # clipboard), where the same command's table writes it out
    import pty
    import subprocess

    from tests.search.procs import read_terminal

    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200").exit_code == 0
    sql = "SELECT 'a' || char(27) || '[2J' || char(7) AS x"
    terminal, stdout = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    try:
        done = subprocess.run([sys.executable, "-m", "search", "query", sql, "--format", "csv"], env=env, cwd=tmp_path,
                              stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=120)
    finally:
        os.close(stdout)
    shown = read_terminal(terminal)
    assert done.returncode == 0, done.stderr
    assert shown.replace("\r\n", "\n") == "x\na\\x1b[2J\\x07\n"
    # to a file or pipe the value as stored: click dropped its ESC[2J there, as styling
    assert run_cli("query", sql, "--format", "csv").stdout == "x\na\x1b[2J\x07\n"


@pytest.mark.parametrize("raised, code, how", [(KeyboardInterrupt, 130, "interrupted"), ("sigterm", 143, "terminated")])
def test_a_signal_says_the_database_is_consistent_only_for_a_command_that_writes_one(run_cli, tmp_path, monkeypatch,
                                                                                     raised, code, how):
    # search train, data and predict write no database, yet a Ctrl-C there said "the database is consistent; run the
    # same command again to continue"
    import engine.checkpoint
    import engine.data
    import search.config
    from search.cli import cli
    from search.errors import Interrupted

    def stop(*args, **kwargs):
        raise (Interrupted if raised == "sigterm" else raised)()

    for module in (engine.data, search.config):
        monkeypatch.setattr(module, "load_dataset", stop)
    monkeypatch.setattr(engine.checkpoint, "load_checkpoint", stop)
    (tmp_path / "model.npz").write_bytes(b"")
    blank = "\n" if raised is KeyboardInterrupt else ""  # click ends the ^C line first
    for args in (["train"], ["data"], ["sanity"], ["predict", "--model", "model.npz", "--data", "model.npz"]):
        result = run_cli(*args)
        assert (result.exit_code, result.stderr) == (code, f"{blank}{how}\n"), args
    result = run_cli("coarse", "--trials", "2")
    assert (result.exit_code, result.stderr) == (
        code, f"{blank}{how}: the database is consistent; run the same command again to continue\n")
    from search.errors import WRITING_COMMANDS

    assert WRITING_COMMANDS == {"coarse", "fine", "grid", "auto", "worker", "compare"} <= cli.commands.keys()


def test_fine_does_not_widen_a_range_the_parent_stage_found_insensitive(run_cli):
    # reg has no effect between 1e-8 and 1e-4 on digits; the best of the 8 promoted runs sat near the lower bound,
    # and fine-1 searched reg down to 8.8e-12
    assert run_cli("coarse", "--campaign", "s1", "--seed", "1", "--lr", "1e-3:1e-1", "--reg", "1e-8:1e-4",
                   "--trials", "40", "--epochs", "3", "--jobs", "1").exit_code == 0
    fine = run_cli("fine", "--campaign", "s1", "--edge", "0.3", "--trials", "2", "--jobs", "1", "--json")
    notes = json.loads(fine.stdout)["stages"][-1]["range_notes"]
    reg = next(n for n in notes if n.startswith("reg"))
    assert reg.startswith("reg: best 4.18e-08 is 0.62 decades from the lower bound 1e-08, 16 % of the range's 4 "
                          "(within 30 %); new range 1.47e-08:1.67e-05 (not widened: insensitive in s1/coarse: mean "
                          "value per third "), reg
    study = optuna.load_study(study_name="s1/fine-1", storage=open_storage("sqlite:///search.db"))
    assert study.user_attrs["space"]["reg"]["low"] == pytest.approx(1.47e-08, rel=0.01)


def test_the_command_list_gives_each_command_a_whole_sentence_in_80_columns(run_cli):
    # click cut each first sentence to fit: "Random vs grid search at equal budget, repeated:..." and, at the "."
    # of "e.g.", "worker  Join a running stage from this machine (same --storage, e.g."
    text = run_cli("--help").stdout
    listing = text[text.index("Commands:\n") + len("Commands:\n"):].splitlines()
    assert [line.split()[0] for line in listing] == sorted(cmd for cmd in cli.commands)
    assert all(len(line) <= 80 and line.endswith(".") and not line.endswith("...") and "e.g." not in line
               for line in listing), listing
    assert "  worker     Join a running stage and run its trials." in listing


def test_a_stage_of_small_data_says_how_long_it_trained_not_zero(capsys):
    # wine: 8 trials of 3 epochs trained for 0.03 s, and the summary said "0.0 s of training"
    from search.campaign import StageSummary
    from search.cli.stages import print_summary

    summary = StageSummary("wine/coarse", "coarse", None, {"complete": 8, "pruned": 0, "fail": 0}, 8, 3,
                           {"lr": "0.0001:0.1"}, 0.96, {"lr": 0.01}, [], [], True, training_seconds=0.0312)
    print_summary(summary)
    assert capsys.readouterr().out.splitlines()[1] == (
        "wine/coarse: 8 complete, 0 pruned of 8; 3 epochs a trial, 0.031 s of training")
    for seconds, text in ((0.0, "0.0"), (0.25, "0.25"), (0.96, "1.0"), (12.345, "12.3")):
        print_summary(replace(summary, training_seconds=seconds))
        assert f"3 epochs a trial, {text} s of training" in capsys.readouterr().out


def test_the_report_gives_a_stages_training_seconds_as_its_summary_does():
    # the report's budget table said 2.14 s and 3.02 s where search coarse and search auto said 2.1 and 3.0
    from studies.records import seconds_text  # the one definition, which the report uses too

    cases = {0.0: "0.0", 0.0312: "0.031", 0.41: "0.41", 0.96: "1.0", 2.14: "2.1", 12.345: "12.3", 1234.5: "1,234"}
    assert {x: seconds_text(x) for x in cases} == cases


def test_accuracies_in_tables_have_four_decimals_as_everywhere_else(capsys):
    # search trials showed 0.963 beside 0.1852 (4 significant digits) where the stage summary said 0.9630
    import pandas as pd

    from search.cli.output import print_frame

    frame = pd.DataFrame({"number": [6, 1], "value": [0.962962963, 0.185185185], "val_acc": [0.962962963, None],
                          "param_lr": [0.0290912, 0.0001001]})
    print_frame(frame, "table")
    assert [line.rstrip() for line in capsys.readouterr().out.splitlines()] == [
        "number   value  val_acc         lr",
        "     6  0.9630   0.9630    0.02909",
        "     1  0.1852        -  0.0001001",
    ]


def test_no_line_of_a_table_ends_in_spaces(capsys, monkeypatch):
    # search trials STUDY --limit 5 | cat -A ended its lines in the last column's padding: "diagnosis             $"
    import pandas as pd

    from search.cli.output import print_frame

    monkeypatch.setenv("COLUMNS", "80")
    frame = pd.DataFrame({"number": [0, 1], "value": [0.3963, 0.9037],
                          "diagnosis": ["lr_too_low,overfitting", "healthy"], "state": ["COMPLETE", ""]})
    print_frame(frame, "table")  # the columns fit: written a line at a time
    assert capsys.readouterr().out.splitlines() == [
        "number   value  diagnosis               state",
        "     0  0.3963  lr_too_low,overfitting  COMPLETE",
        "     1  0.9037  healthy",
    ]
    print_frame(pd.DataFrame({"field": ["study", "diagnosis"], "value": ["r/grid", "x" * 100]}), "table",
                everything=True)  # search best's list, folded by rich to the terminal's width
    assert capsys.readouterr().out.splitlines() == [
        "field      value", "study      r/grid", "diagnosis  " + "x" * 69, " " * 11 + "x" * 31]


def test_a_table_of_many_rows_is_printed_in_memory_that_does_not_grow_with_them(tmp_path, monkeypatch):
    # search query --max-rows 1000000 as a table took 193 s and 2.4 GB (rich laid out every row at once), csv 4 s
    import contextlib
    import tracemalloc

    import pandas as pd

    from search.cli import output

    def printed(frame) -> tuple[list[str], int]:
        """The table's lines, and the most memory printing it took (into a file: none of it kept)."""
        with open(tmp_path / "out.txt", "w") as out, contextlib.redirect_stdout(out):
            tracemalloc.start()
            output.print_frame(frame, "table")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return (tmp_path / "out.txt").read_text().splitlines(), peak

    monkeypatch.setattr(output, "CELL_BLOCK", 1000, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    printed(pd.DataFrame({"n": [1]}))  # rich's modules loaded before the count
    peaks = []
    for n in (3000, 12000):
        lines, peak = printed(pd.DataFrame({"n": range(n), "x": [i / 8 for i in range(n)],
                                            "s": [f"row{i}" for i in range(n)]}))
        peaks.append(peak)
        assert len(lines) == n + 1
        width = len(str(n - 1))
        assert lines[:3] == [f"{'n':>{width}}      x  s", f"{0:>{width}}      0  row0", f"{1:>{width}}  0.125  row1"]
        assert lines[-1] == f"{n - 1}  {(n - 1) / 8:>5.4g}  row{n - 1}"
    assert peaks[1] < 1.5 * peaks[0], peaks  # four times the rows: about the same memory, not four times it
    peaks = []
    for n in (3000, 12000):  # one column of text wider than the terminal: folded by rich, as before, a block at a time
        lines, peak = printed(pd.DataFrame({"text": [f"{'x' * 100} {i}" for i in range(n)]}))
        peaks.append(peak)
        assert len(lines) == 2 * n + 1
        assert lines[:3] == ["text", "x" * 80, "x" * 20 + " 0"]
        assert lines[-1] == f"{'x' * 20} {n - 1}"
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_best_prefers_the_longer_run_within_2_standard_errors_of_the_highest_value(run_cli, monkeypatch):
    # a 1-epoch coarse trial ahead of a 2-epoch fine trial by less than the noise of the validation split was
    # "the best", with no word of its standard error, though the user retrains at the longer length
    import math

    from tests.search.conftest import cwd_study

    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    assert run_cli("fine", "--trials", "2", "--promote", "0").exit_code == 0
    coarse, fine = cwd_study("digits/coarse"), cwd_study("digits/fine-1")
    n = coarse.user_attrs["data"]["shapes"]["val"][0]
    distributions = {name: optuna.distributions.FloatDistribution(1e-6, 10.0, log=True) for name in ("lr", "reg")}

    def add(study: optuna.Study, value: float) -> int:
        study.add_trial(optuna.trial.create_trial(value=value, params={"lr": 0.01, "reg": 0.001},
                                                  distributions=distributions))
        return len(study.trials) - 1

    def se(p: float) -> float:
        return math.sqrt(p * (1 - p) / n)

    top = add(coarse, 0.99)
    add(fine, 0.99 - 2.5 * se(0.99))  # outside 2 standard errors: the highest value is kept
    shown = run_cli("best")
    margin = f"{2 * se(0.99):.4f} (2 standard errors, {n} validation samples) of the highest value"
    assert " ".join(shown.stdout.split()).endswith(
        f"ties 1 param_lr 0.01 param_reg 0.001 no other trial within {margin} keep it: search train "
        f"--from-trial digits/coarse:{top} --save model.npz")
    assert all(len(line) <= 80 for line in shown.stdout.splitlines()[:-1])
    closer = add(fine, 0.99 - 1.5 * se(0.99))  # within 2 standard errors, at twice the length: shown
    best = json.loads(run_cli("best", "--format", "json").stdout)
    assert {k: best[k] for k in ("study", "number", "value", "value_se", "val_samples", "epochs", "highest_trial",
                                 "highest_value", "ties")} == {
        "study": "digits/fine-1", "number": closer, "value": 0.99 - 1.5 * se(0.99),
        "value_se": pytest.approx(se(0.99 - 1.5 * se(0.99))), "val_samples": n, "epochs": 2,
        "highest_trial": f"digits/coarse:{top}", "highest_value": 0.99, "ties": 2}
    text = " ".join(run_cli("best").stdout.split())
    assert text.endswith(f"value 0.9900 ties 2 param_lr 0.01 param_reg 0.001 2 trials within {margin}, "
                         f"0.9900 (digits/coarse:{top}): any of them may be the best on new data; shown: the highest "
                         f"of the longest runs among them (2 epochs) keep it: search train --from-trial "
                         f"digits/fine-1:{closer} --save model.npz")
    fields = list(csv.DictReader(io.StringIO(run_cli("best", "--format", "csv").stdout)))[0]
    assert (fields["number"], fields["ties"], fields["highest_trial"]) == (str(closer), "2", f"digits/coarse:{top}")
    # the columns best gave before come first, in their old places, the added ones last
    assert list(fields)[:6] + list(fields)[-9:] == ["study", "stage", "number", "value", "param_lr", "param_reg",
                                                    "value_se", "val_samples", "epochs", "ties", "highest_trial",
                                                    "highest_value", "auto_trial", "val_balanced_accuracy",
                                                    "initial_data_loss"]
    assert ("those within 2 standard errors (binomial, on the validation samples) of the highest value tie: shown is "
            "the highest of them at the longest run length") in " ".join(run_cli("best", "--help").stdout.split())


def test_best_trial_from_python_is_what_search_best_gives(run_cli):
    # the README's best_trial(storage, "digits") gave ties 29 and no value_se where search best --json gave ties 74
    # and value_se: the function took margin 0, the command 2 standard errors
    from studies.queries import best_trial

    assert run_cli("coarse", "--trials", "12", "--epochs", "1", "--train-size", "200").exit_code == 0
    cli = json.loads(run_cli("best", "--json").stdout)
    storage = open_storage("sqlite:///search.db", readonly=True)
    try:
        found = best_trial(storage, "digits")
    finally:
        storage.engine.dispose()
    assert found["val_samples"] == cli["val_samples"] == 270
    high = found["highest_value"]
    assert found["margin"] == pytest.approx(2 * math.sqrt(high * (1 - high) / 270)) and found["margin"] > 0
    assert {k: v for k, v in found.items() if k != "margin"} == {k: v for k, v in cli.items() if k != "auto_trial"}


def test_best_gives_accuracies_four_decimals_as_trials_does(run_cli, monkeypatch):
    # best showed "value 0.963" and "val_acc 1" where search trials shows 0.9630 and 1.0000
    import studies.queries

    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200").exit_code == 0
    real = studies.queries.best_trial

    def best_trial(storage, campaign, margin=None):
        row = real(storage, campaign, margin)
        return {**row, "value": 0.962962963, "user_attrs": {**row["user_attrs"], "val_acc": 1.0}}

    monkeypatch.setattr(studies.queries, "best_trial", best_trial)
    fields = dict(line.split(None, 1) for line in run_cli("best").stdout.splitlines()[1:])
    assert (fields["value"].strip(), fields["val_acc"].strip()) == ("0.9630", "1.0000")


def test_studies_keeps_the_best_value_in_80_columns_beside_long_stage_names(run_cli, monkeypatch):
    # search compare's stages (compare-20261206T191843Z/random-0) pushed best_value out of an 80-column table
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli("coarse", "--campaign", "compare-20261206T191843Z-01", "--trials", "1", "--epochs", "1",
                   "--train-size", "200").exit_code == 0
    shown = run_cli("studies")
    assert shown.stdout.splitlines()[0].split() == ["study", "n_trials", "best_value", "complete", "pruned"]
    assert " ".join(shown.stderr.split()) == "(2 more columns: fail, epochs; --wide, --columns or --format csv)"
    assert all(len(line) <= 80 for line in shown.stdout.splitlines())


def test_every_option_of_every_command_says_what_it_does():
    # --batch-size, --loss, --batchnorm, --format, trials --limit, train --epochs, ... were listed bare
    import click

    bare = [f"{name} {param.opts[0]}" for name, command in sorted(cli.commands.items()) for param in command.params
            if isinstance(param, click.Option) and not param.help and param.name != "help"]
    assert bare == []


def test_every_help_fits_80_columns_and_gives_an_example(run_cli, monkeypatch):
    # the examples of fine and worker and query's list of trials_flat's columns ran past 80 columns (83, 84, 84)
    monkeypatch.setenv("COLUMNS", "80")
    for name in sorted(cli.commands):
        text = run_cli(name, "--help").stdout
        assert [line for line in text.splitlines() if len(line) > 80] == [], name
        assert re.search(r"^  Examples?:$", text, re.M) and f"    search {name} " in text, name


def test_the_help_and_the_readme_name_the_space_a_stage_searches_without_one(run_cli):
    # neither said over which ranges lr and reg are searched where no --space, --lr, --reg or space file is given
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    space = json.loads(run_cli("studies", "--format", "json").stdout)[0]["space"]
    assert space == "lr=1e-06:1 reg=1e-06:10"
    for name in ("coarse", "auto", "compare"):
        text = " ".join(run_cli(name, "--help").stdout.split())
        assert f"Default, without --space, --lr, --reg or a space file: {space} (search auto: and the hidden " \
            "width)." in text, name
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    said = re.search(r"Without `--space`, `--lr`, `--reg` or `--space-file` a stage searches lr over (\S+) and reg "
                     r"over (\S+) \(`search auto`: and the hidden width", readme)
    stored = {name: [float(v) for v in spec.split(":")] for name, spec in (d.split("=") for d in space.split())}
    assert said and {"lr": [float(v) for v in said[1].split(":")], "reg": [float(v) for v in said[2].split(":")]} \
        == stored


def test_init_std_help_names_every_init_it_applies_to_in_layers_as_in_train(run_cli):
    # search layers said "Std for normal/uniform init" where it takes sparse's and constant's std and orthogonal's gain
    from engine.init import DEFAULT_STD

    for name in ("layers", "train"):
        text = " ".join(run_cli(name, "--help").stdout.split())
        said = re.search(r"--init-std FLOAT Std for (\S+) init, gain for (\w+)", text)
        assert said and {*said[1].split("/"), said[2]} == set(DEFAULT_STD), name
    layers = " ".join(run_cli("layers", "--help").stdout.split())
    assert "gain for orthogonal (normal: 0.01 collapses, 1.0 saturates tanh)." in layers
    assert run_cli("layers", "--init", "orthogonal", "--init-std", "2", "--depth", "2", "--width", "8").exit_code == 0


def test_help_lists_no_argument_as_a_bare_option_row(run_cli):
    # click 8.5.1 gives an argument a help row: "Options:" began with a bare "  [STUDY]" (trials), "  SQL" (query)
    text = run_cli("explain", "--help").stdout
    options = text[text.index("Options:\n") + len("Options:\n"):].splitlines()
    assert [line.split()[0] for line in options] == ["--plot", "-h,"]
    for name in ("trials", "query", "explain"):
        rows = run_cli(name, "--help").stdout.splitlines()
        assert not [row for row in rows if row.strip() in ("[STUDY]", "SQL", "STUDY:NUMBER")], name


def test_a_stage_refused_for_other_settings_names_the_run_setting_that_differs(run_cli):
    # search auto again without --preprocess standardize was refused with the stage's space, trials, epochs and
    # sampler, all as this command gives them: the one setting that differed went unnamed
    args = ["coarse", "--trials", "2", "--epochs", "1", "--train-size", "200"]
    assert run_cli(*args, "--preprocess", "standardize").exit_code == 0
    assert run_cli(*args).exit_code == 0  # naming no preprocessing: the stage's own, as it was created
    line = one_line_error(run_cli(*args, "--preprocess", "mean_image"), "already exists with other settings")
    assert line == ("error: stage digits/coarse already exists with other settings (lr=1e-06:1 reg=1e-06:10, 2 "
                    "trials, 1 epoch, sampler random), and this command gives (by its options, or their defaults "
                    "where none is given) --preprocess mean_image where it has "
                    "standardize; run it with those settings or pass --campaign NAME to start another campaign")
    line = one_line_error(run_cli(*args, "--preprocess", "standardize", "--hidden", "50,20"))
    assert "and this command gives (by its options, or their defaults where none is given) --hidden 50,20 " \
        "where it has 100; run it" in line


def test_a_stage_refused_for_other_columns_names_them_as_the_options_are_typed(run_cli, tmp_path):
    # "data.ignore_columns () where it has ('id',)": a Python tuple under the configuration's name
    (tmp_path / "t.csv").write_text("id,x,label\n" + "".join(f"{i},{i % 7},{'ab'[i % 2]}\n" for i in range(200)))
    args = ["coarse", "--data", "t.csv", "--trials", "2", "--epochs", "1", "--batch-size", "10"]
    assert run_cli(*args, "--ignore-column", "id").exit_code == 0
    line = one_line_error(run_cli(*args, "--label-column", "label"))
    assert ("where none is given) --label-column label where it has (none), --ignore-column (none) where it has id; "
            "run it") in line, line


def test_campaign_and_out_help_give_each_command_its_own_default(run_cli):
    # every command said "--campaign ... (default: the dataset's name / the latest)", search trials too, which shows
    # every campaign; report and compare both said "--out ... (default: report-<campaign> / <campaign>)"
    def option(command, name):
        text = " ".join(run_cli(command, "--help").stdout.split())
        row = f"{name} {'DIRECTORY' if name == '--out' else 'TEXT'} "  # not an example's --campaign digits
        return text[text.index(row):].split(").")[0] + ")."

    for command in ("coarse", "auto"):
        assert option(command, "--campaign") == ("--campaign TEXT Campaign name (default: the data's name, e.g. wine "
                                                 "for wine.csv).")
    for command in ("fine", "grid", "worker", "best", "report"):
        assert option(command, "--campaign") == ("--campaign TEXT Campaign name (default: the latest, search "
                                                 "compare's left out)."), command
    assert option("trials", "--campaign") == "--campaign TEXT Campaign name (default: every campaign)."
    assert option("compare", "--campaign") == "--campaign TEXT Campaign name (default: compare-<UTC timestamp>)."
    assert option("report", "--out") == "--out DIRECTORY Folder to write into (default: report-<campaign>)."
    assert option("compare", "--out") == "--out DIRECTORY Folder to write into (default: <campaign>)."


def test_search_data_takes_the_data_options_alone(run_cli):
    # search data --help listed the model and update options, and took --hidden 5 --activation tanh without a word
    text = run_cli("data", "--help").stdout
    assert "--label-column" in text and "--batch-size" in text and "--hidden" not in text and "--optimizer" not in text
    refused = run_cli("data", "--hidden", "5")
    assert refused.exit_code == 2 and "No such option '--hidden'" in refused.output


def test_the_run_a_command_of_data_options_builds_has_every_other_option_at_its_default():
    import click
    from click.testing import CliRunner

    from search.cli.options import DATA_PARAMS, run_config_options

    built = {}
    for name, decorate in (("all", run_config_options), ("data", run_config_options(params=DATA_PARAMS))):
        @click.command()
        @decorate
        def command(base):
            built[name] = base

        assert CliRunner().invoke(command, ["--train-size", "300", "--batch-size", "20"]).exit_code == 0
    assert built["data"] == built["all"] and built["all"].train.batch_size == 20


def test_the_table_commands_take_json_as_the_stage_commands_do(run_cli):
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    for args in (["studies"], ["trials", "digits/coarse"], ["best"],
                 ["query", "SELECT number, value FROM trials_flat"]):
        short, long = run_cli(*args, "--json"), run_cli(*args, "--format", "json")
        assert short.exit_code == 0 and short.stdout == long.stdout, args
        assert json.loads(short.stdout)
    rows = json.loads(run_cli("query", "SELECT number FROM trials_flat ORDER BY number", "--json").stdout)
    assert rows == [{"number": 0}, {"number": 1}]
    assert run_cli("trials", "--help").stdout.count("--json") == 1


def test_a_trial_number_past_the_last_names_the_numbers_there_are(run_cli):
    # "has no trial 2 (it has 2)" read as a contradiction: numbers start at 0
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    for number in (2, 2**64):  # one past SQL's 64-bit integers crashed with an OverflowError
        for args in (["explain", f"digits/coarse:{number}"], ["train", "--from-trial", f"digits/coarse:{number}"]):
            assert (one_line_error(run_cli(*args))
                    == f"error: study digits/coarse has no trial {number}: its trials are 0 to 1")


def test_a_table_of_trials_none_of_which_completed_says_how_each_ended(run_cli, monkeypatch):
    # search trials --state fail listed FAIL rows with "-" in every column that could say why
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli("coarse", "--lr", "1:10", "--trials", "3", "--epochs", "1", "--train-size", "200").exit_code == 0
    pruned = run_cli("trials", "digits/coarse", "--state", "pruned").stdout.splitlines()
    assert pruned[0].split() == ["number", "state", "stop_reason", "value", "lr", "diagnosis", "seconds"]
    assert [line.split()[:3] for line in pruned[1:]] == [[str(n), "PRUNED", "exploded"] for n in range(3)]
    assert run_cli("coarse", "--campaign", "ok", "--trials", "2", "--epochs", "1",
                   "--train-size", "200").exit_code == 0
    assert "stop_reason" not in run_cli("trials", "ok/coarse").stdout.splitlines()[0]  # completed: as before


def test_commands_suggested_for_a_campaign_named_with_a_space_can_be_pasted_back(run_cli):
    import shlex

    assert run_cli("coarse", "--campaign", "my run", "--trials", "2", "--epochs", "1", "--train-size", "200",
                   "--jobs", "1").exit_code == 0
    keep = run_cli("best", "--campaign", "my run").stdout.splitlines()[-1]
    assert keep in ("keep it: search train --from-trial 'my run/coarse:0' --save model.npz",
                    "keep it: search train --from-trial 'my run/coarse:1' --save model.npz")
    assert shlex.split(keep.removeprefix("keep it: "))[3] in ("my run/coarse:0", "my run/coarse:1")
    report = run_cli("report", "--campaign", "my run", "--out", "r")
    assert report.exit_code == 0, report.output
    assert ("with `search grid --campaign 'my run'` and run the report again"
            in " ".join(report.stdout.split()))
    refused = run_cli("trials", "my run")
    assert refused.exit_code == 2
    assert "give it as the campaign (--campaign 'my run') or name one of its stages" in refused.stderr


def test_the_note_of_columns_left_out_follows_the_table(run_cli, monkeypatch):
    # it came before the table, so that a long listing scrolled it off the top of the terminal
    monkeypatch.setenv("COLUMNS", "50")
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    shown = run_cli("trials", "digits/coarse", "--sort", "number")
    lines = shown.output.splitlines()
    assert lines[0].split() == ["number", "state", "value", "lr", "reg"]
    assert [line.split()[0] for line in lines[1:3]] == ["0", "1"]
    assert " ".join(" ".join(lines[3:]).split()) == "(2 more columns: diagnosis, seconds; --wide, --columns or --format csv)"


@pytest.mark.parametrize("command", [("explain",), ("train", "--from-trial")])
@pytest.mark.parametrize("number", ["²", "٣", "x", ""])
def test_a_trial_reference_whose_number_is_not_written_in_ascii_digits_is_one_line(run_cli, command, number):
    # "a:²" ended in a ValueError traceback (str.isdigit takes it, int() does not); "a:٣" was read as trial 3
    result = run_cli(*command, f"digits/coarse:{number}")
    assert result.exit_code == 2
    option = "--from-trial " if command[0] == "train" else ""
    assert result.output.strip() == (f"error: {option}'digits/coarse:{number}' must look like STUDY:NUMBER, "
                                     f"e.g. digits/coarse:12")


@pytest.mark.parametrize("args, hint", [
    (["digits/coarse", "3"], "not 2 arguments: give digits/coarse:3"),
    (["digits/coarse:", "3", "--json"], "not 2 arguments: give digits/coarse:3"),
    (["my", "run/coarse:3"], "not 2 arguments: give 'my run/coarse:3'"),
    (["digits/coarse:3", "x"], "got 2 arguments: digits/coarse:3 x"),
])
def test_explain_given_a_trial_in_more_than_one_argument_names_the_study_number_form(run_cli, args, hint):
    # search explain digits/coarse 3 got click's bare "Got unexpected extra argument (3)"
    assert one_line_error(run_cli("explain", *args)) == (
        f"error: search explain takes one trial as STUDY:NUMBER, e.g. digits/coarse:12{',' if 'give' in hint else ';'} "
        f"{hint}")
    assert not os.path.exists("search.db")


def test_search_fine_takes_a_sampler_for_its_refined_box(run_cli):
    # search auto's fine stages sampled with TPE; search fine had no --sampler and took the coarse stage's random
    assert run_cli("coarse", "--trials", "6", "--epochs", "1", "--train-size", "200", "--jobs", "1").exit_code == 0
    assert run_cli("fine", "--promote", "0", "--trials", "4", "--jobs", "1").exit_code == 0
    assert run_cli("fine", "--promote", "0", "--sampler", "tpe", "--trials", "4", "--jobs", "1").exit_code == 0
    samplers = [optuna.load_study(study_name=name, storage=open_storage("sqlite:///search.db")).user_attrs["sampler"]
                for name in ("digits/coarse", "digits/fine-1", "digits/fine-2")]
    assert samplers == ["random", "random", "tpe"]


def test_a_following_worker_joins_each_next_stage_until_the_final_one_is_done(run_cli, monkeypatch):
    # search worker served one stage and exited: a machine helping search auto had to be started again per stage
    import time

    from engine.data import DataSpec
    from search.campaign import DEFAULT_SPACE, coarse_stage
    from search.cli import stages as stages_cli
    from search.config import RunConfig
    from search.stages import create_stage

    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200", "--jobs", "1").exit_code == 0
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    created, real_sleep = [], time.sleep

    def sleep(seconds):  # while the worker waits, "search auto" creates the next stage: fine-1, then final
        if seconds != stages_cli.FOLLOW_POLL_SECONDS:
            return real_sleep(seconds)
        name = ("fine-1", "final")[len(created)]
        create_stage(open_storage("sqlite:///search.db"),
                     replace(coarse_stage("digits", run, DEFAULT_SPACE, 3, seed=len(created) + 1), stage=name,
                             parent="digits/coarse"))
        created.append(name)

    monkeypatch.setattr(time, "sleep", sleep)
    once = run_cli("worker", "--json")  # without --follow: nothing left, so nothing to join
    assert once.exit_code == 0 and json.loads(once.stdout) == {"stages": []} and created == []
    followed = run_cli("worker", "--follow", "--json")
    assert followed.exit_code == 0, followed.output
    assert created == ["fine-1", "final"]
    ran = [(s["study"], s["ran"], s["counts"]["complete"] + s["counts"]["pruned"])
           for s in json.loads(followed.stdout)["stages"]]
    assert ran == [("digits/fine-1", 3, 3), ("digits/final", 3, 3)]
    # a stage named and --follow: it joined the stage and dropped --follow without a word
    assert one_line_error(run_cli("worker", "--stage", "coarse", "--follow")) == (
        "error: --stage and --follow: give one, --stage to join that stage alone or --follow to join each next stage")


def test_a_following_worker_says_once_that_it_waits_for_the_next_stage(run_cli, monkeypatch):
    # after a stage begun by search coarse, worker --follow waited for a next stage without a word, forever
    import time

    from engine.data import DataSpec
    from search.campaign import DEFAULT_SPACE, coarse_stage
    from search.cli import stages as stages_cli
    from search.config import RunConfig
    from search.stages import create_stage

    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200", "--jobs", "1").exit_code == 0
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    polls = []

    def sleep(seconds):  # two polls find nothing, the third a final stage ("search auto" made it)
        assert seconds == stages_cli.FOLLOW_POLL_SECONDS
        polls.append(seconds)
        if len(polls) == 3:
            create_stage(open_storage("sqlite:///search.db"),
                         replace(coarse_stage("digits", run, DEFAULT_SPACE, 1, seed=1), stage="final",
                                 parent="digits/coarse"))

    monkeypatch.setattr(time, "sleep", sleep)
    followed = run_cli("worker", "--follow")
    assert followed.exit_code == 0, followed.output
    assert len(polls) == 3 and followed.stderr.count("waiting") == 1
    assert " ".join(followed.stderr.split()).startswith(  # wrapped to the terminal's width
        "waiting for the next stage of campaign digits or a new campaign (search auto adds them; Ctrl-C stops) ")


def test_a_following_worker_waits_for_its_campaign_to_be_created(run_cli, monkeypatch):
    # search worker --follow --campaign X started before X existed stopped at once: "unknown campaign 'X'"
    import time

    from engine.data import DataSpec
    from search.campaign import DEFAULT_SPACE, coarse_stage
    from search.cli import stages as stages_cli
    from search.config import RunConfig
    from search.stages import create_stage

    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200", "--jobs", "1").exit_code == 0
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    assert one_line_error(run_cli("worker", "--campaign", "later")) == (  # without --follow: as before
        "error: unknown campaign 'later'; known campaigns: digits")
    polls = []

    def sleep(seconds):  # two polls find no campaign "later", the third its final stage ("search auto" made it)
        assert seconds == stages_cli.FOLLOW_POLL_SECONDS
        polls.append(seconds)
        if len(polls) == 3:
            create_stage(open_storage("sqlite:///search.db"),
                         replace(coarse_stage("later", run, DEFAULT_SPACE, 2, seed=1), stage="final"))

    monkeypatch.setattr(time, "sleep", sleep)
    followed = run_cli("worker", "--follow", "--campaign", "later")
    assert followed.exit_code == 0, followed.output
    assert len(polls) == 3 and followed.stderr.count("waiting") == 1
    assert " ".join(followed.stderr.split()).startswith(
        "waiting for campaign later to be created (known campaigns: digits; Ctrl-C stops) ")
    assert all(t.state.is_finished() for t in cwd_study("later/final").trials)  # the worker ran both trials
    assert len(cwd_study("later/final").trials) == 2

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupted)  # Ctrl-C while it waits: the command's last line, as ever
    stopped = run_cli("worker", "--follow", "--campaign", "not-yet", "--json")
    assert stopped.exit_code == 130 and stopped.stdout == ""
    assert stopped.stderr.lstrip("\n") == (  # after the newline that ends the ^C a terminal echoes
        "interrupted: the database is consistent; run the same command again to continue\n")


def test_a_following_worker_without_campaign_waits_for_a_first_campaign(run_cli, monkeypatch):
    # search worker --follow on a database with no campaign yet stopped at once: "the database has no campaign yet"
    import time

    from engine.data import DataSpec
    from search.campaign import DEFAULT_SPACE, coarse_stage
    from search.cli import stages as stages_cli
    from search.config import RunConfig
    from search.stages import create_stage

    assert one_line_error(run_cli("worker", "--follow")).startswith(  # no file: an error still (a wrong folder?)
        "error: no database at 'search.db' (storage sqlite:///search.db): ")
    open_storage("sqlite:///search.db").engine.dispose()  # a database with no campaign in it
    assert one_line_error(run_cli("worker")) == (  # without --follow: as before
        "error: the database has no campaign yet; start one with `search coarse` or `search auto`")
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    polls = []

    def sleep(seconds):  # two polls find no campaign, the third one campaign's final stage ("search auto" made it)
        assert seconds == stages_cli.FOLLOW_POLL_SECONDS
        polls.append(seconds)
        if len(polls) == 3:
            create_stage(open_storage("sqlite:///search.db"),
                         replace(coarse_stage("first", run, DEFAULT_SPACE, 2, seed=1), stage="final"))

    monkeypatch.setattr(time, "sleep", sleep)
    followed = run_cli("worker", "--follow")
    assert followed.exit_code == 0, followed.output
    assert len(polls) == 3 and followed.stderr.count("waiting") == 1
    assert " ".join(followed.stderr.split()).startswith(
        "waiting for a first campaign to be created in the database (search coarse or search auto makes one; "
        "Ctrl-C stops) ")
    assert [t.state.is_finished() for t in cwd_study("first/final").trials] == [True, True]  # the worker ran both


def test_a_following_worker_without_campaign_joins_a_campaign_created_while_it_waits(run_cli, monkeypatch):
    # search worker --follow followed the campaign newest when it started, waiting for its next stage for ever while
    # search auto ran a second campaign in the same database
    import time

    from engine.data import DataSpec
    from search.campaign import DEFAULT_SPACE, coarse_stage
    from search.cli import stages as stages_cli
    from search.config import RunConfig
    from search.stages import create_stage

    base = ("--trials", "2", "--epochs", "1", "--train-size", "200", "--jobs", "1")
    assert run_cli("coarse", "--campaign", "first", *base).exit_code == 0
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    polls = []

    def sleep(seconds):  # "search auto --campaign second" makes its coarse stage, then its final one
        assert seconds == stages_cli.FOLLOW_POLL_SECONDS
        polls.append(seconds)
        if len(polls) > 2:
            raise KeyboardInterrupt  # still waiting: stopped, as Ctrl-C would
        stage = coarse_stage("second", run, DEFAULT_SPACE, 3, seed=1)
        if len(polls) == 2:
            stage = replace(stage, stage="final", parent="second/coarse", n_trials=2)
        create_stage(open_storage("sqlite:///search.db"), stage)

    monkeypatch.setattr(time, "sleep", sleep)
    followed = run_cli("worker", "--follow")
    assert followed.exit_code == 0, followed.output
    assert len(polls) == 2
    text = " ".join(followed.stderr.split())
    assert text.count("joining campaign second, created after this worker started") == 1, followed.stderr
    assert text.startswith("waiting for the next stage of campaign first or a new campaign (search auto adds them; "
                           "Ctrl-C stops) ")
    assert text.count("waiting for the next stage of campaign second or a new campaign") == 1
    for name, n in (("second/coarse", 3), ("second/final", 2)):
        trials = cwd_study(name).trials
        assert len(trials) == n and all(t.state.is_finished() for t in trials), name
    assert len(cwd_study("first/coarse").trials) == 2
    summaries = re.findall(r"^(\S+): (\d+) complete, (\d+) pruned(?: \(.*\))? of (\d+)", followed.stdout, re.M)
    assert [(name, int(done) + int(pruned), int(n)) for name, done, pruned, n in summaries] == [
        ("second/coarse", 3, 3), ("second/final", 2, 2)]


def test_a_following_worker_names_every_campaign_it_followed_when_it_found_nothing_to_join(run_cli, monkeypatch):
    import time

    from engine.data import DataSpec
    from search.campaign import DEFAULT_SPACE, coarse_stage
    from search.cli import stages as stages_cli
    from search.config import RunConfig
    from search.stages import create_stage, run_worker

    base = ("--trials", "1", "--epochs", "1", "--train-size", "200", "--jobs", "1")
    assert run_cli("coarse", "--campaign", "first", *base).exit_code == 0
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    polls = []

    def sleep(seconds):  # "search auto --campaign second" makes its final stage and runs it before the next look
        assert seconds == stages_cli.FOLLOW_POLL_SECONDS
        polls.append(seconds)
        if len(polls) > 1:
            raise KeyboardInterrupt
        storage = open_storage("sqlite:///search.db")
        create_stage(storage, replace(coarse_stage("second", run, DEFAULT_SPACE, 1, seed=1), stage="final"))
        assert run_worker(storage, "second/final", run.load()).ran == 1

    monkeypatch.setattr(time, "sleep", sleep)
    followed = run_cli("worker", "--follow")
    assert followed.exit_code == 0 and len(polls) == 1, followed.output
    assert followed.stdout == "nothing to join: every stage of campaigns first, second is complete\n"


def test_a_following_worker_started_after_the_newest_campaign_was_done_waits_for_a_new_one(run_cli, monkeypatch):
    # search worker --follow (no --campaign) started on each machine before the next search auto, once the newest
    # campaign's final stage was done, said "nothing to join" and exited: none was left to join the next campaign
    import time

    from engine.data import DataSpec
    from search.campaign import DEFAULT_SPACE, coarse_stage
    from search.cli import stages as stages_cli
    from search.config import RunConfig
    from search.stages import create_stage, run_worker

    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    storage = open_storage("sqlite:///search.db")
    create_stage(storage, replace(coarse_stage("first", run, DEFAULT_SPACE, 1, seed=1), stage="final"))
    assert run_worker(storage, "first/final", run.load()).ran == 1  # search auto --campaign first, done
    polls = []

    def sleep(seconds):  # "search auto --campaign second" makes its final stage while the worker waits
        assert seconds == stages_cli.FOLLOW_POLL_SECONDS
        polls.append(seconds)
        if len(polls) > 2:
            raise KeyboardInterrupt  # still waiting: stopped, as Ctrl-C would
        if len(polls) == 2:
            create_stage(open_storage("sqlite:///search.db"),
                         replace(coarse_stage("second", run, DEFAULT_SPACE, 2, seed=1), stage="final"))

    monkeypatch.setattr(time, "sleep", sleep)
    followed = run_cli("worker", "--follow", "--jobs", "1")
    assert followed.exit_code == 0 and len(polls) == 2, followed.output
    assert " ".join(followed.stderr.split()).startswith(
        "every stage of campaign first is complete: waiting for a new campaign (search coarse or search auto makes "
        "one; Ctrl-C stops) joining campaign second, created after this worker started"), followed.stderr
    trials = cwd_study("second/final").trials
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    # named, the campaign done is not waited on
    assert run_cli("worker", "--follow", "--campaign", "first").stdout == (
        "nothing to join: every stage of campaign first is complete\n")


def test_a_worker_whose_stage_other_processes_finished_as_it_joined_says_so(run_cli, monkeypatch):
    # a worker that joined a stage with trials left ("continuing ...: 7 of 8 trials finished; 1 running in another
    # process") and ran none of them said the stage "was already complete; nothing to run"
    import search.campaign
    from search.stages import Stage, run_worker

    args = ("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200")
    assert stages_made_only(run_cli, monkeypatch, *args).exit_code == 130
    joining = search.campaign.run_existing

    def others_first(execution, study, **kwargs):  # another machine's worker runs the trials left meanwhile
        run_worker(open_storage("sqlite:///search.db"), study.study_name, Stage.from_attrs(study.user_attrs).run.load())
        return joining(execution, study, **kwargs)

    monkeypatch.setattr(search.campaign, "run_existing", others_first)
    late = run_cli("worker", "--jobs", "1")
    assert late.exit_code == 0, late.output
    assert late.stdout.startswith("\nthis worker ran no trial of digits/coarse: other processes finished it\n")


def test_a_worker_runs_jobs_processes_of_one_blas_thread_each(run_cli, monkeypatch):
    # search worker had no --jobs: N processes on one machine took N commands, each on NumPy's own BLAS threads
    import search.campaign

    args = ("coarse", "--trials", "6", "--epochs", "1", "--train-size", "200")
    assert stages_made_only(run_cli, monkeypatch, *args).exit_code == 130
    jobs = []
    real = search.campaign.run_stage_processes
    monkeypatch.setattr(search.campaign, "run_stage_processes",
                        lambda url, name, dataset, n, *a, **k: jobs.append(n) or real(url, name, dataset, n, *a, **k))
    result = run_cli("worker", "--jobs", "2", "--json")
    assert result.exit_code == 0, result.output
    stage = json.loads(result.stdout)["stages"][0]
    assert jobs == [2] and stage["ran"] == 6 and stage["counts"]["complete"] + stage["counts"]["pruned"] == 6
    trials = cwd_study("digits/coarse").trials
    assert len(trials) == 6 and [t.user_attrs["blas_threads"] for t in trials] == [1] * 6
    assert one_line_error(run_cli("worker", "--jobs", "0")) == (
        "error: Invalid value for '--jobs': '0' must be auto or a number of processes from 1 to 256")


def test_an_exploded_trials_plot_draws_the_line_its_loss_crossed(run_cli, monkeypatch):
    # search explain --plot of an exploded trial showed its loss alone: not what it was stopped against
    from studies import plots

    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path, **kw: drawn.append(fig))
    base = ["--trials", "1", "--epochs", "1", "--train-size", "200", "--jobs", "1"]
    assert run_cli("coarse", "--lr", "1:10", "--explode-factor", "4", *base).exit_code == 0
    assert run_cli("coarse", "--campaign", "calm", "--lr", "1e-3:2e-3", *base).exit_code == 0
    assert [optuna.load_study(study_name=name, storage=open_storage("sqlite:///search.db")).trials[0]
            .user_attrs["stop_reason"] for name in ("digits/coarse", "calm/coarse")] == ["exploded", "completed"]
    assert run_cli("explain", "digits/coarse:0", "--plot", "t.png").exit_code == 0
    assert run_cli("explain", "calm/coarse:0", "--plot", "t.png").exit_code == 0
    exploded, calm = (figure.axes[0] for figure in drawn)
    curve, line = exploded.lines
    assert list(line.get_ydata()) == [4 * curve.get_ydata()[0]] * 2
    assert [text.get_text() for text in exploded.get_legend().get_texts()] == ["4 x first loss (stop)"]
    assert len(calm.lines) == 1 and calm.get_legend() is None


def test_a_trials_plot_draws_no_curve_that_is_not_a_list_of_numbers(run_cli, monkeypatch):
    # curves other code wrote into the study ("zz") ended search explain --plot in a traceback
    from studies import plots

    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path, **kw: drawn.append(fig))
    assert run_cli("coarse", "--trials", "1", "--epochs", "2", "--train-size", "200", "--jobs", "1").exit_code == 0
    with sqlite3.connect("search.db") as db:
        db.execute("UPDATE trial_system_attributes SET value_json = '\"zz\"' "
                   "WHERE key IN ('loss_curve', 'train_acc_curve')")
    result = run_cli("explain", "digits/coarse:0", "--plot", "t.png")
    assert result.exit_code == 0, result.output
    loss, accuracy = drawn[0].axes
    assert [list(line.get_ydata()) for line in loss.lines] == [[]]
    train, val = accuracy.lines
    assert list(train.get_xdata()) == list(val.get_xdata()) == [1, 2]
    assert all(y != y for y in train.get_ydata()) and len(val.get_ydata()) == 2


def test_search_train_plots_an_exploded_run_with_the_line_its_loss_crossed(run_cli, monkeypatch):
    # search train --plot of a run it reported as exploded drew its loss alone
    from studies import plots

    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path, **kw: drawn.append(fig))
    base = ["--epochs", "1", "--train-size", "200", "--plot", "run.png"]
    assert run_cli("train", "--lr", "3", "--explode-factor", "5", *base).exit_code == 1  # exploded
    assert run_cli("train", "--lr", "1e-3", *base).exit_code == 0
    exploded, calm = (figure.axes[0] for figure in drawn)
    curve, line = exploded.lines
    assert list(line.get_ydata()) == [5 * curve.get_ydata()[0]] * 2
    assert [text.get_text() for text in exploded.get_legend().get_texts()] == ["5 x first loss (stop)"]
    assert len(calm.lines) == 1 and calm.get_legend() is None


def test_fine_continuing_an_unfinished_stage_says_which_options_it_does_not_apply(run_cli):
    # --trials, --epochs, --sampler and --scheduler were dropped without a word when the newest fine stage was unfinished
    from search.campaign import next_fine_stage
    from search.stages import create_stage

    assert run_cli("coarse", "--trials", "4", "--epochs", "1", "--train-size", "200").exit_code == 0
    storage = open_storage("sqlite:///search.db")
    stage, _ = next_fine_stage(storage, "digits", 5, 0.1, None, 3)  # created, none of its 3 trials run
    create_stage(storage, stage)
    storage.engine.dispose()
    result = run_cli("fine", "--trials", "5", "--epochs", "2", "--sampler", "tpe")
    assert result.exit_code == 0, result.output
    assert " ".join(result.stderr.split()).startswith(
        "continuing digits/fine-1, unfinished, as it was created: --trials 5, --sampler tpe not applied; run the "
        "command again once it is done for a new stage with them")
    assert json.loads(run_cli("studies", "--json").stdout)[-1]["n_trials"] == 3  # as created


def test_fine_after_a_stopped_promotion_stage_continues_it_at_its_epochs(run_cli):
    # search fine --epochs 3 stopped in promote-1, then search fine: refused, its default of twice the coarse epochs
    # clashing with the stored promote-1 ("already exists with other settings ... --epochs 2 where it has 3")
    from search.stages import create_stage, promotion_stage

    assert run_cli("coarse", "--trials", "4", "--epochs", "1", "--train-size", "200").exit_code == 0
    storage = open_storage("sqlite:///search.db")
    create_stage(storage, promotion_stage(optuna.load_study(study_name="digits/coarse", storage=storage), 3, 2))
    storage.engine.dispose()  # created at 3 epochs, none of its runs made
    result = run_cli("fine", "--trials", "2", "--promote", "2")
    assert result.exit_code == 0, result.output
    rows = {row["stage"]: row for row in json.loads(run_cli("studies", "--json").stdout)}
    assert (rows["promote-1"]["n_trials"], rows["promote-1"]["epochs"]) == (2, 3)
    assert (rows["fine-1"]["n_trials"], rows["fine-1"]["epochs"]) == (2, 3)
    storage = open_storage("sqlite:///search.db")
    create_stage(storage, promotion_stage(optuna.load_study(study_name="digits/fine-1", storage=storage), 4, 2))
    storage.engine.dispose()
    result = run_cli("fine", "--trials", "2", "--promote", "2", "--epochs", "5")
    assert result.exit_code == 0, result.output
    assert " ".join(result.stderr.split()).startswith(
        "continuing digits/promote-2 as it was created: --epochs 5 not applied; run the command again once the next "
        "fine stage is done for a new stage with it")
    assert json.loads(run_cli("studies", "--json").stdout)[-1]["epochs"] == 4


def test_train_on_a_loss_not_finite_before_any_update_blames_the_initialisation(run_cli):
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # NumPy's "overflow encountered in dot" went to stderr
        warnings.simplefilter("always")
        assert run_cli("train", "--epochs", "1", "--init", "normal", "--init-std", "1e30").exit_code == 1
        result = run_cli("train", "--epochs", "1", "--depth", "4", "--init", "normal", "--init-std", "1e10")
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert result.exit_code == 1
    assert "no epoch finished\ndiagnosis: bad_initial_loss\n" in result.stdout
    assert "lr" not in result.stdout.split("diagnosis:")[0]  # no "try a lower --lr"


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["coarse", "--trials", "1", "--epochs", "1"]])
def test_depth_beside_several_hidden_widths_is_refused_not_cut_to_the_first(run_cli, tmp_path, command):
    # --hidden 10,20 --depth 3 trained 10,10,10: the width 20 was dropped without a word
    result = run_cli(*command, "--hidden", "10,20", "--depth", "3")
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", (
        "error: --depth makes every hidden layer as wide as the first; --hidden 10,20 gives different widths: give "
        "one width\n"))
    assert not (tmp_path / "search.db").exists()
    assert run_cli("train", "--epochs", "1", "--hidden", "10,10", "--depth", "3", "--json").exit_code == 0


def test_a_plot_is_written_in_the_format_its_suffix_names_or_refused(run_cli, tmp_path):
    # --plot x.txt wrote a PNG named x.txt, and x.pdf a PNG named x.pdf
    refused = run_cli("layers", "--plot", "x.txt")
    assert (refused.exit_code, refused.stdout) == (2, "")
    assert refused.stderr.endswith("'x.txt': a plot is written as .png, .pdf or .svg, by the file's suffix\n")
    assert not (tmp_path / "x.txt").exists()
    for name, start in (("x.png", b"\x89PNG"), ("x.PDF", b"%PDF"), ("x.svg", b"<?xml")):
        assert run_cli("layers", "--plot", name).exit_code == 0
        assert (tmp_path / name).read_bytes().startswith(start), name
    assert run_cli("train", "--epochs", "1", "--train-size", "200", "--plot", "curves.svg").exit_code == 0
    assert b"<svg" in (tmp_path / "curves.svg").read_bytes()


def test_one_run_or_one_retrain_is_given_no_spread_of_zero(run_cli, tmp_path, monkeypatch):
    # --repeats 1 --retrain-seeds 1 printed "value 0.9593 +- 0.0000 over 1 runs" and "test_acc 0.9593 +- 0.0000", the
    # std of one value, which reads as a value known exactly
    monkeypatch.setenv("COLUMNS", "200")  # the lines unwrapped
    auto = run_cli("auto", "--trials", "4", "--epochs", "1", "--train-size", "200", "--max-fine", "0", "--top", "2",
                   "--repeats", "1", "--retrain-seeds", "1", "--jobs", "1")
    assert auto.exit_code == 0, auto.output
    chosen, retrained = auto.stdout.splitlines()[-2:]
    assert re.fullmatch(r"  digits/final: value 0\.\d{4} over 1 run of 1 epoch \(1 run: no spread\)", chosen), chosen
    assert re.fullmatch(r"  retrained 1x: val_acc 0\.\d{4}, test_acc 0\.\d{4} \(1 retrain: no spread\), balanced "
                        r"0\.\d{4}", retrained)
    assert run_cli("report", "--out", "rep").exit_code == 0
    md = " ".join((tmp_path / "rep" / "report.md").read_text().split())
    assert re.search(r"validation accuracy 0\.\d{4} \(1 run of 1 epoch; trials #\d+ of digits/final\)", md)
    assert re.search(r"test accuracy 0\.\d{4} \(1 retrain: no spread\), balanced accuracy 0\.\d{4}\.", md)
    assert "± 0.0000" not in md


@pytest.mark.parametrize("columns", ["1", "0", "-5", "abc"])
def test_a_terminal_width_of_one_column_or_none_wraps_a_word_a_line(run_cli, monkeypatch, columns):
    # COLUMNS=1 once wrapped to a width of 0, which textwrap refuses: a traceback; 0, -5 and abc read as unset (80)
    monkeypatch.setenv("COLUMNS", columns)
    result = run_cli("data", "--data", "digits")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == (["digits", "    (builtin):", "    1257"] if columns == "1" else [
        "digits (builtin): 1257 train, 270 val, 270 test; 64 features (images 1x8x8)",
        "values 0 to 1; feature std 0 to 0.407",
        "preprocessing: mean_image, fitted on the training split (--preprocess NAME to"]), lines


def test_train_prints_each_epochs_update_to_weight_ratio_of_the_first_layer_as_its_json_gives_it(run_cli):
    # the lecture babysits a run by ||dW|| / ||W|| (about 1e-3); --json gives it per weight matrix
    args = ("train", "--epochs", "2", "--train-size", "200", "--hidden", "30", "--depth", "2")
    ratios = json.loads(run_cli(*args, "--json").stdout)["update_ratio_history"]
    assert sorted(ratios) == ["W1", "W2", "W3"] and all(len(r) == 2 and all(v > 0 for v in r) for r in ratios.values())
    lines = [line for line in run_cli(*args).stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[-1] for line in lines] == [f"update/W1 {r:.1e}" for r in ratios["W1"]]
    assert all(len(line) <= 80 for line in lines)


def test_best_gives_the_initial_data_loss_explain_speaks_of_beside_initial_loss(run_cli):
    # best showed initial_loss 46.08 (with the L2 term) for a trial explain said began at data loss 3.1483
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200", "--space",
                   "reg=0.3:0.5").exit_code == 0
    lines = run_cli("best").stdout.splitlines()
    fields = {line.split()[0]: line.split()[1] for line in lines[1:] if len(line.split()) == 2}
    names = [line.split()[0] for line in lines if line.strip()]
    assert names[names.index("initial_loss") + 1] == "initial_data_loss"
    study, number = fields["study"], fields["number"]
    explained = json.loads(run_cli("explain", f"{study}:{number}", "--json").stdout)
    data_loss = explained["diagnosis_numbers"]["initial_data_loss"]
    assert fields["initial_data_loss"] == f"{data_loss:.4g}" and float(fields["initial_loss"]) > data_loss + 1
    best = list(csv.DictReader(io.StringIO(run_cli("best", "--format", "csv").stdout)))
    assert list(best[0])[-1] == "initial_data_loss" and float(best[0]["initial_data_loss"]) == data_loss
    assert json.loads(run_cli("best", "--format", "json").stdout)["initial_data_loss"] == data_loss


def test_trials_offers_the_diagnosis_numbers_explain_gives_as_columns(run_cli):
    # search trials --columns number,train_val_gap said: no column train_val_gap
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    shown = run_cli("trials", "digits/coarse", "--columns", "number,train_val_gap,update_ratio,initial_data_loss",
                    "--limit", "1")
    assert shown.exit_code == 0 and shown.stdout.split()[:4] == ["number", "train_val_gap", "update_ratio",
                                                                 "initial_data_loss"]
    [row] = json.loads(run_cli("trials", "digits/coarse", "--sort", "-train_val_gap", "--limit", "1",
                               "--format", "json").stdout)
    numbers = json.loads(run_cli("explain", f"digits/coarse:{row['number']}", "--json").stdout)["diagnosis_numbers"]
    assert [row[k] for k in ("train_val_gap", "update_ratio", "initial_data_loss")] == [
        numbers["train_val_gap"], numbers["update_ratio"], numbers["initial_data_loss"]]
    gaps = [t["train_val_gap"] for t in json.loads(run_cli("trials", "digits/coarse", "--format", "json").stdout)]
    assert row["train_val_gap"] == max(gaps)
