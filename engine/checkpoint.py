"""A trained network as one .npz file: its weights and batch-norm statistics, the preprocessing fitted on its
training split, its class names and what it reads (CSV columns or an image shape), so that new data is scored
exactly as its validation data was. Read back with ``allow_pickle=False``: nothing in the file is executed, and a
file holding any member besides the arrays ``save_checkpoint`` writes for its network is refused, not read past.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import secrets
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from engine.encoding import TableEncoding
from engine.errors import ConfigError, DataError, WriteError
from engine.formats import cannot_read, check_memory, load_npz, one_line, read_npz_headers
from engine.init import InitSpec
from engine.model import MIN_KEEP, FullyConnectedNet, ModelConfig
from engine.preprocess import FITTED, PREPROCESSORS, Preprocessor

FORMAT = "nn-hpsearch-model/1"
NOT_A_MODEL = "not a model file saved by `search train --save`"  # what a file that is no model file is called
_PRE_ARRAYS = ("mean", "scale", "projection")
# the names of the arrays a model file holds (save_checkpoint's): any other member is refused, not read past
_MEMBER = re.compile(r"(meta|param\.[A-Za-z]+\d+|bn_(mean|var)\.\d+|pre\.(mean|scale|projection)|range\.(min|max))"
                     r"\.npy")


@dataclass
class Checkpoint:
    """A trained model and what scoring new data with it needs.

    ``features``: the CSV/TSV columns it reads, in order (None for other data); ``label_column``: the CSV column
    that held the labels; ``image_shape``: (C, H, W) of the images it reads, before preprocessing; ``encoding``: how
    the columns become features (text columns one-hot, missing cells filled), None for columns of numbers read as
    they are; ``info``: the run's configuration, data and scores, kept for the reader (JSON values);
    ``train_range``: each feature's lowest and highest value (D,) in the training split, before preprocessing (None in
    a file saved before they were kept), by which ``outside_training_range`` judges new samples.
    """

    model: FullyConnectedNet
    preprocessor: Preprocessor
    label_names: tuple[str, ...]
    features: tuple[str, ...] | None = None
    label_column: str | None = None
    image_shape: tuple[int, int, int] | None = None
    encoding: TableEncoding | None = None
    info: dict[str, Any] = field(default_factory=dict)
    train_range: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def input_dim(self) -> int:
        """Features per sample the file's data must have, before preprocessing."""
        return self.preprocessor.input_dim


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` (an existing file is replaced only once the new one is complete)."""
    model, pre = checkpoint.model, checkpoint.preprocessor
    meta = {
        "format": FORMAT,
        "model": dataclasses.asdict(model.config),
        "input_dim": int(model.params["W1"].shape[0]),
        "label_names": list(checkpoint.label_names),
        "features": None if checkpoint.features is None else list(checkpoint.features),
        "label_column": checkpoint.label_column,
        "image_shape": None if checkpoint.image_shape is None else list(checkpoint.image_shape),
        "preprocess": {"name": pre.name, "input_dim": pre.input_dim},
        "encoding": None if checkpoint.encoding is None else checkpoint.encoding.as_dict(),
        "bn_layers": sorted(model.bn_stats),
        "info": checkpoint.info,
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta, sort_keys=True))}
    arrays.update({f"param.{name}": value for name, value in model.params.items()})
    for i, (mean, var) in model.bn_stats.items():
        arrays[f"bn_mean.{i}"], arrays[f"bn_var.{i}"] = mean, var
    for name in _PRE_ARRAYS:
        if getattr(pre, name) is not None:
            arrays[f"pre.{name}"] = getattr(pre, name)
    if checkpoint.train_range is not None:
        arrays["range.min"], arrays["range.max"] = (np.asarray(a, dtype=np.float32) for a in checkpoint.train_range)
    write_replacing(path, lambda f: _write_npz(f, arrays))


def _write_npz(f: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as an .npz into the open file ``f``."""
    if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        np.savez(f, **arrays)
        return
    # a device or a pipe: the zip made in memory first, since /dev/null seeks and tells 0 however much was written,
    # from which zipfile computed a negative end record (struct.error)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    f.write(buffer.getbuffer())


def _names_a_descriptor(path: Path) -> bool:
    """Is ``path`` an open descriptor by name: in ``/proc`` (``/dev/fd/1``), or a link into it (``/dev/stdout``)?"""
    for _ in range(40):  # as many links as the kernel follows
        folder = Path(os.path.realpath(path.parent))
        if folder.parts[:2] == ("/", "proc"):
            return True
        if not (folder / path.name).is_symlink():
            return False
        path = folder / os.readlink(folder / path.name)
    return False


def write_replacing(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` a file at ``path`` through a temporary file in its folder and ``os.replace``: an existing file is
    replaced only once the new one is complete, nothing half-written is left, and the mode is the existing file's
    permissions, or for a new file (or a link replaced) 0666 minus the umask, as open() gives. A device or FIFO there
    (``/dev/null``), or an open descriptor by name (``/dev/stdout``), is written to, never replaced by a file."""
    path = Path(path)
    try:
        if (path.exists() and not path.is_file()) or _names_a_descriptor(path):
            with open(path, "wb") as f:
                write(f)
            return
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        # O_EXCL on a fresh random name: never an existing file or link
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                if path.is_file() and not path.is_symlink():  # a private (0600) file stays private
                    os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) & 0o777)
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:  # the folder gone during a long run, no permission, a full disk: one line, exit 1
        raise WriteError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from exc


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The model file at ``path``; DataError in one line when it is missing, not such a file, or damaged."""
    path = Path(path)
    arrays = _read_arrays(path)
    try:
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict):
            raise ValueError(f"meta is a JSON {type(meta).__name__}, not an object")
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        spec = dict(meta["model"])
        spec["hidden"] = tuple(spec["hidden"])
        spec["init"] = InitSpec(**spec["init"])
        keep = spec.get("dropout")
        if isinstance(keep, float) and 0 < keep < MIN_KEEP:  # saved before the floor: dropout plays no part in scoring
            spec["dropout"] = MIN_KEEP
        config = ModelConfig(**spec)
        names = _names(meta["label_names"], "label_names")
        twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
        if twice is not None:  # a prediction of it would name either class, an accuracy count both
            raise ValueError(f"label_names holds {twice!r} twice")
        features = None if meta.get("features") is None else _names(meta["features"], "features")
        twice = [repr(name) for name, n in Counter(f.strip() for f in features or ()).items() if n > 1]
        if twice:  # a model saved before a table's columns of one name were refused
            raise DataError(f"{path}: the model reads several columns named {', '.join(twice)}, which new rows "
                            "cannot be matched to by name: train it again on a file whose columns have distinct names")
        label_column = meta.get("label_column")
        if label_column is not None and not isinstance(label_column, str):
            raise ValueError(f"label_column must be a column name, got {label_column!r}")
        if label_column is not None and features is not None and label_column in features:  # scored as a feature
            raise ValueError(f"label_column {label_column!r} is one of the features")
        input_dim = int(meta["input_dim"])
        shape = meta.get("image_shape")
        if shape is not None:
            if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v >= 1 for v in shape)
                    and int(np.prod(shape)) == meta["preprocess"]["input_dim"]):
                raise ValueError(f"image_shape {shape!r} is not C, H, W of the {meta['preprocess']['input_dim']} "
                                 "features the model reads")
            shape = tuple(shape)
        try:
            model = FullyConnectedNet(config, input_dim, len(names), np.random.default_rng(0))
        except DataError as exc:  # a network too large for the memory available
            raise DataError(f"{path}: {exc}") from exc
        for name, value in model.params.items():
            stored = arrays[f"param.{name}"]
            if stored.shape != value.shape or stored.dtype != value.dtype:
                raise ValueError(f"{name} has shape {stored.shape} {stored.dtype}, the network needs {value.shape} "
                                 f"{value.dtype}")
            model.params[name] = _finite(stored, name)
        for i in meta["bn_layers"]:
            if int(i) not in model.bn_stats:
                raise ValueError(f"bn_layers names layer {i!r}, not a batch-norm layer of the network")
            mean, var = model.bn_stats[int(i)]
            model.bn_stats[int(i)] = (_array(arrays, f"bn_mean.{i}", mean.shape),
                                      _array(arrays, f"bn_var.{i}", var.shape))
        pre = meta["preprocess"]
        if pre["name"] not in PREPROCESSORS:
            raise ValueError(f"unknown preprocessing {pre['name']!r}")
        stored = [name for name in _PRE_ARRAYS if f"pre.{name}" in arrays]
        if stored != [name for name in _PRE_ARRAYS if name in FITTED[pre["name"]]]:  # scored with what it was fitted
            raise ValueError(f"{pre['name']} preprocessing keeps {_arrays_text(FITTED[pre['name']])}, the file "
                             f"holds {_arrays_text(stored)}")
        pre_dim = int(pre["input_dim"])
        encoding = None if meta.get("encoding") is None else TableEncoding.from_dict(meta["encoding"])
        if encoding is not None and encoding.columns != features:
            raise ValueError("encoding.columns are not the features the model reads")
        if features is not None:  # else the data would be blamed for too few columns
            read = len(features) if encoding is None else encoding.output_dim
            if read != pre_dim:
                raise ValueError(f"features names {len(features)} column{'s' if len(features) != 1 else ''}"
                                 f"{'' if encoding is None else f' encoded into {read} features'}, the model "
                                 f"reads {pre_dim}")
        pre = Preprocessor(pre["name"], pre_dim, **{
            name: _array(arrays, f"pre.{name}", (pre_dim,) if name != "projection" else (pre_dim, None))
            if f"pre.{name}" in arrays else None for name in _PRE_ARRAYS})
        if pre.scale is not None and not (pre.scale > 0).all():  # every score would be inf or NaN
            raise ValueError(f"pre.scale holds {pre.scale[~(pre.scale > 0)][0]:g}: a feature's scale must be above 0")
        if pre.output_dim != model.params["W1"].shape[0]:
            raise ValueError(f"the preprocessing gives {pre.output_dim} features, the network reads "
                             f"{model.params['W1'].shape[0]}")
        train_range = None  # absent from a file saved before it was kept: nothing to judge new samples by
        if "range.min" in arrays or "range.max" in arrays:
            train_range = (_array(arrays, "range.min", (pre_dim,)), _array(arrays, "range.max", (pre_dim,)))
            if (train_range[0] > train_range[1]).any():
                raise ValueError("range.min is above range.max")
        read = {f"param.{name}" for name in model.params} | {f"pre.{name}" for name in stored} | {
            f"bn_{kind}.{i}" for i in meta["bn_layers"] for kind in ("mean", "var")} | {"range.min", "range.max"}
        unread = sorted(set(arrays) - read)
        if unread:  # of a model file's kind, but not of this network (param.W3 beside 2 layers)
            raise ValueError(f"it holds an array {unread[0]!r}, which the model does not read")
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError, ConfigError,
            json.JSONDecodeError) as exc:  # OverflowError: a JSON Infinity where a size is read
        raise _not_a_model(path, exc) from exc
    return Checkpoint(model, pre, names, features=features, label_column=label_column,
                      image_shape=shape, encoding=encoding, info=meta.get("info") or {},  # type: ignore[arg-type]
                      train_range=train_range)


