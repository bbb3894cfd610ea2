"""The grid-vs-random report of a campaign: numbers computed from the trials, plots, and the files they go to.

``campaign_report`` reads a campaign once (one ``trials_frame`` call, plus the loss curves of the
few trials that are drawn) and returns a :class:`Report`; ``write_report`` writes it as
``report.html`` (self-contained: PNGs embedded as data URIs), ``report.md`` and ``summary.json``,
and each plot as a PNG beside them. The numbers are pure functions of a trials DataFrame (the
columns of :func:`studies.queries.trials_frame`), so tests can compute them again directly.

Definitions used throughout:

- *best* / *median*: of the values (validation accuracy at a run's last epoch) of COMPLETE trials; PRUNED
  trials (no value, or one from the epoch where they stopped) count only as spent trials and time.
- *trial order*: trial number, which is the order the stage's budget was enqueued in.
- *within 1 point*: value >= own best - 0.01 (one percentage point of accuracy); the count is
  of trials in trial order, pruned ones included, up to the first that gets there.
- *time saved by pruning*: a full run is taken to be as long, in samples (``iterations`` x the trial's
  ``batch_size`` where the stage searched it, else x 1), as the longest COMPLETE run of the stage; each
  PRUNED trial saved the iterations of its own batch size it did not run, worth the stage's mean seconds
  per sample over its COMPLETE trials. A stage with no COMPLETE trial has no estimate (None).
- *epochs run*: the stage's epochs per trial for each COMPLETE trial, and for each other trial the part
  of a full run (as above) its iterations make; *seconds per epoch* is the stage's training seconds over
  its epochs run: a wider net costs more per epoch.
- *importance*: Optuna's fANOVA evaluator (seed 0, ``IMPORTANCE_TREES`` trees) over the stage's COMPLETE
  trials, a log dimension given as its log10 (the evaluator works in a distribution's linear units), rebuilt
  from the trials frame and the stage's ``space`` (no second read of the trials), at most
  ``IMPORTANCE_MAX_TRIALS`` of them (a seeded random sample beyond that); none below
  ``IMPORTANCE_MIN_TRIALS`` trials, of one value alone or with fewer than two searched dimensions, and none for
  a stage whose sampler is ``fixed`` (promote-k, final: a few earlier configurations re-run, nothing sampled).
  The pair plot shows the two dimensions of highest mean importance over the stages that have one.
- *chosen configuration* (campaigns with a ``final`` stage): final's finished (COMPLETE or PRUNED, a PRUNED
  run counting its value, the last epoch it finished, or 0 without one, as ``search auto`` counts it) trials
  grouped by params; the group of best mean value (the
  first in trial order on ties), with its mean as ``value``, its std (population, as ``search auto`` prints it)
  and runs, under the names of ``search auto --json``'s ``final``.
- *diagnoses*: each trial's ``diagnosis`` labels (the ``diagnosis`` column, labels joined by commas), counted
  per stage; a trial with two labels counts under both, a trial without a diagnosis (failed) under none.
  The example of a label is a trial of the last stage that has the label: the one of median value among
  them (the lower median; lowest number on ties), or the highest-numbered when none has a value (pruned);
  trials the scheduler pruned (``stop_reason`` pruned) only where no other trial has the label, and, for a label
  other than ``LR_LABELS``, trials with one of those (a run that barely trained, or exploded, beside
  ``overfitting``) only where no trial without one has it; only these few trials' curves are read.
"""
from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime as dt
import errno
import hashlib
import html
import json
import math
import os
import re
import secrets
import shlex
import stat
import string
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, create_trial

from studies import plots
from studies.budget import ERROR_PREFIX
from studies.plots import Dim, column_floats, value_key
from studies.errors import OutputError, StudyError, UnknownStudyError, attribute_read
from studies.queries import (check_stored_space, format_space, is_service_study, keep_command, latest_campaign,
                             loss_curves, scale_suffix, stage_log_marked, trials_frame, unknown_campaign)
from studies.records import curve_points, params_text, seconds_text, trial_record, value_text
from studies.store import given_url, mask_url, resolve_storage_url

WITHIN = 0.01  # "within 1 point" of accuracy
TIE_TOLERANCE = 1e-9  # best values closer than this are a tie
BEST_CURVES = 5
EXPLODED_CURVES = 3
REPORT_FILES = ("report.html", "report.md", "summary.json")
# fANOVA's cost grows faster than its trials (500 trials: ~9 s with 64 trees); a seeded sample of 200 and 16
# trees ranked the dimensions of the benchmark stages the same as all trials and 64 trees, in ~0.5 s a stage.
IMPORTANCE_MAX_TRIALS = 200
IMPORTANCE_TREES = 16
IMPORTANCE_MIN_TRIALS = 8
# a plot's phone layout is this many inches wide (at 100 dpi, 460 pixels shown ~360 wide: text at 3/4 of its size);
# report.html shows it on a screen up to PHONE_MEDIA wide
PHONE_INCHES = 4.6
PHONE_MEDIA = "(max-width: 700px)"
# engine.diagnostics.THRESHOLDS.bounce_low (studies may not import engine; a test keeps them equal): a loss that
# fell to this share of its first value or below and came back up near it had a learning rate too high
LOSS_BOUNCE_LOW = 0.5
# the labels of a step too small or too large: beside another label they explain it (a run that barely trained
# has a train-val gap between two accuracies near chance)
LR_LABELS = ("lr_too_low", "lr_too_high")
# the diagnosis vocabulary (engine.diagnostics.LABELS) in report order, each label in one short phrase
DIAGNOSIS_MEANINGS: dict[str, str] = {
    "lr_too_low": "the loss barely fell: learning rate too low",
    "lr_too_high": "the loss exploded, went NaN, ended well above its first value or came back up near it after "
                   "falling by half: learning rate too high",
    "overfitting": "train accuracy well above validation, or validation fallen from an earlier peak: more "
                   "regularisation or less capacity",
    "underfitting": "the training set not learned (no train-val gap, near chance, or a loss held up by its L2 "
                    "term): more capacity or less regularisation",
    "dead_units": "over half a layer's units never active",
    "saturated_units": "tanh/sigmoid outputs stuck in their flat tails",
    "bad_initial_loss": "initial loss far from ln C: initial weights or inputs too large (search sanity says which)",
    "still_learning": "the training set not yet learned and the loss still falling steeply at the end: train longer",
    "healthy": "no problem found",
}
BEST_SO_FAR_STAGES = ("best value so far against cumulative training time, stages one after another "
                      "(each stage's own best: stages differ in epochs per trial)")
# where the value plots draw the runs that ended without a value of their last epoch (an exploded run may have one of
# an epoch before, "exploded 0.8750", a scheduler-pruned one that of the epoch it was stopped at)
UNVALUED_CAPTION = "not at their accuracy (a stopped run's, if any, is of an earlier epoch; a failed run has none)"
# image name -> what it shows (the report's captions)
IMAGE_CAPTIONS: dict[str, str] = {
    "importance": "parameter importance per stage (Optuna's fANOVA evaluator)",
    "scatter": "the two most important dimensions per stage, coloured by validation accuracy on each stage's "
               "own scale; red x = exploded or nan (pruned), orange triangle = pruned by the scheduler, grey square "
               "= failed",
    "projection": "validation accuracy against each dimension alone: log axis for a log range, "
                  "box and jittered points for a category; runs stopped early or failed along the bottom at their "
                  f"value of the dimension, {UNVALUED_CAPTION}: red x = exploded or nan, orange triangle = pruned by "
                  "the scheduler, grey square = failed",
    "history": "validation accuracy by trial number, stage after stage, and each stage's best so far; runs stopped "
               f"early or failed along the bottom, {UNVALUED_CAPTION}: red x = exploded or nan, orange triangle = "
               "pruned by the scheduler, grey square = failed",
    "ranges": "the range each stage searched: narrowing (and widening) from coarse to fine",
    "loss_curves": f"loss curves of the best {BEST_CURVES} trials and of up to {EXPLODED_CURVES} exploded ones "
                   "(dashed: 3 x the first loss; a run whose last 10 losses average above it is stopped)",
    "best_so_far": "best value so far against cumulative training time, grid vs random",
    "repeats": "best value reached against trials used over repeated random/grid pairs: median and band",
    "diagnosis_examples": "an example trial of each diagnosis: its loss curve and its train/val accuracy per epoch",
}


# --------------------------------------------------------------------------- numbers from a trials frame
def _complete_values(frame: pd.DataFrame) -> np.ndarray:
    values = column_floats(frame[frame["state"] == "COMPLETE"], "value")
    return values[np.isfinite(values)]


def _num(x: Any) -> float | None:
    """A JSON-safe float: None for missing or non-finite."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def in_trial_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The stage's trials sorted by trial number (the order its budget was enqueued in)."""
    return frame.sort_values("number", kind="stable").reset_index(drop=True)


def best_and_median(frame: pd.DataFrame) -> tuple[float | None, float | None]:
    """(best, median) value of the COMPLETE trials; (None, None) when there is none."""
    values = _complete_values(frame)
    if not values.size:
        return None, None
    return float(values.max()), float(np.median(values))


