"""Stages (coarse, fine-k, grid) as Optuna studies, and the worker loop that runs a stage's trials.

A stage's budget lives in the database: when the stage is created, its N trials are enqueued as
WAITING trials in one transaction (``studies.budget.initialise_study``; Optuna's unique study name
and the study's row lock make exactly one process do it). Workers claim them one at a time
(WAITING -> RUNNING is a checked row update), so any number of worker processes, on one machine
or several, run exactly N trials. A trial that is interrupted, or whose worker dies (its Optuna
heartbeat goes stale and ``fail_stale_trials`` fails it), is failed and a WAITING copy with the
same parameters is enqueued exactly once (``studies.budget.requeue_failed_trials``), so the stage
still ends with exactly N finished trials.
"""
from __future__ import annotations

import math
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from engine.data import Dataset, check_dataset_name
from engine.errors import ConfigError, EngineError
from engine.diagnostics import still_falling, value_se
from engine.model import MIN_KEEP
from search.errors import Interrupted, SearchError, SearchFailed, raise_pending, stops_held
from search.config import RunConfig, with_absolute_data
from search.objective import EXPLODE_FACTOR, run_trial, trial_seed
from search.schedulers import ASHA_REDUCTION, SCHEDULERS, asha_min_epochs
from search.space import (Choice, Dimension, FloatRange, IntRange, applies, describe_space, has_params,
                          insensitive_dimensions, log_marked, refine_space, searchable, space_attr, space_from_attr)
from search.text import wrapped
from studies import optuna_rdb
from studies.queries import check_stored_space, known_studies_message, split_samples
from studies.records import diagnosis_labels, trial_record
from studies.budget import initialise_study, requeue_and_count, requeue_failed_trials, unretried_failures
from studies.store import describe_storage_error, storage_problem

optuna.logging.set_verbosity(optuna.logging.WARNING)
# heartbeats and stale-trial failing are "experimental" in Optuna; they are the documented way to do this
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

SAMPLERS = ("random", "tpe", "qmc", "grid", "fixed")  # grid and fixed: every trial's params enqueued
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_CAMPAIGN = 200


def study_name(campaign: str, stage: str) -> str:
    return f"{campaign}/{stage}"


def _check_stored_data(attrs: dict[str, Any]) -> None:
    """SearchError saying what became of the data a stage was trained on when it is no longer there (moved, deleted,
    replaced by something that is not a file): the stage's definition is whole, its data is not."""
    config = attrs.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        return  # a definition that cannot be read: said by from_attrs
    try:
        check_dataset_name(name)
    except ConfigError as exc:
        path = os.path.expanduser(name)
        try:
            gone = not os.path.exists(path)
            other = not gone and not os.path.isdir(path) and not os.path.isfile(path)
        except (OSError, ValueError):
            gone = other = False
        what = ("which is not found (moved or deleted?)" if gone else
                "which is no longer a regular file or folder" if other else f"which cannot be used now ({exc})")
        # search fine, grid and worker take no --data: a campaign on other data is begun by search coarse or auto
        raise SearchError(f"stage {attrs.get('campaign')}/{attrs.get('stage')} was trained on {name}, {what}: put it "
                          f"back, or start another campaign with search coarse or auto --campaign NAME --data PATH"
                          ) from None


