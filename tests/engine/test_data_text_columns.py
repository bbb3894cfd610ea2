"""A table's text columns (one-hot) and missing cells (--missing mean|drop), fitted on the training split only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from engine.data import DataSpec, load_dataset, read_inputs
from engine.encoding import TableEncoding
from engine.errors import ConfigError, DataError
from engine.model import FullyConnectedNet, ModelConfig
from engine.preprocess import PreprocessSpec, fit_preprocessor

COLOURS = ("red", "green", "blue")


def _table(path: Path, n: int = 60, rare_row: int | None = None) -> Path:
    """x (a number, empty in rows 4, 15, 26, ...), colour (text, the label's cause; 'NA' in row 7), label."""
    rng = np.random.default_rng(1)
    lines = ["x,colour,label"]
    for i in range(n):
        x = "" if i % 11 == 4 else f"{rng.normal(10, 2):.3f}"
        colour = "NA" if i == 7 else "violet" if i == rare_row else COLOURS[i % 3]
        lines.append(f"{x},{colour},{'abc'[i % 3]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_text_column_is_one_hot_and_missing_cells_take_the_training_splits_values(tmp_path: Path) -> None:
    path = _table(tmp_path / "t.csv")
    ds = load_dataset(DataSpec(str(path), missing="mean"))
    assert ds.feature_names == ("x", "colour=blue", "colour=green", "colour=red")
    assert ds.encoding.categories == (None, ("blue", "green", "red"))
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    # every row one category, and the category names the class (a -> red, b -> green, c -> blue)
    assert (X[:, 1:].sum(axis=1) == 1).all()
    assert (X[:, 1:].argmax(axis=1) == np.array([2, 1, 0])[y]).sum() == len(y) - 1  # row 7's NA became the mode
    fill_x, fill_colour = ds.encoding.fill
    assert fill_colour in COLOURS
    # the mean of the training split's x (filling with it keeps that mean), not of the whole file's
    assert fill_x == pytest.approx(float(ds.X_train[:, 0].mean()), rel=1e-6)
    assert fill_x != pytest.approx(float(X[:, 0].mean()), rel=1e-6)
    assert ds.table_notes["cells_filled"] == 6 + 1 and ds.table_notes["rows_dropped"] == 0
    assert ds.table_notes["cells_filled_per_column"] == {"x": 6, "colour": 1}


def test_drop_leaves_out_the_rows_missing_a_value_and_a_missing_label_is_dropped_and_counted(tmp_path: Path) -> None:
    path = _table(tmp_path / "t.csv")
    path.write_text(path.read_text() + "1.5,red,\n2.5,green,?\n")
    ds = load_dataset(DataSpec(str(path), missing="drop"))
    assert sum(ds.sizes.values()) == 60 - 7 and ds.encoding.fill is None
    assert ds.table_notes["rows_dropped"] == 7 and ds.table_notes["unlabelled_rows_dropped"] == 2
    assert load_dataset(DataSpec(str(path), missing="mean")).table_notes["unlabelled_rows_dropped"] == 2


def test_a_category_only_outside_the_training_split_is_encoded_as_all_zeros(tmp_path: Path) -> None:
    path = _table(tmp_path / "t.csv", rare_row=30)
    seen = {}
    for seed in range(30):
        ds = load_dataset(DataSpec(str(path), missing="mean", seed=seed))
        seen[("colour=violet" in ds.feature_names)] = ds
    trained, held_out = seen[True], seen[False]  # violet in the training split, or only in val or test
    assert trained.feature_names[1:] == ("colour=blue", "colour=green", "colour=red", "colour=violet")
    assert held_out.feature_names[1:] == ("colour=blue", "colour=green", "colour=red")
    (split, unseen), = held_out.table_notes["unseen"].items()
    assert unseen == {"colour": 1}
    X = getattr(held_out, f"X_{split}")
    assert (X[:, 1:].sum(axis=1) == 0).sum() == 1


def test_text_columns_that_are_ids_or_too_many_categories_are_refused(tmp_path: Path) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("name,x,label\n" + "".join(f"n{i // 2 if i < 10 else i},{i},{'ab'[i % 2]}\n" for i in range(40)))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(ids)))
    assert str(err.value) == (f"{ids}: column 'name' holds text, not numbers, with 35 different values in 40 rows "
                              "('n0' in row 1 (line 2), ...): an id or a note, not categories; leave it out with "
                              "--ignore-column name, or name it with --label-column if it holds the labels")
    many = tmp_path / "many.csv"
    many.write_text("zip,x,label\n" + "".join(f"z{i % 101},{i},{'ab'[i % 2]}\n" for i in range(202)))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(many)))
    assert str(err.value) == (f"{many}: column 'zip' holds text with 101 different values ('z0' in row 1 (line 2), "
                              "...), more than the 100 categories a column is one-hot encoded into; leave it out with "
                              "--ignore-column zip, or merge its values into fewer")


