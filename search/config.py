"""RunConfig: everything one run needs, as a tree of the engine's frozen configs addressed by dotted path.

``config.with_params({"train.lr": 0.01, "arch.hidden": 256, "arch.activation": "tanh"})`` applies a
trial's values; a trial, a retrain and ``search train --from-trial`` all build their run this way,
so adding a hyperparameter is adding a field to one of the sections (and a line to
``search.space.SEARCHABLE`` to make it searchable).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.data import DATASETS, DataSpec, Dataset, load_dataset
from engine.errors import ConfigError
from engine.model import FullyConnectedNet, ModelConfig
from engine.preprocess import Preprocessor, PreprocessSpec, fit_dataset
from engine.trainer import TrainConfig
from search.text import wrapped

MAX_DEPTH = 100  # hidden layers a run may have: --depth and a searched depth alike


@dataclass(frozen=True)
class RunConfig:
    """One run: ``data``, ``preprocess``, ``arch`` (the network) and ``train`` (optimisation, epochs, seed)."""

    data: DataSpec = field(default_factory=DataSpec)
    preprocess: PreprocessSpec = None  # type: ignore[assignment]  # None: default_preprocess(data.name)
    arch: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=50))

    def __post_init__(self) -> None:
        if self.preprocess is None:
            object.__setattr__(self, "preprocess", PreprocessSpec(default_preprocess(self.data.name)))

    # ---- applying values by path
    def with_params(self, values: Mapping[str, Any]) -> RunConfig:
        """A copy with each ``"section.field[.field]"`` set to its value; the sections check themselves.

        ``arch.hidden`` given a number sets the width of every hidden layer; ``arch.depth`` sets the
        number of hidden layers (each as wide as the first).
        """
        config = self
        for path, value in values.items():
            config = _set_path(config, path.split("."), value, path)
        return config

    # ---- building the run
    def load(self, raw: Dataset | None = None) -> Dataset:
        """The dataset (``raw``: as ``load_dataset`` read it already), preprocessed with statistics of its training
        split; checked against the batch size."""
        return self.load_fitted(raw)[0]

    def load_fitted(self, raw: Dataset | None = None) -> tuple[Dataset, Preprocessor]:
        """``load``'s dataset and the preprocessing it fitted on the training split (which a saved model keeps)."""
        dataset, pre = fit_dataset(raw if raw is not None else load_dataset(self.data), self.preprocess)
        if self.train.batch_size > len(dataset.y_train):
            raise ConfigError(
                f"batch size {self.train.batch_size} (--batch-size) is larger than the training set "
                f"({len(dataset.y_train)} samples)"
            )
        return dataset, pre

    def build_model(self, dataset: Dataset) -> FullyConnectedNet:
        """A fresh network for this data, drawn with ``train.seed``."""
        return FullyConnectedNet(self.arch, dataset.input_dim, dataset.num_classes,
                                 np.random.default_rng(self.train.seed))

    # ---- serialisation, generic over the dataclass fields
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Rebuild from ``to_dict`` output (lists become tuples); unknown keys are refused."""
        return _from_dict(cls, data)


def is_table(data: str) -> bool:
    """Whether ``data`` names a CSV/TSV table: columns in their own units, no image (no colour channels)."""
    return Path(data).suffix.lower() in (".csv", ".tsv")


def default_preprocess(data: str) -> str:
    """The preprocessing a run of ``data`` gets unless one is named: a CSV/TSV table's columns are rescaled one by one
    (standardize: their units differ, e.g. age and income), anything else is zero-centred (mean_image, the
    lecture's)."""
    return "standardize" if is_table(data) else "mean_image"


def _set_path(obj: Any, parts: list[str], value: Any, path: str) -> Any:
    name, rest = parts[0], parts[1:]
    if isinstance(obj, ModelConfig) and name == "depth" and not rest:
        depth = _as_int(value, path)
        if not 1 <= depth <= MAX_DEPTH:
            raise ConfigError(f"depth must be 1 to {MAX_DEPTH} hidden layers, got {depth}")
        return replace(obj, hidden=(obj.hidden[0],) * depth)
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        raise ConfigError(f"no run option at {path!r}")
    current = getattr(obj, name)
    if rest:
        new = _set_path(current, rest, value, path)
    elif isinstance(current, tuple) and not isinstance(value, (tuple, list)):
        new = (_as_int(value, path),) * len(current)  # one width for every hidden layer
    else:
        new = _coerce(value, current, path)
    return replace(obj, **{name: new})


def _as_int(value: Any, path: str) -> int:
    # an int compared exactly: float(10**23) != 10**23
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and float(value) != int(value):
        raise ConfigError(f"{path} needs an integer, got {value!r}")
    return int(value)


def _coerce(value: Any, current: Any, path: str) -> Any:
    """``value`` in the type of the field it replaces (Optuna hands back floats, ints, strings, bools)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{path} needs true or false, got {value!r}")
        return value
    if isinstance(current, int) and not isinstance(current, bool):
        return _as_int(value, path)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        kind = _dataclass_in(hints[name])
        if kind is not None and isinstance(value, Mapping):
            value = _from_dict(kind, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass named by a type hint (``InitSpec`` or ``InitSpec | None``), else None."""
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for c in candidates:
        if dataclasses.is_dataclass(c):
            return c
    return None


def absolute_data_name(name: str) -> str:
    """A built-in dataset name as it is; a path made absolute, so workers and retrains started elsewhere find
    the same file."""
    return name if name in DATASETS else str(Path(name).expanduser().resolve())


def with_absolute_data(run: RunConfig) -> RunConfig:
    """``run`` with its data path and data folder (``data_dir``) absolute."""
    data = run.data
    folder = str(Path(data.data_dir).expanduser().resolve()) if data.data_dir else data.data_dir
    return replace(run, data=replace(data, name=absolute_data_name(data.name), data_dir=folder))


def data_warnings(run: RunConfig, raw: Any, space: Collection[str] = ()) -> tuple[str, ...]:
    """`search data`'s warnings about the run's data ``raw`` (before --preprocess) that a run shares with every other
    on it, as lines to show before training: the raw scales differ a lot and --preprocess leaves them so; a column
    numbers the rows; a class is named as a missing label is written ('?'); one class's guess alone scores well above
    1/classes (``majority_warning``); values merged as float32 (``notes``); an
    image folder holds files not read (a GIF); an epoch is one update (unless ``space`` searches batch_size)."""
    from engine.data import data_source, id_column_warning, majority_warning, missing_label_warning, scale_warning
    from engine.formats import unread_files_warning
    from engine.preprocess import RESCALING

    path, fmt = data_source(run.data)
    warnings = (*raw.notes, None if run.preprocess.name in RESCALING else scale_warning(raw), id_column_warning(raw),
                missing_label_warning(raw), majority_warning(raw),
                unread_files_warning(path) if fmt == "image_folder" else None,
                None if "batch_size" in space else batch_warning(len(raw.y_train), run.train.batch_size))
    return tuple(wrapped(f"warning: {w}") for w in warnings if w is not None)


def batch_warning(train_samples: int, batch_size: int) -> str | None:
    """The warning for a training set under two batches: an epoch is one update (or none), and the samples past the
    first batch sit each epoch out; a 3-epoch trial of 84 images at batch 50 made 3 updates."""
    if train_samples < batch_size:
        return f"{train_samples} training samples, fewer than --batch-size {batch_size}: give a smaller --batch-size"
    if train_samples < 2 * batch_size:
        left = train_samples - batch_size
        return (f"{train_samples} training samples make one update an epoch at --batch-size {batch_size}"
                + (f" ({left} of them left out of each)" if left else "") + ": give a smaller --batch-size")
    return None
