"""Why a run fails: numerical gradient checks, per-layer activation statistics, the babysitting checklist."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from engine.formats import check_memory
from engine.init import INPUT_STD_HIGH, InitSpec
from engine.model import FullyConnectedNet, ModelConfig, check_activation
from engine.trainer import TrainConfig, train


# --------------------------------------------------------------------------- gradient check
def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Centred-difference gradient of the scalar f() with respect to x (modified in place, then restored)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        plus = f()
        x[ix] = old - h
        minus = f()
        x[ix] = old
        grad[ix] = (plus - minus) / (2 * h)
        it.iternext()
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||), the normwise relative error of a gradient check.

    Normwise rather than elementwise: an entry whose true gradient is exactly zero (a bias
    whose contributions cancel at a hinge) would otherwise be all finite-difference noise.
    """
    denom = float(np.linalg.norm(a) + np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / denom if denom > 0 else 0.0


GRADIENT_CHECK_ENTRIES = 10  # entries of each parameter a sampled check compares (all of a smaller one)


def check_model_gradients(
    model: FullyConnectedNet, X: np.ndarray, y: np.ndarray, reg: float, h: float = 1e-6,
    rng: np.random.Generator | None = None, entries: int = GRADIENT_CHECK_ENTRIES,
) -> dict[str, float]:
    """Relative error (normwise) between analytic and centred-difference gradients of every parameter of a float64
    ``model`` on X (N, D): at every entry, or with ``rng`` at ``entries`` random entries of each (all of a smaller
    one), so that a checked net of any size costs 2 * entries losses a parameter."""

    def loss() -> tuple[float, dict[str, np.ndarray]]:
        # a generator of the same seed on every call: dropout draws the same mask for each finite difference
        return model.loss(X, y, reg, rng=np.random.default_rng(0))

    _, grads = loss()
    errors = {}
    for name, param in model.params.items():
        # batch-norm running stats change on every train forward; they do not enter the train-mode loss
        if rng is None:
            errors[name] = relative_error(numerical_gradient(lambda: loss()[0], param, h), grads[name])
            continue
        flat = param.reshape(-1)  # a view: writing it moves the parameter
        picked = rng.choice(flat.size, size=min(entries, flat.size), replace=False)
        numeric = np.empty(len(picked))
        for k, i in enumerate(picked):
            old = flat[i]
            flat[i] = old + h
            plus = loss()[0]
            flat[i] = old - h
            minus = loss()[0]
            flat[i] = old
            numeric[k] = (plus - minus) / (2 * h)
        errors[name] = relative_error(numeric, grads[name].reshape(-1)[picked])
    return errors


# --------------------------------------------------------------------------- activation statistics
@dataclass(frozen=True)
class LayerStats:
    """Statistics of one hidden layer's outputs."""

    layer: int
    mean: float
    std: float
    saturated: float  # fraction of tanh/sigmoid units in their flat tails
    dead: float  # fraction of ReLU units never active on the batch (units no gradient reaches)

    def as_dict(self) -> dict[str, float]:
        return {"layer": self.layer, "mean": self.mean, "std": self.std, "saturated": self.saturated, "dead": self.dead}


def layer_stats(hidden: list[np.ndarray], activation: str) -> list[LayerStats]:
    """Per-layer mean, std, saturated and dead fractions of hidden outputs, each (N, H)."""
    out = []
    for i, h in enumerate(hidden, start=1):
        if activation == "tanh":
            saturated = float(np.mean(np.abs(h) > 0.99))
        elif activation == "sigmoid":
            saturated = float(np.mean((h < 0.01) | (h > 0.99)))
        else:
            saturated = 0.0
        if activation == "relu":  # leaky ReLU, PReLU, ELU and maxout pass a gradient where they are negative: they
            dead = float(np.mean(np.all(h <= 0, axis=0)))  # do not die (the lecture), whatever their outputs
        else:
            dead = 0.0
        # in float64: float32 outputs near their largest value (a ReLU bias of 1e38) overflowed the sum, and NumPy
        # printed its warning beside the command's lines; an infinite output gives an infinite or NaN std, quietly
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = float(h.mean(dtype=np.float64)), float(h.std(dtype=np.float64))
        out.append(LayerStats(i, mean, std, saturated, dead))
    return out


def activation_experiment(
    init: InitSpec,
    activation: str,
    depth: int = 10,
    width: int = 500,
    batchnorm: bool = False,
    samples: int = 1000,
    seed: int = 0,
) -> tuple[list[LayerStats], list[np.ndarray]]:
    """The lecture's experiment: unit-Gaussian input (samples, width) through ``depth`` layers, no biases.

    Returns per-layer statistics and the hidden outputs (depth arrays of shape (samples, width)).
    """
    check_activation(activation)
    # every layer's outputs are kept (float64) for the statistics and histograms
    check_memory(8 * samples * width * (depth + 2) + 8 * width * width * depth, "search layers",
                 f"{depth} layers of {width} units on {samples} samples")
    rng = np.random.default_rng(seed)
    config = ModelConfig(
        hidden=(width,) * depth, activation=activation,
        init=init, batchnorm=batchnorm, dtype="float64",
    )
    model = FullyConnectedNet(config, width, 2, rng)
    X = rng.standard_normal((samples, width))
    hidden: list[np.ndarray] = []
    # train mode so batch norm uses the batch statistics, as in the lecture's figure
    model.forward(X, train=True, rng=rng, record=hidden)
    return layer_stats(hidden, activation), hidden


# --------------------------------------------------------------------------- babysitting checklist
@dataclass(frozen=True)
class Check:
    """One checklist item: its name, whether it passed, the measured number and what was expected."""

    name: str
    passed: bool
    value: float
    expected: str
    hint: str | None = None  # what a failed check's numbers point to, and what to try

    def as_dict(self) -> dict[str, object]:
        return {"check": self.name, "passed": self.passed, "value": self.value, "expected": self.expected,
                "hint": self.hint}


SANITY_ITERATIONS = 10  # the fewest updates of the tiny- and huge-lr checks' runs
GRADIENT_CHECK_SAMPLES = 5  # training samples the gradient check's loss is computed on
GRADIENT_CHECK_TOLERANCE = 1e-5  # the worst parameter's relative error that passes: float64 centred differences
# give 1e-7 or less on a smooth loss; a ReLU or hinge kink crossed by a step of h adds up to about 1e-6 (CS231n)


def _initial_loss_hint(model: FullyConnectedNet, X: np.ndarray, below: bool) -> str:
    """Why the initial loss is off ln C (or C - 1): the initial class scores' spread, and the inputs' scale where it
    is far from the unit scale the initialisers assume (pixels of 0..255: std 60-90), else the initial weights."""
    with np.errstate(all="ignore"):
        scores, _ = model.forward(X, train=False)
        scale = float(np.std(X.astype(np.float64)))
    said = f"the initial class scores have std {float(np.std(scores)):.3g}, where chance needs them near 0"
    if below:  # scores that already separate the classes: no initial scale explains it
        return f"{said}; the net starts better than chance on these samples"
    if scale > INPUT_STD_HIGH:
        return (f"{said}: the inputs' std is {scale:.3g} (values {float(X.min()):.4g} to {float(X.max()):.4g}), "
                f"where the initialisation expects about 1; scale them: --preprocess standardize, or, for "
                f"images, their pixels divided by 255 in the file")
    return (f"{said}, on inputs of std {scale:.3g}: the initial weights are too large; a smaller --init-std, "
            f"--init he or xavier, or --batchnorm")


def sanity_checks(
    model_config: ModelConfig,
    train_config: TrainConfig,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    overfit_samples: int = 20,
) -> list[Check]:
    """The lecture's babysitting checklist on this data and model; every check reports its number."""
    seed = train_config.seed
    checks = []

    def fresh() -> FullyConnectedNet:
        return FullyConnectedNet(model_config, X_train.shape[1], num_classes, np.random.default_rng(seed))

    # 1. initial loss ~ ln(C) with reg 0 (softmax), ~ C - 1 for the SVM with small weights
    batch = slice(0, min(len(X_train), 500))
    with np.errstate(all="ignore"):  # train mode: dropout, when on, draws its masks from a seeded generator
        loss0, _ = fresh().loss(X_train[batch], y_train[batch], reg=0.0, rng=np.random.default_rng(seed))
    if model_config.loss == "softmax":
        target, label = math.log(num_classes), f"ln {num_classes} = {math.log(num_classes):.3f} +- 0.05"
    else:
        target, label = num_classes - 1.0, f"{num_classes - 1} +- 0.05 (C - 1)"
    near = abs(loss0 - target) <= 0.05
    checks.append(Check("initial loss near chance (reg 0)", near, loss0, label,
                        None if near else _initial_loss_hint(fresh(), X_train[batch], target > loss0)))

    # 2. adding regularisation raises the initial loss
    reg_probe = max(train_config.reg * 100, 1.0)
    with np.errstate(all="ignore"):
        loss_reg, _ = fresh().loss(X_train[batch], y_train[batch], reg=reg_probe, rng=np.random.default_rng(seed))
    checks.append(Check(f"loss rises with reg {reg_probe:g}", loss_reg > loss0, loss_reg, f"> {loss0:.4f}"))

    # 3. a tiny subset is overfitted to 100 % train accuracy with no regularisation
    k = min(overfit_samples, len(X_train))
    tiny_X, tiny_y = X_train[:k], y_train[:k]
    tiny_cfg = replace(train_config, epochs=200, batch_size=k, reg=0.0, lr_decay=1.0, train_acc_samples=k)
    tiny = train(fresh(), tiny_cfg, tiny_X, tiny_y, tiny_X, tiny_y)
    checks.append(Check(f"overfit {k} samples to 100 % train accuracy", tiny.train_acc == 1.0, tiny.train_acc, "1"))

    # 4. a tiny learning rate barely moves the loss: a short run, of SANITY_ITERATIONS at least (an epoch of a small
    # training set can be one update, whose loss is the first one: no lr could move it)
    per_epoch = max(1, len(X_train) // train_config.batch_size)
    short = replace(train_config, epochs=-(-SANITY_ITERATIONS // per_epoch), lr_decay=1.0)
    # measured on one fixed batch before and after: the first and last minibatches' losses differ by the batches
    # alone (breast cancer on raw scales: 23 % apart at lr 1e-7, which moved the loss on a fixed batch by 0.6 %)
    slow = fresh()
    with np.errstate(all="ignore"):
        before, _ = slow.loss(X_train[batch], y_train[batch], reg=train_config.reg, rng=np.random.default_rng(seed))
    train(slow, replace(short, lr=train_config.lr * 1e-4), X_train, y_train, X_val, y_val)
    with np.errstate(all="ignore"):
        after, _ = slow.loss(X_train[batch], y_train[batch], reg=train_config.reg, rng=np.random.default_rng(seed))
    change = abs(after - before) / before
    checks.append(Check("tiny lr (x1e-4) barely moves the loss", change < 0.05, change, "relative change < 0.05"))

    # 5. a huge learning rate diverges (NaN/inf) or explodes past 3x the first loss
    huge = train(fresh(), replace(short, lr=1e6, optimizer="sgd"), X_train, y_train, X_val, y_val)
    finite = [v for v in huge.loss_history if math.isfinite(v)]
    ratio = max(finite) / huge.initial_loss if finite and math.isfinite(huge.initial_loss) else math.inf
    diverged = huge.status == "diverged" or ratio > 3
    checks.append(Check(f"huge lr 1e6 diverges ({huge.status})", diverged, ratio, "diverged or max loss > 3x first"))

    # 6. the analytic gradient matches a numerical one: the same net in float64, reg as trained, a few samples
    n = min(GRADIENT_CHECK_SAMPLES, len(X_train))
    exact = FullyConnectedNet(replace(model_config, dtype="float64"), X_train.shape[1], num_classes,
                              np.random.default_rng(seed))
    errors = check_model_gradients(exact, X_train[:n].astype(np.float64), y_train[:n], train_config.reg,
                                   rng=np.random.default_rng(seed))
    worst = max(errors, key=lambda name: errors[name])
    checks.append(Check(f"gradient check (worst: {worst})", errors[worst] < GRADIENT_CHECK_TOLERANCE, errors[worst],
                        f"relative error < {GRADIENT_CHECK_TOLERANCE:g}"))
    return checks



# --------------------------------------------------------------------------- the diagnosis of one run
LABELS = ("lr_too_low", "lr_too_high", "overfitting", "underfitting", "dead_units", "saturated_units",
          "bad_initial_loss", "still_learning", "healthy")


@dataclass(frozen=True)
class DiagnosisThresholds:
    """Every threshold of the per-run diagnosis, in one place, with the reason for each.

    - ``loss_change_low`` 0.10: a loss that fell by less than 10 % of its first value over a whole
      run "barely moved" (the lecture's sign of a learning rate too low); a healthy run from
      ln C falls by far more within an epoch.
    - ``reg_share_high`` 0.75: a loss that barely moved while its L2 term is three quarters or more of it at the
      end is the weights' penalty, held up by regularisation, and says nothing of the step size (the lecture
      watches the learning rate with little regularisation): the run is over-regularised, ``underfitting``, not
      ``lr_too_low``. On digits (one hidden layer of 100), 3 epochs of lr 1e-4 leave the L2 term 0.4 % of the final
      loss at reg 1e-4, 55 % at reg 0.03 (lr 1e-2 trains either well: validation 0.98, 0.94), 80 % at reg 0.1 and
      92 % at reg 0.3 (where lr 1e-2 reaches only 0.73, and chance). Only where the L2 term itself moved by
      ``loss_change_low`` or more of its first value, though: a penalty that stayed where the initialisation put it
      says the weights did not move, which is the step, whatever the reg (lr 1.2e-7 at reg 0.035 on breast cancer:
      83 % L2 term, unchanged, where lr 1e-2 trains to 0.98; lr 1e-4 at reg 0.3 on digits: fell 6.6 %).
    - A run that exploded (its loss past 3x its first, as the search judges it), went NaN, or ended with its
      loss more than ``loss_change_low`` above its first value (a run nothing stopped, e.g. in ``search auto``'s
      final stage) had a learning rate too high; with fewer than ``rose_min_iterations`` 10 losses it must have
      ended ``short_rise`` 0.5 above its first: a few minibatches' noise alone moves the loss by more than 10 % (wine,
      3 iterations an epoch: lr 1e-6 went 1.96 -> 2.21 in 6 iterations, +13 %), but not by half (wine at lr 0.66,
      stopped by asha after its first epoch of 2 iterations: +75 %, which read as "barely moved", lr_too_low).
    - ``bounce_low`` 0.5: a loss that ended within ``loss_change_low`` of its first value (or above it by less than
      the above) after falling to half of it or less (the lowest mean of a tenth of its iterations, two at least)
      did move: its steps overshoot, and it had a learning rate too high, not too low (wine, Adam at lr 0.53: 1.12
      down to 0.22 and back to 1.03 in 12 iterations at train accuracy 0.99; at lr 0.25: down to 0.01 and up to 1.44
      in 6).
      Runs whose learning rate is too low stay near their first loss throughout (digits and wine: 0.90 or more).
    - ``gap_overfit`` 0.05: train accuracy 5 points above validation is the lecture's "big gap"
      (healthy runs on the bundled digits stay within +-4 points after 3 epochs); on few samples the gap must
      also exceed twice its standard error (binomial, of the train and validation accuracies): on iris's 24
      validation samples one sample is 4 points, and a 7-point gap of a net still at 86 % train accuracy is noise.
    - ``gap_underfit`` 0.02 with ``train_acc_underfit`` 0.90: no gap while the training set itself
      is not learned is too little capacity (or too much regularisation).
    - ``learned_fraction`` 0.25: train accuracy less than a quarter of the way from chance (always guessing the
      training set's most frequent class: 1/C on balanced classes, 0.95 where 95 % are one class) to 1 has not
      learned the training set, whatever the gap: underfitting, never overfitting (regularisation strong enough to
      crush the weights leaves train 0.2 and validation 0.1 on 10 classes; more regularisation is the wrong
      advice). Not higher: a short run on a hard problem is still learning (scaled-raw after 3 epochs: train about
      0.5 on 8 classes, halfway is 0.56), and calling it underfitting moved search auto's ranges the wrong way
      (benchmarks/search_quality.py, scaled-raw: -0.74 points against TPE with 0.5, +0.26 without the rule).
    - ``late_window`` 0.3 and ``late_fall`` 0.03: the loss is still falling steeply at the end where a straight line
      fitted to its last 30 % of iterations falls by more than 3 % of its mean there per tenth of the run, and by more
      than twice the slope's standard error (the minibatches' noise: a run of 3 epochs has 22 losses there). On
      digits, 3 epochs of Adam at lr 1e-3 (train 0.81) fall 10.3 % (twice the error: 3.3 %), 3 of SGD at lr 0.05
      (train 0.76) 3.8 %, one hidden layer of 3 units 6.5 % after 20 epochs on 300 samples (train 0.60, gap 7.8
      points); runs that levelled off fall 2.1 % or less: 2 units after 30 epochs (train 0.68, 1.9 %), and a
      problem with a quarter of its labels flipped at random (train 0.73-0.74, its ceiling; 3 to 30 epochs).
      Such a run, not yet at ``train_acc_underfit``, is ``still_learning`` where it would be ``healthy``: train
      longer; an ``underfitting`` run still falling is told to train longer before it is given more capacity.
    - ``noisy_errors`` 0.4 and ``noisy_share`` 2/3: a run with no gap below ``train_acc_underfit`` is
      ``underfitting`` only where its errors are the model's. A training sample whose label gets under 0.4 of the
      softmax probability of the model's own answer is one it contradicts confidently; where two thirds or more of
      the samples it misclassifies are such (``contradicted_errors``) and it fits ``train_acc_underfit`` of the
      samples it does not contradict (``uncontradicted_acc``), it has learned a rule the labels break (the
      confident-learning reading of label noise): the run is at the ceiling its labels allow, and more capacity
      would only memorise the noise. On digits, nets of 100 and 300 units with 10, 20, 30 and 40 % of the labels
      flipped at random (train 0.59-0.88, 10 to 30 epochs, gaps under 2 points or over 5) contradict 72-90 % of
      their errors and fit 0.90-0.98 of the rest, 100 units on the spiral with 20 % flipped 75 % and 0.93. Runs on
      clean labels contradict fewer: 3 epochs at a learning rate too high (Adam at 0.17-0.23, train 0.84-0.89)
      44-60 % (their errors are neither all at the boundary nor all confident: the median odds of 0.31-0.54 were no
      test), a net too small 24 % (3 units on the spiral); 3 units on the spiral with 20 % flipped contradict 20 %
      and fit only 0.60 of the rest. 100 units on the spiral with 30 % flipped fit 0.88 of the rest and stay
      ``underfitting``. Read on ERROR_ODDS_SAMPLES training samples (0.3 ms a digits trial, against 0.13 ms for the
      units); not below ``noisy_min_errors`` 10 misclassified samples, nor for the SVM, whose scores are no
      probabilities.
    - ``levelled_min_epochs`` 4: between the two readings, where a run with no gap below ``train_acc_underfit``
      fits ``train_acc_underfit`` of the samples it does not contradict but contradicts fewer than ``noisy_share`` of
      its errors, and its train accuracy stopped rising (over the last half of its epochs, of 4 at least, by no more
      than twice its binomial standard error) while its loss levelled off, too little capacity and label noise look
      alike: it is not ``underfitting``, and its sentence says how to tell them apart. Breast cancer with 13 % of its
      labels flipped (100 units, 10 and 40 epochs: train 0.82-0.86, gaps -3.4 and 1.0 points) contradicts 56-63 % of
      its errors and fits 0.91-0.94 of the rest; told "raise capacity", 512 units for 40 epochs reached train 0.90 and
      validation 0.78 (from 0.86). Clean labels: 2 units on digits after 30 epochs fit 0.75 of the rest (stays
      ``underfitting``), 3 units (train 0.87) 0.94, with their loss still falling.
    - ``val_drop`` 0.02: validation accuracy that peaked at an earlier epoch and ended more than 2 points, and more
      than twice its binomial standard error (of the validation size, at the peak), below it, while train accuracy
      did not fall from that epoch, is the lecture's other sign of ``overfitting``, whatever the final gap.
    - ``dead_fraction`` 0.5: half the ReLU units of a layer never active on a validation batch. A layer all of
      whose units are dead passes no gradient and gives the layers above a constant: a loss that barely moved
      then says nothing of the learning rate or the capacity, and the run is ``dead_units``, not ``lr_too_low`` or
      ``underfitting``.
    - ``saturated_fraction`` 0.2: a fifth of tanh/sigmoid outputs in the flat tails (|h| > 0.99),
      where their gradient is below 0.02 (He or Xavier initialised tanh nets stay near 0 %).
    - ``initial_loss_tolerance`` 0.5: the data loss at the start (reg left out) more than 0.5 from
      ln C (softmax; C - 1 for the SVM) means the output scale is off.
    - ``collapse_ratio`` 0.1 (``search layers``, and a run's loss that barely moved): the last layer's std below a
      tenth of the first's is the lecture's
      collapse toward zero (10 layers of 500: normal 0.01 + tanh 0.214 -> 0.000000, Xavier + ReLU 0.58 -> 0.025);
      Xavier + tanh (0.63 -> 0.23) and He + ReLU (0.83 -> 0.80) keep their scale.
    """

    loss_change_low: float = 0.10
    reg_share_high: float = 0.75
    rose_min_iterations: int = 10
    short_rise: float = 0.5
    bounce_low: float = 0.5
    gap_overfit: float = 0.05
    gap_underfit: float = 0.02
    train_acc_underfit: float = 0.90
    learned_fraction: float = 0.25
    late_window: float = 0.3
    late_fall: float = 0.03
    noisy_errors: float = 0.4
    noisy_share: float = 2 / 3
    noisy_min_errors: int = 10
    val_drop: float = 0.02
    levelled_min_epochs: int = 4
    dead_fraction: float = 0.5
    saturated_fraction: float = 0.2
    initial_loss_tolerance: float = 0.5
    collapse_ratio: float = 0.1


THRESHOLDS = DiagnosisThresholds()
DIAGNOSIS_BATCH = 256  # validation samples on which unit statistics are measured at the end of a run
ERROR_ODDS_SAMPLES = 2 * DIAGNOSIS_BATCH  # training samples, evenly spaced, on which the label noise is read


@dataclass(frozen=True)
class Diagnosis:
    """Labels (from ``LABELS``) and the numbers behind them."""

    labels: tuple[str, ...]
    numbers: dict[str, object]


def value_se(accuracy: float, n: int | None) -> float | None:
    """Binomial standard error of an accuracy measured on ``n`` samples (None when n is unknown); its twin is
    ``studies.queries._value_se`` (studies never imports engine)."""
    if not n:
        return None
    p = min(max(accuracy, 1.0 / n), 1 - 1.0 / n)  # never 0 at 100 %
    return math.sqrt(p * (1 - p) / n)


def diagnose(
    status: str,
    loss_history: list[float],
    train_acc: float,
    val_acc: float,
    initial_data_loss: float,
    expected_initial_loss: float,
    layers: list[LayerStats],
    thresholds: DiagnosisThresholds = THRESHOLDS,
    chance: float | None = None,
    samples: tuple[int, int] | None = None,
    final_reg_loss: float = 0.0,
    initial_reg_loss: float | None = None,
    train_acc_history: Sequence[float] = (),
    val_acc_history: Sequence[float] = (),
    label_noise: Mapping[str, float] | None = None,
    update_ratio: float | None = None,
) -> Diagnosis:
    """Read one run's curves and unit statistics the way the lecture babysits a run; ``chance``: the accuracy of
    guessing (1/C), below which ``learned_fraction`` is measured; ``samples``: how many samples the train and the
    validation accuracy were measured on (a gap within their noise is no overfitting); ``final_reg_loss``: the
    loss's L2 term at the end of the run; ``initial_reg_loss``: at its start (None: not known, taken as moved);
    ``train_acc_history``, ``val_acc_history``: the accuracies after each epoch (a validation curve that fell from
    an earlier peak is overfitting); ``label_noise``: ``label_noise``'s numbers (None: not measured), which can say
    that a run with no gap is at the ceiling its labels allow, not underfitting; ``update_ratio``: the first layer's
    last update norm over its weights' norm (None: not measured), the lecture's ~1e-3, said beside a learning rate
    too low."""
    t = thresholds
    labels: list[str] = []
    finite = [v for v in loss_history if math.isfinite(v)]
    first = finite[0] if finite else math.nan
    # the mean of the last tenth of the iterations, so one noisy minibatch does not decide
    tail = finite[-max(1, len(finite) // 10):] if finite else []
    last = float(np.mean(tail)) if tail else math.nan
    # the lowest mean of as many consecutive iterations, against the first loss: how far down the loss ever went;
    # of two at least, so one low minibatch of a short run (under 20 iterations) is no fall by half
    span = min(len(finite), max(2, len(tail)))
    sums = np.cumsum([0.0, *finite])
    lowest = float(np.min(sums[span:] - sums[:-span]) / span) if finite else math.nan
    low = _rounded(lowest / first if finite and first > 0 else math.nan)
    # judged as stored (4 decimals), so that describe_diagnosis, reading the stored numbers, gives the reason the
    # label was given for
    change = _rounded((first - last) / first if finite and first > 0 else math.nan)
    # at most 1: the L2 term at the end against the mean loss of the last tenth, which is below it where the data
    # loss has gone to ~0 and the weights still grow (softmax on separable data): a share of 102 % is 100 %
    reg_share = _rounded(min(1.0, final_reg_loss / last) if math.isfinite(last) and last > 0 else math.nan)
    # how far the L2 term fell (rose, negative) from its first value: how far the step moved the weights' norm
    reg_change = _rounded((initial_reg_loss - final_reg_loss) / initial_reg_loss
                          if initial_reg_loss is not None and initial_reg_loss > 0 else math.nan)
    gap = train_acc - val_acc if math.isfinite(train_acc) and math.isfinite(val_acc) else math.nan
    gap_limit = t.gap_overfit
    if samples is not None and math.isfinite(gap):
        se_train, se_val = value_se(train_acc, samples[0]), value_se(val_acc, samples[1])
        if se_train is not None and se_val is not None:
            gap_limit = max(gap_limit, 2 * math.hypot(se_train, se_val))
    dead = [s.dead for s in layers]
    saturated = [s.saturated for s in layers]
    late_fall, late_limit = _late_fall(finite, t)
    curves = {"late_loss_fall": _num(late_fall), "late_loss_limit": _num(late_limit),
              # the loss of the last tenth less its L2 term at the end: the data loss, to set against its first
              "final_data_loss": _num(last - final_reg_loss), "initial_data_loss": _num(initial_data_loss),
              **_val_peak(train_acc_history, val_acc_history, samples[1] if samples else None, t),
              **_train_levelled(train_acc_history, samples[0] if samples else None, t)}
    # a loss that went up by more than "barely moved", in a run no explosion test stopped
    rose = math.isfinite(change) and change < -t.loss_change_low and (len(finite) >= t.rose_min_iterations
                                                                      or change < -t.short_rise)
    exploded = status in ("exploded", "diverged", "nan") or rose
    # NaN or inf at the first minibatch, before any update: the initial weights (or the inputs) overflow, not the step
    unstarted = bool(loss_history) and not math.isfinite(loss_history[0])
    barely_moved = not exploded and math.isfinite(change) and change < t.loss_change_low
    over_regularised = barely_moved and reg_share >= t.reg_share_high and _penalty_moved(reg_change, t)
    blocked = any(d >= 1.0 for d in dead)  # a layer with every unit dead: nothing below it or in it can learn
    # down to half its first value or below, and back up near it (or past it, within a short run's noise)
    bounced = (barely_moved and not over_regularised and not blocked and math.isfinite(low)
               and low <= t.bounce_low)
    exploded = exploded or bounced
    if exploded and not unstarted:
        labels.append("lr_too_high")
    elif barely_moved and not over_regularised and not blocked:
        labels.append("lr_too_low")
    unlearned = chance is not None and train_acc < chance + t.learned_fraction * (1 - chance)
    if over_regularised:
        labels.append("underfitting")
    elif not exploded and not blocked and math.isfinite(gap):
        if (gap > gap_limit or curves.get("val_fell")) and not unlearned:
            labels.append("overfitting")
        elif (unlearned or (gap < t.gap_underfit and train_acc < t.train_acc_underfit
                            and not _noisy_labels(label_noise, t) and not _noise_or_capacity({**curves, **(
                                label_noise or {})}, t))) and "lr_too_low" not in labels:
            labels.append("underfitting")
    if dead and max(dead) > t.dead_fraction:
        labels.append("dead_units")
    if saturated and max(saturated) > t.saturated_fraction:
        labels.append("saturated_units")
    if unstarted or (math.isfinite(initial_data_loss)
                     and abs(initial_data_loss - expected_initial_loss) > t.initial_loss_tolerance):
        labels.append("bad_initial_loss")
    if not labels and train_acc < t.train_acc_underfit and still_falling(curves):
        labels.append("still_learning")  # far from the training set learned, and no sign yet that it levels off
    numbers = {
        "loss_change": _num(change), "loss_low": _num(low), "reg_share": _num(reg_share),
        "reg_change": _num(reg_change),
        "train_val_gap": _num(gap),
        "gap_limit": _num(gap_limit), "train_acc": _num(train_acc), "val_acc": _num(val_acc),
        "dead_fraction": [round(d, 4) for d in dead],
        "saturated_fraction": [round(s, 4) for s in saturated],
        # 3 significant digits: a collapsed layer's std is 3e-06
        "layer_std": [float(f"{s.std:.3g}") if math.isfinite(s.std) else None for s in layers],
        "expected_initial_loss": round(expected_initial_loss, 4),
        **curves,
    }
    if chance is not None:
        numbers["chance"] = round(chance, 4)
    if update_ratio is not None and math.isfinite(update_ratio):
        numbers["update_ratio"] = float(f"{update_ratio:.3g}")
    numbers.update(label_noise or {})
    return Diagnosis(tuple(labels) or ("healthy",), numbers)


def _noisy_labels(n: Mapping[str, object] | None, t: DiagnosisThresholds = THRESHOLDS) -> bool:
    """Whether ``label_noise``'s numbers say the model contradicts most of the labels it misses confidently and fits
    the rest: the ceiling its labels allow."""
    n = n or {}
    share, acc = n.get("contradicted_errors"), n.get("uncontradicted_acc")
    return (isinstance(share, (int, float)) and isinstance(acc, (int, float)) and share >= _rounded(t.noisy_share)
            and acc >= t.train_acc_underfit)


def _noise_or_capacity(n: Mapping[str, object], t: DiagnosisThresholds = THRESHOLDS) -> bool:
    """Whether a run's (stored) numbers leave too little capacity and label noise alike: its train accuracy stopped
    rising (``train_levelled``), its loss is not still falling, and it fits ``train_acc_underfit`` of the samples it
    does not contradict confidently, though it contradicts fewer than ``noisy_share`` of its errors."""
    acc = n.get("uncontradicted_acc")
    return (n.get("train_levelled") is True and not still_falling(n) and isinstance(acc, (int, float))
            and acc >= t.train_acc_underfit and not _noisy_labels(n, t))


def label_noise(model: FullyConnectedNet, X: np.ndarray, y: np.ndarray,
                thresholds: DiagnosisThresholds = THRESHOLDS) -> dict[str, float] | None:
    """How ``model`` disagrees with the labels y (N,) of X (N, D), on ERROR_ODDS_SAMPLES rows evenly spaced: a
    sample is contradicted where the softmax odds of its label against the model's answer are under
    ``noisy_errors``; ``contradicted_errors``, the share of the misclassified samples contradicted (near 1: it
    confidently disagrees with the labels it misses; near 0: its errors lie at its decision boundary);
    ``uncontradicted_acc``, its accuracy on the samples not contradicted. None for the SVM or fewer than
    ``noisy_min_errors`` errors."""
    if model.config.loss != "softmax" or not len(y):
        return None
    rows = np.unique(np.linspace(0, len(y) - 1, min(len(y), ERROR_ODDS_SAMPLES)).round().astype(int))
    with np.errstate(all="ignore"):
        # in batches: one forward of 1000 rows took 1.5 ms on digits, four of 256 0.2 ms (BLAS threads)
        scores = np.concatenate([model.forward(X[rows[i:i + DIAGNOSIS_BATCH]], train=False)[0]
                                 for i in range(0, len(rows), DIAGNOSIS_BATCH)]).astype(np.float64)
        labels = y[rows]
        odds = np.exp(scores[np.arange(len(rows)), labels] - scores.max(axis=1))
    if not np.all(np.isfinite(odds)):
        return None
    wrong = scores.argmax(axis=1) != labels
    if wrong.sum() < thresholds.noisy_min_errors:
        return None
    contradicted = odds < thresholds.noisy_errors
    rest = ~contradicted
    return {"contradicted_errors": _num(float(contradicted[wrong].mean())),
            "uncontradicted_acc": _num(float(np.mean(~wrong[rest])) if rest.any() else 0.0)}


def _late_fall(losses: list[float], t: DiagnosisThresholds) -> tuple[float, float]:
    """How steeply the loss still fell at the end: the slope of a straight line fitted to its last ``late_window`` of
    iterations, as a share of its mean there per tenth of the run (positive: falling); and the least such fall read
    as still falling, ``late_fall`` or twice the slope's standard error. NaN for fewer than ``rose_min_iterations``
    losses or a mean of 0."""
    n = len(losses)
    if n < t.rose_min_iterations:
        return math.nan, math.nan
    y = np.asarray(losses[-max(5, round(t.late_window * n)):], dtype=np.float64)
    level = float(y.mean())
    if not level > 0:
        return math.nan, math.nan
    x = np.arange(len(y)) - (len(y) - 1) / 2
    slope = float(x @ (y - level) / (x @ x))
    residual = y - level - slope * x
    se = math.sqrt(float(residual @ residual) / (len(y) - 2) / float(x @ x))
    per_tenth = n / 10 / level
    return -slope * per_tenth, max(t.late_fall, 2 * se * per_tenth)


def _val_peak(train: Sequence[float], val: Sequence[float], n_val: int | None,
              t: DiagnosisThresholds) -> dict[str, float | int | None]:
    """The validation curve's peak (its first epoch, counted from 1, and accuracy), how far validation accuracy fell
    from it by the end, the least fall read as one (``val_drop``, or twice the peak's binomial standard error on
    ``n_val`` samples), how much train accuracy rose from that epoch, and whether that is the lecture's sign of
    overfitting (``val_fell``: a fall past its limit, train accuracy not fallen); nothing for fewer than 2 epochs."""
    if len(val) < 2 or len(train) != len(val) or not all(map(math.isfinite, (*train, *val))):
        return {}
    peak = int(np.argmax(val))
    se = value_se(val[peak], n_val)
    # judged as stored, as the gap is
    drop, rise = _num(val[peak] - val[-1]), _num(train[-1] - train[peak])
    limit = _num(max(t.val_drop, 2 * se) if se is not None else t.val_drop)
    return {"val_peak_epoch": peak + 1, "val_peak": _num(val[peak]), "val_drop": drop, "val_drop_limit": limit,
            "train_rise": rise, "val_fell": drop > limit and rise >= 0}


def _train_levelled(train: Sequence[float], n_train: int | None,
                    t: DiagnosisThresholds) -> dict[str, float | int | bool | None]:
    """How far train accuracy rose over the last half of the epochs (from epoch ``train_rise_from``, counted from 1),
    the least rise read as one (twice the binomial standard error of the final train accuracy on ``n_train``
    samples), and whether it stopped rising (``train_levelled``); nothing for fewer than ``levelled_min_epochs``
    epochs or an unknown sample count."""
    se = value_se(train[-1], n_train) if len(train) >= t.levelled_min_epochs else None
    if se is None or not all(map(math.isfinite, train)):
        return {}
    start = len(train) // 2
    rise, limit = _num(train[-1] - train[start]), _num(2 * se)
    return {"train_rise_from": start + 1, "train_late_rise": rise, "train_late_rise_limit": limit,
            "train_levelled": rise <= limit}


def still_falling(n: Mapping[str, object]) -> bool:
    """Whether a diagnosis's (stored) numbers show a loss still falling steeply at the end (``late_fall``) while its
    data part is below where it started: a run that is still learning, whatever its labels. Where the data loss has
    not fallen (a run at chance under a strong L2 penalty), what falls is the penalty, as the weights decay."""
    fall, limit = n.get("late_loss_fall"), n.get("late_loss_limit")
    data, start = n.get("final_data_loss"), n.get("initial_data_loss")
    learned = not isinstance(data, (int, float)) or not isinstance(start, (int, float)) or data < start
    return isinstance(fall, (int, float)) and isinstance(limit, (int, float)) and fall > limit and learned


def _penalty_moved(reg_change: float | None, t: DiagnosisThresholds) -> bool:
    """Whether the L2 term moved by ``loss_change_low`` of its first value or more (not known: taken as moved)."""
    return reg_change is None or not math.isfinite(reg_change) or abs(reg_change) >= t.loss_change_low


def _num(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None


def _rounded(x: float) -> float:
    """``x`` as ``_num`` stores it, NaN and inf left as they are."""
    return round(float(x), 4) if math.isfinite(x) else x


def expected_initial_loss(loss: str, num_classes: int) -> float:
    """The data loss of a net whose scores start near zero: ln C (softmax), C - 1 (SVM)."""
    return math.log(num_classes) if loss == "softmax" else num_classes - 1.0


def unit_stats(model: FullyConnectedNet, X: np.ndarray) -> list[LayerStats]:
    """Per-hidden-layer statistics of ``model`` on X (N, D) in eval mode (first DIAGNOSIS_BATCH rows)."""
    hidden: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        model.forward(X[:DIAGNOSIS_BATCH], train=False, record=hidden)
    return layer_stats(hidden, model.config.activation)


def describe_diagnosis(diagnosis: Diagnosis, stop_reason: str | None = None) -> list[str]:
    """One sentence per label, with the numbers behind it; ``stop_reason`` (as a trial stores it: ``completed``,
    ``exploded``, ``nan``, ...) says which way a loss too high went, where it is known."""
    n, t = diagnosis.numbers, THRESHOLDS
    share, change = n.get("reg_share"), n.get("loss_change")  # no reg_share: diagnosed before it was measured
    reg_change = n.get("reg_change")  # none: diagnosed before it was measured
    held_up = share is not None and change is not None and share >= t.reg_share_high and change < t.loss_change_low
    over_regularised = held_up and _penalty_moved(reg_change, t)
    # a loss that fell while its L2 term, most of it, fell too: the weights shrank (a net fitting separable data
    # grows its weights instead, and its share nears 100 % with a small reg)
    shrunk = (share is not None and share >= t.reg_share_high and isinstance(reg_change, (int, float))
              and reg_change >= t.loss_change_low)
    limit = n.get("gap_limit")  # the gap an overfitting run exceeded, as _gap_limit_text says it
    gap_limit = t.gap_overfit if limit is None else max(t.gap_overfit, float(limit))
    if change is not None and change <= 0:  # up, by less than lr_too_high takes (-0.0: a rise rounded away)
        moved = "did not fall" if change == 0 else f"rose by {_pct_past(-change, 0.0)} of its first value"
        bound = f"instead of falling by {t.loss_change_low:.0%} or more"
    else:  # "< 10%" of it never reads 10.0%
        moved = f"fell by only {_pct_past(change, t.loss_change_low, above=False)} of its first value"
        bound = f"< {t.loss_change_low:.0%}"
    # a sentence is built only for a label the run has: one that exploded in its first epoch has no accuracies, and
    # an older or foreign diagnosis may lack other numbers (shown as -)
    words: dict[str, Callable[[], str]] = {
        "lr_too_high": lambda: f"{_how_it_rose(change, stop_reason, n.get('loss_low'))}: the learning rate is too high",
        "lr_too_low": lambda: f"the loss {moved} ({bound}): the learning rate is too low" + (
            f"; its L2 term, {_pct(share)} of it at the end, moved by only {_pct(abs(float(reg_change)))} of its "
            f"first value: the step did not move the weights (whether reg is too high shows with a larger lr)"
            if held_up and not over_regularised else "") + _update_ratio_text(n.get("update_ratio"))
            + _collapse_text(n.get("layer_std")),
        "overfitting": lambda: _overfitting_text(n, gap_limit),
        "underfitting": lambda: (
            f"the loss {moved}, and its L2 term is {_pct(n.get('reg_share'))} of it at the end "
            f"(>= {t.reg_share_high:.0%}): the weights' penalty holds it up, not a small step; underfitting: lower "
            f"regularisation" if over_regularised
            else f"train accuracy {_acc(n.get('train_acc'))}{_chance_text(n)}, train-val gap "
                 f"{_points(n.get('train_val_gap'))}: the training set is not learned; underfitting"
                 + (f", but {_late_fall_text(n)}: train longer first, then raise capacity or lower regularisation if "
                    f"it levels off this low" if still_falling(n) else ": raise capacity or lower regularisation")
                 + _units_to_blame(diagnosis.labels)),
        "dead_units": lambda: f"dead units: {_per_layer(n.get('dead_fraction'), t.dead_fraction)} "
                              f"(> {t.dead_fraction:.0%} in a layer): a bad initialisation or a learning rate that "
                              f"knocked them off",
        "saturated_units": lambda: (
            f"saturated outputs: {_per_layer(n.get('saturated_fraction'), t.saturated_fraction)} "
            f"(> {t.saturated_fraction:.0%} in a layer): "
            + ("the updates blew the weights up past what tanh/sigmoid can use (the learning rate, not the "
               "initialisation)" if "lr_too_high" in diagnosis.labels
               else "the initial weights are too large for tanh/sigmoid")),
        "bad_initial_loss": lambda: (
            f"initial data loss {n.get('initial_data_loss')}, expected about {n.get('expected_initial_loss')}: the "
            f"initial class scores are far from 0, from the initial weights or from inputs far from unit scale "
            f"(pixels of 0..255); search sanity with the run's options says which"
            if n.get("initial_data_loss") is not None
            else "the loss was NaN or inf at the first minibatch, before any update: the initial weights or the "
                 "inputs are too large for the network's floats, whatever the learning rate"),
        "still_learning": lambda: f"{_late_fall_text(n)}, with train accuracy {_acc(n.get('train_acc'))} and a "
                                  f"train-val gap of {_points(n.get('train_val_gap'))}: still learning, not converged; "
                                  f"train longer (more epochs) before judging its capacity or regularisation",
        "healthy": lambda: f"healthy: the loss fell by {_pct(n.get('loss_change'))}, train-val gap "
                           f"{_points(n.get('train_val_gap'))}" + (
            f"; but its L2 term is {_pct(share)} of it at the end and fell by {_pct(reg_change)} of its first value: "
            f"the curve shows the penalty shrinking the weights more than the data being fitted"
            if shrunk else "") + _ceiling_text(n) + _alike_text(n),
    }
    return [words[label]() for label in diagnosis.labels]


def _update_ratio_text(ratio: object) -> str:
    """The first layer's update/weight ratio beside a learning rate too low, where it was measured ('' if not)."""
    if not isinstance(ratio, (int, float)):
        return ""
    return (f"; the first layer's last update was {ratio:.1e} of its weights' norm (about 1e-3 with a good learning "
            f"rate)")


def _short_without_gap(n: dict[str, object]) -> bool:
    """Whether a run's numbers ``n`` show train accuracy short of ``train_acc_underfit`` with no train-val gap."""
    t, acc, gap = THRESHOLDS, n.get("train_acc"), n.get("train_val_gap")
    return (isinstance(acc, (int, float)) and isinstance(gap, (int, float)) and acc < t.train_acc_underfit
            and gap < t.gap_underfit)


def _ceiling_text(n: dict[str, object]) -> str:
    """Where a run with no gap is short of ``train_acc_underfit`` because it contradicts the labels it misses
    confidently (``noisy_errors``), that this is its ceiling, not too little capacity; else nothing."""
    t, acc = THRESHOLDS, n.get("train_acc")
    if not (_short_without_gap(n) and _noisy_labels(n)):
        return ""
    return (f"; train accuracy {_acc(acc)} with no gap is the ceiling its labels allow, not too little capacity: it "
            f"confidently contradicts {_pct(n['contradicted_errors'])} of the labels it misses (their probability "
            f"under {t.noisy_errors:g} of its own answer's; >= {t.noisy_share:.0%} of them: noisy or ambiguous "
            f"labels), and fits {_acc(n['uncontradicted_acc'])} of the other training samples "
            f"(>= {t.train_acc_underfit:g}): more capacity would only memorise those labels")


def _alike_text(n: dict[str, object]) -> str:
    """Where a run with no gap is short of ``train_acc_underfit`` but neither shows too little capacity nor its
    labels' ceiling (``_noise_or_capacity``): what it has reached, and how to tell the two apart; else nothing."""
    t, acc = THRESHOLDS, n.get("train_acc")
    if not (_short_without_gap(n) and _noise_or_capacity(n)):
        return ""
    return (f"; train accuracy {_acc(acc)} with no gap stopped rising (up {_points(n['train_late_rise'])} from epoch "
            f"{n['train_rise_from']} to the end, <= {_points(n['train_late_rise_limit'])}, twice its standard error) "
            f"as its loss levelled off: the run has reached what the data allow at this capacity. Too little capacity "
            f"and noisy labels look alike here: it confidently contradicts {_pct(n['contradicted_errors'])} of the "
            f"labels it misses (< {t.noisy_share:.0%}: no clear sign of noise) and fits "
            f"{_acc(n['uncontradicted_acc'])} of the other training samples (>= {t.train_acc_underfit:g}: no clear "
            f"sign of too little capacity). To tell them apart, train a wider net (twice --hidden): train accuracy "
            f"rising while validation accuracy falls is label noise being memorised, both rising is too little "
            f"capacity")


def _late_fall_text(n: dict[str, object]) -> str:
    """How steeply the loss still fell at the end, with the bound it is past."""
    limit = float(n["late_loss_limit"])
    bound = (f"{THRESHOLDS.late_fall:.0%}" if limit <= THRESHOLDS.late_fall
             else f"{_pct(limit)}, twice the standard error of the slope")
    return (f"the loss is still falling steeply at the end ({_pct_past(n['late_loss_fall'], limit)} of it per tenth "
            f"of the run over its last {THRESHOLDS.late_window:.0%} of iterations, > {bound})")


def _overfitting_text(n: dict[str, object], gap_limit: float) -> str:
    """A gap past its limit, a validation curve that fell from an earlier peak, or both, and the advice."""
    gap = n.get("train_val_gap")
    over = isinstance(gap, (int, float)) and gap > gap_limit
    said = (f"train accuracy {_acc(n.get('train_acc'))} is {_points(gap, gap_limit)} above validation "
            f"(> {_gap_limit_text(n.get('gap_limit'))})") if over or n.get("val_fell") is not True else ""
    if n.get("val_fell") is True:
        drop, limit = float(n["val_drop"]), float(n["val_drop_limit"])
        bound = (f"{THRESHOLDS.val_drop * 100:.0f} points" if limit <= THRESHOLDS.val_drop
                 else f"{limit * 100:.1f} points, twice its standard error")
        fell = (f"validation accuracy peaked at {_acc(n.get('val_peak'))} in epoch {n.get('val_peak_epoch')} and "
                f"fell {_points(drop, limit)} by the end (> {bound}) while train accuracy rose "
                f"{_points(n.get('train_rise'))} to {_acc(n.get('train_acc'))}")
        said = f"{said}; {fell}" if said else f"{fell}, though the final gap is {_points(gap)}"
        return f"{said}: overfitting; stop near epoch {n.get('val_peak_epoch')} or raise regularisation"
    return f"{said}: overfitting; raise regularisation or lower capacity"


def _collapse_text(stds: object) -> str:
    """Where the last hidden layer's std is under ``collapse_ratio`` of the first's (the lecture's collapse of a deep
    net initialised too small), that it may be the cause of a loss that barely moved; else nothing."""
    if not isinstance(stds, list) or len(stds) < 2 or not all(isinstance(v, (int, float)) for v in stds):
        return ""
    first, last, ratio = float(stds[0]), float(stds[-1]), THRESHOLDS.collapse_ratio
    if not last < ratio * first:
        return ""
    return (f"; or the initialisation is too small for this depth: the outputs collapse from std {first:.3g} in "
            f"layer 1 to {last:.3g} in layer {len(stds)} (under {ratio:g} x), and the weights' gradients with them "
            f"(search layers shows it)")


def _units_to_blame(labels: tuple[str, ...]) -> str:
    """Where a run that underfits has saturated or dead units too: they pass little or no gradient, and may be why."""
    units = [word for label, word in (("saturated_units", "saturated"), ("dead_units", "dead")) if label in labels]
    if not units:
        return ""
    return f", or first mend the {' and '.join(units)} units (below), which pass little or no gradient and may be why"


def _chance_text(n: dict[str, object]) -> str:
    """`` (always guessing the most frequent class scores 0.9531)`` where train accuracy is under a quarter of the
    way from that to 1; nothing where it is above, or where chance was not stored."""
    chance, acc = n.get("chance"), n.get("train_acc")
    if not isinstance(chance, (int, float)) or not isinstance(acc, (int, float)):
        return ""
    if acc >= chance + THRESHOLDS.learned_fraction * (1 - chance):
        return ""
    return f" (always guessing the most frequent class scores {float(chance):.4f})"


def _how_it_rose(change: float | None, stop_reason: str | None, low: object = None) -> str:
    """What the loss of a run whose learning rate was too high did, as far as its stop reason, change and lowest
    value (``loss_low``, a share of its first; None: not stored) tell."""
    if stop_reason in ("nan", "diverged"):
        return "the loss went NaN or inf"
    if stop_reason == "exploded":
        return "the loss exploded, and the run was stopped there"
    if (stop_reason is not None and change is not None and isinstance(low, (int, float))
            and low <= THRESHOLDS.bounce_low and change < THRESHOLDS.loss_change_low):
        ratio = 1 - float(change)  # the mean of its last tenth over its first loss
        back = f"{ratio:.3g} times it" if ratio >= 2 else f"{_pct(ratio)} of it"
        return (f"the loss fell to {_pct(low)} of its first value, then came back up to {back} (the mean of its last "
                f"tenth of iterations): its steps overshoot")
    if stop_reason == "completed" and change is not None and change < 0:  # a run nothing stopped, ended above
        ratio = 1 - float(change)  # the mean of its last tenth over its first loss
        rise = _pct_past(-float(change), THRESHOLDS.loss_change_low)
        above = f"at {ratio:.3g} times" if ratio >= 2 else f"{rise} above"
        return f"the loss ended {above} its first value (the mean of its last tenth of iterations)"
    return "the loss exploded, went NaN or ended well above its first value"


def read_layers(stats: list[LayerStats], thresholds: DiagnosisThresholds = THRESHOLDS) -> str:
    """One sentence reading ``search layers``' statistics as the lecture reads its figure: saturated, dead,
    collapsing toward zero, or keeping their scale."""
    t = thresholds
    if not stats:
        return "no hidden layer"
    first, last = stats[0], stats[-1]
    saturated = max(stats, key=lambda s: s.saturated)
    dead = max(stats, key=lambda s: s.dead)
    if saturated.saturated > t.saturated_fraction:
        return (f"saturated: {saturated.saturated:.0%} of layer {saturated.layer}'s outputs are in the flat tails "
                f"(> {t.saturated_fraction:.0%}), where the local gradient is near 0: the weights are too large")
    if dead.dead > t.dead_fraction:
        return (f"dead: {dead.dead:.0%} of layer {dead.layer}'s units are never active (> {t.dead_fraction:.0%}): "
                f"no gradient flows through them")
    overflowed = next((s for s in stats if not math.isfinite(s.std)), None)
    if overflowed is not None:
        return f"overflowing: layer {overflowed.layer}'s outputs are too large to measure (std {overflowed.std})"
    if len(stats) > 1 and last.std < t.collapse_ratio * first.std:
        return (f"collapsing: the std falls from {first.std:.3g} in layer 1 to {last.std:.3g} in layer {last.layer} "
                f"(below {t.collapse_ratio:g} x layer 1's): the outputs shrink toward zero layer by layer, and so do "
                f"the weights' gradients (a layer's input times the gradient from above); the weights are too small "
                f"for this depth")
    # the most a layer has under the limits: "no layer dead" beside a table row of 10 % dead read as a contradiction
    most = " and ".join(f"{share:.0%} of layer {layer}'s {what} (under {limit:.0%})"
                        for what, share, layer, limit in (
                            ("outputs saturated", saturated.saturated, saturated.layer, t.saturated_fraction),
                            ("units dead", dead.dead, dead.layer, t.dead_fraction)) if share >= 0.005)
    under = f" beyond the limits: at most {most}" if most else ""
    if len(stats) == 1:
        return f"one layer: std {first.std:.3g}, its outputs neither saturated nor dead{under}"
    return (f"keeps its scale: the std goes from {first.std:.3g} in layer 1 to {last.std:.3g} in layer {last.layer} "
            f"with no layer saturated or dead{under}")


def _gap_limit_text(limit: object) -> str:
    """The gap a run had to exceed to be overfitting: the threshold, or the noise of its few samples."""
    t = THRESHOLDS
    if limit is None or float(limit) <= t.gap_overfit:  # diagnoses stored before the limit was: the threshold
        return f"{t.gap_overfit * 100:.0f} points"
    return f"{float(limit) * 100:.1f} points, twice the standard error of the gap on so few samples"


def _per_layer(fractions: list[float] | None, threshold: float) -> str:
    """``[0.62, 0.03]`` as ``62% of layer 1, 3% of layer 2``; a fraction above ``threshold`` keeps the decimals
    that show it above (0.502 of a 50 % threshold: ``50.2%``, not ``50%``)."""
    return ", ".join(f"{_pct_past(float(f), threshold, digits=0)} of layer {i}"
                     for i, f in enumerate(fractions or [], start=1)) or "-"


def _pct_past(x: object, bound: float, above: bool = True, digits: int = 1) -> str:
    """``x`` as a percentage with ``digits`` decimals, or as many more as show it past ``bound`` (above it, or
    below it) when it is: the number a label was given for never reads as the bound itself (0.0996 < 10 %:
    ``9.96%``, not ``10.0%``)."""
    if x is None:
        return "-"
    x = float(x)
    past = x > bound if above else x < bound
    for shown in range(digits, digits + 4):
        text = f"{x:.{shown}%}"
        value = float(text[:-1]) / 100
        if not past or (value > bound if above else value < bound):
            return text
    return text


def _acc(x: object) -> str:
    """An accuracy to 4 decimals; ``-`` for one never measured."""
    return "-" if x is None else f"{float(x):.4f}"


def _pct(x: object) -> str:
    return "-" if x is None else f"{float(x):.1%}"


def _points(x: object, bound: float | None = None) -> str:
    """A difference of accuracies in points of 100 % (0.071: ``7.1 points``), shown past ``bound`` as ``_pct_past``
    shows a share."""
    text = _pct(x) if bound is None else _pct_past(x, bound)
    return text if x is None else f"{text[:-1]} points"