@dataclass(frozen=True)
class Stage:
    """A stage's definition, as stored in its study's user attributes."""

    campaign: str
    stage: str
    space: dict[str, Dimension]
    n_trials: int
    run: RunConfig
    seed: int = 0
    sampler: str = "random"
    parent: str | None = None
    range_notes: tuple[str, ...] = ()
    explode_factor: float | None = EXPLODE_FACTOR  # None: no run is stopped for a loss spike (stage final)
    points: tuple[dict[str, Any], ...] = ()  # the trials' params of a "fixed" stage
    scheduler: str = "none"

    def __post_init__(self) -> None:
        for option, key in (("--trials", "n_trials"), ("--seed", "seed")):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):  # from Python: before any write
                raise SearchError(f"{option} must be a whole number, got {value!r}")
            object.__setattr__(self, key, int(value))  # NumPy's integers are stored as JSON numbers
        if self.n_trials < 1:
            raise SearchError(f"--trials must be >= 1, got {self.n_trials}")
        for name, dim in self.space.items():
            if not isinstance(dim, (FloatRange, IntRange, Choice)):
                raise SearchError(f"space[{name!r}] must be a FloatRange, IntRange or Choice, got {dim!r}"
                                  + (f" (search.space.parse_dimension({name!r}, {dim!r}) reads a spec)"
                                     if isinstance(dim, str) else ""))
        if self.sampler not in SAMPLERS:
            raise SearchError(f"unknown sampler {self.sampler!r}; known: {', '.join(SAMPLERS)}")
        if self.scheduler not in SCHEDULERS:
            raise SearchError(f"unknown scheduler {self.scheduler!r}; known: {', '.join(SCHEDULERS)}")
        if self.explode_factor is not None and not (math.isfinite(self.explode_factor) and self.explode_factor > 1):
            raise SearchError(f"--explode-factor must be a finite number > 1, got {self.explode_factor}")
        if "/" in self.campaign or not self.campaign.strip() or not self.campaign.isprintable():
            raise SearchError(f"campaign name {self.campaign!r} must be non-empty, printable and contain no '/'")
        if len(self.campaign) > MAX_CAMPAIGN:  # Optuna's study names are at most 512 characters
            raise SearchError(f"campaign name of {len(self.campaign)} characters: at most {MAX_CAMPAIGN}, please")

    @property
    def name(self) -> str:
        return study_name(self.campaign, self.stage)

    def attrs(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign, "stage": self.stage, "parent": self.parent, "space": space_attr(self.space),
            "epochs": self.run.train.epochs, "config": self.run.to_dict(), "data": {"name": self.run.data.name},
            "seed": self.seed, "range_notes": list(self.range_notes), "n_trials": self.n_trials,
            "sampler": self.sampler, "explode_factor": self.explode_factor, "points": list(self.points),
            "scheduler": self.scheduler, "log_marked": log_marked(self.space),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], data: str | None = None, reading: bool = False) -> Stage:
        """The stage its study's user attributes define; SearchError naming the study when they cannot be read (one
        missing or of another type: written by another program or changed since). ``data``: the absolute path of a
        copy of its data to read instead of the stored one (search worker --data; the caller checks it is the same
        data). A dropout keep probability below ``MIN_KEEP``, which --dropout took before that floor, is refused
        saying so, or with ``reading`` (its trials explained, not run) read as ``MIN_KEEP``."""
        config = attrs.get("config")
        if data is not None and isinstance(config, dict) and isinstance(config.get("data"), dict):
            attrs = {**attrs, "config": {**config, "data": {**config["data"], "name": data}}}
        arch = config.get("arch") if isinstance(config, dict) else None
        keep = arch.get("dropout") if isinstance(arch, dict) else None
        if isinstance(keep, float) and 0 < keep < MIN_KEEP:
            if not reading:
                raise SearchError(
                    f"stage {attrs.get('campaign')}/{attrs.get('stage')} was stored with --dropout {keep:g}, below "
                    f"{MIN_KEEP:g}, the lowest keep probability a run takes now (one that low drops nearly every unit "
                    f"in training): its trials can be read (search trials, best, explain, report) but not run again "
                    f"or refined; start a new campaign with --dropout {MIN_KEEP:g} or more")
            attrs = {**attrs, "config": {**attrs["config"], "arch": {**arch, "dropout": MIN_KEEP}}}
        _check_stored_data(attrs)
        check_stored_space(f"{attrs.get('campaign')}/{attrs.get('stage')}", attrs.get("space"))
        try:
            stage = cls(
                campaign=attrs["campaign"], stage=attrs["stage"], space=space_from_attr(attrs["space"]),
                n_trials=attrs["n_trials"], run=RunConfig.from_dict(attrs["config"]),
                seed=attrs["seed"], sampler=attrs["sampler"], parent=attrs["parent"],
                range_notes=tuple(attrs["range_notes"]), explode_factor=attrs["explode_factor"],
                points=tuple(attrs.get("points", ())), scheduler=attrs.get("scheduler", "none"),
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, EngineError, SearchError) as exc:
            detail = f"no attribute {exc.args[0]!r}" if isinstance(exc, KeyError) else " ".join(str(exc).split())
            raise SearchError(f"stage {attrs.get('campaign')}/{attrs.get('stage')}: its stored definition cannot be "
                              f"read ({detail}); it was written by another program or changed since, and is left as "
                              f"it is") from None
        if stage.sampler == "grid" and not stage.points:  # stored before grid stages kept their points: the
            # grid its n_trials (categories x k^d) gives back, as it was enqueued
            stage = replace(stage, points=tuple(stage.grid_points()))
        return stage

    def grid_beside(self, stage: str, k: int | None = None) -> Stage:
        """A grid stage ``stage`` over this stage's space, epochs and data at about the same budget.

        Its points (every category x k values per numeric dimension, k from this stage's budget unless given) are
        stored with it and their count is its ``n_trials``; the range notes say how that differs from
        this stage's budget.
        """
        k = self.grid_k() if k is None else k
        points, values = self.grid_points(k), self.grid_values(k)
        # named: "1 x 1 x 2 x 3 x 1 ..." over a dozen dimensions did not say which took how many values
        size, product = len(points), " x ".join(f"{len(v)} {name}" for name, v in values.items())
        if size != math.prod(len(v) for v in values.values()):
            product += ", each combination once without the dimensions that have no effect in it"
        note = (f"grid of {size} points ({product}) beside {self.n_trials} trials of {self.name}" +
                ("" if size == self.n_trials else
                 f": {abs(size - self.n_trials)} {'more' if size > self.n_trials else 'fewer'} than its budget"))
        return replace(self, stage=stage, sampler="grid", scheduler="none", parent=self.name, points=tuple(points),
                       n_trials=size, range_notes=(note,))

    def grid_values(self, k: int | None = None) -> dict[str, list]:
        """The values each dimension takes on the grid: every category, and k per numeric dimension (default
        ``grid_k``)."""
        k = self.grid_k() if k is None else k
        return {name: dim.grid(k) for name, dim in self.space.items()}

    def grid_k(self) -> int:
        """k = floor((n_trials / categories) ** (1 / numeric dimensions)), at least 1; where a dimension that acts
        only with some category leaves combinations out, the largest k whose points still fit n_trials."""
        categories = math.prod(len(d.choices) for d in self.space.values() if isinstance(d, Choice))
        numeric = sum(1 for d in self.space.values() if not isinstance(d, Choice))
        k = max(1, int(math.floor((self.n_trials / categories) ** (1 / max(numeric, 1)) + 1e-9)))
        size = len(self.grid_points(k))
        if numeric and size < math.prod(len(v) for v in self.grid_values(k).values()):
            while (bigger := len(self.grid_points(k + 1))) <= self.n_trials and bigger > size:
                k, size = k + 1, bigger
        return k

    def grid_points(self, k: int | None = None) -> list[dict[str, float]]:
        """Every combination of ``grid_values``, without the dimensions that have no effect in it (momentum
        with adam), each such combination once."""
        points: list[dict[str, float]] = [{}]
        for name, values in self.grid_values(k).items():
            points = [{**p, name: v} for p in points for v in values]
        kept = ({k: v for k, v in p.items() if applies(k, p, self.run)} for p in points)
        return list({tuple(p.items()): p for p in kept}.values())


def shuffled_grid(stage: Stage) -> list[dict[str, Any]]:
    """The trials' fixed params of a stage: none (``{}``, its sampler draws them) but for a random stage over
    categories only, which runs every combination once in an order its seed shuffles before any runs twice
    (random draws of 6 trials from 4 combinations ran one 3 times and left one out)."""
    if stage.sampler != "random" or not stage.space or not all(isinstance(d, Choice) for d in stage.space.values()):
        return [{}] * stage.n_trials
    every = stage.grid_points()
    order = np.random.default_rng(stage.seed).permutation(len(every))
    return [every[order[i % len(every)]] for i in range(stage.n_trials)]


