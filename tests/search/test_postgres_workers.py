"""Several machines' worth of workers on a real, throwaway PostgreSQL server (tests/fixtures_pg.py).

Each test runs the real ``search`` command in separate processes against one database, as
workers on several machines would: the trial budget is shared exactly, a worker killed with
SIGKILL has its trial failed (its process gone, or its heartbeat stale) and re-run by another, and each stage of
``search auto`` is created by exactly one process.
"""
from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter

import pytest

from engine.data import DataSpec
from search.campaign import DEFAULT_SPACE, coarse_stage
from search.config import RunConfig
from search.space import FloatRange
from search.stages import create_stage
from studies.store import open_storage
from tests.fixtures_pg import create_database, drop_database, pg_url
from tests.search.procs import LONG, SMALL, budget, run, start, stopped, wait_for

HEARTBEAT = 1  # seconds; Optuna fails a trial whose heartbeat is older than 2 x this


def _create_stage(url: str, campaign: str, n: int, run_spec: RunConfig, space=DEFAULT_SPACE) -> None:
    storage = open_storage(url, heartbeat_interval=HEARTBEAT)
    try:
        create_stage(storage, coarse_stage(campaign, run_spec, space, n, seed=0))
    finally:
        storage.engine.dispose()


def _workers(url: str, campaign: str, folder, count: int = 3):
    args = ["worker", "--campaign", campaign, "--stage", "coarse", "--storage", url, "--json"]
    return [start(args, folder, f"worker{i}") for i in range(count)]


def _outage_lines(stderr: str) -> list[str]:
    """The lines saying the database failed and worked again, each with the lines it was wrapped onto joined."""
    lines: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("    ") and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return [line for line in lines if line.startswith("database ")]


def _said_down_and_back(stderr: str, retry_seconds: int) -> list[str]:
    """The two outage lines (``_outage_lines``), asserted to be one as the retries began and one as the database
    answered again."""
    down = _outage_lines(stderr)
    said = f"database unreachable, retrying for up to {retry_seconds} s: "
    assert len(down) == 2 and down[0].startswith(said), stderr
    assert re.fullmatch(r"database reachable again after \d+ s", down[1]), down
    return down


def _pid(trial) -> str:
    return trial.user_attrs.get("worker", "").rsplit(":", 1)[-1]


def test_three_workers_share_one_stage_exactly(pg_database, tmp_path):
    n = 60
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"arch.hidden": 20, "train.epochs": 2})
    _create_stage(pg_database, "pg", n, run)
    procs = _workers(pg_database, "pg", tmp_path)
    codes = [p.wait(180) for p in procs]
    assert codes == [0, 0, 0], [p.stderr for p in procs]
    final = budget(pg_database, "pg/coarse")
    assert final.finished == n and len(final.trials) == n  # none lost, none run twice
    assert sorted(t.number for t in final.trials) == list(range(n))
    ran = Counter(_pid(t) for t in final.trials)
    # shared: more than one worker ran trials (on a busy machine a late-starting worker may find none left)
    assert set(ran) <= {str(p.pid) for p in procs} and len(ran) >= 2, ran
    for p in procs:
        counts = json.loads(p.stdout)["stages"][0]["counts"]
        assert counts["complete"] + counts["pruned"] == n and counts["running"] == counts["waiting"] == 0


SLOW = RunConfig(data=DataSpec("digits")).with_params(  # about a second a trial
    {"arch.hidden": 100, "train.batch_size": 20, "train.epochs": 150})
SAFE_SPACE = {"lr": FloatRange(1e-4, 1e-3), "reg": FloatRange(1e-5, 1e-4)}  # nothing explodes early


