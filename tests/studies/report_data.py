"""Campaigns built directly with Optuna (no training), each trial described by a plain dict.

``build_campaign``: coarse, fine-1 and grid stages over lr x reg (the older ``[low, high, "log"]`` space
form). ``build_mixed_campaign``: a float (lr, log), an int (hidden, log) and a categorical (activation)
dimension, in the ``{"type": ...}`` form, where one chosen dimension drives the value. Each dict holds
the state, value, params, iterations, seconds, epochs_run and stop_reason, so a test can compute the
report's numbers from the same dicts without the report's code. Each finished trial also gets a known
``diagnosis`` (``diagnosis_of``: labels from its state and params) with matching ``diagnosis_numbers``,
loss curve and ``train_acc_curve``.
"""
from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
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


def distribution(spec: list | dict) -> BaseDistribution:
    """Optuna's distribution of one ``space`` entry (either form)."""
    if isinstance(spec, list):
        return FloatDistribution(spec[0], spec[1], log=spec[2] == "log")
    if spec["type"] == "categorical":
        return CategoricalDistribution(spec["choices"])
    if spec["type"] == "int":
        return IntDistribution(spec["low"], spec["high"], log=spec["log"])
    return FloatDistribution(spec["low"], spec["high"], log=spec["log"])


def diagnosis_of(spec: dict) -> list[str]:
    """The labels a finished trial is given: pruned -> lr_too_high; else lr < 1e-4 -> lr_too_low, reg > 1 ->
    underfitting, reg < 1e-5 -> overfitting; beside those lr > 0.1 -> dead_units, tanh -> saturated_units,
    reg > 5 -> bad_initial_loss (a trial may have two or more); healthy when none."""
    if spec["state"] == "PRUNED":
        return ["lr_too_high"]
    labels = []
    lr, reg = spec.get("lr", 1e-2), spec.get("reg", 1e-3)
    if lr < 1e-4:
        labels.append("lr_too_low")
    elif reg > 1.0:
        labels.append("underfitting")
    elif reg < 1e-5:
        labels.append("overfitting")
    if lr > 0.1:
        labels.append("dead_units")
    if spec.get("activation") == "tanh":
        labels.append("saturated_units")
    if reg > 5.0:
        labels.append("bad_initial_loss")
    return labels or ["healthy"]


