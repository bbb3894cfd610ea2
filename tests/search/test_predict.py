"""`search train --save` and `search predict`: a saved model scores new data exactly as validation was scored."""
from __future__ import annotations

import collections
import contextlib
import csv
import errno
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.metrics import balanced_accuracy_score

from engine.checkpoint import load_checkpoint
from engine.data import DataSpec, load_dataset
from tests.search.conftest import one_line_error

WINE_CLASSES = ("barbera", "barolo", "grignolino")


@pytest.fixture
def wine_csv(tmp_path):
    """The wine data with string labels in a middle column, as a user's file would have them."""
    data = load_wine()
    path = tmp_path / "wine.csv"
    names = [n.replace("/", "_") for n in data.feature_names]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names[:5] + ["cultivar"] + names[5:])
        for x, t in zip(data.data, data.target):
            writer.writerow([f"{v:g}" for v in x[:5]] + [("barolo", "grignolino", "barbera")[t]] +
                            [f"{v:g}" for v in x[5:]])
    return path


def dark_and_light(folder, per_class: int, shape: tuple[int, ...] = (6, 5), rng=None) -> None:
    """An image folder of classes dark and light: ``per_class`` PNGs each of ``shape``, pixels around 80 and 180."""
    from PIL import Image

    rng = rng if rng is not None else np.random.default_rng(0)
    for k, name in enumerate(("dark", "light")):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(80 + 100 * k, 30, shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def wine_rows(wine_csv, n: int) -> tuple[np.ndarray, list[str]]:
    """The first ``n`` samples of the wine CSV: their features (file order, without the label) and labels."""
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    column = table[0].index("cultivar")
    X = np.array([[float(v) for k, v in enumerate(r) if k != column] for r in table[1:n + 1]])
    return X, [r[column] for r in table[1:n + 1]]


def train_and_save(run_cli, data: str, *extra: str) -> dict:
    result = run_cli("train", "--data", data, "--epochs", "15", "--lr", "3e-3", "--save", "model.npz", "--json",
                     *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_predicting_the_validation_split_gives_the_validation_accuracy_exactly(run_cli, wine_csv, tmp_path):
    out = train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar", "--preprocess", "standardize")
    assert out["saved"] == "model.npz" and out["val_acc"] > 0.9
    raw = load_dataset(DataSpec(name=str(wine_csv), label_column="cultivar"))
    assert raw.label_names == WINE_CLASSES
    np.savez(tmp_path / "val.npz", X=raw.X_val, y=np.array(WINE_CLASSES)[raw.y_val])
    result = run_cli("predict", "--model", "model.npz", "--data", "val.npz")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert table[0] == ["row", "prediction", "label", "p_barbera", "p_barolo", "p_grignolino"]
    assert len(table) == 1 + len(raw.y_val) == 28
    right = round(out["val_acc"] * len(raw.y_val))
    assert sum(r[1] == r[2] for r in table[1:]) == right
    assert f"accuracy {right / 27:.4f} ({right} of 27 labels)" in result.stderr
    for r in table[1:]:  # probabilities of each row sum to one, the prediction is the most probable class
        p = [float(v) for v in r[3:]]
        assert abs(sum(p) - 1) < 3e-4 and r[1] == WINE_CLASSES[int(np.argmax(p))]


def test_predict_json_gives_the_accuracy_and_the_rows_under_the_csvs_names(run_cli, wine_csv, tmp_path):
    # search predict had no --json, which every other command has
    out = train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar", "--preprocess", "standardize")
    raw = load_dataset(DataSpec(name=str(wine_csv), label_column="cultivar"))
    np.savez(tmp_path / "val.npz", X=raw.X_val, y=np.array(WINE_CLASSES)[raw.y_val])
    table = rows(run_cli("predict", "--model", "model.npz", "--data", "val.npz").stdout)
    result = run_cli("predict", "--model", "model.npz", "--data", "val.npz", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    right = round(out["val_acc"] * 27)
    assert (got["samples"], got["labels"], got["out"], got["unknown_labels"]) == (27, 27, None, [])
    assert got["accuracy"] == right / 27
    assert [list(r) for r in got["rows"]] == [table[0]] * 27
    assert [[str(r["row"]), r["prediction"], r["label"]] for r in got["rows"]] == [r[:3] for r in table[1:]]
    assert all(abs(sum(r[f"p_{c}"] for c in WINE_CLASSES) - 1) < 1e-6 for r in got["rows"])
    written = json.loads(run_cli("predict", "--model", "model.npz", "--data", "val.npz", "--json", "--out",
                                 "p.csv").stdout)
    assert written == {k: v for k, v in got.items() if k != "rows"} | {"out": "p.csv"}
    assert len(rows((tmp_path / "p.csv").read_text())) == 28


def test_columns_are_read_by_name_in_any_order_and_labels_are_optional(run_cli, wine_csv, tmp_path):
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar", "--preprocess", "standardize")
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    shuffled, unlabelled = tmp_path / "shuffled.csv", tmp_path / "unlabelled.tsv"
    order = list(range(len(table[0])))[::-1]
    with open(shuffled, "w", newline="") as f:
        csv.writer(f).writerows([["id"] + [r[i] for i in order] if k == 0 else [str(k)] + [r[i] for i in order]
                                 for k, r in enumerate(table)])
    label = table[0].index("cultivar")
    with open(unlabelled, "w", newline="") as f:
        csv.writer(f, delimiter="\t").writerows([r[:label] + r[label + 1:] for r in table])
    a = run_cli("predict", "--model", "model.npz", "--data", str(wine_csv))
    b = run_cli("predict", "--model", "model.npz", "--data", str(shuffled))
    c = run_cli("predict", "--model", "model.npz", "--data", str(unlabelled), "--out", "p.csv")
    assert a.exit_code == b.exit_code == c.exit_code == 0, (a.output, b.output, c.output)
    assert a.stdout == b.stdout and len(rows(a.stdout)) == 179
    assert c.stdout == "" and "178 samples scored with model.npz; wrote p.csv" in c.stderr
    with open(tmp_path / "p.csv") as f:
        without_labels = list(csv.reader(f))
    assert without_labels[0] == ["row", "prediction", "p_barbera", "p_barolo", "p_grignolino"]
    assert [r[:2] + r[3:] for r in rows(a.stdout)[1:]] == without_labels[1:]
    assert "accuracy" not in c.stderr and "accuracy" in a.stderr


def test_predictions_written_to_a_tsv_file_are_tab_separated(run_cli, wine_csv, tmp_path):
    # --out p.tsv wrote comma-separated rows, which a spreadsheet opens as one column
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    assert run_cli("predict", "--model", "model.npz", "--data", str(wine_csv), "--out", "p.tsv").exit_code == 0
    assert run_cli("predict", "--model", "model.npz", "--data", str(wine_csv), "--out", "p.csv").exit_code == 0
    with open(tmp_path / "p.tsv") as tsv, open(tmp_path / "p.csv") as comma:
        assert list(csv.reader(tsv, delimiter="\t")) == list(csv.reader(comma))
    header = (tmp_path / "p.tsv").read_text().splitlines()[0]
    assert header == "row\tprediction\tlabel\tp_barbera\tp_barolo\tp_grignolino"


def test_an_id_column_names_each_row_of_the_predictions(run_cli, wine_csv, tmp_path):
    # the predictions of a table named its rows 0, 1, 2, ... only: the user's own ids were left behind
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar", "--preprocess", "standardize")
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    new = tmp_path / "new.tsv"
    with open(new, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["sample"] + table[0])
        writer.writerows([f"W-{k:03d}"] + r for k, r in enumerate(table[1:4]))
    plain = rows(run_cli("predict", "--model", "model.npz", "--data", str(new)).stdout)
    named = run_cli("predict", "--model", "model.npz", "--data", str(new), "--id-column", "sample")
    assert named.exit_code == 0, named.output
    assert rows(named.stdout) == [["row", "sample"] + plain[0][1:]] + [
        [r[0], f"W-{k:03d}"] + r[1:] for k, r in enumerate(plain[1:])]
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", str(new), "--id-column", "id"),
                   f"{new}: no column 'id' to name the rows by; the columns are 'sample', ")
    np.savez(tmp_path / "x.npz", X=np.ones((2, 13)))
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", str(tmp_path / "x.npz"), "--id-column",
                           "sample"), "rows are named by an id column only in a .csv/.tsv table, not in npz data")


def test_csv_safe_writes_a_text_cell_a_spreadsheet_would_run_as_a_formula_after_a_quote(run_cli, wine_csv, tmp_path):
    # a class, label or id cell "=HYPERLINK(...)" or "-2+3" went into the predictions as it was: a spreadsheet opening
    # them ran it as a formula
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    column = table[0].index("cultivar")
    classes = {"barolo": "=barolo", "grignolino": "@grignolino", "barbera": "barbera"}
    for r in table[1:]:
        r[column] = classes[r[column]]
    ids = ['=HYPERLINK("http://x")', "-0.5", "-2+3", "+1", "\tx", "\rx", "'=quoted", "1e-3", "plain", "-"]
    new = tmp_path / "new.csv"
    with open(new, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["@id"] + table[0])
        writer.writerows([i] + r for i, r in zip(ids + [f"w{k}" for k in range(len(table))], table[1:]))
    train_and_save(run_cli, str(new), "--label-column", "cultivar", "--ignore-column", "@id")

    plain = run_cli("predict", "--model", "model.npz", "--data", str(new), "--id-column", "@id")
    safe = run_cli("predict", "--model", "model.npz", "--data", str(new), "--id-column", "@id", "--csv-safe",
                   "--out", "p.csv")
    assert plain.exit_code == safe.exit_code == 0, safe.output
    before, after = rows(plain.stdout), rows((tmp_path / "p.csv").read_bytes().decode())
    assert before[0] == ["row", "@id", "prediction", "label", "p_=barolo", "p_@grignolino", "p_barbera"]
    assert after[0] == ["row", "'@id", "prediction", "label", "p_=barolo", "p_@grignolino", "p_barbera"]
    assert [r[1] for r in before[1:11]] == ids
    assert [r[1] for r in after[1:11]] == ["'=HYPERLINK(\"http://x\")", "-0.5", "'-2+3", "+1", "'\tx", "'\rx",
                                          "'=quoted", "1e-3", "plain", "'-"]
    quoted = {"=barolo": "'=barolo", "@grignolino": "'@grignolino", "barbera": "barbera"}
    assert [r[2:4] for r in after[1:]] == [[quoted[c] for c in r[2:4]] for r in before[1:]]
    assert {r[3] for r in after[1:11]} == {"'=barolo"}  # the first ten rows' label
    assert [r[0] for r in after] == [r[0] for r in before] and [r[4:] for r in after] == [r[4:] for r in before]


