"""Headroom: how far each method's chosen configuration is from the best one the space holds, per problem.

``search_quality.py`` scores each method's choice with 3 retrains, so one seed's score carries the training
noise of 3 runs, and it cannot say how much better any method could have done. This script reads a
``search_quality.py`` run (its ``results.json`` and data files) and, per problem and trial length:

1. candidates: every configuration any method chose, plus the ``--top`` best by validation accuracy of
   ``--explore`` random configurations of the same space, each trained once;
2. an oracle scores them by their mean TEST accuracy over ``--retrains`` training seeds (set A), adds
   ``--local`` neighbours of its 5 best (each coordinate moved by up to 10 % of the space's width) scored
   the same way, and picks the best of all. It peeks at test, so a method that chooses by validation
   cannot expect to choose better among these configurations (the space may hold a better one that none
   of them is near: the ceiling is the best found, evidence rather than proof);
3. the oracle's choice and every method's choice are retrained with ``--retrains`` other seeds (set B, the
   same seeds for every configuration) and scored on test: the oracle's score is the ceiling, free of the
   optimism of having been picked on the same runs.

It prints per problem: the ceiling, each method's mean over the search seeds on set B, the headroom
(ceiling - method) and auto - TPE per seed on set B. A gain of auto over TPE larger than TPE's headroom is
not possible in expectation on that problem, whatever the search does.

Usage:
    python benchmarks/search_quality.py --methods auto,tpe --out /tmp/sq   # first
    python benchmarks/headroom.py /tmp/sq [--problems scaled-raw] [--retrains 8] [--explore 200] [--top 20] [--local 20]
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads its BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from engine.data import DataSpec  # noqa: E402
from engine.preprocess import PreprocessSpec  # noqa: E402
from engine.trainer import train  # noqa: E402
from search.campaign import auto_space  # noqa: E402
from search.config import RunConfig  # noqa: E402
from search.objective import trial_config  # noqa: E402
from search.space import Dimension, IntRange  # noqa: E402
from search_quality import PROBLEMS, blas_kernel, fmt_params  # noqa: E402

SEEDS_A, SEEDS_B, EXPLORE_SEED = 2_000_000, 3_000_000, 4_000_000  # no search or retrain of search_quality uses them
_RUN: dict[str, Any] = {}  # per worker process: (problem, epochs) -> (run, dataset)


def _setup(problem: str, epochs: int, folder: str) -> tuple[RunConfig, Any]:
    key = f"{problem}/{epochs}"
    if key not in _RUN:
        path = sorted((Path(folder) / "data").glob(f"{problem}.*"))[0]
        run = RunConfig(data=DataSpec(str(path), seed=0), preprocess=PreprocessSpec(PROBLEMS[problem].preprocess))
        run = run.with_params({"train.epochs": epochs})
        _RUN[key] = (run, run.load())
    return _RUN[key]


def score(task: tuple[str, int, str, dict[str, Any], int]) -> tuple[float, float]:
    """(val, test) of one configuration trained with seed (0, ``number``) as the retrains train it: to the end,
    unless the loss stops being a number (scored 0)."""
    problem, epochs, folder, params, number = task
    run, ds = _setup(problem, epochs, folder)
    config = trial_config(run, params, 0, number)
    model = config.build_model(ds)
    result = train(model, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val)
    if not np.isfinite(result.val_acc):
        return 0.0, 0.0
    return float(result.val_acc), float(model.accuracy(ds.X_test, ds.y_test))


def draw(dim: Dimension, rng: np.random.Generator) -> float | int:
    """One value of a numeric dimension, uniform in its coordinate (as the random sampler draws it)."""
    value = float(dim.sample(rng, 1)[0])
    return min(max(int(round(value)), dim.low), dim.high) if isinstance(dim, IntRange) else value


def neighbour(space: dict[str, Dimension], params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """``params`` with each coordinate moved uniformly by up to 10 % of its dimension's width, kept inside."""
    moved = {}
    for name, dim in space.items():
        u = dim.to_unit(params[name]) + rng.uniform(-0.1, 0.1) * dim.width
        value = dim.from_unit(min(max(u, dim.to_unit(dim.low)), dim.to_unit(dim.high)))
        moved[name] = min(max(int(round(value)), dim.low), dim.high) if isinstance(dim, IntRange) else float(value)
    return moved


def set_a(pool: Any, problem: str, epochs: int, folder: str, cands: list[dict[str, Any]], n: int) -> np.ndarray:
    """Mean test accuracy of each candidate over the ``n`` training seeds of set A."""
    if not cands:
        return np.zeros(0)
    a = pool.map(score, [(problem, epochs, folder, p, SEEDS_A + s) for p in cands for s in range(n)])
    return np.array([t for _, t in a]).reshape(len(cands), n).mean(axis=1)


