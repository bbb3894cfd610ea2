"""Search stages: ``search coarse``, ``fine``, ``grid``, ``auto`` and ``worker``."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Collection
from dataclasses import asdict, replace
from typing import Any

import click

from search.cli.options import (
    DRAWN_SAMPLERS, MAX_TRIALS, NEW_CAMPAIGN, NEWEST_CAMPAIGN, RUN_PARAMS, AsciiIntRange, ModelPath, SectionedCommand,
    check_not_input, build_space, choice, campaign_name, campaign_option, execution, fine_options,
    heartbeat_option, jobs_option, json_option, options_given, run_config_options, space_options, stage_options,
    stage_run_options, storage_file, storage_option, timeout_option, timeout_text,
)
from search.cli.output import echo, echo_json, say, say_final_runs
from search.text import wrapped
from search.config import RunConfig, batch_warning, data_warnings
from search.objective import SCHEDULER_STOP
from search.schedulers import SCHEDULERS
from search.space import DEFAULT_SPACE, spec_shown, value_text


# a stage summary's row keys printed before the parameters: title, width, format
LEAD_COLUMNS = {"runs": ("runs", 4, "d"), "number": ("trial", 5, "d"), "value": ("value", 8, ".4f"),
                "std": ("std", 6, ".4f")}


def failed_text(failed: int, by_error: int) -> str:
    """Why ``failed`` trials failed and what became of them, ``by_error`` of them by an error of their own."""
    rerun = failed - by_error
    if not by_error:
        return "interrupted or killed, so re-run"
    errors = f"by {'an error' if by_error == 1 else 'errors'}, not re-run"
    return f"{rerun} interrupted or killed, so re-run; {by_error} {errors}" if rerun else errors


def print_summary(summary: Any) -> None:
    from studies.records import seconds_text

    c = summary.counts
    click.echo()
    failed = f"; {c['fail']} failed ({failed_text(c['fail'], summary.failed_by_error)})" if c["fail"] else ""
    epochs = "1 epoch" if summary.epochs == 1 else f"{summary.epochs} epochs"
    by = summary.pruned_by
    # where the scheduler stopped some: which were its, and which exploded (one word "pruned" for both otherwise)
    pruned = f"{c['pruned']} pruned" + (" (" + ", ".join(
        f"{n} {'by the scheduler' if reason == SCHEDULER_STOP else reason}"
        for reason, n in sorted(by.items(), key=lambda item: item[0] != SCHEDULER_STOP)) + ")"
        if by.get(SCHEDULER_STOP) else "")
    say(f"{summary.study}: {c['complete']} complete, {pruned} of {summary.n_trials}{failed}; "
        f"{epochs} a trial, {seconds_text(summary.training_seconds)} s of training")
    say("space: " + " ".join(f"{k}={spec_shown(v)}" for k, v in summary.space.items()), "  ")
    for note in summary.range_notes:
        say(f"range: {note}", "  ")
    if summary.top:  # the final stage lists configurations by their mean (runs, std), the others their best trials
        lead = [k for k in summary.top[0] if k in LEAD_COLUMNS]
        # every parameter a row has, the space's first (a conditional one is "-" where it had no effect), then any
        # that a trial added by another program has
        names = [k for k in summary.space if any(k in row["params"] for row in summary.top)]
        names += dict.fromkeys(k for row in summary.top for k in row["params"] if k not in names)
        # the parameter columns (a space and 10 characters each) that fit the terminal, as prose does
        lead_width = 2 + sum(LEAD_COLUMNS[k][1] + 1 for k in lead)
        fit = max(1, (shutil.get_terminal_size((80, 24)).columns - lead_width) // 11)
        names, left = names[:fit], names[fit:]
        click.echo("  " + " ".join(f"{LEAD_COLUMNS[k][0]:>{LEAD_COLUMNS[k][1]}}" for k in lead) + " " +
                   " ".join(f"{n[:10]:>10}" for n in names))
        for row in summary.top:
            click.echo("  " + " ".join(f"{row[k]:{LEAD_COLUMNS[k][1]}{LEAD_COLUMNS[k][2]}}" for k in lead) + " " +
                       " ".join(f"{value_text(row['params'][n]) if n in row['params'] else '-':>10.10}"
                                for n in names))
        if left:
            say(f"({len(left)} more parameter{'s' if len(left) > 1 else ''}: {', '.join(left)}; search trials "
                f"{summary.study} --wide)", "  ")
    for err in summary.errors:
        echo(f"  error: {err}", err=True)


# the options that shape a coarse stage's search; given none of them, search auto takes an existing coarse stage's
SEARCH_SETTINGS = ("space_file", "lr_range", "reg_range", "space_items", "trials", "epochs", "sampler", "scheduler",
                   "explode_factor")


def stored_stage_attrs(url: str, name: str) -> dict[str, Any] | None:
    """The attributes of stage ``name`` in the database at ``url``, read only; None where there is no such stage yet
    (no database file is made) or it is being created or not this service's (the usual checks then say which)."""
    import optuna

    from studies.errors import StorageError
    from studies.store import open_storage, sqlite_path

    path = sqlite_path(url)
    try:
        if path is not None and not path.exists():  # a new database: nothing to continue, and nothing made here
            return None
        storage = open_storage(url, readonly=True)
    except (OSError, StorageError):  # a name too long, an empty PostgreSQL database, a server down: the
        return None  # command's own opening of the storage says which, in one line
    try:
        attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    except KeyError:  # a new campaign
        return None
    finally:
        storage.engine.dispose()
    return attrs if attrs.get("ready") else None


