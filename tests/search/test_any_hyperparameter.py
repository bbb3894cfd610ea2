"""Searching any run option from the CLI: mixed spaces end to end, refinement of each type, --from-trial."""
from __future__ import annotations

import json
import os

import optuna
import pytest

from search.config import RunConfig
from search.space import Choice, FloatRange, IntRange
from search.stages import Stage
from tests.search.conftest import cwd_study, one_line_error

MIXED = ["--space", "lr=1e-4:1e0:log", "--space", "hidden=8:256:log:int", "--space", "activation=relu,tanh,elu",
         "--space", "dropout=0.5:1:linear"]


def test_a_random_stage_over_categories_only_runs_every_combination_before_any_twice(run_cli):
    # 6 random draws from 4 combinations ran tanh/adam 3 times and never relu/adam
    args = ("coarse", "--space", "activation=relu,tanh", "--space", "optimizer=sgd,momentum,adam", "--trials", "8",
            "--epochs", "1", "--train-size", "200", "--jobs", "1")
    assert run_cli(*args).exit_code == 0
    trials = sorted(cwd_study("digits/coarse").get_trials(), key=lambda t: t.number)
    combos = [(t.params["activation"], t.params["optimizer"]) for t in trials]
    assert len(trials) == 8 and len(set(combos[:6])) == 6 and set(combos[6:]) <= set(combos[:6])
    momentum = [t for t in trials if t.params["optimizer"] == "momentum"]
    assert momentum and all(set(t.params) == {"activation", "optimizer"} for t in trials)  # momentum not searched
    # the order is the seed's: the same again in another database, another with another seed
    assert run_cli(*args, "--campaign", "again").exit_code == 0
    again = sorted(cwd_study("again/coarse").get_trials(), key=lambda t: t.number)
    assert [(t.params["activation"], t.params["optimizer"]) for t in again] == combos
    assert run_cli(*args, "--campaign", "other", "--seed", "1").exit_code == 0
    other = sorted(cwd_study("other/coarse").get_trials(), key=lambda t: t.number)
    assert [(t.params["activation"], t.params["optimizer"]) for t in other] != combos


def test_a_mixed_space_is_sampled_stored_and_refined_by_type(run_cli):
    coarse = run_cli("coarse", *MIXED, "--trials", "30", "--epochs", "3", "--train-size", "600", "--json")
    assert coarse.exit_code == 0, coarse.output
    study = cwd_study("digits/coarse")
    trials = study.get_trials()
    assert len(trials) == 30
    for t in trials:
        assert set(t.params) == {"lr", "hidden", "activation", "dropout"}
        assert isinstance(t.params["hidden"], int) and 8 <= t.params["hidden"] <= 256
        assert t.params["activation"] in ("relu", "tanh", "elu")  # the value, not Optuna's index
        assert 0.5 <= t.params["dropout"] <= 1.0
        config = RunConfig.from_dict(t.system_attrs["config"])  # what was trained is what is stored
        assert config.arch.hidden == (t.params["hidden"],)
        assert config.arch.activation == t.params["activation"]
        assert config.arch.dropout == t.params["dropout"] and config.train.lr == t.params["lr"]
        assert t.user_attrs["model_parameters"] == 75 * t.params["hidden"] + 10  # 64 inputs, 10 classes
    fine = run_cli("fine", "--trials", "6", "--json")
    assert fine.exit_code == 0, fine.output
    stage = Stage.from_attrs(cwd_study("digits/fine-1").user_attrs)
    assert isinstance(stage.space["hidden"], IntRange) and isinstance(stage.space["dropout"], FloatRange)
    assert isinstance(stage.space["activation"], Choice)
    notes = {note.split(":")[0]: note for note in stage.range_notes if not note.startswith("ranked at")}
    assert stage.range_notes[0].startswith("ranked at 6 epochs by digits/promote-1")
    assert set(notes) == {"lr", "hidden", "activation", "dropout"}
    best = max((t for t in trials if t.value is not None), key=lambda t: t.value)
    assert best.params["activation"] in stage.space["activation"].choices  # the best's category is kept
    assert stage.space["hidden"].low <= best.params["hidden"] <= stage.space["hidden"].high


