"""Training throughput of the NumPy engine against PyTorch eager on the CPU, and the share of the GEMM rate it reaches.

Nets 3072-H-10 (ReLU, He init, softmax) on CIFAR-shaped synthetic data, batch 200, float32, SGD with L2 reg.
For every thread count the NumPy BLAS and PyTorch get the same number of threads; every measurement is repeated
in interleaved rounds (GEMM, engine step, trainer, three torch variants) and the median is reported, so a process
that competes for the CPU slows all of them alike; the CPU time other processes took is reported with each row.

    python benchmarks/train_speed.py                         # H = 100, 500 with 1 and 2 threads
    python benchmarks/train_speed.py --hidden 500 --threads 2 --rounds 9 --json

PyTorch is the optional benchmark extra (``pip install torch==2.13.0`` installs the CPU build); without it the
torch columns are skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from engine.data import DataSpec, load_dataset  # noqa: E402
from engine.init import InitSpec  # noqa: E402
from engine.model import FullyConnectedNet, ModelConfig  # noqa: E402
from engine.optim import SGD, Adam  # noqa: E402
from engine.preprocess import PreprocessSpec, preprocess_dataset  # noqa: E402
from engine.trainer import TrainConfig, train  # noqa: E402
from machine import ForeignLoad, blas_pools  # noqa: E402

try:
    import torch
except ImportError:  # the optional benchmark extra
    torch = None

BATCH = 200
NUM_CLASSES = 10
LR = 1e-3
REG = 1e-3
OPTIMIZER = "sgd"  # --optimizer: sgd (L2 as weight decay in the update) or adam (L2 gradient, as torch's Adam weight_decay)
PAUSE = 0.3  # seconds between engine and torch blocks, so the other library's spinning worker threads park


# --------------------------------------------------------------------------- helpers
def step_flops(n: int, d: int, h: int, c: int) -> int:
    """FLOPs of one SGD step of a d-h-c net on n samples: forward 2ndh + 2nhc, backward dW1 2ndh, dW2 and dh 2 * 2nhc."""
    return 2 * n * d * h + 2 * n * h * c + 2 * n * d * h + 2 * 2 * n * h * c


def seconds_per_call(fn: Callable[[], Any], calls: int) -> float:
    """Mean wall time of ``calls`` calls of fn."""
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def cpu_has_avx512() -> bool:
    """Whether NumPy's runtime CPU detection reports the AVX-512 (Skylake-X) feature group."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get("AVX512_SKX"))


def openblas_hint(pool: dict[str, Any]) -> str | None:
    """A note when OpenBLAS runs its AVX2 kernels on a CPU that has AVX-512."""
    if pool["internal_api"] != "openblas" or str(pool.get("architecture")).lower() not in ("haswell", "zen"):
        return None
    if not cpu_has_avx512():
        return None
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    cause = f"OPENBLAS_CORETYPE={pinned} pins" if pinned else "OpenBLAS's CPU detection chose"
    return (f"  note: {cause} the AVX2 kernels on this AVX-512 CPU; OPENBLAS_CORETYPE=SkylakeX (set before\n"
            f"  Python starts) selects the AVX-512 ones: compare the GEMM rates of both runs")


def median(values: list[float]) -> float:
    """Median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- GEMM rate
def gemm_timer(d: int, h: int, rng: np.random.Generator) -> Callable[[], tuple[float, float]]:
    """A function timing (square GFLOP/s, step-GEMMs GFLOP/s): a 2048^3 float32 matmul, and X (N, D) @ W1 plus X.T @ dA."""
    a = rng.standard_normal((2048, 2048), dtype=np.float32)
    b = rng.standard_normal((2048, 2048), dtype=np.float32)
    c = np.empty_like(a)
    x = rng.standard_normal((BATCH, d), dtype=np.float32)
    w = rng.standard_normal((d, h), dtype=np.float32)
    da = rng.standard_normal((BATCH, h), dtype=np.float32)
    act, dw = np.empty((BATCH, h), np.float32), np.empty((d, h), np.float32)

    def square() -> None:
        np.matmul(a, b, out=c)

    def step_gemms() -> None:
        np.matmul(x, w, out=act)
        np.matmul(x.T, da, out=dw)

    def rates() -> tuple[float, float]:
        square()
        step_gemms()
        return (2 * 2048**3 / seconds_per_call(square, 5) / 1e9,
                2 * (2 * BATCH * d * h) / seconds_per_call(step_gemms, 20) / 1e9)

    return rates


# --------------------------------------------------------------------------- engine
def engine_model(d: int, h: int, seed: int) -> FullyConnectedNet:
    """The engine's d-h-10 ReLU net with He init and softmax loss, float32."""
    config = ModelConfig(hidden=(h,), activation="relu",
                         init=InitSpec("he"), loss="softmax", dtype="float32")
    return FullyConnectedNet(config, d, NUM_CLASSES, np.random.default_rng(seed))


