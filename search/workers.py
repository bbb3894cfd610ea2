"""Run a stage with N worker processes on this machine (one BLAS thread each, one shared copy of the data)."""
from __future__ import annotations

import multiprocessing
import multiprocessing.resource_tracker
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial
from threadpoolctl import threadpool_limits

from engine.data import Dataset, load_cache, save_cache
from engine.errors import EngineError
from search.errors import STOP_EXIT_CODES, Interrupted, SearchError, SearchFailed, raise_on, raise_pending, stops_held
from search.stages import (STORAGE_OUTAGE, WorkerReport, is_storage_error, load_stage_study, process_alive,
                           run_worker, watch_sqlite_file)
from studies import optuna_rdb
from studies.errors import StudyError
from studies.store import mask_url, open_storage

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
CACHE_PREFIX = "search-data-"  # + the parent's pid + "-": a folder whose process is gone is left from a SIGKILL
ORPHAN_POLL_SECONDS = 1.0
# exit code of a worker process that found itself re-running an unguarded script while starting
EXIT_UNGUARDED_MAIN = 3
EXIT_STOPPED = 4  # a worker stopped by a SearchError, whose line it left in error-<pid>.txt of the data folder
# a worker that ran its trials, some failing by themselves (recorded "error: ..."); not 1, which is Python's own for
# an exception nothing caught: a worker that stopped so ran nothing more and is no trial's failure
EXIT_TRIAL_ERRORS = 5
UNGUARDED_MAIN = ("jobs > 1 from a script needs an `if __name__ == '__main__':` guard around the code that runs the "
                  "stage (each worker process imports the script again); the stage is unchanged: add it and run again")


def _worker_main(url: str, name: str, cache_dir: str, heartbeat: int | None, parent: int,
                 data: str | None = None, deadline: float | None = None) -> None:
    """Entry point of a spawned worker process: exit 0 done, 130 interrupted, EXIT_TRIAL_ERRORS some trials failed,
    EXIT_STOPPED stopped by the database."""
    # Only the parent's SIGTERM stops a worker. Ctrl-C reaches the whole process group; a second
    # signal landing while the first one's trial is being recorded could cut that in half.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C pending since the start is dropped here
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent while it started this one
    try:  # from the handler on: a SIGTERM as it starts (its parent killed meanwhile) is an exit 130, no traceback
        raise_on(signal.SIGTERM, Interrupted)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # held by the parent too: one pending acts here
        code = _worker_run(url, name, cache_dir, heartbeat, parent, data, deadline)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # done: a late SIGTERM has nothing left to stop
    except (KeyboardInterrupt, Interrupted):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = STOP_EXIT_CODES["interrupted"]
    sys.exit(code)


def _worker_run(url: str, name: str, cache_dir: str, heartbeat: int | None, parent: int, data: str | None,
                deadline: float | None = None) -> int:
    """The worker's work and its exit code (0 done, EXIT_TRIAL_ERRORS, EXIT_STOPPED); Interrupted on SIGTERM."""
    threading.Thread(target=_terminate_when_orphaned, args=(parent,), daemon=True).start()
    STORAGE_OUTAGE.say = None  # the parent's watcher says when the database fails and works again, once for all
    try:
        # the stage exists: a database file gone by now is not made anew (the parent reports it deleted)
        storage = open_storage(url, heartbeat_interval=heartbeat, create=False)
        report = run_worker(storage, name, load_cache(cache_dir), data=data, deadline=deadline)
    except (SearchError, StudyError, EngineError) as e:  # the database stayed down, or is gone; the data's copy
        # is gone (the temp folder cleaned): the parent reports this line
        Path(cache_dir, f"error-{os.getpid()}.txt").write_text(str(e), encoding="utf-8")
        return EXIT_STOPPED
    return EXIT_TRIAL_ERRORS if report.errors else 0