# --------------------------------------------------------------------------- creating and loading stages
def create_stage(storage: RDBStorage, stage: Stage, data: dict[str, Any] | None = None) -> tuple[optuna.Study, bool]:
    """Create the stage's study and enqueue its trials, or join it if it exists; returns (study, created).

    Exactly one process creates a stage, however many run this at once on one or several machines:
    the study name is unique in the database, and the attributes, the N WAITING trials and the
    ``ready`` flag are written in ONE transaction under the study's row lock, by whichever process
    takes the lock first (``initialise_study``); the others find ``ready`` and join. A creator
    killed between creating the study and that transaction leaves a study without ``ready`` and
    without trials; the next command with this stage's definition completes it.
    """
    for name in stage.space:  # a space read from an older database may hold an option no longer searched
        searchable(name)
    # the data as an absolute path: `search worker`, `--from-trial` and retrains may run in another folder
    stage = replace(stage, run=with_absolute_data(stage.run))
    try:
        optuna.create_study(storage=storage, study_name=stage.name, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        pass  # created by another process (or by an earlier run of this command): join it
    points = list(stage.points) if stage.sampler in ("grid", "fixed") else shuffled_grid(stage)
    # the heartbeat interval belongs to the stage: a worker judging others' trials stale with a
    # shorter interval than theirs would fail live trials
    attrs = {**stage.attrs(), "heartbeat": storage.get_heartbeat_interval()}
    if data is not None:
        attrs["data"] = data  # the data's identity (path, format, sha256, shapes, classes)
    created = initialise_study(storage, storage.get_study_id_from_name(stage.name), attrs, points)
    study = load_stage_study(storage, stage.name)
    existing = Stage.from_attrs(study.user_attrs)
    if not created and stage.stage == "final" and existing.parent != stage.parent:
        raise SearchError(f"stage {stage.name} chose from {existing.parent}, and {stage.parent} was added after it "
                          f"(search fine); pass --campaign NAME to start another campaign")
    if not created and not same_definition(existing, stage):
        raise SearchError(
            f"stage {stage.name} already exists with other settings ({describe_stage(existing)}), and this command "
            f"gives (by its options, or their defaults where none is given) {_differences(existing, stage)}; run it "
            f"with those settings or pass --campaign NAME to start another campaign"
            + (f" (search auto: --fine-sampler {existing.sampler} --fine-scheduler {existing.scheduler} "
               f"continue its fine stages)" if fine_index(stage.stage) > 0 else "")
        )
    return study, created


def same_definition(stage: Stage, other: Stage) -> bool:
    """Whether a command giving ``stage`` continues ``other`` (see create_stage) rather than being refused."""
    return _definition(stage) == _definition(other)


def _definition(stage: Stage) -> tuple:
    """The parts of a stage that must match for a command to continue it rather than conflict with it (a data
    path stored relative by an older version is compared as this folder resolves it)."""
    return (space_attr(stage.space), stage.n_trials, with_absolute_data(stage.run), stage.sampler, stage.seed,
            stage.points, stage.scheduler, stage.explode_factor)


# a stage's settings and its run's configuration paths by the option that sets them, as people type it; a path not
# here (a field only --space searches: arch.leaky_slope) is named by its path
OPTION_NAMES = {
    "space": "--space", "trials": "--trials", "seed": "--seed", "sampler": "--sampler", "scheduler": "--scheduler",
    "explode_factor": "--explode-factor", "data.name": "--data", "data.data_dir": "--data-dir",
    "data.train_size": "--train-size", "data.val_size": "--val-size", "data.label_column": "--label-column",
    "data.ignore_columns": "--ignore-column", "data.missing": "--missing", "data.image_size": "--image-size",
    "data.val_fraction": "--val-fraction", "data.test_fraction": "--test-fraction", "preprocess.name": "--preprocess",
    "preprocess.components": "--pca-components", "arch.hidden": "--hidden", "arch.activation": "--activation",
    "arch.init.name": "--init", "arch.init.std": "--init-std", "arch.batchnorm": "--batchnorm",
    "arch.dropout": "--dropout", "arch.loss": "--loss", "arch.relu_bias": "--relu-bias", "train.epochs": "--epochs",
    "train.batch_size": "--batch-size", "train.optimizer": "--optimizer", "train.lr": "--lr",
    "train.lr_decay": "--lr-decay", "train.reg": "--reg", "train.momentum": "--momentum", "train.seed": "--seed",
    "train.class_weight": "--class-weight",
}


def _option_value(name: str, value: Any) -> str:
    """A setting's value as its option is typed: ``(none)`` for none given, widths as ``50,20``, several
    --ignore-column as ``id, note``, a whole float without ``.0``, a flag as ``--batchnorm``/``--no-batchnorm``."""
    if isinstance(value, bool):
        return ("--batchnorm" if value else "--no-batchnorm") if name == "--batchnorm" else str(value).lower()
    if value is None or value == ():
        return "(none)"
    if isinstance(value, (tuple, list)):
        return ("," if name == "--hidden" else ", ").join(_option_value(name, v) for v in value)
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return repr(value) if value == "" else str(value)


def _differences(existing: Stage, stage: Stage, shown: int = 3) -> str:
    """The first ``shown`` parts of ``_definition`` that ``stage`` sets otherwise than ``existing``, each as ``OPTION
    GIVEN where it has STORED``, by the option that sets it as it is typed (``--train-size 201 where it has 200``)."""
    pairs: list[tuple[str, Any, Any]] = [
        ("space", describe_space(stage.space), describe_space(existing.space)) if space_attr(stage.space) !=
        space_attr(existing.space) else ("space", 0, 0),
        ("trials", stage.n_trials, existing.n_trials), ("seed", stage.seed, existing.seed),
        ("sampler", stage.sampler, existing.sampler), ("scheduler", stage.scheduler, existing.scheduler),
        ("explode_factor", stage.explode_factor, existing.explode_factor),
        ("points", len(stage.points), len(existing.points)) if len(stage.points) != len(existing.points)
        # as many as it has, but others (a promotion of another parent's best): never a refusal naming nothing
        else ("points", f"{len(stage.points)} others", len(existing.points)) if stage.points != existing.points
        else ("points", 0, 0),
    ]
    given, stored = (_paths(with_absolute_data(s.run).to_dict()) for s in (stage, existing))
    for path in dict.fromkeys([*given, *stored]):
        if not (path.endswith(".seed") and stage.seed != existing.seed):  # --seed sets them all: said as seed
            pairs.append((path, given.get(path, "-"), stored.get(path, "-")))
    found = []
    for path, new, old in pairs:
        if new != old:
            name = OPTION_NAMES.get(path, path)
            if name == "--batchnorm":  # the flag itself names the value
                found.append(f"{_option_value(name, new)} where it has {_option_value(name, old)}")
            else:
                found.append(f"{name} {_option_value(name, new)} where it has {_option_value(name, old)}")
    more = len(found) - shown
    return ", ".join(found[:shown]) + (f" (and {more} more)" if more > 0 else "")


def _paths(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict's leaves by dotted path (``{"data": {"seed": 0}}`` -> ``{"data.seed": 0}``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_paths(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def describe_stage(stage: Stage) -> str:
    trials, epochs = stage.n_trials, stage.run.train.epochs
    return (f"{describe_space(stage.space)}, {trials} trial{'s' if trials != 1 else ''}, {epochs} "
            f"epoch{'s' if epochs != 1 else ''}, "
            f"sampler {stage.sampler}" + ("" if stage.scheduler == "none" else f", scheduler {stage.scheduler}"))


def load_stage_study(storage: RDBStorage, name: str, wait_ready: float = 30.0) -> optuna.Study:
    """Load a stage's study, waiting (up to ``wait_ready`` s) for its creator to finish enqueuing trials."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = sorted(s.study_name for s in storage.get_all_studies())
        raise SearchError(f"unknown study {name!r}; {known_studies_message(known, name)}") from None
    if _not_ours(study):  # plain Optuna's study: it will never be ready, and it is not half created
        raise SearchError(f"study {name} was not created by this service")
    deadline = time.monotonic() + wait_ready
    while not study.user_attrs.get("ready"):
        if time.monotonic() > deadline:
            raise SearchError(f"stage {name} was never fully created (its creator stopped while enqueuing trials)")
        time.sleep(0.2)
    return study


def _not_ours(study: optuna.Study) -> bool:
    """Whether a study is not the service's: not one maximised value, or attributes or trials without ``ready``
    (a stage being created is blank until one transaction writes its attributes, trials and ``ready``)."""
    if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
        return True
    return not study.user_attrs.get("ready") and bool(study.user_attrs or study.get_trials(deepcopy=False))


def split_size(study: optuna.Study, split: str) -> int | None:
    """Samples of a split (``train``, ``val``) of a stage's data, from the identity recorded when it was created."""
    return split_samples(study.user_attrs, split)


def parse_trial_ref(ref: str, option: str = "") -> tuple[str, int]:
    """(study name, trial number) of ``STUDY:NUMBER``; SearchError naming ``option`` (``--from-trial``) when given."""
    name, sep, number = ref.rpartition(":")
    if not sep or not name or not (number.isascii() and number.isdigit()):  # "²" is a digit int() refuses
        raise SearchError(f"{option + ' ' if option else ''}{ref!r} must look like STUDY:NUMBER, e.g. digits/coarse:12")
    return name, int(number)


def load_trial(storage: RDBStorage, name: str, number: int, reading: bool = False) -> tuple[FrozenTrial, Stage]:
    """Trial ``number`` of stage study ``name`` and its stage (``Stage.from_attrs``, ``reading`` as there);
    SearchError naming what is missing."""
    study = load_stage_study(storage, name, wait_ready=0.0)
    study_id = optuna_rdb.study_id(study)
    try:  # that trial alone: a stage may hold a million
        if number >= 2**63:  # past SQL's integers, which the driver refuses to send: no trial has it
            raise KeyError(number)
        trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
    except KeyError:  # Optuna numbers a study's trials 0, 1, 2, ...
        count = sum(stage_counts(storage, study_id).values())
        have = f"its trials are 0 to {count - 1}" if count else "it has no trials"
        raise SearchError(f"study {name} has no trial {number}: {have}") from None
    return trial, Stage.from_attrs(study.user_attrs, reading=reading)


# --------------------------------------------------------------------------- campaign navigation
def campaign_stages(storage: RDBStorage, campaign: str) -> list[optuna.study.StudySummary | Any]:
    """The campaign's studies (FrozenStudy) in creation order; one that does not maximise one value is not a stage,
    whatever its attributes say (plain Optuna's multi-objective or minimised study), and is left out."""
    return [s for s in storage.get_all_studies()
            if s.user_attrs.get("campaign") == campaign and s.directions == [optuna.study.StudyDirection.MAXIMIZE]]


def fine_index(stage: str) -> int:
    """0 for coarse, k for fine-k, -1 for anything else (grid)."""
    if stage == "coarse":
        return 0
    if stage.startswith("fine-") and stage[5:].isdigit():
        return int(stage[5:])
    return -1


def latest_chain_stage(storage: RDBStorage, campaign: str) -> str | None:
    """The newest stage of the coarse -> fine-1 -> fine-2 chain, or None when the campaign has none."""
    stages = [s.user_attrs["stage"] for s in campaign_stages(storage, campaign)]
    chain = [s for s in stages if fine_index(s) >= 0]
    return max(chain, key=fine_index) if chain else None


def stage_unfinished(storage: RDBStorage, study_id: int, repair: bool = True) -> bool:
    """Whether the stage has trials left to run: WAITING, RUNNING, or failed ones a killed process left un-retried
    (re-enqueued here with ``repair``; without it nothing is written)."""
    if not repair:
        trials = storage.get_all_trials(study_id, deepcopy=False)
        return bool(unretried_failures(trials)) or any(t.state in (TrialState.WAITING, TrialState.RUNNING)
                                                       for t in trials)
    added, counts = requeue_and_count(storage, study_id)
    return bool(added or counts["WAITING"] or counts["RUNNING"])


def stage_counts(storage: RDBStorage, study_id: int) -> dict[str, int]:
    """Trials of a study by state name."""
    return optuna_rdb.state_counts(storage, study_id)


def next_epochs(parent: Stage, epochs: int | None) -> int:
    """Epochs of the stage after ``parent``: ``epochs`` when given, else twice the parent's."""
    previous = parent.run.train.epochs
    return epochs if epochs is not None else max(previous * 2, previous + 1)


def best_configurations(study: optuna.Study, n: int,
                        keep: Callable[[dict[str, Any]], bool] = lambda params: True) -> list[dict[str, Any]]:
    """The params of the study's ``n`` best COMPLETE trials, best first, each configuration once (only those
    ``keep`` accepts)."""
    ranked = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: t.value, reverse=True)
    best: list[dict[str, Any]] = []
    for t in ranked:
        if t.params not in best and keep(t.params):
            best.append(dict(t.params))
        if len(best) == n:
            break
    return best


def promotion_stage(parent_study: optuna.Study, epochs: int | None, n: int) -> Stage:
    """Stage ``promote-k``: the parent's ``n`` best configurations run at the next stage's epochs, so the next
    box is drawn around what is best at the length it will run, not at the parent's shorter one."""
    parent = Stage.from_attrs(parent_study.user_attrs)
    points = best_configurations(parent_study, n, lambda params: has_params(params, parent.space, parent.run))
    if not points:
        raise SearchError(f"stage {parent.name} has no completed trials to promote")
    k = fine_index(parent.stage) + 1
    run = parent.run.with_params({"train.epochs": next_epochs(parent, epochs)})
    note = f"the best {len(points)} configurations of {parent.name} at {run.train.epochs} epochs"
    return replace(parent, stage=f"promote-{k}", sampler="fixed", scheduler="none", points=tuple(points),
                   n_trials=len(points), run=run, seed=parent.seed + 500 + k, parent=parent.name, range_notes=(note,))


def refinement_labels(trial: FrozenTrial) -> tuple[str, ...]:
    """The trial's diagnosis labels as refinement reads them: an ``underfitting`` run whose loss was still falling
    steeply at the end (its stored numbers) is ``still_learning`` too, and wants more epochs, not more capacity."""
    labels = diagnosis_labels(trial)
    numbers = trial_record(trial, "diagnosis_numbers", {})
    if "underfitting" in labels and "still_learning" not in labels and isinstance(numbers, dict) \
            and still_falling(numbers):
        return (*labels, "still_learning")
    return labels


def refined_stage(parent_study: optuna.Study, top: int, edge: float, epochs: int | None,
                  n_trials: int | None, promoted: optuna.Study | None = None) -> Stage:
    """The next fine stage of a chain: ranges refined from the parent's completed trials, or, with ``promoted``
    (a promotion stage's study), from the parent's best configurations ranked at the new length."""
    parent = Stage.from_attrs(parent_study.user_attrs)
    source = promoted if promoted is not None else parent_study

    def completed(study: optuna.Study) -> list[FrozenTrial]:
        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if has_params(t.params, parent.space, parent.run)]

    done = completed(source)
    if not done and promoted is not None:  # the promoted runs ran and none completed: the work failed, not the input
        # a failed run too: "re-run at 4 epochs: )" named no end when every one had failed
        ends = Counter(str(t.user_attrs.get("stop_reason", "failed" if t.state == TrialState.FAIL
                                            else t.state.name.lower()))
                       for t in promoted.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL)))
        raise SearchFailed(f"stage {source.study_name} has no completed trials to refine the ranges from "
                           f"({parent.name}'s best configurations re-run at {promoted.user_attrs['epochs']} epochs: "
                           f"{', '.join(f'{n} {how}' for how, n in ends.most_common())}); --promote 0 refines on "
                           f"{parent.name}'s own runs")
    if not done:
        raise SearchError(f"stage {source.study_name} has no completed trials to refine the ranges from")
    exploded = [t.params for t in source.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
                if "lr_too_high" in diagnosis_labels(t)
                and has_params(t.params, parent.space, parent.run)]
    own = sorted(((t.params, t.value) for t in (done if promoted is None else completed(parent_study))),
                 key=lambda trial: trial[1], reverse=True)
    se = value_se(own[0][1], split_size(parent_study, "val")) if own else None
    flat = None
    if promoted is not None:
        # a handful of promoted runs cannot show that a dimension does not matter: no insensitivity test on them;
        # the parent's own trials can, and a range they found without effect is not widened on their word
        found = insensitive_dimensions(parent.space, own, se) if se is not None else {}
        flat, se = {name: f"insensitive in {parent.name}: {evidence}" for name, evidence in found.items()}, None
    space, notes = refine_space(parent.space, [(t.params, t.value) for t in done], top=top, edge=edge,
                                diagnoses=[refinement_labels(t) for t in done], value_se=se,
                                exploded=exploded, flat=flat, train_size=split_size(parent_study, "train"))
    if promoted is not None:
        notes.insert(0, f"ranked at {Stage.from_attrs(promoted.user_attrs).run.train.epochs} epochs by "
                        f"{promoted.study_name}: {len(done)} of {parent.name}'s best configurations re-run")
    k = fine_index(parent.stage) + 1
    run = parent.run.with_params({"train.epochs": next_epochs(parent, epochs)})
    return replace(
        parent, stage=f"fine-{k}", space=space, n_trials=n_trials or parent.n_trials, run=run,
        seed=parent.seed + k, sampler="random" if parent.sampler in ("grid", "fixed") else parent.sampler, points=(),
        parent=parent.name, range_notes=tuple(notes),
    )


