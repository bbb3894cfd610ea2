"""Search quality: ``search auto`` against random, TPE, grid and random + successive halving at equal epochs.

Per problem and seed, ``search auto``'s recipe runs first, from Python as the CLI runs it
(``search.campaign.run_auto`` with the CLI's defaults: a 50-trial, 3-epoch coarse stage over
``auto_space(n_train)``, up to three fine stages, the top 5 re-run 3 times, the best mean retrained
3 times and scored on test), into its own SQLite file that is kept. Its training epochs are counted
from that database: every trial of every stage by its ``iterations`` (an exploded trial counts the
iterations it ran), plus the retrains. Then four plain Optuna loops over the engine get the same
total: the same space, trials as long as auto's final stage, stopped exactly when the epochs left
run out, the chosen configuration (best last-epoch validation accuracy of a full-length trial)
retrained as many times as auto retrains and scored on test:

* random   -- Optuna's RandomSampler
* tpe      -- Optuna's TPESampler (default settings)
* grid     -- Optuna's GridSampler over k values per dimension (k as large as the budget allows)
* sha      -- RandomSampler + SuccessiveHalvingPruner on the per-epoch validation accuracy

Variants of ``search auto`` run beside it, each into its own SQLite file, with the budget they spend
(the baselines stay matched to the default's):

* auto-random       -- ``--fine-sampler random``: the fine stages sample their refined box at random (the
                       default before TPE measured better there)
* auto-asha         -- ``--scheduler asha`` (coarse and fine stages) and 3x the trials (asha trials stop early)
* auto-random-asha  -- both

Every search trial uses ``ExplosionObserver(3.0)``, as the product's do (auto's final re-evaluation and every
retrain run to the end). Seeds run in parallel
worker processes (``--workers``, default 2), each with one BLAS thread.

Usage:
    nice -n 10 python benchmarks/search_quality.py                       # 10 seeds, the default problems
    python benchmarks/search_quality.py --quick                          # smoke run: 2 seeds, short auto
    python benchmarks/search_quality.py --seeds 5 --problems digits-noisy,scaled-raw --out /tmp/sq
    python benchmarks/search_quality.py --methods auto,auto-random,tpe           # a subset (auto always runs)
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads its BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from engine.data import DataSpec, Dataset, _read_digits  # noqa: E402
from engine.preprocess import PreprocessSpec  # noqa: E402
from engine.trainer import Observer, TrainResult, train  # noqa: E402
from search.campaign import FINE_SAMPLER, Execution, auto_space, coarse_stage, run_auto  # noqa: E402
from search.config import RunConfig  # noqa: E402
from search.objective import ExplosionObserver, trial_config  # noqa: E402
from search.space import Dimension  # noqa: E402
from machine import blas_pools  # noqa: E402

# the variants of search auto: run_auto's keyword arguments, and the factor on the coarse stage's trials
AUTO_VARIANTS: dict[str, tuple[dict[str, Any], int]] = {
    "auto": ({}, 1),
    "auto-random": ({"fine_sampler": "random"}, 1),
    "auto-asha": ({"scheduler": "asha"}, 3),
    "auto-random-asha": ({"fine_sampler": "random", "scheduler": "asha"}, 3),
}
BASELINES = ("random", "tpe", "grid", "sha")  # their order fixes their training seeds
METHODS = (*AUTO_VARIANTS, *BASELINES)
RETRAIN_SEED_BASE = 10**6  # as search.campaign.retrain_final: seeds no trial uses


# --------------------------------------------------------------------------- the problems
@dataclass(frozen=True)
class Problem:
    """A benchmark problem: a data file the script writes, its preprocessing, and why it is hard."""

    name: str
    why: str
    preprocess: str
    write: Callable[[Path], Path]


def _flip(y: np.ndarray, rate: float, classes: int, rng: np.random.Generator) -> np.ndarray:
    """``y`` with a ``rate`` share of labels moved to another class drawn uniformly."""
    y = y.copy()
    hit = rng.random(len(y)) < rate
    y[hit] = (y[hit] + rng.integers(1, classes, hit.sum())) % classes
    return y


def write_digits_noisy(folder: Path) -> Path:
    """Digits, 300 training samples, 25 % of the train and val labels wrong; test labels clean."""
    X, y = _read_digits()
    X, y = X.astype(np.float32) / np.float32(16), y.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    path = folder / "digits-noisy.npz"
    np.savez(path, X_train=X[:300], y_train=_flip(y[:300], 0.25, 10, rng), X_val=X[300:800],
             y_val=_flip(y[300:800], 0.25, 10, rng), X_test=X[800:], y_test=y[800:])
    return path


def write_clusters(folder: Path) -> Path:
    """make_classification: 12 classes, 2 Gaussian clusters each on a 12-dim hypercube, 40 features (12
    informative, 8 redundant), 3 % labels flipped; 1000 train / 1000 val / 1500 test."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=3500, n_features=40, n_informative=12, n_redundant=8, n_classes=12,
                               n_clusters_per_class=2, class_sep=1.5, flip_y=0.03, random_state=0)
    X = X.astype(np.float32)
    path = folder / "clusters-12.npz"
    np.savez(path, X_train=X[:1000], y_train=y[:1000], X_val=X[1000:2000], y_val=y[1000:2000],
             X_test=X[2000:], y_test=y[2000:])
    return path


