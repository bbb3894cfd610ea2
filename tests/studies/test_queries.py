"""Study/trial DataFrames, best trials and read-only SQL over a database built directly with Optuna."""
from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from studies.errors import QueryError, StudyError, UnknownStudyError
from studies.queries import (
    STUDY_COLUMNS,
    TRIAL_HEAD_COLUMNS,
    TRIAL_TAIL_COLUMNS,
    best_trial,
    campaigns,
    format_space,
    latest_campaign,
    list_studies,
    loss_curves,
    run_readonly_sql,
    scan_sql,
    trial_view_sql,
    trials_frame,
)
from studies.store import open_storage, with_available_driver

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"lr": [1e-6, 1.0, "log"], "reg": [1e-6, 10.0, "log"]}
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-6, 1.0, log=True),
    "reg": FloatDistribution(1e-6, 10.0, log=True),
}
# (value, lr, reg) of the COMPLETE trials of each stage.
COARSE_COMPLETE = [(0.5, 1e-3, 1e-4), (0.8, 3e-3, 2e-4), (0.3, 1e-5, 1e-2), (0.9, 5e-3, 1e-5), (0.7, 2e-3, 3e-3)]
COARSE_PRUNED_LR = [0.5, 0.9]
FINE_COMPLETE = [(0.85, 4e-3, 2e-5), (0.95, 4.5e-3, 1.5e-5), (0.92, 6e-3, 1e-5)]
SPIRAL_COMPLETE = [(0.6, 1e-2, 1e-3), (0.4, 1e-1, 1e-3)]


def _study(url: str, campaign: str, stage: str, parent: str | None, epochs: int,
           n_trials: int | None = None) -> optuna.Study:
    study = optuna.create_study(storage=url, study_name=f"{campaign}/{stage}", direction="maximize")
    attrs = {
        "campaign": campaign,
        "stage": stage,
        "parent": parent,
        "space": SPACE,
        "epochs": epochs,
        "data": campaign,
        "model": "100,relu",
        "seed": 0,
        "range_notes": [] if parent is None else ["lr narrowed to the best trials"],
        **({"n_trials": n_trials} if n_trials is not None else {}),
        "ready": True,
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return study


def _complete(value: float, lr: float, reg: float, seconds: float = 1.5) -> optuna.trial.FrozenTrial:
    return create_trial(
        value=value,
        params={"lr": lr, "reg": reg},
        distributions=DISTRIBUTIONS,
        user_attrs={
            "initial_loss": 2.30,
            "final_loss": 0.4,
            "train_acc": min(1.0, value + 0.05),
            "val_acc": value,
            "best_val_acc": value + 0.01,
            "best_epoch": 2,
            "model_parameters": 7510,
            "iterations": 120,
            "seconds": seconds,
            "stop_reason": "completed",
            "diagnosis": ["healthy"] if value >= 0.5 else ["lr_too_low", "underfitting"],
            "worker": f"node{int(value * 100)}:42",
            "loss_curve": [2.3, 1.2, 0.4],
            **({"val_balanced_accuracy": value - 0.1} if value >= 0.5 else {}),  # not stored by older trials
        },
        intermediate_values={0: value / 2, 1: value},
    )


def _exploded(lr: float) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=TrialState.PRUNED,
        params={"lr": lr, "reg": 1e-3},
        distributions=DISTRIBUTIONS,
        user_attrs={
            "initial_loss": 2.30,
            "final_loss": float("nan"),
            "iterations": 7,
            "seconds": 0.1,
            "stop_reason": "exploded",
            "diagnosis": [] if lr > 0.5 else ["lr_too_high"],
        },
        system_attrs={"loss_curve": [2.3, 9.9]},  # where trials keep their records now (_complete: older layout)
    )


def build_database(url: str) -> str:
    """digits/coarse (5 complete, 2 exploded, 1 fail), digits/fine-1 (3 complete), empty digits/fine-2, spiral/coarse."""
    coarse = _study(url, "digits", "coarse", None, 2, n_trials=7)  # the failed trial's copy: the 8th row
    for value, lr, reg in COARSE_COMPLETE:
        coarse.add_trial(_complete(value, lr, reg))
    for lr in COARSE_PRUNED_LR:
        coarse.add_trial(_exploded(lr))
    coarse.add_trial(create_trial(state=TrialState.FAIL))
    fine = _study(url, "digits", "fine-1", "digits/coarse", 5)
    for value, lr, reg in FINE_COMPLETE:
        fine.add_trial(_complete(value, lr, reg))
    _study(url, "digits", "fine-2", "digits/fine-1", 8)
    spiral = _study(url, "spiral", "coarse", None, 3)
    for value, lr, reg in SPIRAL_COMPLETE:
        spiral.add_trial(_complete(value, lr, reg))
    return url


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("studies") / "search.db"
    return build_database(f"sqlite:///{path}"), path


@pytest.fixture(scope="module")
def storage(db):
    storage = open_storage(db[0], create=False)
    yield storage
    storage.engine.dispose()


@pytest.fixture()
def empty_storage(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'empty.db'}")
    yield storage
    storage.engine.dispose()


def _trial_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM trials").fetchone()[0]


# --- list_studies / campaigns ---------------------------------------------------------------