def stored_preprocess(run: RunConfig, attrs: dict[str, Any] | None) -> RunConfig:
    """``run`` with the preprocessing of the campaign's coarse stage (its ``attrs``, ``stored_stage_attrs``), where it
    exists and the command names none (--preprocess and --pca-components at their defaults): the same command
    continues the stage as it was made, also where the data's default differed then (a table's was mean_image before
    it was standardize)."""
    from search.stages import Stage

    if attrs is None or options_given("preprocess", "pca_components"):
        return run
    return replace(run, preprocess=Stage.from_attrs(attrs).run.preprocess)


def stored_run(run: RunConfig, attrs: dict[str, Any] | None) -> RunConfig:
    """``run`` with the run configuration of the campaign's coarse stage (its ``attrs``, ``stored_stage_attrs``) but
    ``run``'s epochs (a search setting: ``stored_search_settings`` takes the stored one), where it exists and the
    command gives no run option: search auto --campaign NAME continues a campaign begun with search coarse --data
    FILE as search fine does, without --data FILE again; else ``stored_preprocess``."""
    from search.stages import Stage

    if attrs is None or options_given(*RUN_PARAMS):
        return stored_preprocess(run, attrs)
    return Stage.from_attrs(attrs).run.with_params({"train.epochs": run.train.epochs})


def stored_search_settings(stage: Any, attrs: dict[str, Any] | None) -> tuple[Any, str | None]:
    """``stage`` with the space, budget, epochs, sampler, scheduler and explosion factor of the campaign's coarse
    stage (its ``attrs``, ``stored_stage_attrs``) where it exists and the command gives none of ``SEARCH_SETTINGS``
    (search auto --campaign NAME continues a campaign begun with search coarse, as search fine does), and the line
    that says so (that it is reused where the command's own settings are the stored ones; none where another run
    option differs, and the stage is refused as continuing nothing); else ``stage`` as it is."""
    from search.stages import Stage, describe_stage, same_definition

    if attrs is None or options_given(*SEARCH_SETTINGS):
        return stage, None
    stored = Stage.from_attrs(attrs)
    kept = replace(stage, space=stored.space, n_trials=stored.n_trials, sampler=stored.sampler,
                   scheduler=stored.scheduler, explode_factor=stored.explode_factor,
                   run=stage.run.with_params({"train.epochs": stored.run.train.epochs}))
    if not same_definition(kept, stored):  # another run option (--seed, --train-size, ...): refused, not continued
        return kept, None
    if same_definition(stage, stored):  # the command's own settings: the same command run again
        return kept, f"reusing {stage.name}, which exists with the same settings ({describe_stage(stored)})"
    return kept, f"continuing from {stage.name} as it was created ({describe_stage(stored)})"


