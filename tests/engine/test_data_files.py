"""The user's own data: .npz, .csv/.tsv, image folders, in-memory arrays; splits, identity and description."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import (
    DataSpec,
    Dataset,
    data_identity,
    data_sha256,
    describe_dataset,
    load_dataset,
    read_inputs,
)
from engine.errors import ConfigError, DataError
from tests.cifar_files import write_cifar_folder


def _write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _blobs(n_per_class: int, classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable Gaussian blobs: X (n_per_class * classes, dim) float64, y int64 sorted by class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    X = rng.standard_normal((len(y), dim)) + 4.0 * y[:, None]
    return X, y


def _write_images(root: Path, classes: dict[str, int], size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """root/<class>/img_<i>.png, ``count`` generated images per class of ``size`` (W, H)."""
    rng = np.random.default_rng(seed)
    for index, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = np.clip(rng.normal(60 + 60 * index, 20, shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"img_{i}.png")
    return root


# ---------------------------------------------------------------------------------------------
# DataSpec


def test_dataspec_defaults_and_json_round_trip(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["a", "b", "label"], [[1, 2, "x"]])
    spec = DataSpec(str(path), label_column="label", image_size=None, val_fraction=0.2, test_fraction=0.1, seed=3)
    assert DataSpec().val_fraction == 0.15 and DataSpec().test_fraction == 0.15
    assert DataSpec().label_column is None and DataSpec().image_size is None
    d = json.loads(json.dumps(dataclasses.asdict(spec)))
    assert DataSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}) == spec
    folder = tmp_path / "imgs"
    folder.mkdir()
    with_size = DataSpec(str(folder), image_size=[16, 8])  # a list from JSON becomes a tuple
    assert with_size.image_size == (16, 8)
    assert json.loads(json.dumps(dataclasses.asdict(with_size)))["image_size"] == [16, 8]


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"val_fraction": 0.0}, "0.0"),
        ({"val_fraction": 1.5}, "1.5"),
        ({"test_fraction": float("nan")}, "nan"),
        ({"test_fraction": "0.1"}, "'0.1'"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "0.6 + 0.5"),
        ({"image_size": (0, 32)}, "(0, 32)"),
        ({"image_size": (32,)}, "(32,)"),
        ({"image_size": (32, 32)}, "digits"),
        ({"label_column": ""}, "''"),
        ({"label_column": "y"}, "'y'"),  # digits is not a CSV
        ({"seed": -1}, "-1"),
        ({"seed": np.int64(-1)}, "got -1"),  # NumPy scalars as plain numbers, not np.int64(-1)
        ({"val_fraction": np.float64(1.5)}, "got 1.5"),
        ({"train_size": np.int32(0)}, "got 0"),
        ({"image_size": (np.int64(0), 32)}, "got (0, 32)"),
    ],
)
def test_dataspec_rejects_bad_values_showing_them(kwargs: dict, shown: str) -> None:
    with pytest.raises(ConfigError) as err:
        DataSpec(**kwargs)
    assert shown in str(err.value)


def test_dataspec_paths_missing_or_unsupported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found.*nowhere.npz"):
        DataSpec(str(tmp_path / "nowhere.npz"))
    (tmp_path / "data.xlsx").write_bytes(b"x")
    with pytest.raises(ConfigError, match="unsupported data file.*data.xlsx"):
        DataSpec(str(tmp_path / "data.xlsx"))
    # a spreadsheet, or UCI's iris.data (a CSV by another name), was "expected .npz, .csv or .tsv, ..." alone
    for name, hint in (("data.xlsx", "; save the sheet as CSV (.csv) from the spreadsheet program"),
                       ("iris.data", "; a table as text is read by its name: rename it .csv if comma-separated, .tsv "
                                     "if tab-separated"), ("notes.json", "")):
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(ConfigError) as err:
            DataSpec(str(tmp_path / name))
        assert str(err.value) == (f"unsupported data file {str(tmp_path / name)!r}: expected .npz, .csv or .tsv, an "
                                  f"image folder or a CIFAR-10 folder{hint}")


def test_a_file_read_by_its_format_is_told_the_kinds_as_a_data_name_is(tmp_path: Path) -> None:
    # once "expected .npz, .csv, .tsv, ..." here and "expected .npz, .csv or .tsv, ..." for --data
    from engine.formats import detect_format

    (tmp_path / "data.xlsx").write_bytes(b"x")
    with pytest.raises(DataError) as err:
        detect_format(tmp_path / "data.xlsx")
    assert str(err.value) == (f"{tmp_path / 'data.xlsx'}: unsupported data file; expected .npz, .csv or .tsv, an image "
                              f"folder or a CIFAR-10 folder; save the sheet as CSV (.csv) from the spreadsheet program")


# ---------------------------------------------------------------------------------------------
# .npz


def test_npz_with_all_splits_keeps_them(tmp_path: Path) -> None:
    X, y = _blobs(20, 3, 5, seed=0)
    path = tmp_path / "s.npz"
    np.savez(path, X_train=X, y_train=y, X_val=X[:9], y_val=y[:9], X_test=X[-6:], y_test=y[-6:])
    ds = load_dataset(DataSpec(str(path)))
    assert ds.sizes == {"train": 60, "val": 9, "test": 6}
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.image_shape is None
    assert np.array_equal(ds.X_val, X[:9].astype(np.float32)) and ds.y_test.tolist() == [2] * 6
    assert ds.num_classes == 3 and ds.label_names == ("0", "1", "2")


def test_npz_with_x_y_is_split_stratified_by_the_seed(tmp_path: Path) -> None:
    X, y = _blobs(40, 3, 4, seed=1)
    path = tmp_path / "xy.npz"
    np.savez_compressed(path, X=X, y=y + 5)  # labels 5, 6, 7 become classes 0, 1, 2
    ds = load_dataset(DataSpec(str(path), seed=2))
    assert ds.sizes == {"train": 84, "val": 18, "test": 18}
    for split, each in (("train", 28), ("val", 6), ("test", 6)):
        assert np.bincount(getattr(ds, f"y_{split}")).tolist() == [each] * 3
    assert ds.label_names == ("5", "6", "7")
    rows = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    assert sorted(map(bytes, rows)) == sorted(map(bytes, X.astype(np.float32)))  # a partition of the file
    again = load_dataset(DataSpec(str(path), seed=2))
    other = load_dataset(DataSpec(str(path), seed=3))
    assert np.array_equal(ds.X_val, again.X_val) and not np.array_equal(ds.X_val, other.X_val)
    wide = load_dataset(DataSpec(str(path), val_fraction=0.25, test_fraction=0.1))
    assert wide.sizes == {"train": 78, "val": 30, "test": 12}


def test_npz_train_and_test_only_draws_val_from_train(tmp_path: Path) -> None:
    X, y = _blobs(20, 2, 3, seed=2)
    path = tmp_path / "tt.npz"
    np.savez(path, X_train=X, y_train=y, X_test=X[:4], y_test=y[:4])
    ds = load_dataset(DataSpec(str(path), train_size=10, val_size=4))
    assert ds.sizes == {"train": 10, "val": 4, "test": 4}
    full = load_dataset(DataSpec(str(path)))
    assert full.sizes == {"train": 34, "val": 6, "test": 4}


def test_npz_images_are_flattened_and_keep_their_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    colour = tmp_path / "colour.npz"
    np.savez(colour, X=rng.random((30, 3, 4, 5)), y=np.repeat([0, 1, 2], 10))
    grey = tmp_path / "grey.npz"
    np.savez(grey, X=rng.integers(0, 255, (30, 6, 7), dtype=np.uint8), y=np.repeat(["a", "b", "c"], 10))
    ds = load_dataset(DataSpec(str(colour)))
    assert ds.image_shape == (3, 4, 5) and ds.input_dim == 60
    ds = load_dataset(DataSpec(str(grey)))
    assert ds.image_shape == (1, 6, 7) and ds.input_dim == 42 and ds.label_names == ("a", "b", "c")
    assert ds.X_train.max() <= 255 and ds.X_train.dtype == np.float32


def test_npz_images_with_channels_last_are_read_as_channels_first(tmp_path: Path) -> None:
    # N x 8 x 8 x 3 (as Pillow and Keras keep images) was read as 8 channels of 8 x 3, and per-channel
    # preprocessing took 8 means instead of 3
    rng = np.random.default_rng(0)
    first = rng.random((30, 3, 8, 8)).astype(np.float32)
    y = np.repeat([0, 1, 2], 10)
    np.savez(tmp_path / "first.npz", X=first, y=y)
    np.savez(tmp_path / "last.npz", X=first.transpose(0, 2, 3, 1), y=y)
    a, b = (load_dataset(DataSpec(str(tmp_path / f"{name}.npz"))) for name in ("first", "last"))
    assert a.image_shape == b.image_shape == (3, 8, 8)
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.X_test, b.X_test)
    grey = rng.random((30, 8, 8, 1))
    np.savez(tmp_path / "grey.npz", X=grey, y=y)
    assert load_dataset(DataSpec(str(tmp_path / "grey.npz"))).image_shape == (1, 8, 8)
    # a saved model reads new images alike
    X_first, *_ = read_inputs(tmp_path / "first.npz", label_names=("0", "1", "2"), image_shape=(3, 8, 8))
    X_last, *_ = read_inputs(tmp_path / "last.npz", label_names=("0", "1", "2"), image_shape=(3, 8, 8))
    assert np.array_equal(X_first, X_last) and X_first.shape == (30, 192)
    # a model saved when N x 8 x 8 x 3 was read as 8 channels of 8 x 3 reads its samples as it was trained on them
    X_old, *_ = read_inputs(tmp_path / "last.npz", label_names=("0", "1", "2"), image_shape=(8, 8, 3))
    assert np.array_equal(X_old, first.transpose(0, 2, 3, 1).reshape(30, -1))
    # images flattened into rows are read as they are; images of another shape were scored without a word
    np.savez(tmp_path / "rows.npz", X=first.reshape(30, -1))
    assert np.array_equal(read_inputs(tmp_path / "rows.npz", label_names=("0", "1", "2"), image_shape=(3, 8, 8))[0],
                          X_first)
    np.savez(tmp_path / "wide.npz", X=rng.random((30, 8, 24)))
    with pytest.raises(DataError) as err:
        read_inputs(tmp_path / "wide.npz", label_names=("0", "1", "2"), image_shape=(3, 8, 8))
    assert str(err.value) == (f"{tmp_path / 'wide.npz'}: X holds images of 8 x 24 (shape (30, 8, 24)), but the model "
                              "was trained on images of 3 x 8 x 8 (C x H x W)")
    assert read_inputs(tmp_path / "grey.npz", label_names=("0", "1", "2"), image_shape=(1, 8, 8))[0].shape == (30, 64)
    # images with their channels last are named in the shape the file holds (it gave (30, 3, 8, 8), of no array)
    with pytest.raises(DataError) as err:
        read_inputs(tmp_path / "last.npz", label_names=("0", "1", "2"), image_shape=(3, 16, 16))
    assert str(err.value) == (f"{tmp_path / 'last.npz'}: X holds images of 3 x 8 x 8 (shape (30, 8, 8, 3)), but the "
                              "model was trained on images of 3 x 16 x 16 (C x H x W)")
    with pytest.raises(DataError) as err:
        read_inputs(tmp_path / "last.npz", label_names=("0", "1", "2"), input_dim=192)
    assert str(err.value) == (f"{tmp_path / 'last.npz'}: X holds samples of 8 x 8 x 3 (shape (30, 8, 8, 3)), but the "
                              "model was trained on rows of 192 features (N x 192), not images: give X as rows")


# ---------------------------------------------------------------------------------------------
# .csv / .tsv


def test_csv_with_string_labels_maps_them_in_sorted_order(tmp_path: Path) -> None:
    rows = [[i, i * 0.5, ["setosa", "virginica", "versicolor"][i % 3]] for i in range(60)]
    path = _write_csv(tmp_path / "iris.csv", ["length", "width", "species"], rows)
    ds = load_dataset(DataSpec(str(path)))
    assert ds.label_names == ("setosa", "versicolor", "virginica") and ds.num_classes == 3
    assert ds.sizes == {"train": 42, "val": 9, "test": 9} and ds.input_dim == 2
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    for row, label in zip(X, y):  # every row keeps its own label
        assert ds.label_names[label] == ["setosa", "virginica", "versicolor"][int(row[0]) % 3]


def test_tsv_with_a_named_numeric_label_column_in_the_middle(tmp_path: Path) -> None:
    rows = [[i, c, -i] for c in (2, 10, 7) for i in range(10)]
    path = _write_csv(tmp_path / "t.tsv", ["f1", "target", "f2"], rows, delimiter="\t")
    ds = load_dataset(DataSpec(str(path), label_column="target"))
    assert ds.label_names == ("2", "7", "10")  # numbers in numeric order
    assert ds.input_dim == 2 and ds.sizes == {"train": 18, "val": 6, "test": 6}
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    assert np.array_equal(X[:, 1], -X[:, 0])  # the label column is not a feature


def test_a_trailing_comma_on_every_line_adds_no_column(tmp_path: Path) -> None:
    from engine.formats import table_columns

    # the unnamed last column was the label column, and every row's label was refused as empty
    path = tmp_path / "t.csv"
    path.write_text("x,port,label,\r\n" + "".join(f"{i},{'SCQ'[i % 3]},{'ab'[i % 2]},\r\n" for i in range(20)))
    ds = load_dataset(DataSpec(str(path)))
    assert ds.label_names == ("a", "b") and ds.feature_names == ("x", "port=C", "port=Q", "port=S")
    assert table_columns(path, ",", None) == (("x", "port"), "label")
    X, labels, *_ = read_inputs(path, label_names=ds.label_names, features=("x", "port"), label_column="label",
                                encoding=ds.encoding)
    assert X.shape == (20, 4) and labels[:3] == ["a", "b", "a"]
    # a value under no name is not dropped unseen
    path.write_text("x,label,\n1,a,\n2,b,7\n")
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(path)))
    assert str(err.value) == (f"{path}: row 2 (line 3) has a value in column 3, which the header leaves unnamed; name "
                              "it in the header")


@pytest.mark.parametrize(("loader", "classes", "features", "counts"), [
    ("load_wine", 3, 13, [59, 71, 48]),
    ("load_breast_cancer", 2, 30, [212, 357]),
])
def test_sklearn_bundled_sets_written_to_csv(tmp_path: Path, loader: str, classes: int, features: int, counts: list[int]) -> None:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)(as_frame=True)
    frame = bunch.frame
    path = tmp_path / f"{loader}.csv"
    frame.to_csv(path, index=False)
    ds = load_dataset(DataSpec(str(path), label_column="target"))
    assert ds.num_classes == classes and ds.input_dim == features and ds.image_shape is None
    assert ds.label_names == tuple(str(c) for c in range(classes))
    total = np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test])).tolist()
    assert total == counts and sum(ds.sizes.values()) == len(frame)
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    assert np.allclose(np.sort(X[:, 0]), np.sort(frame.iloc[:, 0].to_numpy(np.float32)))
    info = describe_dataset(DataSpec(str(path), label_column="target"))
    assert any("standardize" in w for w in info["warnings"])  # e.g. proline ~1e3 vs hue ~1e-1


# ---------------------------------------------------------------------------------------------
# image folders


def test_image_folder_of_colour_pngs(tmp_path: Path) -> None:
    root = _write_images(tmp_path / "pets", {"cat": 12, "dog": 9, "owl": 6}, (10, 6))
    ds = load_dataset(DataSpec(str(root)))
    assert ds.image_shape == (3, 6, 10) and ds.input_dim == 180
    assert ds.label_names == ("cat", "dog", "owl")
    assert np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test])).tolist() == [12, 9, 6]
    assert ds.sizes == {"train": 19, "val": 4, "test": 4}
    assert 0.0 <= ds.X_train.min() and ds.X_train.max() <= 1.0 and ds.X_train.dtype == np.float32
    # channel-first: channel 0 of the first image is its red plane
    first = np.asarray(Image.open(root / "cat" / "img_0.png"), dtype=np.float32) / 255
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test]).reshape(-1, 3, 6, 10)
    assert any(np.allclose(x[0], first[:, :, 0]) and np.allclose(x[2], first[:, :, 2]) for x in X)


def test_image_folder_greyscale_and_resized(tmp_path: Path) -> None:
    root = _write_images(tmp_path / "g", {"a": 5, "b": 5}, (8, 8), mode="L")
    _write_images(tmp_path / "g", {"c": 5}, (12, 4), mode="L", seed=1)
    ds = load_dataset(DataSpec(str(root), image_size=(6, 5)))
    assert ds.image_shape == (1, 5, 6) and ds.input_dim == 30 and ds.num_classes == 3


def test_sixteen_bit_grey_pngs_keep_their_levels(tmp_path: Path) -> None:
    # once: Pillow's convert to L (or to RGB, beside a colour image) clipped every level above 255 to 255, so 1000,
    # 30000 and 65535 were all 1.0
    levels = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    for name in ("a", "b"):
        (tmp_path / "deep" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(levels).save(tmp_path / "deep" / name / f"{i}.png")
    assert Image.open(tmp_path / "deep" / "a" / "0.png").mode == "I;16"
    ds = load_dataset(DataSpec(str(tmp_path / "deep")))
    expected = np.array([0, 1000, 30000, 65535], dtype=np.float32) / 65535
    assert ds.image_shape == (1, 2, 2) and np.allclose(ds.X_train, expected, rtol=1e-6, atol=0)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "deep" / "a" / "colour.png")
    mixed = load_dataset(DataSpec(str(tmp_path / "deep")))
    assert mixed.image_shape == (3, 2, 2)
    grey = [x for x in np.concatenate([mixed.X_train, mixed.X_val, mixed.X_test]) if x.any()]
    assert len(grey) == 6 and all(np.allclose(x, np.tile(expected, 3), rtol=1e-6, atol=0) for x in grey)
    resized = load_dataset(DataSpec(str(tmp_path / "deep"), image_size=(4, 4)))
    smooth = np.asarray(Image.fromarray(levels.astype(np.float32)).resize((4, 4), Image.Resampling.BILINEAR)) / 65535
    assert all(np.allclose(x, np.tile(smooth.ravel(), 3), rtol=1e-5, atol=0) for x in resized.X_train if x.any())


def test_a_32_bit_grey_image_keeps_its_levels_within_0_and_1(tmp_path: Path) -> None:
    # Pillow's mode I holds 32-bit levels (a TIFF under a .png name): read as 16-bit ones, 100000 was 1.53 and -5
    # below 0, where every other pixel lies in [0, 1]
    for name in ("a", "b"):
        (tmp_path / "deep" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.array([[0, 100000], [-5, 7]], dtype=np.int32)).save(
                tmp_path / "deep" / name / f"{i}.png", format="TIFF")
    assert Image.open(tmp_path / "deep" / "a" / "0.png").mode == "I"
    ds = load_dataset(DataSpec(str(tmp_path / "deep")))
    assert np.allclose(ds.X_train, np.array([0, 65535, 0, 7], dtype=np.float32) / 65535, rtol=1e-6, atol=0)


def test_image_folder_mixed_sizes_without_image_size_names_two_sizes(tmp_path: Path) -> None:
    root = _write_images(tmp_path / "m", {"a": 3}, (8, 8))
    _write_images(tmp_path / "m", {"b": 3}, (9, 7), seed=1)
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(str(root)))
    message = str(err.value)
    assert "8x8" in message and "9x7" in message and "image_size" in message and "\n" not in message
    # each image by its class folder too: every class's first file is img_0.png
    assert message == (f"{root}: images of different sizes, 8x8 (a/img_0.png) and 9x7 (b/img_0.png); "
                       f"give image_size (--image-size WxH) to resize them")


# ---------------------------------------------------------------------------------------------
# in-memory arrays


def test_from_arrays_splits_stratified_and_keeps_given_splits() -> None:
    X, y = _blobs(30, 2, 4, seed=5)
    labels = np.where(y == 0, "no", "yes")
    ds = Dataset.from_arrays(X, labels, seed=1, val_fraction=0.2, test_fraction=0.2)
    assert ds.sizes == {"train": 36, "val": 12, "test": 12} and ds.label_names == ("no", "yes")
    assert np.bincount(ds.y_val).tolist() == [6, 6] and ds.name == "arrays"
    given = Dataset.from_arrays(X, y, X_test=X[:5], y_test=y[:5], name="mine")
    assert given.sizes == {"train": 50, "val": 10, "test": 5} and given.name == "mine"
    images = Dataset.from_arrays(np.zeros((20, 2, 3, 3)), np.arange(20) % 2)
    assert images.image_shape == (2, 3, 3) and images.input_dim == 18
    with pytest.raises(ConfigError, match="X_val and y_val"):
        Dataset.from_arrays(X, y, X_val=X)
    with pytest.raises(ConfigError, match="val_fraction.*-0.1"):
        Dataset.from_arrays(X, y, val_fraction=-0.1)


# ---------------------------------------------------------------------------------------------
# identity and description


def test_identity_of_a_file_hashes_its_bytes(tmp_path: Path) -> None:
    X, y = _blobs(10, 2, 3, seed=0)
    path = tmp_path / "a.npz"
    np.savez(path, X=X, y=y)
    spec = DataSpec(str(path))
    identity = data_identity(spec)
    assert identity["path"] == str(path.resolve()) and identity["format"] == "npz"
    assert identity["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert identity["shapes"] == {"train": [12, 3], "val": [4, 3], "test": [4, 3]}  # 1.5 of each class rounds to 2
    assert identity["classes"] == ["0", "1"] and identity["image_shape"] is None
    json.dumps(identity)
    np.savez(path, X=X + 1, y=y)
    assert data_identity(spec)["sha256"] != identity["sha256"]


def test_a_cached_hash_reads_a_folder_again_only_once_one_of_its_files_changed(tmp_path: Path, monkeypatch) -> None:
    import engine.data

    root = _write_images(tmp_path / "imgs", {"a": 3, "b": 3}, (4, 4))
    spec = DataSpec(str(root))
    hashed = []
    real = engine.data.sha256_files
    monkeypatch.setattr(engine.data, "sha256_files", lambda path, files: hashed.append(len(files)) or real(path, files))
    first = data_sha256(spec, cached=True)
    assert data_sha256(spec, cached=True) == first and hashed == [6]  # unchanged: from the cache
    image = root / "b" / "img_2.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # one file touched
    assert data_sha256(spec, cached=True) == first and hashed == [6, 6]
    image.rename(root / "b" / "img_9.png")  # same bytes and times, another name
    assert data_sha256(spec, cached=True) != first and hashed == [6, 6, 6]
    assert data_sha256(spec) == data_sha256(spec, cached=True) and hashed == [6, 6, 6, 6]  # uncached: read


def test_identity_of_folders_covers_paths_and_bytes(tmp_path: Path) -> None:
    root = _write_images(tmp_path / "imgs", {"a": 3, "b": 3}, (4, 4))
    spec = DataSpec(str(root))
    first = data_identity(spec)
    assert first["format"] == "image_folder" and first["classes"] == ["a", "b"] and first["image_shape"] == [3, 4, 4]
    assert data_identity(spec)["sha256"] == first["sha256"]
    (root / "b" / "img_2.png").rename(root / "b" / "img_9.png")  # same bytes, other name
    assert data_identity(spec)["sha256"] != first["sha256"]
    cifar = write_cifar_folder(tmp_path, 10, seed=0)
    by_path = data_identity(DataSpec(str(cifar)))
    by_name = data_identity(DataSpec("cifar10", data_dir=str(tmp_path)))
    assert by_path["format"] == by_name["format"] == "cifar10" and by_path["sha256"] == by_name["sha256"]
    assert by_path["shapes"] == {"train": [45, 3072], "val": [5, 3072], "test": [10, 3072]}
    builtin = data_identity(DataSpec("spiral"))
    assert builtin["format"] == "builtin" and builtin["path"] is None and builtin["classes"] == ["0", "1", "2"]


def test_describe_counts_ranges_and_warnings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 200 + [1] * 12 + [2] * 6)
    X = np.c_[rng.normal(0, 1000, len(y)), rng.normal(0, 1, len(y)), np.zeros(len(y))]
    path = tmp_path / "skewed.npz"
    np.savez(path, X=X, y=np.array(["big", "mid", "tiny"])[y])
    info = describe_dataset(DataSpec(str(path)))
    assert info["samples"] == {"train": 152, "val": 33, "test": 33} and info["features"] == 3
    assert info["classes"] == [
        {"name": "big", "train": 140, "val": 30, "test": 30},
        {"name": "mid", "train": 8, "val": 2, "test": 2},
        {"name": "tiny", "train": 4, "val": 1, "test": 1},
    ]
    assert info["value_range"]["min"] == pytest.approx(X.min()) and info["value_range"]["max"] == pytest.approx(X.max())
    assert info["feature_std"]["min"] == 0.0 and info["feature_std"]["max"] > 500
    text = " | ".join(info["warnings"])
    assert "standardize" in text and "1 feature(s) constant" in text
    assert "'mid' (8)" in text and "'tiny' (4)" in text and "imbalance" in text and "35x" in text
    json.dumps(info)
    clean = describe_dataset(DataSpec("digits"))
    assert clean["warnings"] == [] and clean["image_shape"] == [1, 8, 8] and clean["samples"]["train"] == 1257


def test_describe_warns_of_images_of_0_to_255_read_as_they_are_not_of_an_image_folders(tmp_path: Path) -> None:
    # a CIFAR-shaped .npz of uint8 pixels trained at 0..255 (initial loss 3.1 for ln 10, lr 0.008 exploding) with no
    # word of it, where the same images as a folder of PNGs are scaled to [0, 1]
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8), np.arange(60) % 3
    np.savez(tmp_path / "pixels.npz", X=X, y=y)
    np.savez(tmp_path / "scaled.npz", X=X / np.float32(255), y=y)
    np.savez(tmp_path / "centred.npz", X=X - 128.0, y=y)
    warnings = describe_dataset(DataSpec(str(tmp_path / "pixels.npz")))["warnings"]
    assert warnings == [
        "image values 0 to 255, read as they are (an image folder's and cifar10's are scaled to [0, 1]), where the "
        "initialisation assumes about unit scale: the initial loss is off ln C and good learning rates are lower; "
        "divide them by 255 in the file, or try --preprocess standardize"]
    assert describe_dataset(DataSpec(str(tmp_path / "pixels.npz")), standardized=True)["warnings"] == []
    for quiet in ("scaled.npz", "centred.npz"):
        assert describe_dataset(DataSpec(str(tmp_path / quiet)))["warnings"] == [], quiet
    folder = _write_images(tmp_path / "photos", {"a": 20, "b": 20}, (8, 8))
    assert describe_dataset(DataSpec(str(folder)))["warnings"] == []
    # the same pixels as rows of 192 features (CS231n's X_train.reshape(N, -1)): no image shape, one scale
    np.savez(tmp_path / "rows.npz", X=X.reshape(60, -1), y=y)
    rows = describe_dataset(DataSpec(str(tmp_path / "rows.npz")))
    std = rows["feature_std"]
    assert rows["warnings"] == [
        f"features of std {std['min']:.3g} to {std['max']:.3g} (values 0 to 255), where the initialisation assumes "
        "about unit scale: the initial loss is off ln C and good learning rates are lower; try --preprocess "
        "standardize"]
    np.savez(tmp_path / "rows01.npz", X=X.reshape(60, -1) / 255, y=y)
    assert describe_dataset(DataSpec(str(tmp_path / "rows01.npz")))["warnings"] == []


def test_describe_warns_of_names_that_differ_only_in_case(tmp_path: Path) -> None:
    # 'male' and 'Male' are two categories (two classes for 'yes' and 'Yes'): most often one thing typed two ways
    rows = [[i % 5, ("male", "Male", "female")[i % 3], ("yes", "Yes", "no")[i % 3]] for i in range(60)]
    info = describe_dataset(DataSpec(str(_write_csv(tmp_path / "case.csv", ["x", "sex", "label"], rows))))
    assert info["warnings"] == ["'sex' ('Male', 'male'), the label ('Yes', 'yes'): names that differ only in case are "
                                "told apart (as different categories or classes); write them alike where they mean "
                                "the same"]
    rows = [[i % 5, ("male", "female")[i % 2], ("yes", "no")[i % 3 == 0]] for i in range(60)]
    assert describe_dataset(DataSpec(str(_write_csv(tmp_path / "same.csv", ["x", "sex", "label"], rows))))[
        "warnings"] == []


def test_describe_warns_of_a_column_that_numbers_the_rows(tmp_path: Path) -> None:
    # an id column is read as one more feature; in a file sorted by class it even predicts the class
    X, y = _blobs(20, 3, 2, seed=0)
    rows = [[1000 + i, *x, f"c{label}"] for i, (x, label) in enumerate(zip(X.round(3), y))]
    path = _write_csv(tmp_path / "ids.csv", ["id", "a", "b", "label"], rows)
    info = describe_dataset(DataSpec(str(path)))
    assert info["warnings"] == ["column 'id' holds a different whole number in every row (1000 to 1059), as a "
                                "row id does: it is trained on as a feature; leave it out with --ignore-column id if "
                                "it is one"]
    # a whole-number feature that repeats is a feature, not an id
    counts = _write_csv(tmp_path / "counts.csv", ["n", "a", "label"],
                        [[i % 7, x[0], f"c{label}"] for i, (x, label) in enumerate(zip(X.round(3), y))])
    assert not any("row id" in w for w in describe_dataset(DataSpec(str(counts)))["warnings"])


def test_a_models_columns_are_read_by_name_in_its_order(tmp_path: Path) -> None:
    from engine.formats import read_columns

    path = _write_csv(tmp_path / "new.csv", ["a", "b", "label"], [[1, 2, "x"], [3, 4, "y"]])
    X, labels = read_columns(path, ",", ("b", "a"), "label")
    assert X.tolist() == [[2.0, 1.0], [4.0, 3.0]] and labels == ["x", "y"]


def test_integers_that_merge_as_float32_are_named_in_a_warning(tmp_path: Path) -> None:
    # once said only by "1 feature(s) constant": 2**60 + 0..199 are one float32, 2**24 + 0..199 are 101
    n = 200
    X = np.zeros((n, 2), dtype=np.uint64)
    X[:, 0] = np.arange(n) % 7
    X[:, 1] = np.uint64(2**60) + np.arange(n, dtype=np.uint64)
    np.savez(tmp_path / "big.npz", X=X, y=np.arange(n) % 2)
    ds = load_dataset(DataSpec(str(tmp_path / "big.npz")))
    assert ds.notes == ("X feature 1 (counting from 0): values up to 1152921504606847175 are beyond the integers "
                        "float32 holds exactly (2^24 = 16777216), the dtype trained on: its 200 distinct values become "
                        "1; subtract an offset or rescale them before saving",)
    assert ds.notes[0] in describe_dataset(DataSpec(str(tmp_path / "big.npz")))["warnings"]
    np.savez(tmp_path / "splits.npz", X_train=X, y_train=np.arange(n) % 2)  # each array named as the file names it
    assert load_dataset(DataSpec(str(tmp_path / "splits.npz"))).notes[0].startswith(
        "X_train feature 1 (counting from 0): values up to 1152921504606847175 are beyond")
    np.savez(tmp_path / "signed.npz", X=np.stack([np.arange(n) % 7, -(2**24) - np.arange(n)], axis=1),
             y=np.arange(n) % 2)
    assert load_dataset(DataSpec(str(tmp_path / "signed.npz"))).notes[0].startswith(
        "X feature 1 (counting from 0): values up to 16777415 are beyond the integers float32 holds exactly "
        "(2^24 = 16777216), the dtype trained on: its 200 distinct values become 101;")
    path = _write_csv(tmp_path / "ids.csv", ["a", "id", "label"], [[i % 7, 2**24 + i, i % 2] for i in range(n)])
    assert load_dataset(DataSpec(str(path))).notes == (
        "column 'id': values up to 16777415 are beyond the integers float32 holds exactly (2^24 = 16777216), the dtype "
        "trained on: its 200 distinct values become 101; subtract an offset or rescale them before saving",)
    # exact in float32: no warning, whatever the values' size (every other integer up to 2**25)
    np.savez(tmp_path / "even.npz", X=np.stack([np.arange(n) % 7, 2**24 + 2 * np.arange(n)], axis=1),
             y=np.arange(n) % 2)
    assert load_dataset(DataSpec(str(tmp_path / "even.npz"))).notes == ()


def test_integers_of_a_table_that_merge_as_float32_are_counted_over_the_whole_file(tmp_path: Path, monkeypatch) -> None:
    # the rows read at once were judged alone: the first read's ids below 2**24 were not counted ("its 3 distinct
    # values become 2", of 6), and values that merge only with another read's were never seen
    monkeypatch.setattr("engine.formats.CSV_CHUNK_ROWS", 3)
    ids = [1, 2, 3, 2**30, 2**30 + 1, 2**30 + 2]  # as float32: 1, 2, 3, 2**30 (the second read's 3 are one)
    path = _write_csv(tmp_path / "ids.csv", ["a", "id", "label"], [[i % 7, v, i % 2] for i, v in enumerate(ids)])
    assert load_dataset(DataSpec(str(path))).notes == (
        "column 'id': values up to 1073741826 are beyond the integers float32 holds exactly (2^24 = 16777216), the "
        "dtype trained on: its 6 distinct values become 4; subtract an offset or rescale them before saving",)
    across = [1, 2, 2**30, 2**30 + 1, 5, 6]  # one in each read: they merge only with each other
    path = _write_csv(tmp_path / "across.csv", ["a", "id", "label"], [[i % 7, v, i % 2] for i, v in enumerate(across)])
    assert load_dataset(DataSpec(str(path))).notes == (
        "column 'id': values up to 1073741825 are beyond the integers float32 holds exactly (2^24 = 16777216), the "
        "dtype trained on: its 6 distinct values become 5; subtract an offset or rescale them before saving",)


def test_describe_names_what_always_predicting_the_most_frequent_class_scores(tmp_path: Path) -> None:
    # churn labels 70/25/5 %: 19 of 47 coarse trials of search auto sat at exactly 0.7000, and nothing said that
    # answering 'stayed' for every row scores that
    def warnings(counts: dict[str, int]) -> list[str]:  # a fifth of each class's training rows in validation
        y = np.repeat(list(counts), list(counts.values()))
        y_val = np.repeat(list(counts), [n // 5 for n in counts.values()])
        path = tmp_path / "labels.npz"
        rng = np.random.default_rng(0)
        np.savez(path, X_train=rng.normal(size=(len(y), 2)), y_train=y, X_val=rng.normal(size=(len(y_val), 2)),
                 y_val=y_val, X_test=rng.normal(size=(len(y_val), 2)), y_test=y_val)
        return [w for w in describe_dataset(DataSpec(str(path)))["warnings"] if w.startswith("always predicting")]

    assert warnings({"stayed": 700, "downgraded": 250, "churned": 50}) == [
        "always predicting the most frequent class, 'stayed' (70% of training), scores 0.7000 on validation: a "
        "validation accuracy near that has learned nothing but the class frequencies"]
    assert warnings({"a": 1010, "b": 495, "c": 495}) != []  # past half of three: twice the others' mean share
    assert warnings({"a": 1000, "b": 500, "c": 500}) == []
    assert warnings({"yes": 1340, "no": 660}) != [] and warnings({"yes": 1000, "no": 500}) == []  # 2/3 of two
    assert not any(w.startswith("always predicting") for w in describe_dataset(DataSpec("digits"))["warnings"])