def _present(value: Any) -> bool:
    return value is not None and value is not pd.NA and not (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A parameter value as a plain Python value (numpy scalars unwrapped)."""
    return value.item() if isinstance(value, np.generic) else value


def param_values(frame: pd.DataFrame, name: str) -> list[Any]:
    """The parameter's real values (numbers, strings, booleans) of the trials that have it."""
    column = f"param_{name}"
    if column not in frame.columns:
        return []
    return [_plain(v) for v in frame[column].to_numpy(dtype=object) if _present(v)]


def distinct_counts(frame: pd.DataFrame, params: Sequence[str]) -> dict[str, int]:
    """Number of distinct values each parameter took over the trials that have it (numbers to 12 digits)."""
    counts = {}
    for name in params:
        keys = {(k, float(f"{v:.12g}")) if k == "number" else (k, v)
                for k, v in map(value_key, param_values(frame, name))}
        counts[name] = len(keys)
    return counts


def best_so_far_by_trial(frame: pd.DataFrame) -> np.ndarray:
    """Running best value after each trial in trial order (NaN until the first COMPLETE trial)."""
    ordered = in_trial_order(frame)
    values = np.where(ordered["state"].to_numpy(dtype=object) == "COMPLETE", column_floats(ordered, "value"), np.nan)
    values = np.where(np.isfinite(values), values, -np.inf)
    best = np.maximum.accumulate(values) if values.size else values
    return np.where(np.isfinite(best), best, np.nan)


def best_so_far_by_time(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative training seconds, running best) after each trial in trial order."""
    ordered = in_trial_order(frame)
    return np.cumsum(_training_seconds(ordered)), best_so_far_by_trial(ordered)


def _training_seconds(frame: pd.DataFrame) -> np.ndarray:
    """Each trial's training seconds, 0 where the frame has none."""
    return np.nan_to_num(column_floats(frame, "seconds"), nan=0.0)


def trials_to_within(frame: pd.DataFrame, within: float = WITHIN) -> int | None:
    """Trials (in trial order, pruned ones counted) needed to first reach own best - ``within``; None if none."""
    best, _ = best_and_median(frame)
    if best is None:
        return None
    running = best_so_far_by_trial(frame)
    hit = np.nonzero(running >= best - within - 1e-12)[0]
    return int(hit[0]) + 1


def _batch_sizes(frame: pd.DataFrame) -> np.ndarray:
    """Each trial's batch size where the stage searched it, else 1: a full run's iterations x this is its epochs x
    the training samples, the same at any batch size."""
    return np.nan_to_num(column_floats(frame, "param_batch_size"), nan=1.0)


def pruning_savings(frame: pd.DataFrame) -> dict[str, Any]:
    """Iterations and seconds not run because PRUNED trials stopped early (see the module docstring)."""
    complete = frame[frame["state"] == "COMPLETE"]
    pruned = frame[frame["state"] == "PRUNED"]
    iters = column_floats(complete, "iterations")
    secs = column_floats(complete, "seconds")
    ok = np.isfinite(iters) & np.isfinite(secs) & (iters > 0)
    if not ok.any():
        return {"full_run_iterations": None, "seconds_per_iteration": None, "pruned_trials": len(pruned),
                "iterations_saved": None, "seconds_saved": None}
    samples = iters * _batch_sizes(complete)
    per_sample = float(secs[ok].sum() / samples[ok].sum())
    sizes = _batch_sizes(pruned)
    ran = np.nan_to_num(column_floats(pruned, "iterations"), nan=0.0)
    saved = np.clip(float(samples[ok].max()) / sizes - ran, 0.0, None)  # each pruned run's own iterations
    return {"full_run_iterations": int(iters[ok].max()),
            "seconds_per_iteration": float(secs[ok].sum() / iters[ok].sum()),
            "pruned_trials": len(pruned), "iterations_saved": int(saved.sum()),
            "seconds_saved": float((saved * sizes).sum()) * per_sample}


def frame_state_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Trials by state, under the names ``search studies`` and a stage's --json give them (complete, pruned, fail,
    running, waiting), PRUNED split by stop_reason (exploded, nan, other), ``fail_error`` the FAIL trials that failed
    by an error in the trial (not run again); ``trials``: every trial row."""
    state = frame["state"].to_numpy(dtype=object)
    reason = frame["stop_reason"].astype(object).to_numpy() if "stop_reason" in frame else np.full(len(frame), None)
    pruned = state == "PRUNED"
    counts = {
        "trials": len(frame),
        "complete": int((state == "COMPLETE").sum()),
        "pruned": int(pruned.sum()),
        "pruned_exploded": int((pruned & (reason == "exploded")).sum()),
        "pruned_nan": int((pruned & (reason == "nan")).sum()),
        "fail": int((state == "FAIL").sum()),
        "fail_error": sum(s == "FAIL" and str(r).startswith(ERROR_PREFIX) for s, r in zip(state, reason)),
        "running": int((state == "RUNNING").sum()),
        "waiting": int((state == "WAITING").sum()),
    }
    counts["pruned_other"] = counts["pruned"] - counts["pruned_exploded"] - counts["pruned_nan"]
    return counts


def _valued(frame: pd.DataFrame) -> pd.DataFrame:
    """The COMPLETE trials of ``frame`` whose value is a finite number."""
    return frame[(frame["state"] == "COMPLETE") & np.isfinite(column_floats(frame, "value"))]


def best_params(frame: pd.DataFrame, params: Sequence[str]) -> tuple[int | None, dict[str, Any]]:
    """(trial number, params as their real values) of the best COMPLETE trial (lowest number on ties)."""
    ranked = _best_first(frame)
    if ranked.empty:
        return None, {}
    row = ranked.iloc[0]
    return int(row["number"]), _row_params(row, params)


def _best_first(frame: pd.DataFrame) -> pd.DataFrame:
    """The COMPLETE trials of ``frame`` with a finite value, best first (lowest number on ties)."""
    return _valued(frame).sort_values(["value", "number"], ascending=[False, True], kind="stable")


def _row_params(row: Any, params: Sequence[str]) -> dict[str, Any]:
    """The ``params`` a trials-frame row has a value of, each as a plain Python value."""
    return {p: _plain(row[f"param_{p}"]) for p in params if _present(row.get(f"param_{p}"))}


def _typed_params(params: dict[str, Any], dims: dict[str, Dim]) -> dict[str, Any]:
    """``params`` with the value of an int dimension as an int (36, not the 36.0 of a column with a missing value)."""
    return {k: int(v) if k in dims and dims[k].kind == "int" else v for k, v in params.items()}


def at_grid_budget(random_frame: pd.DataFrame, grid_frame: pd.DataFrame) -> pd.DataFrame:
    """The random side of a grid comparison: its first trials, as many finished as the grid's."""
    return first_finished(random_frame, int(grid_frame["state"].isin(["COMPLETE", "PRUNED"]).sum()))


def first_finished(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """A random stage's trials in order up to its ``n``-th finished one (COMPLETE or PRUNED; failed ones around
    them stay, they were re-run): the random side at a grid's budget. A grid has k^d points (27 beside 50 trials in 3
    dimensions); random trials are drawn alike, so its first ones are a random search of that budget."""
    ordered = frame.sort_values("number")
    counted = ordered["state"].isin(["COMPLETE", "PRUNED"])
    before = counted.cumsum().shift(fill_value=0)
    return ordered[(before < n) | ((before == n) & ~counted)]  # and the failed ones right after the n-th


def side_numbers(frame: pd.DataFrame, params: Sequence[str]) -> dict[str, Any]:
    """One side of a grid-vs-random comparison: best, median, distinct values, trials to within 1 point."""
    best, median = best_and_median(frame)
    seconds = _training_seconds(frame)
    counts = frame_state_counts(frame)
    return {
        "trials": counts["trials"], "complete": counts["complete"], "pruned": counts["pruned"],
        "best_value": best, "median_value": median, "distinct": distinct_counts(frame, params),
        "trials_to_within_1pt": trials_to_within(frame), "training_seconds": float(seconds.sum()),
    }


def outcome(random_best: float | None, grid_best: float | None, tolerance: float = TIE_TOLERANCE) -> str:
    """Random vs grid: "win" (random better by more than ``tolerance``), "tie", "loss", or "n/a" (a side has no
    value)."""
    if random_best is None or grid_best is None:
        return "n/a"
    if random_best > grid_best + tolerance:
        return "win"
    if grid_best > random_best + tolerance:
        return "loss"
    return "tie"


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if not arr.size:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max())}


