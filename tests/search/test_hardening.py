"""Issue 9: foreign studies, storage failures mid-stage, orphaned workers, spawn without a main guard, TPE seeds."""
from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import sqlalchemy

from engine.data import DataSpec
from search.campaign import DEFAULT_SPACE, Execution, coarse_stage, execute_stage
from search.config import RunConfig
from search.progress import Progress
from search.stages import STORAGE_OUTAGE, STORAGE_RETRY_ENV, StorageLost
from tests.search.conftest import one_line_error
from search.workers import UNGUARDED_MAIN
from studies import optuna_rdb
from tests.search.procs import LONG, SMALL, Budget, budget, start, stopped, training, wait_for

STAGE = "digits/coarse"


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


@pytest.mark.parametrize("command", ["coarse", "auto"])
def test_a_refused_stage_command_leaves_a_plain_optuna_file_byte_for_byte(run_cli, tmp_path, url, command):
    optuna.create_study(storage=url, study_name=STAGE)  # plain Optuna's file: rollback journal, no WAL
    path = tmp_path / "search.db"
    before = path.read_bytes()

    result = run_cli(command, *SMALL, "--trials", "2", "--storage", url)

    one_line_error(result, "study digits/coarse was not created by this service; use another --campaign")
    assert path.read_bytes() == before  # it was switched to WAL (header bytes 18-19: 1 -> 2) when opened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.db"]  # no -wal, no -shm


@pytest.mark.parametrize("command", [("explain", "plain:0"), ("train", "--from-trial", "plain:0")])
def test_a_foreign_study_named_for_a_trial_is_not_called_half_created(run_cli, url, command):
    # the message was "stage plain was never fully created (its creator stopped while enqueuing trials)"
    study = optuna.create_study(storage=url, study_name="plain")
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=2)
    before = _snapshot(url, "plain")

    result = run_cli(*command, "--storage", url)

    line = one_line_error(result)
    assert line == "error: study plain was not created by this service"
    assert _snapshot(url, "plain") == before


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
    params_failures, finish_failures = {"left": 3}, {"left": 3}
    buffered = optuna_rdb.BufferedTrialStorage
    monkeypatch.setattr(buffered, "commit_params", _failing(buffered.commit_params, params_failures))
    monkeypatch.setattr(buffered, "finish", _failing(buffered.finish, finish_failures))

    summary = _run(url, 10)

    assert params_failures["left"] == finish_failures["left"] == 0  # the faults did happen
    final = budget(url, STAGE)
    # every write was retried until the disk had room again: no trial lost, none failed, none counted twice
    assert final.finished == 10 and final.states["RUNNING"] == final.states["WAITING"] == 0
    assert final.states["FAIL"] == 0 and final.problems() == []
    assert summary.errors == []


def test_a_failing_database_is_said_once_as_its_retries_start_and_once_as_it_works_again(url, monkeypatch, capsys):
    # retried silently: with the server stopped mid-stage, neither a command nor a worker said anything
    failures = {"left": 3}
    buffered = optuna_rdb.BufferedTrialStorage
    monkeypatch.setattr(buffered, "commit_params", _failing(buffered.commit_params, failures))
    monkeypatch.setenv(STORAGE_RETRY_ENV, "30")
    monkeypatch.setenv("COLUMNS", "80")
    _run(url, 3)
    assert failures["left"] == 0
    said = capsys.readouterr().err.splitlines()
    # wrapped as the notes beside it (a terminal split its words: "the database server closed the co" / "nnection")
    assert said[:2] == ["database disk full, retrying for up to 30 s: the disk holding the database is",
                        "    full: free some space (database or disk is full)"]
    assert said[2] in ("database working again after 0 s", "database working again after 1 s")  # 0.7 s of waits
    assert len(said) == 3


