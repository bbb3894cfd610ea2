"""The grid-vs-random report: its numbers against the trials computed directly, its images, its files, its errors."""
from __future__ import annotations

import base64
import html
import io
import json
import multiprocessing
import os
import re
import stat
import statistics
import time
from collections import Counter
from pathlib import Path

import matplotlib.colors
import matplotlib.markers
import numpy as np
import pandas as pd
import optuna
import pytest
from PIL import Image

from studies import plots
from studies.errors import StudyError, UnknownStudyError
from studies.queries import list_studies, trials_frame
from studies.report import (BEST_SO_FAR_STAGES, DIAGNOSIS_MEANINGS, IMAGE_CAPTIONS, IMPORTANCE_MAX_TRIALS, StageInfo,
                            budget_numbers, campaign_report, chosen_configuration, diagnosis_examples, diagnosis_text,
                            first_finished, outcome, param_importance, pruning_savings, render_markdown, repeat_numbers,
                            write_report, _data_text, _repeats_text, _verdict)
from studies.store import open_storage
from tests.studies.report_data import (ACTIVATIONS, COARSE_SPACE, FINE_SPACE, add_stage, build_auto_campaign,
                                      build_campaign, build_mixed_campaign, trial_specs)

optuna.logging.set_verbosity(optuna.logging.WARNING)

REPORT_IMAGES = {"importance", "scatter", "projection", "history", "ranges", "loss_curves", "best_so_far",
                 "diagnosis_examples"}


@pytest.fixture(scope="module")
def campaign_db(tmp_path_factory):
    """Campaign demo (coarse, fine-1, grid) and campaign nogrid (coarse, fine-1) in one database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'search.db'}"
    specs = build_campaign(url, "demo")
    specs.update(build_campaign(url, "nogrid", with_grid=False, seed=7))
    storage = open_storage(url, create=False)
    yield storage, specs
    storage.engine.dispose()


@pytest.fixture(scope="module")
def demo(campaign_db, tmp_path_factory):
    storage, specs = campaign_db
    report = campaign_report(storage, "demo")
    out = tmp_path_factory.mktemp("demo-report")
    return report, write_report(report, out), specs


# ---- expected numbers, computed from the trial dicts without the report's code
def expected_best(trials):
    return max(t["value"] for t in trials if t["state"] == "COMPLETE")


def expected_median(trials):
    return statistics.median(t["value"] for t in trials if t["state"] == "COMPLETE")


def expected_saved(trials):
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    full = max(t["iterations"] for t in complete)
    per_iteration = sum(t["seconds"] for t in complete) / sum(t["iterations"] for t in complete)
    iterations = sum(full - t["iterations"] for t in trials if t["state"] == "PRUNED")
    return full, iterations, iterations * per_iteration


def expected_epochs_run(trials, epochs):
    """Epochs per trial for a COMPLETE trial, the part of the longest completed run for the others."""
    full = max(t["iterations"] for t in trials if t["state"] == "COMPLETE")
    return sum(epochs if t["state"] == "COMPLETE" else epochs * min(1.0, (t["iterations"] or 0) / full)
               for t in trials)


def test_a_searched_batch_size_sets_each_pruned_runs_own_full_length():
    # 4 epochs of 1257 samples: 2512 iterations at batch 2, 60 at 81; pruned at 10 iterations with batches 15 and 87
    # had full runs of about 5024 / 15 and 5024 / 87 iterations, not the batch-2 run's 2512
    frame = pd.DataFrame([
        {"state": "COMPLETE", "param_batch_size": 2, "iterations": 2512, "seconds": 0.74},
        {"state": "COMPLETE", "param_batch_size": 81, "iterations": 60, "seconds": 0.064},
        {"state": "PRUNED", "param_batch_size": 15, "iterations": 10, "seconds": 0.005},
        {"state": "PRUNED", "param_batch_size": 87, "iterations": 10, "seconds": 0.013},
    ])
    saved = pruning_savings(frame)
    assert saved["iterations_saved"] == 372  # 324.9 + 47.7
    assert saved["seconds_saved"] == pytest.approx((324.9333 * 15 + 47.7471 * 87) * 0.804 / 9884, rel=1e-5)
    # epochs run: 4 for each completed trial, 4 x 150 / 5024 and 4 x 870 / 5024 for the pruned ones
    assert budget_numbers(4, frame)["epochs_run"] == pytest.approx(8 + 4 * 1020 / 5024)


def test_the_stage_table_counts_the_trials_a_scheduler_pruned(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    specs = trial_specs(np.random.default_rng(0), COARSE_SPACE, 8, iterations=100,
                        points=[(1e-3, 1e-4)] * 5 + [(1e-4, 1e-4)] * 2 + [(0.5, 1e-4)])
    for spec in specs[5:7]:  # stopped at a rung by successive halving
        spec.update(state="PRUNED", value=None, stop_reason="pruned", iterations=50)
    add_stage(url, "asha", "coarse", COARSE_SPACE, specs, 2, "random", None).set_user_attr("scheduler", "asha")
    storage = open_storage(url, create=False)
    md = write_report(campaign_report(storage, "asha", images=False), tmp_path / "out")["report.md"].read_text()
    assert "| stage | sampler | n_trials | complete | pruned (exploded/nan/scheduler) | fail |" in md
    # which scheduler pruned them (search auto --fine-scheduler asha on wine: 35 of fine-1's 50, named nowhere)
    assert "| coarse | random, asha scheduler | 8 | 5 | 3 (1/0/2) | 0 |" in md


def test_the_stage_table_names_and_counts_as_search_studies_does(tmp_path):
    # the report said trials 8, failed 1, best 0.8600 where search studies said n_trials 7, fail 1, best_value 0.8600
    url = f"sqlite:///{tmp_path / 'search.db'}"
    specs = trial_specs(np.random.default_rng(0), COARSE_SPACE, 7, iterations=100, points=[(1e-3, 1e-4)] * 7)
    for k, spec in enumerate(specs):
        spec["value"] = 0.8 + 0.01 * k
    specs.append({"lr": 1e-3, "reg": 1e-3, "state": "FAIL", "value": None, "iterations": None, "seconds": None,
                  "stop_reason": "error: MemoryError: out of memory"})
    add_stage(url, "f", "coarse", COARSE_SPACE, specs, 2, "random", None).set_user_attr("n_trials", 7)  # re-run
    storage = open_storage(url, create=False)
    row = list_studies(storage, "f").iloc[0]
    written = write_report(campaign_report(storage, "f", images=False), tmp_path / "out")
    storage.engine.dispose()
    counts = (row["n_trials"], row["complete"], row["pruned"], row["fail"], round(row["best_value"], 4))
    assert counts == (7, 7, 0, 1, 0.86)
    md, page = written["report.md"].read_text(), written["report.html"].read_text()
    assert ("| stage | sampler | n_trials | complete | pruned (exploded/nan/scheduler) | fail | best_value | "
            "median_value | trials to within 1 pt |\n|---|---|---|---|---|---|---|---|---|\n"
            "| coarse | random | 7 | 7 | 0 (0/0/0) | 1 | 0.8600 | 0.8300 | 6 |") in md
    assert "| coarse | 7 | 2 |" in md  # the budget table: n_trials, epochs per trial
    assert re.search(r"<th><span class='nw'>n_trials</span></th>.*<th><span class='nw'>fail</span></th>"
                     r"<th><span class='nw'>best_value</span></th>", page)
    assert "n_trials: the stage&#x27;s budget (a failed trial is re-run, so fail comes on top), as " in page
    # the header counted every trial row: "8 trials in 1 stage" above a table of n_trials 7
    assert "\n7 trials in 1 stage, all finished, 1 failed by an error (not run again); generated " in md
    assert "<p>7 trials in 1 stage, all finished, 1 failed by an error (not run again); generated " in page


def test_a_trial_failed_by_an_error_is_not_said_to_be_queued_again(tmp_path):
    # an error in a trial is not re-run: its stage of 7 ended with 6 complete, said as "6 finished, 1 failed and
    # queued again" as if a copy were to run
    url = f"sqlite:///{tmp_path / 'search.db'}"
    specs = trial_specs(np.random.default_rng(0), COARSE_SPACE, 6, iterations=100, points=[(1e-3, 1e-4)] * 6)
    specs.insert(2, {"lr": 1e-3, "reg": 1e-3, "state": "FAIL", "value": None, "iterations": None, "seconds": None,
                     "stop_reason": "error: the validation accuracy is not a number"})
    specs.append({"lr": 1e-3, "reg": 1e-3, "state": "FAIL", "value": None, "iterations": None, "seconds": None,
                  "stop_reason": "interrupted"})  # and one re-run: its copy is among the 6
    add_stage(url, "e", "coarse", COARSE_SPACE, specs, 2, "random", None).set_user_attr("n_trials", 7)
    md = write_report(campaign_report(open_storage(url, create=False), "e", images=False),
                      tmp_path / "out")["report.md"].read_text()
    assert "| coarse | random | 7 | 6 | 0 (0/0/0) | 2 |" in md
    assert "\n7 trials in 1 stage, 6 finished, 1 failed and queued again, 1 failed by an error (not run again); " in md


def test_a_stage_with_trials_still_to_run_is_said_to_be_unfinished(tmp_path):
    # an interrupted stage's report once listed 12 trials, 1 complete, 2 failed, and nothing of the 9 never run
    url = f"sqlite:///{tmp_path / 'search.db'}"
    specs = trial_specs(np.random.default_rng(0), COARSE_SPACE, 3, iterations=100,
                        points=[(1e-3, 1e-4)] * 3)
    add_stage(url, "cut", "coarse", COARSE_SPACE, specs, 2, "random", None).set_user_attr("n_trials", 5)  # 3 run
    study = optuna.load_study(study_name="cut/coarse", storage=url)
    for _ in range(2):
        study.enqueue_trial({"lr": 1e-3, "reg": 1e-4}, skip_if_exists=False)
    written = write_report(campaign_report(open_storage(url, create=False), "cut", images=False), tmp_path / "out")
    note = ("coarse: unfinished: 2 of its 5 trials have not finished (0 running, 2 waiting); run the stage's "
            "command again to finish it")
    assert "| coarse | random | 5 | 3 | 0 (0/0/0) | 0 |" in written["report.md"].read_text()
    assert f"\n- {note}\n" in written["report.md"].read_text()
    assert f"<li>{html.escape(note)}</li>" in written["report.html"].read_text()
    assert "unfinished" not in build_and_report_without_waiting(tmp_path)


def test_a_stage_its_workers_run_as_the_report_is_made_is_not_said_to_need_its_command_again(tmp_path):
    # search report while three workers ran a stage said "14 of its 20 trials have not finished (waiting or
    # running); run the stage's command again to finish it": a fourth command, where the workers were finishing it
    url = f"sqlite:///{tmp_path / 'search.db'}"
    specs = trial_specs(np.random.default_rng(0), COARSE_SPACE, 3, iterations=100, points=[(1e-3, 1e-4)] * 3)
    add_stage(url, "busy", "coarse", COARSE_SPACE, specs, 2, "random", None).set_user_attr("n_trials", 6)
    study = optuna.load_study(study_name="busy/coarse", storage=url)
    for _ in range(3):
        study.enqueue_trial({"lr": 1e-3, "reg": 1e-4}, skip_if_exists=False)
    study.ask()  # a worker's claim: one of the three WAITING trials is RUNNING
    written = write_report(campaign_report(open_storage(url, create=False), "busy", images=False), tmp_path / "out")
    note = ("coarse: unfinished: 3 of its 6 trials have not finished (1 running, 2 waiting); make the report again "
            "once its workers are done, or, if none runs, run the stage's command again to finish it")
    assert f"\n- {note}\n" in written["report.md"].read_text()
    assert f"<li>{html.escape(note)}</li>" in written["report.html"].read_text()


def test_an_interrupted_stage_is_said_to_be_unfinished_out_of_its_budget(tmp_path):
    # Ctrl-C in search coarse --trials 60: the report said "46 of its 62 trials have not finished" where search
    # studies said n_trials 60, counting each interrupted trial (FAIL) beside the copy enqueued in its place
    url = f"sqlite:///{tmp_path / 'search.db'}"
    specs = trial_specs(np.random.default_rng(0), COARSE_SPACE, 3, iterations=100, points=[(1e-3, 1e-4)] * 3)
    specs.append({"lr": 1e-3, "reg": 1e-3, "state": "FAIL", "value": None, "iterations": None, "seconds": None,
                  "stop_reason": "interrupted"})
    add_stage(url, "cut", "coarse", COARSE_SPACE, specs, 2, "random", None).set_user_attr("n_trials", 5)
    study = optuna.load_study(study_name="cut/coarse", storage=url)
    for lr in (1e-3, 1e-3):  # the interrupted trial's copy, and one never run
        study.enqueue_trial({"lr": lr, "reg": 1e-3}, skip_if_exists=False)
    storage = open_storage(url, create=False)
    assert list_studies(storage, "cut").iloc[0]["n_trials"] == 5
    md = write_report(campaign_report(storage, "cut", images=False), tmp_path / "out")["report.md"].read_text()
    assert "| coarse | random | 5 | 3 | 0 (0/0/0) | 1 |" in md
    assert "\n5 trials in 1 stage, 3 finished, 1 failed and queued again; generated " in md  # not "6 trials"
    assert ("\n- coarse: unfinished: 2 of its 5 trials have not finished (0 running, 2 waiting); run the stage's "
            "command again to finish it\n") in md


def build_and_report_without_waiting(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'done.db'}"
    add_stage(url, "done", "coarse", COARSE_SPACE,
              trial_specs(np.random.default_rng(0), COARSE_SPACE, 3, iterations=100, points=[(1e-3, 1e-4)] * 3), 2,
              "random", None)
    written = write_report(campaign_report(open_storage(url, create=False), "done", images=False), tmp_path / "d")
    return written["report.md"].read_text() + written["report.html"].read_text()


def test_the_slow_steps_are_told_as_they_start(campaign_db):
    # a report of 600 trials once took 16 s without a word: each stage's fANOVA and each PNG are the slow part
    storage, _ = campaign_db
    steps: list[str] = []
    report = campaign_report(storage, "demo", progress=steps.append)
    stages = [f"demo/{stage}: numbers and parameter importance" for stage in ("coarse", "fine-1", "grid")]
    assert steps[:3] == stages
    assert steps[3:] == [f"plot {len(report.images)} figures"] and len(report.images) == 8


def test_one_stage_of_one_trial_is_said_in_the_singular(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    add_stage(url, "one", "coarse", COARSE_SPACE,
              trial_specs(np.random.default_rng(0), COARSE_SPACE, 1, iterations=100, points=[(1e-3, 1e-4)]), 2,
              "random", None)
    written = write_report(campaign_report(open_storage(url, create=False), "one", images=False), tmp_path / "out")
    assert "\n1 trial in 1 stage, all finished; generated " in written["report.md"].read_text()
    assert "<p>1 trial in 1 stage, all finished; generated " in written["report.html"].read_text()


def expected_within(trials, within=0.01):
    best = expected_best(trials)
    for i, t in enumerate(trials, start=1):
        if t["state"] == "COMPLETE" and t["value"] >= best - within - 1e-12:
            return i
    raise AssertionError("unreachable")


def test_stage_numbers_equal_the_ones_computed_from_the_trials(demo):
    report, _, specs = demo
    stages = {s["study"]: s for s in report.summary["stages"]}
    assert list(stages) == ["demo/coarse", "demo/fine-1", "demo/grid"]
    for name, trials in specs.items():
        if not name.startswith("demo/"):
            continue
        s = stages[name]
        states = [t["state"] for t in trials]
        assert s["counts"]["trials"] == len(trials)
        assert s["counts"]["complete"] == states.count("COMPLETE")
        assert s["counts"]["pruned"] == states.count("PRUNED")
        assert s["counts"]["pruned_exploded"] == sum(t["stop_reason"] == "exploded" for t in trials)
        assert s["counts"]["pruned_nan"] == sum(t["stop_reason"] == "nan" for t in trials)
        assert s["counts"]["fail"] == states.count("FAIL")
        assert s["best_value"] == pytest.approx(expected_best(trials), abs=1e-12)
        assert s["median_value"] == pytest.approx(expected_median(trials), abs=1e-12)
        best = max((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["value"])
        assert s["best_params"] == pytest.approx({"lr": best["lr"], "reg": best["reg"]})
        assert s["training_seconds"] == pytest.approx(sum(t["seconds"] or 0 for t in trials))
        assert s["spent"]["epochs_run"] == pytest.approx(expected_epochs_run(trials, s["epochs"]))
        assert s["spent"]["seconds_per_epoch"] == pytest.approx(s["training_seconds"] / s["spent"]["epochs_run"])
        full, iterations, seconds = expected_saved(trials)
        assert s["pruning"]["full_run_iterations"] == full
        assert s["pruning"]["iterations_saved"] == iterations
        assert s["pruning"]["seconds_saved"] == pytest.approx(seconds, rel=1e-9)
        assert s["distinct"] == {"lr": len({t["lr"] for t in trials}), "reg": len({t["reg"] for t in trials})}
        assert s["trials_to_within_1pt"] == expected_within(trials)
    # the fixture's coarse stage really has exploded, nan and failed trials, so the checks above mean something
    coarse = stages["demo/coarse"]["counts"]
    assert coarse["pruned_exploded"] >= 1 and coarse["pruned_nan"] >= 1 and coarse["fail"] == 1
    assert stages["demo/coarse"]["pruning"]["iterations_saved"] > 0
    assert stages["demo/fine-1"]["space"]["lr"] == [1e-3, 1e-1, "log"]
    assert stages["demo/fine-1"]["range_notes"] == ["lr narrowed"]


def test_grid_vs_random_numbers(demo):
    report, _, specs = demo
    comparison = report.summary["grid_vs_random"]
    assert comparison["hint"] is None and "repeats" not in comparison
    (pair,) = comparison["pairs"]
    assert (pair["random_study"], pair["grid_study"]) == ("demo/coarse", "demo/grid")
    for side, name in (("random", "demo/coarse"), ("grid", "demo/grid")):
        trials = specs[name]
        numbers = pair[side]
        assert numbers["trials"] == len(trials)
        assert numbers["best_value"] == pytest.approx(expected_best(trials), abs=1e-12)
        assert numbers["median_value"] == pytest.approx(expected_median(trials), abs=1e-12)
        assert numbers["trials_to_within_1pt"] == expected_within(trials)
        assert numbers["distinct"] == {"lr": len({t["lr"] for t in trials}), "reg": len({t["reg"] for t in trials})}
    # 16 random trials (plus one failed one) try 17 lrs; the 4 x 4 grid only 4
    assert pair["random"]["distinct"] == {"lr": 17, "reg": 17}
    assert pair["grid"]["distinct"] == {"lr": 4, "reg": 4}
    r, g = pair["random"]["best_value"], pair["grid"]["best_value"]
    assert pair["outcome"] == ("win" if r > g + 1e-9 else "loss" if g > r + 1e-9 else "tie")
    assert "equal budget" not in _verdict(pair)  # 16 finished on each side (the failed one is re-run)
    smaller = {**pair, "grid": {**pair["grid"], "complete": pair["grid"]["complete"] - 7}}
    assert _verdict(smaller).endswith("; not an equal budget: 16 random trials finished against 9 grid points")


def test_the_random_side_of_a_grid_comparison_is_its_first_trials_at_the_grids_budget():
    states = ["COMPLETE", "FAIL", "PRUNED", "COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    frame = pd.DataFrame({"number": list(range(9))[::-1], "state": states[::-1]})  # any row order
    assert first_finished(frame, 3)["number"].tolist() == [0, 1, 2, 3]  # the failed one among them stays
    assert first_finished(frame, 6)["number"].tolist() == list(range(8))  # and the one right after the sixth
    assert first_finished(frame, 7)["number"].tolist() == list(range(9))
    assert first_finished(frame, 0).empty
    pair = {"random": {"best_value": 0.9, "complete": 27}, "grid": {"best_value": 0.8, "complete": 27},
            "outcome": "win", "random_trials": 27, "random_stage_trials": 50}
    assert _verdict(pair) == ("random search found the better model (best: random 0.9000 vs grid 0.8000, difference "
                              "+0.1000); random: the first 27 of its stage's 50 trials, as many as the grid's points")
    # when grid wins, its number is still named, not left to the order
    lost = {**pair, "outcome": "loss", "grid": {**pair["grid"], "best_value": 0.95}}
    assert _verdict(lost).startswith("grid search found the better model (best: random 0.9000 vs grid 0.9500, "
                                     "difference -0.0500)")


def test_outcome_rule():
    assert outcome(0.9, 0.8) == "win" and outcome(0.8, 0.9) == "loss"
    assert outcome(0.9, 0.9 + 1e-12) == "tie" and outcome(None, 0.9) == "n/a"


def test_the_repeats_sentence_gives_the_best_value_to_4_decimals():
    rep = {"repeats": 3, "wins": 2, "ties": 0, "losses": 1, "random": {"mean": 0.93, "std": 0.0602},
           "grid": {"mean": 0.9, "std": 0.01}}
    assert _repeats_text(rep) == ("over 3 random/grid pairs: random wins 2, ties 0, losses 1; best value random "
                                  "0.9300 ± 0.0602, grid 0.9000 ± 0.0100 (mean ± std)")


def test_files_hold_the_same_numbers(demo):
    report, written, _ = demo
    assert {"report.html", "report.md", "summary.json"} <= set(written)
    summary = json.loads(written["summary.json"].read_text())
    coarse = summary["stages"][0]
    assert coarse["best_value"] == pytest.approx(report.summary["stages"][0]["best_value"])
    assert summary["images"] == {name: f"{name}.png" for name in REPORT_IMAGES}
    md = written["report.md"].read_text()
    for s in summary["stages"]:
        assert f"{s['best_value']:.4f}" in md
        assert f"{s['pruning']['iterations_saved']:,} iters" in md
    html = written["report.html"].read_text()
    sources = re.findall(r"src='([^']*)'", html)
    assert len(sources) == len(REPORT_IMAGES)
    assert all(src.startswith("data:image/png;base64,") for src in sources)  # no file or server needed
    assert "http://" not in html and "https://" not in html
    for src, name in zip(sources, summary["images"]):
        assert base64.b64decode(src.split(",", 1)[1]) == written[name].read_bytes()
    assert f"{summary['stages'][0]['best_value']:.4f}" in html


def assert_real_png(data: bytes, min_colours: int = 50) -> None:
    """A valid PNG of plot size with real content: not blank, many colours."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    Image.open(io.BytesIO(data)).verify()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.width >= 300 and image.height >= 200
    pixels = np.asarray(image, dtype=float)
    assert pixels.std() > 15
    colours = image.getcolors(maxcolors=1 << 24)
    assert len(colours) > min_colours
    non_white = (pixels.min(axis=2) < 235).mean()
    assert non_white > 0.02


