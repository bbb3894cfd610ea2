"""Campaigns: the coarse stage, fine stages refined from it, the grid stage beside it, and ``auto`` chaining them."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from engine.data import DATASETS, Dataset, data_identity, data_sha256, majority_baseline
from engine.formats import detect_format
from engine.model import balanced_accuracy
from engine.trainer import train
from search.config import RunConfig, data_warnings
from search.errors import SearchError, SearchFailed, raise_pending
from search.objective import EXPLODE_FACTOR, PRUNED_REASONS, stop_reason, trial_config
from search.progress import Progress
from search.space import DEFAULT_SPACE, Choice, Dimension, IntRange, space_moved
from search.text import wrapped
from search.stages import (
    FINISHED, Stage, best_configurations, campaign_stages, create_stage, fine_index, latest_chain_stage,
    load_stage_study, promotion_stage, refined_stage, running_trials_by_worker, split_size, stage_counts,
    T, retry_storage, stage_unfinished, storage_retry_seconds, study_name, usable_cores, value_se,
    watch_sqlite_file,
)
from search.workers import run_stage_processes
from studies import optuna_rdb
from studies.budget import ERROR_PREFIX
from studies.queries import COMPARE_STAGE, campaigns, latest_campaign, unknown_campaign
from studies.records import value_text
from studies.store import open_storage


def default_hidden_range(train_samples: int) -> IntRange:
    """Hidden width searched by ``search auto``: 16 up to the power of two nearest a quarter of the training set (64
    to 1024), log scale.

    Wider nets than that mostly memorise a small training set and cost time per epoch.
    """
    top = int(min(1024, max(64, 2 ** round(math.log2(max(train_samples, 4) / 4)))))
    return IntRange(16, top, log=True)


def auto_space(train_samples: int) -> dict[str, Dimension]:
    """The default space of ``search auto``: lr, reg and the hidden width."""
    return {**DEFAULT_SPACE, "hidden": default_hidden_range(train_samples)}


PROGRESS_MODES = ("auto", "bar", "log", "quiet")


@dataclass(frozen=True)
class Execution:
    """How to run a stage's trials: storage, processes, heartbeat, progress mode, warnings shown before them."""

    url: str
    jobs: int | None = 1  # None: auto, the usable cores but never more than the trials left
    heartbeat: int = 10  # seconds; a trial silent for twice this is failed and re-run
    progress: str = "auto"  # "auto", "bar", "log" or "quiet"
    # with jobs > 1 this process runs trials too (see run_stage_processes): only for a guarded main module
    parent_works: bool = False
    warnings: tuple[str, ...] = ()  # lines shown before the trials start (not with quiet progress)
    heartbeat_given: bool = False  # --heartbeat was given: a stage that keeps another interval says so
    deadline: float | None = None  # time.time() after which no trial is claimed (--timeout); None: no limit

    def __post_init__(self) -> None:
        if self.jobs is not None and (isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1):
            raise SearchError(f"--jobs must be a whole number >= 1 (or None: auto), got {self.jobs!r}")
        if self.progress not in PROGRESS_MODES:
            raise SearchError(f"progress must be one of {', '.join(PROGRESS_MODES)}, got {self.progress!r}")
        if isinstance(self.heartbeat, bool) or not isinstance(self.heartbeat, int) or self.heartbeat < 1:
            # None (no heartbeats) left a trial whose worker was lost on another machine RUNNING for ever, and every
            # command on its stage waiting for it
            raise SearchError(f"--heartbeat must be a whole number of seconds >= 1, got {self.heartbeat!r}")
        storage_retry_seconds()  # read when the database fails, mid-stage: a bad value is refused here, first

    def processes(self, trials_left: int) -> int:
        """Worker processes for a stage with ``trials_left`` trials: --jobs, or (auto) the usable cores, at most
        one per trial left."""
        return self.jobs if self.jobs is not None else max(1, min(usable_cores(), trials_left))

    def storage(self) -> optuna.storages.RDBStorage:
        """The database, created when it does not exist yet (commands that start a campaign)."""
        return open_storage(self.url, heartbeat_interval=self.heartbeat)

    def existing_storage(self, campaign: str | None) -> tuple[optuna.storages.RDBStorage, str]:
        """The database, which must exist already and hold the campaign (commands that continue a campaign create
        and change nothing, not even the journal mode, before both are found) and be writable; and the campaign's
        name (None: the latest)."""
        reading = open_storage(self.url, readonly=True)  # missing: one line, and no file left behind
        try:
            name = resolve_campaign(reading, campaign)
        finally:
            reading.engine.dispose()
        return self.storage(), name


