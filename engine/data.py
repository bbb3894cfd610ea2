"""Datasets by name (digits, cifar10, spiral, synthetic): X float32 (N, D), y int64 (N,), split into train/val/test."""
from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.errors import ConfigError, DataError

try:  # numpy >= 2 (and the 1.26 compatibility alias)
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x without numpy._core
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_META = "batches.meta"
CIFAR_DIM = 3 * 32 * 32
CIFAR_CLASSES = 10
CIFAR_VAL_FRACTION = 0.1
CIFAR_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

DIGITS_SPLIT = (1257, 270, 270)
SPIRAL_POINTS_PER_CLASS = 300
SPIRAL_CLASSES = 3
SYNTHETIC_SPLIT = (5000, 1000, 1000)

CACHE_META = "meta.json"
CACHE_ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


@dataclass(frozen=True)
class DataSpec:
    """Which dataset to load, where from, how many samples of each split, and the seed for shuffles and generators."""

    name: str = "digits"
    data_dir: str | None = None
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_dataset_name(self.name)
        for field_name in ("train_size", "val_size", "test_size"):
            size = getattr(self, field_name)
            if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1):
                raise ConfigError(f"{field_name} must be an integer >= 1, got {size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"data seed must be an integer >= 0, got {self.seed!r}")


@dataclass
class Dataset:
    """Train/val/test arrays: X float32 (N, D), y int64 (N,); image_shape is (C, H, W) or None."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple[int, int, int] | None
    label_names: tuple[str, ...] | None = None

    @property
    def input_dim(self) -> int:
        """D, the number of features per sample."""
        return int(self.X_train.shape[1])


def check_dataset_name(name: str) -> None:
    """Raise ConfigError listing the known datasets when ``name`` is not one of them."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")


def load_dataset(spec: DataSpec) -> Dataset:
    """The dataset ``spec`` names, split and cut to the requested sizes."""
    return DATASETS[spec.name](spec)


# ---------------------------------------------------------------------------------------------
# splits and subsets