def test_a_failing_database_is_said_above_the_progress_bar(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    stream = io.StringIO()
    progress = Progress("digits/coarse", 4, mode="bar", stream=stream)
    STORAGE_OUTAGE.failing(DISK_FULL)
    STORAGE_OUTAGE.failing(DISK_FULL)  # the same outage: said once
    STORAGE_OUTAGE.working()
    progress.close()
    lines = stream.getvalue().split("\n")
    # each on a line of its own, the bar cleared before it ("\r" then spaces: tqdm) and drawn again after it
    assert [line.split("\r")[-1] for line in lines[:3]] == [
        "database disk full, retrying for up to 60 s: the disk holding the database is",
        "    full: free some space (database or disk is full)", "database working again after 0 s"]
    assert lines[3].startswith("\rdigits/coarse: 0/4 |") and lines[4] == ""
    assert STORAGE_OUTAGE.say is not progress._say  # its own stream no longer used once closed


@pytest.mark.parametrize("driver, said", [
    # every failure was "database unreachable", and a full disk's "run again" was said while it was retried
    (sqlite3.OperationalError("database or disk is full"), "database disk full, retrying for up to 60 s: the disk "
     "holding the database is full: free some space (database or disk is full)"),
    (sqlite3.OperationalError("database is locked"), "database locked, retrying for up to 60 s: the database is "
     "locked: another process has held its write lock too long (database is locked)"),
    (Exception('connection to server at "db", port 5432 failed: Connection refused'), "database unreachable, "
     'retrying for up to 60 s: cannot reach the database server: is it running, and are the host, port and name '
     'right? (connection to server at "db", port 5432 failed: Connection refused)'),
    (Exception("server closed the connection unexpectedly"), "database unreachable, retrying for up to 60 s: the "
     "database server closed the connection (stopped or restarted?) (server closed the connection unexpectedly)"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "database failing, retrying for up to 60 s: "
     "the database is read-only: it cannot be written here (attempt to write a readonly database)"),
])
def test_a_failing_database_is_said_as_what_is_wrong_with_it(driver, said, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the lines unwrapped
    STORAGE_OUTAGE.failing(sqlalchemy.exc.OperationalError("INSERT", {}, driver))
    STORAGE_OUTAGE.working()
    again = "reachable again" if said.startswith("database unreachable") else "working again"
    assert capsys.readouterr().err.splitlines() == [said, f"database {again} after 0 s"]


def test_a_disk_full_for_longer_than_the_retry_period_stops_the_worker_and_the_next_run_completes(url, monkeypatch):
    monkeypatch.setenv(STORAGE_RETRY_ENV, "0")
    failures = {"left": 10**9}
    buffered = optuna_rdb.BufferedTrialStorage
    monkeypatch.setattr(buffered, "finish", _failing(buffered.finish, failures))

    with pytest.raises(StorageLost, match="the disk holding the database is full"):
        _run(url, 4, heartbeat=1)

    after = budget(url, STAGE)
    assert after.states["RUNNING"] == 1 and after.states["WAITING"] == 3 and after.states["FAIL"] == 0
    failures["left"] = 0  # space was freed
    _run(url, 4, heartbeat=1)  # the stale RUNNING trial is failed by its heartbeat and re-run once
    final = budget(url, STAGE)
    assert final.finished == 4 and final.states["RUNNING"] == final.states["WAITING"] == 0
    assert final.states["FAIL"] == 1 and len(final.retries) == 1 and final.problems() == []


# --------------------------------------------------------------------------- item 11: heartbeat, deleted database file
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # the heartbeat thread's OverflowError
def test_a_huge_heartbeat_interval_runs_the_stage(url):
    summary = _run(url, 3, heartbeat=999_999_999_999)
    final = budget(url, STAGE)
    assert final.finished == 3 and len(final.trials) == 3 and summary.errors == []


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_sqlite_file_deleted_mid_stage_stops_the_worker_without_a_new_empty_file(tmp_path, url, jobs):
    db = tmp_path / "search.db"
    # with two workers, trials of about a second: the file goes while the command's own process trains and
    # the thread that reports the others' trials is the first to find it gone
    trials = [*SMALL, "--trials", "500"] if jobs == "1" else [*LONG, "--trials", "50"]
    proc = start(["coarse", *trials, "--jobs", jobs, "--storage", url], tmp_path, "deleted")
    wait_for(lambda: (budget(url, STAGE) or Budget(0, False)).finished >= 3, 120, "three finished trials")
    db.unlink()
    assert proc.wait(120) == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "was deleted or replaced while the stage ran" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not db.exists()  # no empty database was created in its place


def test_a_worker_that_starts_after_the_file_was_deleted_stops_without_making_a_new_one(tmp_path):
    import multiprocessing

    from search.workers import EXIT_STOPPED, _worker_main

    db, cache = tmp_path / "gone.db", tmp_path / "cache"
    cache.mkdir()
    worker = multiprocessing.get_context("spawn").Process(
        target=_worker_main, args=(f"sqlite:///{db}", "digits/coarse", str(cache), 10, os.getpid()))
    worker.start()
    worker.join(60)
    assert worker.exitcode == EXIT_STOPPED and not db.exists()
    assert next(cache.glob("error-*.txt")).read_text().startswith(f"no database at '{db}'")


def test_a_worker_terminated_as_it_starts_leaves_quietly(tmp_path):
    # its parent killed with SIGKILL as the worker started, the orphan watcher's SIGTERM (or any) landed before the
    # worker's try: a traceback ending in search.errors.Interrupted at threading.Thread(...).start()
    script = (
        "import os, signal, threading\n"
        "from search import workers\n"
        "real = threading.Thread.start\n"
        "def start(self):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(self)\n"
        "threading.Thread.start = start\n"
        f"workers._worker_main('sqlite:///{tmp_path}/none.db', 'digits/coarse', '{tmp_path}', 10, os.getppid())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert (done.returncode, done.stderr) == (130, "")
    assert not (tmp_path / "none.db").exists()


# --------------------------------------------------------------------------- item 15: jobs > 1 from an unguarded script
SCRIPT = """
from engine.data import DataSpec
from search.campaign import DEFAULT_SPACE, Execution, coarse_stage, execute_stage
from search.config import RunConfig
run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"arch.hidden": 10, "train.epochs": 1})
def main():
    summary = execute_stage(Execution(URL, jobs=2, progress="quiet"), coarse_stage("digits", run, DEFAULT_SPACE, 4, 0))
    print(summary.counts["complete"] + summary.counts["pruned"])
"""


def test_jobs_2_from_a_script_without_a_main_guard_says_so_and_leaves_the_stage_runnable(tmp_path, url):
    temp = tmp_path / "tmp"
    temp.mkdir()
    (tmp_path / "unguarded.py").write_text(f"URL = {url!r}\n{SCRIPT}\nmain()\n")
    (tmp_path / "guarded.py").write_text(f"URL = {url!r}\n{SCRIPT}\nif __name__ == '__main__':\n    main()\n")
    python = [sys.executable]

    bad = start(["unguarded.py"], tmp_path, "unguarded", command=python, extra_env={"TMPDIR": str(temp)})
    assert bad.wait(120) == 1
    assert bad.stderr.splitlines()[-1] == f"search.errors.SearchError: {UNGUARDED_MAIN}"
    assert "can only join" not in bad.stderr and "AssertionError" not in bad.stderr
    after = budget(url, STAGE)
    assert after.states["WAITING"] == 4 and len(after.trials) == 4 and after.problems() == []
    assert list(temp.iterdir()) == []  # no data folder left behind by the parent or the workers

    good = start(["guarded.py"], tmp_path, "guarded", command=python, extra_env={"TMPDIR": str(temp)})
    assert good.wait(120) == 0, good.stderr
    assert good.stdout.strip() == "4" and budget(url, STAGE).finished == 4


def test_jobs_2_from_a_script_read_from_stdin_says_so_instead_of_restarting_workers(tmp_path, url):
    # each spawned worker imports the main script again: "<stdin>" cannot be, and the stage never progressed
    script = f"URL = {url!r}\n{SCRIPT}\nif __name__ == '__main__':\n    main()\n"
    done = subprocess.run([sys.executable, "-"], input=script, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == ("search.errors.SearchError: jobs > 1 needs the script in a file (each "
                                            "worker process imports it again; <stdin> cannot be): save it to a "
                                            "file, or use jobs=1")
    after = budget(url, STAGE)
    assert after is None or (after.states["WAITING"] == 4 and after.problems() == [])


# --------------------------------------------------------------------------- item 13: a --jobs parent killed with SIGKILL
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not stopped(pid) and Path(f"/proc/{pid}").exists() and "Z" != _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


@pytest.mark.slow
def test_workers_of_a_killed_parent_record_their_trials_as_interrupted_and_its_data_folder_is_removed(tmp_path, url):
    temp = tmp_path / "tmp"
    temp.mkdir()
    args = ["coarse", *LONG, "--trials", "4", "--jobs", "2", "--heartbeat", "1", "--storage", url]
    proc = start(args, tmp_path, "parent", new_session=True, extra_env={"TMPDIR": str(temp)})
    running = wait_for(lambda: found if len(found := training(url, STAGE)) == 2 else None, 120, "both workers to train")
    workers = [int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running]
    assert sorted(pid == proc.pid for pid in workers) == [False, True]  # the command's process is one of the two
    own = next(t.number for t in running if t.user_attrs["worker"].endswith(f":{proc.pid}"))
    assert [p.name.startswith(f"search-data-{proc.pid}-") for p in temp.iterdir()] == [True]

    proc.popen.kill()  # SIGKILL: the parent cannot pass anything on
    proc.wait(10)
    wait_for(lambda: not any(_alive(pid) for pid in workers), 60, "the orphaned workers to exit")

    after = budget(url, STAGE)
    # the spawned worker recorded its trial as interrupted; the parent's own trial stays RUNNING until the next
    # command on the stage fails it (at once: its process is gone from this machine), as a killed --jobs 1 leaves it
    assert [t.number for t in after.trials if t.state.name == "RUNNING"] == [own] and after.problems() == []
    failed = [t for t in after.trials if t.state.name == "FAIL"]
    assert {t.number for t in failed} == {t.number for t in running} - {own}
    assert {t.user_attrs["stop_reason"] for t in failed} == {"interrupted"}

    again = start(args, tmp_path, "again", extra_env={"TMPDIR": str(temp)})
    assert again.wait(180) == 0, again.stderr
    assert list(temp.iterdir()) == []  # the dead parent's folder was removed, and the new one too
    final = budget(url, STAGE)
    assert final.finished == 4 and final.states["RUNNING"] == final.states["WAITING"] == 0


# --------------------------------------------------------------------------- item 7: TPE with one worker is reproducible
def test_tpe_with_one_worker_gives_the_same_trials_twice(tmp_path):
    trials = []
    for i in range(2):
        url = f"sqlite:///{tmp_path / f'run{i}.db'}"
        execute_stage(Execution(url, progress="quiet"),
                      coarse_stage("digits", RUN, DEFAULT_SPACE, 16, seed=5, sampler="tpe"))
        trials.append([(t.number, t.params, t.state.name) for t in budget(url, STAGE).trials])
    assert len(trials[0]) == 16 and trials[0] == trials[1]  # past TPE's 10 random start-up trials too


@pytest.mark.parametrize("args", [["train", "--epochs", "1", "--plot", "x" * 300 + ".png"],
                                  ["layers", "--plot", "x" * 300 + ".png"], ["report", "--out", "x" * 300],
                                  ["predict", "--model", "m.npz", "--data", "m.npz", "--out", "x" * 300 + ".csv"]])
def test_a_file_name_longer_than_the_file_system_takes_is_one_line_before_any_work(run_cli, tmp_path, args):
    (tmp_path / "m.npz").write_bytes(b"")
    line = one_line_error(run_cli(*args), f"Invalid value for '--{args[-2][2:]}': '{'x' * 300}")
    assert line.endswith(": File name too long")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


@pytest.mark.parametrize("command", [["studies"], ["coarse", "--trials", "1"]])
def test_a_database_name_longer_than_the_file_system_takes_is_one_line(run_cli, tmp_path, command):
    url = f"sqlite:///{'x' * 300}.db"
    one_line_error(run_cli(*command, "--storage", url), f"error: storage {url}: '{'x' * 300}.db': File name too long")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,fragments", [
    (["auto", "--edge", "nan"], ["--edge", "not a finite number"]),
    (["fine", "--edge", "nan"], ["--edge", "not a finite number"]),
    (["coarse", "--explode-factor", "inf"], ["--explode-factor", "not a finite number"]),
    (["train", "--hidden", "100000,100000"], ["network 64-100000-100000-10", "GiB of memory"]),
    (["layers", "--depth", "100", "--width", "5000", "--samples", "100000"], ["search layers", "GiB of memory"]),
    # once a database written and every trial failed on it, exit 1
    (["coarse", "--hidden", "100000,100000"], ["network 64-100000-100000-10", "GiB of memory"]),
    (["auto", "--hidden", "100000,100000"], ["network 64-100000-100000-10", "GiB of memory"]),
    (["compare", "--hidden", "100000,100000"], ["network 64-100000-100000-10", "GiB of memory"]),
    (["coarse", "--space", "hidden=16:1000000:int", "--depth", "3"],
     ["network 64-1000000-1000000-1000000-10", "TiB of memory"]),
    (["coarse", "--space", "depth=1:100:int", "--hidden", "50000", "--space", "activation=relu,maxout"],
     ["network 64-(100 hidden layers of 50000)-10", "TiB of memory"]),
    (["coarse", "--campaign", "x" * 600], ["600 characters", "at most 200"]),
    (["coarse", "--campaign", ""], ["--campaign must not be empty"]),
    # once made: `search studies` showed " sp /coarse" as "sp /coarse", and --campaign sp found "no campaign 'sp';
    # known: sp"
    (["coarse", "--campaign", " sp "], ["--campaign ' sp ' begins or ends with white space"]),
    (["auto", "--campaign", "sp\u00a0"], ["--campaign 'sp\\xa0' begins or ends with white space"]),
    (["auto", "--data", "digts"], ["unknown dataset 'digts'", "known: cifar10, digits, spiral, synthetic"]),
    # a misspelt file name was "unknown dataset 'wine.cvs'; known: cifar10, digits, ...", as if it named a built-in
    (["data", "--data", "wine.cvs"], ["data file or folder not found: 'wine.cvs'; a data file is .npz, .csv or .tsv"]),
    (["auto", "--data", "wines.csv"], ["data file or folder not found: 'wines.csv'"]),
    (["studies", "--storage", "postgres://u:secret@localhost/db"], ["write postgresql://, not postgres://",
                                                                    "u:***@localhost"]),
    # a negative seed was a NumPy traceback in search layers, and "data seed must be ..." elsewhere; 2**32 gave
    # the trials of seed 0
    (["layers", "--seed", "-1"], ["Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."]),
    (["train", "--seed", "-1"], ["Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."]),
    (["coarse", "--seed", "4294967296"], ["Invalid value for '--seed': 4294967296 is not in the range"]),
])
def test_values_that_used_to_end_in_a_traceback_are_one_line(run_cli, tmp_path, args, fragments):  # or were unclear
    """Issue 9 item 11: nan options, nets and experiments too large for memory, names too long for a database."""
    one_line_error(run_cli(*args), *fragments)
    assert not (tmp_path / "search.db").exists()


@pytest.mark.parametrize("args,line", [
    # int() and float() read any script's digits: --jobs \uff12 (full-width 2) ran 2 workers, --trials \uff12 2 trials
    (["coarse", "--jobs", "\uff12", "--epochs", "1"],
     "error: Invalid value for '--jobs': '\uff12' must be auto or a number of processes from 1 to 256"),
    (["coarse", "--trials", "\uff12", "--epochs", "1"],
     "error: Invalid value for '--trials': '\uff12' is not a valid integer range."),
    (["layers", "--seed", "+\u0663"], "error: Invalid value for '--seed': '+\u0663' is not a valid integer range."),
    (["train", "--epochs", "1_0"], "error: Invalid value for '--epochs': '1_0' is not a valid integer range."),
    (["fine", "--edge", "\uff10.2"], "error: Invalid value for '--edge': '\uff10.2' is not a valid float range."),
    (["train", "--epochs", "1", "--lr", "\uff11e-3"],
     "error: Invalid value for '--lr': '\uff11e-3' is not a valid float."),
    # --hidden's widths were read by int(): --hidden \uff11\uff16 and 1_6 trained 16 units
    (["train", "--epochs", "1", "--hidden", "32,\uff11\uff16"],
     "error: Invalid value for '--hidden': '32,\uff11\uff16' must be comma-separated integers, e.g. 100 or 200,100"),
    (["train", "--epochs", "1", "--hidden", "1_6"],
     "error: Invalid value for '--hidden': '1_6' must be comma-separated integers, e.g. 100 or 200,100"),
])
def test_a_number_written_in_other_than_ascii_digits_is_one_line(run_cli, tmp_path, args, line):
    assert one_line_error(run_cli(*args)) == line
    assert list(tmp_path.iterdir()) == []


def test_ascii_numbers_with_a_sign_point_or_exponent_are_still_read(run_cli):
    assert run_cli("train", "--epochs", "+1", "--lr", "1E-3", "--reg", ".5e-4", "--dropout", "1.").exit_code == 0
    assert run_cli("train", "--epochs", "1", "--hidden", "+16, 8").exit_code == 0
    assert run_cli("train", "--epochs", " 1 ", "--lr", "1e-3\n", "--dropout", " 1").exit_code == 0  # spaces around
    line = one_line_error(run_cli("train", "--lr", "-1"))
    assert line == "error: Invalid value for '--lr': -1.0 must be a finite number > 0"


@pytest.mark.parametrize("data", ["x/y", "x/y/", "photos/", "runs.v2/"])
def test_a_missing_folder_is_not_found_without_the_suffixes_of_a_data_file(run_cli, data):
    # "data file or folder not found: 'x/y'; a data file is .npz, .csv or .tsv", as if a file's suffix were missing
    assert one_line_error(run_cli("data", "--data", data)) == f"error: data file or folder not found: {data!r}"


@pytest.mark.parametrize("name,value,line", [
    # read only once the database failed, mid-stage: "abc" was 60 s and "-1" no retry at all, silently
    ("SEARCH_STORAGE_RETRY_SECONDS", "abc", "error: $SEARCH_STORAGE_RETRY_SECONDS must be a number of seconds >= 0, "
                                            "got 'abc'"),
    ("SEARCH_STORAGE_RETRY_SECONDS", "-1", "error: $SEARCH_STORAGE_RETRY_SECONDS must be a number of seconds >= 0, "
                                           "got '-1'"),
    # float() reads other scripts' digits and '_', as the number options no longer do: "\uff16\uff10" was 60 s
    ("SEARCH_STORAGE_RETRY_SECONDS", "\uff16\uff10", "error: $SEARCH_STORAGE_RETRY_SECONDS must be a number of "
                                                     "seconds >= 0, got '\uff16\uff10'"),
    ("SEARCH_STORAGE_RETRY_SECONDS", "1_0", "error: $SEARCH_STORAGE_RETRY_SECONDS must be a number of seconds >= 0, "
                                            "got '1_0'"),
    # "extra" or "on" gave NORMAL, a weaker setting than asked for, silently
    ("SEARCH_SQLITE_SYNCHRONOUS", "extra", "error: $SEARCH_SQLITE_SYNCHRONOUS must be NORMAL or FULL, got 'extra'"),
])
def test_a_bad_environment_setting_is_one_line_and_writes_nothing(run_cli, tmp_path, monkeypatch, name, value, line):
    monkeypatch.setenv(name, value)
    assert one_line_error(run_cli("coarse", *SMALL, "--trials", "2")) == line
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(name, {"SEARCH_SQLITE_SYNCHRONOUS": "full"}.get(name, "0.5"))
    assert run_cli("coarse", *SMALL, "--trials", "2").exit_code == 0


def test_a_bad_search_jobs_says_it_comes_from_the_environment(run_cli, tmp_path, monkeypatch):
    # "Invalid value for '--jobs'" of a command line without --jobs
    monkeypatch.setenv("SEARCH_JOBS", "abc")
    assert one_line_error(run_cli("coarse", *SMALL, "--trials", "2")) == (
        "error: Invalid value for '--jobs': 'abc' (from $SEARCH_JOBS) must be auto or a number of processes from 1 "
        "to 256")
    assert list(tmp_path.iterdir()) == []
    assert run_cli("coarse", *SMALL, "--trials", "2", "--jobs", "1").exit_code == 0  # the option wins


def test_an_unknown_study_names_a_few_known_ones_not_all(run_cli):
    for name in ("a", "b", "c", "d", "e"):  # 10 stages: coarse and grid of five campaigns
        args = ["--campaign", name, "--trials", "1", "--epochs", "1", "--train-size", "100"]
        assert run_cli("coarse", *args).exit_code == 0
        assert run_cli("grid", "--campaign", name).exit_code == 0
    line = one_line_error(run_cli("trials", "nope/coarse"), "unknown study 'nope/coarse'")
    assert "a/coarse, a/grid, b/coarse" in line and "... (2 more: `search studies` lists them)" in line
    assert "e/grid" not in line and len(line) < 200


def test_a_lock_held_past_the_busy_timeout_while_a_stage_is_created_is_one_line(run_cli, url, monkeypatch):
    from studies import store

    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 1)
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = run_cli("coarse", *SMALL, "--trials", "2", "--campaign", "other", "--storage", url)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert result.exit_code == 1, result.output
    assert result.stderr == ("error: the database failed: the database is locked: another process has held its write "
                             "lock too long; try again when it is done (database is locked [SQLITE_BUSY]); run the same "
                             "command again\n")
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["digits/coarse"]
    assert run_cli("coarse", *SMALL, "--trials", "2", "--campaign", "other", "--storage", url).exit_code == 0


@pytest.mark.parametrize("command", ["studies", "trials", "coarse"])
def test_a_lock_held_past_the_busy_timeout_while_a_rollback_journal_database_is_opened_is_exit_1(
        run_cli, url, tmp_path, monkeypatch, command):
    from studies import store

    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    journal = tmp_path / "journal.db"  # the mode plain Optuna leaves a database in: a lock stops readers too
    holder = sqlite3.connect(journal, isolation_level=None)
    with sqlite3.connect(tmp_path / "search.db") as source:
        source.backup(holder)
    holder.execute("PRAGMA journal_mode = DELETE")
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = run_cli(command, *(SMALL if command == "coarse" else ()), "--storage", f"sqlite:///{journal}")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert result.stderr.endswith(f"cannot read '{journal}': the database is locked: another process has held its "
                                  f"write lock too long; try again when it is done (database is locked "
                                  f"[SQLITE_BUSY])\n")


def _limited_to(size: int):
    """For a child process: files it writes stop at ``size`` bytes (a short write, then EFBIG), like a disk filling."""
    import resource
    import signal

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_output_that_does_not_fit_is_one_line_and_exit_1_never_a_truncated_success(run_cli, tmp_path, url, unbuffered):
    assert run_cli("coarse", *SMALL, "--trials", "4", "--storage", url).exit_code == 0
    copy = sqlite3.connect(tmp_path / "copy.db")  # not in WAL mode: no -shm file for the child to make past its limit
    with sqlite3.connect(tmp_path / "search.db") as source:
        source.backup(copy)
    copy.execute("PRAGMA journal_mode = DELETE")
    copy.close()
    command = [sys.executable, "-m", "search", "trials", "--format", "csv", "--storage", f"sqlite:///{tmp_path / 'copy.db'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered, "PYTHONPATH": str(Path(__file__).parents[2])}
    whole = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120).stdout
    assert len(whole) > 1000

    with open(tmp_path / "out.csv", "w") as out:
        cut = subprocess.run(command, env=env, stdout=out, stderr=subprocess.PIPE, text=True, timeout=120,
                             preexec_fn=_limited_to(512))
    assert (cut.returncode, cut.stderr) == (1, "error: cannot write the output: File too large\n")
    assert (tmp_path / "out.csv").read_text() == whole[:512]
    with open("/dev/full", "w") as full:
        no_space = subprocess.run(command, env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert (no_space.returncode, no_space.stderr) == (1, "error: cannot write the output: No space left on device\n")


def test_a_new_database_that_does_not_fit_on_the_disk_leaves_no_file(tmp_path):
    # its tables made one by one where it goes, a disk filling up left a file of some of them, which search studies
    # then called "read-only" or "not an Optuna study database"
    command = [sys.executable, "-m", "search", "coarse", *SMALL, "--trials", "2", "--storage", "sqlite:///n.db"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    full = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=_limited_to(16384))
    assert list(tmp_path.iterdir()) == []
    assert (full.returncode, full.stderr) == (2, "error: storage sqlite:///n.db: cannot create the database: disk "
                                                 "I/O error [SQLITE_IOERR_WRITE]\n")
    assert subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120).returncode == 0


def test_output_piped_into_a_reader_that_left_ends_quietly_with_0(run_cli, tmp_path, url):
    # `search trials | head -1`: click (every command) and rich (the tables) ended it with exit 1
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    for args in (("trials",), ("trials", "--format", "csv"), ("trials", "--format", "json"), ("studies",),
                 ("best", "--format", "json"), ("query", "SELECT 1"), ("trials", "--help")):
        read, write = os.pipe()
        os.close(read)  # every write fails with EPIPE, as once head has its line
        try:
            result = subprocess.run([sys.executable, "-m", "search", *args, "--storage", url], env=env, stdout=write,
                                    stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
        finally:
            os.close(write)
        assert (result.returncode, result.stderr) == (0, ""), args
    # a command that writes (a stage, a comparison) cut short by the reader's leaving has not succeeded
    read, write = os.pipe()
    os.close(read)
    try:
        cut = subprocess.run([sys.executable, "-m", "search", "coarse", *SMALL, "--trials", "2", "--campaign", "cut",
                              "--storage", url], env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
                             cwd=tmp_path)
    finally:
        os.close(write)
    assert (cut.returncode, cut.stderr.splitlines()[-1]) == (1, "error: cannot write the output: Broken pipe")


def test_search_layers_piped_into_a_reader_that_left_ends_quietly_with_0(tmp_path):
    # `search layers | head -1` ended "error: cannot write the output: Broken pipe", exit 1, when head left first;
    # its --plot is written before the table
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    for extra in ((), ("--plot", "layers.png"), ("--json",)):
        read, write = os.pipe()
        os.close(read)
        try:
            result = subprocess.run([sys.executable, "-m", "search", "layers", "--depth", "3", "--width", "20", *extra],
                                    env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
        finally:
            os.close(write)
        assert (result.returncode, result.stderr) == (0, ""), extra
    assert (tmp_path / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_command_started_with_stdout_closed_says_its_output_is_lost_in_one_line(run_cli, tmp_path, url):
    # `search studies >&-` (a daemon's closed stdout): every command ended in an AttributeError traceback
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}

    def closed(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "search", *args], env=env, stderr=subprocess.PIPE, text=True,
                              timeout=120, cwd=tmp_path, preexec_fn=lambda: os.close(1))

    for args in (("studies", "--storage", url), ("trials", "--format", "csv", "--storage", url),
                 ("query", "SELECT 1", "--storage", url)):
        result = closed(*args)
        assert (result.returncode, result.stderr) == (1, "error: cannot write the output: stdout is closed\n")
    # what writes nothing to stdout still succeeds; an error is its own line
    assert run_cli("train", "--epochs", "1", "--hidden", "10", "--save", "m.npz").exit_code == 0
    np.savez(tmp_path / "x.npz", X=np.zeros((3, 64)))
    scored = closed("predict", "--model", "m.npz", "--data", "x.npz", "--out", "p.csv")
    assert (scored.returncode, scored.stderr) == (0, "3 samples scored with m.npz; wrote p.csv\n")
    missing = closed("explain", "digits/coarse:9", "--storage", url)
    assert (missing.returncode, missing.stderr) == (
        2, "error: study digits/coarse has no trial 9: its trials are 0 to 1\n")


def test_a_table_printed_to_a_closed_stdout_leaves_no_note_about_it(run_cli, tmp_path, url):
    # `search studies >&-` on a narrow terminal: "(5 more columns: ...)" on stderr, then the error line; a query cut
    # at --max-rows: "note: only the first 1 rows are shown", then the error line
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "COLUMNS": "30"}
    for args in (("studies",), ("query", "SELECT number FROM trials_flat", "--max-rows", "1")):
        shown = subprocess.run([sys.executable, "-m", "search", *args, "--storage", url], env=env,
                               capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert shown.returncode == 0 and shown.stderr.startswith(("(5 more columns", "note: only the first 1 rows"))
        closed = subprocess.run([sys.executable, "-m", "search", *args, "--storage", url], env=env,
                                stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path,
                                preexec_fn=lambda: os.close(1))
        assert (closed.returncode, closed.stderr) == (1, "error: cannot write the output: stdout is closed\n")


def test_a_trial_added_by_plain_optuna_with_a_parameter_the_stage_does_not_know_is_shown_not_a_traceback(run_cli, url):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    study = optuna.load_study(study_name=STAGE, storage=url)
    study.add_trial(optuna.trial.create_trial(
        params={"k": 5}, distributions={"k": optuna.distributions.IntDistribution(1, 9, step=2)}, value=0.99))

    result = run_cli("coarse", *SMALL, "--trials", "2", "--storage", url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines.index("  trial    value         lr        reg          k")  # the stage's space first
    assert lines[header + 1] == "      2   0.9900          -          -          5"
    assert [line.split()[4] for line in lines[header + 2:header + 4]] == ["-", "-"]  # the stage's own trials: no k


@pytest.mark.parametrize("directions", [["maximize", "minimize"], ["minimize"]])
def test_a_foreign_study_that_claims_the_next_stage_is_not_taken_for_it(run_cli, url, directions):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    foreign = optuna.create_study(storage=url, study_name="digits/fine-1", directions=directions)
    foreign.set_user_attr("campaign", "digits")
    foreign.set_user_attr("stage", "fine-1")
    foreign.optimize(lambda t: (t.suggest_float("x", 0, 1),) * len(directions), n_trials=1)

    result = run_cli("fine", "--promote", "0", "--trials", "2", "--storage", url)

    one_line_error(result, "study digits/fine-1 was not created by this service; use another --campaign")
    after = optuna.load_study(study_name="digits/fine-1", storage=url)
    assert (len(after.trials), after.user_attrs) == (1, {"campaign": "digits", "stage": "fine-1"})


def test_explaining_a_failed_trial_says_why_it_failed_and_which_trial_re_ran_it(run_cli, url, monkeypatch):
    # the answer, not an error: it said "error: trial digits/coarse:3 has no diagnosis: ..." and exited 2
    monkeypatch.setenv("COLUMNS", "200")  # each line unwrapped
    from studies.budget import requeue_failed_trials
    from studies.store import open_storage

    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    study = optuna.load_study(study_name=STAGE, storage=url)
    lr, reg = study.trials[0].distributions["lr"], study.trials[0].distributions["reg"]
    for attrs in ({"stop_reason": "interrupted"}, {}, {"stop_reason": "error: ValueError: boom"},
                  {"stop_reason": "worker lost: no heartbeat for more than 20 s"}):  # trials 2, 3, 4, 5
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"lr": 0.01, "reg": 0.1},
                                                  distributions={"lr": lr, "reg": reg}, user_attrs=attrs))

    def explained(number: int) -> list[str]:
        result = run_cli("explain", f"{STAGE}:{number}", "--storage", url)
        assert result.exit_code == 0 and result.stderr == "", result.output
        return result.stdout.splitlines()

    assert explained(3) == [f"{STAGE}:3: failed, no diagnosis; lr=0.01 reg=0.1",
                            "  - it failed without recording why (its process killed or its machine lost); its re-run "
                            "is enqueued by the next command or worker on the stage"]
    storage = open_storage(url)
    assert requeue_failed_trials(storage, storage.get_study_id_from_name(STAGE)) == 3  # copies 6, 7 and 8
    assert explained(2)[1] == "  - it failed (interrupted); re-run as digits/coarse:6"
    assert explained(3)[1] == ("  - it failed without recording why (its process killed or its machine lost); "
                               "re-run as digits/coarse:7")
    assert explained(4)[1] == "  - it failed (error: ValueError: boom); a trial that raised is not re-run"
    assert explained(5)[1] == "  - it failed (worker lost: no heartbeat for more than 20 s); re-run as digits/coarse:8"
    as_json = json.loads(run_cli("explain", f"{STAGE}:5", "--storage", url, "--json").stdout)
    assert (as_json["state"], as_json["stop_reason"], as_json["diagnosis"], as_json["sentences"]) == (
        "FAIL", "worker lost: no heartbeat for more than 20 s", None,
        ["it failed (worker lost: no heartbeat for more than 20 s); re-run as digits/coarse:8"])
    # the keys of a finished trial's answer, each null or empty where a failed one has nothing: a reader of several
    # trials' JSON found no val_acc_history, seconds, best_val_acc, best_epoch or diagnosis_numbers in it
    complete = json.loads(run_cli("explain", f"{STAGE}:0", "--storage", url, "--json").stdout)
    assert list(as_json) == list(complete)
    # the re-run found by its attribute alone: every trial of the stage was read (3,000 trials: 2.3 s of CPU)
    monkeypatch.setattr(optuna.storages.RDBStorage, "get_all_trials", lambda *a, **k: pytest.fail("read them all"))
    assert explained(2)[1] == "  - it failed (interrupted); re-run as digits/coarse:6"
    assert explained(3)[1].endswith("; re-run as digits/coarse:7")
    assert [as_json[k] for k in ("seconds", "best_val_acc", "best_epoch", "diagnosis_numbers", "val_acc_history")] == [
        None, None, None, None, []]
    one_line_error(run_cli("explain", f"{STAGE}:4", "--storage", url, "--plot", "t.png"),
                   "trial digits/coarse:4 has no curves to plot: it failed (error: ValueError: boom); a trial that "
                   "raised is not re-run")
    # one interrupted after 2 epochs has curves that far (its --json gave them), which --plot refused to draw
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"lr": 0.01, "reg": 0.1}, distributions={"lr": lr, "reg": reg},
        user_attrs={"stop_reason": "interrupted"}, intermediate_values={1: 0.3, 2: 0.35}))  # trial 9
    plotted = run_cli("explain", f"{STAGE}:9", "--storage", url, "--plot", "t.png")
    assert plotted.exit_code == 0 and plotted.stdout.splitlines()[-1] == "wrote t.png", plotted.output
    assert os.path.getsize("t.png") > 0