def check_largest_network(space: dict[str, Any], run: RunConfig, dataset: Any) -> None:
    """DataError when the stage's largest network (``largest_network``) would not fit in memory: before the database
    is touched, rather than as the failure of every trial (--hidden 100000,100000)."""
    from engine.model import check_network_memory
    from search.space import largest_network

    check_network_memory(largest_network(space, run).arch, dataset.input_dim, dataset.num_classes)


def stage_data(run: RunConfig, make_space: Callable[[int], dict[str, Any]]
               ) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
    """The run's data, preprocessed (bad data or a batch larger than it fails here, before the database is touched),
    the stage's space (``make_space`` of the training samples), and `search data`'s warnings that every trial of the
    stage shares, shown before the trials start (``data_warnings``; ``updates_lines`` are the caller's, of the stage's
    epochs). The raw copy is not kept beside the other."""
    from engine.data import load_dataset

    raw = load_dataset(run.data)
    space = make_space(len(raw.y_train))
    return run.load(raw), space, data_warnings(run, raw, space)


def updates_lines(run: RunConfig, space: Collection[str], train_samples: int, option: str = "--epochs"
                  ) -> tuple[str, ...]:
    """``updates_warning``'s line for the trials of a stage of ``run`` over ``space`` (none where it searches
    batch_size), to show before they start: coarse, fine, grid and auto stages alike."""
    short = None if "batch_size" in space else updates_warning(train_samples, run.train.batch_size, run.train.epochs,
                                                               option)
    return (wrapped(f"warning: {short}"),) if short else ()


# Fewer updates than this in a stage's trial warn. On wine (124 training samples, --batch-size 50..5, 3 epochs,
# 50 coarse trials over lr 1e-6:1) 6 updates a trial left 32 trials lr_too_low, 12 left 27, 21 and 36 left 23, 72
# left 20: under about 20 a trial stops before a slow learning rate has moved its loss. Bundled digits at the
# defaults makes 75 (25 an epoch), and 25 at --epochs 1.
MIN_TRIAL_UPDATES = 20


def updates_warning(train_samples: int, batch_size: int, epochs: int, option: str = "--epochs") -> str | None:
    """The warning for a stage whose trials make fewer than ``MIN_TRIAL_UPDATES`` updates (two an epoch or more;
    ``batch_warning`` speaks of fewer), which leave many slow learning rates diagnosed lr_too_low; ``option`` sets
    the epochs."""
    per_epoch = train_samples // batch_size
    if per_epoch < 2 or per_epoch * epochs >= MIN_TRIAL_UPDATES:
        return None
    return (f"{train_samples} training samples make {per_epoch} updates an epoch at --batch-size {batch_size}, "
            f"{per_epoch * epochs} in a {epochs}-epoch trial (under {MIN_TRIAL_UPDATES}, too few for a slow learning "
            f"rate to move the loss): give a smaller --batch-size or more {option}")


def finish(summaries: list[Any], as_json: bool, extra: dict[str, Any] | None = None,
           complete_hint: str = " (use --campaign NAME to start a new campaign)", joined: bool = False) -> int:
    """Print the stages' summaries (or JSON); ``complete_hint`` follows "already complete; nothing to run" (a worker,
    which starts no campaign, gives none); ``joined``: each stage had trials left when it was joined (search worker's
    own choice of stage)."""
    if as_json:
        echo_json({"stages": [s.as_dict() for s in summaries], **(extra or {})})
    else:
        before = [s for s in summaries if not s.created and not s.ran]
        if before:
            click.echo()
            were = "was" if len(before) == 1 else "were"
            if joined:  # not complete when joined: the trials left were run, or being run, by other processes
                say(f"this worker ran no trial of {', '.join(s.study for s in before)}: other processes finished "
                    f"{'it' if len(before) == 1 else 'them'}")
            elif len(before) < len(summaries):  # search auto or fine went on with the stages after them
                say(f"{', '.join(f'{s.study} ({s.n_trials} trials)' for s in before)} {were} already complete; "
                    f"continued with the stages after {'it' if len(before) == 1 else 'them'}")
            else:
                say(f"{', '.join(s.study for s in before)} {were} already complete; nothing to run{complete_hint}")
        for s in summaries:
            print_summary(s)
    for line in filter(None, map(timeout_text, summaries)):
        say(line, err=as_json)
    return 1 if any(s.errors for s in summaries) else 0


