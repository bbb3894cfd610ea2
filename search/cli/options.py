"""Shared option groups: the run options that build one RunConfig, the search space, where a stage runs."""
from __future__ import annotations

import functools
import json
import math
import os
import re
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from engine.data import DATASETS, DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION, DataSpec
from engine.encoding import MISSING_POLICIES
from engine.formats import is_number_text
from engine.init import INITIALISERS, InitSpec
from engine.model import ACTIVATIONS, MIN_KEEP, ModelConfig
from engine.optim import OPTIMIZERS
from engine.preprocess import PREPROCESSORS, PreprocessSpec
from engine.trainer import CLASS_WEIGHTS, TrainConfig
from search.config import MAX_DEPTH, RunConfig, absolute_data_name, default_preprocess, is_table
from search.cli.output import say
from search.errors import SearchError
from search.objective import EXPLODE_FACTOR, EXPLODE_WINDOW
from search.schedulers import SCHEDULER_HELP, SCHEDULERS
from search.space import (
    DEFAULT_SPACE, SEARCHABLE, Dimension, check_fixed, check_space, describe_space, parse_dimension, searchable,
)


# a number option's text: ASCII digits only, as int() and float() also read other scripts' digits (--jobs ２ was 2)
# and digit separators (1_000); float also takes inf and nan, which FiniteFloatRange refuses by name
INT_TEXT = re.compile(r"[+-]?[0-9]+")
FLOAT_TEXT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)


class AsciiNumber(click.ParamType):
    """A number type whose text must match ``text`` (before the type's own conversion), else click's message."""

    text: re.Pattern[str]

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        # the spaces around it are no part of it, as int() and float() read them (--epochs " 3" ran 3 epochs)
        if isinstance(value, str) and not self.text.fullmatch(value.strip()):
            self.fail(f"{value!r} is not a valid {self.name}.", param, ctx)  # click's own words
        return super().convert(value, param, ctx)


class AsciiIntRange(AsciiNumber, click.IntRange):
    """click.IntRange of a whole number written in ASCII digits with an optional sign."""

    text = INT_TEXT


class AsciiFloat(AsciiNumber, click.types.FloatParamType):
    """click's float of a number written in ASCII (digits, sign, point, exponent; inf, nan)."""

    text = FLOAT_TEXT


class FiniteFloatRange(AsciiNumber, click.FloatRange):
    """click.FloatRange of a number written in ASCII that also refuses nan and inf (nan passes every comparison
    click makes)."""

    text = FLOAT_TEXT

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


class WritablePath(click.Path):
    """click.Path of a file (``folder``: a folder, made with its parents) the command writes, checked before any
    work: the folder it goes in (for a new folder, the nearest existing one) must be a writable folder."""

    def __init__(self, folder: bool = False) -> None:
        super().__init__(file_okay=not folder, dir_okay=folder, readable=False, writable=True)
        self.folder = folder

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not str(value).strip():
            self.fail("the path must not be empty", param, ctx)
        if self.folder and str(value) == "-":  # "-" is standard output to predict --out; a folder is no stream
            self.fail("'-' (standard output) cannot hold a folder of files: give a folder's name", param, ctx)
        if not self.folder and str(value).endswith(os.sep):  # x.png/ was written as x.png, exit 0
            self.fail(f"{str(value)!r} ends in {os.sep!r}, so it names a folder: give the file's name", param, ctx)
        rv = super().convert(value, param, ctx)
        problem = write_problem(str(rv), self.folder)
        if problem:
            self.fail(problem, param, ctx)
        return rv


class ImagePath(WritablePath):
    """A WritablePath of a plot, whose suffix names its format: .png, .pdf or .svg (``studies.plots.save``'s)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from studies.plots import IMAGE_SUFFIXES  # deferred: matplotlib, for the commands given --plot only

        rv = super().convert(value, param, ctx)
        if Path(str(rv)).suffix.lower() not in IMAGE_SUFFIXES:
            self.fail(f"{str(rv)!r}: a plot is written as {', '.join(IMAGE_SUFFIXES[:-1])} or {IMAGE_SUFFIXES[-1]}, "
                      f"by the file's suffix", param, ctx)
        return rv


# suffixes of what a model file (a NumPy .npz archive, whatever its name) is not: a slip of the keyboard, --save
# flowers.csv for --save flowers.npz, replaced that table by a model
# (a study database is refused as one: see check_not_input)
NOT_A_MODEL = frozenset({".csv", ".tsv", ".txt", ".json", ".jsonl", ".npy", ".parquet", ".xlsx", ".xls", ".ods", ".pkl",
                         ".pickle", ".png", ".jpg", ".jpeg", ".pdf", ".svg", ".toml", ".html", ".md"})


class ModelPath(WritablePath):
    """A WritablePath of a model file; one whose suffix names another kind of file (``NOT_A_MODEL``) is refused."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        suffix = Path(str(rv)).suffix.lower()
        if suffix in NOT_A_MODEL:
            self.fail(f"{str(rv)!r}: a model is written as a .npz file (a NumPy archive), not {suffix}", param, ctx)
        return rv