FAR_OUTSIDE = 0.5  # a value is far outside a feature's training range when beyond it by half its width or more


def outside_training_range(checkpoint: Checkpoint, X: np.ndarray) -> dict[str, Any] | None:
    """How many values of the samples X (N, D), before preprocessing, lie far outside their feature's range in the
    training split (``FAR_OUTSIDE``; a feature constant there is not judged): ``values``, their ``share`` of the values
    judged, the ``features`` holding any, and the ``feature`` holding most, with its ``train_min``/``train_max`` and
    its ``min``/``max`` in X. None when the model file keeps no training range (saved before it was kept)."""
    if checkpoint.train_range is None:
        return None
    low, high = checkpoint.train_range
    margin = FAR_OUTSIDE * (high.astype(np.float64) - low)  # float64: -3e38 to 3e38 would overflow float32
    judged = high > low
    far = ((X < low - margin) | (X > high + margin)) & judged
    per_feature = far.sum(axis=0)
    judged_values, values = len(X) * int(judged.sum()), int(per_feature.sum())
    worst = int(per_feature.argmax()) if len(per_feature) else 0

    def shortest(v: np.generic) -> float:  # a float32 as it prints (11.62), not widened to 11.619999885559082
        return float(str(v))

    return {"values": values, "share": values / judged_values if judged_values else 0.0,
            "features": int((per_feature > 0).sum()), "feature": worst,
            "train_min": shortest(low[worst]), "train_max": shortest(high[worst]),
            "min": shortest(X[:, worst].min()) if len(X) else None,
            "max": shortest(X[:, worst].max()) if len(X) else None}