def test_a_trial_whose_attributes_other_code_wrote_with_other_types_ends_in_no_traceback(run_cli, url):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    study = optuna.load_study(study_name=STAGE, storage=url)
    lr, reg = study.trials[0].distributions["lr"], study.trials[0].distributions["reg"]
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.01, "reg": 0.001}, distributions={"lr": lr, "reg": reg},
                                              value=0.99, user_attrs={"diagnosis": 7, "seconds": "x"}))

    again = run_cli("coarse", *SMALL, "--trials", "2", "--storage", url)
    assert again.exit_code == 0, again.output
    assert "digits/coarse: 3 complete, 0 pruned of 2" in again.stdout
    one_line_error(run_cli("explain", f"{STAGE}:2", "--storage", url),
                   "trial digits/coarse:2 has no diagnosis (state COMPLETE; it was not trained by this service (added "
                   f"through Optuna's API): search train --from-trial digits/coarse:2 --storage {url} trains it)")
    fine = run_cli("fine", "--promote", "0", "--trials", "2", "--storage", url)
    assert fine.exit_code == 0, fine.output
    assert len(optuna.load_study(study_name="digits/fine-1", storage=url).trials) == 2


@pytest.mark.parametrize("command", [["fine"], ["grid"], ["worker"], ["fine", "--campaign", "nope"]])
def test_continuing_a_campaign_a_plain_optuna_database_lacks_changes_not_a_byte(run_cli, tmp_path, url, command):
    optuna.create_study(storage=url, study_name="plain").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    path = tmp_path / "search.db"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # plain Optuna's, not WAL
    conn.close()
    before = path.read_bytes()

    result = run_cli(*command, "--storage", url)

    one_line_error(result, "unknown campaign 'nope'; known campaigns: none" if "nope" in command else
                   "the database has no campaign yet; start one with `search coarse` or `search auto`")
    assert path.read_bytes() == before


