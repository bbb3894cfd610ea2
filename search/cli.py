"""The ``search`` command line: one click group; errors become one line and an exit code here, in one place."""
from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from engine.data import DATASETS, DataSpec
from engine.errors import EngineError
from engine.init import INITIALISERS, InitSpec
from engine.model import ACTIVATIONS, FullyConnectedNet
from engine.optim import OPTIMIZERS
from engine.preprocess import PREPROCESSORS, PreprocessSpec
from search.errors import Interrupted, SearchError
from search.runspec import RunSpec
from studies.errors import StudyError

EXIT_INTERRUPTED = 130


class SearchGroup(click.Group):
    """A click group whose errors print as one line on stderr with the contract's exit codes."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # noqa: D102
        extra.pop("standalone_mode", None)
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_interrupted)
        try:
            rv = super().main(args=args, prog_name=prog_name or "search", standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.echo("interrupted: the database is consistent; run the same command again to continue", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Interrupted:
            click.echo("terminated: the database is consistent; run the same command again to continue", err=True)
            sys.exit(143)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except (EngineError, StudyError, SearchError) as e:
            click.echo(f"error: {one_line(str(e))}", err=True)
            sys.exit(e.exit_code)
        finally:
            signal.signal(signal.SIGTERM, previous)
        sys.exit(rv if isinstance(rv, int) else 0)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted()


def one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(cls=SearchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Coarse-to-fine hyperparameter search for small NumPy networks.

    \b
    Quick start on the bundled digits data:
      search auto                      # coarse -> fine stages -> test score
      search train --epochs 30 --plot loss.png
      search studies                   # what is in ./search.db
    """


def main() -> None:
    """Console-script entry point."""
    cli.main()


# --------------------------------------------------------------------------- shared options
def _choice(names: Any) -> click.Choice:
    return click.Choice(sorted(names), case_sensitive=False)


def _hidden(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} must be comma-separated integers, e.g. 100 or 200,100") from None
    if any(s < 1 for s in sizes):
        raise click.BadParameter(f"{value!r}: every layer needs at least 1 unit")
    return sizes


def _positive_float(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value!r} must be a finite number > 0")
    return value


def _nonneg_float(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value!r} must be a finite number >= 0")
    return value


def _apply(options: list[Callable]) -> Callable:
    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


data_options = _apply([
    click.option("--data", type=_choice(DATASETS), default="digits", show_default=True, help="Dataset."),
    click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                 help="Folder of the data (cifar10: the cifar-10-batches-py folder or its parent)."),
    click.option("--train-size", type=click.IntRange(min=1), default=None, help="Use the first N training samples."),
    click.option("--val-size", type=click.IntRange(min=1), default=None, help="Use the first N validation samples."),
    click.option("--preprocess", type=_choice(PREPROCESSORS), default="mean_image", show_default=True,
                 help="Preprocessing fitted on the training split."),
    click.option("--pca-components", type=click.IntRange(min=1), default=None, help="Components for pca/whiten."),
])

model_options = _apply([
    click.option("--hidden", default="100", show_default=True, callback=_hidden,
                 help="Hidden layer sizes, comma-separated."),
    click.option("--activation", type=_choice(ACTIVATIONS), default="relu", show_default=True),
    click.option("--init", "init_name", type=_choice(INITIALISERS), default="he", show_default=True,
                 help="Weight initialiser."),
    click.option("--init-std", type=float, default=None, callback=_nonneg_float,
                 help="Std for normal/uniform/sparse/constant init, gain for orthogonal."),
    click.option("--batchnorm/--no-batchnorm", default=False, show_default=True),
    click.option("--dropout", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
                 help="Keep probability of inverted dropout (1 = off)."),
    click.option("--loss", type=_choice(["softmax", "svm"]), default="softmax", show_default=True),
    click.option("--relu-bias", type=float, default=0.0, callback=_nonneg_float,
                 help="Initial bias of ReLU-family units, e.g. 0.01."),
])

optim_options = _apply([
    click.option("--optimizer", type=_choice(OPTIMIZERS), default="adam", show_default=True),
    click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True),
    click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
                 help="Multiply lr by this after each epoch."),
])

seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def build_run_spec(opts: dict[str, Any], epochs: int) -> RunSpec:
    """A RunSpec from the shared data/model/optim options."""
    return RunSpec(
        data=DataSpec(opts["data"], opts["data_dir"], opts["train_size"], opts["val_size"], seed=opts["seed"]),
        preprocess=PreprocessSpec(opts["preprocess"], opts["pca_components"]),
        hidden=opts["hidden"], activation=opts["activation"], init=InitSpec(opts["init_name"], opts["init_std"]),
        batchnorm=opts["batchnorm"], dropout=opts["dropout"], loss=opts["loss"], relu_bias=opts["relu_bias"],
        optimizer=opts["optimizer"], batch_size=opts["batch_size"], epochs=epochs, lr_decay=opts["lr_decay"],
    )


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return str(o)


def finite_or_none(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


# --------------------------------------------------------------------------- train
@cli.command()
@data_options
@model_options
@optim_options
@click.option("--lr", type=float, default=1e-3, show_default=True, callback=_positive_float, help="Learning rate.")
@click.option("--reg", type=float, default=1e-3, show_default=True, callback=_nonneg_float, help="L2 strength.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write loss and accuracy curves (PNG).")
@seed_option
@json_option
def train(lr: float, reg: float, epochs: int, plot: str | None, as_json: bool, **opts: Any) -> int:
    """Train one network and print its losses and accuracies.

    \b
    Example:
      search train --data digits --epochs 30 --lr 1e-3 --reg 1e-3 --plot run.png
    """
    import numpy as np

    from engine.trainer import train as run_training

    spec = build_run_spec({**opts}, epochs)
    ds = spec.load()
    model = FullyConnectedNet(spec.model_config(ds.input_dim, ds.num_classes), np.random.default_rng(opts["seed"]))
    cfg = spec.train_config(lr=lr, reg=reg, seed=opts["seed"])
    result = run_training(model, cfg, ds.X_train, ds.y_train, ds.X_val, ds.y_val)
    summary = {
        "status": result.status,
        "initial_loss": finite_or_none(result.initial_loss),
        "final_loss": finite_or_none(result.final_loss),
        "train_acc": finite_or_none(result.train_acc),
        "val_acc": finite_or_none(result.val_acc),
        "best_val_acc": result.best_val_acc,
        "epochs": result.epochs,
        "iterations": result.iterations,
        "seconds": round(result.seconds, 4),
        "samples_per_second": finite_or_none(round(result.samples_per_second, 1)),
        "train_acc_history": result.train_acc_history,
        "val_acc_history": result.val_acc_history,
        "loss_history": [finite_or_none(v) for v in result.loss_history],
    }
    if plot:
        from studies.plots import new_axes, plot_training, save

        axes = new_axes(1, 2)[0]
        save(plot_training(axes, result.loss_history, result.train_acc_history, result.val_acc_history), plot)
    if as_json:
        echo_json(summary)
    else:
        per_epoch = max(1, result.iterations // max(1, result.epochs))
        for e, (ta, va) in enumerate(zip(result.train_acc_history, result.val_acc_history), start=1):
            loss = result.loss_history[min(len(result.loss_history), e * per_epoch) - 1]
            click.echo(f"epoch {e:3d}  loss {loss:.4f}  train_acc {ta:.4f}  val_acc {va:.4f}")
        click.echo(
            f"{result.status}: {result.iterations} iterations in {result.seconds:.2f} s "
            f"({result.samples_per_second:,.0f} samples/s); initial loss {result.initial_loss:.4f}, "
            f"final loss {result.final_loss:.4f}, val_acc {result.val_acc:.4f}"
        )
        if plot:
            click.echo(f"wrote {plot}")
    return 0 if result.status == "completed" else 1


# --------------------------------------------------------------------------- layers
@cli.command()
@click.option("--init", "init_name", type=_choice(INITIALISERS), default="xavier", show_default=True)
@click.option("--init-std", type=float, default=None, callback=_nonneg_float,
              help="Std for normal/uniform init (0.01 collapses, 1.0 saturates tanh).")
@click.option("--activation", type=_choice(ACTIVATIONS), default="tanh", show_default=True)
@click.option("--depth", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--width", type=click.IntRange(1, 5000), default=500, show_default=True)
@click.option("--samples", type=click.IntRange(2, 100000), default=1000, show_default=True)
@click.option("--batchnorm/--no-batchnorm", default=False, show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write per-layer histograms (PNG).")
@seed_option
@json_option
def layers(init_name: str, init_std: float | None, activation: str, depth: int, width: int, samples: int,
           batchnorm: bool, plot: str | None, seed: int, as_json: bool) -> None:
    """Per-layer activation statistics of a deep net on unit-Gaussian input (the lecture's experiment).

    \b
    Examples:
      search layers --init normal --init-std 0.01 --activation tanh   # activations collapse
      search layers --init normal --init-std 1.0 --activation tanh    # units saturate
      search layers --init he --activation relu --plot he_relu.png    # stays alive
    """
    from engine.diagnostics import activation_experiment

    stats, hidden = activation_experiment(InitSpec(init_name, init_std), activation, depth, width, batchnorm,
                                          samples, seed)
    if plot:
        from studies.plots import new_axes, plot_layer_histograms, save

        cols = 4
        rows = 1 + math.ceil(depth / cols)
        axes = new_axes(rows, cols, size=(3.0, 2.2)).ravel()
        title = f"{init_name}{'' if init_std is None else f' std {init_std:g}'} + {activation}" + (
            " + batchnorm" if batchnorm else "")
        # first row: mean and std curves; then one histogram per layer
        panel = [axes[0], axes[1], *axes[cols:cols + depth]]
        for ax in [*axes[2:cols], *axes[cols + depth:]]:
            ax.set_axis_off()
        fig = plot_layer_histograms(panel, hidden, [s.mean for s in stats], [s.std for s in stats], title)
        save(fig, plot)
    if as_json:
        echo_json([s.as_dict() for s in stats])
        return
    click.echo(f"{'layer':>5} {'mean':>10} {'std':>10} {'saturated':>10} {'dead':>8}")
    for s in stats:
        click.echo(f"{s.layer:5d} {s.mean:10.5f} {s.std:10.5f} {s.saturated:10.3f} {s.dead:8.3f}")
    if plot:
        click.echo(f"wrote {plot}")


# --------------------------------------------------------------------------- sanity
@cli.command()
@data_options
@model_options
@optim_options
@click.option("--lr", type=float, default=1e-3, show_default=True, callback=_positive_float)
@click.option("--reg", type=float, default=1e-3, show_default=True, callback=_nonneg_float)
@click.option("--overfit-samples", type=click.IntRange(min=2), default=20, show_default=True)
@seed_option
@json_option
def sanity(lr: float, reg: float, overfit_samples: int, as_json: bool, **opts: Any) -> int:
    """Babysitting checklist: each check prints PASS/FAIL with its measured number; exit 1 if one fails.

    \b
    Example:
      search sanity --data digits
    """
    from engine.diagnostics import sanity_checks

    spec = build_run_spec(opts, epochs=1)
    ds = spec.load()
    checks = sanity_checks(spec.model_config(ds.input_dim, ds.num_classes),
                           spec.train_config(lr=lr, reg=reg, seed=opts["seed"]),
                           ds.X_train, ds.y_train, ds.X_val, ds.y_val, overfit_samples)
    if as_json:
        echo_json([c.as_dict() for c in checks])
    else:
        for c in checks:
            click.echo(f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.value:.4g} (expected {c.expected})")
    return 0 if all(c.passed for c in checks) else 1



# --------------------------------------------------------------------------- search stages
def _range(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    from search.space import parse_range

    try:
        return parse_range(value)
    except SearchError as e:
        raise click.BadParameter(str(e)) from None


storage_option = click.option(
    "--storage", default=None, metavar="URL",
    help="Study database URL (default: $SEARCH_STORAGE or sqlite:///search.db).",
)
jobs_option = click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                           help="Worker processes on this machine (1 BLAS thread each).")
heartbeat_option = click.option(
    "--heartbeat", type=click.IntRange(min=1), default=10, show_default=True,
    help="Seconds between a running trial's heartbeats; a trial silent for 2x this is failed and re-run. "
         "Set by the command that creates a stage; its workers use the stage's value.")
campaign_option = click.option("--campaign", default=None, help="Campaign name (default: the dataset's name / the latest).")

# where a stage runs: campaign, database, local worker processes, heartbeat
stage_run_options = _apply([campaign_option, storage_option, jobs_option, heartbeat_option])

stage_options = _apply([
    click.option("--lr", "lr_range", default="1e-6:1e0", show_default=True, callback=_range,
                 help="Learning-rate range LOW:HIGH, sampled on a log scale."),
    click.option("--reg", "reg_range", default="1e-6:1e1", show_default=True, callback=_range,
                 help="L2 strength range LOW:HIGH, sampled on a log scale."),
    click.option("--trials", type=click.IntRange(min=1), default=50, show_default=True, help="Trials in the stage."),
    click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True,
                 help="Epochs per trial (coarse runs are short)."),
    click.option("--sampler", type=_choice(["random", "tpe", "qmc"]), default="random", show_default=True),
    click.option("--explode-factor", type=click.FloatRange(1, min_open=True), default=3.0, show_default=True,
                 help="Stop a run once its loss exceeds this x its first loss."),
])

fine_options = _apply([
    click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
                 help="Refine the range around this many best trials."),
    click.option("--edge", type=click.FloatRange(0, 0.5, min_open=True), default=0.1, show_default=True,
                 help="Widen past a bound when the best lies within this fraction of the width of it."),
])


def _execution(storage: str | None, jobs: int, heartbeat: int, as_json: bool) -> Any:
    from search.campaign import Execution
    from studies.store import resolve_storage_url

    return Execution(resolve_storage_url(storage), jobs=jobs, heartbeat=heartbeat,
                     progress="quiet" if as_json else "auto")


def _print_summary(summary: Any) -> None:
    c = summary.counts
    click.echo(f"\n{summary.study}: {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed "
               f"of {summary.n_trials}; {summary.epochs} epochs; ranges " +
               " ".join(f"{k}={v}" for k, v in summary.space.items()))
    for note in summary.range_notes:
        click.echo(f"  range: {note}")
    if summary.top:
        names = [k for k in summary.top[0] if k not in ("number", "value", "seconds")]
        click.echo(f"  {'trial':>5} {'val_acc':>8} " + " ".join(f"{n:>10}" for n in names))
        for row in summary.top:
            click.echo(f"  {row['number']:5d} {row['value']:8.4f} " + " ".join(f"{row[n]:10.3g}" for n in names))
    for err in summary.errors:
        click.echo(f"  error: {err}", err=True)


def _finish(summaries: list[Any], as_json: bool, extra: dict[str, Any] | None = None) -> int:
    if as_json:
        echo_json({"stages": [s.as_dict() for s in summaries], **(extra or {})})
    else:
        for s in summaries:
            _print_summary(s)
    return 1 if any(s.errors for s in summaries) else 0


@cli.command()
@data_options
@model_options
@optim_options
@stage_options
@stage_run_options
@seed_option
@json_option
def coarse(lr_range: Any, reg_range: Any, trials: int, epochs: int, sampler: str, explode_factor: float,
           campaign: str | None, storage: str | None, jobs: int, heartbeat: int, as_json: bool, **opts: Any) -> int:
    """Coarse stage: random search with lr and reg on a log scale and short runs.

    Running the same command again continues an interrupted stage to exactly --trials.

    \b
    Example:
      search coarse --lr 1e-6:1e0 --reg 1e-6:1e1 --trials 50 --epochs 3 --jobs 2
    """
    from search.campaign import coarse_stage, execute_stage

    run = build_run_spec(opts, epochs)
    stage = coarse_stage(campaign or opts["data"], run, {"lr": lr_range, "reg": reg_range}, trials,
                         opts["seed"], sampler, explode_factor)
    return _finish([execute_stage(_execution(storage, jobs, heartbeat, as_json), stage)], as_json)


@cli.command()
@fine_options
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs per trial (default: twice the previous stage's).")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials (default: the previous stage's).")
@stage_run_options
@json_option
def fine(top: int, edge: float, epochs: int | None, trials: int | None, campaign: str | None, storage: str | None,
         jobs: int, heartbeat: int, as_json: bool) -> int:
    """Next fine stage: ranges narrowed around the best trials, widened past a bound the best sits near.

    \b
    Example:
      search fine --top 5 --edge 0.1 --epochs 10
    """
    from search.campaign import execute_stage, next_fine_stage, resolve_campaign, run_existing

    execution = _execution(storage, jobs, heartbeat, as_json)
    st = execution.storage()
    stage, study = next_fine_stage(st, resolve_campaign(st, campaign), top, edge, epochs, trials)
    if stage is None:
        return _finish([run_existing(execution, study)], as_json)
    if not as_json:
        click.echo(f"{stage.name} refined from {stage.parent}:")
        for note in stage.range_notes:
            click.echo(f"  {note}")
    return _finish([execute_stage(execution, stage)], as_json)


@cli.command()
@stage_run_options
@json_option
def grid(campaign: str | None, storage: str | None, jobs: int, heartbeat: int, as_json: bool) -> int:
    """Grid stage over the coarse stage's ranges, epochs and budget (k x k points, k = floor(sqrt(trials))).

    \b
    Example:
      search grid --campaign digits
    """
    from search.campaign import execute_stage, grid_stage_for, resolve_campaign

    execution = _execution(storage, jobs, heartbeat, as_json)
    st = execution.storage()
    return _finish([execute_stage(execution, grid_stage_for(st, resolve_campaign(st, campaign)))], as_json)


@cli.command()
@data_options
@model_options
@optim_options
@stage_options
@fine_options
@click.option("--fine-epochs", type=click.IntRange(min=1), default=None,
              help="Epochs of fine trials (default: twice the previous stage's).")
@click.option("--max-fine", type=click.IntRange(min=0), default=3, show_default=True,
              help="Most fine stages to run.")
@stage_run_options
@seed_option
@json_option
def auto(lr_range: Any, reg_range: Any, trials: int, epochs: int, sampler: str, explode_factor: float, top: int,
         edge: float, fine_epochs: int | None, max_fine: int, campaign: str | None, storage: str | None, jobs: int,
         heartbeat: int, as_json: bool, **opts: Any) -> int:
    """The whole recipe: coarse, fine stages until the range settles, then the best retrained and tested.

    \b
    Example:
      search auto --data digits --trials 30 --jobs 2
    """
    from search.campaign import coarse_stage, run_auto

    run = build_run_spec(opts, epochs)
    stage = coarse_stage(campaign or opts["data"], run, {"lr": lr_range, "reg": reg_range}, trials,
                         opts["seed"], sampler, explode_factor)
    summaries, final = run_auto(_execution(storage, jobs, heartbeat, as_json), stage, max_fine, top, edge,
                                fine_epochs)
    code = _finish(summaries, as_json, {"final": final.__dict__})
    if not as_json:
        click.echo(f"\n{'stage':<22} {'trials':>6} {'pruned':>6} {'epochs':>6} {'best val':>9}  ranges")
        for s in summaries:
            best = "-" if s.best_value is None else f"{s.best_value:.4f}"
            click.echo(f"{s.study:<22} {s.n_trials:6d} {s.counts['pruned']:6d} {s.epochs:6d} {best:>9}  " +
                       " ".join(f"{k}={v}" for k, v in s.space.items()))
        params = " ".join(f"{k}={v:.3g}" for k, v in final.params.items())
        click.echo(f"\nbest: {params} from {final.study}; retrained {final.epochs} epochs: "
                   f"val_acc {final.val_acc:.4f}, test_acc {final.test_acc:.4f}")
    return code


@cli.command()
@campaign_option
@click.option("--stage", default=None, help="Stage to join (default: the campaign's newest unfinished stage).")
@storage_option
@heartbeat_option
@json_option
def worker(campaign: str | None, stage: str | None, storage: str | None, heartbeat: int, as_json: bool) -> int:
    """Join a running stage from this machine (same --storage, e.g. PostgreSQL) and run its trials.

    \b
    Example:
      search worker --campaign digits --storage postgresql://user@host/search
    """
    from search.campaign import resolve_campaign, run_existing
    from search.stages import campaign_stages, load_stage_study, stage_unfinished, study_name

    execution = _execution(storage, 1, heartbeat, as_json)
    st = execution.storage()
    name = resolve_campaign(st, campaign)
    if stage is None:
        unfinished = [s for s in campaign_stages(st, name) if stage_unfinished(st, s._study_id)]
        if not unfinished:
            raise SearchError(f"campaign {name!r} has no unfinished stage to join")
        stage = unfinished[-1].user_attrs["stage"]
    return _finish([run_existing(execution, load_stage_study(st, study_name(name, stage)))], as_json)


# --------------------------------------------------------------------------- the study database
format_option = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                             show_default=True)


def _open_for_reading(storage: str | None) -> Any:
    from studies.store import open_storage, resolve_storage_url

    return open_storage(resolve_storage_url(storage), create=False)


def _print_frame(frame: Any, fmt: str) -> None:
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", indent=2))
    elif frame.empty:
        click.echo("(no rows)")
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                               "display.float_format", "{:.4g}".format):
            click.echo(frame.to_string(index=False))


