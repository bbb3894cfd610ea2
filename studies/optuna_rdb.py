"""The ONE module that touches Optuna's private internals: RDB models and sessions, ids, trial rows in one transaction.

Everything else in the project uses Optuna's public API or this module (pyproject pins Optuna's
major version). Rows written here are the rows ``RDBStorage`` writes itself, so the database stays an
ordinary Optuna database that ``optuna trials``, ``optuna.load_study`` and optuna-dashboard read.
"""
from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session, _VersionManager
from optuna.trial import FrozenTrial, TrialState

ENQUEUE_CHUNK = 5000  # rows per multi-row INSERT when a stage's trials are enqueued
ID_CHUNK = 500  # trial ids per IN (...) when trials are read by id


def backend(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage:
    """The RDB storage behind ``storage`` (a Study wraps it in a caching layer); TypeError for other storages."""
    rdb = getattr(storage, "_backend", storage)
    if not isinstance(rdb, optuna.storages.RDBStorage):
        raise TypeError(f"an RDB storage is needed, got {type(rdb).__name__}")
    return rdb


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The study's own (caching) storage."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's row id."""
    return study._study_id


def forget_cached_trials(study: optuna.Study) -> None:
    """Drop the study's cached trial list, as ``study.ask`` does: TPE reads its history from that cache, so a
    study object reused for trial after trial without ``ask`` would sample every trial from the first's history."""
    study._thread_local.cached_all_trials = None


FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class NewlyFinished:
    """Where a look for a study's newly finished trials stands: every trial below the id ``floor`` was finished, and
    seen, at the last look; ``seen`` holds the ids seen from the floor up."""

    floor: int = 0
    seen: frozenset[int] = frozenset()

    def since(self, storage: optuna.storages.BaseStorage, study_id: int) -> tuple[list[int], NewlyFinished]:
        """The ids of the study's trials finished (``FINISHED_STATES``) since this look, in order, and the next look
        (to keep once what they were read for succeeded: a look lost with the database is taken again)."""
        ids, floor = finished_trial_ids(storage, study_id, self.floor, FINISHED_STATES)
        return self._after(ids, floor)

    def _after(self, ids: list[int], floor: int) -> tuple[list[int], NewlyFinished]:
        """``since`` for the finished ``ids`` and ``floor`` read from this look's floor up."""
        new = [i for i in ids if i not in self.seen]
        # below the floor nothing is read again
        return new, NewlyFinished(floor, frozenset(i for i in self.seen.union(new) if i >= floor))


@dataclass
class FinishedTrials:
    """One process's copy of a study's finished trials (``FINISHED_STATES``), by trial number, and where its look for
    newly finished ones stands."""

    trials: list[FrozenTrial] = field(default_factory=list)
    look: NewlyFinished = NewlyFinished()


def cache_finished_trials(study: optuna.Study, finished: FinishedTrials) -> None:
    """Give the study's sampler its finished trials as the trial list it reads (``study.ask`` would read every trial
    instead, through Optuna's cache, which reads each WAITING and RUNNING trial again every time: about 12 ms a trial
    for a fine stage's budget of 50), reading only the trials finished since the last call. TPE reads only finished
    trials of that list, in trial order, so it draws what it would from the whole list; QMC reads the RUNNING trials
    too until a trial is COMPLETE or PRUNED (the first trial's space), so until then Optuna reads the whole list."""
    storage = study_storage(study)
    new, look = finished.look.since(storage, study_id(study))
    if new:
        finished.trials = sorted(finished.trials + trials_by_id(storage, new), key=lambda t: t.number)
    finished.look = look  # once they are read: a read lost with the database is taken again
    suggested = any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in finished.trials)
    study._thread_local.cached_all_trials = finished.trials if suggested else None  # None: Optuna reads them all


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The trial's row id."""
    return trial._trial_id


def optuna_tables() -> set[str]:
    """Names of the tables of Optuna's RDB storage (and alembic's version table)."""
    return set(models.BaseModel.metadata.tables) | {"alembic_version"}


@contextmanager
def session(storage: optuna.storages.BaseStorage) -> Iterator[Any]:
    """An ORM session of the RDB storage, committed on success and rolled back on any exception."""
    with _create_scoped_session(backend(storage).scoped_session) as s:
        yield s


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # Optuna stores naive UTC


def skip_alembic_at_head() -> None:
    """Open a database without importing alembic (0.15-0.2 s of every process): the checks Optuna makes with it
    read one row of ``alembic_version`` and the newest of Optuna's ~10 revision files, and a new database is
    stamped with that revision. A database older than that still goes through alembic, whose revision files
    are then read once per process instead of once per opened storage."""
    if getattr(_VersionManager._create_alembic_script, "_cached", False):
        return
    original_init = _VersionManager._init_alembic
    original_current = _VersionManager.get_current_version

    def cached(self: _VersionManager) -> Any:
        return _alembic_scripts()

    def init_alembic(self: _VersionManager) -> None:
        stamped = _stamped_revision(self.engine)
        if stamped == schema_revisions()[0]:
            return
        if stamped is None and self._is_alembic_supported():  # tables just created by this Optuna
            _stamp_head(self.engine)
            return
        original_init(self)  # a database older than alembic; an older revision is refused by the compatibility check

    def current_version(self: _VersionManager) -> str:
        return _stamped_revision(self.engine) or original_current(self)

    def head_version(self: _VersionManager) -> str:
        return schema_revisions()[0]

    cached._cached = True  # type: ignore[attr-defined]
    _VersionManager._create_alembic_script = cached  # type: ignore[method-assign]
    _VersionManager._init_alembic = init_alembic  # type: ignore[method-assign]
    _VersionManager.get_current_version = current_version  # type: ignore[method-assign]
    _VersionManager.get_head_version = head_version  # type: ignore[method-assign]


def _stamped_revision(engine: sqlalchemy.engine.Engine) -> str | None:
    """The alembic revision a database is stamped with; None for a new database (a failing read raises)."""
    with engine.connect() as conn:
        if not sqlalchemy.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()