def test_from_trial_reproduces_a_trials_value_exactly(run_cli):
    assert run_cli("coarse", "--space", "lr=1e-3:1e-1", "--space", "hidden=16:64:int", "--space",
                   "activation=relu,tanh", "--trials", "4", "--epochs", "2", "--train-size", "400").exit_code == 0
    trials = cwd_study("digits/coarse").get_trials()
    assert [t.value is not None for t in trials] == [True] * 4  # each has a value to reproduce
    for t in trials:
        rerun = run_cli("train", "--from-trial", f"digits/coarse:{t.number}", "--json")
        out = json.loads(rerun.stdout)
        assert out["val_acc"] == t.value and out["trial_value"] == t.value  # the last epoch's, as stored
        assert out["best_val_acc"] == t.user_attrs["best_val_acc"]
        assert out["model_parameters"] == t.user_attrs["model_parameters"]
        assert out["loss_history"][-1] == pytest.approx(t.user_attrs["final_loss"], rel=1e-6)


def test_from_trial_reruns_on_the_blas_threads_the_trial_ran_on(run_cli, monkeypatch):
    # a trial of --jobs 2 runs on 1 BLAS thread and `train --from-trial` ran it on NumPy's own: an exploding run
    # (tanh, momentum, lr 41.8) came back with val_acc 0.7000 for a stored 0.6889
    from threadpoolctl import threadpool_info, threadpool_limits

    import engine.trainer

    def blas() -> set[int]:  # of every BLAS loaded (SciPy brings its own)
        return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    with threadpool_limits(1, user_api="blas"):  # as a worker of --jobs 2 runs
        assert run_cli("coarse", "--lr", "1e-2:1e-1", "--trials", "1", "--epochs", "1", "--train-size",
                       "200", "--jobs", "1").exit_code == 0
    trial = cwd_study("digits/coarse").get_trials()[0]
    assert trial.user_attrs["blas_threads"] == 1
    seen: list[set[int]] = []
    train = engine.trainer.train

    def watched(*args, **kwargs):
        seen.append(blas())
        return train(*args, **kwargs)

    monkeypatch.setattr(engine.trainer, "train", watched)
    with threadpool_limits(2, user_api="blas"):  # the rerun's own process: NumPy's threads
        assert blas() == {2}
        rerun = run_cli("train", "--from-trial", "digits/coarse:0", "--json")
        assert blas() == {2}  # given back after the run
    assert seen == [{1}]
    assert json.loads(rerun.stdout)["val_acc"] == trial.value


def test_a_grid_over_a_mixed_space_takes_every_category_times_k_values(run_cli):
    assert run_cli("coarse", "--space", "lr=1e-3:1e-1", "--space", "activation=relu,tanh", "--trials", "10",
                   "--epochs", "1", "--train-size", "300").exit_code == 0
    grid = run_cli("grid", "--json")
    assert grid.exit_code == 0, grid.output
    study = cwd_study("digits/grid")
    # 2 categories leave 10 / 2 = 5 trials for lr: k = 5, so 2 x 5 = 10 points
    points = {(t.params["activation"], round(t.params["lr"], 12)) for t in study.get_trials()}
    assert len(points) == len(study.get_trials()) == 10
    assert study.user_attrs["n_trials"] == 10
    assert "grid of 10 points (5 lr x 2 activation)" in study.user_attrs["range_notes"][0]


