"""Stages on a real SQLite study database: exact budgets, contract attributes, pruning, refinement, resume."""
from __future__ import annotations

import math
import os
import sqlite3
import time
import shutil
import signal
import subprocess

import optuna
import sqlalchemy
import pytest
from optuna.trial import TrialState

from engine.data import DataSpec
from search import stages as stages_module
from search.campaign import (
    DEFAULT_SPACE, Execution, coarse_stage, continuing_notes, execute_stage, grid_stage_for, next_fine_stage,
)
from search.config import RunConfig
from search.objective import EXPLODE_WINDOW
from search.space import FloatRange
from studies.records import RECORD_KEYS
from studies.store import open_storage

RUN = RunConfig(data=DataSpec("digits", train_size=400)).with_params({"train.epochs": 2})
STUDY_ATTRS = {"campaign", "stage", "parent", "space", "epochs", "data", "config", "seed", "range_notes"}
TRIAL_ATTRS = {"initial_loss", "final_loss", "train_acc", "val_acc", "iterations", "seconds", "stop_reason",
               "model_parameters", "diagnosis"}


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


def test_optunas_own_trials_command_prints_a_readable_row_per_trial(url):
    execute_stage(Execution(url, progress="quiet"), coarse_stage("c", RUN, DEFAULT_SPACE, 4, seed=0))
    out = subprocess.run([shutil.which("optuna"), "trials", "--storage", url, "--study-name", "c/coarse"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("|")][1:]  # below the header
    assert len(rows) == 4
    # scalar user attributes only: the config, curves and diagnosis numbers (about 2,000 characters) are not in it
    assert all(len(row) < 700 for row in rows), max(map(len, rows))
    assert not any(key in out for key in RECORD_KEYS)


def _states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_coarse_stage_stores_exactly_n_trials_with_the_contract_attributes(url):
    execute_stage(Execution(url, progress="quiet"), coarse_stage("c", RUN, DEFAULT_SPACE, 12, seed=3))
    study = _study(url, "c/coarse")
    trials = study.get_trials()
    assert len(trials) == 12
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert STUDY_ATTRS <= set(study.user_attrs)
    assert study.user_attrs["space"] == {"lr": {"type": "float", "low": 1e-6, "high": 1.0, "log": True},
                                         "reg": {"type": "float", "low": 1e-6, "high": 10.0, "log": True}}
    for t in trials:
        assert TRIAL_ATTRS <= set(t.user_attrs)
        assert set(RECORD_KEYS) <= set(t.system_attrs) and not set(RECORD_KEYS) & set(t.user_attrs)
        assert 1e-6 <= t.params["lr"] <= 1.0 and 1e-6 <= t.params["reg"] <= 10.0
        assert len(t.system_attrs["loss_curve"]) == min(t.user_attrs["iterations"], 200)
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["stop_reason"] == "completed"
            assert sorted(t.intermediate_values) == [1, 2]  # val accuracy reported after each epoch
            assert t.value == t.intermediate_values[2] == t.user_attrs["val_acc"]  # the last epoch's
            assert t.user_attrs["best_val_acc"] == max(t.intermediate_values.values())
    # same seed, same trials: a second campaign with seed 3 draws the same points
    execute_stage(Execution(url, progress="quiet"), coarse_stage("c2", RUN, DEFAULT_SPACE, 12, seed=3))
    again = _study(url, "c2/coarse").get_trials()
    assert [t.params for t in again] == [t.params for t in trials]


def test_huge_lr_is_pruned_as_exploded_before_its_budget(url):
    run = RunConfig(data=DataSpec("digits", train_size=400)).with_params(
        {"train.optimizer": "sgd", "train.epochs": 3})
    space = {"lr": FloatRange(50.0, 100.0), "reg": FloatRange(1e-6, 1e-5)}
    execute_stage(Execution(url, progress="quiet"), coarse_stage("boom", run, space, 3, seed=0))
    budget = 3 * (400 // run.train.batch_size)
    trials = _study(url, "boom/coarse").get_trials()
    assert len(trials) == 3
    for t in trials:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["stop_reason"] in ("exploded", "nan")
        assert t.user_attrs["iterations"] < budget
        assert t.user_attrs["iterations"] <= EXPLODE_WINDOW  # the lecture's 3x rule, on the mean of 10 losses


def test_a_trial_stopped_before_its_first_epoch_ended_has_no_accuracy_not_a_best_of_0(url):
    run = RunConfig(data=DataSpec("digits", train_size=1000)).with_params(
        {"train.optimizer": "sgd", "train.epochs": 2})  # 20 iterations an epoch: stopped at the 10th
    space = {"lr": FloatRange(50.0, 100.0), "reg": FloatRange(1e-6, 1e-5)}
    execute_stage(Execution(url, progress="quiet"), coarse_stage("early", run, space, 2, seed=0))
    trials = _study(url, "early/coarse").get_trials()
    assert [t.user_attrs["iterations"] for t in trials] == [EXPLODE_WINDOW, EXPLODE_WINDOW]
    for t in trials:
        assert t.state == TrialState.PRUNED and t.intermediate_values == {}
        assert (t.user_attrs["val_acc"], t.user_attrs["best_val_acc"], t.user_attrs["best_epoch"]) == (None, None, None)


def test_fine_stage_stores_its_refined_range_and_parent(url):
    ex = Execution(url, progress="quiet")
    execute_stage(ex, coarse_stage("f", RUN, DEFAULT_SPACE, 10, seed=0))
    stage, parent = next_fine_stage(ex.storage(), "f", top=3, edge=0.1, epochs=None, n_trials=4)
    execute_stage(ex, stage)
    fine = _study(url, "f/fine-1")
    assert fine.user_attrs["parent"] == "f/coarse"
    assert fine.user_attrs["epochs"] == 4  # twice the coarse runs by default
    # one note per dimension, and reg's upper bound kept: the best trial (lr about 3e-4, reg about 0.1) barely moved
    # a loss that was mostly its L2 term, but the term barely moved either (the step moved no weights): lr_too_low,
    # where it was underfitting, the second of the top 3 that were, and reg's upper bound was lowered on their word
    notes = fine.user_attrs["range_notes"]
    assert [n.split(":")[0] for n in notes] == ["lr", "reg"], notes
    top = sorted(parent.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.value)[:3]
    # the second: far from its training set learned, its loss still falling steeply after 2 epochs
    assert [t.user_attrs["diagnosis"] for t in top] == [["lr_too_low"], ["still_learning"], ["underfitting"]]
    lr = fine.user_attrs["space"]["lr"]
    low, high = lr["low"], lr["high"]
    assert lr["log"] is True and low < high
    best = max(parent.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    assert low <= best.params["lr"] <= high
    assert len(fine.get_trials()) == 4
    # a second `fine` refines fine-1 into fine-2
    stage2, _ = next_fine_stage(ex.storage(), "f", top=3, edge=0.1, epochs=None, n_trials=2)
    assert stage2.stage == "fine-2" and stage2.parent == "f/fine-1"


def test_grid_stage_has_k_by_k_distinct_points(url):
    ex = Execution(url, progress="quiet")
    execute_stage(ex, coarse_stage("g", RUN, DEFAULT_SPACE, 10, seed=0))
    execute_stage(ex, grid_stage_for(ex.storage(), "g"))
    trials = _study(url, "g/grid").get_trials()
    assert len(trials) == 9  # k = floor(sqrt(10)) = 3
    points = {(round(math.log10(t.params["lr"]), 6), round(math.log10(t.params["reg"]), 6)) for t in trials}
    assert len(points) == 9
    assert sorted({p[0] for p in points}) == [-6.0, -3.0, 0.0]  # log-spaced, bounds included


def test_two_jobs_store_exactly_n_trials(url):
    execute_stage(Execution(url, jobs=2, progress="quiet"), coarse_stage("j", RUN, DEFAULT_SPACE, 14, seed=1))
    study = _study(url, "j/coarse")
    assert len(study.get_trials()) == 14
    assert _states(study).get("COMPLETE", 0) + _states(study).get("PRUNED", 0) == 14
    assert len({t.number for t in study.get_trials()}) == 14


def test_with_parent_works_this_process_runs_trials_beside_the_workers_and_reports_only_new_ones(url):
    from search.stages import create_stage, run_worker, worker_name
    from search.workers import run_stage_processes

    storage = open_storage(url)
    create_stage(storage, coarse_stage("p", RUN, DEFAULT_SPACE, 10, seed=2))
    dataset = RUN.load()
    assert run_worker(storage, "p/coarse", dataset, max_trials=3).ran == 3  # an earlier command ran three
    reported: list[int] = []
    report = run_stage_processes(url, "p/coarse", dataset, 2, heartbeat=10,
                                 on_trial=lambda t: reported.append(t.number), parent_works=True)
    trials = _study(url, "p/coarse").get_trials()
    assert len(trials) == 10 and _states(_study(url, "p/coarse")).get("RUNNING", 0) == 0
    assert report.ran == 7 and sorted(reported) == sorted(t.number for t in trials)[3:]
    # the three earlier ones, and at least the first of this run: it starts here while the worker starts
    assert sum(t.user_attrs["worker"] == worker_name() for t in trials) >= 4


def _watch_worker_spawns(monkeypatch, before=None, after=None) -> list[int]:
    """Worker processes' spawns watched: ``before(made)`` runs ahead of each (it may raise), ``after(made)`` once the
    process is made; the pids made, as they are. The resource tracker is started first, the same way: no worker."""
    import multiprocessing.resource_tracker
    import multiprocessing.util

    multiprocessing.resource_tracker.ensure_running()
    real, made = multiprocessing.util.spawnv_passfds, []

    def spawn(path, args, passfds):
        if before is not None:
            before(made)
        made.append(real(path, args, passfds))
        if after is not None:
            after(made)
        return made[-1]

    monkeypatch.setattr(multiprocessing.util, "spawnv_passfds", spawn)
    return made


def test_a_worker_process_that_cannot_be_started_is_one_error_and_the_started_ones_are_ended(url, monkeypatch):
    # the second worker's start failing (no more processes to be had) was hidden behind "AssertionError: can only
    # join a started process", a traceback, raised where the workers already started were waited for
    import errno

    from search.errors import SearchFailed
    from search.stages import create_stage
    from search.workers import run_stage_processes

    storage = open_storage(url)
    create_stage(storage, coarse_stage("f", RUN, DEFAULT_SPACE, 6, seed=0))

    def second_refused(made: list[int]) -> None:
        if made:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    made = _watch_worker_spawns(monkeypatch, before=second_refused)
    with pytest.raises(SearchFailed) as info:
        run_stage_processes(url, "f/coarse", RUN.load(), 3, heartbeat=10)
    assert str(info.value) == "cannot start 3 worker processes: Resource temporarily unavailable; run with fewer jobs"
    with pytest.raises(ChildProcessError):  # the one started was ended and waited for
        os.waitpid(made[0], os.WNOHANG)
    assert _states(_study(url, "f/coarse")).get("RUNNING", 0) == 0
    storage.engine.dispose()


def test_a_sigterm_while_the_workers_start_ends_every_worker_made(url, monkeypatch):
    # a SIGTERM that came inside a worker's start (its process made, its data not yet sent) left that process
    # unknown: never ended nor waited for, it printed "EOFError: Ran out of input" after the command had ended
    from search.errors import Interrupted, forget_pending, raise_on
    from search.stages import create_stage
    from search.workers import run_stage_processes

    storage = open_storage(url)
    create_stage(storage, coarse_stage("t", RUN, DEFAULT_SPACE, 6, seed=0))

    def sigterm_after_the_second(made: list[int]) -> None:
        if len(made) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    made = _watch_worker_spawns(monkeypatch, after=sigterm_after_the_second)
    previous = raise_on(signal.SIGTERM, Interrupted)
    try:
        with pytest.raises(Interrupted):
            run_stage_processes(url, "t/coarse", RUN.load(), 3, heartbeat=10)
    finally:
        signal.signal(signal.SIGTERM, previous)
        forget_pending()
    for pid in made:
        with pytest.raises(ChildProcessError):  # each ended and waited for
            os.waitpid(pid, os.WNOHANG)
    assert len(made) == 3  # every start went through, then the signal acted
    assert _states(_study(url, "t/coarse")).get("RUNNING", 0) == 0
    storage.engine.dispose()


def _workers_whose_loop_is(url, monkeypatch, tmp_path, campaign: str, imports: str, loop: str) -> str:
    """Run 2 worker processes on a new 4-trial stage of ``campaign`` whose ``run_worker`` is ``loop`` (after
    ``imports``) and return what the command said they did; the stage's 4 trials are left WAITING."""
    from search import workers
    from search.errors import SearchFailed
    from search.stages import create_stage

    storage = open_storage(url)
    create_stage(storage, coarse_stage(campaign, RUN, DEFAULT_SPACE, 4, seed=0))
    site = tmp_path / "site"  # imported first by each spawned worker (they inherit PYTHONPATH)
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import {imports}\nif '--multiprocessing-fork' in sys.argv:\n    import search.workers\n"
        f"    search.workers.run_worker = lambda *a, **k: {loop}\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    with pytest.raises(SearchFailed) as info:
        workers.run_stage_processes(url, f"{campaign}/coarse", RUN.load(), 2, heartbeat=10)
    assert _states(_study(url, f"{campaign}/coarse")) == {"WAITING": 4}
    storage.engine.dispose()
    return str(info.value)


def test_workers_killed_by_a_signal_are_said_to_have_been_killed_by_it(url, monkeypatch, tmp_path):
    # a worker process killed with kill -9 (or by the kernel's OOM killer) was said as "exit codes [-9]"
    said = _workers_whose_loop_is(url, monkeypatch, tmp_path, "k", "os, signal, sys",
                                  "os.kill(os.getpid(), signal.SIGKILL)")
    assert said == f"2 of 2 workers on {url} stopped abnormally: 2 killed by SIGKILL"


def test_workers_that_stop_on_an_exception_are_said_to_have_stopped_not_to_have_had_failed_trials(url, monkeypatch,
                                                                                                 tmp_path):
    # a worker ended by an exception nothing caught exits 1, the code that meant "some of its trials failed": two
    # workers that stopped so ran nothing, and the stage's 4 trials waited on, while the command said "2 worker(s)
    # had trials that failed"
    said = _workers_whose_loop_is(url, monkeypatch, tmp_path, "x", "sys", "1 / 0")
    assert said == f"2 of 2 workers on {url} stopped abnormally: 2 exited with code 1"


def test_workers_that_find_no_copy_of_the_data_stop_with_its_one_line(url, monkeypatch):
    # the data's copy in the temp folder gone (a cleaner of /tmp) as the workers started: each printed a traceback
    from search import workers
    from search.errors import SearchFailed
    from search.stages import create_stage

    storage = open_storage(url)
    create_stage(storage, coarse_stage("y", RUN, DEFAULT_SPACE, 4, seed=0))
    monkeypatch.setattr(workers, "save_cache", lambda dataset, folder: None)  # the workers find no data
    with pytest.raises(SearchFailed) as info:
        workers.run_stage_processes(url, "y/coarse", RUN.load(), 2, heartbeat=10)
    assert str(info.value).startswith(f"no dataset cache in {workers.tempfile.gettempdir()}/{workers.CACHE_PREFIX}")
    assert str(info.value).endswith(": meta.json is missing")
    assert _states(_study(url, "y/coarse")) == {"WAITING": 4}
    storage.engine.dispose()


def _interrupt_trial(monkeypatch, k: int):
    """Make the ``k``-th trial this process runs end in a Ctrl-C; the real ``run_trial``, to put back."""
    real = stages_module.run_trial
    calls = {"n": 0}

    def interrupt_on_kth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stages_module, "run_trial", interrupt_on_kth)
    return real


def test_interrupted_stage_resumes_to_exactly_n(url, monkeypatch):
    real = _interrupt_trial(monkeypatch, 4)
    stage = coarse_stage("i", RUN, DEFAULT_SPACE, 8, seed=0)
    with pytest.raises(KeyboardInterrupt):
        execute_stage(Execution(url, progress="quiet"), stage)
    study = _study(url, "i/coarse")
    states = _states(study)
    assert states["FAIL"] == 1 and states.get("RUNNING", 0) == 0
    assert states["COMPLETE"] + states.get("PRUNED", 0) == 3
    failed = study.get_trials(states=(TrialState.FAIL,))[0]
    assert failed.user_attrs["stop_reason"] == "interrupted"

    monkeypatch.setattr(stages_module, "run_trial", real)
    execute_stage(Execution(url, progress="quiet"), stage)  # the same command again
    states = _states(_study(url, "i/coarse"))
    assert states["COMPLETE"] + states.get("PRUNED", 0) == 8
    assert states["FAIL"] == 1 and states.get("RUNNING", 0) == 0 and states.get("WAITING", 0) == 0


@pytest.mark.parametrize("window", ["claim_waiting_trial", "make_sampler"])
def test_an_interrupt_between_the_claim_and_the_training_leaves_no_trial_running(url, monkeypatch, window):
    # a Ctrl-C just after a trial's claim was written, or while its sampler was made, left it RUNNING (1 in 10
    # Ctrl-Cs of `search coarse --trials 2000 --epochs 1 --train-size 200` on two cores)
    real = getattr(stages_module, window)
    calls = {"n": 0}

    def interrupt_after_the_4th(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(stages_module, window, interrupt_after_the_4th)
    stage = coarse_stage("w", RUN, DEFAULT_SPACE, 8, seed=0)
    with pytest.raises(KeyboardInterrupt):
        execute_stage(Execution(url, progress="quiet"), stage)
    study = _study(url, "w/coarse")
    states = _states(study)
    assert states["FAIL"] == 1 and states["WAITING"] == 5 and "RUNNING" not in states  # the copy waits to run
    assert study.get_trials(states=(TrialState.FAIL,))[0].user_attrs["stop_reason"] == "interrupted"
    monkeypatch.setattr(stages_module, window, real)
    execute_stage(Execution(url, progress="quiet"), stage)  # the same command again
    states = _states(_study(url, "w/coarse"))
    assert states["COMPLETE"] + states.get("PRUNED", 0) == 8 and states["FAIL"] == 1 and len(states) <= 3


def test_an_interrupt_as_a_claimed_trial_s_run_is_entered_leaves_no_trial_running(url, monkeypatch, capsys):
    # a Ctrl-C that came after the claim's handler and before the run's own one (as the heartbeat was told of the
    # trial, or the run's function was entered) left the trial RUNNING
    real = stages_module._run_claimed
    calls = {"n": 0}

    def interrupt_as_the_4th_is_entered(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stages_module, "_run_claimed", interrupt_as_the_4th_is_entered)
    stage = coarse_stage("e", RUN, DEFAULT_SPACE, 8, seed=0)
    with pytest.raises(KeyboardInterrupt):
        execute_stage(Execution(url, jobs=1, progress="log"), stage)
    study = _study(url, "e/coarse")
    assert _states(study) == {"COMPLETE": 3, "FAIL": 1, "WAITING": 5}  # the copy waits to run
    assert study.get_trials(states=(TrialState.FAIL,))[0].user_attrs["stop_reason"] == "interrupted"
    assert capsys.readouterr().err.splitlines()[-1] == "e/coarse:3 interrupted -      [3/8]"  # its line, once


def test_an_interrupt_inside_a_statement_of_the_result_still_records_the_trial(url, monkeypatch):
    # an interrupt that Python raises as a SQLite statement of the result's transaction returns (a handler's other
    # than Ctrl-C's or SIGTERM's, which wait for that transaction since): the statement, kept
    # alive by the exception's traceback, held the write lock, so recording the interrupt waited for it (the busy
    # timeout, 60 s), gave up and left the trial RUNNING (and the stage's other worker stopped, locked out)
    from optuna.storages._rdb import models

    from studies import optuna_rdb, store

    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 1)
    real = optuna_rdb._upsert_attrs
    calls = []

    def interrupted_statement(rdb, conn, model, trial_id, attrs):
        if model is models.TrialSystemAttributeModel and not calls:  # the first result's transaction
            calls.append(trial_id)
            previous = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
            try:
                signal.setitimer(signal.ITIMER_REAL, 0.01)  # goes off while SQLite counts, raised as it returns
                conn.exec_driver_sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                                     "WHERE x < 3000000) SELECT count(*) FROM c").all()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        return real(rdb, conn, model, trial_id, attrs)

    monkeypatch.setattr(optuna_rdb, "_upsert_attrs", interrupted_statement)
    with pytest.raises(KeyboardInterrupt):
        execute_stage(Execution(url, progress="quiet"), coarse_stage("s", RUN, DEFAULT_SPACE, 3, seed=0))
    study = _study(url, "s/coarse")
    assert _states(study) == {"FAIL": 1, "WAITING": 3}
    assert study.get_trials(states=(TrialState.FAIL,))[0].user_attrs["stop_reason"] == "interrupted"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_a_finished_trials_result_is_written_keeps_the_result(url, monkeypatch, capsys, signum):
    # a Ctrl-C (or SIGTERM) that landed while a finished run's result was being written rolled it back: the trial
    # was failed as interrupted and its whole run done again; it waits for the transaction, then stops the command
    from optuna.storages._rdb import models

    from search.errors import Interrupted, forget_pending, raise_on
    from studies import optuna_rdb

    real = optuna_rdb._upsert_attrs
    sent = []

    def signal_inside_the_result(rdb, conn, model, trial_id, attrs):
        if model is models.TrialSystemAttributeModel and not sent:  # the first result's transaction
            sent.append(trial_id)
            os.kill(os.getpid(), signum)
        return real(rdb, conn, model, trial_id, attrs)

    monkeypatch.setattr(optuna_rdb, "_upsert_attrs", signal_inside_the_result)
    previous = raise_on(signal.SIGTERM, Interrupted)
    try:
        with pytest.raises(KeyboardInterrupt if signum == signal.SIGINT else Interrupted):
            execute_stage(Execution(url, progress="log"), coarse_stage("w", RUN, DEFAULT_SPACE, 3, seed=0))
    finally:
        signal.signal(signal.SIGTERM, previous)
        forget_pending()
    assert len(sent) == 1
    study = _study(url, "w/coarse")
    assert _states(study) == {"COMPLETE": 1, "WAITING": 2}
    (kept,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert kept.number == 0 and kept.user_attrs["stop_reason"] == "completed" and kept.value > 0
    lines = capsys.readouterr().err.splitlines()  # counted by the progress as it was written
    assert len(lines) == 1 and lines[0].startswith("w/coarse:0 new best ") and lines[0].endswith(" [1/3]")


@pytest.mark.parametrize("first, second, code", [(signal.SIGTERM, signal.SIGINT, 143),
                                                  (signal.SIGINT, signal.SIGTERM, 130)])
def test_two_signals_while_a_result_is_written_end_by_the_first_ones_code(run_cli, monkeypatch, first, second, code):
    # a SIGTERM then a Ctrl-C while a finished trial's result was written ended with 130, Ctrl-C's code: each was
    # acted on in turn once the write was over, Ctrl-C's last
    from optuna.storages._rdb import models

    from studies import optuna_rdb

    real = optuna_rdb._upsert_attrs
    sent = []

    def signals_inside_the_result(rdb, conn, model, trial_id, attrs):
        if model is models.TrialSystemAttributeModel and not sent:  # the first result's transaction
            sent.append(trial_id)
            os.kill(os.getpid(), first)
            os.kill(os.getpid(), second)
        return real(rdb, conn, model, trial_id, attrs)

    monkeypatch.setattr(optuna_rdb, "_upsert_attrs", signals_inside_the_result)
    result = run_cli("coarse", "--trials", "3", "--epochs", "1", "--train-size", "200", "--jobs", "1")
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines()[-1] == (f"{'terminated' if code == 143 else 'interrupted'}: the database is "
                                              "consistent; run the same command again to continue")
    study = _study("sqlite:///search.db", "digits/coarse")
    assert len(sent) == 1 and _states(study) == {"COMPLETE": 1, "WAITING": 2}  # the trial kept, as with one signal


def test_a_stage_run_outside_the_main_thread_records_its_results(url):
    # signals are held while a result is written; off the main thread, where no handler runs, there is nothing to
    # hold (signal.signal would refuse: "signal only works in main thread")
    import threading

    failed = []
    thread = threading.Thread(target=lambda: _run_or_note(failed, url))
    thread.start()
    thread.join()
    assert failed == []
    states = _states(_study(url, "th/coarse"))
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 2 and set(states) <= {"COMPLETE", "PRUNED"}


def _run_or_note(failed: list, url: str) -> None:
    try:
        execute_stage(Execution(url, progress="quiet"), coarse_stage("th", RUN, DEFAULT_SPACE, 2, seed=0))
    except BaseException as exc:  # noqa: BLE001  asserted in the main thread
        failed.append(repr(exc))


def test_the_same_command_after_an_interrupt_says_what_it_continues(url, monkeypatch, capsys):
    real = _interrupt_trial(monkeypatch, 4)
    stage = coarse_stage("c", RUN, DEFAULT_SPACE, 8, seed=0)
    with pytest.raises(KeyboardInterrupt):
        execute_stage(Execution(url, progress="log"), stage)
    capsys.readouterr()
    monkeypatch.setattr(stages_module, "run_trial", real)
    execute_stage(Execution(url, progress="log"), stage)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "continuing c/coarse: 3 of 8 trials finished, 1 failed (re-run)"
    assert len(lines) == 6 and lines[-1].endswith(" [8/8]")
    execute_stage(Execution(url, progress="log"), stage)  # complete: nothing to continue, nothing said
    assert capsys.readouterr().err == ""


def test_the_summary_says_what_became_of_each_failed_trial(url, monkeypatch, capsys):
    # "2 failed (an interrupted one is re-run)" where both were interrupted, and both re-run
    from search.cli.stages import failed_text, print_summary

    stage = coarse_stage("f", RUN, DEFAULT_SPACE, 6, seed=0)
    for k in (2, 3):
        real = _interrupt_trial(monkeypatch, k)
        with pytest.raises(KeyboardInterrupt):
            execute_stage(Execution(url, progress="quiet"), stage)
        monkeypatch.setattr(stages_module, "run_trial", real)
    summary = execute_stage(Execution(url, progress="quiet"), stage)
    assert (summary.counts["fail"], summary.failed_by_error) == (2, 0)
    capsys.readouterr()
    print_summary(summary)
    assert " ".join(capsys.readouterr().out.split()).startswith(
        "f/coarse: 6 complete, 0 pruned of 6; 2 failed (interrupted or killed, so re-run); 2 epochs a trial")
    assert failed_text(1, 1) == "by an error, not re-run"
    assert failed_text(3, 2) == "1 interrupted or killed, so re-run; 2 by errors, not re-run"


def test_the_summary_of_a_stage_whose_worker_was_killed_does_not_call_its_trial_interrupted(url, capsys):
    # "1 failed (interrupted, so re-run)" of a trial whose worker was killed with SIGKILL, which records nothing
    import socket
    import sys

    from search.cli.stages import print_summary
    from search.stages import create_stage
    from studies import optuna_rdb

    storage = open_storage(url)
    stage = coarse_stage("k", RUN, DEFAULT_SPACE, 3, seed=0)
    create_stage(storage, stage)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    optuna_rdb.claim_waiting_trial(storage, storage.get_study_id_from_name("k/coarse"), -1,
                                   {"worker": f"{socket.gethostname()}:{gone.pid}"})
    storage.engine.dispose()
    summary = execute_stage(Execution(url, progress="quiet"), stage)
    capsys.readouterr()
    print_summary(summary)
    assert " ".join(capsys.readouterr().out.split()).startswith(
        "k/coarse: 3 complete, 0 pruned of 3; 1 failed (interrupted or killed, so re-run); 2 epochs a trial")


def test_rerunning_an_interrupted_trial_names_its_copy(url, monkeypatch):
    # "has no stored config (it never started training)" of a trial cut in the middle of its training
    from click.testing import CliRunner

    from search.cli import cli

    real = _interrupt_trial(monkeypatch, 2)
    stage = coarse_stage("r", RUN, DEFAULT_SPACE, 3, seed=0)
    with pytest.raises(KeyboardInterrupt):
        execute_stage(Execution(url, progress="quiet"), stage)
    result = CliRunner().invoke(cli, ["train", "--from-trial", "r/coarse:1", "--storage", url])
    assert result.exit_code == 2 and result.stderr == (
        "error: --from-trial r/coarse:1: the trial has no stored config: it failed (interrupted); re-run as "
        "r/coarse:3\n")
    result = CliRunner().invoke(cli, ["train", "--from-trial", "r/coarse:2", "--storage", url])
    assert result.exit_code == 2 and result.stderr == (
        "error: --from-trial r/coarse:2: the trial has no stored config: state WAITING; it has not finished training\n")
    monkeypatch.setattr(stages_module, "run_trial", real)


def test_a_stage_with_a_trial_still_running_says_it_waits_for_its_heartbeat(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    counts = {"COMPLETE": 7, "PRUNED": 1, "FAIL": 0, "RUNNING": 1, "WAITING": 3}
    wrapped = continuing_notes("k/coarse", 12, counts, 10)[0].splitlines()
    assert max(map(len, wrapped)) <= 79 and wrapped[1].startswith("    ")  # as every other note on a terminal
    monkeypatch.setenv("COLUMNS", "200")
    counts = {"COMPLETE": 7, "PRUNED": 1, "FAIL": 0, "RUNNING": 1, "WAITING": 3}
    assert continuing_notes("k/coarse", 12, counts, 10) == (
        "continuing k/coarse: 8 of 12 trials finished; 1 running on another machine, or left by a killed one: "
        "re-run once its heartbeat is 20 s old",)
    # a second terminal on the same stage was told its neighbour's trial might be "left by a killed one"
    monkeypatch.setenv("COLUMNS", "300")
    assert continuing_notes("k/coarse", 12, {**counts, "RUNNING": 4}, 10, (2, 1, 1)) == (
        "continuing k/coarse: 8 of 12 trials finished; 2 running in other processes on this machine; 1 left by a "
        "process of this machine that is gone: re-run at once; 1 running on another machine, or left by a killed "
        "one: re-run once its heartbeat is 20 s old",)
    assert continuing_notes("k/coarse", 12, {**counts, "RUNNING": 1}, 10, (1, 0, 0)) == (
        "continuing k/coarse: 8 of 12 trials finished; 1 running in another process on this machine",)
    assert continuing_notes("k/coarse", 12, {**counts, "COMPLETE": 0, "PRUNED": 0, "RUNNING": 0}, 10) == ()


def test_a_trial_left_by_a_killed_process_of_this_machine_is_failed_and_re_run_at_once(url):
    # a re-run after kill -9 waited up to 2 heartbeat intervals (20 s) for the dead process's trial to go stale
    import os
    import socket
    import subprocess
    import sys

    from search.stages import create_stage, fail_trials_of_dead_workers, load_stage_study, running_trials_by_worker
    from studies import optuna_rdb

    storage = open_storage(url, heartbeat_interval=60)
    create_stage(storage, coarse_stage("dead", RUN, DEFAULT_SPACE, 4, seed=0))
    study_id = storage.get_study_id_from_name("dead/coarse")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    for worker in (f"{host}:{gone.pid}", f"{host}:{os.getpid()}", f"elsewhere:{gone.pid}", f"{host}:x"):
        optuna_rdb.claim_waiting_trial(storage, study_id, -1, {"worker": worker})
    study = load_stage_study(storage, "dead/coarse")
    # what the next command on the stage says of them: this live process's, the dead one's, the two others
    assert running_trials_by_worker(study) == (1, 1, 2)
    assert fail_trials_of_dead_workers(study) == [0]  # alive, another machine's, unreadable: left to the heartbeat
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "RUNNING", "RUNNING", "WAITING"]
    assert trials[4].system_attrs.get("retry_of") == 0  # its copy, as a stale trial's
    # why, written with the FAIL (it had no stop_reason, where an interrupted trial says "interrupted")
    assert trials[0].user_attrs["stop_reason"] == f"worker lost: its process {gone.pid} on this host is gone"
    assert "stop_reason" not in trials[4].user_attrs and "stop_reason" not in trials[1].user_attrs
    assert fail_trials_of_dead_workers(study) == []  # once
    storage.engine.dispose()


def test_a_trial_failed_for_a_lost_worker_has_its_log_line_in_the_process_that_failed_it(url, capsys):
    # search worker (and --jobs 1) failed a killed worker's trial and re-ran it without a word: only the bar's failed
    # count grew, where the watcher of --jobs N printed the trial and why
    import socket
    import sys

    from search.campaign import run_existing
    from search.stages import create_stage, load_stage_study
    from studies import optuna_rdb

    storage = open_storage(url, heartbeat_interval=60)
    create_stage(storage, coarse_stage("lost", RUN, DEFAULT_SPACE, 2, seed=0))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    optuna_rdb.claim_waiting_trial(storage, storage.get_study_id_from_name("lost/coarse"), -1,
                                   {"worker": f"{socket.gethostname()}:{gone.pid}"})
    summary = run_existing(Execution(url, jobs=1, progress="log"), load_stage_study(storage, "lost/coarse"))
    assert summary.counts["complete"] + summary.counts["pruned"] == 2 and summary.counts["fail"] == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("lost/coarse:", "    w"))]
    assert lines[:2] == ["lost/coarse:0 failed   -      [0/2]",
                         f"    worker lost: its process {gone.pid} on this host is gone"]
    assert [line.split()[0] for line in lines[2:]] == ["lost/coarse:1", "lost/coarse:2"]
    storage.engine.dispose()


