"""The progress bar of a stage at 80 columns: its counts stay whole."""
from __future__ import annotations

import io

import optuna
import pytest
from optuna.trial import TrialState

from search.progress import Progress


def _trial(number: int, state: TrialState, value: float | None) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(state=state, value=value, params={}, distributions={}) if value is not None \
        else optuna.trial.create_trial(state=state, params={}, distributions={})


def test_the_bar_keeps_its_counts_at_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    last = _last_bar_line("my-campaign/promote-2", 100, [_trial(0, TrialState.COMPLETE, 0.9815),
                                                         _trial(1, TrialState.PRUNED, None),
                                                         _trial(2, TrialState.FAIL, None)])
    assert len(last) <= 77, last
    assert last.startswith("my-campaign/promote-2: 2/100 |"), last
    assert last.endswith(", best 0.9815 pruned 1 failed 1"), last


def test_a_long_campaign_name_is_shortened_so_the_best_value_stays_whole(monkeypatch):
    # the bar once cut its own line at 77 columns: "...-v2/coarse: 4/6 |▋| 00:05<00:03, best 0.9"
    monkeypatch.setenv("COLUMNS", "80")
    last = _last_bar_line("breast-cancer-wisconsin-standardized-v2/coarse", 6,
                          [_trial(0, TrialState.COMPLETE, 0.9776), _trial(1, TrialState.PRUNED, None)])
    assert len(last) <= 77, last
    assert last.startswith("breast-cancer-wisconsin-s…/coarse: 2/6 |"), last
    assert last.endswith(", best 0.9776 pruned 1"), last


def test_a_long_campaign_name_is_shortened_further_once_a_trial_failed(monkeypatch):
    # Ctrl-C counts the running trial as failed as the bar ends, and its count cut the last line mid-word at 80
    # columns: "my-long-experiment-…/coarse: 10/200 | | 00:03<01:12, best 0.9481 pruned 1 fai"
    monkeypatch.setenv("COLUMNS", "80")
    finished = [_trial(0, TrialState.COMPLETE, 0.9481), _trial(1, TrialState.PRUNED, None)]
    before = _last_bar_line("my-long-experiment-name-for-flowers/coarse", 200, finished)
    assert before.startswith("my-long-experiment-…/coarse: 2/200 |"), before  # no failure: as long as it fits
    last = _last_bar_line("my-long-experiment-name-for-flowers/coarse", 200,
                          [*finished, _trial(2, TrialState.FAIL, None)])
    assert len(last) <= 77, last
    assert last.startswith("my-long-exper…/coarse: 2/200 |"), last
    assert last.endswith(", best 0.9481 pruned 1 failed 1"), last


def test_a_stage_running_for_hours_keeps_every_line_of_its_bar_whole(monkeypatch):
    # its times in hours (3 columns wider each) cut the last line at 80 columns: "... | 4:30:00<445:30:00, best
    # 0.9481 pruned 1 fail"; the line tqdm drew as a trial was counted, with the name shortened for the times before
    monkeypatch.setenv("COLUMNS", "80")
    clock = [1000.0]
    monkeypatch.setattr("tqdm.std.time", lambda: clock[0])  # tqdm's clock: 90 minutes a trial
    out = io.StringIO()
    progress = Progress("my-long-experiment-name-for-flowers/coarse", 200, mode="bar", stream=out)
    for number, (state, value) in enumerate([(TrialState.COMPLETE, 0.9481), (TrialState.PRUNED, None),
                                             (TrialState.FAIL, None)]):
        clock[0] += 5400
        t = _trial(number, state, value)
        t.number = number
        progress.trial(t)
    progress.close()
    lines = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert all(len(line) <= 77 for line in lines), lines
    assert list(dict.fromkeys(line.rpartition(", ")[2] for line in lines if "best" in line)) == [  # each drawn whole
        "best - pruned 0", "best 0.9481 pruned 0", "best 0.9481 pruned 1", "best 0.9481 pruned 1 failed 1"]
    assert lines[-1].startswith("my-long…/coarse: 2/200 |") and "| 4:30:00<445:30:00, best" in lines[-1], lines[-1]