def write_scaled_raw(folder: Path) -> Path:
    """make_classification, 8 classes, 20 features each multiplied by 10^U(-2, 2) and shifted by 10^U(-1, 2);
    trained without preprocessing. 1000 train / 1000 val / 1000 test."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=3000, n_features=20, n_informative=10, n_redundant=4, n_classes=8,
                               n_clusters_per_class=2, class_sep=2.0, flip_y=0.02, random_state=1)
    rng = np.random.default_rng(1)
    X = (X * 10 ** rng.uniform(-2, 2, X.shape[1]) + 10 ** rng.uniform(-1, 2, X.shape[1])).astype(np.float32)
    path = folder / "scaled-raw.npz"
    np.savez(path, X_train=X[:1000], y_train=y[:1000], X_val=X[1000:2000], y_val=y[1000:2000],
             X_test=X[2000:], y_test=y[2000:])
    return path


def write_breast_raw(folder: Path) -> Path:
    """scikit-learn's breast cancer (569 x 30, features from 1e-3 to 4e3) as CSV; split 70/15/15 by DataSpec."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    path = folder / "breast-raw.csv"
    header = ",".join(f"f{i}" for i in range(data.data.shape[1])) + ",label"
    np.savetxt(path, np.column_stack([data.data, data.target]), delimiter=",", header=header, comments="",
               fmt=["%.6g"] * data.data.shape[1] + ["%d"])
    return path


PROBLEMS: dict[str, Problem] = {
    "digits-noisy": Problem(
        "digits-noisy",
        "300 training images, a quarter of the train/val labels wrong: a net that fits the noise loses, "
        "so lr, reg and width must balance fitting against memorising (random configurations: median val "
        "0.23, best 0.64 on noisy val = ~0.89 clean test)",
        "mean_image", write_digits_noisy),
    "clusters-12": Problem(
        "clusters-12",
        "12 classes of 2 clusters each in 12 informative of 40 dimensions: needs a wide enough hidden layer "
        "and the right lr/reg to draw non-linear boundaries from 1000 samples (random configurations: "
        "median val 0.30, best 0.66)",
        "mean_image", write_clusters),
    "scaled-raw": Problem(
        "scaled-raw",
        "features on scales from 0.01 to 100 with offsets up to 100, no preprocessing: the usable lr band "
        "is narrow and set by the largest feature, reg interacts with the raw scale (random configurations: "
        "median val 0.35, best 0.62; standardised the same data reaches far higher)",
        "none", write_scaled_raw),
    "breast-raw": Problem(
        "breast-raw",
        "30 raw features from 1e-3 to 4e3, no preprocessing: the lr must suit the largest feature; 2 classes, "
        "~85 val / ~86 test samples, so one sample is over a point (noisy; not a default problem)",
        "none", write_breast_raw),
}
DEFAULT_PROBLEMS = ("digits-noisy", "clusters-12", "scaled-raw")


