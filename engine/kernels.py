"""One-pass update loops for large weight matrices, compiled with numba on first use.

NumPy applies an update rule as a sequence of whole-array passes (Adam: twelve), each reading and writing
the weights' size in memory; these loops read each element once. They compute the same operations in the
same order as the NumPy code in ``engine/optim.py`` (no fast-math, no contraction into fused multiply-adds),
so both give the same numbers to the bit; ``tests/engine/test_optim.py`` checks it. Small arrays stay with
NumPy: compiling costs about a second per process (cached on disk where numba can write its cache), which
pays only when a step updates about a million weights. Where numba cannot be loaded, or cannot compile even
without its cache, the NumPy passes of ``engine/optim.py`` update every array.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

MIN_SIZE = 1 << 18  # elements; below this NumPy's passes stay in cache and compiling would not pay
_compiled: dict[tuple[str, str], Callable[..., None] | None] = {}  # (loop, dtype name) -> the loop, None: NumPy


def _adam(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, decayed: bool, decay: Any, b1: Any,
          c1: Any, b2: Any, c2: Any, eps: Any, step: Any) -> None:  # pragma: no cover - compiled by numba
    for i in range(w.size):
        gi = g[i]
        if decayed:  # as NumPy's passes: no L2 term at all without weight decay (0 * inf would be NaN)
            gi = gi + w[i] * decay
        vi = v[i] * b2 + (gi * gi) * c2
        mi = m[i] * b1 + gi * c1
        v[i] = vi
        m[i] = mi
        w[i] -= (mi / (np.sqrt(vi) + eps)) * step


def _sgd(w: np.ndarray, g: np.ndarray, keep: Any, neg_lr: Any) -> None:  # pragma: no cover - compiled by numba
    for i in range(w.size):
        w[i] = w[i] * keep + g[i] * neg_lr


def _signature(numba: Any, name: str, dtype: np.dtype) -> Any:
    """The loop's types for flat, C-contiguous, writable arrays of ``dtype`` and scalars of that dtype."""
    scalar = numba.from_dtype(dtype)
    array = scalar[::1]
    if name == "adam":
        return numba.void(array, array, array, array, numba.boolean, *[scalar] * 7)
    return numba.void(array, array, scalar, scalar)


def _compile(name: str, dtype: np.dtype) -> Callable[..., None] | None:
    """The loop compiled now for arrays of ``dtype``; None where numba cannot load or compile."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's notices (its cache, deprecations) are not the user's business
        try:
            import numba  # deferred: ~0.5 s, needed only for nets with large layers
        except Exception:  # not installed, or unable to load (llvmlite without its library, a NumPy it rejects)
            return None
        signature = _signature(numba, name, dtype)
        # numba's disk cache first; where it fails (no writable place, a full disk, a file cut short, or one holding
        # the loop of another dtype, as two processes compiling two dtypes at once can leave) compile in this
        # process alone. All of it happens before the loop runs: a failure has changed no array.
        for cache in (True, False):
            try:
                loop = numba.njit(signature, error_model="numpy", nogil=True, cache=cache)(
                    {"adam": _adam, "sgd": _sgd}[name])
            except Exception:
                continue
            if loop.signatures == [signature.args]:
                return loop
    return None


def _kernel(name: str, dtype: np.dtype) -> Callable[..., None] | None:
    """The compiled loop for arrays of ``dtype``, or None (the NumPy passes are then used)."""
    key = (name, dtype.name)
    if key not in _compiled:
        _compiled[key] = _compile(name, dtype)
    return _compiled[key]


def prepare(rule: str, arrays: Iterable[np.ndarray]) -> None:
    """Compile now (or load from numba's cache) the loop of update rule ``rule`` for the arrays it will update."""
    if rule in ("adam", "sgd"):
        for dtype in {a.dtype for a in arrays if usable(a)}:
            _kernel(rule, dtype)


def usable(*arrays: np.ndarray) -> bool:
    """Whether a one-pass loop may update these arrays: large, C-contiguous (flat views), writable and aligned
    (the types it is compiled for), floating, one dtype."""
    first = arrays[0]
    return (first.size >= MIN_SIZE and first.dtype in (np.float32, np.float64)
            and all(a.flags.c_contiguous and a.flags.writeable and a.flags.aligned and a.dtype == first.dtype
                    and a.size == first.size for a in arrays))


def adam(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, decay: float, b1: float, b2: float,
         eps: float, step: float) -> bool:
    """w, m, v updated in place by one Adam step with the L2 gradient ``decay * w`` added; False if not done."""
    kernel = _kernel("adam", w.dtype)
    if kernel is None:
        return False
    t = w.dtype.type  # Python floats become the weights' dtype, as NumPy's passes make them
    # whether to add the L2 term is decided on the Python float, as NumPy's passes decide it: a decay below
    # float32's smallest number is 0 in the weights' dtype, yet the passes still add w * 0 (NaN where w is inf)
    kernel(w.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), decay != 0.0, t(decay), t(b1), t(1 - b1),
           t(b2), t(1 - b2), t(eps), t(step))
    return True


def sgd(w: np.ndarray, g: np.ndarray, keep: float, lr: float) -> bool:
    """w = w * keep - lr * g in place (keep = 1 - lr * weight decay); False if not done."""
    kernel = _kernel("sgd", w.dtype)
    if kernel is None:
        return False
    t = w.dtype.type
    kernel(w.reshape(-1), g.reshape(-1), t(keep), t(-lr))
    return True