# --------------------------------------------------------------------------- the worker loop
STORAGE_RETRY_ENV = "SEARCH_STORAGE_RETRY_SECONDS"
STORAGE_RETRY_SECONDS = 60.0  # how long a failing database (full disk, lock, server down) is retried
MAX_BEAT_SECONDS = 3600.0  # beat at least this often: a longer wait overflows threading's timeout
# fragments (lowercase) of driver messages that mean the database failed, not the trial
_STORAGE_FAILURES = ("disk is full", "no space left", "database is locked", "disk i/o error", "connection",
                     "server closed", "terminating connection", "could not connect", "unable to open database")
T = TypeVar("T")


class StorageLost(SearchFailed):
    """The database stayed unusable past the retry period, or its file was deleted: this worker stopped."""


def storage_retry_seconds() -> float:
    """Seconds a failing database is retried: $SEARCH_STORAGE_RETRY_SECONDS (a number >= 0), else 60."""
    given = os.environ.get(STORAGE_RETRY_ENV, "").strip()
    try:
        if not given.isascii() or "_" in given:  # digits 0-9, as the number options: float() reads ６０ and 1_0 too
            raise ValueError(given)
        seconds = float(given) if given else STORAGE_RETRY_SECONDS
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise SearchError(f"${STORAGE_RETRY_ENV} must be a number of seconds >= 0, got {given!r}")
    return seconds


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the database failing (full disk, lock, server stopped, connection lost), not the trial."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and not isinstance(exc, StorageLost):
        seen.append(exc)
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                            sqlalchemy.exc.DisconnectionError, sqlite3.OperationalError)):
            return True
        if any(fragment in str(exc).lower() for fragment in _STORAGE_FAILURES):
            return True
        orig = getattr(exc, "orig", None)
        exc = orig if isinstance(orig, BaseException) and orig not in seen else (exc.__cause__ or exc.__context__)
    return False


