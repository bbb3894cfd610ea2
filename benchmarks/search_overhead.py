"""Time the search service adds per trial, beside plain Optuna loops on the same trials.

The same N points (lr, reg; digits, 3 epochs, the stage's default run) are run by: the engine's
trainer in a plain loop; plain Optuna with in-memory, JournalStorage-file and RDB (SQLite) storage,
each trial enqueued with its point; the service (a "fixed" stage: ``run_worker`` in this process,
start-up -- opening the storage, creating the stage, loading the data -- excluded). Every case calls
the same ``train`` and ``diagnose_trial``, timed around each call: a case's overhead per trial is
(wall time - that trial work) / N. PostgreSQL cases run on a throwaway server (tests/fixtures_pg.py)
when one can be started, else they are skipped with the reason.

``--stage-size N`` also times creating an N-trial stage on SQLite while another process writes to
the same file every 20 ms, and prints that writer's longest wait.

Usage: python benchmarks/search_overhead.py [--trials 200] [--no-postgres] [--stage-size 100000]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna

import search.objective as objective
from engine.data import DataSpec, Dataset
from search.campaign import coarse_stage
from search.config import RunConfig
from search.space import FloatRange
from search.stages import create_stage, run_worker
from studies.store import open_storage
from machine import ForeignLoad, blas_line

RUN = RunConfig(data=DataSpec("digits")).with_params({"train.epochs": 3})
SPACE = {"lr": FloatRange(1e-4, 1e-1), "reg": FloatRange(1e-6, 1e-2)}
WORK = {"seconds": 0.0, "cpu": 0.0}  # wall and CPU time spent inside train() and diagnose_trial(), whoever calls them


def _timed(fn: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            WORK["seconds"] += time.perf_counter() - started
            WORK["cpu"] += time.thread_time() - cpu
    return wrapper


objective.train = _timed(objective.train)
objective.diagnose_trial = _timed(objective.diagnose_trial)


def points(n: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(0)
    return [{"lr": float(10 ** rng.uniform(-4, -1)), "reg": float(10 ** rng.uniform(-6, -2))} for _ in range(n)]


def one_run(params: dict[str, float], number: int, dataset: Dataset, trial: optuna.Trial | None) -> float:
    """Build, train (reporting each epoch to ``trial``) and diagnose one run; its last val_acc."""
    config = objective.trial_config(RUN, params, 0, number)
    model = config.build_model(dataset)
    reg_loss = model.reg_loss(config.train.reg)
    observers = [objective.ExplosionObserver(3.0)] + ([objective.EpochReporter(trial)] if trial else [])
    result = objective.train(model, config.train, dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val,
                             observers=observers)
    objective.diagnose_trial(result, model, dataset, config, reg_loss)
    return result.val_acc if math.isfinite(result.val_acc) else 0.0


def bare(pts: list[dict], dataset: Dataset, _: Path) -> Callable[[], None]:
    return lambda: [one_run(p, i, dataset, None) for i, p in enumerate(pts)] and None


def plain_optuna(storage_of: Callable[[Path], object]) -> Callable:
    def run(pts: list[dict], dataset: Dataset, folder: Path) -> Callable[[], None]:
        study = optuna.create_study(storage=storage_of(folder), direction="maximize")
        for p in pts:
            study.enqueue_trial(p)

        def objective_fn(trial: optuna.Trial) -> float:
            params = {name: trial.suggest_float(name, d.low, d.high, log=True) for name, d in SPACE.items()}
            return one_run(params, trial.number, dataset, trial)
        return lambda: study.optimize(objective_fn, n_trials=len(pts))
    return run


def service(url_of: Callable[[Path], str]) -> Callable:
    def run(pts: list[dict], dataset: Dataset, folder: Path) -> Callable[[], None]:
        storage = open_storage(url_of(folder), heartbeat_interval=10)
        stage = replace(coarse_stage("bench", RUN, SPACE, len(pts), seed=0, sampler="fixed"), points=tuple(pts))
        create_stage(storage, stage)
        return lambda: run_worker(storage, "bench/coarse", dataset)
    return run


def journal(folder: Path) -> object:
    from optuna.storages.journal import JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / "journal.log")))


@contextmanager
def postgres() -> Iterator[str | None]:
    """A URL factory on a throwaway PostgreSQL server, or None with the reason printed."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.fixtures_pg import PostgresServer, create_database, pg_url
        import psycopg2  # noqa: F401
        server = PostgresServer()
        server.start()
    except Exception as exc:  # no binaries, no driver, no server: skip those rows
        print(f"PostgreSQL rows skipped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        yield None
        return
    try:
        count = iter(range(1000))
        def url(_: Path) -> str:
            name = f"bench{next(count)}"
            create_database(server.port, name)
            return pg_url(server.port, name)
        yield url
    finally:
        server.stop()


def measure(case: Callable, pts: list[dict], dataset: Dataset, folder: Path) -> tuple[float, float, float, float]:
    """(overhead, trial work, this process's CPU overhead, other load in cores) per trial, in seconds, of one case."""
    runner = case(pts, dataset, folder)  # set-up (stage creation, enqueueing) is not timed
    WORK["seconds"] = WORK["cpu"] = 0.0
    load = ForeignLoad()
    started, cpu = time.perf_counter(), time.thread_time()
    runner()
    wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
    n = len(pts)
    return (wall - WORK["seconds"]) / n, WORK["seconds"] / n, (cpu - WORK["cpu"]) / n, load.cores()


def _poke(url: str, seconds: float, worst: Any) -> None:
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name("other/coarse")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        storage.set_study_user_attr(study_id, "poke", started)
        worst.value = max(worst.value, time.perf_counter() - started)
        time.sleep(0.02)


def stage_creation(size: int, folder: Path) -> None:
    """Time creating a ``size``-trial stage while another process keeps writing to the same SQLite file."""
    import multiprocessing

    url = f"sqlite:///{folder / 'big.db'}"
    create_stage(open_storage(url), coarse_stage("other", RUN, SPACE, 1, seed=0))
    ctx = multiprocessing.get_context("spawn")
    worst = ctx.Value("d", 0.0)
    poker = ctx.Process(target=_poke, args=(url, 6.0, worst))
    poker.start()
    time.sleep(3.0)  # the other process is writing
    storage = open_storage(url)
    started = time.perf_counter()
    create_stage(storage, coarse_stage("big", RUN, SPACE, size, seed=0))
    seconds = time.perf_counter() - started
    poker.join()
    print(f"stage of {size} trials created in {seconds:.2f} s; another process's write waited at most "
          f"{worst.value:.2f} s meanwhile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--stage-size", type=int, default=0, help="also time creating a stage of this many trials")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dataset = RUN.load()
    pts = points(args.trials)
    with tempfile.TemporaryDirectory() as tmp, (postgres() if not args.no_postgres else _none()) as pg:
        cases: dict[str, Callable] = {
            "trainer in a plain loop": bare,
            "plain Optuna, in-memory": plain_optuna(lambda f: None),
            "plain Optuna, JournalStorage file": plain_optuna(journal),
            "plain Optuna, RDB SQLite": plain_optuna(lambda f: f"sqlite:///{f / 'plain.db'}"),
            "service, SQLite": service(lambda f: f"sqlite:///{f / 'service.db'}"),
        }
        if pg is not None:
            cases["plain Optuna, RDB PostgreSQL"] = plain_optuna(pg)
            cases["service, PostgreSQL"] = service(pg)
        print(blas_line())
        print(f"{args.trials} trials, digits, 3 epochs; overhead = (wall - train and diagnose time) / trials; "
              "CPU = the same in CPU time of the main thread (not BLAS threads, not a database server); other load = cores "
              "other processes (a PostgreSQL server too) kept busy")
        print(f"{'how the trials ran':<36} {'work/trial':>11} {'overhead/trial':>15} {'CPU overhead':>13} "
              f"{'other load':>10}")
        for i, (name, case) in enumerate(cases.items()):
            folder = Path(tmp, str(i))
            folder.mkdir()
            overhead, work, cpu, other = measure(case, pts, dataset, folder)
            print(f"{name:<36} {work * 1e3:>9.1f}ms {overhead * 1e3:>13.2f}ms {cpu * 1e3:>11.2f}ms {other:>10.2f}",
                  flush=True)
        if args.stage_size:
            stage_creation(args.stage_size, Path(tmp))


@contextmanager
def _none() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