def test_a_killed_process_s_trial_whose_heartbeat_is_stale_too_is_failed_as_its_process_gone(url, capsys):
    # search auto --jobs 2 killed with SIGKILL and run again 30 s later: "continuing c6/fine-1: ...; 3 left by a
    # process of this machine that is gone: re-run at once", then the parent's own trial failed as "worker lost: no
    # heartbeat for more than 20 s" and its worker's two as "its process N on this host is gone"
    import socket
    import sys

    from search.campaign import run_existing
    from search.stages import create_stage, load_stage_study
    from studies import optuna_rdb

    storage = open_storage(url, heartbeat_interval=1)
    create_stage(storage, coarse_stage("stale", RUN, DEFAULT_SPACE, 1, seed=0))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    optuna_rdb.claim_waiting_trial(storage, storage.get_study_id_from_name("stale/coarse"), -1,
                                   {"worker": f"{socket.gethostname()}:{gone.pid}"})
    time.sleep(2.5)  # its heartbeat older than 2 x 1 s: stale as well
    run_existing(Execution(url, jobs=1, progress="log"), load_stage_study(storage, "stale/coarse"))
    lost = f"worker lost: its process {gone.pid} on this host is gone"
    assert _study(url, "stale/coarse").trials[0].user_attrs["stop_reason"] == lost
    assert f"\n    {lost}\n" in capsys.readouterr().err
    storage.engine.dispose()