@dataclass
class StageSummary:
    """What a stage ended with, for the table printed after it and the JSON output."""

    study: str
    stage: str
    parent: str | None
    counts: dict[str, int]
    n_trials: int
    epochs: int
    space: dict[str, str]
    best_value: float | None
    best_params: dict[str, Any]
    top: list[dict[str, Any]]
    range_notes: list[str]
    created: bool
    errors: list[str] = field(default_factory=list)
    training_seconds: float = 0.0  # building and training the nets of all its trials
    ran: int = 0  # trials this command ran (0: the stage was complete already)
    failed_by_error: int = 0  # of counts["fail"]: trials that failed by themselves, not re-run (the others were)
    pruned_by: dict[str, int] = field(default_factory=dict)  # of counts["pruned"]: per stop_reason (PRUNED_REASONS)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarise(study: optuna.Study, created: bool, errors: list[str], top: int = 5,
              data: str | None = None) -> StageSummary:
    stage = Stage.from_attrs(study.user_attrs, data)
    # counted and ranked by the database: a stage of a million trials is not read whole to say how it went
    storage, study_id = optuna_rdb.study_storage(study), optuna_rdb.study_id(study)
    counts = {name.lower(): n for name, n in optuna_rdb.state_counts(storage, study_id).items()}
    seconds = sum(x for x in optuna_rdb.trial_user_attr_values(storage, study_id, "seconds")
                  if isinstance(x, (int, float)))  # not text
    # read only where a trial failed or was pruned
    reasons = (optuna_rdb.trial_user_attr_values(storage, study_id, "stop_reason")
               if counts.get("fail") or counts.get("pruned") else [])
    errored = sum(str(x).startswith(ERROR_PREFIX) for x in reasons) if counts.get("fail") else 0
    pruned_by = {reason: n for reason in PRUNED_REASONS if (n := reasons.count(reason))}
    if stage.stage == "final":  # ranked as it chooses: by each configuration's mean over its runs
        means = config_means(study.get_trials(deepcopy=False))
        rows = [{"runs": len(v), "value": float(np.mean(v)), "std": float(np.std(v)), "params": p}
                for p, v in means[:top]]
        best_value, best_params = (rows[0]["value"], means[0][0]) if rows else (None, {})
    else:  # the best first; of equal values, the earlier trial
        ranked = optuna_rdb.ordered_trial_ids(storage, [study_id], [TrialState.COMPLETE], "value", True, top)
        complete = optuna_rdb.trials_by_id(storage, [trial_id for trial_id, _ in ranked])
        rows = [{"number": t.number, "value": t.value, "params": dict(t.params),
                 "seconds": t.user_attrs.get("seconds")} for t in complete[:top]]
        best_value, best_params = (complete[0].value, dict(complete[0].params)) if complete else (None, {})
    return StageSummary(
        study=stage.name, stage=stage.stage, parent=stage.parent, counts=counts, n_trials=stage.n_trials,
        epochs=stage.run.train.epochs, space={k: v.text(k) for k, v in stage.space.items()},
        best_value=best_value, best_params=best_params,
        top=rows, range_notes=list(stage.range_notes), created=created, errors=errors,
        training_seconds=round(seconds, 4),  # as each trial's seconds are stored
        failed_by_error=min(errored, counts.get("fail", 0)), pruned_by=pruned_by,
    )


def execute_stage(execution: Execution, stage: Stage, dataset: Dataset | None = None,
                  between_stages: bool = False) -> StageSummary:
    """Create (or join) the stage and run its remaining trials; the stage ends with exactly n_trials finished.
    ``between_stages``: a command's stage after another one, created while the database fails retried as the trials'
    writes are (a command's first stage says the failure at once)."""
    if dataset is None:
        dataset = stage.run.load()  # bad data or a batch larger than it fails here, before the database is touched
    identity = data_identity(stage.run.data, dataset)
    check_batch_sizes(stage.space, dataset)  # before the database is opened (or made)
    # create_stage is idempotent: a retry after a commit whose answer was lost joins the stage that commit made
    create = partial(_create_or_join, execution, stage, identity)
    study, created = retry_storage(create, f"creating stage {stage.name}") if between_stages else create()
    return run_existing(execution, study, created, dataset)


def _create_or_join(execution: Execution, stage: Stage, identity: dict[str, Any]) -> tuple[optuna.Study, bool]:
    """``create_stage`` after the checks of the campaign and of its data (see execute_stage)."""
    storage = execution.storage()
    check_campaign_kind(storage, stage.campaign, compare=bool(COMPARE_STAGE.fullmatch(stage.stage)))
    if stage.parent is not None:  # a stage refined from, or beside, another one: the same data or nothing
        _check_same_data(load_stage_study(storage, stage.parent), identity)
    study, created = create_stage(storage, stage, identity)
    if not created:
        _check_same_data(study, identity)
    return study, created


def check_batch_sizes(space: dict[str, Dimension], dataset: Dataset) -> None:
    """SearchError where ``space`` searches a batch_size larger than the training set: a range's upper bound, or a
    choice's largest (once each trial of it failed)."""
    if "batch_size" in space:
        batch = space["batch_size"]
        largest = max(batch.choices) if isinstance(batch, Choice) else batch.high
        if largest > len(dataset.y_train):
            raise SearchError(f"the space searches batch_size up to {value_text(largest)}, larger than the training "
                              f"set ({len(dataset.y_train)} samples)")  # of --space, --space-file or a stored stage