def _take_first(name: str, split: str, X: np.ndarray, y: np.ndarray, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` samples of a split (all when size is None); DataError when there are fewer."""
    if size is None:
        return X, y
    if size > len(X):
        raise DataError(f"{name}: asked for {split}_size {size} but only {len(X)} {split} samples are available")
    return X[:size], y[:size]


def _split_shuffled(
    spec: DataSpec, X: np.ndarray, y: np.ndarray, counts: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Shuffle (X, y) with ``rng``, cut into train/val/test of ``counts``, then apply the spec's sizes."""
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    n_train, n_val, _ = counts
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(X))}
    sizes = {"train": spec.train_size, "val": spec.val_size, "test": spec.test_size}
    out: list[np.ndarray] = []
    for split, (lo, hi) in bounds.items():
        out.extend(_take_first(spec.name, split, X[lo:hi], y[lo:hi], sizes[split]))
    return tuple(out)


def _fraction_split(n: int) -> tuple[int, int, int]:
    """Roughly 70/15/15 counts for ``n`` samples."""
    n_val = int(round(0.15 * n))
    n_test = int(round(0.15 * n))
    return n - n_val - n_test, n_val, n_test


# ---------------------------------------------------------------------------------------------
# digits


def load_digits_dataset(spec: DataSpec) -> Dataset:
    """scikit-learn's 8x8 digits (1797 samples, 64 pixels scaled from 0..16 to [0, 1], 10 classes): 1257/270/270."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32) / np.float32(16)
    y = y.astype(np.int64)
    rng = np.random.default_rng(spec.seed)
    X_tr, y_tr, X_va, y_va, X_te, y_te = _split_shuffled(spec, X, y, DIGITS_SPLIT, rng)
    return Dataset(
        name="digits", X_train=X_tr, y_train=y_tr, X_val=X_va, y_val=y_va, X_test=X_te, y_test=y_te,
        num_classes=10, image_shape=(1, 8, 8), label_names=tuple(str(d) for d in range(10)),
    )


# ---------------------------------------------------------------------------------------------
# spiral


def make_spiral(points_per_class: int, num_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CS231n's spiral: X (points_per_class * num_classes, 2) float32, y int64, classes in order."""
    X = np.zeros((points_per_class * num_classes, 2), dtype=np.float64)
    y = np.zeros(points_per_class * num_classes, dtype=np.int64)
    for j in range(num_classes):
        ix = slice(points_per_class * j, points_per_class * (j + 1))
        r = np.linspace(0.0, 1.0, points_per_class)
        t = np.linspace(j * 4, (j + 1) * 4, points_per_class) + rng.standard_normal(points_per_class) * 0.2
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return X.astype(np.float32), y


def load_spiral_dataset(spec: DataSpec) -> Dataset:
    """Three interleaved 2-D spirals, 300 points each, generated from the seed and split 70/15/15."""
    rng = np.random.default_rng(spec.seed)
    X, y = make_spiral(SPIRAL_POINTS_PER_CLASS, SPIRAL_CLASSES, rng)
    X_tr, y_tr, X_va, y_va, X_te, y_te = _split_shuffled(spec, X, y, _fraction_split(len(X)), rng)
    return Dataset(
        name="spiral", X_train=X_tr, y_train=y_tr, X_val=X_va, y_val=y_va, X_test=X_te, y_test=y_te,
        num_classes=SPIRAL_CLASSES, image_shape=None,
    )


# ---------------------------------------------------------------------------------------------
# synthetic CIFAR-shaped data


def load_synthetic_dataset(spec: DataSpec) -> Dataset:
    """CIFAR-shaped (3072 features, 10 classes) pixel-range data: class mean images plus Gaussian noise."""
    n_train = spec.train_size or SYNTHETIC_SPLIT[0]
    n_val = spec.val_size or SYNTHETIC_SPLIT[1]
    n_test = spec.test_size or SYNTHETIC_SPLIT[2]
    root = np.random.SeedSequence(spec.seed)
    means_seed, *split_seeds = root.spawn(4)
    rng = np.random.default_rng(means_seed)
    # a shared base image plus a small class offset: a linear model reaches ~50 % val accuracy, like CIFAR-10
    base = rng.uniform(64.0, 192.0, CIFAR_DIM)
    class_means = (base + rng.standard_normal((CIFAR_CLASSES, CIFAR_DIM)) * 2.0).astype(np.float32)
    splits: list[np.ndarray] = []
    for n, seed in zip((n_train, n_val, n_test), split_seeds):
        split_rng = np.random.default_rng(seed)
        y = split_rng.integers(0, CIFAR_CLASSES, n).astype(np.int64)
        X = split_rng.standard_normal((n, CIFAR_DIM), dtype=np.float32)
        X *= 50.0
        X += class_means[y]
        X /= np.float32(255)  # pixel scale [0, 1], like the cifar10 loader
        splits.extend((X, y))
    X_tr, y_tr, X_va, y_va, X_te, y_te = splits
    return Dataset(
        name="synthetic", X_train=X_tr, y_train=y_tr, X_val=X_va, y_val=y_va, X_test=X_te, y_test=y_te,
        num_classes=CIFAR_CLASSES, image_shape=(3, 32, 32),
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10: restricted unpickling


# the only globals a CIFAR-10 batch (a pickled dict holding a numpy array) needs
_CIFAR_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy array globals above; any other global is a DataError."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        """The allowed numpy global, or DataError naming the file and the refused global."""
        try:
            return _CIFAR_ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"refused to unpickle global {module}.{name} in {self.path}: "
                "a CIFAR-10 batch holds only dicts, lists, bytes, ints and numpy arrays"
            ) from None


def read_cifar_pickle(path: Path) -> Any:
    """Unpickle one CIFAR-10 file without running code from it; DataError when missing, refused or corrupt."""
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 batch file {path}")
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, path).load()
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    except Exception as exc:  # truncated or garbled bytes raise many kinds (EOFError, UnpicklingError, ValueError...)
        raise DataError(f"corrupt CIFAR-10 batch {path}: {type(exc).__name__}: {exc}") from exc


def _entry(batch: dict, key: str, path: Path) -> Any:
    """batch[b"key"] or batch["key"]; DataError when neither is there."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DataError(f"corrupt CIFAR-10 batch {path}: no {key!r} entry (keys: {sorted(map(repr, batch))})")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as data uint8 (N, 3072) and labels int64 (N,), checked."""
    batch = read_cifar_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"corrupt CIFAR-10 batch {path}: expected a dict, got {type(batch).__name__}")
    data = _entry(batch, "data", path)
    labels = _entry(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR_DIM or data.dtype.kind not in "ui":
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"CIFAR-10 batch {path}: data must be a uint8 N x {CIFAR_DIM} array, got shape {shape} dtype {dtype}")
    if data.dtype != np.uint8:
        if data.size and (data.min() < 0 or data.max() > 255):
            raise DataError(f"CIFAR-10 batch {path}: pixel values must be in 0..255, got {data.min()}..{data.max()}")
        data = data.astype(np.uint8)
    if not isinstance(labels, (list, np.ndarray)):
        raise DataError(f"CIFAR-10 batch {path}: labels must be a list of ints, got {type(labels).__name__}")
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "ui"):
        raise DataError(f"CIFAR-10 batch {path}: labels must be a flat list of ints, got shape {y.shape} dtype {y.dtype}")
    if len(y) != len(data):
        raise DataError(f"CIFAR-10 batch {path}: {len(y)} labels for {len(data)} images")
    if y.size and (y.min() < 0 or y.max() >= CIFAR_CLASSES):
        raise DataError(f"CIFAR-10 batch {path}: labels must be in 0..{CIFAR_CLASSES - 1}, got {y.min()}..{y.max()}")
    return data, y.astype(np.int64)


def read_cifar_label_names(path: Path) -> tuple[str, ...] | None:
    """Class names from batches.meta, or None when the file is absent."""
    if not path.is_file():
        return None
    meta = read_cifar_pickle(path)
    names = _entry(meta, "label_names", path) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != CIFAR_CLASSES or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"corrupt CIFAR-10 meta {path}: label_names must be a list of {CIFAR_CLASSES} strings")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def find_cifar_folder(data_dir: str | Path | None) -> Path:
    """The cifar-10-batches-py folder: ``data_dir`` itself or its child of that name."""
    if data_dir is None:
        raise DataError(f"cifar10 needs data_dir: the {CIFAR_FOLDER} folder or the folder containing it")
    path = Path(data_dir).expanduser()
    if (path / CIFAR_FOLDER).is_dir():
        return path / CIFAR_FOLDER
    if path.is_dir():
        return path
    raise DataError(f"CIFAR-10 folder not found: {path}")


def load_cifar10_dataset(spec: DataSpec) -> Dataset:
    """CIFAR-10 from its python batches: 50000 train (last 10 % or val_size of them is val), 10000 test."""
    folder = find_cifar_folder(spec.data_dir)
    parts = [read_cifar_batch(folder / name) for name in CIFAR_TRAIN_BATCHES]
    # pixels scaled to [0, 1] so fan-in initialisers see unit-scale inputs
    X_all = np.concatenate([data for data, _ in parts]).astype(np.float32)
    X_all /= np.float32(255)
    y_all = np.concatenate([labels for _, labels in parts])
    X_test, y_test = read_cifar_batch(folder / CIFAR_TEST_BATCH)
    label_names = read_cifar_label_names(folder / CIFAR_META)

    n_val = spec.val_size if spec.val_size is not None else int(round(CIFAR_VAL_FRACTION * len(X_all)))
    if n_val >= len(X_all):
        raise DataError(f"cifar10: asked for val_size {n_val} but only {len(X_all)} training images are available")
    n_train = len(X_all) - n_val
    X_tr, y_tr = _take_first("cifar10", "train", X_all[:n_train], y_all[:n_train], spec.train_size)
    X_te, y_te = _take_first("cifar10", "test", X_test.astype(np.float32) / np.float32(255), y_test, spec.test_size)
    return Dataset(
        name="cifar10", X_train=X_tr, y_train=y_tr, X_val=X_all[n_train:], y_val=y_all[n_train:],
        X_test=X_te, y_test=y_te, num_classes=CIFAR_CLASSES, image_shape=(3, 32, 32), label_names=label_names,
    )


DATASETS: dict[str, Callable[[DataSpec], Dataset]] = {
    "digits": load_digits_dataset,
    "cifar10": load_cifar10_dataset,
    "spiral": load_spiral_dataset,
    "synthetic": load_synthetic_dataset,
}


# ---------------------------------------------------------------------------------------------
# memory-mapped cache


def save_cache(ds: Dataset, folder: str | Path) -> Path:
    """Write each array of ``ds`` as .npy plus meta.json (written last, so its presence means complete)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key in CACHE_ARRAYS:
        np.save(folder / f"{key}.npy", np.ascontiguousarray(getattr(ds, key)))
    meta = {
        "name": ds.name,
        "num_classes": ds.num_classes,
        "image_shape": list(ds.image_shape) if ds.image_shape is not None else None,
        "label_names": list(ds.label_names) if ds.label_names is not None else None,
    }
    (folder / CACHE_META).write_text(json.dumps(meta, indent=1))
    return folder


def load_cache(folder: str | Path) -> Dataset:
    """Open a cache written by save_cache; the arrays are read-only np.memmap shared between processes."""
    folder = Path(folder)
    meta_path = folder / CACHE_META
    if not meta_path.is_file():
        raise DataError(f"no dataset cache in {folder}: {CACHE_META} is missing")
    try:
        meta = json.loads(meta_path.read_text())
        name, num_classes = str(meta["name"]), int(meta["num_classes"])
        image_shape, label_names = meta.get("image_shape"), meta.get("label_names")
        # allow_pickle stays False: a cache file can hold only plain arrays
        arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r") for key in CACHE_ARRAYS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"unreadable dataset cache in {folder}: {type(exc).__name__}: {exc}") from exc
    return Dataset(
        name=name,
        **arrays,
        num_classes=num_classes,
        image_shape=tuple(image_shape) if image_shape is not None else None,
        label_names=tuple(label_names) if label_names is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# writing CIFAR-10 batches in the original format (fixtures, tests)


def _py2_pickle(obj: Any) -> bytes:
    """Protocol-2 pickle as Python 2's cPickle wrote CIFAR-10: bytes as BINSTRING, arrays via numpy.core globals."""
    out: list[bytes] = [b"\x80\x02"]

    def emit(x: Any) -> None:
        if x is None:
            out.append(b"N")
        elif isinstance(x, bool):
            out.append(b"\x88" if x else b"\x89")
        elif isinstance(x, (int, np.integer)):
            x = int(x)
            if 0 <= x < 256:
                out.append(b"K" + bytes([x]))
            elif 0 <= x < 65536:
                out.append(b"M" + struct.pack("<H", x))
            elif -(2**31) <= x < 2**31:
                out.append(b"J" + struct.pack("<i", x))
            else:
                raise ValueError(f"integer {x} does not fit the CIFAR-10 pickle format")
        elif isinstance(x, bytes):
            if len(x) < 256:
                out.append(b"U" + bytes([len(x)]) + x)
            else:
                out.append(b"T" + struct.pack("<i", len(x)) + x)
        elif isinstance(x, str):
            raw = x.encode("utf-8")
            out.append(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(x, tuple):
            out.append(b"(")
            for item in x:
                emit(item)
            out.append(b"t")
        elif isinstance(x, list):
            out.append(b"](")
            for item in x:
                emit(item)
            out.append(b"e")
        elif isinstance(x, dict):
            out.append(b"}(")
            for key, value in x.items():
                emit(key)
                emit(value)
            out.append(b"u")
        elif isinstance(x, np.ndarray):
            if x.dtype.kind not in "uifb":
                raise ValueError(f"cannot write a {x.dtype} array in the CIFAR-10 pickle format")
            x = np.ascontiguousarray(x)
            # _reconstruct(ndarray, (0,), 'b') then BUILD with (version, shape, dtype, fortran, raw bytes)
            out.append(b"cnumpy.core.multiarray\n_reconstruct\n")
            out.append(b"(cnumpy\nndarray\n")
            emit((0,))
            emit(b"b")
            out.append(b"tR")
            dtype_cls, dtype_args, dtype_state = x.dtype.__reduce__()
            out.append(b"(")
            emit(1)
            emit(tuple(x.shape))
            out.append(b"cnumpy\ndtype\n")
            emit(tuple(a.encode() if isinstance(a, str) else a for a in dtype_args))
            out.append(b"R")
            emit(tuple(s.encode() if isinstance(s, str) else s for s in dtype_state))
            out.append(b"b")
            emit(False)
            emit(x.tobytes())
            out.append(b"tb")
        else:
            raise ValueError(f"cannot write a {type(x).__name__} in the CIFAR-10 pickle format")

    emit(obj)
    out.append(b".")
    return b"".join(out)


def write_cifar_batch(
    path: str | Path, data: np.ndarray, labels: list[int], key_type: type = bytes, batch_label: str | None = None
) -> Path:
    """Write one batch in the CIFAR-10 python format: {data: uint8 (N, 3072), labels, batch_label, filenames}.

    Nothing is checked, so tests can write broken batches; ``key_type=str`` writes str keys instead of bytes.
    """
    path = Path(path)
    data = np.asarray(data)

    def key(name: str) -> bytes | str:
        return name.encode() if key_type is bytes else name

    label = batch_label if batch_label is not None else path.name.replace("_", " ")
    batch = {
        key("batch_label"): label.encode(),
        key("labels"): [int(v) for v in labels],
        key("data"): data,
        key("filenames"): [f"synthetic_{i:05d}.png".encode() for i in range(len(data))],
    }
    path.write_bytes(_py2_pickle(batch))
    return path


def write_cifar_folder(folder: str | Path, n_per_batch: int, seed: int) -> Path:
    """Build ``folder``/cifar-10-batches-py with 5 train batches and a test batch of ``n_per_batch`` learnable images."""
    root = Path(folder) / CIFAR_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    class_means = rng.uniform(60.0, 196.0, (CIFAR_CLASSES, CIFAR_DIM))
    batch_labels = [f"training batch {i} of 5" for i in range(1, 6)] + ["testing batch 1 of 1"]
    for name, batch_label in zip((*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH), batch_labels):
        labels = rng.integers(0, CIFAR_CLASSES, n_per_batch)
        pixels = class_means[labels] + rng.standard_normal((n_per_batch, CIFAR_DIM)) * 40.0
        data = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        write_cifar_batch(root / name, data, labels.tolist(), batch_label=batch_label)
    meta = {
        b"label_names": [n.encode() for n in CIFAR_LABEL_NAMES],
        b"num_cases_per_batch": n_per_batch,
        b"num_vis": CIFAR_DIM,
    }
    (root / CIFAR_META).write_bytes(_py2_pickle(meta))
    return root