@pytest.mark.parametrize("args,fragments", [
    (["--space", "colour=1:2"], ["colour", "searchable: lr, reg, hidden"]),
    (["--space", "dropout=0.5:1.5:linear"], ["--space dropout", "1.5"]),
    (["--space", "hidden=0:10:int"], ["--space hidden", "0"]),
    (["--space", "activation=relu,swish"], ["--space activation", "swish"]),
    (["--space", "hidden=16:64:int", "--hidden", "100"], ["--space hidden=16:64:int", "--hidden"]),
    (["--space", "lr"], ["NAME=SPEC"]),
    (["--space", "lr=1e-3:1e-1", "--lr", "1e-3:1e-2"], ["searched twice"]),
    # a list of numbers holding nan or inf: an integer one ended in a ValueError traceback
    (["--space", "hidden=nan,3"], ["--space hidden=nan,3: 'nan' is not a finite number"]),
    (["--space", "depth=1,1e309"], ["--space depth=1,1e309: '1e309' is not a finite number"]),
    (["--space", "lr=1e-3,inf"], ["--space lr=1e-3,inf: 'inf' is not a finite number"]),
    # an empty value between commas: relu, ran as relu alone, relu,,tanh as relu,tanh
    (["--space", "activation=relu,"], ["--space activation=relu,: choice relu, has an empty value"]),
    (["--space", "activation=relu,,tanh"], ["--space activation=relu,,tanh: choice relu,,tanh has an empty value"]),
])
def test_bad_spaces_exit_2_with_one_line_and_write_nothing(run_cli, tmp_path, args, fragments):
    one_line_error(run_cli("coarse", *args), *fragments)
    assert not (tmp_path / "search.db").exists()


@pytest.mark.parametrize("args,line", [
    # once accepted as lr=10:20, hidden=16:64 and batch_size=32,64: float() and int() read Python's digit separators
    (["--space", "lr=1_0:20"],
     "error: --space lr=1_0:20: '1_0:20' has a bound that is not a number (a number is written without '_')"),
    (["--lr", "1e-4:1_0"],
     "error: --lr 1e-4:1_0: '1e-4:1_0:log' has a bound that is not a number (a number is written without '_')"),
    (["--space", "hidden=1_6:64"],
     "error: --space hidden=1_6:64: '1_6:64' has a bound that is not a number (a number is written without '_')"),
    (["--space", "batch_size=3_2,64"],
     "error: --space batch_size=3_2,64: '3_2' is not a number (a number is written without '_')"),
    (["--space", "lr=abc:1"], "error: --space lr=abc:1: 'abc:1' has a bound that is not a number"),
    # once searched as hidden=16:32 and batch_size=32,64: float() reads the digits of any script
    (["--space", "hidden=１６:３２"],
     "error: --space hidden=１６:３２: '１６:３２' has a bound that is not a number (a number is written in the digits 0-9)"),
    (["--space", "batch_size=３２,64"],
     "error: --space batch_size=３２,64: '３２' is not a number (a number is written in the digits 0-9)"),
])
def test_a_bound_with_digit_separators_or_other_scripts_digits_is_refused(run_cli, tmp_path, args, line):
    assert one_line_error(run_cli("coarse", *args, "--trials", "1")) == line
    assert not (tmp_path / "search.db").exists()


def test_a_bound_outside_the_searchable_range_is_not_said_to_be_refused_by_the_option(run_cli, tmp_path):
    # once "0.005 is outside what --lr-decay accepts (0.01 to 1)", while `search train --lr-decay 0.005` runs
    assert run_cli("train", "--lr-decay", "0.005", "--epochs", "1", "--train-size", "100").exit_code == 0
    line = one_line_error(run_cli("coarse", "--space", "lr_decay=0.005:1", "--trials", "1"), "--space lr_decay")
    assert line == ("error: --space lr_decay: 0.005 is outside the range lr_decay is searched in (0.01 to 1), though "
                    "--lr-decay accepts it: ranges are searched and widened only within these")
    # once "1.5 is outside what --dropout accepts (0.01 to 1)": the search's limits, said to be what --dropout takes
    line = one_line_error(run_cli("coarse", "--space", "dropout=0.5:1.5", "--trials", "1"), "--space dropout")
    assert line == "error: --space dropout: 1.5 is not accepted: dropout keep probability must be in [0.01, 1], got 1.5"
    # --dropout takes what a search of it may take: 0.005 dropped nearly every unit, and read as a learning rate too low
    line = one_line_error(run_cli("coarse", "--space", "dropout=0.005:1", "--trials", "1"), "--space dropout")
    assert line == ("error: --space dropout: 0.005 is not accepted: dropout keep probability must be in [0.01, 1], "
                    "got 0.005")


