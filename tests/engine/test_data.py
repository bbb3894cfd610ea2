"""Datasets: digits splits, CIFAR-10 batches (format, restricted unpickling, validation), generators, mmap cache."""
from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from engine.data import (
    DATASETS,
    DataSpec,
    Dataset,
    load_cache,
    load_dataset,
    read_cifar_batch,
    save_cache,
)
from engine.errors import ConfigError, DataError
from tests.cifar_files import write_cifar_batch, write_cifar_folder

N_PER_BATCH = 20


@pytest.fixture()
def cifar_root(tmp_path: Path) -> Path:
    """A small cifar-10-batches-py folder: 5 x 20 train images, 20 test images."""
    return write_cifar_folder(tmp_path, N_PER_BATCH, seed=3)


def _replace_batch(root: Path, name: str, payload: bytes) -> None:
    (root / name).write_bytes(payload)


# ---------------------------------------------------------------------------------------------
# spec


def test_dataspec_rejects_unknown_name_and_lists_known() -> None:
    with pytest.raises(ConfigError) as err:
        DataSpec(name="mnist")
    assert "'mnist'" in str(err.value)
    for name in DATASETS:
        assert name in str(err.value)


@pytest.mark.parametrize("field", ["train_size", "val_size", "test_size"])
def test_dataspec_rejects_sizes_below_one(field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field}.*0"):
        DataSpec(**{field: 0})


# ---------------------------------------------------------------------------------------------
# digits


def test_digits_default_split_shapes_and_labels() -> None:
    ds = load_dataset(DataSpec())
    assert ds.name == "digits"
    assert ds.X_train.shape == (1257, 64) and ds.X_val.shape == (270, 64) and ds.X_test.shape == (270, 64)
    assert ds.y_train.shape == (1257,) and ds.y_val.shape == (270,) and ds.y_test.shape == (270,)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.num_classes == 10 and ds.input_dim == 64 and ds.image_shape == (1, 8, 8)
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.min() >= 0 and y.max() <= 9
    assert set(np.unique(ds.y_train)) == set(range(10))
    # pixel values 0..16 scaled to [0, 1]
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0


def test_digits_split_is_a_partition_of_all_1797_samples() -> None:
    ds = load_dataset(DataSpec())
    rows = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    from sklearn.datasets import load_digits

    X, _ = load_digits(return_X_y=True)
    key = lambda a: sorted(map(bytes, np.asarray(a, dtype=np.float32)))  # noqa: E731
    assert key(rows) == key(X.astype(np.float32) / np.float32(16))


def test_digits_same_seed_same_split_other_seed_other_split() -> None:
    a = load_dataset(DataSpec(seed=1))
    b = load_dataset(DataSpec(seed=1))
    c = load_dataset(DataSpec(seed=2))
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)


def test_sizes_take_the_first_k_of_each_split() -> None:
    full = load_dataset(DataSpec(seed=4))
    small = load_dataset(DataSpec(seed=4, train_size=100, val_size=50, test_size=10))
    assert small.X_train.shape == (100, 64) and small.X_val.shape == (50, 64) and small.X_test.shape == (10, 64)
    assert np.array_equal(small.X_train, full.X_train[:100]) and np.array_equal(small.y_val, full.y_val[:50])


def test_train_size_larger_than_available_names_both_numbers() -> None:
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(train_size=5000))
    assert "5000" in str(err.value) and "1257" in str(err.value)


# ---------------------------------------------------------------------------------------------
# spiral and synthetic


def test_spiral_shapes_and_determinism() -> None:
    ds = load_dataset(DataSpec(name="spiral", seed=7))
    assert ds.X_train.shape == (630, 2) and ds.X_val.shape == (135, 2) and ds.X_test.shape == (135, 2)
    assert ds.num_classes == 3 and ds.image_shape is None
    assert np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test])).tolist() == [300, 300, 300]
    radii = np.linalg.norm(np.concatenate([ds.X_train, ds.X_val, ds.X_test]), axis=1)
    assert radii.max() <= 1.0 + 1e-6
    again = load_dataset(DataSpec(name="spiral", seed=7))
    assert np.array_equal(ds.X_train, again.X_train)


