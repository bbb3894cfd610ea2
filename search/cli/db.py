"""The study database: ``search studies``, ``trials``, ``best``, ``query`` and ``explain``."""
from __future__ import annotations

import shlex
from dataclasses import asdict
from typing import Any

import click

from search.cli.options import (
    NEWEST_CAMPAIGN, AsciiIntRange, FiniteFloatRange, ImagePath, SectionedCommand,
    apply, campaign_option, check_not_input, format_option, json_option, open_for_reading, storage_file,
    storage_option,
)
from search.cli.output import (column_cell, echo_json, final_runs_text, note_on_output, print_frame, print_table,
                               save_plot, say, say_final_runs)
from studies.records import params_text


# the columns a table shows without --columns or --wide (best_value before the counts: a table cut to the
# terminal keeps what a stage found)
SHOWN_STUDY_COLUMNS = ["study", "n_trials", "best_value", "complete", "pruned", "fail", "running", "waiting", "epochs"]
SHOWN_TRIAL_COLUMNS = ["number", "state", "value", "diagnosis", "seconds"]

columns_options = apply([
    click.option("--columns", default=None, metavar="A,B,...", help="Table columns to show (csv/json give all)."),
    click.option("--wide", is_flag=True, help="Show every column in the table."),
])


@click.command(cls=SectionedCommand, short_help="One row per stage: trials by state, best value.")
@campaign_option("every campaign")
@storage_option
@format_option
@columns_options
def studies(campaign: str | None, storage: str | None, fmt: str, columns: str | None, wide: bool) -> None:
    """One row per stage: trials by state (running, waiting: left to run), best value, epochs (--wide: space, ...).

    \b
    Examples:
      search studies --format csv
      search studies --campaign digits
    """
    from studies.queries import list_studies

    frame = list_studies(open_for_reading(storage), campaign)
    # an unfinished stage's trials running and left to run: n_trials counts them, and no other default column would
    default = [c for c in SHOWN_STUDY_COLUMNS if c not in ("running", "waiting") or frame[c].any()]
    print_table(frame, fmt, columns, default, wide)


@click.command(cls=SectionedCommand, short_help="One row per trial: state, value, params, diagnosis.")
@click.argument("study", required=False)
@campaign_option("every campaign")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"], case_sensitive=False),
              help="Only trials in this state (repeatable).")
@click.option("--sort", default=None, metavar="NAME",
              help="Column to sort by: value, val_acc, best_val_acc and train_acc best first, the others "
                   "ascending; -NAME descending, +NAME ascending, e.g. --sort -lr.")
@click.option("--limit", type=AsciiIntRange(min=1), default=None, help="Show at most this many rows (after --sort).")
@storage_option
@format_option
@columns_options
def trials(study: str | None, campaign: str | None, states: tuple[str, ...], sort: str | None, limit: int | None,
           storage: str | None, fmt: str, columns: str | None, wide: bool) -> None:
    """One row per trial: number, state, value, params, diagnosis, seconds (--wide: all; stop_reason too, and
    by default where no trial shown completed, e.g. with --state fail).

    \b
    Examples:
      search trials digits/coarse --sort value --limit 10
      search trials --campaign digits --state PRUNED --format csv
    """
    from studies.queries import trials_frame

    frame = trials_frame(open_for_reading(storage), study_name=study, campaign=campaign,
                         states=[s.upper() for s in states] or None, sort=sort, limit=limit)
    default = (["study"] if "study" in frame and (study is None or frame["study"].nunique() > 1) else []) + [
        c for c in frame.columns if c in SHOWN_TRIAL_COLUMNS[:3] or c.startswith("param_")] + SHOWN_TRIAL_COLUMNS[3:]
    if len(frame) and not (frame["state"] == "COMPLETE").any():  # failed, pruned (--state fail): how each ended
        default.insert(default.index("state") + 1, "stop_reason")
    print_table(frame, fmt, columns, default, wide)


