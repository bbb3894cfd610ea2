"""One trial: suggest every dimension, ``base.with_params(params)``, train with the explosion observer (unless the
stage has none), record it."""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from engine.data import Dataset
from engine.diagnostics import Diagnosis, diagnose, expected_initial_loss, label_noise, unit_stats
from engine.model import FullyConnectedNet, balanced_accuracy
from engine.trainer import Observer, TrainResult, train
from search.config import RunConfig
from search.errors import raise_pending
from search.schedulers import asha_rungs
from search.space import Dimension, params_to_paths, suggest_params

LOSS_CURVE_POINTS = 200
SCHEDULER_STOP = "pruned"  # the stop_reason of a trial the stage's scheduler (its Optuna pruner) stopped
PRUNED_REASONS = ("exploded", "nan", SCHEDULER_STOP)  # stop reasons stored as Optuna state PRUNED


def stop_reason(status: str) -> str:
    """A run's ``stop_reason`` as trials store it, from the trainer's status: ``completed``, ``exploded``, ``nan``
    (the trainer's ``diverged``: the loss became NaN or inf)."""
    return {"diverged": "nan"}.get(status, status)


def value_epoch(trial: optuna.trial.FrozenTrial) -> tuple[int | None, int | None]:
    """(the epoch whose validation accuracy is ``trial``'s value: the last it finished, None when it finished none;
    the epochs of its full run, None without a stored config). The two differ for a run stopped early: by the
    stage's scheduler, or as exploded."""
    from studies.records import trial_record

    config = trial_record(trial, "config") or {}
    epochs = (config.get("train") or {}).get("epochs") if isinstance(config, dict) else None
    return (max(trial.intermediate_values) if trial.intermediate_values else None,
            None if epochs is None else int(epochs))


def scheduler_stop(trial: optuna.trial.FrozenTrial) -> tuple[int, int] | None:
    """(the epoch at which the stage's scheduler stopped ``trial``, the epochs of a full run), or None for a trial
    it did not stop: its value is the validation accuracy of that epoch, not of the last."""
    reached, epochs = value_epoch(trial)
    if trial.user_attrs.get("stop_reason") != SCHEDULER_STOP or reached is None or epochs is None:
        return None
    return reached, epochs


EXPLODE_FACTOR = 3.0  # a run stops once its loss exceeds this x its first loss (the lecture's rule of thumb)
EXPLODE_WINDOW = 10  # minibatch losses averaged before they are compared with the first one
EXPLODE_MIN_LOSSES = 3  # the fewest an epoch's end judges (wine in batches of 50: 2 an epoch, one spike stopped it)
# a run whose last epoch classified the training set at least this share of the way from chance (the majority
# class's share) to all of it is not stopped as exploded until an epoch ends below that
EXPLODE_TRAINED = 0.8


class ExplosionObserver(Observer):
    """Stops a run once its loss exceeds ``factor`` x its first loss (the lecture's rule of thumb), the loss
    being the mean of the last ``EXPLODE_WINDOW`` minibatch losses (a loss that is not finite stops the trainer
    at once).

    A single minibatch is not enough: on raw features of very different scales Adam's first steps send one to
    three minibatch losses to 3-10x the first, and the run then trains as well as any
    (``benchmarks/README.md``, "False explosions"); a run that really diverges stays above the threshold and is
    stopped ``EXPLODE_WINDOW`` iterations in, or at the end of its first epoch when that is shorter (the losses
    it has are judged then).

    Nor is a loss that rose while the run classifies its training set: once an epoch ends with a training accuracy
    ``EXPLODE_TRAINED`` of the way from ``chance`` to 1, the run goes on until an epoch ends below it with the loss
    still above the threshold. Adam at lr 0.4 and reg 0.007 on wine (124 training rows in batches of 50: 2 updates
    an epoch, the window 5 epochs) rose to 3.0-4.3x its first loss (its weights, and their L2 term, grew) at training
    accuracy 0.90-1.0 from epoch 3 on, and was stopped as exploded in epochs 3 to 5 by seeds 1-7; run on, each
    ended its 20 epochs at validation accuracy 0.93-1.0, as runs at lr 1 and 2 stopped in epoch 2 did. No higher
    threshold stops such a run at the iteration instead: at lr 1, 1.5 and 2 (seeds 1-10 each, default reg) the
    window's mean rose to 17-130x the first loss after a trained epoch, and every one of the 30 ended its 20 epochs
    at validation accuracy 0.93-1.0; at lr 5 to 100 the runs that stayed trained passed 1,700x and ended at 0.93-1.0
    too. A run whose loss grows after a trained epoch is stopped at the end of the first epoch that is not trained,
    its loss still above the threshold (a loss that is not finite stops it at once).
    """

    def __init__(self, factor: float = EXPLODE_FACTOR, chance: float = 0.0) -> None:
        if not (math.isfinite(factor) and factor > 1):
            raise ValueError(f"explode factor must be a finite number > 1, got {factor!r}")
        self.factor = factor
        self.first: float | None = None
        self.recent: deque[float] = deque(maxlen=EXPLODE_WINDOW)
        self.trained_from = chance + EXPLODE_TRAINED * (1 - chance)  # the training accuracy that spares the run
        self.trained = False  # the last epoch ended at or above it

    def on_iteration(self, iteration: int, loss: float) -> str | None:
        if self.first is None:
            self.first = loss
        self.recent.append(loss)
        full = len(self.recent) == EXPLODE_WINDOW
        return "exploded" if full and not self.trained and self._above() else None

    def on_epoch(self, epoch: int, train_acc: float, val_acc: float) -> str | None:
        # an epoch shorter than the window: judged on its losses once there are EXPLODE_MIN_LOSSES (one or two
        # minibatches of a tiny dataset are not enough either); the window fills over the next epochs. A full
        # window is judged here too: its iterations were spared while the previous epoch was trained
        self.trained = train_acc >= self.trained_from
        return "exploded" if EXPLODE_MIN_LOSSES <= len(self.recent) and not self.trained and self._above() else None

    def _above(self) -> bool:
        assert self.first is not None
        return sum(self.recent) > self.factor * self.first * len(self.recent)