def _stop_mid_trial(proc, url: str, name: str, min_finished: int = 0):
    """SIGSTOP ``proc`` while it is training a trial (checked after it stopped); returns that trial."""

    def attempt():
        b = budget(url, name)
        if b is None or b.finished < min_finished:
            return None
        trial = next((t for t in b.trials if t.state.name == "RUNNING" and t.params and _pid(t) == str(proc.pid)),
                     None)
        if trial is None:
            return None
        os.kill(proc.pid, signal.SIGSTOP)
        wait_for(lambda: stopped(proc.pid), 5, "the process to stop", interval=0.01)
        time.sleep(0.1)  # let the server finish a statement the process had already sent
        now = next(t for t in budget(url, name).trials if t.number == trial.number)
        if now.state.name == "RUNNING":
            return trial  # frozen in the middle of it
        os.kill(proc.pid, signal.SIGCONT)  # it had just finished that trial: try again
        return None

    return wait_for(attempt, 120, f"{proc.pid} to be training a trial")


def _state_of(url: str, name: str, number: int) -> str:
    return next(t for t in budget(url, name).trials if t.number == number).state.name


@pytest.mark.slow
def test_a_worker_killed_mid_trial_has_its_trial_failed_and_rerun_by_the_others(pg_database, tmp_path):
    n = 15
    _create_stage(pg_database, "pk", n, SLOW, SAFE_SPACE)
    # --heartbeat 30 on the command line: the stage's own interval (1 s) is what the workers use
    args = ["worker", "--campaign", "pk", "--stage", "coarse", "--heartbeat", "30", "--storage", pg_database]
    procs = [start(args, tmp_path, f"worker{i}") for i in range(3)]
    victim = procs[1]
    killed = _stop_mid_trial(victim, pg_database, "pk/coarse", min_finished=2)
    victim.popen.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    # its process gone on this machine, the survivors fail it when they next look for stale trials (a worker of
    # another machine: once its heartbeat is 2 intervals old)
    wait_for(lambda: _state_of(pg_database, "pk/coarse", killed.number) == "FAIL", 120,
             "the killed worker's trial to be failed", interval=0.1)
    survivors = [p for p in procs if p is not victim]
    assert [p.wait(180) for p in survivors] == [0, 0], [p.stderr for p in survivors]

    final = budget(pg_database, "pk/coarse")
    assert final.finished == n and final.states["RUNNING"] == final.states["WAITING"] == 0
    assert final.states["FAIL"] == 1 and len(final.trials) == n + 1
    failed = next(t for t in final.trials if t.state.name == "FAIL")
    assert failed.number == killed.number  # failed by the others, who say why: whichever of the two they saw first
    assert failed.user_attrs["stop_reason"] in (f"worker lost: its process {victim.popen.pid} on this host is gone",
                                                "worker lost: no heartbeat for more than 2 s")
    copy = next(t for t in final.trials if t.system_attrs.get("retry_of") == failed.number)
    assert copy.state.name == "COMPLETE" and copy.params == failed.params
    assert _pid(copy) in {str(p.pid) for p in survivors}
    # the order of events: killed mid-trial -> failed by the others -> its copy enqueued -> run by a survivor
    assert failed.datetime_start < failed.datetime_complete <= copy.datetime_start < copy.datetime_complete
    assert copy.number > failed.number


@pytest.mark.slow
def test_each_worker_shows_the_stage_count_not_only_its_own_trials(pg_database, tmp_path):
    n = 8
    _create_stage(pg_database, "pp", n, SLOW, SAFE_SPACE)
    args = ["worker", "--campaign", "pp", "--stage", "coarse", "--storage", pg_database]
    procs = [start(args, tmp_path, f"worker{i}") for i in range(2)]
    assert [p.wait(180) for p in procs] == [0, 0], [p.stderr for p in procs]
    ran = Counter(_pid(t) for t in budget(pg_database, "pp/coarse").trials)
    assert len(ran) == 2, ran  # both took trials (about a second each)
    for p in procs:
        # the stage's finished count on the line of each trial this worker ran
        shown = [int(m[1]) for m in re.finditer(rf"^pp/coarse\S* .*\[(\d+)/{n}\b", p.stderr, re.MULTILINE)]
        assert len(shown) == ran[str(p.pid)] and shown == sorted(shown) and shown[-1] <= n, p.stderr
        assert shown[-1] > len(shown), p.stderr  # the other worker's trials are counted too


