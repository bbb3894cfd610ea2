"""Layers as forward/backward pairs: ``x_forward(...) -> (out, cache)``, ``x_backward(dout, cache) -> grads``.

Shapes: ``x`` is (N, D) for affine layers and (N, H) for the elementwise ones.
Train/eval mode is an explicit argument; batch norm returns its new running
statistics instead of writing them into a caller's dict.
"""
from __future__ import annotations

from typing import Any

import numpy as np

Cache = Any


# --------------------------------------------------------------------------- affine
def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, Cache]:
    """out (N, M) = x (N, D) @ w (D, M) + b (M,); no bias when b is None (before batch norm)."""
    out = x @ w
    if b is not None:
        out += b
    return out, (x, w)


def affine_backward(
    dout: np.ndarray, cache: Cache, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients (dx (N, D) or None, dw (D, M), db (M,)); skip dx for the first layer."""
    x, w = cache
    dx = dout @ w.T if need_dx else None
    dw = x.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


# --------------------------------------------------------------------------- activations
def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """max(0, x), elementwise."""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout where the unit was active."""
    out = cache
    return dout * (out > 0)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """1 / (1 + exp(-x)), computed without overflow."""
    # tanh form is stable for large |x| and avoids exp overflow warnings
    out = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out.astype(x.dtype, copy=False), out


def sigmoid_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout * s * (1 - s)."""
    s = cache
    return dout * s * (1 - s)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """tanh(x), elementwise."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout * (1 - tanh(x)^2)."""
    t = cache
    return dout * (1 - t * t)


def leaky_relu_forward(x: np.ndarray, slope: float = 0.01) -> tuple[np.ndarray, Cache]:
    """max(slope * x, x) for 0 <= slope < 1."""
    mask = x > 0
    out = np.where(mask, x, x * x.dtype.type(slope))
    return out, (mask, slope)


def leaky_relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout, or slope * dout where x <= 0."""
    mask, slope = cache
    return np.where(mask, dout, dout * dout.dtype.type(slope))


def prelu_forward(x: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Leaky ReLU whose negative slope alpha (H,) is learned per unit."""
    mask = x > 0
    out = np.where(mask, x, x * alpha)
    return out, (x, mask, alpha)


def prelu_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray]:
    """Gradients (dx (N, H), dalpha (H,))."""
    x, mask, alpha = cache
    dx = np.where(mask, dout, dout * alpha)
    dalpha = np.where(mask, 0, dout * x).sum(axis=0)
    return dx, dalpha


def elu_forward(x: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, Cache]:
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    mask = x > 0
    neg = alpha * np.expm1(np.minimum(x, 0))
    out = np.where(mask, x, neg)
    return out, (mask, neg, alpha)


def elu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout, or dout * (out + alpha) where x <= 0."""
    mask, neg, alpha = cache
    return np.where(mask, dout, dout * (neg + alpha))


def maxout_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Two-piece maxout: x (N, 2H) -> max(x[:, :H], x[:, H:]) (N, H)."""
    h = x.shape[1] // 2
    a, b = x[:, :h], x[:, h:]
    first = a >= b
    out = np.where(first, a, b)
    return out, first


def maxout_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx (N, 2H): the gradient goes to whichever piece won."""
    first = cache
    zero = dout.dtype.type(0)
    return np.concatenate([np.where(first, dout, zero), np.where(first, zero, dout)], axis=1)


# --------------------------------------------------------------------------- batch norm
def batchnorm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    train: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> tuple[np.ndarray, Cache, tuple[np.ndarray, np.ndarray]]:
    """Normalise x (N, H) per feature; returns (out, cache, (new_running_mean, new_running_var)).

    Train mode uses the batch statistics and updates the running averages (``momentum`` is the weight of the
    old average: 0.9 is torch's momentum 0.1); eval mode uses the running averages and returns them unchanged.
    The running variance averages the biased batch variance, as CS231n's layer does (torch and the batch-norm
    paper average the unbiased one, N / (N - 1) times larger).
    """
    if not train:
        xhat = (x - running_mean) / np.sqrt(running_var + eps)
        return gamma * xhat + beta, None, (running_mean, running_var)
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc * xc).mean(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv_std
    out = gamma * xhat + beta
    new_mean = momentum * running_mean + (1 - momentum) * mu
    new_var = momentum * running_var + (1 - momentum) * var
    return out, (xhat, gamma, inv_std), (new_mean.astype(x.dtype), new_var.astype(x.dtype))


def batchnorm_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx (N, H), dgamma (H,), dbeta (H,)) in the compact closed form."""
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = (inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- dropout
def dropout_forward(
    x: np.ndarray, p: float, train: bool, rng: np.random.Generator | None
) -> tuple[np.ndarray, Cache]:
    """Inverted dropout: keep each unit with probability p and scale by 1/p in train mode."""
    if not train or p >= 1.0:
        return x, None
    mask = (rng.random(x.shape, dtype=np.float32) < p).astype(x.dtype) / x.dtype.type(p)
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dx = dout * mask."""
    mask = cache
    return dout if mask is None else dout * mask


# --------------------------------------------------------------------------- losses
# ``weights`` (N,), when given, multiplies each sample's loss (class weighting): the loss is sum(w_i * loss_i) / N
def softmax_loss(scores: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of scores (N, C) against labels y (N,), each sample's weighted by ``weights`` (N,) when
    given; returns (loss, dscores)."""
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    log_probs_true = shifted[np.arange(n), y] - np.log(sums[:, 0])
    dscores = exp / sums
    dscores[np.arange(n), y] -= 1
    if weights is None:
        loss = float(-log_probs_true.mean())
        dscores /= n
    else:
        loss = float(-(weights * log_probs_true).sum() / n)
        dscores *= (weights / n)[:, None]
    return loss, dscores


def svm_loss(scores: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
             margin: float = 1.0) -> tuple[float, np.ndarray]:
    """Mean multiclass hinge loss of scores (N, C) against y (N,), each sample's weighted by ``weights`` (N,) when
    given; returns (loss, dscores)."""
    n = scores.shape[0]
    rows = np.arange(n)
    margins = np.maximum(0, scores - scores[rows, y][:, None] + margin)
    margins[rows, y] = 0
    positive = (margins > 0).astype(scores.dtype)
    positive[rows, y] = -positive.sum(axis=1)
    if weights is None:
        return float(margins.sum() / n), positive / n
    return float((weights * margins.sum(axis=1)).sum() / n), positive * (weights / n)[:, None]


def balanced_class_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Weights (num_classes,) of the classes of labels y (N,) as scikit-learn's class_weight='balanced' gives them:
    N / (classes present * count of the class); a class absent from y gets 0 (no sample carries it)."""
    counts = np.bincount(y, minlength=num_classes)
    present = int((counts > 0).sum())
    return np.where(counts > 0, len(y) / (present * np.maximum(counts, 1)), 0.0)


LOSSES = {"softmax": softmax_loss, "svm": svm_loss}