def auto_choice(st: Any, campaign: str) -> tuple[Any, str | None] | None:
    """What ``search auto`` chose for ``campaign``, read from its final stage's stored retrains, as a
    ``search.campaign.FinalScore`` (its runs' mean and std there, the retrains' scores), and a run of it in that stage
    (STUDY:NUMBER, which ``keep_command`` retrains; None when no run of it completed); None when no search auto
    finished."""
    import numpy as np
    from optuna.trial import TrialState

    from search.campaign import RETRAINED_ATTR, STOPPED_ATTR, FinalScore, Retrained, config_means, mean_of_all
    from studies.queries import list_studies

    stages = list_studies(st, campaign)
    finals = stages.loc[stages["stage"] == "final", "study"].tolist()
    if not finals:
        return None
    study_id = st.get_study_id_from_name(finals[-1])
    attrs = st.get_study_user_attrs(study_id)
    stored = attrs.get(RETRAINED_ATTR)
    params = stored.get("asked", {}).get("params") if isinstance(stored, dict) else None
    trials = st.get_all_trials(study_id, deepcopy=False)
    values = next((v for p, v in config_means(trials) if p == params), None)
    if not isinstance(params, dict) or values is None:
        return None
    tests, vals = ([v for v in stored.get(key) or [] if isinstance(v, (int, float))] for key in ("test_acc", "val_acc"))
    reason = stored.get("stop_reason", stored.get("status"))  # "status" in a database written before
    baseline = stored.get("most_frequent_class")  # where one class dominates; absent where stored before it was kept
    retrained = (Retrained(len(tests), float(np.mean(vals)), float(np.mean(tests)), float(np.std(tests)), str(reason),
                           baseline if isinstance(baseline, dict) else None,
                           mean_of_all(stored.get("test_balanced_accuracy"), len(tests))) if tests and vals else None)
    epochs = attrs.get("epochs")
    stopped = attrs.get(STOPPED_ATTR)
    final = FinalScore(finals[-1], "final", params, epochs, float(np.mean(values)), float(np.std(values)), len(values),
                       retrained, stopped if isinstance(stopped, str) else "")
    runs = [t.number for t in trials if t.state == TrialState.COMPLETE and t.params == params]
    return final, (f"{finals[-1]}:{min(runs)}" if runs else None)


BEST_ADDED = ("value_se", "val_samples", "epochs", "ties", "highest_trial", "highest_value", "auto_trial",
              "val_balanced_accuracy", "initial_data_loss")  # a trial stored before one was recorded: an empty cell


def ties_line(row: dict[str, Any], margin: float) -> str:
    """What ``search best`` says of the trials within ``margin`` (2 standard errors) of the highest value."""
    where = f"{margin:.4f} (2 standard errors, {row['val_samples']} validation samples) of the highest value"
    if row["ties"] == 1:
        return f"no other trial within {where}"
    shown = f"{row['study']}:{row['number']}"
    highest = "" if row["highest_trial"] == shown else f", {row['highest_value']:.4f} ({row['highest_trial']})"
    return (f"{row['ties']} trials within {where}{highest}: any of them may be the best on new data; shown: the "
            f"highest of the longest runs among them ({row['epochs']} epoch{'' if row['epochs'] == 1 else 's'})")