@pytest.mark.slow
def test_a_suspended_worker_that_wakes_up_late_does_not_count_its_trial_twice(pg_database, tmp_path):
    n = 8
    _create_stage(pg_database, "ps", n, SLOW, SAFE_SPACE)
    args = ["worker", "--campaign", "ps", "--stage", "coarse", "--storage", pg_database]
    sleeper = start(args, tmp_path, "sleeper")
    frozen = _stop_mid_trial(sleeper, pg_database, "ps/coarse")  # a laptop lid closed mid-trial
    other = start(args, tmp_path, "other")
    wait_for(lambda: _state_of(pg_database, "ps/coarse", frozen.number) == "FAIL", 60,
             "the suspended worker's trial to be failed as stale")
    os.kill(sleeper.pid, signal.SIGCONT)  # it wakes up and finishes training a trial that is no longer its own
    assert sleeper.wait(120) == 0, sleeper.stderr
    assert other.wait(120) == 0, other.stderr
    final = budget(pg_database, "ps/coarse")
    assert final.finished == n and final.states["FAIL"] == 1 and len(final.trials) == n + 1
    late = next(t for t in final.trials if t.number == frozen.number)
    assert late.state.name == "FAIL" and late.value is None  # its late result was dropped, not counted


@pytest.mark.slow
def test_three_auto_processes_create_each_stage_exactly_once(pg_database, tmp_path):
    args = ["auto", *SMALL, "--trials", "12", "--max-fine", "2", "--campaign", "pa", "--heartbeat", "1",
            "--storage", pg_database, "--json"]
    procs = [start(args, tmp_path, f"auto{i}") for i in range(3)]
    codes = [p.wait(240) for p in procs]
    assert codes == [0, 0, 0], [p.stderr for p in procs]
    outputs = [json.loads(p.stdout) for p in procs]

    storage = open_storage(pg_database, create=False)
    names = [s.study_name for s in storage.get_all_studies()]
    storage.engine.dispose()
    assert names[:3] == ["pa/coarse", "pa/promote-1", "pa/fine-1"] and names[-1] == "pa/final"
    assert set(names) <= {"pa/coarse", "pa/promote-1", "pa/fine-1", "pa/promote-2", "pa/fine-2", "pa/final"}
    for name in names:
        stage = budget(pg_database, name)
        # promote-k: the 8 best configurations of the stage before; final: the top 5, 3 runs each
        expected = {"pa/final": 5 * 3, "pa/promote-1": 8, "pa/promote-2": 8}.get(name, 12)
        assert stage.finished == stage.n_trials == len(stage.trials) == expected, (name, stage.states)
        creators = [o for o in outputs for s in o["stages"] if s["study"] == name and s["created"]]
        assert len(creators) == 1, name  # by the database's unique study name, not by luck
    finals = [o["final"] for o in outputs]
    assert finals[0] == finals[1] == finals[2]  # the same decisions, the same best trial


def test_a_password_in_a_postgresql_url_is_masked(postgres_server, tmp_path):
    url = pg_url(postgres_server.port, "no_such_db").replace("postgres@", "postgres:Sup3rS3cret@")
    proc = run(["studies", "--storage", url], tmp_path, "masked")
    assert proc.popen.returncode == 2
    assert "Sup3rS3cret" not in proc.stderr + proc.stdout
    assert "postgres:***@127.0.0.1" in proc.stderr and "no_such_db" in proc.stderr
    # and on a database that works, nothing prints it either
    create_database(postgres_server.port, "masked_ok")
    try:
        ok = pg_url(postgres_server.port, "masked_ok").replace("postgres@", "postgres:Sup3rS3cret@")
        proc = run(["coarse", *SMALL, "--trials", "2", "--jobs", "2", "--storage", ok], tmp_path, "ok")
        assert proc.popen.returncode == 0, proc.stderr
        assert "Sup3rS3cret" not in proc.stderr + proc.stdout
    finally:
        drop_database(postgres_server.port, "masked_ok")