def test_list_studies_counts_and_best_values(storage) -> None:
    frame = list_studies(storage)
    assert list(frame.columns) == list(STUDY_COLUMNS)
    assert frame["study"].tolist() == ["digits/coarse", "digits/fine-1", "digits/fine-2", "spiral/coarse"]
    rows = frame.set_index("study")
    coarse = rows.loc["digits/coarse"]
    assert (coarse["n_trials"], coarse["complete"], coarse["pruned"], coarse["fail"], coarse["running"],
            coarse["waiting"]) == (7, 5, 2, 1, 0, 0)  # n_trials: the stage's budget, which the failure does not count
    assert coarse["best_value"] == pytest.approx(max(v for v, _, _ in COARSE_COMPLETE))
    assert coarse["space"] == "lr=1e-06:1 reg=1e-06:10"
    assert coarse["epochs"] == 2
    assert pd.isna(coarse["parent"])
    assert isinstance(coarse["created"], pd.Timestamp)
    fine = rows.loc["digits/fine-1"]
    assert (fine["n_trials"], fine["complete"], fine["parent"]) == (3, 3, "digits/coarse")
    assert fine["best_value"] == pytest.approx(0.95)
    empty = rows.loc["digits/fine-2"]
    assert (empty["n_trials"], empty["complete"]) == (0, 0)
    assert math.isnan(empty["best_value"]) and pd.isna(empty["created"])
    assert rows.loc["spiral/coarse", "campaign"] == "spiral"


def test_list_studies_of_one_campaign(storage) -> None:
    assert list_studies(storage, campaign="digits")["study"].tolist() == ["digits/coarse", "digits/fine-1",
                                                                          "digits/fine-2"]
    assert list_studies(storage, campaign="spiral")["study"].tolist() == ["spiral/coarse"]
    with pytest.raises(UnknownStudyError) as raised:
        list_studies(storage, campaign="nope")
    assert str(raised.value) == "unknown campaign 'nope'; known campaigns: digits, spiral"


def test_list_studies_created_matches_first_trial_start(storage) -> None:
    created = list_studies(storage).set_index("study").loc["digits/coarse", "created"]
    starts = trials_frame(storage, study_name="digits/coarse")["datetime_start"].dropna()
    assert created == starts.min()


def test_list_studies_on_empty_storage_has_the_same_columns(empty_storage) -> None:
    frame = list_studies(empty_storage)
    assert list(frame.columns) == list(STUDY_COLUMNS)
    assert len(frame) == 0
    assert frame.dtypes["n_trials"] == "int64"


def test_campaigns_in_creation_order_and_latest(storage, empty_storage) -> None:
    assert campaigns(storage) == ["digits", "spiral"]
    assert latest_campaign(storage) == "spiral"
    assert campaigns(empty_storage) == []
    with pytest.raises(UnknownStudyError) as raised:
        latest_campaign(empty_storage)
    assert str(raised.value) == "no campaign in the storage yet: run `search coarse` first"


def test_format_space_marks_linear_ranges() -> None:
    assert format_space({"lr": [1e-6, 1, "log"], "dropout": [0.0, 0.5, "linear"]}) == "lr=1e-06:1 dropout=0:0.5:linear"
    assert format_space(None) == ""


# --- trials_frame ---------------------------------------------------------------------------


def test_trials_frame_one_row_per_trial_with_flat_columns(storage) -> None:
    frame = trials_frame(storage, study_name="digits/coarse")
    expected = [*TRIAL_HEAD_COLUMNS, "param_lr", "param_reg", *TRIAL_TAIL_COLUMNS]
    assert list(frame.columns) == expected
    assert "loss_curve" not in frame.columns
    assert len(frame) == 8
    assert frame["number"].tolist() == list(range(8))
    assert frame["state"].value_counts().to_dict() == {"COMPLETE": 5, "PRUNED": 2, "FAIL": 1}
    complete = frame[frame["state"] == "COMPLETE"]
    assert complete["value"].tolist() == pytest.approx([v for v, _, _ in COARSE_COMPLETE])
    assert complete["param_lr"].tolist() == pytest.approx([lr for _, lr, _ in COARSE_COMPLETE])
    assert complete["param_reg"].tolist() == pytest.approx([reg for _, _, reg in COARSE_COMPLETE])
    assert complete["val_acc"].tolist() == pytest.approx(complete["value"].tolist())
    assert complete["iterations"].tolist() == [120] * 5
    pruned = frame[frame["state"] == "PRUNED"]
    assert pruned["stop_reason"].tolist() == ["exploded", "exploded"]
    assert pruned["value"].isna().all() and pruned["final_loss"].isna().all()
    assert pruned["param_lr"].tolist() == pytest.approx(COARSE_PRUNED_LR)
    failed = frame[frame["state"] == "FAIL"].iloc[0]
    assert pd.isna(failed["param_lr"]) and pd.isna(failed["stop_reason"])
    assert frame["campaign"].unique().tolist() == ["digits"]
    assert frame["stage"].unique().tolist() == ["coarse"]


def test_trials_frame_sort_filter_and_limit(storage) -> None:
    by_value = trials_frame(storage, study_name="digits/coarse", sort="value")
    all_values = [v for v, _, _ in COARSE_COMPLETE]
    assert by_value["value"].iloc[0] == pytest.approx(max(all_values))
    assert by_value["value"].head(5).tolist() == pytest.approx(sorted(all_values, reverse=True))
    assert by_value["value"].tail(3).isna().all()  # missing values last
    ascending = trials_frame(storage, study_name="digits/coarse", sort="+value", states=["complete"])
    assert ascending["value"].tolist() == pytest.approx(sorted(all_values))
    top2 = trials_frame(storage, campaign="digits", states=["COMPLETE"], sort="value", limit=2)
    assert len(top2) == 2
    assert top2["value"].tolist() == pytest.approx([0.95, 0.92])
    assert top2["study"].tolist() == ["digits/fine-1", "digits/fine-1"]
    pruned = trials_frame(storage, campaign="digits", states=["PRUNED", "FAIL"])
    assert len(pruned) == 3