def test_synthetic_is_cifar_shaped_and_deterministic() -> None:
    ds = load_dataset(DataSpec(name="synthetic", train_size=300, val_size=100, test_size=50, seed=5))
    assert ds.X_train.shape == (300, 3072) and ds.X_val.shape == (100, 3072) and ds.X_test.shape == (50, 3072)
    assert ds.X_train.dtype == np.float32 and ds.num_classes == 10 and ds.image_shape == (3, 32, 32)
    assert np.array_equal(ds.X_val, load_dataset(DataSpec(name="synthetic", train_size=300, val_size=100, test_size=50, seed=5)).X_val)
    default = load_dataset(DataSpec(name="synthetic", seed=5))
    assert default.X_train.shape == (5000, 3072) and default.X_val.shape == (1000, 3072)


def test_synthetic_is_learnable_by_nearest_class_mean() -> None:
    ds = load_dataset(DataSpec(name="synthetic", train_size=2000, val_size=500, test_size=10, seed=0))
    means = np.stack([ds.X_train[ds.y_train == c].mean(axis=0) for c in range(10)])
    dist = ((ds.X_val[:, None, :] - means[None]) ** 2).sum(axis=2)
    accuracy = float((dist.argmin(axis=1) == ds.y_val).mean())
    assert accuracy > 0.3  # chance is 0.1


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_fixture_loads_with_exact_shapes_and_labels(cifar_root: Path) -> None:
    ds = load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root)))
    # 100 training images: the last 10 % become val
    assert ds.X_train.shape == (90, 3072) and ds.X_val.shape == (10, 3072) and ds.X_test.shape == (20, 3072)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.num_classes == 10 and ds.image_shape == (3, 32, 32)
    assert ds.label_names is not None and ds.label_names[0] == "airplane" and ds.label_names[9] == "truck"

    written = [pickle.loads((cifar_root / f"data_batch_{i}").read_bytes(), encoding="bytes") for i in range(1, 6)]
    labels = sum((batch[b"labels"] for batch in written), [])
    data = np.concatenate([batch[b"data"] for batch in written])
    assert ds.y_train.tolist() + ds.y_val.tolist() == labels
    assert np.array_equal(np.concatenate([ds.X_train, ds.X_val]), data.astype(np.float32) / np.float32(255))
    test = pickle.loads((cifar_root / "test_batch").read_bytes(), encoding="bytes")
    assert ds.y_test.tolist() == test[b"labels"]


def test_cifar_parent_folder_and_val_size(cifar_root: Path) -> None:
    ds = load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root.parent), val_size=25, train_size=60, test_size=5))
    assert ds.X_train.shape == (60, 3072) and ds.X_val.shape == (25, 3072) and ds.X_test.shape == (5, 3072)


def test_cifar_writer_uses_the_original_python2_pickle_format(cifar_root: Path) -> None:
    raw = (cifar_root / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2
    globals_used = {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"batch_label"] == b"training batch 1 of 5"
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (N_PER_BATCH, 3072)
    assert isinstance(batch[b"labels"], list) and all(type(v) is int for v in batch[b"labels"])
    assert len(batch[b"filenames"]) == N_PER_BATCH and isinstance(batch[b"filenames"][0], bytes)
    meta = pickle.loads((cifar_root / "batches.meta").read_bytes(), encoding="bytes")
    assert meta[b"num_cases_per_batch"] == N_PER_BATCH and meta[b"num_vis"] == 3072 and len(meta[b"label_names"]) == 10


def test_cifar_batch_with_str_keys_is_accepted(tmp_path: Path) -> None:
    data = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072) % 256
    path = write_cifar_batch(tmp_path / "b", data, [3, 9], key_type=str)
    X, y = read_cifar_batch(path)
    assert X.dtype == np.uint8 and np.array_equal(X, data) and y.tolist() == [3, 9]


def test_cifar_numpy2_protocol4_pickle_is_accepted(tmp_path: Path) -> None:
    # numpy 2 writes numpy._core.multiarray._reconstruct; protocol 4 writes bytes without _codecs
    data = np.zeros((3, 3072), dtype=np.uint8)
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [0, 1, 2]}, protocol=4))
    X, y = read_cifar_batch(path)
    assert X.shape == (3, 3072) and y.tolist() == [0, 1, 2]


