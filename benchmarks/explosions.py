"""Which runs the explosion test stops: one minibatch's loss against 3x the first, or the mean of the last 10.

For each of search_quality.py's problems, ``--runs`` random configurations of ``search auto``'s space
(lr, reg, hidden, log-uniform) are trained to the end, ``--epochs`` epochs, with no observer; then both rules
are replayed on each run's minibatch losses (the window rule by the search's own ExplosionObserver, which also
judges a first epoch shorter than its window at that epoch's end). A run a rule would stop is a *false explosion* when it ended
within 5 points of the best validation accuracy of the runs of that problem, and a *missed explosion* when the
rule let it run although its loss went past 3x the first and it ended at or below chance (1 / classes) + 5 points.
Each such run is listed (lr, reg, first loss, the highest minibatch loss and the highest mean of 10 over the first,
final validation accuracy), so a reader can tell a net killed by a blow-up from an over-regularised one (whose
first loss is mostly the L2 term and falls to chance level).

Usage: python benchmarks/explosions.py [--runs 40] [--epochs 24]
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from engine.data import DataSpec  # noqa: E402
from engine.preprocess import PreprocessSpec  # noqa: E402
from engine.trainer import Observer, train  # noqa: E402
from machine import blas_line  # noqa: E402
from search.campaign import auto_space  # noqa: E402
from search.config import RunConfig  # noqa: E402
from search.objective import EXPLODE_WINDOW, ExplosionObserver, trial_config  # noqa: E402
from search_quality import DEFAULT_PROBLEMS, PROBLEMS  # noqa: E402

FACTOR = 3.0


class Losses(Observer):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_iteration(self, iteration: int, loss: float) -> None:
        self.losses.append(loss)


def stops_one_minibatch(losses: list[float], per_epoch: int) -> bool:
    """The rule before: a loss not finite, or one minibatch's loss above 3x the first."""
    return any(not math.isfinite(loss) or loss > FACTOR * losses[0] for loss in losses)


def stops_window(losses: list[float], per_epoch: int) -> bool:
    """The search's rule, replayed with its own ExplosionObserver as the trainer calls it (a loss that is not
    finite stops the trainer itself)."""
    observer = ExplosionObserver(FACTOR)
    for i, loss in enumerate(losses, start=1):
        if not math.isfinite(loss) or observer.on_iteration(i, loss):
            return True
        if i % per_epoch == 0 and observer.on_epoch(i // per_epoch, 0.0, 0.0):
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
                runs.append((params, observer.losses, val))
            best = max(val for _, _, val in runs)
            per_epoch = max(1, len(ds.y_train) // run.train.batch_size)
            for rule, stops in (("one minibatch", stops_one_minibatch), (f"mean of last {EXPLODE_WINDOW}", stops_window)):
                stopped = [stops(losses, per_epoch) for _, losses, _ in runs]
                false = [r for s, r in zip(stopped, runs) if s and r[2] >= best - 0.05]
                missed = [r for s, r in zip(stopped, runs)
                          if not s and max(r[1]) > FACTOR * r[1][0] and r[2] <= chance + 0.05]
                print(f"{name:<14} {rule:<22} {sum(stopped):>7} {len(false):>6} {len(missed):>6}")
                for kind, listed in (("false", false), ("missed", missed)):
                    for params, losses, val in listed:
                        first, mean10 = losses[0], np.convolve(losses, np.ones(10) / 10, mode="valid")
                        print(f"    {kind}: lr {params['lr']:.3g} reg {params['reg']:.3g}, first loss {first:.3g}, "
                              f"highest {max(losses) / first:.1f}x, mean of 10 {mean10.max() / first:.1f}x, "
                              f"val {val:.3f} (best {best:.3f})")


if __name__ == "__main__":
    main()