def test_a_completed_trial_sorts_before_a_pruned_one_of_the_same_value(empty_storage) -> None:
    # on wine's 27 validation samples many trials reach 1.0: `search trials --sort value` listed the exploded ones
    # (PRUNED, valued at an earlier epoch) first among them, by number
    study = _study(empty_storage, "wine", "fine-1", None, 6)
    exploded = _exploded(0.42)
    study.add_trial(create_trial(state=TrialState.PRUNED, value=1.0, params=exploded.params,
                                 distributions=exploded.distributions, user_attrs=exploded.user_attrs))
    for value, lr, reg in [(0.96, 1e-3, 1e-4), (1.0, 3e-2, 2e-6), (1.0, 1e-3, 1e-4)]:
        study.add_trial(_complete(value, lr, reg))
    frame = trials_frame(empty_storage, study_name="wine/fine-1", sort="value")
    assert frame[["number", "state"]].values.tolist() == [[2, "COMPLETE"], [3, "COMPLETE"], [0, "PRUNED"],
                                                          [1, "COMPLETE"]]
    assert trials_frame(empty_storage, study_name="wine/fine-1", sort="+value")["number"].tolist() == [1, 2, 3, 0]


def test_trials_frame_sorts_by_a_parameter_by_the_name_the_table_shows(storage) -> None:
    by_lr = trials_frame(storage, study_name="digits/coarse", sort="-lr", states=["complete"])
    assert by_lr["param_lr"].tolist() == [5e-3, 3e-3, 2e-3, 1e-3, 1e-5]
    assert trials_frame(storage, study_name="digits/coarse", sort="+param_reg", states=["complete"])[
        "param_reg"].tolist() == [1e-5, 1e-4, 2e-4, 3e-3, 1e-2]


def test_trials_frame_sorts_every_accuracy_best_first(storage) -> None:
    by_best = trials_frame(storage, study_name="digits/coarse", sort="best_val_acc")
    assert by_best["best_val_acc"].head(5).tolist() == pytest.approx([0.91, 0.81, 0.71, 0.51, 0.31])
    assert by_best["best_val_acc"].tail(3).isna().all()  # missing values last


def test_trials_frame_over_a_campaign_and_everything(storage) -> None:
    digits = trials_frame(storage, campaign="digits")
    assert len(digits) == 8 + 3
    assert digits.groupby("study").size().to_dict() == {"digits/coarse": 8, "digits/fine-1": 3}
    everything = trials_frame(storage)
    assert len(everything) == 8 + 3 + 2
    assert everything["campaign"].value_counts().to_dict() == {"digits": 11, "spiral": 2}


def test_trials_frame_empty_study_has_documented_columns(storage) -> None:
    frame = trials_frame(storage, study_name="digits/fine-2")
    assert len(frame) == 0
    assert list(frame.columns) == [*TRIAL_HEAD_COLUMNS, "param_lr", "param_reg", *TRIAL_TAIL_COLUMNS]
    assert frame.dtypes["value"] == "float64" and frame.dtypes["number"] == "int64"


def test_trials_frame_on_empty_storage(empty_storage) -> None:
    frame = trials_frame(empty_storage)
    assert list(frame.columns) == [*TRIAL_HEAD_COLUMNS, *TRIAL_TAIL_COLUMNS]
    assert len(frame) == 0


def test_trials_frame_unknown_names_list_the_known_ones(storage) -> None:
    # a misspelt stage of a known campaign: that campaign's studies, where the first few of every campaign could
    # leave them out
    with pytest.raises(UnknownStudyError) as raised:
        trials_frame(storage, study_name="digits/nope")
    assert str(raised.value) == ("unknown study 'digits/nope'; studies of campaign digits: digits/coarse, "
                                 "digits/fine-1, digits/fine-2")
    with pytest.raises(UnknownStudyError, match="known studies: digits/coarse, digits/fine-1, digits/fine-2, "
                                                "spiral/coarse"):
        trials_frame(storage, study_name="nope/coarse")
    with pytest.raises(UnknownStudyError, match="known campaigns: digits, spiral"):
        trials_frame(storage, campaign="cifar10")
    with pytest.raises(UnknownStudyError, match="'spiral/coarse' in campaign 'digits'"):
        trials_frame(storage, study_name="spiral/coarse", campaign="digits")
    # a campaign's name where a study's goes (`search trials digits`): say which it is, and how to ask for it
    with pytest.raises(UnknownStudyError) as raised:
        trials_frame(storage, study_name="digits")
    assert str(raised.value) == ("'digits' is a campaign, not a study: give it as the campaign (--campaign digits) "
                                 "or name one of its stages: digits/coarse, digits/fine-1, digits/fine-2")
    # a trial where a study goes (`search trials digits/coarse:3`) was an unknown study
    with pytest.raises(UnknownStudyError) as raised:
        trials_frame(storage, study_name="digits/coarse:3")
    assert str(raised.value) == ("'digits/coarse:3' is one trial of study digits/coarse: `search explain "
                                 "digits/coarse:3` tells it, `search trials digits/coarse` lists them all")
    with pytest.raises(UnknownStudyError, match="unknown study 'digits/coarse:²'"):  # no trial is numbered so
        trials_frame(storage, study_name="digits/coarse:²")