def engine_step_loop(X: np.ndarray, y: np.ndarray, h: int, seed: int) -> Callable[[int], float]:
    """A function that runs k bare SGD steps of the engine (the trainer's inner loop without bookkeeping) -> samples/s."""
    model = engine_model(X.shape[1], h, seed)
    # as the trainer does: the L2 gradient applied inside the update
    rule = (Adam if OPTIMIZER == "adam" else SGD)(weight_decay=REG, decayed=frozenset(model.weight_names))
    rng = np.random.default_rng(seed)
    batches = X.shape[0] // BATCH
    order = rng.permutation(X.shape[0])
    position = [0]

    def run(k: int) -> float:
        started = time.perf_counter()
        for _ in range(k):
            b = position[0] = (position[0] + 1) % batches
            idx = order[b * BATCH : (b + 1) * BATCH]
            _, grads = model.loss(X[idx], y[idx], REG, rng, reg_grad=False)
            rule.step(model.params, grads, LR)
        return k * BATCH / (time.perf_counter() - started)

    return run


def trainer_samples_per_second(X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
                               h: int, epochs: int, seed: int) -> float:
    """TrainResult.samples_per_second of engine.trainer.train (step time only) on a fresh model."""
    model = engine_model(X.shape[1], h, seed)
    config = TrainConfig(epochs=epochs, batch_size=BATCH, optimizer=OPTIMIZER, lr=LR, reg=REG, seed=seed)
    result = train(model, config, X, y, X_val, y_val)
    if result.status != "completed":
        raise RuntimeError(f"benchmark training run ended with status {result.status!r}")
    return result.samples_per_second


def cli_samples_per_second(h: int, threads: int, epochs: int) -> float:
    """samples_per_second reported by ``search train --data synthetic ... --json`` in a fresh process."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-c", "from search.cli import main; main()", "train", "--data", "synthetic",
               "--optimizer", OPTIMIZER, "--batch-size", str(BATCH), "--hidden", str(h), "--epochs", str(epochs),
               "--lr", str(LR), "--reg", str(REG), "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"search train failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return float(json.loads(done.stdout)["samples_per_second"])


# --------------------------------------------------------------------------- torch
TORCH_VARIANTS = ("torch_weight_decay", "torch_fused", "torch_l2_loss")


def torch_step_loop(X: np.ndarray, y: np.ndarray, h: int, seed: int, variant: str) -> Callable[[int], float]:
    """The same net and loop in PyTorch eager; the L2 term is SGD's weight decay on the weights (default or
    ``fused=True`` update) or 0.5 * reg * ||W||^2 added to the loss, as the engine computes it."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], h), torch.nn.ReLU(), torch.nn.Linear(h, NUM_CLASSES))
    weights = [net[0].weight, net[2].weight]
    biases = [net[0].bias, net[2].bias]
    l2_in_loss = variant == "torch_l2_loss"
    rule = torch.optim.Adam if OPTIMIZER == "adam" else torch.optim.SGD
    if l2_in_loss:
        opt = rule(net.parameters(), lr=LR)
    else:  # like the engine, biases are not regularised
        groups = [{"params": weights, "weight_decay": REG}, {"params": biases, "weight_decay": 0.0}]
        opt = rule(groups, lr=LR, fused=variant == "torch_fused")
    criterion = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    batches = X.shape[0] // BATCH
    order = torch.from_numpy(np.random.default_rng(seed).permutation(X.shape[0]))
    position = [0]

    def run(k: int) -> float:
        started = time.perf_counter()
        for _ in range(k):
            b = position[0] = (position[0] + 1) % batches
            idx = order[b * BATCH : (b + 1) * BATCH]
            opt.zero_grad(set_to_none=True)
            loss = criterion(net(Xt[idx]), yt[idx])
            if l2_in_loss:
                loss = loss + 0.5 * REG * sum((w * w).sum() for w in weights)
            loss.backward()
            opt.step()
            loss.item()  # the engine returns the loss as a Python float every step; so does this loop
        return k * BATCH / (time.perf_counter() - started)

    return run


