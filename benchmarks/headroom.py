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
   same seeds for every configuration) and scored on test: the oracle's score is the ceiling. The optimism
   of picking it on the runs that score it is removed; the test examples are the same in both sets.

It prints per problem: the ceiling, each method's mean over the search seeds on set B, the headroom
(ceiling - method, with the standard error of that difference over the set-B seeds) and auto - TPE per seed
on set B. The ceiling estimates the best configuration found, not a bound: a method whose expected gain over
TPE exceeds TPE's headroom would have to choose better than that configuration on average.

Only the problems whose data file carries its own validation and test splits are analysed (a CSV's splits
are drawn per search seed), and only the methods whose trials had ``auto``'s length (the baselines; an auto
variant may stop at another length).

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

# training seeds (trial_config(run, params, 0, n) trains with seed n): search_quality's trial n of a stage trains
# with stage_seed x 1,000,003 + n and its retrain r with seed x 1,000,003 + 10^6 + r (mod 2^32); _check_seeds
SEEDS_A, SEEDS_B, EXPLORE_SEED = 500_000, 600_000, 700_000
_RUN: dict[str, Any] = {}  # per worker process: "problem/epochs" -> (run, dataset)


def _check_seeds(retrains: int, explore: int) -> None:
    """Refuse seeds that a search_quality trial (number below 100,000) or retrain may have used, for stage seeds
    below 10,000 (search seeds below 5,000)."""
    starts = (np.arange(10_000, dtype=np.int64) * 1_000_003) % 2**32
    for low, n in ((SEEDS_A, retrains), (SEEDS_B, retrains), (EXPLORE_SEED, explore)):
        d = (low - starts) % 2**32  # where our seeds begin, counted from each stage's first seed
        used = (d < 100_000) | ((d < 10**6 + 1_000) & (d + n > 10**6)) | (d + n > 2**32)
        if used.any() or n > 100_000:
            raise SystemExit(f"headroom: seeds {low}..{low + n - 1} may be seeds search_quality trained with; "
                             "use fewer --retrains or --explore")


def data_file(folder: str, problem: str) -> Path:
    """The problem's data file that search_quality.py wrote into ``folder``."""
    return sorted((Path(folder) / "data").glob(f"{problem}.*"))[0]


def _setup(problem: str, epochs: int, folder: str) -> tuple[RunConfig, Any]:
    name = f"{problem}/{epochs}"
    if name not in _RUN:
        run = RunConfig(data=DataSpec(str(data_file(folder, problem)), seed=0),
                        preprocess=PreprocessSpec(PROBLEMS[problem].preprocess))
        run = run.with_params({"train.epochs": epochs})
        _RUN[name] = (run, run.load())
    return _RUN[name]


def score(task: tuple[str, int, str, dict[str, Any], int]) -> tuple[float, float]:
    """(val, test) of one configuration trained with seed ``number`` as the retrains train it: to the end (the
    trainer stops at a loss that is not finite, and the weights it has then are scored); a validation accuracy
    that is not a number counts as 0 for ranking."""
    problem, epochs, folder, params, number = task
    run, ds = _setup(problem, epochs, folder)
    config = trial_config(run, params, 0, number)
    model = config.build_model(ds)
    result = train(model, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val)
    val = float(result.val_acc) if np.isfinite(result.val_acc) else 0.0
    return val, float(model.accuracy(ds.X_test, ds.y_test))


def _value(dim: Dimension, value: float) -> float | int:
    """``value`` as the dimension holds it: a whole number inside an integer range, else a float."""
    return min(max(int(round(value)), dim.low), dim.high) if isinstance(dim, IntRange) else float(value)


def draw(dim: Dimension, rng: np.random.Generator) -> float | int:
    """One value of a numeric dimension, uniform in its coordinate (as the random sampler draws it)."""
    return _value(dim, float(dim.sample(rng, 1)[0]))