def test_a_unicode_campaign_on_an_ascii_only_terminal_is_printed_with_question_marks(run_cli, url):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--campaign", "ünï", "--storage", url).exit_code == 0
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONPATH": str(Path(__file__).parents[2])}

    shown = subprocess.run([sys.executable, "-m", "search", "studies", "--storage", url], env=env,
                           capture_output=True, text=True, timeout=120)

    assert (shown.returncode, shown.stderr) == (0, "")
    assert shown.stdout.splitlines()[1].split()[:2] == ["?n?/coarse", "2"]


def test_output_that_does_not_fit_a_captured_stream_is_one_line_too(run_cli, url, monkeypatch):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("search.cli.db.print_table", full)
    result = run_cli("studies", "--storage", url)

    assert (result.exit_code, result.stderr) == (1, "error: cannot write the output: No space left on device\n")


@pytest.mark.parametrize("key", ["config", "n_trials", "space"])
def test_a_stage_whose_stored_definition_lacks_an_attribute_is_one_line_and_left_unchanged(run_cli, url, key):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:  # as another program, or an older version, might have left it
        conn.exec_driver_sql(f"DELETE FROM study_user_attributes WHERE key = '{key}'")

    def content() -> list:
        with engine.connect() as conn:
            return [conn.exec_driver_sql(f"SELECT * FROM {table}").fetchall()
                    for table in ("studies", "study_user_attributes", "trials", "trial_values")]

    before = content()
    expected = (f"error: stage digits/coarse: its stored definition cannot be read (no attribute '{key}'); it was "
                f"written by another program or changed since, and is left as it is")
    for command in (["coarse", *SMALL, "--trials", "2"], ["fine", "--promote", "0"], ["grid"],
                    ["explain", f"{STAGE}:0"]):
        assert one_line_error(run_cli(*command, "--storage", url)) == expected, command
    assert content() == before
    engine.dispose()