def test_trials_frame_bad_arguments_name_the_valid_values(storage) -> None:
    with pytest.raises(StudyError, match=r"cannot sort by 'speed'; valid columns: study, .*param_lr.*seconds"):
        trials_frame(storage, study_name="digits/coarse", sort="speed")
    with pytest.raises(StudyError, match="unknown trial state 'DONE'; valid states: RUNNING, COMPLETE, PRUNED, FAIL, WAITING"):
        trials_frame(storage, states=["DONE"])
    with pytest.raises(StudyError, match="limit must be a positive integer, got 0"):
        trials_frame(storage, limit=0)


def test_loss_curves_by_trial_number(storage) -> None:
    curves = loss_curves(storage, "digits/coarse", [0, 5, 7])  # 0: a user attribute, 5: a system attribute
    assert curves == {0: [2.3, 1.2, 0.4], 5: [2.3, 9.9], 7: []}
    with pytest.raises(StudyError, match="no trial number 99"):
        loss_curves(storage, "digits/coarse", [99])
    with pytest.raises(UnknownStudyError) as raised:
        loss_curves(storage, "digits/nope", [0])
    assert str(raised.value) == ("unknown study 'digits/nope'; studies of campaign digits: digits/coarse, "
                                 "digits/fine-1, digits/fine-2")


def test_best_trial_across_the_campaign_stages(storage) -> None:
    best = best_trial(storage, "digits")
    value, lr, reg = max(COARSE_COMPLETE + FINE_COMPLETE)
    assert best["study"] == "digits/fine-1" and best["stage"] == "fine-1"
    assert best["number"] == 1
    assert best["value"] == pytest.approx(value)
    assert best["params"] == pytest.approx({"lr": lr, "reg": reg})
    assert best["user_attrs"]["stop_reason"] == "completed"
    assert "loss_curve" not in best["user_attrs"] and "loss_curve" not in best["records"]
    assert best_trial(storage, "spiral")["value"] == pytest.approx(0.6)
    with pytest.raises(UnknownStudyError, match="known campaigns: digits, spiral"):
        best_trial(storage, "cifar10")


# --- read-only SQL --------------------------------------------------------------------------


def test_select_count_is_correct(db) -> None:
    url, path = db
    frame = run_readonly_sql(url, "SELECT count(*) AS n FROM trials")
    assert frame["n"].tolist() == [_trial_count(path)] == [13]


def test_delete_is_refused_and_nothing_changes(db) -> None:
    url, path = db
    with pytest.raises(QueryError, match="refused: only read-only queries"):
        run_readonly_sql(url, "DELETE FROM trials")
    with pytest.raises(QueryError, match="one statement at a time, found 2"):
        run_readonly_sql(url, "DELETE FROM trials; SELECT 1")
    with pytest.raises(QueryError, match="one statement at a time"):
        run_readonly_sql(url, "SELECT 1; DELETE FROM trials")
    assert _trial_count(path) == 13


def test_update_hidden_in_a_cte_is_refused_by_the_read_only_connection(db) -> None:
    url, path = db
    sql = "WITH x AS (SELECT 1) UPDATE trial_values SET value = 0"
    with pytest.raises(QueryError, match="read-only"):
        run_readonly_sql(url, sql)
    with sqlite3.connect(path) as conn:
        values = [row[0] for row in conn.execute("SELECT value FROM trial_values ORDER BY trial_id")]
    assert values == pytest.approx([v for v, _, _ in COARSE_COMPLETE + FINE_COMPLETE + SPIRAL_COMPLETE])


def test_semicolons_in_strings_and_comments_are_one_statement(db) -> None:
    url, _ = db
    frame = run_readonly_sql(url, "SELECT 'a;b' AS s -- trailing; comment\n;")
    assert frame["s"].tolist() == ["a;b"]
    with pytest.raises(QueryError, match="empty SQL"):
        run_readonly_sql(url, " ; -- nothing")


def test_failed_sql_is_a_query_error(db) -> None:
    url, _ = db
    with pytest.raises(QueryError, match="SQL failed: no such table: nope"):
        run_readonly_sql(url, "SELECT * FROM nope")
    # `SELECT lr` was "SQL failed: no such column: lr", with no word of where lr is
    with pytest.raises(QueryError) as err:
        run_readonly_sql(url, "SELECT lr FROM trials_flat")
    assert str(err.value) == ("SQL failed: no such column: lr (searched parameters are columns param_NAME; search query "
                              "--help lists every column of trials_flat)")
    with pytest.raises(QueryError) as err:
        run_readonly_sql(url, "SELECT param_momentum FROM trials_flat")
    assert str(err.value) == "SQL failed: no such column: param_momentum"


def test_trials_flat_view_has_one_row_per_trial(db, storage) -> None:
    url, _ = db
    flat = run_readonly_sql(url, "SELECT * FROM trials_flat ORDER BY trial_id")
    for column in ("study", "trial_id", "number", "state", "value", "param_lr", "param_reg",
                   "stop_reason", "seconds", "iterations", "val_acc", "train_acc"):
        assert column in flat.columns
    assert len(flat) == 13
    frame = trials_frame(storage)
    assert flat["study"].tolist() == frame["study"].tolist()
    assert flat["number"].tolist() == frame["number"].tolist()
    assert flat["state"].tolist() == frame["state"].tolist()
    assert flat["param_lr"].tolist() == pytest.approx(frame["param_lr"].tolist(), nan_ok=True)
    assert flat["value"].tolist() == pytest.approx(frame["value"].tolist(), nan_ok=True)
    assert flat["stop_reason"].fillna("-").tolist() == frame["stop_reason"].fillna("-").tolist()
    assert flat["iterations"].fillna(-1).tolist() == frame["iterations"].fillna(-1).tolist()
    assert flat["final_loss"].isna().sum() == 3  # two NaN (exploded) and one missing (failed)
    # which process ran each trial (host:pid), in both
    assert flat["worker"].fillna("-").tolist() == frame["worker"].fillna("-").tolist()
    assert flat["worker"].dropna().tolist()[:5] == ["node50:42", "node80:42", "node30:42", "node90:42", "node70:42"]