def _terminate_when_orphaned(parent: int) -> None:
    """SIGTERM this worker once its parent is gone (killed with SIGKILL, it could not pass a signal on)."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)  # the running trial is recorded as interrupted, its copy enqueued


def remove_stale_data_folders() -> list[Path]:
    """Delete this user's ``search-data-<pid>-*`` folders in the temp folder whose process is gone; returns them."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{CACHE_PREFIX}*"):
        match = re.fullmatch(rf"{CACHE_PREFIX}(\d+)-\w+", path.name)
        try:
            mine = path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.getuid()
        except OSError:
            continue
        if match and mine and not process_alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def run_stage_processes(
    url: str,
    name: str,
    dataset: Dataset,
    jobs: int,
    heartbeat: int | None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    parent_works: bool = False,
    first_look: optuna_rdb.NewlyFinished | None = None,
    data: str | None = None,
    deadline: float | None = None,
) -> WorkerReport:
    """Run the stage's waiting trials in ``jobs`` processes; report finished trials to ``on_trial`` as they land.

    With ``parent_works`` this process is one of the ``jobs`` (one BLAS thread, like the others): its first trial
    starts while the spawned workers are still importing. Only a caller whose main module is guarded may ask for
    it (the CLI): a script without the guard is found out by its spawned workers, and by then this process would
    have changed the stage.

    ``first_look`` (``optuna_rdb.state_counts_and_first_look``'s, taken with the counts a progress starts from): the
    trials finished by then are not reported, and every one finished after it is; None: those finished as the
    workers start are not reported. ``data``: the path of the local copy ``dataset`` was read from (search worker
    --data). ``deadline``: see ``run_worker``.
    """
    if jobs > 1 and getattr(multiprocessing.current_process(), "_inheriting", False):
        # This process is a spawned worker importing the user's unguarded script, which asks for workers
        # again. Leave quietly with a code the parent turns into one line (library code never exits otherwise).
        raise SystemExit(EXIT_UNGUARDED_MAIN)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if jobs > 1 and main_file is not None and not os.path.exists(main_file):  # e.g. "<stdin>"
        # each spawned worker imports the main script again and would fail before it starts, again and again
        raise SearchError(f"jobs > 1 needs the script in a file (each worker process imports it again; "
                          f"{main_file} cannot be): save it to a file, or use jobs=1")
    remove_stale_data_folders()
    storage = open_storage(url, heartbeat_interval=heartbeat)
    if jobs == 1:
        return run_worker(storage, name, dataset, on_trial=on_trial, data=data, deadline=deadline)

    watch_sqlite_file(storage)
    study = load_stage_study(storage, name)
    watcher = _FinishedTrials(study, on_trial, first_look)  # reports every worker's finished trials, this one's too
    cache_dir = tempfile.mkdtemp(prefix=f"{CACHE_PREFIX}{os.getpid()}-")
    saved_env = {k: os.environ.get(k) for k in BLAS_THREAD_VARS}
    procs: list[multiprocessing.process.BaseProcess] = []
    own = WorkerReport()
    dismissed: set[int] = set()  # workers stopped because the stage was done (their exit code is not a failure)
    try:
        save_cache(dataset, cache_dir)  # workers memory-map it: one copy in the page cache
        os.environ.update({k: "1" for k in BLAS_THREAD_VARS})  # inherited by the spawned workers
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(url, name, cache_dir, heartbeat, os.getpid(), data, deadline),
                             daemon=False)
                 for _ in range(jobs - 1 if parent_works else jobs)]
        # Ctrl-C and SIGTERM are held while the workers start: they inherit them blocked, so Ctrl-C cannot hit one
        # before it ignores SIGINT (``_worker_main``), and here they stop the command once the workers have started
        # (one cut inside a start left a worker made and never known, ended or waited for)
        # the first start launches multiprocessing's resource tracker, which unblocks SIGINT after launching it:
        # launched here, before, it leaves the signal held for the workers
        multiprocessing.resource_tracker.ensure_running()
        with stops_held(block=True):
            try:
                for p in procs:
                    p.start()
            except OSError as e:  # no more processes to be had (a limit on processes or memory)
                raise SearchFailed(f"cannot start {len(procs)} worker processes: {e.strerror or e}; run with fewer "
                                   f"jobs") from None
        _restore_env(saved_env)
        watcher.start()
        if parent_works:
            with threadpool_limits(1, user_api="blas"):
                own = run_worker(storage, name, dataset, data=data, deadline=deadline)
            # past the deadline the others finish the trials they run; else run_worker returns once the stage has
            # nothing WAITING or RUNNING: no worker holds a trial or can claim one, so the ones still starting (on a
            # short stage, often all of them) are not waited for
            for p in procs if deadline is None or time.time() < deadline else ():
                if p.is_alive() and p.pid is not None:
                    dismissed.add(p.pid)
                    os.kill(p.pid, signal.SIGTERM)
        while any(p.is_alive() for p in procs):
            watcher.raise_error()
            raise_pending()
            time.sleep(0.3)
    except BaseException:  # Ctrl-C, SIGTERM, or this process's own worker stopped by the database
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)  # each records its running trial as interrupted
        for p in procs:
            if p.pid is not None:  # started (a failed start, or one cut by SIGTERM, leaves the later ones not)
                p.join(timeout=60)
        raise
    finally:
        _restore_env(saved_env)
        for p in procs:
            if p.pid is not None:  # started
                p.join(timeout=5)
        watcher.stop()
        stopped = sorted(path.read_text(encoding="utf-8") for path in Path(cache_dir).glob("error-*.txt"))
        shutil.rmtree(cache_dir, ignore_errors=True)
    if any(p.exitcode == EXIT_UNGUARDED_MAIN for p in procs):
        raise SearchError(UNGUARDED_MAIN)
    if stopped:
        raise SearchFailed(stopped[0])
    failed = [p.exitcode for p in procs if p.exitcode not in (0, EXIT_TRIAL_ERRORS) and p.pid not in dismissed]
    if failed:
        raise SearchFailed(f"{len(failed)} of {jobs} workers on {mask_url(url)} stopped abnormally: "
                           f"{_ends_text(failed)}")
    watcher.raise_error()
    watcher.poll()  # what landed since its last look
    errors = [p.exitcode for p in procs if p.exitcode == EXIT_TRIAL_ERRORS]
    return WorkerReport(ran=watcher.new, errors=own.errors + ([f"{len(errors)} worker(s) had trials that failed"]
                                                              if errors else []))


