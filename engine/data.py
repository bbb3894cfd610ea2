"""Datasets: built-in ones by name or the user's files by path, as X float32 (N, D) and y int64 (N,) per split."""
from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.cifar import (
    CIFAR_CLASSES,
    CIFAR_DIM,
    CIFAR_FILES,
    CIFAR_META,
    CIFAR_TEST_BATCH,
    CIFAR_TRAIN_BATCHES,
    find_cifar_folder,
    read_cifar_batch,
    read_cifar_label_names,
)
from engine.encoding import MISSING_POLICIES, TableEncoding, fit_encoding
from engine.errors import ConfigError, DataError, shown
from engine.init import INPUT_STD_HIGH
from engine.formats import (
    FILE_FORMATS,
    MISSING_NUMBERS,
    check_memory,
    detect_format,
    ignore_option,
    list_image_folder,
    merged_values_warning,
    missing_words,
    read_image_folder,
    read_images,
    read_cells,
    read_columns,
    read_npz,
    read_table,
    sha256_files,
    TableText,
    unread_files_warning,
    unsupported_text,
)

CIFAR_VAL_FRACTION = 0.1

DIGITS_SPLIT = (1257, 270, 270)
SPIRAL_POINTS_PER_CLASS = 300
SPIRAL_CLASSES = 3
SYNTHETIC_SPLIT = (5000, 1000, 1000)

DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.15
MAX_IMAGE_SIDE = 4096
SPLITS = ("train", "val", "test")

# describe_dataset's warnings
SCALE_RATIO_WARNING = 100.0
PIXEL_UNIT_MAX = 2.0  # images (of values >= 0) past this are raw intensities (0..255), not scaled to [0, 1]
FEW_SAMPLES_WARNING = 10
RARE_CATEGORY_ROWS = 5  # search data warns of a text column's categories in fewer training rows than this
RARE_CATEGORIES_NAMED = 5  # and names at most this many of a column's, the rarest first
FEW_CLASSES_NAMED = 10  # the few-samples warning names at most this many classes
IMBALANCE_WARNING = 10.0
ID_MIN_ROWS = 20  # fewer rows than this are too few to tell an id column from a feature

CACHE_META = "meta.json"
CACHE_ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, (float, np.floating))) and math.isfinite(value)


def _check_fractions(val_fraction: Any, test_fraction: Any) -> None:
    """ConfigError unless both fractions are in (0, 1) and leave training samples."""
    for field_name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not _is_number(value) or not 0 < value < 1:
            raise ConfigError(f"{field_name} must be a number strictly between 0 and 1, got {shown(value)}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            "val_fraction + test_fraction (--val-fraction, --test-fraction) must be below 1 to leave training samples, "
            f"got {val_fraction} + {test_fraction}"
        )


@dataclass(frozen=True)
class DataSpec:
    """Which data (a built-in name or a path: .npz, .csv/.tsv, image folder, CIFAR-10 folder), how to read and split
    it."""

    name: str = "digits"
    data_dir: str | None = None
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    label_column: str | None = None  # CSV/TSV: the label column's header (default: the last column)
    ignore_columns: tuple[str, ...] = ()  # CSV/TSV: columns neither trained on nor labels (an id, a note)
    image_size: tuple[int, int] | None = None  # image folders: (width, height) every image is resized to
    val_fraction: float = DEFAULT_VAL_FRACTION  # share of the samples drawn for val where the file gives no val split
    test_fraction: float = DEFAULT_TEST_FRACTION  # likewise for test
    missing: str | None = None  # CSV/TSV: a missing cell is refused (None), filled ("mean") or its row dropped ("drop")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"data must be a dataset name or a path, got {self.name!r}")
        check_dataset_name(self.name)
        table = Path(self.name).suffix.lower() in (".csv", ".tsv")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ConfigError(f"data_dir must be a path string, got {self.data_dir!r}")
        if self.data_dir is not None and self.name != "cifar10":
            raise ConfigError(f"data_dir applies to the built-in cifar10 only, not to {self.name!r}")
        for field_name in ("train_size", "val_size", "test_size"):
            size = getattr(self, field_name)
            if size is not None and (not _is_int(size) or size < 1):
                raise ConfigError(f"{field_name} must be an integer >= 1, got {shown(size)}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"data seed must be an integer >= 0, got {shown(self.seed)}")
        if self.label_column is not None:
            if not isinstance(self.label_column, str) or not self.label_column.strip():
                raise ConfigError(f"--label-column must name a column, got {self.label_column!r}")
            if not table:
                raise ConfigError(f"--label-column {self.label_column!r} applies to .csv/.tsv data only, "
                                  f"not {self.name!r}")
        # '' names the columns with no name in the header (see formats._columns_read)
        if not (isinstance(self.ignore_columns, (tuple, list))
                and all(isinstance(c, str) for c in self.ignore_columns)):
            bad = next((c for c in self.ignore_columns if not isinstance(c, str)),
                       self.ignore_columns) if isinstance(self.ignore_columns, (tuple, list)) else self.ignore_columns
            raise ConfigError(f"--ignore-column must name a column, got {bad!r}")
        if self.ignore_columns and not table:
            raise ConfigError(f"--ignore-column {', '.join(map(repr, self.ignore_columns))} applies to .csv/.tsv "
                              f"data only, not {self.name!r}")
        object.__setattr__(self, "ignore_columns", tuple(self.ignore_columns))
        if self.missing is not None:
            if self.missing not in MISSING_POLICIES:
                raise ConfigError(f"missing must be one of {', '.join(MISSING_POLICIES)}, got {shown(self.missing)}")
            if not table:
                raise ConfigError(f"--missing {self.missing!r} applies to .csv/.tsv data only, not {self.name!r}")
        if self.image_size is not None:
            size = self.image_size
            if not (isinstance(size, (tuple, list)) and len(size) == 2
                    and all(_is_int(v) and 1 <= v <= MAX_IMAGE_SIDE for v in size)):
                raise ConfigError(f"image_size must be (width, height), integers in 1..{MAX_IMAGE_SIDE}, "
                                  f"got {shown(size)}")
            if self.name in DATASETS:
                raise ConfigError(f"image_size applies to image folders only, not to the built-in {self.name!r}")
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        _check_fractions(self.val_fraction, self.test_fraction)
        # plain Python scalars, so dataclasses.asdict gives JSON
        for field_name in ("train_size", "val_size", "test_size", "seed"):
            if getattr(self, field_name) is not None:
                object.__setattr__(self, field_name, int(getattr(self, field_name)))
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        object.__setattr__(self, "test_fraction", float(self.test_fraction))


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
    feature_names: tuple[str, ...] | None = None  # a table's column headers (D,); None for arrays and images
    encoding: TableEncoding | None = None  # a table's text columns and missing cells, fitted on the training split
    table_notes: dict[str, Any] | None = None  # what reading the table did: rows dropped, cells filled, unseen values
    label_column: str | None = None  # a table's label column header; None for arrays and images
    notes: tuple[str, ...] = ()  # warnings of what reading the data changed (integers that merged as float32)

    @property
    def input_dim(self) -> int:
        """D, the number of features per sample."""
        return int(self.X_train.shape[1])

    @property
    def sizes(self) -> dict[str, int]:
        """Samples per split: {'train': N, 'val': N, 'test': N}."""
        return {split: int(len(getattr(self, f"y_{split}"))) for split in SPLITS}

    @classmethod
    def from_arrays(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        X_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        test_fraction: float = DEFAULT_TEST_FRACTION,
        seed: int = 0,
        name: str = "arrays",
        image_shape: tuple[int, int, int] | None = None,
        label_names: tuple[str, ...] | None = None,
    ) -> Dataset:
        """The way to search in-memory arrays from Python: X (N, D) or images (N, [C,] H, W), y (N,) ints or strings.

        Missing val/test splits are drawn from (X, y), stratified, with the fractions and seed; labels become classes
        in sorted order (label_names), unless label_names is given and y already holds indices into it.
        """
        _check_fractions(val_fraction, test_fraction)
        if not _is_int(seed) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {shown(seed)}")
        given: dict[str, tuple[np.ndarray, np.ndarray]] = {"train": (X, y)}
        for split, (X_split, y_split) in (("val", (X_val, y_val)), ("test", (X_test, y_test))):
            if (X_split is None) != (y_split is None):
                raise ConfigError(f"give X_{split} and y_{split} together, or neither")
            if X_split is not None:
                given[split] = (X_split, y_split)
        return _assemble(name, name, given, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                         image_shape=image_shape, label_names=label_names)


def check_dataset_name(name: str) -> None:
    """ConfigError unless ``name`` is a built-in dataset or an existing data file (.npz, .csv, .tsv) or folder."""
    if name in DATASETS:
        return
    path = Path(name).expanduser()
    try:
        if path.is_dir() or (path.is_file() and path.suffix.lower() in FILE_FORMATS):
            return
        exists = path.exists()
    except OSError as exc:  # a folder on the way that may not be searched
        raise ConfigError(f"cannot read {name!r}: {exc.strerror or exc}") from exc
    if path.is_file():
        raise ConfigError(f"unsupported data file {name!r}: {unsupported_text(path)}")
    if exists:  # a FIFO or a device (or a link to one) would block or never end
        raise ConfigError(f"{name!r} is not a regular file or folder")
    try:  # a link that loops, or to nothing: not a misspelt built-in name nor a file not there
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"cannot resolve {name!r}: a link on its path loops (too many levels of symbolic "
                              "links)") from None
        if path.is_symlink():
            raise ConfigError(f"{name!r} is a link to {os.readlink(path)!r}, which does not exist") from None
    if path.suffix or os.sep in name:  # a file name: 'wine.cvs' is a typo of a path, not of a built-in name
        # the suffixes only where a file's was given: 'x/y' and 'photos/' name a folder
        folder = not path.suffix or name.endswith(("/", os.sep))
        formats = "" if folder or path.suffix.lower() in FILE_FORMATS else "; a data file is .npz, .csv or .tsv"
        raise ConfigError(f"data file or folder not found: {name!r}{formats}")
    raise ConfigError(
        f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}, "
        "or a path to an .npz, .csv or .tsv file, an image folder or a CIFAR-10 folder"
    )