def test_trials_flat_has_the_diagnosis_column_of_trials_frame(db, storage) -> None:
    url, _ = db
    flat = run_readonly_sql(url, "SELECT number, diagnosis FROM trials_flat WHERE study = 'digits/coarse' "
                                 "ORDER BY number")
    assert flat["diagnosis"].fillna("-").tolist() == [
        "healthy", "healthy", "lr_too_low,underfitting", "healthy", "healthy", "lr_too_high", "", "-"]
    frame = trials_frame(storage, study_name="digits/coarse")
    assert frame["diagnosis"].fillna("-").tolist() == flat["diagnosis"].fillna("-").tolist()


def test_trials_flat_has_the_best_epoch_value_and_the_model_size_of_trials_frame(db, storage) -> None:
    url, _ = db
    flat = run_readonly_sql(url, "SELECT number, best_val_acc, model_parameters FROM trials_flat "
                                 "WHERE study = 'digits/coarse' ORDER BY number")
    frame = trials_frame(storage, study_name="digits/coarse").sort_values("number")
    assert flat["model_parameters"].fillna(-1).tolist() == [7510] * 5 + [-1] * 3
    assert flat["model_parameters"].fillna(-1).tolist() == frame["model_parameters"].fillna(-1).tolist()
    assert flat["best_val_acc"].tolist() == pytest.approx(frame["best_val_acc"].tolist(), nan_ok=True)
    assert flat["best_val_acc"].notna().sum() == 5


def test_the_best_epoch_is_a_column_of_trials_frame_and_trials_flat(db, storage) -> None:
    url, _ = db
    frame = trials_frame(storage, study_name="digits/coarse")
    assert list(frame.columns).index("best_epoch") == list(frame.columns).index("best_val_acc") + 1
    assert frame["best_epoch"].fillna(-1).tolist() == [2] * 5 + [-1] * 3
    flat = run_readonly_sql(url, "SELECT number, best_epoch FROM trials_flat WHERE study = 'digits/coarse' "
                                 "ORDER BY number")
    assert flat["best_epoch"].fillna(-1).tolist() == [2] * 5 + [-1] * 3


def test_trials_flat_in_aggregates_and_with_user_ctes(db) -> None:
    url, _ = db
    counts = run_readonly_sql(
        url, "SELECT stop_reason, count(*) AS n FROM trials_flat WHERE study = 'digits/coarse' "
        "GROUP BY stop_reason ORDER BY stop_reason"
    )
    assert dict(zip(counts["stop_reason"].fillna("-"), counts["n"])) == {"-": 1, "completed": 5, "exploded": 2}
    best = run_readonly_sql(
        url, "with good as (select * from trials_flat where value >= 0.9) "
        "select study, number, value from good order by value desc"
    )
    assert best["value"].tolist() == pytest.approx([0.95, 0.92, 0.9])
    campaign = run_readonly_sql(url, "SELECT DISTINCT campaign, stage FROM trials_flat ORDER BY 1, 2")
    assert campaign.values.tolist() == [["digits", "coarse"], ["digits", "fine-1"], ["spiral", "coarse"]]


def test_a_query_may_define_its_own_trials_flat_quoted_or_materialized(db) -> None:
    # 'duplicate WITH table name: trials_flat': the view was added beside the query's own, quoted or MATERIALIZED
    url, _ = db
    for cte in ('"trials_flat" AS', "trials_flat AS MATERIALIZED", "[trials_flat] AS NOT MATERIALIZED",
                "`trials_flat`(a) AS"):
        frame = run_readonly_sql(url, f"WITH {cte} (SELECT 7 AS a) SELECT a FROM trials_flat")
        assert frame["a"].tolist() == [7], cte


def test_scan_sql_splits_only_outside_strings_and_comments() -> None:
    assert scan_sql("SELECT 1;")[0] == ["SELECT 1"]
    assert len(scan_sql("SELECT ';' /* ; */ -- ;\n")[0]) == 1
    assert len(scan_sql('SELECT "a;b" FROM t; SELECT 2')[0]) == 2
    assert len(scan_sql("SELECT [a';b] FROM t; SELECT 2 --'", "sqlite")[0]) == 2


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT E'\\''; DELETE FROM trials; --'",  # backslash-escaped quote in an E'' string
        "SELECT $$'$$; DELETE FROM trials; --'",  # dollar quote hiding a quote
        "SELECT 1 /* /* */ ' */ ; DELETE FROM trials; -- '",  # nested comment
    ],
)
def test_scan_sql_follows_postgresql_lexing(sql: str) -> None:
    assert len(scan_sql(sql, "postgresql")[0]) == 2


def test_trial_view_sql_quotes_param_names() -> None:
    sql = trial_view_sql(["lr", "it's", "hidden-1"], "postgresql")
    assert "'it''s'" in sql and '"param_it_s"' in sql and '"param_hidden_1"' in sql
    assert "DOUBLE PRECISION" in sql
    with pytest.raises(QueryError) as raised:
        trial_view_sql(["lr"], "oracle")
    assert str(raised.value) == "the trials view supports sqlite, postgresql, not oracle"


