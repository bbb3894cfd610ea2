"""Questions about the study database as pandas DataFrames with fixed flat columns (read-only SQL: studies.sql).

Naming contract (see DESIGN.md, "Storage"): one Optuna study per stage named
``<campaign>/<stage>``; study user attrs ``campaign``, ``stage``, ``parent``, ``space``
(``{"lr": [low, high, "log"], ...}``), ``epochs``, ``config``, ``data``, ``seed``, ``range_notes``,
``n_trials``, ``sampler``, ``explode_factor``, ``points``, ``scheduler``, ``log_marked``; trial user attrs
``initial_loss``, ``final_loss``, ``train_acc``, ``val_acc``, ``best_val_acc``, ``best_epoch``,
``val_balanced_accuracy``, ``iterations``, ``seconds``, ``model_parameters``, ``stop_reason``, ``diagnosis``,
``worker``; trial system attrs (``studies.records``, user attrs in older databases) ``config``, ``loss_curve``,
``train_acc_curve``, ``diagnosis_numbers``.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import DateTime, Float, Integer, String, text

from studies import optuna_rdb
from studies.errors import StudyError, UnknownStudyError
from studies.records import RECORD_KEYS, curve_points, trial_record
from studies.sql import run_readonly_sql, scan_sql, trial_view_sql
from studies.store import mask_url

if TYPE_CHECKING:  # pandas is imported where a frame is built: a worker never needs it
    import pandas as pd

# list_studies(): one row per study, in creation order.
STUDY_COLUMNS: dict[str, str] = {
    "study": "str",
    "campaign": "str",
    "stage": "str",
    "parent": "str",
    "n_trials": "int64",
    "complete": "int64",
    "pruned": "int64",
    "fail": "int64",
    "running": "int64",
    "waiting": "int64",
    "best_value": "float64",
    "space": "str",
    "epochs": "Int64",
    "created": "datetime64[us]",
}

# trials_frame(): these, then param_<name> columns, then TRIAL_TAIL_COLUMNS.
TRIAL_HEAD_COLUMNS: dict[str, str] = {
    "study": "str",
    "campaign": "str",
    "stage": "str",
    "number": "int64",
    "state": "str",
    "value": "float64",
}
TRIAL_TAIL_COLUMNS: dict[str, str] = {
    "initial_loss": "float64",
    "final_loss": "float64",
    "train_acc": "float64",
    "val_acc": "float64",
    "best_val_acc": "float64",
    "best_epoch": "Int64",
    "val_balanced_accuracy": "float64",  # NULL for a trial stored before it was recorded
    "iterations": "Int64",
    "seconds": "float64",
    "model_parameters": "Int64",
    "stop_reason": "str",
    "diagnosis": "str",
    "worker": "str",  # host:pid of the process that ran it
    "datetime_start": "datetime64[us]",
    "datetime_complete": "datetime64[us]",
    # last, of the trial's diagnosis_numbers (search explain's): the data loss at the start (initial_loss less its L2
    # term), train_acc - val_acc, the first layer's last update norm over its weights' norm
    "initial_data_loss": "float64",
    "train_val_gap": "float64",
    "update_ratio": "float64",
}
TRIAL_DIAGNOSIS_COLUMNS = ("initial_data_loss", "train_val_gap", "update_ratio")
TRIAL_ATTR_COLUMNS = tuple(c for c in TRIAL_TAIL_COLUMNS
                           if not c.startswith("datetime") and c not in TRIAL_DIAGNOSIS_COLUMNS)
STATE_NAMES = tuple(state.name for state in TrialState)
# Columns whose natural order is "best first" (higher is better); every other column sorts ascending.
_DESCENDING_BY_DEFAULT = frozenset({"value", "val_acc", "best_val_acc", "train_acc"})
_MAX_NAMES_IN_MESSAGE = 8  # an error names this many, then how many more: one readable line


@dataclass(frozen=True)
class _StudyInfo:
    """One study's identity and attributes, as read once from the storage."""

    name: str
    campaign: str | None
    stage: str | None
    attrs: dict[str, Any]
    directions: tuple[StudyDirection, ...]