@pytest.mark.parametrize("chunk", [4, 10_000])
def test_a_number_among_text_is_a_category_and_text_among_more_numbers_is_refused(tmp_path: Path, monkeypatch,
                                                                                   chunk: int) -> None:
    from engine import formats

    monkeypatch.setattr(formats, "CSV_CHUNK_ROWS", chunk)  # 4: the '7' and the '1' are met in a later read
    path = tmp_path / "mixed.csv"
    path.write_text("size,colour,x,label\n" + "".join(
        f"{'7' if i == 9 else 'SML'[i % 3]},{('red', 'blue', '1')[i % 3] if i > 4 else 'red'},{i},{'ab'[i % 2]}\n"
        for i in range(20)))
    ds = load_dataset(DataSpec(str(path)))
    assert ds.encoding.categories == (("7", "L", "M", "S"), ("1", "blue", "red"), None)
    # Pclass with a typo: more of its values are numbers (1, 2, 3) than text (x)
    path.write_text("Pclass,x,label\n" + "".join(f"{'x' if i == 9 else 1 + i % 3},{i},{'ab'[i % 2]}\n"
                                                  for i in range(20)))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path)))
    assert str(err.value) == (f"{path}: row 10 (line 11) column 'Pclass': 'x' is not a number; other rows hold "
                              "numbers: correct it, or leave the column out with --ignore-column Pclass")


def test_missing_is_mean_or_drop_and_applies_to_tables_only() -> None:
    with pytest.raises(ConfigError, match="missing must be one of mean, drop, got 'median'"):
        DataSpec("digits", missing="median")
    with pytest.raises(ConfigError, match="missing 'mean' applies to .csv/.tsv data only, not 'digits'"):
        DataSpec("digits", missing="mean")


def test_a_saved_model_keeps_the_encoding_and_scores_new_rows_with_it(tmp_path: Path) -> None:
    ds = load_dataset(DataSpec(str(_table(tmp_path / "t.csv")), missing="mean"))
    pre = fit_preprocessor(PreprocessSpec("standardize"), ds.X_train, None)
    model = FullyConnectedNet(ModelConfig(hidden=(4,)), ds.input_dim, ds.num_classes, np.random.default_rng(0))
    save_checkpoint(tmp_path / "m.npz", Checkpoint(model, pre, ds.label_names, features=("x", "colour"),
                                                   label_column="label", encoding=ds.encoding))
    saved = load_checkpoint(tmp_path / "m.npz")
    assert saved.encoding.as_dict() == ds.encoding.as_dict()
    new = tmp_path / "new.csv"
    new.write_text("colour,x\nblue,1\nviolet,\n?,3\n")
    X, labels, ids, unseen, *_ = read_inputs(new, label_names=saved.label_names, features=saved.features,
                                         label_column="label", encoding=saved.encoding)
    mode = 1 + ("blue", "green", "red").index(ds.encoding.fill[1])
    expected = np.zeros((3, 4), dtype=np.float32)
    expected[:, 0] = [1, ds.encoding.fill[0], 3]
    expected[0, 1], expected[2, mode] = 1, 1  # violet: no category of training; '?' the most frequent
    np.testing.assert_array_equal(X, expected)
    assert labels is None and unseen == {"colour": 1}