def _stamp_head(engine: sqlalchemy.engine.Engine) -> None:
    """Stamp a new database with the head revision as ``alembic stamp`` does: its one-row version table."""
    table = sqlalchemy.Table(
        "alembic_version", sqlalchemy.MetaData(),
        sqlalchemy.Column("version_num", sqlalchemy.String(32), nullable=False),
        sqlalchemy.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    with engine.begin() as conn:
        table.create(conn, checkfirst=True)
        conn.execute(table.insert().values(version_num=schema_revisions()[0]))


@functools.cache
def schema_revisions() -> tuple[str, tuple[str, ...]]:
    """(head, all) revisions of this Optuna's storage schema, read from its alembic revision files (the two
    lines alembic reads of each, without importing it)."""
    folder = Path(models.__file__).parent / "alembic" / "versions"
    revisions: dict[str, str | None] = {}
    unread = []
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        # revision = "x" or, as alembic's template writes it, revision: str = 'x'
        revision = re.search(r"""^revision\s*(?::[^=\n]*)?=\s*['"]([^'"]+)['"]""", text, re.MULTILINE)
        down = re.search(r"""^down_revision\s*(?::[^=\n]*)?=\s*(?:['"]([^'"]+)['"]|None)\s*$""", text, re.MULTILINE)
        if revision and down:
            revisions[revision[1]] = down[1]
        elif path.name != "__init__.py":
            unread.append(path.name)
    heads = set(revisions) - set(revisions.values())
    chained = set(revisions.values()) <= set(revisions) | {None}
    if unread or not chained or len(heads) != 1:  # a file or layout this does not read: ask alembic
        script = _alembic_scripts()
        return script.get_current_head(), tuple(r.revision for r in script.walk_revisions())
    return heads.pop(), tuple(revisions)


_ORIGINAL_ALEMBIC_SCRIPT = _VersionManager._create_alembic_script


@functools.cache
def _alembic_scripts() -> Any:
    """Optuna's alembic ScriptDirectory, read once per process."""
    scratch = _VersionManager.__new__(_VersionManager)
    scratch.url = "sqlite://"  # the script folder is Optuna's own, whatever the URL
    return _ORIGINAL_ALEMBIC_SCRIPT(scratch)


class LockedStudy:
    """A study's row locked for one transaction (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE lock)."""

    def __init__(self, storage: optuna.storages.RDBStorage, session: Any, study_id: int) -> None:
        self.storage, self.session, self.study_id = storage, session, study_id
        self.model = models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        self.name: str = self.model.study_name

    def user_attr_keys(self) -> set[str]:
        """Keys of the study's user attributes."""
        table = models.StudyUserAttributeModel
        return {key for (key,) in self.session.query(table.key).filter(table.study_id == self.study_id)}

    def maximised(self) -> bool:
        """Whether the study has exactly one direction, maximise."""
        directions = models.StudyDirectionModel.where_study_id(self.study_id, self.session)
        return [d.direction for d in directions] == [optuna.study.StudyDirection.MAXIMIZE]

    def has_trials(self) -> bool:
        return self.session.query(models.TrialModel.trial_id).filter(
            models.TrialModel.study_id == self.study_id).first() is not None

    def set_user_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Insert or replace the study's user attributes."""
        for key, value in attrs.items():
            attr = models.StudyUserAttributeModel.find_by_study_and_key(self.model, key, self.session)
            if attr is None:
                self.session.add(models.StudyUserAttributeModel(study_id=self.study_id, key=key,
                                                                value_json=json.dumps(value)))
            else:
                attr.value_json = json.dumps(value)
        self.session.flush()

    def add_waiting_trials(self, fixed_params: Sequence[Mapping[str, Any]]) -> None:
        """Insert one WAITING trial per entry (its ``fixed_params`` system attribute when not empty), in bulk.

        Trials without fixed params are one INSERT ... SELECT over a recursive counter, run inside
        the database (100,000 in a fraction of a second); others multi-row INSERTs with RETURNING.
        """
        trials = models.TrialModel.__table__
        attrs = models.TrialSystemAttributeModel.__table__
        start = self.session.query(sqlalchemy.func.count(models.TrialModel.trial_id)).filter(
            models.TrialModel.study_id == self.study_id).scalar()
        conn = self.session.connection()
        waiting = sqlalchemy.cast(sqlalchemy.literal(TrialState.WAITING.name), trials.c.state.type)
        if not any(fixed_params):
            if fixed_params:
                counter = sqlalchemy.select(sqlalchemy.literal(0).label("i")).cte("counter", recursive=True)
                counter = counter.union_all(sqlalchemy.select(counter.c.i + 1).where(counter.c.i < len(fixed_params) - 1))
                rows = sqlalchemy.select(counter.c.i + start, sqlalchemy.literal(self.study_id), waiting)
                conn.execute(trials.insert().from_select(["number", "study_id", "state"], rows))
            return
        for begin in range(0, len(fixed_params), ENQUEUE_CHUNK):
            chunk = fixed_params[begin:begin + ENQUEUE_CHUNK]
            rows = [{"number": start + begin + i, "study_id": self.study_id, "state": TrialState.WAITING}
                    for i in range(len(chunk))]
            ids = conn.execute(trials.insert().returning(trials.c.trial_id, sort_by_parameter_order=True),
                               rows).scalars().all()
            conn.execute(attrs.insert(), [{"trial_id": i, "key": "fixed_params", "value_json": json.dumps(dict(p))}
                                          for i, p in zip(ids, chunk) if p])

    def system_attr_values(self, key: str) -> list[Any]:
        """The values of trial system attribute ``key`` over the study's trials."""
        rows = (self.session.query(models.TrialSystemAttributeModel.value_json)
                .join(models.TrialModel, models.TrialModel.trial_id == models.TrialSystemAttributeModel.trial_id)
                .filter(models.TrialModel.study_id == self.study_id, models.TrialSystemAttributeModel.key == key))
        return [json.loads(value) for (value,) in rows]

    def state_counts(self) -> dict[str, int]:
        """The study's trials by state name (every state, 0 when none), read in this transaction."""
        return _state_counts_and_best(self.session, self.study_id)[0]

    def trials(self, state: TrialState) -> list[FrozenTrial]:
        """The study's trials in ``state``, read in this transaction (on SQLite another connection would wait for
        this one's write lock)."""
        query = (_whole_trials(self.session)
                 .filter(models.TrialModel.study_id == self.study_id, models.TrialModel.state == state)
                 .order_by(models.TrialModel.trial_id))
        return [self.storage._build_frozen_trial_from_trial_model(t) for t in query]

    def add_trial(self, template: FrozenTrial) -> None:
        """Insert a trial made from ``template`` (as ``RDBStorage.create_new_trial``, in this transaction)."""
        self.storage._get_prepared_new_trial(self.study_id, template, self.session)


def _whole_trials(s: Any) -> Any:
    """A query of trial rows with everything a FrozenTrial holds, each kind in one more SELECT (as
    ``RDBStorage.get_all_trials`` reads them)."""
    return s.query(models.TrialModel).options(
        *(sqlalchemy.orm.selectinload(getattr(models.TrialModel, name)) for name in
          ("params", "values", "user_attributes", "system_attributes", "intermediate_values")))


def trials_by_id(storage: optuna.storages.BaseStorage, trial_ids: Sequence[int]) -> list[FrozenTrial]:
    """The trials of ``trial_ids``, in that order, as ``get_all_trials`` builds them (read ``ID_CHUNK`` at a time)."""
    rdb = backend(storage)
    found: dict[int, FrozenTrial] = {}
    with session(rdb) as s:
        for begin in range(0, len(trial_ids), ID_CHUNK):
            chunk = list(trial_ids[begin:begin + ID_CHUNK])
            for t in _whole_trials(s).filter(models.TrialModel.trial_id.in_(chunk)):
                found[t.trial_id] = rdb._build_frozen_trial_from_trial_model(t)
    return [found[i] for i in trial_ids]


def trial_user_attr_values(storage: optuna.storages.BaseStorage, study_id: int | None, key: str,
                           states: Sequence[TrialState] | None = None) -> list[Any]:
    """The values of trial user attribute ``key`` over the study's trials that have it (with ``study_id`` None, over
    every study's in the database; those in ``states`` only, when given), without reading the trials. The trials are
    picked first, each one's attribute then found by its (trial_id, key) index: SQLite joined the other way round,
    scanning every trial's attributes, 85 ms where this takes 19 ms on 100,000 trials of 10 studies
    (PostgreSQL: 20 and 18 ms)."""
    trials, attrs = models.TrialModel.__table__, models.TrialUserAttributeModel.__table__
    picked = sqlalchemy.select(trials.c.trial_id)
    if study_id is not None:
        picked = picked.where(trials.c.study_id == study_id)
    if states is not None:
        picked = picked.where(trials.c.state.in_(states))
    query = sqlalchemy.select(attrs.c.value_json).where(attrs.c.key == key, attrs.c.trial_id.in_(picked))
    with session(storage) as s:
        return [json.loads(value) for (value,) in s.execute(query)]


def trial_system_attr_values(storage: optuna.storages.BaseStorage, study_id: int, key: str) -> list[tuple[int, Any]]:
    """(number, value) of trial system attribute ``key`` over the study's trials that have it, by number, without
    reading the trials."""
    trials, attrs = models.TrialModel.__table__, models.TrialSystemAttributeModel.__table__
    query = (sqlalchemy.select(trials.c.number, attrs.c.value_json)
             .select_from(attrs.join(trials, trials.c.trial_id == attrs.c.trial_id))
             .where(trials.c.study_id == study_id, attrs.c.key == key).order_by(trials.c.number))
    with session(storage) as s:
        return [(number, json.loads(value)) for number, value in s.execute(query)]


def finished_trial_ids(storage: optuna.storages.BaseStorage, study_id: int, from_id: int,
                       finished: Sequence[TrialState]) -> tuple[list[int], int]:
    """(the ids of the study's trials in ``finished`` states from ``from_id`` up, in order; the id below which every
    trial of the study is finished, to give as ``from_id`` next time): what finished since the last look, read by id
    alone however many trials a stage holds (a trial once finished never changes state; a retry is a new trial).

    The floor cannot pass a trial added later whose transaction commits late (PostgreSQL hands out ids in the order
    of the inserts, not of the commits): after its stage is created a study gains trials only as retry copies, each
    added under the study's row lock (``studies.budget``), so the next id of a study is taken only once the last one
    is committed."""
    with session(storage) as s:
        return _finished_trial_ids(s, study_id, from_id, finished)


def _finished_trial_ids(s: Any, study_id: int, from_id: int, finished: Sequence[TrialState]) -> tuple[list[int], int]:
    """``finished_trial_ids`` in session ``s``."""
    trials = models.TrialModel.__table__
    unfinished = [state for state in TrialState if state not in finished]
    # the floor first: every trial below it was finished when it was read, so in what the next statement reads
    floor = s.execute(sqlalchemy.select(sqlalchemy.func.min(trials.c.trial_id)).where(
        trials.c.study_id == study_id, trials.c.state.in_(unfinished))).scalar()
    ids = [trial_id for (trial_id,) in s.execute(
        sqlalchemy.select(trials.c.trial_id).where(trials.c.study_id == study_id, trials.c.state.in_(finished),
                                                   trials.c.trial_id >= from_id).order_by(trials.c.trial_id))]
    if floor is None:  # nothing unfinished: what comes later (a retry) is a new trial, above every id read
        floor = max([from_id - 1, *ids]) + 1
    return ids, max(floor, from_id)


@dataclass(frozen=True)
class ParamSummary:
    """What a selection of trials holds of one parameter: how many trials have it, and one value of each kind
    (a range's: a float or an int; a categorical's: each choice taken), without reading the trials."""

    name: str
    trials: int
    samples: tuple[Any, ...]
    categorical: bool


def _selection(study_ids: Sequence[int], states: Sequence[TrialState] | None) -> list[Any]:
    """WHERE clauses of the trials of ``study_ids`` (in ``states``, when given)."""
    trials = models.TrialModel.__table__
    where = [trials.c.study_id.in_(list(study_ids))]
    if states is not None:
        where.append(trials.c.state.in_(list(states)))
    return where


def selection_summary(storage: optuna.storages.BaseStorage, study_ids: Sequence[int],
                      states: Sequence[TrialState] | None) -> tuple[int, list[ParamSummary], bool]:
    """(how many trials of ``study_ids`` are in ``states``, their parameters in the order a listing of those trials
    meets them (the studies in the order given, each by trial id, a trial's own in the order stored, as
    ``get_all_trials`` gives them), whether any of their values is not finite), in aggregate statements: nothing
    per trial is read."""
    trials, params, values = (models.TrialModel.__table__, models.TrialParamModel.__table__,
                              models.TrialValueModel.__table__)
    where = _selection(study_ids, states)
    categorical = params.c.distribution_json.like('%"CategoricalDistribution"%')
    taken = sqlalchemy.case((categorical, params.c.param_value), else_=None)
    grouped = (sqlalchemy.select(params.c.param_name, params.c.distribution_json, taken, sqlalchemy.func.count())
               .select_from(params.join(trials, trials.c.trial_id == params.c.trial_id))
               .where(*where).group_by(params.c.param_name, params.c.distribution_json, taken))
    # each name's first trial in each study: the order of the names is read from those trials alone
    first_trials = (sqlalchemy.select(params.c.param_name, trials.c.study_id, sqlalchemy.func.min(trials.c.trial_id))
                    .select_from(params.join(trials, trials.c.trial_id == params.c.trial_id))
                    .where(*where).group_by(params.c.param_name, trials.c.study_id))
    with session(storage) as s:
        total = s.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(trials).where(*where)).scalar()
        rows = s.execute(grouped).all()
        firsts = s.execute(first_trials).all()
        first_ids = sorted({trial_id for _, _, trial_id in firsts})
        stored_at: dict[tuple[str, int], int] = {}  # (name, trial id) -> param id, of those first trials
        for begin in range(0, len(first_ids), ID_CHUNK):
            chunk = first_ids[begin:begin + ID_CHUNK]
            for name, trial_id, param_id in s.execute(
                    sqlalchemy.select(params.c.param_name, params.c.trial_id, params.c.param_id)
                    .where(params.c.trial_id.in_(chunk))):
                stored_at[(name, trial_id)] = param_id
        finite = models.TrialValueModel.TrialValueType.FINITE
        not_finite = s.execute(
            sqlalchemy.select(values.c.trial_id)
            .select_from(values.join(trials, trials.c.trial_id == values.c.trial_id))
            .where(*where, values.c.value_type != finite).limit(1)
        ).first() is not None
    rank = {study: i for i, study in enumerate(study_ids)}
    first: dict[str, tuple[int, int, int]] = {}
    for name, study, trial_id in firsts:
        met = (rank[study], trial_id, stored_at[(name, trial_id)])
        first[name] = min(first.get(name, met), met)
    counts: dict[str, int] = {}
    samples: dict[str, dict[tuple[type, Any], Any]] = {}
    kinds: dict[str, set[bool]] = {}
    for name, distribution_json, index, n in rows:
        distribution = json_to_distribution(distribution_json)
        if index is not None:  # a categorical: the choice taken
            value = distribution.to_external_repr(index)
        else:  # a range: its kind of number
            value = 0 if isinstance(distribution, optuna.distributions.IntDistribution) else 0.0
        counts[name] = counts.get(name, 0) + n
        samples.setdefault(name, {})[(type(value), value)] = value
        kinds.setdefault(name, set()).add(index is not None)
    summaries = [ParamSummary(name, counts[name], tuple(samples[name].values()), True in kinds[name])
                 for name in sorted(first, key=first.__getitem__)]
    return total, summaries, not_finite