def known_studies_message(known: Sequence[str], name: str) -> str:
    """The studies to name beside an unknown study ``name``: a misspelt stage of a known campaign (wine/fine1) gets
    that campaign's, not the first few of every campaign."""
    campaign = name.rpartition("/")[0]
    kin = [k for k in known if k.rpartition("/")[0] == campaign]
    return f"studies of campaign {campaign}: {names_message(kin)}" if kin else f"known studies: {names_message(known)}"


def names_message(names: Sequence[str]) -> str:
    """The first few ``names`` for an error line, then how many more (``search studies`` lists them all)."""
    if not names:
        return "none"
    shown = ", ".join(names[:_MAX_NAMES_IN_MESSAGE])
    more = len(names) - _MAX_NAMES_IN_MESSAGE
    return shown + (f", ... ({more} more: `search studies` lists them)" if more > 0 else "")


def unknown_campaign(campaign: str, known: Sequence[str]) -> str:
    """The line for a ``campaign`` name the database does not hold, beside the ``known`` ones: every command's."""
    return f"unknown campaign {campaign!r}; known campaigns: {names_message(known)}"


def is_service_study(attrs: dict[str, Any], directions: Sequence[StudyDirection]) -> bool:
    """True for a study this service made: ``campaign`` and ``stage`` attrs, ``ready`` True, one maximised value."""
    return (
        isinstance(attrs.get("campaign"), str)
        and isinstance(attrs.get("stage"), str)
        and attrs.get("ready") is True
        and tuple(directions) == (StudyDirection.MAXIMIZE,)
    )


def _study_infos(storage: optuna.storages.BaseStorage) -> list[_StudyInfo]:
    """The service's studies in creation order; studies it did not make (see is_service_study) are left out."""
    if not isinstance(storage, optuna.storages.BaseStorage):  # e.g. the URL itself, from a notebook
        got = f"the text {storage!r}" if isinstance(storage, str) else f"a {type(storage).__name__}"
        example = storage if isinstance(storage, str) else "sqlite:///search.db"
        raise StudyError(f"storage must be an Optuna storage: open_storage({example!r}, readonly=True) from "
                         f"studies.store, got {got}")
    infos = []
    for study in storage.get_all_studies():
        attrs = dict(study.user_attrs)
        if is_service_study(attrs, study.directions):
            infos.append(
                _StudyInfo(study.study_name, attrs["campaign"], attrs["stage"], attrs, tuple(study.directions))
            )
    return infos


def _space_text(study: str, attrs: dict[str, Any]) -> str:
    """``format_space`` of ``study``'s space attribute; StudyError naming them for a value inside it changed by hand
    (any value the check passes is one ``format_space`` shows)."""
    check_stored_space(study, attrs.get("space"))
    return format_space(attrs.get("space"), stage_log_marked(attrs))


def stage_log_marked(attrs: dict[str, Any]) -> frozenset[str]:
    """The dimensions whose log range a stage's space text marks ``:log`` (``dropout=0.5:1:log``, as ``--space``
    reads it back: the option's own scale is linear), from its ``log_marked`` attribute; none for a stage stored
    before it (or one whose value is not a list)."""
    marked = attrs.get("log_marked")
    return frozenset(m for m in marked if isinstance(m, str)) if isinstance(marked, list) else frozenset()