def test_a_choice_is_refused_in_its_values_as_written(run_cli, tmp_path):
    # once "choice True,True repeats a value" (Python's spelling of true and 1) and "1e+23 ... (1 to 1e+06)"
    (tmp_path / "b.toml").write_text("batchnorm = [true, 1]\n")
    (tmp_path / "h.toml").write_text("hidden = [8, 99999999999999999999999]\n")
    assert one_line_error(run_cli("coarse", "--space-file", "b.toml", "--trials", "1")) == (
        "error: --space-file b.toml: batchnorm: choice true,1 repeats a value: true and 1 are both "
        "true")
    assert one_line_error(run_cli("coarse", "--space", "hidden=8,16,8", "--trials", "1")) == (
        "error: --space hidden=8,16,8: choice 8,16,8 repeats 8")
    for args, said in ((["--space-file", "h.toml"], "--space-file h.toml: hidden"),
                       (["--space", "hidden=8,99999999999999999999999"], "--space hidden")):
        assert one_line_error(run_cli("coarse", *args, "--trials", "1")) == (
            f"error: {said}: 99999999999999999999999 is outside the range hidden is searched in (1 to 1000000), "
            "though --hidden accepts it: ranges are searched and widened only within these")
    assert not (tmp_path / "search.db").exists()
    # 1e23 for a whole number was read as int(1e23) and said so: "99999999999999991611392 is outside the range ..."
    for spec in ("hidden=16:1e23:int", "hidden=16,1e23", "hidden=16:1e23"):
        assert one_line_error(run_cli("coarse", "--space", spec, "--trials", "1")) == (
            "error: --space hidden: 1e23 is outside the range hidden is searched in (1 to 1000000), though --hidden "
            "accepts it: ranges are searched and widened only within these")
    assert one_line_error(run_cli("coarse", "--space", "batch_size=10:2.5e20", "--trials", "1")) == (
        "error: the space searches batch_size up to 2.5e20, larger than the training set (1257 samples)")
    assert one_line_error(run_cli("coarse", "--space", "depth=1:1e23", "--trials", "1")) == (
        "error: --space depth: 1e23 is not accepted: depth must be 1 to 100 hidden layers, got "
        "100000000000000000000000")  # the option's own words, its number exact
    assert not (tmp_path / "search.db").exists()
    line = one_line_error(run_cli("coarse", "--space", "momentum=0.5:1", "--optimizer", "momentum", "--trials", "1"))
    assert line == "error: --space momentum: 1 is not accepted: momentum must be in [0, 1), got 1.0"


@pytest.mark.parametrize("spec, line", [
    # once "though --depth accepts it", which refuses 101 as the search does
    ("1:101", "error: --space depth: 101 is not accepted: depth must be 1 to 100 hidden layers, got 101"),
    # once "hidden sizes must be >= 1, got " (an empty tuple of widths)
    ("0:3", "error: --space depth: 0 is not accepted: depth must be 1 to 100 hidden layers, got 0"),
])
def test_a_depth_no_run_can_have_is_refused_as_depth(run_cli, spec, line):
    assert one_line_error(run_cli("coarse", "--space", f"depth={spec}", "--trials", "1")) == line


@pytest.mark.parametrize("text,message", [
    # once: lr silently dropped, the stage searched hidden alone
    ('lr = "1e-4:1"\n[space]\nhidden = "16:64"\n',
     "lr is outside the [space] table; put every dimension under [space]"),
    # once "... put every dimension under [space]" for a setting that is no dimension, refused there too
    ('train_size = 100\n[space]\nhidden = "16:64"\n', "train_size is outside the [space] table, and the file holds "
                                                       "the space alone: give train_size on the command line "
                                                       "(--train-size)"),
    # once: "spaces must be a string SPEC or a list of choices", as if [spaces] were a dimension
    ('[spaces]\nhidden = "16:64"\n', "[spaces] is not a table this file holds; put the dimensions under [space]"),
    # once "[hidden] is not a table this file holds; put the dimensions under [space]", where it was
    ('[space]\nhidden = {low = 16, high = 64}\n', "hidden must be a string SPEC or a list of choices"),
    ('[space.hidden]\nlow = 16\n', "hidden must be a string SPEC or a list of choices"),
])
def test_a_space_file_with_entries_outside_its_space_table_says_so(run_cli, tmp_path, text, message):
    (tmp_path / "space.toml").write_text(text)
    line = one_line_error(run_cli("coarse", "--space-file", "space.toml", "--trials", "1"))
    assert line == f"error: --space-file space.toml: {message}"
    assert not (tmp_path / "search.db").exists()


