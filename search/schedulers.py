"""A stage's scheduler: its names, and the rungs at which ``asha`` (successive halving) compares trials."""
from __future__ import annotations

SCHEDULERS = ("none", "asha")  # asha: successive halving on the per-epoch validation accuracy
ASHA_REDUCTION = 3  # at each rung a trial goes on only if it is in the best third of the trials that reached it

# Quoted by ``--scheduler``'s help and the README.
SCHEDULER_HELP = (
    "none: every trial runs all its epochs. asha: successive halving (Optuna's SuccessiveHalvingPruner) on "
    "the per-epoch validation accuracy: at epochs m, 3m, 9m, ... (m = epochs // 8, at least 1) before the "
    "last, a trial goes on only if it is in the best third of the trials that reached that epoch so far; "
    "the others are stored as PRUNED with stop_reason pruned. The stage still runs exactly --trials trials, "
    "for fewer epochs. Example: search coarse --scheduler asha --trials 100 --epochs 9"
)


def asha_min_epochs(epochs: int) -> int:
    """The first rung m of an asha stage of ``epochs``-epoch trials (later rungs at 3m, 9m, ... before the last)."""
    return max(1, epochs // 8)


def asha_rungs(epochs: int) -> list[int]:
    """The epochs at which an asha stage of ``epochs``-epoch trials compares them: m, 3m, 9m, ... below ``epochs``."""
    rungs, rung = [], asha_min_epochs(epochs)
    while rung < epochs:
        rungs.append(rung)
        rung *= ASHA_REDUCTION
    return rungs