@click.command(cls=SectionedCommand, short_help="The trial to keep of a campaign, with its standard error.")
@campaign_option(NEWEST_CAMPAIGN)
@storage_option
@format_option
def best(campaign: str | None, storage: str | None, fmt: str) -> None:
    """The trial to keep of a campaign (default: the latest): its value, standard error and parameters.

    Of the searching stages' trials (coarse, fine, grid), those within 2 standard errors (binomial, on the
    validation samples) of the highest value tie: shown is the highest of them at the longest run length, the
    length a retrain of it runs at, not a shorter run ahead by noise. value_se is its value's standard error, ties
    how many trials tie, highest_trial and highest_value the highest one. After search auto, the configuration auto
    chose comes first (the best mean over repeats in its final stage, with its std: the one it retrained and tested,
    and the one to keep), with a keep it line that retrains auto_trial, a run of it in that stage; the single trial
    second (json: auto_choice first; csv and json: a note on stderr). initial_loss is the trial's first loss with its
    L2 term (reg); initial_data_loss the same without it, the one search explain sets against ln C.

    \b
    Example:
      search best --campaign digits --format json
    """
    import pandas as pd

    from studies.queries import best_trial, keep_command, latest_campaign, list_studies

    st = open_for_reading(storage)
    name = campaign or latest_campaign(st)
    found = best_trial(st, name)  # the highest of the longest runs within 2 standard errors of the highest value
    margin = found.pop("margin")
    head = ("study", "stage", "number", "value", "value_se", "val_samples")
    chose = auto_choice(st, name)
    final, run = chose if chose else (None, None)
    row = {**({"auto_choice": {**asdict(final), "trial": run}} if final else {}),  # first: the one to keep
           **{k: found[k] for k in head}, **{k: v for k, v in found.items() if k not in head}, "auto_trial": run}
    if final and fmt != "table":  # the table says it first, above the single trial
        keep = f"; keep auto's choice with {keep_command(run, storage)}" if run else ""
        test = f"; test_acc {final.retrained.test_acc:.4f}" if final.retrained else ""
        note_on_output(f"note: search auto chose {params_text(final.params)} in {final.study} (the best mean over "
                       f"repeats, {final_runs_text(final)}{test}), not the single trial shown{keep}")
    flat = {k: v for k, v in row.items() if not isinstance(v, dict) and k != "initial_data_loss"}
    for group in ("params", "user_attrs"):
        flat.update({(f"param_{k}" if group == "params" else k): v for k, v in row.get(group, {}).items()})
    if "initial_loss" in flat:  # initial_data_loss beside it (csv: last, with the other columns added to best)
        keys = list(flat)
        keys.insert(keys.index("initial_loss") + 1, "initial_data_loss")
        flat = {k: flat.get(k, row["initial_data_loss"]) for k in keys}
    if fmt == "json":
        echo_json(row)
    elif fmt == "csv":  # a list (the diagnosis' labels) as search trials gives it: lr_too_low,dead_units
        # the columns added to search best's output come last: a script reading the others by position still can
        flat = {**{k: v for k, v in flat.items() if k not in BEST_ADDED}, **{k: flat.get(k) for k in BEST_ADDED}}
        print_frame(pd.DataFrame([{k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in flat.items()}]),
                    fmt)
    else:  # one trial: a name/value list fits any terminal; nested values only in json
        if final:  # what search auto retrained and tested first, with the command that keeps it; one trial second
            click.echo("search auto's choice, the best mean over repeats (the one to keep):")
            say(params_text(final.params), "  ")
            say_final_runs(final)
            if run:
                click.echo("keep it: " + keep_command(run, storage))
            click.echo()
            say("second, the best single trial (one run in a searching stage, not repeated):")
        shown = {k: v for k, v in flat.items()  # auto_trial only where search auto ran
                 if not isinstance(v, dict) and not (isinstance(v, list) and len(v) > 8)
                 and not (k == "auto_trial" and v is None)}
        print_frame(pd.DataFrame({"field": list(shown), "value": [column_cell(k, v) for k, v in shown.items()]}),
                    fmt, everything=True)
        hidden = [k for k in flat if k not in shown and k != "auto_trial"]
        if hidden:
            click.echo(f"({', '.join(hidden)}: --format json)")
        if row["value_se"] is not None:
            say(ties_line(row, margin))
        if not run:  # after search auto, the line above keeps a run of its choice, not this trial
            click.echo("keep it: " + keep_command(f"{row['study']}:{row['number']}", storage))
    for stage in list_studies(st, name).itertuples():  # workers still running: what is shown may yet be passed
        if stage.running + stage.waiting:
            note_on_output(f"note: {stage.study} is unfinished: {stage.running + stage.waiting:,} of its "
                           f"{stage.n_trials:,} trials have not finished ({stage.running:,} running, "
                           f"{stage.waiting:,} waiting); the best may change once they have")


@click.command(cls=SectionedCommand, short_help="Run one read-only SQL statement.")
@click.argument("sql")
@click.option("--timeout", type=FiniteFloatRange(0, 86400, min_open=True), default=30.0, show_default=True,
              metavar="SECONDS", help="Stop the query after this long (exit 1); Ctrl-C cancels it too.")
@click.option("--max-rows", type=AsciiIntRange(1, 10_000_000), default=10_000, show_default=True,
              help="Return at most this many rows (a line on stderr says when more were left out).")
@storage_option
@format_option
def query(sql: str, timeout: float, max_rows: int, storage: str | None, fmt: str) -> None:
    """Run one read-only SQL statement; the view trials_flat has one row per trial with flat columns.

    \b
    trials_flat: study, campaign, stage, trial_id, number, state, value,
      param_NAME for each searched NAME, stop_reason, diagnosis, worker,
      seconds, iterations, val_acc, best_val_acc, val_balanced_accuracy,
      best_epoch, train_acc, initial_loss, final_loss, model_parameters,
      datetime_start, datetime_complete; and Optuna's own tables (studies, trials,
      trial_params, trial_user_attributes, ...).

    \b
    Examples:
      search query "SELECT study, count(*) AS complete, max(value) AS best_value
                    FROM trials_flat WHERE state = 'COMPLETE' GROUP BY study"
      search query "SELECT param_lr, value FROM trials_flat
                    WHERE state = 'COMPLETE' ORDER BY value DESC LIMIT 5"
    """
    from studies.queries import run_readonly_sql
    from studies.store import resolve_storage_url

    frame = run_readonly_sql(resolve_storage_url(storage), sql, timeout=timeout, max_rows=max_rows)
    print_frame(frame, fmt, more="select fewer, or --format csv", short_params=False)
    if frame.attrs.get("truncated"):
        note_on_output(f"note: only the first {max_rows} rows are shown (--max-rows)")