@click.command(cls=SectionedCommand, short_help="Random search over the space with short runs.")
@run_config_options
@space_options
@stage_options
@stage_run_options(NEW_CAMPAIGN)
@timeout_option
@json_option
def coarse(base: RunConfig, space_spec: list, trials: int, epochs: int, sampler: str, scheduler: str,
           explode_factor: float, campaign: str | None, storage: str | None, jobs: int, heartbeat: int,
           as_json: bool) -> int:
    """Coarse stage: random search over the space (default lr and reg on a log scale), short runs.

    A trial's value, which the search maximises, is its last epoch's validation accuracy (where one class
    dominates, search data says what always predicting it scores). Running the same command again continues an
    interrupted stage to exactly --trials.

    \b
    Examples:
      search coarse --lr 1e-6:1e0 --reg 1e-6:1e1 --trials 50 --epochs 3 --jobs 2
      search coarse --space lr=1e-4:1e0 --space hidden=8:256:int \\
        --space activation=relu,tanh,elu
      search coarse --space depth=1:4 --space optimizer=adam,momentum \\
        --space momentum=0.5:0.99   # drawn only where optimizer is momentum
      search coarse --scheduler asha --trials 100 --epochs 9
    """
    from search.campaign import coarse_stage, execute_stage
    from search.stages import study_name

    ex = execution(storage, jobs, heartbeat, as_json)
    run = base.with_params({"train.epochs": epochs})
    run = stored_preprocess(run, stored_stage_attrs(ex.url, study_name(campaign_name(campaign, run), "coarse")))
    fixed = click.get_current_context().meta["fixed"]
    dataset, space, warnings = stage_data(run, lambda _: build_space(space_spec, DEFAULT_SPACE, run, fixed))
    stage = coarse_stage(campaign_name(campaign, run), run, space, trials, run.train.seed, sampler, explode_factor,
                         scheduler)
    check_largest_network(space, run, dataset)
    ex = replace(ex, warnings=warnings + updates_lines(run, space, len(dataset.y_train)))
    return finish([execute_stage(ex, stage, dataset)], as_json)


@click.command(cls=SectionedCommand, short_help="Next stage, refined around the best trials.")
@fine_options
@click.option("--epochs", type=AsciiIntRange(min=1), default=None,
              help="Epochs per trial (default: twice the previous stage's).")
@click.option("--trials", type=AsciiIntRange(min=1, max=MAX_TRIALS), default=None,
              help="Trials (default: the previous stage's).")
@click.option("--sampler", type=choice(DRAWN_SAMPLERS), default=None,
              help="random, tpe or qmc inside the refined box (default: the previous stage's; search auto's fine "
                   "stages use tpe); with tpe, the campaign's --seed gives the same trials only with --jobs 1.")
@click.option("--scheduler", type=choice(SCHEDULERS), default=None,
              help="none or asha (default: the previous stage's); see search coarse --help.")