def test_the_unnamed_index_column_pandas_writes_names_the_rows_under_its_own_empty_name(run_cli, wine_csv, tmp_path):
    # --id-column "" (the column to_csv writes for the index, unless index=False) was headed 'file', as an image's
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    with open(tmp_path / "new.csv", "w", newline="") as f:
        csv.writer(f).writerows([[""] + table[0]] + [[f"{k + 10}"] + r for k, r in enumerate(table[1:3])])
    result = run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--id-column", "")
    assert result.exit_code == 0, result.output
    assert [r[:2] for r in rows(result.stdout)] == [["row", ""], ["0", "10"], ["1", "11"]]
    as_json = json.loads(run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--id-column", "",
                                 "--json").stdout)
    assert [(r["row"], r[""]) for r in as_json["rows"]] == [(0, "10"), (1, "11")] and "file" not in as_json["rows"][0]


@pytest.mark.parametrize("column", ["row", "prediction", "label", "p_barolo"])
def test_an_id_column_named_as_a_column_of_the_predictions_is_refused_before_any_work(run_cli, wine_csv, tmp_path,
                                                                                      column):
    # an id column named row or prediction gave two columns of one name: --json kept one of them, the other lost
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    new = tmp_path / "new.csv"
    with open(new, "w", newline="") as f:
        csv.writer(f).writerows([[column] + table[0]] + [[f"W-{k}"] + r for k, r in enumerate(table[1:4])])
    for extra in ((), ("--json",), ("--out", "p.csv")):
        assert one_line_error(run_cli("predict", "--model", "model.npz", "--data", str(new), "--id-column", column,
                                      *extra)) == (
            f"error: --id-column {column}: the predictions have a column {column!r} of their own; rename the "
            f"column in {new} to name the rows by it")
    assert not (tmp_path / "p.csv").exists()


def test_the_saved_file_holds_the_network_and_its_preprocessing(run_cli, wine_csv):
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar", "--preprocess", "pca",
                   "--pca-components", "5", "--hidden", "7")
    saved = load_checkpoint("model.npz")
    assert saved.label_names == WINE_CLASSES and saved.label_column == "cultivar"
    assert len(saved.features) == 13 and "cultivar" not in saved.features
    assert saved.preprocessor.name == "pca" and saved.preprocessor.projection.shape == (13, 5)
    assert saved.model.params["W1"].shape == (5, 7) and saved.input_dim == 13
    assert saved.info["run"]["arch"]["hidden"] == [7] and saved.info["epochs"] == 15


def test_an_image_model_scores_an_image_folder(run_cli, tmp_path):
    dark_and_light(tmp_path / "imgs", 30)
    train_and_save(run_cli, "imgs", "--batch-size", "10")
    assert load_checkpoint("model.npz").image_shape == (1, 6, 5)
    result = run_cli("predict", "--model", "model.npz", "--data", "imgs")
    assert result.exit_code == 0, result.output
    assert "60 samples scored with model.npz; accuracy 1.0000 (60 of 60 labels)" in result.stderr


def test_new_images_alone_in_a_folder_are_scored_unlabelled(run_cli, tmp_path):
    """A folder of new images without class subfolders (what a user has to score) is read in file order."""
    from PIL import Image

    dark_and_light(tmp_path / "imgs", 12)
    train_and_save(run_cli, "imgs", "--batch-size", "4")
    (tmp_path / "new").mkdir()
    for name, level in (("a_light.png", 200), ("b_dark.png", 60), ("c_dark.jpg", 70)):
        Image.fromarray(np.full((6, 5), level, np.uint8)).save(tmp_path / "new" / name)
    result = run_cli("predict", "--model", "model.npz", "--data", "new")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert table[0] == ["row", "file", "prediction", "p_dark", "p_light"]
    assert [r[:3] for r in table[1:]] == [["0", "a_light.png", "light"], ["1", "b_dark.png", "dark"],
                                         ["2", "c_dark.jpg", "dark"]]
    assert result.stderr == "3 samples scored with model.npz\n"
    Image.fromarray(np.full((6, 5), 60, np.uint8)).save(tmp_path / "new" / "d_dark.gif")
    result = run_cli("predict", "--model", "model.npz", "--data", "new", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["samples"] == 3, result.output
    assert json.loads(result.stdout)["warnings"] == [
        "1 file in new is not read, being no PNG or JPEG image by name (e.g. d_dark.gif): only .png, .jpg and .jpeg "
        "are read; convert it to PNG to have it read"]
    for name in ("b_dark.png", "c_dark.jpg", "d_dark.gif"):
        (tmp_path / "new" / name).unlink()
    assert run_cli("predict", "--model", "model.npz", "--data", "new").stderr == "1 sample scored with model.npz\n"


def test_predictions_for_an_image_folder_name_each_image_file(run_cli, tmp_path):
    dark_and_light(tmp_path / "imgs", 12)
    train_and_save(run_cli, "imgs", "--batch-size", "4")
    result = run_cli("predict", "--model", "model.npz", "--data", "imgs")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert table[0] == ["row", "file", "prediction", "label", "p_dark", "p_light"]
    order = sorted(f"{i}.png" for i in range(12))  # file order: class folders, then names, sorted
    assert [r[1] for r in table[1:]] == [f"dark/{n}" for n in order] + [f"light/{n}" for n in order]
    assert [r[0] for r in table[1:]] == [str(i) for i in range(24)]
    assert [r[3] for r in table[1:]] == ["dark"] * 12 + ["light"] * 12


def test_an_image_whose_name_is_not_utf8_is_named_by_its_bytes_in_the_predictions_file(run_cli, tmp_path):
    import os

    from PIL import Image

    dark_and_light(tmp_path / "imgs", 12)
    train_and_save(run_cli, "imgs", "--batch-size", "4")
    (tmp_path / "new").mkdir()
    Image.fromarray(np.full((6, 5), 60, np.uint8)).save(os.fsdecode(bytes(tmp_path / "new") + b"/d\xe9j\xe0.png"))
    result = run_cli("predict", "--model", "model.npz", "--data", "new", "--out", "p.csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.csv").read_bytes().splitlines()[1].startswith(b"0,d\xe9j\xe0.png,dark,")


def test_an_svm_model_predicts_classes_without_probabilities(run_cli, wine_csv):
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar", "--preprocess", "standardize",
                   "--loss", "svm")
    result = run_cli("predict", "--model", "model.npz", "--data", str(wine_csv))
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert table[0] == ["row", "prediction", "label"] and len(table) == 179


def test_a_run_that_explodes_is_not_saved(run_cli, tmp_path):
    result = run_cli("train", "--lr", "5", "--epochs", "3", "--save", "model.npz")
    assert result.exit_code == 1
    assert "not saved to model.npz: the run exploded" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_input_is_one_line_and_exit_2(run_cli, wine_csv, tmp_path):
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    with open(tmp_path / "few.csv", "w") as f:
        f.write("alcohol,malic_acid\n1,2\n")
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "few.csv"),
                   "few.csv: no column 'ash'", "the model reads 13 columns by name")
    np.savez(tmp_path / "narrow.npz", X=np.zeros((3, 4)))
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "narrow.npz"),
                   "narrow.npz: samples of 4 features; the model reads 13")
    np.savez(tmp_path / "other.npz", X=np.zeros((3, 4)))
    one_line_error(run_cli("predict", "--model", "other.npz", "--data", str(wine_csv)),
                   "other.npz: not a model file saved by `search train --save`")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "model.npz").read_bytes()[:300])
    one_line_error(run_cli("predict", "--model", "cut.npz", "--data", str(wine_csv)),
                   "cut.npz: not a model file saved by `search train --save`")
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "imgs"),
                   "imgs: an image folder, but the model was not trained on images")
    with open(tmp_path / "bad.csv", "w") as f:
        f.write(open(wine_csv).read().replace("14.23", "n/a", 1))
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "bad.csv"),
                   "bad.csv: row 1 (line 2) column 'alcohol' is 'n/a' (a missing value): fill it in or delete the row")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".csv" and p.name.startswith("p")) == []


def test_auto_saves_the_chosen_configurations_first_retrain(run_cli, wine_csv, tmp_path):
    import optuna

    result = run_cli("auto", "--data", str(wine_csv), "--label-column", "cultivar", "--preprocess", "standardize",
                     "--trials", "8", "--max-fine", "0", "--top", "2", "--repeats", "2", "--jobs", "1",
                     "--save", "auto.npz", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["saved"] == "auto.npz"
    final = optuna.load_study(study_name="wine/final", storage="sqlite:///search.db")
    retrained = final.user_attrs["retrained"]
    saved = load_checkpoint("auto.npz")
    assert saved.info["val_acc"] == retrained["val_acc"][0] and saved.info["test_acc"] == retrained["test_acc"][0]
    raw = load_dataset(DataSpec(name=str(wine_csv), label_column="cultivar"))
    np.savez(tmp_path / "test.npz", X=raw.X_test, y=np.array(WINE_CLASSES)[raw.y_test])
    scored = run_cli("predict", "--model", "auto.npz", "--data", "test.npz")
    right = round(retrained["test_acc"][0] * 27)
    assert f"27 samples scored with auto.npz; accuracy {right / 27:.4f} ({right} of 27 labels)" in scored.stderr


def test_best_shows_labels_as_words_and_the_command_that_keeps_the_trial_as_a_model(run_cli, wine_csv):
    coarse = run_cli("coarse", "--data", str(wine_csv), "--label-column", "cultivar", "--trials", "3", "--epochs", "2",
                     "--jobs", "1", "--json")
    assert coarse.exit_code == 0, coarse.output
    best = json.loads(run_cli("best", "--format", "json").stdout)
    table = run_cli("best")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert [line.split(None, 1)[1].strip() for line in lines if line.startswith("diagnosis ")] == [
        ",".join(best["user_attrs"]["diagnosis"])]
    assert "['" not in table.stdout
    keep = f"keep it: search train --from-trial wine/coarse:{best['number']} --save model.npz"
    assert lines[-1] == keep
    rerun = run_cli(*keep.split(": ", 1)[1].split()[1:])
    assert rerun.exit_code == 0, rerun.output
    elsewhere = run_cli("best", "--storage", "sqlite:///search.db").stdout.splitlines()[-1]
    assert elsewhere == keep.replace(" --save", " --storage sqlite:///search.db --save")
    assert load_checkpoint("model.npz").info["val_acc"] == best["user_attrs"]["val_acc"]


def test_plot_and_save_together_name_the_model_file(run_cli, tmp_path):
    result = run_cli("train", "--epochs", "2", "--save", "model.npz", "--plot", "run.png")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == [
        "wrote run.png", "wrote model.npz: the model for `search predict --model model.npz --data FILE`"]
    plot_only = run_cli("train", "--epochs", "2", "--plot", "other.png")
    assert plot_only.exit_code == 0, plot_only.output
    assert plot_only.stdout.splitlines()[-1] == "wrote other.png" and "model" not in plot_only.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "other.png", "run.png"]


