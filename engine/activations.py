"""The one registry of hidden-layer activations: name -> Activation (forward, backward, learnable slope, ReLU family)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import layers as L

if TYPE_CHECKING:
    from engine.model import ModelConfig

Cache = Any


@dataclass(frozen=True)
class Activation:
    """How a hidden layer's activation runs.

    ``forward(x, config, alpha) -> (out, cache)`` takes the pre-activation (N, H x ``pieces``), the model's
    config (for fixed shape settings such as the leaky slope) and the layer's learnable slopes (H,) when
    ``learns_slope``, else None; ``backward(dout, cache) -> (dx, dalpha or None)``. ``relu_family`` units start
    with ``ModelConfig.relu_bias`` as their bias; ``pieces`` is the number of affine outputs per unit (maxout 2).
    """

    forward: Callable[[np.ndarray, ModelConfig, np.ndarray | None], tuple[np.ndarray, Cache]]
    backward: Callable[[np.ndarray, Cache], tuple[np.ndarray, np.ndarray | None]]
    relu_family: bool = False
    learns_slope: bool = False
    pieces: int = 1


def _plain(forward: Callable[[np.ndarray], tuple[np.ndarray, Cache]],
           backward: Callable[[np.ndarray, Cache], np.ndarray], **kind: Any) -> Activation:
    """An activation with no settings and no parameters."""
    return Activation(lambda x, config, alpha: forward(x), lambda dout, cache: (backward(dout, cache), None), **kind)


ACTIVATION_REGISTRY: dict[str, Activation] = {
    "relu": _plain(L.relu_forward, L.relu_backward, relu_family=True),
    "leaky_relu": Activation(lambda x, config, alpha: L.leaky_relu_forward(x, config.leaky_slope),
                             lambda dout, cache: (L.leaky_relu_backward(dout, cache), None), relu_family=True),
    "prelu": Activation(lambda x, config, alpha: L.prelu_forward(x, alpha), L.prelu_backward,
                        relu_family=True, learns_slope=True),
    "elu": Activation(lambda x, config, alpha: L.elu_forward(x, config.elu_alpha),
                      lambda dout, cache: (L.elu_backward(dout, cache), None), relu_family=True),
    "tanh": _plain(L.tanh_forward, L.tanh_backward),
    "sigmoid": _plain(L.sigmoid_forward, L.sigmoid_backward),
    "maxout": _plain(L.maxout_forward, L.maxout_backward, relu_family=True, pieces=2),
}
ACTIVATIONS = tuple(ACTIVATION_REGISTRY)
