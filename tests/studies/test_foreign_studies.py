"""Issue 9, item 9: studies the service did not make are never counted in campaign views."""
from __future__ import annotations

import optuna
import pandas as pd
import pytest
from optuna.trial import create_trial

from studies.errors import UnknownStudyError
from studies.queries import best_trial, campaigns, latest_campaign, list_studies, trials_frame
from studies.store import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

SERVICE_ATTRS = {"campaign": "digits", "stage": "coarse", "ready": True}


def _study(storage, name: str, attrs: dict, direction: str, values: list[float]) -> None:
    study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for value in values:
        study.add_trial(create_trial(value=value))


@pytest.fixture()
def storage(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'search.db'}")
    _study(storage, "digits/coarse", SERVICE_ATTRS, "maximize", [0.5, 0.7])
    # foreign: made with plain Optuna, some carrying the service's names
    _study(storage, "digits/fine-1", {"campaign": "digits"}, "minimize", [0.01])  # KeyError 'stage' before
    _study(storage, "digits/fine-2", {**SERVICE_ATTRS, "stage": "fine-2"}, "minimize", [0.001])
    _study(storage, "digits/grid", {"campaign": "digits", "stage": "grid"}, "maximize", [0.99])  # not ready
    _study(storage, "other/coarse", {}, "maximize", [0.9])  # a name like ours, no attributes
    yield storage
    storage.engine.dispose()


def test_foreign_studies_are_not_in_campaign_views(storage) -> None:
    assert campaigns(storage) == ["digits"]
    assert latest_campaign(storage) == "digits"
    frame = list_studies(storage)
    assert frame["study"].tolist() == ["digits/coarse"]
    assert frame["n_trials"].tolist() == [2]
    best = best_trial(storage, "digits")
    assert (best["study"], best["number"], best["value"]) == ("digits/coarse", 1, 0.7)
    assert trials_frame(storage, campaign="digits")["value"].tolist() == [0.5, 0.7]
    assert len(trials_frame(storage)) == 2
    with pytest.raises(UnknownStudyError, match="known campaigns: digits"):
        best_trial(storage, "other")


def test_a_database_of_only_foreign_studies_has_no_campaign(tmp_path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'search.db'}")
    try:
        _study(storage, "digits/coarse", {"campaign": "digits", "stage": "coarse"}, "minimize", [0.1])
        assert campaigns(storage) == []
        assert list_studies(storage).empty
        with pytest.raises(UnknownStudyError, match="no campaign"):
            latest_campaign(storage)
    finally:
        storage.engine.dispose()


def test_a_trial_with_text_where_numbers_belong_is_a_row_with_blanks(tmp_path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'search.db'}")
    try:
        _study(storage, "digits/coarse", SERVICE_ATTRS, "maximize", [0.5])
        study = optuna.load_study(study_name="digits/coarse", storage=storage)
        study.add_trial(create_trial(value=0.9, user_attrs={"val_acc": "high", "seconds": "x", "train_acc": True,
                                                            "final_loss": 1, "diagnosis": 7}))
        frame = trials_frame(storage, sort="val_acc")
    finally:
        storage.engine.dispose()
    assert frame["value"].tolist() == [0.5, 0.9]
    assert frame.loc[1, ["val_acc", "seconds", "train_acc"]].isna().tolist() == [True, True, True]
    assert frame.loc[1, "final_loss"] == 1.0


def test_a_trial_with_a_whole_number_no_integer_column_holds_is_a_row_with_blanks(tmp_path) -> None:
    # iterations 1e308 or Infinity (JSON Optuna reads) crashed search trials and report: OverflowError traceback
    storage = open_storage(f"sqlite:///{tmp_path / 'search.db'}")
    try:
        _study(storage, "digits/coarse", SERVICE_ATTRS, "maximize", [])
        study = optuna.load_study(study_name="digits/coarse", storage=storage)
        for iterations in (1e308, float("inf"), float("nan"), 2**63, 2**53 + 1, 2**53, 12.0):
            study.add_trial(create_trial(value=0.9, user_attrs={"iterations": iterations, "best_epoch": iterations,
                                                                "model_parameters": iterations}))
        for limit in (None, 7):
            frame = trials_frame(storage, sort="value", limit=limit)
            for column in ("iterations", "best_epoch", "model_parameters"):
                assert frame[column].tolist() == [pd.NA] * 5 + [2**53, 12]
    finally:
        storage.engine.dispose()


def test_a_space_that_calls_a_dimension_of_text_choices_a_range_is_reported_as_categorical(tmp_path) -> None:
    # a stage's space written by another program gave opt=1:2 where its trials chose "x" or "y": the report took
    # it for a log range and ended in a traceback ("Data cannot be log-scaled because all values are <= 0")
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from studies.report import campaign_report

    storage = open_storage(f"sqlite:///{tmp_path / 'search.db'}")
    try:
        space = {"lr": [1e-5, 1, "log"], "opt": [1, 2, "linear"]}
        _study(storage, "t/coarse", {**SERVICE_ATTRS, "campaign": "t", "space": space}, "maximize", [])
        study = optuna.load_study(study_name="t/coarse", storage=storage)
        for i, choice in enumerate(["x", "y", "x"]):
            study.add_trial(create_trial(value=0.5 + i / 10, params={"opt": choice, "lr": 10.0**-i},
                                         distributions={"opt": CategoricalDistribution(["x", "y"]),
                                                        "lr": FloatDistribution(1e-5, 1, log=True)}))
        report = campaign_report(storage, "t")
    finally:
        storage.engine.dispose()
    assert report.summary["dims"] == {"lr": {"type": "float", "log": True, "choices": None},
                                      "opt": {"type": "categorical", "log": None, "choices": ["x", "y"]}}
    assert "projection" in report.images


def test_a_curve_that_is_not_a_list_of_numbers_is_drawn_as_no_curve(tmp_path) -> None:
    # a loss_curve "zz" (written by another program) was read as the points "z", "z": search report ended in a
    # traceback (could not convert string to float: 'z'), as did the loss curves of search explain --plot
    from studies.queries import loss_curves
    from studies.report import campaign_report

    storage = open_storage(f"sqlite:///{tmp_path / 'search.db'}")
    try:
        _study(storage, "t/coarse", {**SERVICE_ATTRS, "campaign": "t"}, "maximize", [])
        study = optuna.load_study(study_name="t/coarse", storage=storage)
        for i, curve in enumerate(["zz", [2.0, "x"], [True], [2.5, None, 1]]):
            study.add_trial(create_trial(value=0.5 + i / 10, user_attrs={
                "diagnosis": ["lr_too_low"], "loss_curve": curve, "train_acc_curve": curve}))
        curves = loss_curves(storage, "t/coarse", [0, 1, 2, 3])
        report = campaign_report(storage, "t")
    finally:
        storage.engine.dispose()
    assert {n: c[:1] + [str(x) for x in c[1:]] for n, c in curves.items()} == {
        0: [], 1: [], 2: [], 3: [2.5, "nan", "1.0"]}
    assert "diagnosis_examples" in report.images


def test_foreign_studies_are_not_in_the_report(storage) -> None:
    # the report found its stages by name: a plain Optuna study named digits/... was a row of the report
    from studies.report import campaign_stage_infos

    assert [i.study for i in campaign_stage_infos(storage, "digits")] == ["digits/coarse"]
    with pytest.raises(UnknownStudyError, match=r"^unknown campaign 'other'; known campaigns: digits$"):
        campaign_stage_infos(storage, "other")