def check_campaign_kind(storage: optuna.storages.RDBStorage, campaign: str, compare: bool) -> None:
    """SearchError where ``campaign`` holds stages of the other search than the one adding a stage (``compare``:
    search compare's random-r and grid-r; else the coarse-to-fine chain of search coarse, fine, grid and auto): one
    campaign of both would mix them in search best and search report."""
    others = [str(s.user_attrs.get("stage")) for s in campaign_stages(storage, campaign)
              if bool(COMPARE_STAGE.fullmatch(str(s.user_attrs.get("stage")))) != compare]
    if others and compare:
        raise SearchError(f"campaign {campaign} holds another search's stages ({', '.join(others)}): search compare "
                          f"puts its random and grid stages in a campaign of their own; give --campaign NEW, or none "
                          f"for compare-<UTC timestamp>")
    if others:
        # search fine and grid cannot begin a campaign: the one way on names the commands that can
        raise SearchError(f"campaign {campaign} holds search compare's stages ({', '.join(others)}): a coarse-to-fine "
                          f"search goes in a campaign of its own, begun by search coarse or auto --campaign NEW")


def _check_same_data(study: optuna.Study, identity: dict[str, Any]) -> None:
    """SearchError naming the path and both hashes when a stage was started on other data than ``identity``."""
    recorded = study.user_attrs.get("data", {})
    if "sha256" in recorded and recorded.get("sha256") != identity.get("sha256"):
        raise SearchError(f"{identity.get('path') or identity.get('name')}: stage {study.study_name} was started on "
                          f"other data (sha256 {recorded.get('sha256')} recorded, {identity.get('sha256')} now); "
                          f"refusing to mix two datasets in one stage: put back the data it was started on, or "
                          f"start another campaign on this data with search coarse or auto --campaign NAME")


DATA_KINDS = {"npz": "an .npz file", "csv": "a .csv table", "tsv": "a .tsv table", "image_folder": "an image folder",
              "cifar10": "a CIFAR-10 folder"}  # engine.formats.detect_format's names, as a sentence says them


def _local_copy_checks(study: optuna.Study, path: str) -> tuple[str, ...]:
    """What a copy of the data at ``path`` is checked against (``_check_local_copy``): ("sha256",) where ``study``
    records one, else its split shapes and classes; SearchError where it records neither, or trains on built-in
    data."""
    recorded = study.user_attrs.get("data")
    recorded = recorded if isinstance(recorded, dict) else {}
    name = recorded.get("name")
    if name in DATASETS:
        raise SearchError(f"--data {path}: stage {study.study_name} trains on the built-in dataset {name}, which "
                          f"needs no copy: leave --data out")
    fmt, given = recorded.get("format"), detect_format(Path(path))
    if fmt in DATA_KINDS and given != fmt:  # read as another kind (a folder for a .csv): no check would get that far
        raise SearchError(f"--data {path} is {DATA_KINDS.get(given, given)}, where stage {study.study_name} was "
                          f"trained on {DATA_KINDS[fmt]} ({name}): give the path of this machine's copy of it")
    checked = ("sha256",) if recorded.get("sha256") else tuple(k for k in ("shapes", "classes") if recorded.get(k))
    if not checked:
        raise SearchError(f"--data {path}: stage {study.study_name} records nothing to check a copy of its data "
                          f"against (no sha256, shapes or classes): run the worker with the data at {name}")
    return checked


def _check_local_copy(study: optuna.Study, path: str, run: RunConfig, dataset: Dataset | None) -> Dataset | None:
    """SearchError unless the data at ``path`` (``run``'s) is the data ``study`` was trained on: the same sha256
    where it records one (a file's bytes; a folder's files with their relative paths; hashed once a process while
    they are unchanged), else the same split shapes and classes, read from ``dataset`` (None: loaded here, and
    returned for the trials)."""
    checked = _local_copy_checks(study, path)
    recorded = study.user_attrs["data"]
    if checked == ("sha256",):
        identity = {"sha256": data_sha256(run.data, cached=True)}
    else:
        dataset = dataset if dataset is not None else run.load()
        identity = data_identity(run.data, dataset, cached=True)
    differ = [f"{k} {recorded[k]} recorded, {identity[k]} in {path}" for k in checked if recorded[k] != identity[k]]
    if differ:
        raise SearchError(f"--data {path} is not the data stage {study.study_name} was trained on "
                          f"({recorded.get('name')}): {'; '.join(differ)}; give a copy of that data")
    return dataset