# --------------------------------------------------------------------------- issue 9 item 11: the server stopped mid-stage
def _pg_ctl(server, *args: str) -> None:
    """pg_ctl on the fixture's data folder, keeping its databases (stop -m fast, or start)."""
    r = server.runner.run([str(server.bindir / "pg_ctl"), "-D", str(server.datadir), "-l", str(server.logfile),
                           "-w", *args], cwd=server.base, timeout=90)
    assert r.returncode == 0, r.stderr or r.stdout
    server.started = args[-1] == "start"


@pytest.mark.slow
def test_a_worker_waits_for_a_restarted_server_and_completes_the_stage(postgres_server, pg_database, tmp_path):
    n = 6
    _create_stage(pg_database, "pr", n, SLOW, SAFE_SPACE)
    args = ["worker", "--campaign", "pr", "--stage", "coarse", "--storage", pg_database]
    proc = start(args, tmp_path, "worker", extra_env={"SEARCH_STORAGE_RETRY_SECONDS": "300"})
    wait_for(lambda: budget(pg_database, "pr/coarse").finished >= 1, 120, "a finished trial")
    _pg_ctl(postgres_server, "-m", "fast", "stop")  # every connection is cut
    try:
        time.sleep(3)  # the worker meets the stopped server: it retries instead of dying
        assert proc.popen.poll() is None, proc.stderr
    finally:
        _pg_ctl(postgres_server, "start")
    assert proc.wait(300) == 0, proc.stderr
    # it said so, once as its retries began and once as the server answered again (it was silent for the outage)
    assert "database server" in _said_down_and_back(proc.stderr, 300)[0]
    final = budget(pg_database, "pr/coarse")
    assert final.finished == n and final.states["RUNNING"] == final.states["WAITING"] == 0
    assert final.problems() == []


@pytest.mark.slow
def test_a_command_with_jobs_says_once_for_all_its_workers_that_the_server_is_down_and_back(
        postgres_server, pg_database, tmp_path):
    args = ["coarse", "--campaign", "pj", *LONG, "--trials", "6", "--jobs", "2", "--storage", pg_database]
    proc = start(args, tmp_path, "coarse", extra_env={"SEARCH_STORAGE_RETRY_SECONDS": "300"})
    wait_for(lambda: (b := budget(pg_database, "pj/coarse")) is not None and b.finished >= 1, 120, "a finished trial")
    _pg_ctl(postgres_server, "-m", "fast", "stop")
    try:
        time.sleep(3)
    finally:
        _pg_ctl(postgres_server, "start")
    assert proc.wait(300) == 0, proc.stderr
    # its own worker loop, its watcher of the other worker process, and that process: two lines between them
    assert "database server" in _said_down_and_back(proc.stderr, 300)[0]


@pytest.mark.slow
def test_a_server_down_past_the_retry_period_stops_the_worker_with_one_line_and_a_rerun_completes(
        postgres_server, pg_database, tmp_path):
    n = 6
    _create_stage(pg_database, "pd", n, SLOW, SAFE_SPACE)
    args = ["worker", "--campaign", "pd", "--stage", "coarse", "--storage", pg_database]
    proc = start(args, tmp_path, "worker", extra_env={"SEARCH_STORAGE_RETRY_SECONDS": "2"})
    wait_for(lambda: budget(pg_database, "pd/coarse").finished >= 1, 120, "a finished trial")
    _pg_ctl(postgres_server, "-m", "fast", "stop")
    try:
        assert proc.wait(300) == 1, proc.stderr
    finally:
        _pg_ctl(postgres_server, "start")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]  # besides progress lines
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == errors[0] and "this worker stopped after retrying for 2 s" in errors[0]
    assert "database server" in errors[0]  # "cannot reach the database server" or "... closed the connection"

    again = run(args, tmp_path, "again", timeout=300)
    assert again.popen.returncode == 0, again.stderr
    final = budget(pg_database, "pd/coarse")
    assert final.finished == n and final.states["RUNNING"] == final.states["WAITING"] == 0
    assert final.problems() == []