def ordered_trial_ids(storage: optuna.storages.BaseStorage, study_ids: Sequence[int],
                      states: Sequence[TrialState] | None, key: str | None, descending: bool,
                      limit: int) -> list[tuple[int, int]]:
    """(trial id, study id) of the first ``limit`` trials of ``study_ids`` (in ``states``, when given) in the order
    ``key`` gives, by one ORDER BY ... LIMIT: ``None`` (the studies in the order given, each by trial number),
    ``number``, ``value``, ``state`` (its name) or ``param:NAME`` (a range's value), ascending or ``descending``; a
    trial without the key after every trial with it, and among equal keys (but for ``state``) a COMPLETE trial first,
    then the order of ``None``."""
    trials, params, values = (models.TrialModel.__table__, models.TrialParamModel.__table__,
                              models.TrialValueModel.__table__)
    rank = sqlalchemy.case({study: i for i, study in enumerate(study_ids)}, value=trials.c.study_id)
    source: Any = trials
    order: list[Any] = []
    if key is not None:
        if key == "number":
            column = trials.c.number
        elif key == "state":
            column = sqlalchemy.cast(trials.c.state, sqlalchemy.String)
        elif key == "value":
            source = source.outerjoin(values, (values.c.trial_id == trials.c.trial_id) & (values.c.objective == 0))
            column = values.c.value
        elif key.startswith("param:"):
            source = source.outerjoin(params, (params.c.trial_id == trials.c.trial_id)
                                      & (params.c.param_name == key.removeprefix("param:")))
            column = params.c.param_value
        else:
            raise ValueError(f"no order by {key!r}")
        order += [column.is_(None), column.desc() if descending else column.asc()]
        if key != "state":
            order.append(trials.c.state != TrialState.COMPLETE)
    order += [rank, trials.c.trial_id]
    query = (sqlalchemy.select(trials.c.trial_id, trials.c.study_id).select_from(source)
             .where(*_selection(study_ids, states)).order_by(*order).limit(limit))
    with session(storage) as s:
        return [(trial_id, study) for trial_id, study in s.execute(query)]