@pytest.mark.parametrize("heartbeat", [None, 0, 2.5, True])
def test_an_execution_without_heartbeats_is_refused(url, heartbeat):
    # Execution(heartbeat=None) made a stage whose trials carried no heartbeat: one whose worker was lost on another
    # machine stayed RUNNING for ever, and every command on the stage waited for it
    from search.errors import SearchError

    with pytest.raises(SearchError) as info:
        Execution(url, heartbeat=heartbeat)
    assert str(info.value) == f"--heartbeat must be a whole number of seconds >= 1, got {heartbeat!r}"
    assert info.value.exit_code == 2


def test_a_stage_stored_without_a_heartbeat_runs_with_the_commands_one(url, monkeypatch):
    # a stage created with heartbeats off (a storage opened without an interval) kept them off for every command that
    # ran it: a trial of a worker lost on another machine was never re-run, and the stage never finished
    from search import campaign
    from search.stages import create_stage

    storage = open_storage(url)  # no heartbeat interval
    create_stage(storage, coarse_stage("nb", RUN, DEFAULT_SPACE, 2, seed=0))
    assert storage.get_study_user_attrs(storage.get_study_id_from_name("nb/coarse"))["heartbeat"] is None
    storage.engine.dispose()
    given = []
    real = campaign.run_stage_processes
    monkeypatch.setattr(campaign, "run_stage_processes",
                        lambda url, name, dataset, jobs, heartbeat, **kw: given.append(heartbeat)
                        or real(url, name, dataset, jobs, heartbeat, **kw))
    summary = execute_stage(Execution(url, heartbeat=7, progress="quiet"), coarse_stage("nb", RUN, DEFAULT_SPACE, 2,
                                                                                        seed=0))
    assert given == [7] and summary.counts["complete"] + summary.counts["pruned"] == 2


