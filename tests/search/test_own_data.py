"""Searching the user's own data from the CLI: CSV and npz files, identity checks, bad files, search data."""
from __future__ import annotations

import json
import os

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from sklearn.datasets import load_breast_cancer, load_wine

from engine.checkpoint import load_checkpoint
from engine.data import DataSpec, data_sha256
from search.campaign import Execution, coarse_stage, execute_stage
from search.config import RunConfig
from search.space import FloatRange
from studies.store import open_storage
from tests.search.conftest import cwd_study, one_line_error, stages_made_only
from tests.search.test_predict import dark_and_light


def _write_csv(path, loader, names=None):
    frame = loader(as_frame=True).frame
    if names is not None:
        frame["target"] = frame["target"].map(names)
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("loader,names,floor", [
    (load_wine, {0: "barolo", 1: "grignolino", 2: "barbera"}, 0.9),
    (load_breast_cancer, None, 0.9),
])
def test_coarse_then_fine_on_real_csv_data(run_cli, tmp_path, loader, names, floor):
    path = _write_csv(tmp_path / "real.csv", loader, names)
    args = ["--data", str(path), "--preprocess", "standardize"]
    coarse = run_cli("coarse", *args, "--trials", "20", "--epochs", "10", "--json")
    assert coarse.exit_code == 0, coarse.output
    fine = run_cli("fine", "--trials", "10", "--json")
    assert fine.exit_code == 0, fine.output
    stage = json.loads(fine.stdout)["stages"][-1]  # after the promotion stage
    assert stage["study"] == "real/fine-1"
    assert stage["best_value"] >= floor
    study = optuna.load_study(study_name="real/coarse", storage=open_storage("sqlite:///search.db", create=False))
    data = study.user_attrs["data"]
    assert data["format"] == "csv" and data["path"] == str(path) and len(data["sha256"]) == 64
    if names:
        assert data["classes"] == ["barbera", "barolo", "grignolino"]  # string labels in sorted order