@stage_run_options(NEWEST_CAMPAIGN)
@json_option
def fine(top: int, edge: float, promote: int, epochs: int | None, trials: int | None, sampler: str | None,
         scheduler: str | None, campaign: str | None, storage: str | None, jobs: int, heartbeat: int,
         as_json: bool) -> int:
    """Next fine stage: ranges narrowed around the best trials, widened past a bound the best sits near,
    categories that never reached the top dropped.

    \b
    Examples:
      search fine --top 5 --edge 0.1 --epochs 10
      search fine --scheduler asha --trials 100
      search fine --sampler tpe   # TPE inside the refined box, as search auto
    """
    from search.campaign import (
        execute_stage, next_fine_stage, promoted_fine_stage, stored_promotion, with_fine_choices,
    )

    ex = execution(storage, jobs, heartbeat, as_json)
    st, name = ex.existing_storage(campaign)
    stage, study = next_fine_stage(st, name, top, edge, epochs, trials)
    stored_check = stored_promotion(st, study) if stage is not None and promote else None
    if stored_check is not None and stored_check.run.train.epochs != stage.run.train.epochs:
        # a run stopped in promote-k: its epochs, not twice the parent's (a clash with the stored stage)
        if epochs is not None and not as_json:
            say(f"continuing {stored_check.name} as it was created: --epochs {epochs} not applied; run the command "
                f"again once the next fine stage is done for a new stage with it", err=True)
        epochs = stored_check.run.train.epochs
        stage, study = next_fine_stage(st, name, top, edge, epochs, trials)
    if stage is None:  # its newest fine stage is unfinished: continued as it was created
        from search.stages import Stage

        stored = Stage.from_attrs(study.user_attrs)
        unused = [f"--{option} {given}" for option, given, has in (
            ("trials", trials, stored.n_trials), ("epochs", epochs, stored.run.train.epochs),
            ("sampler", sampler, stored.sampler), ("scheduler", scheduler, stored.scheduler))
            if given is not None and given != has]
        if unused and not as_json:
            say(f"continuing {study.study_name}, unfinished, as it was created: {', '.join(unused)} not applied; "
                f"run the command again once it is done for a new stage with them", err=True)
        dataset = stored.run.load()  # once, for the warning and the trials; execute_stage checks it is the same
        ex = replace(ex, warnings=updates_lines(stored.run, stored.space, len(dataset.y_train)))  # as a new stage's
        return finish([execute_stage(ex, stored, dataset)], as_json)
    dataset = stage.run.load()  # once, for the promoted runs and the stage
    # said before the promoted runs, of the stage's epochs (--epochs 3 on wine: 6 updates a trial, without a word)
    ex = replace(ex, warnings=updates_lines(stage.run, stage.space, len(dataset.y_train)))
    promoted: list = []
    if promote:
        stage, promoted = promoted_fine_stage(ex, study, top, edge, epochs, trials, promote, dataset)
        ex = replace(ex, warnings=())
    return finish([*promoted, execute_stage(ex, with_fine_choices(stage, sampler, scheduler), dataset)], as_json)


@click.command(cls=SectionedCommand, short_help="Grid over the coarse stage's space at its budget.")
@stage_run_options(NEWEST_CAMPAIGN)
@timeout_option
@json_option
def grid(campaign: str | None, storage: str | None, jobs: int, heartbeat: int, as_json: bool) -> int:
    """Grid stage over the coarse stage's space, epochs and budget: every category x k values per range,
    k = floor((trials / categories) ^ (1 / ranges)); its real size is printed and stored.

    \b
    Example:
      search grid --campaign digits
    """
    from search.campaign import execute_stage, grid_stage_for

    ex = execution(storage, jobs, heartbeat, as_json)
    st, name = ex.existing_storage(campaign)
    stage = grid_stage_for(st, name)
    dataset = stage.run.load()
    ex = replace(ex, warnings=updates_lines(stage.run, stage.space, len(dataset.y_train)))  # the coarse stage's
    # its size (the note under "range:") is said in the summary, and [n/points] as the trials run
    return finish([execute_stage(ex, stage, dataset)], as_json)


@click.command(cls=SectionedCommand, short_help="The whole recipe: coarse, fine stages, final, test score.")
@run_config_options
@space_options
@stage_options
@fine_options
@click.option("--fine-epochs", type=AsciiIntRange(min=1), default=None,
              help="Epochs of fine trials (default: twice the previous stage's).")
@click.option("--fine-sampler", type=choice(DRAWN_SAMPLERS), default="tpe", show_default=True,
              help="Sampler of the fine stages inside their refined box; with tpe, the same --seed gives the same "
                   "trials only with --jobs 1.")
@click.option("--fine-scheduler", type=choice(SCHEDULERS), default=None,
              help="Scheduler of the fine stages (default: --scheduler's).")
@click.option("--max-fine", type=AsciiIntRange(min=0, max=100), default=3, show_default=True,
              help="Most fine stages to run (fewer when a stage no longer improves beyond noise).")
@click.option("--repeats", type=AsciiIntRange(1, 20), default=3, show_default=True,
              help="Runs of each of the --top configurations in the final stage; the best mean is chosen.")
@click.option("--retrain-seeds", type=AsciiIntRange(1, 20), default=3, show_default=True,
              help="Retrains of the chosen configuration, scored on test (mean +- std).")
@click.option("--save", "save_to", type=ModelPath(), default=None, metavar="FILE.npz",
              help="Save the chosen configuration's first retrain as a model for `search predict`.")
