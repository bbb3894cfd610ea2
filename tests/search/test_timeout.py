"""--timeout: no trial is claimed once the time is up, the running one is recorded, the same command continues."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tests.search.conftest import cwd_study, one_line_error

TRIAL_SECONDS = 10  # each trial takes this long on the clock the stage reads


@pytest.fixture
def slow_trials(monkeypatch):
    """A clock that only trials move, TRIAL_SECONDS each: the counts below do not hang on the machine's speed."""
    import search.cli.options
    import search.stages

    clock = SimpleNamespace(now=1000.0)
    fake = SimpleNamespace(time=lambda: clock.now, monotonic=time.monotonic, sleep=time.sleep)
    monkeypatch.setattr(search.stages, "time", fake)
    monkeypatch.setattr(search.cli.options, "time", fake)
    real = search.stages.run_trial

    def run_trial(*args, **kwargs):
        clock.now += TRIAL_SECONDS
        return real(*args, **kwargs)

    monkeypatch.setattr(search.stages, "run_trial", run_trial)


def states(name: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in cwd_study(name).get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


@pytest.mark.parametrize("timeout", ["25", "25s", "0.5m"])
def test_timeout_stops_claiming_and_the_same_command_continues(run_cli, slow_trials, timeout):
    args = ("coarse", "--data", "digits", "--trials", "10", "--epochs", "1", "--jobs", "1")
    result = run_cli(*args, "--timeout", timeout)
    assert result.exit_code == 0, result.output
    # claimed at 0, 10 and 20 s; at 30 s the 25 s are up: 3 finished, 7 waiting
    assert states("digits/coarse") == {"COMPLETE": 3, "WAITING": 7}
    assert (f"--timeout {timeout} is up: digits/coarse has 3 of 10 trials finished (3 run now), 7 left; run the same "
            "command again to continue") in " ".join(result.output.split())
    again = run_cli(*args)
    assert again.exit_code == 0, again.output
    assert states("digits/coarse") == {"COMPLETE": 9, "PRUNED": 1}  # exactly --trials finished, none left
    assert "is up" not in again.output


@pytest.mark.parametrize("value", ["0", "-5", "abc", "5x", "0s"])
def test_bad_timeout_is_one_line_and_nothing_is_written(run_cli, tmp_path, value):
    result = run_cli("coarse", "--data", "digits", "--trials", "2", "--epochs", "1", "--timeout", value)
    one_line_error(result, "--timeout", repr(value), "must be a time above 0")
    assert not (tmp_path / "search.db").exists()


@pytest.mark.parametrize("command", ["fine", "auto", "worker"])
def test_the_commands_that_run_or_follow_several_stages_take_no_timeout(run_cli, tmp_path, command):
    # search auto --timeout ran the coarse stage again and again once the time was up, claiming nothing each time
    got = run_cli(command, "--timeout", "5")
    assert got.exit_code == 2 and got.output.startswith("error: No such option '--timeout'.")
    assert not (tmp_path / "search.db").exists()