def test_a_following_worker_waits_on_a_database_still_empty_for_its_campaign(pg_database, run_cli, monkeypatch):
    # a PostgreSQL database made with createdb and a search worker --follow started on it before search auto: it
    # stopped at once ("no Optuna study database at ..."), where on a database with no campaign yet it waits
    from dataclasses import replace

    from search.cli import stages as stages_cli
    from tests.search.conftest import one_line_error

    assert one_line_error(run_cli("worker", "--storage", pg_database)) == (  # without --follow: one line, exit 2
        f"error: no Optuna study database at storage {pg_database} yet: the database is empty; search coarse or "
        "search auto makes one")
    run_spec = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    polls = []

    def sleep(seconds):  # two polls find no table, the third the campaign's final stage ("search auto" made it)
        assert seconds == stages_cli.FOLLOW_POLL_SECONDS
        polls.append(seconds)
        if len(polls) == 3:
            storage = open_storage(pg_database)
            create_stage(storage, replace(coarse_stage("first", run_spec, DEFAULT_SPACE, 2, seed=1), stage="final"))
            storage.engine.dispose()

    monkeypatch.setattr(time, "sleep", sleep)
    followed = run_cli("worker", "--follow", "--campaign", "first", "--storage", pg_database)
    assert followed.exit_code == 0, followed.output
    assert len(polls) == 3 and followed.stderr.count("waiting") == 1
    assert " ".join(followed.stderr.split()).startswith(
        "waiting for campaign first to be created (known campaigns: none; Ctrl-C stops) ")
    final = budget(pg_database, "first/final")
    assert final.finished == 2 and len(final.trials) == 2  # the worker ran both


@pytest.mark.parametrize("waiting_for", ["next stage", "campaign"])
def test_a_following_worker_waits_for_a_server_restarted_between_stages(postgres_server, pg_database, run_cli,
                                                                       monkeypatch, waiting_for):
    # search worker --follow waiting for the next stage (search auto deciding it, or a campaign not created yet) met a
    # server restarted meanwhile with "error: the database failed: ...", exit 1, where during a stage's trials it
    # retries for $SEARCH_STORAGE_RETRY_SECONDS: every worker of a cluster stopped at a restart between two stages
    from dataclasses import replace

    from search.cli import stages as stages_cli

    run_spec = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"train.epochs": 1})
    if waiting_for == "next stage":
        _create_stage(pg_database, "fw", 2, run_spec)
    real_sleep, polls, outage = time.sleep, [], []

    def sleep(seconds):  # the first poll finds the server stopped, the second the campaign's final stage
        if seconds == stages_cli.FOLLOW_POLL_SECONDS:
            polls.append(seconds)
            if len(polls) == 1:
                _pg_ctl(postgres_server, "-m", "fast", "stop")  # every connection of the worker's pool is cut
                outage.append("stopped")
            elif len(polls) == 2:
                storage = open_storage(pg_database)
                create_stage(storage, replace(coarse_stage("fw", run_spec, DEFAULT_SPACE, 2, seed=1), stage="final"))
                storage.engine.dispose()
        elif outage == ["stopped"] and seconds >= 0.1:  # the worker's first retry: the server is back
            _pg_ctl(postgres_server, "start")
            outage.append("started")
        else:
            real_sleep(seconds)  # pg_ctl's own waits

    monkeypatch.setattr(time, "sleep", sleep)
    try:
        followed = run_cli("worker", "--follow", "--campaign", "fw", "--jobs", "1", "--storage", pg_database)
    finally:
        if outage == ["stopped"]:
            _pg_ctl(postgres_server, "start")
    assert followed.exit_code == 0, followed.output
    assert outage == ["stopped", "started"] and len(polls) == 2
    down = _said_down_and_back(followed.stderr, 60)
    # a line saying the retries began does not tell to run the command again (it said so after "closed the connection")
    assert "error" not in followed.stderr and "again (" not in down[0]
    for stage in ("fw/coarse", "fw/final") if waiting_for == "next stage" else ("fw/final",):
        final = budget(pg_database, stage)
        assert final.finished == 2 and len(final.trials) == 2  # the worker ran both stages' trials