@stage_run_options(NEW_CAMPAIGN)
@json_option
def auto(base: RunConfig, space_spec: list, trials: int, epochs: int, sampler: str, scheduler: str,
         explode_factor: float, top: int, edge: float, promote: int, fine_epochs: int | None, fine_sampler: str | None,
         fine_scheduler: str | None, max_fine: int, repeats: int, retrain_seeds: int, save_to: str | None,
         campaign: str | None, storage: str | None, jobs: int, heartbeat: int, as_json: bool) -> int:
    """The whole recipe: coarse, fine stages while they pay, the top configurations re-run, the best tested.

    Fine stages stop at --max-fine, when the space settles, or when a stage moves the mean of its
    top 5 by less than 2 standard errors. Stage "final" runs the last stage's --top configurations
    --repeats times each; the best mean is retrained --retrain-seeds times and scored on test.
    The default space is lr, reg and the hidden width (16 up to the power of two nearest a quarter of the
    training set, at least 64 and at most 1024: 256 for digits). A trial's value, which the search maximises, is
    its last epoch's validation accuracy (where one class dominates, search data says what always predicting it
    scores).

    \b
    Examples:
      search auto --data digits --trials 30 --jobs 2
      search auto --space lr=1e-4:1e-1 --space hidden=32:512:int \\
        --space dropout=0.5:1:linear
      search auto --fine-sampler tpe --fine-scheduler asha
      search auto --data wine.csv --save wine.npz   # then: search predict
    """
    from search.campaign import auto_space, coarse_stage, run_auto
    from search.cli.run import fit_and_save
    from search.stages import study_name
    from studies.records import params_text, seconds_text

    ex = execution(storage, jobs, heartbeat, as_json)
    run = base.with_params({"train.epochs": epochs})
    name = campaign_name(campaign, run)
    stored = stored_stage_attrs(ex.url, study_name(name, "coarse"))  # read once, for both
    run = stored_run(run, stored)
    check_not_input("--save", save_to, {"--data": run.data.name, "--storage": storage_file(storage)})
    fixed = click.get_current_context().meta["fixed"]
    dataset, space, warnings = stage_data(run, lambda n: build_space(space_spec, auto_space(n), run, fixed))
    stage = coarse_stage(name, run, space, trials, run.train.seed, sampler, explode_factor, scheduler)
    stage, continued = stored_search_settings(stage, stored)
    batch = batch_warning(len(dataset.y_train), stage.run.train.batch_size)
    if batch is not None and "batch_size" in stage.space:  # a stored space searches it: no epoch at --batch-size
        warnings = tuple(w for w in warnings if w != wrapped(f"warning: {batch}"))
    # of the coarse stage's epochs and space: a stored stage's where it is continued, not this command's --epochs
    warnings += updates_lines(stage.run, stage.space, len(dataset.y_train))
    if fine_epochs is not None and fine_epochs < stage.run.train.epochs:  # fine trials shorter: fewer updates
        warnings += updates_lines(stage.run.with_params({"train.epochs": fine_epochs}), stage.space,
                                  len(dataset.y_train), "--fine-epochs")
    ex = replace(ex, warnings=warnings)
    check_largest_network(stage.space, stage.run, dataset)  # the space it will search, a stored one's too
    if continued and not as_json:
        say(continued, err=True)
    summaries, final = run_auto(ex, stage, max_fine, top, edge, fine_epochs, dataset, repeats, retrain_seeds,
                                promote, fine_sampler, fine_scheduler)
    saved = None
    if save_to is not None:  # retrain 1 again (seeded alike, the same network), kept this time
        from search.campaign import retrain_run
        from search.cli.options import open_for_reading

        saved = fit_and_save(save_to, retrain_run(open_for_reading(ex.url), stage.campaign, stage.seed))
    extra: dict[str, Any] = {"final": asdict(final)}
    if saved is not None:
        extra["saved"] = save_to if saved[0] == "completed" else None
    code = finish(summaries, as_json, extra)
    if not as_json:
        click.echo()
        named = {s.study: s.study for s in summaries}
        if max(map(len, named)) + 1 + 43 + len(" (best mean)") > shutil.get_terminal_size((80, 24)).columns:
            echo(f"{stage.campaign}:")  # a campaign named after a long file name: said once, above its stages
            named = {s.study: s.stage for s in summaries}
        width = max(22, *(len(name) + 1 for name in named.values()))
        click.echo(f"{'stage':<{width}} {'n_trials':>8} {'pruned':>6} {'epochs':>6} {'seconds':>8} {'best_value':>10}")
        for s in summaries:
            best = "-" if s.best_value is None else f"{s.best_value:.4f}"
            # the final stage's is the best mean over repeats, not its best trial as search studies gives
            mean = " (best mean)" if s.stage == "final" and s.best_value is not None else ""
            echo(f"{named[s.study]:<{width}} {s.n_trials:8d} {s.counts['pruned']:6d} {s.epochs:6d} "
                 f"{seconds_text(s.training_seconds):>8} {best:>10}{mean}")
        click.echo()
        say(f"stopped adding fine stages: {final.stopped}")
        say(f"chosen: {params_text(final.params)}")
        say_final_runs(final)
        if saved is not None:
            status, val_acc, test_acc = saved
            say(f"wrote {save_to}: retrain 1, val_acc {val_acc:.4f}, test_acc {test_acc:.4f}" if status == "completed"
                else f"not saved to {save_to}: the retrain {status}", "  ")
    return code