def _finite_number(value: Any) -> bool:
    """A number a float holds, finite (a whole number beyond any float, 10**400, is none)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _range(low: Any, high: Any, log: bool, whole: bool) -> bool:
    """Whether ``low`` and ``high`` bound a range as this service writes one: finite numbers, low < high (an integer
    range: low <= high), above 0 on a log scale, whole numbers for an integer range."""
    if not (_finite_number(low) and _finite_number(high)):
        return False
    if whole and (int(low) != low or int(high) != high):
        return False
    return (low < high or (whole and low == high)) and (not log or low > 0)


def _readable_dimension(spec: Any) -> bool:
    """Whether ``spec`` is a dimension as this service stores it: ``{"type": "float"|"int", "low", "high", "log"}``,
    ``{"type": "categorical", "choices": [...]}``, or the older ``[low, high, "log"|"linear"]`` (linear without the
    scale, as ``format_space`` shows it: another program's ``[1, 2]``)."""
    if isinstance(spec, list):
        return (len(spec) in (2, 3) and spec[2:] in ([], ["log"], ["linear"])
                and _range(spec[0], spec[1], spec[2:] == ["log"], False))
    if not isinstance(spec, dict):
        return False
    if spec.get("type") == "categorical":
        return isinstance(spec.get("choices"), list) and bool(spec["choices"])
    return (spec.get("type") in ("float", "int") and isinstance(spec.get("log"), bool)
            and _range(spec.get("low"), spec.get("high"), spec["log"], spec["type"] == "int"))


def check_stored_space(study: str, space: Any) -> None:
    """StudyError naming the stage ``study``, the dimension and its value for the first dimension of its stored
    ``space`` that is not one this service writes (changed by hand): the one line every command that reads a
    stage's space gives for it."""
    for name, spec in (space.items() if isinstance(space, dict) else ()):
        if not _readable_dimension(spec):
            raise StudyError(f"stage {study}: space dimension {name!r} is {json.dumps(spec)}, not a range or a list "
                             "of choices; it was written by another program or changed since, and is left as it is")


def format_space(space: Any, log_marked: Collection[str] = ()) -> str:
    """Compact text of a ``space`` attr: ``lr=1e-06:1 reg=1e-06:10`` (``:linear`` marks non-log, ``:log`` a log range
    of a name in ``log_marked``), bounds to 3 significant digits as a stage prints its space (``lr=0.0107:0.906``;
    an int range's whole)."""
    if not isinstance(space, dict):
        return "" if space is None else str(space)
    parts = []
    for name, spec in space.items():
        if isinstance(spec, dict) and spec.get("type") == "categorical":
            part = f"{name}=" + ",".join(str(c).lower() if isinstance(c, bool) else str(c) for c in spec["choices"])
        elif isinstance(spec, dict):
            whole = spec.get("type") == "int"
            low, high = (f"{int(b)}" if whole else f"{b:.3g}" for b in (spec["low"], spec["high"]))
            scale = scale_suffix(name, bool(spec.get("log")), log_marked)
            part = f"{name}={low}:{high}{scale}" + (":int" if whole else "")
        elif isinstance(spec, (list, tuple)) and len(spec) >= 2:
            try:
                part = f"{name}={float(spec[0]):.3g}:{float(spec[1]):.3g}"
            except (TypeError, ValueError):
                part = f"{name}={spec[0]}:{spec[1]}"
            if len(spec) >= 3 and spec[2] != "log":
                part += f":{spec[2]}"
            elif spec[2:] == ["log"]:
                part += scale_suffix(name, True, log_marked)
        else:  # a number or text in place of a whole dimension (changed by hand): no range to show it as
            raise TypeError(f"space dimension {name!r} is {spec!r}, not a range or a list of choices")
        parts.append(part)
    return " ".join(parts)


def scale_suffix(name: str, log: bool, log_marked: Collection[str]) -> str:
    """How a range's text ends for its scale: ``:linear``, ``:log`` for a name in ``log_marked``, else nothing."""
    return ":log" if log and name in log_marked else "" if log else ":linear"


def _utc_to_local(value: dt.datetime | str | None) -> dt.datetime | None:
    # Optuna 5 stores naive UTC in the trials table and shows naive local time in FrozenTrial;
    # convert so list_studies() and trials_frame() agree.
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc).astimezone().replace(tzinfo=None)


def _typed_frame(rows: list[dict[str, Any]], dtypes: dict[str, str]) -> pd.DataFrame:
    import pandas as pd
    frame = pd.DataFrame(rows, columns=list(dtypes))
    return frame.astype(dtypes)


def _int_or_none(value: Any) -> int | None:
    """A whole-number attribute as an int; None for text, NaN, Infinity (written into the study by other code) and a
    number past 2**53, which the column's floats on their way to Int64 (a trial without it is a NaN) do not hold."""
    try:
        number = int(value) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is None or abs(number) <= 2**53 else None


