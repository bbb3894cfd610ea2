"""A fully connected network of any depth: [affine - (batchnorm) - activation - (dropout)] x L - affine - loss."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine import layers as L
from engine.activations import ACTIVATION_REGISTRY, ACTIVATIONS
from engine.errors import ConfigError
from engine.formats import check_memory
from engine.init import InitSpec

DTYPES: dict[str, type] = {"float32": np.float32, "float64": np.float64}
# the lowest dropout keep probability taken: below it nearly every unit of a layer is dropped in each training step
# (1e-30 dropped all of them, the loss barely moved and the run read as a learning rate too low)
MIN_KEEP = 0.01


def check_activation(name: str) -> None:
    """Raise ConfigError listing the known activations when ``name`` is not one of them."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a fully connected classifier (the data decides input and output sizes); checks itself."""

    hidden: tuple[int, ...] = (100,)
    activation: str = "relu"
    init: InitSpec = field(default_factory=InitSpec)
    batchnorm: bool = False
    dropout: float = 1.0  # keep probability; 1.0 disables dropout
    loss: str = "softmax"
    relu_bias: float = 0.0  # small positive bias for ReLU-family units, e.g. 0.01
    leaky_slope: float = 0.01
    elu_alpha: float = 1.0
    prelu_init: float = 0.25
    # the output layer's weights are scaled by this so the initial scores are near zero and the
    # initial loss is near ln C, the lecture's first sanity check; 1.0 leaves them as the initialiser drew them
    output_scale: float = 0.01
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_activation(self.activation)
        if self.loss not in L.LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; known: {', '.join(L.LOSSES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPES)}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be >= 1, got {','.join(map(str, self.hidden))}")
        if not MIN_KEEP <= self.dropout <= 1.0:
            raise ConfigError(f"dropout keep probability must be in [{MIN_KEEP:g}, 1], got {self.dropout:g}")
        if not (np.isfinite(self.output_scale) and self.output_scale > 0):
            raise ConfigError(f"output scale must be a finite number > 0, got {self.output_scale}")
        if not 0.0 <= self.leaky_slope < 1.0:
            raise ConfigError(f"leaky slope must be in [0, 1), got {self.leaky_slope}")
        if not abs(self.relu_bias) <= float(np.finfo(DTYPES[self.dtype]).max):  # NaN too; biases are made in the dtype
            raise ConfigError(f"relu bias {self.relu_bias:g} is beyond {self.dtype}'s range")


def check_network_memory(config: ModelConfig, input_dim: int, num_classes: int) -> None:
    """DataError naming the network when its weights, their gradients and up to three optimiser buffers (Adam: m, v,
    scratch) would not fit in memory."""
    dims = [input_dim, *config.hidden, num_classes]
    pieces = ACTIVATION_REGISTRY[config.activation].pieces
    weights = sum(a * b * (pieces if i < len(config.hidden) else 1) for i, (a, b) in enumerate(zip(dims, dims[1:])))
    hidden = config.hidden
    if len(hidden) > 4 and len(set(hidden)) == 1:  # 50 layers of 1000000 as one line of 400 characters: said once
        layers = f"({len(hidden)} hidden layers of {hidden[0]})"
    else:
        layers = "-".join(map(str, hidden)) if len(hidden) <= 8 else (
            f"{'-'.join(map(str, hidden[:3]))}-...({len(hidden)} hidden layers)...-{'-'.join(map(str, hidden[-2:]))}")
    check_memory(5 * weights * np.dtype(DTYPES[config.dtype]).itemsize,
                 f"network {input_dim}-{layers}-{num_classes}", f"{weights:,} weights")


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    """The mean over the classes present in labels y (N,) of their recall (the share of their samples ``predicted``
    (N,) as them), as scikit-learn's balanced_accuracy_score: always predicting one class scores 1 / classes, however
    frequent it is. NaN for no samples."""
    if len(y) == 0:
        return float("nan")
    _, index = np.unique(y, return_inverse=True)
    return float((np.bincount(index, weights=predicted == y) / np.bincount(index)).mean())