@contextmanager
def locked_study(storage: optuna.storages.BaseStorage, study_id: int) -> Iterator[LockedStudy]:
    """One transaction holding the study's row lock: processes doing this run one at a time."""
    rdb = backend(storage)
    with session(rdb) as s:
        yield LockedStudy(rdb, s, study_id)


def state_counts(storage: optuna.storages.BaseStorage, study_id: int) -> dict[str, int]:
    """The study's trials by state name (every state, 0 when none), counted by the database."""
    return state_counts_and_best(storage, study_id)[0]


def state_counts_and_best(storage: optuna.storages.BaseStorage, study_id: int) -> tuple[dict[str, int], float | None]:
    """The study's trials by state name (every state, 0 when none) and the highest value of a COMPLETE trial (None
    before one), in one statement."""
    with session(storage) as s:
        return _state_counts_and_best(s, study_id)


def state_counts_and_first_look(storage: optuna.storages.BaseStorage,
                                study_id: int) -> tuple[tuple[dict[str, int], float | None], NewlyFinished]:
    """``state_counts_and_best`` and a first ``NewlyFinished`` look (every trial finished by then seen) taken at one
    moment: a trial that ends meanwhile is in both or in neither, so one counted by the first is never reported new
    by the look, nor one missed by both. One transaction: SQLite's BEGIN IMMEDIATE holds every writer off until it
    ends; on PostgreSQL it is REPEATABLE READ, where both statements read one snapshot."""
    with session(storage) as s:
        if s.get_bind().dialect.name == "postgresql":
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})  # before its first statement
        counts = _state_counts_and_best(s, study_id)
        ids, floor = _finished_trial_ids(s, study_id, 0, FINISHED_STATES)
    return counts, NewlyFinished()._after(ids, floor)[1]


def count_values_at_least(storage: optuna.storages.BaseStorage, study_ids: Sequence[int], lowest: float) -> int:
    """How many COMPLETE trials of ``study_ids`` have a finite value of at least ``lowest``, counted by the
    database (no trial is read)."""
    trials, values = models.TrialModel.__table__, models.TrialValueModel.__table__
    query = (sqlalchemy.select(sqlalchemy.func.count())
             .select_from(trials.join(values, values.c.trial_id == trials.c.trial_id))
             .where(*_selection(study_ids, [TrialState.COMPLETE]), values.c.objective == 0,
                    values.c.value_type == models.TrialValueModel.TrialValueType.FINITE, values.c.value >= lowest))
    with session(storage) as s:
        return s.execute(query).scalar()


def _state_counts_and_best(s: Any, study_id: int) -> tuple[dict[str, int], float | None]:
    """``state_counts_and_best`` in session ``s``."""
    trials, values = models.TrialModel.__table__, models.TrialValueModel.__table__
    counts = {state.name: 0 for state in TrialState}
    best = None
    query = (sqlalchemy.select(trials.c.state, sqlalchemy.func.count(sqlalchemy.distinct(trials.c.trial_id)),
                               sqlalchemy.func.max(values.c.value))
             .select_from(trials.outerjoin(values, values.c.trial_id == trials.c.trial_id))
             .where(trials.c.study_id == study_id).group_by(trials.c.state))
    for state, n, top in s.execute(query):
        counts[state.name] += n
        if state == TrialState.COMPLETE:
            best = top
    return counts, best


