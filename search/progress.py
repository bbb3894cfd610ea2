"""Progress of a stage: a live bar on a terminal, one log line per trial otherwise, nothing with --json."""
from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from optuna.trial import FrozenTrial, TrialState


class Progress:
    """Counts finished trials of one stage and shows trials done/total, pruned, best so far and ETA."""

    def __init__(self, name: str, total: int, already: int = 0, mode: str = "auto", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        self.mode = mode  # "bar", "log" or "quiet"
        self.name, self.total, self.done = name, total, already
        self.start_done = already
        self.pruned = 0
        self.failed = 0
        self.best = -math.inf
        self.started = time.monotonic()
        if self.mode == "bar":
            self._draw()

    def trial(self, t: FrozenTrial) -> None:
        """Record one trial that has just finished (COMPLETE, PRUNED or FAIL)."""
        if t.state == TrialState.FAIL:
            self.failed += 1
        else:
            self.done += 1
            if t.state == TrialState.PRUNED:
                self.pruned += 1
            elif t.value is not None:
                self.best = max(self.best, t.value)
        if self.mode == "log":
            params = " ".join(f"{k}={v:.3g}" for k, v in t.params.items())
            value = "-" if t.value is None else f"{t.value:.4f}"
            reason = t.user_attrs.get("stop_reason", "")
            self.stream.write(
                f"{self.name} trial {t.number:4d} {t.state.name.lower():8s} {reason:11s} val_acc {value} "
                f"{params}  [{self.done}/{self.total}, best {self._best()}]\n"
            )
            self.stream.flush()
        elif self.mode == "bar":
            self._draw()

    def _best(self) -> str:
        return f"{self.best:.4f}" if math.isfinite(self.best) else "-"

    def _draw(self) -> None:
        width = 30
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(width * min(1.0, frac)))
        ran = self.done - self.start_done
        elapsed = time.monotonic() - self.started
        eta = elapsed / ran * (self.total - self.done) if ran > 0 else float("nan")
        eta_text = f"{eta:5.0f}s" if math.isfinite(eta) else "    ?"
        self.stream.write(
            f"\r{self.name} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"pruned {self.pruned} failed {self.failed} best {self._best()} eta {eta_text}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()