def run_existing(execution: Execution, study: optuna.Study, created: bool = False,
                 dataset: Dataset | None = None, data: str | None = None) -> StageSummary:
    """Run the remaining WAITING (and, once their workers are found dead, RUNNING) trials of a stage; ``data``: the
    absolute path of a copy of its data on this machine, read instead of the stored path (search worker --data),
    checked against the stage once it has trials to run."""
    if data is not None:
        _local_copy_checks(study, data)  # a copy it cannot check is refused whether or not trials are left
    stage = Stage.from_attrs(study.user_attrs, data)
    looking = f"reading stage {stage.name}"
    unfinished = retry_storage(lambda: stage_unfinished(optuna_rdb.study_storage(study), optuna_rdb.study_id(study)),
                               looking)
    errors: list[str] = []
    ran = 0
    if unfinished:
        if data is not None:
            dataset = _check_local_copy(study, data, stage.run, dataset)
        if dataset is None:  # a worker joining a stage, maybe on another machine: same data or nothing
            dataset = stage.run.load()
            if data is None:  # a copy is checked by _check_local_copy
                _check_same_data(study, data_identity(stage.run.data, dataset))
        # every worker of a stage judges staleness with the stage's interval (see create_stage); a stage stored
        # without one (created with heartbeats off) is run with this command's, or a lost worker's trial is never
        # re-run
        heartbeat = study.user_attrs.get("heartbeat") or execution.heartbeat
        storage, study_id = optuna_rdb.study_storage(study), optuna_rdb.study_id(study)
        # counted by the database: a stage's trials are not read to count them (through the study, Optuna's cache,
        # every WAITING one would be read too); the same counts size the workers and start the progress, and more
        # processes' watcher looks for trials finished from the same moment on: none is missed or counted twice
        before, first_look = retry_storage(lambda: optuna_rdb.state_counts_and_first_look(storage, study_id), looking)
        counts = before[0]
        jobs = execution.processes(counts["WAITING"] + counts["RUNNING"])
        # the progress reads the stage's counts: one process is told of its own trials only, and more of every
        # trial that ends after ``before``
        watch_sqlite_file(optuna_rdb.backend(storage))  # a read after the file was deleted would make an empty one
        read_stage = partial(optuna_rdb.state_counts_and_best, storage, study_id)
        continuing = () if created else continuing_notes(stage.name, stage.n_trials, counts, heartbeat,
                                                         retry_storage(lambda: running_trials_by_worker(study),
                                                                       looking))
        if execution.heartbeat_given and heartbeat != execution.heartbeat:
            continuing += (wrapped(f"--heartbeat {execution.heartbeat} not used: {stage.name} keeps the {heartbeat} s "
                                   "it was created with, by which every worker of it judges a trial stale"),)
        progress = Progress(stage.name, stage.n_trials, before, mode=execution.progress, read_stage=read_stage,
                            told_all=jobs > 1, notes=execution.warnings + continuing)
        try:
            report = run_stage_processes(execution.url, stage.name, dataset, jobs, heartbeat,
                                         on_trial=progress.trial, parent_works=execution.parent_works,
                                         first_look=first_look, data=data, deadline=execution.deadline)
        finally:
            progress.close()
        errors, ran = report.errors, report.ran
    summary = retry_storage(lambda: summarise(load_stage_study(optuna_rdb.study_storage(study), stage.name), created,
                                              errors, data=data), looking)
    summary.ran = ran
    return summary


def continuing_notes(name: str, n_trials: int, counts: dict[str, int], heartbeat: int,
                     running: tuple[int, int, int] | None = None) -> tuple[str, ...]:
    """The line said before the trials of a stage this command did not create: how many of its trials are finished,
    and what becomes of the RUNNING ones; none for a stage not yet begun. ``running``: the RUNNING trials as
    ``running_trials_by_worker`` tells them apart (None: all of another host, or not known)."""
    finished = counts["COMPLETE"] + counts["PRUNED"]
    alive, gone, elsewhere = running if running is not None else (0, 0, counts["RUNNING"])
    if not finished and not (alive or gone or elsewhere):
        return ()
    line = f"continuing {name}: {finished} of {n_trials} trials finished"
    if counts["FAIL"]:
        line += f", {counts['FAIL']} failed (re-run)"
    if alive:  # a second terminal on the same stage: nothing to worry about
        line += f"; {alive} running in {'another process' if alive == 1 else 'other processes'} on this machine"
    if gone:
        line += f"; {gone} left by a process of this machine that is gone: re-run at once"
    if elsewhere:
        line += (f"; {elsewhere} running on another machine, or left by a killed one: re-run once "
                 f"{'its' if elsewhere == 1 else 'their'} heartbeat is "
                 + (f"{2 * heartbeat} s old" if heartbeat else "stale"))
    return (wrapped(line),)


# --------------------------------------------------------------------------- the stages a user asks for
def coarse_stage(campaign: str, run: RunConfig, space: dict[str, Dimension], n_trials: int, seed: int,
                 sampler: str = "random", explode_factor: float = EXPLODE_FACTOR, scheduler: str = "none") -> Stage:
    return Stage(campaign=campaign, stage="coarse", space=dict(space), n_trials=n_trials, run=run, seed=seed,
                 sampler=sampler, explode_factor=explode_factor, scheduler=scheduler)


FINE_SAMPLER = "tpe"  # search auto's fine stages: measured against random in benchmarks/search_quality.py


def with_fine_choices(stage: Stage, sampler: str | None, scheduler: str | None) -> Stage:
    """A fine stage with its own sampler and scheduler where given (None: the parent's, as refined)."""
    return replace(stage, sampler=sampler or stage.sampler, scheduler=scheduler or stage.scheduler)