def claim_waiting_trial(storage: optuna.storages.BaseStorage, study_id: int, after_id: int,
                        user_attrs: Mapping[str, Any]) -> FrozenTrial | None:
    """WAITING -> RUNNING for the study's first WAITING trial above ``after_id``, its heartbeat and
    ``user_attrs``, in one transaction; returns the RUNNING trial as that transaction read it (what
    ``storage.get_trial`` would return), or None when none is waiting.

    One UPDATE ... WHERE state = 'WAITING' claims it: on PostgreSQL the candidate row is picked with
    FOR UPDATE SKIP LOCKED, on SQLite the transaction holds the write lock (BEGIN IMMEDIATE). A
    trial never goes back to WAITING and new trials get higher ids, so ``after_id`` (the last id this
    worker claimed) keeps the scan short on huge stages. Only almost: on PostgreSQL a row skipped because
    another claim held it is WAITING again, below ``after_id``, when that claim is rolled back (its worker
    killed or its connection cut mid-statement), so a scan above ``after_id`` that finds nothing looks again
    from the first trial before saying none is waiting.
    """
    claimed = _claim_waiting_trial(storage, study_id, after_id, user_attrs)
    if claimed is None and after_id >= 0:
        claimed = _claim_waiting_trial(storage, study_id, -1, user_attrs)
    return claimed


def _claim_waiting_trial(storage: optuna.storages.BaseStorage, study_id: int, after_id: int,
                         user_attrs: Mapping[str, Any]) -> FrozenTrial | None:
    """``claim_waiting_trial`` above ``after_id`` only."""
    rdb = backend(storage)
    started = _utcnow()
    if rdb.engine.dialect.name == "postgresql":
        return _claim_postgresql(rdb, study_id, after_id, started, user_attrs)
    with rdb.engine.begin() as conn:  # Core, not an ORM session: the trial's hot path (BEGIN IMMEDIATE on SQLite)
        row = conn.execute(_claim_statement(), {"sid": study_id, "after_id": after_id, "started": started}).first()
        if row is None:
            return None
        trial_id, number = row
        if rdb.heartbeat_interval is not None:
            # in the claim's transaction: a RUNNING trial without a heartbeat would never be found stale
            conn.execute(_heartbeat_statement(), {"tid": trial_id})
        _upsert_attrs(rdb, conn, models.TrialUserAttributeModel, trial_id, user_attrs)
        rows = conn.execute(_trial_rows_query(), {"trial_id": trial_id}).all()
    return _running_trial(trial_id, number, started, rows, {})


@functools.cache
def _claim_statement() -> Any:
    """UPDATE the first WAITING trial of study :sid above :after_id to RUNNING since :started, RETURNING its id and number."""
    trials = models.TrialModel.__table__
    candidate = (sqlalchemy.select(trials.c.trial_id)
                 .where(trials.c.study_id == sqlalchemy.bindparam("sid"), trials.c.state == TrialState.WAITING,
                        trials.c.trial_id > sqlalchemy.bindparam("after_id"))
                 .order_by(trials.c.trial_id).limit(1))
    return (trials.update()
            .where(trials.c.trial_id == candidate.scalar_subquery(), trials.c.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=sqlalchemy.bindparam("started"))
            .returning(trials.c.trial_id, trials.c.number))


@functools.cache
def _heartbeat_statement() -> Any:
    """INSERT the first heartbeat of trial :tid, now."""
    return models.TrialHeartbeatModel.__table__.insert().values(
        trial_id=sqlalchemy.bindparam("tid"), heartbeat=sqlalchemy.func.current_timestamp())


def _running_trial(trial_id: int, number: int, started: datetime, rows: Sequence[Sequence[Any]],
                   user_attrs: Mapping[str, Any]) -> FrozenTrial:
    """The claimed trial from its (kind, key, value, json, order) rows (see ``_trial_rows_query``), the
    ``user_attrs`` its claim wrote besides them and its start ``started`` (naive UTC, as stored)."""
    params, distributions, attrs = _trial_rows(rows)
    started = started.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)  # as Optuna reads it: local
    return FrozenTrial(number=number, state=TrialState.RUNNING, value=None, values=None, datetime_start=started,
                       datetime_complete=None, params=params, distributions=distributions,
                       user_attrs={**attrs["u"], **user_attrs}, system_attrs=attrs["s"], intermediate_values={},
                       trial_id=trial_id)


def _trial_rows(rows: Sequence[Sequence[Any]]) -> tuple[dict[str, Any], dict[str, BaseDistribution], dict[str, dict]]:
    """A trial's params, their distributions and its user ("u") and system ("s") attributes from its rows."""
    params: dict[str, Any] = {}
    distributions: dict[str, BaseDistribution] = {}
    attrs: dict[str, dict] = {"u": {}, "s": {}}
    for kind, key, value, text, _ in sorted((r for r in rows if r[0] is not None), key=lambda r: (r[0], r[4])):
        if kind == "p":
            distributions[key] = json_to_distribution(text)
            params[key] = distributions[key].to_external_repr(value)
        else:
            attrs[kind][key] = json.loads(text)
    return params, distributions, attrs


@functools.cache
def _trial_rows_query() -> Any:
    """UNION ALL of a trial's param, user attribute and system attribute rows: (kind, key, value, json, order)."""
    trial_id = sqlalchemy.bindparam("trial_id")
    p, u, a = (models.TrialParamModel.__table__, models.TrialUserAttributeModel.__table__,
               models.TrialSystemAttributeModel.__table__)
    none = sqlalchemy.cast(sqlalchemy.null(), p.c.param_value.type)
    return sqlalchemy.union_all(
        sqlalchemy.select(sqlalchemy.literal("p"), p.c.param_name, p.c.param_value, p.c.distribution_json,
                          p.c.param_id).where(p.c.trial_id == trial_id),
        sqlalchemy.select(sqlalchemy.literal("u"), u.c.key, none, u.c.value_json,
                          u.c.trial_user_attribute_id).where(u.c.trial_id == trial_id),
        sqlalchemy.select(sqlalchemy.literal("s"), a.c.key, none, a.c.value_json,
                          a.c.trial_system_attribute_id).where(a.c.trial_id == trial_id),
    )


# PostgreSQL: each statement is a network round trip, so a trial's three transactions are one statement each
# (data-modifying CTEs), run in autocommit mode: no BEGIN and COMMIT round trips, the statement is atomic.

def _postgresql(rdb: optuna.storages.RDBStorage, sql: str, params: Mapping[str, Any]) -> list[Any]:
    """Run one statement as its own transaction (one round trip); its rows."""
    with rdb.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.execute(sqlalchemy.text(sql), params).all()


