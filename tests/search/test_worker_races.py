"""Races of the worker loop with other workers, each forced at the instruction where it bites (hooks, row locks).

Each test makes one interleaving happen deterministically and asserts the trial counts by state it must end with.
"""
from __future__ import annotations

import pytest
import sqlalchemy
from optuna.trial import TrialState

from engine.data import DataSpec
from search import stages as stages_module
from search.campaign import coarse_stage
from search.config import RunConfig
from search.space import FloatRange
from search.stages import create_stage, run_worker, stage_counts
from studies.budget import requeue_failed_trials
from studies import optuna_rdb
from studies.store import open_storage

RUN = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"arch.hidden": 10, "train.epochs": 1})
SPACE = {"lr": FloatRange(1e-4, 1e-3), "reg": FloatRange(1e-5, 1e-4)}
MAX_POLLS = 20  # a worker that waits this many times with nobody else working would wait for ever


def _give_up_waiting(monkeypatch) -> list[dict[str, int]]:
    """Make the worker loop's "others are still running trials" wait raise after MAX_POLLS looks; returns the counts
    it saw each time (the loop looks with ``requeue_and_count`` once it finds nothing to claim)."""
    seen: list[dict[str, int]] = []
    real = stages_module.requeue_and_count

    def counts(storage, study_id):
        added, counted = real(storage, study_id)
        seen.append(counted)
        if len(seen) > MAX_POLLS:
            raise AssertionError(f"the worker kept waiting with nobody else working: {seen[-1]}")
        return added, counted

    monkeypatch.setattr(stages_module, "requeue_and_count", counts)
    return seen


def test_a_trial_a_killed_claimer_had_locked_is_claimed_by_the_worker_that_skipped_it(pg_database, monkeypatch):
    """PostgreSQL: a claim skips a WAITING row another claim has locked (FOR UPDATE SKIP LOCKED). When that other
    claim is rolled back (its worker killed or its connection cut mid-statement) the row is WAITING again, below the
    id this worker claimed next: it must still be claimed, not waited for for ever."""
    n = 4
    storage = open_storage(pg_database, heartbeat_interval=10)
    create_stage(storage, coarse_stage("skip", RUN, SPACE, n, seed=0))
    study_id = storage.get_study_id_from_name("skip/coarse")
    other = sqlalchemy.create_engine(pg_database)
    claimer = other.connect()
    held = claimer.begin()  # another worker's claim, mid-statement: the first WAITING row locked
    first = claimer.execute(sqlalchemy.text(
        "SELECT trial_id FROM trials WHERE study_id = :sid AND state = 'WAITING' ORDER BY trial_id LIMIT 1 "
        "FOR UPDATE SKIP LOCKED"), {"sid": study_id}).scalar_one()

    def kill_the_other_claimer(trial):
        if held.is_active:
            held.rollback()  # its worker died: the server rolls its claim back, the row is WAITING and unlocked

    seen = _give_up_waiting(monkeypatch)
    try:
        report = run_worker(storage, "skip/coarse", RUN.load(), on_trial=kill_the_other_claimer, poll=0.01)
    finally:
        claimer.close()
        other.dispose()
    counts = stage_counts(storage, study_id)
    assert report.ran == n
    assert counts["COMPLETE"] + counts["PRUNED"] == n and counts["WAITING"] == counts["RUNNING"] == 0
    assert counts["FAIL"] == 0 and sum(counts.values()) == n
    skipped = next(t for t in storage.get_all_trials(study_id) if optuna_rdb.trial_id(t) == first)
    assert skipped.number == 0 and skipped.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(seen) == 1  # at the end only: the skipped trial was claimed at once, not waited for
    storage.engine.dispose()