def _float_or_none(value: Any) -> float | None:
    """A number attribute as a float; None for anything else (text written into the study by other code)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def list_studies(storage: optuna.storages.RDBStorage, campaign: str | None = None) -> pd.DataFrame:
    """One row per study of the service (creation order), or of ``campaign``, with STUDY_COLUMNS; trial counts
    come from one SQL query."""
    infos = _select_studies(_study_infos(storage), None, campaign)
    counts_sql = text(
        "SELECT s.study_name AS study_name, t.state AS state, COUNT(*) AS n,"
        " MIN(t.datetime_start) AS first_start, MAX(v.value) AS max_value, MIN(v.value) AS min_value"
        " FROM trials t JOIN studies s ON s.study_id = t.study_id"
        " LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0"
        " GROUP BY s.study_name, t.state"
    ).columns(
        study_name=String, state=String, n=Integer, first_start=DateTime, max_value=Float, min_value=Float
    )
    per_study: dict[str, dict[str, Any]] = {}
    with storage.engine.connect() as conn:
        for row in conn.execute(counts_sql):
            state = str(getattr(row.state, "name", row.state))
            entry = per_study.setdefault(row.study_name, {"counts": {}, "starts": [], "best": {}})
            entry["counts"][state] = row.n
            if row.first_start is not None:
                entry["starts"].append(row.first_start)
            if state == TrialState.COMPLETE.name:
                entry["best"] = {"max": row.max_value, "min": row.min_value}

    rows = []
    for info in infos:
        entry = per_study.get(info.name, {"counts": {}, "starts": [], "best": {}})
        counts = entry["counts"]
        best_value = None
        if len(info.directions) == 1 and entry["best"]:
            best_value = entry["best"]["max" if info.directions[0] == StudyDirection.MAXIMIZE else "min"]
        rows.append(
            {
                "study": info.name,
                "campaign": info.campaign,
                "stage": info.stage,
                "parent": info.attrs.get("parent"),
                # the stage's budget, as its command gives it (a failed trial's copy runs in its place: the
                # other states add up to it); a study not made by a stage: its trials
                "n_trials": budget if isinstance(budget := info.attrs.get("n_trials"), int) else sum(counts.values()),
                "complete": counts.get("COMPLETE", 0),
                "pruned": counts.get("PRUNED", 0),
                "fail": counts.get("FAIL", 0),
                "running": counts.get("RUNNING", 0),
                "waiting": counts.get("WAITING", 0),
                "best_value": best_value,
                "space": _space_text(info.name, info.attrs),
                "epochs": _int_or_none(info.attrs.get("epochs")),
                "created": _utc_to_local(min(entry["starts"])) if entry["starts"] else None,
            }
        )
    return _typed_frame(rows, STUDY_COLUMNS)


def campaigns(storage: optuna.storages.BaseStorage) -> list[str]:
    """Campaign names in the order their first study was created."""
    seen: dict[str, None] = {}
    for info in _study_infos(storage):
        if info.campaign is not None:
            seen.setdefault(info.campaign, None)
    return list(seen)


COMPARE_STAGE = re.compile(r"(random|grid)-\d+")  # search compare's stages (its own campaign); search grid's: "grid"


def latest_campaign(storage: optuna.storages.BaseStorage) -> str:
    """The campaign of the most recently created study, search compare's campaigns left out (a comparison of two
    samplers, not a search to refine or keep a trial of: the commands that default to this one name it with
    --campaign); UnknownStudyError when there is none."""
    compared: list[str] = []
    for info in reversed(_study_infos(storage)):
        if info.campaign is None or info.campaign in compared:
            continue
        if info.stage is not None and COMPARE_STAGE.fullmatch(info.stage):
            compared.append(info.campaign)
            continue
        return info.campaign
    if compared:
        raise UnknownStudyError(f"the storage holds only search compare's campaigns ({names_message(compared[::-1])}), "
                                f"which are never the default: give --campaign NAME, or start a search with "
                                f"`search coarse`")
    raise UnknownStudyError("no campaign in the storage yet: run `search coarse` first")


def _select_studies(
    infos: list[_StudyInfo], study_name: str | None, campaign: str | None
) -> list[_StudyInfo]:
    selected = infos
    if campaign is not None:
        known = list(dict.fromkeys(i.campaign for i in infos if i.campaign is not None))
        if campaign not in known:
            raise UnknownStudyError(unknown_campaign(campaign, known))
        selected = [i for i in selected if i.campaign == campaign]
    if study_name is not None:
        known = [i.name for i in selected]
        stages = [i.name for i in selected if i.campaign == study_name]
        if study_name not in known and campaign is None and stages:
            raise UnknownStudyError(
                f"{study_name!r} is a campaign, not a study: give it as the campaign (--campaign "
                f"{shlex.quote(study_name)}) or name one of its stages: {names_message(stages)}"
            )
        study, _, number = study_name.rpartition(":")
        # a trial as search explain takes it (ASCII digits: "²" is a digit no trial number is written in)
        if study_name not in known and study in known and number.isascii() and number.isdigit():
            raise UnknownStudyError(
                f"{study_name!r} is one trial of study {study}: `search explain {shlex.quote(study_name)}` tells "
                f"it, `search trials {shlex.quote(study)}` lists them all"
            )
        if study_name not in known:
            scope = f" in campaign {campaign!r}" if campaign is not None else ""
            raise UnknownStudyError(f"unknown study {study_name!r}{scope}; {known_studies_message(known, study_name)}")
        selected = [i for i in selected if i.name == study_name]
    return selected


def _parse_states(states: Sequence[str | TrialState] | str | TrialState | None) -> set[TrialState] | None:
    """States by name (any case) or as Optuna's TrialState; one state alone as well as a list."""
    if states is None:
        return None
    if isinstance(states, (str, TrialState)):
        states = [states]
    parsed = set()
    for state in states:
        name = state.name if isinstance(state, TrialState) else str(state).strip().upper()
        if name not in STATE_NAMES:
            raise StudyError(f"unknown trial state {state!r}; valid states: {', '.join(STATE_NAMES)}")
        parsed.add(TrialState[name])
    return parsed