def test_two_jobs_on_a_csv_campaign_run_exactly_n_trials(run_cli, tmp_path):
    path = _write_csv(tmp_path / "wine.csv", load_wine)
    result = run_cli("coarse", "--data", str(path), "--trials", "9", "--epochs", "2", "--jobs", "2", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["stages"][0]["counts"]
    assert counts["complete"] + counts["pruned"] == 9 and counts["fail"] == 0


def test_a_stage_refuses_data_that_changed_under_it(run_cli, tmp_path):
    path = _write_csv(tmp_path / "wine.csv", load_wine)
    args = ["coarse", "--data", str(path), "--trials", "3", "--epochs", "1"]
    assert run_cli(*args).exit_code == 0
    frame = pd.read_csv(path)
    frame.iloc[0, 0] += 1.0
    frame.to_csv(path, index=False)
    line = one_line_error(run_cli(*args), str(path), "sha256", "refusing to mix")
    assert line.count("recorded") == 1
    # the id-column warning says to delete the column; the file edited so, the same command said only "refusing to
    # mix two datasets in one stage", with no way on
    assert line.endswith("now); refusing to mix two datasets in one stage: put back the data it was started on, or "
                         "start another campaign on this data with search coarse or auto --campaign NAME")
    assert run_cli(*args, "--campaign", "edited").exit_code == 0
    # search fine, which takes no --data, was told to "pass --campaign NAME to start another campaign on this data"
    line = one_line_error(run_cli("fine", "--campaign", "wine", "--trials", "2"), "refusing to mix")
    assert line.endswith("start another campaign on this data with search coarse or auto --campaign NAME")


def test_a_stage_whose_data_is_gone_says_so_not_that_its_definition_is_unreadable(run_cli, tmp_path):
    # "stage data/coarse: its stored definition cannot be read (data file or folder not found: ...); it was written by
    # another program or changed since": the database was blamed for a moved file
    path = _write_csv(tmp_path / "wine.csv", load_wine)
    assert run_cli("coarse", "--campaign", "data", "--data", str(path), "--trials", "3", "--epochs", "1").exit_code == 0
    path.rename(tmp_path / "moved.csv")
    # search fine takes no --data: "pass --campaign NAME to start another campaign" was no way on
    assert one_line_error(run_cli("fine", "--campaign", "data")) == (
        f"error: stage data/coarse was trained on {path}, which is not found (moved or deleted?): put it back, or "
        f"start another campaign with search coarse or auto --campaign NAME --data PATH")
    os.mkfifo(path)
    assert one_line_error(run_cli("fine", "--campaign", "data")) == (
        f"error: stage data/coarse was trained on {path}, which is no longer a regular file or folder: put it back, or "
        f"start another campaign with search coarse or auto --campaign NAME --data PATH")
    path.unlink()
    (tmp_path / "moved.csv").rename(path)
    assert run_cli("fine", "--campaign", "data", "--trials", "2", "--epochs", "1").exit_code == 0


def test_bad_data_exits_2_and_leaves_no_database(run_cli, tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,x\n3,nan,y\n5,6,x\n")
    assert one_line_error(run_cli("coarse", "--data", "bad.csv", "--trials", "2")) == (
        f"error: {tmp_path / 'bad.csv'}: row 2 (line 3) column 'b' is 'nan' (a missing value): fill it in or delete "
        "the row, or train with --missing mean (fill in the training split's mean) or --missing drop")
    assert not (tmp_path / "search.db").exists()


@pytest.mark.parametrize("size", ["0x5", "5000x32"])
def test_an_image_size_out_of_range_names_the_option_as_its_shape_is_named(run_cli, tmp_path, size):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    line = one_line_error(run_cli("coarse", "--data", "imgs", "--image-size", size, "--trials", "2"))
    assert line == (f"error: Invalid value for '--image-size': {size!r}: width and height must be whole numbers in "
                    "1..4096, e.g. 32x32")
    assert not (tmp_path / "search.db").exists()


# "\u00b2" (superscript 2) is a digit to str.isdigit that int() refuses: a traceback; "\uff13\uff12" (full-width) was 32
@pytest.mark.parametrize("size", ["\u00b2x2", "\uff13\uff12x\uff13\uff12", "1_6x16"])
def test_an_image_size_in_other_than_the_digits_0_to_9_is_refused_as_a_shape(run_cli, tmp_path, size):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    line = one_line_error(run_cli("coarse", "--data", "imgs", "--image-size", size, "--trials", "2"))
    assert line == f"error: Invalid value for '--image-size': {size!r} must look like WxH, e.g. 32x32"
    assert not (tmp_path / "search.db").exists()


def test_search_data_says_how_many_features_pca_and_whiten_keep(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "wide.npz", X=rng.normal(size=(300, 150)), y=np.arange(300) % 3)
    for name, kept in (("whiten", []), ("pca", ["--pca-components", "20"])):
        result = run_cli("data", "--data", "wide.npz", "--preprocess", name, *kept)
        assert result.exit_code == 0, result.output
        n = 20 if kept else 100
        assert result.stdout.splitlines()[1:3] == [
            "values -4.494 to 4.732; feature std 0.894 to 1.15",
            f"preprocessing: {name}, fitted on the training split, keeps {n} of the 150 features (the top principal "
            "components; --pca-components sets how many)"]
    result = run_cli("data", "--data", "wide.npz")  # an array is zero-centred unless told otherwise
    assert "keeps" not in result.stdout
    assert ("preprocessing: mean_image, fitted on the training split (--preprocess NAME to choose)"
            in result.stdout.splitlines())


def test_search_data_describes_a_file(run_cli, tmp_path):
    _write_csv(tmp_path / "wine.csv", load_wine, {0: "barolo", 1: "grignolino", 2: "barbera"})
    out = json.loads(run_cli("data", "--data", "wine.csv", "--json").stdout)
    assert out["features"] == 13 and sum(out["samples"].values()) == 178
    assert [c["name"] for c in out["classes"]] == ["barbera", "barolo", "grignolino"]
    # a table is standardized unless told otherwise: its raw scales (0.13 to 1680) then need no warning
    assert out["preprocess"] == "standardize" and not any("scales" in w for w in out["warnings"])
    out = json.loads(run_cli("data", "--data", "wine.csv", "--preprocess", "mean_image", "--json").stdout)
    assert out["preprocess"] == "mean_image" and any("--preprocess standardize" in w for w in out["warnings"])
    text = run_cli("data", "--data", "wine.csv", "--preprocess", "mean_image").stdout
    assert "13 features" in text and "barolo" in text and "warning: features on very different scales" in text
    # standardized or whitened, the raw scales do not matter: no advice to standardize
    for preprocess in ("standardize", "whiten"):
        assert "very different scales" not in run_cli("data", "--data", "wine.csv", "--preprocess", preprocess).stdout
    # what a stage would refuse, search data refuses too
    one_line_error(run_cli("data", "--data", "wine.csv", "--preprocess", "pca", "--pca-components", "100"),
                   "components 100 (--pca-components) exceeds the input dimension 13")


def test_per_channel_mean_on_a_table_is_refused_in_one_line_naming_the_option(run_cli, tmp_path):
    # search data --data wine.csv --preprocess per_channel_mean was accepted without a word: one mean over columns
    # of other units (0.13 to 1680), as no colour channels are there to take a mean of
    _write_csv(tmp_path / "wine.csv", load_wine)
    line = ("error: --preprocess per_channel_mean needs images (one mean per colour channel); wine.csv is a table: "
            "use standardize (a table's default) or mean_image")
    for command in ("data", "coarse", "train"):
        assert one_line_error(run_cli(command, "--data", "wine.csv", "--preprocess", "per_channel_mean")) == line
    assert not (tmp_path / "search.db").exists()
    assert run_cli("data", "--preprocess", "per_channel_mean").exit_code == 0  # the digits images: one channel


def test_search_data_names_the_label_column_and_says_when_it_is_the_last_by_default(run_cli, tmp_path, monkeypatch):
    # a table with its label first and no --label-column was described with the last column's values as its classes,
    # never saying which column that was
    monkeypatch.setenv("COLUMNS", "200")
    frame = load_wine(as_frame=True).frame
    frame.insert(0, "cultivar", frame.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"}))
    frame["region"] = np.array(["north", "south", "coast"])[np.arange(len(frame)) % 3]
    frame.to_csv(tmp_path / "wine.csv", index=False)
    lines = run_cli("data", "--data", "wine.csv").stdout.splitlines()
    assert lines[4:6] == ["labels: column 'region' (the last; --label-column NAME takes another)", "3 classes:"]
    assert "  north                     42      9      9" in lines
    lines = run_cli("data", "--data", "wine.csv", "--label-column", "cultivar").stdout.splitlines()
    assert lines[4:6] == ["labels: column 'cultivar'", "3 classes:"]
    assert "  barolo                    41      9      9" in lines
    out = json.loads(run_cli("data", "--data", "wine.csv", "--label-column", "cultivar", "--json").stdout)
    assert out["label_column"] == "cultivar"
    assert json.loads(run_cli("data", "--data", "digits", "--json").stdout)["label_column"] is None
    assert not any(line.startswith("labels:") for line in run_cli("data", "--data", "digits").stdout.splitlines())

def test_an_id_column_is_named_by_search_data_and_before_a_stage_runs(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the line unwrapped
    frame = load_wine(as_frame=True).frame
    frame.insert(0, "id", range(1000, 1000 + len(frame)))
    frame.to_csv(tmp_path / "wine.csv", index=False)
    warning = ("warning: column 'id' holds a different whole number in every row (1000 to 1177), as a row id does: "
               "it is trained on as a feature; leave it out with --ignore-column id if it is one")
    assert f"\n{warning}\n" in run_cli("data", "--data", "wine.csv").stdout
    coarse = run_cli("coarse", "--data", "wine.csv", "--preprocess", "standardize", "--trials", "1", "--epochs", "1",
                     "--jobs", "1")
    assert coarse.exit_code == 0 and coarse.stderr.splitlines()[0] == warning, coarse.output


def test_ignored_columns_are_neither_features_nor_labels_in_training_and_in_predict(run_cli, tmp_path):
    # an id and a note column: the id was trained on, the note refused; the only way out was to edit the file
    frame = load_wine(as_frame=True).frame
    frame.insert(0, "id", range(1000, 1000 + len(frame)))
    frame.insert(5, "note", [f"bottle {i}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "wine.csv", index=False)
    ignore = ("--ignore-column", "id", "--ignore-column", "note")
    data = run_cli("data", "--data", "wine.csv", *ignore, "--preprocess", "mean_image", "--json")
    assert data.exit_code == 0, data.output
    described = json.loads(data.stdout)
    assert described["features"] == 13 and described["warnings"] == [
        "features on very different scales: std from 0.127 to 318 (ratio 2516); try --preprocess standardize"]
    train = run_cli("train", "--data", "wine.csv", *ignore, "--preprocess", "standardize", "--epochs", "20",
                    "--lr", "3e-3", "--save", "model.npz", "--json")
    assert train.exit_code == 0, train.output
    assert load_checkpoint(tmp_path / "model.npz").features == tuple(frame.columns[1:5]) + tuple(frame.columns[6:-1])
    predicted = run_cli("predict", "--model", "model.npz", "--data", "wine.csv", "--id-column", "id", "--json")
    assert json.loads(predicted.stdout)["rows"][0]["id"] == "1000"
    # a column the file does not have, or the label column, is refused in one line
    one_line_error(run_cli("data", "--data", "wine.csv", "--ignore-column", "idx"),
                   f"{tmp_path / 'wine.csv'}: no column 'idx' to ignore; the columns are 'id', ")
    one_line_error(run_cli("data", "--data", "wine.csv", "--ignore-column", "target"),
                   f"{tmp_path / 'wine.csv'}: column 'target' is the label column; it cannot be ignored")
    one_line_error(run_cli("data", "--ignore-column", "id"),
                   "error: --ignore-column 'id' applies to .csv/.tsv data only, not 'digits'")


def test_a_built_in_name_that_is_also_a_folder_here_is_the_built_in_data_set_with_a_warning(run_cli, tmp_path,
                                                                                           monkeypatch):
    # --data digits read the built-in set without a word while ./digits held the user's own images
    monkeypatch.setenv("COLUMNS", "300")  # the line unwrapped
    dark_and_light(tmp_path / "digits", 12)
    builtin = run_cli("data", "--data", "digits")
    assert builtin.exit_code == 0 and builtin.stdout.startswith("digits (builtin): 1257 train"), builtin.output
    assert builtin.stderr == ("warning: --data digits is the built-in data set, not the folder digits here; --data "
                              "./digits reads that\n")
    assert run_cli("data").stderr == ""  # no --data: the default, asked for by no name
    folder = run_cli("data", "--data", "./digits")
    assert folder.exit_code == 0 and "2 classes" in folder.stdout and folder.stderr == "", folder.output


def test_an_empty_ignore_column_leaves_out_the_columns_with_no_name_in_the_header(run_cli, tmp_path):
    # --ignore-column '' was refused: "a column with no name in the header cannot be left out: name it in the header
    # row, or delete it from the file"
    rows = "".join(f"{i % 7},{i},{i % 3},{'xy'[i % 2]}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("a,,b,label\n" + rows)
    for blank in ("", " "):
        result = run_cli("data", "--data", "t.csv", "--ignore-column", "a", "--ignore-column", blank, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["features"] == 1  # b alone
    named = "".join(f"{i % 7},{i % 3},{'xy'[i % 2]}\n" for i in range(40))
    (tmp_path / "named.csv").write_text("a,b,label\n" + named)
    assert one_line_error(run_cli("data", "--data", "named.csv", "--ignore-column", "")) == (
        f"error: {tmp_path / 'named.csv'}: no column '' to ignore; the columns are 'a', 'b', 'label'")
    # the unnamed column a comma at the end of each line adds is never read: '' does not name it
    (tmp_path / "trailing.csv").write_text("a,b,label,\n" + named.replace("\n", ",\n"))
    assert one_line_error(run_cli("data", "--data", "trailing.csv", "--ignore-column", "")) == (
        f"error: {tmp_path / 'trailing.csv'}: no column '' to ignore; the columns are 'a', 'b', 'label' (and the "
        "unnamed one a comma ending each line adds, which is never read)")
    assert one_line_error(run_cli("data", "--data", "t.csv", "--label-column", " ")) == (
        "error: --label-column must name a column, got ' '")
    one_line_error(run_cli("data", "--label-column", "a"), "error: --label-column 'a' applies to .csv/.tsv data only")


def test_an_unnamed_index_column_says_where_it_came_from(run_cli, tmp_path, monkeypatch):
    # frame.to_csv(path) writes the index as a first column with an empty name: the warning said "column '' holds ..."
    monkeypatch.setenv("COLUMNS", "300")  # the line unwrapped
    load_wine(as_frame=True).frame.to_csv(tmp_path / "wine.csv")
    assert run_cli("data", "--data", "wine.csv").stdout.splitlines()[-1] == (
        "warning: column '' (no name in the header, as pandas' to_csv names the index it writes unless given "
        "index=False) holds a different whole number in every row (0 to 177), as a row id does: it is trained on as "
        "a feature; leave it out with --ignore-column '' if it is one")
    left_out = run_cli("data", "--data", "wine.csv", "--ignore-column", "", "--json")
    assert left_out.exit_code == 0 and json.loads(left_out.stdout)["features"] == 13  # wine's own
    assert "row id" not in left_out.output


SCALES = ("warning: features on very different scales: std from 0.127 to 318 (ratio 2516); "
          "try --preprocess standardize")


@pytest.mark.parametrize("command", [["coarse"], ["auto", "--max-fine", "0", "--top", "1", "--repeats", "1",
                                                  "--retrain-seeds", "1"]])
def test_a_stage_on_raw_scales_warns_as_search_data_does_unless_they_are_rescaled(run_cli, tmp_path, monkeypatch,
                                                                                   command):
    monkeypatch.setenv("COLUMNS", "200")  # the line unwrapped
    _write_csv(tmp_path / "wine.csv", load_wine)
    assert f"\n{SCALES}\n" in run_cli("data", "--data", "wine.csv", "--preprocess", "mean_image").stdout
    args = [*command, "--data", "wine.csv", "--trials", "2", "--epochs", "1", "--jobs", "1"]
    raw = run_cli(*args, "--campaign", "raw", "--preprocess", "mean_image")
    assert raw.exit_code == 0, raw.output
    assert raw.stderr.splitlines()[0] == SCALES  # before the first trial's line
    assert raw.stderr.count("very different scales") == 1
    monkeypatch.setenv("COLUMNS", "80")  # wrapped as the command's other prose is
    narrow = run_cli(*args, "--campaign", "narrow", "--preprocess", "mean_image").stderr.splitlines()
    assert narrow[:2] == [SCALES[:SCALES.index(" try")], "    try --preprocess standardize"]
    monkeypatch.setenv("COLUMNS", "200")
    for preprocess in ("standardize", "whiten", None):  # None: a table's default, standardize
        rescaled = run_cli(*args, "--campaign", str(preprocess), *(["--preprocess", preprocess] if preprocess else []))
        assert rescaled.exit_code == 0, rescaled.output
        assert "very different scales" not in rescaled.stderr + rescaled.stdout


def test_one_run_on_raw_scales_warns_as_a_stage_does(run_cli, tmp_path, monkeypatch):
    # search train on wine's raw scales reached val_acc 0.67 and search sanity failed its initial loss check (1.53
    # for ln 3) with no word of why, where search coarse and search data said "try --preprocess standardize"
    monkeypatch.setenv("COLUMNS", "200")  # the line unwrapped
    _write_csv(tmp_path / "wine.csv", load_wine)
    train = run_cli("train", "--data", "wine.csv", "--epochs", "1", "--preprocess", "mean_image")
    assert train.exit_code == 0 and train.stderr.splitlines() == [SCALES], train.output
    sanity = run_cli("sanity", "--data", "wine.csv", "--preprocess", "mean_image")
    assert sanity.stderr.splitlines() == [SCALES]
    assert sanity.stdout.startswith("FAIL  initial loss near chance (reg 0): 1.53 (expected ln 3 = 1.099 +- 0.05)")
    for args in (["train", "--epochs", "1", "--preprocess", "standardize"],
                 ["train", "--epochs", "1", "--json", "--preprocess", "mean_image"],
                 ["sanity", "--preprocess", "whiten"], ["sanity", "--json", "--preprocess", "mean_image"],
                 ["train", "--epochs", "1"], ["sanity"]):  # the last two: a table is standardized by default
        assert run_cli(*args, "--data", "wine.csv").stderr == "", args


def test_a_training_set_of_one_update_an_epoch_is_warned_of_before_training(run_cli, monkeypatch):
    # 84 images at --batch-size 50: a 3-epoch trial made 3 updates, 34 images sat each epoch out, with no word of it
    monkeypatch.setenv("COLUMNS", "200")  # the line unwrapped
    one = ("warning: 80 training samples make one update an epoch at --batch-size 50 (30 of them left out of each): "
           "give a smaller --batch-size")
    small = ["--data", "digits", "--train-size", "80"]
    assert run_cli("data", *small).stdout.splitlines()[-1] == one
    for command in (["coarse", "--campaign", "one"], ["auto", "--campaign", "two", "--max-fine", "0", "--top", "1",
                                                       "--repeats", "1", "--retrain-seeds", "1"]):
        stage = run_cli(*command, *small, "--trials", "2", "--epochs", "1", "--jobs", "1")
        assert stage.exit_code == 0 and stage.stderr.splitlines()[0] == one, stage.output
    assert run_cli("train", *small, "--epochs", "1").stderr.splitlines() == [one]
    searched = run_cli("coarse", *small, "--campaign", "three", "--space", "batch_size=8:32", "--trials", "2",
                       "--epochs", "1", "--jobs", "1")  # each trial draws its own batch size
    assert searched.exit_code == 0 and "warning" not in searched.stderr
    exact = run_cli("data", "--data", "digits", "--train-size", "50").stdout.splitlines()[-1]
    assert exact == ("warning: 50 training samples make one update an epoch at --batch-size 50: give a smaller "
                     "--batch-size")
    for size, warned in ((100, False), (30, True)):
        lines = run_cli("data", "--data", "digits", "--train-size", str(size)).stdout.splitlines()
        assert ("warning: 30 training samples, fewer than --batch-size 50: give a smaller --batch-size" in lines) \
            == warned and not any("update an epoch" in line for line in lines)


def test_a_stage_of_too_few_updates_a_trial_is_warned_of_before_training(run_cli, monkeypatch):
    # wine at the defaults: 2 updates an epoch, 6 a coarse trial, and 32 of 50 coarse trials lr_too_low unexplained
    monkeypatch.setenv("COLUMNS", "300")  # the line unwrapped
    few = ("warning: 300 training samples make 6 updates an epoch at --batch-size 50, 18 in a 3-epoch trial (under "
           "20, too few for a slow learning rate to move the loss): give a smaller --batch-size or more --epochs")
    small = ["--data", "digits", "--train-size", "300", "--trials", "1", "--jobs", "1"]
    stage = run_cli("coarse", *small, "--campaign", "one")
    assert stage.exit_code == 0 and stage.stderr.splitlines()[0] == few, stage.output
    auto = run_cli("auto", *small, "--campaign", "two", "--max-fine", "0", "--top", "1", "--repeats", "1",
                   "--retrain-seeds", "1")
    assert auto.exit_code == 0 and auto.stderr.splitlines()[0] == few, auto.output
    for more in (["--epochs", "4"], ["--batch-size", "37"], ["--space", "batch_size=8:64"]):  # 24 updates
        enough = run_cli("coarse", *small, "--campaign", more[1].replace(":", "-"), *more)
        assert enough.exit_code == 0 and "warning" not in enough.stderr, (more, enough.output)
    default = run_cli("coarse", "--data", "digits", "--trials", "1", "--jobs", "1", "--campaign", "digits")
    assert default.exit_code == 0 and "warning" not in default.stderr, default.output  # 25 an epoch, 75 a trial


def test_fine_grid_and_auto_stages_of_too_few_updates_a_trial_are_warned_of_too(run_cli, monkeypatch):
    # search fine --epochs 2 after a coarse stage of 4 epochs (24 updates): 12 updates a trial, without a word
    monkeypatch.setenv("COLUMNS", "300")
    few = ("warning: 300 training samples make 6 updates an epoch at --batch-size 50, {n} in a {e}-epoch trial "
           "(under 20, too few for a slow learning rate to move the loss): give a smaller --batch-size or more {o}")
    small = ["--data", "digits", "--train-size", "300", "--jobs", "1"]
    assert "warning" not in run_cli("coarse", *small, "--trials", "2", "--epochs", "4", "--campaign", "c").stderr
    for promote in ("1", "0"):  # once, before the promoted runs of its epochs or before the stage
        fine = run_cli("fine", "--campaign", "c", "--epochs", "2", "--trials", "2", "--promote", promote, "--jobs", "1")
        assert fine.exit_code == 0, fine.output
        assert [line for line in fine.stderr.splitlines() if "warning" in line] == [
            few.format(n=12, e=2, o="--epochs")], fine.stderr
    fine = run_cli("fine", "--campaign", "c", "--trials", "2", "--jobs", "1")  # 4 epochs, doubled: 24 updates
    assert fine.exit_code == 0 and "warning" not in fine.stderr, fine.output
    assert run_cli("coarse", *small, "--trials", "2", "--epochs", "3", "--campaign", "g").exit_code == 0
    grid = run_cli("grid", "--campaign", "g", "--jobs", "1")  # the coarse stage's 3 epochs: 18 updates
    assert grid.exit_code == 0 and grid.stderr.splitlines()[0] == few.format(n=18, e=3, o="--epochs"), grid.output
    auto = run_cli("auto", *small, "--trials", "2", "--epochs", "4", "--fine-epochs", "3", "--max-fine", "1", "--top",
                   "1", "--promote", "0", "--repeats", "1", "--retrain-seeds", "1", "--campaign", "a")
    assert auto.exit_code == 0 and auto.stderr.splitlines()[0] == few.format(n=18, e=3, o="--fine-epochs"), auto.output


def test_arrays_from_python_are_searched_with_two_jobs_through_an_npz_file(tmp_path):
    """The documented way from Python: save the arrays with np.savez, point DataSpec at the file."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "mine.npz", X=X, y=y)
    run = RunConfig(data=DataSpec(str(tmp_path / "mine.npz"))).with_params({"train.epochs": 10, "arch.hidden": 16})
    space = {"lr": FloatRange(1e-3, 1e-1), "reg": FloatRange(1e-6, 1e-3)}
    url = f"sqlite:///{tmp_path / 'search.db'}"
    summary = execute_stage(Execution(url, jobs=2, progress="quiet"), coarse_stage("mine", run, space, 6, 0))
    assert summary.counts["complete"] + summary.counts["pruned"] == 6
    assert summary.best_value >= 0.9  # the label is the sign of the first feature


def test_stages_and_reruns_refuse_data_that_changed_since_their_parent(run_cli, tmp_path):
    path = _write_csv(tmp_path / "wine.csv", load_wine)
    assert run_cli("coarse", "--data", str(path), "--trials", "3", "--epochs", "1").exit_code == 0
    frame = pd.read_csv(path)
    frame.iloc[0, 0] += 1.0
    frame.to_csv(path, index=False)
    one_line_error(run_cli("fine", "--promote", "0"), str(path), "sha256")
    one_line_error(run_cli("grid"), str(path), "sha256")
    one_line_error(run_cli("train", "--from-trial", "wine/coarse:0"), str(path), "sha256")
    studies = optuna.get_all_study_names(open_storage("sqlite:///search.db", readonly=True))
    assert studies == ["wine/coarse"]  # nothing was created on the other data


def test_an_npz_with_an_empty_split_is_one_line(run_cli, tmp_path):
    X = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    y = np.arange(60) % 3
    np.savez(tmp_path / "noval.npz", X_train=X, y_train=y, X_val=X[:0], y_val=y[:0])
    one_line_error(run_cli("data", "--data", "noval.npz"), "noval.npz", "X_val has no samples")


def test_a_relative_data_path_from_python_is_stored_absolute_and_retrained_from_another_folder(run_cli, tmp_path,
                                                                                               monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 4)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", X=X, y=(X[:, 1] > 0).astype(np.int64))
    run = RunConfig(data=DataSpec("mine.npz")).with_params({"train.epochs": 3, "arch.hidden": 8})  # run_cli's cwd
    url = f"sqlite:///{tmp_path / 'search.db'}"
    execute_stage(Execution(url, progress="quiet"), coarse_stage("mine", run, {"lr": FloatRange(1e-2, 1e-1)}, 2, 0))
    study = optuna.load_study(study_name="mine/coarse", storage=open_storage(url))
    assert study.user_attrs["config"]["data"]["name"] == str(tmp_path / "mine.npz")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = run_cli("train", "--from-trial", "mine/coarse:1", "--storage", url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["val_acc"] == study.trials[1].user_attrs["val_acc"]  # the same numbers


def test_a_stage_stored_with_a_relative_data_path_by_an_older_version_is_continued_from_its_folder(run_cli,
                                                                                                  tmp_path):
    from search.stages import create_stage

    np.savez(tmp_path / "mine.npz", X=np.eye(40, 4, dtype=np.float32), y=np.arange(40) % 2)
    run = RunConfig(data=DataSpec("mine.npz")).with_params({"train.epochs": 1, "arch.hidden": 8})
    stage = coarse_stage("mine", run, {"lr": FloatRange(1e-2, 1e-1)}, 2, 0)
    storage = open_storage(f"sqlite:///{tmp_path / 'search.db'}")
    study, created = create_stage(storage, stage)
    config = study.user_attrs["config"]
    study.set_user_attr("config", {**config, "data": {**config["data"], "name": "mine.npz"}})  # as stored before
    again, created_again = create_stage(storage, stage)
    assert created and not created_again and again.study_name == "mine/coarse"


def test_a_large_table_is_announced_on_stderr_before_it_is_read_and_a_small_one_is_not(run_cli, tmp_path, monkeypatch):
    # a 100 MB CSV was read for 5-10 s before anything was printed
    from engine import formats

    path = _write_csv(tmp_path / "wine.csv", load_wine)
    size = path.stat().st_size
    quiet = run_cli("data", "--data", str(path), "--json")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    monkeypatch.setattr(formats, "LONG_READ_BYTES", size)  # as large as the threshold: announced
    announced = run_cli("data", "--data", str(path), "--json")
    assert announced.exit_code == 0
    assert announced.stderr == f"reading {path} ({size / 1e6:.0f} MB)...\n"
    assert json.loads(announced.stdout)["samples"] == json.loads(quiet.stdout)["samples"]  # stdout: the JSON alone
    trained = run_cli("train", "--data", str(path), "--epochs", "1", "--json")
    assert trained.stderr.splitlines()[0] == f"reading {path} ({size / 1e6:.0f} MB)..."
    json.loads(trained.stdout)


def test_sanity_measures_the_tiny_lr_check_on_one_fixed_batch(run_cli, tmp_path):
    # breast cancer on raw scales: the tiny lr's first and last minibatches' losses were 23 % apart by the batches
    # alone, and the check FAILed with 0.2348 though lr 1e-7 moved no weight that mattered
    _write_csv(tmp_path / "bc.csv", load_breast_cancer)
    result = run_cli("sanity", "--data", "bc.csv", "--preprocess", "mean_image", "--json")
    tiny = json.loads(result.stdout)[3]
    assert tiny["check"] == "tiny lr (x1e-4) barely moves the loss"
    assert tiny["passed"] and round(tiny["value"], 6) == 0.005787


def _colours_csv(path, n: int = 150):
    """colour (text, names the class: red -> a, green -> b, blue -> c; 'NA' now and then), shade (text, noise),
    x (a number, noise, empty now and then), label."""
    rng = np.random.default_rng(2)
    colours = ("red", "green", "blue")
    lines = ["colour,shade,x,label"]
    for i in range(n):
        k = int(rng.integers(3))
        colour = "NA" if i % 29 == 3 else colours[k]
        x = "" if i % 13 == 5 else f"{rng.normal():.3f}"
        lines.append(f"{colour},{('light', 'dark')[i % 2]},{x},{'abc'[k]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_one_missing_cell_and_one_unlabelled_row_are_counted_in_the_singular(run_cli, tmp_path, monkeypatch):
    # "1 missing cells filled", "1 rows with a missing value dropped"
    monkeypatch.setenv("COLUMNS", "200")  # lines unwrapped
    rows = [f"{i % 7},{i % 5},{'ab'[i % 2]}" for i in range(40)]
    rows[3], rows[8] = "NA,1,a", "2,3,"
    (tmp_path / "one.csv").write_text("x,z,label\n" + "\n".join(rows) + "\n")
    mean = run_cli("data", "--data", "one.csv", "--missing", "mean")
    assert mean.exit_code == 0, mean.output
    assert [line for line in mean.stdout.splitlines() if line.startswith("--missing")] == [
        "--missing mean: 1 missing cell filled (x 1 with 2.741), 1 row without a label dropped"]
    drop = run_cli("data", "--data", "one.csv", "--missing", "drop")
    assert [line for line in drop.stdout.splitlines() if line.startswith("--missing")] == [
        "--missing drop: 1 row with a missing value dropped, 1 row without a label dropped"]


def test_a_table_with_text_and_missing_cells_is_described_trained_on_and_scored(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # lines unwrapped
    _colours_csv(tmp_path / "colours.csv")
    refused = one_line_error(run_cli("data", "--data", "colours.csv"),
                             "row 4 (line 5) column 'colour' is 'NA' (a missing value); rows 6 (line 7), ")
    assert refused.endswith("fill them in or delete those rows, or train with --missing mean (fill in the training "
                            "split's mean) or --missing drop")
    described = run_cli("data", "--data", "colours.csv", "--missing", "mean")
    assert described.exit_code == 0, described.output
    lines = described.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'colours.csv'} (csv): 104 train, 23 val, 23 test; 6 features"
    fill = json.loads(run_cli("data", "--data", "colours.csv", "--missing", "mean", "--json").stdout)["table"]["fill"]
    assert lines[2:6] == [
        "text column 'colour': one-hot, 3 categories of the training split ('blue', 'green', 'red') -> 3 features",
        "text column 'shade': one-hot, 2 categories of the training split ('dark', 'light') -> 2 features",
        f"--missing mean: 18 missing cells filled (colour 6 with {fill['colour']!r}, x 12 with {fill['x']:.4g}), 0 "
        "rows without a label dropped",
        "preprocessing: standardize, fitted on the training split (--preprocess NAME to choose)"]
    dropped = run_cli("data", "--data", "colours.csv", "--missing", "drop").stdout.splitlines()
    assert dropped[0].endswith(": 95 train, 19 val, 19 test; 6 features")  # 150 rows, 17 missing a value
    assert dropped[4] == "--missing drop: 17 rows with a missing value dropped, 0 rows without a label dropped"

    train = run_cli("train", "--data", "colours.csv", "--missing", "mean", "--epochs", "30", "--batch-size", "10",
                    "--lr", "3e-3", "--save", "model.npz", "--json")
    assert train.exit_code == 0, train.output
    assert json.loads(train.stdout)["val_acc"] >= 0.9  # the label is the colour's: only the NA rows are guesses
    saved = load_checkpoint(tmp_path / "model.npz")
    assert saved.features == ("colour", "shade", "x") and saved.encoding.fill[:2] == (fill["colour"], fill["shade"])
    # new rows: columns in another order, a colour training never saw, missing cells
    (tmp_path / "new.csv").write_text("x,label,shade,colour\n0.1,a,light,red\n,b,dark,green\n0.3,c,?,blue\n"
                                      "0.2,c,dark,purple\n-0.1,a,light,\n")
    scored = run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--json")
    assert scored.exit_code == 0, scored.output
    out = json.loads(scored.stdout)
    assert [row["prediction"] for row in out["rows"][:3]] == ["a", "b", "c"] and out["unseen"] == {"colour": 1}
    assert out["cells_filled"] == 3 and out["cells_filled_per_column"] == {"colour": 1, "shade": 1, "x": 1}
    text = run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--out", "p.csv")
    assert text.stderr.startswith("5 samples scored with model.npz; 1 cell of a category training never saw "
                                  "(colour 1), encoded as all zeros; 3 missing cells filled as in training (colour 1, "
                                  "shade 1, x 1); accuracy ")


def test_a_new_category_differing_only_in_case_from_a_training_one_is_named(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "people.csv").write_text("age,sex,survived\n" + "".join(
        f"{i % 9},{('male', 'female')[i % 2]},{i % 3 % 2}\n" for i in range(40)))
    assert run_cli("train", "--data", "people.csv", "--epochs", "1", "--batch-size", "10", "--save",
                   "model.npz").exit_code == 0
    (tmp_path / "new.csv").write_text("age,sex\n1,Male\n2,male\n3,FEMALE\n4,other\n")
    scored = run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--out", "p.csv")
    assert scored.exit_code == 0, scored.output
    assert " ".join(scored.stderr.split()).startswith(  # wrapped at 200 columns
        "4 samples scored with model.npz; 3 cells of a category training never saw (sex 3), encoded as all zeros; sex "
        "'Male' (training has 'male'), sex 'FEMALE' (training has 'female'): categories are matched exactly, in case "
        "and spaces too")
    out = json.loads(run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--json").stdout)
    assert out["unseen"] == {"sex": 3} and out["unseen_near"] == {"sex": {"FEMALE": "female", "Male": "male"}}


def test_categories_are_quoted_as_one_may_hold_a_comma(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    cities = ('"Paris, FR"', '"Lyon, FR"', "Nice")  # was (Lyon, FR, Nice, Paris, FR): five cities or three?
    (tmp_path / "cities.csv").write_text("x,city,label\n" + "".join(f"{i % 7},{cities[i % 3]},{'ab'[i % 2]}\n"
                                                                    for i in range(60)))
    described = run_cli("data", "--data", "cities.csv")
    assert described.exit_code == 0, described.output
    assert described.stdout.splitlines()[2] == ("text column 'city': one-hot, 3 categories of the training split "
                                                "('Lyon, FR', 'Nice', 'Paris, FR') -> 3 features")


def test_a_model_trained_without_filling_refuses_a_missing_cell_and_bad_options_exit_2(run_cli, tmp_path):
    _colours_csv(tmp_path / "colours.csv")
    train = run_cli("train", "--data", "colours.csv", "--missing", "drop", "--epochs", "1", "--batch-size", "10",
                    "--save", "model.npz")
    assert train.exit_code == 0, train.output
    assert load_checkpoint(tmp_path / "model.npz").encoding.fill is None
    (tmp_path / "new.csv").write_text("colour,shade,x\nred,light,\n")
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "new.csv"),
                   "error: new.csv: row 1 (line 2) column 'x' is empty (a missing value): fill it in or "
                   "delete the row")
    one_line_error(run_cli("data", "--data", "colours.csv", "--missing", "median"),
                   "Invalid value for '--missing': 'median' is not one of 'mean', 'drop'.")
    one_line_error(run_cli("data", "--missing", "mean"),
                   "--missing 'mean' applies to .csv/.tsv data only, not 'digits'")
    assert not (tmp_path / "search.db").exists()


def test_a_model_of_a_table_whose_header_has_spaces_is_saved_and_scores(run_cli, tmp_path):
    # the encoding named its columns ' shade' where the model named them 'shade': the file saved was refused
    path = _colours_csv(tmp_path / "colours.csv")
    path.write_text(path.read_text().replace("colour,shade,x,label", "colour, shade , x,label", 1))
    train = run_cli("train", "--data", "colours.csv", "--missing", "mean", "--epochs", "1", "--batch-size", "10",
                    "--save", "model.npz")
    assert train.exit_code == 0, train.output
    assert load_checkpoint(tmp_path / "model.npz").encoding.columns == ("colour", "shade", "x")
    scored = run_cli("predict", "--model", "model.npz", "--data", "colours.csv", "--json")
    assert scored.exit_code == 0 and json.loads(scored.stdout)["samples"] == 150, scored.output


def test_search_data_counts_the_cells_of_a_category_training_never_saw(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # lines unwrapped
    path = _colours_csv(tmp_path / "colours.csv")
    path.write_text(path.read_text().replace("\nred,", "\npurple,", 1))  # one purple row, in one split
    said = {}
    for seed in range(20):
        lines = run_cli("data", "--data", "colours.csv", "--missing", "mean", "--seed", str(seed)).stdout.splitlines()
        said[any("purple" in line for line in lines)] = lines
    assert "('blue', 'green', 'purple', 'red') -> 4 features" in said[True][2]  # purple in the training split
    held_out = [line for line in said[False] if "never saw" in line]
    assert held_out in (["val: 1 cell of a category training never saw (colour 1), encoded as all zeros"],
                        ["test: 1 cell of a category training never saw (colour 1), encoded as all zeros"])


def test_search_data_warns_of_a_class_named_as_a_missing_label_is_written(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # lines unwrapped
    # adult income's '?': without --missing, a class of its own, trained on and predicted
    (tmp_path / "q.csv").write_text("x,label\n" + "".join(f"{i % 7},{'ab?'[i % 3] if i % 10 else 'NA'}\n"
                                                          for i in range(90)))
    said = run_cli("data", "--data", "q.csv")
    assert said.exit_code == 0, said.output
    assert ("warning: classes '?' (27 rows), 'NA' (9 rows) are how a missing label is written, trained on as a "
            "class; --missing mean or --missing drop drops such rows") in said.stdout.splitlines()
    dropped = run_cli("data", "--data", "q.csv", "--missing", "drop")
    assert "2 classes:" in dropped.stdout and "missing label" not in dropped.stdout


def test_a_table_is_standardized_unless_told_otherwise_from_python_as_from_the_command_line(tmp_path):
    from engine.data import DataSpec
    from engine.preprocess import PreprocessSpec
    from search.config import RunConfig

    for name in ("x.csv", "x.TSV"):
        (tmp_path / name).write_text("a,label\n1,0\n")
    assert RunConfig(data=DataSpec(str(tmp_path / "x.csv"))).preprocess == PreprocessSpec("standardize")
    assert RunConfig(data=DataSpec(str(tmp_path / "x.TSV"))).preprocess == PreprocessSpec("standardize")
    assert RunConfig().preprocess == PreprocessSpec("mean_image")  # digits, an array
    named = RunConfig(data=DataSpec(str(tmp_path / "x.csv")), preprocess=PreprocessSpec("none"))
    assert named.preprocess == PreprocessSpec("none") and RunConfig.from_dict(named.to_dict()) == named


def test_a_table_campaign_made_with_mean_image_continues_with_the_command_that_made_it(run_cli, tmp_path):
    # a campaign made when a table's default was mean_image was refused by the same command ("gives
    # preprocess.name standardize where it has mean_image") once the default became standardize
    _write_csv(tmp_path / "wine.csv", load_wine)
    args = ["coarse", "--data", "wine.csv", "--trials", "2", "--epochs", "1", "--jobs", "1"]
    assert run_cli(*args, "--campaign", "old", "--preprocess", "mean_image").exit_code == 0
    again = run_cli(*args, "--campaign", "old")
    assert again.exit_code == 0, again.output
    study = optuna.load_study(study_name="old/coarse", storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert study.user_attrs["config"]["preprocess"]["name"] == "mean_image" and len(study.trials) == 2
    auto = run_cli("auto", "--data", "wine.csv", "--campaign", "old", "--max-fine", "0", "--top", "1", "--repeats", "1",
                   "--retrain-seeds", "1", "--jobs", "1")
    assert auto.exit_code == 0, auto.output
    one_line_error(run_cli(*args, "--campaign", "old", "--preprocess", "standardize"),
                   "where none is given) --preprocess standardize where it has mean_image")
    assert run_cli(*args, "--campaign", "new").exit_code == 0  # a new campaign: a table's default
    new = optuna.load_study(study_name="new/coarse", storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert new.user_attrs["config"]["preprocess"]["name"] == "standardize"


def test_a_class_name_holding_a_line_break_or_a_tab_stays_on_its_row_of_the_class_table(run_cli, tmp_path):
    # a folder "cat\nold" printed its row of search data's class table on two lines
    from PIL import Image

    for name in ("cat\nold", "dog\tpuppy"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(np.full((4, 4), 60 + i, np.uint8)).save(tmp_path / "photos" / name / f"{i}.png")
    photos = run_cli("data", "--data", "photos")
    assert photos.exit_code == 0, photos.output
    lines = photos.stdout.splitlines()
    rows = lines[lines.index("  class                  train    val   test") + 1:][:2]
    assert rows == ["  cat\\nold                  14      3      3", "  dog\\tpuppy                14      3      3"]


def test_names_from_files_never_reach_the_terminal_as_control_codes(run_cli, tmp_path, monkeypatch):
    # a label, a file name, an image folder's class: ESC]0;...BEL set the terminal's title, ESC[31m its colour
    monkeypatch.setenv("COLUMNS", "200")
    esc = "\x1b]0;PWN\x07\x1b[31m"
    shown = "\\x1b]0;PWN\\x07\\x1b[31m"
    rng = np.random.default_rng(0)
    (tmp_path / "cols.csv").write_text("a,b,label\n" + "".join(
        f"{rng.normal():.3f},{rng.normal():.3f},{('cat', 'dog' + esc)[i % 2]}\n" for i in range(100)))
    described = run_cli("data", "--data", "cols.csv")
    assert described.exit_code == 0, described.output
    assert "\x1b" not in described.output and "\x07" not in described.output
    assert "  dog\\x1b]0;PWN\\x07\\x1      34      8      8" in described.stdout.splitlines()
    assert json.loads(run_cli("data", "--data", "cols.csv", "--json").stdout)["classes"][1]["name"] == "dog" + esc
    (tmp_path / f"name{esc}.csv").write_text("a,b\n1\n")
    one_line_error(run_cli("data", "--data", f"name{esc}.csv"),
                   f"/name{shown}.csv: row 1 (line 2) has 1 field but the header has 2")
    from PIL import Image

    for k, name in enumerate(("dark", f"light{esc}")):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(np.full((4, 4), 60 + 120 * k, np.uint8)).save(tmp_path / "photos" / name / f"{i}.png")
    photos = run_cli("data", "--data", "photos")
    assert photos.exit_code == 0, photos.output
    assert "\x1b" not in photos.output and f"light{shown}"[:20] in photos.stdout


def test_search_data_of_many_classes_lists_the_most_and_least_frequent_and_counts_the_rest(run_cli, tmp_path,
                                                                                          monkeypatch):
    # 10,000 classes printed one row each, and the few-samples warning named 1,803 of them: 11,818 lines
    monkeypatch.setenv("COLUMNS", "200")
    rng = np.random.default_rng(0)
    rows = [f"{rng.normal():.3f},{rng.normal():.3f},k{i:02d}" for i in range(40) for _ in range(3 + i)]
    (tmp_path / "many.csv").write_text("\n".join(["a,b,label", *rows]) + "\n")
    lines = run_cli("data", "--data", "many.csv").stdout.splitlines()
    table = lines[lines.index("40 classes:") + 2:]
    assert len(table) == 23, table  # 10 rows, a line, 10 rows, two warnings
    assert table[:2] == ["  k39                       30      6      6", "  k38                       29      6      6"]
    assert table[10] == "  ... 20 classes of 9 to 22 training samples left out (--json lists every class)"
    assert table[20:22] == ["  k00                        1      1      1",
                            "warning: few training samples (< 10) in 11 of 40 classes, the fewest 'k00' (1), 'k01' "
                            "(2), 'k02' (3), 'k03' (4), 'k04' (5), 'k05' (6), 'k07' (6), 'k06' (7), 'k08' (7), "
                            "'k09' (8), ..."]
    assert len(json.loads(run_cli("data", "--data", "many.csv", "--json").stdout)["classes"]) == 40
    # up to 30 classes, every one in its order, and up to 10 few ones each named
    small = "\n".join(["a,b,label", *(row for row in rows if int(row[-2:]) >= 10)])
    (tmp_path / "some.csv").write_text(small + "\n")
    lines = run_cli("data", "--data", "some.csv").stdout.splitlines()
    table = lines[lines.index("30 classes:") + 2:]
    assert [row.split()[0] for row in table[:30]] == [f"k{i}" for i in range(10, 40)]
    assert table[30] == "warning: few training samples (< 10) in class 'k10' (9)", table[30]


def test_fine_continuing_its_unfinished_stage_warns_of_too_few_updates_as_a_new_one(run_cli, monkeypatch):
    # search fine --epochs 3 on wine, interrupted, then search fine: its 6 updates a trial went on without a word
    from search.campaign import next_fine_stage
    from search.stages import create_stage

    monkeypatch.setenv("COLUMNS", "300")
    small = ["--data", "digits", "--train-size", "300", "--jobs", "1"]
    assert "warning" not in run_cli("coarse", *small, "--trials", "2", "--epochs", "4", "--campaign", "c").stderr
    storage = open_storage("sqlite:///search.db")
    stage, _ = next_fine_stage(storage, "c", 5, 0.1, 2, 2)  # created at 2 epochs, none of its trials run
    create_stage(storage, stage)
    storage.engine.dispose()
    fine = run_cli("fine", "--campaign", "c", "--jobs", "1")
    assert fine.exit_code == 0, fine.output
    assert [line for line in fine.stderr.splitlines() if "warning" in line] == [
        "warning: 300 training samples make 6 updates an epoch at --batch-size 50, 12 in a 2-epoch trial (under 20, "
        "too few for a slow learning rate to move the loss): give a smaller --batch-size or more --epochs"]
    assert json.loads(run_cli("studies", "--json").stdout)[-1]["n_trials"] == 2  # the stage continued, not another


def test_auto_continuing_a_stored_coarse_stage_over_batch_size_warns_of_no_one_update_epoch(run_cli, monkeypatch):
    # search auto on a stored coarse stage searching batch_size judged by its own --batch-size 50: "80 training
    # samples make one update an epoch at --batch-size 50 (30 of them left out of each)", of a batch no trial used
    monkeypatch.setenv("COLUMNS", "300")
    small = ["--data", "digits", "--train-size", "80", "--jobs", "1", "--campaign", "b"]
    coarse = stages_made_only(run_cli, monkeypatch, "coarse", *small, "--space", "batch_size=8:32", "--trials", "2",
                              "--epochs", "3")
    assert coarse.exit_code == 130 and "warning" not in coarse.stderr
    auto = run_cli("auto", *small, "--max-fine", "0", "--top", "1", "--repeats", "1", "--retrain-seeds", "1")
    assert auto.exit_code == 0, auto.output
    assert "continuing from b/coarse as it was created (batch_size=8:32:int, 2 trials" in auto.stderr
    assert [line for line in auto.stderr.splitlines() if "warning" in line] == []


def test_auto_continuing_a_stored_coarse_stage_judges_updates_by_its_epochs(run_cli, monkeypatch):
    # search auto --fine-epochs 3 on a coarse stage of 4 epochs compared 3 with its own --epochs (3 by default): the
    # coarse trials were said to make 18 updates and the fine ones nothing
    monkeypatch.setenv("COLUMNS", "300")
    small = ["--data", "digits", "--train-size", "300", "--jobs", "1", "--campaign", "c"]
    # c/coarse: 4 epochs, 24 updates a trial
    assert stages_made_only(run_cli, monkeypatch, "coarse", *small, "--trials", "2", "--epochs", "4").exit_code == 130
    auto = run_cli("auto", *small, "--fine-epochs", "3", "--max-fine", "1", "--top", "1", "--promote", "0",
                   "--repeats", "1", "--retrain-seeds", "1")
    assert auto.exit_code == 0, auto.output
    assert "continuing from c/coarse as it was created" in auto.stderr
    assert [line for line in auto.stderr.splitlines() if "warning" in line] == [
        "warning: 300 training samples make 6 updates an epoch at --batch-size 50, 18 in a 3-epoch trial (under 20, "
        "too few for a slow learning rate to move the loss): give a smaller --batch-size or more --fine-epochs"]


def test_what_the_most_frequent_class_alone_scores_is_said_before_training(run_cli, tmp_path, monkeypatch):
    # 220 images, 64 % circles: every trial of search auto ended at 0.6364, the circles' share of validation, and
    # nothing said so before, during or after it
    monkeypatch.setenv("COLUMNS", "200")  # the line unwrapped
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"x": rng.normal(size=200), "label": ["a"] * 140 + ["b"] * 40 + ["c"] * 20})
    rows.to_csv(tmp_path / "skewed.csv", index=False)
    warning = ("warning: always predicting the most frequent class, 'a' (70% of training), scores 0.7000 on "
               "validation: a validation accuracy near that has learned nothing but the class frequencies")
    assert warning in run_cli("data", "--data", "skewed.csv").stdout.splitlines()
    coarse = run_cli("coarse", "--data", "skewed.csv", "--trials", "1", "--epochs", "1", "--jobs", "1")
    assert coarse.exit_code == 0 and coarse.stderr.splitlines()[0] == warning, coarse.output
    train = run_cli("train", "--data", "skewed.csv", "--epochs", "1")
    assert train.exit_code == 0 and train.stderr.splitlines() == [warning], train.output
    rows.assign(label=["a"] * 80 + ["b"] * 60 + ["c"] * 60).to_csv(tmp_path / "even.csv", index=False)
    assert run_cli("train", "--data", "even.csv", "--epochs", "1").stderr == ""


SHORT_AUTO = ("--trials", "2", "--epochs", "1", "--max-fine", "0", "--top", "1", "--repeats", "1",
              "--retrain-seeds", "1", "--jobs", "1")


def _write_majority_tables(folder):
    """noise.csv: 200 rows of 70/20/10 % labels a/b/c and a feature that says nothing of them; signal.csv: the same
    labels with a feature that tells them apart."""
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 140 + ["b"] * 40 + ["c"] * 20)
    pd.DataFrame({"x": rng.normal(size=200), "label": labels}).to_csv(folder / "noise.csv", index=False)
    signal = (labels == "b") * 4.0 + (labels == "c") * 8.0 + rng.normal(0, 0.1, 200)
    pd.DataFrame({"x": signal, "label": labels}).to_csv(folder / "signal.csv", index=False)


def test_auto_compares_its_test_score_with_the_most_frequent_class_alone(run_cli, tmp_path, monkeypatch):
    # search auto on 220 images, 64 % circles, chose a network that calls every image a circle, reported test_acc
    # 0.6364 and saved it, with no word that always answering 'circle' scores exactly that
    monkeypatch.setenv("COLUMNS", "200")  # the lines unwrapped
    _write_majority_tables(tmp_path)
    noise = run_cli("auto", "--data", "noise.csv", *SHORT_AUTO)
    assert noise.exit_code == 0, noise.output
    assert noise.stdout.splitlines()[-2:] == [
        "  retrained 1x: val_acc 0.7000, test_acc 0.7000 (1 retrain: no spread), balanced 0.3333",
        "  always predicting the most frequent class, 'a': test_acc 0.7000; the chosen network does no better: it "
        "learned nothing but the class frequencies"]
    assert json.loads(run_cli("auto", "--data", "noise.csv", *SHORT_AUTO, "--json").stdout)["final"]["retrained"][
        "most_frequent_class"] == {"class": "a", "test_acc": 0.7}
    best = run_cli("best")  # search best says it under auto's choice too
    assert best.exit_code == 0 and ("  always predicting the most frequent class, 'a': test_acc 0.7000; the chosen "
                                    "network does no better: it learned nothing but the class frequencies"
                                    ) in best.stdout.splitlines(), best.output
    learned = run_cli("auto", "--data", "signal.csv", *SHORT_AUTO, "--space", "lr=0.01:0.1")
    assert learned.exit_code == 0, learned.output
    assert learned.stdout.splitlines()[-1] == "  always predicting the most frequent class, 'a': test_acc 0.7000"
    assert json.loads(run_cli("auto", "--data", "digits", "--campaign", "d", *SHORT_AUTO, "--json").stdout)["final"][
        "retrained"]["most_frequent_class"] is None


def test_train_test_compares_its_test_score_with_the_most_frequent_class_alone(run_cli, tmp_path, monkeypatch):
    # search train --from-trial ... --test on 70/25/5 % churn labels printed test_acc 0.8400 alone
    monkeypatch.setenv("COLUMNS", "200")  # the lines unwrapped
    _write_majority_tables(tmp_path)
    noise = run_cli("train", "--data", "noise.csv", "--epochs", "1", "--test")
    assert noise.exit_code == 0, noise.output
    assert noise.stdout.splitlines()[-2:] == [
        "test_acc 0.7000 (balanced 0.3333)", "always predicting the most frequent class, 'a': test_acc 0.7000; this "
        "network does no "
        "better: it learned nothing but the class frequencies"]
    out = json.loads(run_cli("train", "--data", "noise.csv", "--epochs", "1", "--test", "--json").stdout)
    assert out["most_frequent_class"] == {"class": "a", "test_acc": 0.7} and out["test_acc"] == 0.7
    learned = run_cli("train", "--data", "signal.csv", "--epochs", "20", "--lr", "0.01", "--test")
    assert learned.exit_code == 0 and learned.stdout.splitlines()[-1] == (
        "always predicting the most frequent class, 'a': test_acc 0.7000"), learned.output
    digits = json.loads(run_cli("train", "--epochs", "1", "--test", "--json").stdout)
    assert digits["most_frequent_class"] is None and "most_frequent_class" not in json.loads(
        run_cli("train", "--epochs", "1", "--json").stdout)


def test_auto_warns_after_the_coarse_stage_when_its_best_is_no_better_than_the_most_frequent_class(run_cli, tmp_path,
                                                                                                      monkeypatch):
    # a coarse stage whose best was the majority class's share ran every fine stage after it without a word
    monkeypatch.setenv("COLUMNS", "200")
    _write_majority_tables(tmp_path)
    noise = run_cli("auto", "--data", "noise.csv", *SHORT_AUTO)
    assert noise.exit_code == 0, noise.output
    text = " ".join(noise.stderr.split())
    warning = ("warning: noise/coarse's best value 0.7000 is within noise of always predicting the most frequent "
               "class, 'a', which scores 0.7000 on validation (2 standard errors 0.1673): no trial has learned more "
               "than the class frequencies, and the next stages search near them; try a smaller --batch-size or more "
               "--epochs, and check the data (search data)")
    assert text.count(warning) == 1, noise.stderr
    assert text.index(warning) < text.index("noise/final:0")  # before the stages after the coarse one
    learned = run_cli("auto", "--data", "signal.csv", *SHORT_AUTO[:2], "--epochs", "20", *SHORT_AUTO[4:], "--space",
                      "lr=0.01:0.1", "--batch-size", "10", "--json")
    assert learned.exit_code == 0, learned.output
    assert json.loads(learned.stdout)["stages"][0]["best_value"] > 0.87 and "within noise" not in learned.stderr


def test_a_worker_reads_a_copy_of_the_data_elsewhere_given_by_data_and_refuses_other_data(run_cli, tmp_path,
                                                                                           monkeypatch):
    # a second machine has its copy of the data at another path: search worker said only that the stage's path "is not
    # found (moved or deleted?)", with no way to point it at the copy
    path = _write_csv(tmp_path / "wine.csv", load_wine)
    args = ("coarse", "--campaign", "c", "--data", str(path), "--trials", "3", "--epochs", "1")
    assert stages_made_only(run_cli, monkeypatch, *args).exit_code == 130
    (tmp_path / "copy").mkdir()
    copy = path.rename(tmp_path / "copy" / "wine.csv")
    frame = pd.read_csv(copy)
    frame.iloc[0, 0] += 1.0
    frame.to_csv(tmp_path / "other.csv", index=False)
    study = optuna.load_study(study_name="c/coarse", storage=open_storage("sqlite:///search.db", create=False))
    recorded = study.user_attrs["data"]["sha256"]
    other = data_sha256(DataSpec(name=str(tmp_path / "other.csv")))
    assert one_line_error(run_cli("worker", "--campaign", "c", "--data", "other.csv")) == (
        f"error: --data {tmp_path / 'other.csv'} is not the data stage c/coarse was trained on ({path}): sha256 "
        f"{recorded} recorded, {other} in {tmp_path / 'other.csv'}; give a copy of that data")
    assert len(cwd_study("c/coarse").get_trials(states=[TrialState.WAITING])) == 3  # nothing run
    result = run_cli("worker", "--campaign", "c", "--data", "copy/wine.csv", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stages"][0]["counts"]["complete"] == 3
    assert run_cli("worker", "--campaign", "c", "--data", "missing.csv").exit_code == 2


def test_a_worker_given_data_of_another_kind_names_both_kinds(run_cli, tmp_path, monkeypatch):
    # search worker --data copy/ (the copy's folder, not its file) said the stage's "stored definition cannot be read
    # (--label-column 'target' applies to .csv/.tsv data only ...); it was written by another program or changed since"
    path = _write_csv(tmp_path / "wine.csv", load_wine)
    args = ("coarse", "--campaign", "c", "--data", str(path), "--label-column", "target", "--trials", "3",
            "--epochs", "1")
    assert stages_made_only(run_cli, monkeypatch, *args).exit_code == 130
    (tmp_path / "copy").mkdir()
    copy = path.rename(tmp_path / "copy" / "wine.csv")
    (tmp_path / "wine.tsv").write_text(copy.read_text().replace(",", "\t"))
    assert one_line_error(run_cli("worker", "--campaign", "c", "--data", "copy")) == (
        f"error: --data {tmp_path / 'copy'} is an image folder, where stage c/coarse was trained on a .csv table "
        f"({path}): give the path of this machine's copy of it")
    assert one_line_error(run_cli("worker", "--campaign", "c", "--data", "wine.tsv")) == (
        f"error: --data {tmp_path / 'wine.tsv'} is a .tsv table, where stage c/coarse was trained on a .csv table "
        f"({path}): give the path of this machine's copy of it")
    assert len(cwd_study("c/coarse").get_trials(states=[TrialState.WAITING])) == 3  # nothing run
    assert run_cli("worker", "--campaign", "c", "--data", "copy/wine.csv").exit_code == 0


def test_a_worker_hashes_its_copy_of_the_data_once_a_process_and_reads_it_once_a_stage(run_cli, tmp_path,
                                                                                        monkeypatch):
    # search worker --data hashed its copy at every stage it joined, one with no trial left too, and read the copy of
    # a stage recorded without a sha256 twice (once to check its shapes and classes, once for the trials)
    import engine.data
    import search.config

    path = _write_csv(tmp_path / "wine.csv", load_wine)
    for campaign in ("c", "d", "e", "f"):
        args = ("coarse", "--campaign", campaign, "--data", str(path), "--trials", "2", "--epochs", "1")
        assert stages_made_only(run_cli, monkeypatch, *args).exit_code == 130
    study = cwd_study("f/coarse")
    study.set_user_attr("data", {k: v for k, v in study.user_attrs["data"].items() if k != "sha256"})
    (tmp_path / "copy").mkdir()
    copy = path.rename(tmp_path / "copy" / "wine.csv")
    hashed, loaded = [], []
    real_hash, real_load = engine.data.sha256_files, search.config.load_dataset
    monkeypatch.setattr(engine.data, "sha256_files", lambda root, files: hashed.append(root) or real_hash(root, files))
    monkeypatch.setattr(search.config, "load_dataset", lambda spec: loaded.append(spec.name) or real_load(spec))

    def worker(campaign: str) -> int:
        result = run_cli("worker", "--campaign", campaign, "--data", "copy/wine.csv", "--json")
        assert result.exit_code == 0, result.output
        return sum(stage["ran"] for stage in json.loads(result.stdout)["stages"])  # none for a complete one

    assert [worker("c"), worker("d"), worker("c")] == [2, 2, 0]  # c again: nothing left to run, nothing read
    assert hashed == [copy] and loaded == [str(copy)] * 2
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))  # touched: hashed again
    assert worker("e") == 2 and hashed == [copy] * 2 and loaded == [str(copy)] * 3
    # recorded without a sha256: read once, its shapes and classes checked on what the trials run on
    assert worker("f") == 2 and hashed == [copy] * 2 and loaded == [str(copy)] * 4


def test_worker_data_checks_shapes_and_classes_where_a_stage_records_no_sha256(run_cli, tmp_path, monkeypatch):
    path = _write_csv(tmp_path / "wine.csv", load_wine)
    args = ("coarse", "--campaign", "c", "--data", str(path), "--trials", "2", "--epochs", "1")
    assert stages_made_only(run_cli, monkeypatch, *args).exit_code == 130
    study = cwd_study("c/coarse")
    study.set_user_attr("data", {k: v for k, v in study.user_attrs["data"].items() if k != "sha256"})
    path.rename(tmp_path / "copy.csv")
    _write_csv(tmp_path / "cancer.csv", load_breast_cancer)
    line = one_line_error(run_cli("worker", "--campaign", "c", "--data", "cancer.csv"))
    assert line.startswith(f"error: --data {tmp_path / 'cancer.csv'} is not the data stage c/coarse was trained on "
                           f"({path}): shapes ")
    assert "; classes ['0', '1', '2'] recorded, ['0', '1'] in" in line
    assert run_cli("worker", "--campaign", "c", "--data", "copy.csv").exit_code == 0