def _values(prefix: str, rows: Sequence[Sequence[Any]], casts: Sequence[str], params: dict[str, Any]) -> str:
    """``VALUES (...), ...`` of bind parameters ``<prefix><column>_<row>``, each cast to its SQL type; fills ``params``."""
    out = []
    for i, row in enumerate(rows):
        names = [f"{prefix}{j}_{i}" for j in range(len(row))]
        params.update(zip(names, row))
        out.append("(" + ", ".join(f"CAST(:{n} AS {cast})" for n, cast in zip(names, casts)) + ")")
    return "VALUES " + ", ".join(out)


def _upsert_attrs_cte(source: str, attrs: Mapping[str, Any], params: dict[str, Any], system: bool = False) -> str:
    """A CTE inserting or replacing ``attrs`` as user (or ``system``) attributes of the trial that CTE ``source``
    returned."""
    rows = [(key, json.dumps(value)) for key, value in attrs.items()]
    kind = "system" if system else "user"
    return (f", {kind}_attrs AS (INSERT INTO trial_{kind}_attributes (trial_id, key, value_json) "
            f"SELECT {source}.trial_id, v.key, v.value_json FROM {source}, "
            f"({_values(kind[0] + 'a', rows, ('VARCHAR', 'TEXT'), params)}) AS v (key, value_json) "
            f"ON CONFLICT (trial_id, key) DO UPDATE SET value_json = excluded.value_json)") if rows else ""


def _claim_postgresql(rdb: optuna.storages.RDBStorage, study_id: int, after_id: int, started: datetime,
                      user_attrs: Mapping[str, Any]) -> FrozenTrial | None:
    """``claim_waiting_trial`` as one statement: claim, heartbeat, ``user_attrs`` and reading the trial's rows."""
    params: dict[str, Any] = {"study_id": study_id, "after_id": after_id, "started": started}
    sql = ("WITH claimed AS (UPDATE trials SET state = 'RUNNING', datetime_start = :started "
           "WHERE trial_id = (SELECT trial_id FROM trials WHERE study_id = :study_id AND state = 'WAITING' "
           "AND trial_id > :after_id ORDER BY trial_id LIMIT 1 FOR UPDATE SKIP LOCKED) AND state = 'WAITING' "
           "RETURNING trial_id, number)")
    if rdb.heartbeat_interval is not None:
        sql += (", beat AS (INSERT INTO trial_heartbeats (trial_id, heartbeat) "
                "SELECT trial_id, CURRENT_TIMESTAMP FROM claimed)")
    sql += _upsert_attrs_cte("claimed", user_attrs, params)
    of_claimed = "WHERE trial_id = (SELECT trial_id FROM claimed)"
    sql += (" SELECT claimed.trial_id, claimed.number, r.kind, r.key, r.value, r.text, r.ord FROM claimed LEFT JOIN ("
            f"SELECT 'p' AS kind, param_name AS key, param_value AS value, distribution_json AS text, param_id AS ord "
            f"FROM trial_params {of_claimed} "
            f"UNION ALL SELECT 'u', key, NULL, value_json, trial_user_attribute_id FROM trial_user_attributes {of_claimed} "
            f"UNION ALL SELECT 's', key, NULL, value_json, trial_system_attribute_id FROM trial_system_attributes "
            f"{of_claimed}) AS r ON TRUE")
    rows = _postgresql(rdb, sql, params)
    if not rows:
        return None
    return _running_trial(rows[0][0], rows[0][1], started, [r[2:] for r in rows], user_attrs)


def _params_postgresql(rdb: optuna.storages.RDBStorage, trial_id: int,
                       params: Mapping[str, tuple[float, BaseDistribution]]) -> bool:
    """Insert a RUNNING trial's params in one statement; False (nothing written) when it is not RUNNING.

    Idempotent (an upsert): a retry after a connection lost between the server's commit and its answer finds the
    same rows written, instead of a unique-key violation that would fail the trial as an error of its own."""
    binds: dict[str, Any] = {"trial_id": trial_id}
    rows = [(name, value, distribution_to_json(d)) for name, (value, d) in params.items()]
    sql = ("WITH running AS (SELECT trial_id FROM trials WHERE trial_id = :trial_id AND state = 'RUNNING' FOR UPDATE) "
           "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
           f"SELECT running.trial_id, v.name, v.value, v.dist FROM running, "
           f"({_values('p', rows, ('VARCHAR', 'DOUBLE PRECISION', 'TEXT'), binds)}) AS v (name, value, dist) "
           "ON CONFLICT (trial_id, param_name) DO UPDATE SET param_value = excluded.param_value, "
           "distribution_json = excluded.distribution_json RETURNING 1")
    return bool(_postgresql(rdb, sql, binds))


def _finish_postgresql(rdb: optuna.storages.RDBStorage, trial_id: int, state: TrialState, completed: datetime,
                       intermediate: Mapping[int, float], user_attrs: Mapping[str, Any],
                       system_attrs: Mapping[str, Any], value: float | None) -> bool:
    """``BufferedTrialStorage.finish`` as one statement; False (nothing written) when the trial is not RUNNING."""
    params: dict[str, Any] = {"trial_id": trial_id, "completed": completed}
    step_type = models.TrialIntermediateValueModel.__table__.c.intermediate_value_type.type.name
    value_type = models.TrialValueModel.__table__.c.value_type.type.name
    sql = (f"WITH done AS (UPDATE trials SET state = '{state.name}', datetime_complete = :completed "
           "WHERE trial_id = :trial_id AND state = 'RUNNING' RETURNING trial_id)")
    if intermediate:
        to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
        rows = [(step, stored, kind.name) for step, (stored, kind) in
                ((step, to_stored(v)) for step, v in intermediate.items())]
        sql += (", steps AS (INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, "
                "intermediate_value_type) SELECT done.trial_id, v.step, v.value, v.kind FROM done, "
                f"({_values('i', rows, ('INTEGER', 'DOUBLE PRECISION', step_type), params)}) "
                "AS v (step, value, kind))")
    sql += _upsert_attrs_cte("done", user_attrs, params)
    sql += _upsert_attrs_cte("done", system_attrs, params, system=True)
    if value is not None:
        stored, kind = models.TrialValueModel.value_to_stored_repr(value)
        params.update(value=stored, value_type=kind.name)
        sql += (", result AS (INSERT INTO trial_values (trial_id, objective, value, value_type) SELECT trial_id, 0, "
                f"CAST(:value AS DOUBLE PRECISION), CAST(:value_type AS {value_type}) FROM done)")
    return bool(_postgresql(rdb, sql + " SELECT trial_id FROM done", params))