def write_problem(path_text: str, folder: bool) -> str | None:
    """Why a command cannot write the file (``folder``: into the folder, made with its parents) at ``path_text``, or
    None: the folder it goes in (for a new folder, the nearest existing one) must be a writable folder."""
    path = Path(path_text)
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # to be made, or a file on the way: said below
    except OSError as exc:  # a name longer than the file system takes, a loop of links: before any work
        return f"{path_text!r}: {exc.strerror or exc}"
    if folder and path.exists():
        if not path.is_dir():  # click.Path refuses a regular file only: a device or FIFO failed after the work
            return f"{path_text!r} is not a folder"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"folder {path_text!r} is not writable"
        return None
    if folder:  # mkdir cannot make a folder where a link to nothing is (File exists, once the work is done)
        broken = next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)
        if broken is not None:
            return f"{str(broken)!r} is a link to {os.readlink(broken)!r}, which does not exist"
    where = next((p for p in path.parents if p.exists()), path.parent) if folder else path.parent
    if not where.exists():
        return f"{path_text!r}: folder {str(where)!r} does not exist"
    if not where.is_dir():
        return f"{path_text!r}: {str(where)!r} is not a folder"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"{path_text!r}: folder {str(where)!r} is not writable"
    if folder:  # root passes os.access where no folder can be made (/proc): one made and removed at once says it
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".search-", dir=where))
        except OSError as exc:
            return f"{path_text!r}: cannot create a folder in {str(where)!r}: {exc.strerror or exc}"
    return None


def default_folder(folder: str) -> str:
    """``folder``, the default of --out, checked as a given --out is (before any work); SearchError otherwise."""
    problem = write_problem(folder, folder=True)
    if problem:
        raise SearchError(f"cannot write into the default folder of --out: {problem}; give --out FOLDER")
    return folder


def check_not_input(option: str, path: str | None, inputs: dict[str, str | None]) -> None:
    """SearchError when the file ``option`` writes (``path``) is one the command reads: ``inputs`` maps each reading
    option to its path (a built-in dataset's name is no file); an image inside a folder read is one of its images."""
    if path is None:
        return
    from engine.formats import IMAGE_SUFFIXES
    from studies.store import SQLITE_SIDE_FILES  # deferred, as storage_file's: the store loads SQLAlchemy and Optuna

    for name, source in inputs.items():
        image = Path(path).suffix.lower() in IMAGE_SUFFIXES
        folder = image and source is not None and source not in DATASETS and os.path.isdir(source)
        if folder and Path(source).resolve() in Path(path).resolve().parents:  # type: ignore[arg-type]
            raise SearchError(f"{option} {path} is in the {name} folder {source}, which reads it as an image; write it "
                              f"to another folder")
        try:
            same = source is not None and os.path.samefile(path, source)
        except OSError:  # either one missing: not the same file
            same = False
        if same:
            raise SearchError(f"{option} {path} is the {name} file; write to another file")
        # a SQLite database's log and index beside it, there or not yet: SQLite reads them as the database's own
        companion = source is not None and any(Path(path).resolve() == Path(source + suffix).resolve()
                                               for suffix in SQLITE_SIDE_FILES)
        if companion:
            raise SearchError(f"{option} {path} is a file SQLite keeps beside the {name} file {source}; write to "
                              f"another file")


def storage_file(storage: str | None) -> str | None:
    """The SQLite file of ``--storage`` (else $SEARCH_STORAGE, else the default), for ``check_not_input``; None for a
    server's database or one in memory."""
    from studies.store import resolve_storage_url, sqlite_path

    path = sqlite_path(resolve_storage_url(storage))
    return None if path is None else str(path)


def choice(names: Any) -> click.Choice:
    return click.Choice(sorted(names), case_sensitive=False)


# --help shows options in these sections, in this order; any other option goes under "Options"
SECTIONS = {
    # search predict's --model, --data (data_path) and --id-column first: what it scores
    "Data": ("model_file", "data_path", "id_column", "data", "data_dir", "label_column", "ignore_columns", "missing",
             "image_size", "val_fraction", "test_fraction", "train_size", "val_size", "preprocess", "pca_components"),
    "Model": ("hidden", "depth", "activation", "init_name", "init_std", "batchnorm", "dropout", "loss", "relu_bias"),
    "Optimisation": ("optimizer", "momentum", "batch_size", "lr_decay", "class_weight", "lr", "reg", "epochs",
                     "explode_factor"),
    "Search": ("space_items", "space_file", "lr_range", "reg_range", "trials", "sampler", "scheduler", "top", "edge",
               "promote", "fine_epochs", "fine_sampler", "fine_scheduler", "max_fine", "repeats", "retrain_seeds"),
    "Execution": ("campaign", "storage", "jobs", "heartbeat", "seed", "as_json", "fmt", "columns", "wide"),
}