def test_a_yaml_or_json_space_file_is_told_the_file_is_toml(run_cli, tmp_path):
    # a sweep configuration of another tool was "not valid TOML: Expected '=' ..." alone
    (tmp_path / "sweep.yaml").write_text("parameters:\n  lr:\n    min: 0.0001\n")
    line = one_line_error(run_cli("coarse", "--space-file", "sweep.yaml", "--trials", "1"))
    assert line == ("error: --space-file sweep.yaml: not valid TOML: Expected '=' after a key in a key/value pair (at "
                    "line 1, column 11); the space file is TOML, a [space] table of NAME = \"SPEC\" entries (see "
                    "search coarse --help)")
    assert not (tmp_path / "search.db").exists()


@pytest.mark.parametrize("text,message", [
    # once "--space activation: swish is not accepted: ...", naming an option the command was not given
    ('activation = ["relu", "swish"]\n', "activation: swish is not accepted: unknown activation 'swish'; known: relu, "
                                         "leaky_relu, prelu, elu, tanh, sigmoid, maxout"),
    ('dropout = "0.5:1.5:linear"\n',
     "dropout: 1.5 is not accepted: dropout keep probability must be in [0.01, 1], got 1.5"),
    ('momentum = "0.5:0.9:linear"\n', "momentum has no effect with optimizer adam: it applies only with optimizer "
                                      "momentum or nesterov (set --optimizer or search it too)"),
    # once searched as lr=10:20: Python's float() reads digit separators, which a CSV cell may not hold
    ('lr = "1_0:20"\n', "lr: '1_0:20' has a bound that is not a number (a number is written without '_')"),
    ('batch_size = ["3_2", 64]\n', "batch_size: '3_2' is not a number (a number is written without '_')"),
    # a choice that is no single value; once: "--space activation: [1 is not accepted: unknown activation '[1'", the
    # list's text cut at its commas
    ('activation = [["relu", "tanh"]]\n', "activation: choice ['relu', 'tanh'] is not a string, a number or true/false"),
    ("hidden = [16, {width = 32}]\n", "hidden: choice {'width': 32} is not a string, a number or true/false"),
    ("lr = [1979-05-27]\n", "lr: choice datetime.date(1979, 5, 27) is not a string, a number or true/false"),
    # once: split at its comma into the choices tanh and elu, three where the file listed two
    ('activation = ["relu", "tanh,elu"]\n', "activation: choice 'tanh,elu' holds a ','; a list gives each choice "
                                          "alone (a range is a string: activation = \"LOW:HIGH\")"),
    ('hidden = ["16:32"]\n', "hidden: choice '16:32' holds a ':'; a list gives each choice alone (a range is a "
                             "string: hidden = \"LOW:HIGH\")"),
    # once: "hidden: '' must look like LOW:HIGH[:log|:linear][:int] or A,B,C"
    ("hidden = []\n", "hidden: a choice needs at least one value"),
])
def test_a_space_file_dimension_its_option_refuses_is_named_by_the_file(run_cli, tmp_path, text, message):
    (tmp_path / "space.toml").write_text("[space]\n" + text)
    line = one_line_error(run_cli("coarse", "--space-file", "space.toml", "--trials", "1"))
    assert line == f"error: --space-file space.toml: {message}"
    assert not (tmp_path / "search.db").exists()


@pytest.mark.parametrize("value", ["[" * 500 + "]" * 500, "{a = " * 100_000 + "1" + "}" * 100_000])
def test_a_space_file_nested_past_the_recursion_limit_is_refused_in_one_line(run_cli, tmp_path, value):
    # tomllib recurses once a level: a RecursionError traceback
    (tmp_path / "space.toml").write_text(f"[space]\nhidden = {value}\n")
    line = one_line_error(run_cli("coarse", "--space-file", "space.toml", "--trials", "1"))
    assert line == ("error: --space-file space.toml: lists or tables nested too deep to read; a space file holds "
                    "NAME = \"SPEC\" entries and lists of choices")
    assert not (tmp_path / "search.db").exists()