def resolve_campaign(storage: optuna.storages.RDBStorage, campaign: str | None) -> str:
    """The named campaign (checked to exist) or the one whose newest stage is newest."""
    known = campaigns(storage)
    if campaign is None:
        if not known:
            raise SearchError("the database has no campaign yet; start one with `search coarse` or `search auto`")
        return latest_campaign(storage)
    if campaign not in known:
        raise SearchError(unknown_campaign(campaign, known))
    return campaign


def next_fine_stage(storage: optuna.storages.RDBStorage, campaign: str, top: int, edge: float,
                    epochs: int | None, n_trials: int | None) -> tuple[Stage | None, optuna.Study]:
    """(new stage refined from the chain's last stage, that parent study), or (None, unfinished fine study)."""
    check_campaign_kind(storage, campaign, compare=False)  # search compare's: not "run `search coarse` first"
    last = latest_chain_stage(storage, campaign)
    if last is None:
        raise SearchError(f"campaign {campaign!r} has no coarse stage to refine; run `search coarse` first")
    study = load_stage_study(storage, study_name(campaign, last))
    continues = fine_index(last) > 0  # an interrupted fine stage is continued; another one is the user's to finish
    if stage_unfinished(storage, optuna_rdb.study_id(study), repair=continues):
        if continues:
            return None, study
        running = stage_counts(storage, optuna_rdb.study_id(study))["RUNNING"]  # its workers may be running them
        now = (f": {running:,} of its trials running now; run this command again once its workers are done, or, if "
               f"none runs," if running else ";")
        raise SearchError(f"stage {study.study_name} is not finished{now} run the command that started it again, or "
                          f"`search worker --campaign {campaign} --stage {last}`, to complete it")
    return refined_stage(study, top, edge, epochs, n_trials), study


def stored_promotion(storage: optuna.storages.RDBStorage, parent: optuna.Study) -> Stage | None:
    """The promotion stage after ``parent`` (``promotion_stage``'s promote-k) where a run stopped before creating the
    fine stage it ranks (that stage is then not there yet), as it was created: None where there is none."""
    stage = Stage.from_attrs(parent.user_attrs)
    name = study_name(stage.campaign, f"promote-{fine_index(stage.stage) + 1}")
    if name not in {s.study_name for s in storage.get_all_studies()}:
        return None
    return Stage.from_attrs(load_stage_study(storage, name).user_attrs)


def promoted_fine_stage(execution: Execution, parent: optuna.Study, top: int, edge: float, epochs: int | None,
                        n_trials: int | None, promote: int, dataset: Dataset | None = None,
                        between_stages: bool = False) -> tuple[Stage, list[StageSummary]]:
    """The next fine stage, refined on the parent's ``promote`` best configurations re-run at its epochs (stage
    ``promote-k``, run or joined here) -- or, with ``promote`` 0, on the parent's own ranking. The database failing
    after the promotion stage, or with ``between_stages`` before it too, is retried (see execute_stage)."""
    def retried(work: Callable[[], T], what: str, retry: bool = True) -> T:
        return retry_storage(work, what) if retry else work()

    if promote <= 0:
        return retried(lambda: refined_stage(parent, top, edge, epochs, n_trials),
                       f"refining the space on {parent.study_name}", between_stages), []
    check = retried(lambda: promotion_stage(parent, epochs, promote), "choosing the configurations to promote",
                    between_stages)
    summary = execute_stage(execution, check, dataset, between_stages)

    def refine() -> Stage:
        promoted = load_stage_study(optuna_rdb.study_storage(parent), check.name)
        return refined_stage(parent, top, edge, epochs, n_trials, promoted)

    return retry_storage(refine, f"refining the space on {check.name}"), [summary]


def grid_stage_for(storage: optuna.storages.RDBStorage, campaign: str) -> Stage:
    """A grid stage over the coarse stage's ranges, epochs and trial budget (k^d points, k = floor(N^(1/d)))."""
    check_campaign_kind(storage, campaign, compare=False)  # search compare's: not "unknown study .../coarse"
    coarse = Stage.from_attrs(load_stage_study(storage, study_name(campaign, "coarse")).user_attrs)
    grid = coarse.grid_beside("grid")
    if grid.n_trials > 2 * coarse.n_trials:
        raise SearchError(f"a grid over {coarse.name}'s space needs {grid.n_trials} points (every category "
                          f"combination), more than twice its {coarse.n_trials} trials: no comparison at equal "
                          f"budget; search fewer categories")
    return grid


# --------------------------------------------------------------------------- auto
@dataclass
class Retrained:
    """The chosen configuration's retrains (trained on the training split only, fresh seeds), as the report's
    ``chosen.retrained`` gives them."""

    runs: int
    val_acc: float  # mean over the retrains
    test_acc: float  # mean over the retrains
    test_std: float
    stop_reason: str  # "completed", or how a retrain that did not complete ended, as a trial's stop_reason
    # where one class dominates (engine.data.majority_baseline): {"class": its name, "test_acc": what always
    # predicting it scores on test}; None otherwise, or stored by a version that did not record it
    most_frequent_class: dict[str, Any] | None = None
    # the mean over the retrains of their balanced accuracy on test (the mean of the classes' recalls); None where
    # stored by a version that did not record it
    test_balanced_accuracy: float | None = None