def test_a_trial_beside_a_live_worker_of_this_host_runs_on_its_share_of_the_cores(url, monkeypatch):
    # a `search worker` beside a `search coarse --jobs 1` on 2 cores: each ran NumPy's 2 BLAS threads, 2.2-2.4 s a
    # trial, where one thread each took 0.43 s
    import socket
    import sys

    from threadpoolctl import threadpool_limits

    from search.stages import blas_threads, create_stage, run_worker
    from studies import optuna_rdb

    seen: list[int | None] = []
    real = stages_module.run_trial
    monkeypatch.setattr(stages_module, "run_trial", lambda *a, **k: seen.append(blas_threads()) or real(*a, **k))
    cores = {"n": 2}
    monkeypatch.setattr(stages_module, "usable_cores", lambda: cores["n"])
    storage = open_storage(url, heartbeat_interval=60)
    for name in ("side", "other"):
        create_stage(storage, coarse_stage(name, RUN, DEFAULT_SPACE, 14, seed=0))
    side, other = (storage.get_study_id_from_name(f"{name}/coarse") for name in ("side", "other"))
    dataset = RUN.load()
    host = socket.gethostname()
    live = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    def next_trial(beside: list[str], stage_id: int = side) -> None:
        for worker in beside:
            optuna_rdb.claim_waiting_trial(storage, stage_id, -1, {"worker": worker})
        assert run_worker(storage, "side/coarse", dataset, max_trials=1).ran == 1

    try:
        with threadpool_limits(2, user_api="blas"):  # NumPy's own on 2 cores
            next_trial([])  # alone: as it is
            # not beside it: another host's trial, a process of this host that is gone (failed)
            next_trial([f"elsewhere:{live[0].pid}", f"{host}:{gone.pid}"])
            # beside a live process of this host running another campaign's stage: two `search coarse --jobs 1` on
            # campaigns a and b each took 2.7-5.2 s a trial on 2 threads, 0.75-1.2 s on 1
            next_trial([f"{host}:{live[0].pid}"], other)
            next_trial([f"{host}:{live[0].pid}"])  # beside a live worker of this host: 2 cores // 2 processes
            cores["n"] = 16
            next_trial([f"{host}:{live[1].pid}"])  # 16 // 3, at most its own 2
            cores["n"] = 6
            next_trial([f"{host}:{live[1].pid}"])  # processes, not trials: 6 // 3 (6 // 4 is 1)
            cores["n"] = 2
            next_trial([])  # 2 // 3, at least 1
            assert blas_threads() == 2  # given back after the trial
        with threadpool_limits(1, user_api="blas"):  # a worker of --jobs N: 1, as alone
            cores["n"] = 16
            next_trial([])
    finally:
        for p in live:
            p.kill()
            p.wait()
    assert seen == [2, 2, 1, 1, 2, 2, 1, 1]
    lost = f"worker lost: its process {gone.pid} on this host is gone"
    ran = sorted((t for t in _study(url, "side/coarse").get_trials()
                  if t.state.is_finished() and t.user_attrs.get("stop_reason") != lost), key=lambda t: t.number)
    assert [t.user_attrs["blas_threads"] for t in ran] == seen  # what it ran with (train --from-trial reruns so)
    storage.engine.dispose()