def test_every_promised_image_is_a_real_png(demo):
    report, written, _ = demo
    assert set(report.images) == REPORT_IMAGES
    for name in REPORT_IMAGES:
        assert_real_png(written[name].read_bytes())


def test_campaign_without_grid_still_gets_a_report_that_says_how_to_add_one(campaign_db, tmp_path):
    storage, _ = campaign_db
    report = campaign_report(storage, "nogrid")
    comparison = report.summary["grid_vs_random"]
    assert comparison["pairs"] == []
    grid = f"search grid --campaign nogrid --storage {storage.url}"  # the database pasted without --storage was not
    assert f"`{grid}`" in comparison["hint"]
    # best so far against training time, promised by README and --help, stays: stages one after another
    assert {"scatter", "ranges", "loss_curves", "best_so_far"} <= set(report.images)
    assert report.summary["captions"]["best_so_far"] == BEST_SO_FAR_STAGES
    assert_real_png(report.images["best_so_far"])
    written = write_report(report, tmp_path / "out")
    html = written["report.html"].read_text()
    assert f"<code>{grid}</code>" in _unspanned(html) and "`" not in html  # inline code, no backticks
    assert f"`{grid}`" in written["report.md"].read_text()  # markdown keeps them


def test_the_storage_a_report_tells_to_paste_is_the_url_as_given(pg_database):
    # `search grid --campaign nogrid --storage 'postgresql+psycopg2://...?connect_timeout=10'`: the URL the service
    # opened, where the user gave postgresql://...
    given = pg_database.replace("postgresql+psycopg2://", "postgresql://")
    build_campaign(pg_database, "nogrid", with_grid=False, seed=7)
    storage = open_storage(given, readonly=True)
    try:
        report = campaign_report(storage, "nogrid", images=False)
    finally:
        storage.engine.dispose()
    assert report.summary["grid_vs_random"]["hint"] == (
        f"this campaign has no grid stage; add one at the coarse stage's budget with `search grid --campaign "
        f"nogrid --storage {given}` and run the report again")
    assert report.summary["storage"] == given


def test_latest_campaign_is_the_default(campaign_db):
    storage, _ = campaign_db
    assert campaign_report(storage, images=False).summary["campaign"] == "nogrid"


def test_unknown_campaign_is_a_clear_error(campaign_db):
    storage, _ = campaign_db
    with pytest.raises(UnknownStudyError, match=r"unknown campaign 'nope'; known campaigns: demo, nogrid"):
        campaign_report(storage, "nope")


def test_empty_campaign_and_empty_database_are_clear_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    storage = open_storage(url)
    with pytest.raises(UnknownStudyError, match="no campaign"):
        campaign_report(storage)
    study = optuna.create_study(storage=url, study_name="bare/coarse", direction="maximize")
    for key, value in {"campaign": "bare", "stage": "coarse", "ready": True}.items():
        study.set_user_attr(key, value)
    study.enqueue_trial({})  # a WAITING trial is not a finished one
    with pytest.raises(StudyError, match="campaign 'bare' has no finished trial yet"):
        campaign_report(storage, "bare")
    storage.engine.dispose()


def test_unwritable_out_folder_is_a_study_error(demo, tmp_path):
    report, _, _ = demo
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StudyError, match="--out"):
        write_report(report, blocker / "sub")


