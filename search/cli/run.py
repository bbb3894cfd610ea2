"""One run and its data: ``search train`` (also ``--from-trial``), ``layers``, ``sanity``, ``data`` and ``predict``."""
from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from engine.data import DATASETS
from engine.init import INITIALISERS
from engine.model import ACTIVATIONS
from engine.trainer import TrainConfig
from search.cli.options import (
    DATA_PARAMS, INIT_STD_HELP, RUN_PARAMS, AsciiFloat, AsciiIntRange, ImagePath, ModelPath, SectionedCommand,
    WritablePath, check_not_input, choice, explode_option, json_option, nonneg_float, positive_float,
    run_config_options, seed_option, storage_file, storage_option,
)
from search.cli.output import csv_safe, echo, echo_json, echo_json_items, save_plot, say
from search.config import MAX_DEPTH, RunConfig
from search.errors import SearchError
from search.text import visible, visible_line
from studies.records import seconds_text


# the run's own defaults, which a stage's trials use for what they do not search: one run, three commands
# (train, sanity, a stage), one lr and one reg
lr_option = click.option("--lr", type=AsciiFloat(), default=TrainConfig.lr, show_default=True,
                         callback=positive_float, help="Learning rate.")
reg_option = click.option("--reg", type=AsciiFloat(), default=TrainConfig.reg, show_default=True,
                          callback=nonneg_float, help="L2 strength.")


@click.command(cls=SectionedCommand, short_help="Train one network (--from-trial reruns a trial).")
@run_config_options
@lr_option
@reg_option
@click.option("--epochs", type=AsciiIntRange(min=1), default=10, show_default=True,
              help="Passes over the training split.")
@explode_option
@click.option("--from-trial", default=None, metavar="STUDY:NUMBER",
              help="Rerun a stored trial with its whole configuration and seed (e.g. digits/coarse:12).")
@storage_option
@click.option("--plot", type=ImagePath(), default=None, help="Write loss and accuracy curves (.png, .pdf or .svg).")
@click.option("--test", "score_test", is_flag=True, help="Also score the test split (once, at the end).")
@click.option("--save", "save_to", type=ModelPath(), default=None, metavar="FILE.npz",
              help="Save the trained network, its fitted preprocessing and class names for `search predict`.")