# --------------------------------------------------------------------------- one configuration
@dataclass
class Row:
    """Medians over the rounds for one (threads, hidden) configuration; samples/s unless named otherwise."""

    threads: int
    hidden: int
    engine_step: float = float("nan")
    engine_trainer: float = float("nan")
    search_cli: float = float("nan")
    torch_weight_decay: float = float("nan")
    torch_fused: float = float("nan")
    torch_l2_loss: float = float("nan")
    ratio_vs_torch: float = float("nan")  # engine step / fastest torch variant, median of per-round ratios
    ratio_vs_torch_default: float = float("nan")  # engine step / torch with SGD's default weight-decay update
    square_gemm_gflops: float = float("nan")
    step_gemms_gflops: float = float("nan")
    step_gflops: float = float("nan")
    gemm_fraction: float = float("nan")  # engine step GFLOP/s / square GEMM GFLOP/s
    gemm_bound: float = float("nan")  # samples/s if the step were only its two big GEMMs
    foreign_load: float = float("nan")  # cores other processes kept busy during the measurement
    rounds: dict[str, list[float]] = field(default_factory=dict)


def measure(row: Row, data: tuple[np.ndarray, ...], rounds: int, steps: int, epochs: int, cli: bool) -> Row:
    """Fill ``row`` with interleaved, repeated measurements."""
    X, y, X_val, y_val = data
    d, h = X.shape[1], row.hidden
    rng = np.random.default_rng(0)
    per_round: dict[str, list[float]] = {k: [] for k in
                                         ("square", "step_gemms", "engine_step", "engine_trainer", *TORCH_VARIANTS)}
    gemm_rates = gemm_timer(d, h, rng)
    load = ForeignLoad()
    engine_loop = engine_step_loop(X, y, h, seed=0)
    torch_loops = {}
    if torch is not None:
        torch.set_num_threads(row.threads)
        torch_loops = {name: torch_step_loop(X, y, h, 0, name) for name in TORCH_VARIANTS}
    # warm-up: thread pools, page faults, allocator caches
    engine_loop(10)
    trainer_samples_per_second(X, y, X_val, y_val, h, 1, seed=0)
    for loop in torch_loops.values():
        loop(10)

    for r in range(rounds):
        square, step_gemms = gemm_rates()
        per_round["square"].append(square)
        per_round["step_gemms"].append(step_gemms)
        per_round["engine_step"].append(engine_loop(steps))
        per_round["engine_trainer"].append(trainer_samples_per_second(X, y, X_val, y_val, h, epochs, seed=r))
        for name, loop in torch_loops.items():
            time.sleep(PAUSE)
            per_round[name].append(loop(steps))
        time.sleep(PAUSE)

    flops = step_flops(BATCH, d, h, NUM_CLASSES)
    row.engine_step = median(per_round["engine_step"])
    row.engine_trainer = median(per_round["engine_trainer"])
    row.square_gemm_gflops = median(per_round["square"])
    row.step_gemms_gflops = median(per_round["step_gemms"])
    row.step_gflops = row.engine_step / BATCH * flops / 1e9
    row.gemm_fraction = median([e / BATCH * flops / 1e9 / s for e, s in zip(per_round["engine_step"], per_round["square"])])
    row.gemm_bound = row.step_gemms_gflops * 1e9 / (4 * BATCH * d * h) * BATCH
    if torch_loops:
        row.torch_weight_decay = median(per_round["torch_weight_decay"])
        row.torch_fused = median(per_round["torch_fused"])
        row.torch_l2_loss = median(per_round["torch_l2_loss"])
        fastest_torch = [max(values) for values in zip(*(per_round[name] for name in TORCH_VARIANTS))]
        row.ratio_vs_torch = median([e / t for e, t in zip(per_round["engine_step"], fastest_torch)])
        row.ratio_vs_torch_default = median([e / t for e, t in
                                             zip(per_round["engine_step"], per_round["torch_weight_decay"])])
    if cli:
        row.search_cli = median([cli_samples_per_second(h, row.threads, epochs + 1) for _ in range(3)])
    row.foreign_load = load.cores()
    row.rounds = per_round
    return row


# --------------------------------------------------------------------------- report
def contended(row: Row) -> bool:
    """Whether the row's threads plus the other processes' load needed more cores than the machine has."""
    return row.threads + row.foreign_load > (os.cpu_count() or 1) + 0.25