class SectionedCommand(click.Command):
    """A command whose --help lists its options in sections (data, model, optimisation, search, execution)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # arguments are named in the usage line; click 8.5.1 gives each a help row too, an empty one
        # a list, not a dict by name: two options may set one parameter (--format json and --json)
        records = [(p.name, p.get_help_record(ctx)) for p in self.get_params(ctx) if isinstance(p, click.Option)]
        placed: set[str] = set()
        for title, names in SECTIONS.items():
            rows = [r for n in names for name, r in records if name == n and r]
            placed.update(names)
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        rest = [r for n, r in records if r and n not in placed]
        if rest:
            with formatter.section("Options"):
                formatter.write_dl(rest)


def _hidden(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    texts = [v.strip() for v in value.split(",")]
    if not all(INT_TEXT.fullmatch(v) for v in texts):  # int() reads other scripts' digits and '_': 1_6 and １６ were 16
        raise click.BadParameter(f"{value!r} must be comma-separated integers, e.g. 100 or 200,100")
    sizes = tuple(int(v) for v in texts)
    if any(s < 1 for s in sizes):
        raise click.BadParameter(f"{value!r}: every layer needs at least 1 unit")
    return sizes


def _image_size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    width, sep, height = value.lower().partition("x")
    # digits 0-9 only: "²" is a digit int() refuses (a traceback), "３２" one it reads as 32
    if not sep or not all(side.strip().isascii() and side.strip().isdigit() for side in (width, height)):
        raise click.BadParameter(f"{value!r} must look like WxH, e.g. 32x32")
    from engine.data import MAX_IMAGE_SIDE

    if not all(1 <= int(side) <= MAX_IMAGE_SIDE for side in (width, height)):
        raise click.BadParameter(f"{value!r}: width and height must be whole numbers in 1..{MAX_IMAGE_SIDE}, "
                                 "e.g. 32x32")
    return int(width), int(height)


def _data_name(name: str) -> str:
    from engine.data import check_dataset_name

    if not name.strip():
        raise SearchError("--data must be a dataset name or a path")
    check_dataset_name(name)  # before it is made absolute: a misspelt built-in name is told the known ones
    return absolute_data_name(name)


def positive_float(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value!r} must be a finite number > 0")
    return value


def nonneg_float(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value!r} must be a finite number >= 0")
    return value


def not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An option's text, refused when given empty (empty is not the same as leaving the option out)."""
    if value is not None and not value.strip():
        raise SearchError(f"{param.opts[0]} must not be empty")
    return value


def apply(options: list[Callable]) -> Callable:
    """One decorator applying ``options`` in the order listed (first listed = first in --help)."""
    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


# --------------------------------------------------------------------------- the run options -> RunConfig
# option parameter name -> the searchable name it fixes (for "searched and fixed at once")
FIXES = {
    "hidden": "hidden", "depth": "depth", "activation": "activation", "init_name": "init", "init_std": "init_std",
    "batchnorm": "batchnorm", "dropout": "dropout", "loss": "loss", "relu_bias": "relu_bias",
    "optimizer": "optimizer", "batch_size": "batch_size", "lr_decay": "lr_decay", "momentum": "momentum",
    "preprocess": "preprocess", "class_weight": "class_weight",
}

# the seeds of the trials, samplers and splits are taken modulo 2**32: a larger seed would repeat a smaller one
seed_option = click.option("--seed", type=AsciiIntRange(0, 2**32 - 1), default=0, show_default=True,
                           help="Seed of every random choice (0 to 4294967295).")