def neighbour(space: dict[str, Dimension], params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """``params`` with each coordinate moved uniformly by up to 10 % of its dimension's width, kept inside."""
    moved = {}
    for name, dim in space.items():
        u = dim.to_unit(params[name]) + rng.uniform(-0.1, 0.1) * dim.width
        moved[name] = _value(dim, dim.from_unit(min(max(u, dim.to_unit(dim.low)), dim.to_unit(dim.high))))
    return moved


def mean_test_a(pool: Any, problem: str, epochs: int, folder: str, cands: list[dict[str, Any]], n: int) -> np.ndarray:
    """Mean test accuracy of each candidate over the ``n`` training seeds of set A."""
    if not cands:
        return np.zeros(0)
    a = pool.map(score, [(problem, epochs, folder, p, SEEDS_A + s) for p in cands for s in range(n)])
    return np.array([t for _, t in a]).reshape(len(cands), n).mean(axis=1)


def key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def headroom(pool: Any, folder: str, problem: str, runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    ordered = [m for m in ("auto", "tpe") if m in runs[0]["results"]] + sorted(
        m for m in runs[0]["results"] if m not in ("auto", "tpe"))
    # a method is scored only where its trials had auto's length (the baselines always; a variant of auto may not)
    methods = [m for m in ordered
               if all(r["results"][m]["trial_epochs"] == r["results"]["auto"]["trial_epochs"] for r in runs)]
    if len(methods) < len(ordered):
        print(f"\n{problem}: left out (trials of another length than auto's): "
              f"{', '.join(m for m in ordered if m not in methods)}")
    for epochs in sorted({r["results"]["auto"]["trial_epochs"] for r in runs}):
        at = [r for r in runs if r["results"]["auto"]["trial_epochs"] == epochs]
        _, ds = _setup(problem, epochs, folder)
        space = auto_space(len(ds.y_train))
        rng = np.random.default_rng(EXPLORE_SEED)
        explored = [{name: draw(dim, rng) for name, dim in space.items()} for _ in range(args.explore)]
        once = pool.map(score, [(problem, epochs, folder, p, EXPLORE_SEED + i) for i, p in enumerate(explored)])
        ranked = sorted(range(len(explored)), key=lambda i: once[i][0], reverse=True)[:args.top]
        candidates = {key(r["results"][m]["params"]): r["results"][m]["params"] for r in at for m in methods}
        candidates.update({key(explored[i]): explored[i] for i in ranked})
        cands = list(candidates.values())
        test_a = mean_test_a(pool, problem, epochs, folder, cands, args.retrains)
        leaders = [cands[i] for i in np.argsort(-test_a)[:5]]
        near = [neighbour(space, leaders[i % len(leaders)], rng) for i in range(args.local)]
        near = [p for p in {key(p): p for p in near}.values() if key(p) not in candidates]
        cands += near
        test_a = np.concatenate([test_a, mean_test_a(pool, problem, epochs, folder, near, args.retrains)])
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
        print(f"{'method':<14}{'test, set B':>12}{'headroom pts':>18}{'test, its 3 retrains':>22}")
        means = {}
        for m in methods:
            runs_b = np.array([test_b[key(r["results"][m]["params"])] for r in at])  # search seed x set-B seed
            means[m] = runs_b.mean(axis=1)
            # per set-B seed: the ceiling's run minus the method's mean over search seeds; its standard error
            diff = 100 * (test_b[key(oracle)] - runs_b.mean(axis=0))
            se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
            own = np.mean([r["results"][m]["test"] for r in at])
            print(f"{m:<14}{means[m].mean():12.4f}{diff.mean():+11.2f} +- {se:.2f}{own:22.4f}")
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
    for problem in problems:
        if not any(r["problem"] == problem for r in done):
            parser.error(f"{results} has no run of problem {problem!r}")
        if data_file(args.folder, problem).suffix != ".npz":  # a CSV's splits are drawn per search seed
            parser.error(f"{problem}: its data file carries no fixed validation and test splits; headroom needs them")
    _check_seeds(args.retrains, args.explore)
    print(f"headroom of {results}: problems {', '.join(problems)}; sets A and B of {args.retrains} training "
          f"seeds each; BLAS {blas_kernel()}")
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for problem in problems:
            runs = sorted((r for r in done if r["problem"] == problem), key=lambda r: r["seed"])
            headroom(pool, args.folder, problem, runs, args)
    print(f"\nran in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