def test_the_bar_counts_the_stages_failed_trials_as_the_stage_summary_does(monkeypatch):
    # a trial of another worker failed before this process started: the bar said "pruned 2 failed 1" above the
    # summary's "2 failed (interrupted or killed, so re-run)"
    monkeypatch.setenv("COLUMNS", "80")
    before = ({"COMPLETE": 3, "PRUNED": 2, "FAIL": 1, "WAITING": 2, "RUNNING": 0}, 0.95)
    out = io.StringIO()
    progress = Progress("c/coarse", 8, before, mode="bar", stream=out)
    failed = _trial(0, TrialState.FAIL, None)
    failed.number = 6
    progress.trial(failed)
    progress.close()
    last = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()][-1]
    assert last.startswith("c/coarse: 5/8 |") and last.endswith(", best 0.9500 pruned 2 failed 2"), last
    # read from the database (--jobs 1, search worker): another machine's failure since counted too
    read = Progress("c/coarse", 8, before, mode="log", stream=io.StringIO(),
                    read_stage=lambda: ({"COMPLETE": 3, "PRUNED": 2, "FAIL": 3, "WAITING": 0, "RUNNING": 0}, 0.95))
    assert (read.done, read.pruned, read.failed) == (5, 2, 3)


def _last_bar_line(name: str, total: int, finished: list) -> str:
    """The last line a bar of stage ``name`` shows once ``finished`` (numbered in order) have ended."""
    out = io.StringIO()
    progress = Progress(name, total, mode="bar", stream=out)
    for number, t in enumerate(finished):
        t.number = number
        progress.trial(t)
    progress.close()
    return [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()][-1]


def _counts(complete: int, pruned: int = 0, fail: int = 0) -> dict[str, int]:
    return {"RUNNING": 0, "WAITING": 0, "COMPLETE": complete, "PRUNED": pruned, "FAIL": fail}


def test_one_process_shows_the_stage_counts_read_from_the_database_at_most_every_second(monkeypatch):
    reads = [(_counts(2, fail=1), 0.5), (_counts(5, pruned=1, fail=2), 0.9)]  # at the start, after trial 5
    out = io.StringIO()
    progress = Progress("c/coarse", 10, mode="log", stream=out, read_stage=lambda: reads.pop(0))
    monkeypatch.setattr("search.progress.READ_EVERY_SECONDS", 0.0)
    own = _trial(5, TrialState.COMPLETE, 0.6)
    own.number = 5
    progress.trial(own)
    monkeypatch.setattr("search.progress.READ_EVERY_SECONDS", 3600.0)
    own = _trial(7, TrialState.PRUNED, None)
    own.number = 7
    progress.trial(own)  # no read this soon after the last one: counted here
    assert reads == []
    lines = out.getvalue().splitlines()
    assert lines == ["c/coarse:5 complete 0.6000 [6/10]", "c/coarse:7 pruned   -      [7/10]"]
    # the FAIL from before this process started is counted too, as the stage summary counts it
    assert (progress.done, progress.pruned, progress.failed, progress.best) == (7, 2, 2, 0.9)


def test_the_bar_ends_at_the_counts_of_trials_other_processes_finished_last(monkeypatch):
    # `search coarse --jobs 1` beside a `search worker` ended its bar at 18/20 while the stage had 20 complete: the
    # worker's last two trials ended within a second of the bar's last read
    monkeypatch.setenv("COLUMNS", "80")
    reads = [(_counts(0), None), (_counts(19, pruned=1), 0.9222)]  # at the start, and at the end
    out = io.StringIO()
    monkeypatch.setattr("search.progress.READ_EVERY_SECONDS", 3600.0)
    progress = Progress("digimg/coarse", 20, mode="bar", stream=out, read_stage=lambda: reads.pop(0))
    own = _trial(3, TrialState.COMPLETE, 0.9)
    own.number = 3
    progress.trial(own)
    progress.close()
    assert reads == []
    last = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()][-1]
    assert last.startswith("digimg/coarse: 20/20 |") and last.endswith(", best 0.9222 pruned 1"), last


def test_a_bar_told_of_its_own_trials_only_is_redrawn_from_the_stage_counts_between_them(monkeypatch):
    # `search worker` beside other workers showed 1/12 while 3 trials were finished: its bar was drawn only as its
    # own trial ended; it is redrawn from the database's counts meanwhile, one read each time
    import threading
    import time

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("search.progress.REDRAW_EVERY_SECONDS", 0.01, raising=False)
    reads = [(_counts(1), 0.5), (_counts(2), 0.8), (_counts(2, pruned=1), 0.9)]
    seen = threading.Event()

    def read_stage():
        if len(reads) == 1:
            seen.set()
        return reads.pop(0) if len(reads) > 1 else reads[0]

    out = io.StringIO()
    progress = Progress("w/coarse", 12, mode="bar", stream=out, read_stage=read_stage)
    assert seen.wait(5)
    time.sleep(0.1)  # the draw after that read
    drawn = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()][-1]
    progress.close()
    assert drawn.startswith("w/coarse: 3/12 |") and drawn.endswith(", best 0.9000 pruned 1"), drawn
    assert progress.redrawer is not None and not progress.redrawer.is_alive()
    # told of every process's trials (the watcher of --jobs N), or with no bar, nothing is read in between
    told = Progress("w/coarse", 12, mode="bar", stream=io.StringIO(), read_stage=read_stage, told_all=True)
    logged = Progress("w/coarse", 12, mode="log", stream=io.StringIO(), read_stage=read_stage)
    assert told.redrawer is None and logged.redrawer is None
    told.close()
    logged.close()