def test_a_model_file_whose_encoding_is_damaged_is_not_a_model(tmp_path: Path) -> None:
    import json

    ds = load_dataset(DataSpec(str(_table(tmp_path / "t.csv")), missing="mean"))
    pre = fit_preprocessor(PreprocessSpec("none"), ds.X_train, None)
    model = FullyConnectedNet(ModelConfig(hidden=(4,)), ds.input_dim, ds.num_classes, np.random.default_rng(0))
    save_checkpoint(tmp_path / "m.npz", Checkpoint(model, pre, ds.label_names, features=("x", "colour"),
                                                   encoding=ds.encoding))
    with np.load(tmp_path / "m.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(str(arrays["meta"]))
    for key, value, problem in (("fill", [1.0, "violet"], "encoding.fill holds 'violet', not a category of its column"),
                                ("categories", [None, ["blue", "green", "red", "violet"]],
                                 "features names 2 columns encoded into 5 features, the model reads 4"),
                                ("columns", ["x", "color"], "encoding.columns are not the features the model reads"),
                                # swapped: each category would feed another input of the network
                                ("categories", [None, ["red", "green", "blue"]],
                                 "encoding.categories holds ['red', 'green', 'blue'], not in sorted order"),
                                # beyond float32: every prediction NaN
                                ("fill", [1e308, ds.encoding.fill[1]], "encoding.fill holds 1e+308 for a column of "
                                 "numbers")):
        arrays["meta"] = np.array(json.dumps({**meta, "encoding": {**meta["encoding"], key: value}}))
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(DataError, match="not a model file saved by `search train --save`") as err:
            load_checkpoint(tmp_path / "bad.npz")
        assert problem in str(err.value)


def test_a_column_with_no_value_in_the_training_split_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text("x,empty,label\n" + "".join(f"{i},,{'ab'[i % 2]}\n" for i in range(20)))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path), missing="mean"))
    assert str(err.value) == (f"{path}: column 'empty' has no value in the training split (12 rows): leave it out "
                              "with --ignore-column empty")
    with pytest.raises(DataError) as err:  # every row dropped: the column is the reason
        load_dataset(DataSpec(str(path), missing="drop"))
    assert str(err.value) == (f"{path}: no row left to train on: 0 miss their label, 20 a value (--missing drop); "
                              "no row has a value in 'empty': leave it out with --ignore-column empty")


def test_one_class_left_by_dropping_rows_says_the_drop_did_it(tmp_path: Path) -> None:
    # every 'b' row misses a value: the error said only "only one class ('a'); classification needs at least two"
    path = tmp_path / "gone.csv"
    path.write_text("x,label\n" + "".join(f"{'' if i % 2 else i},{'ab'[i % 2]}\n" for i in range(20)) + "3,\n")
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path), missing="drop"))
    assert str(err.value) == (f"{path}: only one class ('a') left once 1 row missing a label and 10 rows missing a "
                              "value were dropped (--missing drop); classification needs at least two: fill in the "
                              "missing cells, or train with --missing mean")
    assert load_dataset(DataSpec(str(path), missing="mean")).label_names == ("a", "b")


def test_a_table_too_large_once_one_hot_encoded_is_refused_before_it_is_made(tmp_path: Path, monkeypatch) -> None:
    from engine import formats

    path = tmp_path / "wide.csv"
    path.write_text("x,code,label\n" + "".join(f"{i},k{i % 90},{'ab'[i % 2]}\n" for i in range(900)))
    # the table read (900 rows of 2 columns) fits, its 91 encoded features (900 x 91 x 4 bytes) do not
    monkeypatch.setattr(formats, "available_memory", lambda: 200_000)
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path)))
    assert str(err.value) == (f"{path}: its 900 rows one-hot encoded into 91 features would need 319.9 KiB of memory, "
                              "more than 50% of the 195.3 KiB available")
    # and so are new rows to score with a model of it
    encoding = TableEncoding(("x", "code"), (None, tuple(sorted(f"k{i}" for i in range(90)))))
    with pytest.raises(DataError) as err:
        read_inputs(path, label_names=("a", "b"), features=("x", "code"), encoding=encoding)
    assert str(err.value) == (f"{path}: its 900 rows one-hot encoded into 91 features would need 319.9 KiB of memory, "
                              "more than 50% of the 195.3 KiB available")