def _not_a_model(path: Path, exc: BaseException) -> DataError:
    return DataError(f"{path}: {NOT_A_MODEL} ({one_line(exc)})")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``: the headers read first, so that no object array is unpickled and no
    array larger than the memory available (a small compressed file can declare terabytes) is allocated."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise cannot_read(path, exc) from exc
    if not stat.S_ISREG(mode):  # /dev/zero would be read to no end, a FIFO would block
        raise DataError(f"{path} is not a regular file")
    try:
        with zipfile.ZipFile(path) as zf:
            other = next((name for name in zf.namelist() if not _MEMBER.fullmatch(name)), None)
    except (zipfile.BadZipFile, OSError):
        other = None  # said below, as a file that is no .npz
    if other is not None:
        raise _not_a_model(path, ValueError(f"it holds a member {other!r}, which no model file holds"))
    headers = read_npz_headers(path, NOT_A_MODEL)  # else the system's reason: cannot read PATH: Permission denied
    for key, (_, dtype) in headers.items():
        if dtype.hasobject:
            raise _not_a_model(path, ValueError(f"array {key!r} holds Python objects (dtype {dtype})"))
    check_memory(sum(int(np.prod(shape, dtype=object)) * dtype.itemsize for shape, dtype in headers.values()),
                 str(path), "its arrays")
    return load_npz(path, NOT_A_MODEL)