def _trial_value(trial: FrozenTrial) -> float | None:
    return trial.values[0] if trial.values else None


def _trial_row(info: _StudyInfo, trial: FrozenTrial, param_names: Sequence[str]) -> dict[str, Any]:
    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "study": info.name,
        "campaign": info.campaign,
        "stage": info.stage,
        "number": trial.number,
        "state": trial.state.name,
        "value": _trial_value(trial),
    }
    for name in param_names:
        row[f"param_{name}"] = trial.params.get(name)
    for name in TRIAL_ATTR_COLUMNS:
        row[name] = attrs.get(name)
        if TRIAL_TAIL_COLUMNS[name] == "float64":
            row[name] = _float_or_none(row[name])
    row["iterations"] = _int_or_none(row["iterations"])
    row["best_epoch"] = _int_or_none(row["best_epoch"])
    row["model_parameters"] = _int_or_none(row["model_parameters"])
    if isinstance(row["diagnosis"], list):  # labels, e.g. "lr_too_low,dead_units"
        row["diagnosis"] = ",".join(row["diagnosis"])
    row["datetime_start"] = trial.datetime_start
    row["datetime_complete"] = trial.datetime_complete
    numbers = trial_record(trial, "diagnosis_numbers")
    for name in TRIAL_DIAGNOSIS_COLUMNS:
        row[name] = _float_or_none(numbers.get(name)) if isinstance(numbers, dict) else None
    return row