def test_one_hot_columns_and_filled_cells_are_scikit_learns_fitted_on_the_training_rows(tmp_path: Path) -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(5)
    rows = [(i, "" if i % 9 == 2 else f"{rng.normal(5, 3):.3f}", "?" if i % 13 == 5 else str(rng.choice(
        ["Paris", "Lyon", "Nice", "Metz", "Brest"], p=[.5, .3, .15, .04, .01])), "xyz"[i % 3]) for i in range(200)]
    path = tmp_path / "t.csv"
    path.write_text("uid,a,city,label\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    ds = load_dataset(DataSpec(str(path), missing="mean", seed=3))
    uid = ds.X_train[:, 0].astype(int)  # the training rows, as the split drew them
    numbers = np.array([[np.nan if not rows[i][1] else float(rows[i][1])] for i in range(200)])
    texts = np.array([[np.nan if rows[i][2] == "?" else rows[i][2]] for i in range(200)], dtype=object)
    imputer = SimpleImputer(strategy="mean").fit(numbers[uid])
    mode = SimpleImputer(strategy="most_frequent").fit(texts[uid])
    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(mode.transform(texts[uid]))
    for split in ("train", "val", "test"):
        X = getattr(ds, f"X_{split}")
        ids = X[:, 0].astype(int)
        expected = np.hstack([ids[:, None], imputer.transform(numbers[ids]),
                              onehot.transform(mode.transform(texts[ids]))])
        np.testing.assert_allclose(X, expected, rtol=1e-6)
    assert ds.feature_names[2:] == tuple(f"city={cat}" for cat in onehot.categories_[0])


def test_every_column_that_cannot_be_trained_on_is_named_at_once(tmp_path: Path) -> None:
    # Titanic's Name (an id), Ticket (numbers and codes) and Cabin (too many categories) took three runs, one each
    path = tmp_path / "titanic.csv"
    path.write_text("Name,Ticket,Cabin,Fare,Survived\n" + "".join(
        f"passenger {i},{'A/5 ' if i % 4 == 1 else ''}{1000 + i},C{i % 120},{i % 7}.5,{i % 2}\n" for i in range(300)))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path)))
    assert str(err.value) == (
        f"{path}: 3 columns cannot be trained on: 'Name' holds text with 300 different values in 300 rows (an id or a "
        "note); 'Ticket' mixes numbers and text ('A/5 1001' in row 2 (line 3)); 'Cabin' holds text with 120 different "
        "values (more than 100 categories); leave them out with --ignore-column Name --ignore-column Ticket "
        "--ignore-column Cabin")
    assert load_dataset(DataSpec(str(path), ignore_columns=("Name", "Ticket", "Cabin"))).input_dim == 1


def test_none_and_null_are_a_category_in_a_column_of_text_and_a_missing_value_among_numbers(tmp_path: Path) -> None:
    from engine.data import describe_dataset

    # a discount of None, Low or High is three categories; a price of None or null is missing, as is a discount NA
    path = tmp_path / "shop.csv"
    path.write_text("price,discount,bought\n" + "".join(
        f"{'None' if i == 5 else 'null' if i == 8 else i},{'NA' if i == 13 else ('None', 'Low', 'High')[i % 3]},"
        f"{'yn'[i % 2]}\n" for i in range(30)))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path)))
    assert str(err.value) == (f"{path}: row 6 (line 7) column 'price' is 'None' (a missing value); rows 9 (line 10), "
                              "14 (line 15) have one too: fill them in or delete those rows, or train with --missing "
                              "mean (fill in the training split's mean) or --missing drop")
    ds = load_dataset(DataSpec(str(path), missing="mean"))
    assert ds.encoding.categories == (None, ("High", "Low", "None"))
    assert ds.table_notes["cells_filled_per_column"] == {"price": 2, "discount": 1}
    assert describe_dataset(DataSpec(str(path), missing="mean"), ds)["warnings"][0] == (
        "text column 'discount' ('None'): in a column of text None, null and nan are a category, a missing value only "
        "in a column of numbers; empty those cells (or write NA) if they mean a missing value")
    # new rows are read as training read them
    new = tmp_path / "new.csv"
    new.write_text("discount,price\nNone,null\nLow,7\n")
    X, _, _, unseen, *_ = read_inputs(new, label_names=ds.label_names, features=("price", "discount"),
                                  encoding=ds.encoding)
    np.testing.assert_array_equal(X, np.array([[ds.encoding.fill[0], 0, 0, 1], [7, 0, 1, 0]], dtype=np.float32))
    assert unseen == {}
    # a label null among numbers is missing (dropped with --missing), a label None among words a class
    path.write_text("x,label\n" + "".join(f"{i},{'null' if i == 3 else i % 2}\n" for i in range(20)))
    assert sum(load_dataset(DataSpec(str(path), missing="drop")).sizes.values()) == 19
    path.write_text("x,label\n" + "".join(f"{i},{('None', 'Some')[i % 2]}\n" for i in range(20)))
    assert load_dataset(DataSpec(str(path), missing="drop")).label_names == ("None", "Some")


