"""Rough handling on one machine: signals, kills at random moments, concurrent commands, hostile input.

The signal and kill tests run the real command (``python -m search``) in processes. Each checks
the budget in the database: a stage of N trials ends with exactly N finished, none RUNNING.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import socket
import sqlite3
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner

from search.cli import cli
from tests.search.conftest import one_line_error
from studies.store import open_storage
from tests.cifar_files import write_cifar_batch, write_cifar_folder
from tests.search.procs import LONG, SMALL, budget, run, start, training, wait_for
from tests.unwritable import unwritable

STAGE = "digits/coarse"


def _finished(url: str) -> int:
    b = budget(url, STAGE)
    return b.finished if b else 0


# --------------------------------------------------------------------------- signals
def test_sigterm_fails_the_running_trial_as_interrupted_and_the_same_command_completes(tmp_path, url):
    args = ["coarse", *LONG, "--trials", "3", "--heartbeat", "1", "--storage", url]
    proc = start(args, tmp_path, "first")
    wait_for(lambda: _finished(url) == 1 and len(training(url, STAGE)) == 1, 60, "the second trial to be training")
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "terminated: the database is consistent; run the same command again to continue")
    after = budget(url, STAGE)
    assert after.finished == 1 and after.states["RUNNING"] == 0
    assert after.states["FAIL"] == 1 and after.states["WAITING"] == 2  # the interrupted trial's copy waits
    failed = next(t for t in after.trials if t.state.name == "FAIL")
    assert failed.user_attrs["stop_reason"] == "interrupted"
    assert after.retries == [failed.number] and after.problems() == []

    again = run(args, tmp_path, "again")
    assert again.popen.returncode == 0, again.stderr
    final = budget(url, STAGE)
    assert final.finished == 3 and final.states["RUNNING"] == final.states["WAITING"] == 0
    copy = next(t for t in final.trials if t.system_attrs.get("retry_of") == failed.number)
    assert copy.params == failed.params and copy.state.name in ("COMPLETE", "PRUNED")  # the same point again


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigint-to-group", "sigterm-to-parent"])
def test_signal_to_a_two_job_run_leaves_no_running_trial(tmp_path, url, how):
    args = ["coarse", *LONG, "--trials", "4", "--jobs", "2", "--heartbeat", "1", "--storage", url]
    proc = start(args, tmp_path, "jobs", new_session=True)
    wait_for(lambda: len(training(url, STAGE)) == 2, 60, "both workers to train")
    if how == "sigint-to-group":
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        expected = 130
    else:
        os.kill(proc.pid, signal.SIGTERM)  # only the parent: it must pass it on to its workers
        expected = 143
    assert proc.wait(60) == expected, proc.stderr
    assert "Traceback" not in proc.stderr
    after = budget(url, STAGE)
    assert after.states["RUNNING"] == 0 and after.problems() == []
    interrupted = [t for t in after.trials if t.state.name == "FAIL"]
    assert len(interrupted) == 2 and {t.user_attrs["stop_reason"] for t in interrupted} == {"interrupted"}
    if how == "sigterm-to-parent":
        again = run(args, tmp_path, "again")
        assert again.popen.returncode == 0, again.stderr
        final = budget(url, STAGE)
        assert final.finished == 4 and final.states["RUNNING"] == final.states["WAITING"] == 0


def _importing_numpy(pid: int) -> bool:
    """Whether process ``pid`` has mapped NumPy's core library: Python has started (a Ctrl-C before its ``site``
    module is imported ends the interpreter with a fatal error before any of the command's code can run)."""
    try:
        return "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_ctrl_c_while_the_command_starts_prints_one_line_and_no_traceback(tmp_path, url):
    # while Python imports NumPy, SQLAlchemy and Optuna (about 0.1 to 0.8 s in) nothing is open yet; each Ctrl-C
    # lands a while after NumPy's import began, however slowly a loaded machine starts Python
    for i, delay in enumerate((0.0, 0.05, 0.1, 0.2, 0.35, 0.5)):
        proc = start(["coarse", *LONG, "--trials", "4", "--storage", url], tmp_path, f"early{i}", new_session=True)
        wait_for(lambda: _importing_numpy(proc.popen.pid) or proc.popen.poll() is not None, 60, "NumPy's import",
                 interval=0.005)
        time.sleep(delay)
        os.killpg(proc.popen.pid, signal.SIGINT)
        assert proc.wait(60) == 130, (delay, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("interrupted: "), \
            (delay, proc.stderr)
    # a Ctrl-C on a fast start can land once the stage is made: it is then whole, nothing of it left RUNNING
    made = budget(url, STAGE)
    assert made is None or (made.problems() == [] and made.states["RUNNING"] == 0), made
    final = run(["coarse", *SMALL, "--trials", "4", "--campaign", "after", "--storage", url], tmp_path, "after")
    assert final.popen.returncode == 0, final.stderr


def _site_hook(tmp_path: Path, code: str) -> dict[str, str]:
    """The environment of a ``search`` process that runs ``code`` at start-up (a sitecustomize module)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": os.pathsep.join([str(hook), str(Path(__file__).resolve().parents[2])])}


def test_ctrl_c_that_cuts_generated_code_still_exits_130(tmp_path, url):
    # Ctrl-C landing inside a string exec (the code dataclasses, namedtuple and SQLAlchemy generate) made
    # ``python -m search`` end with SIGINT (-2) after printing its line: CPython remembers such an interrupt even
    # when it is caught. Here the command's body raises it from a string exec, as such a Ctrl-C would.
    hooked = _site_hook(tmp_path, "import click\n"
                                  "def _cut(self, *args, **kwargs):\n"
                                  "    exec('raise KeyboardInterrupt')\n"
                                  "click.Command.invoke = _cut\n")
    proc = start(["coarse", *SMALL, "--trials", "2", "--storage", url], tmp_path, "cut", extra_env=hooked)
    assert proc.wait(60) == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("interrupted: ") and "Traceback" not in proc.stderr


AUTO = ["auto", *SMALL, "--trials", "4", "--max-fine", "0", "--top", "2", "--repeats", "1", "--retrain-seeds", "1"]


def test_sigterm_while_the_command_starts_prints_one_line_and_exits_143(tmp_path, url):
    # while the CLI's modules import nothing is open; SIGTERM (timeout, kill) then ended the process with no line
    hooked = _site_hook(tmp_path, "import os, signal, sys\n"
                                  "class _Term:\n"
                                  "    def find_spec(self, name, path=None, target=None):\n"
                                  "        if name == 'click':\n"
                                  "            os.kill(os.getpid(), signal.SIGTERM)\n"
                                  "sys.meta_path.insert(0, _Term())\n")
    proc = start([*AUTO, "--storage", url], tmp_path, "term", extra_env=hooked)
    assert (proc.wait(60), proc.stderr) == (
        143, "terminated: the database is consistent; run the same command again to continue\n")
    assert not (tmp_path / "search.db").exists()


def test_sigterm_once_search_auto_printed_its_summary_keeps_its_exit_code(tmp_path, url):
    # the few tenths of a second Python takes to shut down after the last line: SIGTERM then killed the process
    # (143 in the shell, no line) though the campaign was done and printed
    hooked = _site_hook(tmp_path, "import atexit, os, signal, time\n"
                                  "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.2)))\n")
    proc = start([*AUTO, "--storage", url], tmp_path, "over", extra_env=hooked)
    assert proc.wait(120) == 0, proc.stderr
    assert "chosen: " in proc.stdout and "terminated" not in proc.stderr
    for stage in ("digits/coarse", "digits/final"):
        assert budget(url, stage).states["RUNNING"] == 0


def test_ctrl_c_that_python_drops_in_a_weakref_callback_still_stops_the_command(tmp_path, url):
    # Garbage collection runs __del__ methods and weakref callbacks at any instruction; an exception raised in one
    # is printed as "Exception ignored in ..." and dropped. A Ctrl-C landing there was ignored: the stage ran on.
    hooked = _site_hook(tmp_path, "import os, signal, click\n"
                                  "class _Collected:\n"
                                  "    def __del__(self):\n"
                                  "        os.kill(os.getpid(), signal.SIGINT)\n"
                                  "        sum(range(1000))  # the handler runs at the next instruction, in __del__\n"
                                  "_invoke = click.Command.invoke\n"
                                  "def _invoke_after_gc(self, ctx):\n"
                                  "    _Collected()\n"
                                  "    return _invoke(self, ctx)\n"
                                  "click.Command.invoke = _invoke_after_gc\n")
    proc = start(["coarse", *SMALL, "--trials", "20", "--storage", url], tmp_path, "dropped", extra_env=hooked)
    assert proc.wait(60) == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("interrupted: ")
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    state = budget(url, STAGE)
    assert state.finished == 0 and state.problems() == []  # stopped before its first trial, nothing half-written


def test_ctrl_c_while_the_workers_start_stops_the_command(tmp_path, url):
    # --jobs starts its worker processes with SIGINT held from them; a Ctrl-C landing in those milliseconds was
    # dropped (SIGINT was ignored there) and the stage ran to its end. Each worker notes whether SIGINT is blocked
    # as its interpreter starts: it must be, or a Ctrl-C then would print a worker's traceback.
    masks = tmp_path / "masks"
    masks.mkdir()
    hooked = _site_hook(tmp_path, "import os, signal, sys\n"
                                  "if '--multiprocessing-fork' in sys.argv:\n"
                                  f"    with open(os.path.join({str(masks)!r}, str(os.getpid())), 'w') as f:\n"
                                  "        f.write(str(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n"
                                  "if os.environ.get('CTRL_C_AT_START'):\n"
                                  "    from multiprocessing.process import BaseProcess\n"
                                  "    _start = BaseProcess.start\n"
                                  "    def _start_after_ctrl_c(self):\n"
                                  "        os.kill(os.getpid(), signal.SIGINT)\n"
                                  "        return _start(self)\n"
                                  "    BaseProcess.start = _start_after_ctrl_c\n")
    quiet = start(["coarse", *LONG, "--trials", "6", "--jobs", "3", "--storage", url, "--campaign", "quiet"],
                  tmp_path, "quiet", extra_env=hooked)
    assert quiet.wait(60) == 0, quiet.stderr
    assert sorted(path.read_text() for path in masks.iterdir()) == ["True", "True"]  # both workers started blocked
    proc = start(["coarse", *LONG, "--trials", "6", "--jobs", "2", "--storage", url], tmp_path, "spawning",
                 extra_env={**hooked, "CTRL_C_AT_START": "1"})
    assert proc.wait(60) == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("interrupted: ") and "Traceback" not in proc.stderr
    state = budget(url, STAGE)
    assert state.finished < 6 and state.problems() == [] and state.states["RUNNING"] == 0


# --------------------------------------------------------------------------- SIGKILL at random moments
@pytest.mark.slow
def test_twenty_kills_at_random_moments_then_the_stage_reaches_exactly_n(tmp_path, url):
    n = 200
    args = ["coarse", *SMALL, "--trials", str(n), "--heartbeat", "1", "--storage", url]
    # how long this machine takes to start and run one trial: kills are spread over start-up, stage
    # creation, claims, trials, recording and failing stale trials
    t0 = time.monotonic()
    assert run(["coarse", *SMALL, "--trials", "1", "--storage", f"sqlite:///{tmp_path / 'warm.db'}"],
               tmp_path, "warm").popen.returncode == 0
    startup = time.monotonic() - t0
    rng = random.Random(2024)
    rounds = []
    for i in range(20):
        proc = start(args, tmp_path, f"round{i}")
        if i % 3 == 0:  # while the process starts, opens the database and joins the stage
            delay = rng.uniform(0.1, startup)
        else:  # while it claims, trains, records, or fails and re-enqueues stale trials
            wait_for(lambda: proc.err.stat().st_size > 0 or proc.popen.poll() is not None, 30,
                     "the first trial's log line", interval=0.02)  # printed when its first trial ends
            delay = rng.uniform(0.0, 0.4)
        time.sleep(delay)
        proc.popen.kill()  # SIGKILL: no handler runs
        proc.wait(10)
        state = budget(url, STAGE)
        killed_in_trial = bool(state) and any(
            t.state.name == "RUNNING" and t.user_attrs.get("worker", "").endswith(f":{proc.pid}") for t in state.trials)
        rounds.append((i, round(delay, 2), killed_in_trial, dict(state.states) if state else None))
        assert state is None or state.problems() == [], rounds
    mid_trial = sum(1 for r in rounds if r[2])
    started = time.monotonic()
    final_run = run(args, tmp_path, "final")
    assert final_run.popen.returncode == 0, final_run.stderr
    final = budget(url, STAGE)
    assert final.finished == n, rounds
    assert final.states["RUNNING"] == 0 and final.states["WAITING"] == 0 and final.unretried == []
    assert final.problems() == []
    # every failed trial is one a kill interrupted, re-run exactly once
    assert sorted(final.retries) == sorted(t.number for t in final.trials if t.state.name == "FAIL")
    print(f"\nstart-up {startup:.2f} s; {mid_trial} of 20 kills left a RUNNING trial; "
          f"{final.states['FAIL']} trials failed and re-run; final run {time.monotonic() - started:.1f} s")


def test_creator_killed_before_enqueueing_is_completed_by_the_next_command(tmp_path, url, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # what a creator killed right after create_study leaves: a study without attributes or trials
    optuna.create_study(storage=open_storage(url), study_name=STAGE, direction="maximize")
    result = CliRunner().invoke(cli, ["coarse", *SMALL, "--trials", "5", "--storage", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stages"][0]["created"] is True
    final = budget(url, STAGE)
    assert final.ready and final.finished == 5 and len(final.trials) == 5


# --------------------------------------------------------------------------- concurrent commands on SQLite
@pytest.mark.slow
def test_the_same_stage_command_in_four_terminals_shares_the_budget(tmp_path, url):
    # the default heartbeat: with 1 s, a loaded machine delays beats past 2 s and live trials get failed and re-run
    args = ["coarse", *SMALL, "--trials", "200", "--storage", url, "--json"]
    procs = [start(args, tmp_path, f"terminal{i}") for i in range(4)]
    codes = [p.wait(180) for p in procs]
    for p in procs:
        assert "locked" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert codes == [0, 0, 0, 0]
    created = [json.loads(p.stdout)["stages"][0]["created"] for p in procs]
    assert created.count(True) == 1
    final = budget(url, STAGE)
    assert final.finished == 200 and len(final.trials) == 200
    assert sorted(t.number for t in final.trials) == list(range(200))
    workers = {t.user_attrs["worker"] for t in final.trials}
    assert len(workers) >= 2  # the trials were shared, not run by the first one alone


# --------------------------------------------------------------------------- hostile and wrong input
# tests/search/test_cli.py covers low > high, 0 on a log scale, nan, text, --trials 0, --jobs 0, -1 epochs
@pytest.mark.parametrize("args,fragments", [
    (["--lr", "1e-3:1e-3"], ["--lr", "low < high"]),
    (["--lr", "-1:1"], ["--lr", "> 0"]),
    (["--reg", "1e-3:inf"], ["--reg", "finite"]),
    (["--reg", "1e-3:lots"], ["--reg", "1e-3:lots", "not a number"]),
    (["--trials", "-5"], ["--trials", "-5"]),
    (["--epochs", "0"], ["--epochs", "0"]),
    (["--jobs", "-2"], ["--jobs", "-2"]),
    (["--heartbeat", "0"], ["--heartbeat", "0"]),
    (["--train-size", "200", "--batch-size", "500"], ["batch size 500", "200 samples"]),
])
def test_bad_stage_options_exit_2_and_write_nothing(run_cli, tmp_path, args, fragments):
    one_line_error(run_cli("coarse", *SMALL[:2], *args), *fragments)
    assert not (tmp_path / "search.db").exists()


class _CreatesMarker:
    """Unpickling this would call open(marker, "w")."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _truncate(root: Path) -> None:
    raw = (root / "data_batch_2").read_bytes()
    (root / "data_batch_2").write_bytes(raw[: len(raw) // 2])


def _bad_shape(root: Path) -> None:
    write_cifar_batch(root / "data_batch_3", np.zeros((3, 100), dtype=np.uint8), [0, 1, 2])


def _bad_labels(root: Path) -> None:
    write_cifar_batch(root / "data_batch_4", np.zeros((3, 3072), dtype=np.uint8), [0, 10, 1])


def _malicious(root: Path) -> None:
    evil = {b"data": _CreatesMarker(str(root.parent / "pwned")), b"labels": [0]}
    (root / "data_batch_1").write_bytes(pickle.dumps(evil, protocol=4))


@pytest.mark.parametrize("damage,fragments", [
    (None, ["no-such-folder"]),
    (_truncate, ["data_batch_2", "corrupt"]),
    (_bad_shape, ["data_batch_3"]),
    (_bad_labels, ["data_batch_4", "0..9"]),
    (_malicious, ["data_batch_1", "refused", "open"]),
], ids=["missing-folder", "truncated", "wrong-shape", "label-out-of-range", "code-in-pickle"])
def test_bad_cifar_data_exits_2_runs_nothing_and_writes_nothing(run_cli, tmp_path, damage, fragments):
    if damage is None:
        data_dir = tmp_path / "no-such-folder"
    else:
        data_dir = write_cifar_folder(tmp_path / "cifar", 20, seed=1)
        damage(data_dir)
    one_line_error(run_cli("coarse", "--data", "cifar10", "--data-dir", str(data_dir), "--trials", "2",
                           "--epochs", "1"), *fragments)
    assert not (tmp_path / "search.db").exists()
    assert not (tmp_path / "cifar" / "pwned").exists()  # the pickle's code never ran


def _coarse_db(run_cli) -> None:
    assert run_cli("coarse", *SMALL, "--trials", "3").exit_code == 0


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_a_file_that_is_not_a_database_is_refused_and_untouched(run_cli, tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("my notes, not a database\n")
    before = _snapshot(path)
    for command in (["coarse", *SMALL, "--trials", "2"], ["studies"], ["trials"]):
        one_line_error(run_cli(*command, "--storage", f"sqlite:///{path}"), "notes.db", "not a SQLite database")
    assert _snapshot(path) == before


def test_a_database_of_a_newer_schema_is_refused_and_untouched(run_cli, tmp_path):
    _coarse_db(run_cli)
    path = tmp_path / "search.db"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'v99.0.0.a'")
    conn.close()
    before = _snapshot(path)
    for command in (["coarse", *SMALL, "--trials", "3"], ["worker", "--campaign", "digits"], ["studies"]):
        one_line_error(run_cli(*command), "newer or unknown Optuna schema", "v99.0.0.a")
    assert _snapshot(path) == before


def test_a_read_only_database_is_refused_for_writing_and_still_readable(run_cli, tmp_path):
    _coarse_db(run_cli)
    path = tmp_path / "search.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = _snapshot(path)
    with unwritable(path):
        one_line_error(run_cli("coarse", *SMALL, "--trials", "5"), "search.db", "read-only")
        one_line_error(run_cli("worker", "--campaign", "digits", "--stage", "coarse"), "read-only")
        studies = run_cli("studies", "--format", "json")
        assert studies.exit_code == 0, studies.output
        assert json.loads(studies.stdout)[0]["study"] == STAGE
    assert _snapshot(path) == before


def test_unknown_campaign_or_stage_lists_the_known_ones(run_cli):
    _coarse_db(run_cli)
    assert run_cli("coarse", *SMALL, "--trials", "2", "--campaign", "other").exit_code == 0
    unknown = "error: unknown campaign 'nope'; known campaigns: digits, other"
    assert one_line_error(run_cli("worker", "--campaign", "nope")) == unknown
    # the campaign's own stages: it listed the first few studies of every campaign, the other's among them
    assert one_line_error(run_cli("worker", "--campaign", "digits", "--stage", "fine-7")) == (
        "error: campaign digits has no stage 'fine-7'; its stages: coarse")
    assert one_line_error(run_cli("explain", "digits/fine1:0")) == (
        "error: unknown study 'digits/fine1'; studies of campaign digits: digits/coarse")
    # a worker starts no campaign: "(use --campaign NAME to start a new campaign)" was no advice for it
    joined = run_cli("worker", "--campaign", "digits", "--stage", "coarse")
    assert joined.exit_code == 0 and "digits/coarse was already complete; nothing to run\n" in joined.stdout
    for command in ("grid", "best", "trials"):
        assert one_line_error(run_cli(command, "--campaign", "nope")) == unknown, command


@pytest.mark.parametrize("sql,refusal", [
    ("SELECT count(*) FROM trials; DELETE FROM trials", "one statement at a time, found 2 separated by ';'"),
    *[(sql, f"only read-only queries (EXPLAIN, SELECT, VALUES, WITH) may run, got {sql.split()[0]!r}")
      for sql in ("UPDATE trials SET state = 'FAIL'", "DROP TABLE trials",
                  "INSERT INTO studies (study_name) VALUES ('x')")],
])
def test_query_refuses_writing_and_several_statements(run_cli, tmp_path, sql, refusal):
    _coarse_db(run_cli)
    before = _snapshot(tmp_path / "search.db")
    assert one_line_error(run_cli("query", sql)) == f"error: refused: {refusal}"
    assert _snapshot(tmp_path / "search.db") == before
    count = run_cli("query", "SELECT count(*) AS n FROM trials", "--format", "json")
    assert json.loads(count.stdout)[0]["n"] == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", [
    ["coarse", *SMALL, "--trials", "2"], ["worker", "--campaign", "digits"], ["studies"], ["trials"],
    ["query", "SELECT 1"], ["best"],
])
def test_a_password_in_the_storage_url_is_never_printed(run_cli, command):
    url = f"postgresql://searcher:Sup3rS3cret@127.0.0.1:{_free_port()}/search?connect_timeout=3"
    line = one_line_error(run_cli(*command, "--storage", url), "searcher:***@127.0.0.1")
    assert "Sup3rS3cret" not in line