def test_a_worker_of_one_blas_thread_claims_without_reading_the_running_trials_workers(url, monkeypatch):
    # a --jobs N worker (1 thread) runs each trial on 1 thread whoever runs beside it: the query of the RUNNING
    # trials' workers before each claim cost 14 ms on SQLite and 7 ms on PostgreSQL (a claim: 0.9 ms) on a stage of
    # 100,000 trials, for nothing
    from search.stages import create_stage, load_stage_study, run_worker, trial_blas_threads
    from studies import optuna_rdb

    storage = open_storage(url, heartbeat_interval=60)
    create_stage(storage, coarse_stage("single", RUN, DEFAULT_SPACE, 2, seed=0))
    study = load_stage_study(storage, "single/coarse")
    queried: list[str] = []
    real = optuna_rdb.trial_user_attr_values
    monkeypatch.setattr(optuna_rdb, "trial_user_attr_values", lambda *a, **k: queried.append(a[2]) or real(*a, **k))
    assert trial_blas_threads(study, 1) == 1 and trial_blas_threads(study, None) is None and queried == []
    assert trial_blas_threads(study, 2) == 2 and queried == ["worker"]  # alone: its own
    monkeypatch.setattr(stages_module, "blas_threads", lambda: 1)
    queried.clear()
    assert run_worker(storage, "single/coarse", RUN.load()).ran == 2 and queried == []
    # a worker of 2 threads reads them once per BLAS_READ_SECONDS, not before each of its 3 trials (on 80 trials a
    # read took 1.3 ms; on 100,000, 14 ms a trial)
    create_stage(storage, coarse_stage("more", RUN, DEFAULT_SPACE, 3, seed=0))
    monkeypatch.setattr(stages_module, "blas_threads", lambda: 2)
    monkeypatch.setattr(stages_module, "BLAS_READ_SECONDS", 3600.0)
    assert run_worker(storage, "more/coarse", RUN.load()).ran == 3 and queried == ["worker"]


