"""One update step of a large layer: the compiled one-pass loop (engine/kernels.py) against NumPy's passes.

Both paths of ``engine.optim.Adam`` and ``SGD`` (with weight decay) update the same D x H float32 layer in one
run, interleaved; the script prints the median milliseconds per step of each and their ratio, and checks that
they leave the same weights to the bit.

    python benchmarks/update_speed.py                  # 3072 x 500 (the CIFAR-shaped net of train_speed.py)
    python benchmarks/update_speed.py --shape 3072x100 --steps 200
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from engine import kernels  # noqa: E402
from engine.optim import SGD, Adam  # noqa: E402
from machine import blas_line  # noqa: E402

NUMPY_ONLY = 1 << 62  # kernels.MIN_SIZE that sends every array to NumPy's passes


def run(rule_class: type, min_size: int, shape: tuple[int, int], grads: list[np.ndarray]) -> tuple[list[float], np.ndarray]:
    """Milliseconds of each step of a fresh rule over the given gradients, and the weights it leaves."""
    kernels.MIN_SIZE = min_size
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rule = rule_class(weight_decay=1e-3, decayed=frozenset({"W"}))
    times = []
    for g in grads:
        g = g.copy()  # the rules consume their gradient
        start = time.perf_counter()
        rule.step({"W": w}, {"W": g}, 1e-3)
        times.append(1000 * (time.perf_counter() - start))
    return times, w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="3072x500", help="the layer, DxH (default 3072x500)")
    parser.add_argument("--steps", type=int, default=100, help="steps per measurement (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.lower().split("x"))
    print(blas_line())
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(8)] * (args.steps // 8 + 1)
    grads = grads[: args.steps]
    default = kernels.MIN_SIZE
    run(Adam, default, shape, grads[:2]), run(SGD, default, shape, grads[:2])  # compile (or load) the loops first
    print(f"layer {shape[0]} x {shape[1]} float32, weight decay 1e-3, {args.steps} steps x {args.rounds} rounds; "
          "median ms per step")
    for rule_class in (Adam, SGD):
        ms: dict[str, list[float]] = {"compiled loop": [], "NumPy passes": []}
        for _ in range(args.rounds):
            fused, w_fused = run(rule_class, default, shape, grads)
            passes, w_passes = run(rule_class, NUMPY_ONLY, shape, grads)
            ms["compiled loop"] += fused[2:]
            ms["NumPy passes"] += passes[2:]
            if not np.array_equal(w_fused, w_passes):
                sys.exit(f"{rule_class.__name__}: the two paths left different weights")
        loop, numpy_ = statistics.median(ms["compiled loop"]), statistics.median(ms["NumPy passes"])
        print(f"{rule_class.__name__:5} compiled loop {loop:6.3f} ms   NumPy passes {numpy_:6.3f} ms   "
              f"{numpy_ / loop:4.1f}x faster, same weights to the bit")
    kernels.MIN_SIZE = default


if __name__ == "__main__":
    main()