def test_a_stage_stored_with_a_dropout_below_the_floor_is_refused_naming_it_and_its_trials_still_explained(
        run_cli, url):
    # --dropout took 0.001 before its floor of 0.01: such a stage was refused as "written by another program or
    # changed since", by search coarse, fine, grid, train --from-trial and explain alike
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:  # as --dropout 0.001 stored it
        conn.exec_driver_sql("UPDATE study_user_attributes SET value_json = json_set(value_json, '$.arch.dropout', "
                             "0.001) WHERE key = 'config'")

    def content() -> list:
        with engine.connect() as conn:
            return [conn.exec_driver_sql(f"SELECT * FROM {table}").fetchall()
                    for table in ("studies", "study_user_attributes", "trials", "trial_values")]

    before = content()
    expected = ("error: stage digits/coarse was stored with --dropout 0.001, below 0.01, the lowest keep probability a "
                "run takes now (one that low drops nearly every unit in training): its trials can be read (search "
                "trials, best, explain, report) but not run again or refined; start a new campaign with --dropout "
                "0.01 or more")
    for command in (["coarse", *SMALL, "--trials", "3"], ["fine", "--promote", "0"], ["grid"],
                    ["train", "--from-trial", f"{STAGE}:0"]):
        assert one_line_error(run_cli(*command, "--storage", url)) == expected, command
    result = run_cli("explain", f"{STAGE}:0", "--storage", url)
    assert result.exit_code == 0 and result.stdout.startswith(f"{STAGE}:0: complete, value "), result.output
    assert content() == before
    engine.dispose()


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("change, command, what", [
    ("UPDATE study_user_attributes SET value_json = '{not json' WHERE key = 'space'", ["trials"],
     "study digits/coarse, user attribute 'space' cannot be read (not JSON: Expecting property name"),
    ("UPDATE trial_values SET value = 'abc'", ["studies"],
     "study digits/coarse, trial 0, value cannot be read ('abc' is not a number)"),
    ("""UPDATE trial_params SET distribution_json = '{"name": "Evil"}'""", ["explain", f"{STAGE}:0"],
     "study digits/coarse, trial 0, parameter 'lr' cannot be read (its distribution: Unknown distribution class: "
     "Evil)"),
    ("UPDATE study_user_attributes SET value_json = 'null' WHERE key = 'data'", ["fine", "--trials", "1"],
     "study digits/coarse, user attribute 'data' cannot be read (a JSON object was expected, not null)"),
    ("UPDATE trial_params SET param_value = 1e308", ["report", "--out", "out"],
     "study digits/coarse, trial 0, parameter 'lr' cannot be read (1e+308 is outside its distribution {"),
    ("UPDATE trials SET number = 0", ["explain", f"{STAGE}:0"],
     "study digits/coarse cannot be read (several of its trials are number 0)"),
    (f"UPDATE trial_user_attributes SET value_json = '{DEEP}' WHERE key = 'diagnosis'", ["trials", STAGE],
     "study digits/coarse, trial 0, user attribute 'diagnosis' cannot be read (its JSON is nested too deep)"),
    # JSON of another kind than the list of strings this service writes: the report and the tables joined them
    ("UPDATE study_user_attributes SET value_json = '3.5' WHERE key = 'range_notes'", ["report", "--out", "out"],
     "study digits/coarse, user attribute 'range_notes' cannot be read (a JSON list of strings was expected, not 3.5)"),
    ("UPDATE trial_user_attributes SET value_json = '[1e308]' WHERE key = 'diagnosis'", ["trials", STAGE],
     "study digits/coarse, trial 0, user attribute 'diagnosis' cannot be read (a JSON list of strings was expected, "
     "not [1e+308])"),
], ids=["space-not-json", "value-text", "unknown-distribution", "data-null", "param-outside", "numbers-twice", "deep",
        "notes-number", "diagnosis-numbers"])