def _files(folder):
    return {p.name: None if p.is_dir() else p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def old_and_new(demo, campaign_db, tmp_path_factory):
    """The demo report with its plots (old) and without (new), and their files as written into a folder each."""
    old, _, _ = demo
    new = campaign_report(campaign_db[0], "demo", images=False)
    folder = tmp_path_factory.mktemp("old-and-new")
    write_report(old, folder / "old")
    write_report(new, folder / "new")
    return old, new, _files(folder / "old"), _files(folder / "new")


def test_a_report_stopped_at_any_step_of_its_writing_leaves_the_old_one_or_the_new_one_whole(old_and_new, tmp_path,
                                                                                              monkeypatch):
    # each file was os.replace'd over its name in turn: a kill after the first left the new summary.json beside the
    # old report.md, report.html and plots
    old, new, old_files, new_files = old_and_new
    assert set(old_files) != set(new_files)
    calls = {"left": 0}

    def stopping(function):
        def call(*args, **kwargs):
            calls["left"] -= 1
            if calls["left"] < 0:
                raise KeyboardInterrupt  # as a kill would stop it, but its cleanup still runs
            return function(*args, **kwargs)
        return call

    for step in range(100):
        out = tmp_path / f"out{step}"
        write_report(old, out)
        calls["left"] = step
        with monkeypatch.context() as patched:
            for name in ("open", "replace", "rename", "unlink", "rmdir", "chmod", "fchmod", "write"):
                patched.setattr(os, name, stopping(getattr(os, name)))
            try:
                write_report(new, out)
                stopped = False
            except KeyboardInterrupt:
                stopped = True
        assert _files(out) in (old_files, new_files), step
        if not stopped:
            break
    assert not stopped and _files(out) == new_files and step > 5


def test_a_plot_that_cannot_be_written_leaves_the_old_report_whole_and_no_temporary_folder(old_and_new, tmp_path,
                                                                                        monkeypatch):
    import errno

    from studies import report as module

    old, _, old_files, _ = old_and_new
    out = tmp_path / "out"
    write_report(old, out)
    write_file = module._write_file
    plots_written = []

    def full_disk_at_the_second_plot(path, data, like):
        if path.name.endswith(".png"):
            plots_written.append(path.name)
            if len(plots_written) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        write_file(path, data, like)

    monkeypatch.setattr(module, "_write_file", full_disk_at_the_second_plot)
    with pytest.raises(StudyError) as info:
        write_report(old, out)
    assert str(info.value) == (f"--out {str(out)!r}: cannot write {plots_written[1]}: No space left on device; no "
                               "file there was replaced")
    assert _files(out) == old_files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_report_swapped_in_keeps_its_folders_and_files_permissions_and_a_link_to_its_folder(old_and_new, tmp_path):
    old, new, _, new_files = old_and_new
    folder, link = tmp_path / "real", tmp_path / "link"
    write_report(old, folder)
    for path in folder.iterdir():
        path.chmod(0o600)
    folder.chmod(0o750)
    link.symlink_to(folder)
    before = folder.stat().st_ino
    write_report(new, link)
    assert link.is_symlink() and _files(link) == new_files
    assert folder.stat().st_ino != before  # a new folder, swapped in
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {name: 0o600 for name in new_files}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_report_folder_with_the_users_files_or_the_current_one_is_written_in_place(old_and_new, tmp_path,
                                                                                     monkeypatch):
    # the user's files are never moved (a database in use there, an editor's open file); the current folder is
    # never swapped away from under the command
    old, new, _, new_files = old_and_new
    out = tmp_path / "out"
    write_report(old, out)
    (out / "notes.txt").write_text("mine\n")
    (out / "data").mkdir()
    (out / "data" / "x.csv").write_text("1\n")
    inodes = {p.name: p.stat().st_ino for p in (out, out / "notes.txt", out / "data")}
    write_report(new, out)
    assert _files(out / "data") == {"x.csv": b"1\n"}
    assert _files(out) == {**new_files, "notes.txt": b"mine\n", "data": None}
    assert {p.name: p.stat().st_ino for p in (out, out / "notes.txt", out / "data")} == inodes

    here = tmp_path / "here"
    write_report(old, here)
    monkeypatch.chdir(here)
    write_report(new, ".")
    assert _files(Path(".")) == new_files and Path.cwd().stat().st_ino == here.stat().st_ino


def test_repeat_numbers_count_wins_ties_and_losses(campaign_db):
    storage, specs = campaign_db
    from studies.queries import trials_frame

    frame = trials_frame(storage)
    pairs = [("demo/coarse", "demo/grid"), ("demo/grid", "demo/grid"), ("demo/grid", "demo/coarse")]
    numbers = repeat_numbers(frame, pairs)
    r, g = expected_best(specs["demo/coarse"]), expected_best(specs["demo/grid"])
    assert r != g
    first = "win" if r > g else "loss"
    assert [p["outcome"] for p in numbers["pairs"]] == [first, "tie", "loss" if first == "win" else "win"]
    assert (numbers["wins"], numbers["ties"], numbers["losses"]) == (1, 1, 1)
    bests = [r, g, g]
    assert numbers["random"]["mean"] == pytest.approx(np.mean(bests))
    assert numbers["random"]["std"] == pytest.approx(np.std(bests, ddof=1))
    curves = numbers["random_curves"]
    assert curves.shape == (3, len(specs["demo/coarse"]))  # the shorter grid run padded with its last best
    assert np.nanmax(curves[0]) == pytest.approx(r) and curves[1, -1] == pytest.approx(g)


# ---- a campaign over a float (lr, log), an int (hidden, log) and a categorical (activation) dimension
@pytest.fixture(scope="module")
def mixed_db(tmp_path_factory):
    """Campaigns mixed-<driver> in which lr, hidden or activation drives the value."""
    url = f"sqlite:///{tmp_path_factory.mktemp('mixed') / 'search.db'}"
    specs = {}
    for driver in ("hidden", "activation", "lr"):
        specs.update(build_mixed_campaign(url, f"mixed-{driver}", driver=driver))
    storage = open_storage(url, create=False)
    yield storage, specs
    storage.engine.dispose()


@pytest.fixture(scope="module")
def mixed(mixed_db, tmp_path_factory):
    storage, specs = mixed_db
    report = campaign_report(storage, "mixed-hidden")
    return report, write_report(report, tmp_path_factory.mktemp("mixed-report")), specs


def test_mixed_stage_numbers_equal_the_ones_computed_from_the_trials(mixed):
    report, _, specs = mixed
    for s in report.summary["stages"]:
        trials = specs[s["study"]]
        best = max((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["value"])
        assert s["best_value"] == pytest.approx(best["value"], abs=1e-12)
        assert s["median_value"] == pytest.approx(expected_median(trials), abs=1e-12)
        # real values of their own types: an int stays an int, a category its text (fine-1 searched lr alone)
        searched = list(s["space"])
        assert s["best_params"] == {name: pytest.approx(best[name]) if name == "lr" else best[name]
                                    for name in searched}
        assert s["distinct"] == {name: len({t[name] for t in trials}) if name in searched else 0
                                 for name in ("lr", "hidden", "activation")}
        seconds = sum(t["seconds"] or 0 for t in trials)
        epochs = expected_epochs_run(trials, s["epochs"])
        assert s["spent"]["training_seconds"] == pytest.approx(seconds)
        assert s["spent"]["epochs_run"] == pytest.approx(epochs)
        assert s["spent"]["seconds_per_epoch"] == pytest.approx(seconds / epochs)
    coarse = report.summary["stages"][0]
    assert type(coarse["best_params"]["hidden"]) is int and coarse["best_params"]["activation"] in ACTIVATIONS
    assert coarse["distinct"]["activation"] == 3 and coarse["counts"]["pruned"] >= 1 and coarse["counts"]["fail"] == 1
    assert coarse["space_text"] == "lr=0.0001:1 hidden=8:256:int activation=relu,tanh,elu"


def test_categorical_values_are_in_summary_json_and_the_tables(mixed):
    _, written, specs = mixed
    summary = json.loads(written["summary.json"].read_text())
    assert summary["dims"] == {
        "lr": {"type": "float", "log": True, "choices": None},
        "hidden": {"type": "int", "log": True, "choices": None},
        "activation": {"type": "categorical", "log": None, "choices": ACTIVATIONS},
    }
    coarse = summary["stages"][0]
    best = max((t for t in specs["mixed-hidden/coarse"] if t["state"] == "COMPLETE"), key=lambda t: t["value"])
    assert coarse["best_params"]["activation"] == best["activation"]
    assert coarse["best_params"]["hidden"] == best["hidden"]
    assert coarse["space"]["activation"] == {"type": "categorical", "choices": ACTIVATIONS}
    for name in ("report.md", "report.html"):
        text = written[name].read_text()
        assert f"activation={best['activation']}" in text and "activation=relu,tanh,elu" in text
        assert f"hidden={best['hidden']}" in text and "=nan" not in text.lower()  # not coerced to NaN


def test_table_cells_break_between_words_never_inside_a_number(mixed):
    _, written, _ = mixed
    html = written["report.html"].read_text()
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html)
    assert cells and all(re.fullmatch(r"<span class='nw'>[^<]*</span>( <span class='nw'>[^<]*</span>)*", c)
                         for c in cells)
    assert "<span class='nw'>lr=0.0001:1</span> <span class='nw'>hidden=8:256:int</span>" in html
    assert ".nw { white-space: nowrap; }" in html


def test_importance_for_a_stage_of_two_or_more_dims_and_a_message_otherwise(mixed):
    report, written, _ = mixed
    coarse, fine1, fine2 = report.summary["stages"]
    importance = coarse["importance"]["importance"]
    assert set(importance) == {"lr", "hidden", "activation"}
    assert sum(importance.values()) == pytest.approx(1.0)
    assert max(importance, key=importance.get) == "hidden" and importance["hidden"] > 0.8
    assert coarse["importance"]["trials_used"] == coarse["counts"]["complete"]
    assert fine1["importance"]["importance"] is None
    assert fine1["importance"]["message"] == "importance needs two or more searched dimensions; this stage searched lr"
    assert fine2["importance"]["importance"] is None
    assert fine2["importance"]["message"] == (f"importance needs 8 or more completed trials; this stage has "
                                              f"{fine2['counts']['complete']}")
    for name in ("report.md", "report.html"):
        text = written[name].read_text()
        assert "this stage searched lr" in text and "8 or more completed trials" in text
        assert f"{importance['hidden']:.3f}" in text


def test_the_notes_say_a_log_range_is_rated_on_its_log10_unlike_optunas_own_call(demo, mixed):
    # lr 0.967 in the report where optuna.importance.get_param_importances(study) gave lr 0.36, with no word why
    report, written, _ = demo
    assert [s["importance"]["log10"] for s in report.summary["stages"]] == [["lr", "reg"]] * 3
    note = ("lr, reg: rated on their log10, the scale they were sampled on; Optuna's get_param_importances(study) "
            "splits a range in its own units, and gives other shares")
    assert f"- {note}" in written["report.md"].read_text()
    assert "lr, reg: rated on their log10" in written["report.html"].read_text()
    mixed_report, _, _ = mixed
    assert mixed_report.summary["stages"][0]["importance"]["log10"] == ["lr", "hidden"]


def test_importance_uses_a_capped_sample_of_a_large_stage(mixed_db):
    storage, _ = mixed_db
    frame = trials_frame(storage, study_name="mixed-hidden/coarse")
    complete = int((frame["state"] == "COMPLETE").sum())
    space = optuna.load_study(study_name="mixed-hidden/coarse", storage=storage).user_attrs["space"]
    capped = param_importance(frame, space, max_trials=20)
    assert (capped["trials_used"], capped["trials_complete"]) == (20, complete)
    assert max(capped["importance"], key=capped["importance"].get) == "hidden"
    assert IMPORTANCE_MAX_TRIALS <= 500


def test_importance_weighs_a_log_range_in_its_own_scale():
    """lr 1e-6 or 1e-3 on lr=1e-6:1 (log) decides the value, reg moves it by 0.01 a step: lr carries the variance."""
    rows = [{"state": "COMPLETE", "value": (0.1 if lr == 1e-6 else 0.8) + 0.01 * k, "param_lr": lr, "param_reg": reg}
            for lr in (1e-6, 1e-3) for k, reg in enumerate((1e-6, 3.16e-3, 3.16, 10.0))]
    space = {"lr": {"type": "float", "low": 1e-6, "high": 1.0, "log": True},
             "reg": {"type": "float", "low": 1e-6, "high": 10.0, "log": True}}
    result = param_importance(pd.DataFrame(rows), space)
    assert result["trials_used"] == 8
    # in linear units (lr 1e-6 and 1e-3 both at the bottom of 0:1) reg took 0.19 of the variance for its 0.01 steps
    assert result["importance"]["lr"] > 0.99 and result["importance"]["reg"] < 0.01


@pytest.mark.parametrize("driver, pair", [("hidden", None), ("activation", ["activation", "hidden"]),
                                          ("lr", ["lr", "activation"])])
def test_the_pair_plot_shows_the_two_most_important_dims(mixed_db, driver, pair):
    storage, _ = mixed_db
    summary = campaign_report(storage, f"mixed-{driver}", images=False).summary
    importance = summary["stages"][0]["importance"]["importance"]
    ranked = sorted(importance, key=importance.get, reverse=True)
    assert summary["pair"]["params"] == ranked[:2]
    assert summary["pair"]["params"][0] == driver
    if pair is not None:  # the second dimension clearly matters too (0.1 of the value against nothing)
        assert summary["pair"]["params"] == pair


def test_every_mixed_image_is_a_real_png(mixed):
    report, written, _ = mixed
    assert {"importance", "scatter", "projection", "history", "ranges", "loss_curves", "diagnosis_examples"} <= set(
        report.images)
    for name in report.images:
        assert_real_png(written[name].read_bytes())


def test_a_dimension_is_drawn_on_its_own_scale(mixed_db):
    storage, _ = mixed_db
    frame = trials_frame(storage, campaign="mixed-hidden")
    staged = [(stage, f) for stage, f in frame.groupby("stage", sort=False)]
    dims = [plots.Dim("lr", "float", True), plots.Dim("hidden", "int", True),
            plots.Dim("activation", "categorical", choices=tuple(ACTIVATIONS))]
    axes = plots.new_axes(1, 3).ravel()
    plots.plot_param_slices(axes, staged, dims)
    assert [ax.get_xscale() for ax in axes] == ["log", "log", "linear"]
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ACTIVATIONS
    plots.plt.close(axes[0].figure)
    pair = plots.new_axes(1, len(staged)).ravel()
    plots.plot_param_scatter(pair, staged, dims[1], dims[2])
    assert pair[0].get_xscale() == "log" and pair[0].get_xlabel() == "hidden (log)"
    assert [t.get_text() for t in pair[0].get_yticklabels()] == ACTIVATIONS
    plots.plt.close(pair[0].figure)


def test_a_choice_of_thousands_of_values_draws_a_box_per_category_with_trials_and_a_few_labels():
    # one box and one label per category: a report of one trial of a 5,000-value choice took minutes, its labels
    # one black band
    frame = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3, "value": [0.5, 0.7, 0.9],
                          "param_hidden": [10, 10, 4000]})
    dim = plots.Dim("hidden", "categorical", choices=tuple(range(1, 5001)))
    ax = plots.new_axes(1, 1)[0, 0]
    plots.plot_param_slices([ax], [("coarse", frame)], [dim])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "626", "1251", "1876", "2501", "3126", "3751", "4376"]
    assert ax.get_xlim() == (-0.5, 4999.5)
    assert len(ax.lines) == 2 * 6  # two boxes (hidden 10 and 4000), each its box, median, two whiskers, two caps
    plots.plt.close(ax.figure)


def test_a_choice_no_complete_trial_has_draws_no_box_and_its_trials_along_the_bottom():
    # a stage whose trials all failed or were pruned: no category had a box to draw, and matplotlib ended the
    # report in a traceback ("List of boxplot statistics and `positions` values must have same the length")
    frame = pd.DataFrame({"number": [0, 1], "state": ["FAIL", "PRUNED"], "value": [np.nan, 0.4],
                          "param_activation": ["relu", "tanh"]})
    dim = plots.Dim("activation", "categorical", choices=("relu", "tanh"))
    ax = plots.new_axes(1, 1)[0, 0]
    plots.plot_param_slices([ax], [("coarse", frame)], [dim])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu", "tanh"]
    assert len(ax.lines) == 0  # no box
    # the failed trial (relu) and the pruned one (tanh) along the bottom, jittered beside their categories
    assert sorted(round(x) for c in ax.collections for x, _ in c.get_offsets()) == [0, 1]
    plots.plt.close(ax.figure)