INIT_STD_HELP = "Std for normal/uniform/sparse/constant init, gain for orthogonal"  # search layers' too
RUN_OPTIONS = [
    # data
    click.option("--data", default="digits", show_default=True, metavar="NAME|PATH",
                 help=f"A built-in dataset ({', '.join(sorted(DATASETS))}) or a path: .npz, .csv/.tsv, a folder of "
                      "class subfolders of images, or a cifar-10-batches-py folder."),
    click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                 help="Folder of the built-in cifar10: the cifar-10-batches-py folder or its parent."),
    click.option("--label-column", default=None, metavar="NAME", help="CSV/TSV label column (default: the last)."),
    click.option("--ignore-column", "ignore_columns", multiple=True, metavar="NAME",
                 help="A CSV/TSV column neither trained on nor the labels (an id, a note); repeat for several. "
                      "'' leaves out the columns with no name in the header (the index pandas' to_csv writes)."),
    click.option("--missing", type=click.Choice(MISSING_POLICIES), default=None,
                 help="A CSV/TSV's missing cells (empty, NA, ?): mean fills in the training split's mean (a "
                      "text column's most frequent value), drop drops the row; either drops rows without a label. "
                      "Default: refused."),
    click.option("--image-size", default=None, metavar="WxH", callback=_image_size,
                 help="Resize every image of an image folder to W x H pixels."),
    click.option("--val-fraction", type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
                 default=DEFAULT_VAL_FRACTION, show_default=True,
                 help="Share drawn (stratified) for validation where the file gives no val split."),
    click.option("--test-fraction", type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
                 default=DEFAULT_TEST_FRACTION, show_default=True,
                 help="Share drawn (stratified) for test where the file gives no test split."),
    click.option("--train-size", type=AsciiIntRange(min=1), default=None, help="Use the first N training samples."),
    click.option("--val-size", type=AsciiIntRange(min=1), default=None, help="Use the first N validation samples."),
    click.option("--preprocess", type=choice(PREPROCESSORS), default=None, metavar="NAME",
                 help=f"Fitted on the training split: {', '.join(PREPROCESSORS)} (default: standardize for a "
                      f"CSV/TSV table, mean_image otherwise)."),
    click.option("--pca-components", type=AsciiIntRange(min=1), default=None,
                 help="Components kept by pca/whiten (default: the features, at most 100)."),
    # model
    click.option("--hidden", default="100", show_default=True, callback=_hidden,
                 help="Hidden layer sizes, comma-separated."),
    click.option("--depth", type=AsciiIntRange(1, MAX_DEPTH), default=None,
                 help="Number of hidden layers, each as wide as --hidden (one width)."),
    click.option("--activation", type=choice(ACTIVATIONS), default="relu", show_default=True, metavar="NAME",
                 help=f"One of {', '.join(ACTIVATIONS)}."),
    click.option("--init", "init_name", type=choice(INITIALISERS), default="he", show_default=True, metavar="NAME",
                 help="Weight initialiser: he, xavier, normal, uniform, orthogonal, lecun, ... (see search layers)."),
    click.option("--init-std", type=AsciiFloat(), default=None, callback=nonneg_float,
                 help=f"{INIT_STD_HELP}."),
    click.option("--batchnorm/--no-batchnorm", default=False, show_default=True,
                 help="Batch normalisation before each hidden activation."),
    click.option("--dropout", type=FiniteFloatRange(MIN_KEEP, 1), default=1.0, show_default=True,
                 help="Keep probability of inverted dropout (1 = off)."),
    click.option("--loss", type=choice(["softmax", "svm"]), default="softmax", show_default=True,
                 help="Softmax cross-entropy, or the multiclass SVM hinge loss (no class probabilities)."),
    click.option("--relu-bias", type=AsciiFloat(), default=0.0, callback=nonneg_float,
                 help="Initial bias of ReLU-family units, e.g. 0.01."),
    # optimisation
    click.option("--optimizer", type=choice(OPTIMIZERS), default="adam", show_default=True, metavar="NAME",
                 help=f"Update rule: {', '.join(OPTIMIZERS)}."),
    click.option("--momentum", type=FiniteFloatRange(0, 1, max_open=True), default=0.9, show_default=True,
                 help="mu of the momentum and nesterov rules."),
    click.option("--batch-size", type=AsciiIntRange(min=1), default=50, show_default=True,
                 help="Samples per update; an epoch is the training samples // this many updates."),
    click.option("--lr-decay", type=FiniteFloatRange(0, 1, min_open=True), default=1.0, show_default=True,
                 help="Multiply lr by this after each epoch."),
    click.option("--class-weight", type=choice(CLASS_WEIGHTS), default=TrainConfig.class_weight,
                 show_default=True,
                 help="Weight of each training sample's loss: none (all alike) or balanced (n_samples / (n_classes x "
                      "count of its class) on the training split, as scikit-learn's), for imbalanced classes."),
    seed_option,
]
RUN_PARAMS = ("data", "data_dir", "label_column", "ignore_columns", "missing", "image_size", "val_fraction",
              "test_fraction", "train_size", "val_size", "preprocess", "pca_components", "hidden", "depth",
              "activation", "init_name", "init_std", "batchnorm", "dropout", "loss", "relu_bias", "optimizer",
              "momentum", "batch_size", "lr_decay", "class_weight", "seed")


