"""Issue 9: foreign studies, storage failures mid-stage, orphaned workers, spawn without a main guard, TPE seeds."""
from __future__ import annotations

import optuna
import pytest

from tests.search.conftest import one_line_error
from tests.search.procs import SMALL

STAGE = "digits/coarse"


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'search.db'}"


def _snapshot(url: str, name: str) -> tuple:
    study = optuna.load_study(study_name=name, storage=url)
    trials = [(t.number, t.state.name, t.value, dict(t.user_attrs)) for t in study.get_trials()]
    return study.direction.name, dict(study.user_attrs), trials


# --------------------------------------------------------------------------- item 9: foreign studies
@pytest.mark.parametrize("direction, attrs, trials", [
    ("minimize", {}, 3),  # the audit's case: a plain Optuna study with trials
    ("minimize", {}, 0),  # a blank study, but minimised: not ours either
    ("maximize", {"owner": "someone"}, 0),  # user attrs that are not ours
    ("maximize", {}, 2),  # trials that are not ours
])
def test_a_foreign_study_is_refused_and_left_unchanged(run_cli, url, direction, attrs, trials):
    study = optuna.create_study(storage=url, study_name=STAGE, direction=direction)
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for i in range(trials):
        study.add_trial(optuna.trial.create_trial(value=float(i)))
    before = _snapshot(url, STAGE)

    result = run_cli("coarse", *SMALL, "--trials", "4", "--storage", url)

    one_line_error(result, "study digits/coarse was not created by this service; use another --campaign")
    assert _snapshot(url, STAGE) == before
