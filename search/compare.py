"""The Bergstra-Bengio experiment on the user's own problem: R pairs of random and grid stages at equal budget.

Repeat ``r`` is a random stage ``random-r`` (stage seed ``seed + r``) and a grid stage ``grid-r`` over
the same ranges, epochs and data, with ``k^d`` points (k = floor(N^(1/d))) and the same stage seed,
so the pair differs only in where it puts its trials; where the grid has fewer points than N, the random
stage runs as many trials as it has, so both spend the same. All stages go into one campaign
(``compare-<UTC timestamp>`` unless named); running the same command with the same ``--campaign``
continues an interrupted comparison.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

from search.campaign import Execution, StageSummary, execute_stage
from search.errors import SearchError
from search.config import RunConfig
from search.objective import EXPLODE_FACTOR
from search.space import Dimension
from search.stages import Stage
from studies.report import Report, compare_report


def default_compare_campaign(now: dt.datetime | None = None) -> str:
    """``compare-YYYYmmddTHHMMSSZ`` from the current UTC time."""
    now = now or dt.datetime.now(dt.UTC)
    return "compare-" + now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def compare_pair(campaign: str, run: RunConfig, space: dict[str, Dimension], n_trials: int, seed: int, repeat: int,
                 explode_factor: float = EXPLODE_FACTOR) -> tuple[Stage, Stage]:
    """(random stage, grid stage) of one repeat: same ranges, epochs, data and stage seed ``seed + repeat``; the
    random stage runs no more trials than the grid has points (a grid of k^d points may fit ``n_trials`` loosely)."""
    random_stage = Stage(campaign=campaign, stage=f"random-{repeat}", space=dict(space), n_trials=n_trials, run=run,
                         seed=seed + repeat, sampler="random", explode_factor=explode_factor)
    # k from the whole budget: the grid's points may be fewer than k^d (an integer range of fewer than k values),
    # and k recomputed from that smaller count would give a smaller grid than the random stage it is beside
    k = random_stage.grid_k()
    points = random_stage.grid_beside(f"grid-{repeat}", k).n_trials
    if points < n_trials:  # trials past the grid's points would be run and left out of the comparison
        random_stage = replace(random_stage, n_trials=points)
    return random_stage, random_stage.grid_beside(f"grid-{repeat}", k)


@dataclass
class CompareRun:
    """What ``run_compare`` did: the campaign, each pair's stage summaries, and the report of the pairs."""

    campaign: str
    pairs: list[tuple[StageSummary, StageSummary]]
    report: Report


def run_compare(
    execution: Execution,
    campaign: str,
    run: RunConfig,
    space: dict[str, Dimension],
    n_trials: int,
    repeats: int,
    seed: int = 0,
    explode_factor: float = EXPLODE_FACTOR,
    on_stage: Callable[[StageSummary], None] | None = None,
) -> CompareRun:
    """Run ``repeats`` random/grid pairs (each stage to exactly its budget) and compute wins/ties/losses."""
    if repeats < 1:
        raise SearchError(f"--repeats must be >= 1, got {repeats}")
    summaries: list[tuple[StageSummary, StageSummary]] = []
    for r in range(repeats):
        done = []
        for stage in compare_pair(campaign, run, space, n_trials, seed, r, explode_factor):
            summary = execute_stage(execution, stage)
            done.append(summary)
            if on_stage is not None:
                on_stage(summary)
        summaries.append((done[0], done[1]))
    report = compare_report(execution.storage(), [(a.study, b.study) for a, b in summaries], campaign)
    return CompareRun(campaign, summaries, report)
