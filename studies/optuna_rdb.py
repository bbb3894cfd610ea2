"""The ONE module that touches Optuna's private internals: RDB models and sessions, ids, trial rows in one transaction.

Everything else in the project uses Optuna's public API or this module (pyproject pins Optuna's
major version). Rows written here are the rows ``RDBStorage`` writes itself, so the database stays an
ordinary Optuna database that ``optuna trials``, ``optuna.load_study`` and optuna-dashboard read.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session, _VersionManager
from optuna.trial import FrozenTrial, TrialState

ENQUEUE_CHUNK = 5000  # rows per multi-row INSERT when a stage's trials are enqueued


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


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The trial's row id."""
    return trial._trial_id


def optuna_tables() -> set[str]:
    """Names of the tables of Optuna's RDB storage (and alembic's version table)."""
    return set(models.BaseModel.metadata.tables) | {"alembic_version"}


@contextmanager
def session(storage: optuna.storages.BaseStorage, ignore_integrity_error: bool = False) -> Iterator[Any]:
    """An ORM session of the RDB storage, committed on success and rolled back on any exception."""
    with _create_scoped_session(backend(storage).scoped_session, ignore_integrity_error) as s:
        yield s


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # Optuna stores naive UTC


def cache_alembic_scripts() -> None:
    """Read Optuna's ~90 alembic revision files once per process instead of once per opened storage."""
    if getattr(_VersionManager._create_alembic_script, "_cached", False):
        return
    original = _VersionManager._create_alembic_script

    @functools.cache
    def script_directory(self_type: type) -> Any:
        scratch = _VersionManager.__new__(_VersionManager)
        scratch.url = "sqlite://"  # the script folder is Optuna's own, whatever the URL
        return original(scratch)

    def cached(self: _VersionManager) -> Any:
        return script_directory(type(self))

    cached._cached = True  # type: ignore[attr-defined]
    _VersionManager._create_alembic_script = cached  # type: ignore[method-assign]


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

    def add_trial(self, template: FrozenTrial) -> None:
        """Insert a trial made from ``template`` (as ``RDBStorage.create_new_trial``, in this transaction)."""
        self.storage._get_prepared_new_trial(self.study_id, template, self.session)


@contextmanager
def locked_study(storage: optuna.storages.BaseStorage, study_id: int) -> Iterator[LockedStudy]:
    """One transaction holding the study's row lock: processes doing this run one at a time."""
    rdb = backend(storage)
    with session(rdb) as s:
        yield LockedStudy(rdb, s, study_id)


def claim_waiting_trial(storage: optuna.storages.BaseStorage, study_id: int, after_id: int,
                        user_attrs: Mapping[str, Any]) -> tuple[int, int] | None:
    """WAITING -> RUNNING for the study's first WAITING trial above ``after_id``, its heartbeat and
    ``user_attrs``, in one transaction; returns (trial_id, number), or None when none is waiting.

    One UPDATE ... WHERE state = 'WAITING' claims it: on PostgreSQL the candidate row is picked with
    FOR UPDATE SKIP LOCKED, on SQLite the transaction holds the write lock (BEGIN IMMEDIATE). A
    trial never goes back to WAITING and new trials get higher ids, so the lowest WAITING id only
    grows: ``after_id`` (the last id this worker claimed) keeps the scan short on huge stages.
    """
    rdb = backend(storage)
    trials = models.TrialModel.__table__
    candidate = (sqlalchemy.select(trials.c.trial_id)
                 .where(trials.c.study_id == study_id, trials.c.state == TrialState.WAITING,
                        trials.c.trial_id > after_id)
                 .order_by(trials.c.trial_id).limit(1))
    if rdb.engine.dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    claim = (trials.update()
             .where(trials.c.trial_id == candidate.scalar_subquery(), trials.c.state == TrialState.WAITING)
             .values(state=TrialState.RUNNING, datetime_start=_utcnow())
             .returning(trials.c.trial_id, trials.c.number))
    with session(rdb) as s:
        row = s.execute(claim).first()
        if row is None:
            return None
        if rdb.heartbeat_interval is not None:
            # in the claim's transaction: a RUNNING trial without a heartbeat would never be found stale
            s.execute(models.TrialHeartbeatModel.__table__.insert().values(
                trial_id=row[0], heartbeat=sqlalchemy.func.current_timestamp()))
        _upsert_attrs(rdb, s, models.TrialUserAttributeModel, row[0], user_attrs)
        return row[0], row[1]


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