@pytest.fixture
def postgres_scratch_url(request) -> str:
    """$SEARCH_TEST_POSTGRES_URL if set, else a fresh database on the throwaway server (tests/fixtures_pg.py)."""
    return os.environ.get("SEARCH_TEST_POSTGRES_URL") or request.getfixturevalue("pg_database")


@pytest.fixture
def postgres_storage(postgres_scratch_url):
    """The scratch database's storage, without studies before the test and after it."""
    storage = open_storage(postgres_scratch_url)

    def delete_studies() -> None:
        for name in optuna.get_all_study_names(storage):
            optuna.delete_study(study_name=name, storage=storage)

    delete_studies()
    try:
        yield storage
    finally:
        delete_studies()
        storage.engine.dispose()


def test_queries_on_postgresql(postgres_scratch_url, postgres_storage) -> None:
    storage = postgres_storage
    build_database(with_available_driver(postgres_scratch_url))
    studies = list_studies(storage).set_index("study")
    assert studies.loc["digits/coarse", ["n_trials", "complete", "pruned", "fail"]].tolist() == [7, 5, 2, 1]
    assert studies.loc["digits/fine-1", "best_value"] == pytest.approx(0.95)
    assert run_readonly_sql(postgres_scratch_url, "SELECT count(*) AS n FROM trials")["n"].tolist() == [13]
    flat = run_readonly_sql(postgres_scratch_url, "SELECT * FROM trials_flat ORDER BY trial_id")
    frame = trials_frame(storage)
    assert len(flat) == 13
    assert flat["param_lr"].tolist() == pytest.approx(frame["param_lr"].tolist(), nan_ok=True)
    assert flat["stop_reason"].fillna("-").tolist() == frame["stop_reason"].fillna("-").tolist()
    assert flat["diagnosis"].fillna("-").tolist() == frame["diagnosis"].fillna("-").tolist()
    assert flat["diagnosis"].tolist()[2] == "lr_too_low,underfitting"
    assert flat["state"].tolist() == frame["state"].tolist()
    for sql, refusal in (
        ("DELETE FROM trials", "refused: only read-only queries (EXPLAIN, SELECT, VALUES, WITH) may run, got 'DELETE'"),
        ("WITH x AS (SELECT 1) UPDATE trial_values SET value = 0",
         "refused: only one read-only query (SELECT, WITH, VALUES, EXPLAIN) may run "
         "(cannot open UPDATE query as cursor)"),
        ("SELECT 1; COMMIT; DELETE FROM trials", "refused: one statement at a time, found 3 separated by ';'"),
        ("SELECT set_config('transaction_read_only', 'off', false), count(*) FROM trials",
         "SQL failed: transaction read-write mode must be set before any query"),
    ):
        with pytest.raises(QueryError) as refused:
            run_readonly_sql(postgres_scratch_url, sql)
        assert str(refused.value) == refusal, sql
    assert len(trials_frame(storage)) == 13
    assert trials_frame(storage, states=["COMPLETE"])["value"].sum() == pytest.approx(
        sum(v for v, _, _ in COARSE_COMPLETE + FINE_COMPLETE + SPIRAL_COMPLETE)
    )


@pytest.mark.parametrize("query", [list_studies, trials_frame, campaigns, latest_campaign,
                                   lambda storage: best_trial(storage, "digits")])
def test_a_url_where_the_storage_belongs_is_one_error_saying_what_to_pass(query) -> None:
    # a notebook's trials_frame("sqlite:///search.db") was AttributeError: 'str' object has no attribute ...
    with pytest.raises(StudyError) as raised:
        query("sqlite:///search.db")
    assert str(raised.value) == ("storage must be an Optuna storage: open_storage('sqlite:///search.db', "
                                 "readonly=True) from studies.store, got the text 'sqlite:///search.db'")


def test_states_as_optunas_trial_states_or_one_name(storage) -> None:
    # states=[TrialState.COMPLETE] was "unknown trial state <TrialState.COMPLETE: 1>", and states="COMPLETE"
    # "unknown trial state 'C'"
    complete = trials_frame(storage, campaign="digits", states=["COMPLETE"])
    assert trials_frame(storage, campaign="digits", states=[TrialState.COMPLETE]).equals(complete)
    assert trials_frame(storage, campaign="digits", states="complete").equals(complete)
    assert trials_frame(storage, campaign="digits", states=TrialState.COMPLETE).equals(complete)
    both = trials_frame(storage, campaign="digits", states=[TrialState.PRUNED, "FAIL"])
    assert set(both["state"]) == {"PRUNED", "FAIL"}


def test_numeric_param_columns_are_numeric_while_every_trial_is_waiting(empty_storage) -> None:
    # with only waiting trials (a stage created, none started) param_lr and param_hidden were object columns of None
    study = _study(empty_storage, "w", "coarse", None, 1)
    study.set_user_attr("space", {"lr": [1e-6, 1.0, "log"], "hidden": {"type": "int", "low": 16, "high": 64,
                                                                       "log": True},
                                  "activation": {"type": "categorical", "choices": ["relu", "tanh"]}})
    study.add_trial(create_trial(state=TrialState.WAITING))
    waiting = trials_frame(empty_storage, campaign="w")
    assert [str(waiting[c].dtype) for c in ("param_lr", "param_hidden", "param_activation")] == [
        "float64", "float64", "object"]
    assert waiting["param_lr"].isna().all() and waiting["param_hidden"].isna().all()
    distributions = {"lr": DISTRIBUTIONS["lr"], "hidden": optuna.distributions.IntDistribution(16, 64, log=True)}
    study.add_trial(create_trial(value=0.5, params={"lr": 1e-3, "hidden": 54}, distributions=distributions))
    mixed = trials_frame(empty_storage, campaign="w")
    assert (str(mixed["param_lr"].dtype), str(mixed["param_hidden"].dtype)) == ("float64", "float64")
    assert mixed["param_hidden"].tolist()[1] == 54.0