def _padded_runs(runs: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-length rows: a shorter run keeps its last best value."""
    if not runs:
        return np.zeros((0, 0))
    length = max(len(r) for r in runs)
    out = np.full((len(runs), length), np.nan)
    for i, r in enumerate(runs):
        out[i, : len(r)] = r
        if 0 < len(r) < length:
            out[i, len(r):] = r[-1]
    return out


def repeat_numbers(frame: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                   tolerance: float = TIE_TOLERANCE) -> dict[str, Any]:
    """Wins/ties/losses of random against grid over (random study, grid study) pairs, and their spread."""
    rows = []
    random_runs, grid_runs = [], []
    for random_name, grid_name in pairs:
        random_stage, grid_frame = frame[frame["study"] == random_name], frame[frame["study"] == grid_name]
        random_frame = at_grid_budget(random_stage, grid_frame)
        rb, _ = best_and_median(random_frame)
        gb, _ = best_and_median(grid_frame)
        rows.append({"random": random_name, "grid": grid_name, "random_best": rb, "grid_best": gb,
                     "random_trials": len(random_frame), "random_stage_trials": len(random_stage),
                     "grid_trials": len(grid_frame), "outcome": outcome(rb, gb, tolerance)})
        random_runs.append(best_so_far_by_trial(random_frame))
        grid_runs.append(best_so_far_by_trial(grid_frame))
    outcomes = [r["outcome"] for r in rows]
    return {
        "repeats": len(rows), "pairs": rows,
        "wins": outcomes.count("win"), "ties": outcomes.count("tie"), "losses": outcomes.count("loss"),
        "random": _spread([r["random_best"] for r in rows]), "grid": _spread([r["grid_best"] for r in rows]),
        "random_curves": _padded_runs(random_runs), "grid_curves": _padded_runs(grid_runs),
    }


def diagnosis_label_rows(frame: pd.DataFrame) -> pd.Series:
    """One row per (trial, label): the trial's row index and its label (the ``diagnosis`` column split at commas)."""
    if "diagnosis" not in frame.columns:
        return pd.Series([], dtype=object)
    text = frame["diagnosis"].astype(object)
    text = text[text.map(lambda v: isinstance(v, str) and v.strip() != "")]
    labels = text.str.split(",").explode().str.strip()
    return labels[labels != ""]


def _label_order(labels: Any) -> list[str]:
    """Labels in vocabulary order, unknown ones after them in name order."""
    known = list(DIAGNOSIS_MEANINGS)
    return sorted(set(labels), key=lambda x: (known.index(x) if x in known else len(known), x))


def diagnosis_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Trials per diagnosis label (a trial with two labels counts under both); only labels that occur."""
    labels = diagnosis_label_rows(frame)
    counts = labels.value_counts()
    return {label: int(counts[label]) for label in _label_order(counts.index)}


# --------------------------------------------------------------------------- the campaign's studies
@dataclass(frozen=True)
class StageInfo:
    """One stage's study name and user attributes, in creation order."""

    study: str
    stage: str
    attrs: dict[str, Any]

    @property
    def space(self) -> dict[str, list]:
        space = self.attrs.get("space")
        return space if isinstance(space, dict) else {}

    @property
    def is_fixed(self) -> bool:
        """A stage of given configurations re-run (promote-k, final): nothing sampled, nothing to rate."""
        return self.attrs.get("sampler") == "fixed"

    @property
    def is_grid(self) -> bool:
        return self.attrs.get("sampler") == "grid" or self.stage == "grid" or self.stage.startswith("grid-")


def campaign_stage_infos(storage: optuna.storages.BaseStorage, campaign: str) -> list[StageInfo]:
    """The campaign's studies in creation order; UnknownStudyError listing the known campaigns. Studies the service
    did not make (``is_service_study``) are left out, whatever their names."""
    infos, known = [], []
    for s in storage.get_all_studies():
        attrs = dict(s.user_attrs)
        if not is_service_study(attrs, s.directions):
            continue
        c = attrs["campaign"]
        if c not in known:
            known.append(c)
        if c == campaign:
            infos.append(StageInfo(s.study_name, attrs["stage"], attrs))
    if not infos:
        raise UnknownStudyError(unknown_campaign(campaign, known))
    return infos


def grid_pairs(infos: Sequence[StageInfo]) -> list[tuple[str, str]]:
    """(random study, grid study) pairs at equal budget: a grid stage and its parent (``coarse`` for
    ``grid``, ``random-r`` for ``grid-r`` when the parent attr is missing)."""
    by_name = {i.study: i for i in infos}
    by_stage = {i.stage: i for i in infos}
    pairs = []
    for info in infos:
        if not info.is_grid:
            continue
        partner = by_name.get(info.attrs.get("parent") or "")
        if partner is None or partner.is_grid:
            suffix = info.stage[len("grid"):]
            partner = by_stage.get("coarse" if not suffix else f"random{suffix}")
        if partner is not None and not partner.is_grid:
            pairs.append((partner.study, info.study))
    return pairs


def _param_names(infos: Sequence[StageInfo], frame: pd.DataFrame) -> list[str]:
    names: dict[str, None] = {}
    for info in infos:
        names.update(dict.fromkeys(str(k) for k in info.space))
    names.update(dict.fromkeys(c[len("param_"):] for c in frame.columns if c.startswith("param_")))
    return list(names)


def parse_dim(name: str, spec: Any) -> Dim | None:
    """A dimension from a ``space`` entry ({"type": ...}, or the older [low, high, "log"|"linear"]); None if neither."""
    if isinstance(spec, (list, tuple)) and len(spec) >= 2 and _num(spec[0]) is not None and _num(spec[1]) is not None:
        return Dim(name, "float", spec[2] == "log" if len(spec) >= 3 else float(spec[0]) > 0)
    if not isinstance(spec, dict):
        return None
    if spec.get("type") == "categorical" and isinstance(spec.get("choices"), list):
        return Dim(name, "categorical", choices=tuple(spec["choices"]))
    if spec.get("type") in ("float", "int"):
        return Dim(name, spec["type"], bool(spec.get("log")))
    return None


def campaign_dims(infos: Sequence[StageInfo], frame: pd.DataFrame, params: Sequence[str]) -> dict[str, Dim]:
    """Each parameter's dimension: type and scale from the first stage that searched it, every category any
    stage offered or any trial took; from the values when no stage describes it (text means categorical)."""
    dims: dict[str, Dim] = {}
    for name in params:
        found = [d for d in (parse_dim(name, i.space.get(name)) for i in infos) if d is not None]
        values = param_values(frame, name)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if not found or (found[0].numeric and not numeric):  # a range the trials chose text in: written elsewhere
            found = [Dim(name, "float", bool(values) and all(v > 0 for v in values)) if numeric
                     else Dim(name, "categorical")]
        dim = found[0]
        if not dim.numeric:
            seen = {value_key(c): c for d in found for c in d.choices}
            seen.update({value_key(v): v for v in values if value_key(v) not in seen})
            dim = Dim(name, "categorical", choices=tuple(seen.values()))
        dims[name] = dim
    return dims


def _range_of(spec: Any) -> tuple[float, float] | None:
    """(low, high) of a numeric ``space`` entry; None for a categorical or unknown one."""
    if isinstance(spec, (list, tuple)) and len(spec) >= 2:
        low, high = _num(spec[0]), _num(spec[1])
    elif isinstance(spec, dict) and spec.get("type") in ("float", "int"):
        low, high = _num(spec.get("low")), _num(spec.get("high"))
    else:
        return None
    return None if low is None or high is None else (low, high)


def space_text(space: dict[str, Any], log_marked: Collection[str] = ()) -> str:
    """``lr=1e-06:1 hidden=8:256:int dropout=0.5:1:linear activation=relu,tanh`` (3 significant digits; ``:log``
    marks a log range of a name in ``log_marked``: ``dropout=0.5:1:log``)."""
    parts = []
    for name, spec in space.items():
        dim, bounds = parse_dim(name, spec), _range_of(spec)
        if dim is not None and not dim.numeric:
            parts.append(f"{name}={','.join(value_text(c) for c in dim.choices)}")
        elif dim is not None and bounds is not None:
            low, high = (f"{int(b)}" if dim.kind == "int" else f"{b:.3g}" for b in bounds)
            scale = scale_suffix(name, dim.log, log_marked)
            parts.append(f"{name}={low}:{high}{scale}" + (":int" if dim.kind == "int" else ""))
        else:
            parts.append(format_space({name: spec}, log_marked))
    return " ".join(parts)


# --------------------------------------------------------------------------- the report
@dataclass
class Report:
    """A campaign's report: the numbers (``summary``, JSON-ready) and the images (name -> PNG bytes), each also in
    its phone layout."""

    summary: dict[str, Any]
    images: dict[str, bytes] = field(default_factory=dict)
    # the same plots laid out for a phone's screen (panels stacked, PHONE_INCHES wide): report.html shows them there
    phone: dict[str, bytes] = field(default_factory=dict)


def budget_numbers(epochs: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """What a stage spent: epochs per trial, epochs run (see the module docstring), training seconds."""
    seconds = float(_training_seconds(frame).sum())
    complete = (frame["state"] == "COMPLETE").to_numpy()
    samples = column_floats(frame, "iterations") * _batch_sizes(frame)  # a full run's are the same at any batch size
    full = samples[complete & np.isfinite(samples)]
    run = None
    if _num(epochs) is not None and full.size and full.max() > 0:
        ran = np.clip(np.nan_to_num(samples[~complete], nan=0.0) / full.max(), 0.0, 1.0)
        run = float(epochs) * (int(complete.sum()) + float(ran.sum()))
    return {"epochs_per_trial": epochs, "trials": len(frame), "epochs_run": run, "training_seconds": seconds,
            "seconds_per_epoch": seconds / run if run else None}


def distribution(spec: Any) -> optuna.distributions.BaseDistribution | None:
    """Optuna's distribution of one ``space`` entry (either form); None for one the report cannot read."""
    dim, bounds = parse_dim("", spec), _range_of(spec)
    if dim is not None and not dim.numeric:
        return optuna.distributions.CategoricalDistribution(dim.choices) if dim.choices else None
    if dim is None or bounds is None or bounds[0] > bounds[1]:
        return None
    if dim.kind == "int":
        return optuna.distributions.IntDistribution(int(bounds[0]), int(bounds[1]), log=dim.log)
    return optuna.distributions.FloatDistribution(bounds[0], bounds[1], log=dim.log)


def _log_range(dist: optuna.distributions.BaseDistribution) -> bool:
    return isinstance(dist, (optuna.distributions.FloatDistribution, optuna.distributions.IntDistribution)) and dist.log


def _searched_scale(dist: optuna.distributions.BaseDistribution) -> optuna.distributions.BaseDistribution:
    """The distribution fANOVA is given: a log range as the float range of its log10, since Optuna's evaluator
    splits and averages in a distribution's linear units (lr 1e-6:1 would otherwise weigh 1e-6:1e-3 as 0.1 %)."""
    if _log_range(dist):
        return optuna.distributions.FloatDistribution(math.log10(dist.low), math.log10(dist.high))
    return dist


def _importance_trial(row: Any, distributions: dict[str, Any]) -> FrozenTrial | None:
    """A COMPLETE trial rebuilt from a frame row with the params it has (a conditional one may be missing), log
    dimensions as their log10; None if a value lies outside the stage's space."""
    params = {}
    for name, value in _row_params(row, list(distributions)).items():
        dist = distributions[name]
        if _log_range(dist):
            if float(value) <= 0:
                return None
            params[name] = math.log10(float(value))
        else:
            params[name] = int(value) if isinstance(dist, optuna.distributions.IntDistribution) else (
                float(value) if isinstance(dist, optuna.distributions.FloatDistribution) else value)
    distributions = {name: _searched_scale(dist) for name, dist in distributions.items()}
    try:
        return create_trial(value=float(row["value"]), params=params,
                            distributions={name: distributions[name] for name in params})
    except ValueError:
        return None


def param_importance(frame: pd.DataFrame, space: dict[str, Any], max_trials: int = IMPORTANCE_MAX_TRIALS,
                     seed: int = 0) -> dict[str, Any]:
    """Optuna's fANOVA importance (shares summing to 1) of a stage's dimensions, or the message saying why not."""
    distributions = {n: d for n, d in ((n, distribution(spec)) for n, spec in space.items()) if d is not None}
    complete = _valued(frame)
    searched = [n for n, d in distributions.items() if not d.single()]
    out: dict[str, Any] = {"importance": None, "trials_complete": len(complete), "trials_used": 0, "message": None}
    if len(searched) < 2:
        out["message"] = (f"importance needs two or more searched dimensions; this stage searched "
                          f"{', '.join(searched) or 'none'}")
        return out
    if len(complete) < IMPORTANCE_MIN_TRIALS:
        out["message"] = (f"importance needs {IMPORTANCE_MIN_TRIALS} or more completed trials; "
                          f"this stage has {len(complete)}")
        return out
    values = column_floats(complete, "value")
    if values.min() == values.max():  # fANOVA would say "Encountered zero total variance in all trees."
        out["message"] = (f"importance needs completed trials of different values; this stage's {len(complete)} "
                          f"all scored {_acc(float(values[0]))}")
        return out
    if len(complete) > max_trials:
        complete = complete.iloc[np.sort(np.random.default_rng(seed).choice(len(complete), max_trials, replace=False))]
    used = [t for t in (_importance_trial(row, distributions) for _, row in complete.iterrows()) if t is not None]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # creating a study logs "A new study created" otherwise
    try:
        study = optuna.create_study(direction="maximize")  # in memory
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(used)
    try:
        importance = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=IMPORTANCE_TREES, seed=seed))
    except (ValueError, RuntimeError) as exc:
        out["message"] = f"importance could not be estimated: {exc}"
        return out
    # Optuna rates the dimensions every trial has: one used only with some value of another (momentum) is left out
    out.update(importance={k: float(v) for k, v in importance.items()}, trials_used=len(used),
               left_out=[n for n in searched if n not in importance],
               log10=[n for n in searched if n in importance and _log_range(distributions[n])])
    return out


FIXED_IMPORTANCE = {"importance": None, "trials_complete": None, "trials_used": 0, "fixed": True,
                    "message": "a fixed stage (earlier configurations re-run): left out of importance"}


def stage_numbers(info: StageInfo, frame: pd.DataFrame, params: Sequence[str],
                  dims: dict[str, Dim] | None = None) -> dict[str, Any]:
    """Per-stage section: trials by state, range, best and its params, budget (epochs, seconds), pruning
    savings, importance."""
    best, median = best_and_median(frame)
    number, best_p = best_params(frame, params)
    dims = dims or {}
    best_p = _typed_params(best_p, dims)
    budget = budget_numbers(info.attrs.get("epochs"), frame)
    check_stored_space(info.study, info.attrs.get("space"))  # any space it passes is one space_text shows
    text = space_text(info.space, stage_log_marked(info.attrs))
    return {
        "study": info.study, "stage": info.stage, "parent": info.attrs.get("parent"),
        "sampler": info.attrs.get("sampler"), "scheduler": info.attrs.get("scheduler"),
        "epochs": info.attrs.get("epochs"),
        "budget": info.attrs.get("n_trials"), "counts": frame_state_counts(frame),
        "space": info.space, "space_text": text, "range_notes": list(info.attrs.get("range_notes") or []),
        "best_value": best, "best_number": number, "best_params": best_p, "median_value": median,
        "training_seconds": budget["training_seconds"], "spent": budget, "pruning": pruning_savings(frame),
        "distinct": distinct_counts(frame, params), "trials_to_within_1pt": trials_to_within(frame),
        "importance": dict(FIXED_IMPORTANCE) if info.is_fixed else param_importance(frame, info.space),
        "diagnosed_trials": int(diagnosis_label_rows(frame).index.nunique()), "diagnoses": diagnosis_counts(frame),
    }


def chosen_configuration(info: StageInfo, frame: pd.DataFrame, params: Sequence[str],
                         dims: dict[str, Dim] | None = None) -> dict[str, Any] | None:
    """The final stage's choice (see the module docstring): stage, study, params, value (the mean of its runs'
    values), std, runs, pruned runs, trial numbers, epochs, and ``candidates`` (configurations compared); None when
    no trial finished. ``search auto --json`` gives its ``final`` under the same names."""
    finished = in_trial_order(frame[frame["state"].isin(["COMPLETE", "PRUNED"])])
    dims = dims or {}
    groups: dict[str, dict[str, Any]] = {}
    values = column_floats(finished, "value")
    for (_, row), value in zip(finished.iterrows(), values):
        ps = _typed_params(_row_params(row, params), dims)
        group = groups.setdefault(_params_key(ps), {"params": ps, "values": [], "trials": [], "pruned": 0})
        group["values"].append(float(value) if math.isfinite(value) else 0.0)  # as search auto counts a run
        group["pruned"] += int(row["state"] != "COMPLETE")
        group["trials"].append(int(row["number"]))
    if not groups:
        return None
    candidates = [{"params": g["params"], "value": float(np.mean(g["values"])), "std": float(np.std(g["values"])),
                   "runs": len(g["values"]), "pruned_runs": g["pruned"], "trials": g["trials"]}
                  for g in groups.values()]
    best = max(candidates, key=lambda c: c["value"])  # the first in trial order on ties, as search auto picks
    stopped = info.attrs.get("fine_stages_stopped")  # why search auto added no further fine stage
    return {"stage": info.stage, "study": info.study, "epochs": info.attrs.get("epochs"), **best,
            "candidates": sorted(candidates, key=lambda c: -c["value"]), "retrained": _retrained(info, best["params"]),
            "stopped": stopped if isinstance(stopped, str) else None}


def _retrained(info: StageInfo, params: dict[str, Any]) -> dict[str, Any] | None:
    """The retrains ``search auto`` stored on the final stage (its ``retrained`` attribute) when they are of
    ``params``: runs, mean validation accuracy, mean and std of test accuracy, stop_reason; else None."""
    stored = info.attrs.get("retrained")
    if not isinstance(stored, dict) or not isinstance(stored.get("test_acc"), list) or not stored["test_acc"]:
        return None
    asked = stored.get("asked") if isinstance(stored.get("asked"), dict) else {}
    if _params_key(asked.get("params") or {}) != _params_key(params):
        return None
    tests = _numbers(stored["test_acc"])
    vals = stored.get("val_acc")
    val = float(np.mean(_numbers(vals))) if isinstance(vals, list) and vals else None
    reason = stored.get("stop_reason", stored.get("status"))  # "status" in a database written before
    reason = reason if isinstance(reason, str) else None
    majority = stored.get("most_frequent_class")  # absent where no class dominates, or written before it was kept
    majority = ({"class": majority["class"], "test_acc": _num(majority.get("test_acc"))}
                if isinstance(majority, dict) and isinstance(majority.get("class"), str) else None)
    balanced = stored.get("test_balanced_accuracy")  # absent where written before it was kept
    balanced = _numbers(balanced) if isinstance(balanced, list) and len(balanced) == len(tests) else None
    balanced = float(balanced.mean()) if balanced is not None and np.isfinite(balanced).all() else None
    return {"runs": len(tests), "val_acc": val, "test_acc": float(np.mean(tests)), "test_std": float(np.std(tests)),
            "test_balanced_accuracy": balanced, "stop_reason": reason, "most_frequent_class": majority}


