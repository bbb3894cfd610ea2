"""One-pass update loops for large weight matrices, compiled with numba on first use.

NumPy applies an update rule as a sequence of whole-array passes (Adam: twelve), each reading and writing
the weights' size in memory; these loops read each element once. They compute the same operations in the
same order as the NumPy code in ``engine/optim.py`` (no fast-math, no contraction into fused multiply-adds),
so both give the same numbers to the bit; ``tests/engine/test_optim.py`` checks it. Small arrays stay with
NumPy: compiling costs about a second per process (cached on disk where numba can write its cache), which
pays only when a step updates about a million weights.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

MIN_SIZE = 1 << 18  # elements; below this NumPy's passes stay in cache and compiling would not pay
_compiled: dict[str, Callable[..., None]] = {}


def _jit(fn: Callable[..., None]) -> Callable[..., None]:
    import numba  # deferred: ~0.2 s, needed only for nets with large layers

    try:
        return numba.njit(error_model="numpy", nogil=True, cache=True)(fn)
    except RuntimeError:  # no writable cache location: compile in every process instead
        return numba.njit(error_model="numpy", nogil=True)(fn)


def _adam(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, decay: Any, b1: Any, c1: Any,
          b2: Any, c2: Any, eps: Any, step: Any) -> None:  # pragma: no cover - compiled by numba
    for i in range(w.size):
        gi = g[i]
        if decay != 0:  # as NumPy's passes: no L2 term at all without weight decay (0 * inf would be NaN)
            gi = gi + w[i] * decay
        vi = v[i] * b2 + (gi * gi) * c2
        mi = m[i] * b1 + gi * c1
        v[i] = vi
        m[i] = mi
        w[i] -= (mi / (np.sqrt(vi) + eps)) * step


def _sgd(w: np.ndarray, g: np.ndarray, keep: Any, neg_lr: Any) -> None:  # pragma: no cover - compiled by numba
    for i in range(w.size):
        w[i] = w[i] * keep + g[i] * neg_lr


def _kernel(name: str) -> Callable[..., None] | None:
    """The compiled loop, or None where numba cannot be imported (the NumPy passes are then used)."""
    if name not in _compiled:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numba's cache notices are not the user's business
                _compiled[name] = _jit({"adam": _adam, "sgd": _sgd}[name])
        except ImportError:
            _compiled[name] = None  # type: ignore[assignment]
    return _compiled[name]


def usable(*arrays: np.ndarray) -> bool:
    """Whether a one-pass loop may update these arrays: large, C-contiguous (flat views), floating, one dtype."""
    first = arrays[0]
    return (first.size >= MIN_SIZE and first.dtype in (np.float32, np.float64)
            and all(a.flags.c_contiguous and a.dtype == first.dtype and a.size == first.size for a in arrays))


def adam(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, decay: float, b1: float, b2: float,
         eps: float, step: float) -> bool:
    """w, m, v updated in place by one Adam step with the L2 gradient ``decay * w`` added; False if not done."""
    kernel = _kernel("adam")
    if kernel is None:
        return False
    t = w.dtype.type  # Python floats become the weights' dtype, as NumPy's passes make them
    kernel(w.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), t(decay), t(b1), t(1 - b1), t(b2),
           t(1 - b2), t(eps), t(step))
    return True


def sgd(w: np.ndarray, g: np.ndarray, keep: float, lr: float) -> bool:
    """w = w * keep - lr * g in place (keep = 1 - lr * weight decay); False if not done."""
    kernel = _kernel("sgd")
    if kernel is None:
        return False
    t = w.dtype.type
    kernel(w.reshape(-1), g.reshape(-1), t(keep), t(-lr))
    return True