@dataclass
class FinalScore:
    """The chosen configuration: its re-evaluation on validation, and its retrains scored on test. The names are
    those of the report's ``chosen`` (``summary.json``)."""

    study: str
    stage: str
    params: dict[str, Any]
    epochs: int
    value: float  # the mean of its runs' values in the final stage (the reported number)
    std: float
    runs: int
    retrained: Retrained | None  # None: none stored that can be read (search best reads them back)
    stopped: str  # why no further fine stage was added


def final_stage(last: optuna.Study, top: int, repeats: int) -> Stage:
    """Stage ``final``: the last stage's ``top`` configurations, each run ``repeats`` times with other seeds."""
    stage = Stage.from_attrs(last.user_attrs)
    leaders = best_configurations(last, top)
    if not leaders:
        raise SearchFailed(f"stage {stage.name} has no completed trial to re-evaluate")
    points = tuple(p for _ in range(repeats) for p in leaders)
    note = (f"the top {len(leaders)} configurations of {stage.name}, {repeats} runs each with other seeds, "
            f"trained to the end as the retrains are (no run stopped for a loss spike); the best mean is chosen")
    return replace(stage, stage="final", sampler="fixed", scheduler="none", points=points, n_trials=len(points),
                   explode_factor=None, parent=stage.name, seed=stage.seed + 1000, range_notes=(note,))


def config_means(trials: list[FrozenTrial]) -> list[tuple[dict[str, Any], list[float]]]:
    """(params, values) of each configuration among the finished trials, best mean first; a run stopped
    without a value counts 0 (in the final stage nothing stops a run for a loss spike)."""
    groups: dict[str, tuple[dict[str, Any], list[float]]] = {}
    for t in trials:
        if t.state in FINISHED:
            key = json.dumps(t.params, sort_keys=True)
            groups.setdefault(key, (dict(t.params), []))[1].append(t.value if t.value is not None else 0.0)
    return sorted(groups.values(), key=lambda g: float(np.mean(g[1])), reverse=True)


def choose_final(study: optuna.Study) -> tuple[dict[str, Any], list[float]]:
    """(params, values) of the configuration with the best mean value in the final stage."""
    means = config_means(study.get_trials(deepcopy=False))
    if not means:
        raise SearchFailed(f"stage {study.study_name} has no finished trial to choose from")
    return means[0]


RETRAINED_ATTR = "retrained"  # the final stage's user attribute: the chosen configuration's retrains and scores
STOPPED_ATTR = "fine_stages_stopped"  # the final stage's user attribute: why search auto added no further fine stage
RETRAIN_NUMBER = 10**6  # retrain r is seeded as trial RETRAIN_NUMBER + r: a seed no trial of the campaign used


def retrain_run(storage: optuna.storages.RDBStorage, campaign: str, seed: int) -> RunConfig:
    """The whole run of the chosen configuration's first retrain (as ``retrain_final`` trains it)."""
    study = load_stage_study(storage, study_name(campaign, "final"))
    return trial_config(Stage.from_attrs(study.user_attrs).run, choose_final(study)[0], seed, RETRAIN_NUMBER)


def retrain_final(storage: optuna.storages.RDBStorage, campaign: str, seed: int, retrains: int,
                  stopped: str) -> FinalScore:
    """Retrain the final stage's choice ``retrains`` times with fresh seeds; score each on validation and test.

    The scores are stored in the final stage's ``retrained`` user attribute (queryable with the rest of the
    campaign); a later call for the same choice, seed and count reads them instead of training again."""
    def read() -> tuple[optuna.Study, dict[str, Any], list[float], dict[str, Any]]:
        study = load_stage_study(storage, study_name(campaign, "final"))
        if not isinstance(study.user_attrs.get(STOPPED_ATTR), str):  # the first reason, not "chose from ... before"
            study.set_user_attr(STOPPED_ATTR, stopped)
        return (study, *choose_final(study), study.user_attrs.get(RETRAINED_ATTR, {}))

    # the database's reads and writes retried while it fails (``retry_storage``), the retrains run once
    study, params, values, stored = retry_storage(read, f"reading stage {study_name(campaign, 'final')}")
    stage = Stage.from_attrs(study.user_attrs)
    asked = {"params": params, "seed": seed, "retrains": retrains}
    if stored.get("asked") == asked:  # retrained before (the same runs, seeded alike): read, not run again
        # "status" in a database written before it was named as a trial's stop_reason
        vals, tests, status = stored["val_acc"], stored["test_acc"], stored.get("stop_reason", stored.get("status"))
        baseline = stored.get("most_frequent_class")
        balanced = stored.get("test_balanced_accuracy") or []
    else:
        vals, tests, status, baseline, balanced = [], [], "completed", None, []
        for r in range(retrains):
            config = trial_config(stage.run, params, seed, RETRAIN_NUMBER + r)
            ds = config.load()
            majority = majority_baseline(ds, "test")
            baseline = None if majority is None else {"class": majority[0], "test_acc": majority[1]}
            model = config.build_model(ds)
            result = train(model, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val)
            vals.append(float(result.val_acc))
            tests.append(float(model.accuracy(ds.X_test, ds.y_test)))
            balanced.append(balanced_accuracy(ds.y_test, model.predict(ds.X_test)))
            status = stop_reason(result.status) if result.status != "completed" else status
        scores = {"asked": asked, "val_acc": vals, "test_acc": tests, "stop_reason": status,
                  "most_frequent_class": baseline, "test_balanced_accuracy": balanced}
        retry_storage(lambda: study.set_user_attr(RETRAINED_ATTR, scores), f"storing {study.study_name}'s retrains")
    retrained = Retrained(retrains, float(np.mean(vals)), float(np.mean(tests)), float(np.std(tests)), status,
                          baseline, mean_of_all(balanced, len(tests)))
    return FinalScore(stage.name, stage.stage, params, stage.run.train.epochs, float(np.mean(values)),
                      float(np.std(values)), len(values), retrained, stopped)