def _whole(x: Any) -> int | None:
    """A whole number as JSON gives one (36, not the 36.0 of a column that has a missing value); None if missing."""
    number = _num(x)
    return None if number is None else int(number)


def _numbers(values: list) -> np.ndarray:
    """A stored list as floats, anything that is not a number as NaN."""
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps({k: _plain(v) for k, v in params.items()}, sort_keys=True, default=str)


def diagnosis_examples(infos: Sequence[StageInfo], by_study: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """One example trial per label present in the campaign (see the module docstring for the choice), in vocabulary
    order: label, study, stage, number, state, value, stop_reason, iterations."""
    chosen: dict[str, dict[str, Any]] = {}
    # a run the scheduler cut short shows a curve of an epoch or two, and a run whose learning rate was too low or
    # too high did not train as its other labels assume (a gap between two accuracies near chance): such runs give
    # an example only of a label no other run has. Passes: (leave out cut-short runs, leave out lr-explained runs)
    passes = [(True, True), (True, False), (False, False)]
    for (uncut, unexplained), info in ((p, info) for p in passes for info in reversed(infos)):  # the last stage
        frame = by_study.get(info.study)
        if frame is None or frame.empty:
            continue
        if uncut and "stop_reason" in frame:
            frame = frame[frame["stop_reason"].astype(object) != "pruned"]
        labels = diagnosis_label_rows(frame)
        explained = labels.index[labels.isin(LR_LABELS).to_numpy()].unique()
        for label in _label_order(labels.unique()):
            index = labels.index[labels.to_numpy() == label].unique()
            if unexplained and label not in LR_LABELS:
                index = index.difference(explained)
            if label in chosen or not len(index):
                continue
            rows = frame.loc[index]
            values = column_floats(rows, "value")
            valued = rows[np.isfinite(values)]
            if len(valued):
                ranked = valued.assign(_v=values[np.isfinite(values)]).sort_values(["_v", "number"], kind="stable")
                row = ranked.iloc[(len(ranked) - 1) // 2]
            else:
                row = rows.sort_values("number", kind="stable").iloc[-1]
            chosen[label] = {"label": label, "study": info.study, "stage": info.stage, "number": int(row["number"]),
                             "state": row["state"], "value": _num(row["value"]), "stop_reason": row.get("stop_reason"),
                             "iterations": _whole(row.get("iterations"))}
    return [chosen[label] for label in _label_order(chosen)]


def _decimal_text(x: float, digits: int = 0) -> str:
    """A number rounded to ``digits`` decimals, never negative zero (-0.3 is 0, -0.03 to a tenth 0.0)."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _pct_text(x: Any) -> str:
    """A share in percent to a tenth, as search explain gives a loss change (9.7 %: rounded to a whole one, the
    10 % below which a loss barely moved)."""
    x = _num(x)
    return "-" if x is None else f"{_decimal_text(x * 100, 1)} %"


def _worst_layer(fractions: Any) -> tuple[float, int] | None:
    values = [_num(v) for v in fractions] if isinstance(fractions, (list, tuple)) else []
    ok = [(v, i + 1) for i, v in enumerate(values) if v is not None]
    return max(ok) if ok else None


def diagnosis_text(label: str, numbers: dict[str, Any], stop_reason: Any = None) -> str:
    """The key numbers behind one label, e.g. ``loss fell 4.1 %`` or ``train 0.9900, val 0.9000: gap 9.0 pts``."""
    n = numbers or {}
    gap = _num(n.get("train_val_gap"))
    gap_text = "-" if gap is None else f"{_decimal_text(gap * 100, 1)} pts"
    # to 4 decimals, as search explain and search trials give them, so that the gap adds up (0.99 and 0.94 would
    # not show a gap of 5.5 pts)
    acc = {k: _acc(_num(n.get(k))) for k in ("train_acc", "val_acc")}
    if label == "lr_too_low":  # a loss that barely moved: down a little, or up less than lr_too_high takes
        change = _num(n.get("loss_change"))
        if change is not None and change <= 0:  # as search explain says it: a rise of 0.01 % is no fall of 0.0 %
            rise = _pct_text(-change) if change <= -0.0005 else f"{-change * 100:.2f} %"  # never "rose 0.0 %"
            return "loss did not fall" if change == 0 else f"loss rose {rise}"
        return f"loss fell {_pct_text(change)}"
    if label == "lr_too_high":  # stopped as exploded or NaN, or (a run nothing stopped) ended above its first loss
        if stop_reason == "nan":
            return "loss went NaN"
        change = _num(n.get("loss_change"))
        if stop_reason in ("exploded", "diverged") or change is None:
            return "loss exploded"
        low = _num(n.get("loss_low"))  # none: diagnosed before it was stored
        if low is not None and low <= LOSS_BOUNCE_LOW:  # down by half or more, then back up near its first value
            return f"loss fell to {_pct_text(low)}, then back to {_pct_text(1 - change)} of its first"
        return f"loss rose {_pct_text(-change)}"
    if label == "overfitting":  # a validation curve fallen from its peak (search explain's val_fell) says where
        fell = (f", val fell {_decimal_text(_num(n.get('val_drop')) * 100, 1)} pts from epoch {n.get('val_peak_epoch')}"
                if n.get("val_fell") is True and _num(n.get("val_drop")) is not None else "")
        return f"train {acc['train_acc']}, val {acc['val_acc']}: gap {gap_text}{fell}"
    if label == "underfitting":  # the L2 share tells a loss held up by its penalty (train may be 0.99) from the rest
        share = _num(n.get("reg_share"))
        held = "" if share is None else f", L2 term {_pct_text(share)}"  # to a tenth, as search explain gives it
        return f"train {acc['train_acc']}, gap {gap_text}{held}"
    if label in ("dead_units", "saturated_units"):
        worst = _worst_layer(n.get("dead_fraction" if label == "dead_units" else "saturated_fraction"))
        word = "dead" if label == "dead_units" else "saturated"
        return f"{word}: -" if worst is None else f"{_decimal_text(worst[0] * 100)} % of layer {worst[1]} {word}"
    if label == "bad_initial_loss":
        first, expected = _num(n.get("initial_data_loss")), _num(n.get("expected_initial_loss"))
        return (f"initial loss {_short_number(first)} vs {_short_number(expected)}"
                if first is not None and expected is not None else "initial loss -")
    if label == "still_learning":
        return f"train {acc['train_acc']}, loss still falling {_pct_text(n.get('late_loss_fall'))} a tenth"
    if label == "healthy":
        return f"loss fell {_pct_text(n.get('loss_change'))}, gap {gap_text}"
    return label


def _read_examples(storage: optuna.storages.BaseStorage, examples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each example with its diagnosis numbers, text and (under ``curves``) its loss and accuracy curves: one read
    of each example trial, nothing else."""
    out = []
    for ex in examples:
        try:
            study_id = storage.get_study_id_from_name(ex["study"])
            trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, ex["number"]))
        except KeyError:
            continue
        numbers = trial_record(trial, "diagnosis_numbers")
        numbers = numbers if isinstance(numbers, dict) else {}
        val = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
        text = diagnosis_text(ex["label"], numbers, ex["stop_reason"])
        out.append({**ex, "trial": f"{ex['study']}:{ex['number']}", "text": text, "numbers": numbers,
                    "curves": {"loss": curve_points(trial_record(trial, "loss_curve")),
                               "train_acc": curve_points(trial_record(trial, "train_acc_curve")), "val_acc": val}})
    return out


def importance_order(stages: Sequence[dict[str, Any]], names: Sequence[str],
                     partial: Collection[str] = ()) -> tuple[list[str], str]:
    """The dimensions by mean importance over the stages that have one (ties keep space order), and why; with no
    estimate, in space order with ``partial`` (dimensions some trials lack, as momentum lacks in adam's) last."""
    rated = [s for s in stages if s["importance"]["importance"]]
    if not rated:
        if not set(partial) & set(names):
            return list(names), "no stage has an importance estimate: the first two dimensions searched"
        # a pair plot over momentum would leave every adam trial out of it
        order = [n for n in names if n not in partial] + [n for n in names if n in partial]
        return order, ("no stage has an importance estimate: the first two dimensions searched, those every trial "
                       "has first")
    score = {n: sum(s["importance"]["importance"].get(n, 0.0) for s in rated) / len(rated) for n in names}
    order = sorted(names, key=lambda n: -score[n])
    return order, f"the two most important (mean importance over {', '.join(s['stage'] for s in rated)})"


def campaign_report(storage: optuna.storages.BaseStorage, campaign: str | None = None,
                    images: bool = True, progress: Callable[[str], None] | None = None) -> Report:
    """Numbers (and, with ``images``, the PNGs) of a campaign's report; the latest campaign when None.
    ``progress`` is told each step of the slow part as it starts: a stage's numbers (fANOVA), each plot."""
    say = progress or (lambda step: None)
    campaign = campaign or latest_campaign(storage)
    infos = campaign_stage_infos(storage, campaign)
    frame = trials_frame(storage, campaign=campaign)
    finished = frame["state"].isin(["COMPLETE", "PRUNED", "FAIL"])
    if not finished.any():
        raise StudyError(f"campaign {campaign!r} has no finished trial yet: run its stages first "
                         f"(e.g. `search coarse --campaign {shlex.quote(campaign)}`)")
    params = _param_names(infos, frame)
    dims = campaign_dims(infos, frame, params)
    by_study = {name: group for name, group in frame.groupby("study", sort=False)}
    empty = frame.iloc[0:0]
    stages = []
    for i in infos:
        say(f"{i.study}: numbers and parameter importance")
        stages.append(stage_numbers(i, by_study.get(i.study, empty), params, dims))
    complete = frame[frame["state"] == "COMPLETE"]
    partial = [p for p in params if f"param_{p}" not in complete or not complete[f"param_{p}"].map(_present).all()]
    order, reason = importance_order(stages, params, partial)

    pairs = grid_pairs(infos)
    comparison, repeats = _grid_comparison(storage, campaign, frame, by_study, params, pairs)
    examples = _read_examples(storage, diagnosis_examples(infos, by_study))
    final = [i for i in infos if i.stage == "final"]
    chosen = chosen_configuration(final[-1], by_study.get(final[-1].study, empty), params, dims) if final else None
    present = _label_order(label for s in stages for label in s["diagnoses"])

    data_stage = next((i for i in infos if isinstance(i.attrs.get("data"), dict)), None)
    if data_stage is not None:  # read here, where its study is known: report.md and report.html write its text
        with attribute_read(data_stage.study, "data"):
            _data_text(data_stage.attrs["data"])
    summary = {
        "campaign": campaign,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data": data_stage.attrs["data"] if data_stage is not None else None,
        "params": params,
        "dims": {n: {"type": d.kind, "log": d.log if d.numeric else None, "choices": list(d.choices) or None}
                 for n, d in dims.items()},
        "pair": {"params": order[:2], "reason": reason},
        "within": WITHIN,
        "trials": len(frame),
        "storage": _pasted_storage(storage),
        "chosen": chosen,
        "stages": stages,
        "grid_vs_random": comparison,
        "diagnoses": {"labels": present, "meanings": {label: DIAGNOSIS_MEANINGS.get(label, label) for label in present},
                      "examples": [{k: v for k, v in ex.items() if k != "curves"} for ex in examples]},
        "images": {},
        "captions": {},
    }
    report = Report(summary)
    if images:
        jobs = _campaign_figures(storage, infos, frame, by_study, dims, order, stages, pairs, repeats)
        if not pairs:
            summary["captions"]["best_so_far"] = BEST_SO_FAR_STAGES
        if examples:
            jobs.append(("diagnosis_examples", lambda narrow: _diagnosis_figure(examples, narrow)))
            summary["captions"]["diagnosis_examples"] = _diagnosis_caption(examples)
        say(f"plot {len(jobs)} figures")
        report.images, report.phone = plots.render_pngs(jobs)
        summary["images"] = {name: f"{name}.png" for name in report.images}
    return report