class StorageOutage:
    """A failing database, said in one line as this process starts retrying it and one as it works again (a
    --jobs N command's parent says it for its worker processes, which are silent). ``say`` writes a line (the
    progress bar's while one is drawn); None: nothing said."""

    def __init__(self) -> None:
        self.since: float | None = None  # time.monotonic() of the first failure of this outage
        self.kind = "failing"  # what its first failure was (storage_problem): unreachable, locked, disk full
        self.say: Callable[[str], None] | None = _say_on_stderr
        self.lock = threading.Lock()  # the worker loop and the --jobs watcher's thread both report

    def failing(self, exc: BaseException) -> None:
        with self.lock:
            if self.since is None:
                self.since = time.monotonic()
                self.kind, sentence = storage_problem(exc, retrying=True)
                self._say(f"database {self.kind}, retrying for up to {storage_retry_seconds():g} s: {sentence}")

    def working(self) -> None:
        with self.lock:
            if self.since is not None:
                seconds, self.since = time.monotonic() - self.since, None
                again = "reachable again" if self.kind == "unreachable" else "working again"
                self._say(f"database {again} after {seconds:.0f} s")

    def _say(self, line: str) -> None:
        if self.say is not None:  # wrapped as the notes beside it are: a terminal would split its words
            self.say(wrapped(line))


def _say_on_stderr(line: str) -> None:
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()


STORAGE_OUTAGE = StorageOutage()  # this process's


def retry_storage(write: Callable[[], T], what: str) -> T:
    """``write()``, retried with backoff while the database fails; StorageLost with the reason once the period is over.
    The retries' start and end are said (``STORAGE_OUTAGE``)."""
    period = storage_retry_seconds()
    deadline = time.monotonic() + period
    delay = 0.1
    while True:
        try:
            result = write()
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            STORAGE_OUTAGE.failing(exc)
            if time.monotonic() >= deadline:
                STORAGE_OUTAGE.since = None  # said by the error; a next command's outage is said anew
                raise StorageLost(f"{what}: {describe_storage_error(exc)}; this worker stopped after retrying for "
                                  f"{period:g} s; run the same command again to finish the stage") from None
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 2, 5.0)
        else:
            STORAGE_OUTAGE.working()
            return result