def test_a_login_that_may_only_read_is_refused_by_a_writing_command_in_one_line(pg_database, run_cli):
    # a PostgreSQL login granted SELECT alone (an analyst's): search worker and search coarse ended in Optuna's
    # traceback ("permission denied for table studies", StorageInternalError), exit 1
    import contextlib
    import uuid

    import psycopg2
    import sqlalchemy

    from tests.search.conftest import one_line_error

    _create_stage(pg_database, "ro", 2, RunConfig(data=DataSpec("digits", train_size=200)))
    role = f"reader_{uuid.uuid4().hex[:8]}"
    dsn = sqlalchemy.engine.make_url(pg_database).set(drivername="postgresql").render_as_string(hide_password=False)
    with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN')
        cursor.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        conn.commit()
    url = sqlalchemy.engine.make_url(pg_database).set(username=role).render_as_string(hide_password=False)
    line = (f"error: storage {url}: its login may read the study tables but not write them (no INSERT or UPDATE on "
            "studies, study_directions, study_system_attributes, ...): this command writes; give a login that may, "
            "or read with search studies, trials, best, report or query")
    for command in (("worker", "--campaign", "ro"),
                    ("coarse", "--campaign", "other", "--trials", "2", "--epochs", "1", "--jobs", "1")):
        assert one_line_error(run_cli(*command, "--storage", url)) == line
    assert budget(pg_database, "other/coarse") is None
    assert [t.state.name for t in budget(pg_database, "ro/coarse").trials] == ["WAITING", "WAITING"]
    listed = run_cli("studies", "--storage", url)  # reading still works
    assert listed.exit_code == 0 and "ro/coarse" in listed.stdout


def test_search_auto_waits_for_a_server_restarted_between_its_stages(postgres_server, pg_database, run_cli,
                                                                     monkeypatch):
    # stopped just after promote-1, as search auto refined the space on it: "error: the database failed: the database
    # server closed the connection (stopped or restarted?) (...); run the same command again", exit 1
    import search.campaign as campaign

    real_sleep, real_refine, outage = time.sleep, campaign.refined_stage, []

    def refine(*args, **kwargs):
        if not outage:
            _pg_ctl(postgres_server, "-m", "fast", "stop")  # every connection of the command's pool is cut
            outage.append("stopped")
        return real_refine(*args, **kwargs)

    def sleep(seconds):
        if outage == ["stopped"] and seconds >= 0.1:  # the command's first retry: the server is back
            _pg_ctl(postgres_server, "start")
            outage.append("started")
        else:
            real_sleep(seconds)

    monkeypatch.setattr(campaign, "refined_stage", refine)
    monkeypatch.setattr(time, "sleep", sleep)
    try:
        result = run_cli("auto", *SMALL, "--campaign", "pgr", "--trials", "4", "--max-fine", "1", "--promote", "2",
                         "--top", "2", "--repeats", "1", "--retrain-seeds", "1", "--jobs", "1", "--storage",
                         pg_database)
    finally:
        if outage == ["stopped"]:
            _pg_ctl(postgres_server, "start")
    assert result.exit_code == 0, result.output
    assert outage == ["stopped", "started"]
    _said_down_and_back(result.stderr, 60)
    for stage, n in (("pgr/coarse", 4), ("pgr/promote-1", 2), ("pgr/fine-1", 4), ("pgr/final", 2)):
        final = budget(pg_database, stage)
        assert final.finished == n and len(final.trials) == n, stage