def _grid_comparison(storage: optuna.storages.BaseStorage, campaign: str, frame: pd.DataFrame,
                     by_study: dict[str, pd.DataFrame], params: Sequence[str], pairs: Sequence[tuple[str, str]]
                     ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The report's grid-vs-random section (each pair's two sides at the grid's budget, their outcome; the command
    that adds a grid stage where there is none) and, over two or more pairs, ``repeat_numbers`` (None otherwise)."""
    empty = frame.iloc[0:0]
    comparison: dict[str, Any] = {"pairs": [], "hint": None}
    for random_name, grid_name in pairs:
        grid_frame, random_frame = by_study.get(grid_name, empty), by_study.get(random_name, empty)
        used = at_grid_budget(random_frame, grid_frame)
        r_side = side_numbers(used, params)
        g_side = side_numbers(grid_frame, params)
        comparison["pairs"].append({
            "random_study": random_name, "grid_study": grid_name, "random": r_side, "grid": g_side,
            "random_trials": len(used), "random_stage_trials": len(random_frame),
            "outcome": outcome(r_side["best_value"], g_side["best_value"]),
        })
    if not pairs:
        where = f" --storage {shlex.quote(pasted)}" if (pasted := _pasted_storage(storage)) else ""
        command = _code(f"search grid --campaign {shlex.quote(campaign)}{where}")
        comparison["hint"] = (f"this campaign has no grid stage; add one at the coarse stage's budget with {command} "
                              "and run the report again")
    repeats = repeat_numbers(frame, pairs) if len(pairs) >= 2 else None
    if repeats is not None:
        comparison["repeats"] = {k: v for k, v in repeats.items() if not k.endswith("_curves")}
    return comparison, repeats


def _diagnosis_caption(examples: Sequence[dict[str, Any]]) -> str:
    return (IMAGE_CAPTIONS["diagnosis_examples"] + " (the median-value trial of the last stage with that label). "
            + "; ".join(f"{ex['label']}: {DIAGNOSIS_MEANINGS.get(ex['label'], ex['label'])}" for ex in examples))


def _diagnosis_figure(examples: Sequence[dict[str, Any]], phone: bool = False) -> Any:
    data = [{"title": f"{ex['label']}: {ex['text']}\n{ex['trial']}"
                      + (f" (value {ex['value']:.4f})" if ex["value"] is not None
                         else f" ({str(ex['state']).lower()})"),
             "iterations": ex["iterations"], "threshold": 3.0 if ex["label"] == "lr_too_high" else None,
             **ex["curves"]} for ex in examples]
    panels = plots.diagnosis_axes(len(data), cols=1, size=(PHONE_INCHES, 2.8)) if phone else plots.diagnosis_axes(
        len(data), cols=2)
    return plots.plot_diagnosis_examples(panels, data)


def _caption(summary: dict[str, Any], name: str) -> str:
    return (summary.get("captions") or {}).get(name) or IMAGE_CAPTIONS.get(name, name)


def _curve_legend(row: Any, params: Sequence[str]) -> str:
    """A curve's legend: stage, number, two params and the value of a run that finished (a pruned run's value is
    of the epoch where it stopped: 1.0000 beside an exploded loss)."""
    ps = " ".join(f"{p}={value_text(v)}" for p, v in _row_params(row, params[:2]).items())
    value = _num(row.get("value")) if row.get("state", "COMPLETE") == "COMPLETE" else None
    return f"{row['stage']} #{int(row['number'])} {ps}" + (f" (value {value:.4f})" if value is not None else "")


def _grid_of_axes(n: int, size: tuple[float, float], max_cols: int = 3) -> tuple[np.ndarray, list]:
    """``n`` panels of ``size`` inches, ``max_cols`` a row (1: stacked, for a phone), on one new figure."""
    cols = max(1, min(max_cols, n))
    rows = max(1, math.ceil(n / cols))
    axes = plots.new_axes(rows, cols, size=size).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    return axes, list(axes[:n])


def _campaign_figures(storage: optuna.storages.BaseStorage, infos: Sequence[StageInfo], frame: pd.DataFrame,
                      by_study: dict[str, pd.DataFrame], dims: dict[str, Dim], order: Sequence[str],
                      stages: Sequence[dict[str, Any]], pairs: Sequence[tuple[str, str]],
                      repeats: dict[str, Any] | None) -> list[tuple[str, plots.Draw]]:
    """The plots, as (name, draw): ``draw(phone)`` makes the figure, with ``phone`` in its phone layout: panels
    stacked, legends under the axes, no wider than ``PHONE_INCHES`` (three panels side by side read only with
    pinch-zoom on a phone's screen)."""
    jobs: list[tuple[str, plots.Draw]] = []

    def add(name: str, draw: plots.Draw) -> None:  # draw(phone) is called later: what it reads is never rebound
        jobs.append((name, draw))

    def cols(narrow: bool) -> int:
        return 1 if narrow else 3

    def width(narrow: bool, inches: float) -> float:
        return min(inches, PHONE_INCHES) if narrow else inches

    staged = [(i.stage, by_study[i.study]) for i in infos if i.study in by_study]
    colour = {stage: plots.stage_colour(k) for k, (stage, _) in enumerate(staged)}  # the one order every plot uses
    rated = [(s["stage"], s["importance"]["importance"]) for s in stages if s["importance"]["importance"]]
    if rated:
        bars = max(len(r) for _, r in rated)
        add("importance", lambda narrow: plots.plot_importance(
            _grid_of_axes(len(rated), (4.4, max(2.4, 0.9 + 0.4 * bars)), cols(narrow))[1], rated))
    both = [(t, f) for t, f in staged if len(order) >= 2 and param_values(f, order[0]) and param_values(f, order[1])]
    if both:  # the stages that searched both dimensions
        add("scatter", lambda narrow: plots.plot_param_scatter(
            _grid_of_axes(len(both), (4.6, 3.6), cols(narrow))[1], both, dims[order[0]], dims[order[1]]))
    if dims:
        add("projection", lambda narrow: plots.plot_param_slices(
            _grid_of_axes(len(dims), (4.6, 3.4), cols(narrow))[1], staged, list(dims.values())))
    add("history", lambda narrow: plots.plot_history(
        plots.new_axes(1, 1, size=(width(narrow, 9.0), 3.8))[0, 0], staged, legend_below=narrow))
    numeric = [n for n in order if dims[n].numeric][:2]
    if len(numeric) == 2:
        x, y = dims[numeric[0]], dims[numeric[1]]
        rects, stars, grids = _ranges_drawn(infos, by_study, frame, x.name, y.name)
        if rects:
            add("ranges", lambda narrow: plots.plot_ranges(
                plots.new_axes(1, 1, size=(width(narrow, 7.0), 4.6))[0, 0], rects, x.name, y.name, (x.log, y.log),
                stars, grids, [colour.get(r[0]) for r in rects], legend_below=narrow))
    curves = _loss_curves_drawn(storage, frame, order)
    add("loss_curves", lambda narrow: _loss_curve_figure(curves, narrow))
    series, colours = _best_so_far_series(frame, by_study, staged, pairs, colour)
    if series:
        add("best_so_far", lambda narrow: plots.plot_best_so_far(
            plots.new_axes(1, 1, size=(width(narrow, 7.0), 4.2))[0, 0], series, colours=colours))
    if repeats is not None:
        add("repeats", lambda narrow: _repeats_figure(repeats, width(narrow, 7.0)))
    return jobs


def _repeats_figure(repeats: dict[str, Any], inches: float) -> Any:
    """The median-band plot of ``repeat_numbers``' best-so-far curves, random against grid, ``inches`` wide."""
    ax = plots.new_axes(1, 1, size=(inches, 4.2))[0, 0]
    return plots.plot_median_band(ax, [("random", repeats["random_curves"]), ("grid", repeats["grid_curves"])])


def _ranges_drawn(infos: Sequence[StageInfo], by_study: dict[str, pd.DataFrame], frame: pd.DataFrame, x: str,
                  y: str) -> tuple[list[tuple[str, tuple[float, float], tuple[float, float]]],
                                   list[tuple[str, float, float]], list[str]]:
    """The range plot's rectangles (stage, range of ``x``, range of ``y``), best trials (stage, x, y) and grid stages,
    over the stages that sampled (a fixed stage shares its parent's space), or all where none did."""
    drawn = [i for i in infos if not i.is_fixed] or list(infos)
    rects, stars = [], []
    for info in drawn:
        rx, ry = _range_of(info.space.get(x)), _range_of(info.space.get(y))
        if rx is not None and ry is not None:
            rects.append((info.stage, rx, ry))
        _, best_p = best_params(by_study.get(info.study, frame.iloc[0:0]), [x, y])
        if x in best_p and y in best_p:
            stars.append((info.stage, float(best_p[x]), float(best_p[y])))
    return rects, stars, [i.stage for i in drawn if i.is_grid]


def _best_so_far_series(frame: pd.DataFrame, by_study: dict[str, pd.DataFrame],
                        staged: Sequence[tuple[str, pd.DataFrame]], pairs: Sequence[tuple[str, str]],
                        colour: dict[str, Any]) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[Any]]:
    """The best-so-far plot's (label, cumulative seconds, best so far) series and their colours: random and grid of
    up to five pairs, or with no grid each stage's own, stages one after another on the campaign's training time."""
    series, colours = [], []
    if pairs:
        for random_name, grid_name in pairs[:5]:
            for name in (random_name, grid_name):
                secs, best = best_so_far_by_time(by_study.get(name, frame.iloc[0:0]))
                stage = name.rpartition("/")[2]
                label = stage + (" (grid)" if name == grid_name else " (random)")
                label = label.replace("grid (grid)", "grid").replace("random (random)", "random")
                series.append((label, np.concatenate([[0.0], secs]), np.concatenate([[np.nan], best])))
                colours.append(colour.get(stage))
        return series, colours
    start = 0.0
    for stage, f in staged:
        secs, best = best_so_far_by_time(f)
        series.append((stage, np.concatenate([[start], start + secs]), np.concatenate([[np.nan], best])))
        colours.append(colour[stage])
        start += float(secs[-1]) if secs.size else 0.0
    return series, colours


def _loss_curves_drawn(storage: optuna.storages.BaseStorage, frame: pd.DataFrame,
                       params: Sequence[str]) -> list[tuple[str, list, float | None]]:
    """(title, curves, explosion threshold) of the loss-curve plot's two panels: the best trials, the exploded ones."""
    best = _best_first(frame).head(BEST_CURVES)
    exploded = frame[(frame["state"] == "PRUNED")
                     & frame["stop_reason"].isin(plots.EXPLODED_REASONS)].head(EXPLODED_CURVES)
    panels = []
    for chosen, title, threshold in ((best, f"best {BEST_CURVES} trials", None),
                                     (exploded, "exploded trials (pruned)", 3.0)):
        found = {study: loss_curves(storage, str(study), [int(n) for n in rows["number"]])
                 for study, rows in chosen.groupby("study", sort=False)}
        curves = [(_curve_legend(row, params), _num(row["iterations"]) or 0.0,
                   found[row["study"]][int(row["number"])]) for _, row in chosen.iterrows()]
        panels.append((title, curves, threshold))
    return panels