@json_option
def train(base: RunConfig | None, lr: float, reg: float, epochs: int, explode_factor: float | None,
          from_trial: str | None, storage: str | None, plot: str | None, score_test: bool, save_to: str | None,
          as_json: bool) -> int:
    """Train one network and print its losses and accuracies; exit 1 if it exploded or diverged.

    \b
    Examples:
      search train --data digits --epochs 30 --lr 1e-3 --reg 1e-3 --plot run.png
      search train --from-trial digits/coarse:12   # rerun a stored trial exactly
      search train --from-trial digits/coarse:12 --save model.npz  # see predict
      search train --data mine.csv --missing mean --save mine.npz  # text, gaps
    """
    from engine.trainer import train as run_training
    from engine.diagnostics import describe_diagnosis
    from search.objective import (EXPLODE_WINDOW, SCHEDULER_STOP, diagnose_trial, explosion_observers, finite_or_none,
                                  majority_share, stop_reason, val_balanced_accuracy, value_epoch)
    from search.stages import blas_threads_of

    ctx = click.get_current_context()
    stored = threads = None
    if from_trial is not None:  # the trial's data, model, optimisation and seed are fixed by its study
        given = [p.opts[0] for p in ctx.command.params
                 if p.name in (*RUN_PARAMS, "lr", "reg", "epochs", "explode_factor")
                 and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise SearchError(f"--from-trial reruns the trial's own configuration; drop {given[0]}")
        config, explode_factor, stored, recorded, threads = trial_run(storage, from_trial)
    else:
        config = base.with_params({"train.lr": lr, "train.reg": reg, "train.epochs": epochs})
    # the study database is never written over, whether this run reads it (--from-trial) or not
    inputs = {"--data": config.data.name, "--storage": storage_file(storage)}
    check_not_input("--save", save_to, inputs)
    check_not_input("--plot", plot, inputs)
    if plot is not None and save_to is not None and Path(plot).resolve() == Path(save_to).resolve():
        raise SearchError(f"--plot {plot} is the --save file; write to another file")  # the model, then a PNG on it
    from engine.data import load_dataset, majority_baseline

    from engine.model import balanced_accuracy
    from search.config import data_warnings

    raw = load_dataset(config.data)  # kept for the image shape the model file holds
    columns = model_columns(config) if save_to is not None else None
    ds, pre = config.load_fitted(raw)
    if from_trial is None and not as_json:  # a trial's stage said them before its first trial
        for line in data_warnings(config, raw):
            echo(line, err=True)
    if from_trial is not None:
        from engine.data import data_identity

        now = data_identity(config.data, ds).get("sha256")
        if recorded.get("sha256", now) != now:
            raise SearchError(f"{recorded.get('path') or config.data.name}: the data differs from what trial "
                              f"{from_trial} was trained on (sha256 {recorded.get('sha256')} recorded, {now} now)")
    model = config.build_model(ds)
    initial_reg_loss = model.reg_loss(config.train.reg)
    with blas_threads_of(threads):  # the trial's own: --jobs 2 ran it on 1, and the last bits depend on it
        result = run_training(model, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val,
                              observers=explosion_observers(explode_factor, majority_share(ds.y_train)))
    # the reading a trial of the same run stores, before --test or --save touch nothing of the model
    diagnosis = diagnose_trial(result, model, ds, config, initial_reg_loss)
    val_balanced = val_balanced_accuracy(model, ds)
    summary = {
        "stop_reason": stop_reason(result.status),  # as a trial stores it (the trainer's "diverged" is "nan")
        "initial_loss": finite_or_none(result.initial_loss),
        "final_loss": finite_or_none(result.final_loss),
        "train_acc": finite_or_none(result.train_acc),
        "val_acc": finite_or_none(result.val_acc),
        # the mean of the classes' recalls, of the network as it ended (val_acc's): a rare class missed shows here
        "val_balanced_accuracy": finite_or_none(val_balanced) if result.val_acc_history else None,
        "best_val_acc": finite_or_none(result.best_val_acc),
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "iterations": result.iterations,
        "seconds": round(result.seconds, 4),
        "samples_per_second": finite_or_none(round(result.samples_per_second, 1)),
        "model_parameters": model.parameter_count,
        "train_acc_history": result.train_acc_history,
        "val_acc_history": result.val_acc_history,
        "loss_history": [finite_or_none(v) for v in result.loss_history],
        # per weight matrix, per epoch: its last update's norm over the weights' norm (the lecture's ~1e-3)
        "update_ratio_history": {name: [finite_or_none(r.get(name, math.nan)) for r in result.update_ratio_history]
                                 for name in model.weight_names},
        "diagnosis": list(diagnosis.labels),
        "diagnosis_numbers": diagnosis.numbers,
        "sentences": describe_diagnosis(diagnosis, stop_reason(result.status)),
    }
    if stored is not None:  # the epoch the stored value is from: for a run its stage's scheduler stopped, or that
        # exploded, an earlier one than the last (no scheduler stops this rerun)
        value_at, full_epochs = value_epoch(stored)
        reason = stored.user_attrs.get("stop_reason")
        summary.update({"trial_value": stored.value, "trial_value_epoch": value_at, "trial_stop_reason": reason})
    if score_test:
        summary["test_acc"] = finite_or_none(model.accuracy(ds.X_test, ds.y_test))
        summary["test_balanced_accuracy"] = finite_or_none(balanced_accuracy(ds.y_test, model.predict(ds.X_test)))
        majority = majority_baseline(ds, "test")  # as search auto gives it beside its retrains
        summary["most_frequent_class"] = None if majority is None else {"class": majority[0],
                                                                         "test_acc": majority[1]}
    if save_to is not None:  # None: not saved, the run did not complete (as search auto --json says it)
        summary["saved"] = None
        if result.status == "completed":
            save_model(save_to, config, raw, pre, model, columns,
                       {k: summary[k] for k in ("val_acc", "test_acc", "epochs") if k in summary})
            summary["saved"] = save_to
    if plot:
        from studies.plots import new_axes, plot_training

        axes = new_axes(1, 2)[0]
        threshold = explode_factor if summary["stop_reason"] == "exploded" else None  # the line its loss crossed
        save_plot(plot_training(axes, result.loss_history, result.train_acc_history, result.val_acc_history,
                                threshold=threshold), plot)
    if as_json:
        echo_json(summary)
    else:
        per_epoch = max(1, result.iterations // max(1, result.epochs))
        for e, (ta, va, ratios) in enumerate(zip(result.train_acc_history, result.val_acc_history,
                                                 result.update_ratio_history), start=1):
            loss = result.loss_history[min(len(result.loss_history), e * per_epoch) - 1]
            # the first layer's update/weight ratio, as the lecture watches it: about 1e-3 in a healthy run
            click.echo(f"epoch {e:3d}  loss {loss:.4f}  train_acc {ta:.4f}  val_acc {va:.4f}  "
                       f"update/W1 {ratios.get('W1', math.nan):.1e}")
        status = result.status
        if status == "exploded":
            window = min(EXPLODE_WINDOW, result.iterations)
            status = (f"exploded: the loss of the last {window} iterations averaged more than {explode_factor:g} x "
                      f"the first loss {result.initial_loss:.4g}, stopped at iteration {result.iterations}")
        elif status == "diverged":
            status = f"diverged: the loss became NaN or inf at iteration {result.iterations}"
        scores = (f"val_acc {result.val_acc:.4f} (balanced {val_balanced:.4f}), best_val_acc {result.best_val_acc:.4f} "
                  f"(epoch {result.best_epoch})"
                  if result.val_acc_history else "no epoch finished")
        blown = result.status in ("exploded", "diverged") and "lr_too_high" in diagnosis.labels
        hint = "; try a lower --lr" if blown else ""  # not for a loss NaN before any update (bad_initial_loss)
        say(
            f"{status}: {result.iterations} iterations in {seconds_text(result.seconds)} s "
            f"({result.samples_per_second:,.0f} samples/s); initial loss {result.initial_loss:.4f}, "
            f"final loss {result.final_loss:.4f}, {scores}{hint}"
        )
        say(f"diagnosis: {', '.join(diagnosis.labels)}")
        for sentence in describe_diagnosis(diagnosis, stop_reason(result.status)):
            say(f"- {sentence}", "  ")
        if stored is not None and stored.value is not None:
            at = ""
            if value_at is not None and full_epochs is not None and value_at < full_epochs:
                why = (": the scheduler stopped it there" if reason == SCHEDULER_STOP
                       else f", the last it finished: {'its loss went NaN' if reason == 'nan' else f'it {reason}'}")
                at = f" (at epoch {value_at} of {full_epochs}{why})"
            say(f"stored value of trial {from_trial}: {stored.value:.4f}{at}")
        if score_test:
            click.echo(f"test_acc {summary['test_acc']:.4f} (balanced {summary['test_balanced_accuracy']:.4f})"
                       if summary["test_acc"] is not None else "test_acc -")
            if majority is not None:
                say(f"always predicting the most frequent class, {majority[0]!r}: test_acc {majority[1]:.4f}"
                    + ("; this network does no better: it learned nothing but the class frequencies"
                       if summary["test_acc"] is not None and summary["test_acc"] <= majority[1] else ""))
        if plot:
            echo(f"wrote {plot}")
        if save_to is not None:
            say(f"wrote {save_to}: the model for `search predict --model {save_to} --data FILE`"
                if result.status == "completed" else f"not saved to {save_to}: the run {result.status}")
    return 0 if result.status == "completed" else 1


def fit_and_save(path: str, config: RunConfig) -> tuple[str, float, float]:
    """Train ``config``'s run to its end (no run stopped for a loss spike, as a retrain) and save the network as
    ``save_model`` does when it completes; (status, val_acc, test_acc) of that network."""
    from engine.data import load_dataset
    from engine.trainer import train as run_training

    raw = load_dataset(config.data)
    columns = model_columns(config)
    ds, pre = config.load_fitted(raw)
    model = config.build_model(ds)
    result = run_training(model, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val)
    test_acc = model.accuracy(ds.X_test, ds.y_test)
    if result.status == "completed":
        save_model(path, config, raw, pre, model, columns,
                   {"val_acc": result.val_acc, "test_acc": test_acc, "epochs": result.epochs})
    return result.status, result.val_acc, test_acc


def model_columns(config: RunConfig) -> tuple[tuple[str, ...] | None, str | None]:
    """The feature columns and the label column a saved model of ``config``'s CSV/TSV data reads by name ((None, None)
    for other data)."""
    from engine.formats import detect_format, table_columns

    source = Path(config.data.name)
    fmt = None if config.data.name in DATASETS else detect_format(source)
    if fmt not in ("csv", "tsv"):
        return None, None
    return table_columns(source, "," if fmt == "csv" else "\t", config.data.label_column, config.data.ignore_columns)


def save_model(path: str, config: RunConfig, raw: Any, pre: Any, model: Any,
               columns: tuple[tuple[str, ...] | None, str | None], scores: dict[str, Any]) -> None:
    """Write the trained ``model`` with the preprocessing ``pre`` training fitted (``RunConfig.load_fitted``), the class
    names and what the data's samples are: ``columns`` (``model_columns``), or ``raw``'s image shape."""
    from engine.checkpoint import Checkpoint, save_checkpoint

    features, label_column = columns
    names = raw.label_names or tuple(str(i) for i in range(raw.num_classes))
    info = {"run": config.to_dict(), **scores}
    save_checkpoint(path, Checkpoint(model, pre, names, features=features, label_column=label_column,
                                     image_shape=raw.image_shape, encoding=raw.encoding, info=info,
                                     train_range=(raw.X_train.min(axis=0), raw.X_train.max(axis=0))))


def trial_run(storage: str | None, ref: str) -> tuple[RunConfig, float | None, Any, dict, int | None]:
    """(the trial's RunConfig, its stage's explode factor, the stored trial, the stage's data identity, the BLAS
    threads it ran on or None) from ``STUDY:NUMBER``."""
    from search.cli.options import open_for_reading
    from search.stages import load_trial, parse_trial_ref
    from studies.records import trial_record

    name, number = parse_trial_ref(ref, "--from-trial")
    st = open_for_reading(storage)
    trial, stage = load_trial(st, name, number)
    recorded = st.get_study_user_attrs(st.get_study_id_from_name(name)).get("data", {})
    from optuna.trial import TrialState

    config = trial_record(trial, "config")
    if config is None and trial.state == TrialState.COMPLETE:  # told by Optuna's API (add_trial, tell), not run here
        return added_trial_run(ref, trial, stage), stage.explode_factor, trial, recorded, None
    if config is None:  # stored as a trial ends: a trial failed, running or waiting has none
        from search.cli.db import failure_story

        why = (failure_story(st, name, trial) if trial.state == TrialState.FAIL
               else f"state {trial.state.name}; it has not finished training")
        raise SearchError(f"--from-trial {ref}: the trial has no stored config: {why}")
    threads = trial.user_attrs.get("blas_threads")
    return (RunConfig.from_dict(config), stage.explode_factor, trial, recorded,
            threads if isinstance(threads, int) and threads >= 1 else None)


def added_trial_run(ref: str, trial: Any, stage: Any) -> RunConfig:
    """The run of a COMPLETE trial this service did not train (added with Optuna's ``study.add_trial`` or
    ``tell``): its stage's settings with its parameters and the seed a worker gives its number, as the stage's own
    trials are made; a parameter no run option takes is refused. Says so on stderr."""
    from search.objective import trial_config
    from search.space import SEARCHABLE, applies

    unknown = sorted(set(trial.params) - set(SEARCHABLE))
    if unknown:
        raise SearchError(f"--from-trial {ref}: the trial was not trained by this service (no stored config) and "
                          f"its parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                          f"{'are' if len(unknown) > 1 else 'is'} no run option")
    left = [dim for dim in stage.space if dim not in trial.params and applies(dim, trial.params, stage.run)]
    given = f"; {', '.join(left)}, which it does not give, at the stage's setting" if left else ""
    say(f"{ref} was not trained by this service (added through Optuna's API): trained with its stage's settings and "
        f"its parameters{given}", err=True)
    return trial_config(stage.run, dict(trial.params), stage.seed, trial.number)


def trained_on(info: Any) -> str | None:
    """The path of the data a model file's run was trained on (its ``info``, as the file holds it), or None: a
    built-in dataset's, or a file saved without it."""
    run = info.get("run") if isinstance(info, dict) else None
    data = run.get("data") if isinstance(run, dict) else None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name not in DATASETS else None


# --------------------------------------------------------------------------- layers
@click.command(cls=SectionedCommand, short_help="Per-layer activation statistics of a deep net.")
@click.option("--init", "init_name", type=choice(INITIALISERS), default="xavier", show_default=True, metavar="NAME",
              help=f"One of {', '.join(sorted(INITIALISERS))}.")
@click.option("--init-std", type=AsciiFloat(), default=None, callback=nonneg_float,
              help=f"{INIT_STD_HELP} (normal: 0.01 collapses, 1.0 saturates tanh).")
@click.option("--activation", type=choice(ACTIVATIONS), default="tanh", show_default=True,
              help=f"One of {', '.join(ACTIVATIONS)}.")
@click.option("--depth", type=AsciiIntRange(1, MAX_DEPTH), default=10, show_default=True, help="Hidden layers.")
@click.option("--width", type=AsciiIntRange(1, 5000), default=500, show_default=True, help="Units per hidden layer.")
@click.option("--samples", type=AsciiIntRange(2, 100000), default=1000, show_default=True,
              help="Unit-Gaussian input samples fed through the net.")
@click.option("--batchnorm/--no-batchnorm", default=False, show_default=True,
              help="Batch normalisation before each activation.")
@click.option("--plot", type=ImagePath(), default=None, help="Write per-layer histograms (.png, .pdf or .svg).")
@seed_option
@json_option
def layers(init_name: str, init_std: float | None, activation: str, depth: int, width: int, samples: int,
           batchnorm: bool, plot: str | None, seed: int, as_json: bool) -> None:
    """Per-layer activation statistics of a deep net on unit-Gaussian input (the lecture's experiment).

    \b
    Examples:
      search layers --init normal --init-std 0.01 --activation tanh  # collapse
      search layers --init normal --init-std 1.0 --activation tanh   # saturate
      search layers --init he --activation relu --plot he_relu.png   # alive
    """
    from engine.diagnostics import activation_experiment, read_layers
    from engine.init import InitSpec

    check_not_input("--plot", plot, {"study database": storage_file(None)})  # before any work
    if init_std is not None:  # as search train refuses it: ignored, it showed the default xavier as if it were the std
        from search.space import check_fixed

        check_fixed(["init_std"], {}, RunConfig().with_params({"arch.init.name": init_name}))
    stats, hidden = activation_experiment(InitSpec(init_name, init_std), activation, depth, width, batchnorm,
                                          samples, seed)
    if plot:
        from studies.plots import layer_histogram_axes, plot_layer_histograms

        title = f"{init_name}{'' if init_std is None else f' std {init_std:g}'} + {activation}" + (
            " + batchnorm" if batchnorm else "")
        fig = plot_layer_histograms(layer_histogram_axes(depth), hidden, [s.mean for s in stats],
                                    [s.std for s in stats], title)
        save_plot(fig, plot)
    if as_json:
        echo_json([s.as_dict() for s in stats])
        return
    click.echo(f"{'layer':>5} {'mean':>10} {'std':>10} {'saturated':>10} {'dead':>8}")
    for s in stats:
        mean = round(s.mean, 5) + 0.0  # a mean of -2e-7 shown as 0.00000, not -0.00000
        # std to 3 significant figures: a collapsing net's 3e-07 is the number the line below quotes, not 0.00000
        click.echo(f"{s.layer:5d} {mean:10.5f} {s.std:10.3g} {s.saturated:10.3f} {s.dead:8.3f}")
    say(read_layers(stats))
    if plot:
        echo(f"wrote {plot}")


# --------------------------------------------------------------------------- sanity
@click.command(cls=SectionedCommand, short_help="The babysitting checklist, each check PASS or FAIL.")
@run_config_options
@lr_option
@reg_option
@click.option("--overfit-samples", type=AsciiIntRange(min=2), default=20, show_default=True,
              help="Training samples the net must learn to 100 % train accuracy.")
@json_option
def sanity(base: RunConfig, lr: float, reg: float, overfit_samples: int, as_json: bool) -> int:
    """Babysitting checklist: each check prints PASS/FAIL with its measured number; exit 1 if one fails.

    \b
    Example:
      search sanity --data digits
    """
    from engine.diagnostics import sanity_checks

    from engine.data import load_dataset
    from search.config import data_warnings

    config = base.with_params({"train.lr": lr, "train.reg": reg, "train.epochs": 1})
    raw = load_dataset(config.data)
    ds = config.load(raw)
    if not as_json:  # the reason a check on raw scales may fail (wine: the initial loss 1.53, not ln 3)
        for line in data_warnings(config, raw):
            echo(line, err=True)
    if overfit_samples > len(ds.y_train):  # like --train-size: more than there are is refused, not clamped
        raise SearchError(f"--overfit-samples {overfit_samples}: only {len(ds.y_train)} training samples are "
                          f"available")
    checks = sanity_checks(config.arch, config.train, ds.X_train, ds.y_train, ds.X_val, ds.y_val, ds.num_classes,
                           overfit_samples)
    if as_json:
        echo_json([c.as_dict() for c in checks])
    else:
        for c in checks:
            say(f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.value:.4g} (expected {c.expected})")
            if c.hint:
                say(f"- {c.hint}", "  ")
    return 0 if all(c.passed for c in checks) else 1


@click.command(cls=SectionedCommand, short_help="What a data file or folder holds, with warnings.")
@run_config_options(params=DATA_PARAMS)
@json_option
def data(base: RunConfig, as_json: bool) -> None:
    """What a data file or folder holds and what would be trained on: splits, features, classes, warnings.

    \b
    Examples:
      search data --data mine.csv --label-column species
      search data --data penguins.csv --label-column species --missing mean
      search data --data photos/ --image-size 32x32 --json

    A column of text is one-hot encoded over the training split's categories;
    --missing fills or drops missing cells (default: they are refused).
    """
    from engine.data import describe_dataset, load_dataset
    from engine.preprocess import RESCALING, preprocess_dataset
    from search.config import batch_warning

    raw = load_dataset(base.data)
    prepared = preprocess_dataset(raw, base.preprocess)  # settings a stage would refuse are refused here too
    # the data as it is in the file, before --preprocess (with standardize, its raw scales do not matter)
    info = describe_dataset(base.data, raw, standardized=base.preprocess.name in RESCALING)
    info["preprocess"] = base.preprocess.name  # what --preprocess gives, or its default for this data
    if as_json:
        echo_json(info)
        return
    s = info["samples"]
    shape = f" (images {'x'.join(map(str, info['image_shape']))})" if info["image_shape"] else ""
    say(f"{info['path'] or info['name']} ({info['format']}): {s['train']} train, {s['val']} val, "
               f"{s['test']} test; {info['features']} features{shape}")
    say(f"values {info['value_range']['min']:.4g} to {info['value_range']['max']:.4g}; feature std "
               f"{info['feature_std']['min']:.3g} to {info['feature_std']['max']:.3g}")
    table = info["table"]
    if table is not None:
        for line in table_lines(table):
            say(line)
    kept = prepared.X_train.shape[1]
    say(f"preprocessing: {base.preprocess.name}, fitted on the training split" + (
        f", keeps {kept} of the {info['features']} features (the top principal components; --pca-components sets how "
        f"many)" if kept != info["features"] else " (--preprocess NAME to choose)"))  # pca and whiten keep fewer
    if info["label_column"] is not None:  # the class of each row, which a forgotten --label-column leaves the last
        say(f"labels: column {visible(info['label_column'])!r}" + (
            "" if base.data.label_column is not None else " (the last; --label-column NAME takes another)"))
    click.echo(f"{len(info['classes'])} classes:")
    click.echo(f"  {'class':<20} {'train':>7} {'val':>6} {'test':>6}")
    for c in class_rows(info["classes"]):  # a class named in the file: its control characters, line breaks written out
        echo(f"  {visible_line(c['name'])[:20]:<20} {c['train']:7d} {c['val']:6d} {c['test']:6d}"
             if isinstance(c, dict) else c)
    warnings = [*info["warnings"], batch_warning(s["train"], base.train.batch_size)]
    for w in filter(None, warnings):
        say(f"warning: {w}")


# search data lists every class up to this many; past it, the CLASS_ENDS most and least frequent in training
CLASS_TABLE_ROWS = 30
CLASS_ENDS = 10


def class_rows(classes: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
    """The classes ``search data`` lists: all of them in their order, up to CLASS_TABLE_ROWS; past it (10,000 classes
    printed 10,000 rows) the CLASS_ENDS most frequent in training, then a line counting those left out, then the
    CLASS_ENDS least frequent, most frequent first."""
    if len(classes) <= CLASS_TABLE_ROWS:
        return list(classes)
    ranked = sorted(classes, key=lambda c: -c["train"])  # stable: classes of one count in their order
    between = ranked[CLASS_ENDS:-CLASS_ENDS]
    return [*ranked[:CLASS_ENDS],
            f"  ... {len(between)} classes of {between[-1]['train']} to {between[0]['train']} training samples left "
            "out (--json lists every class)", *ranked[-CLASS_ENDS:]]


def table_lines(table: dict[str, Any]) -> list[str]:
    """What ``search data`` says of a table's encoding (``engine.data.table_encoding_info``): its text columns and
    their categories, missing cells and dropped rows, cells of categories training never saw."""
    lines = []
    for column in table["text_columns"]:
        cats = column["categories"]
        shown = ", ".join(map(repr, cats[:8])) + (", ..." if len(cats) > 8 else "")  # a category may hold a comma
        lines.append(f"text column {column['name']!r}: one-hot, {len(cats)} categories of the training split "
                     f"({shown}) -> {len(cats)} features")
    if table["missing"] is not None:
        # the columns that missed a cell, not every column's fill value
        fills = ", ".join(f"{name} {n} with {fill:.4g}" if isinstance(fill, float) else f"{name} {n} with {fill!r}"
                          for name, n in table["cells_filled_per_column"].items()
                          for fill in [(table["fill"] or {})[name]])
        cells, dropped, unlabelled = table["cells_filled"], table["rows_dropped"], table["unlabelled_rows_dropped"]
        filled = (f"{cells} missing cell{'s' if cells != 1 else ''} filled ({fills})" if table["missing"] == "mean"
                  else f"{dropped} row{'s' if dropped != 1 else ''} with a missing value dropped")
        lines.append(f"--missing {table['missing']}: {filled}, {unlabelled} row{'s' if unlabelled != 1 else ''} "
                     "without a label dropped")
    for split, unseen in table["unseen"].items():
        lines.append(f"{split}: {unseen_text(unseen, table['unseen_near'].get(split, {}))}")
    return lines


def unseen_text(unseen: dict[str, int], near: dict[str, dict[str, str]]) -> str:
    """'2 cells of a category training never saw (color 2), encoded as all zeros' of the counts per text column, and
    the categories among them that differ from a training category only in case or spaces (``near``)."""
    total = sum(unseen.values())
    counts = ", ".join(f"{name} {n}" for name, n in unseen.items())
    like = [f"{name} {value!r} (training has {category!r})" for name, values in near.items()
            for value, category in values.items()]
    hint = "" if not like else (f"; {', '.join(like[:3])}{', ...' if len(like) > 3 else ''}: categories are matched "
                                "exactly, in case and spaces too")
    return (f"{total} cell{'s' if total != 1 else ''} of a category training never saw ({counts}), encoded as all "
            f"zeros{hint}")


class InputPath(click.Path):
    """click.Path of the samples search predict scores: a built-in data set's name (digits) is said to be none."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in DATASETS and not os.path.exists(value):
            how = (" (digits: scikit-learn's load_digits() X divided by 16, as training read it)" if value == "digits"
                   else "")
            self.fail(f"{value!r} is a built-in data set, read by search train and auto; search predict scores a file: "
                      f"write the samples to a .npz of X and y, a .csv/.tsv or an image folder{how}", param, ctx)
        return super().convert(value, param, ctx)


OUTSIDE_WARNING = 0.01  # search predict warns when this share of the values lie far outside the training range
ONE_CLASS_WARNING = 20  # search predict warns when this many samples or more, of labels of two classes or more (or
# unlabelled), are all predicted one class: a network that learned only the most frequent class predicts it alone


def input_names(saved: Any) -> tuple[str, ...]:
    """The names of a saved model's inputs: a table's columns (one-hot encoded ones by category), else 'feature i'."""
    return (saved.encoding.feature_names if saved.encoding is not None else saved.features
            or tuple(f"feature {i}" for i in range(saved.input_dim)))


def overflow_text(saved: Any, data_path: str, X: Any, overflowed: Any) -> str:
    """The error for samples (``overflowed``: their rows) whose values overflow float32 inside the network."""
    rows = overflowed.tolist()
    # the column largest once preprocessed, as the network reads it (a raw 1e38 of a column of std 1e30 is not)
    row, column = divmod(int(saved.preprocessor.input_magnitudes(X[rows]).argmax()), X.shape[1])
    return (f"{data_path}: {len(rows)} of {len(X)} samples (row{'s' if len(rows) > 1 else ''} "
            f"{', '.join(map(str, rows[:3]))}{', ...' if len(rows) > 3 else ''}) "
            f"overflow{'s' if len(rows) == 1 else ''} the network, scores beyond float32 (no class can be told): "
            f"values far beyond the training split's range, e.g. {X[rows[row], column]:.4g} in column "
            f"{input_names(saved)[column]} of row {rows[row]}; scale them as the training data was")


def outside_text(saved: Any, outside: dict[str, Any]) -> str:
    """The warning of ``engine.checkpoint.outside_training_range``'s count, naming the feature with most such values."""
    k, names = outside["feature"], input_names(saved)
    return (f"{outside['share']:.1%} of the values ({outside['values']} in {outside['features']} of "
            f"{saved.input_dim} features) lie far outside the training split's range (by half its width or more), "
            f"e.g. {names[k]}: {outside['train_min']:.4g} to {outside['train_max']:.4g} in training, "
            f"{outside['min']:.4g} to {outside['max']:.4g} here; predictions are unreliable unless these samples are "
            f"scaled and encoded as the training data was")


CONFUSION_CLASSES = 10  # search predict shows a confusion table up to this many classes; past it, the worst recalls
WORST_CLASSES = 5  # how many classes of the lowest recall search predict lists past CONFUSION_CLASSES


def class_scores(names: list[Any], predicted: Any, labels: list[Any]) -> dict[str, Any]:
    """Each class's rows among ``labels`` (those that are classes of the model), how many of them are predicted
    right and its recall, in the model's class order (a class without rows left out); and, up to CONFUSION_CLASSES
    classes, the confusion counts: a row per label class, a column per class of the model."""
    import numpy as np

    index = {name: i for i, name in enumerate(names)}
    pairs = [(index[label], k) for k, label in zip(predicted.tolist(), labels) if label in index]
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    if pairs:
        np.add.at(counts, tuple(np.array(pairs).T), 1)
    rows = counts.sum(axis=1)
    present = [i for i in range(len(names)) if rows[i]]
    per_class = [{"class": names[i], "rows": int(rows[i]), "right": int(counts[i, i]),
                  "recall": int(counts[i, i]) / int(rows[i])} for i in present]
    confusion = None if len(names) > CONFUSION_CLASSES else {
        "labels": [names[i] for i in present], "predictions": list(names),
        "counts": [counts[i].tolist() for i in present]}
    return {"per_class": per_class, "confusion": confusion}


def class_score_lines(scores: dict[str, Any]) -> list[str]:
    """What ``search predict`` says of ``class_scores``: each class's recall and rows (past CONFUSION_CLASSES
    classes, the WORST_CLASSES of the lowest recall alone), then the confusion table."""
    per_class = scores["per_class"]
    if not per_class:
        return []
    shown = per_class if scores["confusion"] is not None else sorted(
        per_class, key=lambda c: (c["recall"], -c["rows"]))[:WORST_CLASSES]
    width = min(20, max(len(visible_line(str(c["class"]))) for c in shown))
    head = ("recall per class (the share of its labelled rows predicted as it):" if len(shown) == len(per_class)
            else f"the {len(shown)} classes of the lowest recall, of {len(per_class)} labelled (--json lists all):")
    lines = [head] + [f"  {visible_line(str(c['class']))[:width]:<{width}}  recall {c['recall']:.4f}  "
                      f"({c['right']} of {c['rows']} rows)" for c in shown]
    confusion = scores["confusion"]
    if confusion is not None:
        cells = [[visible_line(str(n))[:12] for n in confusion["predictions"]]] + [
            list(map(str, row)) for row in confusion["counts"]]
        widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
        first = max(width, len("label"))
        lines.append("confusion (a row per label, a column per prediction):")
        lines.append(f"  {'label':<{first}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells[0], widths)))
        lines += [f"  {visible_line(str(name))[:first]:<{first}}  " + "  ".join(
            f"{c:>{w}}" for c, w in zip(row, widths)) for name, row in zip(confusion["labels"], cells[1:])]
    return lines


# what --out of search predict refuses: files read as another format than the CSV it writes
OTHER_FORMATS = frozenset({".json", ".jsonl", ".npz", ".npy", ".parquet", ".xlsx", ".xls", ".ods", ".pkl", ".pickle"})


@click.command(cls=SectionedCommand, short_help="Score samples with a saved model, one CSV row each.")
@click.option("--model", "model_file", required=True, type=click.Path(exists=True, dir_okay=False),
              metavar="FILE.npz", help="A model saved by `search train --save` or `search auto --save`.")
@click.option("--data", "data_path", required=True, type=InputPath(exists=True), metavar="PATH",
              help="Samples to score: .csv/.tsv with the model's columns by name (others are ignored), .npz with X "
                   "(and y), or an image folder (class subfolders, or the new images alone).")
@click.option("--id-column", default=None, metavar="NAME",
              help="A .csv/.tsv column that names each sample (an id), copied into every row of the predictions.")
@click.option("--out", type=WritablePath(), default=None, metavar="FILE.csv",
              help="Write the predictions here instead of stdout (tab-separated for a .tsv file; - is stdout).")
@click.option("--csv-safe", "safe_cells", is_flag=True,
              help="Write each text cell of the CSV (a class, label, id, file or column name) that begins with =, "
                   "+, -, @, a tab or a carriage return, and is no number, after a single quote ('=1+2), as OWASP "
                   "advises: a spreadsheet opening the file shows it as text instead of running it as a formula.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON on stdout: the samples, the accuracy and, without --out, the rows under the CSV's "
                   "column names (probabilities as numbers).")
def predict(model_file: str, data_path: str, id_column: str | None, out: str | None, safe_cells: bool,
            as_json: bool) -> None:
    """Score samples with a saved model: one CSV row each, in file order, with the predicted class (and, for a
    softmax model, each class's probability); the accuracy when the data has labels.

    The model applies the preprocessing fitted on its own training split, as validation was scored, and encodes a
    table's text columns and missing cells as training did (a category training never saw: all zeros).

    \b
    Examples:
      search train --data wine.csv --label-column cultivar --save wine.npz
      search predict --model wine.npz --data new_wine.csv --out predictions.csv
      search predict --model wine.npz --data new_wine.csv --id-column id
      search predict --model wine.npz --data new_wine.csv --json
    """
    from engine.checkpoint import class_probabilities, load_checkpoint, outside_training_range, write_replacing
    from engine.data import read_inputs
    from engine.formats import check_memory, unread_files_warning
    import numpy as np

    if out == "-":  # stdout, as the predictions go without --out (a file named "-" is ./-)
        out = None
    inputs = {"--data": data_path, "--model": model_file, "study database": storage_file(None)}
    check_not_input("--out", out, inputs)  # the study database too: predictions written over it lost every stage
    suffix = Path(out).suffix.lower() if out else ""
    if suffix in OTHER_FORMATS:  # it would hold comma-separated text under a name that promises another format
        raise SearchError(f"--out {out}: predictions are written as .csv or .tsv, not {suffix}"
                          + ("; --json without --out prints them as JSON" if suffix.startswith(".json") else ""))
    saved = load_checkpoint(model_file)
    check_not_input("--out", out, {"--model's training data": trained_on(saved.info)})
    names = saved.label_names
    softmax = saved.model.config.loss == "softmax"
    probability_columns = [f"p_{n}" for n in names] if softmax else []
    if id_column in ("row", "prediction", "label", *probability_columns):  # two columns of one name: --json keeps one
        raise SearchError(f"--id-column {id_column}: the predictions have a column {id_column!r} of their own; "
                          f"rename the column in {data_path} to name the rows by it")
    X, labels, files, unseen, near, filled, notes = read_inputs(
        data_path, label_names=saved.label_names, features=saved.features, label_column=saved.label_column,
        image_shape=saved.image_shape, id_column=id_column, encoding=saved.encoding, input_dim=saved.input_dim)
    if X.shape[1] != saved.input_dim:
        raise SearchError(f"{data_path}: samples of {X.shape[1]} features; the model reads {saved.input_dim}")
    # N x classes probabilities, float64: 10,000 classes took 2.2 GiB for 30,000 rows (a traceback past the memory)
    check_memory(8 * len(X) * len(names) * softmax, data_path,
                 f"the class probabilities of {len(X)} samples for {len(names)} classes")
    # a value far beyond the training range (3e38 where training had -2 to 2) overflows float32 inside the network:
    # NaN scores, of which argmax makes class 0; refused, naming the samples, rather than written as a prediction
    with np.errstate(over="ignore", invalid="ignore"):
        scores = saved.preprocessor.transform(X)
        if softmax:
            probs = class_probabilities(saved.model, scores)
            finite, predicted = np.isfinite(probs).all(axis=1), probs.argmax(axis=1)
        else:  # the network's scores a chunk at a time, as model.predict takes them: each read once
            probs, finite, predicted = None, np.ones(len(X), dtype=bool), np.empty(len(X), dtype=np.int64)
            for i in range(0, len(X), 2000):
                raw, _ = saved.model.forward(scores[i:i + 2000], train=False)
                finite[i:i + 2000], predicted[i:i + 2000] = np.isfinite(raw).all(axis=1), raw.argmax(axis=1)
    if not finite.all():
        raise SearchError(overflow_text(saved, data_path, X, np.flatnonzero(~finite)))
    outside = outside_training_range(saved, X)
    warnings = [*notes] + ([] if outside is None or outside["share"] < OUTSIDE_WARNING else [
        outside_text(saved, outside)])
    if Path(data_path).is_dir():  # an image folder's files of another kind (a GIF), not scored
        warnings += filter(None, [unread_files_warning(Path(data_path))])
    if (len(names) > 1 and len(X) >= ONE_CLASS_WARNING and (predicted == predicted[0]).all()
            and (labels is None or len({label for label in labels if label is not None}) > 1)):
        warnings.append(f"all {len(X)} samples are predicted {names[predicted[0]]!r}, none the model's "
                        f"{len(names) - 1} other class{'es' if len(names) > 2 else ''}"
                        + (": the network has learned nothing but the class frequencies, or these samples are all "
                           "of one class" if labels is None else ", where the labels name several: the network has "
                           "learned nothing but the class frequencies"))
    for warning in warnings:  # before the rows, where they go to a terminal too
        say(f"warning: {warning}", err=True)
    # an image folder's rows name their file (class folder/name), the only way to tell which image a row is; a
    # table's rows their --id-column
    header = ["row"] + ([id_column if id_column is not None else "file"] if files is not None else []) + [
        "prediction"] + (["label"] if labels is not None else []) + probability_columns

    separator = "\t" if out and out.lower().endswith(".tsv") else ","

    def rows(with_probabilities: bool = True) -> Iterator[list[Any]]:
        for i, k in enumerate(predicted.tolist()):
            row = [i] + ([files[i]] if files is not None else []) + [names[k]] + (
                [labels[i]] if labels is not None else [])
            yield row + (probs[i].tolist() if probs is not None and with_probabilities else [])

    def write_rows(stream: Any) -> None:
        # each line's cells are written with a "\r\n" terminator, cut off, then "\n": csv quotes a cell holding "\r"
        # or "\n" only when its line terminator holds it (an id cell of two lines split its row in two)
        line = io.StringIO()
        writer = csv.writer(line, delimiter=separator, lineterminator="\r\n")
        cells = _SafeCells(writer) if safe_cells else writer

        def text(row: list[Any]) -> str:
            line.seek(0)
            line.truncate()
            cells.writerow(row)
            return line.getvalue()[:-2]

        stream.write(text(header) + "\n")
        if probs is None:
            stream.writelines(text(row) + "\n" for row in rows())
            return
        # a row's probabilities in one %-format, after its other cells, which csv quotes as needed: f"{p:.4f}" of
        # each value, then csv of each, took 3/4 of the time (2,000 classes x 5,000 rows: 4.1 s of CPU, now 2.4 s)
        probabilities = separator + separator.join(["%.4f"] * len(names)) + "\n"
        for row, p in zip(rows(with_probabilities=False), probs):  # text(row) inline: a Python call less a row
            line.seek(0)
            line.truncate()
            cells.writerow(row)
            stream.write(line.getvalue()[:-2] + probabilities % tuple(p.tolist()))

    def write_file(f: Any) -> None:
        # a file name that is not UTF-8 (an image from a Latin-1 system) is written as the bytes that name it
        text = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")
        write_rows(text)
        text.flush()
        text.detach()

    if out:  # whole or not at all: an earlier file is replaced once the new one is complete
        write_replacing(out, write_file)
    line = f"{len(X)} sample{'' if len(X) == 1 else 's'} scored with {model_file}"
    summary: dict[str, Any] = {"samples": len(X), "accuracy": None, "balanced_accuracy": None, "per_class": [],
                               "confusion": None,
                               "labels": 0, "out": out, "unseen": unseen,
                               "unseen_near": near, "cells_filled": sum(filled.values()),
                               "cells_filled_per_column": filled, "outside_training_range": outside,
                               "warnings": warnings}
    if unseen:
        line += f"; {unseen_text(unseen, near)}"
    if filled:  # as `search data` counts them: the columns that missed a cell
        total = sum(filled.values())
        line += (f"; {total} missing cell{'s' if total != 1 else ''} filled as in training "
                 f"({', '.join(f'{name} {n}' for name, n in filled.items())})")
    class_lines: list[str] = []
    if labels is not None:
        right = sum(names[k] == label for k, label in zip(predicted.tolist(), labels))
        known = [label for label in labels if label is not None]  # a CSV row with an empty label cell: unlabelled
        classes = set(names)
        unknown = sorted({label for label in known if label not in classes})
        summary.update(labels=len(known), unknown_labels=unknown)
        if known and all(label not in classes for label in known):  # no accuracy to speak of: labels of another kind
            shown = ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
            line += (f"; no accuracy: none of its {len(known)} labels is a class of the model (it has {shown}; the "
                     f"file has {', '.join(map(repr, unknown[:3]))}{', ...' if len(unknown) > 3 else ''})")
        else:
            scores = class_scores(names, predicted, labels)
            # the mean of the labelled classes' recalls, a class the model lacks at recall 0: sklearn's
            # balanced_accuracy_score of these labels and predictions
            balanced = sum(c["recall"] for c in scores["per_class"]) / (len(scores["per_class"]) + len(unknown))
            line += (f"; accuracy {right / len(known):.4f} ({right} of {len(known)} labels), balanced accuracy "
                     f"{balanced:.4f}")
            summary.update(accuracy=right / len(known), balanced_accuracy=balanced)
            summary.update(scores)
            class_lines = class_score_lines(scores)
            if unknown:  # how many rows too: they are scored wrong, in the accuracy
                wrong = sum(label not in classes for label in known)
                line += (f"; {len(unknown)} label(s) the model has no class for, e.g. {unknown[0]!r} ({wrong} "
                         f"row{'s' if wrong != 1 else ''}, scored wrong)")
    if as_json:
        if out:
            echo_json(summary)
        else:  # each row as it is made: as dicts, then text, they took 30 times the probabilities' array
            echo_json_items(summary, "rows", (dict(zip(header, row)) for row in rows()))
        return
    if not out:
        try:
            write_rows(_Shown(sys.stdout) if sys.stdout.isatty() else sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader left (| head -3) with the rows it wanted: the summary is still said
            say(line, err=True)
            raise
    say(line + (f"; wrote {out}" if out else ""), err=True)
    for class_line in class_lines:  # accuracy alone hides a rare class never predicted
        echo(class_line, err=True)


class _SafeCells:
    """A csv writer's rows with each text cell ``csv_safe`` (search predict --csv-safe)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def writerow(self, row: list[Any]) -> None:
        self.writer.writerow([csv_safe(cell) for cell in row])


class _Shown:
    """A terminal as ``search predict`` writes its rows to it: their control characters written out (``visible``), as
    every command shows a name: a class named ``cat ESC]0;...BEL`` set the terminal's title. A file or pipe has them
    as they are."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        self.stream.write(visible(text))

    def writelines(self, lines: Any) -> None:
        self.stream.writelines(map(visible, lines))


COMMANDS = [train, layers, sanity, data, predict]
