"""A trained network as one .npz file: its weights and batch-norm statistics, the preprocessing fitted on its
training split, its class names and what it reads (CSV columns or an image shape), so that new data is scored
exactly as its validation data was. Read back with ``allow_pickle=False``: nothing in the file is executed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from engine.errors import ConfigError, DataError
from engine.formats import cannot_read, read_error
from engine.init import InitSpec
from engine.model import FullyConnectedNet, ModelConfig
from engine.preprocess import Preprocessor

FORMAT = "nn-hpsearch-model/1"
_PRE_ARRAYS = ("mean", "scale", "projection")


@dataclass
class Checkpoint:
    """A trained model and what scoring new data with it needs.

    ``features``: the CSV/TSV columns it reads, in order (None for other data); ``label_column``: the CSV column
    that held the labels; ``image_shape``: (C, H, W) of the images it reads, before preprocessing; ``info``: the
    run's configuration, data and scores, kept for the reader (JSON values).
    """

    model: FullyConnectedNet
    preprocessor: Preprocessor
    label_names: tuple[str, ...]
    features: tuple[str, ...] | None = None
    label_column: str | None = None
    image_shape: tuple[int, int, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)

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
    write_replacing(path, lambda f: np.savez(f, **arrays))


def write_replacing(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` a file at ``path`` through a temporary file in its folder and ``os.replace``: an existing file is
    replaced only once the new one is complete, nothing half-written is left, and the mode is 0666 minus the umask,
    as open() gives. A device or FIFO there (``/dev/null``) is written to, never replaced by a file."""
    path = Path(path)
    if path.exists() and not path.is_file():
        with open(path, "wb") as f:
            write(f)
        return
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # O_EXCL on a fresh random name: never an existing file or link
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The model file at ``path``; DataError in one line when it is missing, not such a file, or damaged."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except OSError as exc:
        raise cannot_read(path, exc) from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise read_error(path, exc, "not a model file saved by `search train --save`") from exc
    try:
        meta = json.loads(str(arrays.pop("meta")))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        spec = dict(meta["model"])
        spec["hidden"] = tuple(spec["hidden"])
        spec["init"] = InitSpec(**spec["init"])
        config = ModelConfig(**spec)
        names = tuple(str(n) for n in meta["label_names"])
        model = FullyConnectedNet(config, int(meta["input_dim"]), len(names), np.random.default_rng(0))
        for name, value in model.params.items():
            stored = arrays[f"param.{name}"]
            if stored.shape != value.shape or stored.dtype != value.dtype:
                raise ValueError(f"{name} has shape {stored.shape} {stored.dtype}, the network needs {value.shape} "
                                 f"{value.dtype}")
            model.params[name] = stored
        for i in meta["bn_layers"]:
            model.bn_stats[int(i)] = (arrays[f"bn_mean.{i}"], arrays[f"bn_var.{i}"])
        pre = Preprocessor(meta["preprocess"]["name"], int(meta["preprocess"]["input_dim"]),
                           **{name: arrays.get(f"pre.{name}") for name in _PRE_ARRAYS})
        if pre.output_dim != model.params["W1"].shape[0]:
            raise ValueError(f"the preprocessing gives {pre.output_dim} features, the network reads "
                             f"{model.params['W1'].shape[0]}")
    except (KeyError, TypeError, ValueError, ConfigError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a model file saved by `search train --save` "
                        f"({type(exc).__name__}: {exc})".replace("\n", " ")) from exc
    shape = meta.get("image_shape")
    return Checkpoint(model, pre, names, features=None if meta.get("features") is None else tuple(meta["features"]),
                      label_column=meta.get("label_column"),
                      image_shape=None if shape is None else tuple(int(v) for v in shape),  # type: ignore[arg-type]
                      info=meta.get("info") or {})


def class_probabilities(model: FullyConnectedNet, X: np.ndarray, batch_size: int = 2000) -> np.ndarray:
    """Softmax of the network's scores (N, C) on preprocessed X (N, D), in eval mode and in chunks."""
    out = np.empty((X.shape[0], model.params[model.weight_names[-1]].shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], batch_size):
        scores, _ = model.forward(X[start : start + batch_size], train=False)
        scores = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        out[start : start + batch_size] = e / e.sum(axis=1, keepdims=True)
    return out