def test_a_new_category_differing_from_a_training_one_only_in_case_or_spaces_is_named(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("age,sex,city,survived\n" + "".join(
        f"{i},{('male', 'female')[i % 2]},{('New York', 'Paris')[i % 2]},{i % 3 % 2}\n" for i in range(30)))
    ds = load_dataset(DataSpec(str(path)))
    new = tmp_path / "new.csv"
    new.write_text("age,sex,city\n1,Male,Paris\n2,male ,New  york\n3,FEMALE,Lyon\n4,other,paris\n5,Male,Paris\n")
    X, _, _, unseen, near, *_ = read_inputs(new, label_names=ds.label_names, features=("age", "sex", "city"),
                                        encoding=ds.encoding)
    # the encoding is as before: each of them all zeros ('male ' is 'male', its spaces around it cut)
    np.testing.assert_array_equal(X[:, 1:], np.array([[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0],
                                                      [0, 0, 0, 1]], dtype=np.float32))
    assert unseen == {"sex": 4, "city": 3}
    assert near == {"sex": {"FEMALE": "female", "Male": "male"}, "city": {"New  york": "New York", "paris": "Paris"}}


def test_numbers_written_with_a_comma_are_refused_not_read_as_categories(tmp_path: Path) -> None:
    # a European TSV's 0,5 1,0 1,5 were one-hot encoded as three categories
    path = tmp_path / "eu.tsv"
    path.write_text("dose\tlabel\n" + "".join(f"{('0,5', '1,0', '1,5')[i % 3]}\t{'ab'[i % 2]}\n" for i in range(30)))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path)))
    assert str(err.value) == (f"{path}: column 'dose' holds numbers written with a comma ('0,5' in row 1 (line 2), "
                              "...), a decimal comma or a thousands separator; save them with a decimal point and no "
                              "separator (3.5, 1023)")
    path = tmp_path / "fares.csv"  # a spreadsheet's 1,023 quoted, beside 999
    path.write_text("fare,port,label\n" + "".join(f"{'999' if i % 4 else chr(34) + f'1,{i:03d}' + chr(34)},"
                                                  f"{'SCQ'[i % 3]},{'ab'[i % 2]}\n" for i in range(30)))
    with pytest.raises(DataError, match="column 'fare' holds numbers written with a comma \\('1,000' in row 1"):
        load_dataset(DataSpec(str(path)))


def test_text_after_a_read_of_numbers_alone_is_refused_not_read_as_codes(tmp_path: Path, monkeypatch) -> None:
    from engine import formats

    monkeypatch.setattr(formats, "CSV_CHUNK_ROWS", 4)
    # the 1s of the first reads (numbers alone, read at once) became code 1, the category 'blue' of the later reads
    path = tmp_path / "late.csv"
    path.write_text("x,colour,label\n" + "".join(f"{i},{'1' if i < 8 else ('red', 'blue')[i % 2]},{'ab'[i % 2]}\n"
                                                 for i in range(20)))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path)))
    assert str(err.value) == (f"{path}: row 9 (line 10) column 'colour': 'red' is not a number; other rows hold "
                              "numbers: correct it, or leave the column out with --ignore-column colour")


def test_categories_of_a_handful_of_training_rows_are_warned_of_with_what_standardize_makes_them(tmp_path):
    # a category of 2 rows in 1,400 became, standardized, a one-hot value of 26 on those rows, unsaid
    from engine.data import describe_dataset

    rng = np.random.default_rng(0)
    lines = ["x,colour,shape,label"] + [
        f"{rng.normal():.3f},{'teal' if i < 3 else 'mauve' if i < 4 else COLOURS[i % 3]},{'ab'[i % 2]},{'pq'[i % 2]}"
        for i in range(2000)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    ds = load_dataset(DataSpec(str(path)))
    n = len(ds.y_train)
    column = ds.feature_names.index("colour=teal")
    k = int(ds.X_train[:, column].sum())
    assert k < 5 and int(ds.X_train[:, ds.feature_names.index("colour=mauve")].sum()) == 1
    pre = fit_preprocessor(PreprocessSpec("standardize"), ds.X_train, None)
    scaled = pre.transform(ds.X_train)[ds.X_train[:, column] == 1, column]
    assert np.allclose(scaled, np.sqrt((n - k) / k), rtol=1e-4)  # what the warning says, from the data itself
    sizes = sorted({round(np.sqrt(n - 1)), round(np.sqrt((n - k) / k))})
    head = f"text column 'colour' has categories in fewer than 5 of the {n} training rows: 'mauve' (1), 'teal' ({k}); "
    tail = "; merge them into a broader category (such as 'other') in the file, or leave the column out with " \
           "--ignore-column colour"
    rescaled = [w for w in describe_dataset(DataSpec(str(path)), ds, standardized=True)["warnings"] if "fewer" in w]
    assert rescaled == [f"{head}rescaled to unit variance by --preprocess, their one-hot features are {sizes[0]} to "
                        f"{sizes[-1]} on those rows (about 0 on the others): values that swamp the other features, "
                        f"learned from a handful of rows{tail}"]
    raw = [w for w in describe_dataset(DataSpec(str(path)), ds, standardized=False)["warnings"] if "fewer" in w]
    assert raw == [f"{head}too few rows to learn from{tail}"]