def watch_sqlite_file(storage: RDBStorage) -> None:
    """Refuse new connections once the SQLite file is deleted or replaced: SQLite would create an empty one."""
    engine = storage.engine
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database.startswith(("file:", ":memory:")) \
            or engine in _WATCHED_ENGINES:
        return
    path = os.path.abspath(database)
    try:
        first = os.stat(path)
    except OSError:
        return

    def refuse_if_replaced(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
        try:
            now = os.stat(path)
            same = (now.st_dev, now.st_ino) == (first.st_dev, first.st_ino)
        except OSError:
            same = False
        if not same:
            raise StorageLost(f"the database file {path} was deleted or replaced while the stage ran; this worker "
                              "stopped without writing into a new empty file")

    def refuse_reused_if_replaced(dbapi_connection: Any, conn_rec: Any, conn_proxy: Any) -> None:
        refuse_if_replaced(None, None, None, None)  # a pooled connection would write into the deleted file

    sqlalchemy.event.listen(engine, "do_connect", refuse_if_replaced)
    sqlalchemy.event.listen(engine, "checkout", refuse_reused_if_replaced)
    _WATCHED_ENGINES.add(engine)


_WATCHED_ENGINES: weakref.WeakSet = weakref.WeakSet()


class Heartbeat:
    """Records the running trial's heartbeat every ``interval`` s in one daemon thread per worker (Optuna's
    RDB heartbeat); ``beating(trial_id)`` names the trial, so no thread is started or joined per trial."""

    def __init__(self, storage: RDBStorage) -> None:
        self.storage = storage
        interval = storage.get_heartbeat_interval()
        self.interval = min(interval, MAX_BEAT_SECONDS) if interval else None  # beating more often is harmless
        self.trial_id: int | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.thread = threading.Thread(target=self._beat, daemon=True)
            self.thread.start()
        return self

    @contextmanager
    def beating(self, trial_id: int) -> Iterator[None]:
        """Beat for ``trial_id`` meanwhile (its first beat was recorded with its claim, see claim_waiting_trial)."""
        self.trial_id = trial_id
        try:
            yield
        finally:
            self.trial_id = None

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            trial_id = self.trial_id
            if trial_id is None:
                continue
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception:  # a busy or briefly unreachable database: keep beating, the next one may land
                continue

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def claim_waiting_trial(study: optuna.Study, after_id: int, threads: int | None) -> FrozenTrial | None:
    """Move one WAITING trial to RUNNING with its first heartbeat and ``worker`` and ``blas_threads`` (``threads``, the
    BLAS threads it will run with) attributes, in one transaction; returns the RUNNING trial, None when there is none
    left to claim."""
    return optuna_rdb.claim_waiting_trial(optuna_rdb.study_storage(study), optuna_rdb.study_id(study), after_id,
                                          {"worker": worker_name(), "blas_threads": threads})


def make_sampler(stage: Stage, number: int) -> optuna.samplers.BaseSampler:
    """The sampler of one trial, seeded per trial so parallel workers never draw the same point.

    The same seed gives the same trials with any --jobs for random and grid stages; with tpe (and qmc) only with
    --jobs 1 and a stage that runs without interruption: each TPE trial is drawn from the trials finished before it
    (each QMC point goes to the trial that asks next), an order that depends on timing (``--sampler``'s help).
    """
    seed = trial_seed(stage.seed, number)
    if stage.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if stage.sampler == "qmc":
        # a conditional dimension (momentum of some trials only) is outside QMC's sequence: drawn per trial
        return optuna.samplers.QMCSampler(seed=stage.seed, scramble=True, warn_independent_sampling=False,
                                          independent_sampler=optuna.samplers.RandomSampler(seed=seed))
    return optuna.samplers.RandomSampler(seed=seed)  # grid trials carry fixed params; this is never asked


def make_pruner(stage: Stage) -> optuna.pruners.BasePruner:
    """The stage's scheduler as an Optuna pruner (``none``: never prunes; explosions are stopped by the trainer)."""
    if stage.scheduler == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=asha_min_epochs(stage.run.train.epochs),
                                                      reduction_factor=ASHA_REDUCTION)
    return optuna.pruners.NopPruner()


@dataclass
class WorkerReport:
    """What one worker did."""

    ran: int = 0
    errors: list[str] = field(default_factory=list)


def run_worker(
    storage: RDBStorage,
    name: str,
    dataset: Dataset,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    poll: float = 0.5,
    max_trials: int | None = None,
    data: str | None = None,
    deadline: float | None = None,
) -> WorkerReport:
    """Claim and run the stage's WAITING trials until none is waiting or running; returns what it did. ``data``: the
    path of the local copy ``dataset`` was read from, where the stored one is not (see ``Stage.from_attrs``).
    ``deadline`` (``time.time()``'s clock): no trial is claimed after it; the one running finishes and is recorded.

    A failing database (full disk, lock, server stopped) is retried for ``storage_retry_seconds()``,
    then StorageLost stops the worker with the reason; the stage is finished by running it again.
    """
    watch_sqlite_file(storage)
    study = retry_storage(lambda: load_stage_study(storage, name), f"loading stage {name}")
    stage = Stage.from_attrs(study.user_attrs, data)
    study.pruner = make_pruner(stage)  # the stage's scheduler; the sampler is made per trial (make_sampler)
    report = WorkerReport()
    looking = f"looking for trials of {name}"
    study_id = optuna_rdb.study_id(study)
    after_id = -1  # where the next claim starts looking (see optuna_rdb.claim_waiting_trial)
    own_threads = blas_threads()  # NumPy's, or the 1 of a --jobs N worker: no trial of this one runs with more
    threads, threads_read = own_threads, -math.inf  # its next trial's share, read again after BLAS_READ_SECONDS
    # the finished trials TPE and QMC draw from, kept here and read as they finish (the others read no history)
    history = optuna_rdb.FinishedTrials() if stage.sampler in ("tpe", "qmc") else None
    # a trial is stale after 2 x the heartbeat interval: looking once per interval finds it in time
    stale_every = min(storage.get_heartbeat_interval() or 0, MAX_BEAT_SECONDS)
    stale_checked = -math.inf
    with Heartbeat(storage) as heartbeat:
        while max_trials is None or report.ran < max_trials:
            raise_pending()
            if deadline is not None and time.time() >= deadline:
                break
            if time.monotonic() - stale_checked >= stale_every:
                # a dead worker's trial -> FAIL, and the storage's RetryStaleTrialOnce callback re-enqueues it
                lost = retry_storage(lambda: _fail_stale_trials(study), looking)
                stale_checked = time.monotonic()
                if on_trial is not None:  # its line, saying why, as a watcher of several workers reports it
                    for trial in lost:
                        on_trial(trial)
            try:
                if time.monotonic() - threads_read >= BLAS_READ_SECONDS:
                    threads = retry_storage(lambda: trial_blas_threads(study, own_threads), looking)
                    threads_read = time.monotonic()
                claimed = retry_storage(lambda: claim_waiting_trial(study, after_id, threads), looking)
                if claimed is not None:
                    after_id = optuna_rdb.trial_id(claimed)
            except (KeyboardInterrupt, Interrupted) as interrupt:
                interrupt.__traceback__ = None  # a claim's statement it cut short would hold the write lock
                _fail_own_running_trials(study, on_trial)  # its claim may have been written just before
                raise
            if claimed is None:
                stale_checked = -math.inf  # nothing to claim: look for stale trials before waiting
                # counted, and failed trials re-enqueued, in one transaction (see requeue_and_count)
                added, counts = retry_storage(lambda: requeue_and_count(storage, study_id), looking)
                if added:
                    continue  # a process killed between failing a trial and re-enqueueing it left this to do
                if counts["RUNNING"] == 0 and counts["WAITING"] == 0:
                    break
                time.sleep(poll)  # other workers are running the last trials; one of them may die
                continue
            try:
                # while the result is recorded too, retries included
                with heartbeat.beating(after_id), blas_threads_of(None if threads == own_threads else threads):
                    frozen = _run_claimed(study, stage, claimed, dataset, report, history)
            except (KeyboardInterrupt, Interrupted) as interrupt:
                if not getattr(interrupt, _RECORDED, False):
                    # it came before the run's own handler took over (as the run was entered, or its sampler was
                    # made): the trial is still RUNNING; a statement it cut short would hold the write lock
                    interrupt.__traceback__ = None
                    _fail_own_running_trials(study, on_trial)
                elif on_trial is not None:  # its line too, as a watcher of several workers reports theirs
                    _report_interrupted(storage, after_id, on_trial)
                raise
            report.ran += 1
            if on_trial is not None:
                on_trial(frozen)
    return report