def test_a_stored_value_changed_by_hand_is_one_line_naming_it(run_cli, url, change, command, what):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:  # as another program might have left it; each made a traceback of 30 to 90 lines
        conn.exec_driver_sql(change)
    engine.dispose()

    result = run_cli(*command, "--storage", url)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    last = result.stderr.splitlines()[-1]  # the report says what it draws before
    assert last.startswith(f"error: storage {url}: {what}"), last
    assert last.endswith("; it was written by another program or changed since, and is left as it is")


@pytest.mark.parametrize("key, path, value, command", [
    # a JSON object as this service writes it, a value inside it of another kind: a TypeError or ValueError traceback
    ("data", "$.shapes.train[1]", "json('[]')", ["report", "--out", "out"]),  # "unsupported format string passed"
    ("data", "$.classes", "5", ["report", "--out", "out"]),  # "object of type 'int' has no len()"
], ids=["data-shape-list", "data-classes-number"])
def test_a_value_inside_a_stored_attribute_changed_by_hand_is_one_line_naming_it(run_cli, url, tmp_path, key, path,
                                                                                  value, command):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE study_user_attributes SET value_json = json_set(value_json, '{path}', {value}) "
                             f"WHERE key = '{key}'")

    def content() -> list:
        with engine.connect() as conn:
            return [conn.exec_driver_sql(f"SELECT * FROM {table}").fetchall()
                    for table in ("studies", "study_user_attributes", "trials", "trial_values")]

    before = content()
    result = run_cli(*command, "--storage", url)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == (
        f"error: study {STAGE}, user attribute {key!r} cannot be read (a value inside it is of another kind than this "
        "service writes); it was written by another program or changed since, and is left as it is")
    assert content() == before
    assert not (tmp_path / "out").exists()
    engine.dispose()