def _arrays_text(names: Any) -> str:
    """``("mean", "scale")`` as ``pre.mean and pre.scale``; none as ``no array``."""
    shown = [f"pre.{name}" for name in names]
    return " and ".join(shown) if shown else "no array"


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{key} must be a list of names, got {str(value)[:60]}")
    return tuple(value)


def _finite(array: np.ndarray, key: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{key} holds NaN or inf")
    return array


def _array(arrays: dict[str, np.ndarray], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """``arrays[key]``, float, finite and of ``shape`` (None: any length on that axis)."""
    array = arrays[key]
    if array.dtype.kind != "f" or array.ndim != len(shape) or any(
            n is not None and n != m for n, m in zip(shape, array.shape)):
        needed = "(" + ", ".join("K" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{key} has shape {array.shape} {array.dtype}, the model needs {needed} floats")
    return _finite(array, key)


def class_probabilities(model: FullyConnectedNet, X: np.ndarray, batch_size: int = 2000) -> np.ndarray:
    """Softmax of the network's scores (N, C) on preprocessed X (N, D), in eval mode and in chunks."""
    if model.config.loss != "softmax":
        raise DataError(f"an {model.config.loss} model scores classes without probabilities: "
                        f"model.predict(X) gives its classes")
    X = np.asarray(X)
    features = model.params[model.weight_names[0]].shape[0]
    if X.ndim != 2 or X.shape[1] != features:
        raise DataError(f"the network takes samples of {features} features (N x {features}), got shape {X.shape}")
    out = np.empty((X.shape[0], model.params[model.weight_names[-1]].shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], batch_size):
        scores, _ = model.forward(X[start : start + batch_size], train=False)
        scores = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        out[start : start + batch_size] = e / e.sum(axis=1, keepdims=True)
    return out
