"""`search train`, `search layers` and `search sanity`: the lecture's numbers through the CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from search.cli import cli
from tests.cifar_files import write_cifar_folder
from tests.search.procs import env


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def layers(*args: str) -> list[dict]:
    result = invoke("layers", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_digits_30_epochs_reaches_97_percent(tmp_path):
    png = tmp_path / "curve.png"
    result = invoke("train", "--data", "digits", "--epochs", "30", "--json", "--plot", str(png))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["stop_reason"] == "completed"
    assert out["val_acc"] >= 0.97
    assert out["epochs"] == 30 and out["iterations"] == 30 * (1257 // 50)
    assert len(out["loss_history"]) == out["iterations"]
    assert out["final_loss"] < out["initial_loss"] / 5
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 200 and img.std() > 0.05  # a real picture, not a blank canvas


def test_same_seed_same_numbers():
    a = json.loads(invoke("train", "--epochs", "2", "--json", "--seed", "5").stdout)
    b = json.loads(invoke("train", "--epochs", "2", "--json", "--seed", "5").stdout)
    assert a["loss_history"] == b["loss_history"] and a["val_acc"] == b["val_acc"]


def test_train_names_the_best_epoch_as_a_trial_stores_it():
    # the text said "best val_acc", and --json had no best_epoch, the name a trial keeps the epoch under
    args = ("train", "--epochs", "3", "--train-size", "200", "--lr", "3e-4")
    out = json.loads(invoke(*args, "--json").stdout)
    assert out["best_epoch"] == 1 + out["val_acc_history"].index(out["best_val_acc"])
    assert list(out)[list(out).index("best_val_acc") + 1] == "best_epoch"
    text = " ".join(invoke(*args).stdout.split())
    assert (f"val_acc {out['val_acc']:.4f} (balanced {out['val_balanced_accuracy']:.4f}), best_val_acc "
            f"{out['best_val_acc']:.4f} (epoch {out['best_epoch']})"
            in text)


def test_train_gives_its_seconds_as_a_stage_summary_does(monkeypatch):
    # "12 iterations in 0.03 s" where a stage's summary and the report say 0.031 (studies.records.seconds_text)
    import engine.trainer

    trained = engine.trainer.train

    def train(*args, **kwargs):
        result = trained(*args, **kwargs)
        result.seconds = 0.0312
        return result

    monkeypatch.setattr(engine.trainer, "train", train)
    text = " ".join(invoke("train", "--epochs", "3", "--train-size", "200").stdout.split())
    assert "completed: 12 iterations in 0.031 s (" in text


def test_huge_lr_is_reported_as_diverged_not_raised():
    result = invoke("train", "--optimizer", "sgd", "--lr", "1e6", "--epochs", "2", "--explode-factor", "1e300",
                    "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["stop_reason"] == "nan" and out["final_loss"] is None and "status" not in out


def test_a_run_whose_loss_explodes_says_so_and_exits_1_as_a_stage_would_prune_it():
    """lr 5 takes the loss from ~2.3 past 3x its first value: stopped and reported, not "completed"."""
    result = invoke("train", "--lr", "5", "--epochs", "3", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["stop_reason"] == "exploded"
    # the mean of the last 10 minibatch losses, once there are 10, is compared: stopped at iteration 10
    assert out["iterations"] == 10 and sum(out["loss_history"][-10:]) / 10 > 3 * out["initial_loss"]
    assert out["val_acc"] is None and out["best_val_acc"] is None  # no epoch ended: never validated
    text = invoke("train", "--lr", "5", "--epochs", "3")
    assert "exploded: the loss of the last 10 iterations averaged more than 3 x the first" in text.stdout
    assert "no epoch finished; try a lower --lr" in " ".join(text.stdout.split()) and "nan" not in text.stdout


def test_layers_reproduce_the_lecture():
    small = layers("--init", "normal", "--init-std", "0.01", "--activation", "tanh")
    assert len(small) == 10 and small[-1]["std"] < 1e-3  # activations collapse to zero
    big = layers("--init", "normal", "--init-std", "1.0", "--activation", "tanh")
    assert big[-1]["saturated"] > 0.5  # most units at |h| > 0.99
    xavier_tanh = layers("--init", "xavier", "--activation", "tanh")
    assert xavier_tanh[-1]["std"] > 0.1 and xavier_tanh[-1]["saturated"] < 0.05
    xavier_relu = layers("--init", "xavier", "--activation", "relu")
    stds = [row["std"] for row in xavier_relu]
    assert all(b < a for a, b in zip(stds, stds[1:])) and stds[-1] < stds[0] / 10  # shrinks layer by layer
    he_relu = layers("--init", "he", "--activation", "relu")
    assert 0.5 < he_relu[-1]["std"] / he_relu[0]["std"] < 2.0
    bn = layers("--init", "normal", "--init-std", "1.0", "--activation", "tanh", "--batchnorm")
    assert bn[-1]["saturated"] < 0.05  # batch norm undoes the bad scale


def test_layers_never_print_a_mean_of_minus_zero():
    # the collapsing net's means printed as -0.00000 beside 0.00000 from layer 4 on
    result = invoke("layers", "--init", "normal", "--init-std", "0.01", "--activation", "tanh")
    means = [line.split()[1] for line in result.stdout.splitlines()[1:11]]
    assert means[3:] == ["0.00000"] * 7 and "-0.00000" not in result.stdout


def test_layers_table_shows_the_std_of_a_collapsed_layer_as_the_line_under_it_does():
    # the std column printed 0.00000 for layers 8 to 10, where the reading below quotes 2.96e-07
    args = ("--init", "normal", "--init-std", "0.01", "--activation", "tanh")
    stds = [row["std"] for row in layers(*args)]
    text = invoke("layers", *args).stdout
    shown = [line.split()[2] for line in text.splitlines()[1:11]]
    assert shown == [f"{std:.3g}" for std in stds] and float(shown[-1]) == float(f"{stds[-1]:.3g}") > 0
    assert f"to {stds[-1]:.3g} in layer 10" in " ".join(text.split())


def test_layers_plot_is_written_with_the_numbers_layers_prints(tmp_path, monkeypatch):
    from studies import plots

    drawn, save = [], plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path, **kw: drawn.append(fig) or save(fig, path, **kw))
    png = tmp_path / "layers.png"
    rows = layers("--init", "he", "--activation", "relu", "--plot", str(png))
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    shown = [ax for ax in drawn[0].axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["layer mean", "layer std", *(f"layer {i}" for i in range(1, 11))]
    assert list(shown[0].lines[0].get_ydata()) == [row["mean"] for row in rows]
    assert list(shown[1].lines[0].get_ydata()) == [row["std"] for row in rows]
    assert [sum(bar.get_height() for bar in ax.patches) for ax in shown[2:]] == [1000 * 500] * 10  # every output


def test_a_plot_with_a_home_matplotlib_cannot_write_in_prints_nothing_on_stderr(tmp_path):
    # matplotlib falls back to a temporary folder and its logger printed two lines of warnings saying so
    home = tmp_path / "home"
    home.write_text("a file where a home folder belongs: nothing can be made in it")
    environ = {k: v for k, v in env().items() if not k.startswith(("MPL", "XDG_"))} | {"HOME": str(home)}
    png = tmp_path / "layers.png"
    done = subprocess.run([sys.executable, "-m", "search", "layers", "--plot", str(png)], env=environ,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.endswith(f"wrote {png}\n") and png.read_bytes().startswith(b"\x89PNG")


def test_a_plot_replaces_a_link_or_an_old_plot_only_once_it_is_whole(tmp_path):
    # --plot onto a symlink wrote the PNG through it, over the file the link named; a plot that did not fit on the
    # disk left the old one cut short
    import resource
    import signal

    victim, plot = tmp_path / "victim.txt", tmp_path / "plot.png"
    victim.write_text("precious\n")
    plot.symlink_to(victim)
    assert invoke("layers", "--depth", "2", "--plot", str(plot)).exit_code == 0
    assert victim.read_text() == "precious\n"
    assert not plot.is_symlink() and plot.read_bytes().startswith(b"\x89PNG")
    old = plot.read_bytes()

    def filling_disk() -> None:  # files stop at half the plot's size, as on a disk filling up
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(old) // 2, len(old) // 2))

    done = subprocess.run([sys.executable, "-m", "search", "layers", "--depth", "3", "--plot", "plot.png"], env=env(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=filling_disk)
    assert (done.returncode, done.stderr) == (1, "error: cannot write plot.png: File too large\n")
    assert plot.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "victim.txt"]


def test_layers_plot_leaves_the_same_gap_between_each_two_columns_of_histograms(tmp_path, monkeypatch):
    # one grid of them all: the std curve's tick labels above the second column widened the gap before it to 0.033
    # of the figure's width, where the others were 0.011
    import studies.plots

    figures = []
    save = studies.plots.save
    monkeypatch.setattr(studies.plots, "save", lambda fig, path, **kw: figures.append(fig) or save(fig, path, **kw))
    assert invoke("layers", "--depth", "6", "--plot", str(tmp_path / "layers.png")).exit_code == 0
    boxes = {ax.get_title(): ax.get_position() for ax in figures[0].axes}
    for row in (range(1, 5), range(5, 7)):
        gaps = [boxes[f"layer {i + 1}"].x0 - boxes[f"layer {i}"].x1 for i in row[:-1]]
        assert max(gaps) - min(gaps) < 0.001, gaps
    assert boxes["layer 1"].x0 == boxes["layer 5"].x0 and boxes["layer 2"].x0 == boxes["layer 6"].x0


def test_layers_plot_of_one_layer_labels_its_layer_axis_with_whole_numbers(tmp_path, monkeypatch):
    # --depth 1 labelled the mean and std panels' layer axis 0.96, 0.98, 1.00, 1.02, 1.04
    import studies.plots

    figures = []
    save = studies.plots.save
    monkeypatch.setattr(studies.plots, "save", lambda fig, path, **kw: figures.append(fig) or save(fig, path, **kw))
    assert invoke("layers", "--depth", "1", "--plot", str(tmp_path / "layers.png")).exit_code == 0
    for ax in figures[0].axes[:2]:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks == [1.0], (ax.get_title(), ticks)


def test_sanity_passes_every_check_on_digits():
    result = invoke("sanity", "--data", "digits", "--json")
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)
    assert len(checks) == 6 and all(c["passed"] for c in checks)
    assert abs(checks[0]["value"] - math.log(10)) < 0.05
    text = invoke("sanity", "--data", "digits").stdout
    assert text.count("PASS") == 6
    # the value and what it should be, written alike (it said "1 (expected 1.0)")
    assert "PASS  overfit 20 samples to 100 % train accuracy: 1 (expected 1)" in text.splitlines()


def test_sanity_on_a_small_training_set_runs_its_lr_checks_for_ten_updates():
    # 60 samples at batch 50 are one update an epoch: the one-epoch runs of the tiny and huge lr checks recorded the
    # first loss alone, so the tiny lr "moved it" by exactly 0 and lr 1e6 FAILed with a ratio of 1
    result = invoke("sanity", "--data", "digits", "--train-size", "60", "--json")
    assert result.exit_code == 0, result.output
    tiny, huge = json.loads(result.stdout)[3:5]
    assert tiny["passed"] and 0 < tiny["value"] < 0.05
    assert huge["passed"] and huge["value"] > 3


def test_train_on_a_cifar_format_folder(tmp_path):
    folder = write_cifar_folder(tmp_path, n_per_batch=40, seed=0)
    result = invoke("train", "--data", "cifar10", "--data-dir", str(folder), "--epochs", "2", "--hidden", "20",
                    "--batch-size", "20", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["iterations"] == 2 * (180 // 20)  # 200 training images, 10 % held out for validation
    assert np.isfinite(out["final_loss"])


def test_corrupt_cifar_batch_exits_2_naming_the_file(tmp_path):
    folder = write_cifar_folder(tmp_path, n_per_batch=10, seed=0)
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    result = invoke("train", "--data", "cifar10", "--data-dir", str(folder))
    assert result.exit_code == 2
    assert "data_batch_3" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_train_defaults_to_the_reg_a_stage_uses_when_reg_is_not_searched(run_cli):
    # a stage searching only lr trained every trial at reg 1e-4, while `search train` defaulted to --reg 1e-3:
    # retyping a trial's searched values into search train gave another run
    assert run_cli("coarse", "--space", "lr=1e-3:1e-1", "--trials", "1", "--epochs", "1",
                   "--train-size", "200").exit_code == 0
    stage_reg = json.loads(run_cli("best", "--format", "json").stdout)["records"]["config"]["train"]["reg"]
    text = " ".join(run_cli("train", "--help").stdout.split())
    assert f"--reg FLOAT L2 strength. [default: {stage_reg:g}]" in text, text


def test_sanity_checks_the_run_search_train_and_a_stage_train_by_default(monkeypatch):
    # search sanity checked a run of --reg 1e-3 by default, search train and a stage's trials train at reg 1e-4
    import engine.diagnostics

    seen = []
    monkeypatch.setattr(engine.diagnostics, "sanity_checks", lambda arch, train, *rest: seen.append(train) or [])
    assert invoke("sanity", "--train-size", "200").exit_code == 0
    assert (seen[0].lr, seen[0].reg) == (1e-3, 1e-4)
    for command in ("sanity", "train"):
        text = " ".join(invoke(command, "--help").stdout.split())
        assert "--lr FLOAT Learning rate. [default: 0.001]" in text, command
        assert "--reg FLOAT L2 strength. [default: 0.0001]" in text, command


def test_train_says_the_diagnosis_a_trial_of_the_same_run_stores(monkeypatch):
    # one run babysat by hand printed its curves but not their reading, which only a stage's trials got
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("train", "--data", "digits", "--epochs", "1", "--lr", "1e-7")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-4:] == [
        "diagnosis: lr_too_low",
        "  - the loss rose by 0.03% of its first value (instead of falling by 10% or",
        "      more): the learning rate is too low; the first layer's last update was",
        "      4.2e-07 of its weights' norm (about 1e-3 with a good learning rate)",
    ]
    out = json.loads(invoke("train", "--data", "digits", "--epochs", "1", "--lr", "1e-7", "--json").stdout)
    assert out["diagnosis"] == ["lr_too_low"] and out["diagnosis_numbers"]["loss_change"] == -0.0003
    assert out["diagnosis_numbers"]["update_ratio"] == 4.24e-07
    assert out["sentences"] == ["the loss rose by 0.03% of its first value (instead of falling by 10% or more): the "
                                "learning rate is too low; the first layer's last update was 4.2e-07 of its weights' "
                                "norm (about 1e-3 with a good learning rate)"]
    # a run that blew up: its weights overflow their squared sum, and NumPy's warning was printed beside the lines
    blown = invoke("train", "--data", "digits", "--epochs", "1", "--lr", "1e6", "--optimizer", "sgd")
    assert blown.exit_code == 1 and blown.stderr == ""
    assert blown.stdout.splitlines()[-2:] == ["diagnosis: lr_too_high",
                                              "  - the loss went NaN or inf: the learning rate is too high"]


def test_layers_reads_its_table_as_the_lecture_reads_its_figure(monkeypatch):
    # the table gave ten rows of numbers and left the reading (collapse, saturation, a kept scale) to the student
    monkeypatch.setenv("COLUMNS", "80")
    small = invoke("layers", "--init", "normal", "--init-std", "0.01", "--activation", "tanh").stdout.splitlines()
    assert small[11:] == [
        "collapsing: the std falls from 0.214 in layer 1 to 2.96e-07 in layer 10 (below",
        "    0.1 x layer 1's): the outputs shrink toward zero layer by layer, and so do",
        "    the weights' gradients (a layer's input times the gradient from above); the",
        "    weights are too small for this depth"]
    large = invoke("layers", "--init", "normal", "--init-std", "1.0", "--activation", "tanh").stdout.splitlines()
    assert large[11:] == [
        "saturated: 91% of layer 1's outputs are in the flat tails (> 20%), where the",
        "    local gradient is near 0: the weights are too large"]
    he = invoke("layers", "--init", "he", "--activation", "relu").stdout.splitlines()
    assert he[11:] == [
        "keeps its scale: the std goes from 0.826 in layer 1 to 0.802 in layer 10 with",
        "    no layer saturated or dead beyond the limits: at most 10% of layer 9's",
        "    units dead (under 50%)"]  # "no layer ... dead" alone, beside a row of 0.104 dead
    tanh = invoke("layers", "--init", "xavier", "--activation", "tanh").stdout.splitlines()
    assert " ".join(line.strip() for line in tanh[11:]) == (
        "keeps its scale: the std goes from 0.628 in layer 1 to 0.228 in layer 10 with no layer saturated or dead "
        "beyond the limits: at most 1% of layer 1's outputs saturated (under 20%)")
    xavier_relu = invoke("layers", "--init", "xavier", "--activation", "relu").stdout.splitlines()
    assert xavier_relu[11].startswith("collapsing: the std falls from 0.584 in layer 1 to 0.0251 in layer 10")
    one = invoke("layers", "--depth", "1", "--init", "he", "--activation", "relu").stdout.splitlines()
    assert one[2] == "one layer: std 0.827, its outputs neither saturated nor dead"


def test_a_relu_bias_beyond_float32_is_one_line_and_exit_2():
    result = invoke("train", "--epochs", "1", "--relu-bias", "1e39")
    assert (result.exit_code, result.output) == (2, "error: relu bias 1e+39 is beyond float32's range\n")


def test_a_dropout_keep_probability_below_the_searched_range_is_one_line_and_exit_2():
    # 1e-30 dropped every unit in training: the loss barely moved and the run was diagnosed lr_too_low; 1e-300 made
    # the first loss NaN, told as "the initial weights or the inputs are too large for the network's floats"
    for keep in ("1e-30", "1e-300", "0.009"):
        result = invoke("train", "--epochs", "1", "--dropout", keep)
        assert (result.exit_code, result.output) == (
            2, f"error: Invalid value for '--dropout': {keep} is not in the range 0.01<=x<=1.\n")


def test_sanity_says_under_a_failed_initial_loss_that_pixels_of_0_to_255_are_the_reason(tmp_path, monkeypatch):
    # a CIFAR-shaped .npz of uint8 pixels is read as it is, 0..255: the first check FAILed with no word of why
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    rng = np.random.default_rng(0)
    y = np.arange(300) % 10
    X = np.clip(rng.normal(128, 60, (300, 8, 8, 3)) + y[:, None, None, None] * 5, 0, 255).astype(np.uint8)
    np.savez(tmp_path / "pixels.npz", X=X, y=y)
    result = invoke("sanity", "--data", "pixels.npz", "--train-size", "100")
    lines = result.stdout.splitlines()
    assert result.exit_code == 1 and lines[0].startswith("FAIL  initial loss near chance (reg 0): ")
    second = next(i for i, line in enumerate(lines) if i and line[:4] in ("PASS", "FAIL"))
    hint = " ".join(line.strip() for line in lines[1:second])
    assert hint.startswith("- the initial class scores have std ") and all(len(line) <= 80 for line in lines)
    assert "where the initialisation expects about 1; scale them: --preprocess standardize, or, for images, their " \
           "pixels divided by 255 in the file" in hint
    checks = json.loads(invoke("sanity", "--data", "pixels.npz", "--train-size", "100", "--json").stdout)
    assert checks[0]["hint"] == hint[2:] and [c["hint"] for c in checks[1:]] == [None] * 5
    assert invoke("sanity", "--data", "pixels.npz", "--train-size", "100", "--preprocess", "standardize",
                  "--json").stdout.count('"hint": null') == 6
