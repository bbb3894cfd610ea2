"""Issue 9: foreign studies, storage failures mid-stage, orphaned workers, spawn without a main guard, TPE seeds."""
from __future__ import annotations

import sqlite3

import optuna
import pytest
import sqlalchemy

from engine.data import DataSpec
from search import objective
from search.campaign import DEFAULT_SPACE, Execution, coarse_stage, execute_stage
from search.config import RunConfig
from search.stages import STORAGE_RETRY_ENV, StorageLost
from tests.search.conftest import one_line_error
from tests.search.procs import SMALL, budget

STAGE = "digits/coarse"


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'search.db'}"


def _snapshot(url: str, name: str) -> tuple:
    study = optuna.load_study(study_name=name, storage=url)
    trials = [(t.number, t.state.name, t.value, dict(t.user_attrs)) for t in study.get_trials()]
    return study.direction.name, dict(study.user_attrs), trials


# --------------------------------------------------------------------------- item 9: foreign studies
@pytest.mark.parametrize("direction, attrs, trials", [
    ("minimize", {}, 3),  # the audit's case: a plain Optuna study with trials
    ("minimize", {}, 0),  # a blank study, but minimised: not ours either
    ("maximize", {"owner": "someone"}, 0),  # user attrs that are not ours
    ("maximize", {}, 2),  # trials that are not ours
])
def test_a_foreign_study_is_refused_and_left_unchanged(run_cli, url, direction, attrs, trials):
    study = optuna.create_study(storage=url, study_name=STAGE, direction=direction)
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for i in range(trials):
        study.add_trial(optuna.trial.create_trial(value=float(i)))
    before = _snapshot(url, STAGE)

    result = run_cli("coarse", *SMALL, "--trials", "4", "--storage", url)

    one_line_error(result, "study digits/coarse was not created by this service; use another --campaign")
    assert _snapshot(url, STAGE) == before


# --------------------------------------------------------------------------- item 3: a storage failure is not a trial failure
RUN = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"arch.hidden": 10, "train.epochs": 1})
DISK_FULL = sqlalchemy.exc.OperationalError("INSERT INTO trial_user_attributes", {},
                                            sqlite3.OperationalError("database or disk is full"))


def _failing(real, failures: dict[str, int]):
    """``real``, raising "database or disk is full" on its first ``failures['left']`` calls."""

    def call(*args, **kwargs):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise DISK_FULL
        return real(*args, **kwargs)

    return call


def _run(url: str, n: int, heartbeat: int | None = 10):
    return execute_stage(Execution(url, heartbeat=heartbeat, progress="quiet"),
                         coarse_stage("digits", RUN, DEFAULT_SPACE, n, seed=0))


def test_a_full_disk_while_recording_results_loses_no_budget(url, monkeypatch):
    attrs_failures, tell_failures = {"left": 3}, {"left": 3}
    monkeypatch.setattr(objective, "set_trial_user_attrs", _failing(objective.set_trial_user_attrs, attrs_failures))
    monkeypatch.setattr(optuna.Study, "tell", _failing(optuna.Study.tell, tell_failures))

    summary = _run(url, 10)

    assert attrs_failures["left"] == tell_failures["left"] == 0  # the faults did happen
    final = budget(url, STAGE)
    assert final.finished == 10 and final.states["RUNNING"] == final.states["WAITING"] == 0
    failed = [t for t in final.trials if t.state.name == "FAIL"]
    # each run whose attributes were lost is failed as interrupted and run again; a failed tell is retried
    assert len(failed) == 3 and {t.user_attrs["stop_reason"] for t in failed} == {"interrupted"}
    assert sorted(final.retries) == sorted(t.number for t in failed) and final.problems() == []
    assert summary.errors == []


def test_a_disk_full_for_longer_than_the_retry_period_stops_the_worker_and_the_next_run_completes(url, monkeypatch):
    monkeypatch.setenv(STORAGE_RETRY_ENV, "0")
    failures = {"left": 10**9}
    monkeypatch.setattr(optuna.Study, "tell", _failing(optuna.Study.tell, failures))

    with pytest.raises(StorageLost, match="the disk holding the database is full"):
        _run(url, 4, heartbeat=1)

    after = budget(url, STAGE)
    assert after.states["RUNNING"] == 1 and after.states["WAITING"] == 3 and after.states["FAIL"] == 0
    failures["left"] = 0  # space was freed
    _run(url, 4, heartbeat=1)  # the stale RUNNING trial is failed by its heartbeat and re-run once
    final = budget(url, STAGE)
    assert final.finished == 4 and final.states["RUNNING"] == final.states["WAITING"] == 0
    assert final.states["FAIL"] == 1 and len(final.retries) == 1 and final.problems() == []