def trials_frame(
    storage: optuna.storages.BaseStorage,
    study_name: str | None = None,
    campaign: str | None = None,
    states: Sequence[str | TrialState] | str | TrialState | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """One row per trial: TRIAL_HEAD_COLUMNS, ``param_<name>`` (union over the studies), TRIAL_TAIL_COLUMNS.

    ``sort`` is a column name; ``value``, ``val_acc``, ``best_val_acc`` and ``train_acc`` sort best (highest)
    first, other columns ascending; ``-name`` forces descending, ``+name`` ascending.
    Without ``sort``: study creation order, then trial number. Missing values sort last.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise StudyError(f"limit must be a positive integer, got {limit!r}")
    wanted_states = _parse_states(states)
    selected = _select_studies(_study_infos(storage), study_name, campaign)

    param_names: dict[str, None] = {}
    for info in selected:
        space = info.attrs.get("space")
        if isinstance(space, dict):
            param_names.update(dict.fromkeys(str(name) for name in space))
    if limit is not None:
        frame = _first_trials_frame(storage, selected, wanted_states, param_names, sort, limit)
        if frame is not None:
            return frame
    loaded: list[tuple[_StudyInfo, list[FrozenTrial]]] = []
    for info in selected:
        study_id = storage.get_study_id_from_name(info.name)
        trials = storage.get_all_trials(study_id, deepcopy=False, states=wanted_states)
        loaded.append((info, trials))
        for trial in trials:
            param_names.update(dict.fromkeys(trial.params))

    params = list(param_names)
    dtypes = dict(TRIAL_HEAD_COLUMNS)
    dtypes.update({f"param_{name}": "float64" for name in params})
    dtypes.update(TRIAL_TAIL_COLUMNS)
    rows = [_trial_row(info, trial, params) for info, trials in loaded for trial in trials]
    import pandas as pd
    frame = pd.DataFrame(rows, columns=list(dtypes))
    if not rows:
        frame = frame.astype(dtypes)
    else:
        # Param columns keep what pandas infers (a categorical choice may be text), but a numeric dimension is
        # numeric while every trial is still waiting (no params yet).
        frame = frame.astype({k: v for k, v in dtypes.items() if not k.startswith("param_")})
        kinds = _space_kinds(selected)
        for name in params:
            column = f"param_{name}"
            dtype = _param_dtype([row[column] for row in rows if row[column] is not None], kinds.get(name))
            if dtype is not None:
                frame[column] = frame[column].astype(dtype)
    if sort is not None:
        frame = _sort_frame(frame, sort)
    if limit is not None:
        frame = frame.head(limit)
    return frame.reset_index(drop=True)


def _first_trials_frame(
    storage: optuna.storages.BaseStorage, selected: Sequence[_StudyInfo], wanted_states: set[TrialState] | None,
    space_names: dict[str, None], sort: str | None, limit: int,
) -> pd.DataFrame | None:
    """``trials_frame(...).head(limit)`` reading only those trials, their order given by one ORDER BY ... LIMIT, and
    the columns' types by aggregates over the others; None where the sort is one SQL cannot give as pandas sorts it
    (a user attribute's JSON, a categorical's choices, a value that is not finite): every trial is read then."""
    study_ids = [storage.get_study_id_from_name(info.name) for info in selected]
    states = None if wanted_states is None else sorted(wanted_states, key=lambda state: state.value)
    total, summaries, not_finite = optuna_rdb.selection_summary(storage, study_ids, states)
    stored = {summary.name: summary for summary in summaries}
    params = list({**space_names, **dict.fromkeys(stored)})
    key, descending = None, False
    if sort is not None:
        column, ascending = _sort_column([*TRIAL_HEAD_COLUMNS, *(f"param_{n}" for n in params), *TRIAL_TAIL_COLUMNS],
                                         sort)
        descending = not ascending
        name = column.removeprefix("param_")
        if column in ("number", "state") or (column == "value" and not not_finite):
            key = column
        elif column.startswith("param_") and not (name in stored and stored[name].categorical):
            key = f"param:{name}"
        else:
            return None
    if total == 0:
        return _typed_frame([], {**TRIAL_HEAD_COLUMNS, **{f"param_{n}": "float64" for n in params},
                                 **TRIAL_TAIL_COLUMNS})
    infos = dict(zip(study_ids, selected))
    # never more than the trials selected: a limit past SQL's 64-bit integers (--limit 99999999999999999999) is all
    order = optuna_rdb.ordered_trial_ids(storage, study_ids, states, key, descending, min(limit, total))
    trials = optuna_rdb.trials_by_id(storage, [trial_id for trial_id, _ in order])
    rows = [_trial_row(infos[study], trial, params) for (_, study), trial in zip(order, trials)]
    import pandas as pd
    frame = pd.DataFrame(rows, columns=[*TRIAL_HEAD_COLUMNS, *(f"param_{n}" for n in params), *TRIAL_TAIL_COLUMNS])
    frame = frame.astype({**TRIAL_HEAD_COLUMNS, **TRIAL_TAIL_COLUMNS})
    kinds = _space_kinds(selected)
    for name in params:  # the type pandas gives the column of every trial's value, as trials_frame without a limit
        summary = stored.get(name)
        values = list(summary.samples) if summary is not None else []
        missing = summary is None or summary.trials < total
        dtype = _param_dtype(values, kinds.get(name)) or pd.DataFrame(
            {"c": [*values, *([None] if missing else [])]})["c"].dtype
        if frame[f"param_{name}"].dtype != dtype:
            frame[f"param_{name}"] = frame[f"param_{name}"].astype(dtype)
    return frame


def _space_kinds(infos: Sequence[_StudyInfo]) -> dict[str, str]:
    """Per searched name, ``int`` or ``float`` as the studies' ``space`` attrs give it (a range as a list: float)."""
    kinds: dict[str, str] = {}
    for info in infos:
        space = info.attrs.get("space")
        for name, spec in (space.items() if isinstance(space, dict) else ()):
            kind = spec.get("type") if isinstance(spec, dict) else "float" if isinstance(spec, list) else None
            if kind in ("int", "float"):
                kinds.setdefault(str(name), kind)
    return kinds


def _param_dtype(values: list[Any], kind: str | None) -> str | None:
    """float64 for a numeric dimension no trial has a value of yet (pandas would make it object of None, where a
    trial with one makes it int64, or float64 beside a missing one); None: keep what pandas infers."""
    return "float64" if not values and kind in ("int", "float") else None


def _sort_column(columns: Sequence[str], sort: str) -> tuple[str, bool]:
    """(the column of ``columns`` that ``sort`` names, whether it sorts ascending)."""
    column = sort.strip()
    ascending: bool | None = None
    if column.startswith(("+", "-")):
        ascending = column.startswith("+")
        column = column[1:]
    if column not in columns and f"param_{column}" in columns:
        column = f"param_{column}"  # a parameter by the name the table shows (lr), as --columns takes it
    if column not in columns:
        raise StudyError(f"cannot sort by {sort!r}; valid columns: {', '.join(columns)}")
    return column, column not in _DESCENDING_BY_DEFAULT if ascending is None else ascending


def _sort_frame(frame: pd.DataFrame, sort: str) -> pd.DataFrame:
    column, ascending = _sort_column(list(frame.columns), sort)
    if "state" not in frame.columns or column == "state":
        return frame.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    # among equal values a completed trial first: an exploded one (PRUNED) is valued at an epoch before its last
    order = frame[[column]].assign(_unfinished=frame["state"] != "COMPLETE").sort_values(
        [column, "_unfinished"], ascending=[ascending, True], na_position="last", kind="stable").index
    return frame.loc[order]


def loss_curves(
    storage: optuna.storages.BaseStorage, study_name: str, numbers: Sequence[int]
) -> dict[int, list[float]]:
    """The ``loss_curve`` record of the given trial numbers ([] when a trial has none; NaN for None points)."""
    _select_studies(_study_infos(storage), study_name, None)
    study_id = storage.get_study_id_from_name(study_name)
    curves: dict[int, list[float]] = {}
    for number in numbers:
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
        except KeyError:
            raise StudyError(f"study {study_name!r} has no trial number {number!r}") from None
        # trial_record's lookup, without reading the whole trial: the user attrs only for an older database
        curve = (storage.get_trial_system_attrs(trial_id).get("loss_curve")
                 or storage.get_trial_user_attrs(trial_id).get("loss_curve") or [])
        curves[int(number)] = curve_points(curve)
    return curves


def _stage_epochs(info: _StudyInfo) -> int:
    """The epochs of a trial of ``info``'s stage (0 when the stage did not record them)."""
    return _int_or_none(info.attrs.get("epochs")) or 0


def _value_se(value: float, n: int | None) -> float | None:
    """Binomial standard error of an accuracy on ``n`` samples, as ``search best`` gives it: the twin of
    ``engine.diagnostics.value_se``, kept here as studies never imports engine (nor engine studies, and no package
    lies below both); a change to one is made to both (tests/studies/test_queries.py holds them alike)."""
    if not n:
        return None
    p = min(max(value, 1.0 / n), 1 - 1.0 / n)  # never 0 at 100 %
    return math.sqrt(p * (1 - p) / n)


def split_samples(attrs: dict[str, Any], split: str) -> int | None:
    """Samples of a split (``train``, ``val``) of a stage's data, from the identity recorded in its user attributes
    ``attrs`` when it was created; None where it is not recorded."""
    data = attrs.get("data")
    shapes = data.get("shapes") if isinstance(data, dict) else None
    shape = shapes.get(split) if isinstance(shapes, dict) else None
    return shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else None


def keep_command(trial: str, storage: str | None) -> str:
    """The command that retrains ``trial`` (STUDY:NUMBER) and saves it, as the user can paste it back: quoted where a
    shell would split it (a campaign named "my run"), the ``--storage`` URL where one is given, its password masked."""
    where = f" --storage {shlex.quote(mask_url(storage))}" if storage else ""
    return f"search train --from-trial {shlex.quote(trial)}{where} --save model.npz"


def best_trial(storage: optuna.storages.BaseStorage, campaign: str, margin: float | None = None) -> dict[str, Any]:
    """The trial ``search best`` gives: the best COMPLETE trial over the searching stages of ``campaign``: of the
    stages whose best value is within ``margin`` of the highest value, the one of the longest runs gives its best
    trial (of equal lengths, the higher value, then the earlier stage); a trial at the length the user retrains at,
    not a shorter run ahead by noise. ``margin`` None (the default, as search best): 2 binomial standard errors of
    the highest value on its stage's validation samples (0 where they were not recorded).

    Stages of re-runs (sampler ``fixed``: promote-k, final) are left out: their best single run is a
    maximum over repeats of the same configurations; ``search auto`` chooses by final's best mean.
    Keys: study, stage, number, value, epochs (its stage's), highest_trial (STUDY:NUMBER) and highest_value (the
    highest value's trial, of equal values the one of longer runs), ties (how many COMPLETE trials of those stages
    are within ``margin`` of the highest value, its own trial included), value_se (the value's standard error, None
    where the validation samples were not recorded), val_samples, margin, params, user_attrs (the scalar ones),
    records (config, diagnosis_numbers, train_acc_curve; not the loss curve), initial_data_loss (user attr
    initial_loss less its L2 term: the diagnosis' first data loss, None where not recorded).
    """
    selected = [info for info in _select_studies(_study_infos(storage), None, campaign)
                if info.attrs.get("sampler") != "fixed"]
    ids = [storage.get_study_id_from_name(info.name) for info in selected]
    bests: list[tuple[_StudyInfo, FrozenTrial, float]] = []
    for info, study_id in zip(selected, ids):
        try:
            trial = storage.get_best_trial(study_id)
        except ValueError:
            continue  # no COMPLETE trial in this stage yet
        value = _trial_value(trial)
        if value is not None:
            bests.append((info, trial, value))
    if not bests:
        raise StudyError(f"campaign {campaign!r} has no complete trial yet")
    # max() keeps the first of equal keys: the earlier stage
    highest = max(bests, key=lambda best: (best[2], _stage_epochs(best[0])))
    if margin is None:
        margin = 2 * (_value_se(highest[2], split_samples(highest[0].attrs, "val")) or 0.0)
    info, trial, value = max((best for best in bests if best[2] >= highest[2] - margin),
                             key=lambda best: (_stage_epochs(best[0]), best[2]))
    val_samples = split_samples(info.attrs, "val")
    numbers = trial_record(trial, "diagnosis_numbers")
    return {
        "study": info.name,
        "stage": info.stage,
        "number": trial.number,
        "value": value,
        "epochs": _int_or_none(info.attrs.get("epochs")),
        "highest_trial": f"{highest[0].name}:{highest[1].number}",
        "highest_value": highest[2],
        "ties": optuna_rdb.count_values_at_least(storage, ids, highest[2] - margin),
        "value_se": _value_se(value, val_samples),
        "val_samples": val_samples,
        "margin": margin,
        "params": dict(trial.params),
        "user_attrs": {k: v for k, v in trial.user_attrs.items() if k not in RECORD_KEYS},
        "records": {k: v for k in RECORD_KEYS if k != "loss_curve" and (v := trial_record(trial, k)) is not None},
        "initial_data_loss": numbers.get("initial_data_loss") if isinstance(numbers, dict) else None,
    }


__all__ = [
    "COMPARE_STAGE",
    "STUDY_COLUMNS",
    "TRIAL_HEAD_COLUMNS",
    "TRIAL_TAIL_COLUMNS",
    "best_trial",
    "campaigns",
    "check_stored_space",
    "format_space",
    "latest_campaign",
    "list_studies",
    "loss_curves",
    "run_readonly_sql",
    "scale_suffix",
    "scan_sql",
    "stage_log_marked",
    "trial_view_sql",
    "trials_frame",
]
