"""`search compare` (random vs grid, repeated), `search report` and `search dashboard` through the CLI."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from wsgiref.simple_server import WSGIServer

import optuna
import pytest

from search.compare import compare_pair, default_compare_campaign
from search.config import RunConfig
from search.space import Choice, FloatRange, IntRange
from studies.queries import trials_frame
from studies.store import open_storage
from tests.fixtures_pg import free_port
from tests.search.conftest import one_line_error, stages_made_only
from tests.search.procs import SEARCH, env

SMALL = ("--repeats", "2", "--trials", "4", "--epochs", "1", "--train-size", "200", "--val-size", "200")


def test_compare_pair_is_a_random_and_a_grid_stage_at_the_same_budget():
    space = {"lr": FloatRange(1e-5, 1e-1), "reg": FloatRange(1e-6, 1e-2)}
    run = RunConfig().with_params({"train.epochs": 2})
    random_stage, grid = compare_pair("c", run, space, n_trials=10, seed=5, repeat=3)
    assert (random_stage.name, grid.name) == ("c/random-3", "c/grid-3")
    assert random_stage.sampler == "random" and grid.sampler == "grid"
    assert random_stage.seed == grid.seed == 8
    assert random_stage.space == grid.space and random_stage.run == grid.run
    assert (random_stage.n_trials, grid.n_trials) == (9, 9)  # k = floor(sqrt(10)) = 3 -> 3 x 3; random as many
    assert grid.parent == random_stage.name
    # a grid with more points than the budget (every category at least once) leaves random at its budget
    small, bigger = compare_pair("c", run, {**space, "activation": Choice(("relu", "tanh", "elu"))}, n_trials=2, seed=5,
                             repeat=0)
    assert (small.n_trials, bigger.n_trials) == (2, 3)


def test_compare_pair_grid_keeps_its_size_when_an_integer_range_has_fewer_values_than_k():
    space = {"lr": FloatRange(1e-5, 1e-1), "hidden": IntRange(8, 10)}
    random_stage, grid = compare_pair("c", RunConfig(), space, n_trials=25, seed=0, repeat=0)
    # k = 5: 5 lr values x the 3 integers 8, 9, 10 = 15 points, and the random stage runs 15 trials beside them
    assert (random_stage.n_trials, grid.n_trials) == (15, 15)
    assert sorted({p["hidden"] for p in grid.points}) == [8, 9, 10]
    assert len({p["lr"] for p in grid.points}) == 5
    assert grid.range_notes == ("grid of 15 points (5 lr x 3 hidden) beside 15 trials of c/random-0",)


def test_default_campaign_is_compare_and_a_utc_timestamp():
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert default_compare_campaign(when) == "compare-20260102T030405Z"
    assert re.fullmatch(r"compare-\d{8}T\d{6}Z", default_compare_campaign())


def test_an_interrupted_compare_names_the_campaign_its_rerun_must_be_given(run_cli, tmp_path, monkeypatch):
    # "run the same command again to continue" started a new compare-<timestamp> campaign from its first stage
    import search.compare

    real = search.compare.run_compare

    def stopped_after_the_first_stage(*args, on_stage, **kwargs):
        def stage_done(summary):
            on_stage(summary)
            raise KeyboardInterrupt
        return real(*args, on_stage=stage_done, **kwargs)

    monkeypatch.setattr(search.compare, "run_compare", stopped_after_the_first_stage)
    monkeypatch.setenv("COLUMNS", "80")
    stopped = run_cli("compare", *SMALL, "--jobs", "1")
    name = re.match(r"campaign (compare-\d{8}T\d{6}Z):", stopped.stdout).group(1)
    assert stopped.exit_code == 130

    def after_trials(stderr: str) -> str:  # the lines after a line a trial (stderr is no terminal)
        return "".join(line for line in stderr.splitlines(keepends=True) if not re.match(r"\S+:\d+ ", line))

    assert after_trials(stopped.stderr).lstrip("\n") == (  # wrapped at 80 columns, never inside the campaign's name
        f"interrupted: the database is consistent; run the same command with --campaign\n    {name} to continue\n")
    given = run_cli("compare", *SMALL, "--jobs", "1", "--campaign", "mine")  # a name given: the same command again
    assert given.exit_code == 130
    assert after_trials(given.stderr).lstrip("\n") == (
        "interrupted: the database is consistent; run the same command again to continue\n")
    monkeypatch.setattr(search.compare, "run_compare", real)
    resumed = run_cli("compare", *SMALL, "--jobs", "1", "--campaign", name, "--json")
    assert resumed.exit_code == 0, resumed.output
    studies = optuna.get_all_study_names(open_storage("sqlite:///search.db", create=False))
    assert sorted(studies) == sorted(f"{c}/{s}-{r}" for c in (name, "mine") for s in ("random", "grid") for r in (0, 1)
                                     if c == name or (s, r) == ("random", 0))

def test_compare_runs_repeated_pairs_and_counts_wins(run_cli, tmp_path):
    result = run_cli("compare", *SMALL, "--campaign", "cmp", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["repeats"] == 2 and out["wins"] + out["ties"] + out["losses"] == 2

    storage = open_storage("sqlite:///search.db", create=False)
    frame = trials_frame(storage, campaign="cmp")
    per_study = frame.groupby("study")["state"].apply(list).to_dict()
    assert sorted(per_study) == ["cmp/grid-0", "cmp/grid-1", "cmp/random-0", "cmp/random-1"]
    for name, states in per_study.items():
        assert len(states) == 4 and all(s in ("COMPLETE", "PRUNED") for s in states), (name, states)
    seeds = {s.study_name: s.user_attrs["seed"] for s in storage.get_all_studies()}
    assert seeds == {"cmp/random-0": 0, "cmp/grid-0": 0, "cmp/random-1": 1, "cmp/grid-1": 1}
    for r, pair in enumerate(out["pairs"]):
        random_frame = frame[frame["study"] == f"cmp/random-{r}"]
        grid_frame = frame[frame["study"] == f"cmp/grid-{r}"]
        assert random_frame["param_lr"].nunique() == 4 and grid_frame["param_lr"].nunique() == 2
        rb = random_frame.loc[random_frame["state"] == "COMPLETE", "value"].max()
        gb = grid_frame.loc[grid_frame["state"] == "COMPLETE", "value"].max()
        assert pair["random_best"] == pytest.approx(rb) and pair["grid_best"] == pytest.approx(gb)
        assert pair["outcome"] == ("win" if rb > gb + 1e-9 else "loss" if gb > rb + 1e-9 else "tie")
    assert out["random"]["mean"] == pytest.approx((out["pairs"][0]["random_best"] + out["pairs"][1]["random_best"]) / 2)
    assert (tmp_path / "cmp" / "repeats.png").stat().st_size > 5000
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["wins"] == out["wins"]

    # the same command again continues (here: finds finished) stages; no trial is added
    again = run_cli("compare", *SMALL, "--campaign", "cmp")
    assert again.exit_code == 0, again.output
    assert f"random wins {out['wins']}, ties {out['ties']}, losses {out['losses']} (of 2)" in again.stdout
    assert len(trials_frame(storage, campaign="cmp")) == 16

    # the report of a compare campaign pairs grid-r with random-r and adds the repeats plot
    report = run_cli("report", "--campaign", "cmp", "--out", "rep", "--json")
    assert report.exit_code == 0, report.output
    files = json.loads(report.stdout)["files"]
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert [(p["random_study"], p["grid_study"]) for p in summary["grid_vs_random"]["pairs"]] == [
        ("cmp/random-0", "cmp/grid-0"), ("cmp/random-1", "cmp/grid-1")]
    assert summary["grid_vs_random"]["repeats"]["wins"] == out["wins"]
    assert "repeats" in files and (tmp_path / "rep" / "report.html").is_file()
    storage.engine.dispose()


def test_compare_runs_random_at_the_grids_budget(run_cli):
    # random ran all 5 trials, was judged on its first 4 (a 2 x 2 grid) and its stage line gave the best of 5
    args = ("--repeats", "1", "--trials", "5", "--epochs", "1", "--train-size", "200", "--val-size", "200")
    out = json.loads(run_cli("compare", *args, "--campaign", "five", "--json").stdout)
    (pair,) = out["pairs"]
    assert (pair["random_trials"], pair["random_stage_trials"], pair["grid_trials"]) == (4, 4, 4)  # a 2 x 2 grid
    frame = trials_frame(open_storage("sqlite:///search.db", create=False), campaign="five")
    assert frame["study"].value_counts().to_dict() == {"five/random-0": 4, "five/grid-0": 4}
    random = frame[frame["study"] == "five/random-0"]
    assert pair["random_best"] == pytest.approx(random.loc[random["state"] == "COMPLETE", "value"].max())
    text = " ".join(run_cli("compare", *args, "--campaign", "five").stdout.split())
    assert text.startswith("campaign five: 1 pair of random and grid stages, 4 trials each (the grid that --trials 5 "
                           "fits), 1 epoch a trial, on digits")
    assert f"random-0 best {pair['random_best']:.4f} (4 trials:" in text and "judged" not in text
    # the mean of each stage's best value (the last epoch's validation accuracy), not of best_val_acc
    r = out["random"]
    assert (f"best value random: mean {r['mean']:.4f} std {r['std']:.4f} [{r['min']:.4f}, {r['max']:.4f}]"
            in text)


def test_compare_and_another_search_never_share_a_campaign(run_cli, tmp_path):
    # search auto's stages and compare's were mixed in one campaign without a word (search best then picked among both)
    args = ("auto", "--trials", "4", "--epochs", "1", "--train-size", "200", "--max-fine", "0", "--top", "2",
            "--repeats", "1", "--retrain-seeds", "1", "--campaign", "mine")
    assert run_cli(*args).exit_code == 0
    before = (tmp_path / "search.db").read_bytes()
    refused = run_cli("compare", *SMALL, "--campaign", "mine")
    assert refused.stdout == ""
    assert one_line_error(refused) == (
        "error: campaign mine holds another search's stages (coarse, final): search compare puts its random and "
        "grid stages in a campaign of their own; give --campaign NEW, or none for compare-<UTC timestamp>")
    assert (tmp_path / "search.db").read_bytes() == before
    assert sorted(optuna.get_all_study_names("sqlite:///search.db")) == ["mine/coarse", "mine/final"]
    assert not (tmp_path / "mine").exists()
    # a compare campaign is continued as before
    assert run_cli("compare", *SMALL, "--campaign", "cmp", "--json").exit_code == 0
    assert run_cli("compare", *SMALL, "--campaign", "cmp", "--json").exit_code == 0
    # and the other way round: search auto, coarse, fine and grid refuse it (fine said "run `search coarse` first",
    # grid "unknown study 'cmp/coarse'")
    before = (tmp_path / "search.db").read_bytes()
    for command in ((*args[:-1], "cmp"), ("coarse", "--trials", "2", "--campaign", "cmp"),
                    ("fine", "--campaign", "cmp"), ("grid", "--campaign", "cmp")):
        assert one_line_error(run_cli(*command)) == (
            "error: campaign cmp holds search compare's stages (random-0, grid-0, random-1, grid-1): a coarse-to-fine "
            "search goes in a campaign of its own, begun by search coarse or auto --campaign NEW")  # fine, grid: no NEW
    assert (tmp_path / "search.db").read_bytes() == before
    assert sorted(optuna.get_all_study_names("sqlite:///search.db")) == [
        "cmp/grid-0", "cmp/grid-1", "cmp/random-0", "cmp/random-1", "mine/coarse", "mine/final"]


@pytest.mark.parametrize("spec", ["batch_size=64:5000", "batch_size=64,5000"])
def test_a_batch_size_larger_than_the_training_set_is_refused_before_a_database_is_made(run_cli, tmp_path, spec):
    # the stage refused it once search.db was made, empty
    assert one_line_error(run_cli("compare", "--space", spec, "--trials", "2", "--epochs", "1", "--repeats", "1")) == (
        "error: the space searches batch_size up to 5000, larger than the training set (1257 samples)")
    assert list(tmp_path.iterdir()) == []


def test_commands_that_default_to_the_latest_campaign_leave_compare_campaigns_out(run_cli, tmp_path):
    # after search compare, search fine said "campaign compare-... holds search compare's stages" and search best
    # answered with a comparison trial: compare's campaign was "the latest"
    only = run_cli("compare", *SMALL[2:], "--repeats", "1", "--campaign", "cmp")
    assert only.exit_code == 0, only.output
    for command in ("fine", "best", "grid", "report", "worker"):
        assert one_line_error(run_cli(command)) == (
            "error: the storage holds only search compare's campaigns (cmp), which are never the default: give "
            "--campaign NAME, or start a search with `search coarse`"), command
    assert run_cli("coarse", "--trials", "4", "--epochs", "1", "--train-size", "200", "--campaign", "mine",
                   "--json").exit_code == 0
    assert run_cli("compare", *SMALL[2:], "--repeats", "1", "--campaign", "cmp2").exit_code == 0
    best = run_cli("best", "--format", "json")
    assert best.exit_code == 0, best.output
    assert json.loads(best.stdout)["study"] == "mine/coarse"
    fine = run_cli("fine", "--trials", "2", "--epochs", "1", "--json")
    assert fine.exit_code == 0, fine.output
    assert sorted(optuna.get_all_study_names("sqlite:///search.db")) == [
        "cmp/grid-0", "cmp/random-0", "cmp2/grid-0", "cmp2/random-0", "mine/coarse", "mine/fine-1", "mine/promote-1"]
    # named, a compare campaign is read as before
    assert json.loads(run_cli("best", "--campaign", "cmp2", "--format", "json").stdout)["study"].startswith("cmp2/")


def test_report_command_writes_the_files_and_says_where(run_cli, tmp_path):
    assert run_cli("coarse", "--trials", "4", "--epochs", "1", "--train-size", "200", "--json").exit_code == 0
    result = run_cli("report")
    assert result.exit_code == 0, result.output
    for name in ("report.html", "report.md", "summary.json", "scatter.png"):
        assert f"report-digits/{name}" in result.stdout
        assert (tmp_path / "report-digits" / name).is_file()
    assert "search grid --campaign digits" in result.stdout  # no grid stage yet: how to add one
    # the data it ran on, as the stages recorded it
    data = "Data: digits (builtin), 200 train / 270 val / 270 test samples of 64 features, 10 classes."
    assert data in (tmp_path / "report-digits" / "report.md").read_text()
    assert f"<p>{data}</p>" in (tmp_path / "report-digits" / "report.html").read_text()


def test_report_errors_are_one_line(run_cli, tmp_path):
    assert one_line_error(run_cli("report")) == (
        "error: no database at 'search.db' (storage sqlite:///search.db): search coarse or search auto makes one; a "
        "database made elsewhere is read from its folder, or with --storage")
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "100", "--json").exit_code == 0
    assert one_line_error(run_cli("report", "--campaign", "nope")) == (
        "error: unknown campaign 'nope'; known campaigns: digits")
    (tmp_path / "blocker").write_text("x")
    assert one_line_error(run_cli("report", "--out", "blocker/sub")) == (
        "error: Invalid value for '--out': 'blocker/sub': 'blocker' is not a folder")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc, where no folder can be made")
def test_report_into_a_folder_that_cannot_be_made_is_refused_before_the_plots(run_cli):
    # as root, /proc passes os.access: all 8 plots were drawn before "--out '/proc/x': cannot create the folder"
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "100", "--json").exit_code == 0
    for out in ("/proc/x", "/proc/x/y"):
        assert one_line_error(run_cli("report", "--out", out)) == (
            f"error: Invalid value for '--out': '{out}': cannot create a folder in '/proc': No such file or directory")


def test_compare_rejects_bad_options(run_cli):
    line = one_line_error(run_cli("compare", "--repeats", "0"))
    assert line == "error: Invalid value for '--repeats': 0 is not in the range 1<=x<=1000."
    assert not os.path.exists("search.db")


@pytest.mark.parametrize("option, value, bound", [("--repeats", "1000001", 1000),
                                                  ("--trials", "10000000001", 10_000_000)])
def test_compare_refuses_an_absurd_count_before_any_stage(run_cli, monkeypatch, option, value, bound):
    # --repeats 10**9 ran pair after pair; --trials 10**11 hung building the grid: both unbounded
    import search.cli.report

    def ran(*args, **kwargs):
        raise AssertionError(f"compare ran with {option} {value}")

    monkeypatch.setattr(search.cli.report, "build_space", ran)
    line = one_line_error(run_cli("compare", option, value, "--epochs", "1"))
    assert line == f"error: Invalid value for '{option}': {value} is not in the range 1<=x<={bound}."
    assert not os.path.exists("search.db")


def test_dashboard_without_optuna_dashboard_says_how_to_install_it(run_cli, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna_dashboard" else real(name, *a))
    line = one_line_error(run_cli("dashboard"), "optuna-dashboard is not installed: pip install '.[dashboard]'")
    assert line.startswith("error: ")


def test_dashboard_on_a_missing_database_is_a_one_line_error(run_cli):
    if importlib.util.find_spec("optuna_dashboard") is None:
        pytest.skip("optuna-dashboard is not installed (pip install '.[dashboard]')")
    assert one_line_error(run_cli("dashboard", "--storage", "sqlite:///missing.db")) == (
        "error: no database at 'missing.db' (storage sqlite:///missing.db): search coarse or search auto makes one; a "
        "database made elsewhere is read from its folder, or with --storage")
    assert not os.path.exists("missing.db")


def test_dashboard_on_a_port_in_use_is_one_line_naming_the_port(run_cli, tmp_path):
    if importlib.util.find_spec("optuna_dashboard") is None:
        pytest.skip("optuna-dashboard is not installed (pip install '.[dashboard]')")
    open_storage(f"sqlite:///{tmp_path / 'search.db'}").engine.dispose()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("dashboard", "--port", str(port))
    line = one_line_error(result)
    assert line == f"error: --port {port}: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert result.stdout == ""  # no banner before it


def test_the_dashboard_answers_once_its_address_is_printed(run_cli, tmp_path):
    # the address was printed before the server listened: a browser or curl opening it at once got nothing for seconds
    if importlib.util.find_spec("optuna_dashboard") is None:
        pytest.skip("optuna-dashboard is not installed (pip install '.[dashboard]')")
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    port = free_port()
    server = subprocess.Popen([*SEARCH, "dashboard", "--port", str(port)], cwd=tmp_path, env=env(),
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        assert line == (f"optuna-dashboard for sqlite:///search.db at http://127.0.0.1:{port}/dashboard (Ctrl-C to "
                        f"stop)\n")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=30) as page:
            assert page.status == 200
    finally:
        server.terminate()  # at once: while the request may still be handled, where wsgiref swallowed it
        assert server.wait(timeout=30) == 143
        rest = server.stderr.read()
        server.stderr.close()
    assert rest.splitlines()[-1] == "dashboard stopped" and "Traceback" not in rest, rest


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_connection_that_sends_nothing_does_not_hold_off_a_stop(run_cli, tmp_path, stop):
    # signals were held from a connection's accept to its answer: one that sent no request (a browser's preconnect,
    # a port scan) left the dashboard deaf to Ctrl-C and SIGTERM until its client closed it
    if importlib.util.find_spec("optuna_dashboard") is None:
        pytest.skip("optuna-dashboard is not installed (pip install '.[dashboard]')")
    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200", "--jobs", "1").exit_code == 0
    port = free_port()
    server = subprocess.Popen([*SEARCH, "dashboard", "--port", str(port)], cwd=tmp_path, env=env(),
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "Ctrl-C to stop" in server.stderr.readline()
        with socket.create_connection(("127.0.0.1", port)):  # connected, no request sent
            time.sleep(0.5)
            server.send_signal(stop)
            try:
                code = server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                code = None
    finally:
        server.kill()
        server.wait()
        rest = server.stderr.read()
        server.stderr.close()
    assert code == (143 if stop == signal.SIGTERM else 130), rest
    assert rest.splitlines()[-1] == "dashboard stopped" and "Traceback" not in rest, rest


@pytest.mark.parametrize("how", ["raised", "swallowed"])
def test_a_stopped_dashboard_says_so_once(run_cli, monkeypatch, how):
    if importlib.util.find_spec("optuna_dashboard") is None:
        pytest.skip("optuna-dashboard is not installed (pip install '.[dashboard]')")
    from search.errors import Interrupted, pending

    def serve(*args, **kwargs):  # SIGTERM while serving; the server may swallow the exception and return
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Interrupted:
            if how == "raised":
                raise

    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200").exit_code == 0
    monkeypatch.setattr(WSGIServer, "serve_forever", serve)
    result = run_cli("dashboard")
    assert result.exit_code == 143, result.output
    assert [line for line in result.stderr.splitlines() if "stopped" in line or "terminated" in line] == \
        ["dashboard stopped"]
    assert pending() is None  # nothing left for what runs next in this process


def test_a_signal_while_the_dashboard_answers_a_request_stops_it(run_cli, monkeypatch):
    # SIGTERM (or Ctrl-C) while a request was answered was swallowed by the server, which printed a traceback and
    # went on serving: the dashboard did not stop
    import http.client
    import threading

    import optuna_dashboard

    from tests.fixtures_pg import free_port

    def app(environ, start_response):  # the signal arrives as the request is answered
        os.kill(os.getpid(), signal.SIGTERM)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    port, answered, done = free_port(), [], threading.Event()

    def ask() -> None:
        while not answered and not done.is_set():
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/dashboard", headers={"Host": f"127.0.0.1:{port}"})
                connection.getresponse().read()
                answered.append(time.monotonic())
            except OSError:
                time.sleep(0.1)
        if not done.wait(10):  # still serving: stopped by a Ctrl-C, which it takes between requests
            os.kill(os.getpid(), signal.SIGINT)

    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200", "--jobs", "1").exit_code == 0
    monkeypatch.setattr(optuna_dashboard, "wsgi", lambda storage: app)
    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    try:
        result = run_cli("dashboard", "--port", str(port))
    finally:
        done.set()
        asking.join()
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (143, "dashboard stopped")
    assert "Traceback" not in result.stderr and time.monotonic() - answered[0] < 5


def test_the_dashboard_answers_only_its_own_pages(run_cli, tmp_path):
    # a page of another site whose name resolved to 127.0.0.1 (DNS rebinding) deleted a stage through the dashboard's
    # API, and a form it posts (no Origin of the dashboard's) reached it too
    import http.client
    import subprocess
    import sys

    from tests.fixtures_pg import free_port
    from tests.search.procs import env

    if importlib.util.find_spec("optuna_dashboard") is None:
        pytest.skip("optuna-dashboard is not installed (pip install '.[dashboard]')")
    assert run_cli("coarse", "--trials", "1", "--epochs", "1", "--train-size", "200", "--jobs", "1").exit_code == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "search", "dashboard", "--port", str(port)], env=env(),
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answer(method: str, path: str, host: str, origin: str | None = None) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request(method, path, headers={"Host": host, **({"Origin": origin} if origin else {})})
        status = connection.getresponse().status
        connection.close()
        return status

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert answer("DELETE", "/api/studies/1", f"evil.example:{port}", f"http://evil.example:{port}") == 403
        assert answer("GET", "/api/studies", f"evil.example:{port}") == 403
        assert answer("POST", "/api/studies/1/rename", f"127.0.0.1:{port}", "http://evil.example") == 403
        assert answer("GET", "/api/studies", f"127.0.0.1:{port}") == 200
        assert answer("GET", "/dashboard", f"localhost:{port}") == answer("GET", "/dashboard", "localhost:9000") == 200
        assert answer("GET", "/api/studies", f"127.0.0.1:{port}.evil.example") == 403
        # its own pages only read: optuna-dashboard's API deleted a stage for any local process (204)
        assert answer("DELETE", "/api/studies/1", f"127.0.0.1:{port}") == 405
        assert answer("POST", "/api/studies/1/rename", f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 405
        assert answer("GET", "/api/studies/1", f"127.0.0.1:{port}") == 200
    finally:
        server.kill()
        server.wait()
    assert optuna.get_all_study_names("sqlite:///search.db") == ["digits/coarse"]


def test_compare_given_another_heartbeat_than_its_stages_says_it_keeps_theirs(run_cli, monkeypatch):
    # search coarse said "--heartbeat 5 not used: ..." on a stage created with 10; search compare said nothing, and
    # through a pipe nothing before its trials nor of them, where search coarse | cat shows its notes and a line a trial
    # hb/random-0 made, with its heartbeat of 10 s
    assert stages_made_only(run_cli, monkeypatch, "compare", *SMALL, "--campaign", "hb", "--jobs", "1").exit_code == 130
    monkeypatch.setenv("COLUMNS", "200")
    result = run_cli("compare", *SMALL, "--campaign", "hb", "--jobs", "1", "--heartbeat", "5")  # stderr: no terminal
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "--heartbeat" in line]
    trials = [line.split()[0] for line in result.stderr.splitlines() if re.match(r"hb/\w+-\d:\d ", line)]
    assert trials == [f"hb/{stage}-{r}:{n}" for r in (0, 1) for stage in ("random", "grid") for n in range(4)]
    assert notes == ["--heartbeat 5 not used: hb/random-0 keeps the 10 s it was created with, by which every worker "
                     "of it judges a trial stale"]  # the stages this command made keep its 5 s


def test_the_dashboard_changes_the_database_only_when_allowed():
    from search.cli.report import _own_pages_only

    def app(environ, start_response):
        start_response("204 No Content", [])
        return [b""]

    def status(writes: bool, method: str) -> str:
        seen = []
        _own_pages_only(app, 8080, writes)({"REQUEST_METHOD": method, "HTTP_HOST": "127.0.0.1:8080"},
                                           lambda s, headers: seen.append(s))
        return seen[0]

    assert [status(False, m) for m in ("GET", "HEAD", "DELETE", "POST", "PUT")] == [
        "204 No Content", "204 No Content", "405 Method Not Allowed", "405 Method Not Allowed", "405 Method Not Allowed"]
    assert [status(True, m) for m in ("DELETE", "POST")] == ["204 No Content", "204 No Content"]
