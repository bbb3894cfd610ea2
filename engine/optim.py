"""Update rules with one interface: ``rule.step(params, grads, lr)`` updates params in place."""
from __future__ import annotations

import numpy as np

from engine import kernels
from engine.errors import ConfigError


def _zeros(buffers: dict[str, np.ndarray], name: str, like: np.ndarray) -> np.ndarray:
    """The rule's state ``buffers[name]``, made zeros shaped as ``like`` on its first step."""
    buffer = buffers.get(name)
    if buffer is None:
        buffer = buffers[name] = np.zeros_like(like)
    return buffer


class SGD:
    """w -= lr * dw; with ``weight_decay`` the L2 gradient of the ``decayed`` weights is applied here.

    w - lr * (dw + reg * w) = (1 - lr * reg) * w - lr * dw: the same update, in three in-place
    passes over the weights instead of five with a temporary (the gradient must then come
    without its L2 term: ``model.loss(..., reg_grad=False)``).
    """

    def __init__(self, weight_decay: float = 0.0, decayed: frozenset[str] = frozenset()) -> None:
        self.weight_decay = float(weight_decay)
        self.decayed = decayed

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every parameter in place (the gradients are scaled in place, i.e. consumed)."""
        for name, g in grads.items():
            w = params[name]
            decayed = self.weight_decay and name in self.decayed
            if kernels.usable(w, g) and kernels.sgd(w, g, 1.0 - lr * self.weight_decay if decayed else 1.0, lr):
                continue
            if decayed:
                w *= 1.0 - lr * self.weight_decay
            g *= -lr
            w += g


class Momentum:
    """v = mu * v - lr * dw; w += v.

    The velocity holds lr (CS231n's and Sutskever et al.'s form): at a constant lr the same steps as
    ``torch.optim.SGD(momentum=mu)`` (whose buffer is v / -lr); after an lr decay only the new gradients are
    scaled, where torch's rule scales the whole velocity at once.
    """

    def __init__(self, mu: float = 0.9) -> None:
        self.mu = mu
        self.velocity: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every parameter in place."""
        for name, g in grads.items():
            v = _zeros(self.velocity, name, g)
            v *= self.mu
            v -= lr * g
            params[name] += v


class Nesterov(Momentum):
    """Nesterov momentum in the form of CS231n: w += -mu * v_prev + (1 + mu) * v.

    At a constant lr the same steps as ``torch.optim.SGD(momentum=mu, nesterov=True)``; lr decay as ``Momentum``.
    """

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every parameter in place."""
        for name, g in grads.items():
            v = _zeros(self.velocity, name, g)
            v_prev = v.copy()
            v *= self.mu
            v -= lr * g
            params[name] += -self.mu * v_prev + (1 + self.mu) * v


class RMSProp:
    """cache = rho * cache + (1 - rho) * dw^2; w -= lr * dw / (sqrt(cache) + eps)."""

    def __init__(self, rho: float = 0.99, eps: float = 1e-8) -> None:
        self.rho, self.eps = rho, eps
        self.cache: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every parameter in place."""
        for name, g in grads.items():
            c = _zeros(self.cache, name, g)
            c *= self.rho
            c += (1 - self.rho) * g * g
            params[name] -= lr * g / (np.sqrt(c) + self.eps)


class Adam:
    """Adam with bias correction (Kingma & Ba), updating in place with one scratch buffer per parameter.

    In the paper's reordered form: w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), i.e. eps is added
    before v's bias correction. That is Algorithm 1 (and ``torch.optim.Adam``) with eps / sqrt(1 - b2^t) in
    place of eps: 3.2e-7 at the first step, 1e-8 in the long run. A step differs from Algorithm 1's by about
    (eps / sqrt(1 - b2^t) - eps) / |gradient|, relatively: 3e-3 for a gradient of 1e-4 at the first step.

    With ``weight_decay`` the L2 gradient ``weight_decay * w`` of the ``decayed`` weights is added here, in the
    scratch buffer (the gradient must then come without it: ``model.loss(..., reg_grad=False)``): the same
    numbers as the model adding it, without a temporary the size of the weights each step.
    """

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, decayed: frozenset[str] = frozenset()) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = float(weight_decay)
        self.decayed = decayed
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.scratch: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every parameter in place (the gradients are used as scratch, i.e. consumed); no temporaries."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = lr * float(np.sqrt(1 - b2**self.t)) / (1 - b1**self.t)
        for name, g in grads.items():
            m, v = _zeros(self.m, name, g), _zeros(self.v, name, g)
            decay = self.weight_decay if name in self.decayed else 0.0
            if kernels.usable(params[name], g, m, v) and kernels.adam(params[name], g, m, v, decay, b1, b2,
                                                                    self.eps, step):
                continue  # the same passes as below, in one loop
            tmp = self.scratch.get(name)
            if tmp is None:
                tmp = self.scratch[name] = np.empty_like(g)
            if self.weight_decay and name in self.decayed:
                np.multiply(params[name], self.weight_decay, out=tmp)
                g += tmp
            v *= b2  # v = b2 * v + (1 - b2) * g^2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            m *= b1  # m = b1 * m + (1 - b1) * g
            g *= 1 - b1
            m += g
            np.sqrt(v, out=tmp)  # w -= step * m / (sqrt(v) + eps)
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step
            params[name] -= tmp


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "rmsprop": RMSProp, "adam": Adam}
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")  # the rules that read mu


def make_optimizer(name: str, momentum: float = 0.9) -> SGD | Momentum | Nesterov | RMSProp | Adam:
    """A fresh update rule by name (``momentum`` is mu of momentum/nesterov); unknown names list the known ones."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if name in MOMENTUM_OPTIMIZERS:
        return OPTIMIZERS[name](mu=momentum)
    return OPTIMIZERS[name]()