@pytest.mark.parametrize("path, value, shown", [
    # a whole dimension a number: search studies, best and report showed lr=5, as if a range had been searched
    ("$.lr", "5", "5"),
    # a bound text: "Unknown format code 'g' for object of type 'str'"
    ("$.lr.low", "'a'", '{"type": "float", "low": "a", "high": 1.0, "log": true}'),
    # bounds no range has: search fine said "its stored definition cannot be read (range -1:1 is on a log scale, so
    # both bounds must be > 0)", search report ended in Optuna's ValueError traceback
    ("$.lr.low", "-1", '{"type": "float", "low": -1, "high": 1.0, "log": true}'),
    ("$.lr.low", "2", '{"type": "float", "low": 2, "high": 1.0, "log": true}'),
    # a whole number beyond any float: "OverflowError: int too large to convert to float" and its traceback
    ("$.lr.high", "json('1' || printf('%.400c', '0'))", '{"type": "float", "low": 1e-06, "high": 1' + "0" * 400
     + ', "log": true}'),
], ids=["dimension-number", "bound-text", "log-bound-below-zero", "bounds-reversed", "bound-beyond-float"])
def test_a_stage_space_dimension_changed_by_hand_is_one_line_naming_it_in_every_command(run_cli, url, tmp_path, path,
                                                                                        value, shown):
    # search studies, best and report said "user attribute 'space' cannot be read (a value inside it is of another
    # kind than this service writes)", search fine, grid and explain "its stored definition cannot be read (space
    # dimension 'lr' is 5, ...)"
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE study_user_attributes SET value_json = json_set(value_json, '{path}', {value}) "
                             "WHERE key = 'space'")

    def content() -> list:
        with engine.connect() as conn:
            return [conn.exec_driver_sql(f"SELECT * FROM {table}").fetchall()
                    for table in ("studies", "study_user_attributes", "trials", "trial_values")]

    before = content()
    expected = (f"error: stage digits/coarse: space dimension 'lr' is {shown}, not a range or a list of choices; it "
                "was written by another program or changed since, and is left as it is")
    for command in (["studies"], ["best"], ["coarse", *SMALL, "--trials", "3"], ["fine", "--promote", "0"], ["grid"],
                    ["explain", f"{STAGE}:0"], ["report", "--out", "out"]):
        result = run_cli(*command, "--storage", url)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.splitlines()[-1] == expected, command  # the report says what it draws before
        assert "Traceback" not in result.output
    assert content() == before
    assert not (tmp_path / "out").exists()
    engine.dispose()