def test_the_saved_line_fits_80_columns(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    (tmp_path / "models").mkdir()
    result = run_cli("train", "--epochs", "1", "--save", "models/digits-first.npz")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == [
        "wrote models/digits-first.npz: the model for `search predict --model",
        "    models/digits-first.npz --data FILE`",
    ]


def test_the_model_file_gets_the_usual_permissions(run_cli, tmp_path):
    old = os.umask(0o022)
    try:
        result = run_cli("train", "--epochs", "1", "--hidden", "10", "--save", "model.npz")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(tmp_path / "model.npz").st_mode) == 0o644  # 0666 minus the umask, as open() gives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_saving_to_a_fifo_writes_into_it_and_never_replaces_it(run_cli, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    reader = os.open(tmp_path / "pipe", os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the writer's open() returns
    try:
        result = run_cli("train", "--epochs", "1", "--hidden", "10", "--save", "pipe")
        assert result.exit_code == 0, result.output
        data = os.read(reader, 1 << 20)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe").st_mode)  # like /dev/null: written to, not replaced by a file
    assert data.startswith(b"PK") and sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_saving_to_a_descriptor_by_name_writes_into_it_and_never_replaces_the_name(run_cli, tmp_path):
    # --out /dev/stdout with stdout sent to a file (/dev/stdout -> /proc/self/fd/1 -> that file) replaced the
    # /dev/stdout link by a new file, for every program on the machine, and wrote nothing where stdout went
    for name in ("stdout", "fd"):
        with open(tmp_path / "sink", "wb") as sink:
            link = f"/proc/self/fd/{sink.fileno()}"
            if name == "stdout":
                os.symlink(link, tmp_path / "stdout")  # as /dev/stdout is
            result = run_cli("train", "--epochs", "1", "--hidden", "10", "--save",
                             "stdout" if name == "stdout" else link)
        assert result.exit_code == 0, result.output
        assert len(load_checkpoint(tmp_path / "sink").label_names) == 10  # digits
        assert sorted(p.name for p in tmp_path.iterdir()) == ["sink", "stdout"]
    assert os.readlink(tmp_path / "stdout").startswith("/proc/self/fd/")


def test_saving_to_dev_null_writes_into_it(run_cli, tmp_path):
    # /dev/null seeks and tells 0 whatever was written: the zip's end record came out negative, a struct.error
    # traceback after the training
    result = run_cli("train", "--epochs", "1", "--hidden", "10", "--save", os.devnull)
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode) and sorted(tmp_path.iterdir()) == []


def test_predictions_are_written_whole_or_not_at_all(run_cli, wine_csv, tmp_path, monkeypatch):
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    (tmp_path / "p.csv").write_text("earlier predictions\n")
    real_writer = csv.writer

    class FillingDisk:  # the disk fills up after 20 rows
        def __init__(self, stream, **options):
            self.writer, self.rows = real_writer(stream, **options), 0

        def writerow(self, row):
            self.rows += 1
            if self.rows > 20:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.writer.writerow(row)

    monkeypatch.setattr(csv, "writer", FillingDisk)
    result = run_cli("predict", "--model", "model.npz", "--data", str(wine_csv), "--out", "p.csv")
    assert result.exit_code == 1
    assert result.stderr == "error: cannot write p.csv: No space left on device\n"
    assert (tmp_path / "p.csv").read_text() == "earlier predictions\n"  # not half of the new ones
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "p.csv", "wine.csv"]


@pytest.mark.parametrize("command", [("train", "--epochs", "1"), ("auto", "--trials", "2", "--epochs", "1")])
def test_a_model_is_not_saved_under_the_name_of_another_kind_of_file(run_cli, tmp_path, command):
    # --save flowers.csv, meaning flowers.npz, replaced the table by a model after the training
    (tmp_path / "flowers.csv").write_text("x,label\n1,a\n")
    for name, suffix in (("flowers.csv", ".csv"), ("curves.PNG", ".png"), ("notes.txt", ".txt")):
        assert one_line_error(run_cli(*command, "--save", name)) == (
            f"error: Invalid value for '--save': '{name}': a model is written as a .npz file (a NumPy archive), not "
            f"{suffix}")
    assert (tmp_path / "flowers.csv").read_text() == "x,label\n1,a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flowers.csv"]


def test_an_output_never_overwrites_an_input(run_cli, wine_csv, tmp_path):
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    data, model = wine_csv.read_bytes(), (tmp_path / "model.npz").read_bytes()
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "wine.csv", "--out", "./wine.csv"),
                   "error: --out ./wine.csv is the --data file; write to another file")
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "wine.csv", "--out", "model.npz"),
                   "error: --out model.npz is the --model file; write to another file")
    # new samples scored into the table the model was trained on, which replaced it by 178 rows of predictions
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "wine.csv").write_bytes(data)
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "new/wine.csv", "--out", "wine.csv"),
                   "error: --out wine.csv is the --model's training data file; write to another file")
    assert run_cli("predict", "--model", "model.npz", "--data", "wine.csv", "--out", "new/wine.csv").exit_code == 0
    assert (tmp_path / "new" / "wine.csv").read_text().startswith("row,prediction,label,p_barbera,")
    shutil.rmtree(tmp_path / "new")
    one_line_error(run_cli("train", "--data", "wine.csv", "--label-column", "cultivar", "--save", "wine.csv"),
                   "error: Invalid value for '--save': 'wine.csv': a model is written as a .npz file")
    np.savez(tmp_path / "arrays.npz", X=np.random.default_rng(0).normal(size=(60, 3)), y=np.arange(60) % 2)
    arrays = (tmp_path / "arrays.npz").read_bytes()
    one_line_error(run_cli("auto", "--data", "arrays.npz", "--trials", "2", "--save", "arrays.npz"),
                   "error: --save arrays.npz is the --data file; write to another file")
    assert wine_csv.read_bytes() == data and (tmp_path / "model.npz").read_bytes() == model
    assert (tmp_path / "arrays.npz").read_bytes() == arrays and not (tmp_path / "search.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz", "model.npz", "wine.csv"]


def test_feature_columns_of_the_same_name_are_refused_in_training_and_in_predict(run_cli, wine_csv, tmp_path):
    # once accepted and matched in order: a new file with the two 'a' columns swapped scored 0.52, not 1.0
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 1] > 0).astype(int)  # only the second column named 'a' tells the classes apart
    with open(tmp_path / "dup.csv", "w", newline="") as f:
        csv.writer(f).writerows([["a", "a", "b", " b ", "label"]] + [[*map(str, x), str(t)] for x, t in zip(X, y)])
    for command in ("train", "data"):
        one_line_error(run_cli(command, "--data", "dup.csv"),
                       "/dup.csv: columns 1 and 2 are each named 'a'; columns 3 and 4 are each named 'b': "
                       "rename all but one of each (columns are read by name, and a saved model could not tell "
                       "them apart)")
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    with open(tmp_path / "twice.csv", "w", newline="") as f:
        csv.writer(f).writerows([r + [r[0]] for r in table])
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "twice.csv"),
                   "error: twice.csv: columns 1 and 15 are each named 'alcohol': rename all but one (columns are "
                   "read by name, and a saved model could not tell them apart)")
    with open(tmp_path / "other.csv", "w", newline="") as f:  # a column the model does not read: left out, as before
        csv.writer(f).writerows([r + ["note", "note"] if i == 0 else r + ["x", "y"] for i, r in enumerate(table)])
    assert run_cli("predict", "--model", "model.npz", "--data", "other.csv").exit_code == 0


def test_a_fractional_label_is_no_class_of_an_integer_labelled_model(run_cli, tmp_path):
    train_and_save(run_cli, "spiral")
    np.savez(tmp_path / "new.npz", X=np.zeros((3, 2)), y=np.array([2.5, 1.0, 2.0]))
    result = run_cli("predict", "--model", "model.npz", "--data", "new.npz")
    assert result.exit_code == 0, result.output
    assert [r[2] for r in rows(result.stdout)] == ["label", "2.5", "1", "2"]
    assert "1 label(s) the model has no class for, e.g. '2.5'" in " ".join(result.stderr.split())


def test_samples_of_an_npz_must_be_rows(run_cli, tmp_path):
    train_and_save(run_cli, "spiral")
    np.savez(tmp_path / "scalar.npz", X=np.float32(3))
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "scalar.npz"),
                   "error: scalar.npz: X must be N x D or N x [C x] H x W, got shape ()")
    np.savez(tmp_path / "flat.npz", X_test=np.zeros(4))
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "flat.npz"),
                   "error: flat.npz: X_test must be N x D or N x [C x] H x W, got shape (4,)")
    # once: flattened to 5 rows of 2 features and scored without a word
    np.savez(tmp_path / "cube.npz", X=np.zeros((5, 1, 2)))
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "cube.npz"),
                   "error: cube.npz: X holds samples of 1 x 2 (shape (5, 1, 2)), but the model was trained on rows of "
                   "2 features (N x 2), not images: give X as rows")