FOLLOW_POLL_SECONDS = 2.0  # how often search worker --follow looks for the campaign's next stage


@click.command(cls=SectionedCommand, short_help="Join a running stage and run its trials.")
@campaign_option(NEWEST_CAMPAIGN)
@click.option("--stage", default=None, help="Stage to join (default: the campaign's newest unfinished stage).")
@click.option("--follow", is_flag=True,
              help="After its stage, wait for the campaign's next one (as search auto creates them) and join it "
                   "too, until a final stage is complete; without --campaign, the stages of each campaign created "
                   "later too, once those before are done; a --campaign not created yet (without --campaign: a first "
                   "campaign, or a new one where the newest is done) is waited for too; Ctrl-C stops it.")
@click.option("--data", type=click.Path(exists=True, resolve_path=True), default=None, metavar="PATH",
              help="This machine's copy of the stage's data file or folder, where it is not at the path the stage "
                   "was created with; refused unless it is the same data (the sha256 the stage records).")
@storage_option
@jobs_option
@heartbeat_option
@json_option
def worker(campaign: str | None, stage: str | None, follow: bool, data: str | None, storage: str | None,
           jobs: int | None, heartbeat: int, as_json: bool) -> int:
    """Join a running stage from this machine (same --storage, e.g. PostgreSQL) and run its trials.

    It serves one stage and exits when that stage is done; with --follow it serves every next stage of a
    campaign that search auto is running, until auto's final stage is done; without --campaign it follows the
    database: once a campaign's stages are done it joins those of one created later, until the newest one's final
    stage is done. --jobs runs its trials in that many
    processes of this machine, as the stage commands do.

    \b
    Examples:
      search worker --campaign digits --jobs 4 \\
        --storage postgresql://user@host/search
      search worker --campaign digits --follow \\
        --storage postgresql://user@host/search
    """
    import time

    from search.campaign import run_existing
    from search.errors import SearchError
    from search.stages import campaign_stages, load_stage_study, retry_storage, stage_unfinished, study_name
    from studies.queries import COMPARE_STAGE, campaigns

    if stage is not None and follow:  # one stage named, or every next one followed: --follow was dropped silently
        raise SearchError("--stage and --follow: give one, --stage to join that stage alone or --follow to join each "
                          "next stage")
    ex = execution(storage, jobs, heartbeat, as_json)
    if follow:
        _wait_for_campaign(ex.url, campaign, as_json)
    st, name = ex.existing_storage(campaign)
    if stage is not None:
        if study_name(name, stage) not in {s.study_name for s in st.get_all_studies()}:  # (one being created waits)
            stages = ", ".join(str(s.user_attrs.get("stage")) for s in campaign_stages(st, name))
            raise SearchError(f"campaign {name} has no stage {stage!r}; its stages: {stages}")  # not every campaign's
        return finish([run_existing(ex, load_stage_study(st, study_name(name, stage)), data=data)], as_json,
                      complete_hint="")
    summaries: list[Any] = []
    served: set[str] = set()  # a stage is joined once: its trials others still run are theirs to finish
    # the campaigns followed, in creation order: --campaign's; without it the latest, and with --follow each one
    # created since (search compare's left out): the database is followed, not only the campaign newest at the start
    followed, seen, joined = [name], set(campaigns(st)), name
    waiting = False

    def look() -> tuple[tuple[str, str] | None, bool]:
        """(campaign, stage) of the next stage to join (None: none yet), and whether the newest campaign followed has
        its final stage; campaigns created since are noted (each once it is read whole: a look cut by the database
        failing is made again)."""
        if follow and campaign is None:
            for new in [c for c in campaigns(st) if c not in seen]:
                if not any(COMPARE_STAGE.fullmatch(str(s.user_attrs.get("stage"))) for s in campaign_stages(st, new)):
                    followed.append(new)
                seen.add(new)
        for followed_name in followed:  # a campaign's open stages (its newest first) before the next campaign's
            unfinished = [s.study_name for s in campaign_stages(st, followed_name) if s.study_name not in served
                          and stage_unfinished(st, st.get_study_id_from_name(s.study_name))]
            if unfinished:
                return (followed_name, unfinished[-1]), False
        return None, any(s.user_attrs.get("stage") == "final" for s in campaign_stages(st, followed[-1]))

    while True:
        # a server restarted while this worker waits between stages is waited for, as it is during a stage's trials
        todo, final = retry_storage(look, "looking for the next stage") if follow else look()
        if todo is not None:
            if todo[0] != joined and not as_json:
                since = ", created after this worker started" if todo[0] != followed[0] else ""
                say(f"joining campaign {todo[0]}{since}", err=True)
            joined = todo[0]
            served.add(todo[1])
            summaries.append(run_existing(ex, load_stage_study(st, todo[1]), data=data))
            waiting = False
            if not follow:
                break
        # the database followed, its newest campaign done before this worker came: a campaign created later is
        # waited for (the cluster's workers are started before the next search auto), as on a database holding none
        elif not follow or (final and (campaign is not None or len(followed) > 1 or summaries)):
            break
        else:
            if not waiting and not as_json and final:
                say(f"every stage of campaign {joined} is complete: waiting for a new campaign (search coarse or "
                    "search auto makes one; Ctrl-C stops)", err=True)
            elif not waiting and not as_json:  # a campaign no search auto runs is waited for silently, forever
                more = " or a new campaign" if campaign is None else ""
                say(f"waiting for the next stage of campaign {joined}{more} (search auto adds them; Ctrl-C stops)",
                    err=True)
            waiting = True
            time.sleep(FOLLOW_POLL_SECONDS)
    if not summaries and not as_json:  # finished before this worker came: nothing is wrong
        say(f"nothing to join: every stage of campaign{'s' if len(followed) > 1 else ''} {', '.join(followed)} is "
            "complete")
    return finish(summaries, as_json, complete_hint="", joined=True)