# ---- diagnoses: counts per stage and one example curve of each label
def expected_diagnoses(trials):
    """Trials per label, counted directly from the trial dicts (two labels: counted under both)."""
    return Counter(label for t in trials for label in t.get("diagnosis", []))


def expected_example(specs, stage_order, label):
    """(study, number) of a label's example: the last stage with it; median value (lower), else highest number."""
    for study in reversed(stage_order):
        numbered = [(i, t) for i, t in enumerate(specs[study]) if label in t.get("diagnosis", [])]
        if not numbered:
            continue
        valued = sorted(((t["value"], i) for i, t in numbered if t["value"] is not None))
        return study, valued[(len(valued) - 1) // 2][1] if valued else numbered[-1][0]
    raise AssertionError(f"no trial is {label}")


@pytest.mark.parametrize("which", ["demo", "mixed"])
def test_diagnosis_counts_per_stage_equal_direct_counts(which, demo, mixed):
    report, written, specs = {"demo": demo, "mixed": mixed}[which]
    on_disk = json.loads(written["summary.json"].read_text())
    assert len({label for s in report.summary["stages"] for label in s["diagnoses"]}) >= 4
    for s, saved in zip(report.summary["stages"], on_disk["stages"]):
        trials = specs[s["study"]]
        expected = expected_diagnoses(trials)
        assert s["diagnoses"] == dict(expected) and saved["diagnoses"] == dict(expected)
        assert s["diagnosed_trials"] == saved["diagnosed_trials"] == sum(1 for t in trials if t.get("diagnosis"))
        assert list(s["diagnoses"]) == [x for x in DIAGNOSIS_MEANINGS if x in expected]  # vocabulary order
    assert any(sum(1 for t in ts if len(t.get("diagnosis", [])) > 1) for ts in specs.values())  # some count twice
    present = [x for x in DIAGNOSIS_MEANINGS if any(expected_diagnoses(specs[s["study"]])[x]
                                                    for s in report.summary["stages"])]
    assert on_disk["diagnoses"]["labels"] == present
    md, html = written["report.md"].read_text(), written["report.html"].read_text()
    assert "## Diagnoses" in md and "<h2>Diagnoses</h2>" in html
    for s in report.summary["stages"]:
        row = f"| {s['stage']} | {s['diagnosed_trials']} | " + " | ".join(
            str(s["diagnoses"].get(x, 0)) for x in present) + " |"
        assert row in md


def test_one_example_of_each_label_drawn_named_and_explained(demo, campaign_db, monkeypatch, tmp_path):
    report, written, specs = demo
    summary = json.loads(written["summary.json"].read_text())
    stage_order = [s["study"] for s in summary["stages"]]
    present = summary["diagnoses"]["labels"]
    assert set(present) == {"lr_too_low", "lr_too_high", "overfitting", "underfitting", "dead_units",
                            "bad_initial_loss", "healthy"}
    examples = summary["diagnoses"]["examples"]
    assert [ex["label"] for ex in examples] == present
    for ex in examples:
        assert (ex["study"], ex["number"]) == expected_example(specs, stage_order, ex["label"])
        assert ex["trial"] == f"{ex['study']}:{ex['number']}"
        # a count as every other view gives it: 36, not the 36.0 of a column with a missing value
        assert type(ex["iterations"]) is int and ex["iterations"] == specs[ex["study"]][ex["number"]]["iterations"]
        assert ex["label"] in specs[ex["study"]][ex["number"]]["diagnosis"]
    texts = {ex["label"]: ex["text"] for ex in examples}
    assert re.fullmatch(r"loss fell [1-3]\.\d %", texts["lr_too_low"])  # the fixture's curve fell ~2 %
    assert re.fullmatch(r"train 0\.\d{4}, val 0\.\d{4}: gap 8\.0 pts", texts["overfitting"])
    assert texts["dead_units"] == "70 % of layer 1 dead" and texts["bad_initial_loss"] == "initial loss 4.1 vs 2.303"
    assert texts["lr_too_high"] in ("loss exploded", "loss went NaN")
    assert_real_png(written["diagnosis_examples"].read_bytes(), min_colours=200)
    caption = summary["captions"]["diagnosis_examples"]
    for label in present:
        assert f"{label}: {DIAGNOSIS_MEANINGS[label]}" in caption
    assert caption in written["report.md"].read_text()

    # the figure itself: one titled panel per label, naming the label, the trial and its numbers
    storage, _ = campaign_db
    drawn, reads = [], []
    real_plot, real_get = plots.plot_diagnosis_examples, type(storage).get_trial

    def spy_plot(panels, data):
        fig = real_plot(panels, data)
        drawn.append(([p[0].get_figure(root=False)._suptitle.get_text() for p in panels], [len(p[0].lines) for p in panels]))
        assert all(p[0].get_figure(root=True) is fig for p in panels)
        return fig

    def spy_get(self, trial_id):
        reads.append(trial_id)
        return real_get(self, trial_id)

    monkeypatch.setattr(plots, "DRAW_BESIDE", False)  # drawn in this process, where the spy sees it
    monkeypatch.setattr(plots, "plot_diagnosis_examples", spy_plot)
    monkeypatch.setattr(type(storage), "get_trial", spy_get)
    campaign_report(storage, "demo")
    titles, loss_lines = drawn[0]
    assert len(titles) == len(present) and all(n >= 1 for n in loss_lines)
    for title, ex in zip(titles, examples):
        assert title.startswith(f"{ex['label']}: {ex['text']}") and ex["trial"] in title
    assert len(reads) == len(present)  # curves read for the example trials only


def test_a_campaign_without_diagnoses_has_no_diagnosis_section_or_figure(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    specs = trial_specs(np.random.default_rng(3), {"lr": [1e-3, 1e-1, "log"], "reg": [1e-6, 1e-2, "log"]}, 6, 50)
    for spec in specs:
        spec["diagnosis"] = []  # trials recorded before diagnoses existed
    add_stage(url, "old", "coarse", {"lr": [1e-3, 1e-1, "log"], "reg": [1e-6, 1e-2, "log"]}, specs, 2, "random", None)
    storage = open_storage(url, create=False)
    try:
        report = campaign_report(storage, "old")
    finally:
        storage.engine.dispose()
    assert report.summary["stages"][0]["diagnoses"] == {} and report.summary["diagnoses"]["examples"] == []
    assert "diagnosis_examples" not in report.images
    written = write_report(report, tmp_path / "out")
    assert "Diagnoses" not in written["report.md"].read_text()


# ---- a campaign as search auto makes it: promote-k and final are "fixed" stages
@pytest.fixture(scope="module")
def auto(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('auto') / 'search.db'}"
    specs = build_auto_campaign(url, "auto")
    storage = open_storage(url, create=False)
    drawn = {}
    real = plots.plot_ranges

    def spy(ax, ranges, *args, **kwargs):
        drawn["ranges"] = [r[0] for r in ranges]
        return real(ax, ranges, *args, **kwargs)

    plots.plot_ranges, plots.DRAW_BESIDE = spy, False  # drawn in this process, where the spy sees it
    try:
        report = campaign_report(storage, "auto")
    finally:
        plots.plot_ranges, plots.DRAW_BESIDE = real, True
        storage.engine.dispose()
    written = write_report(report, tmp_path_factory.mktemp("auto-report"))
    return report, written, specs, drawn


def test_chosen_configuration_is_the_best_mean_of_final_and_comes_first(auto):
    report, written, specs, _ = auto
    groups = {}
    for number, t in enumerate(specs["auto/final"]):  # pruned runs count 0, as search auto counts them
        g = groups.setdefault((t["lr"], t["reg"]), {"values": [], "trials": []})
        g["values"].append(t["value"] if t["state"] == "COMPLETE" else 0.0)
        g["trials"].append(number)
    (lr, reg), best = max(groups.items(), key=lambda kv: statistics.fmean(kv[1]["values"]))
    summary = json.loads(written["summary.json"].read_text())
    chosen = summary["chosen"]
    assert chosen["stage"] == "final" and chosen["study"] == "auto/final"
    assert chosen["params"] == pytest.approx({"lr": lr, "reg": reg})
    assert chosen["value"] == pytest.approx(statistics.fmean(best["values"]))
    assert chosen["std"] == pytest.approx(statistics.pstdev(best["values"]))
    assert chosen["runs"] == 3 and chosen["trials"] == best["trials"]
    assert len(chosen["candidates"]) == 3 and sum(c["pruned_runs"] for c in chosen["candidates"]) == 1
    assert max(c["value"] for c in chosen["candidates"]) == pytest.approx(chosen["value"])
    assert "test" not in {k.split("_")[0] for k in chosen}  # test scores are not in the database: none made up
    numbers = f"{chosen['value']:.4f} ± {chosen['std']:.4f}"
    md, html = written["report.md"].read_text(), written["report.html"].read_text()
    assert md.index("## Chosen configuration") < md.index("## Stages") and numbers in md
    assert html.index("Chosen configuration</h2>") < html.index("<h2>Stages</h2>") and numbers in html
    assert f"over 3 runs of 4 epochs; trials {', '.join(f'#{n}' for n in best['trials'])}" in md


def test_the_final_stage_s_best_params_are_the_chosen_configuration_not_its_luckiest_run(tmp_path):
    # final re-runs configurations to compare their means: its single best run (0.99) belongs to a configuration
    # whose mean is 0.86, which the report's ranges table once named as final's best params
    url = f"sqlite:///{tmp_path / 'search.db'}"
    lucky, steady = (0.05, 1e-3), (0.01, 1e-4)
    values = {lucky: [0.99, 0.80, 0.80], steady: [0.95, 0.95, 0.95]}
    rng = np.random.default_rng(0)
    add_stage(url, "pick", "coarse", COARSE_SPACE, trial_specs(rng, COARSE_SPACE, 4, iterations=100), 2, "random",
              None)
    final = trial_specs(rng, COARSE_SPACE, 6, iterations=100, points=[lucky, steady] * 3)
    for i, spec in enumerate(final):
        spec["value"] = values[(spec["lr"], spec["reg"])][i // 2]
    add_stage(url, "pick", "final", COARSE_SPACE, final, 2, "fixed", "pick/coarse")
    report = campaign_report(open_storage(url, create=False), "pick", images=False)
    written = write_report(report, tmp_path / "out")
    assert report.summary["chosen"]["trials"] == [1, 3, 5]
    md = written["report.md"].read_text()
    assert "| final | lr=1e-06:1 reg=1e-06:10 | best mean of #1, #3, #5 | lr=0.01 reg=0.0001 |" in md
    # and said how to keep it: a run of it retrained, as search best says after search auto, with the --storage it
    # needs to find this database (it once left it out: pasted, the command said "no database at 'search.db'")
    keep = f"search train --from-trial pick/final:1 --storage {url} --save model.npz"
    assert f"Keep it as a model for `search predict`: `{keep}`." in " ".join(md.split())
    assert f"<code>{keep}</code>" in _unspanned(written["report.html"].read_text())
    assert report.summary["storage"] == url
    page = re.sub(r"<[^>]+>", " ", written["report.html"].read_text())
    assert "final lr=1e-06:1 reg=1e-06:10 best mean of #1, #3, #5 lr=0.01 reg=0.0001" in " ".join(page.split())


def test_a_command_for_a_campaign_named_with_a_backtick_is_one_code_span_in_markdown_and_html(tmp_path):
    # `search grid --campaign 'p`ick'`: the name's backtick closed the span, and the rest of the command read as text
    from markdown_it import MarkdownIt

    url = f"sqlite:///{tmp_path / 'search.db'}"
    rng = np.random.default_rng(0)
    add_stage(url, "p`ick", "coarse", COARSE_SPACE, trial_specs(rng, COARSE_SPACE, 4, iterations=100), 2, "random",
              None)
    final = trial_specs(rng, COARSE_SPACE, 2, iterations=100, points=[(0.01, 1e-4)] * 2)
    add_stage(url, "p`ick", "final", COARSE_SPACE, final, 2, "fixed", "p`ick/coarse")
    written = write_report(campaign_report(open_storage(url, create=False), "p`ick", images=False), tmp_path / "out")
    md = written["report.md"].read_text().split("\n")
    grid = f"search grid --campaign 'p`ick' --storage {url}"
    keep = f"search train --from-trial 'p`ick/final:0' --storage {url} --save model.npz"
    assert (f"this campaign has no grid stage; add one at the coarse stage's budget with `` {grid} `` and run the "
            "report again") in md
    chosen = next(line for line in md if line.startswith("lr=0.01 reg=0.0001: validation accuracy"))
    assert chosen.endswith(f"; trials #0, #1 of p\\`ick/final), the best mean of the 1 configurations re-run in stage "
                           f"final. Its retrains are not stored in the database: `search auto` prints them when it "
                           f"retrains the choice. Keep it as a model for `search predict`: `` {keep} ``.")
    rendered = MarkdownIt("commonmark").render("\n".join(md))
    codes = re.findall(r"<code>(.*?)</code>", rendered)
    assert html.escape(grid, quote=False) in codes and html.escape(keep, quote=False) in codes
    assert "of p`ick/final), the best mean" in rendered
    page = _unspanned(written["report.html"].read_text())
    assert f"<code>{html.escape(grid)}</code>" in page and f"<code>{html.escape(keep)}</code>" in page
    assert "of p`ick/final), the best mean" in page
    # a backslash before the backtick: escaped too, else "\\`" (an escaped backslash) left the backtick to open a span
    from studies.report import _as_text, _code, _inline_code, _no_html

    name = "a\\`b"
    line = f"of {_as_text(name)}: {_code('search train --from-trial ' + name)}"
    assert line == "of a\\\\\\`b: `` search train --from-trial a\\`b ``"
    assert MarkdownIt("commonmark").render(_no_html(line)) == (
        "<p>of a\\`b: <code>search train --from-trial a\\`b</code></p>\n")
    assert _unspanned(_inline_code(line)) == "of a\\`b: <code>search train --from-trial a\\`b</code>"


def test_the_stored_retrains_of_the_chosen_configuration_are_reported_and_others_are_not(tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_auto_campaign(url, "auto")
    storage = open_storage(url, create=False)
    chosen = campaign_report(storage, "auto").summary["chosen"]
    assert chosen["retrained"] is None  # nothing stored: nothing reported
    final = optuna.load_study(study_name="auto/final", storage=storage)
    stored = {"asked": {"params": chosen["params"], "seed": 0, "retrains": 3}, "val_acc": [0.9, 0.8, 0.85],
              "test_acc": [0.91, 0.87, 0.89], "status": "completed"}
    final.set_user_attr("retrained", stored)
    report = campaign_report(storage, "auto")
    assert report.summary["chosen"]["retrained"] == pytest.approx(
        {"runs": 3, "val_acc": 0.85, "test_acc": 0.89, "test_std": statistics.pstdev([0.91, 0.87, 0.89]),
         "test_balanced_accuracy": None, "stop_reason": "completed", "most_frequent_class": None})
    md = write_report(report, tmp_path / "out")["report.md"].read_text()
    assert "Retrained 3 times on the training split with other seeds: validation 0.8500, test accuracy 0.8900 ± " \
           "0.0163 (mean ± std)." in " ".join(md.split())
    final.set_user_attr("retrained", {**stored, "test_balanced_accuracy": [0.8, 0.7, 0.75]})  # stored since
    report = campaign_report(storage, "auto")
    assert report.summary["chosen"]["retrained"]["test_balanced_accuracy"] == pytest.approx(0.75, rel=1e-15)
    md = write_report(report, tmp_path / "out")["report.md"].read_text()
    assert "test accuracy 0.8900 ± 0.0163 (mean ± std), balanced accuracy 0.7500." in " ".join(md.split())
    other = {**stored, "asked": {**stored["asked"], "params": {**chosen["params"], "lr": 0.5}}}
    final.set_user_attr("retrained", other)  # retrains of another configuration are not this choice's
    assert campaign_report(storage, "auto").summary["chosen"]["retrained"] is None
    final.set_user_attr("retrained", {"test_acc": "0.9; DROP TABLE trials"})  # a hostile attribute: ignored
    assert campaign_report(storage, "auto").summary["chosen"]["retrained"] is None
    storage.engine.dispose()


def test_the_report_gives_what_the_most_frequent_class_alone_scores_beside_the_retrains(tmp_path):
    # a report of search auto on 220 images, 64 % circles, gave test accuracy 0.6364 for a network that calls every
    # image a circle, with no word that answering 'circle' alone scores exactly that
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_auto_campaign(url, "auto")
    storage = open_storage(url, create=False)
    chosen = campaign_report(storage, "auto").summary["chosen"]
    final = optuna.load_study(study_name="auto/final", storage=storage)
    stored = {"asked": {"params": chosen["params"], "seed": 0, "retrains": 1}, "val_acc": [0.8], "test_acc": [0.85],
              "stop_reason": "completed", "most_frequent_class": {"class": "stayed", "test_acc": 0.7}}

    def said(retrained: dict) -> tuple[dict, str]:
        final.set_user_attr("retrained", retrained)
        report = campaign_report(storage, "auto", images=False)
        md = " ".join(write_report(report, tmp_path / "out")["report.md"].read_text().split())
        return report.summary["chosen"]["retrained"]["most_frequent_class"], md

    majority, md = said(stored)
    assert majority == {"class": "stayed", "test_acc": 0.7}
    assert ("test accuracy 0.8500 (1 retrain: no spread). Always predicting the most frequent class, 'stayed', "
            "scores 0.7000 on test.") in md
    majority, md = said({**stored, "test_acc": [0.7]})
    assert ("test accuracy 0.7000 (1 retrain: no spread). Always predicting the most frequent class, 'stayed', "
            "scores 0.7000 on test; the chosen network does no better: it learned nothing but the class "
            "frequencies.") in md
    majority, md = said({**stored, "most_frequent_class": ["stayed", 0.7]})  # changed by hand: left out
    assert majority is None and "Always predicting" not in md
    storage.engine.dispose()


def test_a_campaign_without_final_has_no_chosen_section(demo):
    report, written, _ = demo
    assert report.summary["chosen"] is None and "Chosen configuration" not in written["report.md"].read_text()


def test_fixed_stages_are_left_out_of_importance_and_of_the_pair_choice(auto):
    report, written, _, _ = auto
    stages = {s["stage"]: s for s in report.summary["stages"]}
    assert stages["promote-1"]["sampler"] == stages["final"]["sampler"] == "fixed"
    for name in ("promote-1", "final"):  # 8 and 9 completed trials over two dims: rated, were they sampled
        assert stages[name]["importance"]["importance"] is None and stages[name]["importance"]["fixed"]
    for name in ("coarse", "fine-1"):
        assert stages[name]["importance"]["importance"]
    assert report.summary["pair"]["reason"].endswith("(mean importance over coarse, fine-1)")
    md = written["report.md"].read_text()
    section = md[md.index("## Parameter importance"):md.index("## Diagnoses")]
    assert section.count("promote-1") == 1 and section.count("final") == 1  # one line says so
    assert "- promote-1, final: left out of importance and of the pair plot's choice" in section
    assert "| dimension | coarse | fine-1 |" in section


def test_ranges_draw_the_chain_stages_and_grid_not_the_fixed_ones(auto, campaign_db, monkeypatch):
    _, _, _, drawn = auto
    assert drawn["ranges"] == ["coarse", "fine-1"]
    storage, _ = campaign_db
    seen = {}
    real = plots.plot_ranges

    def spy(ax, ranges, *args, **kwargs):
        seen["ranges"], seen["dashed"] = [r[0] for r in ranges], args[4] if len(args) > 4 else kwargs.get("dashed")
        return real(ax, ranges, *args, **kwargs)

    monkeypatch.setattr(plots, "DRAW_BESIDE", False)  # drawn in this process, where the spy sees it
    monkeypatch.setattr(plots, "plot_ranges", spy)
    campaign_report(storage, "demo")
    assert seen["ranges"] == ["coarse", "fine-1", "grid"] and list(seen["dashed"]) == ["grid"]


def _unspanned(html_text: str) -> str:
    """The HTML without its <span> tags: inline code as the text it shows."""
    return re.sub(r"</?span[^>]*>", "", html_text)


def test_inline_code_keeps_each_word_whole(tmp_path):
    # at 390 pixels the report's command to keep the chosen model broke after the first hyphen of --save:
    # "wine/final:1 -" and, on the next line, "-save model.npz"
    from studies.report import _inline_code

    assert _inline_code("keep it: `search train --from-trial wine/final:1 --save model.npz`.") == (
        "keep it: <code><span class='nw'>search</span> <span class='nw'>train</span> "
        "<span class='nw'>--from-trial</span> <span class='nw'>wine/final:1</span> <span class='nw'>--save</span> "
        "<span class='nw'>model.npz</span></code>.")
    long_url = "sqlite:////home/someone/experiments/2024/search.db"  # longer than a phone's line: may break
    assert _inline_code(f"`--storage {long_url}`") == f"<code><span class='nw'>--storage</span> {long_url}</code>"


def test_inline_code_is_code_in_html_and_backticks_in_markdown(demo):
    _, written, _ = demo
    html, md = written["report.html"].read_text(), written["report.md"].read_text()
    assert "<code>search explain STUDY:NUMBER</code>" in _unspanned(html) and "`" not in html
    assert "`search explain STUDY:NUMBER`" in md


def test_small_negative_numbers_print_as_zero_never_minus_zero():
    assert diagnosis_text("underfitting", {"train_acc": 0.9, "train_val_gap": -0.0004}) == "train 0.9000, gap 0.0 pts"
    assert diagnosis_text("lr_too_low", {"loss_change": -0.0001}) == "loss rose 0.01 %"
    assert diagnosis_text("underfitting", {"train_acc": 0.86, "train_val_gap": -0.0235}) == "train 0.8600, gap -2.4 pts"


def test_a_loss_change_or_gap_is_given_to_a_tenth_as_search_explain_gives_it():
    # "loss fell 10 %" beside lr_too_low (a loss that fell by less than 10 %) and "gap 5 pts" beside overfitting (a gap
    # above 5 points), where search explain said 9.7% and 5.5%
    assert diagnosis_text("lr_too_low", {"loss_change": 0.0966}) == "loss fell 9.7 %"
    assert diagnosis_text("overfitting", {"train_acc": 0.99, "val_acc": 0.9354, "train_val_gap": 0.0546}) == (
        "train 0.9900, val 0.9354: gap 5.5 pts")  # once "train 0.99, val 0.94: gap 5.5 pts", which did not add up
    assert diagnosis_text("healthy", {"loss_change": 0.9716, "train_val_gap": 0.017}) == "loss fell 97.2 %, gap 1.7 pts"


def test_an_example_of_a_loss_that_fell_by_half_and_came_back_says_so_not_that_it_rose_by_a_negative_share():
    from engine.diagnostics import THRESHOLDS
    from studies.report import LOSS_BOUNCE_LOW

    assert LOSS_BOUNCE_LOW == THRESHOLDS.bounce_low
    numbers = {"loss_change": 0.078, "loss_low": 0.1946}
    assert diagnosis_text("lr_too_high", numbers, "completed") == "loss fell to 19.5 %, then back to 92.2 % of its first"
    assert diagnosis_text("lr_too_high", {"loss_change": -0.25, "loss_low": 0.97}, "completed") == "loss rose 25.0 %"
    assert diagnosis_text("lr_too_high", {"loss_change": -0.25}, "completed") == "loss rose 25.0 %"  # stored before
    assert diagnosis_text("lr_too_high", numbers, "exploded") == "loss exploded"

def test_an_example_of_a_run_still_learning_or_whose_validation_fell_says_so():
    assert diagnosis_text("still_learning", {"train_acc": 0.6, "late_loss_fall": 0.0648}) == (
        "train 0.6000, loss still falling 6.5 % a tenth")
    fell = {"train_acc": 0.88, "val_acc": 0.845, "train_val_gap": 0.035, "val_peak_epoch": 2, "val_drop": 0.025,
            "val_drop_limit": 0.0213, "val_fell": True}
    assert diagnosis_text("overfitting", fell) == "train 0.8800, val 0.8450: gap 3.5 pts, val fell 2.5 pts from epoch 2"
    assert diagnosis_text("overfitting", {**fell, "val_fell": False}) == "train 0.8800, val 0.8450: gap 3.5 pts"


def test_an_underfitting_example_gives_the_share_of_its_loss_the_l2_term_holds():
    # wine/fine-1:21, underfitting because its loss was its L2 term, was titled "train 0.99, gap -1 pts"
    numbers = {"train_acc": 0.9919, "train_val_gap": -0.0081, "loss_change": -0.0319, "reg_share": 1.0112}
    # to a tenth, as search explain gives it ("its L2 term is 101.1% of it"), not "L2 term 101 %" and "0 %"
    assert diagnosis_text("underfitting", numbers) == "train 0.9919, gap -0.8 pts, L2 term 101.1 %"
    assert diagnosis_text("underfitting", {**numbers, "train_acc": 0.41, "reg_share": 0.0031}) == (
        "train 0.4100, gap -0.8 pts, L2 term 0.3 %")


def test_the_data_line_ends_its_shortened_hash_with_three_dots_not_four():
    # "...; sha256 cad2cfa79846...." (the shortened hash's dots, then the sentence's)
    shapes = {"train": [124, 14], "val": [27, 14], "test": [27, 14]}
    data = {"path": "/d/wine.csv", "format": "csv", "shapes": shapes, "classes": ["a", "b", "c"]}
    line = "Data: /d/wine.csv (csv), 124 train / 27 val / 27 test samples of 14 features, 3 classes"
    assert _data_text({**data, "sha256": "cad2cfa79846" + "0" * 52}) == line + "; sha256 cad2cfa79846..."
    assert _data_text(data) == line + "."


def test_a_loss_that_barely_moved_is_drawn_inside_the_axes():
    flat = [2.3026, None, 2.3025, None, 2.3024] * 20  # the stored curve: None for non-finite points
    panels = plots.diagnosis_axes(2)
    plots.plot_diagnosis_examples(panels, [
        {"title": "lr_too_low", "loss": flat, "iterations": 100, "train_acc": [0.1, 0.1], "val_acc": [0.1, 0.1]},
        {"title": "one point", "loss": [2.3], "iterations": 1, "train_acc": [], "val_acc": []}])
    ax = panels[0][0]
    (line,) = ax.lines
    y = np.asarray(line.get_ydata(), dtype=float)
    assert y.size == 60 and np.isfinite(y).all()  # every finite point, joined across the Nones
    low, high = ax.get_ylim()
    assert low < 0 <= y.min() and high > y.max() * 1.1  # from 0, with room above: the line is off the frame
    single = panels[1][0].lines[0]
    assert single.get_marker() == "o"  # a single point still shows
    plots.plt.close(ax.get_figure(root=True))


def test_short_loss_curves_have_markers_and_whole_iteration_ticks():
    ax = plots.new_axes()[0, 0]
    plots.plot_loss_curves(ax, [("a", 2, [2.3, 9.0]), ("b", 2, [2.2, 7.5])], "exploded", 3.0)
    ax.figure.canvas.draw()
    assert all(line.get_marker() == "o" for line in ax.lines if line.get_label() in ("a", "b"))
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    # the legend lies below the axes and their tick labels, inside the figure: never on the curves
    legend, axes = ax.get_legend().get_window_extent(), ax.xaxis.get_tightbbox()
    assert legend.y1 <= axes.y0 and ax.figure.bbox.y0 <= legend.y0
    plots.plt.close(ax.figure)


def test_every_auto_image_is_a_real_png(auto):
    report, written, _, _ = auto
    assert {"importance", "scatter", "history", "ranges", "loss_curves", "best_so_far"} <= set(report.images)
    for name in report.images:
        assert_real_png(written[name].read_bytes())


def test_the_history_of_a_small_stage_marks_whole_trial_numbers():
    # a 20-trial campaign's history was drawn against trial numbers 0.0, 2.5, 5.0, ..., 17.5
    frame = pd.DataFrame({"number": range(20), "state": ["COMPLETE"] * 20, "value": np.linspace(0.5, 0.9, 20)})
    ax = plots.new_axes()[0, 0]
    plots.plot_history(ax, [("coarse", frame)])
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0]
    plots.plt.close(ax.figure)


def test_the_accuracy_curves_mark_whole_epochs():
    import matplotlib.pyplot as plt

    from studies.plots import plot_accuracy_curves

    fig, ax = plt.subplots()
    plot_accuracy_curves(ax, [0.5, 0.7, 0.8], [0.45, 0.6, 0.7])
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks == [1.0, 2.0, 3.0]
    plt.close(fig)


def reading_order(legend) -> list[str]:
    """A drawn legend's labels as they read: row by row from the top, left to right."""
    boxes = {t.get_text(): t.get_window_extent() for t in legend.get_texts()}
    rows = sorted({round(b.y0) for b in boxes.values()}, reverse=True)
    return sorted(boxes, key=lambda label: (rows.index(round(boxes[label].y0)), boxes[label].x0))


def test_pruned_and_failed_trials_are_drawn_along_the_bottom_of_the_value_plots():
    # a search of lr=1e-3:1e2 with asha once showed 4 of its 30 coarse trials: the 26 pruned ones, among them every
    # exploded lr above 0.5, were on no plot of value against lr or against trial number
    coarse = pd.DataFrame({"number": [0, 1, 2, 3, 4], "state": ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED", "FAIL"],
                           "value": [0.9, np.nan, 0.95, 0.97, np.nan], "param_lr": [0.01, 3.0, 0.02, 40.0, 0.5],
                           "stop_reason": ["completed", "exploded", "completed", "nan", "interrupted"]})
    fine = pd.DataFrame({"number": [0, 1], "state": ["PRUNED", "COMPLETE"], "value": [0.8, 0.96],
                         "param_lr": [0.2, 0.03], "stop_reason": ["pruned", "completed"]})
    ax = plots.new_axes()[0, 0]
    plots.plot_param_slices([ax], [("coarse", coarse), ("fine-1", fine)], [plots.Dim("lr", "float", True)])
    ax.figure.canvas.draw()
    drawn = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert drawn["exploded or nan (pruned)"] == [[3.0, 0.03], [40.0, 0.03]]
    assert drawn["pruned by the scheduler"] == [[0.2, 0.03]]
    assert drawn["failed"] == [[0.5, 0.03]]
    assert ax.get_xlim()[1] > 40.0 and ax.get_ylim()[0] > 0.7  # the lr axis holds them; the value axis is the values'
    assert reading_order(ax.figure.legends[0]) == [
        "coarse", "fine-1", "exploded or nan (pruned)", "pruned by the scheduler", "failed"]
    plots.plt.close(ax.figure)
    ax = plots.new_axes()[0, 0]
    plots.plot_history(ax, [("coarse", coarse), ("fine-1", fine)])
    drawn = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert drawn["exploded or nan (pruned)"] == [[1.0, 0.03], [3.0, 0.03]]
    assert drawn["pruned by the scheduler"] == [[5.0, 0.03]]  # fine-1's trial 0, after coarse's 0-4
    assert drawn["failed"] == [[4.0, 0.03]]
    # the step lines were in no legend: one entry says what they are
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "coarse", "fine-1", "exploded or nan (pruned)", "pruned by the scheduler", "failed",
        "line: the stage's best so far"]
    ax.figure.canvas.draw()  # and it lies beside the trials, never on them
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    assert ax.get_legend().get_window_extent().x1 <= ax.figure.bbox.x1
    plots.plt.close(ax.figure)


def test_the_one_value_plots_share_one_legend_below_their_panels_that_covers_no_trial():
    # each panel had its own legend of the stages, drawn over the trials where matplotlib found room ("best")
    frame = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE", "COMPLETE", "PRUNED"],
                          "value": [0.9, 0.95, np.nan], "param_lr": [0.01, 0.02, 3.0], "param_reg": [1e-4, 1e-3, 1e-2],
                          "param_hidden": [16, 64, 32], "stop_reason": ["completed", "completed", "exploded"]})
    axes = plots.new_axes(1, 3, size=(4.6, 3.4)).ravel()
    dims = [plots.Dim("lr", "float", True), plots.Dim("reg", "float", True), plots.Dim("hidden", "int", True)]
    fig = plots.plot_param_slices(list(axes), [("coarse", frame), ("fine-1", frame)], dims)
    fig.canvas.draw()
    assert [ax.get_legend() for ax in axes] == [None, None, None] and len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["coarse", "fine-1", "exploded or nan (pruned)"]
    box = fig.legends[0].get_window_extent()
    assert box.y1 <= min(ax.get_tightbbox().y0 for ax in axes) and fig.bbox.y0 <= box.y0
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1
    plots.plt.close(fig)