def _stage_after_another_process(tmp_path, monkeypatch, jobs: int, progress: str):
    """The summary of a 4-trial stage whose trials 0 (0.3630, the best) and 1 another process (e.g. a `search worker`
    elsewhere) finished after the command counted the stage, before its workers began."""
    from engine.data import DataSpec
    from search import campaign
    from search.campaign import DEFAULT_SPACE, Execution, coarse_stage, execute_stage
    from search.config import RunConfig
    from search.stages import run_worker
    from studies.store import open_storage

    url = f"sqlite:///{tmp_path / 'p.db'}"
    run = RunConfig(data=DataSpec("digits", train_size=200)).with_params({"arch.hidden": 20, "train.epochs": 1})
    real = campaign.run_stage_processes

    def another_process_first(url_, name, dataset, *args, **kwargs):
        run_worker(open_storage(url_), name, dataset, max_trials=2)
        return real(url_, name, dataset, *args, **kwargs)

    monkeypatch.setattr(campaign, "run_stage_processes", another_process_first)
    return execute_stage(Execution(url, jobs=jobs, progress=progress), coarse_stage("p", run, DEFAULT_SPACE, 4, seed=0))


def test_a_stage_command_on_one_job_counts_the_trials_other_processes_finish(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("search.progress.READ_EVERY_SECONDS", 0.0, raising=False)
    _stage_after_another_process(tmp_path, monkeypatch, 1, "log")
    lines = capsys.readouterr().err.splitlines()
    # this process ran trials 2 and 3; 0 (0.3630, the best) and 1 ran elsewhere
    assert lines == ["p/coarse:2 complete 0.2481 lr=0.000413 reg=1.52e-06 [3/4]",
                     "p/coarse:3 complete 0.2630 lr=0.00202 reg=0.0906 [4/4]"]


def test_the_bar_of_a_two_job_stage_ends_at_the_stage_counts_the_summary_gives(tmp_path, monkeypatch, capsys):
    # --jobs 2 is told of every process's trials from its first look on: two trials another process finished before
    # it, after the command read the stage's counts, were counted by neither, and the bar ended at 2/4 above a summary
    # of 4 complete
    monkeypatch.setenv("COLUMNS", "80")
    summary = _stage_after_another_process(tmp_path, monkeypatch, 2, "bar")
    assert (summary.counts["complete"], summary.best_value) == (4, pytest.approx(0.3630, abs=5e-5))
    last = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert last.startswith("p/coarse: 4/4 |") and last.endswith(", best 0.3630 pruned 0"), last


def test_the_log_of_a_two_job_stage_tells_each_trial_once_from_the_stage_counts(tmp_path, monkeypatch, capsys):
    # the stage counted, then the watcher's first look: two trials another process finished between the two were
    # told by neither, and the stage's log began at [1/4] with a "new best" below the best already found
    summary = _stage_after_another_process(tmp_path, monkeypatch, 2, "log")
    assert summary.counts["complete"] == 4
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["p/coarse:0 new best 0.3630 lr=0.00196 reg=0.101 [1/4]",
                         "p/coarse:1 complete 0.1444 lr=0.000318 reg=0.11 [2/4]"]
    assert [line[-5:] for line in lines[2:]] == ["[3/4]", "[4/4]"]  # the two workers' trials, as they end
    assert sorted(line[:-6] for line in lines[2:]) == ["p/coarse:2 complete 0.2481 lr=0.000413 reg=1.52e-06",
                                                       "p/coarse:3 complete 0.2630 lr=0.00202 reg=0.0906"]


def test_log_lines_fit_80_columns_and_name_each_trial_as_search_explain_takes_it():
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-6, 1.0, log=True),
                     "reg": optuna.distributions.FloatDistribution(1e-6, 10.0, log=True),
                     "hidden": optuna.distributions.IntDistribution(16, 1024, log=True)}
    ended = [  # number, state, value, params, stop_reason
        (3, TrialState.COMPLETE, 0.9704, (0.0272, 0.000129, 142), "completed"),
        (12, TrialState.PRUNED, 0.1, (1.23e-05, 1.23e-06, 1024), "exploded"),
        (13, TrialState.FAIL, None, (0.5, 0.5, 16), "error: ValueError: boom"),
        (14, TrialState.COMPLETE, 0.9511, (0.0494, 1.68e-06, 300), "completed"),
        (15, TrialState.FAIL, None, (0.01, 0.01, 64), "interrupted"),
        (16, TrialState.COMPLETE, 0.9704, (0.03, 0.0001, 100), "completed"),  # ties the best: not a new one
        # its stop_reason took the status column: an 88-column line
        (17, TrialState.FAIL, None, (0.01, 0.01, 64), "worker lost: its process 4242 on this host is gone"),
    ]
    out = io.StringIO()
    progress = Progress("digits/promote-1", 50, mode="log", stream=out)
    for number, state, value, (lr, reg, hidden), reason in ended:
        t = optuna.trial.create_trial(state=state, value=value, params={"lr": lr, "reg": reg, "hidden": hidden},
                                      distributions=distributions, user_attrs={"stop_reason": reason})
        t.number = number
        progress.trial(t)
    lines = out.getvalue().splitlines()
    assert lines == [
        "digits/promote-1:3  new best 0.9704 lr=0.0272 reg=0.000129 hidden=142 [1/50]",
        "digits/promote-1:12 exploded 0.1000 lr=1.23e-05 reg=1.23e-06 hidden=1024 [2/50]",
        "digits/promote-1:13 failed   -      lr=0.5 reg=0.5 hidden=16 [2/50]",
        "    error: ValueError: boom",
        "digits/promote-1:14 complete 0.9511 lr=0.0494 reg=1.68e-06 hidden=300 [3/50]",
        "digits/promote-1:15 interrupted -      lr=0.01 reg=0.01 hidden=64 [3/50]",
        "digits/promote-1:16 complete 0.9704 lr=0.03 reg=0.0001 hidden=100 [4/50]",
        "digits/promote-1:17 failed   -      lr=0.01 reg=0.01 hidden=64 [4/50]",
        "    worker lost: its process 4242 on this host is gone",
    ]
    assert max(map(len, lines)) <= 80


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_line_wider_than_the_terminal_goes_on_indented_and_a_pipe_keeps_one_line_a_trial(monkeypatch):
    # five parameters and a long campaign name: 128 columns on an 80-column terminal, the end cut off by the terminal
    # or wrapped in the middle of a parameter
    monkeypatch.setenv("COLUMNS", "80")
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-4, 0.1, log=True),
                     "reg": optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True),
                     "hidden": optuna.distributions.IntDistribution(16, 512),
                     "activation": optuna.distributions.CategoricalDistribution(["relu", "tanh", "elu"]),
                     "dropout": optuna.distributions.FloatDistribution(0.5, 1.0)}
    params = {"lr": 0.00443, "reg": 0.000726, "hidden": 128, "activation": "elu", "dropout": 0.719}
    done = optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.8889, params=params,
                                     distributions=distributions)
    lost = optuna.trial.create_trial(state=TrialState.FAIL, params=params, distributions=distributions, user_attrs={
        "stop_reason": "worker lost: its process 4242 on this host is gone, and its heartbeat stopped 120 s ago"})
    done.number, lost.number = 0, 1
    name = "ray-tune-like-long-campaign-name/coarse"
    one = f"{name}:0 new best 0.8889 lr=0.00443 reg=0.000726 hidden=128 activation=elu dropout=0.719 [1/3]"
    for stream, expected in (
            (io.StringIO(), [one, f"{name}:1 failed   -      lr=0.00443 reg=0.000726 hidden=128 activation=elu "
                                  f"dropout=0.719 [1/3]",
                             "    worker lost: its process 4242 on this host is gone, and its heartbeat stopped 120 s "
                             "ago"]),
            (_Terminal(), [f"{name}:0 new best 0.8889 lr=0.00443",
                           "    reg=0.000726 hidden=128 activation=elu dropout=0.719 [1/3]",
                           f"{name}:1 failed   -      lr=0.00443",
                           "    reg=0.000726 hidden=128 activation=elu dropout=0.719 [1/3]",
                           "    worker lost: its process 4242 on this host is gone, and its heartbeat",
                           "        stopped 120 s ago"])):
        progress = Progress(name, 3, mode="log", stream=stream)
        progress.trial(done)
        progress.trial(lost)
        assert stream.getvalue().splitlines() == expected
        assert len(one) == 127 and all(len(line) < 80 for line in expected) == isinstance(stream, _Terminal)