# --------------------------------------------------------------------------- accounting
def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def batches_per_epoch(ds: Dataset, batch_size: int) -> int:
    """As engine.trainer.train: full batches per pass over the training set."""
    return max(1, len(ds.y_train) // batch_size)


class BudgetObserver(Observer):
    """Stops a run when the loop's iterations (``spent`` before this run plus this run's) reach ``limit``."""

    def __init__(self, spent: int, limit: int) -> None:
        self.spent, self.limit = spent, limit

    def on_iteration(self, iteration: int, loss: float) -> str | None:
        return "budget" if self.spent + iteration >= self.limit else None


class PruneReporter(Observer):
    """Reports each epoch's validation accuracy to the Optuna trial and stops the run when it should be pruned."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_epoch(self, epoch: int, train_acc: float, val_acc: float) -> str | None:
        self.trial.report(val_acc, epoch)
        return "pruned" if self.trial.should_prune() else None


def retrain(run: RunConfig, params: dict[str, Any], seed: int, retrains: int, ds: Dataset) -> dict[str, Any]:
    """The configuration trained ``retrains`` times on the training split with fresh seeds; val and test per run."""
    vals, tests, iterations = [], [], 0
    for r in range(retrains):
        config = trial_config(run, params, seed, RETRAIN_SEED_BASE + r)
        model = config.build_model(ds)
        result = train(model, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val)
        vals.append(result.val_acc)
        tests.append(model.accuracy(ds.X_test, ds.y_test))
        iterations += result.iterations
    return {"retrain_val": float(np.mean(vals)), "test": float(np.mean(tests)), "test_std": float(np.std(tests)),
            "tests": [float(t) for t in tests], "retrain_iterations": iterations}


# --------------------------------------------------------------------------- search auto
def run_search_auto(problem: Problem, path: Path, seed: int, folder: Path, quick: bool, variant: str = "auto",
                    ) -> tuple[dict, RunConfig, Dataset]:
    """``search auto --data PATH --preprocess P --seed SEED --jobs 1`` (with the variant's options) from Python,
    into its own SQLite file."""
    run = RunConfig(data=DataSpec(str(path), seed=seed), preprocess=PreprocessSpec(problem.preprocess))
    run = run.with_params({"train.epochs": 3, "train.seed": seed})
    ds = run.load()
    space = auto_space(len(ds.y_train))
    suffix = "" if variant == "auto" else f"-{variant}"
    db = folder / f"{problem.name}-seed{seed}{suffix}.db"
    for left in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))):  # a killed run's logs too
        left.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    trials, max_fine = (20, 1) if quick else (50, 3)
    options, factor = AUTO_VARIANTS[variant]
    scheduler = options.get("scheduler", "none")
    stage = coarse_stage(problem.name, run, space, trials * factor, seed, scheduler=scheduler)
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    summaries, final = run_auto(Execution(url, jobs=1, progress="quiet"), stage, max_fine=max_fine, top=5,
                                edge=0.1, fine_epochs=None, dataset=ds, repeats=3, retrains=3,
                                fine_sampler=options.get("fine_sampler", FINE_SAMPLER))
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0

    # epochs: every trial of every stage by the iterations it ran, then the retrains
    bpe = batches_per_epoch(ds, run.train.batch_size)
    storage = optuna.storages.RDBStorage(url)
    iterations, n_trials, stages = 0, 0, []
    for s in summaries:
        study = optuna.load_study(study_name=s.study, storage=storage)
        done = study.get_trials(deepcopy=False)
        its = sum(int(t.user_attrs.get("iterations") or 0) for t in done)
        iterations += its
        n_trials += len(done)
        stages.append({"stage": s.stage, "trials": len(done), "epochs": s.epochs, "pruned": s.counts["pruned"],
                       "spent_epochs": its / bpe, "best": s.best_value, "space": s.space,
                       "range_notes": s.range_notes})
    storage.engine.dispose()
    search_epochs = iterations / bpe
    retrain_epochs = final.retrained.runs * final.epochs
    result = {
        "method": variant, "params": final.params, "reported_val": final.value,
        "retrain_val": final.retrained.val_acc, "test": final.retrained.test_acc,
        "test_std": final.retrained.test_std,
        "epochs": search_epochs + retrain_epochs, "search_epochs": search_epochs, "trial_epochs": final.epochs,
        "trials": n_trials, "cpu": cpu, "wall": wall, "stopped": final.stopped, "stages": stages,
        "database": str(db),
    }
    return result, run, ds


# --------------------------------------------------------------------------- the plain Optuna loops
def grid_values(space: dict[str, Dimension], n_points: int) -> dict[str, list]:
    """k values per dimension, k = floor(n^(1/d)), then one more value per dimension in order while it fits."""
    ks = {name: max(1, int(math.floor(n_points ** (1 / len(space)) + 1e-9))) for name in space}
    for name in space:
        if math.prod({**ks, name: ks[name] + 1}.values()) <= n_points:
            ks[name] += 1
    return {name: dim.grid(ks[name]) for name, dim in space.items()}


def run_baseline(method: str, run: RunConfig, ds: Dataset, space: dict[str, Dimension], epochs: int,
                 budget_epochs: float, seed: int, retrains: int) -> dict[str, Any]:
    """One Optuna ask/tell loop over the engine until ``budget_epochs`` of training are spent; the chosen
    configuration retrained ``retrains`` times."""
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    run = run.with_params({"train.epochs": epochs})
    bpe = batches_per_epoch(ds, run.train.batch_size)
    limit = int(round(budget_epochs * bpe))
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    grid_size = None
    if method == "random":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=seed)
    elif method == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    elif method == "grid":
        values = grid_values(space, max(1, limit // (epochs * bpe)))
        grid_size = math.prod(len(v) for v in values.values())
        sampler = optuna.samplers.GridSampler(values, seed=seed)
    elif method == "sha":
        sampler = optuna.samplers.RandomSampler(seed=seed)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, epochs // 8), reduction_factor=3)
    else:
        raise ValueError(f"unknown method {method!r}")
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    stage_seed = seed + 1000 * (1 + BASELINES.index(method) + 1)  # training seeds differ from auto's trials
    state: dict[str, Any] = {"spent": 0, "best": -1.0, "params": None, "trials": 0, "stops": {}}

    def objective(trial: optuna.Trial) -> float:
        params = {name: dim.suggest(trial, name) for name, dim in space.items()}
        config = trial_config(run, params, stage_seed, trial.number)
        model = config.build_model(ds)
        observers: tuple = (ExplosionObserver(3.0), BudgetObserver(state["spent"], limit))
        if method == "sha":
            observers += (PruneReporter(trial),)
        result: TrainResult = train(model, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val,
                                    observers=observers)
        state["spent"] += result.iterations
        state["trials"] += 1
        state["stops"][result.status] = state["stops"].get(result.status, 0) + 1
        if state["spent"] >= limit:
            trial.study.stop()  # the trial that used the last epochs ends the loop
        if result.status != "completed" or not math.isfinite(result.val_acc):
            raise optuna.TrialPruned(result.status)  # exploded, diverged, pruned, or cut by the budget
        if result.val_acc > state["best"]:
            state["best"], state["params"] = result.val_acc, params
        return result.val_acc

    study.optimize(objective)  # until the budget is spent (or the grid has no point left)
    spent, best, best_params, trials, stops = (state["spent"], state["best"], state["params"], state["trials"],
                                               state["stops"])
    if best_params is None:
        raise RuntimeError(f"{method}: no trial ran its {epochs} epochs within {budget_epochs:.0f} epochs")
    scored = retrain(run, best_params, seed, retrains, ds)
    return {
        "method": method, "params": best_params, "reported_val": best, "retrain_val": scored["retrain_val"],
        "test": scored["test"], "test_std": scored["test_std"],
        "epochs": spent / bpe + scored["retrain_iterations"] / bpe, "search_epochs": spent / bpe,
        "trial_epochs": epochs, "trials": trials, "stops": stops, "grid_size": grid_size,
        "cpu": cpu_seconds() - cpu0, "wall": time.perf_counter() - wall0,
    }


def run_task(task: tuple[str, int, str, bool, tuple[str, ...]]) -> dict[str, Any]:
    """The methods on one problem and seed: auto first, its variants, then the baselines at auto's epochs."""
    name, seed, folder_text, quick, methods = task
    problem, folder = PROBLEMS[name], Path(folder_text)
    data_path = sorted((folder / "data").glob(f"{name}.*"))[0]
    auto, run, ds = run_search_auto(problem, data_path, seed, folder, quick)
    retrains, epochs = 3, auto["trial_epochs"]
    budget = auto["epochs"] - retrains * epochs  # the retrains cost every method the same
    space = auto_space(len(ds.y_train))
    results = [auto] + [run_search_auto(problem, data_path, seed, folder, quick, m)[0]
                        for m in methods if m in AUTO_VARIANTS and m != "auto"]
    results += [run_baseline(m, run, ds, space, epochs, budget, seed, retrains) for m in methods if m in BASELINES]
    return {"problem": name, "seed": seed, "results": {r["method"]: r for r in results},
            "data": {"train": len(ds.y_train), "val": len(ds.y_val), "test": len(ds.y_test),
                     "features": ds.input_dim, "classes": ds.num_classes},
            "space": {k: str(v) for k, v in space.items()}}


# --------------------------------------------------------------------------- the tables
def fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def results_column(runs: list[dict[str, Any]], method: str, key: str) -> np.ndarray:
    """One method's ``key`` over the runs (one per seed) as floats."""
    return np.array([r["results"][method][key] for r in runs], dtype=float)


def report(problem: Problem, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Print one problem's tables; return its target checks."""
    runs = sorted(runs, key=lambda r: r["seed"])
    n = len(runs)
    d = runs[0]["data"]
    print(f"\n=== {problem.name}: train {d['train']}, val {d['val']}, test {d['test']}, {d['features']} features, "
          f"{d['classes']} classes; preprocess {problem.preprocess}; {n} seeds")
    print(f"    why hard: {problem.why}")
    print(f"    space: {' '.join(f'{k}={v}' for k, v in runs[0]['space'].items())}")

    col = partial(results_column, runs)

    methods = [m for m in METHODS if m in runs[0]["results"]]
    print(f"\n{'method':<13} {'test (retrained)':>18} {'retrain sd':>10} {'reported val':>12} {'retrained val':>13} "
          f"{'gap pts':>7} {'epochs':>7} {'trials':>6} {'trial ep':>8} {'CPU s':>7} {'wall s':>7}")
    for m in methods:
        test = col(m, "test")
        gap = 100 * (col(m, "reported_val") - col(m, "retrain_val"))
        print(f"{m:<13} {test.mean():8.4f} +- {test.std():.4f} {col(m, 'test_std').mean():10.4f} "
              f"{col(m, 'reported_val').mean():12.4f} {col(m, 'retrain_val').mean():13.4f} {gap.mean():+7.2f} "
              f"{col(m, 'epochs').mean():7.0f} {col(m, 'trials').mean():6.0f} {col(m, 'trial_epochs').mean():8.1f} "
              f"{col(m, 'cpu').mean():7.1f} {col(m, 'wall').mean():7.1f}")
    print("  (test: mean +- std over seeds of each seed's mean over 3 retrains; retrain sd: mean over seeds of the "
          "std over the 3 retrains; gap: reported - retrained val, mean over seeds; epochs, trials, CPU/wall s: "
          "mean per seed)")

    print("\nwins per seed, row against column (wins-ties-losses on retrained test accuracy):")
    print(f"{'':<13} " + " ".join(f"{m:>13}" for m in methods))
    for a in methods:
        cells = []
        for b in methods:
            if a == b:
                cells.append(f"{'-':>13}")
                continue
            ta, tb = col(a, "test"), col(b, "test")
            cells.append(f"{int((ta > tb).sum())}-{int((ta == tb).sum())}-{int((ta < tb).sum()):>1}".rjust(13))
        print(f"{a:<13} " + " ".join(cells))

    for variant in (m for m in methods if m in AUTO_VARIANTS):
        print_auto_seeds(runs, variant)
    if "tpe" not in methods:
        return {}
    checks = {}
    for variant in (m for m in methods if m in AUTO_VARIANTS):
        checks.update(target_checks(runs, variant))
    print("\ntargets (issue 12):")
    for what, (met, value) in checks.items():
        print(f"  {'MET    ' if met else 'NOT MET'} {what}: {value}")
    return checks


def print_auto_seeds(runs: list[dict[str, Any]], variant: str) -> None:
    """One auto variant's stages and choice per seed, beside TPE's choice."""
    print(f"\nsearch {variant} per seed:")
    for r in runs:
        a = r["results"][variant]
        chain = " -> ".join(f"{s['stage']}({s['trials']}x{s['epochs']}ep, best {s['best']:.3f})"
                            if s["best"] is not None else f"{s['stage']}({s['trials']}x{s['epochs']}ep)"
                            for s in a["stages"])
        tpe = r["results"].get("tpe")
        print(f"  seed {r['seed']}: test {a['test']:.4f}" + (f" (tpe {tpe['test']:.4f})" if tpe else "") +
              f"; reported {a['reported_val']:.4f}, retrained val {a['retrain_val']:.4f}; {fmt_params(a['params'])}")
        print(f"     {chain}")
        print(f"     stopped: {a['stopped']}")
        if tpe:
            print(f"     tpe chose {fmt_params(tpe['params'])} (val {tpe['reported_val']:.4f})")


def target_checks(runs: list[dict[str, Any]], variant: str) -> dict[str, tuple[bool, str]]:
    """Issue 12's targets for one auto variant against TPE: (met, value) by what is checked."""
    col = partial(results_column, runs)

    n = len(runs)
    auto, tpe = col(variant, "test"), col("tpe", "test")
    at_least = int((auto >= tpe).sum())
    need = math.ceil(0.7 * n)
    gain = 100 * float((auto - tpe).mean())
    gap = 100 * float((col(variant, "reported_val") - col(variant, "retrain_val")).mean())
    return {
        f"{variant} test >= tpe in >= {need} of {n} seeds": (at_least >= need, f"{at_least} of {n}"),
        f"{variant} mean gain over tpe >= 1 point": (gain >= 1.0, f"{gain:+.2f} points"),
        f"{variant} reported val within 1 point of retrained (mean over seeds)": (abs(gap) <= 1.0,
                                                                                  f"{gap:+.2f} points"),
    }


def blas_kernel() -> str:
    """The BLAS library and the kernel set it runs with (OPENBLAS_CORETYPE or what OpenBLAS picked)."""
    infos = blas_pools()
    if not infos:
        return "unknown"
    i = infos[0]
    return f"{i.get('internal_api')} {i.get('version')} kernels {i.get('architecture')}, {i.get('num_threads')} thread(s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per problem (default 10)")
    parser.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS),
                        help=f"comma-separated, of: {', '.join(PROBLEMS)} (default: {','.join(DEFAULT_PROBLEMS)})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 seeds unless --seeds is given, auto with a 20-trial coarse stage and one "
                             "fine stage (not the product's defaults)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, of: {', '.join(METHODS)} (default: all; auto always runs: the "
                             "baselines get its epochs)")
    parser.add_argument("--workers", type=int, default=2, help="seeds run in parallel (default 2)")
    parser.add_argument("--out", default=None, help="folder for the data, databases and results.json "
                                                    "(default: a new temporary folder, kept)")
    args = parser.parse_args(argv)
    if "--seeds" not in (argv if argv is not None else sys.argv[1:]) and args.quick:
        args.seeds = 2
    names = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROBLEMS]
    if unknown or not names:
        parser.error(f"unknown problem(s) {', '.join(unknown) or '(none)'}; known: {', '.join(PROBLEMS)}")
    methods = tuple(m for m in METHODS if m == "auto" or m in args.methods.split(","))
    unknown = [m for m in args.methods.split(",") if m and m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if args.seeds < 1 or args.workers < 1:
        parser.error("--seeds and --workers must be >= 1")

    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="search-quality-"))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name in names:
        PROBLEMS[name].write(folder / "data")
    print(f"search quality: problems {', '.join(names)}; seeds 0..{args.seeds - 1}; {args.workers} worker processes"
          f"{'; QUICK (auto: 20 coarse trials, 1 fine stage)' if args.quick else ''}")
    print(f"BLAS: {blas_kernel()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; nice {os.nice(0)}; "
          f"NumPy {np.__version__}, Optuna {optuna.__version__}")
    print(f"data, databases (one per problem and seed: {{problem}}-seed{{k}}.db) and results.json in {folder}")
    sys.stdout.flush()

    tasks = [(name, seed, str(folder), args.quick, methods) for name in names for seed in range(args.seeds)]
    started, cpu0 = time.perf_counter(), cpu_seconds()
    done: list[dict[str, Any]] = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(args.workers, len(tasks)), maxtasksperchild=1) as pool:
        for i, result in enumerate(pool.imap_unordered(run_task, tasks), 1):
            done.append(result)
            elapsed = time.perf_counter() - started
            tests = " ".join(f"{m} {r['test']:.4f} ({r['epochs']:.0f} ep)" for m, r in result["results"].items())
            print(f"[{i}/{len(tasks)} {elapsed:5.0f} s, eta {elapsed / i * (len(tasks) - i):4.0f} s] "
                  f"{result['problem']} seed {result['seed']}: test {tests}", file=sys.stderr, flush=True)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
    (folder / "results.json").write_text(json.dumps(done, indent=1, default=str))

    verdicts = {}
    for name in names:
        verdicts[name] = report(PROBLEMS[name], [r for r in done if r["problem"] == name])
    print("\nsummary of targets:")
    for name, checks in verdicts.items():
        print(f"  {name}: " + "; ".join(f"{'met' if met else 'NOT met'} ({value})" for met, value in checks.values()))
    print(f"\nran in {wall:.0f} s wall, {cpu:.0f} CPU s (this process and its workers); results in "
          f"{folder / 'results.json'}")
    print(f"inspect auto's stages: search studies --storage sqlite:///{folder}/<problem>-seed<k>.db; "
          f"search trials <problem>/fine-1 --storage ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