def test_a_space_file_past_1_mib_is_refused_and_a_pipe_is_read(run_cli, tmp_path):
    # --space-file /dev/zero read until memory ran out: a MemoryError traceback
    with open(tmp_path / "big.toml", "w") as f:
        f.write("[space]\n" + "# padding\n" * 200_000)
    for path in ("/dev/zero", "big.toml"):
        assert one_line_error(run_cli("coarse", "--space-file", path, "--trials", "1")) == (
            f"error: --space-file {path}: more than 1 MiB; a space file holds a few lines")
    assert not (tmp_path / "search.db").exists()
    read, write = os.pipe()  # as --space-file <(echo ...) gives it
    os.write(write, b'[space]\nhidden = [64]\n')
    os.close(write)
    try:
        result = run_cli("coarse", "--space-file", f"/dev/fd/{read}", "--trials", "1", "--epochs", "1",
                         "--train-size", "300")
    finally:
        os.close(read)
    assert result.exit_code == 0, result.output
    assert Stage.from_attrs(cwd_study("digits/coarse").user_attrs).space == {"hidden": Choice((64,))}


def test_a_space_file_list_of_one_number_is_a_choice_of_one(run_cli, tmp_path):
    # once: "hidden: '64' must look like LOW:HIGH[:log|:linear][:int] or A,B,C", the list read as a range
    (tmp_path / "space.toml").write_text('[space]\nhidden = [64]\nlr = "1e-3:1e-1"\n')
    assert run_cli("coarse", "--space-file", "space.toml", "--trials", "1", "--epochs", "1",
                   "--train-size", "300").exit_code == 0
    stage = Stage.from_attrs(cwd_study("digits/coarse").user_attrs)
    assert stage.space == {"hidden": Choice((64,)), "lr": FloatRange(1e-3, 0.1)}


def test_one_value_of_a_range_fixes_it_in_every_trial_as_a_space_file_list_of_one(run_cli, tmp_path):
    # once: "--space lr=0.01: '0.01' must look like LOW:HIGH[:log|:linear][:int] or A,B,C", and --lr 0.01 the
    # same: a stage that searched reg alone ran every trial at lr 0.001, with no option to set another
    result = run_cli("coarse", "--space", "lr=0.01", "--space", "reg=1e-6:1", "--trials", "3", "--epochs", "1",
                     "--train-size", "300", "--jobs", "1")
    assert result.exit_code == 0, result.output
    stage = Stage.from_attrs(cwd_study("digits/coarse").user_attrs)
    assert stage.space == {"lr": Choice((0.01,)), "reg": FloatRange(1e-6, 1.0)}
    trials = cwd_study("digits/coarse").get_trials()
    assert [t.params["lr"] for t in trials] == [0.01] * 3
    assert {t.system_attrs["config"]["train"]["lr"] for t in trials} == {0.01}
    assert "  space: lr=0.01 reg=1e-06:1\n" in result.output
    assert run_cli("coarse", "--campaign", "h", "--space", "hidden=64", "--trials", "1", "--epochs", "1",
                   "--train-size", "300").exit_code == 0
    assert Stage.from_attrs(cwd_study("h/coarse").user_attrs).space == {"hidden": Choice((64,))}
    assert one_line_error(run_cli("coarse", "--campaign", "x", "--lr", "0.01", "--trials", "1")) == (
        "error: --lr '0.01' must look like LOW:HIGH, e.g. 1e-5:1e-1; one value for every trial: --space lr=0.01")
    assert one_line_error(run_cli("coarse", "--campaign", "x", "--space", "lr=abc", "--trials", "1")) == (
        "error: --space lr=abc: 'abc' must look like LOW:HIGH[:log|:linear][:int] or A,B,C")
    assert one_line_error(run_cli("coarse", "--campaign", "x", "--space", "lr=inf", "--trials", "1")) == (
        "error: --space lr=inf: 'inf' is not a finite number")
    assert sorted(optuna.get_all_study_names("sqlite:///search.db")) == ["digits/coarse", "h/coarse"]