def explosion_observers(factor: float | None, chance: float = 0.0) -> tuple[Observer, ...]:
    """``(ExplosionObserver(factor, chance),)``, or none with ``factor`` None: the run goes on through loss spikes (a
    loss that is not finite still stops the trainer). ``chance``: the training set's majority share
    (``majority_share``)."""
    return () if factor is None else (ExplosionObserver(factor, chance),)


class EpochReporter(Observer):
    """Reports validation accuracy after every epoch as the trial's intermediate value; after each epoch in
    ``rungs`` asks the study's pruner whether to stop (stop reason ``SCHEDULER_STOP``).

    Asking only there gives the pruner's own decisions (successive halving acts at the first step at or past a
    rung, and every epoch is reported) without reading the trial back from the database every epoch.
    """

    def __init__(self, trial: optuna.Trial, rungs: frozenset[int] = frozenset()) -> None:
        self.trial = trial
        self.rungs = rungs

    def on_iteration(self, iteration: int, loss: float) -> str | None:
        raise_pending()  # a Ctrl-C or SIGTERM whose exception Python dropped (search.errors) stops the run here
        return None

    def on_epoch(self, epoch: int, train_acc: float, val_acc: float) -> str | None:
        self.trial.report(val_acc, epoch)
        if epoch in self.rungs and self.trial.should_prune():
            return SCHEDULER_STOP
        return None


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial ended as: its value, whether it must be stored as PRUNED, its (scalar) user attributes and
    its records (``studies.records``: stored as system attributes)."""

    value: float
    pruned: bool
    result: TrainResult
    attrs: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)


def subsample(values: list[float], points: int = LOSS_CURVE_POINTS) -> list[float | None]:
    """At most ``points`` evenly spaced values (first and last kept), non-finite ones as None."""
    if len(values) > points:
        idx = np.unique(np.linspace(0, len(values) - 1, points).round().astype(int))
        values = [values[i] for i in idx]
    return [float(v) if math.isfinite(v) else None for v in values]


def finite_or_none(x: float) -> float | None:
    """``x`` as a float, None where it is NaN or infinite (JSON has neither)."""
    return float(x) if math.isfinite(x) else None


def trial_seed(stage_seed: int, number: int) -> int:
    """Seed of one trial's weights and batches: differs per trial, same for the same stage seed."""
    return (stage_seed * 1_000_003 + number) % (2**32)


def majority_share(y: np.ndarray) -> float:
    """The accuracy of always guessing the most frequent label of y (N,): chance, on balanced classes or not."""
    return float(np.bincount(y).max() / len(y)) if len(y) else 0.0


def val_balanced_accuracy(model: FullyConnectedNet, dataset: Dataset) -> float:
    """The trained ``model``'s balanced accuracy on ``dataset``'s validation split; a network whose weights overflowed
    is scored as the trainer scores it, quietly."""
    with np.errstate(all="ignore"):
        return balanced_accuracy(dataset.y_val, model.predict(dataset.X_val))