def build_config(v: dict[str, Any]) -> RunConfig:
    """One RunConfig from the run options' values."""
    if v["depth"] is not None and len(set(v["hidden"])) > 1:  # else every width but the first was dropped unsaid
        raise SearchError(f"--depth makes every hidden layer as wide as the first; --hidden "
                          f"{','.join(map(str, v['hidden']))} gives different widths: give one width")
    hidden = v["hidden"] if v["depth"] is None else (v["hidden"][0],) * v["depth"]
    if v["preprocess"] == "per_channel_mean" and is_table(v["data"]):  # else one mean over columns of other units
        raise SearchError(f"--preprocess per_channel_mean needs images (one mean per colour channel); "
                          f"{v['data']} is a table: use standardize (a table's default) or mean_image")
    return RunConfig(
        data=DataSpec(_data_name(v["data"]), v["data_dir"], v["train_size"], v["val_size"], seed=v["seed"],
                      label_column=v["label_column"], ignore_columns=tuple(v["ignore_columns"]), missing=v["missing"],
                      image_size=v["image_size"], val_fraction=v["val_fraction"],
                      test_fraction=v["test_fraction"]),
        preprocess=PreprocessSpec(v["preprocess"] or default_preprocess(v["data"]), v["pca_components"]),
        arch=ModelConfig(hidden=hidden, activation=v["activation"], init=InitSpec(v["init_name"], v["init_std"]),
                         batchnorm=v["batchnorm"], dropout=v["dropout"], loss=v["loss"], relu_bias=v["relu_bias"]),
        train=TrainConfig(batch_size=v["batch_size"], optimizer=v["optimizer"], momentum=v["momentum"],
                          lr_decay=v["lr_decay"], class_weight=v["class_weight"], seed=v["seed"]),
    )


# what a command given only the data options (search data) builds its run with: the model's and the update's defaults
_MODEL, _TRAIN = ModelConfig(), TrainConfig()
RUN_DEFAULTS = {
    "hidden": _MODEL.hidden, "depth": None, "activation": _MODEL.activation, "init_name": _MODEL.init.name,
    "init_std": _MODEL.init.std, "batchnorm": _MODEL.batchnorm, "dropout": _MODEL.dropout, "loss": _MODEL.loss,
    "relu_bias": _MODEL.relu_bias, "optimizer": _TRAIN.optimizer, "momentum": _TRAIN.momentum,
    "lr_decay": _TRAIN.lr_decay, "class_weight": _TRAIN.class_weight,
}
DATA_PARAMS = tuple(name for name in RUN_PARAMS if name not in RUN_DEFAULTS)  # the data's, --batch-size and --seed


def options_given(*names: str) -> bool:
    """Whether the running command was given any of the options ``names`` (on its command line or through the
    environment), not left at their defaults."""
    ctx = click.get_current_context()
    return any(ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
               for name in names)


def run_config_options(f: Callable | None = None, *, params: tuple[str, ...] = RUN_PARAMS) -> Callable:
    """Add the run options (only ``params`` of them: the rest take RUN_DEFAULTS); the command receives ``base:
    RunConfig`` instead of them (None with --from-trial).

    The searchable names the user fixed on the command line are kept in ``ctx.meta["fixed"]``.
    """
    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            values = {**RUN_DEFAULTS, **{name: kwargs.pop(name) for name in params}}
            ctx.meta["fixed"] = {FIXES[name] for name in FIXES if name in params and options_given(name)}
            # train --from-trial reruns a stored trial's configuration and refuses these options: none is built, so
            # a given one is told to be dropped instead of being checked
            base = None if kwargs.get("from_trial") is not None else build_config(values)
            name = values["data"]
            if base is not None and name in DATASETS and options_given("data") and os.path.lexists(name):
                kind = "folder" if os.path.isdir(name) else "file"
                say(f"warning: --data {name} is the built-in data set, not the {kind} {name} here; --data ./{name} "
                    "reads that", err=True)
            if base is not None and not {"space_items", "space_spec"} & kwargs.keys():  # a stage: against its space
                check_fixed(ctx.meta["fixed"], {}, base)
            return f(*args, base=base, **kwargs)

        return apply([option for option, name in zip(RUN_OPTIONS, RUN_PARAMS) if name in params])(wrapper)

    return decorate(f) if f is not None else decorate


