"""Trial rows written in one transaction each (claim, params, finish), read back by Optuna's public API."""
from __future__ import annotations

import sqlite3
import warnings

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from studies import optuna_rdb
from studies.budget import initialise_study
from studies.store import open_storage


@pytest.fixture(params=["sqlite", "postgresql"])
def study(request, tmp_path) -> optuna.Study:
    url = f"sqlite:///{tmp_path / 'rdb.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    storage = open_storage(url, heartbeat_interval=10)
    study = optuna.create_study(storage=storage, study_name="c/coarse", direction="maximize")
    initialise_study(storage, optuna_rdb.study_id(study), {"n_trials": 3}, [{}, {"lr": 0.5}, {}])
    return study


def _claim(study: optuna.Study, after_id: int = -1) -> FrozenTrial | None:
    return optuna_rdb.claim_waiting_trial(optuna_rdb.study_storage(study), optuna_rdb.study_id(study), after_id,
                                          {"worker": "host:1"})


def test_claims_take_the_waiting_trials_in_order_with_their_heartbeat_then_none(study):
    claimed = [_claim(study) for _ in range(4)]
    assert [c.number for c in claimed[:3]] == [0, 1, 2] and claimed[3] is None
    assert claimed[:3] == study.get_trials()  # the claim returns what Optuna reads back
    trials = study.get_trials()
    assert {t.state for t in trials} == {TrialState.RUNNING}
    assert all(t.user_attrs == {"worker": "host:1"} and t.datetime_start is not None for t in trials)
    backend = optuna_rdb.backend(optuna_rdb.study_storage(study))
    backend.heartbeat_interval, backend.grace_period = 1, 1
    import time
    time.sleep(2.2)  # every claimed trial had a heartbeat, so every one can be found stale
    assert len(backend._get_stale_trial_ids(optuna_rdb.study_id(study))) == 3


def test_a_stale_trial_is_failed_with_its_stop_reason_in_the_same_write_and_re_run_once(study):
    # failed by Optuna's fail_stale_trials, a lost worker's trial had no stop_reason: search explain said "it failed
    # without recording why"; the grace period is the least its heartbeat is late by (the trial of a worker lost a day
    # ago is failed by the next command), not how late it is
    import time

    claimed = [_claim(study) for _ in range(3)]
    backend = optuna_rdb.backend(optuna_rdb.study_storage(study))
    backend.heartbeat_interval, backend.grace_period = 1, 2
    assert optuna_rdb.fail_stale_trials(study) == []  # every heartbeat is new
    time.sleep(3.2)  # SQLite's heartbeat times are whole seconds
    writes = optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, claimed[1]))
    finished = writes.finish(TrialState.COMPLETE, 1.0)
    assert optuna_rdb.fail_stale_trials(study) == [optuna_rdb.trial_id(claimed[i]) for i in (0, 2)]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.WAITING, TrialState.WAITING]  # the two copies, by the callback
    lost = "worker lost: no heartbeat for more than 2 s"
    assert [t.user_attrs.get("stop_reason") for t in trials] == [lost, None, lost, None, None]
    assert trials[1] == finished and trials[0].datetime_complete is not None
    assert optuna_rdb.fail_stale_trials(study) == []  # once
    assert not optuna_rdb.fail_running_trial(optuna_rdb.study_storage(study), optuna_rdb.trial_id(claimed[0]), "x")
    assert study.get_trials()[0].user_attrs["stop_reason"] == lost  # nothing written


def test_a_claimed_and_a_finished_trial_have_the_times_optuna_reads_back_in_any_time_zone(study, monkeypatch):
    # the claim gave its trial's start in UTC where Optuna gives local time: 9 hours off in Tokyo, and a finished
    # trial's duration (its local end less that start) 9 hours long
    import time

    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    try:
        claimed = _claim(study)
        assert claimed.datetime_start == study.get_trials()[0].datetime_start
        frozen = optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, claimed)).finish(TrialState.COMPLETE, 1.0)
        stored = study.get_trials()[0]
        assert (frozen.datetime_start, frozen.datetime_complete) == (stored.datetime_start, stored.datetime_complete)
        assert 0 <= frozen.duration.total_seconds() < 60
    finally:
        monkeypatch.undo()
        time.tzset()


def test_after_id_skips_the_trials_below_it(study):
    first = optuna_rdb.trial_id(_claim(study))
    assert _claim(study, after_id=first + 1).number == 2


