"""Trials per hour of one stage run with --jobs 1 and with --jobs 2, on CIFAR-shaped trials, in one run.

The same N trials (random lr and reg, seed 0: the same points with any --jobs) of CIFAR-shaped synthetic data
(5000 x 3072 training images, the default net, ``--epochs`` epochs) are run as ``search coarse --jobs J`` runs
them (``search.workers.run_stage_processes`` on a fresh SQLite database, the data loaded beforehand): with 1
job in this process with NumPy's default BLAS threads, with 1 job limited to 1 BLAS thread (what each of
several workers gets), and with 2 jobs. Wall time runs from the call to the last trial recorded, so worker
start-up and the shared data copy are included; the "first trial" column says how long that start-up took.
"train s/trial" is the trials' own mean ``seconds`` attribute (building and training the net).

With ``--rounds R`` the three cases run R times, interleaved (1, 2, 3, 1, 2, 3, ...), and the ratios are those of
the median rates, so that a slow spell of a shared machine does not land on one case only.

Usage: python benchmarks/jobs_scaling.py [--trials 12] [--epochs 2] [--rounds 1]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import optuna
from threadpoolctl import threadpool_limits

from engine.data import DataSpec
from search.campaign import coarse_stage
from search.config import RunConfig
from search.space import FloatRange
from search.stages import create_stage
from search.workers import run_stage_processes
from studies.store import open_storage
from machine import ForeignLoad, blas_line

SPACE = {"lr": FloatRange(1e-4, 1e-2), "reg": FloatRange(1e-6, 1e-2)}
CASES = (("1 job, default BLAS threads", 1, None), ("1 job, 1 BLAS thread", 1, 1), ("2 jobs", 2, None))


def run_case(folder: Path, run: RunConfig, dataset: object, trials: int, jobs: int,
             threads: int | None) -> tuple[float, float, float, float]:
    """(wall seconds, first trial's start after the call, mean train seconds per trial, other load in cores)."""
    url = f"sqlite:///{folder / 'jobs.db'}"
    study, _ = create_stage(open_storage(url, heartbeat_interval=10), coarse_stage("jobs", run, SPACE, trials, seed=0))
    load = ForeignLoad()
    started, utc_started = time.perf_counter(), datetime.now(timezone.utc).replace(tzinfo=None)
    with threadpool_limits(threads, user_api="blas") if threads else nullcontext():
        report = run_stage_processes(url, "jobs/coarse", dataset, jobs, heartbeat=10, parent_works=True)
    wall = time.perf_counter() - started
    other = load.cores()
    done = optuna.load_study(study_name="jobs/coarse", storage=url).get_trials()
    assert report.ran == trials == len(done), (report, len(done))
    first = (min(t.datetime_start for t in done) - utc_started).total_seconds()  # Optuna stores naive UTC
    return wall, first, sum(t.user_attrs["seconds"] for t in done) / trials, other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="times each case runs, interleaved (default 1)")
    args = parser.parse_args()
    if args.trials < 2 or args.epochs < 1 or args.rounds < 1:
        parser.error("--trials must be >= 2, --epochs and --rounds >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = RunConfig(data=DataSpec("synthetic")).with_params({"train.epochs": args.epochs})
    dataset = run.load()
    print(blas_line())
    print(f"{args.trials} trials, synthetic CIFAR-shaped data {dataset.X_train.shape}, hidden {run.arch.hidden}, "
          f"{args.epochs} epochs; other load = cores other processes kept busy during the row")
    print(f"{'how':<30} {'wall s':>7} {'trials/h':>9} {'first trial':>11} {'train s/trial':>13} {'other load':>10}")
    rates: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    for _ in range(args.rounds):
        for name, jobs, threads in CASES:
            with tempfile.TemporaryDirectory() as tmp:
                wall, first, train_s, other = run_case(Path(tmp), run, dataset, args.trials, jobs, threads)
            rates[name].append(args.trials / wall * 3600)
            print(f"{name:<30} {wall:>7.1f} {rates[name][-1]:>9.0f} {first:>10.2f}s {train_s:>12.2f}s "
                  f"{other:>10.2f}", flush=True)
    median = {name: statistics.median(r) for name, r in rates.items()}
    if args.rounds > 1:
        print("median trials/h: " + ", ".join(f"{name} {median[name]:.0f}" for name in median))
    for name, _, _ in CASES[:2]:
        print(f"2 jobs / {name}: {median['2 jobs'] / median[name]:.2f}x the trials per hour"
              + (f" (medians of {args.rounds} rounds)" if args.rounds > 1 else ""))


if __name__ == "__main__":
    main()
