"""Time the search service adds per trial (sampling, storage, bookkeeping) against the trials' training time.

For each case a coarse stage runs into a fresh SQLite database. Overhead is measured two ways:

* in-trial: per trial, (datetime_complete - datetime_start) - seconds -- what the service does
  around the training loop of a claimed trial (suggest, intermediate reports, user attributes,
  tell, heartbeat thread);
* whole-stage: (wall time of running the stage's trials x jobs - sum of training seconds) / trials
  -- everything but loading the data (which a run without the service pays too): claiming
  trials, checking for stale ones, and with --jobs 2 starting the workers and writing the
  memory-mapped copy of the data they share.

Usage: python benchmarks/search_overhead.py [--trials 20]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from engine.data import DataSpec, Dataset
from search.campaign import coarse_stage
from search.stages import create_stage
from search.workers import run_stage_processes
from search.config import RunConfig
from search.space import FloatRange
from studies.store import open_storage

CASES = {
    # one-epoch trials on CIFAR-10-sized data: 49,000 training images of 3072 features, 3072-100-10
    "cifar-shaped": RunConfig(data=DataSpec("synthetic", train_size=49000, val_size=1000, test_size=100)).with_params(
        {"arch.hidden": 100, "train.optimizer": "sgd", "train.batch_size": 200, "train.epochs": 1}),
    # the default data: digits, 3 epochs, as a coarse stage runs it
    "digits": RunConfig(data=DataSpec("digits")).with_params({"train.epochs": 3}),
}
SPACE = {"lr": FloatRange(1e-4, 1e-1), "reg": FloatRange(1e-6, 1e-2)}


def measure(name: str, run: RunConfig, dataset: Dataset, trials: int, jobs: int, folder: Path) -> dict[str, float]:
    url = f"sqlite:///{folder / f'{name}-{jobs}.db'}"
    create_stage(open_storage(url), coarse_stage(name, run, SPACE, trials, seed=0))
    started = time.perf_counter()
    run_stage_processes(url, f"{name}/coarse", dataset, jobs, heartbeat=10)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=f"{name}/coarse", storage=open_storage(url))
    done = [t for t in study.get_trials() if t.datetime_complete is not None]
    train = np.array([t.user_attrs["seconds"] for t in done])
    span = np.array([(t.datetime_complete - t.datetime_start).total_seconds() for t in done])
    in_trial = span - train
    whole = (wall * jobs - train.sum()) / len(done)
    return {
        "trials": len(done), "train_s": float(train.mean()), "in_trial_s": float(in_trial.mean()),
        "in_trial_pct": float(100 * in_trial.sum() / train.sum()), "whole_s": float(whole),
        "whole_pct": float(100 * whole / train.mean()), "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    print(f"{'case':<14} {'jobs':>4} {'trials':>6} {'train/trial':>12} {'in-trial':>10} {'in-trial %':>10} "
          f"{'whole/trial':>12} {'whole %':>8} {'wall':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in CASES.items():
            load_started = time.perf_counter()
            dataset = run.load()
            load_s = time.perf_counter() - load_started
            for jobs in (1, 2):
                m = measure(name, run, dataset, args.trials, jobs, Path(tmp))
                print(f"{name:<14} {jobs:>4} {m['trials']:>6} {m['train_s'] * 1e3:>10.1f}ms "
                      f"{m['in_trial_s'] * 1e3:>8.1f}ms {m['in_trial_pct']:>9.1f}% "
                      f"{m['whole_s'] * 1e3:>10.1f}ms {m['whole_pct']:>7.1f}% {m['wall']:>6.1f}s")
            print(f"{'':<14} (loading + preprocessing the data once: {load_s * 1e3:.0f} ms per stage)")


if __name__ == "__main__":
    main()