def test_explaining_a_trial_other_code_gave_an_unknown_diagnosis_is_one_line(run_cli, url):
    assert run_cli("coarse", *SMALL, "--trials", "2", "--storage", url).exit_code == 0
    study = optuna.load_study(study_name=STAGE, storage=url)
    lr, reg = study.trials[0].distributions["lr"], study.trials[0].distributions["reg"]
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.01, "reg": 0.001}, distributions={"lr": lr, "reg": reg},
                                              value=0.9, user_attrs={"diagnosis": ["wobbly"]}))
    one_line_error(run_cli("explain", f"{STAGE}:2", "--storage", url),
                   "error: trial digits/coarse:2 has a diagnosis this service did not write (labels it does not "
                   "know: 'wobbly')")


# --------------------------------------------------------------------------- search auto between its stages
def _lost_answer(real, failures: dict[str, int]):
    """``real``, whose first ``failures['left']`` calls' answers after ``failures['skip']`` are lost: done
    (committed), then the disk is full."""

    def call(*args, **kwargs):
        result = real(*args, **kwargs)
        if failures["skip"] > 0:
            failures["skip"] -= 1
        elif failures["left"] > 0:
            failures["left"] -= 1
            raise DISK_FULL
        return result

    return call


def _auto(url: str):
    from search.campaign import run_auto

    return run_auto(Execution(url, progress="quiet"), coarse_stage("auto", RUN, DEFAULT_SPACE, 4, seed=0),
                    max_fine=1, top=2, edge=0.1, fine_epochs=None, repeats=1, retrains=1, promote=2)


def _trials_by_stage(url: str) -> dict[str, tuple[int, ...]]:
    """Each stage's trial states' counts (COMPLETE, PRUNED, FAIL, RUNNING, WAITING), by study name."""
    states = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
    return {s.study_name: tuple(sum(t.state.name == state for t in optuna.load_study(
        study_name=s.study_name, storage=url).get_trials(deepcopy=False)) for state in states)
        for s in optuna.get_all_study_summaries(url)}


def test_search_auto_retries_a_database_failing_between_its_stages_and_writes_each_stage_once(url, monkeypatch):
    import search.campaign as campaign

    monkeypatch.setenv(STORAGE_RETRY_ENV, "30")
    faults = {}
    # the database fails as a stage after the coarse one (a command's first stage says it at once) is created after
    # its commit (the answer lost: the retry finds the stage made), as the next stage is looked for, as the promoted configurations are chosen, as the space is refined, and as the
    # final stage's choice is read and stored
    for name, wrap, left in (("create_stage", _lost_answer, 4), ("latest_chain_stage", _failing, 3),
                             ("promotion_stage", _failing, 2), ("refined_stage", _failing, 2),
                             ("choose_final", _failing, 2), ("final_stage", _failing, 1)):
        faults[name] = {"left": left, "skip": int(name == "create_stage")}
        monkeypatch.setattr(campaign, name, wrap(getattr(campaign, name), faults[name]))

    summaries, score = _auto(url)

    assert {name: f["left"] for name, f in faults.items()} == dict.fromkeys(faults, 0)  # every fault happened
    # each stage written once, with exactly its trials, all finished
    assert _trials_by_stage(url) == {"auto/coarse": (4, 0, 0, 0, 0), "auto/promote-1": (2, 0, 0, 0, 0),
                                     "auto/fine-1": (4, 0, 0, 0, 0), "auto/final": (2, 0, 0, 0, 0)}
    assert [s.study for s in summaries] == ["auto/coarse", "auto/promote-1", "auto/fine-1", "auto/final"]
    assert [s.errors for s in summaries] == [[], [], [], []]
    assert score.study == "auto/final" and score.runs == 1 and score.retrained.runs == 1


def test_search_auto_says_a_database_failing_between_its_stages_once_as_it_fails_and_once_as_it_works(
        url, monkeypatch, capsys):
    import search.campaign as campaign

    monkeypatch.setenv(STORAGE_RETRY_ENV, "30")
    monkeypatch.setenv("COLUMNS", "80")
    failures = {"left": 3}
    monkeypatch.setattr(campaign, "refined_stage", _failing(campaign.refined_stage, failures))

    _auto(url)

    assert failures["left"] == 0
    said = capsys.readouterr().err.splitlines()
    assert said[:2] == ["database disk full, retrying for up to 30 s: the disk holding the database is",
                        "    full: free some space (database or disk is full)"]
    assert said[2:] in (["database working again after 0 s"], ["database working again after 1 s"])  # 0.7 s of waits
    assert _trials_by_stage(url)["auto/fine-1"] == (4, 0, 0, 0, 0)


def test_search_auto_does_not_retry_a_failure_between_its_stages_that_is_not_the_database(url, monkeypatch):
    import search.campaign as campaign

    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise ValueError("not the database")

    monkeypatch.setenv(STORAGE_RETRY_ENV, "30")
    monkeypatch.setattr(campaign, "refined_stage", broken)
    with pytest.raises(ValueError, match="not the database"):
        _auto(url)
    assert len(calls) == 1
    assert _trials_by_stage(url) == {"auto/coarse": (4, 0, 0, 0, 0), "auto/promote-1": (2, 0, 0, 0, 0)}