class FullyConnectedNet:
    """Parameters in ``params`` (W1, b1, gamma1, beta1, alpha1, ...); batch-norm running stats in ``bn_stats``."""

    def __init__(self, config: ModelConfig, input_dim: int, num_classes: int, rng: np.random.Generator) -> None:
        if input_dim < 1 or num_classes < 2:
            raise ConfigError(f"need input_dim >= 1 and num_classes >= 2, got {input_dim}, {num_classes}")
        check_network_memory(config, input_dim, num_classes)
        dims = [input_dim, *config.hidden, num_classes]
        activation = ACTIVATION_REGISTRY[config.activation]
        self.config = config
        self.activation = activation
        self.dtype = np.dtype(DTYPES[config.dtype])
        self.num_hidden = len(config.hidden)
        self.params: dict[str, np.ndarray] = {}
        self.bn_stats: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i in range(1, len(dims)):
            fan_in, fan_out = dims[i - 1], dims[i]
            hidden_layer = i <= self.num_hidden
            if hidden_layer:
                fan_out *= activation.pieces  # maxout: two pieces per unit, twice the parameters
            w = config.init.draw(fan_in, fan_out, rng, self.dtype)
            if not hidden_layer:
                w *= self.dtype.type(config.output_scale)
            self.params[f"W{i}"] = w
            if not (hidden_layer and config.batchnorm):  # batch norm's beta replaces the bias
                bias = config.relu_bias if (hidden_layer and activation.relu_family) else 0.0
                self.params[f"b{i}"] = np.full(fan_out, bias, dtype=self.dtype)
            if not hidden_layer:
                continue
            units = dims[i]
            if config.batchnorm:
                self.params[f"gamma{i}"] = np.ones(fan_out, dtype=self.dtype)
                self.params[f"beta{i}"] = np.zeros(fan_out, dtype=self.dtype)
                self.bn_stats[i] = (np.zeros(fan_out, dtype=self.dtype), np.ones(fan_out, dtype=self.dtype))
            if activation.learns_slope:
                self.params[f"alpha{i}"] = np.full(units, config.prelu_init, dtype=self.dtype)
        self.weight_names = [f"W{i}" for i in range(1, len(dims))]

    @property
    def parameter_count(self) -> int:
        """Number of learnable parameters (weights, biases, batch-norm gamma/beta, PReLU slopes)."""
        return int(sum(p.size for p in self.params.values()))

    # ------------------------------------------------------------------ forward / loss
    def forward(
        self,
        X: np.ndarray,
        train: bool = False,
        rng: np.random.Generator | None = None,
        record: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, list]:
        """Scores (N, C) and per-layer caches; hidden outputs are appended to ``record`` when given.

        In train mode with batch norm the new running statistics are stored on the model.
        """
        p = self.params
        caches = []
        h = X
        for i in range(1, self.num_hidden + 1):
            a, fc = L.affine_forward(h, p[f"W{i}"], p.get(f"b{i}"))
            bn = None
            if self.config.batchnorm:
                mean, var = self.bn_stats[i]
                a, bn, new_stats = L.batchnorm_forward(a, p[f"gamma{i}"], p[f"beta{i}"], mean, var, train)
                if train:
                    self.bn_stats[i] = new_stats
            h, ac = self.activation.forward(a, self.config, p.get(f"alpha{i}"))
            if record is not None:
                record.append(h)
            h, dc = L.dropout_forward(h, self.config.dropout, train, rng)
            caches.append((fc, bn, ac, dc))
        last = self.num_hidden + 1
        scores, fc = L.affine_forward(h, p[f"W{last}"], p[f"b{last}"])
        caches.append(fc)
        return scores, caches

    def reg_loss(self, reg: float) -> float:
        """0.5 * reg * sum of squared weights (biases, gamma, beta and alpha are not regularised)."""
        if reg == 0.0:
            return 0.0
        total = 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # weights past float range: an inf loss, said by the run
            for name in self.weight_names:
                w = self.params[name].ravel()
                total += float(np.dot(w, w))
        return 0.5 * reg * total

    def loss(
        self,
        X: np.ndarray,
        y: np.ndarray,
        reg: float = 0.0,
        rng: np.random.Generator | None = None,
        reg_grad: bool = True,
        class_weights: np.ndarray | None = None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Training loss (data + L2) on a batch X (N, D), y (N,) and the gradient of every parameter; with
        ``class_weights`` (C,) each sample's data loss is weighted by its class's.

        With ``reg_grad=False`` the L2 term is left out of the weight gradients (the loss still
        includes it), for an update rule that applies it as weight decay itself.
        """
        scores, caches = self.forward(X, train=True, rng=rng)
        weights = None if class_weights is None else class_weights[y]
        data_loss, dscores = L.LOSSES[self.config.loss](scores, y, weights)
        grads: dict[str, np.ndarray] = {}
        p = self.params
        last = self.num_hidden + 1
        dh, grads[f"W{last}"], grads[f"b{last}"] = L.affine_backward(dscores, caches[-1], need_dx=last > 1)
        for i in range(self.num_hidden, 0, -1):
            fc, bn, ac, dc = caches[i - 1]
            dh = L.dropout_backward(dh, dc)
            da, dalpha = self.activation.backward(dh, ac)
            if dalpha is not None:
                grads[f"alpha{i}"] = dalpha
            if bn is not None:
                da, grads[f"gamma{i}"], grads[f"beta{i}"] = L.batchnorm_backward(da, bn)
            dh, grads[f"W{i}"], db = L.affine_backward(da, fc, need_dx=i > 1)
            if f"b{i}" in p:
                grads[f"b{i}"] = db
        if reg != 0.0 and reg_grad:
            reg = float(reg)  # a Python float follows the weights' dtype; a NumPy float64 would upcast the temporary
            for name in self.weight_names:
                grads[name] += reg * self.params[name]
        return data_loss + self.reg_loss(reg), grads

    def predict(self, X: np.ndarray, batch_size: int = 2000) -> np.ndarray:
        """Predicted labels (N,) in eval mode, in chunks to bound memory."""
        out = np.empty(X.shape[0], dtype=np.int64)
        for start in range(0, X.shape[0], batch_size):
            scores, _ = self.forward(X[start : start + batch_size], train=False)
            out[start : start + batch_size] = scores.argmax(axis=1)
        return out

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        """Fraction of X (N, D) classified as y (N,)."""
        if X.shape[0] == 0:
            return float("nan")
        return float((self.predict(X) == y).mean())