def test_a_finished_trial_is_written_in_one_transaction_and_read_by_optuna(study):
    trial = optuna_rdb.open_trial(study, _claim(study))
    writes = optuna_rdb.BufferedTrialStorage(trial)
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    assert study.get_trials()[0].params == {}  # suggested in memory
    writes.commit_params()
    trial.report(0.5, 1)
    trial.report(0.75, 2)
    trial.set_user_attr("val_acc", 0.75)
    writes.system_attrs["loss_curve"] = [2.3, 1.1, None]
    assert study.get_trials()[0].intermediate_values == {}
    frozen = writes.finish(TrialState.COMPLETE, 0.75)
    stored = study.get_trials()[0]
    assert stored.state == TrialState.COMPLETE and stored.value == 0.75 and stored.params == {"lr": lr}
    assert isinstance(stored.distributions["lr"], optuna.distributions.FloatDistribution)
    assert stored.intermediate_values == {1: 0.5, 2: 0.75}
    assert stored.user_attrs == {"worker": "host:1", "val_acc": 0.75}
    assert stored.system_attrs["loss_curve"] == frozen.system_attrs["loss_curve"] == [2.3, 1.1, None]
    assert stored.datetime_complete is not None and stored.datetime_complete >= stored.datetime_start
    assert (frozen.value, frozen.params, frozen.intermediate_values) == (0.75, {"lr": lr}, {1: 0.5, 2: 0.75})


def test_a_pruned_trial_takes_its_last_report_as_value(study):
    claimed = _claim(study)
    writes = optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, claimed))
    writes.intermediate.update({1: 0.25, 2: 0.5})
    assert writes.finish(TrialState.PRUNED).value == 0.5
    assert study.get_trials()[0].value == 0.5


def test_state_counts_and_best_take_the_best_of_the_complete_trials_only(study):
    storage, sid = optuna_rdb.study_storage(study), optuna_rdb.study_id(study)
    assert optuna_rdb.state_counts_and_best(storage, sid) == (
        {"RUNNING": 0, "COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "WAITING": 3}, None)
    optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, _claim(study))).finish(TrialState.COMPLETE, 0.75)
    pruned = optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, _claim(study)))
    pruned.intermediate.update({1: 0.9})
    pruned.finish(TrialState.PRUNED)  # its value 0.9 is an early epoch's, not a result
    _claim(study)
    assert optuna_rdb.state_counts_and_best(storage, sid) == (
        {"RUNNING": 1, "COMPLETE": 1, "PRUNED": 1, "FAIL": 0, "WAITING": 0}, 0.75)


def test_the_counts_and_the_first_look_are_taken_at_one_moment(study, monkeypatch):
    # the stage's counts, then a look for finished trials: a trial that ended between the two was in neither, and
    # a --jobs N log began below the stage's count and best
    storage, sid = optuna_rdb.study_storage(study), optuna_rdb.study_id(study)
    optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, _claim(study))).finish(TrialState.COMPLETE, 0.75)
    running = _claim(study)
    backend = optuna_rdb.backend(storage)
    real = optuna_rdb._finished_trial_ids
    ended = []

    def another_process_ends_a_trial(*args):  # between the two statements (SQLite's BEGIN IMMEDIATE holds it off)
        if backend.engine.dialect.name == "postgresql":
            other = optuna.load_study(study_name="c/coarse", storage=open_storage(backend.url))
            ended.append(optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(other, running))
                         .finish(TrialState.COMPLETE, 0.5).number)
        return real(*args)

    monkeypatch.setattr(optuna_rdb, "_finished_trial_ids", another_process_ends_a_trial)
    counts, look = optuna_rdb.state_counts_and_first_look(storage, sid)
    monkeypatch.setattr(optuna_rdb, "_finished_trial_ids", real)
    assert counts == ({"RUNNING": 1, "COMPLETE": 1, "PRUNED": 0, "FAIL": 0, "WAITING": 1}, 0.75)
    assert look.floor == optuna_rdb.trial_id(running) and look.seen == frozenset()
    if ended:  # ended after the counts: the look tells it as new
        assert look.since(storage, sid)[0] == [optuna_rdb.trial_id(running)]


def test_a_trial_failed_by_another_worker_is_not_overwritten(study):
    trial_id = optuna_rdb.trial_id(claimed := _claim(study))
    writes = optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, claimed))
    writes.user_attrs["val_acc"] = 0.9
    optuna_rdb.study_storage(study).set_trial_state_values(trial_id, TrialState.FAIL)  # failed as stale meanwhile
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        writes.finish(TrialState.COMPLETE, 0.9)
    stored = study.get_trials()[0]
    assert stored.state == TrialState.FAIL and stored.value is None and "val_acc" not in stored.user_attrs


def test_open_trial_builds_what_optuna_builds_from_a_fresh_read(study):
    for claimed in (_claim(study), _claim(study)):  # the second carries fixed_params
        opened, read = optuna_rdb.open_trial(study, claimed), optuna.Trial(study, optuna_rdb.trial_id(claimed))
        assert vars(opened).keys() == vars(read).keys()
        assert opened._cached_frozen_trial == read._cached_frozen_trial
        assert opened._fixed_params == read._fixed_params
    writes = optuna_rdb.BufferedTrialStorage(opened)
    assert opened.suggest_float("lr", 1e-4, 1.0) == 0.5 and writes.params["lr"][0] == 0.5