def failure_story(storage: Any, name: str, trial: Any) -> str:
    """Why a FAIL trial of stage study ``name`` failed and which trial re-ran it, as ``search explain`` says it."""
    from studies import optuna_rdb
    from studies.budget import RETRY_OF, is_retried_on_failure

    reason = trial.user_attrs.get("stop_reason")
    # a worker records why it stops, and why it fails a lost worker's trial; one failed by other code may have none
    how = (f"it failed ({reason})" if reason
           else "it failed without recording why (its process killed or its machine lost)")
    if not is_retried_on_failure(trial):
        return f"{how}; a trial that raised is not re-run"
    # the re-runs' numbers alone: reading every trial of a stage of 3,000 took 2.3 s of CPU
    copies = [number for number, of in optuna_rdb.trial_system_attr_values(
        storage, storage.get_study_id_from_name(name), RETRY_OF) if of == trial.number]
    if not copies:
        return f"{how}; its re-run is enqueued by the next command or worker on the stage"
    return f"{how}; re-run as {name}:{copies[0]}"


def _one_trial_ref(ref: str, extra: list[str]) -> str:
    """The line refusing ``search explain REF EXTRA...``: it takes one trial, and the arguments given look like one
    written with a space (``digits/coarse 3``, a campaign's name with a space not quoted) where they can be read so."""
    from search.errors import SearchError
    from search.stages import parse_trial_ref

    number = extra[0].lstrip(":")
    candidates = [" ".join((ref, *extra))]
    if len(extra) == 1 and number.isascii() and number.isdigit():
        candidates.insert(0, f"{ref.rstrip(':')}:{number}")
    for candidate in candidates:
        try:
            parse_trial_ref(candidate)
        except SearchError:
            continue
        return (f"search explain takes one trial as STUDY:NUMBER, e.g. digits/coarse:12, not {len(extra) + 1} "
                f"arguments: give {shlex.quote(candidate)}")
    return (f"search explain takes one trial as STUDY:NUMBER, e.g. digits/coarse:12; got {len(extra) + 1} arguments: "
            f"{' '.join(map(shlex.quote, (ref, *extra)))}")


# extra arguments are taken, to be refused with the STUDY:NUMBER they may have meant (click said "unexpected extra
# argument (3)" to ``search explain digits/coarse 3``)
@click.command(cls=SectionedCommand, short_help="One trial's diagnosis in words, with its numbers.",
               context_settings={"allow_extra_args": True})