def test_params_written_before_the_connection_dropped_are_not_written_twice(pg_database, monkeypatch):
    """PostgreSQL: the server commits the statement that writes a trial's params, then the connection drops before
    its answer arrives. The worker retries the write (a database failure, not the trial's): the retry must find
    the params written, not fail the trial as an error of its own (``error: IntegrityError``, never re-run)."""
    n = 2
    storage = open_storage(pg_database, heartbeat_interval=10)
    create_stage(storage, coarse_stage("ack", RUN, SPACE, n, seed=0))
    study_id = storage.get_study_id_from_name("ack/coarse")
    real = optuna_rdb._postgresql
    dropped: list[str] = []

    def answer_lost_once(rdb, sql, params):
        rows = real(rdb, sql, params)  # committed on the server
        if "INSERT INTO trial_params" in sql and not dropped:
            dropped.append(sql)
            raise sqlalchemy.exc.OperationalError(sql, params, Exception("server closed the connection unexpectedly"))
        return rows

    monkeypatch.setattr(optuna_rdb, "_postgresql", answer_lost_once)
    report = run_worker(storage, "ack/coarse", RUN.load(), poll=0.01)
    counts = stage_counts(storage, study_id)
    assert len(dropped) == 1
    assert report.errors == [] and report.ran == n
    assert counts["COMPLETE"] + counts["PRUNED"] == n and counts["FAIL"] == 0 and sum(counts.values()) == n
    first = next(t for t in storage.get_all_trials(study_id) if t.number == 0)
    assert set(first.params) == {"lr", "reg"}
    storage.engine.dispose()


def test_a_worker_does_not_leave_while_an_interrupted_worker_enqueues_its_trial_again(pg_database):
    """Another worker, interrupted (Ctrl-C, SIGTERM), fails its trial and then enqueues its copy, and exits. When
    that falls between this worker's look for failed trials and its count of trials left, this worker used to
    see nothing WAITING or RUNNING and leave: the copy stayed WAITING with every worker gone."""
    import threading

    n = 2
    storage = open_storage(pg_database, heartbeat_interval=10)
    create_stage(storage, coarse_stage("leave", RUN, SPACE, n, seed=0))
    study_id = storage.get_study_id_from_name("leave/coarse")
    other = open_storage(pg_database, heartbeat_interval=10)  # the other worker, on another machine
    theirs = optuna_rdb.claim_waiting_trial(other, study_id, -1, {"worker": "elsewhere:1"})
    their_id = optuna_rdb.trial_id(theirs)
    state = {"ours_done": False, "failed": False}
    requeuing: list[threading.Thread] = []

    def interrupt_the_other(conn, cursor, statement, parameters, context, executemany):
        if state["ours_done"] and not state["failed"] and "count(DISTINCT" in statement:
            state["failed"] = True  # it is interrupted: its trial FAIL as interrupted ...
            other.set_trial_user_attr(their_id, "stop_reason", "interrupted")
            other.set_trial_state_values(their_id, TrialState.FAIL)

    def then_requeue(conn, cursor, statement, parameters, context, executemany):
        if state["failed"] and not requeuing:  # ... then its copy, as this worker has just counted, and it exits
            failed = other.get_trial(their_id)
            thread = threading.Thread(target=requeue_failed_trials, args=(other, study_id, [failed]))
            requeuing.append(thread)
            thread.start()

    def ours_done(trial):
        state["ours_done"] = True

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", interrupt_the_other)
    sqlalchemy.event.listen(storage.engine, "after_cursor_execute", then_requeue)
    report = run_worker(storage, "leave/coarse", RUN.load(), on_trial=ours_done, poll=0.01)
    requeuing[0].join(30)
    counts = stage_counts(storage, study_id)
    assert state["failed"] and report.ran == n  # its own trial and the other one's copy
    assert counts["WAITING"] == counts["RUNNING"] == 0
    assert counts["COMPLETE"] + counts["PRUNED"] == n and counts["FAIL"] == 1 and sum(counts.values()) == n + 1
    other.engine.dispose()
    storage.engine.dispose()