def test_a_trial_of_a_killed_worker_its_parent_has_not_reaped_yet_is_failed_at_once(url):
    # search coarse --jobs 3 runs trials in its own process and reaps no worker meanwhile: one killed with SIGKILL
    # (the OOM killer) stayed a zombie, which kill(pid, 0) finds, and its trial waited 2 heartbeats (10 min with
    # --heartbeat 300) where it is failed and re-run at once
    import signal
    import socket
    import sys

    from search.stages import create_stage, fail_trials_of_dead_workers, load_stage_study, process_alive
    from studies import optuna_rdb

    storage = open_storage(url, heartbeat_interval=300)
    create_stage(storage, coarse_stage("zombie", RUN, DEFAULT_SPACE, 2, seed=0))
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_alive(killed.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(f"/proc/{killed.pid}/stat") as f:
            assert f.read().rpartition(")")[2].split()[0] == "Z"  # not reaped: a zombie
        assert not process_alive(killed.pid)
        study_id = storage.get_study_id_from_name("zombie/coarse")
        optuna_rdb.claim_waiting_trial(storage, study_id, -1, {"worker": f"{socket.gethostname()}:{killed.pid}"})
        study = load_stage_study(storage, "zombie/coarse")
        assert fail_trials_of_dead_workers(study) == [0]
        assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING", "WAITING"]
    finally:
        killed.wait()
        storage.engine.dispose()


def test_an_interrupted_trial_of_one_process_has_its_log_line(url, monkeypatch, capsys):
    _interrupt_trial(monkeypatch, 3)
    stage = coarse_stage("l", RUN, {"lr": FloatRange(1e-3, 1e-2, log=True)}, 4, seed=0)
    with pytest.raises(KeyboardInterrupt):
        execute_stage(Execution(url, jobs=1, progress="log"), stage)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and lines[0].startswith("l/coarse:0 new best ") and lines[1].startswith("l/coarse:1 ")
    assert lines[2] == "l/coarse:2 interrupted -      [2/4]"  # stopped before its params were drawn


def test_an_interrupt_whose_record_the_database_refuses_leaves_the_trial_to_the_next_run(url, monkeypatch):
    monkeypatch.setattr(stages_module, "run_trial", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))

    def locked(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(stages_module, "_fail_and_requeue", locked)
    stage = coarse_stage("l", RUN, DEFAULT_SPACE, 3, seed=0)
    with pytest.raises(KeyboardInterrupt):  # the interrupt, not the database's error
        execute_stage(Execution(url, progress="quiet", heartbeat=1), stage)
    assert _states(_study(url, "l/coarse")) == {"RUNNING": 1, "WAITING": 2}
    monkeypatch.undo()
    time.sleep(2.5)  # its heartbeat is stale after 2 intervals: the next run fails it and runs its copy
    execute_stage(Execution(url, progress="quiet", heartbeat=1), stage)
    states = _states(_study(url, "l/coarse"))
    assert states["COMPLETE"] + states.get("PRUNED", 0) == 3 and states["FAIL"] == 1 and "RUNNING" not in states


def test_auto_jobs_never_start_more_workers_than_trials_left_or_cores():
    import os

    cores = len(os.sched_getaffinity(0))
    auto = Execution("sqlite:///unused.db", jobs=None)
    assert auto.processes(1) == 1
    assert auto.processes(1000) == cores
    assert Execution("sqlite:///unused.db", jobs=3).processes(1) == 3  # an explicit number is obeyed


def test_a_tpe_stage_samples_from_the_trials_finished_so_far(url):
    # TPE's first 10 trials are its random startup draws, the same as a random stage's with the same seed;
    # from the 11th it models the finished trials, so its points differ (a stale trial cache kept them random)
    for sampler in ("random", "tpe"):
        stage = coarse_stage(sampler, RUN, DEFAULT_SPACE, 13, seed=4, sampler=sampler)
        execute_stage(Execution(url, jobs=1, progress="quiet"), stage)
    random_points, tpe_points = ([t.params for t in _study(url, f"{s}/coarse").get_trials()] for s in ("random", "tpe"))
    assert tpe_points[:10] == random_points[:10]
    assert all(t != r for t, r in zip(tpe_points[10:], random_points[10:]))


def test_a_tpe_stage_draws_from_its_finished_trials_as_from_optunas_trial_cache(tmp_path, monkeypatch):
    # a worker keeps the finished trials TPE reads, reading only those finished since the last trial, where
    # Optuna's cache read every WAITING trial of the stage's budget again for each trial: the same draws, also with
    # a dimension only some trials use (momentum, with optimizer momentum) in the intersection TPE models
    from search.space import parse_dimension
    from studies import optuna_rdb

    space = {name: parse_dimension(name, spec) for name, spec in
             (("lr", "1e-3:1e-1"), ("optimizer", "adam,momentum"), ("momentum", "0.5:0.99"))}
    points = []
    for cached in (True, False):
        if not cached:
            monkeypatch.setattr(optuna_rdb, "cache_finished_trials",
                                lambda study, finished: optuna_rdb.forget_cached_trials(study))
        url = f"sqlite:///{tmp_path / f'{cached}.db'}"
        execute_stage(Execution(url, jobs=1, progress="quiet"),
                      coarse_stage("c", RUN, space, 14, seed=2, sampler="tpe"))
        points.append([t.params for t in _study(url, "c/coarse").get_trials()])
    assert len(points[0]) == 14 and points[0] == points[1]


def test_a_qmc_trial_asked_while_the_first_still_runs_gets_the_space_optunas_cache_gives(tmp_path):
    # QMC reads the RUNNING trials until one has finished: the space of the first trial, which a second worker's
    # trial draws from the sequence in; a list of finished trials alone gave it none (drawn at random instead)
    from studies import optuna_rdb

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'q.db'}"), study_name="q")
    study.ask().suggest_float("lr", 1e-3, 1e-1, log=True)  # the first worker's trial, running
    second = study.ask()
    frozen = optuna_rdb.study_storage(study).get_trial(optuna_rdb.trial_id(second))
    spaces = []
    for cached in (True, False):
        if cached:
            optuna_rdb.cache_finished_trials(study, optuna_rdb.FinishedTrials())
        else:
            optuna_rdb.forget_cached_trials(study)
        spaces.append(optuna.samplers.QMCSampler(seed=0).infer_relative_search_space(study, frozen))
    assert spaces[0] == spaces[1] == {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)}