@cli.command()
@storage_option
@format_option
def studies(storage: str | None, fmt: str) -> None:
    """One row per stage: campaign, stage, trials by state, best value, ranges, epochs.

    \b
    Example:
      search studies --format csv
    """
    from studies.queries import list_studies

    _print_frame(list_studies(_open_for_reading(storage)), fmt)


@cli.command()
@click.argument("study", required=False)
@campaign_option
@click.option("--state", "states", multiple=True,
              type=click.Choice(["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"], case_sensitive=False),
              help="Only trials in this state (repeatable).")
@click.option("--sort", default=None, help="Column to sort by (value sorts best first).")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@storage_option
@format_option
def trials(study: str | None, campaign: str | None, states: tuple[str, ...], sort: str | None, limit: int | None,
           storage: str | None, fmt: str) -> None:
    """One row per trial: params, value, state, stop_reason, seconds, ...

    \b
    Examples:
      search trials digits/coarse --sort value --limit 10
      search trials --campaign digits --state PRUNED --format csv
    """
    from studies.queries import trials_frame

    frame = trials_frame(_open_for_reading(storage), study_name=study, campaign=campaign,
                         states=[s.upper() for s in states] or None, sort=sort, limit=limit)
    _print_frame(frame, fmt)


@cli.command()
@campaign_option
@storage_option
@format_option
def best(campaign: str | None, storage: str | None, fmt: str) -> None:
    """The best trial of a campaign (default: the latest) and its parameters.

    \b
    Example:
      search best --campaign digits --format json
    """
    import pandas as pd

    from studies.queries import best_trial, latest_campaign

    st = _open_for_reading(storage)
    row = best_trial(st, campaign or latest_campaign(st))
    flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
    for group in ("params", "user_attrs"):
        flat.update({(f"param_{k}" if group == "params" else k): v for k, v in row.get(group, {}).items()})
    if fmt == "json":
        echo_json(row)
    else:
        _print_frame(pd.DataFrame([flat]), fmt)


@cli.command()
@click.argument("sql")
@storage_option
@format_option
def query(sql: str, storage: str | None, fmt: str) -> None:
    """Run one read-only SQL statement; the view trials_flat has one row per trial with flat columns.

    \b
    Examples:
      search query "SELECT stage, count(*), max(value) FROM trials_flat GROUP BY stage"
      search query "SELECT param_lr, value FROM trials_flat WHERE state = 'COMPLETE' ORDER BY value DESC LIMIT 5"
    """
    from studies.queries import run_readonly_sql
    from studies.store import resolve_storage_url

    _print_frame(run_readonly_sql(resolve_storage_url(storage), sql), fmt)


from search import cli_report  # noqa: E402,F401  (registers report, compare, dashboard)