def _ends_text(exitcodes: list[int | None]) -> str:
    """How worker processes ended, counted: ``1 killed by SIGKILL, 2 exited with code 1``."""
    ends: dict[str, int] = {}
    for code in exitcodes:
        if code is not None and code < 0 and -code in signal.valid_signals():
            end = f"killed by {signal.Signals(-code).name}"  # the kernel's OOM killer, or kill -9
        else:
            end = f"exited with code {code}"
        ends[end] = ends.get(end, 0) + 1
    return ", ".join(f"{n} {end}" for end, n in ends.items())


class _FinishedTrials(threading.Thread):
    """Polls the stage for finished trials and passes each new one to ``on_trial``, in its own thread (the
    main thread may be running a trial); ``new`` counts those that finished after ``look`` (None: after it was
    made)."""

    def __init__(self, study: Any, on_trial: Callable[[FrozenTrial], None] | None,
                 look: optuna_rdb.NewlyFinished | None = None) -> None:
        super().__init__(daemon=True, name="finished-trials")
        self.on_trial = on_trial
        self.storage, self.study_id = optuna_rdb.study_storage(study), optuna_rdb.study_id(study)
        self.look = look or optuna_rdb.NewlyFinished()
        self.new = 0  # trials finished since
        if look is None:
            self.poll(report=False)  # the trials finished before: not reported, not counted
        self.stopping = threading.Event()
        self.error: BaseException | None = None  # raised in the main thread (raise_error)

    def run(self) -> None:
        try:
            while not self.stopping.wait(0.3):
                self.poll()
        except BaseException as exc:  # e.g. StorageLost: the database file deleted; on_trial's stream closed
            self.error = exc

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def poll(self, report: bool = True) -> None:
        """Pass the trials finished since the last look to ``on_trial`` (``report`` False: only note them); nothing
        while the database fails (the workers retry, and stop if it stays down). They are read by id from the lowest
        unfinished trial up: through the study (Optuna's cache) every WAITING trial would be read at every look. The
        database failing and working again is said here for the worker processes (``STORAGE_OUTAGE``)."""
        try:
            new, look = self.look.since(self.storage, self.study_id)
            trials = optuna_rdb.trials_by_id(self.storage, new) if new and report and self.on_trial is not None else []
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            STORAGE_OUTAGE.failing(exc)
            return
        STORAGE_OUTAGE.working()
        self.look = look
        if report:
            self.new += len(new)
        for t in trials:
            self.on_trial(t)

    def stop(self) -> None:
        if self.is_alive():
            self.stopping.set()
            self.join(timeout=5)  # at most one poll away


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
