"""The budget's two atomic operations under concurrent processes, on SQLite and PostgreSQL: exactly once."""
from __future__ import annotations

import multiprocessing
import time
import warnings
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from studies.budget import RETRY_OF, RetryStaleTrialOnce, initialise_study, requeue_failed_trials, retry_copy
from studies.optuna_rdb import LockedStudy
from studies.store import open_storage

PROCESSES = 4


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'budget.db'}"
    return request.getfixturevalue("pg_database")


def _initialise(url: str, barrier) -> bool:
    storage = open_storage(url)
    try:
        study_id = storage.get_study_id_from_name("c/coarse")
        barrier.wait()
        return initialise_study(storage, study_id, {"n_trials": 25}, [{}] * 25)
    finally:
        storage.engine.dispose()


def _requeue(url: str, barrier) -> int:
    storage = open_storage(url)
    try:
        study_id = storage.get_study_id_from_name("c/coarse")
        barrier.wait()
        return requeue_failed_trials(storage, study_id)
    finally:
        storage.engine.dispose()


def _run_at_once(target, url: str) -> list:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            return pool.starmap(target, [(url, barrier)] * PROCESSES)


@pytest.mark.slow
def test_initialise_from_four_processes_at_once_enqueues_the_budget_exactly_once(url):
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="c/coarse", direction="maximize")
    storage.engine.dispose()
    done = _run_at_once(_initialise, url)
    assert sorted(done) == [False, False, False, True]
    study = optuna.load_study(study_name="c/coarse", storage=open_storage(url))
    trials = study.get_trials()
    assert len(trials) == 25 and {t.state for t in trials} == {TrialState.WAITING}
    assert [t.number for t in trials] == list(range(25))
    assert study.user_attrs == {"n_trials": 25, "ready": True}


def test_initialise_killed_midway_leaves_nothing_and_can_be_redone(url, monkeypatch):
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="c/coarse", direction="maximize")
    real = LockedStudy.set_user_attrs

    def die_before_ready(self, *args, **kwargs):
        raise KeyboardInterrupt  # the process is stopped after the trials were inserted, before ``ready``

    monkeypatch.setattr(LockedStudy, "set_user_attrs", die_before_ready)
    with pytest.raises(KeyboardInterrupt):
        initialise_study(storage, study._study_id, {"n_trials": 10}, [{}] * 10)
    assert study.get_trials() == [] and "ready" not in study.user_attrs  # all or nothing
    monkeypatch.setattr(LockedStudy, "set_user_attrs", real)
    assert initialise_study(storage, study._study_id, {"n_trials": 10}, [{}] * 10)
    assert len(study.get_trials()) == 10


@pytest.mark.slow
def test_each_failed_trial_is_requeued_exactly_once_by_racing_processes(url):
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="c/coarse")
    dist = optuna.distributions.FloatDistribution(1e-6, 1.0, log=True)
    for i in range(6):  # what a worker killed between FAIL and enqueueing its copy leaves behind
        attrs = {"stop_reason": "interrupted"} if i % 2 else {}
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"lr": 10.0 ** -(i + 1)},
                                                  distributions={"lr": dist}, user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"stop_reason": "error: boom"}))
    storage.engine.dispose()

    added = _run_at_once(_requeue, url)
    assert sum(added) == 6  # the six re-runnable failures, not the error

    study = optuna.load_study(study_name="c/coarse", storage=open_storage(url))
    copies = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.system_attrs[RETRY_OF] for t in copies) == [0, 1, 2, 3, 4, 5]
    for copy in copies:
        original = study.trials[copy.system_attrs[RETRY_OF]]
        assert copy.params == original.params  # the same point is re-run
        assert RetryStaleTrialOnce.retried_trial_number(copy) == original.number  # Optuna's own bookkeeping
    assert requeue_failed_trials(study._storage, study._study_id) == 0  # and never again


def test_stale_trial_is_failed_and_rerun_through_optuna_heartbeat_machinery(url):
    storage = open_storage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="c/coarse")
    study.enqueue_trial({"lr": 0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat is supposed to be used with optimize"
        trial = study.ask()  # RUNNING; its worker "dies" after one heartbeat
    storage.record_heartbeat(trial._trial_id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not study.get_trials(states=(TrialState.FAIL,)):
        optuna.storages.fail_stale_trials(study)
        time.sleep(0.2)
    states = Counter(t.state for t in study.get_trials())
    assert states == {TrialState.FAIL: 1, TrialState.WAITING: 1}
    copy = study.get_trials(states=(TrialState.WAITING,))[0]
    assert copy.system_attrs[RETRY_OF] == trial.number
    assert copy.system_attrs["fixed_params"] == {"lr": 0.5}


@pytest.mark.slow
def test_a_stage_of_100000_trials_is_enqueued_numbered_and_ready(url):
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="c/coarse", direction="maximize")
    assert initialise_study(storage, study._study_id, {"n_trials": 100_000}, [{}] * 100_000)
    trials = storage.get_all_trials(study._study_id, deepcopy=False)
    assert [t.number for t in trials] == list(range(100_000))
    assert {t.state for t in trials} == {TrialState.WAITING} and study.user_attrs["ready"] is True


def test_a_retry_copy_keeps_the_params_and_leaves_the_failed_runs_rung_values_and_records_behind():
    failed = optuna.trial.create_trial(
        state=TrialState.FAIL, params={"lr": 0.5}, distributions={"lr": optuna.distributions.FloatDistribution(0.1, 1)},
        system_attrs={"fixed_params": {"lr": 0.5}, "completed_rung_0": 0.3, "completed_rung_1": 0.4,
                      "loss_curve": [2.3, 1.0], "config": {"train": {"lr": 0.5}}},
    )
    failed.number = 7
    copy = retry_copy(failed)
    assert copy.state == TrialState.WAITING and copy.params == {"lr": 0.5}
    # the copy is compared again at every rung (Optuna counts completed_rung_* keys to find a trial's rung)
    assert copy.system_attrs == {"fixed_params": {"lr": 0.5}, "failed_trial": 7, "retry_history": [7], RETRY_OF: 7}