def open_trial(study: optuna.Study, claimed: FrozenTrial) -> optuna.Trial:
    """The ``optuna.Trial`` of a trial this process just claimed, built from ``claimed`` (what the claim read)
    as ``optuna.Trial(study, trial_id)`` builds it from a fresh read of the same rows."""
    trial = optuna.Trial.__new__(optuna.Trial)
    trial.study, trial._trial_id, trial.storage = study, claimed._trial_id, study._storage
    trial._cached_frozen_trial = copy.deepcopy(claimed)
    study.sampler.before_trial(optuna.pruners._filter_study(study, trial._cached_frozen_trial),
                               trial._cached_frozen_trial)
    trial.relative_search_space = None
    trial._relative_params = None
    trial._fixed_params = trial._cached_frozen_trial.system_attrs.get("fixed_params", {})
    return trial


def _upsert_attrs(rdb: optuna.storages.RDBStorage, s: Any, model: Any, trial_id: int,
                  attrs: Mapping[str, Any]) -> None:
    """Insert or replace a trial's attributes with one multi-row upsert (Optuna's per-key writer elsewhere)."""
    if not attrs:
        return
    dialect = rdb.engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        for key, value in attrs.items():
            rdb._set_trial_attr_without_commit(s, model, trial_id, key, value)
        return
    rows = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    s.execute(_upsert_statement(dialect, model.__table__), rows)


@functools.cache
def _upsert_statement(dialect: str, table: sqlalchemy.Table) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    statement = insert(table)
    return statement.on_conflict_do_update(index_elements=[table.c.trial_id, table.c.key],
                                           set_={"value_json": statement.excluded.value_json})


class BufferedTrialStorage:
    """A trial's storage that keeps its params, intermediate values and user and system attributes in memory.

    ``optuna.Trial`` writes each suggestion, report and attribute in its own transaction; with this
    as ``trial.storage`` they are written by ``commit_params`` (params, once all are suggested) and
    ``finish`` (everything else, the value and the state) in one transaction each (on PostgreSQL one
    statement each, see ``_finish_postgresql``). Nothing reads the intermediate values of a running trial
    from the database: a stage's pruner (``--scheduler asha``, Optuna's SuccessiveHalvingPruner) reads the
    trial's own from memory and the other trials' rung values from the system attributes it writes through
    the study's storage, unbuffered, at each rung epoch. The trial's own system attributes set through
    ``trial.storage`` (the records, ``studies.records``) are buffered like the rest.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.storage = trial.storage
        self.trial_id = trial._trial_id
        self.params: dict[str, tuple[float, BaseDistribution]] = {}
        self.intermediate: dict[int, float] = {}
        self.user_attrs: dict[str, Any] = {}
        self.system_attrs: dict[str, Any] = {}
        trial.storage = self  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)  # reads go to the real storage

    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: BaseDistribution) -> None:
        self.params[name] = (value, distribution)

    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        self.intermediate[step] = value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.system_attrs[key] = value

    def commit_params(self) -> None:
        """Write the suggested params (with their distributions) in one transaction."""
        if not self.params:
            return
        rdb = backend(self.storage)
        if rdb.engine.dialect.name == "postgresql":
            if not _params_postgresql(rdb, self.trial_id, self.params):
                raise optuna.exceptions.UpdateFinishedTrialError(f"trial {self.trial_id} is no longer running")
            return
        rows = [{"trial_id": self.trial_id, "param_name": name, "param_value": value,
                 "distribution_json": distribution_to_json(distribution)}
                for name, (value, distribution) in self.params.items()]
        with rdb.engine.begin() as conn:
            _lock_running(conn, self.trial_id)
            conn.execute(models.TrialParamModel.__table__.insert(), rows)

    def finish(self, state: TrialState, value: float | None = None) -> FrozenTrial:
        """Intermediate values, user and system attributes, value and ``state`` in one transaction;
        UpdateFinishedTrialError (nothing written) when the trial is no longer RUNNING."""
        if state == TrialState.PRUNED and value is None and self.intermediate:
            last = self.intermediate[max(self.intermediate)]
            value = last if last == last else None  # Optuna's tell: a pruned trial's value is its last report
        now = datetime.now()
        if value is not None and state == TrialState.FAIL:
            value = None
        finish_running_trial(self.storage, self.trial_id, state, now, self.intermediate, self.user_attrs,
                             self.system_attrs, value)
        return self._finished(state, value, now)

    def _finished(self, state: TrialState, value: float | None, now: datetime) -> FrozenTrial:
        """The trial as ``finish`` wrote it."""
        cached = self.trial._cached_frozen_trial
        return FrozenTrial(
            number=cached.number, state=state, value=value,
            datetime_start=cached.datetime_start, datetime_complete=now, params=dict(cached.params),
            distributions=dict(cached.distributions), user_attrs={**cached.user_attrs, **self.user_attrs},
            system_attrs={**cached.system_attrs, **self.system_attrs}, intermediate_values=dict(self.intermediate),
            trial_id=self.trial_id, values=None,
        )


def finish_running_trial(storage: optuna.storages.BaseStorage, trial_id: int, state: TrialState, now: datetime,
                         intermediate: Mapping[int, float], user_attrs: Mapping[str, Any],
                         system_attrs: Mapping[str, Any], value: float | None) -> None:
    """A RUNNING trial's intermediate values, user and system attributes, value and ``state`` (finished at the local
    time ``now``) in one transaction; UpdateFinishedTrialError (nothing written) when it is no longer RUNNING."""
    rdb = backend(storage)
    completed = now.astimezone(timezone.utc).replace(tzinfo=None)
    if rdb.engine.dialect.name == "postgresql":
        if not _finish_postgresql(rdb, trial_id, state, completed, intermediate, user_attrs, system_attrs, value):
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial_id} is no longer running")
        return
    with rdb.engine.begin() as conn:
        # the state first: it takes the row lock, and a trial no longer RUNNING stops the transaction
        _lock_running(conn, trial_id, state, completed)
        if intermediate:
            to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
            conn.execute(models.TrialIntermediateValueModel.__table__.insert(), [
                dict(zip(("intermediate_value", "intermediate_value_type"), to_stored(v)),
                     trial_id=trial_id, step=step) for step, v in intermediate.items()])
        _upsert_attrs(rdb, conn, models.TrialUserAttributeModel, trial_id, user_attrs)
        _upsert_attrs(rdb, conn, models.TrialSystemAttributeModel, trial_id, system_attrs)
        if value is not None:
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            conn.execute(models.TrialValueModel.__table__.insert(), [
                {"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind}])


def fail_running_trial(storage: optuna.storages.BaseStorage, trial_id: int, stop_reason: str) -> bool:
    """FAIL a RUNNING trial with its ``stop_reason`` user attribute, in one transaction; False when it was no longer
    RUNNING (finished meanwhile, or failed by another process), nothing written."""
    try:
        finish_running_trial(storage, trial_id, TrialState.FAIL, datetime.now(), {}, {"stop_reason": stop_reason}, {},
                             None)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Optuna's ``fail_stale_trials`` (each RUNNING trial whose heartbeat is older than the storage's grace period
    failed, then the storage's stale-trial callback run on it), the FAIL written with the trial's ``stop_reason``
    ("worker lost: no heartbeat for more than 20 s": the grace period, the least its heartbeat is late by) in its one
    transaction; returns the failed trials' ids."""
    storage = study_storage(study)
    rdb = backend(storage)
    if rdb.heartbeat_interval is None:
        return []
    grace = rdb.grace_period or 2 * rdb.heartbeat_interval
    failed = [trial_id for trial_id in rdb._get_stale_trial_ids(study_id(study))
              if fail_running_trial(storage, trial_id, f"worker lost: no heartbeat for more than {grace} s")]
    callback = rdb.get_heartbeat_stale_trial_callback()
    if callback is not None:
        for trial_id in failed:
            callback(study, copy.deepcopy(storage.get_trial(trial_id)))
    return failed


