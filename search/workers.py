"""Run a stage with N worker processes on this machine (one BLAS thread each, one shared copy of the data)."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from engine.data import Dataset, load_cache, save_cache
from search.errors import Interrupted, SearchFailed
from search.stages import WorkerReport, load_stage_study, run_worker
from studies.store import mask_url, open_storage

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted()


def _worker_main(url: str, name: str, cache_dir: str, heartbeat: int | None) -> None:
    """Entry point of a spawned worker process: exit 0 done, 130 interrupted, 1 failed."""
    # Only the parent's SIGTERM stops a worker. Ctrl-C reaches the whole process group; a second
    # signal landing while the first one's trial is being recorded could cut that in half.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        storage = open_storage(url, heartbeat_interval=heartbeat)
        report = run_worker(storage, name, load_cache(cache_dir))
    except (KeyboardInterrupt, Interrupted):
        sys.exit(130)
    sys.exit(1 if report.errors else 0)


def run_stage_processes(
    url: str,
    name: str,
    dataset: Dataset,
    jobs: int,
    heartbeat: int | None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
) -> WorkerReport:
    """Run the stage's waiting trials in ``jobs`` processes; report finished trials to ``on_trial`` as they land."""
    storage = open_storage(url, heartbeat_interval=heartbeat)
    if jobs == 1:
        return run_worker(storage, name, dataset, on_trial=on_trial)

    cache_dir = tempfile.mkdtemp(prefix="search-data-")
    saved_env = {k: os.environ.get(k) for k in BLAS_THREAD_VARS}
    procs: list[multiprocessing.process.BaseProcess] = []
    try:
        save_cache(dataset, cache_dir)  # workers memory-map it: one copy in the page cache
        os.environ.update({k: "1" for k in BLAS_THREAD_VARS})  # inherited by the spawned workers
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(url, name, cache_dir, heartbeat), daemon=False)
                 for _ in range(jobs)]
        # spawned interpreters keep an ignored SIGINT ignored, so Ctrl-C cannot hit one while it starts
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for p in procs:
                p.start()
        finally:
            signal.signal(signal.SIGINT, previous_sigint)
        _restore_env(saved_env)
        study = load_stage_study(storage, name)
        seen: set[int] = set()
        while True:
            alive = any(p.is_alive() for p in procs)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                              TrialState.FAIL)):
                if t.number not in seen:
                    seen.add(t.number)
                    if on_trial is not None:
                        on_trial(t)
            if not alive:
                break
            time.sleep(0.3)
    except (KeyboardInterrupt, Interrupted):
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)  # each records its running trial as interrupted
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        _restore_env(saved_env)
        for p in procs:
            p.join(timeout=5)
        shutil.rmtree(cache_dir, ignore_errors=True)
    failed = [p.exitcode for p in procs if p.exitcode not in (0, 1)]
    if failed:
        raise SearchFailed(f"{len(failed)} of {jobs} workers on {mask_url(url)} stopped abnormally (exit codes {failed})")
    errors = [p.exitcode for p in procs if p.exitcode == 1]
    return WorkerReport(ran=len(seen), errors=[f"{len(errors)} worker(s) had trials that failed"] if errors else [])


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