def diagnose_trial(result: TrainResult, model: FullyConnectedNet, dataset: Dataset, config: RunConfig,
                   initial_reg_loss: float) -> Diagnosis:
    """The lecture's reading of this run: its curves, and its units on a validation batch at the end."""
    with np.errstate(all="ignore"):  # the weights of a run that blew up overflow their squared sum: inf, quietly
        final_reg_loss = model.reg_loss(config.train.reg)
    return diagnose(
        result.status, result.loss_history, result.train_acc, result.val_acc,
        result.initial_loss - initial_reg_loss,
        expected_initial_loss(config.arch.loss, dataset.num_classes) * result.initial_weight,
        # a class-weighted run gives up plain accuracy for the rare classes' recall by design: always guessing the
        # most frequent class is no baseline for its accuracy (nor the underfitting said below it)
        unit_stats(model, dataset.X_val),
        chance=majority_share(dataset.y_train) if config.train.class_weight == "none" else None,
        samples=(min(len(dataset.y_train), config.train.train_acc_samples), len(dataset.y_val)),
        final_reg_loss=final_reg_loss, initial_reg_loss=initial_reg_loss,
        train_acc_history=result.train_acc_history, val_acc_history=result.val_acc_history,
        label_noise=label_noise(model, dataset.X_train, dataset.y_train),
        update_ratio=result.update_ratio_history[-1].get("W1") if result.update_ratio_history else None,
    )


def trial_config(base: RunConfig, params: dict, stage_seed: int, number: int) -> RunConfig:
    """The whole run of trial ``number``: the stage's base config with the trial's values and its own seed."""
    return base.with_params({**params_to_paths(params), "train.seed": trial_seed(stage_seed, number)})


def run_trial(
    trial: optuna.Trial,
    base: RunConfig,
    dataset: Dataset,
    space: dict[str, Dimension],
    stage_seed: int,
    explode_factor: float | None = EXPLODE_FACTOR,
    on_params: Callable[[], None] | None = None,
    scheduled: bool = False,
) -> TrialOutcome:
    """Suggest the trial's params (then ``on_params()``), train; the caller records the outcome's attrs and state.

    ``scheduled``: the study's pruner may stop the run after each of its rung epochs (``asha_rungs``, all before
    the last: a run that reached its last epoch is complete)."""
    params = suggest_params(trial, space, base)
    if on_params is not None:
        on_params()
    config = trial_config(base, params, stage_seed, trial.number)
    started = time.perf_counter()
    model = config.build_model(dataset)
    initial_reg_loss = model.reg_loss(config.train.reg)
    result = train(
        model, config.train, dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val,
        # the trainer keeps the last observer's verdict at an epoch's end: an explosion, not the scheduler's prune
        observers=(EpochReporter(trial, frozenset(asha_rungs(config.train.epochs)) if scheduled else frozenset()),
                   *explosion_observers(explode_factor, majority_share(dataset.y_train))),
    )
    seconds = time.perf_counter() - started
    diagnosis = diagnose_trial(result, model, dataset, config, initial_reg_loss)
    val_balanced = val_balanced_accuracy(model, dataset)
    reason = stop_reason(result.status)
    attrs = {
        "initial_loss": finite_or_none(result.initial_loss),
        "final_loss": finite_or_none(result.final_loss),
        "train_acc": finite_or_none(result.train_acc),
        "val_acc": finite_or_none(result.val_acc),
        # the mean of the classes' recalls on validation, of the network as it ended (val_acc's)
        "val_balanced_accuracy": finite_or_none(val_balanced) if result.val_acc_history else None,
        "best_val_acc": finite_or_none(result.best_val_acc),
        "best_epoch": result.best_epoch,
        "iterations": result.iterations,
        "seconds": round(seconds, 4),  # building the net and training it
        "stop_reason": reason,
        "model_parameters": model.parameter_count,
        "diagnosis": list(diagnosis.labels),
    }
    records = {
        "diagnosis_numbers": diagnosis.numbers,
        "config": config.to_dict(),
        "loss_curve": subsample(result.loss_history),
        "train_acc_curve": [finite_or_none(a) for a in result.train_acc_history],  # per epoch; val_acc per epoch is
        # the trial's intermediate values
    }
    # The value is the LAST epoch's validation accuracy: what a retrain of this configuration for
    # the same epochs is scored at. The best epoch's (an optimistic maximum over epochs) is kept
    # beside it as best_val_acc.
    return TrialOutcome(result.val_acc, reason in PRUNED_REASONS, result, attrs, records)