def test_the_pair_plot_draws_the_completed_trials_above_the_stopped_and_failed_ones():
    # an asha stage's 127 runs pruned by the scheduler, drawn last, hid its 23 completed ones and their colours
    frame = pd.DataFrame({"number": [0, 1, 2, 3], "state": ["COMPLETE", "PRUNED", "PRUNED", "FAIL"],
                          "value": [0.9, 0.5, np.nan, np.nan], "param_lr": [0.01] * 4, "param_reg": [1e-4] * 4,
                          "stop_reason": ["completed", "pruned", "exploded", None]})
    ax = plots.new_axes()[0, 0]
    plots.plot_param_scatter([ax], [("fine-3", frame)], plots.Dim("lr", "float", True), plots.Dim("reg", "float", True))
    complete, *stopped = ax.collections
    assert complete.get_array().tolist() == [0.9] and len(stopped) == 3
    assert all(c.get_zorder() < complete.get_zorder() for c in stopped)
    plots.plt.close(ax.figure)


def test_the_pair_plot_tells_exploded_trials_from_ones_the_scheduler_pruned():
    # in an asha stage both were one red x: where lr explodes could not be told from where the scheduler cut runs
    frame = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE", "PRUNED", "PRUNED"], "value": [0.9, np.nan, 0.5],
                          "param_lr": [0.01, 30.0, 0.002], "param_reg": [1e-4, 1e-3, 1e-2],
                          "stop_reason": ["completed", "exploded", "pruned"]})
    ax = plots.new_axes()[0, 0]
    plots.plot_param_scatter([ax], [("coarse", frame)], plots.Dim("lr", "float", True), plots.Dim("reg", "float", True))
    marks = {tuple(c.get_offsets().tolist()[0]): (c.get_facecolor().tolist(), c.get_edgecolor().tolist())
             for c in ax.collections[1:]}
    red, orange = [list(matplotlib.colors.to_rgba(c)) for c in ("tab:red", "tab:orange")]
    assert marks[(30.0, 1e-3)][0] == [red] and marks[(0.002, 1e-2)] == ([], [orange])
    assert [t.get_text() for t in ax.figure.legends[0].get_texts()] == [
        "complete (colour: accuracy)", "exploded or nan (pruned)", "pruned by the scheduler", "failed"]
    plots.plt.close(ax.figure)