def _diagnosis_attrs(spec: dict, curve: list[float | None]) -> dict:
    """diagnosis, diagnosis_numbers and train_acc_curve of a finished trial, consistent with its labels and curve."""
    labels = spec["diagnosis"]
    finite = [v for v in curve if v is not None]
    first = finite[0] if finite else None
    tail = finite[-max(1, len(finite) // 10):] if finite else []
    change = round((first - float(np.mean(tail))) / first, 4) if first else None
    gap = 0.08 if "overfitting" in labels else 0.005 if "underfitting" in labels else 0.02
    exploded = spec["state"] == "PRUNED"
    val = None if exploded else spec["value"]
    train = None if exploded else round(min(1.0, val + gap), 4)
    return {
        "diagnosis": list(labels),
        "diagnosis_numbers": {
            "loss_change": change, "train_val_gap": None if exploded else round(train - val, 4), "train_acc": train,
            "val_acc": val, "dead_fraction": [0.7 if "dead_units" in labels else 0.05],
            "saturated_fraction": [0.4 if "saturated_units" in labels else 0.0],
            "initial_data_loss": 4.1 if "bad_initial_loss" in labels else 2.3, "expected_initial_loss": 2.3026,
        },
        "train_acc_curve": [round(min(1.0, val - 0.05 * (spec["epochs_run"] - 1 - e) + gap), 4)
                            for e in range(spec["epochs_run"])] if val is not None else [],
    }


def _frozen(spec: dict, space: dict, rng: np.random.Generator, curve_points: int) -> optuna.trial.FrozenTrial:
    distributions = {name: distribution(entry) for name, entry in space.items()}
    params = {name: spec[name] for name in space}
    if spec["state"] == "FAIL":
        return create_trial(state=TrialState.FAIL, params=params, distributions=distributions,
                            user_attrs={"stop_reason": spec["stop_reason"]})
    exploded = spec["state"] == "PRUNED"
    curve = loss_curve(rng, exploded and spec["stop_reason"] == "exploded", spec["stop_reason"] == "nan", curve_points)
    if "lr_too_low" in spec["diagnosis"]:  # a loss that barely moves: 2 % of the decay
        curve = [None if v is None else round(curve[0] + 0.02 * (v - curve[0]), 6) for v in curve]
    diagnosed = _diagnosis_attrs(spec, curve)
    attrs = {
        "initial_loss": 2.3, "final_loss": None if spec["stop_reason"] == "nan" else 1.0,
        "train_acc": diagnosed["diagnosis_numbers"]["train_acc"],
        "val_acc": None if exploded else spec["value"], "iterations": spec["iterations"],
        "seconds": spec["seconds"], "stop_reason": spec["stop_reason"], "loss_curve": curve, **diagnosed,
    }
    if exploded:
        return create_trial(state=TrialState.PRUNED, params=params, distributions=distributions, user_attrs=attrs)
    epochs = spec["epochs_run"]
    return create_trial(value=spec["value"], params=params, distributions=distributions, user_attrs=attrs,
                        intermediate_values={e: spec["value"] - 0.05 * (epochs - 1 - e) for e in range(epochs)})


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
    for spec in specs:  # exploded runs here stop within their first epoch
        spec.setdefault("epochs_run", epochs if spec["state"] == "COMPLETE" else 0)
        if spec["state"] != "FAIL":
            spec.setdefault("diagnosis", diagnosis_of(spec))
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


ACTIVATIONS = ["relu", "tanh", "elu"]
MIXED_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "hidden": {"type": "int", "low": 8, "high": 256, "log": True},
    "activation": {"type": "categorical", "choices": ACTIVATIONS},
}


def mixed_value(params: dict, driver: str, noise: float) -> float:
    """Accuracy driven by ``driver``: hidden (width), activation (relu > elu > tanh) or lr (best near 1e-2)."""
    width = math.log(params["hidden"] / 8) / math.log(32)  # 0 .. 1
    act = {"relu": 1.0, "elu": 0.5, "tanh": 0.0}[params["activation"]]
    near = 1 - abs(math.log10(params["lr"]) + 2) / 2  # 1 at 1e-2, 0 at 1e-4 and 1
    strong, weak = {"hidden": (width, act), "activation": (act, width), "lr": (near, act)}[driver]
    return float(0.45 + 0.4 * strong + 0.1 * weak + noise)


def mixed_specs(rng: np.random.Generator, space: dict, n: int, driver: str, epochs: int) -> list[dict]:
    """n trials sampled in ``space`` (each dimension on its own scale); lr > 0.5 explodes; seconds grow with width."""
    specs = []
    for _ in range(n):
        params: dict = {}
        for name, entry in {**MIXED_SPACE, **space}.items():
            if entry["type"] == "categorical":
                params[name] = entry["choices"][int(rng.integers(len(entry["choices"])))]
            elif entry["type"] == "int":
                params[name] = int(round(math.exp(rng.uniform(math.log(entry["low"]), math.log(entry["high"])))))
            else:
                params[name] = float(10 ** rng.uniform(math.log10(entry["low"]), math.log10(entry["high"])))
        seconds = round(0.001 * params["hidden"] * epochs * rng.uniform(0.9, 1.1), 4)
        spec = {**params, "iterations": 50 * epochs, "seconds": seconds, "epochs_run": epochs}
        if params["lr"] > 0.5:
            spec.update(state="PRUNED", value=None, stop_reason="exploded", iterations=10, epochs_run=0,
                        seconds=round(seconds / epochs / 5, 4))
        else:
            spec.update(state="COMPLETE", value=mixed_value(params, driver, float(rng.normal(0, 0.003))),
                        stop_reason="completed")
        specs.append(spec)
    return specs


def build_mixed_campaign(url: str, campaign: str = "mixed", driver: str = "hidden", seed: int = 0,
                         n_coarse: int = 40) -> dict[str, list[dict]]:
    """coarse over lr, hidden and activation (``driver`` drives the value); fine-1 over lr alone (one dimension:
    no importance); fine-2 over all three with 4 trials (too few for importance). Returns study -> trial dicts."""
    rng = np.random.default_rng(seed)
    coarse = mixed_specs(rng, MIXED_SPACE, n_coarse, driver, epochs=2)
    coarse.append({"lr": 1e-3, "hidden": 32, "activation": "tanh", "state": "FAIL", "value": None, "iterations": None,
                   "seconds": None, "epochs_run": 0, "stop_reason": "error: MemoryError: out of memory"})
    fine_space = {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    fine = mixed_specs(rng, {**MIXED_SPACE, **fine_space}, 10, driver, epochs=4)
    for spec in fine:  # hidden and activation fixed at the coarse best's values: not searched here
        spec.update(hidden=128, activation="relu")
    narrow = {**MIXED_SPACE, "hidden": {"type": "int", "low": 64, "high": 256, "log": True}, **fine_space}
    fine2 = mixed_specs(rng, narrow, 4, driver, epochs=4)
    add_stage(url, campaign, "coarse", MIXED_SPACE, coarse, 2, "random", None, seed)
    add_stage(url, campaign, "fine-1", fine_space, fine, 4, "random", f"{campaign}/coarse", seed + 1)
    add_stage(url, campaign, "fine-2", narrow, fine2, 4, "random", f"{campaign}/fine-1", seed + 2)
    return {f"{campaign}/coarse": coarse, f"{campaign}/fine-1": fine, f"{campaign}/fine-2": fine2}


def build_auto_campaign(url: str, campaign: str = "auto", seed: int = 0, repeats: int = 3,
                        top: int = 3) -> dict[str, list[dict]]:
    """What ``search auto`` makes: coarse (random), promote-1 (fixed: coarse's best 8 re-run at fine's epochs),
    fine-1 (random, narrower), final (fixed: fine-1's top ``top`` configurations, ``repeats`` runs each, the
    runs of one configuration interleaved as the service enqueues them; one run of the second pruned). Returns
    study name -> trial dicts in trial-number order."""
    rng = np.random.default_rng(seed)
    points = [(float(10 ** rng.uniform(-5, -0.6)), float(10 ** rng.uniform(-6, 1))) for _ in range(16)]
    coarse = trial_specs(rng, COARSE_SPACE, 16, iterations=100, points=points)
    ranked = sorted(coarse, key=lambda t: -(t["value"] or 0.0))[:8]
    promote = trial_specs(rng, COARSE_SPACE, 8, iterations=200, points=[(t["lr"], t["reg"]) for t in ranked])
    fine = trial_specs(rng, FINE_SPACE, 12, iterations=200)
    leaders = sorted(fine, key=lambda t: -(t["value"] or 0.0))[:top]
    final = trial_specs(rng, FINE_SPACE, top * repeats, iterations=200,
                        points=[(t["lr"], t["reg"]) for _ in range(repeats) for t in leaders])
    final[top + 1].update(state="PRUNED", value=None, stop_reason="exploded", iterations=20)
    add_stage(url, campaign, "coarse", COARSE_SPACE, coarse, 2, "random", None, seed)
    add_stage(url, campaign, "promote-1", COARSE_SPACE, promote, 4, "fixed", f"{campaign}/coarse", seed + 1)
    add_stage(url, campaign, "fine-1", FINE_SPACE, fine, 4, "random", f"{campaign}/coarse", seed + 2)
    add_stage(url, campaign, "final", FINE_SPACE, final, 4, "fixed", f"{campaign}/fine-1", seed + 3)
    return {f"{campaign}/coarse": coarse, f"{campaign}/promote-1": promote, f"{campaign}/fine-1": fine,
            f"{campaign}/final": final}