def _loss_curve_figure(panels: Sequence[tuple[str, list, float | None]], phone: bool = False) -> Any:
    """The two loss-curve panels side by side, or (``phone``) one above the other."""
    axes = (plots.new_axes(2, 1, size=(PHONE_INCHES, 3.8))[:, 0] if phone
            else plots.new_axes(1, 2, size=(5.5, 3.8))[0])
    for ax, (title, curves, threshold) in zip(axes, panels):
        plots.plot_loss_curves(ax, curves, title, threshold)
    return axes[0].figure


# --------------------------------------------------------------------------- writing the files
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _num(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or (isinstance(obj, float) and math.isnan(obj)):
        return None
    return str(obj)


def _short_number(x: float) -> str:
    """A number to 3 decimals (trailing zeros dropped), or to 3 significant digits below 0.001 and from 10,000."""
    return f"{x:.3g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.3f}".rstrip("0").rstrip(".")


def _acc(x: float | None) -> str:
    """An accuracy to 4 decimals (0.9712), ``-`` when missing."""
    return "-" if x is None else f"{x:.4f}"


def _count(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def _epochs(x: float | None) -> str:
    """Epochs: 1,200 or 70.4."""
    return "-" if x is None else f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _n_trials(stage: dict[str, Any]) -> int:
    """A stage's n_trials as ``search studies`` gives it: its budget (a failed trial's copy runs in its place, so
    its fail count comes on top), or its trials where no stage command stored one."""
    return stage["budget"] if isinstance(stage.get("budget"), int) else stage["counts"]["trials"]


# the stage table's columns: those `search studies` also shows under the same names (n_trials, complete, pruned,
# fail, best_value); and what each means, for report.md and report.html
_STAGE_TEXT = ("n_trials: the stage's budget (a failed trial is re-run, so fail comes on top), as `search studies` "
               "counts it; pruned: stopped early, because the loss exploded or went NaN or by the scheduler; "
               "best_value and median_value: of the completed trials' values (validation accuracy at a run's last "
               "epoch); trials to within 1 pt: "
               "trials in order until one came within 0.01 of the stage's best_value.")


def _stage_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["stage", "sampler", "n_trials", "complete", "pruned (exploded/nan/scheduler)", "fail", "best_value",
            "median_value", "trials to within 1 pt"]
    rows = []
    for s in summary["stages"]:
        c = s["counts"]
        scheduler = s.get("scheduler")  # the one that pruned the trials counted under scheduler
        sampler = str(s["sampler"] or "-") + (f", {scheduler} scheduler" if scheduler not in (None, "none") else "")
        rows.append([s["stage"], sampler, _count(_n_trials(s)), _count(c["complete"]),
                     f"{c['pruned']:,} ({c['pruned_exploded']:,}/{c['pruned_nan']:,}/{c['pruned_other']:,})",
                     _count(c["fail"]),
                     _acc(s["best_value"]), _acc(s["median_value"]), _count(s["trials_to_within_1pt"])])
    return head, rows


def _unfinished_notes(summary: dict[str, Any]) -> list[str]:
    """A note for each stage with trials WAITING or RUNNING, out of its n_trials (an interrupted trial's copy runs
    in its place): its table row counts them among its trials only. A RUNNING trial may be run by a worker as the
    report is made: the stage is then not to be run again, the report made again once the workers are done."""
    notes = []
    for s in summary["stages"]:
        running, waiting = s["counts"].get("running", 0), s["counts"].get("waiting", 0)
        if running + waiting:
            what = ("make the report again once its workers are done, or, if none runs, run the stage's command "
                    "again to finish it" if running else "run the stage's command again to finish it")
            notes.append(f"{s['stage']}: unfinished: {running + waiting:,} of its {_n_trials(s):,} trials have not "
                         f"finished ({running:,} running, {waiting:,} waiting); {what}")
    return notes


def _range_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Each stage's range and best trial; the final stage's best is the chosen configuration (best mean), not
    its luckiest single run."""
    head = ["stage", "range searched", "best trial", "best params"]
    chosen = summary.get("chosen") or {}
    rows = []
    for s in summary["stages"]:
        if chosen and s["study"] == chosen["study"]:
            best = f"best mean of {', '.join(f'#{n}' for n in chosen['trials'])}"
            params = chosen["params"]
        else:
            best = "-" if s["best_number"] is None else f"#{s['best_number']}"
            params = s["best_params"]
        rows.append([s["stage"], s["space_text"] or "-", best, params_text(params) or "-"])
    return head, rows


def _budget_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["stage", "n_trials", "epochs per trial", "epochs run", "training s", "s per epoch", "pruning saved"]
    rows = []
    for s in summary["stages"]:
        b, p = s["spent"], s["pruning"]
        saved = ("-" if p["iterations_saved"] is None
                 else f"{p['iterations_saved']:,} iters, {seconds_text(p['seconds_saved'])} s")
        rows.append([s["stage"], _count(_n_trials(s)), str(b["epochs_per_trial"] or "-"), _epochs(b["epochs_run"]),
                     seconds_text(b["training_seconds"]), "-" if b["seconds_per_epoch"] is None
                     else f"{b['seconds_per_epoch']:.3g}", saved])
    return head, rows


def _importance_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rated = [s for s in summary["stages"] if s["importance"]["importance"]]
    head = ["dimension", *(s["stage"] for s in rated)]
    order, _ = importance_order(rated, summary["params"])
    return head, [[name, *(f"{s['importance']['importance'][name]:.3f}" if name in s["importance"]["importance"]
                           else "-" for s in rated)] for name in order]


def _importance_notes(summary: dict[str, Any]) -> list[str]:
    notes = []
    fixed = [s["stage"] for s in summary["stages"] if s["importance"].get("fixed")]
    for s in summary["stages"]:
        imp = s["importance"]
        if imp.get("fixed"):
            continue
        if imp["message"]:
            notes.append(f"{s['stage']}: {imp['message']}")
        elif imp["trials_used"] < imp["trials_complete"]:
            notes.append(f"{s['stage']}: fANOVA on a seeded random sample of {imp['trials_used']:,} of its "
                         f"{imp['trials_complete']:,} completed trials")
        else:
            notes.append(f"{s['stage']}: fANOVA on its {imp['trials_used']:,} completed trials")
        if imp.get("left_out"):
            notes.append(f"{s['stage']}: {', '.join(imp['left_out'])} left out: not in every trial (searched only "
                         f"where it has an effect), and fANOVA rates the dimensions all trials share")
    logs = list(dict.fromkeys(n for s in summary["stages"] for n in s["importance"].get("log10") or []))
    if logs:  # an Optuna user's own get_param_importances gives other shares: say why
        notes.append(f"{', '.join(logs)}: rated on {'its' if len(logs) == 1 else 'their'} log10, the scale "
                     f"{'it was' if len(logs) == 1 else 'they were'} sampled on; Optuna's get_param_importances(study) "
                     "splits a range in its own units, and gives other shares")
    if fixed:
        notes.append(f"{', '.join(fixed)}: left out of importance and of the pair plot's choice (sampler fixed: "
                     f"a few earlier configurations re-run, nothing sampled)")
    pair = summary["pair"]["params"]
    if len(pair) == 2:
        notes.append(f"pair plot: {pair[0]} x {pair[1]}, {summary['pair']['reason']}")
    return notes


def _diagnosis_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    labels = summary["diagnoses"]["labels"]
    head = ["stage", "trials diagnosed", *labels]
    return head, [[s["stage"], _count(s["diagnosed_trials"]),
                   *(_count(s["diagnoses"].get(label, 0)) for label in labels)] for s in summary["stages"]]


def _diagnosis_notes(summary: dict[str, Any]) -> list[str]:
    d = summary["diagnoses"]
    examples = {ex["label"]: ex for ex in d["examples"]}
    notes = []
    for label in d["labels"]:
        ex = examples.get(label)
        notes.append(f"{label}: {d['meanings'][label]}" + (f"; example {ex['trial']}: {ex['text']}" if ex else ""))
    return notes


_DIAGNOSIS_TEXT = ("Trials per diagnosis label in each stage (a trial with two labels counts under both; failed "
                   "trials have none). `search explain STUDY:NUMBER` says one trial's diagnosis in words.")


def _pair_rows(pair: dict[str, Any], params: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    head = ["", "trials", "complete", "pruned", "best_value", "median_value",
            *(f"distinct {p}" for p in params), "trials to within 1 pt", "training s"]
    rows = []
    for side in ("random", "grid"):
        n = pair[side]
        rows.append([f"{side} ({pair[side + '_study']})", _count(n["trials"]), _count(n["complete"]),
                     _count(n["pruned"]), _acc(n["best_value"]), _acc(n["median_value"]),
                     *(_count(n["distinct"].get(p, 0)) for p in params), _count(n["trials_to_within_1pt"]),
                     seconds_text(n["training_seconds"])])
    return head, rows


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; a cell's ``\\``, ``|`` and backticks escaped (a table parts a row into cells first: a code span
    never spans two), its line breaks made spaces."""
    esc = [[re.sub(r"[\r\n]+", " ", c).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`") for c in r]
           for r in [list(head), *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


_NUMBER = re.compile(r"[-+]?[\d.,]+(e[-+]?\d+)?( \([\d,/]+\))?|-")


def _html_cell(text: str, tag: str = "td") -> str:
    """A cell that breaks only between ``name=value`` words, never inside a number; numbers right-aligned."""
    words = " ".join(f"<span class='nw'>{html.escape(w)}</span>" for w in text.split(" "))
    return f"<{tag} class='num'>{words}</{tag}>" if _NUMBER.fullmatch(text) else f"<{tag}>{words}</{tag}>"


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(_html_cell(h, "th") for h in head)
    body = "".join("<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"


def _verdict(pair: dict[str, Any]) -> str:
    r, g = pair["random"]["best_value"], pair["grid"]["best_value"]
    word = {"win": "random search found the better model", "loss": "grid search found the better model",
            "tie": "random and grid search tied", "n/a": "no comparison (a side has no completed trial)"}
    text = word[pair["outcome"]]
    if r is not None and g is not None:
        text += f" (best: random {r:.4f} vs grid {g:.4f}, difference {r - g:+.4f})"
    used, total = pair.get("random_trials"), pair.get("random_stage_trials")
    if used is not None and total is not None and used < total:
        text += f"; random: the first {_count(used)} of its stage's {_count(total)} trials, as many as the grid's points"
    nr, ng = (sum(pair[side].get(k) or 0 for k in ("complete", "pruned")) for side in ("random", "grid"))
    if nr != ng:  # a side not finished yet
        text += f"; not an equal budget: {_count(nr)} random trials finished against {_count(ng)} grid points"
    return text


def _repeats_text(rep: dict[str, Any]) -> str:
    r, g = rep["random"], rep["grid"]
    return (f"over {rep['repeats']} random/grid pairs: random wins {rep['wins']}, ties {rep['ties']}, "
            f"losses {rep['losses']}; best value random {_acc(r['mean'])} ± {_acc(r['std'])}, "
            f"grid {_acc(g['mean'])} ± {_acc(g['std'])} (mean ± std)")


_BUDGET_TEXT = ("Epochs run: the epochs per trial for each completed trial, and for a pruned or failed one the part "
                "of a full run its iterations make; seconds per epoch is the stage's training seconds over its "
                "epochs run (a wider net costs more per epoch). Pruning "
                "savings: a full run is as long as the stage's longest completed run, in samples where the batch "
                "size was searched; each pruned trial saved the iterations it did not run, at the stage's mean "
                "seconds per sample.")


def _pasted_storage(storage: optuna.storages.BaseStorage) -> str | None:
    """The --storage a command pasted from the report needs (password masked): None where the command would find
    this database without one (the default, or $SEARCH_STORAGE)."""
    url = given_url(storage)
    return mask_url(url) if url is not None and url != resolve_storage_url(None) else None


def _chosen_text(chosen: dict[str, Any], storage: str | None = None) -> str:
    """One sentence on what ``search auto`` chose: params, mean +- std over the runs in final, trials; the command
    that keeps it names ``storage`` (a URL) where it is given."""
    runs = chosen["runs"]
    pruned = (f", {chosen['pruned_runs']} of them pruned (counted at the last epoch they finished, 0 before the first)"
              if chosen.get("pruned_runs") else "")
    epochs = f" of {chosen['epochs']} epoch{'' if chosen['epochs'] == 1 else 's'}" if chosen.get("epochs") else ""
    others = len(chosen.get("candidates") or []) - 1
    # one run has no spread: its std of 0 would read as a value known exactly
    spread = f" ± {_acc(chosen['std'])} (mean ± std over {runs} runs" if runs != 1 else " (1 run"
    first_run = f"{chosen['study']}:{min(chosen['trials'])}"  # the chosen configuration's first run in its stage
    return (f"{_as_text(params_text(chosen['params'])) or '-'}: validation accuracy {_acc(chosen['value'])}{spread}"
            f"{epochs}{pruned}; trials "
            f"{', '.join(f'#{n}' for n in chosen['trials'])} of {_as_text(chosen['study'])}), the best mean of the "
            f"{others + 1} configurations re-run in stage {chosen['stage']}. " + _retrained_text(chosen)
            + f" Keep it as a model for `search predict`: {_code(keep_command(first_run, storage))}.")


def _chain_text(summary: dict[str, Any]) -> str:
    """The stages that led to the chosen configuration, in order: 'How it was found: coarse (random, 50 trials of 3
    epochs) → promote-1 (fixed, 8 trials of 6 epochs) → ... → final (...) → retrained 3 times and tested.'"""
    def plural(n: Any, word: str) -> str:
        return f"{_count(n) if isinstance(n, int) else n or '-'} {word}{'' if n == 1 else 's'}"

    # up to the chosen configuration's stage: a `search fine` run after search auto came after the choice
    names = [s["stage"] for s in summary["stages"]]
    chosen = summary["chosen"].get("stage")
    led = summary["stages"][:names.index(chosen) + 1] if chosen in names else summary["stages"]
    steps = [f"{s['stage']} ({s['sampler'] or '-'}, {plural(_n_trials(s), 'trial')} of "
             f"{plural(s['epochs'], 'epoch')})" for s in led if s["sampler"] != "grid"]
    retrained = summary["chosen"].get("retrained")
    if retrained:
        steps.append(f"retrained {plural(retrained['runs'], 'time')} and tested")
    stopped = summary["chosen"].get("stopped")
    return "How it was found: " + " → ".join(steps) + "." + (f" No further fine stage: {stopped}." if stopped else "")


def _retrained_text(chosen: dict[str, Any]) -> str:
    r = chosen.get("retrained")
    if not r:
        return "Its retrains are not stored in the database: `search auto` prints them when it retrains the choice."
    val = f"validation {_acc(r['val_acc'])}, " if r.get("val_acc") is not None else ""
    test = (f"{_acc(r['test_acc'])} ± {_acc(r['test_std'])} (mean ± std)" if r['runs'] != 1
            else f"{_acc(r['test_acc'])} (1 retrain: no spread)")
    if r.get("test_balanced_accuracy") is not None:  # the mean of the classes' recalls: a rare class missed shows
        test += f", balanced accuracy {_acc(r['test_balanced_accuracy'])}"
    majority = r.get("most_frequent_class")
    alone = "" if not majority or majority["test_acc"] is None else (
        f" Always predicting the most frequent class, {majority['class']!r}, scores {_acc(majority['test_acc'])} on "
        "test" + ("; the chosen network does no better: it learned nothing but the class frequencies."
                  if r["test_acc"] <= majority["test_acc"] else "."))
    return (f"Retrained {r['runs']} time{'s' if r['runs'] != 1 else ''} on the training split with other seeds: "
            f"{val}test accuracy {test}.{alone}")


CODE_WORD_KEPT = 32  # characters: a command's word up to this long is never broken, a longer one (a path) anywhere


def _inline_code(text: str) -> str:
    """HTML of a plain text: escaped, and each `inline code` span as <code> (report.md keeps the backticks), its words
    each kept whole: a browser breaks a line after a hyphen, and on a phone `--save` read "-" and, below, "-save"."""
    def code(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group()[1]  # an escaped backtick or backslash (``_as_text``)
        inside = match.group(2)
        if inside.startswith(" ") and inside.endswith(" ") and inside.strip(" "):  # the spaces of `` a`b ``
            inside = inside[1:-1]
        return "<code>" + " ".join(f"<span class='nw'>{w}</span>" if len(w) <= CODE_WORD_KEPT else w
                                   for w in inside.split(" ")) + "</code>"
    # a run of backticks opens a span that the next run of as many closes, as CommonMark reads one
    return re.sub(r"\\[\\`]|(?<!`)(`+)(?!`)([^\n]+?)(?<!`)\1(?!`)", code, html.escape(text))


def _as_text(text: str) -> str:
    """``text`` (a name) with each backtick and backslash escaped: beside a code span that names it too, a backtick
    of its own (or one after a backslash) would open a span that one in the code closes."""
    return re.sub(r"([\\`])", r"\\\1", text)


def _code(text: str) -> str:
    """``text`` as one Markdown code span: between single backticks, or, where it holds a backtick (a campaign named
    a`b), between one more backtick than its longest run of them, and spaces, which a CommonMark viewer drops."""
    longest = max((len(run) for run in _CODE_RUN.findall(text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}" if longest else f"{fence}{text}{fence}"


def _data_text(data: dict[str, Any] | None) -> str | None:
    """The data the campaign ran on, as its stages recorded it: name, format, split sizes, features, classes, hash."""
    if not data:
        return None
    shapes = data.get("shapes") or {}
    sizes = " / ".join(f"{shape[0]:,} {split}" for split, shape in shapes.items() if shape)
    features = next((shape[1] for shape in shapes.values() if shape and len(shape) > 1), None)
    text = f"Data: {data.get('path') or data.get('name')} ({data.get('format')})"
    if sizes:
        text += f", {sizes} samples"
    if features is not None:
        text += f" of {features:,} features"
    if data.get("classes"):
        text += f", {len(data['classes'])} classes"
    return text + (f"; sha256 {data['sha256'][:12]}..." if data.get("sha256") else ".")


def size_text(summary: dict[str, Any]) -> str:
    """'208 trials in 7 stages, 200 finished, 2 failed and queued again, 1 failed by an error (not run again)': the
    stages' n_trials, their budgets, as the stage table counts them, not every trial row stored (a single trial or
    stage in the singular; 'all finished' where every one did)."""
    stages = summary["stages"]
    trials = sum(_n_trials(s) for s in stages)
    finished = sum(s["counts"]["complete"] + s["counts"]["pruned"] for s in stages)
    errors = sum(s["counts"]["fail_error"] for s in stages)  # its copy is not run: it takes a trial of the budget
    failed = sum(s["counts"]["fail"] for s in stages) - errors
    return (f"{trials:,} trial{'' if trials == 1 else 's'} in {len(stages)} stage{'' if len(stages) == 1 else 's'}, "
            + ("all" if finished == trials else f"{finished:,}") + " finished"
            + (f", {failed:,} failed and queued again" if failed else "")
            + (f", {errors:,} failed by an error (not run again)" if errors else ""))


# a run of backticks: a code span opens at one and closes at the next of the same length
_CODE_RUN = re.compile(r"`+")
_MD_AS_TEXT = {"<": "&lt;", "[": "\\[", "]": "\\]"}


def _no_html(markdown: str) -> str:
    """``markdown`` with each ``<`` outside a code span written ``&lt;``, and each ``[`` and ``]`` there escaped: a
    campaign, class or column name such as ``<img src=x onerror=...>`` or ``[x](javascript:...)`` reaches report.md
    as text, never as HTML or a link a Markdown viewer would render (and run). Code spans are found as CommonMark
    finds them, a line at a time; a backtick that opens none (one in a name) is escaped, so that no backtick of
    another line closes it."""
    return "\n".join(_line_as_text(line) for line in markdown.split("\n"))


def _line_as_text(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        char = line[i]
        if char == "\\" and line[i + 1:i + 2] in string.punctuation:  # an escaped character, as it is
            out.append(line[i:i + 2])
            i += 2
        elif char == "`":
            run = _CODE_RUN.match(line, i).end() - i  # type: ignore[union-attr]
            close = next((m for m in _CODE_RUN.finditer(line, i + run) if len(m.group()) == run), None)
            end = close.end() if close else i + run
            out.append(line[i:end] if close else "\\`" * run)
            i = end
        else:
            out.append(_MD_AS_TEXT.get(char, char))
            i += 1
    return "".join(out)


def render_markdown(summary: dict[str, Any]) -> str:
    """report.md: the same numbers as report.html, images referenced as the PNG files beside it; its text
    ``_no_html``: a name in it is text, never HTML or a link."""
    text = [f"# Search report: campaign {summary['campaign']}", "",
            f"{size_text(summary)}; generated {summary['generated']}.", ""]
    data = _data_text(summary.get("data"))
    if data:
        text += [data, ""]
    if summary.get("chosen"):
        text += ["## Chosen configuration", "", _chosen_text(summary["chosen"], summary.get("storage")), "",
                 _chain_text(summary), ""]
    text += ["## Stages", "", _md_table(*_stage_rows(summary)), "", _STAGE_TEXT, ""]
    unfinished = _unfinished_notes(summary)
    if unfinished:
        text += [*(f"- {note}" for note in unfinished), ""]
    text += ["## Ranges and best parameters", "", _md_table(*_range_rows(summary)), ""]
    for s in summary["stages"]:
        for note in s["range_notes"]:
            text.append(f"- {s['stage']}: {note}")
    text += ["", "## Budget", "", _md_table(*_budget_rows(summary)), "", _BUDGET_TEXT, "",
             "## Parameter importance", ""]
    if any(s["importance"]["importance"] for s in summary["stages"]):
        text += [_md_table(*_importance_rows(summary)), ""]
    text += [f"- {note}" for note in _importance_notes(summary)]
    if summary.get("diagnoses", {}).get("labels"):
        text += ["", "## Diagnoses", "", _md_table(*_diagnosis_rows(summary)), "", _DIAGNOSIS_TEXT, ""]
        text += [f"- {note}" for note in _diagnosis_notes(summary)]
    text += ["", "## Grid vs random at equal budget", ""]
    comp = summary["grid_vs_random"]
    if comp["hint"]:
        text += [comp["hint"], ""]
    for pair in comp["pairs"]:
        text += [_md_table(*_pair_rows(pair, summary["params"])), "", f"Verdict: {_verdict(pair)}.", ""]
    if comp.get("repeats"):
        text += [_repeats_text(comp["repeats"]), ""]
    out = [_no_html("\n".join(text)), "## Plots", ""]
    for name, file in summary["images"].items():  # the image's own link, outside what _no_html escapes
        caption = _no_html(_caption(summary, name))
        out += [f"![{caption}]({file})", "", f"*{caption}*", ""]
    return "\n".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px; color: #222;
       line-height: 1.4; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.nw { white-space: nowrap; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } .hint { background: #fff6d6; padding: 0.5em 1em; }
/* a command kept whole on a line where it fits, else broken between its words: never past a phone's screen */
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em;
       background: #f2f2f2; padding: 0.05em 0.3em; border-radius: 3px; display: inline-block; max-width: 100%;
       box-sizing: border-box; overflow-wrap: anywhere; }
"""


def render_html(summary: dict[str, Any], images: dict[str, bytes], phone: dict[str, bytes] | None = None) -> str:
    """report.html: tables and the PNGs embedded as base64 data URIs (opens from disk, no server); an image's
    ``phone`` layout, where given, shown instead on a screen up to PHONE_MEDIA wide."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>Search report: {esc(summary['campaign'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>Search report: campaign {esc(summary['campaign'])}</h1>",
             f"<p>{size_text(summary)}; generated {esc(summary['generated'])}.</p>"]
    data = _data_text(summary.get("data"))
    if data:
        parts.append(f"<p>{esc(data)}</p>")
    if summary.get("chosen"):
        parts += ["<h2 id='chosen'>Chosen configuration</h2>",
                  f"<p>{_inline_code(_chosen_text(summary['chosen'], summary.get('storage')))}</p>",
                  f"<p>{html.escape(_chain_text(summary))}</p>"]
    parts += ["<h2>Stages</h2>", _html_table(*_stage_rows(summary)), f"<p>{_inline_code(_STAGE_TEXT)}</p>"]
    unfinished = _unfinished_notes(summary)
    if unfinished:
        parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in unfinished) + "</ul>")
    parts += ["<h2>Ranges and best parameters</h2>", _html_table(*_range_rows(summary))]
    notes = [f"<li>{esc(s['stage'])}: {_inline_code(n)}</li>" for s in summary["stages"] for n in s["range_notes"]]
    if notes:
        parts.append("<ul>" + "".join(notes) + "</ul>")
    parts += ["<h2>Budget</h2>", _html_table(*_budget_rows(summary)), f"<p>{_inline_code(_BUDGET_TEXT)}</p>",
              "<h2>Parameter importance</h2>"]
    if any(s["importance"]["importance"] for s in summary["stages"]):
        parts.append(_html_table(*_importance_rows(summary)))
    parts.append("<ul>" + "".join(f"<li>{_inline_code(n)}</li>" for n in _importance_notes(summary)) + "</ul>")
    if summary.get("diagnoses", {}).get("labels"):
        parts += ["<h2>Diagnoses</h2>", _html_table(*_diagnosis_rows(summary)),
                  f"<p>{_inline_code(_DIAGNOSIS_TEXT)} Example curves: <a href='#diagnosis_examples'>below</a>.</p>"
                  if "diagnosis_examples" in images else f"<p>{_inline_code(_DIAGNOSIS_TEXT)}</p>",
                  "<ul>" + "".join(f"<li>{_inline_code(n)}</li>" for n in _diagnosis_notes(summary)) + "</ul>"]
    parts.append("<h2>Grid vs random at equal budget</h2>")
    comp = summary["grid_vs_random"]
    if comp["hint"]:
        parts.append(f"<p class='hint'>{_inline_code(comp['hint'])}</p>")
    for pair in comp["pairs"]:
        parts += [_html_table(*_pair_rows(pair, summary["params"])), f"<p><b>Verdict:</b> {_inline_code(_verdict(pair))}.</p>"]
    if comp.get("repeats"):
        parts.append(f"<p>{_inline_code(_repeats_text(comp['repeats']))}</p>")
    parts.append("<h2>Plots</h2>")
    for name, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        caption = _caption(summary, name)
        img = f"<img alt='{esc(caption.replace('`', ''))}' src='data:image/png;base64,{data}'>"
        if (phone or {}).get(name):
            narrow = base64.b64encode(phone[name]).decode("ascii")  # type: ignore[index]
            img = f"<picture><source media='{PHONE_MEDIA}' srcset='data:image/png;base64,{narrow}'>{img}</picture>"
        parts.append(f"<figure id='{esc(name)}'>{img}<figcaption>{_inline_code(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _write_file(path: Path, data: bytes, like: Path) -> None:
    """Write ``data`` into a new file ``path`` (O_EXCL: never an existing file or link; mode 0666 minus the umask, as
    open() gives), with the permissions of ``like`` where that is a file: a private (0600) report stays private."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "wb") as handle:
        if like.is_file() and not like.is_symlink():
            os.fchmod(fd, stat.S_IMODE(like.stat().st_mode) & 0o777)
        handle.write(data)


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2  # renameat2's flags (linux/fs.h)


def _rename2(src: Path, dst: Path, flags: int) -> None:
    """Linux's renameat2: ``_RENAME_EXCHANGE`` swaps two paths in one step, ``_RENAME_NOREPLACE`` refuses an
    existing ``dst``; OSError, ENOSYS where the C library has no renameat2."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    at_cwd = -100  # AT_FDCWD: paths taken as given
    if function(at_cwd, os.fsencode(src), at_cwd, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(src))


def _swapped_in(out: Path, files: Sequence[tuple[str, bytes]], earlier: Collection[str]) -> bool:
    """Write ``files`` into a new hidden folder beside ``out``, then swap the two folders in one step, so that a
    reader, a failure or a kill at any point sees either the whole old report or the whole new one; the old one's
    files are then deleted with its folder. False, nothing written, where the folders cannot be swapped: ``out``
    holds anything but the old report's files (the user's files are never moved), is the current folder or holds
    it, is another user's or read-only, its parent cannot be written, or the system cannot swap (not Linux, a
    mount point). OutputError naming a file that cannot be written: ``out`` is then as it was."""
    real = Path(os.path.realpath(out))  # a link to the folder stays one, to the new folder
    own = {filename for filename, _ in files} | set(earlier)
    try:
        here = os.path.realpath(os.getcwd()) + os.sep
        with os.scandir(real) as entries:
            others = [e.name for e in entries if e.name not in own or e.is_dir(follow_symlinks=False)]
        mode = real.stat()
        if others or mode.st_uid != os.geteuid() or not os.access(real, os.W_OK | os.X_OK) \
                or here.startswith(str(real).rstrip(os.sep) + os.sep):
            return False
        folder = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent))
    except OSError:
        return False
    try:
        with contextlib.suppress(OSError):  # its group, where the owner may give it (chown clears the setgid bit)
            os.chown(folder, -1, mode.st_gid)
        for filename, data in files:
            try:
                _write_file(folder / filename, data, real / filename)
            except OSError as exc:
                raise OutputError(f"--out {str(out)!r}: cannot write {filename}: {exc.strerror or exc}; no file "
                                  "there was replaced") from None
        try:
            os.chmod(folder, stat.S_IMODE(mode.st_mode))
            _rename2(folder, real, _RENAME_EXCHANGE)
        except OSError:
            return False
    finally:  # the new report's files (not swapped) or the old one's (swapped), and the folder, are deleted
        for name in os.listdir(folder):
            with contextlib.suppress(OSError):
                if name in own:
                    (folder / name).unlink()
                else:  # a file written into the old folder as it was swapped: put back
                    _rename2(folder / name, real / name, _RENAME_NOREPLACE)
        with contextlib.suppress(OSError):
            folder.rmdir()
    return True


def _write_files(out: Path, files: Sequence[tuple[str, bytes]], earlier: Collection[str] = ()) -> None:
    """Write each (file name, bytes) into folder ``out`` and delete the ``earlier`` report's files there that are
    not among them, all or none: the folders swapped in one step (``_swapped_in``), else (a folder the user keeps
    other files in...) every file first written to a temporary file beside it, then each ``os.replace``d over its
    name, so a disk that fills up leaves the folder as it was (a kill between two replacements would mix them). A
    symlink there is replaced, never followed; a file replaced keeps its permissions. OutputError naming the
    file."""
    if _swapped_in(out, files, earlier):
        return
    tmps: list[Path] = []
    replaced = 0
    try:
        for filename, data in files:
            tmps.append(out / f".{filename}.{secrets.token_hex(6)}.tmp")  # a fresh random name
            _write_file(tmps[-1], data, out / filename)
        for tmp, (filename, _) in zip(tmps, files):
            os.replace(tmp, out / filename)
            replaced += 1
    except OSError as exc:
        kept = "" if replaced else "; no file there was replaced"
        raise OutputError(f"--out {str(out)!r}: cannot write {filename}: {exc.strerror or exc}{kept}") from None
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    for filename in set(earlier) - {filename for filename, _ in files}:  # none left to read as this report's
        (out / filename).unlink(missing_ok=True)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write report.html, report.md, summary.json and one PNG per image into ``out_dir``; returns name -> path."""
    out = _made_folder(out_dir)
    summary = _jsonable(report.summary)
    files: dict[str, tuple[str, bytes]] = {name: (f"{name}.png", png) for name, png in report.images.items()}
    files["summary.json"] = ("summary.json", (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    # a data path that is not UTF-8 (a Latin-1 file name) is written as the bytes that name it
    files["report.md"] = ("report.md", (render_markdown(summary) + "\n").encode("utf-8", "surrogateescape"))
    page = render_html(summary, report.images, report.phone)
    files["report.html"] = ("report.html", page.encode("utf-8", "surrogateescape"))
    _check_targets(out, [filename for filename, _ in files.values()])
    _write_files(out, list(files.values()), _earlier_plots(out))
    return {key: out / filename for key, (filename, _) in files.items()}


def _earlier_plots(out: Path) -> set[str]:
    """The plots a report written before into folder ``out`` wrote there, as its summary.json names them (NAME.png,
    NAME an image the report draws); none where there is no such summary."""
    summary = out / "summary.json"
    try:
        if not summary.is_file():  # a FIFO there would block the read
            return set()
        with open(summary, "rb") as handle:  # a report's own, never larger than this
            images = json.loads(handle.read(1 << 24)).get("images")
    except (OSError, ValueError, AttributeError):
        return set()
    if not isinstance(images, dict):
        return set()
    return {f"{name}.png" for name, file in images.items() if file == f"{name}.png" and name in IMAGE_CAPTIONS}


def _made_folder(out_dir: str | Path) -> Path:
    """``out_dir``, created with its parents where missing; StudyError naming it when it cannot be."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"--out {str(out)!r}: cannot create the folder: {exc.strerror or exc}") from None
    return out


def _check_targets(out: Path, filenames: Sequence[str]) -> None:
    """StudyError naming the first of ``filenames`` that is a folder in ``out`` (no file can replace it), before any
    file is written: a report half written beside an old one would mix two of them."""
    for filename in filenames:
        target = out / filename
        if target.is_dir() and not target.is_symlink():
            raise StudyError(f"--out {str(out)!r}: {filename} there is a folder, which the report cannot replace; "
                             f"move it or give another --out")


# --------------------------------------------------------------------------- repeated random/grid pairs
def compare_report(storage: optuna.storages.BaseStorage, pairs: Sequence[tuple[str, str]],
                   campaign: str) -> Report:
    """Wins/ties/losses and spread over (random study, grid study) pairs, and the median-band plot."""
    if not pairs:
        raise StudyError("no random/grid pairs to compare")
    frame = trials_frame(storage, campaign=campaign)
    rep = repeat_numbers(frame, pairs)
    summary = {"campaign": campaign, "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               **{k: v for k, v in rep.items() if not k.endswith("_curves")},
               "images": {"repeats": "repeats.png"}}
    return Report(summary, {"repeats": plots.figure_png(_repeats_figure(rep, 7.0))})


def write_compare_report(report: Report, out_dir: str | Path) -> dict[str, Path]:
    """Write compare.json and repeats.png into ``out_dir``; returns name -> path."""
    out = _made_folder(out_dir)
    _check_targets(out, ["repeats.png", "compare.json"])
    _write_files(out, [("repeats.png", report.images["repeats"]),
                       ("compare.json", (json.dumps(_jsonable(report.summary), indent=2) + "\n").encode("utf-8"))])
    return {"repeats": out / "repeats.png", "compare.json": out / "compare.json"}


def safe_dirname(name: str) -> str:
    """A folder name made from a campaign name: letters, digits, ., _ and - kept, others and a leading . or - made _;
    a name changed so gets 8 hex digits of its sha256, so that two campaigns ("ünï", "änä") never share a folder."""
    plain = re.sub(r"^[.-]", "_", re.sub(r"[^A-Za-z0-9._-]", "_", name)) or "report"
    return plain if plain == name else f"{plain}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


__all__ = [
    "DIAGNOSIS_MEANINGS",
    "IMAGE_CAPTIONS",
    "REPORT_FILES",
    "WITHIN",
    "Report",
    "StageInfo",
    "best_and_median",
    "best_so_far_by_time",
    "best_so_far_by_trial",
    "budget_numbers",
    "campaign_dims",
    "campaign_report",
    "campaign_stage_infos",
    "compare_report",
    "diagnosis_counts",
    "diagnosis_examples",
    "diagnosis_label_rows",
    "diagnosis_text",
    "distinct_counts",
    "distribution",
    "frame_state_counts",
    "grid_pairs",
    "importance_order",
    "outcome",
    "param_importance",
    "param_values",
    "parse_dim",
    "pruning_savings",
    "render_html",
    "render_markdown",
    "repeat_numbers",
    "safe_dirname",
    "side_numbers",
    "size_text",
    "space_text",
    "stage_numbers",
    "trials_to_within",
    "write_compare_report",
    "write_report",
]
