"""The minibatch loop: shuffled batches, per-iteration loss, per-epoch accuracies, observers that may stop it."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from engine import kernels
from engine.errors import ConfigError
from engine.layers import balanced_class_weights
from engine.model import FullyConnectedNet
from engine.optim import OPTIMIZERS, make_optimizer


# how each training sample's loss is weighted: none (all alike), or balanced (scikit-learn's class_weight='balanced':
# n_samples / (n_classes * count of its class), counted on the training split)
CLASS_WEIGHTS = ("none", "balanced")


class Observer:
    """Called by the trainer; a method that returns a string stops the run with that string as its status.

    Both do nothing here: an observer overrides the one it needs.
    """

    def on_iteration(self, iteration: int, loss: float) -> str | None:
        return None

    def on_epoch(self, epoch: int, train_acc: float, val_acc: float) -> str | None:
        return None


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run; checks itself on construction."""

    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_decay: float = 1.0  # multiply lr by this after every epoch
    reg: float = 1e-4
    momentum: float = 0.9  # mu of the momentum and nesterov rules
    seed: int = 0
    train_acc_samples: int = 1000  # train accuracy is measured on a fixed sample of this size
    class_weight: str = "none"  # one of CLASS_WEIGHTS

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.reg) and self.reg >= 0):
            raise ConfigError(f"reg must be a finite number >= 0, got {self.reg}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ConfigError(f"lr decay must be in (0, 1], got {self.lr_decay}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(f"unknown class weight {self.class_weight!r}; known: {', '.join(CLASS_WEIGHTS)}")


@dataclass
class TrainResult:
    """How a run went: ``status`` is ``completed``, ``diverged`` or the reason an observer gave."""

    status: str
    loss_history: list[float] = field(default_factory=list)
    train_acc_history: list[float] = field(default_factory=list)
    val_acc_history: list[float] = field(default_factory=list)
    # per epoch, per weight matrix (W1, W2, ...): the norm of its last update over the norm of the weights before it,
    # the lecture's update/weight ratio (about 1e-3 in a healthy run; far below, lr too low; far above, too high)
    update_ratio_history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    epochs: int = 0
    seconds: float = 0.0
    step_seconds: float = 0.0
    samples: int = 0
    # the mean class weight of the first minibatch's samples (TrainConfig.class_weight; 1 with none): its data loss at
    # the start is this times the unweighted one's
    initial_weight: float = 1.0

    @property
    def initial_loss(self) -> float:
        return self.loss_history[0] if self.loss_history else float("nan")

    @property
    def final_loss(self) -> float:
        return self.loss_history[-1] if self.loss_history else float("nan")

    @property
    def train_acc(self) -> float:
        return self.train_acc_history[-1] if self.train_acc_history else float("nan")

    @property
    def val_acc(self) -> float:
        return self.val_acc_history[-1] if self.val_acc_history else float("nan")

    @property
    def best_val_acc(self) -> float:
        """The best finite validation accuracy of an epoch; NaN, as val_acc, before the first epoch ends."""
        finite = [a for a in self.val_acc_history if math.isfinite(a)]
        return max(finite) if finite else float("nan")

    @property
    def best_epoch(self) -> int | None:
        """The 1-based epoch of best_val_acc, None before the first epoch ends."""
        finite = [(a, -e) for e, a in enumerate(self.val_acc_history, start=1) if math.isfinite(a)]
        return -max(finite)[1] if finite else None

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.step_seconds if self.step_seconds > 0 else float("nan")


def update_ratio(after: np.ndarray, before: np.ndarray) -> float:
    """||after - before|| / ||before||, in float64: an update's size against the weights' (inf for zero weights)."""
    scale = float(np.linalg.norm(before.astype(np.float64)))
    step = float(np.linalg.norm(after.astype(np.float64) - before))
    return step / scale if scale > 0 else (0.0 if step == 0 else math.inf)


def train(
    model: FullyConnectedNet,
    config: TrainConfig,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    observers: tuple[Observer, ...] = (),
) -> TrainResult:
    """Train ``model`` in place on X_train (N, D), y_train (N,); score X_val (M, D) after each epoch."""
    n = X_train.shape[0]
    if config.batch_size > n:
        raise ConfigError(f"batch size {config.batch_size} is larger than the training set ({n} samples)")
    rng = np.random.default_rng(config.seed)
    # plain SGD and Adam apply the L2 gradient in their update (same numbers, fewer passes over the weights)
    fused_decay = config.optimizer in ("sgd", "adam") and config.reg > 0
    if fused_decay:
        rule = OPTIMIZERS[config.optimizer](weight_decay=config.reg, decayed=frozenset(model.weight_names))
    else:
        rule = make_optimizer(config.optimizer, config.momentum)
    batches_per_epoch = max(1, n // config.batch_size)
    sample = rng.choice(n, size=min(n, config.train_acc_samples), replace=False)
    X_sample, y_sample = X_train[sample], y_train[sample]
    result = TrainResult(status="completed")
    # Python floats take the model's dtype; a NumPy float64 lr or reg would turn every update and
    # regularisation pass over the weights into a float64 loop with casts (several times slower in float32)
    lr, reg = float(config.lr), float(config.reg)
    class_weights = None
    if config.class_weight == "balanced":
        num_classes = model.params[model.weight_names[-1]].shape[1]
        class_weights = balanced_class_weights(y_train, num_classes).astype(model.dtype)
    started = time.perf_counter()
    # the one-pass loops of large layers: compiled (about a second per process) in the run's seconds, not in the
    # step time its samples per second are measured on
    kernels.prepare(config.optimizer, model.params.values())
    iteration = 0

    with np.errstate(all="ignore"):  # divergence is detected from the loss, not from warnings
        for epoch in range(1, config.epochs + 1):
            # --- one pass over the shuffled training set
            order = rng.permutation(n)
            step_started = time.perf_counter()
            stop = None
            ratios: dict[str, float] = {}
            for b in range(batches_per_epoch):
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                loss, grads = model.loss(X_train[idx], y_train[idx], reg, rng, reg_grad=not fused_decay,
                                         class_weights=class_weights)
                iteration += 1
                if iteration == 1 and class_weights is not None:
                    result.initial_weight = float(class_weights[y_train[idx]].mean())
                result.loss_history.append(loss)
                if not math.isfinite(loss):
                    stop = "diverged"
                    break
                before = ({name: model.params[name].copy() for name in model.weight_names}
                          if b == batches_per_epoch - 1 else None)
                rule.step(model.params, grads, lr)
                if before is not None:
                    ratios = {name: update_ratio(model.params[name], w) for name, w in before.items()}
                for obs in observers:
                    stop = obs.on_iteration(iteration, loss) or stop
                if stop:
                    break
            result.step_seconds += time.perf_counter() - step_started
            result.samples += (b + 1) * config.batch_size
            result.iterations = iteration
            if stop:
                result.status = stop
                break

            # --- end of epoch: accuracies, observers, lr decay
            result.epochs = epoch
            train_acc = model.accuracy(X_sample, y_sample)
            val_acc = model.accuracy(X_val, y_val)
            result.train_acc_history.append(train_acc)
            result.val_acc_history.append(val_acc)
            result.update_ratio_history.append(ratios)
            for obs in observers:
                stop = obs.on_epoch(epoch, train_acc, val_acc) or stop
            if stop:
                result.status = stop
                break
            lr *= float(config.lr_decay)

    result.seconds = time.perf_counter() - started
    return result
