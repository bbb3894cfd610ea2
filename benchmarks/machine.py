"""What the benchmarks print about the machine they ran on: NumPy's BLAS and the load other processes put on it."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_info


def blas_pools() -> list[dict[str, Any]]:
    """The BLAS thread pools threadpoolctl sees, NumPy's own first (SciPy and others may load another)."""
    pools = [info for info in threadpool_info() if info["user_api"] == "blas"]
    return sorted(pools, key=lambda info: "numpy" not in info.get("filepath", ""))


def blas_line() -> str:
    """One line: NumPy's BLAS library, its kernel set and threads, and OPENBLAS_CORETYPE."""
    pool = blas_pools()[0]
    return (f"BLAS: {pool['internal_api']} {pool.get('version')} ({pool.get('architecture')} kernels), "
            f"{pool['num_threads']} threads; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
            f"{os.cpu_count()} CPUs")


class ForeignLoad:
    """CPU time other processes used while a block ran, in cores (Linux /proc/stat; NaN elsewhere)."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        busy = (user + nice + system + irq + softirq + steal) / ticks
        own = os.times()
        return busy, own.user + own.system + own.children_user + own.children_system, time.perf_counter()

    def cores(self) -> float:
        """Average number of cores busy with other processes since construction."""
        end = self._sample()
        if self.start is None or end is None:
            return float("nan")
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        return max(0.0, (busy - own) / wall)