def _tied_stages(tmp_path) -> str:
    """The URL of campaign ``ties``: coarse and grid of 3 epochs and fine-1 of 6, each best at 0.9, fine-2 of 12 at
    0.8 (and a 0.5 in each)."""
    url = f"sqlite:///{tmp_path / 'ties.db'}"
    for stage, parent, epochs, value in (("coarse", None, 3, 0.9), ("fine-1", "ties/coarse", 6, 0.9),
                                         ("grid", "ties/coarse", 3, 0.9), ("fine-2", "ties/fine-1", 12, 0.8)):
        study = _study(url, "ties", stage, parent, epochs)
        study.add_trial(_complete(0.5, 1e-3, 1e-4))
        study.add_trial(_complete(value, 2e-3, 1e-4))
    return url


def test_best_trial_of_tied_stages_is_the_one_of_longer_runs(tmp_path) -> None:
    # a 27-sample validation split ties often: search best took coarse (3 epochs) over fine-1's equal value at 6
    url = _tied_stages(tmp_path)
    storage = open_storage(url, create=False)
    try:
        best = best_trial(storage, "ties")
    finally:
        storage.engine.dispose()
    assert (best["study"], best["number"], best["value"]) == ("ties/fine-1", 1, 0.9)
    assert (best["epochs"], best["highest_trial"], best["highest_value"], best["ties"]) == (6, "ties/fine-1:1", 0.9, 3)


@pytest.mark.parametrize("margin,chosen,ties", [(0.05, ("ties/fine-1", 1, 0.9, 6), 3),
                                                (0.15, ("ties/fine-2", 1, 0.8, 12), 4),
                                                (0.45, ("ties/fine-2", 1, 0.8, 12), 8)])
def test_best_trial_within_a_margin_of_the_highest_is_the_best_of_the_longest_runs(tmp_path, margin, chosen, ties):
    # a 2-epoch coarse trial ahead of 12-epoch fine trials by a point of noise was "the best", though the user
    # retrains at the longer length
    url = _tied_stages(tmp_path)
    promoted = _study(url, "ties", "promote-2", "ties/fine-1", 12)
    promoted.set_user_attr("sampler", "fixed")  # re-runs: neither chosen nor counted
    promoted.add_trial(_complete(0.85, 2e-3, 1e-4))
    storage = open_storage(url, create=False)
    try:
        best = best_trial(storage, "ties", margin=margin)
    finally:
        storage.engine.dispose()
    assert (best["study"], best["number"], best["value"], best["epochs"]) == chosen
    assert (best["highest_trial"], best["highest_value"], best["ties"]) == ("ties/fine-1:1", 0.9, ties)


def test_a_stages_space_is_given_to_3_significant_digits_as_the_stage_prints_it():
    # search studies --wide said lr=0.0106641:0.906068 where the stage and the report say lr=0.0107:0.906
    from studies.report import space_text

    space = {"lr": {"type": "float", "low": 0.0106641, "high": 0.906068, "log": True},
             "hidden": {"type": "int", "low": 16, "high": 1024, "log": True},
             "dropout": {"type": "float", "low": 0.5, "high": 1.0, "log": False},
             "activation": {"type": "categorical", "choices": ["relu", "tanh"]}}
    text = "lr=0.0107:0.906 hidden=16:1024:int dropout=0.5:1:linear activation=relu,tanh"
    assert format_space(space) == space_text(space) == text


def _mixed_campaign(url: str) -> None:
    """Two stages of trials in every state, values tied across states and stages, an int, a categorical, a flag
    and a conditional parameter (absent from some completed trials), and waiting trials without any."""
    space = {"lr": [1e-6, 1.0, "log"], "hidden": {"type": "int", "low": 16, "high": 64, "log": True},
             "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
             "batchnorm": {"type": "categorical", "choices": [True, False]},
             "momentum": [0.5, 0.99, "linear"]}
    dists = {"lr": DISTRIBUTIONS["lr"], "hidden": optuna.distributions.IntDistribution(16, 64, log=True),
             "activation": optuna.distributions.CategoricalDistribution(["relu", "tanh"]),
             "batchnorm": optuna.distributions.CategoricalDistribution([True, False]),
             "momentum": FloatDistribution(0.5, 0.99)}
    for stage in ("coarse", "fine-1"):
        study = _study(url, "m", stage, None if stage == "coarse" else "m/coarse", 2)
        study.set_user_attr("space", space)
        for i in range(14):
            params = {"lr": 10.0 ** -(i % 5 + 1), "hidden": 16 + 3 * (i % 4), "activation": ["relu", "tanh"][i % 2],
                      "batchnorm": i % 3 == 0, **({"momentum": 0.5 + i / 100} if i % 3 else {})}
            state = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL][i % 4]
            value = None if state == TrialState.FAIL else [0.5, 0.9, 0.7][i % 3]
            study.add_trial(create_trial(state=state, value=value, params=params,
                                         distributions={k: dists[k] for k in params},
                                         user_attrs={"val_acc": value, "seconds": float(i % 4)}))
        for _ in range(3):
            study.add_trial(create_trial(state=TrialState.WAITING))