def test_a_completed_run_whose_loss_rose_is_not_said_to_have_exploded():
    # digits/coarse:6 of search auto completed 3 epochs at val 0.930, its loss ending 20 % above its first: labelled
    # lr_too_high, its example was titled "loss exploded"
    assert diagnosis_text("lr_too_high", {"loss_change": -0.1986}, "completed") == "loss rose 19.9 %"
    assert diagnosis_text("lr_too_high", {"loss_change": -0.4219}, "pruned") == "loss rose 42.2 %"
    assert diagnosis_text("lr_too_high", {"loss_change": -5.2}, "exploded") == "loss exploded"
    assert diagnosis_text("lr_too_high", {"loss_change": None}, "nan") == "loss went NaN"


def test_a_too_low_lr_whose_loss_rose_a_little_is_not_said_to_have_fallen():
    # once "loss fell -3 %" (a loss up 3.2 %, barely moved: lr_too_low)
    assert diagnosis_text("lr_too_low", {"loss_change": -0.032}) == "loss rose 3.2 %"
    assert diagnosis_text("lr_too_low", {"loss_change": -0.03}, "completed") == "loss rose 3.0 %"
    assert diagnosis_text("lr_too_low", {"loss_change": 0.064}) == "loss fell 6.4 %"
    assert diagnosis_text("lr_too_low", {"loss_change": None}, "completed") == "loss fell -"
    # a rise of 0.04 % was "loss fell 0.0 %" where search explain said "rose by 0.04%", and no change "did not fall"
    assert diagnosis_text("lr_too_low", {"loss_change": -0.0004}) == "loss rose 0.04 %"
    assert diagnosis_text("lr_too_low", {"loss_change": 0.0}) == "loss did not fall"
    assert diagnosis_text("lr_too_low", {"loss_change": -0.0005}) == "loss rose 0.1 %"


@pytest.mark.parametrize("panels", [1, 2, 3])
def test_the_pair_plots_legend_fits_its_figure(panels):
    # one coarse stage alone (an interrupted campaign) cut "complete (colour: accuracy)" and "failed" off the sides
    frame = pd.DataFrame({"number": [0, 1], "state": ["COMPLETE", "FAIL"], "value": [0.9, np.nan],
                          "param_lr": [0.01, 0.1], "param_reg": [1e-4, 1e-3],
                          "stop_reason": ["completed", "interrupted"]})
    axes = plots.new_axes(1, panels, size=(4.6, 3.6)).ravel()
    fig = plots.plot_param_scatter(list(axes), [("coarse", frame)] * panels, plots.Dim("lr", "float", True),
                                   plots.Dim("reg", "float", True))
    fig.canvas.draw()
    box, page = fig.legends[0].get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0
    plots.plt.close(fig)


def test_a_log_axis_of_under_two_decades_is_labelled_at_2_and_5_times_the_powers_of_ten():
    # hidden=16:256:int, search auto's width, had one label on its log axis (10^2): its range could not be read
    frame = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3, "value": [0.9, 0.95, 0.97],
                          "param_hidden": [16, 64, 256], "param_lr": [1e-6, 1e-3, 1.0]})
    axes = plots.new_axes(1, 2).ravel()
    plots.plot_param_slices(list(axes), [("coarse", frame)], [plots.Dim("hidden", "int", True),
                                                              plots.Dim("lr", "float", True)])
    axes[0].figure.canvas.draw()

    def shown(axis):  # the minor labels inside the axis' limits
        low, high = sorted(axis.get_view_interval())
        return [t.get_text() for t in axis.get_minorticklabels() if t.get_text() and low <= t.get_position()[
            0 if axis is axis.axes.xaxis else 1] <= high]

    assert [shown(ax.xaxis) for ax in axes] == [["20", "50", "200"], []]  # six decades of lr: the powers of ten alone
    # the major label beside them once read 10^2
    majors = [[t.get_text() for t in ax.xaxis.get_majorticklabels() if t.get_text()] for ax in axes]
    assert "100" in majors[0] and not any("$" in text for text in majors[0])
    assert "$\\mathdefault{10^{-3}}$" in majors[1]
    plots.plt.close(axes[0].figure)
    ax = plots.new_axes()[0, 0]
    plots.plot_ranges(ax, [("coarse", (1e-6, 1.0), (16, 256)), ("fine-1", (1e-3, 0.1), (36, 228))], "lr", "hidden")
    ax.figure.canvas.draw()
    assert shown(ax.yaxis) == ["20", "50", "200"] and shown(ax.xaxis) == []
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("lr (log)", "hidden (log)")  # named as in the other plots
    plots.plt.close(ax.figure)


def test_the_chosen_configuration_counts_a_pruned_run_as_search_auto_does():
    # search auto counts a final-stage run stopped with a value (NaN after an epoch) at that value and one stopped
    # before any epoch as 0; the report counted both 0, and so named another configuration than auto retrained
    frame = pd.DataFrame({
        "number": [0, 1, 2, 3, 4, 5, 6], "param_lr": [0.01, 0.02, 0.01, 0.02, 0.01, 0.02, 0.03],
        "state": ["COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "PRUNED"],
        "value": [0.90, 0.91, 0.90, 0.91, 0.96, 0.91, np.nan]})
    chosen = chosen_configuration(StageInfo("t/final", "final", {"epochs": 4}), frame, ["lr"])
    assert chosen["params"] == {"lr": 0.01} and chosen["trials"] == [0, 2, 4] and chosen["pruned_runs"] == 1
    assert chosen["value"] == pytest.approx(0.92, abs=1e-12)
    assert [(c["params"]["lr"], round(c["value"], 12)) for c in chosen["candidates"]] == [
        (0.01, 0.92), (0.02, 0.91), (0.03, 0.0)]


def test_an_integer_dimension_on_a_linear_axis_has_whole_ticks():
    # depth=1:3:int was drawn with ticks at 1.25, 1.5 and 1.75
    frame = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3, "value": [0.9, 0.95, 0.97],
                          "param_depth": [1, 2, 3], "param_lr": [1e-3, 1e-2, 1e-1]})
    depth, lr = plots.Dim("depth", "int", False), plots.Dim("lr", "float", True)
    axes = plots.new_axes(1, 2).ravel()
    plots.plot_param_slices([axes[0]], [("coarse", frame)], [depth])
    plots.plot_param_scatter([axes[1]], [("coarse", frame)], lr, depth)
    axes[0].figure.canvas.draw()
    for ticks, (low, high) in ((axes[0].get_xticks(), axes[0].get_xlim()), (axes[1].get_yticks(), axes[1].get_ylim())):
        assert [t for t in ticks if low <= t <= high] == [1.0, 2.0, 3.0]
    plots.plt.close(axes[0].figure)


def test_a_run_of_one_epoch_has_one_whole_epoch_tick():
    # a trial the scheduler stopped after its first epoch had its accuracy drawn against epochs 0.95 ... 1.05
    panels = plots.diagnosis_axes(1)
    plots.plot_diagnosis_examples(panels, [{"title": "t", "loss": [2.3, 2.0, 1.5], "iterations": 25,
                                            "train_acc": [0.91], "val_acc": [0.90]}])
    fig = panels[0][1].get_figure(root=True)
    fig.canvas.draw()
    ax = panels[0][1]
    assert [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]] == [1.0]
    plots.plt.close(fig)
    ax = plots.new_axes()[0, 0]
    plots.plot_accuracy_curves(ax, [0.91], [0.90])  # search explain --plot
    ax.figure.canvas.draw()
    assert [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]] == [1.0]
    plots.plt.close(ax.figure)