def _lock_running(conn: Any, trial_id: int, state: TrialState = TrialState.RUNNING,
                  completed: datetime | None = None) -> None:
    """Set the RUNNING trial's ``state`` and ``completed`` time (by default a no-op that takes its row lock);
    UpdateFinishedTrialError, and nothing more is written, when the trial is no longer RUNNING."""
    done = conn.execute(_lock_running_statement(), {"tid": trial_id, "new_state": state, "completed": completed})
    if done.rowcount != 1:
        raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial_id} is no longer running")


@functools.cache
def _lock_running_statement() -> Any:
    """UPDATE trial :tid, if RUNNING, to :new_state completed at :completed."""
    trials = models.TrialModel.__table__
    return (trials.update().where(trials.c.trial_id == sqlalchemy.bindparam("tid"), trials.c.state == TrialState.RUNNING)
            .values(state=sqlalchemy.bindparam("new_state", type_=trials.c.state.type),
                    datetime_complete=sqlalchemy.bindparam("completed", type_=trials.c.datetime_complete.type)))


# study attributes this service reads as JSON objects: one stored as another JSON value (null, a number) cannot be read
_OBJECT_ATTRS = frozenset({"space", "data", "config"})
# user attributes (of a study, of a trial) it writes as lists of strings, and joins or prints as text
_STRINGS_ATTRS = {"study": frozenset({"range_notes"}), "trial": frozenset({"diagnosis"})}


def _json_problem(text: Any, want_object: bool, want_strings: bool = False) -> str | None:
    """Why the attribute value ``text`` cannot be read (not JSON, nested too deep, not an object or a list of strings
    where one is wanted), or None."""
    try:
        value = json.loads(text)
    except RecursionError:
        return "its JSON is nested too deep"
    except (TypeError, ValueError) as exc:
        return f"not JSON: {exc}"
    if want_object and not isinstance(value, dict):
        return f"a JSON object was expected, not {json.dumps(value)[:40]}"
    if want_strings and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return f"a JSON list of strings was expected, not {json.dumps(value)[:40]}"
    return None


def unreadable_value(storage: optuna.storages.BaseStorage) -> str | None:
    """Where a study of this service (one with ``campaign`` and ``stage`` user attributes) holds a value that Optuna
    or this service cannot read (changed by hand or by another program): "study NAME, trial N, user attribute 'KEY'
    cannot be read (why)", or None when every value reads. Other programs' studies are not looked at: what Optuna
    lets them store (an enqueued parameter outside its range, an attribute ``data`` that is a string) is theirs.

    Read with plain SQL, past Optuna's decoding, which fails on the first such value with a bare JSONDecodeError,
    "Unknown distribution class" or "could not convert string to float" that names no study or trial; row by row,
    so a stage of millions of trials is read without holding it."""
    ours = ("SELECT study_id FROM study_user_attributes WHERE key IN ('campaign', 'stage') GROUP BY study_id "
            "HAVING COUNT(DISTINCT key) = 2")
    our_trials = f"SELECT trial_id FROM trials WHERE study_id IN ({ours})"
    rdb = backend(storage)
    with rdb.engine.connect() as conn:
        def rows(sql: str) -> Any:
            return conn.exec_driver_sql(sql)

        names = dict(rows(f"SELECT study_id, study_name FROM studies WHERE study_id IN ({ours})").all())

        def trial(tid: int) -> str:
            found = rows(f"SELECT study_id, number FROM trials WHERE trial_id = {int(tid)}").first()
            return f"study {names.get(found[0]) if found else None}, trial {found[1] if found else None}"

        for table, kind in (("study_user_attributes", "user"), ("study_system_attributes", "system")):
            for sid, key, text in rows(f"SELECT study_id, key, value_json FROM {table} WHERE study_id IN ({ours})"):
                why = _json_problem(text, kind == "user" and key in _OBJECT_ATTRS,
                                    kind == "user" and key in _STRINGS_ATTRS["study"])
                if why:
                    return f"study {names.get(sid)}, {kind} attribute {key!r} cannot be read ({why})"
        for table, kind in (("trial_user_attributes", "user"), ("trial_system_attributes", "system")):
            for tid, key, text in rows(f"SELECT trial_id, key, value_json FROM {table} WHERE trial_id IN "
                                       f"({our_trials})"):
                why = _json_problem(text, False, kind == "user" and key in _STRINGS_ATTRS["trial"])
                if why:
                    return f"{trial(tid)}, {kind} attribute {key!r} cannot be read ({why})"
        for tid, name, value, text in rows("SELECT trial_id, param_name, param_value, distribution_json "
                                           f"FROM trial_params WHERE trial_id IN ({our_trials})"):
            try:
                distribution = json_to_distribution(text)
                inside = distribution._contains(value)
            except Exception as exc:  # noqa: BLE001  whatever Optuna raises for it, it cannot be read
                return f"{trial(tid)}, parameter {name!r} cannot be read (its distribution: {exc})"
            if not inside:
                return f"{trial(tid)}, parameter {name!r} cannot be read ({value!r} is outside its distribution {text})"
        for table, column in (("trial_values", "value"), ("trial_intermediate_values", "intermediate_value")):
            for tid, value in rows(f"SELECT trial_id, {column} FROM {table} WHERE trial_id IN ({our_trials})"):
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    return f"{trial(tid)}, {column.replace('_', ' ')} cannot be read ({value!r} is not a number)"
        twice = rows(f"SELECT study_id, number FROM trials WHERE study_id IN ({ours}) GROUP BY study_id, number "
                     "HAVING COUNT(*) > 1").first()
        if twice:
            return f"study {names.get(twice[0])} cannot be read (several of its trials are number {twice[1]})"
    return None