def test_a_tpe_workers_history_keeps_the_trials_a_lost_read_left_out(url, monkeypatch):
    # the look for finished trials moved past them before they were read: a read the database lost (retried by the
    # worker) left them out of TPE's history for good
    from search.stages import create_stage, load_stage_study
    from studies import optuna_rdb

    storage = open_storage(url)
    create_stage(storage, coarse_stage("h", RUN, DEFAULT_SPACE, 6, seed=0, sampler="tpe"))
    study = load_stage_study(storage, "h/coarse")
    study_id = optuna_rdb.study_id(study)
    for number in (0, 1):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    history, by_id, calls = optuna_rdb.FinishedTrials(), optuna_rdb.trials_by_id, []

    def lost_once(st, ids):
        calls.append(list(ids))
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("database is locked"))
        return by_id(st, ids)

    monkeypatch.setattr(optuna_rdb, "trials_by_id", lost_once)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        optuna_rdb.cache_finished_trials(study, history)
    optuna_rdb.cache_finished_trials(study, history)  # as retry_storage takes it again
    assert [t.number for t in history.trials] == [0, 1] and len(calls[1]) == 2
    assert [t.number for t in study._thread_local.cached_all_trials] == [0, 1]
    storage.engine.dispose()


@pytest.mark.parametrize("bad, message", [
    ({"max_fine": -1}, "max_fine must be >= 0, got -1"),  # ran as '--max-fine -1 stages ran'
    ({"top": 0}, "top must be >= 1, got 0"),  # refused only after the coarse stage had run
    ({"edge": 2.0}, "edge must be in (0, 0.5], got 2.0"),
    ({"fine_epochs": 0}, "fine_epochs must be >= 1 (or None: doubling), got 0"),
    ({"repeats": 0}, "repeats must be >= 1, got 0"),  # was '--trials must be >= 1, got 0', after two stages
    ({"retrains": 0}, "retrains must be >= 1, got 0"),  # was a test score of nan and numpy's 'Mean of empty slice'
    ({"promote": -1}, "promote must be >= 0, got -1"),
])
def test_run_auto_refuses_bad_arguments_before_writing_anything(tmp_path, bad, message):
    from search.campaign import run_auto
    from search.errors import SearchError

    args = {"max_fine": 1, "top": 2, "edge": 0.1, "fine_epochs": None, **bad}
    coarse = coarse_stage("auto", RUN, DEFAULT_SPACE, n_trials=2, seed=0)
    with pytest.raises(SearchError) as raised:
        run_auto(Execution(f"sqlite:///{tmp_path / 'search.db'}", progress="quiet"), coarse, **args)
    assert str(raised.value) == f"run_auto: {message}"
    assert not (tmp_path / "search.db").exists()


@pytest.mark.parametrize("change, message", [
    # a text spec where a dimension belongs: AttributeError from inside space.py, after the study was created
    ({"space": {"lr": "1e-4:1"}}, "space['lr'] must be a FloatRange, IntRange or Choice, got '1e-4:1' "
                                  "(search.space.parse_dimension('lr', '1e-4:1') reads a spec)"),
    ({"n_trials": "5"}, "--trials must be a whole number, got '5'"),  # was TypeError: '<' not supported ...
    ({"n_trials": 2.5}, "--trials must be a whole number, got 2.5"),  # was accepted
    ({"seed": "x"}, "--seed must be a whole number, got 'x'"),  # was accepted
])
def test_a_stage_of_the_wrong_types_is_refused_before_the_database_is_touched(tmp_path, change, message):
    from search.errors import SearchError

    args = {"space": DEFAULT_SPACE, "n_trials": 2, "seed": 0, **change}
    with pytest.raises(SearchError) as raised:
        stage = coarse_stage("typed", RUN, args["space"], n_trials=args["n_trials"], seed=args["seed"])
        execute_stage(Execution(f"sqlite:///{tmp_path / 'search.db'}", progress="quiet"), stage)
    assert str(raised.value) == message
    assert not (tmp_path / "search.db").exists()


@pytest.mark.parametrize("args, message", [
    ({"progress": "nope"}, "progress must be one of auto, bar, log, quiet, got 'nope'"),  # ran with no progress
    ({"jobs": "2"}, "--jobs must be a whole number >= 1 (or None: auto), got '2'"),  # was TypeError
    ({"jobs": 0}, "--jobs must be a whole number >= 1 (or None: auto), got 0"),
])
def test_an_execution_with_bad_arguments_is_one_error(args, message):
    from search.errors import SearchError

    with pytest.raises(SearchError) as raised:
        Execution("sqlite:///search.db", **args)
    assert str(raised.value) == message


def test_a_stage_refused_for_other_points_of_the_same_count_names_them():
    # "... and this command gives ; run it with those settings": points of the same count were not named
    from dataclasses import replace

    existing = coarse_stage("c", RUN, {"lr": FloatRange(1e-4, 1e-1)}, 4, 0, "random", 3.0, "none")
    existing = replace(existing, stage="promote-1", points=({"lr": 0.01}, {"lr": 0.02}))
    assert stages_module._differences(existing, replace(existing, points=({"lr": 0.01}, {"lr": 0.03}))) == (
        "points 2 others where it has 2")
    assert stages_module._differences(existing, replace(existing, points=({"lr": 0.01},))) == (
        "points 1 where it has 2")


def test_fine_whose_promoted_runs_all_failed_says_how_they_ended():
    # once "(c/coarse's best configurations re-run at 4 epochs: )": failed runs were not counted
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from search.errors import SearchFailed

    parent = coarse_stage("c", RUN, {"lr": FloatRange(1e-4, 1e-1)}, 2, 0)
    parent_study = optuna.create_study(study_name=parent.name, direction="maximize")
    for key, value in parent.attrs().items():
        parent_study.set_user_attr(key, value)
    dist = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    for lr, value in ((0.01, 0.9), (0.02, 0.8)):
        parent_study.add_trial(create_trial(params={"lr": lr}, distributions=dist, value=value))
    check = stages_module.promotion_stage(parent_study, None, 2)
    promoted = optuna.create_study(study_name=check.name, direction="maximize")
    for key, value in check.attrs().items():
        promoted.set_user_attr(key, value)
    for lr in (0.01, 0.02):
        promoted.add_trial(create_trial(params={"lr": lr}, distributions=dist, state=TrialState.FAIL))
    with pytest.raises(SearchFailed) as err:
        stages_module.refined_stage(parent_study, 5, 0.1, None, None, promoted)
    assert str(err.value) == ("stage c/promote-1 has no completed trials to refine the ranges from (c/coarse's best "
                              "configurations re-run at 4 epochs: 2 failed); --promote 0 refines on c/coarse's own "
                              "runs")