def set_trial_user_attrs(storage: optuna.storages.BaseStorage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Write several user attributes of a running trial in one transaction."""
    rdb = backend(storage)
    with session(rdb, True) as s:
        _upsert_attrs(rdb, s, models.TrialUserAttributeModel, trial_id, attrs)


class BufferedTrialStorage:
    """A trial's storage that keeps its params, intermediate values and user attributes in memory.

    ``optuna.Trial`` writes each suggestion, report and attribute in its own transaction; with this
    as ``trial.storage`` they are written by ``commit_params`` (params, once all are suggested) and
    ``finish`` (everything else, the value and the state) in one transaction each. Nothing reads the
    intermediate values of a running trial from the database: a stage's pruner (``--scheduler asha``,
    Optuna's SuccessiveHalvingPruner) reads the trial's own from memory and the other trials' rung values
    from the system attributes it writes through the study's storage, unbuffered, at each rung epoch.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.storage = trial.storage
        self.trial_id = trial._trial_id
        self.params: dict[str, tuple[float, BaseDistribution]] = {}
        self.intermediate: dict[int, float] = {}
        self.user_attrs: dict[str, Any] = {}
        trial.storage = self  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)  # reads go to the real storage

    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: BaseDistribution) -> None:
        self.params[name] = (value, distribution)

    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        self.intermediate[step] = value

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def commit_params(self) -> None:
        """Write the suggested params (with their distributions) in one transaction."""
        if not self.params:
            return
        rows = [{"trial_id": self.trial_id, "param_name": name, "param_value": value,
                 "distribution_json": distribution_to_json(distribution)}
                for name, (value, distribution) in self.params.items()]
        with session(self.storage) as s:
            _check_running(s, self.trial_id, lock=False)
            s.execute(models.TrialParamModel.__table__.insert(), rows)

    def finish(self, state: TrialState, value: float | None = None) -> FrozenTrial:
        """Intermediate values, user attributes, value and ``state`` in one transaction;
        UpdateFinishedTrialError (nothing written) when the trial is no longer RUNNING."""
        if state == TrialState.PRUNED and value is None and self.intermediate:
            last = self.intermediate[max(self.intermediate)]
            value = last if last == last else None  # Optuna's tell: a pruned trial's value is its last report
        rdb = backend(self.storage)
        trials = models.TrialModel.__table__
        with session(rdb) as s:
            done = s.execute(trials.update()
                             .where(trials.c.trial_id == self.trial_id, trials.c.state == TrialState.RUNNING)
                             .values(state=TrialState.RUNNING))  # takes the row lock before any insert
            if done.rowcount != 1:
                raise optuna.exceptions.UpdateFinishedTrialError(f"trial {self.trial_id} is no longer running")
            if self.intermediate:
                to_stored = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
                s.execute(models.TrialIntermediateValueModel.__table__.insert(), [
                    dict(zip(("intermediate_value", "intermediate_value_type"), to_stored(v)),
                         trial_id=self.trial_id, step=step) for step, v in self.intermediate.items()])
            _upsert_attrs(rdb, s, models.TrialUserAttributeModel, self.trial_id, self.user_attrs)
            if value is not None and state != TrialState.FAIL:
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                s.execute(models.TrialValueModel.__table__.insert().values(
                    trial_id=self.trial_id, objective=0, value=stored, value_type=kind))
            now = datetime.now()
            s.execute(trials.update().where(trials.c.trial_id == self.trial_id)
                      .values(state=state, datetime_complete=now.astimezone(timezone.utc).replace(tzinfo=None)))
        cached = self.trial._cached_frozen_trial
        return FrozenTrial(
            number=cached.number, state=state, value=value if state != TrialState.FAIL else None,
            datetime_start=cached.datetime_start, datetime_complete=now, params=dict(cached.params),
            distributions=dict(cached.distributions), user_attrs={**cached.user_attrs, **self.user_attrs},
            system_attrs=dict(cached.system_attrs), intermediate_values=dict(self.intermediate),
            trial_id=self.trial_id, values=None,
        )


def _check_running(s: Any, trial_id: int, lock: bool) -> None:
    trial = models.TrialModel.find_or_raise_by_id(trial_id, s, for_update=lock)
    if trial.state != TrialState.RUNNING:
        raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial_id} is no longer running")