def test_heartbeats_are_judged_alike_by_workers_whose_sessions_are_in_other_time_zones(pg_database, monkeypatch):
    """PostgreSQL: a heartbeat is stored as a timestamp without time zone, written and judged with the server's
    clock in each session's TimeZone (libpq's PGTZ, a role's setting; one zone across a DST change). A worker five
    hours behind stored heartbeats a worker at UTC found five hours old: its live trial was failed at once; a worker
    nine hours ahead left a dead trial RUNNING for nine hours."""
    import time

    import optuna
    from optuna.storages import fail_stale_trials

    storage = open_storage(pg_database, heartbeat_interval=1)
    create_stage(storage, coarse_stage("tz", RUN, SPACE, 2, seed=0))
    study_id = storage.get_study_id_from_name("tz/coarse")

    def claim_in(zone: str) -> int:
        monkeypatch.setenv("PGTZ", zone)
        there = open_storage(pg_database, heartbeat_interval=1)
        try:
            trial_id = optuna_rdb.trial_id(optuna_rdb.claim_waiting_trial(there, study_id, -1, {"worker": zone}))
            there.record_heartbeat(trial_id)  # Optuna's own beat, as the worker's heartbeat thread records it
            return trial_id
        finally:
            there.engine.dispose()
            monkeypatch.delenv("PGTZ")

    def state_of(trial_id: int) -> TrialState:
        return next(t.state for t in storage.get_all_trials(study_id) if optuna_rdb.trial_id(t) == trial_id)

    study = optuna.load_study(study_name="tz/coarse", storage=storage)  # this worker: the server's zone (UTC)
    live = claim_in("America/New_York")
    fail_stale_trials(study)
    assert state_of(live) == TrialState.RUNNING  # its heartbeat is a moment old
    dead = claim_in("Asia/Tokyo")
    time.sleep(2.5)  # more than 2 x the heartbeat interval without a beat from either
    fail_stale_trials(study)
    assert state_of(live) == state_of(dead) == TrialState.FAIL
    counts = stage_counts(storage, study_id)
    assert counts["FAIL"] == 2 and counts["WAITING"] == 2 and counts["RUNNING"] == 0  # each re-enqueued once
    storage.engine.dispose()


def test_a_study_lock_held_by_a_vanished_machine_is_released_and_the_workers_go_on(pg_database, monkeypatch):
    """PostgreSQL: a worker whose machine is lost (power cut, network partition) inside a transaction holding the
    study's row lock (re-enqueueing failed trials, counting what is left) leaves its server session idle in that
    transaction: the server does not notice for hours (TCP keepalive). Every other worker then waited for that lock
    past lock_timeout, retried for the retry period and stopped, and the stage stopped on every machine."""
    from studies import store

    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 2)  # lock_timeout 2 s instead of 60 s
    monkeypatch.setenv(stages_module.STORAGE_RETRY_ENV, "6")
    storage = open_storage(pg_database, heartbeat_interval=10)
    create_stage(storage, coarse_stage("lost", RUN, SPACE, 2, seed=0))
    study_id = storage.get_study_id_from_name("lost/coarse")
    vanished = open_storage(pg_database, heartbeat_interval=10)  # the lost machine's worker
    conn = vanished.engine.connect()
    conn.begin()
    conn.execute(sqlalchemy.text("SELECT study_id FROM studies WHERE study_id = :sid FOR UPDATE"), {"sid": study_id})
    # ... and nothing more from it, ever
    try:
        report = run_worker(storage, "lost/coarse", RUN.load(), poll=0.01)
    finally:
        try:
            conn.close()
        except sqlalchemy.exc.DBAPIError:
            pass  # its session was ended by the server
        vanished.engine.dispose()
    counts = stage_counts(storage, study_id)
    assert report.ran == 2 and counts["COMPLETE"] + counts["PRUNED"] == 2 and sum(counts.values()) == 2
    storage.engine.dispose()


def test_ctrl_c_while_a_trial_is_being_recorded_fails_it_as_interrupted(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) while a finished run's result is written (its transaction rolled back): the trial is
    failed as interrupted and its copy enqueued, as for a Ctrl-C while it trains, not left RUNNING for the next
    command to wait 2 x the heartbeat for."""
    url = f"sqlite:///{tmp_path / 'search.db'}"
    storage = open_storage(url, heartbeat_interval=10)
    create_stage(storage, coarse_stage("rec", RUN, SPACE, 2, seed=0))
    study_id = storage.get_study_id_from_name("rec/coarse")
    real = optuna_rdb.BufferedTrialStorage.finish

    def ctrl_c_while_recording(self, state, value=None):
        if state != TrialState.FAIL:
            raise KeyboardInterrupt  # the result's transaction never commits
        return real(self, state, value)

    monkeypatch.setattr(optuna_rdb.BufferedTrialStorage, "finish", ctrl_c_while_recording)
    with pytest.raises(KeyboardInterrupt):
        run_worker(storage, "rec/coarse", RUN.load(), poll=0.01)
    counts = stage_counts(storage, study_id)
    assert counts["RUNNING"] == 0 and counts["FAIL"] == 1 and counts["WAITING"] == 2 and sum(counts.values()) == 3
    failed = storage.get_all_trials(study_id, states=(TrialState.FAIL,))[0]
    assert failed.number == 0 and failed.user_attrs["stop_reason"] == "interrupted"
    storage.engine.dispose()