def test_the_trials_of_a_large_stage_are_watched_without_reading_the_waiting_ones(url, monkeypatch):
    # through the study (Optuna's cache) every look read every WAITING trial: 1,000,000 of them took 320 s and 4.9 GB
    # before the first trial line of --jobs 2
    from search.stages import create_stage, fail_trials_of_dead_workers, load_stage_study
    from search.workers import _FinishedTrials
    from studies import optuna_rdb

    storage = open_storage(url)
    create_stage(storage, coarse_stage("big", RUN, DEFAULT_SPACE, 20_000, seed=0))
    study_id = storage.get_study_id_from_name("big/coarse")

    def finish(number: int, state: TrialState) -> None:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        storage.set_trial_state_values(trial_id, state, [0.5] if state == TrialState.COMPLETE else None)

    finish(0, TrialState.COMPLETE)
    finish(1, TrialState.PRUNED)
    study = load_stage_study(storage, "big/coarse")
    read, reported = [], []
    by_id = optuna_rdb.trials_by_id
    monkeypatch.setattr(optuna_rdb, "trials_by_id", lambda st, ids: read.append(list(ids)) or by_id(st, ids))

    def every_trial(*args, **kwargs):
        raise AssertionError("every trial of the stage was read")

    real = type(storage).get_all_trials
    monkeypatch.setattr(type(storage), "get_all_trials", lambda self, study_id, deepcopy=True, states=None:
                        every_trial() if states is None or TrialState.WAITING in states else
                        real(self, study_id, deepcopy, states))
    monkeypatch.setattr(type(study._storage), "get_all_trials", every_trial)
    watcher = _FinishedTrials(study, reported.append)
    assert read == [] and watcher.new == 0  # the trials finished before: not reported
    finish(5, TrialState.COMPLETE)
    finish(2, TrialState.FAIL)
    finish(3, TrialState.PRUNED)
    watcher.poll()
    assert [t.number for t in reported] == [2, 3, 5] and [len(ids) for ids in read] == [3]
    watcher.poll()
    finish(4, TrialState.COMPLETE)
    watcher.poll()
    assert [t.number for t in reported] == [2, 3, 5, 4] and [len(ids) for ids in read] == [3, 1]
    assert watcher.new == 4 and watcher.look.floor == storage.get_trial_id_from_study_id_trial_number(study_id, 6)
    assert fail_trials_of_dead_workers(study) == []  # its RUNNING trials read from the database alone
    storage.engine.dispose()


def test_a_stage_is_summarised_from_counts_and_its_best_trials_alone(url, monkeypatch):
    # summarising a finished 100,000-trial stage read every trial: 115 s and 5 GB
    from search.campaign import summarise
    from search.stages import create_stage, load_stage_study

    storage = open_storage(url)
    create_stage(storage, coarse_stage("sum", RUN, DEFAULT_SPACE, 2_000, seed=0))
    study_id = storage.get_study_id_from_name("sum/coarse")
    for number, state, value, seconds in ((0, TrialState.COMPLETE, 0.5, 1.25), (1, TrialState.COMPLETE, 0.9, 2.0),
                                          (2, TrialState.PRUNED, 0.95, 0.5), (3, TrialState.COMPLETE, 0.9, "x"),
                                          (4, TrialState.FAIL, None, None), (5, TrialState.COMPLETE, 0.7, 0.25)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        storage.set_trial_param(trial_id, "lr", 10.0 ** -number,
                                optuna.distributions.FloatDistribution(1e-6, 1, log=True))
        if seconds is not None:
            storage.set_trial_user_attr(trial_id, "seconds", seconds)
        storage.set_trial_state_values(trial_id, state, None if value is None else [value])
    study = load_stage_study(storage, "sum/coarse")

    def every_trial(*args, **kwargs):
        raise AssertionError("every trial of the stage was read")

    monkeypatch.setattr(type(storage), "get_all_trials", every_trial)
    monkeypatch.setattr(type(study._storage), "get_all_trials", every_trial)
    summary = summarise(study, False, [], top=3)
    assert summary.counts == {"running": 0, "complete": 4, "pruned": 1, "fail": 1, "waiting": 1994}
    assert [(row["number"], row["value"]) for row in summary.top] == [(1, 0.9), (3, 0.9), (5, 0.7)]  # ties: earlier
    assert (summary.best_value, summary.best_params) == (0.9, {"lr": 0.1})
    assert summary.training_seconds == 4.0  # a text "seconds" is not added
    storage.engine.dispose()


def test_one_trial_of_a_large_stage_is_read_alone(url, monkeypatch):
    # search explain and train --from-trial read every trial of the stage to find one: 150 s on 100,000
    from search.errors import SearchError
    from search.stages import create_stage, load_trial

    storage = open_storage(url)
    create_stage(storage, coarse_stage("one", RUN, DEFAULT_SPACE, 2_000, seed=0))

    def every_trial(*args, **kwargs):
        raise AssertionError("every trial of the stage was read")

    monkeypatch.setattr(type(storage), "get_all_trials", every_trial)
    trial, stage = load_trial(storage, "one/coarse", 1_999)
    assert (trial.number, trial.state, stage.n_trials) == (1_999, TrialState.WAITING, 2_000)
    with pytest.raises(SearchError, match="^study one/coarse has no trial 2000: its trials are 0 to 1999$"):
        load_trial(storage, "one/coarse", 2_000)
    storage.engine.dispose()


def test_refinement_reads_an_underfitting_trial_whose_loss_still_falls_as_still_learning():
    def trial(labels, fall, where="system"):
        numbers = {"late_loss_fall": fall, "late_loss_limit": 0.03}
        attrs = {"diagnosis": labels} | ({"diagnosis_numbers": numbers} if where == "user" else {})
        return optuna.trial.create_trial(value=0.8, params={}, distributions={}, user_attrs=attrs,
                                         system_attrs={"diagnosis_numbers": numbers} if where == "system" else {})

    assert stages_module.refinement_labels(trial(["underfitting"], 0.103)) == ("underfitting", "still_learning")
    assert stages_module.refinement_labels(trial(["underfitting"], 0.103, "user")) == ("underfitting", "still_learning")
    assert stages_module.refinement_labels(trial(["underfitting"], 0.019)) == ("underfitting",)  # levelled off
    assert stages_module.refinement_labels(trial(["healthy"], 0.103)) == ("healthy",)
    assert stages_module.refinement_labels(trial(["underfitting"], 0.103, "none")) == ("underfitting",)


def test_a_process_of_another_user_whose_proc_files_are_hidden_is_alive(monkeypatch):
    # /proc mounted with hidepid=1 or 2 hides another user's /proc/PID/stat from this one: kill(pid, 0) says the
    # process exists (EPERM), and it was taken for gone, its worker's running trial failed and run again
    import builtins
    import os

    from search.stages import process_alive

    def denied(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    real_open = builtins.open

    def hidden(file, *args, **kwargs):
        if str(file) == "/proc/4242/stat":
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "kill", denied)
    monkeypatch.setattr(builtins, "open", hidden)
    assert process_alive(4242) is True


def test_run_auto_from_python_shows_the_data_warnings_search_auto_shows(tmp_path, capsys):
    """The README's snippet on raw digits (0..16) in an .npz said nothing of the scales `search auto` warns of."""
    import numpy as np

    from search.campaign import run_auto

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)) * np.array([0.01, 1.0, 1.0, 10.0])
    np.savez(tmp_path / "mine.npz", X=X, y=np.arange(200) % 2)
    base = RunConfig(data=DataSpec(str(tmp_path / "mine.npz"))).with_params({"train.epochs": 1})
    stage = coarse_stage("mine", base, {"lr": FloatRange(1e-3, 1e-2)}, n_trials=1, seed=0)
    run_auto(Execution(f"sqlite:///{tmp_path / 'search.db'}", progress="log"), stage, max_fine=0, top=1,
             edge=0.1, fine_epochs=None, repeats=1, retrains=1)
    err = capsys.readouterr().err
    assert err.count("warning: features on very different scales: std from") == 1
    assert "try --preprocess standardize" in err