def _fail_own_running_trials(study: optuna.Study, on_trial: Callable[[FrozenTrial], None] | None) -> None:
    """Fail as interrupted, and enqueue the copy of, each trial this process claimed and left RUNNING: an interrupt
    that came after a claim was written and before the run's own handler took over (while its sampler was made)
    left it there for the next command to find."""
    storage = optuna_rdb.study_storage(study)
    with _signals_ignored():
        try:
            for trial in running_trials(study):
                if local_worker(trial) != os.getpid():
                    continue
                trial_id = optuna_rdb.trial_id(trial)
                try:
                    storage.set_trial_user_attr(trial_id, "stop_reason", "interrupted")
                    storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue  # another worker failed it as stale meanwhile, and enqueued its copy
                frozen = storage.get_trial(trial_id)
                requeue_failed_trials(storage, optuna_rdb.study_id(study), [frozen])
                if on_trial is not None:
                    on_trial(frozen)
        except Exception as e:
            if not is_storage_error(e):
                raise
            # the database did not take the write: the trial stays RUNNING and the next command fails it at once


def _report_interrupted(storage: RDBStorage, trial_id: int, on_trial: Callable[[FrozenTrial], None]) -> None:
    """Pass the trial an interrupt ended to ``on_trial`` once it is recorded, as FAIL or with its result where the
    interrupt came while that was written (a second Ctrl-C or SIGTERM ignored meanwhile); nothing when the database
    did not take the record."""
    with _signals_ignored():
        try:
            frozen = storage.get_trial(trial_id)
        except Exception as e:
            if not is_storage_error(e):
                raise
            return
        if frozen.state != TrialState.RUNNING:
            on_trial(frozen)


def _fail_stale_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Optuna's ``fail_stale_trials`` as ``optuna_rdb.fail_stale_trials`` does it, with each trial's stop_reason; a
    heartbeat so long that "2 x interval ago" overflows leaves nothing stale. The trials of dead processes of this
    host (``fail_trials_of_dead_workers``) first: one both is failed as its process gone, the reason the note of a
    command that continues the stage gives. Returns the trials it failed, as recorded."""
    storage, study_id = optuna_rdb.study_storage(study), optuna_rdb.study_id(study)
    dead = [storage.get_trial_id_from_study_id_trial_number(study_id, number)
            for number in fail_trials_of_dead_workers(study)]
    try:
        stale = optuna_rdb.fail_stale_trials(study)
    except OverflowError:
        stale = []
    return [storage.get_trial(trial_id) for trial_id in dead + stale]


def fail_trials_of_dead_workers(study: optuna.Study) -> list[int]:
    """Fail each RUNNING trial whose ``worker`` ran on this host in a process that is gone (killed with SIGKILL) as
    ``fail_stale_trials`` fails a stale one, its copy enqueued by the storage's stale-trial callback, at once instead
    of once its heartbeat is 2 x the interval old; returns their numbers. A worker of another host, or whose process
    is alive (or whose pid another process has taken since), is left to its heartbeat. A live trial failed by mistake
    (another PID namespace under the same host name) is as safe as one failed as stale: its result is not recorded,
    its copy runs."""
    storage, failed = optuna_rdb.study_storage(study), []
    for trial in running_trials(study):
        pid = local_worker(trial)
        if pid is None or process_alive(pid):
            continue
        reason = f"worker lost: its process {pid} on this host is gone"
        if not optuna_rdb.fail_running_trial(storage, optuna_rdb.trial_id(trial), reason):
            continue  # it finished meanwhile, or another process failed it
        failed.append(trial.number)
        callback = storage.get_heartbeat_stale_trial_callback()
        if callback is not None:
            callback(study, storage.get_trial(optuna_rdb.trial_id(trial)))
    return failed


def local_worker(trial: FrozenTrial) -> int | None:
    """The pid of the process that claimed ``trial`` when it ran on this host (its ``worker`` is ``host:pid``), else
    None (another host's, or no worker recorded)."""
    return local_pid(trial.user_attrs.get("worker"))


def local_pid(worker: Any) -> int | None:
    """The pid of a ``worker`` attribute (``host:pid``, see ``worker_name``) of this host, else None."""
    name, _, pid = worker.rpartition(":") if isinstance(worker, str) else ("", "", "")
    return int(pid) if name == socket.gethostname() and pid.isascii() and pid.isdigit() else None


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The stage's RUNNING trials, from the database itself: through the study (Optuna's cache) every WAITING trial
    would be read too."""
    storage = optuna_rdb.study_storage(study)
    return optuna_rdb.backend(storage).get_all_trials(optuna_rdb.study_id(study), deepcopy=False,
                                                      states=(TrialState.RUNNING,))


def running_trials_by_worker(study: optuna.Study) -> tuple[int, int, int]:
    """The stage's RUNNING trials as (run by a live process of this host, left by a process of this host that is
    gone, of another host or of no known worker)."""
    alive = gone = elsewhere = 0
    for trial in running_trials(study):
        pid = local_worker(trial)
        if pid is None:
            elsewhere += 1
        elif process_alive(pid):
            alive += 1
        else:
            gone += 1
    return alive, gone, elsewhere


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (another user's counts); a zombie (killed, not yet reaped by its
    parent: a worker killed while the command that started it runs trials itself) does not."""
    others = False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        others = True  # another user's process
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[:1] != ["Z"]  # the state follows the name "(comm)"
    except OSError:  # reaped since; another user's, hidden (/proc mounted hidepid=); no /proc (not Linux)
        return others or not os.path.isdir("/proc/self")


def worker_name() -> str:
    """``host:pid`` of this process, stored as each trial's ``worker`` user attribute."""
    return f"{socket.gethostname()}:{os.getpid()}"


def blas_threads() -> int | None:
    """Threads of the BLAS NumPy calls in this process, stored as each trial's ``blas_threads`` user attribute:
    a matrix product's last bits depend on it, and a run that explodes turns them into other numbers."""
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return max(counts) if counts else None


def blas_threads_of(threads: int | None) -> Any:
    """A context in which NumPy's BLAS runs on ``threads`` threads (None: as it is)."""
    from threadpoolctl import threadpool_limits

    return nullcontext() if threads is None else threadpool_limits(threads, user_api="blas")


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


BLAS_READ_SECONDS = 2.0  # a worker reads who else runs trials on its host at most this often, not each trial