def _tamper(source, target, meta=None, drop=(), **arrays):
    """A copy of the model file ``source`` with ``meta`` changes (key: JSON value), the arrays ``drop`` left out
    and arrays replaced or added."""
    with np.load(source) as npz:
        stored = {key: npz[key] for key in npz.files if key not in drop}
    info = json.loads(str(stored["meta"]))
    info.update(meta or {})
    stored.update(meta=np.array(json.dumps(info)), **arrays)
    np.savez(target, **stored)


def _huge_npz(source, target):
    """The model file's arrays plus one whose header declares 8 TiB (and holds no data): a file of a few KiB."""
    import zipfile

    _tamper(source, target)
    with zipfile.ZipFile(target, "a") as zf, zf.open("param.W9.npy", "w") as f:  # named as a model file's array
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})


def _npy_header(shape):
    """The .npy header of a float32 array of ``shape`` (its data to follow)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return out.getvalue()


@pytest.mark.parametrize("name, change, expected", [
    ("list.npz", dict(meta_text="[]"), "(ValueError: meta is a JSON list, not an object)"),
    ("features.npz", dict(meta={"features": 5}), "(ValueError: features must be a list of names, got 5)"),
    ("column.npz", dict(meta={"label_column": 5}), "(ValueError: label_column must be a column name, got 5)"),
    # once: "new.csv: samples of 1 features; the model reads 2", the data blamed for the file's fault
    ("columns.npz", dict(meta={"features": ["a"]}), "(ValueError: features names 1 column, the model reads 2)"),
    # once: the labels read as a feature too, and scored
    ("label.npz", dict(meta={"features": ["a", "b"], "label_column": "b"}),
     "(ValueError: label_column 'b' is one of the features)"),
    ("shape.npz", dict(meta={"image_shape": ["a", 1, 1]}),
     "(ValueError: image_shape ['a', 1, 1] is not C, H, W of the 2 features the model reads)"),
    ("mean.npz", dict(arrays={"pre.mean": np.zeros(1, np.float32)}),
     "(ValueError: pre.mean has shape (1,) float32, the model needs (2,) floats)"),
    ("bn.npz", dict(arrays={"bn_var.1": np.ones(3, np.float32)}),
     "(ValueError: bn_var.1 has shape (3,) float32, the model needs (100,) floats)"),
    ("nan.npz", dict(arrays={"param.W2": np.full((100, 3), np.nan, np.float32)}), "(ValueError: W2 holds NaN or inf)"),
    ("objects.npz", dict(arrays={"param.W2": np.array([None])}),
     "(ValueError: array 'param.W2' holds Python objects (dtype object))"),
    # once: a member of another name was read past when it was an array, and refused by numpy's words when not
    ("extra.npz", dict(arrays={"extra": np.zeros(3)}), "(ValueError: it holds a member 'extra.npy', which no model "
                                                       "file holds)"),
    ("notes.npz", dict(member=("notes.txt", b"hello there")), "(ValueError: it holds a member 'notes.txt', which no "
                                                               "model file holds)"),
    # once: numpy's words alone, naming no member
    ("garbage.npz", dict(member=("param.W3.npy", b"\x93NUMPY garbage")),
     "(its member 'param.W3.npy' cannot be read: ValueError: EOF: reading array header, expected 1633841761 "
     "bytes got 2)"),
    ("replaced.npz", dict(member=("param.W1.npy", b"\x93NUMPY garbage")),
     "(its member 'param.W1.npy' cannot be read: ValueError: EOF: reading array header, expected 1633841761 "
     "bytes got 2)"),
    ("short.npz", dict(member=("param.b2.npy", _npy_header((3,)) + b"xx")),
     "(its member 'param.b2.npy' cannot be read: ValueError: EOF: reading array data, expected 12 bytes got 2)"),
    ("layer.npz", dict(arrays={"param.W3": np.zeros((3, 3), np.float32)}),
     "(ValueError: it holds an array 'param.W3', which the model does not read)"),
    ("array.npz", dict(npy=True), "(BadZipFile: File is not a zip file)"),
    ("nomean.npz", dict(drop=("pre.mean",)), "(ValueError: mean_image preprocessing keeps pre.mean, the file holds "
                                             "no array)"),
    ("scale.npz", dict(arrays={"pre.scale": np.full(2, 1e-3, np.float32)}),
     "(ValueError: mean_image preprocessing keeps pre.mean, the file holds pre.mean and pre.scale)"),
    # once: exit 0, NaN probabilities on every row and an accuracy of whatever class NaN scores give
    ("zero.npz", dict(arrays={"pre.scale": np.array([1.0, 0.0], np.float32)}, preprocess="standardize"),
     "(ValueError: pre.scale holds 0: a feature's scale must be above 0)"),
    ("negative.npz", dict(arrays={"pre.scale": np.array([-2.0, 1.0], np.float32)}, preprocess="standardize"),
     "(ValueError: pre.scale holds -2: a feature's scale must be above 0)"),
    ("infscale.npz", dict(arrays={"pre.scale": np.array([np.inf, 1.0], np.float32)}, preprocess="standardize"),
     "(ValueError: pre.scale holds NaN or inf)"),
    ("classes.npz", dict(meta={"label_names": ["a", "b", "a"]}), "(ValueError: label_names holds 'a' twice)"),
    ("inf.npz", dict(meta={"input_dim": float("inf")}), "(OverflowError: cannot convert float infinity to integer)"),
    ("deep.npz", dict(meta_text="[" * 100_000 + "]" * 100_000),
     "(RecursionError: maximum recursion depth exceeded while decoding a JSON array from a unicode string)"),
])
def test_a_damaged_or_tampered_model_file_is_one_line(run_cli, tmp_path, name, change, expected):
    train_and_save(run_cli, "spiral", "--batchnorm", "--preprocess", change.get("preprocess", "mean_image"))
    if change.get("npy"):
        with open(tmp_path / name, "wb") as f:
            np.save(f, np.zeros(3))
    elif "meta_text" in change:
        with np.load(tmp_path / "model.npz") as npz:
            np.savez(tmp_path / name, **{**{k: npz[k] for k in npz.files}, "meta": np.array(change["meta_text"])})
    else:
        _tamper(tmp_path / "model.npz", tmp_path / name, change.get("meta"), change.get("drop", ()),
                **change.get("arrays", {}))
    if "member" in change:  # added, or a second of a name replacing the first (as np.load reads it)
        import warnings
        import zipfile

        with zipfile.ZipFile(tmp_path / name, "a") as zf, warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
            zf.writestr(*change["member"])
    np.savez(tmp_path / "new.npz", X=np.zeros((4, 2)))
    line = one_line_error(run_cli("predict", "--model", name, "--data", "new.npz"))
    assert line == f"error: {name}: not a model file saved by `search train --save` {expected}", line


def test_a_model_file_too_large_for_memory_is_one_line(run_cli, tmp_path):
    train_and_save(run_cli, "spiral")
    np.savez(tmp_path / "new.npz", X=np.zeros((4, 2)))
    _huge_npz(tmp_path / "model.npz", tmp_path / "huge.npz")  # a zip bomb's effect: terabytes on loading
    one_line_error(run_cli("predict", "--model", "huge.npz", "--data", "new.npz"),
                   "error: huge.npz: its arrays would need 8.0 TiB of memory, more than 50% of the")
    with np.load(tmp_path / "model.npz") as npz:
        meta = json.loads(str(npz["meta"]))
    _tamper(tmp_path / "model.npz", tmp_path / "wide.npz", {"model": {**meta["model"], "hidden": [10**12]}})
    one_line_error(run_cli("predict", "--model", "wide.npz", "--data", "new.npz"),
                   "error: wide.npz: network 2-1000000000000-3: 5,000,000,000,000 weights would need")


def test_an_image_folder_without_class_subfolders_is_not_called_empty(run_cli, tmp_path):
    from PIL import Image

    (tmp_path / "flat").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / "flat" / f"{i}.png")
    problem = ("3 images but no class subfolders; expected one subfolder per class holding PNG or JPEG images (its "
               "name is the images' label)")
    assert one_line_error(run_cli("train", "--data", "flat")) == f"error: {tmp_path / 'flat'}: {problem}"
    (tmp_path / "empty").mkdir()
    assert one_line_error(run_cli("train", "--data", "empty")) == (
        f"error: {tmp_path / 'empty'}: empty folder; expected one subfolder per class holding PNG or JPEG images")


def test_images_beside_the_class_subfolders_are_refused_not_left_out(run_cli, tmp_path):
    # a loose image beside the class folders was neither trained on nor scored, and nothing said so
    from PIL import Image

    dark_and_light(tmp_path / "images", 12)
    train_and_save(run_cli, "images", "--batch-size", "4")
    for i in range(2):
        Image.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / "images" / f"new{i}.png")
    problem = ("2 images beside the class subfolders (new0.png, ...), which no class names; move each into its "
               "class's subfolder, or out of the folder")
    for command in (("train", "--data", "images", "--batch-size", "4"), ("data", "--data", "images"),
                    ("predict", "--model", "model.npz", "--data", "images", "--out", "p.csv")):
        line = one_line_error(run_cli(*command))  # predict names the folder as given, training by its whole path
        assert line in (f"error: {tmp_path / 'images'}: {problem}", f"error: images: {problem}")
    assert not (tmp_path / "p.csv").exists()


def test_a_colour_model_reads_grey_images_as_training_did(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    dark_and_light(tmp_path / "colour", 30, (6, 5, 3), rng)
    dark_and_light(tmp_path / "grey", 5, (6, 5), rng)
    train_and_save(run_cli, "colour", "--batch-size", "10")
    assert load_checkpoint("model.npz").image_shape == (3, 6, 5)
    result = run_cli("predict", "--model", "model.npz", "--data", "grey")  # as three equal channels
    assert result.exit_code == 0, result.output
    assert " ".join(result.stderr.split("recall per class")[0].split()) == (
        "10 samples scored with model.npz; accuracy 1.0000 (10 of 10 labels), balanced accuracy 1.0000")
    train_and_save(run_cli, "grey", "--batch-size", "2")  # a grey model never saw colour: refused, not made grey
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "colour"),
                   "error: colour: images with 3 channel(s); the model reads 1")


def test_rows_with_an_empty_label_cell_are_scored_unlabelled(run_cli, wine_csv, tmp_path):
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar", "--preprocess", "standardize")
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    label = table[0].index("cultivar")
    for blank, name in ((range(1, 11), "some.csv"), (range(1, len(table)), "none.csv")):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows([r[:label] + [" " if i in blank else r[label]] + r[label + 1:]
                                     for i, r in enumerate(table)])
    full = run_cli("predict", "--model", "model.npz", "--data", str(wine_csv))
    some = run_cli("predict", "--model", "model.npz", "--data", "some.csv")
    none = run_cli("predict", "--model", "model.npz", "--data", "none.csv")
    assert full.exit_code == some.exit_code == none.exit_code == 0, (some.output, none.output)
    full_rows, some_rows = rows(full.stdout), rows(some.stdout)
    assert [r[2] for r in some_rows[1:11]] == [""] * 10 and some_rows[11:] == full_rows[11:]
    right = sum(r[1] == r[2] for r in full_rows[11:])
    balanced = balanced_accuracy_score([r[2] for r in full_rows[11:]], [r[1] for r in full_rows[11:]])
    assert " ".join(some.stderr.split("recall per class")[0].split()) == (
        f"178 samples scored with model.npz; accuracy {right / 168:.4f} ({right} of 168 labels), balanced accuracy "
        f"{balanced:.4f}")
    assert rows(none.stdout)[0] == ["row", "prediction", "p_barbera", "p_barolo", "p_grignolino"]
    assert none.stderr == "178 samples scored with model.npz\n"


def test_a_label_cell_written_as_a_missing_value_is_not_counted_as_an_empty_one_is(run_cli, wine_csv, tmp_path):
    # NA and (labels being numbers) nan were labels the model has no class for: scored wrong and counted, where
    # training with --missing drops such rows and an empty cell is not counted
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    label = table[0].index("cultivar")
    number = {"barolo": "0", "grignolino": "1", "barbera": "2"}
    cells = ["cultivar"] + [number[r[label]] for r in table[1:]]
    with open(tmp_path / "full.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[:label] + [c] + r[label + 1:] for r, c in zip(table, cells)])
    cells[1:21] = [""] * 5 + ["nan"] * 5 + ["NA", " n/a", "?", "NaN"] + ["7"] * 6
    with open(tmp_path / "some.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[:label] + [c] + r[label + 1:] for r, c in zip(table, cells)])
    train_and_save(run_cli, "full.csv", "--label-column", "cultivar")
    full = run_cli("predict", "--model", "model.npz", "--data", "full.csv")
    some = run_cli("predict", "--model", "model.npz", "--data", "some.csv")
    assert full.exit_code == some.exit_code == 0, some.output
    assert [r[2] for r in rows(some.stdout)[1:21]] == [""] * 14 + ["7"] * 6
    right = sum(r[1] == r[2] for r in rows(full.stdout)[21:])
    # balanced: the mean recall of the four labelled classes, '7' (which the model lacks) at 0, as scikit-learn's
    scored = rows(some.stdout)[15:]
    balanced = balanced_accuracy_score([r[2] for r in scored], [r[1] for r in scored])
    assert " ".join(some.stderr.split("recall per class")[0].split()) == (
        f"178 samples scored with model.npz; accuracy {right / 164:.4f} ({right} of 164 labels), balanced accuracy "
        f"{balanced:.4f}; 1 label(s) the model has no class for, e.g. '7' (6 rows, scored wrong)")
    out = json.loads(run_cli("predict", "--model", "model.npz", "--data", "some.csv", "--json").stdout)
    assert (out["labels"], out["unknown_labels"], out["accuracy"]) == (164, ["7"], right / 164)
    assert out["balanced_accuracy"] == pytest.approx(balanced, rel=1e-12)


def test_a_model_path_that_is_no_regular_file_is_refused_unread(run_cli, tmp_path):
    import resource

    train_and_save(run_cli, "spiral")
    np.savez(tmp_path / "new.npz", X=np.zeros((4, 2)))
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + (2 << 30), hard))  # a read of /dev/zero to its end fails soon
    try:
        result = run_cli("predict", "--model", "/dev/zero", "--data", "new.npz")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert one_line_error(result) == "error: /dev/zero is not a regular file"


def test_train_json_says_when_the_model_was_not_saved(run_cli, tmp_path):
    result = run_cli("train", "--lr", "5", "--epochs", "3", "--save", "model.npz", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["stop_reason"] == "exploded" and out["saved"] is None  # as search auto --json gives it
    assert "saved" not in json.loads(run_cli("train", "--epochs", "1", "--json").stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_save_gives_the_same_one_line_for_a_bad_table_as_training_alone(run_cli, tmp_path):
    # --save reads the table's header first (the columns the model reads): it must refuse as training would
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "latin.csv").write_bytes("a,b,caf\xe9\n1,2,3\n".encode("latin-1"))
    with open(tmp_path / "semi.csv", "w") as f:
        f.write("a;b;species\n" + "".join(f"{i % 7};{i % 5};{i % 3}\n" for i in range(60)))
    for data, options in (("empty.csv", []), ("latin.csv", []), ("semi.csv", ["--label-column", "species"])):
        alone = one_line_error(run_cli("train", "--data", data, *options, "--epochs", "1"))
        assert one_line_error(run_cli("train", "--data", data, *options, "--epochs", "1", "--save", "m.npz")) == alone
    assert alone == (f"error: {tmp_path / 'semi.csv'}: the header is one column, but it holds ';': a .csv file is read "
                     f"as comma-separated; save it separated by commas")
    assert not (tmp_path / "m.npz").exists()


def test_a_plot_never_overwrites_the_data_or_the_model(run_cli, tmp_path):
    # --plot DATA replaced the training data with a PNG (and --plot beside --save, the saved model)
    np.savez(tmp_path / "arrays.npz", X=np.random.default_rng(0).normal(size=(60, 3)), y=np.arange(60) % 2)
    arrays = (tmp_path / "arrays.npz").read_bytes()
    one_line_error(run_cli("train", "--data", "arrays.npz", "--batch-size", "8", "--epochs", "1", "--plot",
                           "./arrays.npz"),  # no data file is named as a plot is
                   "error: Invalid value for '--plot': './arrays.npz': a plot is written as .png, .pdf or .svg, by "
                   "the file's suffix")
    assert (tmp_path / "arrays.npz").read_bytes() == arrays
    one_line_error(run_cli("train", "--data", "arrays.npz", "--batch-size", "8", "--epochs", "1", "--save", "m.png",
                           "--plot", "m.png"),
                   "error: Invalid value for '--save': 'm.png': a model is written as a .npz file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz"]


def test_a_plot_or_model_never_overwrites_the_study_database(run_cli, tmp_path):
    # search explain --plot search.db wrote its PNG over the database of every stage, exit 0
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--jobs", "1").exit_code == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "search.db")) as db:  # the WAL's pages into the file now, not
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # when a later reader closes it (the bytes compared below)
    database = (tmp_path / "search.db").read_bytes()
    commands = [("explain", "digits/coarse:0", "--plot", "./search.db"),
                ("train", "--from-trial", "digits/coarse:0", "--plot", "search.db"),
                ("train", "--from-trial", "digits/coarse:0", "--save", "search.db"),
                ("auto", "--trials", "2", "--epochs", "1", "--max-fine", "0", "--save", "search.db"),
                # a run of its own, which reads no database, wrote over it too
                ("train", "--epochs", "1", "--save", "search.db"), ("train", "--epochs", "1", "--plot", "search.db"),
                ("layers", "--plot", "search.db")]
    for command in commands:
        option, path = command[-2:]
        assert one_line_error(run_cli(*command)) == (
            f"error: Invalid value for '--plot': '{path}': a plot is written as .png, .pdf or .svg, by the file's "
            f"suffix" if option == "--plot" else f"error: {option} {path} is the --storage file; write to another file")
    # nor the files SQLite keeps beside it (a model written over the log of a running stage's database)
    for name in ("search.db-wal", "search.db-shm", "search.db-journal"):
        assert one_line_error(run_cli("train", "--epochs", "1", "--save", name)) == (
            f"error: --save {name} is a file SQLite keeps beside the --storage file search.db; write to another file")
    assert (tmp_path / "search.db").read_bytes() == database
    assert {p.name for p in tmp_path.iterdir()} <= {"search.db", "search.db-wal", "search.db-shm"}  # no model, no plot
    # the same file named by --storage
    (tmp_path / "runs").mkdir()
    (tmp_path / "search.db").rename(tmp_path / "runs" / "s.db")
    one_line_error(run_cli("train", "--from-trial", "digits/coarse:0", "--storage", "sqlite:///runs/s.db", "--save",
                           "runs/s.db"), "error: --save runs/s.db is the --storage file; write to another file")
    assert (tmp_path / "runs" / "s.db").read_bytes() == database


def test_predictions_never_overwrite_the_study_database(run_cli, tmp_path, monkeypatch):
    # search predict --out search.db wrote its CSV over the database of every stage, exit 0
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--jobs", "1").exit_code == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "search.db")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database = (tmp_path / "search.db").read_bytes()
    train_and_save(run_cli, "spiral")
    np.savez(tmp_path / "new.npz", X=np.zeros((4, 2)))
    for name in ("search.db", "./search.db", "search.db-wal"):
        refused = one_line_error(run_cli("predict", "--model", "model.npz", "--data", "new.npz", "--out", name))
        assert refused == (f"error: --out {name} is the study database file; write to another file" if "wal" not in
                           name else f"error: --out {name} is a file SQLite keeps beside the study database file "
                           f"search.db; write to another file")
    # the database $SEARCH_STORAGE names
    (tmp_path / "runs").mkdir()
    (tmp_path / "search.db").rename(tmp_path / "runs" / "s.db")
    monkeypatch.setenv("SEARCH_STORAGE", "sqlite:///runs/s.db")
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "new.npz", "--out", "runs/s.db"),
                   "error: --out runs/s.db is the study database file; write to another file")
    assert (tmp_path / "runs" / "s.db").read_bytes() == database
    assert {p.name for p in tmp_path.iterdir()} <= {"model.npz", "new.npz", "runs", "search.db-wal", "search.db-shm"}


def test_a_folder_removed_before_the_model_is_written_is_one_line_and_exit_1(run_cli, tmp_path, monkeypatch):
    import shutil

    import search.cli.run as run

    (tmp_path / "out").mkdir()
    real = run.save_model

    def folder_gone(*args, **kwargs):  # the folder removed while the run trained
        shutil.rmtree(tmp_path / "out")
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "save_model", folder_gone)
    result = run_cli("train", "--epochs", "1", "--hidden", "10", "--save", "out/model.npz")
    assert result.exit_code == 1
    assert result.stderr == "error: cannot write out/model.npz: No such file or directory\n"


def test_predictions_to_a_json_or_other_non_csv_file_are_refused(run_cli, wine_csv, tmp_path):
    # --out p.json wrote comma-separated rows into p.json, which json.load then refused
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    refused = run_cli("predict", "--model", "model.npz", "--data", str(wine_csv), "--out", "p.json")
    assert one_line_error(refused) == ("error: --out p.json: predictions are written as .csv or .tsv, not .json; "
                                       "--json without --out prints them as JSON")
    parquet = run_cli("predict", "--model", "model.npz", "--data", str(wine_csv), "--out", "p.parquet")
    assert one_line_error(parquet) == "error: --out p.parquet: predictions are written as .csv or .tsv, not .parquet"
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "p.parquet").exists()
    assert run_cli("predict", "--model", "model.npz", "--data", str(wine_csv), "--out", "p.txt").exit_code == 0
    assert (tmp_path / "p.txt").read_text().splitlines()[0] == "row,prediction,label,p_barbera,p_barolo,p_grignolino"


def test_labels_none_of_which_is_a_class_of_the_model_give_no_accuracy(run_cli, wine_csv, tmp_path):
    # integer labels against a model of named classes scored "accuracy 0.0000 (0 of 5 labels)", as if it had
    # predicted them all wrong
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    X, _ = wine_rows(wine_csv, 5)
    np.savez(tmp_path / "numbered.npz", X=X, y=np.array([0, 1, 2, 0, 1]))
    result = run_cli("predict", "--model", "model.npz", "--data", "numbered.npz", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["accuracy"] is None and out["labels"] == 5 and out["unknown_labels"] == ["0", "1", "2"]
    assert " ".join(run_cli("predict", "--model", "model.npz", "--data", "numbered.npz").stderr.split()) == (
        "5 samples scored with model.npz; no accuracy: none of its 5 labels is a class of the model (it has "
        "'barbera', 'barolo', 'grignolino'; the file has '0', '1', '2')")


def test_predict_help_names_both_commands_that_save_a_model(run_cli):
    # --model named search train --save alone, though search auto --save writes the same file
    shown = " ".join(run_cli("predict", "--help").stdout.split())
    assert shown.split("--model FILE.npz ")[1].split(" --data")[0] == (
        "A model saved by `search train --save` or `search auto --save`. [required]")


def test_predict_help_lists_what_it_scores_first_under_data(run_cli):
    # the required --model and --data came last, under "Options", after --json under "Execution"
    lines = run_cli("predict", "--help").stdout.splitlines()
    sections = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert sections[-3:] == ["Data:", "Execution:", "Options:"]
    data = lines[lines.index("Data:") + 1:lines.index("Execution:")]
    assert [line.split()[0] for line in data if line.startswith("  --")] == ["--model", "--data", "--id-column"]


def test_a_column_named_in_other_case_is_said_to_be_matched_exactly(run_cli, wine_csv, tmp_path):
    # "no column 'proline'" alone, beside a column 'Proline' the user could see in the file
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    text = wine_csv.read_text().split("\n", 1)
    (tmp_path / "cased.csv").write_text(text[0].replace("proline", "Proline").replace("alcohol", "ALCOHOL") + "\n"
                                        + text[1])
    line = one_line_error(run_cli("predict", "--model", "model.npz", "--data", "cased.csv"))
    assert line == ("error: cased.csv: no column 'alcohol', 'proline'; the model reads 13 columns by name ('alcohol', "
                    "'malic_acid', 'ash', 'alcalinity_of_ash', 'magnesium', ...); names are matched exactly, in case "
                    "too: 'ALCOHOL' is not 'alcohol', 'Proline' is not 'proline'")


def test_out_dash_is_stdout(run_cli, wine_csv, tmp_path):
    # it wrote a file named "-" and said "wrote -"
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    dash = run_cli("predict", "--model", "model.npz", "--data", str(wine_csv), "--out", "-")
    plain = run_cli("predict", "--model", "model.npz", "--data", str(wine_csv))
    assert dash.exit_code == plain.exit_code == 0, dash.output
    assert dash.stdout == plain.stdout and len(rows(dash.stdout)) == 179  # a header and 178 samples
    assert not (tmp_path / "-").exists()


def test_an_empty_npz_label_is_unlabelled_as_an_empty_csv_cell(run_cli, wine_csv, tmp_path):
    # "" in an npz's y was a label the model has no class for, scored wrong ("accuracy 0.0000 (0 of 3 labels)")
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    X, labels = wine_rows(wine_csv, 3)
    np.savez(tmp_path / "none.npz", X=X, y=np.array(["", "", ""]))
    np.savez(tmp_path / "some.npz", X=X, y=np.array([labels[0], "", ""]))
    none = json.loads(run_cli("predict", "--model", "model.npz", "--data", "none.npz", "--json").stdout)
    assert (none["accuracy"], none["labels"]) == (None, 0) and "label" not in none["rows"][0]
    some = json.loads(run_cli("predict", "--model", "model.npz", "--data", "some.npz", "--json").stdout)
    assert some["labels"] == 1 and some["unknown_labels"] == [] and some["accuracy"] in (0.0, 1.0)


def test_the_training_range_in_json_is_written_as_the_values_print(run_cli, wine_csv):
    # search predict --json on wine wrote "train_min": 11.619999885559082, a float32 widened, for 11.62
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    raw = load_dataset(DataSpec(name=str(wine_csv), label_column="cultivar"))
    out = json.loads(run_cli("predict", "--model", "model.npz", "--data", str(wine_csv), "--json").stdout)
    shown = out["outside_training_range"]
    assert shown["feature"] == 0 and raw.X_train.dtype == np.float32
    assert (shown["train_min"], shown["train_max"]) == (float(str(raw.X_train[:, 0].min())),
                                                        float(str(raw.X_train[:, 0].max())))
    assert len(repr(shown["train_min"])) <= 8, shown


def test_samples_far_outside_the_training_range_are_warned_of(run_cli, tmp_path, monkeypatch):
    # once: the built-in digits' model (pixels scaled to [0, 1]) scored raw load_digits (0..16) 0.89 without a word
    monkeypatch.setenv("COLUMNS", "400")
    from sklearn.datasets import load_digits

    train_and_save(run_cli, "digits")
    digits = load_digits()
    np.savez(tmp_path / "raw.npz", X=digits.data, y=digits.target)
    np.savez(tmp_path / "scaled.npz", X=digits.data / 16, y=digits.target)
    raw = run_cli("predict", "--model", "model.npz", "--data", "raw.npz", "--out", "p.csv")
    assert raw.exit_code == 0, raw.output
    warning = ("warning: 50.1% of the values (54904 in 61 of 64 features) lie far outside the training split's range "
               "(by half its width or more), e.g. feature 11: 0 to 1 in training, 0 to 16 here; predictions are "
               "unreliable unless these samples are scaled and encoded as the training data was")
    assert raw.stderr.splitlines()[0] == warning
    out = json.loads(run_cli("predict", "--model", "model.npz", "--data", "raw.npz", "--json").stdout)
    assert out["warnings"] == [warning.removeprefix("warning: ")]
    assert out["outside_training_range"] == {"values": 54904, "share": 54904 / (1797 * 61), "features": 61,
                                             "feature": 11, "train_min": 0.0, "train_max": 1.0, "min": 0.0,
                                             "max": 16.0}
    scaled = run_cli("predict", "--model", "model.npz", "--data", "scaled.npz", "--json")
    assert "warning" not in scaled.stderr
    assert json.loads(scaled.stdout)["warnings"] == [] and json.loads(scaled.stdout)["outside_training_range"][
        "values"] == 0
    # a model file saved before the range was kept loads, with nothing to judge by
    _tamper(tmp_path / "model.npz", tmp_path / "old.npz", drop=("range.min", "range.max"))
    old = json.loads(run_cli("predict", "--model", "old.npz", "--data", "raw.npz", "--json").stdout)
    assert old["outside_training_range"] is None and old["warnings"] == [] and old["accuracy"] == out["accuracy"]
    _tamper(tmp_path / "model.npz", tmp_path / "upside.npz", **{"range.min": np.ones(64, np.float32)})
    one_line_error(run_cli("predict", "--model", "upside.npz", "--data", "raw.npz"),
                   "(ValueError: range.min is above range.max)")
    one_line_error(run_cli("predict", "--model", "model.npz", "--data", "digits"),
                   "error: Invalid value for '--data': 'digits' is a built-in data set, read by search train and auto; "
                   "search predict scores a file: write the samples to a .npz of X and y, a .csv/.tsv or an image "
                   "folder (digits: scikit-learn's load_digits() X divided by 16, as training read it)")


def test_predictions_piped_into_a_reader_that_left_end_quietly_with_0(run_cli, wine_csv, tmp_path):
    # `search predict ... | head -3` ended "error: cannot write the output: Broken pipe", exit 1, when head left first
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    for extra in ((), ("--json",), ("--out", "p.csv", "--json")):
        read, write = os.pipe()
        os.close(read)  # every write fails with EPIPE, as once head has its lines
        try:
            result = subprocess.run([sys.executable, "-m", "search", "predict", "--model", "model.npz", "--data",
                                     "wine.csv", *extra], env=env, stdout=write, stderr=subprocess.PIPE, text=True,
                                    timeout=120, cwd=tmp_path)
        finally:
            os.close(write)
        said = "" if extra else "178 samples scored with model.npz; accuracy 0.9944 (177 of 178 labels), balanced " \
            "accuracy 0.9953"
        assert (result.returncode, " ".join(result.stderr.split())) == (0, said), extra  # --json: the summary in it
    assert len(rows((tmp_path / "p.csv").read_text())) == 179  # written whole before the JSON was printed


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_values_that_overflow_the_network_are_refused_naming_the_rows(run_cli, wine_csv, tmp_path, loss):
    # once: 3e38 (a float32, far beyond training's 11 to 15) made NaN scores, written as class barbera with NaN
    # probabilities (NaN in --json, which is not JSON), exit 0, after numpy's overflow warnings
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar", "--loss", loss)
    with open(wine_csv) as f:
        table = list(csv.reader(f))[:5]
    assert table[0][11] == "hue"
    table[2][0], table[4][11] = "3e38", "-3.3e38"
    with open(tmp_path / "new.csv", "w", newline="") as f:
        csv.writer(f).writerows(table)
    for extra in ([], ["--json"], ["--out", "p.csv"]):
        result = run_cli("predict", "--model", "model.npz", "--data", "new.csv", *extra)
        line = one_line_error(result)
        assert line == ("error: new.csv: 2 of 4 samples (rows 1, 3) overflow the network, scores beyond float32 "
                        "(no class can be told): values far beyond the training split's range, e.g. -3.3e+38 in "
                        "column hue of row 3; scale them as the training data was"), line
        assert result.stdout == ""
    assert not (tmp_path / "p.csv").exists()
    del table[2], table[3]
    with open(tmp_path / "new.csv", "w", newline="") as f:
        csv.writer(f).writerows(table)
    assert run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--out", "p.csv").exit_code == 0
    assert len(rows((tmp_path / "p.csv").read_text())) == 3


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_feature_spanning_the_whole_float32_range_is_trained_on_and_judged_without_overflow(run_cli, tmp_path):
    # once: its width (3e38 - -3e38) overflowed float32 in the id-column check and the range check of search predict,
    # numpy's overflow warnings on stderr
    rng = np.random.default_rng(0)
    lines = ["a,b,label"] + [f"{x:.3f},{i % 5},{i % 2}" for i, x in enumerate(rng.normal(size=40))]
    lines[1:3] = ["3e38,0.5,0", "-3e38,0.5,1"]
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    train = run_cli("train", "--data", "wide.csv", "--epochs", "1", "--batch-size", "10", "--save", "model.npz")
    assert train.exit_code == 0, train.output
    assert "overflow" not in train.output
    (tmp_path / "new.csv").write_text("a,b\n1e38,0.5\n0.5,30\n")
    result = run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outside_training_range"] == {
        "values": 1, "share": 0.25, "features": 1, "feature": 1, "train_min": 0.0, "train_max": 4.0,
        "min": 0.5, "max": 30.0}


def test_class_probabilities_beyond_the_memory_budget_are_refused_before_any_row(run_cli, tmp_path, monkeypatch):
    # once: numpy's MemoryError as a traceback (10,000 classes of 30,000 rows wanted 2.2 GiB)
    import engine.formats

    rng = np.random.default_rng(0)
    lines = ["a,b,label"] + [f"{rng.normal():.3f},{rng.normal():.3f},c{i % 60}" for i in range(180)]
    (tmp_path / "many.csv").write_text("\n".join(lines) + "\n")
    train = run_cli("train", "--data", "many.csv", "--epochs", "1", "--batch-size", "20", "--save", "model.npz")
    assert train.exit_code == 0, train.output
    (tmp_path / "new.csv").write_text("a,b\n" + "0.5,0.5\n" * 2000)
    monkeypatch.setattr(engine.formats, "available_memory", lambda: 1 << 20)
    for extra in ([], ["--out", "p.csv", "--json"], ["--out", "p.csv"]):
        line = one_line_error(run_cli("predict", "--model", "model.npz", "--data", "new.csv", *extra))
        assert line == ("error: new.csv: the class probabilities of 2000 samples for 60 classes would need 937.5 KiB "
                        "of memory, more than 50% of the 1.0 MiB available"), line
    assert not (tmp_path / "p.csv").exists()
    (tmp_path / "new.csv").write_text("a,b\n" + "0.5,0.5\n" * 1000)
    assert run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--out", "p.csv").exit_code == 0
    # printed as JSON, a row at a time: as Python dicts, then indented text, they were held whole, 30 times the array
    result = run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout == json.dumps(json.loads(result.stdout), indent=2) + "\n"  # as one json.dumps wrote it
    assert len(json.loads(result.stdout)["rows"]) == 1000
    assert run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--out", "p.csv", "--json").exit_code == 0


def test_integers_that_merge_as_float32_are_named_in_a_warning_of_predict_as_of_training(run_cli, wine_csv, tmp_path):
    # training named them; predict scored them without a word
    merged = ("values up to 16777221 are beyond the integers float32 holds exactly (2^24 = 16777216), the dtype "
              "trained on: its 6 distinct values become 3; subtract an offset or rescale them before saving")
    train_and_save(run_cli, "spiral")
    X = np.stack([2**24 + np.arange(6), np.arange(6) % 3], axis=1)
    np.savez(tmp_path / "ids.npz", X=X)
    np.savez(tmp_path / "scored.npz", X=X.astype(np.float32))  # as they are scored
    result = run_cli("predict", "--model", "model.npz", "--data", "ids.npz", "--json")
    assert result.exit_code == 0, result.output
    out, scored = json.loads(result.stdout), json.loads(run_cli("predict", "--model", "model.npz", "--data",
                                                                "scored.npz", "--json").stdout)
    assert out["warnings"][0] == f"X feature 0 (counting from 0): {merged}"
    assert out["warnings"][1:] == scored["warnings"] and out["rows"] == scored["rows"]
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    table = rows(wine_csv.read_text())[:7]
    column = table[0].index("magnesium")
    scored_values = [2**24, 2**24, 2**24 + 2] + [2**24 + 4] * 3  # 2**24 + 0..5 as float32
    for name, values in (("ids.csv", 2**24 + np.arange(6)), ("scored.csv", scored_values)):
        for row, value in zip(table[1:], values):
            row[column] = str(value)
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows(table)
    result = run_cli("predict", "--model", "model.npz", "--data", "ids.csv")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: column 'magnesium': values up to 16777221 are beyond the integers")
    assert result.stdout == run_cli("predict", "--model", "model.npz", "--data", "scored.csv").stdout
    out = json.loads(run_cli("predict", "--model", "model.npz", "--data", "ids.csv", "--json").stdout)
    assert out["warnings"][0] == f"column 'magnesium': {merged}"


def test_probabilities_are_written_a_row_at_a_time_with_the_same_bytes(run_cli, wine_csv, tmp_path):
    # a CSV of 10,000 classes x 30,000 rows took 2 min 20 s: f"{p:.4f}" of each probability, a Python call a value
    from engine.checkpoint import class_probabilities

    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    with open(wine_csv) as f:
        table = list(csv.reader(f))
    ids = [f'W,{k}"' for k in range(len(table) - 1)]  # cells csv quotes
    with open(tmp_path / "new.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id"] + table[0]] + [[i] + r for i, r in zip(ids, table[1:])])
    X, labels = wine_rows(wine_csv, len(table) - 1)
    saved = load_checkpoint(tmp_path / "model.npz")
    probs = class_probabilities(saved.model, saved.preprocessor.transform(X))
    for out, separator in (("p.csv", ","), ("p.tsv", "\t")):
        calls = []

        def count(frame, event, arg):
            if event == "call" and frame.f_code.co_filename.endswith(os.path.join("search", "cli", "run.py")):
                calls.append(frame.f_code.co_name)

        sys.setprofile(count)
        try:
            result = run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--id-column", "id",
                             "--out", out)
        finally:
            sys.setprofile(None)
        assert result.exit_code == 0, result.output
        # a few Python calls a row (its cells, its label counted), none a probability: 3 a row alone reach the bound
        assert len(calls) < 3 * len(X), collections.Counter(calls)
        expected = io.StringIO()
        writer = csv.writer(expected, delimiter=separator, lineterminator="\n")
        writer.writerow(["row", "id", "prediction", "label", *(f"p_{n}" for n in WINE_CLASSES)])
        writer.writerows([k, i, WINE_CLASSES[p.argmax()], label, *(f"{v:.4f}" for v in p)]
                         for k, (i, label, p) in enumerate(zip(ids, labels, probs)))
        assert (tmp_path / out).read_text() == expected.getvalue()


def test_an_id_cell_holding_a_line_break_is_quoted_in_the_predictions(run_cli, wine_csv, tmp_path):
    # a row's cells were written with no line terminator, so csv did not quote a cell holding one: "a\nb" split the
    # row in two lines, and the file read back had more rows than samples; a "\r" was left unquoted after that
    train_and_save(run_cli, str(wine_csv), "--label-column", "cultivar")
    with open(wine_csv) as f:
        table = list(csv.reader(f))[:5]
    ids = ["first\nline", "two\n\nbreaks", "carriage\rreturn", "plain"]
    with open(tmp_path / "new.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id"] + table[0]] + [[i] + r for i, r in zip(ids, table[1:])])
    for out, separator in (("p.csv", ","), ("p.tsv", "\t")):
        result = run_cli("predict", "--model", "model.npz", "--data", "new.csv", "--id-column", "id", "--out", out)
        assert result.exit_code == 0, result.output
        with open(tmp_path / out, newline="") as f:
            written = list(csv.reader(f, delimiter=separator))
        assert [r[1] for r in written] == ["id", *ids] and {len(r) for r in written} == {4 + len(WINE_CLASSES)}


def test_an_overflow_names_the_column_largest_once_preprocessed_not_the_largest_raw_value(run_cli, tmp_path):
    # standardize divides a by its std of 1e30 and b by 1e-3: a's raw 1e38 becomes 1e8, b's 3e37 is 3e40, past
    # float32; the error named a, the largest raw value, as the column to scale
    rng = np.random.default_rng(0)
    lines = ["a,b,label"] + [f"{rng.normal() * 1e30:.6g},{rng.normal() * 1e-3:.6g},{k % 2}" for k in range(300)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    assert run_cli("train", "--data", "train.csv", "--epochs", "1", "--save", "model.npz").exit_code == 0
    saved = load_checkpoint(tmp_path / "model.npz")
    assert saved.preprocessor.name == "standardize"
    (tmp_path / "new.csv").write_text("a,b\n1e30,0.001\n1e38,3e37\n")
    line = one_line_error(run_cli("predict", "--model", "model.npz", "--data", "new.csv"))
    assert line == ("error: new.csv: 1 of 2 samples (row 1) overflows the network, scores beyond float32 (no class "
                    "can be told): values far beyond the training split's range, e.g. 3e+37 in column b of row 1; "
                    "scale them as the training data was"), line
    magnitudes = saved.preprocessor.input_magnitudes(np.array([[1e38, 3e37]]))
    assert magnitudes[0, 1] / magnitudes[0, 0] > 1e30  # b's 3e40 against a's about 1e8


def test_samples_all_predicted_one_class_are_warned_of(run_cli, tmp_path):
    # a network of search auto that calls every one of 220 images a circle (64 % of them) scored them at accuracy
    # 0.6364 with no word that it never predicts a square or a cross
    import shutil

    dark_and_light(tmp_path / "imgs", 30)
    train_and_save(run_cli, "imgs", "--batch-size", "10")
    said = run_cli("predict", "--model", "model.npz", "--data", "imgs").stderr.split("recall per class")[0]
    assert " ".join(said.split()) == (
        "60 samples scored with model.npz; accuracy 1.0000 (60 of 60 labels), balanced accuracy 1.0000")
    shutil.copytree(tmp_path / "imgs" / "dark", tmp_path / "mislabelled" / "dark")
    shutil.copytree(tmp_path / "imgs" / "dark", tmp_path / "mislabelled" / "light")  # dark images labelled light
    labelled = run_cli("predict", "--model", "model.npz", "--data", "mislabelled", "--json", "--out", "p.csv")
    assert labelled.exit_code == 0 and json.loads(labelled.stdout)["warnings"] == [
        "all 60 samples are predicted 'dark', none the model's 1 other class, where the labels name several: the "
        "network has learned nothing but the class frequencies"], labelled.output
    unlabelled = run_cli("predict", "--model", "model.npz", "--data", str(tmp_path / "imgs" / "dark"), "--out", "p.csv")
    assert unlabelled.exit_code == 0 and " ".join(unlabelled.stderr.split()) == (
        "warning: all 30 samples are predicted 'dark', none the model's 1 other class: the network has learned nothing "
        "but the class frequencies, or these samples are all of one class 30 samples scored with model.npz; wrote "
        "p.csv"), unlabelled.output
    shutil.rmtree(tmp_path / "mislabelled" / "light")  # labels of one class, all predicted right
    said = run_cli("predict", "--model", "model.npz", "--data", "mislabelled").stderr.split("recall per class")[0]
    assert " ".join(said.split()) == (
        "30 samples scored with model.npz; accuracy 1.0000 (30 of 30 labels), balanced accuracy 1.0000")
    for name in sorted((tmp_path / "imgs" / "dark").iterdir())[19:]:  # 19 samples: too few to tell
        name.unlink()
    assert run_cli("predict", "--model", "model.npz", "--data", str(tmp_path / "imgs" / "dark"),
                   "--out", "p.csv").stderr == "19 samples scored with model.npz; wrote p.csv\n"


def test_a_file_written_over_keeps_its_permissions(run_cli, tmp_path, wine_csv):
    # a model, predictions or plot replaced through a temporary file was made 0644 (0666 minus the umask): a file
    # its owner kept private (0600) became readable by every user of the machine
    old = os.umask(0o022)
    try:
        for name in ("m.npz", "p.csv", "curves.png"):
            (tmp_path / name).write_text("private\n")
            (tmp_path / name).chmod(0o600)
        (tmp_path / "g.csv").write_text("shared\n")
        (tmp_path / "g.csv").chmod(0o664)
        assert run_cli("train", "--data", str(wine_csv), "--label-column", "cultivar", "--epochs", "1", "--save",
                       "m.npz", "--plot", "curves.png").exit_code == 0
        for out in ("p.csv", "g.csv"):
            assert run_cli("predict", "--model", "m.npz", "--data", str(wine_csv), "--out", out).exit_code == 0
        (tmp_path / "new.csv").symlink_to(tmp_path / "g.csv")  # a link is replaced by a file of its own
        assert run_cli("predict", "--model", "m.npz", "--data", str(wine_csv), "--out", "new.csv").exit_code == 0
    finally:
        os.umask(old)
    assert {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("m.npz", "p.csv", "curves.png",
                                                                              "g.csv", "new.csv")} == {
        "m.npz": 0o600, "p.csv": 0o600, "curves.png": 0o600, "g.csv": 0o664, "new.csv": 0o644}
    assert (tmp_path / "p.csv").read_text().startswith("row,prediction,label,")


def test_a_plot_is_never_written_over_an_image_of_the_data_folder(run_cli, tmp_path):
    # --plot photos/dark/0.png replaced a training image by the plot, exit 0: the folder then failed to load (images
    # of different sizes), or with --image-size trained on the plot
    dark_and_light(tmp_path / "photos", 6)
    image = (tmp_path / "photos" / "dark" / "0.png").read_bytes()
    for plot in ("photos/dark/0.png", "photos/light/new.PNG", "photos/x.png"):
        line = one_line_error(run_cli("train", "--data", "photos", "--epochs", "1", "--batch-size", "4", "--plot",
                                      plot))
        assert line == (f"error: --plot {plot} is in the --data folder {tmp_path / 'photos'}, which reads it as an "
                        f"image; write it to another folder")
    assert (tmp_path / "photos" / "dark" / "0.png").read_bytes() == image
    assert sorted(p.name for p in (tmp_path / "photos").rglob("*")) == sorted(
        ["dark", "light", *(f"{i}.png" for i in range(6)), *(f"{i}.png" for i in range(6))])
    assert run_cli("train", "--data", "photos", "--epochs", "1", "--batch-size", "4", "--plot",
                   "photos/curves.pdf").exit_code == 0  # no image the folder reads


def test_predictions_shown_on_a_terminal_never_drive_it(run_cli, tmp_path):
    # the rows went to the terminal as they are: a class named "cat ESC]0;...BEL" from the training data set the
    # terminal's title (ESC]52 would write its clipboard), where every other command writes such a name out
    import pty

    from tests.search.procs import env, read_terminal

    rng = np.random.default_rng(0)
    classes = ["cat\x1b]0;pwned\x07", "dog"]
    with open(tmp_path / "pets.csv", "w") as f:
        f.write("a,b,label\n" + "".join(f"{rng.normal():.3f},{rng.normal():.3f},{classes[i % 2]}\n" for i in range(40)))
    trained = run_cli("train", "--data", "pets.csv", "--epochs", "1", "--batch-size", "10", "--save", "m.npz")
    assert trained.exit_code == 0
    terminal, stdout = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "search", "predict", "--model", "m.npz", "--data", "pets.csv"],
                              env=env(), cwd=tmp_path, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              text=True, timeout=120)
    finally:
        os.close(stdout)
    shown = read_terminal(terminal)
    assert done.returncode == 0, done.stderr
    text = shown.replace("\r\n", "\n")
    assert "\x1b" not in text and "\x07" not in text
    assert text.splitlines()[0] == "row,prediction,label,p_cat\\x1b]0;pwned\\x07,p_dog"
    assert len(text.splitlines()) == 41 and text.count(",cat\\x1b]0;pwned\\x07,") >= 20  # each cat's label
    piped = run_cli("predict", "--model", "m.npz", "--data", "pets.csv")  # to a file or a pipe: the names as they are
    assert piped.stdout.splitlines()[0] == "row,prediction,label,p_cat\x1b]0;pwned\x07,p_dog"


def imbalanced_csv(path, n: int = 600, seed: int = 0) -> None:
    """A table of a string label of three classes, about 70/25/5 %, with a text column: a user's imbalanced file."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "color", "x1", "x2", "label"])
        for i in range(n):
            x1, x2 = rng.normal(size=2)
            color = rng.choice(["red", "blue", "green"])
            s = x1 + (0.8 if color == "red" else 0) + 0.3 * rng.normal()
            w.writerow([i, color, round(x1, 3), round(x2, 3), "common" if s < 0.6 else "mid" if s < 2.0 else "rare"])