def test_the_best_so_far_plots_name_the_best_value_not_a_best_validation_accuracy():
    # "best validation accuracy so far" read as best_val_acc (a trial's best epoch's); they draw the best value
    ax = plots.new_axes()[0, 0]
    assert plots.plot_best_so_far(ax, [("random", [1.0, 2.0], [0.5, 0.6])]).axes[0].get_ylabel() == "best value so far"
    plots.plt.close(ax.figure)
    ax = plots.new_axes()[0, 0]
    band = plots.plot_median_band(ax, [("random", np.array([[0.5, 0.6], [0.4, 0.7]]))])
    assert band.axes[0].get_ylabel() == "best value reached"
    plots.plt.close(ax.figure)
    assert BEST_SO_FAR_STAGES.startswith("best value so far against cumulative training time, stages one after")
    assert IMAGE_CAPTIONS["best_so_far"] == "best value so far against cumulative training time, grid vs random"


def test_the_captions_say_an_exploded_run_with_a_value_is_drawn_along_the_bottom_not_at_it():
    # "along the bottom (no final value)": an exploded run has the value of an epoch before it blew up (0.8750)
    frame = pd.DataFrame({"number": [0, 1], "state": ["COMPLETE", "PRUNED"], "value": [0.9, 0.875],
                          "stop_reason": ["completed", "exploded"]})
    ax = plots.new_axes()[0, 0]
    plots.plot_history(ax, [("c/coarse", frame)])
    (exploded,) = [c for c in ax.collections if c.get_label() == plots.EXPLODED_LABEL]
    assert exploded.get_offsets().tolist() == [[1.0, plots.BOTTOM_EDGE]]  # at the bottom edge, not at 0.875
    plots.plt.close(ax.figure)
    why = "not at their accuracy (a stopped run's, if any, is of an earlier epoch; a failed run has none): red x"
    assert f"runs stopped early or failed along the bottom, {why} = exploded or nan" in IMAGE_CAPTIONS["history"]
    assert f"failed along the bottom at their value of the dimension, {why}" in IMAGE_CAPTIONS["projection"]
    assert not any("final value" in caption for caption in IMAGE_CAPTIONS.values())


def test_a_curves_label_gives_its_value_to_four_decimals_as_the_tables_do():
    # the report's curve legends and diagnosis panels said (0.943) and (val 0.943) where its tables say 0.9430
    from studies.report import _curve_legend

    row = {"stage": "coarse", "number": 7, "param_lr": 0.0123, "param_reg": 1e-4, "value": 0.94301}
    assert _curve_legend(row, ["lr", "reg"]) == "coarse #7 lr=0.0123 reg=0.0001 (value 0.9430)"  # "(0.9430)": of what?
    # an exploded run of wine read "coarse #4 lr=0.634 hidden=62 (1.0000)": the value of the epoch before it stopped
    assert _curve_legend({**row, "state": "PRUNED", "value": 1.0}, ["lr", "reg"]) == "coarse #7 lr=0.0123 reg=0.0001"


def test_the_pair_plot_of_a_stage_whose_trials_all_scored_the_same_colours_them_at_their_value():
    # four trials of 0.9884 were drawn in the scale's lowest colour (dark, as the worst) under a colour bar from
    # 0.988372 to 0.988373 labelled 1e-6+9.88372e-1
    frame = pd.DataFrame({"number": [0, 1, 2, 3], "state": ["COMPLETE"] * 4, "value": [0.9884] * 4,
                          "param_lr": [0.1, 0.01, 0.02, 0.05], "param_reg": [1e-6, 1e-7, 1e-5, 2e-6]})
    ax = plots.new_axes()[0, 0]
    fig = plots.plot_param_scatter([ax], [("fine-2", frame)], plots.Dim("lr", "float", True),
                                   plots.Dim("reg", "float", True))
    norm = ax.collections[0].norm
    assert (round(norm.vmin, 6), round(norm.vmax, 6)) == (0.9834, 0.9934)
    assert norm(0.9884) == pytest.approx(0.5)
    fig.canvas.draw()
    bar = fig.axes[-1]
    assert bar.yaxis.get_offset_text().get_text() == ""
    plots.plt.close(fig)


def test_a_stage_has_one_colour_in_every_plot_and_never_one_that_marks_a_pruned_or_failed_trial(tmp_path, monkeypatch):
    # search auto on wine drew promote-1 as orange triangles beside "pruned by the scheduler" orange triangles and
    # final in red beside the red x of exploded runs; fine-1 was green in the history plot and orange in the ranges
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_auto_campaign(url, "auto")
    figures = []
    real = plots.figure_png
    monkeypatch.setattr(plots, "DRAW_BESIDE", False)  # drawn in this process, where the spy sees it
    monkeypatch.setattr(plots, "figure_png", lambda fig, *a, **k: figures.append(fig) or real(fig, *a, **k))
    storage = open_storage(url, create=False)
    report = campaign_report(storage, "auto")
    storage.engine.dispose()
    stages = ["coarse", "promote-1", "fine-1", "final"]
    seen = {}  # (plot, stage) -> colour
    for name, fig in zip([name for name in report.images for _ in ("wide", "phone")], figures):  # both layouts
        for ax in fig.axes:
            artists = [*ax.collections, *ax.lines, *ax.patches]
            for artist in artists:
                label = artist.get_label()
                if label in stages and name in ("history", "projection", "ranges", "best_so_far"):
                    colour = (artist.get_edgecolor() if name == "ranges" else
                              artist.get_color() if name == "best_so_far" else artist.get_facecolor()[0])
                    seen[(name, label)] = matplotlib.colors.to_hex(colour)
                    if name == "projection":  # not the scheduler's downward triangle
                        v = matplotlib.markers.MarkerStyle("v")
                        down = v.get_path().transformed(v.get_transform()).vertices
                        drawn = artist.get_paths()[0].vertices
                        assert drawn.shape != down.shape or not np.allclose(drawn, down)
    assert {plot for plot, _ in seen} == {"history", "projection", "ranges", "best_so_far"}
    by_stage = {stage: {c for (_, s), c in seen.items() if s == stage} for stage in stages}
    assert all(len(colours) == 1 for colours in by_stage.values()), by_stage
    colours = [next(iter(c)) for c in by_stage.values()]
    assert len(set(colours)) == len(stages)
    marks = {matplotlib.colors.to_hex(c) for c in ("tab:red", "tab:orange", "grey", "tab:gray")}
    assert not set(colours) & marks, colours


def test_the_stages_of_an_auto_campaign_with_three_fine_stages_and_a_grid_have_nine_colours():
    # the README's recipe (coarse, promote-1..3, fine-1..3, grid) drew its grid in coarse's blue: in the best-so-far
    # plot of grid against random, two blue lines
    colours = [matplotlib.colors.to_hex(plots.stage_colour(i)) for i in range(9)]
    assert len(set(colours)) == 9, colours
    marks = {matplotlib.colors.to_hex(c) for c in ("tab:red", "tab:orange", "grey", "tab:gray")}
    assert not set(colours) & marks


def test_the_layer_mean_and_std_are_drawn_on_the_scale_of_the_spread_the_std_from_0():
    # search layers --init he --activation relu --plot: its std of 0.80 to 0.87 ("keeps its scale") on an axis
    # from 0.80 to 0.87 looked like wild swings
    axes = plots.new_axes(2, 4).ravel()
    stds = [0.826, 0.845, 0.826, 0.817, 0.857, 0.84, 0.819, 0.872, 0.853, 0.802]
    means = [0.564, 0.595, 0.565, 0.560, 0.598, 0.526, 0.557, 0.615, 0.552, 0.546]
    hidden = [np.full((4, 3), m) for m in means]
    fig = plots.plot_layer_histograms([axes[0], axes[1], *axes[2:]], hidden[:6], means[:6], stds[:6], "he + relu")
    assert axes[1].get_ylim() == pytest.approx((0.0, 1.1 * 0.857))
    assert axes[0].get_ylim() == pytest.approx((-1.1 * 0.857, 1.1 * 0.857))
    plots.plt.close(fig)


def test_a_single_runs_log_loss_axis_is_labelled_in_plain_numbers():
    # search explain --plot of an exploded run (loss 2.9 up to 38) labelled its axis 10^1 and 2x10^1 alone, a tick
    # at 5 left blank
    ax = plots.new_axes()[0, 0]
    fig = plots.plot_loss_curve(ax, [2.9, 38, 19, 33, 31, 36, 27, 32, 30, 35], iterations=10, threshold=3.0)
    fig.canvas.draw()
    low, high = ax.get_ylim()
    shown = [t.get_text() for t in [*ax.yaxis.get_majorticklabels(), *ax.yaxis.get_minorticklabels()]
             if low <= t.get_position()[1] <= high and t.get_text()]
    assert sorted(shown, key=float) == ["5", "10", "20"]
    plots.plt.close(fig)


def test_the_colour_bar_of_a_stage_whose_trials_all_scored_1_ends_at_1():
    # search auto on wine: fine-1's 14 completed trials all scored 1.0000, under a colour bar from 0.996 to 1.004
    frame = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3, "value": [1.0] * 3,
                          "param_lr": [0.1, 0.01, 0.02], "param_reg": [1e-6, 1e-7, 1e-5]})
    ax = plots.new_axes()[0, 0]
    fig = plots.plot_param_scatter([ax], [("fine-1", frame)], plots.Dim("lr", "float", True),
                                   plots.Dim("reg", "float", True))
    norm = ax.collections[0].norm
    assert (norm.vmin, norm.vmax) == (0.995, 1.0) and norm(1.0) == 1.0  # the best colour, at the bar's top
    fig.canvas.draw()
    assert fig.axes[-1].get_ylim() == pytest.approx((0.995, 1.0))  # the colour bar
    plots.plt.close(fig)


def test_a_stage_whose_completed_trials_all_scored_the_same_says_so_instead_of_fanovas_words():
    # search auto on wine: "fine-1: importance could not be estimated: Encountered zero total variance in all trees."
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"number": range(10), "state": ["COMPLETE"] * 9 + ["PRUNED"], "value": [1.0] * 9 + [0.4],
                          "param_lr": 10 ** rng.uniform(-3, 0, 10), "param_hidden": rng.integers(16, 64, 10)})
    space = {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
             "hidden": {"type": "int", "low": 16, "high": 64, "log": True}}
    out = param_importance(frame, space)
    assert out["importance"] is None
    assert out["message"] == "importance needs completed trials of different values; this stage's 9 all scored 1.0000"
    frame.loc[0, "value"] = 0.9  # one different value is enough
    assert set(param_importance(frame, space)["importance"]) == {"lr", "hidden"}


@pytest.mark.parametrize("stages", [2, 6, 7])
def test_the_legend_below_the_value_plots_reads_in_stage_order_row_by_row(stages):
    # search auto's six stages and the exploded trials read "coarse, fine-1, promote-2, fine-2, final, exploded"
    # on the first row and "promote-1" alone below coarse: matplotlib fills a legend column by column
    names = ["coarse", "promote-1", "fine-1", "promote-2", "fine-2", "final", "fine-3"][:stages]
    frame = pd.DataFrame({"number": [0, 1], "state": ["COMPLETE", "PRUNED"], "value": [0.9, np.nan],
                          "param_lr": [0.01, 3.0], "stop_reason": ["completed", "exploded"]})
    axes = plots.new_axes(1, 3, size=(4.6, 3.4)).ravel()
    dims = [plots.Dim(n, "float", True) for n in ("lr", "lr", "lr")]
    fig = plots.plot_param_slices(list(axes), [(name, frame) for name in names], dims)
    fig.canvas.draw()
    assert reading_order(fig.legends[0]) == [*names, "exploded or nan (pruned)"]
    per_row = Counter(round(t.get_window_extent().y0) for t in fig.legends[0].get_texts())
    assert max(per_row.values()) - min(per_row.values()) <= 1  # rows of even length: 4 + 4, not 6 + 2
    plots.plt.close(fig)