@click.argument("ref", metavar="STUDY:NUMBER")
@click.option("--plot", type=ImagePath(), default=None, help="Draw its loss and accuracy curves (.png, .pdf or .svg).")
@storage_option
@json_option
def explain(ref: str, plot: str | None, storage: str | None, as_json: bool) -> None:
    """One trial's diagnosis in words, with the numbers behind it (the lecture's babysitting, after the fact).

    \b
    Example:
      search explain digits/coarse:12 --plot trial12.png
    """
    from optuna.trial import TrialState

    from engine.diagnostics import LABELS, Diagnosis, describe_diagnosis
    from search.errors import SearchError
    from search.objective import scheduler_stop
    from search.stages import load_trial, parse_trial_ref
    from studies.queries import keep_command
    from studies.records import diagnosis_labels, trial_record

    extra = click.get_current_context().args
    if extra:
        raise SearchError(_one_trial_ref(ref, extra))
    name, number = parse_trial_ref(ref)
    check_not_input("--plot", plot, {"--storage": storage_file(storage)})
    reading = open_for_reading(storage)
    trial, stage = load_trial(reading, name, number, reading=True)
    attrs = trial.user_attrs
    params = params_text(trial.params)
    if trial.state == TrialState.FAIL:  # why it failed is the answer, and its curves as far as they went
        story = failure_story(reading, name, trial)
        if plot and not trial.intermediate_values:
            raise SearchError(f"trial {ref} has no curves to plot: {story}")
        if plot:
            _plot_curves(trial, stage, f"{ref}: failed", plot)
        if as_json:
            echo_json(_explained(name, trial, None, None, [story]))
            return
        say(f"{ref}: failed, no diagnosis; {params}")
        say(f"- {story}", "  ")
        if plot:
            click.echo(f"wrote {plot}")
        return
    if not isinstance(attrs.get("diagnosis"), list):
        added = trial.state == TrialState.COMPLETE and trial_record(trial, "config") is None
        why = (f"it was not trained by this service (added through Optuna's API): "
               f"{keep_command(ref, storage).removesuffix(' --save model.npz')} trains it" if added
               else "it never finished training")
        raise SearchError(f"trial {ref} has no diagnosis (state {trial.state.name}; {why})")
    numbers = trial_record(trial, "diagnosis_numbers", {})
    unknown = [label for label in diagnosis_labels(trial) if label not in LABELS]
    if unknown or not isinstance(numbers, dict):  # a trial other code added to the study
        raise SearchError(f"trial {ref} has a diagnosis this service did not write ("
                          + (f"labels it does not know: {', '.join(map(repr, unknown))}" if unknown
                             else f"its diagnosis_numbers are a {type(numbers).__name__}") + ")")
    diagnosis = Diagnosis(diagnosis_labels(trial), numbers)
    if plot:
        _plot_curves(trial, stage, f"{ref}: {', '.join(diagnosis.labels)}", plot)
    if as_json:
        echo_json(_explained(name, trial, list(diagnosis.labels), diagnosis.numbers,
                             describe_diagnosis(diagnosis, attrs.get("stop_reason"))))
        return
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    best = attrs.get("best_val_acc")
    if isinstance(best, (int, float)):  # the best epoch's, beside the value (the last epoch's)
        epoch = attrs.get("best_epoch")  # none in a database written before trials kept it: not "(epoch None)"
        value += f", best_val_acc {best:.4f}" + (f" (epoch {epoch})" if isinstance(epoch, int) else "")
    reason = attrs.get("stop_reason")
    state = trial.state.name.lower() + ("" if reason in (None, "completed") else f" ({reason})")
    stop = scheduler_stop(trial)
    if stop is not None:  # not "pruned (pruned)": where, since its value is that epoch's
        state = f"pruned by the scheduler at epoch {stop[0]} of {stop[1]}"
    say(f"{ref}: {state}, value {value}; {params}")
    for sentence in describe_diagnosis(diagnosis, attrs.get("stop_reason")):
        say(f"- {sentence}", "  ")
    if plot:
        click.echo(f"wrote {plot}")


def _explained(name: str, trial: Any, labels: list[str] | None, numbers: dict[str, Any] | None,
               sentences: list[str]) -> dict[str, Any]:
    """``search explain --json``'s answer, of a failed trial (no ``labels`` nor ``numbers``) as of a finished one: the
    trial named as search trials and best name it (study, number) besides STUDY:NUMBER."""
    attrs = trial.user_attrs
    return {"trial": f"{name}:{trial.number}", "study": name, "number": trial.number, "state": trial.state.name,
            "stop_reason": attrs.get("stop_reason"), "value": trial.value,
            "best_val_acc": attrs.get("best_val_acc"), "best_epoch": attrs.get("best_epoch"),
            "seconds": attrs.get("seconds"), "params": trial.params, "diagnosis": labels,
            "diagnosis_numbers": numbers, "sentences": sentences,
            "val_acc_history": _val_acc_history(trial)}


def _plot_curves(trial: Any, stage: Any, title: str, plot: str) -> None:
    """Draw the trial's loss and accuracy curves, as far as it ran, under ``title`` into the file ``plot``."""
    from studies.plots import new_axes, plot_training
    from studies.records import curve_points, trial_record

    val_acc = _val_acc_history(trial)
    losses = curve_points(trial_record(trial, "loss_curve"))
    train_acc = curve_points(trial_record(trial, "train_acc_curve"))
    if len(train_acc) != len(val_acc):  # none stored, or not one the run wrote (other code's): no train line
        train_acc = [float("nan")] * len(val_acc)
    # an exploded run's stopping line, as the report draws it: the curve crossed it on average
    threshold = stage.explode_factor if trial.user_attrs.get("stop_reason") == "exploded" else None
    save_plot(plot_training(new_axes(1, 2)[0], losses, train_acc, val_acc, trial.user_attrs.get("iterations"), title,
                            threshold), plot)


def _val_acc_history(trial: Any) -> list[float]:
    """The trial's validation accuracy epoch by epoch (its intermediate values in step order)."""
    return [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]


COMMANDS = [studies, trials, best, query, explain]