# --------------------------------------------------------------------------- the search space
SPACE_OPTIONS = [
    click.option("--space", "space_items", multiple=True, metavar="NAME=SPEC",
                 help="Search NAME (a run option: lr, reg, hidden, depth, dropout, activation, ...) over SPEC: "
                      "LOW:HIGH[:log|:linear][:int] or A,B,C (one value A: every trial's). Repeatable, e.g. "
                      "--space hidden=16:512:int --space activation=relu,tanh. Default, without --space, --lr, --reg "
                      f"or a space file: {describe_space(DEFAULT_SPACE)} (search auto: and the hidden width)."),
    click.option("--space-file", type=click.Path(dir_okay=False), default=None, metavar="FILE.toml",
                 help="The same in a TOML file: a [space] table of NAME = \"SPEC\" or NAME = [A, B, C]."),
    click.option("--lr", "lr_range", default=None, metavar="LOW:HIGH",
                 help="Shortcut for --space lr=LOW:HIGH:log."),
    click.option("--reg", "reg_range", default=None, metavar="LOW:HIGH",
                 help="Shortcut for --space reg=LOW:HIGH:log."),
]


def space_options(f: Callable) -> Callable:
    """Add the space options; the command receives ``space_spec``: (name, spec, option) triples (empty: the default)."""
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        items: list[tuple[str, str, str]] = []
        if kwargs["space_file"]:
            items += read_space_file(kwargs["space_file"])
        for key in ("lr", "reg"):
            value = kwargs[f"{key}_range"]
            if value is not None:
                if value.count(":") != 1:
                    one = f"; one value for every trial: --space {key}={value}" if is_number_text(value) else ""
                    raise SearchError(f"--{key} {value!r} must look like LOW:HIGH, e.g. 1e-5:1e-1{one}")
                items.append((key, value + ":log", f"--{key} {value}"))
        for item in kwargs["space_items"]:
            name, sep, spec = item.partition("=")
            if not sep or not name.strip() or not spec.strip():
                raise SearchError(f"--space {item!r} must look like NAME=SPEC, e.g. lr=1e-5:1e-1 or activation=relu,tanh")
            items.append((name, spec, f"--space {item}"))
        for key in ("space_file", "lr_range", "reg_range", "space_items"):
            kwargs.pop(key)
        return f(*args, space_spec=items, **kwargs)

    return apply(SPACE_OPTIONS)(wrapper)


SPACE_FILE_BYTES = 1 << 20  # a space file is a few lines: a larger one is some other file, given by mistake


def read_space_file(path: str) -> list[tuple[str, str | list[str], str]]:
    """(name, spec, where) triples from a TOML file's [space] table (or its top level)."""
    try:
        with open(path, "rb") as f:  # a pipe too (--space-file <(...)); /dev/zero would be read until memory ran out
            text = f.read(SPACE_FILE_BYTES + 1)
        if len(text) > SPACE_FILE_BYTES:
            raise SearchError(f"--space-file {path}: more than {SPACE_FILE_BYTES >> 20} MiB; a space file holds a few "
                              f"lines")
        data = tomllib.loads(text.decode())
    except OSError as e:
        raise SearchError(f"--space-file {path}: {e.strerror or e}") from None
    except RecursionError:  # tomllib's parser recurses once a level: [[[...]]] ended in a traceback
        raise SearchError(f"--space-file {path}: lists or tables nested too deep to read; a space file holds "
                          f"NAME = \"SPEC\" entries and lists of choices") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        other = Path(path).suffix.lower() in (".yaml", ".yml", ".json")  # a sweep configuration of another tool
        raise SearchError(f"--space-file {path}: not valid TOML: {e}" + (
            "; the space file is TOML, a [space] table of NAME = \"SPEC\" entries (see search coarse --help)"
            if other else "")) from None
    table = data.get("space", data)
    outside = [key for key in data if key != "space"] if "space" in data else []
    if outside:  # read as the space, they would be dropped without a word
        key, context = outside[0], click.get_current_context(silent=True)
        options = {param.name for param in context.command.params} if context is not None else set()
        name = key.strip().replace("-", "_")
        if name in SEARCHABLE or name not in options:  # a dimension, or no setting of this command either
            raise SearchError(f"--space-file {path}: {key} is outside the [space] table; put every dimension "
                              f"under [space]")
        raise SearchError(f"--space-file {path}: {key} is outside the [space] table, and the file holds the space "
                          f"alone: give {key} on the command line (--{key.strip().replace('_', '-')})")
    # without [space], a table is a misspelt one ([spaces]); inside it, a dimension given as a table is refused below
    tables = [key for key, value in table.items() if isinstance(value, dict)] if table is data else []
    if tables:
        raise SearchError(f"--space-file {path}: [{tables[0]}] is not a table this file holds; put the dimensions "
                          f"under [space]")
    if not isinstance(table, dict) or not table:
        raise SearchError(f"--space-file {path}: needs a [space] table of NAME = \"SPEC\" entries")
    items = []
    for name, spec in table.items():
        if isinstance(spec, list):
            odd = next((v for v in spec if not isinstance(v, (str, int, float))), None)
            if odd is not None:  # a nested list or table, a date: its text was split at its commas
                raise SearchError(f"--space-file {path}: {name}: choice {odd!r} is not a string, a number or "
                                  f"true/false")
            for mark in ",:":  # a comma would split it into two choices, a colon make the list a range
                joined = next((v for v in spec if isinstance(v, str) and mark in v), None)
                if joined is not None:
                    raise SearchError(f"--space-file {path}: {name}: choice {joined!r} holds a '{mark}'; a list "
                                      f"gives each choice alone (a range is a string: {name} = \"LOW:HIGH\")")
            # the choices' texts, a choice even of one value (hidden = [64]), never a range
            spec = [json.dumps(v) if isinstance(v, bool) else str(v) for v in spec]
        if not isinstance(spec, (str, list)):
            raise SearchError(f"--space-file {path}: {name} must be a string SPEC or a list of choices")
        items.append((name, spec, f"--space-file {path}: {name}"))
    return items