def test_the_command_that_keeps_the_chosen_configuration_needs_no_storage_where_the_default_finds_it(tmp_path,
                                                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    build_auto_campaign("sqlite:///search.db", "auto")
    report = campaign_report(open_storage("sqlite:///search.db", create=False), "auto", images=False)
    md = " ".join(write_report(report, tmp_path / "out")["report.md"].read_text().split())
    assert report.summary["storage"] is None
    assert re.search(r"`search train --from-trial auto/final:\d+ --save model.npz`", md)
    monkeypatch.setenv("SEARCH_STORAGE", "sqlite:///other.db")  # the default is now another database: name it
    report = campaign_report(open_storage("sqlite:///search.db", create=False), "auto", images=False)
    assert report.summary["storage"] == "sqlite:///search.db"


def test_a_diagnosis_example_is_a_run_the_scheduler_did_not_cut_short_where_there_is_one():
    # search auto on wine with --fine-scheduler asha: the lr_too_low example was wine/fine-1:4, pruned by the scheduler
    # after its first epoch, a loss curve of 2 points, where coarse had 32 lr_too_low runs of all their epochs
    def frame(rows):
        return pd.DataFrame(rows, columns=["number", "state", "value", "stop_reason", "iterations", "diagnosis"])

    coarse = frame([[0, "COMPLETE", 0.30, "completed", 9, "lr_too_low"], [1, "COMPLETE", 0.20, "completed", 9,
                    "lr_too_low"], [2, "COMPLETE", 0.40, "completed", 9, "lr_too_low"],
                    [3, "COMPLETE", 0.90, "completed", 9, "healthy"]])
    fine = frame([[0, "PRUNED", 0.41, "pruned", 2, "lr_too_low"], [1, "PRUNED", 0.80, "pruned", 2, "underfitting"],
                  [2, "COMPLETE", 0.95, "completed", 6, "healthy"]])
    infos = [StageInfo("w/coarse", "coarse", {}), StageInfo("w/fine-1", "fine-1", {})]
    examples = diagnosis_examples(infos, {"w/coarse": coarse, "w/fine-1": fine})
    assert [(ex["label"], ex["study"], ex["number"]) for ex in examples] == [
        ("lr_too_low", "w/coarse", 0),  # the median of coarse's three, not fine-1's cut-short run
        ("underfitting", "w/fine-1", 1),  # only a cut-short run has it: that one
        ("healthy", "w/fine-1", 2)]


def test_a_diagnosis_example_is_a_run_whose_learning_rate_does_not_explain_the_label_where_there_is_one():
    # the README's recipe: the overfitting example was recipe/grid:8, lr 1e-05, whose loss fell 0.3 % (lr_too_low,
    # overfitting: train 0.4930, val 0.3963), beside recipe/grid:35, overfitting alone at 0.9037
    def frame(rows):
        return pd.DataFrame(rows, columns=["number", "state", "value", "stop_reason", "iterations", "diagnosis"])

    coarse = frame([[0, "COMPLETE", 0.85, "completed", 9, "overfitting,dead_units"],
                    [1, "PRUNED", 0.10, "exploded", 2, "lr_too_high,dead_units"]])
    grid = frame([[8, "COMPLETE", 0.3963, "completed", 9, "lr_too_low,overfitting"],
                  [35, "COMPLETE", 0.9037, "completed", 9, "overfitting"],
                  [40, "COMPLETE", 0.20, "completed", 9, "lr_too_low,saturated_units"],
                  [41, "COMPLETE", 0.95, "completed", 9, "healthy"]])
    infos = [StageInfo("r/coarse", "coarse", {}), StageInfo("r/grid", "grid", {})]
    examples = diagnosis_examples(infos, {"r/coarse": coarse, "r/grid": grid})
    assert [(ex["label"], ex["study"], ex["number"]) for ex in examples] == [
        ("lr_too_low", "r/grid", 40),  # the lower median of the two
        ("lr_too_high", "r/coarse", 1),
        ("overfitting", "r/grid", 35),  # not grid:8, a run that barely trained
        ("dead_units", "r/coarse", 0),  # of an earlier stage, rather than coarse:1, whose lr exploded
        ("saturated_units", "r/grid", 40),  # only a run with a learning-rate label has it: that one
        ("healthy", "r/grid", 41)]


def test_the_chosen_configuration_says_which_stages_led_to_it(tmp_path):
    # the chain of search auto (coarse, promote, fine, final, the retrains) was told only in pieces: a table of
    # stages, notes under another, the retrains in a sentence of their own
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_auto_campaign(url, "auto")
    report = campaign_report(open_storage(url, create=False), "auto", images=False)
    chain = ("How it was found: coarse (random, 16 trials of 2 epochs) → promote-1 (fixed, 8 trials of 4 epochs) → "
             "fine-1 (random, 12 trials of 4 epochs) → final (fixed, 9 trials of 4 epochs)")
    written = write_report(report, tmp_path / "out")
    assert f"{chain}." in written["report.md"].read_text()
    assert html.escape(f"{chain}.") in written["report.html"].read_text()
    report.summary["chosen"]["retrained"] = {"runs": 3, "val_acc": 0.9, "test_acc": 0.88, "test_std": 0.01}
    assert f"{chain} → retrained 3 times and tested." in render_markdown(report.summary)
    # why search auto added no further fine stage, as it stores it on the final stage
    optuna.load_study(study_name="auto/final", storage=url).set_user_attr("fine_stages_stopped", "--max-fine 1: ...")
    report = campaign_report(open_storage(url, create=False), "auto", images=False)
    assert f"{chain}. No further fine stage: --max-fine 1: ...." in render_markdown(report.summary)


def test_the_chain_of_the_chosen_configuration_ends_at_its_final_stage(tmp_path):
    # `search fine` after search auto added promote-2 and fine-2, and the chain went on through them to
    # "→ retrained 3 times and tested", as if the retrained choice had come from fine-2
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_auto_campaign(url, "auto")
    rng = np.random.default_rng(5)
    add_stage(url, "auto", "promote-2", FINE_SPACE, trial_specs(rng, FINE_SPACE, 8, iterations=400), 8, "fixed",
              "auto/fine-1")
    add_stage(url, "auto", "fine-2", FINE_SPACE, trial_specs(rng, FINE_SPACE, 10, iterations=400), 8, "random",
              "auto/fine-1")
    report = campaign_report(open_storage(url, create=False), "auto", images=False)
    assert [s["stage"] for s in report.summary["stages"]][-2:] == ["promote-2", "fine-2"]
    report.summary["chosen"]["retrained"] = {"runs": 3, "val_acc": 0.9, "test_acc": 0.88, "test_std": 0.01}
    assert ("fine-1 (random, 12 trials of 4 epochs) → final (fixed, 9 trials of 4 epochs) → retrained 3 times and "
            "tested.") in render_markdown(report.summary)


def _png_size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_every_plot_has_a_phone_layout_with_its_panels_stacked(demo):
    """Three stages' scatter panels side by side (1380 pixels) read on a 390-pixel phone only with pinch-zoom: each
    plot is drawn again at most 460 pixels wide, panels one above the other, and report.html shows it on a narrow
    screen."""
    report, written, _ = demo
    assert set(report.phone) == set(report.images) == REPORT_IMAGES
    for name, png in report.images.items():
        width, height = _png_size(report.phone[name])
        assert width <= 460, (name, width)
    assert _png_size(report.images["scatter"])[0] == 1380  # coarse, fine-1, grid: three 4.6-inch panels in a row
    scatter, projection = _png_size(report.phone["scatter"]), _png_size(report.phone["projection"])
    assert scatter == (460, 3 * 360) and projection == (460, 2 * 340)  # stages, dimensions (lr, reg) stacked
    page = written["report.html"].read_text()
    sources = re.findall(r"<picture><source media='\(max-width: 700px\)' srcset='data:image/png;base64,([^']+)'>"
                         r"<img alt='[^']*' src='data:image/png;base64,([^']+)'></picture>", page)
    assert [(base64.b64decode(p), base64.b64decode(d)) for p, d in sources] == [
        (report.phone[name], report.images[name]) for name in report.images]
    assert not any((written["report.html"].parent / f"{name}.png").read_bytes() == report.phone[name]
                   for name in report.images)  # the files beside the page (report.md's) are the wide ones


def test_a_diagnosis_loss_axis_of_about_a_decade_has_more_than_one_label():
    # an exploded run of digits' grid (loss 2,500 to 30,000, log axis) was read off one label, 10000
    panels = plots.diagnosis_axes(1)
    loss = [2500, 30000, 9000, 15000, 25000, 20000, 8000, 5500, 14000, 18000]
    fig = plots.plot_diagnosis_examples(panels, [{"title": "lr_too_high", "loss": loss, "iterations": 10,
                                                  "threshold": 3.0, "train_acc": [], "val_acc": []}])
    ax = panels[0][0]
    fig.canvas.draw()
    low, high = ax.get_ylim()
    shown = [t for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
             if t.get_text() and low <= t.get_position()[1] <= high]
    assert ax.get_yscale() == "log"
    assert sorted((t.get_position()[1], t.get_text(), t.get_fontsize()) for t in shown) == [
        (5000.0, "5000", 7.0), (10000.0, "10000", 7.0), (20000.0, "20000", 7.0)]
    plots.plt.close(fig)


# ---- the figures drawn in two processes
def _slow_figures(tmp_path, names, die_in_helper=False, interrupt_at=None, hang_in_helper=False):
    """(name, draw) jobs whose draws take 0.2 s and write the drawing process's id to a file; ``die_in_helper``:
    a forked helper ends itself at its first figure; ``hang_in_helper``: it hangs there; ``interrupt_at``: that
    figure raises KeyboardInterrupt here."""
    parent, log, calls = os.getpid(), tmp_path / "pids", []

    def draw(name, phone):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        if die_in_helper and os.getpid() != parent:
            os._exit(3)
        if hang_in_helper and os.getpid() != parent:
            time.sleep(600)
        calls.append(name)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        time.sleep(0.2)
        (ax,) = plots.new_axes(1, 1, size=(3.0 if phone else 5.0, 2.0))[0]
        ax.set_title(f"{name} {'phone' if phone else 'desktop'}")
        ax.plot([0, 1, 2], [len(name), 1, 0])
        return ax.figure

    jobs = [(name, lambda phone, name=name: draw(name, phone)) for name in names]
    return jobs, lambda: sorted(set(log.read_text().split())) if log.exists() else []


def _two_cores():
    import threading

    if not plots._helper_may_draw(2):
        pytest.skip(f"a helper process draws only on Linux with two or more usable cores and no other thread "
                    f"(threads: {[t.name for t in threading.enumerate()]})")


def test_figures_drawn_in_two_processes_are_the_bytes_drawn_in_one(tmp_path, monkeypatch):
    _two_cores()
    names = ["a", "bb", "ccc"]
    jobs, pids = _slow_figures(tmp_path, names)
    images, phones = plots.render_pngs(jobs)
    assert len(pids()) == 2  # this process and the helper each drew
    monkeypatch.setattr(plots, "DRAW_BESIDE", False)
    (tmp_path / "alone").mkdir()
    alone_jobs, alone_pids = _slow_figures(tmp_path / "alone", names)
    alone = plots.render_pngs(alone_jobs)
    assert alone_pids() == [str(os.getpid())]
    assert list(images) == list(phones) == names == list(alone[0])
    assert images == alone[0] and phones == alone[1] and images["a"] != phones["a"]


def test_a_helper_that_stops_leaves_its_figures_to_this_process(tmp_path):
    _two_cores()
    jobs, pids = _slow_figures(tmp_path, ["a", "bb", "ccc"], die_in_helper=True)
    images, phones = plots.render_pngs(jobs)
    assert len(pids()) == 2  # the helper took a figure, and ended
    assert list(images) == list(phones) == ["a", "bb", "ccc"]
    assert all(Image.open(io.BytesIO(png)).size[0] in (300, 500) for png in [*images.values(), *phones.values()])
    assert multiprocessing.active_children() == []


def test_a_helper_that_hangs_is_ended_and_its_figures_drawn_here(tmp_path, monkeypatch):
    # the command waited for the helper's figures with no limit
    _two_cores()
    monkeypatch.setattr(plots, "HELPER_PATIENCE_S", 1.0)
    jobs, pids = _slow_figures(tmp_path, ["a", "bb", "ccc"], hang_in_helper=True)
    started = time.monotonic()
    images, phones = plots.render_pngs(jobs)
    assert time.monotonic() - started < 30 and len(pids()) == 2  # the helper took a figure, and hung there
    assert list(images) == list(phones) == ["a", "bb", "ccc"]
    assert all(Image.open(io.BytesIO(png)).size[0] in (300, 500) for png in [*images.values(), *phones.values()])
    assert multiprocessing.active_children() == []


def test_ctrl_c_while_drawing_stops_the_helper_too(tmp_path):
    _two_cores()
    jobs, pids = _slow_figures(tmp_path, ["a", "bb", "ccc", "dddd"], interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        plots.render_pngs(jobs)
    assert multiprocessing.active_children() == []


def test_beside_another_thread_the_figures_are_drawn_in_this_process_alone(tmp_path):
    # a fork copies a lock another thread holds (stderr's, the logging module's) locked for good in the copy
    import threading

    _two_cores()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        jobs, pids = _slow_figures(tmp_path, ["a", "bb"])
        images, phones = plots.render_pngs(jobs)
    finally:
        release.set()
        other.join()
    assert pids() == [str(os.getpid())] and list(images) == list(phones) == ["a", "bb"]


def test_a_helper_whose_parent_was_killed_ends_instead_of_waiting_for_good(tmp_path):
    # the parent SIGKILLed while drawing: the helper, holding the pipe's reading end too, blocked in its send forever
    import signal
    import subprocess
    import sys

    _two_cores()
    script = f"""
import os, signal, time
import numpy as np
from studies import plots
parent = os.getpid()
def draw(phone):
    if os.getpid() == parent:
        time.sleep(1.0)
        os.kill(parent, signal.SIGKILL)
    with open({str(tmp_path / 'helper')!r}, 'w') as f:
        f.write(str(os.getpid()))
    (ax,) = plots.new_axes(1, 1, size=(6.0, 6.0))[0]
    ax.imshow(np.random.default_rng(0).random((400, 400)))  # a PNG far larger than a pipe holds
    return ax.figure
plots.render_pngs([("a", draw), ("b", draw)])
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=60)
    assert done.returncode == -signal.SIGKILL
    helper = int((tmp_path / "helper").read_text())

    def running() -> bool:  # a zombie left for init to reap has ended
        try:
            with open(f"/proc/{helper}/stat") as f:
                return f.read().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and running():
        time.sleep(0.1)
    alive = running()
    if alive:
        os.kill(helper, signal.SIGKILL)
    assert not alive


def test_ctrl_c_as_the_helper_is_forked_ends_it_too(tmp_path, monkeypatch):
    # Ctrl-C inside Process.start(), after the fork: the helper was never ended and drew on after the command ended
    import signal

    _two_cores()
    real_fork, forked = os.fork, []

    def fork():
        pid = real_fork()
        if pid:
            forked.append(pid)
            signal.raise_signal(signal.SIGINT)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    jobs, pids = _slow_figures(tmp_path, ["a", "bb", "ccc"])
    with pytest.raises(KeyboardInterrupt):
        plots.render_pngs(jobs)
    monkeypatch.undo()
    try:
        left = os.waitpid(forked[0], os.WNOHANG) == (0, 0)
    except ChildProcessError:  # ended and reaped
        left = False
    if left:
        os.kill(forked[0], signal.SIGKILL)
        os.waitpid(forked[0], 0)
    assert not left and multiprocessing.active_children() == []


def test_without_a_shared_semaphore_the_figures_are_drawn_in_this_process_alone(tmp_path, monkeypatch):
    # where /dev/shm is missing the counter's semaphore cannot be made: the report failed where it drew alone before
    import errno

    _two_cores()

    def no_semaphore(*args, **kwargs):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(type(multiprocessing.get_context("fork")), "Value", no_semaphore)
    jobs, pids = _slow_figures(tmp_path, ["a", "bb"])
    images, phones = plots.render_pngs(jobs)
    assert pids() == [str(os.getpid())] and list(images) == list(phones) == ["a", "bb"]