def load_dataset(spec: DataSpec) -> Dataset:
    """The data ``spec`` names, split and cut to the requested sizes; DataError (one line) for a bad file."""
    if spec.name in DATASETS:
        return DATASETS[spec.name](spec)
    return load_data_file(spec)


# ---------------------------------------------------------------------------------------------
# splits and subsets


def _take_first(name: str, split: str, X: np.ndarray, y: np.ndarray, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` samples of a split (all when size is None); DataError when there are fewer."""
    if size is None:
        return X, y
    if size > len(X):
        option = {"train": " (--train-size)", "val": " (--val-size)"}.get(split, "")  # test_size: from Python alone
        raise DataError(f"{name}: asked for {split}_size {size}{option} but only {len(X)} {split} samples are available")
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


def stratified_split(
    source: str, y: np.ndarray, fractions: tuple[float, float], rng: np.random.Generator, names: tuple[str, ...],
    labels_from: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train/val/test drawn per class of y (N,) with ``fractions`` (val, test), each split shuffled;
    ``labels_from`` says where the labels came from (a table's label column) in the error for a class too small."""
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    order = np.argsort(y, kind="stable")
    bounds = np.cumsum(np.bincount(y, minlength=len(names)))[:-1]
    for c, members in enumerate(np.split(order, bounds)):
        n = len(members)
        if n == 0:
            continue
        members = rng.permutation(members)
        n_val, n_test = (0 if f == 0 else max(1, math.floor(f * n + 0.5)) for f in fractions)
        if n - n_val - n_test < 1:
            raise DataError(f"{source}: class {names[c]!r}{labels_from} has {n} sample(s) but the train/val/test split "
                            f"needs at least {n_val + n_test + 1} of each class (one or more per split); the labels "
                            f"hold {len(names)} classes in {len(y)} samples")
        parts[1].append(members[:n_val])
        parts[2].append(members[n_val:n_val + n_test])
        parts[0].append(members[n_val + n_test:])
    return tuple(rng.permutation(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def channels_first(X: np.ndarray) -> np.ndarray:
    """Images N x H x W x C with 1 or 3 channels last (as Pillow, Matplotlib and Keras keep them) and H, W above 4
    as N x C x H x W, the layout the engine reads; anything else as it is (N x 2 x 3 x 3 is 2 channels of 3 x 3)."""
    if X.ndim == 4 and X.shape[3] in (1, 3) and min(X.shape[1:3]) > 4:
        return X.transpose(0, 3, 1, 2)
    return X


def _features(source: str, key: str, X: np.ndarray, nan_ok: bool = False) -> np.ndarray:
    """X (N, D) or (N, [C,] H, W) as float32 (N, D); DataError naming the first NaN (unless ``nan_ok``) or inf."""
    if X.dtype.kind not in "biuf":
        raise DataError(f"{source}: {key} must hold numbers, got dtype {X.dtype}")
    if len(X) == 0:
        raise DataError(f"{source}: {key} has no samples (shape {X.shape})")
    if X.size == 0:
        raise DataError(f"{source}: {key} has no features (shape {X.shape})")
    X = X.reshape(len(X), -1)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        X32 = X.astype(np.float32, copy=False)
    if X.dtype.kind == "f" and not np.isfinite(X32).all() and not (nan_ok and not np.isinf(X32).any()):
        r, c = np.argwhere(~np.isfinite(X32))[0]
        raise DataError(f"{source}: NaN or inf in features: {key} row {r} feature {c} is {X[r, c].item()!r} "
                        "(counting from 0; values beyond float32 become inf)")
    return X32


def _integer_merged_warning(key: str, X: np.ndarray, X32: np.ndarray) -> str | None:
    """``merged_values_warning`` of the array ``key`` of integers X (N, ...) as read, X32 its float32 features (N, D),
    naming a feature by its index; None for other dtypes (a table's cells are judged as they are read)."""
    if X.dtype.kind not in "iu":
        return None
    return merged_values_warning(X.reshape(len(X), -1), X32, lambda j: f"{key} feature {j} (counting from 0)")


def _label_text(value: Any) -> str:
    """A class value as its name: bytes decoded, integral floats without '.0' (1e+30 past float's exact integers),
    other floats (a label to score, 2.5) as they are, never cut to an integer."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if abs(value) <= 2**53 and float(value).is_integer() else repr(float(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _encode_labels(
    source: str, ys: dict[str, np.ndarray], label_names: tuple[str, ...] | None
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Labels of every split as class indices int64 into the class names (sorted distinct labels unless given)."""
    if label_names is not None:
        names = tuple(str(n) for n in label_names)
        for split, y in ys.items():
            if y.size and (y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= len(names)):
                raise DataError(f"{source}: y_{split} must hold class indices 0..{len(names) - 1} into label_names")
        return {split: y.astype(np.int64) for split, y in ys.items()}, names
    everything = np.concatenate(list(ys.values()))
    kind = everything.dtype.kind
    if kind == "f":
        bad = ~np.isfinite(everything) | (everything != np.floor(everything))
        if bad.any():
            raise DataError(f"{source}: labels must be integers or strings, found {shown(everything[bad][0])} "
                            "(is this the label column?)")
    elif kind not in "biuUS":
        raise DataError(f"{source}: labels must be integers or strings, got dtype {everything.dtype}")
    for split, y in ys.items() if kind in "US" else ():  # a class named '' (pandas' fillna('')), blank in every table
        empty = np.flatnonzero(np.char.strip(y.astype(str)) == "") if y.size else ()
        if len(empty):
            raise DataError(f"{source}: y_{split}[{empty[0]}] is an empty label ({len(empty)} in y_{split}): give every "
                            f"sample its class, or leave the unlabelled ones out")
    classes, codes = np.unique(everything, return_inverse=True)
    names = tuple(_label_text(v) for v in classes)
    ends = np.cumsum([len(y) for y in ys.values()])
    return dict(zip(ys, np.split(codes.astype(np.int64).ravel(), ends[:-1]))), names


def _assemble(
    name: str,
    source: str,
    given: dict[str, tuple[Any, Any]],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    sizes: tuple[int | None, int | None, int | None] = (None, None, None),
    image_shape: tuple[int, int, int] | None = None,
    label_names: tuple[str, ...] | None = None,
    feature_names: tuple[str, ...] | None = None,
    labels_from: str = "",
    nan_ok: bool = False,
    unsplit: bool = False,
) -> Dataset:
    """A Dataset from the splits a file or caller gives: checked, labels encoded, missing val/test drawn stratified
    (``labels_from``: see ``stratified_split``). ``unsplit``: the file's arrays are named X and y, not X_train and
    y_train, as messages name them."""
    Xs, ys, notes, sample_shape = _checked_splits(source, given, nan_ok, unsplit)
    if len(ys["train"]) == 0:
        raise DataError(f"{source}: no training samples")
    if image_shape is None and sample_shape is not None and len(sample_shape) >= 2:
        image_shape = (1, *sample_shape) if len(sample_shape) == 2 else sample_shape  # type: ignore[assignment]
    codes, names = _encode_labels(source, ys, label_names)
    if len(names) < 2:
        raise DataError(f"{source}: only one class ({names[0]!r}); classification needs at least two")
    _refuse_unseen_classes(source, codes, names)

    rng = np.random.default_rng(seed)
    missing = [split for split in ("val", "test") if split not in given]
    if missing:
        fractions = (val_fraction if "val" in missing else 0.0, test_fraction if "test" in missing else 0.0)
        pool_X, pool_y = Xs["train"], codes["train"]
        for split, index in zip(SPLITS, stratified_split(source, pool_y, fractions, rng, names, labels_from)):
            if split == "train" or split in missing:
                Xs[split], codes[split] = pool_X[index], pool_y[index]
    out: list[np.ndarray] = []
    for split, size in zip(SPLITS, sizes):
        X, y = Xs[split], codes[split]
        if size is not None and size < len(y):  # a random subset, in file order
            keep = np.sort(rng.permutation(len(y))[:size])
            X, y = X[keep], y[keep]
        out.extend(_take_first(source, split, X, y, size))
    X_tr, y_tr, X_va, y_va, X_te, y_te = out
    return Dataset(
        name=name, X_train=X_tr, y_train=y_tr, X_val=X_va, y_val=y_va, X_test=X_te, y_test=y_te,
        num_classes=len(names),
        image_shape=tuple(int(v) for v in image_shape) if image_shape else None,  # type: ignore[arg-type]
        label_names=names, feature_names=feature_names, notes=tuple(notes),
    )


def _checked_splits(
    source: str, given: dict[str, tuple[Any, Any]], nan_ok: bool, unsplit: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str], tuple[int, ...] | None]:
    """The features float32 (N, D) and labels (N,) of each split ``given``, checked (their shapes, a label a sample,
    one shape of sample in all splits), the warnings that integers merged as float32, and the shape of a sample."""
    Xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    notes: list[str] = []
    sample_shape: tuple[int, ...] | None = None
    for split, (X, y) in given.items():
        X, y = channels_first(np.asarray(X)), np.asarray(y)
        X_key, y_key = ("X", "y") if unsplit else (f"X_{split}", f"y_{split}")
        if X.ndim not in (2, 3, 4):
            raise DataError(f"{source}: {X_key} must be N x D or N x [C x] H x W, got shape {X.shape}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"{source}: {y_key} must hold one label per sample, got shape {y.shape}")
        if len(X) != len(y):
            raise DataError(f"{source}: {X_key} has {len(X)} samples but {y_key} has {len(y)} labels")
        if sample_shape is not None and X.shape[1:] != sample_shape:
            raise DataError(f"{source}: {X_key} samples have shape {X.shape[1:]} but X_train's {sample_shape}")
        sample_shape = X.shape[1:]
        Xs[split], ys[split] = _features(source, X_key, X, nan_ok), y
        notes += filter(None, [_integer_merged_warning(X_key, X, Xs[split])])
    return Xs, ys, notes, sample_shape


def _refuse_unseen_classes(source: str, codes: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    """DataError naming the classes of a given val or test split that training has none of: the model never
    trains on them."""
    for split, title in (("val", "validation"), ("test", "test")):
        unseen = np.setdiff1d(codes[split], codes["train"]) if split in codes else np.array([], dtype=np.int64)
        if unseen.size:
            listed = ", ".join(repr(names[c]) for c in unseen[:10]) + (", ..." if unseen.size > 10 else "")
            raise DataError(f"{source}: {'classes' if unseen.size > 1 else 'class'} {listed} "
                            f"{'appear' if unseen.size > 1 else 'appears'} in the {title} split but not in training")


# ---------------------------------------------------------------------------------------------
# the user's files


def _npz_splits(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The (X, y) pairs an .npz gives: X_train/y_train (+ val, test) or X/y."""
    keys = set(arrays)
    if {"X_train", "y_train"} <= keys:
        if "X" in keys or "y" in keys:
            raise DataError(f"{path}: holds both X_train/y_train and X/y; keep one layout")
        given = {"train": (arrays["X_train"], arrays["y_train"])}
        for split in ("val", "test"):
            has_X, has_y = f"X_{split}" in keys, f"y_{split}" in keys
            if has_X != has_y:
                raise DataError(f"{path}: has {'X' if has_X else 'y'}_{split} without {'y' if has_X else 'X'}_{split}")
            if has_X:
                given[split] = (arrays[f"X_{split}"], arrays[f"y_{split}"])
        return given
    if {"X", "y"} <= keys:
        return {"train": (arrays["X"], arrays["y"])}
    found = ", ".join(sorted(keys)) or "no arrays"
    raise DataError(f"{path}: expected arrays X_train, y_train (optionally X_val, y_val, X_test, y_test) or X, y; "
                    f"found {found}")


def _label_array(labels: list[str]) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """CSV label cells as (y, class names): integers parsed exactly (y indexes their sorted values, named in full),
    else (numbers, None) when every one is a finite number, else (strings, None)."""
    try:
        integers = [int(label) for label in labels]  # exact: 10**30 would lose digits as a float
    except ValueError:
        pass
    else:
        values = sorted(set(integers))
        index = {value: i for i, value in enumerate(values)}
        return np.array([index[v] for v in integers], dtype=np.int64), tuple(str(v) for v in values)
    try:
        numbers = np.array(labels, dtype=np.float64)
    except ValueError:
        return np.array(labels), None
    return (numbers if np.isfinite(numbers).all() else np.array(labels)), None


def load_data_file(spec: DataSpec) -> Dataset:
    """The user's data at the path spec.name: .npz, .csv/.tsv, an image folder or a CIFAR-10 folder."""
    path = Path(spec.name).expanduser()
    fmt = detect_format(path)
    if spec.image_size is not None and fmt != "image_folder":
        raise ConfigError(f"image_size applies to image folders only, not to the {fmt} data {spec.name!r}")
    if fmt == "cifar10":
        return _load_cifar10(spec, find_cifar_folder(path))
    source = str(path)
    options: dict[str, Any] = dict(val_fraction=spec.val_fraction, test_fraction=spec.test_fraction, seed=spec.seed,
                                   sizes=(spec.train_size, spec.val_size, spec.test_size))
    if fmt == "npz":
        arrays = read_npz(path)
        return _assemble(spec.name, source, _npz_splits(path, arrays), unsplit="X" in arrays, **options)
    if fmt in ("csv", "tsv"):
        return _load_table(spec, path, "," if fmt == "csv" else "\t", options)
    X, y, classes, image_shape = read_image_folder(path, spec.image_size)
    return _assemble(spec.name, source, {"train": (X, y)}, image_shape=image_shape, label_names=classes, **options)


def _load_table(spec: DataSpec, path: Path, delimiter: str, options: dict[str, Any]) -> Dataset:
    """A CSV/TSV as a Dataset: rows missing a label (or, with ``--missing drop``, a value) dropped, split, then its
    text columns and missing cells encoded as fitted on the training split (``table_notes`` says what was done)."""
    source = str(path)
    X, labels, columns, label_column, text = read_table(path, delimiter, spec.label_column, spec.ignore_columns,
                                                        missing_ok=spec.missing is not None)
    notes: dict[str, Any] = {"missing": spec.missing, "unlabelled_rows_dropped": 0, "rows_dropped": 0,
                             "cells_filled": 0, "cells_filled_per_column": {}, "unseen": {}, "unseen_near": {}}
    if spec.missing is not None:
        X, labels = _drop_rows(source, X, labels, columns, spec.missing, notes)
    y, label_names = _label_array(labels)
    dropped = notes["unlabelled_rows_dropped"] + notes["rows_dropped"]
    if dropped and len(np.unique(y)) < 2:  # the classes of the dropped rows are gone with them
        name = label_names[int(y[0])] if label_names is not None else _label_text(y[0])
        parts = [f"{n} {'row' if n == 1 else 'rows'} missing {what}" for n, what in (
            (notes["unlabelled_rows_dropped"], "a label"), (notes["rows_dropped"], "a value")) if n]
        raise DataError(f"{source}: only one class ({name!r}) left once {' and '.join(parts)} "
                        f"{'was' if dropped == 1 else 'were'} dropped (--missing {spec.missing}); classification needs "
                        "at least two: fill in the missing cells"
                        + (", or train with --missing mean" if spec.missing == "drop" and notes["rows_dropped"]
                           else ""))
    labels_from = (f" of the label column {label_column!r}" if spec.label_column is not None
                   else f" of the label column {label_column!r} (the last; --label-column NAME takes another)")
    ds = _assemble(spec.name, source, {"train": (X, y)}, label_names=label_names, feature_names=columns,
                   labels_from=labels_from, nan_ok=True, **options)
    ds.label_column = label_column.strip()
    ds.notes += (text.merged,) if text.merged is not None else ()
    if not text.values and spec.missing is None:
        return ds
    return _encoded_table(ds, source, columns, text, spec.missing == "mean", notes)


def _drop_rows(source: str, X: np.ndarray, labels: list[str], columns: tuple[str, ...], missing: str,
               notes: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """The rows of a table read with ``--missing`` that have a label (``missing`` drop: and every value), counting
    the rows dropped in ``notes``; DataError when none is left."""
    labelled = np.array([label != "" for label in labels])
    complete = ~np.isnan(X).any(axis=1) if missing == "drop" else np.ones(len(X), dtype=bool)
    notes["unlabelled_rows_dropped"] = int((~labelled).sum())
    notes["rows_dropped"] = int((labelled & ~complete).sum())
    keep = labelled & complete
    if not keep.any():
        empty = [columns[c].strip() for c in np.flatnonzero(np.isnan(X[labelled]).all(axis=0))]
        hint = "" if not empty or not labelled.any() else (
            f"; no row has a value in {', '.join(map(repr, empty))}: leave {'them' if len(empty) > 1 else 'it'} "
            f"out with {' '.join(ignore_option(name) for name in empty)}")
        raise DataError(f"{source}: no row left to train on: {notes['unlabelled_rows_dropped']} miss their label, "
                        f"{notes['rows_dropped']} a value (--missing {missing}){hint}")
    return X[keep], [label for label, k in zip(labels, keep) if k]


def _encoded_table(ds: Dataset, source: str, columns: tuple[str, ...], text: TableText, fill: bool,
             notes: dict[str, Any]) -> Dataset:
    """``ds`` with its text columns and (``fill``) missing cells encoded as fitted on its training split, and
    ``notes`` as its ``table_notes``, to which the cells filled and the unseen categories per split are added."""
    # by the names a saved model reads its columns by (table_columns'), which are stripped
    encoding = fit_encoding(source, tuple(c.strip() for c in columns), ds.X_train, text.values, fill=fill)
    encoding.check_memory(sum(ds.sizes.values()), source)
    encoded: dict[str, np.ndarray] = {}
    filled = np.zeros(len(columns), dtype=np.int64)
    for split in SPLITS:
        raw = getattr(ds, f"X_{split}")
        filled += np.isnan(raw).sum(axis=0)
        encoded[split], unseen, near = encoding.transform(raw, text.values)
        if unseen:
            notes["unseen"][split] = unseen
        if near:
            notes["unseen_near"][split] = near
    notes["cells_filled"] = int(filled.sum())
    notes["cells_filled_per_column"] = {name: int(n) for name, n in zip(encoding.columns, filled) if n}
    return dataclasses.replace(ds, X_train=encoded["train"], X_val=encoded["val"], X_test=encoded["test"],
                               feature_names=encoding.feature_names, encoding=encoding, table_notes=notes)


_Inputs = tuple[np.ndarray, list[str | None] | None, list[str] | None, dict[str, int], dict[str, dict[str, str]],
                dict[str, int], tuple[str, ...]]


def read_inputs(
    path: str | Path, *, label_names: tuple[str, ...], features: tuple[str, ...] | None = None,
    label_column: str | None = None, image_shape: tuple[int, int, int] | None = None, id_column: str | None = None,
    encoding: TableEncoding | None = None, input_dim: int | None = None,
) -> _Inputs:
    """Samples to score with a trained model, in file order: X float32 (N, D) before preprocessing, each sample's
    label as a class name when the file holds labels (else None; None for a CSV row whose label cell is empty, or
    an npz label ""), each sample's name: for an image folder its file (``class/name.png``), for a CSV/TSV the
    cell of ``id_column`` when given, else None; per text column the cells of a category the model never saw; and
    of those categories the ones that differ from one of the model's only in case or spaces (column: {cell: its});
    per column the missing cells filled as training filled them (the model's ``encoding.fill``), where there are any;
    the warnings of what reading changed, as ``Dataset.notes`` (integer values that merged as float32).
    ``label_names`` are the model's classes, which a CSV label cell is matched to as training named it (a cell
    ``1.0`` is class ``1``).

    .csv/.tsv: the ``features`` columns by name (the model's; other columns are ignored), encoded with the model's
    ``encoding`` (text columns, missing cells), labels from ``label_column`` when the file has it; .npz: ``X`` (or
    ``X_test``), labels from ``y`` (or ``y_test``) when present, its samples rows (N x ``input_dim``, the features the
    model reads) or, for a model of images, rows or images of ``image_shape``; an image folder (one subfolder per
    class, which names the label, or the images alone, unlabelled): resized to ``image_shape``.
    """
    path = Path(path).expanduser()
    fmt = detect_format(path)
    if id_column is not None and fmt not in ("csv", "tsv"):
        raise DataError(f"{path}: rows are named by an id column only in a .csv/.tsv table, not in {fmt} data")
    if fmt in ("csv", "tsv"):
        if features is None:
            raise DataError(f"{path}: the model was not trained on a CSV/TSV table, so it names no columns to read")
        return _table_inputs(path, "," if fmt == "csv" else "\t", label_names, features, label_column, id_column,
                             encoding)
    if fmt == "npz":
        return _npz_inputs(path, label_names, image_shape, input_dim)
    if fmt == "image_folder":
        return _image_inputs(path, image_shape)
    raise DataError(f"{path}: a {fmt} folder; give the samples to score as .npz, .csv/.tsv or an image folder")


def _table_inputs(path: Path, delimiter: str, label_names: tuple[str, ...], features: tuple[str, ...],
                  label_column: str | None, id_column: str | None, encoding: TableEncoding | None) -> _Inputs:
    """``read_inputs`` of a CSV/TSV: the ``features`` columns by name, encoded with the model's ``encoding``."""
    text = TableText()
    if encoding is not None:
        text = TableText(missing_ok=encoding.fill is not None,
                         values={c: {} for c, cats in enumerate(encoding.categories) if cats is not None})
    # read before the id column: read_columns checks that every row has the header's fields
    X, cells = read_columns(path, delimiter, features, label_column, text)
    unseen: dict[str, int] = {}
    near: dict[str, dict[str, str]] = {}
    filled: dict[str, int] = {}
    if encoding is not None:
        encoding.check_memory(len(X), str(path))
        filled = {name: int(n) for name, n in zip(encoding.columns, np.isnan(X).sum(axis=0)) if n}
        X, unseen, near = encoding.transform(X, text.values)
    ids = read_cells(path, delimiter, id_column) if id_column is not None else None
    notes = (text.merged,) if text.merged is not None else ()
    if cells is None:
        return X, None, ids, unseen, near, filled, notes
    labels = [None if not c else c if c in label_names else _cell_label(c) for c in cells]
    return X, _counted_labels(labels, label_names), ids, unseen, near, filled, notes


def _npz_inputs(path: Path, label_names: tuple[str, ...], image_shape: tuple[int, int, int] | None,
                input_dim: int | None) -> _Inputs:
    """``read_inputs`` of an .npz: its array ``X`` (or ``X_test``), labels from ``y`` (or ``y_test``) when present."""
    arrays = read_npz(path)
    for X_key, y_key in (("X", "y"), ("X_test", "y_test")):
        if X_key in arrays:
            if arrays[X_key].ndim not in (2, 3, 4):  # as training reads X
                raise DataError(f"{path}: {X_key} must be N x D or N x [C x] H x W, got shape "
                                f"{arrays[X_key].shape}")
            X = arrays[X_key]
            # a model saved when N x 8 x 8 x 3 was read as 8 channels of 8 x 3 reads such samples as it was trained
            if image_shape is None or X.shape[1:] != tuple(image_shape):
                X = channels_first(X)
            _check_sample_shape(path, X_key, arrays[X_key].shape, X.shape[1:], image_shape, input_dim)
            X_read, X = X, _features(str(path), X_key, X)
            merged = _integer_merged_warning(X_key, X_read, X)  # as training judges them
            notes = (merged,) if merged is not None else ()
            if y_key not in arrays:
                return X, None, None, {}, {}, {}, notes
            y = np.asarray(arrays[y_key]).reshape(-1)
            if len(y) != len(X):
                raise DataError(f"{path}: {X_key} has {len(X)} samples but {y_key} has {len(y)} labels")
            labels = [_label_text(v) or None for v in y.tolist()]  # "": unlabelled, as an empty CSV cell
            return X, _counted_labels(labels, label_names), None, {}, {}, {}, notes
    found = ", ".join(sorted(arrays)) or "no arrays"
    raise DataError(f"{path}: expected an array X (or X_test) of samples, optionally y (or y_test); found {found}")


def _image_inputs(path: Path, image_shape: tuple[int, int, int] | None) -> _Inputs:
    """``read_inputs`` of an image folder: its images resized to ``image_shape``, each named by its file."""
    if image_shape is None:
        raise DataError(f"{path}: an image folder, but the model was not trained on images")
    classes, files = list_image_folder(path, unlabelled=True)
    X, y, shape = read_images(path, files, (image_shape[2], image_shape[1]), colour=image_shape[0] == 3)
    if shape != tuple(image_shape):
        raise DataError(f"{path}: images with {shape[0]} channel(s); the model reads {image_shape[0]}")
    return X, [classes[i] for i in y.tolist()] if classes else None, [
        file.relative_to(path).as_posix() for file, _ in files], {}, {}, {}, ()


def _check_sample_shape(path: Path, key: str, shape: tuple[int, ...], sample: tuple[int, ...],
                        image_shape: tuple[int, int, int] | None, input_dim: int | None) -> None:
    """DataError when the samples of an .npz's array ``key`` of ``shape`` (N x ...), read as ``sample`` each (images
    with their channels first), are images, or images of another shape, than the model was trained on: its rows of
    ``input_dim`` features, or its images of ``image_shape``; rows of as many values as an image are read as the image
    flattened."""
    if len(sample) == 1 or (image_shape is not None and (1, *sample)[-3:] == tuple(image_shape)):
        return
    if image_shape is None:  # as the file holds them: no layout of images is meant
        rows = f" of {input_dim} features (N x {input_dim})" if input_dim is not None else " of features (N x D)"
        raise DataError(f"{path}: {key} holds samples of {' x '.join(map(str, shape[1:]))} (shape {shape}), but the "
                        f"model was trained on rows{rows}, not images: give {key} as rows")
    raise DataError(f"{path}: {key} holds images of {' x '.join(map(str, sample))} (shape {shape}), but the model was "
                    f"trained on images of {' x '.join(map(str, image_shape))} (C x H x W)")


def _counted_labels(labels: list[str | None], label_names: tuple[str, ...]) -> list[str | None] | None:
    """``labels`` to count against the model's classes ``label_names``: a label written as a missing value (NA, ?; in
    labels of numbers nan too, as training with --missing drops its rows) that names none of them is unlabelled, as an
    empty cell is: a sample to score, not one to count. None when no sample has a label."""
    missing = missing_words(label_names)
    kept = [None if label is None or (label not in label_names and label.strip().lower() in missing) else label
            for label in labels]
    return kept if any(kept) else None


def _cell_label(cell: str) -> str:
    """A label cell of a CSV/TSV as the class name training gave it: integers without leading zeros or '.0'."""
    try:
        return str(int(cell))
    except ValueError:
        pass
    try:
        value = float(cell)
    except ValueError:
        return cell
    return _label_text(value) if math.isfinite(value) and value == math.floor(value) else cell


# ---------------------------------------------------------------------------------------------
# identity and description


def data_source(spec: DataSpec) -> tuple[Path | None, str]:
    """Absolute path and format of the data; (None, 'builtin') for data generated or bundled with the code."""
    if spec.name == "cifar10":
        return find_cifar_folder(spec.data_dir).resolve(), "cifar10"
    if spec.name in DATASETS:
        return None, "builtin"
    path = Path(spec.name).expanduser().resolve()
    return path, detect_format(path)


# data_sha256(cached=True)'s: an absolute path -> (the size and mtime_ns of each of its files, their sha256)
_HASHED: dict[Path, tuple[tuple[tuple[str, int, int], ...], str]] = {}


def data_sha256(spec: DataSpec, cached: bool = False) -> str | None:
    """sha256 of the data's content (a file's bytes; a folder's data files with their paths); None for built-ins.
    ``cached``: a path this process hashed before (so) is not read again while each of its files keeps its size and
    mtime_ns (a worker checks its copy at every stage it joins)."""
    path, fmt = data_source(spec)
    if path is None:
        return None
    if fmt == "cifar10":
        files = [path / name for name in CIFAR_FILES if (path / name).is_file()]
    elif fmt == "image_folder":
        files = [file for file, _ in list_image_folder(path)[1]]
    else:
        files = [path]
    if not cached:
        return sha256_files(path, files)
    try:
        stamp = tuple((str(f), (st := f.stat()).st_size, st.st_mtime_ns) for f in files)
    except OSError:  # gone meanwhile: hashing says so
        return sha256_files(path, files)
    if _HASHED.get(path, (None,))[0] != stamp:
        _HASHED[path] = stamp, sha256_files(path, files)
    return _HASHED[path][1]


def data_identity(spec: DataSpec, dataset: Dataset | None = None, cached: bool = False) -> dict[str, Any]:
    """JSON-ready identity of the data: name, absolute path, format, sha256 (``data_sha256``'s, ``cached`` alike),
    split shapes, image shape, class names."""
    ds = dataset if dataset is not None else load_dataset(spec)
    path, fmt = data_source(spec)
    return {
        "name": spec.name,
        "path": str(path) if path is not None else None,
        "format": fmt,
        "sha256": data_sha256(spec, cached),
        "shapes": {split: list(getattr(ds, f"X_{split}").shape) for split in SPLITS},
        "image_shape": list(ds.image_shape) if ds.image_shape is not None else None,
        "classes": list(_class_names(ds)),
    }


def _class_names(ds: Dataset) -> tuple[str, ...]:
    return ds.label_names if ds.label_names is not None else tuple(str(c) for c in range(ds.num_classes))


def _feature_std(X: np.ndarray, rows: int = 4096) -> np.ndarray:
    """Per-feature standard deviation (D,) of X (N, D), accumulated in float64 over row chunks."""
    mean = X.mean(axis=0, dtype=np.float64)
    total = np.zeros_like(mean)
    for start in range(0, len(X), rows):
        total += ((X[start:start + rows] - mean) ** 2).sum(axis=0)
    return np.sqrt(total / max(len(X), 1))


def scale_warning(ds: Dataset, std: np.ndarray | None = None) -> str | None:
    """The warning that the features have very different scales, or an array's all far above unit scale (their
    median std past INPUT_STD_HIGH), or that images' values run past PIXEL_UNIT_MAX from 0 (an .npz of 0..255
    pixels, read as they are), or None; ``std``: the features' std (D,)."""
    unit = ("where the initialisation assumes about unit scale: the initial loss is off ln C and good learning rates "
            "are lower;")
    low, high = (float(ds.X_train.min()), float(ds.X_train.max())) if ds.X_train.size else (0.0, 0.0)
    if ds.image_shape is not None:
        if low < 0 or high <= PIXEL_UNIT_MAX:
            return None
        return (f"image values {low:g} to {high:g}, read as they are (an image folder's and cifar10's are scaled to "
                f"[0, 1]), {unit} divide them by 255 in the file, or try --preprocess standardize")
    std = _feature_std(ds.X_train) if std is None else std
    varying = std[std > 0]
    # an array's features (a table is standardized by default; on raw scales the ratio below speaks of it)
    if (ds.feature_names is None and varying.size and varying.max() / varying.min() <= SCALE_RATIO_WARNING
            and np.median(varying) > INPUT_STD_HIGH):
        return (f"features of std {varying.min():.3g} to {varying.max():.3g} (values {low:g} to {high:g}), {unit} "
                f"try --preprocess standardize")
    if varying.size < 2 or varying.max() / varying.min() <= SCALE_RATIO_WARNING:
        return None
    return (f"features on very different scales: std from {varying.min():.3g} to {varying.max():.3g} "
            f"(ratio {varying.max() / varying.min():.0f}); try --preprocess standardize")


def id_column_warning(ds: Dataset) -> str | None:
    """The warning that a table's column holds a different whole number in every row, as a row id does (it would be
    trained on as a feature, and in a file sorted by class it predicts the class), or None."""
    if ds.feature_names is None or ds.image_shape is not None:
        return None
    splits = [X for X in (ds.X_train, ds.X_val, ds.X_test) if len(X)]
    rows = sum(len(X) for X in splits)
    if rows < ID_MIN_ROWS:
        return None
    low = np.min([X.min(axis=0) for X in splits], axis=0)
    high = np.max([X.max(axis=0) for X in splits], axis=0)
    # a column narrower than its row count cannot hold a different whole number in each (pixels: 0-255); the
    # others are read one at a time, never the whole table copied
    # (float64: a column from -3e38 to 3e38 would overflow float32)
    for j in np.flatnonzero(high.astype(np.float64) - low >= rows - 1):
        name, column = ds.feature_names[j], np.concatenate([X[:, j] for X in splits])
        if np.array_equal(column, np.round(column)) and len(np.unique(column)) == len(column):
            shown = repr(name) if name.strip() else ("'' (no name in the header, as pandas' to_csv names the index "
                                                     "it writes unless given index=False)")
            return (f"column {shown} holds a different whole number in every row ({column.min():.0f} to "
                    f"{column.max():.0f}), as a row id does: it is trained on as a feature; "
                    + f"leave it out with {ignore_option(name)} if it is one")
    return None


def missing_label_warning(ds: Dataset) -> str | None:
    """The warning that a table's class is named as a missing value is written ('?', 'NA'), which without --missing
    is trained on as a class (with it, its rows are dropped), or None."""
    if ds.feature_names is None or ds.label_names is None:
        return None
    missing = missing_words(ds.label_names)
    marked = [c for c, name in enumerate(ds.label_names) if name.strip().lower() in missing]
    if not marked:
        return None
    rows = sum(np.bincount(getattr(ds, f"y_{split}"), minlength=ds.num_classes) for split in SPLITS)
    listed = ", ".join(f"{ds.label_names[c]!r} ({rows[c]} rows)" for c in marked)
    return (f"{'classes' if len(marked) > 1 else 'class'} {listed} {'are' if len(marked) > 1 else 'is'} how a missing "
            "label is written, trained on as a class; --missing mean or --missing drop drops such rows")


def majority_class(ds: Dataset) -> int | None:
    """The class more than twice as frequent in training as the other classes on average (its share above
    2 / (classes + 1): 2/3 of two classes, half of three, 2/11 of ten), whose guess alone scores well above 1/classes,
    or None."""
    train = np.bincount(ds.y_train, minlength=ds.num_classes)
    big = int(train.argmax())
    return big if len(train) > 1 and train[big] * (len(train) + 1) > 2 * train.sum() else None


def majority_baseline(ds: Dataset, split: str) -> tuple[str, float] | None:
    """The name of ``majority_class`` and the accuracy of always predicting it on ``split`` (train, val or test; the
    training split where that one is empty), or None."""
    big = majority_class(ds)
    if big is None:
        return None
    y = getattr(ds, f"y_{split}")
    return _class_names(ds)[big], float(np.mean((y if len(y) else ds.y_train) == big))


def majority_warning(ds: Dataset) -> str | None:
    """The warning that always predicting the most frequent class (``majority_class``) scores well above 1/classes,
    naming what it scores on validation, where a trial's value is measured, or None."""
    baseline = majority_baseline(ds, "val")
    if baseline is None:
        return None
    name, share = baseline
    return (f"always predicting the most frequent class, {name!r} ({majority_baseline(ds, 'train')[1]:.0%} of "
            f"training), scores {share:.4f} on {'validation' if len(ds.y_val) else 'training'}: a validation accuracy "
            "near that has learned nothing but the class frequencies")


def missing_word_warning(ds: Dataset) -> str | None:
    """The warning that a text column has a category None or null, which is a missing value in a column of numbers
    (and pandas reads as one) but a word in a column of text, or None."""
    if ds.encoding is None:
        return None
    found = [f"{name!r} ({cat!r})" for name, cats in zip(ds.encoding.columns, ds.encoding.categories)
             for cat in cats or () if cat.lower() in MISSING_NUMBERS]
    if not found:
        return None
    return (f"{'text columns' if len(found) > 1 else 'text column'} {', '.join(found)}: in a column of text None, "
            "null and nan are a category, a missing value only in a column of numbers; empty those cells (or write NA) "
            "if they mean a missing value")


def rare_category_warnings(ds: Dataset, standardized: bool) -> list[str]:
    """A warning per text column with categories in fewer than RARE_CATEGORY_ROWS training rows, naming them with
    their counts, and what they become: ``standardized`` (rescaled to unit variance), a category of k rows in n is
    sqrt((n - k) / k) on its rows (2 rows in 1,400: 26), a value that swamps the other features."""
    if ds.encoding is None:
        return []
    warnings, start, n = [], 0, len(ds.X_train)
    for name, cats in zip(ds.encoding.columns, ds.encoding.categories):
        width = 1 if cats is None else len(cats)
        if cats is not None:
            counts = np.rint(ds.X_train[:, start:start + width].sum(axis=0)).astype(np.int64)
            rare = sorted((int(k), cat) for k, cat in zip(counts, cats) if 0 < k < min(RARE_CATEGORY_ROWS, n))
            if rare:
                listed = ", ".join(f"{cat!r} ({k})" for k, cat in rare[:RARE_CATEGORIES_NAMED]) + (
                    f" and {len(rare) - RARE_CATEGORIES_NAMED} more" if len(rare) > RARE_CATEGORIES_NAMED else "")
                sizes = sorted({round(math.sqrt((n - k) / k)) for k, _ in rare})
                one = len(rare) == 1
                effect = (f"rescaled to unit variance by --preprocess, {'its' if one else 'their'} one-hot feature"
                          f"{' is' if one else 's are'} " + (f"{sizes[0]}" if len(sizes) == 1 else
                                                             f"{sizes[0]} to {sizes[-1]}")
                          + " on those rows (about 0 on the others): values that swamp the other features, learned "
                          "from a handful of rows" if standardized else "too few rows to learn from")
                warnings.append(f"text column {name.strip()!r} has {'a category' if one else 'categories'} in fewer "
                                f"than {RARE_CATEGORY_ROWS} of the {n} training rows: {listed}; {effect}; merge "
                                f"{'it' if one else 'them'} into a broader category (such as 'other') in the file, or "
                                f"leave the column out with {ignore_option(name)}")
        start += width
    return warnings


def case_variant_warning(ds: Dataset) -> str | None:
    """The warning that a text column (or the label) holds names that differ only in case ('male', 'Male'), which are
    different categories (classes), or None."""
    columns = list(zip(ds.encoding.columns, ds.encoding.categories)) if ds.encoding is not None else []
    if ds.feature_names is not None and ds.label_names is not None:
        columns.append(("the label", ds.label_names))
    found = []
    for name, names in columns:
        alike: dict[str, list[str]] = {}
        for category in names or ():
            alike.setdefault(category.casefold(), []).append(category)
        found += [f"{name if name == 'the label' else repr(name)} ({', '.join(map(repr, same))})"
                  for same in alike.values() if len(same) > 1]
    if not found:
        return None
    return (f"{', '.join(found)}: names that differ only in case are told apart (as different categories or "
            "classes); write them alike where they mean the same")


def describe_dataset(spec: DataSpec, dataset: Dataset | None = None, standardized: bool = False) -> dict[str, Any]:
    """What would be trained on: samples per split, features, classes with counts, value ranges, and warnings
    (``standardized``: the features will be rescaled one by one, so their raw scales need no warning)."""
    ds = dataset if dataset is not None else load_dataset(spec)
    path, fmt = data_source(spec)
    names = _class_names(ds)
    counts = {split: np.bincount(getattr(ds, f"y_{split}"), minlength=len(names)) for split in SPLITS}
    std = _feature_std(ds.X_train)
    warnings: list[str] = []
    scales = None if standardized else scale_warning(ds, std)
    if scales is not None:
        warnings.append(scales)
    for warning in (*ds.notes, id_column_warning(ds), missing_label_warning(ds), missing_word_warning(ds),
                    case_variant_warning(ds), unread_files_warning(path) if fmt == "image_folder" else None):
        if warning is not None:
            warnings.append(warning)
    warnings += rare_category_warnings(ds, standardized)
    if ds.image_shape is None and (std == 0).any():
        warnings.append(f"{int((std == 0).sum())} feature(s) constant in the training split")
    train = counts["train"]
    few = [c for c in range(len(names)) if train[c] < FEW_SAMPLES_WARNING]
    if few:  # past FEW_CLASSES_NAMED classes (thousands could be few), the fewest samples first
        named = few if len(few) <= FEW_CLASSES_NAMED else sorted(few, key=lambda c: train[c])[:FEW_CLASSES_NAMED]
        listed = ", ".join(f"{names[c]!r} ({train[c]})" for c in named)
        warnings.append(f"few training samples (< {FEW_SAMPLES_WARNING}) in class {listed}" if named == few else
                        f"few training samples (< {FEW_SAMPLES_WARNING}) in {len(few)} of {len(names)} classes, the "
                        f"fewest {listed}, ...")
    if train.min() > 0 and train.max() / train.min() > IMBALANCE_WARNING:
        big, small = int(train.argmax()), int(train.argmin())
        warnings.append(f"heavy class imbalance: {names[big]!r} has {train[big]} training samples, {names[small]!r} "
                        f"{train[small]} ({train[big] / train[small]:.0f}x)")
    majority = majority_warning(ds)
    if majority is not None:
        warnings.append(majority)
    X_all = [getattr(ds, f"X_{split}") for split in SPLITS if len(getattr(ds, f"X_{split}"))]
    return {
        "name": spec.name,
        "path": str(path) if path is not None else None,
        "format": fmt,
        "samples": ds.sizes,
        "features": ds.input_dim,
        "image_shape": list(ds.image_shape) if ds.image_shape is not None else None,
        "classes": [{"name": n, **{split: int(counts[split][c]) for split in SPLITS}} for c, n in enumerate(names)],
        "value_range": {"min": float(min(X.min() for X in X_all)), "max": float(max(X.max() for X in X_all))},
        "feature_std": {"min": float(std.min()), "max": float(std.max())},
        "warnings": warnings,
        "label_column": ds.label_column,
        "table": None if ds.encoding is None else table_encoding_info(ds.encoding, ds.table_notes or {}),
    }


def table_encoding_info(encoding: TableEncoding, notes: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: a table's columns, its text columns with their training categories, what a missing cell became,
    and the rows dropped, cells filled and cells of unseen categories per split (``Dataset.table_notes``)."""
    return {
        "columns": len(encoding.columns),
        "text_columns": [{"name": name.strip(), "categories": list(cats)}
                         for name, cats in zip(encoding.columns, encoding.categories) if cats is not None],
        "fill": None if encoding.fill is None else {name.strip(): value
                                                    for name, value in zip(encoding.columns, encoding.fill)},
        **notes,
    }


# ---------------------------------------------------------------------------------------------
# digits


def load_digits_dataset(spec: DataSpec) -> Dataset:
    """scikit-learn's 8x8 digits (1797 samples, 64 pixels scaled from 0..16 to [0, 1], 10 classes): 1257/270/270."""
    X, y = _read_digits()
    X = X.astype(np.float32) / np.float32(16)
    y = y.astype(np.int64)
    rng = np.random.default_rng(spec.seed)
    X_tr, y_tr, X_va, y_va, X_te, y_te = _split_shuffled(spec, X, y, DIGITS_SPLIT, rng)
    return Dataset(
        name="digits", X_train=X_tr, y_train=y_tr, X_val=X_va, y_val=y_va, X_test=X_te, y_test=y_te,
        num_classes=10, image_shape=(1, 8, 8), label_names=tuple(str(d) for d in range(10)),
    )


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits file scikit-learn ships, read directly: importing scikit-learn costs about a second at start-up."""
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0], "datasets", "data", "digits.csv.gz") if locations else None
    if path is None or not path.is_file():  # an unusual install: let scikit-learn find its own file
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


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
    # the three splits plus one split-sized temporary (class_means[y]) while generating
    n_bytes = (n_train + n_val + n_test + max(n_train, n_val, n_test)) * CIFAR_DIM * 4
    check_memory(n_bytes, "synthetic", f"{n_train} + {n_val} + {n_test} samples of {CIFAR_DIM} features")
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
# CIFAR-10 (the reader is engine.cifar)


def load_cifar10_dataset(spec: DataSpec) -> Dataset:
    """CIFAR-10 from the python batches in spec.data_dir (the folder or its parent)."""
    return _load_cifar10(spec, find_cifar_folder(spec.data_dir))


def _load_cifar10(spec: DataSpec, folder: Path) -> Dataset:
    """CIFAR-10 from ``folder``: 50000 train (last 10 % or val_size of them is val), 10000 test."""
    file_bytes = sum((folder / name).stat().st_size for name in CIFAR_FILES if (folder / name).is_file())
    check_memory(6 * file_bytes, str(folder), "the CIFAR-10 batches as float32")
    parts = [read_cifar_batch(folder / name) for name in CIFAR_TRAIN_BATCHES]
    # pixels scaled to [0, 1] so fan-in initialisers see unit-scale inputs
    X_all = np.concatenate([data for data, _ in parts]).astype(np.float32)
    X_all /= np.float32(255)
    y_all = np.concatenate([labels for _, labels in parts])
    X_test, y_test = read_cifar_batch(folder / CIFAR_TEST_BATCH)
    label_names = read_cifar_label_names(folder / CIFAR_META)

    n_val = spec.val_size if spec.val_size is not None else int(round(CIFAR_VAL_FRACTION * len(X_all)))
    if n_val >= len(X_all):
        raise DataError(f"cifar10: asked for val_size {n_val} (--val-size) but only {len(X_all)} training images are "
                        "available")
    n_train = len(X_all) - n_val
    X_tr, y_tr = _take_first("cifar10", "train", X_all[:n_train], y_all[:n_train], spec.train_size)
    X_te, y_te = _take_first("cifar10", "test", X_test.astype(np.float32) / np.float32(255), y_test, spec.test_size)
    return Dataset(
        name=spec.name, X_train=X_tr, y_train=y_tr, X_val=X_all[n_train:], y_val=y_all[n_train:],
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