def test_log_lines_write_categories_as_every_other_view_does():
    distributions = {"batchnorm": optuna.distributions.CategoricalDistribution([True, False]),
                     "activation": optuna.distributions.CategoricalDistribution(["relu", "tanh"])}
    out = io.StringIO()
    progress = Progress("img/coarse", 2, mode="log", stream=out)
    for number, batchnorm in ((0, False), (1, True)):
        t = optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5 + number / 10,
                                      params={"batchnorm": batchnorm, "activation": "relu"},
                                      distributions=distributions, user_attrs={"stop_reason": "completed"})
        t.number = number
        progress.trial(t)
    assert out.getvalue().splitlines() == [
        "img/coarse:0 new best 0.5000 batchnorm=false activation=relu [1/2]",
        "img/coarse:1 new best 0.6000 batchnorm=true activation=relu [2/2]",
    ]


class _TerminalOfNoRows(io.StringIO):
    """A terminal that reports 80 columns and 0 rows, as some CI and container terminals do."""

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2


def test_a_terminal_that_reports_no_rows_still_shows_the_bar(monkeypatch):
    # tqdm took 0 rows as a screen too small for any bar and drew nothing: no bar, and no log lines either
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("os.get_terminal_size", lambda fd=None: __import__("os").terminal_size((80, 0)))
    out = _TerminalOfNoRows()
    monkeypatch.setattr("sys.stderr", out)  # tqdm asks the size of stderr and stdout only
    progress = Progress("a/coarse", 3)
    progress.trial(_trial(0, TrialState.COMPLETE, 0.9))
    progress.close()
    assert progress.mode == "bar"
    last = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()][-1]
    assert last.startswith("a/coarse: 1/3 |") and last.endswith(", best 0.9000 pruned 0"), out.getvalue()