def mean_of_all(values: Any, runs: int) -> float | None:
    """The mean of a stored list of ``runs`` numbers (one a retrain), None where it is not that (stored before it
    was recorded)."""
    if not isinstance(values, list) or len(values) != runs or not all(isinstance(v, (int, float)) for v in values):
        return None
    return float(np.mean(values)) if runs else None


def improvement_within_noise(current: optuna.Study, parent: optuna.Study, k: int = 5) -> str | None:
    """Why another stage is not worth it, when the mean of the top ``k`` values rose by less than 2 standard
    errors of that difference; else None."""
    now, before = _top_mean(current, k), _top_mean(parent, k)
    se = value_se(now, split_size(current, "val")) if now is not None else None
    if now is None or before is None or se is None:
        return None
    limit = 2 * se * math.sqrt(2 / k)  # the standard error of a difference of two means of k values
    if now - before < limit:
        return (f"{current.study_name} moved the mean of the top {k} by {now - before:+.4f}, within 2 standard "
                f"errors ({limit:.4f})")
    return None


def below_majority_text(summary: StageSummary, dataset: Dataset) -> str | None:
    """The warning that a stage's best value is within 2 standard errors (on validation) of always predicting the
    most frequent class (``majority_baseline``), with what to try, or None (no best, no dominant class, or better)."""
    baseline = majority_baseline(dataset, "val")
    if baseline is None or summary.best_value is None:
        return None
    name, share = baseline
    se = value_se(share, len(dataset.y_val) or len(dataset.y_train))
    if se is None or summary.best_value >= share + 2 * se:
        return None
    return (f"{summary.study}'s best value {summary.best_value:.4f} is within noise of always predicting the most "
            f"frequent class, {name!r}, which scores {share:.4f} on validation (2 standard errors {2 * se:.4f}): no "
            "trial has learned more than the class frequencies, and the next stages search near them; try a smaller "
            "--batch-size or more --epochs, and check the data (search data)")