def trial_blas_threads(study: optuna.Study, own: int | None) -> int | None:
    """The BLAS threads of this process's next trial of ``study``: ``own`` (``blas_threads()`` outside any trial) when
    it is alone, else the usable cores shared out among it and the other live processes of this host running trials
    of any stage of the database (at least 1, at most ``own``). A ``search worker`` and a ``--jobs 1`` command side
    by side on 2 cores each ran NumPy's 2 threads, 2.2 and 2.4 s a trial, where one thread each took 0.43 s; two
    ``--jobs 1`` commands on two campaigns, 3.4 to 4.3 times as long as on 1 thread each. One query, none for a
    process of one thread (a --jobs N worker): on 100,000 trials of 10 stages, 20 ms on SQLite, 18 ms on
    PostgreSQL (a busy machine)."""
    if own is None or own <= 1:  # no BLAS found, or 1 thread: nothing to share out
        return own
    workers = optuna_rdb.trial_user_attr_values(optuna_rdb.study_storage(study), None, "worker",
                                                states=(TrialState.RUNNING,))
    others = [pid for pid in set(map(local_pid, workers)) if pid not in (None, os.getpid()) and process_alive(pid)]
    return min(own, max(1, usable_cores() // (len(others) + 1))) if others else own


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM for a moment (main thread only): a second one must not cut the recording
    of an interrupted trial in half."""
    try:
        saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are not delivered here anyway
        saved = {}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _run_claimed(study: optuna.Study, stage: Stage, claimed: FrozenTrial, dataset: Dataset,
                 report: WorkerReport, history: optuna_rdb.FinishedTrials | None = None) -> FrozenTrial:
    """Run one claimed trial and record how it ended; an interruption fails it and enqueues its retry (one while the
    result is written waits for it, and the trial is kept). ``history``: the stage's finished trials as far as read,
    for a sampler that draws from them (TPE, QMC).

    The trial's params are written in one transaction once suggested, and its intermediate values,
    user attributes, value and state in one more when it ends (``optuna_rdb.BufferedTrialStorage``).
    A database failure is not the trial's failure: its writes are retried (``retry_storage``), and a
    run whose writes were lost is failed as ``interrupted`` and re-run, never stored as ``error:``.
    """
    # an interrupt before the handler below is in place is run_worker's to record
    storage = optuna_rdb.study_storage(study)
    trial_id, number = optuna_rdb.trial_id(claimed), claimed.number
    what = f"recording trial {number} of {stage.name}"
    study.sampler = make_sampler(stage, number)
    if history is not None:  # the sampler sees the trials finished since the last one
        retry_storage(lambda: optuna_rdb.cache_finished_trials(study, history), what)
    else:
        optuna_rdb.forget_cached_trials(study)
    trial = optuna_rdb.open_trial(study, claimed)  # no second read of the rows the claim read
    writes = optuna_rdb.BufferedTrialStorage(trial)
    try:
        try:
            outcome = run_trial(trial, dataset=dataset, base=stage.run, space=stage.space,
                                stage_seed=stage.seed, explode_factor=stage.explode_factor,
                                scheduled=stage.scheduler != "none",
                                on_params=lambda: retry_storage(writes.commit_params, what))
        except (KeyboardInterrupt, Interrupted) as interrupt:
            _record_interrupted(study, writes, interrupt)
            raise
        except (optuna.exceptions.UpdateFinishedTrialError, StorageLost):
            raise
        except Exception as e:
            if is_storage_error(e):  # the run's writes were lost with the database: run it again
                retry_storage(lambda: _fail_and_requeue(study, writes, "interrupted"), what)
                return storage.get_trial(trial_id)
            # a bug or a resource error in this trial: record it, keep the stage going
            message = f"error: {type(e).__name__}: {e}"
            frozen = retry_storage(lambda: _tell_failed(writes, message[:500]), what)
            report.errors.append(f"trial {number}: {message}")
            return frozen
        writes.user_attrs.update(outcome.attrs)
        writes.system_attrs.update(outcome.records)
        written: list[FrozenTrial] = []

        def finish(state: TrialState, value: float | None = None) -> FrozenTrial:
            # Ctrl-C and SIGTERM wait while the result's transaction runs (each attempt: the waits between retries
            # take them at once), then act: the finished run is kept, not failed and run again; not blocked, each is
            # noted as it comes, and the first one received ends the command
            with stops_held():
                written.append(writes.finish(state, value))
            return written[-1]

        try:
            if outcome.pruned:
                return retry_storage(lambda: finish(TrialState.PRUNED), what)
            if not math.isfinite(outcome.value):  # as Optuna's tell: a value that is no number fails the trial
                writes.user_attrs["stop_reason"] = "error: the validation accuracy is not a number"  # not re-run
                return retry_storage(lambda: finish(TrialState.FAIL), what)
            return retry_storage(lambda: finish(TrialState.COMPLETE, outcome.value), what)
        except (KeyboardInterrupt, Interrupted) as interrupt:
            if written:  # held while the result was written: the trial is kept, and run_worker reports it
                setattr(interrupt, _RECORDED, True)
            else:  # between the retries' attempts: as during training
                _record_interrupted(study, writes, interrupt)
            raise
    except optuna.exceptions.UpdateFinishedTrialError:
        # Another worker failed this trial as stale (its heartbeats stopped reaching the database, e.g.
        # the machine was suspended) and enqueued a copy that runs it again: this run's result is dropped.
        return storage.get_trial(trial_id)


# set on an interrupt once _record_interrupted took it, or once it waited for the result written: run_worker leaves
# its trial be
_RECORDED = "trial_recorded"


def _record_interrupted(study: optuna.Study, writes: optuna_rdb.BufferedTrialStorage, interrupt: BaseException) -> None:
    """Fail the trial as interrupted and enqueue its copy, a second Ctrl-C or SIGTERM ignored meanwhile."""
    # a SQLite statement the interrupt cut short holds the write lock while the traceback keeps its cursor alive:
    # let it go first, or this write would wait for its own lock
    interrupt.__traceback__ = None
    setattr(interrupt, _RECORDED, True)  # tried once: a database that refused it is not waited for twice
    with _signals_ignored():
        try:
            _fail_and_requeue(study, writes, "interrupted")
        except Exception as e:
            if not is_storage_error(e):
                raise
            # the database did not take the write (locked, gone): the trial stays RUNNING, its heartbeat
            # stops, and the next command fails it as stale and runs it again; the interrupt still ends
            # this one with its line, not a traceback


def _tell_failed(writes: optuna_rdb.BufferedTrialStorage, stop_reason: str) -> FrozenTrial:
    """Record ``stop_reason`` and mark the trial FAIL (with what it reported so far)."""
    writes.user_attrs["stop_reason"] = stop_reason
    return writes.finish(TrialState.FAIL)


def _fail_and_requeue(study: optuna.Study, writes: optuna_rdb.BufferedTrialStorage, reason: str) -> None:
    """Mark the trial FAIL with ``reason`` and enqueue a WAITING copy so the budget is made up later."""
    try:
        frozen = _tell_failed(writes, reason)
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # another worker failed it as stale meanwhile, and enqueued its copy
    requeue_failed_trials(optuna_rdb.study_storage(study), optuna_rdb.study_id(study), [frozen])
