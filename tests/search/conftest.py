"""Fixtures and checks shared by the CLI tests."""
from __future__ import annotations

import optuna
import pytest
from click.testing import CliRunner, Result

from search.cli import cli
from studies.store import open_storage


@pytest.fixture(autouse=True)
def storage_outage_said_by_default(monkeypatch):
    """Each test starts with this process's database-outage lines said on stderr and no outage under way: a
    ``Progress`` a test leaves open would otherwise keep saying them on its own stream for the tests after it."""
    from search.stages import STORAGE_OUTAGE, _say_on_stderr

    monkeypatch.setattr(STORAGE_OUTAGE, "say", _say_on_stderr)
    monkeypatch.setattr(STORAGE_OUTAGE, "since", None)


@pytest.fixture
def url(tmp_path):
    """A SQLite database URL in the test's folder."""
    return f"sqlite:///{tmp_path / 'search.db'}"


@pytest.fixture
def run_cli(tmp_path, monkeypatch):
    """Invoke the `search` CLI in a fresh working directory with no $SEARCH_STORAGE."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def stages_made_only(run_cli, monkeypatch, *args: str) -> Result:
    """``run_cli(*args)`` stopped by a Ctrl-C as its first stage would begin its trials: the stage is stored, none
    of its trials run (exit 130)."""
    import search.campaign

    def stopped_before_any_trial(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(search.campaign, "run_existing", stopped_before_any_trial)
        return run_cli(*args)


def cwd_study(name: str) -> optuna.Study:
    """Study ``name`` of the search.db in the current folder (the one ``run_cli`` works in)."""
    return optuna.load_study(study_name=name, storage=open_storage("sqlite:///search.db", create=False))


def one_line_error(result: Result, *fragments: str) -> str:
    """Assert exit code 2 and exactly one line on stderr containing every fragment; return the line."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
