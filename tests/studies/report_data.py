"""A campaign built directly with Optuna (no training): coarse, fine-1 and grid stages with known trials.

Each trial is described by a plain dict (state, value, lr, reg, iterations, seconds, stop_reason) so a
test can compute the report's numbers from the same dicts without the report's code.
"""
from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

COARSE_SPACE = {"lr": [1e-6, 1.0, "log"], "reg": [1e-6, 10.0, "log"]}
FINE_SPACE = {"lr": [1e-3, 1e-1, "log"], "reg": [1e-9, 1e-3, "log"]}
CURVE_POINTS = 200


def accuracy(lr: float, reg: float, noise: float) -> float:
    """A made-up response surface: best near lr=1e-2, worse with large reg."""
    value = 0.97 - 0.12 * abs(math.log10(lr) + 2) - 0.05 * max(0.0, math.log10(reg) + 2) + noise
    return float(min(0.99, max(0.08, value)))


def loss_curve(rng: np.random.Generator, exploded: bool, nan: bool, points: int = CURVE_POINTS) -> list[float | None]:
    """A loss curve of ``points`` values: decaying, or blowing up (None after a NaN)."""
    t = np.linspace(0, 1, points)
    if exploded or nan:
        curve = 2.3 * np.exp(4 * t) + rng.normal(0, 0.05, points)
        values: list[float | None] = [float(v) for v in curve]
        if nan:
            values[points // 2:] = [None] * (points - points // 2)
        return values
    curve = 2.3 * np.exp(-4 * t) + 0.05 + np.abs(rng.normal(0, 0.03, points))
    return [float(v) for v in curve]


def trial_specs(rng: np.random.Generator, space: dict, n: int, iterations: int,
                points: list[tuple[float, float]] | None = None) -> list[dict]:
    """n trial descriptions in the space (log-uniform, or the given points); lr > 0.3 explodes."""
    specs = []
    for i in range(n):
        if points is not None:
            lr, reg = points[i]
        else:
            lr = float(10 ** rng.uniform(math.log10(space["lr"][0]), math.log10(space["lr"][1])))
            reg = float(10 ** rng.uniform(math.log10(space["reg"][0]), math.log10(space["reg"][1])))
        spec = {"lr": lr, "reg": reg, "iterations": iterations, "seconds": round(0.002 * iterations * rng.uniform(0.8, 1.2), 4)}
        if lr > 0.3:
            ran = int(rng.integers(1, iterations // 4))
            nan = lr > 0.8
            spec.update(state="PRUNED", value=None, stop_reason="nan" if nan else "exploded", iterations=ran,
                        seconds=round(0.002 * ran, 4))
        else:
            spec.update(state="COMPLETE", value=accuracy(lr, reg, float(rng.normal(0, 0.01))), stop_reason="completed")
        specs.append(spec)
    return specs


def grid_points(space: dict, k: int) -> list[tuple[float, float]]:
    lrs = np.logspace(math.log10(space["lr"][0]), math.log10(space["lr"][1]), k)
    regs = np.logspace(math.log10(space["reg"][0]), math.log10(space["reg"][1]), k)
    return [(float(a), float(b)) for a in lrs for b in regs]


def _frozen(spec: dict, space: dict, rng: np.random.Generator, curve_points: int) -> optuna.trial.FrozenTrial:
    distributions = {name: FloatDistribution(lo, hi, log=True) for name, (lo, hi, _) in space.items()}
    params = {"lr": spec["lr"], "reg": spec["reg"]}
    if spec["state"] == "FAIL":
        return create_trial(state=TrialState.FAIL, params=params, distributions=distributions,
                            user_attrs={"stop_reason": spec["stop_reason"]})
    exploded = spec["state"] == "PRUNED"
    attrs = {
        "initial_loss": 2.3, "final_loss": None if spec["stop_reason"] == "nan" else 1.0,
        "train_acc": None if exploded else min(1.0, spec["value"] + 0.02),
        "val_acc": None if exploded else spec["value"], "iterations": spec["iterations"],
        "seconds": spec["seconds"], "stop_reason": spec["stop_reason"],
        "loss_curve": loss_curve(rng, exploded and spec["stop_reason"] == "exploded", spec["stop_reason"] == "nan",
                                 curve_points),
    }
    if exploded:
        return create_trial(state=TrialState.PRUNED, params=params, distributions=distributions, user_attrs=attrs)
    return create_trial(value=spec["value"], params=params, distributions=distributions, user_attrs=attrs,
                        intermediate_values={0: spec["value"] - 0.05, 1: spec["value"]})


def add_stage(url: str, campaign: str, stage: str, space: dict, specs: list[dict], epochs: int, sampler: str,
              parent: str | None, seed: int = 0, curve_points: int = CURVE_POINTS) -> optuna.Study:
    """A stage study with the contract's user attrs and the given trials (added in order)."""
    study = optuna.create_study(storage=url, study_name=f"{campaign}/{stage}", direction="maximize")
    for key, value in {
        "campaign": campaign, "stage": stage, "parent": parent, "space": space, "epochs": epochs,
        "data": {"name": "digits"}, "model": {"hidden": [100]}, "seed": seed, "n_trials": len(specs),
        "sampler": sampler, "range_notes": [] if stage == "coarse" or sampler == "grid" else ["lr narrowed"],
        "ready": True,
    }.items():
        study.set_user_attr(key, value)
    rng = np.random.default_rng(seed + 1000)
    study.add_trials([_frozen(spec, space, rng, curve_points) for spec in specs])
    return study


def build_campaign(url: str, campaign: str = "demo", with_grid: bool = True, seed: int = 0,
                   n_coarse: int = 16, n_fine: int = 12, curve_points: int = CURVE_POINTS) -> dict[str, list[dict]]:
    """coarse (random, with exploded/nan/failed trials), fine-1 (narrower), grid (k x k over coarse); returns
    study name -> trial dicts in trial-number order."""
    rng = np.random.default_rng(seed)
    points = [(float(10 ** rng.uniform(-6, 0)), float(10 ** rng.uniform(-6, 1))) for _ in range(n_coarse)]
    points[3] = (0.5, points[3][1])  # one exploded trial
    points[-2] = (0.9, points[-2][1])  # one that went to NaN
    coarse = trial_specs(rng, COARSE_SPACE, n_coarse, iterations=100, points=points)
    coarse.append({"lr": 1e-3, "reg": 1e-3, "state": "FAIL", "value": None, "iterations": None, "seconds": None,
                   "stop_reason": "error: MemoryError: out of memory"})
    fine = trial_specs(rng, FINE_SPACE, n_fine, iterations=200)
    stages = {f"{campaign}/coarse": coarse, f"{campaign}/fine-1": fine}
    add_stage(url, campaign, "coarse", COARSE_SPACE, coarse, 2, "random", None, seed, curve_points)
    add_stage(url, campaign, "fine-1", FINE_SPACE, fine, 4, "random", f"{campaign}/coarse", seed + 1, curve_points)
    if with_grid:
        k = int(math.floor(math.sqrt(n_coarse) + 1e-9))
        grid = trial_specs(rng, COARSE_SPACE, k * k, iterations=100, points=grid_points(COARSE_SPACE, k))
        add_stage(url, campaign, "grid", COARSE_SPACE, grid, 2, "grid", f"{campaign}/coarse", seed, curve_points)
        stages[f"{campaign}/grid"] = grid
    return stages