def build_space(items: list[tuple[str, str | list[str], str]], default: dict[str, Dimension], base: RunConfig,
                fixed: set[str]) -> dict[str, Dimension]:
    """The space from (name, spec, where) triples, or ``default`` minus the options the user fixed; checked
    against ``base``."""
    space: dict[str, Dimension] = {}
    from_file: dict[str, str] = {}  # a dimension of --space-file, named by its file in what check_space refuses
    for name, spec, where in items:
        try:
            key, _ = searchable(name)
            dim = parse_dimension(key, spec)
        except SearchError as e:
            raise SearchError(f"{where}: {e}") from None
        if key in space:
            raise SearchError(f"{where}: {key} is searched twice")
        if key in fixed:
            raise SearchError(f"{where} searches what --{key.replace('_', '-')} fixes; give one of them")
        space[key] = dim
        if where.startswith("--space-file"):
            from_file[key] = where
    if "depth" in space and len(set(base.arch.hidden)) > 1:
        raise SearchError(f"--space depth makes every hidden layer as wide as the first; --hidden "
                          f"{','.join(map(str, base.arch.hidden))} gives different widths: give one width")
    if not space:
        space = {k: v for k, v in default.items() if k not in fixed}
    if not space:
        raise SearchError("the search space is empty: give --space NAME=SPEC")
    check_space(space, base, from_file)
    check_fixed(fixed, space, base)
    return space


# --------------------------------------------------------------------------- where a stage runs
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
format_option = apply([
    click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
                 help="A table that fits the terminal, or every column as csv or json."),
    click.option("--json", "fmt", flag_value="json", help="Same as --format json."),
])
storage_option = click.option(
    "--storage", default=None, metavar="URL", callback=not_empty,
    help="Study database URL (default: $SEARCH_STORAGE or sqlite:///search.db).",
)