def test_a_long_choice_is_shown_by_its_first_ten_values_and_a_count_of_the_others(run_cli, monkeypatch):
    # a choice of 5,000 values was printed whole: a 24 KB space line, and as much in a refusal of other settings
    monkeypatch.setenv("COLUMNS", "300")  # the lines unwrapped
    args = ("coarse", "--campaign", "c", "--space", "hidden=" + ",".join(map(str, range(1, 31))), "--trials", "1",
            "--epochs", "1", "--train-size", "100", "--jobs", "1")
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    assert "  space: hidden=1,2,3,4,5,6,7,8,9,10 and 20 more\n" in first.output
    stored = json.loads(run_cli(*args, "--json").stdout)["stages"][0]["space"]["hidden"]
    assert stored == ",".join(map(str, range(1, 31)))
    other = one_line_error(run_cli(*args[:4], "hidden=" + ",".join(map(str, range(1, 30))), *args[5:]))
    assert other.startswith("error: stage c/coarse already exists with other settings (hidden=1,2,3,4,5,6,7,8,9,10 "
                            "and 20 more, 1 trial, 1 epoch, sampler random), and this command gives (by its options, "
                            "or their defaults where none is given) --space hidden=1,2,3,4,5,6,7,8,9,10 and 19 more "
                            "where it has hidden=1,2,3,4,5,6,7,8,9,10 and 20 more; ")


def test_a_log_range_of_a_name_whose_scale_is_linear_is_printed_as_space_reads_it_back(run_cli):
    # printed "dropout=0.5:1" and "depth=1:4:int", which --space reads as linear ranges: the command the refusal
    # named ("where it has dropout=0.5:1; run it with those settings") was refused again
    args = ("coarse", "--campaign", "c", "--space", "dropout=0.5:1:log", "--space", "depth=1:4:log", "--trials", "3",
            "--epochs", "1", "--train-size", "300", "--jobs", "1")
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    assert "  space: dropout=0.5:1:log depth=1:4:log:int\n" in first.output
    linear = run_cli(*args[:4], "dropout=0.5:1", *args[5:])
    assert linear.exit_code == 2
    assert "--space dropout=0.5:1:linear depth=1:4:log:int where it has dropout=0.5:1:log depth=1:4:log:int" in (
        linear.stderr)
    assert run_cli(*args).exit_code == 0  # the space as printed: the same stage
    fine = run_cli("fine", "--campaign", "c", "--promote", "0", "--top", "2", "--json")
    notes = cwd_study("c/fine-1").user_attrs["range_notes"]
    assert fine.exit_code == 0 and "is inside 0.5:1:log; narrowed around the top 2 trials to " in notes[0], notes
    assert json.loads(fine.stdout)["stages"][0]["space"]["depth"].endswith(":log:int")


def test_studies_and_the_report_print_a_log_range_of_a_linear_option_as_the_stage_does(run_cli):
    # search studies --json and search report said "dropout=0.5:1", which --space reads as a linear range, where the
    # stage printed "dropout=0.5:1:log"; a stage stored before its log_marked attribute keeps that text
    from studies.queries import format_space
    from studies.report import campaign_report, space_text
    from studies.store import open_storage

    args = ("coarse", "--campaign", "c", "--space", "dropout=0.5:1:log", "--space", "depth=1:4:log", "--space",
            "lr=1e-3:1e-1", "--trials", "2", "--epochs", "1", "--train-size", "100", "--jobs", "1")
    assert "  space: dropout=0.5:1:log depth=1:4:log:int lr=0.001:0.1\n" in run_cli(*args).output
    text = "dropout=0.5:1:log depth=1:4:log:int lr=0.001:0.1"
    assert json.loads(run_cli("studies", "--json").stdout)[0]["space"] == text
    storage = open_storage("sqlite:///search.db", create=False)
    try:
        assert campaign_report(storage, "c", images=False).summary["stages"][0]["space_text"] == text
    finally:
        storage.engine.dispose()
    space = cwd_study("c/coarse").user_attrs["space"]
    assert format_space(space) == space_text(space) == "dropout=0.5:1 depth=1:4:int lr=0.001:0.1"