def test_log_lines_say_the_time_left_and_the_best_at_most_once_a_minute(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("search.progress.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    resumed = ({"RUNNING": 0, "COMPLETE": 1, "PRUNED": 0, "FAIL": 1, "WAITING": 9}, 0.5)  # one done, one failed
    progress = Progress("c/coarse", 10, resumed, mode="log", stream=out)
    for number, value in ((1, 0.7), (2, 0.6), (3, 0.65), (4, 0.8)):
        clock[0] += 25.0  # a trial every 25 s: the status after the third of this run, 75 s in
        t = _trial(number, TrialState.COMPLETE, value)
        t.number = number
        progress.trial(t)
    assert out.getvalue().splitlines() == [
        "c/coarse:1 new best 0.7000 [2/10]",
        "c/coarse:2 complete 0.6000 [3/10]",
        "c/coarse:3 complete 0.6500 [4/10]",
        "c/coarse: 4/10 in 01:15, about 02:30 left, best 0.7000",  # 6 left at 25 s each
        "c/coarse:4 new best 0.8000 [5/10]",
    ]


def test_a_campaign_named_with_control_codes_is_shown_not_obeyed(monkeypatch):
    # a campaign is named after its data file's name, which may hold ESC]0;...BEL (the terminal's title)
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    progress = Progress("x\x1b]0;PWN\x07/coarse", 3, mode="log", stream=out, notes=["warning: col\x1b[2J"])
    t = _trial(0, TrialState.COMPLETE, 0.5)
    t.number = 0
    progress.trial(t)
    assert out.getvalue().splitlines() == ["warning: col\\x1b[2J",
                                           "x\\x1b]0;PWN\\x07/coarse:0 new best 0.5000 [1/3]"]
    assert "\x1b" not in _last_bar_line("x\x1b]0;PWN\x07/coarse", 3, [_trial(0, TrialState.COMPLETE, 0.5)])


def test_a_bar_leaves_no_thread_behind():
    # tqdm's monitor thread outlived the bar: a report drawn later in the process (search compare's) was drawn in
    # one process, as a fork beside another thread is not made
    import threading

    from tqdm import tqdm

    if tqdm.monitor is not None:  # one another library's bar started in this process
        tqdm.monitor.exit()
        tqdm.monitor = None
    before = {t.ident for t in threading.enumerate()}
    _last_bar_line("c/coarse", 3, [_trial(0, TrialState.COMPLETE, 0.5)])
    assert [t.name for t in threading.enumerate() if t.ident not in before] == []