def key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def headroom(pool: Any, folder: str, problem: str, runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    methods = [m for m in ("auto", "tpe") if m in runs[0]["results"]] + sorted(
        m for m in runs[0]["results"] if m not in ("auto", "tpe"))
    for epochs in sorted({r["results"]["auto"]["trial_epochs"] for r in runs}):
        at = [r for r in runs if r["results"]["auto"]["trial_epochs"] == epochs]
        run, ds = _setup(problem, epochs, folder)
        space = auto_space(len(ds.y_train))
        rng = np.random.default_rng(EXPLORE_SEED)
        explored = [{name: draw(dim, rng) for name, dim in space.items()} for _ in range(args.explore)]
        once = pool.map(score, [(problem, epochs, folder, p, EXPLORE_SEED + i) for i, p in enumerate(explored)])
        ranked = sorted(range(len(explored)), key=lambda i: once[i][0], reverse=True)[:args.top]
        candidates = {key(r["results"][m]["params"]): r["results"][m]["params"] for r in at for m in methods}
        candidates.update({key(explored[i]): explored[i] for i in ranked})
        cands = list(candidates.values())
        test_a = set_a(pool, problem, epochs, folder, cands, args.retrains)
        leaders = [cands[i] for i in np.argsort(-test_a)[:5]]
        near = [neighbour(space, leaders[i % len(leaders)], rng) for i in range(args.local)]
        near = [p for p in {key(p): p for p in near}.values() if key(p) not in candidates]
        cands += near
        test_a = np.concatenate([test_a, set_a(pool, problem, epochs, folder, near, args.retrains)])
        oracle = cands[int(np.argmax(test_a))]
        b = pool.map(score, [(problem, epochs, folder, p, SEEDS_B + s) for p in cands for s in range(args.retrains)])
        test_b = dict(zip((key(p) for p in cands), np.array([t for _, t in b]).reshape(len(cands), args.retrains)))
        ceiling = float(test_b[key(oracle)].mean())
        sd = float(test_b[key(oracle)].std(ddof=1) / np.sqrt(args.retrains))
        print(f"\n=== {problem}, {epochs}-epoch trials: {len(at)} search seeds; {len(cands)} candidates "
              f"({args.top} best of {args.explore} random configurations, {len(near)} neighbours of the oracle's "
              f"5 best, the rest the methods' choices)")
        print(f"oracle (best mean test on set A): {fmt_params(oracle)}; "
              f"set A {float(test_a.max()):.4f}, set B (the ceiling) {ceiling:.4f} +- {sd:.4f}")
        print(f"best of the {args.explore} random configurations by validation, on set B: "
              f"{float(test_b[key(explored[ranked[0]])].mean()):.4f}")
        print(f"{'method':<14}{'test, set B':>12}{'headroom pts':>14}{'test, its 3 retrains':>22}")
        means = {}
        for m in methods:
            means[m] = np.array([test_b[key(r["results"][m]["params"])].mean() for r in at])
            own = np.mean([r["results"][m]["test"] for r in at])
            print(f"{m:<14}{means[m].mean():12.4f}{100 * (ceiling - means[m].mean()):+14.2f}{own:22.4f}")
        if "auto" in means and "tpe" in means:
            d = 100 * (means["auto"] - means["tpe"])
            print(f"auto - tpe on set B per seed (pts): {' '.join(f'{x:+.1f}' for x in d)}; mean {d.mean():+.2f}, "
                  f"auto >= tpe in {int((d >= 0).sum())} of {len(d)}; "
                  f"tpe's headroom {100 * (ceiling - means['tpe'].mean()):+.2f} pts")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a search_quality.py --out folder (results.json and data/)")
    parser.add_argument("--problems", default=None, help="comma-separated (default: every problem in the run)")
    parser.add_argument("--retrains", type=int, default=8, help="training seeds in each of sets A and B (default 8)")
    parser.add_argument("--explore", type=int, default=200, help="random configurations trained once (default 200)")
    parser.add_argument("--top", type=int, default=20, help="of them, the best by validation kept (default 20)")
    parser.add_argument("--local", type=int, default=20,
                        help="neighbours of the oracle's 5 best candidates added (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = parser.parse_args(argv)
    results = Path(args.folder) / "results.json"
    if not results.is_file():
        parser.error(f"{results}: no such file; run benchmarks/search_quality.py --out {args.folder} first")
    if min(args.explore, args.top, args.workers) < 1 or args.retrains < 2 or args.local < 0:
        parser.error("--retrains must be >= 2, --local >= 0, --explore, --top and --workers >= 1")
    done = json.loads(results.read_text())
    problems = args.problems.split(",") if args.problems else sorted({r["problem"] for r in done})
    print(f"headroom of {results}: problems {', '.join(problems)}; sets A and B of {args.retrains} training "
          f"seeds each; BLAS {blas_kernel()}")
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for problem in problems:
            runs = sorted((r for r in done if r["problem"] == problem), key=lambda r: r["seed"])
            if not runs:
                parser.error(f"{results} has no run of problem {problem!r}")
            headroom(pool, args.folder, problem, runs, args)
    print(f"\nran in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
