"""Which runs the explosion test stops: one minibatch's loss against 3x the first, or the mean of the last 10.

For each of search_quality.py's problems, ``--runs`` random configurations of ``search auto``'s space
(lr, reg, hidden, log-uniform) are trained to the end, ``--epochs`` epochs, with no observer; then both rules
are replayed on each run's minibatch losses. A run a rule would stop is a *false explosion* when it ended
within 5 points of the best validation accuracy of the runs of that problem, and a *missed explosion* when the
rule let it run and it ended at or below chance (1 / classes) + 5 points with its last 10 losses averaging above
its first (its loss went up and stayed up; an over-regularised run, whose loss falls from a large first value to
chance level, is not an explosion).

Usage: python benchmarks/explosions.py [--runs 40] [--epochs 24]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from engine.data import DataSpec  # noqa: E402
from engine.preprocess import PreprocessSpec  # noqa: E402
from engine.trainer import Observer, train  # noqa: E402
from machine import blas_line  # noqa: E402
from search.campaign import auto_space  # noqa: E402
from search.config import RunConfig  # noqa: E402
from search.objective import EXPLODE_WINDOW, trial_config  # noqa: E402
from search_quality import DEFAULT_PROBLEMS, PROBLEMS  # noqa: E402

FACTOR = 3.0


class Losses(Observer):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_iteration(self, iteration: int, loss: float) -> None:
        self.losses.append(loss)


def stops(losses: list[float], window: int) -> bool:
    """Whether the run is stopped: a loss not finite, or the mean of the last ``window`` above 3x the first."""
    recent: deque[float] = deque(maxlen=window)
    for loss in losses:
        if not math.isfinite(loss):
            return True
        recent.append(loss)
        if len(recent) == window and sum(recent) > FACTOR * losses[0] * window:
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=24)
    args = parser.parse_args()
    print(blas_line())
    print(f"{args.runs} random configurations per problem, {args.epochs} epochs each, trained to the end")
    print("false: stopped, but it ended within 5 points of the best run; missed: ran on, ended near chance")
    print(f"{'problem':<14} {'rule':<22} {'stopped':>7} {'false':>6} {'missed':>6}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name in DEFAULT_PROBLEMS:
            problem = PROBLEMS[name]
            path = problem.write(Path(tmp))
            run = RunConfig(data=DataSpec(str(path), seed=0), preprocess=PreprocessSpec(problem.preprocess))
            run = run.with_params({"train.epochs": args.epochs})
            ds = run.load()
            chance = 1 / len(np.unique(ds.y_train))
            space = auto_space(len(ds.y_train))
            runs = []
            for k in range(args.runs):
                params = {dim_name: dim.low * (dim.high / dim.low) ** rng.random() for dim_name, dim in space.items()}
                params["hidden"] = int(round(params["hidden"]))
                config = trial_config(run, params, 0, k)
                model = config.build_model(ds)
                observer = Losses()
                result = train(model, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val, observers=(observer,))
                val = result.val_acc if math.isfinite(result.val_acc) else 0.0
                runs.append((observer.losses, val))
            best = max(val for _, val in runs)
            for rule, window in (("one minibatch", 1), (f"mean of last {EXPLODE_WINDOW}", EXPLODE_WINDOW)):
                stopped = [stops(losses, window) for losses, _ in runs]
                false = sum(s and val >= best - 0.05 for s, (_, val) in zip(stopped, runs))
                missed = sum(not s and val <= chance + 0.05 and sum(losses[-10:]) / 10 > losses[0]
                             for s, (losses, val) in zip(stopped, runs))
                print(f"{name:<14} {rule:<22} {sum(stopped):>7} {false:>6} {missed:>6}")


if __name__ == "__main__":
    main()
