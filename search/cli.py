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