def print_report(rows: list[Row]) -> None:
    def k(x: float) -> str:
        return f"{x / 1000:7.1f}k" if np.isfinite(x) else "       -"

    print()
    print("samples/s (median over rounds); engine step / torch as medians of per-round ratios: against the")
    print("fastest torch variant ('best') and against torch wd, SGD's default update ('wd')")
    print(f"{'threads':>7} {'H':>4} | {'engine step':>11} {'trainer':>8} {'search CLI':>10} | "
          f"{'torch wd':>8} {'wd fused':>8} {'torch L2':>8} | {'best':>6} {'wd':>6} | {'other load':>10}")

    def times(x: float) -> str:
        return f"{x:5.2f}x" if np.isfinite(x) else "     -"

    for r in rows:
        ratio = f"{times(r.ratio_vs_torch)} {times(r.ratio_vs_torch_default)}"
        print(f"{r.threads:>7} {r.hidden:>4} | {k(r.engine_step):>11} {k(r.engine_trainer):>8} {k(r.search_cli):>10} | "
              f"{k(r.torch_weight_decay):>8} {k(r.torch_fused):>8} {k(r.torch_l2_loss):>8} | {ratio:>13} | "
              f"{r.foreign_load:5.2f} cores{' *' if contended(r) else ''}")
    if any(contended(r) for r in rows):
        print("* other processes used so much CPU that threads + their load exceeded the CPUs: not a fair measurement")
    print()
    print("GEMM rate: float32 GFLOP/s of a 2048^3 matmul and of the step's own two big GEMMs; the step's")
    print("GFLOP/s counts 4NDH + 6NHC per step; 'bound' is samples/s if the step were only those two GEMMs")
    print(f"{'threads':>7} {'H':>4} | {'square':>7} {'step GEMMs':>10} | {'step':>7} {'of square':>9} | "
          f"{'bound':>8} {'of bound':>8}")
    for r in rows:
        print(f"{r.threads:>7} {r.hidden:>4} | {r.square_gemm_gflops:7.1f} {r.step_gemms_gflops:10.1f} | "
              f"{r.step_gflops:7.1f} {r.gemm_fraction:9.1%} | {k(r.gemm_bound):>8} {r.engine_step / r.gemm_bound:8.1%}")


def parse_ints(text: str) -> list[int]:
    """Comma-separated integers >= 1 for argparse."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=parse_ints, default=[100, 500], help="hidden sizes, e.g. 100,500")
    parser.add_argument("--threads", type=parse_ints, default=None,
                        help="thread counts for the BLAS and torch (default 1 and the CPU count)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved repeats; medians are reported")
    parser.add_argument("--steps", type=int, default=50, help="SGD steps per timed block")
    parser.add_argument("--epochs", type=int, default=2, help="trainer epochs per round (25 steps each)")
    parser.add_argument("--no-cli", dest="cli", action="store_false", help="skip the `search train` subprocess runs")
    parser.add_argument("--json", action="store_true", help="print only JSON (environment and rows) on stdout")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                        help="update rule of the engine and of torch (Adam: L2 as the gradient term, both sides)")
    args = parser.parse_args(argv)
    global OPTIMIZER
    OPTIMIZER = args.optimizer
    threads = args.threads or sorted({1, os.cpu_count() or 1})

    ds = preprocess_dataset(load_dataset(DataSpec(name="synthetic")), PreprocessSpec("mean_image"))
    data = (ds.X_train, ds.y_train, ds.X_val, ds.y_val)
    if ds.X_train.dtype != np.float32:
        raise SystemExit(f"expected float32 training data, got {ds.X_train.dtype}")
    pools = blas_pools()
    environment = {
        "python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
        "blas": [{key: pool.get(key) for key in ("internal_api", "version", "architecture", "num_threads")}
                 for pool in pools],
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "torch": None if torch is None else torch.__version__,
        "batch": BATCH, "optimizer": OPTIMIZER, "lr": LR, "reg": REG, "rounds": args.rounds, "steps": args.steps,
    }
    info = sys.stderr if args.json else sys.stdout  # with --json, stdout holds only the JSON

    def log(text: str) -> None:
        print(text, file=info, flush=True)

    log(f"python {environment['python']}, numpy {environment['numpy']}, CPUs {environment['cpus']}")
    for pool in pools:
        log(f"numpy BLAS: {pool['internal_api']} {pool.get('version')} ({pool.get('architecture')} kernels), "
            f"{pool['num_threads']} threads by default; OPENBLAS_CORETYPE={environment['openblas_coretype'] or '(unset)'}")
        hint = openblas_hint(pool)
        if hint:
            log(hint)
    if torch is None:
        log("torch: not importable, torch columns skipped (pip install torch==2.13.0)")
    else:
        log(f"torch {torch.__version__} (eager, CPU, float32)")
    log(f"data: synthetic {ds.X_train.shape} float32; batch {BATCH}, {OPTIMIZER} lr {LR}, reg {REG}; "
        f"{args.rounds} rounds x {args.steps} steps")

    rows = []
    for n in threads:
        with threadpool_limits(limits=n, user_api="blas"):
            for h in args.hidden:
                row = measure(Row(threads=n, hidden=h), data, args.rounds, args.steps, args.epochs, args.cli)
                rows.append(row)
                log(f"  done: {n} thread(s), H={h}")
    if args.json:
        rows_out = [{key: value for key, value in asdict(r).items() if key != "rounds"} for r in rows]
        print(json.dumps({"environment": environment, "rows": rows_out}, indent=2))
    else:
        print_report(rows)
    return 0

if __name__ == "__main__":
    sys.exit(main())