def test_predict_with_labels_gives_each_classs_recall_and_a_confusion_table(run_cli, tmp_path):
    # the accuracy alone (0.87 of 70/25/5 % labels) hid a rare class the model hardly ever predicts
    imbalanced_csv(tmp_path / "t.csv")
    train_and_save(run_cli, "t.csv", "--label-column", "label", "--ignore-column", "id")
    result = run_cli("predict", "--model", "model.npz", "--data", "t.csv")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)[1:]
    pairs = collections.Counter((r[2], r[1]) for r in table)
    counts = collections.Counter(r[2] for r in table)
    assert set(counts) == {"common", "mid", "rare"}
    lines = result.stderr.splitlines()
    start = lines.index("recall per class (the share of its labelled rows predicted as it):")
    classes = ["common", "mid", "rare"]
    assert lines[start + 1:start + 4] == [
        f"  {c:<6}  recall {pairs[c, c] / counts[c]:.4f}  ({pairs[c, c]} of {counts[c]} rows)" for c in classes]
    assert lines[start + 4] == "confusion (a row per label, a column per prediction):"
    widths = [max(len(c), *(len(str(pairs[label, c])) for label in classes)) for c in classes]
    assert lines[start + 5] == "  label   " + "  ".join(f"{c:>{w}}" for c, w in zip(classes, widths))
    assert lines[start + 6:] == [
        f"  {label:<6}  " + "  ".join(f"{pairs[label, c]:>{w}}" for c, w in zip(classes, widths)) for label in classes]
    got = json.loads(run_cli("predict", "--model", "model.npz", "--data", "t.csv", "--json", "--out", "p.csv").stdout)
    assert got["per_class"] == [{"class": c, "rows": counts[c], "right": pairs[c, c],
                                 "recall": pairs[c, c] / counts[c]} for c in classes]
    assert got["confusion"] == {"labels": classes, "predictions": classes,
                                "counts": [[pairs[label, c] for c in classes] for label in classes]}


def test_predict_of_many_classes_names_only_the_classes_of_the_lowest_recall():
    from search.cli.run import class_score_lines, class_scores

    names = [f"c{i}" for i in range(12)]
    labels = [name for name in names for _ in range(10)]  # ten rows each; class i predicted right i times of ten
    predicted = np.array([i if k < i else (i + 1) % 12 for i in range(12) for k in range(10)])
    scores = class_scores(names, predicted, labels)
    assert scores["confusion"] is None and len(scores["per_class"]) == 12
    assert scores["per_class"][3] == {"class": "c3", "rows": 10, "right": 3, "recall": 0.3}
    assert class_score_lines(scores) == [
        "the 5 classes of the lowest recall, of 12 labelled (--json lists all):",
        *(f"  c{i}  recall {i / 10:.4f}  ({i} of 10 rows)" for i in range(5))]