def _jobs(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    if value == "auto":
        return None
    if not INT_TEXT.fullmatch(value) or not 1 <= int(value) <= 256:
        # a value from the environment is not on the command line: say where it is (click sets the parameter's
        # source only after this callback)
        source = " (from $SEARCH_JOBS)" if os.environ.get("SEARCH_JOBS") == value else ""
        raise click.BadParameter(f"{value!r}{source} must be auto or a number of processes from 1 to 256")
    return int(value)


jobs_option = click.option(
    "--jobs", default="auto", show_default=True, callback=_jobs, metavar="N|auto", envvar="SEARCH_JOBS",
    help="Worker processes on this machine; with 2 or more, 1 BLAS thread each (1 keeps NumPy's own BLAS "
         "threads); auto: the usable cores, never more than the trials left ($SEARCH_JOBS).")
heartbeat_option = click.option(
    "--heartbeat", type=AsciiIntRange(min=1, max=86400), default=10, show_default=True,
    help="Seconds between a running trial's heartbeats; a trial silent for 2x this is failed and re-run. "
         "Set by the command that creates a stage; its workers use the stage's value.")
explode_option = click.option(
    "--explode-factor", type=FiniteFloatRange(1, min_open=True), default=EXPLODE_FACTOR, show_default=True,
    help=f"Stop a run once its loss, averaged over {EXPLODE_WINDOW} minibatches, exceeds this x its first loss (not in "
         "search auto's final stage, whose runs predict retrains).")

# --campaign's default, as its help says it: a command that starts a campaign, one that continues or reads one
NEW_CAMPAIGN = "the data's name, e.g. wine for wine.csv"
NEWEST_CAMPAIGN = "the latest, search compare's left out"


def campaign_option(default: str) -> Callable:
    """--campaign, whose help gives the command's own ``default``."""
    return click.option("--campaign", default=None, callback=not_empty, help=f"Campaign name (default: {default}).")


DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def _timeout(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--timeout's seconds (``DURATION_UNITS``), kept in ``ctx.meta["timeout"]`` for ``execution``."""
    if value is None:
        return
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", value.strip())
    if match is None or float(match[1]) <= 0:
        raise click.BadParameter(f"{value!r} must be a time above 0: seconds, or a number with s, m or h "
                                 "(90s, 15m, 2h)")
    ctx.meta["timeout"] = (value, float(match[1]) * DURATION_UNITS[match[2]])


timeout_option = click.option(
    "--timeout", default=None, metavar="DURATION", callback=_timeout, expose_value=False,
    help="Claim no new trial after this time (90, 90s, 15m, 2h); the trials running finish and are recorded. "
         "Running the same command again continues (search auto: the stages after the one it stopped in).")


def timeout_text(summary: Any) -> str | None:
    """The line for a stage the --timeout stopped with trials left (None: no --timeout, or none left)."""
    given = click.get_current_context().meta.get("timeout")
    left = summary.counts.get("waiting", 0) + summary.counts.get("running", 0)
    if given is None or not left:
        return None
    finished = summary.counts.get("complete", 0) + summary.counts.get("pruned", 0)
    return (f"--timeout {given[0]} is up: {summary.study} has {finished} of {summary.n_trials} trials finished "
            f"({summary.ran} run now), {left} left; run the same command again to continue")


def stage_run_options(campaign_default: str) -> Callable:
    """Campaign (its help giving ``campaign_default``), database, local worker processes, heartbeat."""
    return apply([campaign_option(campaign_default), storage_option, jobs_option, heartbeat_option])


MAX_TRIALS = 10_000_000  # a stage's --trials at most: far past any search, short of a count that never ends
MAX_REPEATS = 1000  # search compare's pairs at most: 2000 stages
DRAWN_SAMPLERS = ["random", "tpe", "qmc"]  # what --sampler and --fine-sampler offer (grid and fixed are stage kinds)

stage_options = apply([
    click.option("--trials", type=AsciiIntRange(min=1, max=MAX_TRIALS), default=50, show_default=True,
                 help="Trials in the stage (search auto: in its coarse stage and in each fine stage)."),
    click.option("--epochs", type=AsciiIntRange(min=1), default=3, show_default=True,
                 help="Epochs per trial (coarse runs are short)."),
    click.option("--sampler", type=choice(DRAWN_SAMPLERS), default="random", show_default=True,
                 help="How the stage draws its trials (search auto: its coarse stage; --fine-sampler the fine "
                      "stages). random: same --seed, same trials with any --jobs; tpe and qmc: only with --jobs 1 "
                      "and no interruption (each draw depends on the trials finished before it)."),
    click.option("--scheduler", type=choice(SCHEDULERS), default="none", show_default=True,
                 help=SCHEDULER_HELP),
    explode_option,
])

fine_options = apply([
    click.option("--top", type=AsciiIntRange(min=1), default=5, show_default=True,
                 help="Refine the range around this many best trials."),
    click.option("--edge", type=FiniteFloatRange(0, 0.5, min_open=True), default=0.1, show_default=True,
                 help="Widen past a bound when the best lies within this fraction of the width of it."),
    click.option("--promote", type=AsciiIntRange(0, 1000), default=8, show_default=True,
                 help="Re-run this many of the previous stage's best at the new epochs (stage promote-k) and refine "
                      "on their ranking; 0: refine on the short runs."),
])


def campaign_name(campaign: str | None, base: RunConfig) -> str:
    """--campaign, or the dataset's name (a file's name without its extension) when it is not given. A new name that
    begins or ends with white space is refused: tables show it without, and --campaign given so finds no campaign."""
    if campaign is None:
        return Path(base.data.name).stem or base.data.name
    if campaign != campaign.strip():
        raise SearchError(f"--campaign {campaign!r} begins or ends with white space; give the name without it")
    return campaign


def execution(storage: str | None, jobs: int | None, heartbeat: int, as_json: bool) -> Any:
    from search.campaign import Execution
    from studies.store import resolve_storage_url

    # the CLI's main module is guarded, so the command's own process can be one of the workers
    given = click.get_current_context().get_parameter_source("heartbeat") == click.core.ParameterSource.COMMANDLINE
    timeout = click.get_current_context().meta.get("timeout")
    return Execution(resolve_storage_url(storage), jobs=jobs, heartbeat=heartbeat,
                     progress="quiet" if as_json else "auto", parent_works=True, heartbeat_given=given,
                     deadline=None if timeout is None else time.time() + timeout[1])


def open_for_reading(storage: str | None) -> Any:
    from studies.store import open_storage, resolve_storage_url

    return open_storage(resolve_storage_url(storage), readonly=True)