def test_searching_preprocess_is_refused_since_a_stage_prepares_its_data_once(run_cli, tmp_path):
    # each trial trained on the stage's one preprocessing while its params and config named another
    result = run_cli("coarse", "--space", "preprocess=standardize,pca", "--trials", "4", "--epochs", "1")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --space preprocess=standardize,pca: preprocess cannot be searched: a stage prepares its data once, "
        "so its trials share one --preprocess; start a campaign for each (--preprocess NAME --campaign NAME)")
    assert not (tmp_path / "search.db").exists()


def test_a_space_file_gives_the_same_space(run_cli, tmp_path):
    (tmp_path / "space.toml").write_text('[space]\nlr = "1e-3:1e-1"\nhidden = "16:64:int"\n'
                                         'activation = ["relu", "tanh"]\nbatchnorm = [true, false]\n')
    assert run_cli("coarse", "--space-file", "space.toml", "--trials", "3", "--epochs", "1",
                   "--train-size", "300").exit_code == 0
    stage = Stage.from_attrs(cwd_study("digits/coarse").user_attrs)
    assert stage.space == {"lr": FloatRange(1e-3, 0.1), "hidden": IntRange(16, 64),
                           "activation": Choice(("relu", "tanh")), "batchnorm": Choice((True, False))}


def test_with_params_sets_values_by_path_and_the_sections_check_them():
    config = RunConfig().with_params({"train.lr": 0.01, "arch.hidden": 256, "arch.depth": 3,
                                      "arch.activation": "tanh", "arch.init.std": 0.5, "train.momentum": 0.8})
    assert config.arch.hidden == (256, 256, 256) and config.arch.activation == "tanh"
    assert config.train.lr == 0.01 and config.arch.init.std == 0.5 and config.train.momentum == 0.8
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="dropout keep probability"):
        RunConfig().with_params({"arch.dropout": 1.5})
    with pytest.raises(ConfigError, match="no run option"):
        RunConfig().with_params({"arch.colour": 1})


@pytest.mark.parametrize("args,fragments", [
    (["--space", "batch_size=16:5000:int"], ["space searches batch_size up to 5000", "training set (1257"]),
    # a choice was not checked: its trials failed one by one, exit 1
    (["--space", "batch_size=64,5000"],
     ["the space searches batch_size up to 5000, larger than the training set (1257 samples)"]),
    # said of the space, not of --space, where a space file gave it
    (["--space-file", "batch.toml"],
     ["the space searches batch_size up to 5000, larger than the training set (1257 samples)"]),
    (["--space", "depth=1:3:int", "--hidden", "10,20"], ["--space depth", "--hidden 10,20"]),
])
def test_spaces_the_data_or_the_fixed_options_cannot_run_exit_2(run_cli, tmp_path, args, fragments):
    (tmp_path / "batch.toml").write_text("[space]\nbatch_size = [32, 5000]\n")
    one_line_error(run_cli("coarse", *args, "--trials", "2", "--epochs", "1"), *fragments)
    assert not (tmp_path / "search.db").exists()  # checked before the database is made


def test_a_grid_far_beyond_the_coarse_budget_is_refused(run_cli):
    cats = [a for name in ("batchnorm", "loss", "activation") for a in ("--space", f"{name}=" + {
        "batchnorm": "true,false", "loss": "softmax,svm", "activation": "relu,tanh,elu"}[name])]
    assert run_cli("coarse", *cats, "--trials", "4", "--epochs", "1", "--train-size", "200").exit_code == 0
    one_line_error(run_cli("grid"), "12 points", "more than twice its 4 trials")


def test_a_fine_stage_widens_batch_size_no_further_than_the_training_set(run_cli):
    assert run_cli("coarse", "--space", "batch_size=100:120", "--trials", "3", "--epochs", "1",
                   "--train-size", "120").exit_code == 0
    fine = run_cli("fine", "--edge", "0.5", "--promote", "0", "--trials", "2")
    assert fine.exit_code == 0, fine.output
    stage = Stage.from_attrs(cwd_study("digits/fine-1").user_attrs)
    assert stage.space["batch_size"].high == 120
    assert stage.range_notes[-1].endswith("(not widened: that bound is the training set's size)")