def test_a_retry_copy_is_claimed_with_the_params_of_the_trial_it_retries(study):
    from studies.budget import requeue_failed_trials
    writes = optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, _claim(study)))
    lr = writes.trial.suggest_float("lr", 1e-4, 1.0, log=True)
    writes.commit_params()
    writes.user_attrs["stop_reason"] = "interrupted"
    failed = writes.finish(TrialState.FAIL)
    assert requeue_failed_trials(optuna_rdb.study_storage(study), optuna_rdb.study_id(study), [failed]) == 1
    copy = [_claim(study) for _ in range(3)][-1]
    assert copy.params == {"lr": lr} and copy.system_attrs["retry_of"] == 0
    again = optuna_rdb.BufferedTrialStorage(optuna_rdb.open_trial(study, copy))
    assert again.trial.suggest_float("lr", 1e-4, 1.0, log=True) == lr and again.params == {}


def test_schema_revisions_read_from_the_files_are_alembics():
    head, known = optuna_rdb.schema_revisions()
    script = optuna_rdb._alembic_scripts()
    assert head == script.get_current_head()
    assert sorted(known) == sorted(r.revision for r in script.walk_revisions()) and len(known) >= 10


def test_schema_revisions_read_alembics_template_style_and_ask_alembic_for_a_file_they_cannot_read(tmp_path,
                                                                                                 monkeypatch):
    from types import SimpleNamespace

    versions = tmp_path / "alembic" / "versions"
    versions.mkdir(parents=True)
    (versions / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (versions / "b.py").write_text("revision: str = 'b'\ndown_revision: Union[str, None] = 'a'\n")
    monkeypatch.setattr(optuna_rdb, "models", SimpleNamespace(__file__=str(tmp_path / "models.py")))
    alembic = SimpleNamespace(get_current_head=lambda: "c", walk_revisions=lambda: [
        SimpleNamespace(revision=r) for r in "cba"])
    monkeypatch.setattr(optuna_rdb, "_alembic_scripts", lambda: alembic)
    optuna_rdb.schema_revisions.cache_clear()
    try:
        assert optuna_rdb.schema_revisions() == ("b", ("a", "b"))
        (versions / "c.py").write_text("revision = 'c'\ndown_revision = ('a', 'b')\n")  # a merge
        optuna_rdb.schema_revisions.cache_clear()
        assert optuna_rdb.schema_revisions() == ("c", ("c", "b", "a"))
    finally:
        optuna_rdb.schema_revisions.cache_clear()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_at_the_head_schema_opens_without_importing_alembic(tmp_path, request, kind):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'rdb.db'}" if kind == "sqlite" else request.getfixturevalue("pg_database")
    probe = ("import sys; from studies.store import open_storage; s = open_storage(sys.argv[1]); "
             "print(s.get_current_version(), any(m.split('.')[0] == 'alembic' for m in sys.modules))")
    runs = [subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True).stdout.split()
            for _ in range(2)]
    head = optuna_rdb.schema_revisions()[0]
    assert runs == [[head, "False"], [head, "False"]]  # new, then existing
    if kind == "sqlite":  # stamped as alembic stamps a database plain Optuna creates
        optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'plain.db'}").engine.dispose()
        ddl = [sqlite3.connect(tmp_path / name).execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'alembic_version' ORDER BY name").fetchall()
            for name in ("rdb.db", "plain.db")]
        assert ddl[0] == ddl[1] and "alembic_version_pkc PRIMARY KEY" in ddl[0][0][0]


def test_unreadable_value_finds_nothing_in_values_optuna_wrote_and_names_a_value_changed_by_hand(tmp_path):
    url = f"sqlite:///{tmp_path / 'rdb.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    for key, value in {"campaign": "c", "stage": "coarse", "space": {"lr": {"type": "float"}},
                       "data": {"name": "digits"}}.items():
        study.set_user_attr(key, value)
    # another program's study in the same file, with what Optuna lets it store and this service would not read: an
    # attribute data that is a string, a parameter enqueued outside its range (Optuna only warns)
    theirs = optuna.create_study(storage=open_storage(url), study_name="mine")
    theirs.set_user_attr("data", "mnist")
    theirs.enqueue_trial({"x": 5.0}, skip_if_exists=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True),
                     "act": optuna.distributions.CategoricalDistribution(["relu", "tanh"])}
    for i in range(2):
        study.add_trial(optuna.trial.create_trial(value=0.5 + i, params={"lr": 0.01, "act": "tanh"},
                                                  distributions=distributions, intermediate_values={0: 0.1},
                                                  user_attrs={"diagnosis": ["ok"], "curve": [1.0, float("nan")]}))
    assert optuna_rdb.unreadable_value(optuna_rdb.study_storage(study)) is None

    with sqlite3.connect(tmp_path / "rdb.db") as conn:
        conn.execute("UPDATE trial_params SET param_value = 2 WHERE param_name = 'act'")  # a third choice of two
    assert optuna_rdb.unreadable_value(optuna_rdb.study_storage(study)) == (
        "study s, trial 0, parameter 'act' cannot be read (2.0 is outside its distribution {\"name\": "
        "\"CategoricalDistribution\", \"attributes\": {\"choices\": [\"relu\", \"tanh\"]}})")