class _CreatesMarker:
    """Unpickling this calls open(marker, "w"), which would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _RunsShell:
    """Unpickling this calls os.system("touch marker")."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("payload_class", "global_name"),
    [(_CreatesMarker, f"{open.__module__}.open"), (_RunsShell, f"{os.system.__module__}.system")],
)
def test_malicious_pickle_is_refused_and_runs_nothing(
    cifar_root: Path, tmp_path: Path, payload_class: type, global_name: str
) -> None:
    marker = tmp_path / "pwned"
    evil = {b"data": payload_class(marker), b"labels": [0]}
    _replace_batch(cifar_root, "data_batch_1", pickle.dumps(evil, protocol=4))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root)))
    message = str(err.value)
    assert "data_batch_1" in message and "refused" in message
    assert global_name in message
    assert not marker.exists()


def test_truncated_batch_is_corrupt(cifar_root: Path) -> None:
    raw = (cifar_root / "data_batch_3").read_bytes()
    _replace_batch(cifar_root, "data_batch_3", raw[: len(raw) // 2])
    with pytest.raises(DataError, match="corrupt") as err:
        load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root)))
    assert "data_batch_3" in str(err.value)


def test_garbage_batch_is_corrupt(cifar_root: Path) -> None:
    _replace_batch(cifar_root, "test_batch", b"this is not a pickle at all")
    with pytest.raises(DataError, match="corrupt.*test_batch"):
        load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root)))


def test_labels_out_of_range_are_refused(cifar_root: Path) -> None:
    data = np.zeros((3, 3072), dtype=np.uint8)
    write_cifar_batch(cifar_root / "data_batch_2", data, [0, 10, 1])
    with pytest.raises(DataError, match="0..9") as err:
        load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root)))
    assert "data_batch_2" in str(err.value)


def test_label_count_mismatch_is_refused(cifar_root: Path) -> None:
    write_cifar_batch(cifar_root / "data_batch_2", np.zeros((3, 3072), dtype=np.uint8), [0, 1])
    with pytest.raises(DataError, match="2 labels for 3 images"):
        load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root)))


@pytest.mark.parametrize("data, reason", [
    (np.zeros((3, 100), dtype=np.uint8), "data must be a uint8 N x 3072 array, got shape (3, 100) dtype uint8"),
    (np.full((3, 3072), 300, dtype=np.int64), "pixel values must be in 0..255, got 300..300"),
    (np.zeros((3, 3072), dtype=np.float32), "data must be a uint8 N x 3072 array, got shape (3, 3072) dtype float32"),
])
def test_data_that_is_not_uint8_n_by_3072_is_refused(cifar_root: Path, data: np.ndarray, reason: str) -> None:
    write_cifar_batch(cifar_root / "data_batch_4", data, [0, 1, 2])
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root)))
    assert str(err.value) == f"CIFAR-10 batch {cifar_root / 'data_batch_4'}: {reason}"


def test_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name="cifar10", data_dir=str(missing)))
    assert str(err.value) == f"CIFAR-10 folder not found: {missing}"


def test_missing_batch_file_is_named(cifar_root: Path) -> None:
    (cifar_root / "data_batch_5").unlink()
    with pytest.raises(DataError, match="missing.*data_batch_5"):
        load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root)))


def test_cifar_without_data_dir_is_a_data_error() -> None:
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name="cifar10"))
    assert str(err.value) == ("cifar10 needs data_dir (--data-dir DIR): the cifar-10-batches-py folder or the folder "
                              "containing it")


def test_cifar_sizes_beyond_available_are_refused(cifar_root: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name="cifar10", data_dir=str(cifar_root), train_size=1000))
    assert str(err.value) == "cifar10: asked for train_size 1000 (--train-size) but only 90 train samples are available"


# ---------------------------------------------------------------------------------------------
# memory-mapped cache


def test_cache_round_trip_is_equal_and_memory_mapped(tmp_path: Path) -> None:
    ds = load_dataset(DataSpec(seed=9, train_size=200))
    folder = save_cache(ds, tmp_path / "cache")
    assert (folder / "meta.json").is_file()
    back = load_cache(folder)
    assert isinstance(back, Dataset)
    assert back.name == ds.name and back.num_classes == ds.num_classes and back.image_shape == ds.image_shape
    assert back.label_names == ds.label_names
    for key in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        array = getattr(back, key)
        assert isinstance(array, np.memmap)
        assert array.dtype == getattr(ds, key).dtype
        assert np.array_equal(array, getattr(ds, key))
    assert not back.X_train.flags.writeable


def test_load_cache_without_meta_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="meta.json"):
        load_cache(tmp_path)