def _wait_for_campaign(url: str, campaign: str | None, as_json: bool) -> None:
    """Return once the database at ``url`` holds ``campaign`` (None: any campaign): search worker --follow may start
    before the command that creates it, and waits for it as for a next stage, saying so once."""
    import time

    from search.stages import retry_storage
    from studies.errors import EmptyDatabaseError
    from studies.queries import campaigns, names_message
    from studies.store import open_storage

    def known_campaigns() -> list[str]:
        try:
            reading = open_storage(url, readonly=True)  # missing: one line, as without --follow
        except EmptyDatabaseError:  # a server database made with createdb: the first search auto makes the tables
            return []
        try:
            return campaigns(reading)
        finally:
            reading.engine.dispose()

    said = False
    while True:
        # once it was reached, a server restarted while this worker waits is waited for, as during a stage's trials
        known = retry_storage(known_campaigns, "waiting for the campaign") if said else known_campaigns()
        if campaign in known or (campaign is None and known):
            return
        if not said and not as_json and campaign is None:
            say("waiting for a first campaign to be created in the database (search coarse or search auto makes "
                "one; Ctrl-C stops)", err=True)
        elif not said and not as_json:  # the known ones named: a misspelt name is seen at once
            say(f"waiting for campaign {campaign} to be created (known campaigns: {names_message(known)}; "
                "Ctrl-C stops)", err=True)
        said = True
        time.sleep(FOLLOW_POLL_SECONDS)


COMMANDS = [coarse, fine, grid, auto, worker]
