"""The study database: ``search studies``, ``trials``, ``best`` and ``query``."""
from __future__ import annotations

import click

from search.cli.options import campaign_option, format_option, open_for_reading, storage_option
from search.cli.output import echo_json, print_frame


@click.command()
@storage_option
@format_option
def studies(storage: str | None, fmt: str) -> None:
    """One row per stage: campaign, stage, trials by state, best value, ranges, epochs.

    \b
    Example:
      search studies --format csv
    """
    from studies.queries import list_studies

    print_frame(list_studies(open_for_reading(storage)), fmt)


@click.command()
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

    frame = trials_frame(open_for_reading(storage), study_name=study, campaign=campaign,
                         states=[s.upper() for s in states] or None, sort=sort, limit=limit)
    print_frame(frame, fmt)


@click.command()
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

    st = open_for_reading(storage)
    row = best_trial(st, campaign or latest_campaign(st))
    flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
    for group in ("params", "user_attrs"):
        flat.update({(f"param_{k}" if group == "params" else k): v for k, v in row.get(group, {}).items()})
    if fmt == "json":
        echo_json(row)
    else:
        print_frame(pd.DataFrame([flat]), fmt)


@click.command()
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

    print_frame(run_readonly_sql(resolve_storage_url(storage), sql), fmt)


COMMANDS = [studies, trials, best, query]
