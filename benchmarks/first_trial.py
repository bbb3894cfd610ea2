"""Seconds from typing a `search coarse` command to its first trial running, with --jobs 1 and --jobs auto.

Each round runs `python -m search coarse` (digits, 4 trials of 1 epoch) as a new process, once on a new database
and once on a database that already holds a campaign, with each --jobs value, in interleaved order; the first
trial's start is its ``datetime_start`` as the database recorded it (Optuna stores naive UTC). Beside them, the
same interpreter starting and importing what the command imports, and doing nothing at all, so the remaining
gap is the command's own work. Prints the median of each over the rounds and the auto / 1 ratio.

Usage: python benchmarks/first_trial.py [--rounds 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import optuna

from machine import ForeignLoad, blas_line

COMMAND = [sys.executable, "-m", "search", "coarse", "--trials", "4", "--epochs", "1", "--json"]
IMPORTS = "import search.cli.stages, search.campaign, search.workers"


def first_trial_seconds(folder: Path, jobs: str, existing: bool) -> float:
    """Seconds from starting the command to the first trial's recorded start."""
    db = folder / f"first-{jobs}-{existing}.db"
    for left in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))):  # a killed run's logs too
        left.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    if existing:
        subprocess.run([*COMMAND, "--campaign", "earlier", "--jobs", "1", "--storage", url], check=True,
                       capture_output=True)
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    subprocess.run([*COMMAND, "--campaign", "now", "--jobs", jobs, "--storage", url], check=True,
                   capture_output=True)
    trials = optuna.load_study(study_name="now/coarse", storage=url).get_trials(deepcopy=False)
    assert len(trials) == 4, len(trials)
    return (min(t.datetime_start for t in trials) - started).total_seconds()


def process_seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(blas_line())
    cases = {f"--jobs {jobs}, {'existing' if existing else 'new'} database": (jobs, existing)
             for existing in (False, True) for jobs in ("1", "auto")}
    seconds: dict[str, list[float]] = {name: [] for name in [*cases, "python starting, nothing else", "python importing the command's modules"]}
    load = ForeignLoad()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, (jobs, existing) in cases.items():
                seconds[name].append(first_trial_seconds(Path(tmp), jobs, existing))
            seconds["python starting, nothing else"].append(process_seconds("pass"))
            seconds["python importing the command's modules"].append(process_seconds(IMPORTS))
    print(f"median of {args.rounds} rounds; other load {load.cores():.2f} cores; {os.cpu_count()} CPUs")
    print(f"{'command to first trial':<44} {'median s':>8} {'min s':>6} {'max s':>6}")
    for name, values in seconds.items():
        print(f"{name:<44} {statistics.median(values):>8.2f} {min(values):>6.2f} {max(values):>6.2f}")
    for kind in ("new", "existing"):
        one, auto = (statistics.median(seconds[f"--jobs {j}, {kind} database"]) for j in ("1", "auto"))
        print(f"{kind} database: --jobs auto / --jobs 1 = {auto / one:.2f}x")


if __name__ == "__main__":
    main()