def _top_mean(study: optuna.Study, k: int) -> float | None:
    values = sorted((t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
                    reverse=True)[:k]
    return float(np.mean(values)) if values else None


def run_auto(execution: Execution, coarse: Stage, max_fine: int, top: int, edge: float,
             fine_epochs: int | None, dataset: Dataset | None = None, repeats: int = 3,
             retrains: int = 3, promote: int = 8, fine_sampler: str | None = FINE_SAMPLER,
             fine_scheduler: str | None = None) -> tuple[list[StageSummary], FinalScore]:
    """Coarse, then fine stages while they pay, then the top configurations re-evaluated and the best retrained.

    Each fine stage is refined on the previous stage's ``promote`` best configurations re-run at its
    own epochs (stage ``promote-k``): short runs rank slow learning rates too high.

    Fine stages stop after ``max_fine``, when the space settles, or when a stage moves the mean of its
    top 5 values by less than 2 standard errors of that difference. Fine stages use ``fine_sampler`` (TPE by
    default: better than random inside the refined box, benchmarks/search_quality.py) and ``fine_scheduler``;
    None: the coarse stage's. The last stage's top ``top``
    configurations then run ``repeats`` times each (stage ``final``); the best mean is retrained
    ``retrains`` times and scored on test (mean and std).

    Every step is decided from the stages in the database, never from what this process did
    before: several ``search auto`` processes on one storage (one machine or many) join the
    same unfinished stage, take the same decision when it is done, and create each next stage
    exactly once (``create_stage``); a process that arrives late skips the finished stages.
    """
    _check_auto_arguments(max_fine=max_fine, top=top, edge=edge, fine_epochs=fine_epochs, repeats=repeats,
                          retrains=retrains, promote=promote)
    if dataset is None:  # from Python: `search auto`'s data warnings, shown the same way before the coarse trials
        from engine.data import load_dataset

        raw = load_dataset(coarse.run.data)
        dataset = coarse.run.load(raw)
        execution = replace(execution, warnings=data_warnings(coarse.run, raw, coarse.space) + execution.warnings)
    summaries = [execute_stage(execution, coarse, dataset)]
    execution = replace(execution, warnings=())  # said before the coarse stage: about the data all stages share
    # between the stages, the database's work is retried while it fails, as a stage's trials' is (``retry_storage``)
    looking = "looking for the next stage"
    storage = retry_storage(execution.storage, looking)
    after_coarse = retry_storage(lambda: latest_chain_stage(storage, coarse.campaign) == "coarse", looking)
    if (not summaries[0].created and not summaries[0].ran and execution.progress != "quiet"
            and after_coarse):  # a rerun after the coarse stage: say so
        print(f"{coarse.name} is complete ({coarse.n_trials} trials); continuing with the fine stages",
              file=sys.stderr, flush=True)
    below = below_majority_text(summaries[0], dataset)
    if below is not None and after_coarse:  # before going on, once
        print(wrapped(f"warning: {below}"), file=sys.stderr, flush=True)
    while True:
        raise_pending()
        study, unfinished, stopped = retry_storage(lambda: _next_step(storage, coarse.campaign, max_fine), looking)
        if unfinished:
            summaries.append(run_existing(execution, study, dataset=dataset))  # another process created it: join it
            continue
        if stopped is not None:
            break
        stage, promoted = promoted_fine_stage(execution, study, top, edge, fine_epochs, None, promote, dataset,
                                              between_stages=True)
        summaries += promoted
        summaries.append(execute_stage(execution, with_fine_choices(stage, fine_sampler, fine_scheduler), dataset,
                                       between_stages=True))
    summaries.append(execute_stage(execution, retry_storage(lambda: final_stage(study, top, repeats),
                                                            "choosing the final stage's configurations"), dataset,
                                   between_stages=True))
    chain = retry_storage(lambda: chain_summaries(storage, coarse.campaign, summaries), "reading the campaign's stages")
    return chain, retrain_final(storage, coarse.campaign, coarse.seed, retrains, stopped)


def _next_step(storage: optuna.storages.RDBStorage, campaign: str, max_fine: int,
               ) -> tuple[optuna.Study, bool, str | None]:
    """(the campaign's last chain stage, whether it is unfinished, why no further fine stage is added: None to add
    one), as ``run_auto`` decides it from the stages in the database."""
    last = latest_chain_stage(storage, campaign)
    study = load_stage_study(storage, study_name(campaign, last))
    if stage_unfinished(storage, optuna_rdb.study_id(study)):
        return study, True, None
    k = fine_index(last)
    if k >= max_fine:
        return study, False, f"--max-fine {max_fine}: {max_fine} fine stage{'' if max_fine == 1 else 's'} ran"
    if k > 0:
        current = Stage.from_attrs(study.user_attrs)
        parent_study = load_stage_study(storage, current.parent)
        parent = Stage.from_attrs(parent_study.user_attrs)
        if not space_moved(parent.space, current.space, tolerance=0.25):
            return study, False, "the space settled: another stage would search almost the same box"
        within = improvement_within_noise(study, parent_study)
        if within:
            return study, False, within
    final_parent = next((s.user_attrs.get("parent") for s in campaign_stages(storage, campaign)
                         if s.user_attrs.get("stage") == "final"), None)
    if final_parent == study.study_name:  # concluded before, e.g. with a smaller --max-fine: not extended
        return study, False, f"the campaign's final stage chose from {study.study_name} before"
    return study, False, None


def _check_auto_arguments(max_fine: int, top: int, edge: float, fine_epochs: int | None, repeats: int,
                          retrains: int, promote: int) -> None:
    """SearchError naming the first bad argument of ``run_auto``, before any stage runs (the CLI's options check
    the same from the command line)."""
    def whole(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    for name, value, low in (("max_fine", max_fine, 0), ("top", top, 1), ("repeats", repeats, 1),
                             ("retrains", retrains, 1), ("promote", promote, 0)):
        if not whole(value) or value < low:
            raise SearchError(f"run_auto: {name} must be >= {low}, got {value!r}")
    if fine_epochs is not None and (not whole(fine_epochs) or fine_epochs < 1):
        raise SearchError(f"run_auto: fine_epochs must be >= 1 (or None: doubling), got {fine_epochs!r}")
    if not (isinstance(edge, (int, float)) and math.isfinite(edge) and 0 < edge <= 0.5):
        raise SearchError(f"run_auto: edge must be in (0, 0.5], got {edge!r}")


def chain_summaries(storage: optuna.storages.RDBStorage, campaign: str, ran: list[StageSummary]) -> list[StageSummary]:
    """A summary of every stage of the campaign's chain (coarse, promote-k, fine-k, final) in creation order:
    those in ``ran`` (run or joined by this process) as they are, the others (complete before) read back."""
    by_name = {s.study: s for s in ran}
    names = [s.study_name for s in campaign_stages(storage, campaign) if _in_chain(str(s.user_attrs.get("stage")))]
    return [by_name.get(name) or summarise(load_stage_study(storage, name), created=False, errors=[])
            for name in names]


def _in_chain(stage: str) -> bool:
    """Whether a stage is one of ``search auto``'s chain: coarse, promote-k, fine-k, final (not a grid beside it)."""
    return fine_index(stage) >= 0 or stage.startswith("promote-") or stage == "final"
