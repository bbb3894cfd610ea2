"""The progress bar of a stage at 80 columns: its counts stay whole."""
from __future__ import annotations

import io

import optuna
from optuna.trial import TrialState

from search.progress import Progress


def _trial(number: int, state: TrialState, value: float | None) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=state, value=value, params={}, distributions={}) if value is not None \
        else optuna.trial.create_trial(state=state, params={}, distributions={})


def test_the_bar_keeps_its_counts_at_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    progress = Progress("my-campaign/promote-2", 100, mode="bar", stream=out)
    finished = [_trial(0, TrialState.COMPLETE, 0.9815), _trial(1, TrialState.PRUNED, None),
                _trial(2, TrialState.FAIL, None)]
    for number, t in enumerate(finished):
        t.number = number
        progress.trial(t)
    progress.close()
    last = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()][-1]
    assert len(last) <= 77, last
    assert last.startswith("my-campaign/promote-2: 2/100 |"), last
    assert last.endswith(", best 0.9815 pruned 1 failed 1"), last
