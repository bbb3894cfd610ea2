"""Bad data files: each a DataError with one line naming the file and what is wrong (issue 10)."""
from __future__ import annotations

import builtins
import errno
import os
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import DataSpec, load_dataset
from engine.errors import ConfigError, DataError
from engine.formats import detect_format

# how a training read's refusal of a missing value ends
OR_MISSING = ", or train with --missing mean (fill in the training split's mean) or --missing drop"


def _error(spec: DataSpec, named: Path, *fragments: str) -> str:
    """The one-line DataError that loading ``spec`` raises; it names ``named`` and holds every fragment."""
    with pytest.raises(DataError) as err:
        load_dataset(spec)
    message = str(err.value)
    assert "\n" not in message and str(named) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _png(path: Path, size: tuple[int, int], colour: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), colour, dtype=np.uint8)).save(path)
    return path


def _good_rows(n: int = 12) -> str:
    return "".join(f"{i},{i * 2},{'ab'[i % 2]}\n" for i in range(n))


def _deny(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Make ``denied`` act as mode 0 (root ignores modes): opening or listing it, or reaching inside it, is refused."""
    real_open, real_stat, real_iterdir = builtins.open, os.stat, Path.iterdir

    def check(path: object, itself: bool) -> None:
        if isinstance(path, (str, Path)) and (denied in Path(path).parents or itself and Path(path) == denied):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def fake_open(file: object, *args: object, **kwargs: object) -> object:
        check(file, itself=True)
        return real_open(file, *args, **kwargs)

    def fake_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        check(path, itself=False)
        return real_stat(path, *args, **kwargs)

    def fake_iterdir(self: Path) -> object:
        check(self, itself=True)
        return real_iterdir(self)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "stat", fake_stat)
    monkeypatch.setattr(Path, "iterdir", fake_iterdir)


# ---------------------------------------------------------------------------------------------
# features


def test_nan_and_inf_in_npz_features_name_the_cell(tmp_path: Path) -> None:
    X = np.ones((20, 4))
    X[7, 2] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, X=X, y=np.arange(20) % 2)
    _error(DataSpec(str(path)), path, "NaN or inf in features: X row 7 feature 2")  # the file's name: once X_train
    X[7, 2], X[3, 1] = 1.0, np.inf
    np.savez(path, X_train=X, y_train=np.arange(20) % 2, X_val=X, y_val=np.arange(20) % 2)
    _error(DataSpec(str(path)), path, "X_train row 3 feature 1")
    X[3, 1] = 1e300  # beyond float32
    np.savez(path, X=X, y=np.arange(20) % 2)
    _error(DataSpec(str(path)), path, "row 3 feature 1 is 1e+300")


def test_npz_with_samples_but_no_features_says_no_features(tmp_path: Path) -> None:
    path = tmp_path / "nofeat.npz"
    np.savez(path, X=np.ones((40, 0)), y=np.arange(40) % 2)
    _error(DataSpec(str(path)), path, ": X has no features (shape (40, 0))")
    np.savez(path, X_train=np.ones((40, 2)), y_train=np.arange(40) % 2, X_val=np.ones((0, 2)), y_val=np.arange(0))
    _error(DataSpec(str(path)), path, "X_val has no samples (shape (0, 2))")


def test_inf_in_csv_names_row_and_column(tmp_path: Path) -> None:
    path = _csv(tmp_path / "inf.csv", "a,b,label\n" + _good_rows(5) + "5,-inf,a\n" + _good_rows(6))
    _error(DataSpec(str(path)), path, "row 6 (line 7) column 'b'", "NaN or infinite")


def test_nan_in_csv_is_a_missing_value(tmp_path: Path) -> None:
    # NumPy's savetxt writes a missing value as nan: refused as missing, naming --missing, and filled with it
    rows = "".join(f"{i},{'nan' if i == 5 else i % 3},{'ab'[i % 2]}\n" for i in range(12))
    path = _csv(tmp_path / "nan.csv", "a,b,label\n" + rows)
    _error(DataSpec(str(path)), path, "row 6 (line 7) column 'b'", "(a missing value)", "--missing")
    ds = load_dataset(DataSpec(str(path), missing="mean", val_size=2, test_size=2))
    assert np.isfinite(ds.X_train).all() and ds.X_train.shape[0] + ds.X_val.shape[0] + ds.X_test.shape[0] == 12


def test_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    path = _csv(tmp_path / "text.csv", "a,b,label\n" + _good_rows(3) + "1,two,a\n" + _good_rows(8))
    _error(DataSpec(str(path)), path, "row 4 (line 5) column 'b'", "'two' is not a number")
    empty = _csv(tmp_path / "empty_cell.tsv", "a\tb\tlabel\n" + "1\t\ta\n" + _good_rows(6).replace(",", "\t"))
    # a missing value was "'' is not a number"
    assert _error(DataSpec(str(empty)), empty) == (f"{empty}: row 1 (line 2) column 'b' is empty (a missing value): "
                                                   "fill it in or delete the row" + OR_MISSING)
    # R's NA, a spreadsheet's #N/A and UCI's ? were "'NA' is not a number", as if the cell held a typo
    for cell in ("NA", "#N/A", "?", " n/a"):
        marked = _csv(tmp_path / "marked.csv", "a,b,label\n" + _good_rows(3) + f"1,{cell},a\n" + _good_rows(8))
        assert _error(DataSpec(str(marked)), marked) == (
            f"{marked}: row 4 (line 5) column 'b' is {cell.strip()!r} (a missing value): fill it in or delete the "
            "row" + OR_MISSING)


def test_every_row_with_a_missing_value_is_named_at_once(tmp_path: Path) -> None:
    # only the first was named: a file with two empty cells took two runs to find them
    two = _csv(tmp_path / "two.csv", "a,b,label\n" + _good_rows(3) + "1,,a\n" + _good_rows(4) + "NA,3,b\n" +
               _good_rows(5))
    assert _error(DataSpec(str(two)), two) == (f"{two}: row 4 (line 5) column 'b' is empty (a missing value); row 9 "
                                               "(line 10) has one too: fill them in or delete those rows" + OR_MISSING)
    rows = "".join("1,,a\n" if i in (2, 4, 5, 7, 8, 9, 11) else f"{i},{i},{'ab'[i % 2]}\n" for i in range(14))
    many = _csv(tmp_path / "many.csv", "a,b,label\n" + rows)
    assert _error(DataSpec(str(many)), many) == (
        f"{many}: row 3 (line 4) column 'b' is empty (a missing value); rows 5 (line 6), 6 (line 7), 8 (line 9), "
        "9 (line 10), 10 (line 11) and 1 more have one too: fill them in or delete those rows" + OR_MISSING)


def test_rows_missing_a_value_past_the_first_read_are_named_too(tmp_path: Path, monkeypatch) -> None:
    # a table is read CSV_CHUNK_ROWS rows at a time: the rows missing a value in later reads were left out, and the
    # message said the first one was the only one
    from engine import formats

    monkeypatch.setattr(formats, "CSV_CHUNK_ROWS", 4)
    rows = "".join("1,,a\n" if i in (1, 6, 9) else "NA,2,b\n" if i == 13 else f"{i},{i},{'ab'[i % 2]}\n"
                   for i in range(16))
    late = _csv(tmp_path / "late.csv", "a,b,label\n" + rows)
    assert _error(DataSpec(str(late)), late) == (
        f"{late}: row 2 (line 3) column 'b' is empty (a missing value); rows 7 (line 8), 10 (line 11), 14 (line 15) "
        "have one too: fill them in or delete those rows" + OR_MISSING)
    alone = _csv(tmp_path / "alone.csv", "a,b,label\n" + "".join(
        f"{i},{i},{'ab'[i % 2]}\n" if i != 9 else "1,,a\n" for i in range(12)))
    assert _error(DataSpec(str(alone)), alone) == (
        f"{alone}: row 10 (line 11) column 'b' is empty (a missing value): fill it in or delete the row" + OR_MISSING)


def test_a_cell_with_a_digit_separator_is_not_read_as_a_number(tmp_path: Path) -> None:
    # NumPy read 1_000 as 1000 and a code such as 3_1 as 31, silently
    path = _csv(tmp_path / "sep.csv", "a,b,label\n" + _good_rows(3) + "1_000,2,a\n" + _good_rows(8))
    _error(DataSpec(str(path)), path, "row 4 (line 5) column 'a'", "'1_000' is not a number")
    codes = _csv(tmp_path / "codes.csv", "code,b,label\n" + "".join(f"{i}_1,{i},{'ab'[i % 2]}\n" for i in range(12)))
    assert _error(DataSpec(str(codes)), codes).startswith(
        f"{codes}: column 'code' holds text, not numbers, with 12 different values in 12 rows ('0_1' in row 1 (line 2)")


def test_a_column_of_text_says_it_is_trained_on_and_what_to_do(tmp_path: Path) -> None:
    # a string id (wine.tsv's W0000, W0001, ...) was "row 1 (line 2) column 'id': 'W0000' is not a number"
    rows = "".join(f"W{i:04d}\t{i % 5}\t{i % 3}\t{'ab'[i % 2]}\n" for i in range(12))
    path = _csv(tmp_path / "wine.tsv", "id\ta\tb\tcultivar\n" + rows)
    # text columns are one-hot encoded, but one with a different value in (nearly) every row is an id, not categories
    assert _error(DataSpec(str(path)), path) == (
        f"{path}: column 'id' holds text, not numbers, with 12 different values in 12 rows ('W0000' in row 1 (line 2), "
        "...): an id or a note, not categories; leave it out with --ignore-column id, or name it with --label-column "
        "if it holds the labels")
    # one text cell among numbers is still named by its row
    numbers = rows.replace("\nW", "\n")  # W0000, then 0001, 0002, ...
    mixed = _csv(tmp_path / "mixed.tsv", "id\ta\tb\tcultivar\n" + "7\t1\t2\ta\n" + numbers)
    assert _error(DataSpec(str(mixed)), mixed) == (f"{mixed}: row 2 (line 3) column 'id': 'W0000' is not a number; "
                                                   "other rows hold numbers: correct it, or leave the column out with "
                                                   "--ignore-column id")


def test_ragged_and_truncated_csv_rows(tmp_path: Path) -> None:
    ragged = _csv(tmp_path / "ragged.csv", "a,b,label\n" + _good_rows(2) + "1,2,3,a\n" + _good_rows(8))
    _error(DataSpec(str(ragged)), ragged, "row 3 (line 4) has 4 fields but the header has 3")
    short = _csv(tmp_path / "short.csv", "a,b,label\n" + _good_rows(2) + "1\n" + _good_rows(8))
    _error(DataSpec(str(short)), short, "row 3 (line 4) has 1 field but the header has 3")  # not "1 fields"
    full = "a,b,label\n" + _good_rows(12)
    truncated = _csv(tmp_path / "truncated.csv", full[: full.rindex(",")])  # the last row lost its label
    _error(DataSpec(str(truncated)), truncated, "row 12 (line 13) has 2 fields")


def test_a_quote_left_open_is_named_at_the_line_it_opens_not_the_files_end(tmp_path: Path) -> None:
    # the csv module reads the rest of the file into the quoted cell: a row of too few fields at the last line, a
    # label holding 20 rows (a class of one sample), or a cell beyond its limit of 131072 characters
    opened = "line 5: a quote (\") opens a cell that no quote closes, so the rest of the file is read into that cell"
    for name, row, rows in (("few.csv", '3,"6,b\n', 20), ("label.csv", '3,6,"b\n', 20),
                            ("long.csv", '3,"6,b\n', 15000)):
        path = _csv(tmp_path / name, "a,b,label\n" + _good_rows(3) + row + _good_rows(rows))
        _error(DataSpec(str(path)), path, opened)
    path.write_bytes(path.read_bytes() + b"\xff\n")  # beyond the cell's limit, bytes that are not UTF-8
    _error(DataSpec(str(path)), path, opened)
    header = _csv(tmp_path / "header.csv", '\na,b,"label\n' + _good_rows(12))
    _error(DataSpec(str(header)), header, "line 2: a quote")  # after the blank line
    # after Excel's sep=, line: once "no data rows after the header", or the csv module's limit past 131072 characters
    for rows in (12, 15000):
        header = _csv(tmp_path / "sep.csv", 'sep=,\n\na,b,"label\n' + _good_rows(rows))
        _error(DataSpec(str(header)), header, "line 3: a quote (\") opens a cell that no quote closes")
    # a quote in a cell that does not open it, a quoted cell over two lines, blank lines: read as they were
    fine = _csv(tmp_path / "fine.csv", 'a,b,label\n\n1,2"5,a\n' + _good_rows(12) + '\n2,"4\n",b\n\n3,"6",a\n')
    with pytest.raises(DataError, match=r"row 1 \(line 3\) column 'b': '2\"5' is not a number"):
        load_dataset(DataSpec(str(fine)))
    assert load_dataset(DataSpec(str(_csv(fine, fine.read_text().replace('2"5', "25"))))).sizes == {
        "train": 11, "val": 2, "test": 2}


def test_a_csv_without_a_header_row_is_refused_not_read_one_sample_short(tmp_path: Path) -> None:
    path = _csv(tmp_path / "nohdr.csv", "5.1,3.5,1.4,setosa\n4.9,3.0,1.4,setosa\n" + _good_rows(12))
    _error(DataSpec(str(path)), path, "the first line looks like a sample (5.1, 3.5, 1.4, ...), not a header")
    repeated = _csv(tmp_path / "ints.csv", "0,0,5,a\n" + "".join(f"{i},{i},{i},{'ab'[i % 2]}\n" for i in range(12)))
    _error(DataSpec(str(repeated)), repeated, "looks like a sample")
    # a sample's label repeating one of its values: once "columns 1, 2 and 4 are each named '0', the label column's
    # name; rename all but one"
    label_repeated = _csv(tmp_path / "zeros.csv", "0,0,5,0\n" + "".join(f"{i},{i},{i},{i % 2}\n" for i in range(12)))
    _error(DataSpec(str(label_repeated)), label_repeated, "the first line looks like a sample (0, 0, 5, ...), not a "
                                                          "header")
    # 0,1,2,... are the names pandas writes for unnamed columns, 400.5,401.5,... could be wavelengths: headers
    for header in ("0,1,label", "400.5,401.5,label"):
        named = _csv(tmp_path / "named.csv", header + "\n" + _good_rows(12))
        assert load_dataset(DataSpec(str(named))).input_dim == 2


def test_a_csv_without_a_header_whose_first_values_rise_is_refused_by_its_label(tmp_path: Path) -> None:
    # 0.13 < 0.85 passed for a header of wavelengths: the first sample was left out, its numbers naming the columns
    rows = "".join(f"{i / 20:.2f},{(i * 7 % 12) / 12:.2f},{'ab'[i % 2]}\n" for i in range(12))
    path = _csv(tmp_path / "nohdr.csv", "0.13,0.85,a\n" + rows)
    assert _error(DataSpec(str(path)), path) == (
        f"{path}: the first line looks like a sample (0.13, 0.85, ...), not a header; its label cell 'a' is one of the "
        f"labels; add a first line naming the columns, e.g. x1,x2,...,label")
    named = _csv(tmp_path / "named.csv", "400.5,401.5,label\n" + rows)  # a header of wavelengths is still one
    assert load_dataset(DataSpec(str(named))).input_dim == 2
    given = _csv(tmp_path / "given.csv", "0.13,0.85,a\n" + rows)  # a label column given by name: the header names it
    assert load_dataset(DataSpec(str(given), label_column="a")).label_names == ("a", "b")


def test_a_pandas_header_whose_label_name_is_one_of_the_labels_is_a_header(tmp_path: Path) -> None:
    # pd.DataFrame(np.column_stack([X, y])).to_csv(index=False) of 3 features and 5 classes writes 0,1,2,3: its label
    # column '3' is one of the labels 0-4, and the file was refused as one without a header
    rows = "".join(f"{i / 20:.2f},{(i * 7 % 12) / 12:.2f},{i % 3},{i % 5}\n" for i in range(30))
    path = _csv(tmp_path / "pandas.csv", "0,1,2,3\n" + rows)
    dataset = load_dataset(DataSpec(str(path)))
    assert (dataset.input_dim, dataset.label_names) == (3, ("0", "1", "2", "3", "4"))
    sample = _csv(tmp_path / "sample.csv", "0,1,2,4\n" + rows)  # not pandas' names: a sample, as before
    _error(DataSpec(str(sample)), sample, "looks like a sample (0, 1, 2, ...), not a header; its label cell '4' is one")


def test_missing_label_column_lists_the_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path / "d.csv", "a,b,label\n" + _good_rows())
    _error(DataSpec(str(path), label_column="class"), path, "no label column 'class'", "'a', 'b', 'label'")


def test_a_label_column_name_that_another_column_has_too_is_refused(tmp_path: Path) -> None:
    # --label-column label took the first and trained on the second, to say "column 'label' holds text ...: name it
    # with --label-column"; by default the last was the label, and a model saved from the file could not score it
    path = _csv(tmp_path / "d.csv", "a,label,b,label\n" + "".join(f"{i},{i % 2},{i},{'xy'[i % 2]}\n" for i in range(30)))
    expected = (f"{path}: columns 2 and 4 are each named 'label', the label column's name; rename all but one "
                "(columns are told apart by name)")
    assert _error(DataSpec(str(path), label_column="label"), path) == expected
    assert _error(DataSpec(str(path)), path) == expected


def test_empty_label_and_regression_target_labels(tmp_path: Path) -> None:
    empty = _csv(tmp_path / "e.csv", "a,b,label\n" + _good_rows(4) + "1,2,\n")
    assert _error(DataSpec(str(empty)), empty) == (f"{empty}: row 5 (line 6) has an empty label: fill it in or delete "
                                                   "the row, or train with --missing mean or --missing drop, which "
                                                   "drop the rows without a label")
    real = _csv(tmp_path / "r.csv", "a,b,price\n" + "".join(f"{i},{i},{i * 0.37}\n" for i in range(30)))
    _error(DataSpec(str(real)), real, "labels must be integers or strings", "label column")


def test_a_fractional_label_is_shown_as_written_not_as_a_numpy_repr(tmp_path: Path) -> None:
    path = _csv(tmp_path / "half.csv", "a,b,label\n" + "".join(f"{i},{i},{[0, 1, 0.5][i % 3]}\n" for i in range(30)))
    message = _error(DataSpec(str(path)), path, "labels must be integers or strings, found 0.5 (is this")
    assert "np." not in message


def test_large_integer_labels_keep_every_digit_and_numeric_order(tmp_path: Path) -> None:
    big = 10**30
    labels = ["2", "10", str(big), str(big + 1)]
    path = _csv(tmp_path / "big.csv", "a,b,label\n" + "".join(f"{i},{i},{labels[i % 4]}\n" for i in range(40)))
    ds = load_dataset(DataSpec(str(path)))
    assert ds.label_names == ("2", "10", str(big), str(big + 1))  # not 1000000000000000019884624838656, not merged
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    for row, label in zip(X, y):
        assert ds.label_names[label] == labels[int(row[0]) % 4]
    floats = tmp_path / "floats.npz"  # float labels beyond float64's exact integers are named as the float they are
    np.savez(floats, X=np.ones((20, 2)), y=np.array([1.0, 1e30] * 10))
    assert load_dataset(DataSpec(str(floats))).label_names == ("1", "1e+30")


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty file"),
    ("\r\n\r\n", "empty file"),  # blank lines alone were a traceback (ValueError: -1 is not in list)
    ("a,b,label\n", "no data rows"),
    ("label\n1\n2\n", "no feature columns"),
])
def test_csv_without_header_rows_or_features(tmp_path: Path, text: str, fragment: str) -> None:
    path = _csv(tmp_path / "d.csv", text)
    _error(DataSpec(str(path)), path, fragment)


def test_blank_lines_before_the_header_are_skipped_as_blank_lines_after_it(tmp_path: Path) -> None:
    from engine.data import read_inputs
    from engine.formats import table_columns

    path = _csv(tmp_path / "d.csv", "\n\r\na,b,label\n" + _good_rows())
    ds = load_dataset(DataSpec(str(path)))
    assert ds.feature_names == ("a", "b") and ds.label_names == ("a", "b") and sum(ds.sizes.values()) == 12
    assert table_columns(path, ",", None) == (("a", "b"), "label")
    X, labels, ids, *_ = read_inputs(path, label_names=("a", "b"), features=("b", "a"), label_column="label",
                                     id_column="a")
    assert X[:2].tolist() == [[0, 0], [2, 1]] and labels[:2] == ["a", "b"] and ids[:2] == ["0", "1"]


def test_excels_line_naming_the_separator_is_skipped(tmp_path: Path) -> None:
    # sep=, was read as the header: "row 1 (line 2) has 3 fields but the header has 2"
    path = _csv(tmp_path / "d.csv", "sep=,\r\na,b,label\r\n" + _good_rows())
    assert load_dataset(DataSpec(str(path))).feature_names == ("a", "b")
    semi = _csv(tmp_path / "semi.csv", "sep=;\na;b;label\n" + _good_rows().replace(",", ";"))
    _error(DataSpec(str(semi)), semi, "the header is one column, but it holds ';'")


@pytest.mark.parametrize(("name", "separator", "shown"), [("semi.csv", ";", "';'"), ("tabs.csv", "\t", "tab"),
                                                       ("commas.tsv", ",", "','")])
def test_a_table_separated_by_another_character_says_which(tmp_path: Path, name: str, separator: str,
                                                          shown: str) -> None:
    # once: "no feature columns besides the label column 'mean_radius;mean_texture;...;diagnosis'" (the whole header)
    header = separator.join(["mean_radius", "mean_texture", "diagnosis"])
    path = _csv(tmp_path / name, f"{header}\n" + f"{separator.join(['1.5', '2', 'benign'])}\n" * 5)
    read_as = "comma" if name.endswith(".csv") else "tab"
    message = _error(DataSpec(str(path)), path)
    assert message == (f"{path}: the header is one column, but it holds {shown}: a .{name[-3:]} file is read as "
                       f"{read_as}-separated; save it separated by {read_as}s")


def test_corrupt_csv_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"a,b,label\n1,2,\xff\xfe\x00\x81\n")
    _error(DataSpec(str(path)), path, "not UTF-8 text")
    # a spreadsheet's plain "CSV" on Windows is cp1252: "not UTF-8 text (invalid continuation byte)" said no more
    french = tmp_path / "fleurs.csv"
    french.write_bytes("longueur s\u00e9pale,esp\u00e8ce\n".encode("cp1252") + b"5.1,setosa\n" * 12)
    assert _error(DataSpec(str(french)), french) == (
        f"{french}: not UTF-8 text (invalid continuation byte); save it as UTF-8 (a spreadsheet's \"CSV UTF-8\")")


# ---------------------------------------------------------------------------------------------
# arrays and labels


def test_x_and_y_of_different_lengths(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X_train=np.ones((30, 3)), y_train=np.arange(29) % 2)
    _error(DataSpec(str(path)), path, "X_train has 30 samples but y_train has 29 labels")
    np.savez(path, X=np.ones((30, 3)), y=np.arange(29) % 2)  # named as the file names them: once X_train, y_train
    _error(DataSpec(str(path)), path, ": X has 30 samples but y has 29 labels")
    np.savez(path, X=np.ones((30, 3)), y=np.ones((30, 2)))
    _error(DataSpec(str(path)), path, ": y must hold one label per sample, got shape (30, 2)")


def test_classes_in_validation_or_test_but_not_in_training_are_named(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X_train=np.ones((20, 2)), y_train=np.arange(20) % 2, X_val=np.ones((10, 2)), y_val=np.arange(10) % 5)
    _error(DataSpec(str(path)), path, "classes '2', '3', '4' appear in the validation split but not in training")
    np.savez(path, X_train=np.ones((20, 2)), y_train=np.array(["a", "b"] * 10),
             X_test=np.ones((3, 2)), y_test=np.array(["a", "b", "zebra"]))
    _error(DataSpec(str(path)), path, "class 'zebra' appears in the test split but not in training")


def test_a_class_with_fewer_samples_than_the_split_needs(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((22, 3)), y=np.array(["a"] * 20 + ["rare"] * 2))
    _error(DataSpec(str(path)), path, "class 'rare' has 2 sample(s)", "at least 3")
    csv_path = _csv(tmp_path / "d.csv", "a,b,label\n" + _good_rows(20) + "1,1,rare\n")
    _error(DataSpec(str(csv_path)), csv_path, "class 'rare' of the label column 'label' (the last; --label-column "
           "NAME takes another) has 1 sample(s)")


def test_a_label_column_of_measurements_names_the_column_the_labels_came_from(tmp_path: Path) -> None:
    # --label-column forgotten on wine: the last column, proline, became 121 classes, and the error named only
    # "class '278' has 1 sample(s)"
    rows = "".join(f"{i % 7},{1 + i % 2},{500 + i}\n" for i in range(30))
    path = _csv(tmp_path / "wine.csv", "alcohol,cultivar,proline\n" + rows)
    assert _error(DataSpec(str(path)), path) == (
        f"{path}: class '500' of the label column 'proline' (the last; --label-column NAME takes another) has 1 "
        "sample(s) but the train/val/test split needs at least 3 of each class (one or more per split); the labels "
        "hold 30 classes in 30 samples")
    named = _csv(tmp_path / "named.csv", "proline,alcohol,cultivar\n" + "".join(
        f"{500 + i},{i % 7},{1 + i % 2}\n" for i in range(30)))
    assert _error(DataSpec(str(named), label_column="proline"), named).startswith(
        f"{named}: class '500' of the label column 'proline' has 1 sample(s)")


def test_npz_layout_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, features=np.ones((4, 2)), labels=np.arange(4))
    _error(DataSpec(str(path)), path, "expected arrays X_train, y_train", "found features, labels")
    np.savez(path, X_train=np.ones((20, 2)), y_train=np.arange(20) % 2, X_val=np.ones((4, 2)))
    _error(DataSpec(str(path)), path, "has X_val without y_val")
    np.savez(path, X=np.ones((20, 2)), y=np.zeros(20, dtype=int))
    _error(DataSpec(str(path)), path, "only one class")
    np.savez(path, X=np.ones(20), y=np.arange(20) % 2)
    _error(DataSpec(str(path)), path, ": X must be N x D", "(20,)")
    np.savez(path, X=np.array(["a"] * 20), y=np.arange(20) % 2)
    _error(DataSpec(str(path)), path, ": X must be N x D")
    np.savez(path, X=np.array([["a", "b"]] * 20), y=np.arange(20) % 2)
    _error(DataSpec(str(path)), path, ": X must hold numbers", "<U1")


def test_train_size_beyond_the_file_names_both_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((40, 2)), y=np.arange(40) % 2)
    _error(DataSpec(str(path), train_size=100), path, "train_size 100", "only 28")


def test_image_size_on_a_file_that_is_not_an_image_folder(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((40, 2)), y=np.arange(40) % 2)
    with pytest.raises(ConfigError, match="image_size applies to image folders only"):
        load_dataset(DataSpec(str(path), image_size=(8, 8)))


# ---------------------------------------------------------------------------------------------
# .npz that must not be trusted


class _CreatesMarker:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_npz_holding_object_arrays_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    X = np.empty((4, 1), dtype=object)
    X[:, 0] = [_CreatesMarker(marker)] * 4
    path = tmp_path / "evil.npz"
    np.savez(path, X=X, y=np.arange(4) % 2)  # np.save pickles object arrays
    _error(DataSpec(str(path)), path, "array 'X' holds Python objects", "refused")
    assert not marker.exists()
    np.load(path, allow_pickle=True)["X"]  # the payload is real: unpickling it creates the marker
    assert marker.exists()


def test_truncated_and_corrupt_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.random.default_rng(0).random((200, 20)), y=np.arange(200) % 2)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _error(DataSpec(str(path)), path, "corrupt or truncated .npz")
    path.write_bytes(b"PK\x03\x04 this is not really a zip file")
    _error(DataSpec(str(path)), path, "corrupt or truncated .npz")
    # flip a byte inside the stored data: the zip's CRC catches it
    inside = bytearray(raw)
    inside[raw.index(b"\x93NUMPY") + 1000] ^= 0xFF
    path.write_bytes(bytes(inside))
    _error(DataSpec(str(path)), path, "corrupt or truncated .npz")


def test_unreadable_npz_csv_and_image_say_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = tmp_path / "d.npz"
    np.savez(arrays, X=np.ones((20, 2)), y=np.arange(20) % 2)
    table = _csv(tmp_path / "d.csv", "a,b,label\n" + _good_rows())
    image = _png(tmp_path / "imgs" / "a" / "0.png", (4, 4))
    _png(tmp_path / "imgs" / "b" / "0.png", (4, 4))
    specs = DataSpec(str(arrays)), DataSpec(str(table)), DataSpec(str(tmp_path / "imgs"))
    for spec, path in zip(specs, (arrays, table, image)):
        with monkeypatch.context() as patch:
            _deny(patch, path)
            message = _error(spec, path, f"cannot read {path}: Permission denied")
        assert "corrupt" not in message and "PermissionError" not in message


def test_fifos_and_devices_are_not_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    zeros, noise = tmp_path / "zero.csv", tmp_path / "noise.npz"
    zeros.symlink_to("/dev/zero")
    noise.symlink_to("/dev/urandom")
    for path in (fifo, zeros, noise):
        with pytest.raises(ConfigError, match=re.escape(f"'{path}' is not a regular file or folder")):
            DataSpec(str(path))
        with pytest.raises(DataError, match=re.escape(f"{path} is not a regular file or folder")):
            detect_format(path)


def test_a_link_that_loops_or_leads_nowhere_is_named_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 'loop' (ln -s loop loop) read "unknown dataset 'loop'; known: ...", a dangling link as a misspelt name
    monkeypatch.chdir(tmp_path)
    Path("loop").symlink_to("loop")
    Path("gone").symlink_to("moved.csv")
    for name, message in (("loop", "cannot resolve 'loop': a link on its path loops (too many levels of symbolic "
                                   "links)"),
                          ("loop/d.csv", "cannot resolve 'loop/d.csv': a link on its path loops (too many levels of "
                                         "symbolic links)"),
                          ("gone", "'gone' is a link to 'moved.csv', which does not exist")):
        with pytest.raises(ConfigError) as raised:
            DataSpec(name)
        assert str(raised.value) == message


def test_a_data_file_in_a_folder_that_cannot_be_searched_says_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "locked").mkdir()
    path = _csv(tmp_path / "locked" / "d.csv", "a,b,label\n" + _good_rows())
    _deny(monkeypatch, tmp_path / "locked")
    with pytest.raises(ConfigError, match=re.escape(f"cannot read '{path}': Permission denied")):
        DataSpec(str(path))


def test_npz_member_with_a_broken_npy_header(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': garbage")
        zf.writestr("y.npy", b"")
    # once: numpy's words alone, naming no member
    _error(DataSpec(str(path)), path, "corrupt or truncated .npz (its member 'X.npy' cannot be read: TokenError: ")
    np.save(path.with_suffix(".npy"), np.zeros((4, 2)))
    with zipfile.ZipFile(path, "w") as zf:  # X's header whole, its data cut short
        zf.writestr("X.npy", path.with_suffix(".npy").read_bytes()[:-10])
    _error(DataSpec(str(path)), path, "corrupt or truncated .npz (its member 'X.npy' cannot be read: ValueError: EOF: "
                                      "reading array data, expected 64 bytes got 54)")


def test_an_empty_string_label_in_an_npz_is_refused_not_made_a_class(tmp_path: Path) -> None:
    # y filled with '' where a label was missing became a class named '', blank in every table
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.array(["cat", "dog", "", " "] * 10))
    assert _error(DataSpec(str(path)), path) == (
        f"{path}: y_train[2] is an empty label (20 in y_train): give every sample its class, or leave the unlabelled "
        f"ones out")
    np.savez(path, X_train=X, y_train=np.array([b"cat", b"dog"] * 20), X_val=X[:4], y_val=np.array([b"cat", b""] * 2))
    assert _error(DataSpec(str(path)), path).startswith(f"{path}: y_val[1] is an empty label (2 in y_val)")


# ---------------------------------------------------------------------------------------------
# image folders


def test_a_folder_holding_a_table_names_the_file_to_give_not_an_empty_folder(tmp_path: Path) -> None:
    # --data data/ with data/wine.csv in it said "empty folder"
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "wine.csv").write_text("a,label\n1,x\n")
    (folder / "notes.txt").write_text("n")
    (folder / ".hidden").write_text("h")
    assert _error(DataSpec(str(folder)), folder) == (
        f"{folder}: no images or class subfolders, only 2 files (notes.txt, wine.csv); an image folder holds one "
        f"subfolder per class of PNG or JPEG images; to read a table or array, give the file itself (--data "
        f"{folder / 'wine.csv'})")
    (folder / "wine.csv").unlink()
    assert _error(DataSpec(str(folder)), folder).endswith(
        "only 1 file (notes.txt); an image folder holds one subfolder per class of PNG or JPEG images")

def test_an_image_name_that_is_no_file_is_named_not_left_out(tmp_path: Path) -> None:
    # a link to a moved image and a FIFO were left out without a word: their images were never trained on
    folder = tmp_path / "pets"
    for name in ("cat", "dog"):
        for i in range(4):
            _png(folder / name / f"{i}.png", (4, 4))
    (folder / "cat" / "lost.png").symlink_to(tmp_path / "moved.png")
    assert _error(DataSpec(str(folder)), folder / "cat" / "lost.png") == (
        f"{folder / 'cat' / 'lost.png'}: a link to '{tmp_path / 'moved.png'}', which does not exist; an image folder "
        f"holds PNG or JPEG files")
    (folder / "cat" / "lost.png").unlink()
    os.mkfifo(folder / "dog" / "pipe.jpg")
    assert _error(DataSpec(str(folder)), folder / "dog" / "pipe.jpg") == (
        f"{folder / 'dog' / 'pipe.jpg'}: not a regular file; an image folder holds PNG or JPEG files")
    (folder / "dog" / "pipe.jpg").unlink()
    (folder / "dog" / "more.png").mkdir()  # a folder inside a class folder is passed over, as before
    assert len(load_dataset(DataSpec(str(folder), val_fraction=0.25, test_fraction=0.25)).y_train) == 4


def test_images_in_a_folder_inside_a_class_folder_are_named_not_left_out(tmp_path: Path) -> None:
    # pets/cat/2019/*.png were passed over without a word: never trained on nor scored
    folder = tmp_path / "pets"
    for name in ("cat", "dog"):
        for i in range(4):
            _png(folder / name / f"{i}.png", (4, 4))
    for i in range(2):
        _png(folder / "cat" / "2019" / f"{i}.png", (4, 4))
    assert _error(DataSpec(str(folder)), folder / "cat" / "2019") == (
        f"{folder / 'cat' / '2019'}: a folder inside class 'cat' holding 2 images, which would not be read (a class's "
        f"images are the files directly in its folder); move them up into 'cat', or out of the image folder")
    for i in range(2):
        (folder / "cat" / "2019" / f"{i}.png").rename(folder / "cat" / f"2019-{i}.png")
    (folder / "cat" / "2019" / "notes.txt").write_text("n")  # a folder without images, a link back: passed over
    (folder / "dog" / "loop").symlink_to("..")
    (folder / "dog" / "self").symlink_to(".")
    spec = DataSpec(str(folder), val_fraction=0.25, test_fraction=0.25)
    ds = load_dataset(spec)
    assert np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test])).tolist() == [6, 4]


def test_empty_folder_and_empty_class_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    _error(DataSpec(str(folder)), folder, "empty folder", "one subfolder per class")
    _png(folder / "cat" / "a.png", (4, 4))
    (folder / "dog").mkdir()
    (folder / "dog" / "notes.txt").write_text("no images here")
    _error(DataSpec(str(folder)), folder, "class folder 'dog' holds no PNG or JPEG images (1 file of another kind, "
                                          "e.g. notes.txt: only .png, .jpg and .jpeg are read; convert them to PNG)")


def test_files_of_an_image_folder_that_are_not_read_are_counted_in_a_warning(tmp_path: Path) -> None:
    # once left out without a word: a GIF among PNGs was neither trained on nor said to be left out
    from engine.data import describe_dataset

    folder = tmp_path / "imgs"
    for name in ("cat", "dog"):
        for i in range(6):
            _png(folder / name / f"{i}.png", (4, 4), colour=40 * i)
    Image.new("L", (4, 4)).save(folder / "dog" / "odd.gif")
    (folder / "dog" / ".hidden").write_text("")
    (folder / "cat" / "Thumbs.db").write_text("")
    (folder / "notes.txt").write_text("beside the class folders: no image of any class")
    spec = DataSpec(str(folder), val_fraction=0.25, test_fraction=0.25)
    unread = "is not read, being no PNG or JPEG image by name"
    assert [w for w in describe_dataset(spec)["warnings"] if unread in w] == [
        "1 file in the class folders is not read, being no PNG or JPEG image by name (e.g. dog/odd.gif): only .png, "
        ".jpg and .jpeg are read; convert it to PNG to have it read"]
    Image.new("L", (4, 4)).save(folder / "cat" / "a.bmp")
    assert [w.split(":")[0] for w in describe_dataset(spec)["warnings"] if "not read" in w] == [
        "2 files in the class folders are not read, being no PNG or JPEG image by name (e.g. cat/a.bmp)"]


@pytest.mark.parametrize("denied", ["imgs", "imgs/dog"])
def test_unreadable_image_folder_or_class_folder_says_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, denied: str
) -> None:
    folder = tmp_path / "imgs"
    for name in ("cat", "dog"):
        _png(folder / name / "0.png", (4, 4))
    _deny(monkeypatch, tmp_path / denied)
    _error(DataSpec(str(folder)), folder, f"cannot read {tmp_path / denied}: Permission denied")


def test_an_image_with_more_pixels_than_pillow_opens_quietly_is_refused_by_name(tmp_path: Path, monkeypatch) -> None:
    # Pillow's limit made small: the images here are 16x16 (256 pixels), as a 10000x9000 image is past its default;
    # once loaded, with Pillow's DecompressionBombWarning printed on stderr in two lines
    from PIL import Image as PILImage

    folder = tmp_path / "imgs"
    for i in range(6):
        _png(folder / "a" / f"{i}.png", (16, 16), colour=40 * i)
        _png(folder / "b" / f"{i}.png", (16, 16), colour=200 - 20 * i)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        message = _error(DataSpec(str(folder)), folder / "a" / "0.png")
    assert message == (f"{folder / 'a' / '0.png'}: refused: Image size (256 pixels) exceeds limit of 200 pixels, "
                       "could be decompression bomb DOS attack.")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # past twice the limit: Pillow's own error, said alike
    assert _error(DataSpec(str(folder)), folder / "a" / "0.png") == (
        f"{folder / 'a' / '0.png'}: refused: Image size (256 pixels) exceeds limit of 200 pixels, could be "
        "decompression bomb DOS attack.")


def test_truncated_and_corrupt_images_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    for i in range(6):
        _png(folder / "a" / f"{i}.png", (16, 16), colour=40 * i)
        _png(folder / "b" / f"{i}.png", (16, 16), colour=200 - 20 * i)
    rng = np.random.default_rng(0)
    noisy = folder / "b" / "noisy.jpg"
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(noisy, quality=95)
    raw = noisy.read_bytes()
    noisy.write_bytes(raw[: len(raw) // 2])
    _error(DataSpec(str(folder)), noisy, "not a readable image, corrupt or truncated")
    noisy.write_bytes(b"not an image at all")
    _error(DataSpec(str(folder)), noisy, "not a readable image")
    # a PNG whose header is whole but whose pixel data is cut: found only when decoding
    cut = folder / "a" / "0.png"
    raw = cut.read_bytes()
    cut.write_bytes(raw[: len(raw) - 30])
    noisy.unlink()
    _error(DataSpec(str(folder)), cut, "not a readable image, corrupt or truncated")


def test_npz_with_an_oversized_npy_header_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (" + b"1, " * 6000 + b")}"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header)
    _error(DataSpec(str(path)), path, "corrupt or truncated .npz", "max_header_size")  # numpy's message spans lines


# ---------------------------------------------------------------------------------------------
# too large for the memory available (estimated before reading)


@pytest.fixture()
def one_mebibyte(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend only 1 MiB of memory is available."""
    import engine.formats

    monkeypatch.setattr(engine.formats, "available_memory", lambda: 1 << 20)


def test_csv_image_folder_and_npz_beyond_the_memory_budget(tmp_path: Path, one_mebibyte: None) -> None:
    rows = "".join(f"{i},{i},{i},{i % 2}\n" for i in range(60_000))
    table = _csv(tmp_path / "big.csv", "a,b,c,label\n" + rows)
    _error(DataSpec(str(table)), table, "its table would need", "MiB of memory", "50% of the 1.0 MiB available")
    folder = tmp_path / "imgs"
    for i in range(3):
        _png(folder / "a" / f"{i}.png", (300, 300))
    _error(DataSpec(str(folder)), folder, "3 images would need 3.1 MiB")
    arrays = tmp_path / "big.npz"
    np.savez(arrays, X=np.zeros((1000, 100)), y=np.arange(1000) % 2)
    _error(DataSpec(str(arrays)), arrays, "its arrays would need")


def test_a_short_row_in_a_table_scored_with_an_id_column_is_a_data_error(tmp_path: Path) -> None:
    # the id column was read before the rows were checked: a row without its id cell raised IndexError
    from engine.data import read_inputs

    table = tmp_path / "new.csv"
    table.write_text("a,b,id\n1,2,x1\n3,4\n")
    with pytest.raises(DataError) as err:
        read_inputs(table, label_names=("0", "1"), features=("a", "b"), id_column="id")
    assert str(err.value) == f"{table}: row 2 (line 3) has 2 fields but the header has 3"
    whole = tmp_path / "ok.csv"
    whole.write_text("a,b,id\n1,2,x1\n\n3,4,x2\n")
    X, labels, ids, *_ = read_inputs(whole, label_names=("0", "1"), features=("a", "b"), id_column="id")
    assert (X.tolist(), labels, ids) == ([[1.0, 2.0], [3.0, 4.0]], None, ["x1", "x2"])