SORTS = [None, "value", "+value", "number", "-number", "state", "-state", "lr", "-hidden", "momentum", "-momentum",
         "activation", "batchnorm", "val_acc", "seconds", "datetime_start"]


@pytest.mark.parametrize("sort", SORTS)
def test_a_limit_gives_the_first_rows_of_the_whole_listing(empty_storage, sort) -> None:
    # the limit is applied in SQL where the sort allows it (every trial was read, then all but N dropped)
    _mixed_campaign(empty_storage)
    for scope, stages in (({"study_name": "m/fine-1"}, 1), ({"campaign": "m"}, 2)):
        for states, rows in ((None, 17), (["COMPLETE"], 8), (["PRUNED", "FAIL"], 6), (["WAITING"], 3),
                             (["RUNNING"], 0)):
            whole = trials_frame(empty_storage, **scope, states=states, sort=sort)
            assert len(whole) == stages * rows, (scope, states)  # a stage: 8 complete, 3 pruned, 3 failed, 3 waiting
            for limit in (1, 4, 9, 100, 2**64):  # past SQL's 64-bit integers: every row
                first = trials_frame(empty_storage, **scope, states=states, sort=sort, limit=limit)
                pd.testing.assert_frame_equal(first, whole.head(limit).reset_index(drop=True))


@pytest.mark.parametrize("sort", [None, "value", "-number", "state", "-hidden"])
def test_a_limit_reads_only_the_trials_it_shows(empty_storage, monkeypatch, sort) -> None:
    from studies import optuna_rdb

    _mixed_campaign(empty_storage)
    read = []
    by_id = optuna_rdb.trials_by_id
    monkeypatch.setattr(optuna_rdb, "trials_by_id", lambda storage, ids: read.append(len(ids)) or by_id(storage, ids))

    def every_trial(*args, **kwargs):
        raise AssertionError("every trial was read")

    monkeypatch.setattr(type(empty_storage), "get_all_trials", every_trial)
    frame = trials_frame(empty_storage, campaign="m", sort=sort, limit=5)
    assert len(frame) == 5 and read == [5]


def test_a_limit_gives_the_first_rows_of_the_whole_listing_on_postgresql(postgres_scratch_url,
                                                                        postgres_storage) -> None:
    # PostgreSQL's state is an enum type (sorted by its declaration order unless cast to text)
    _mixed_campaign(with_available_driver(postgres_scratch_url))
    for sort in [None, "value", "-number", "state", "-state", "-hidden", "momentum"]:
        for states, rows in ((None, 34), (["PRUNED", "FAIL"], 12)):
            whole = trials_frame(postgres_storage, campaign="m", states=states, sort=sort)
            assert len(whole) == rows, states
            for limit in (1, 9, 2**63):
                first = trials_frame(postgres_storage, campaign="m", states=states, sort=sort, limit=limit)
                pd.testing.assert_frame_equal(first, whole.head(limit).reset_index(drop=True))


def test_a_limit_lists_parameters_outside_the_space_in_the_order_of_the_whole_listing(empty_storage) -> None:
    # trials added by another program with parameters the space does not name: the fine stage's trial stored its
    # "width" before the coarse stage's trials stored "depth" then "width"; the listing meets coarse's first
    coarse, fine = (_study(empty_storage, "o", stage, parent, 2)
                    for stage, parent in (("coarse", None), ("fine-1", "o/coarse")))
    width, depth = FloatDistribution(1, 10), FloatDistribution(1, 5)
    fine.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5, params={"width": 2.0},
                                distributions={"width": width}))
    coarse.add_trial(create_trial(state=TrialState.COMPLETE, value=0.6, params={"depth": 3.0},
                                  distributions={"depth": depth}))
    coarse.add_trial(create_trial(state=TrialState.COMPLETE, value=0.7, params={"width": 4.0, "depth": 1.0},
                                  distributions={"width": width, "depth": depth}))
    params = [c for c in trials_frame(empty_storage, campaign="o").columns if c.startswith("param_")]
    assert params == ["param_lr", "param_reg", "param_depth", "param_width"]
    for sort in (None, "number", "width", "-value"):
        whole = trials_frame(empty_storage, campaign="o", sort=sort)
        first = trials_frame(empty_storage, campaign="o", sort=sort, limit=2)
        assert [c for c in first.columns if c.startswith("param_")] == params
        pd.testing.assert_frame_equal(first, whole.head(2).reset_index(drop=True))


def test_the_standard_error_search_best_ties_by_is_the_diagnosis_one():
    # written twice (studies may not import engine): held to one formula here
    from engine.diagnostics import value_se
    from studies.queries import _value_se

    for n in (None, 0, 1, 2, 30, 270, 1000):
        for accuracy in (0.0, 0.001, 0.5, 0.9852, 0.999, 1.0):
            assert _value_se(accuracy, n) == value_se(accuracy, n), (accuracy, n)


def test_trials_flat_and_trials_frame_have_the_balanced_accuracy_null_for_older_trials(db, storage) -> None:
    url, _ = db
    flat = run_readonly_sql(url, "SELECT number, val_balanced_accuracy FROM trials_flat "
                                 "WHERE study = 'digits/coarse' ORDER BY number")
    frame = trials_frame(storage, study_name="digits/coarse").sort_values("number")
    assert flat["val_balanced_accuracy"].fillna(-1).tolist() == pytest.approx(
        frame["val_balanced_accuracy"].fillna(-1).tolist())
    assert flat["val_balanced_accuracy"].notna().sum() == frame["val_balanced_accuracy"].notna().sum() == 4
