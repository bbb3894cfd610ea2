"""``search report``, ``search compare`` and ``search dashboard``: seeing the search instead of reading it."""
from __future__ import annotations

import importlib.util
import re
import shlex
import socket
import sys
from collections.abc import Callable
from typing import Any

import click

from search.cli.options import (
    MAX_REPEATS, MAX_TRIALS, NEWEST_CAMPAIGN, AsciiIntRange, SectionedCommand, WritablePath,
    build_space, campaign_option, check_not_input, default_folder, execution, explode_option, heartbeat_option,
    jobs_option, json_option, open_for_reading,
    run_config_options, space_options, storage_file, storage_option,
)
from search.cli.output import echo, echo_json, fmt, say
from search.config import RunConfig
from search.errors import STOP_EXIT_CODES, Interrupted, SearchError, forget_pending, pending, stops_held
from search.space import DEFAULT_SPACE
from search.text import visible


def out_option(default: str) -> Callable:
    """--out, whose help gives the command's own ``default`` folder."""
    return click.option("--out", "out_dir", type=WritablePath(folder=True), default=None,
                        help=f"Folder to write into (default: {default}).")


# --------------------------------------------------------------------------- report
@click.command(cls=SectionedCommand, short_help="Write report.html, report.md and summary.json.")
@campaign_option(NEWEST_CAMPAIGN)
@out_option("report-<campaign>")
@storage_option
@json_option
def report(campaign: str | None, out_dir: str | None, storage: str | None, as_json: bool) -> None:
    """Write report.html (self-contained), report.md, summary.json and the plots of a campaign.

    Per stage: trials by state, range, epochs, best, training time, time saved by pruning and
    parameter importance (fANOVA); grid vs random at equal budget (best, median, distinct values
    per parameter, trials to come within 1 point of the best); plots of the two most important
    parameters against each other, each parameter alone, the ranges, loss curves and best-so-far
    against training time.

    \b
    Examples:
      search report              # the latest campaign, into report-<campaign>/
      search report --campaign digits --out digits-report
    """
    from studies.queries import latest_campaign
    from studies.report import REPORT_FILES, campaign_report, safe_dirname, size_text, write_report

    st = open_for_reading(storage)
    name = campaign or latest_campaign(st)
    out_dir = out_dir or default_folder(f"report-{safe_dirname(name)}")
    rep = campaign_report(st, name, progress=None if as_json else report_progress())
    if not as_json and sys.stderr.isatty():
        status_line("")  # the status line gone: the result follows
    data = (rep.summary.get("data") or {}).get("path")  # the campaign's data folder: no plot among its images
    check_not_written(out_dir, [*REPORT_FILES, *(f"{k}.png" for k in rep.images)],
                      {"--storage": storage_file(storage), "campaign's --data": data})
    written = write_report(rep, out_dir)
    if as_json:
        echo_json({"campaign": name, "files": {k: str(v) for k, v in written.items()}})
        return
    echo(f"report of campaign {name} ({size_text(rep.summary)}):")
    for key in REPORT_FILES:
        echo(f"  wrote {written[key]}")
    images = [str(v) for k, v in written.items() if k in rep.images]
    say(f"wrote {len(images)} plots: {', '.join(images)}", "  ")
    hint = rep.summary["grid_vs_random"]["hint"]
    if hint:
        say(f"note: {hint}", "  ")


def check_not_written(out_dir: str, filenames: list[str], inputs: dict[str, str | None]) -> None:
    """SearchError when a file the command writes into ``out_dir`` is one it reads (``check_not_input``): the study
    database (a database named summary.json in the --out folder was replaced by the report), or an image of the data
    folder."""
    from pathlib import Path

    for filename in filenames:
        check_not_input("--out", str(Path(out_dir) / filename), inputs)


def report_progress() -> Any:
    """Each slow step of a report as it starts, on stderr: one status line rewritten in place on a terminal (cut
    to its width), one line each otherwise."""
    if not sys.stderr.isatty():  # a study's name in a step: shown, never obeyed
        return lambda step: echo(f"report: {step}", err=True)
    return lambda step: status_line(visible(f"report: {step}"))


def status_line(text: str) -> None:
    """``text`` on stderr's last line, over what it showed (cut to the terminal's width less one column; "": that
    line blank, the cursor at its start), padded with spaces: no escape sequence clears it (none under NO_COLOR,
    and a dumb terminal would show one)."""
    import shutil

    width = shutil.get_terminal_size((80, 24)).columns - 1
    click.echo("\r" + text[:width].ljust(width) + ("" if text else "\r"), nl=False, err=True)


# --------------------------------------------------------------------------- compare
@click.command(cls=SectionedCommand, short_help="Random vs grid search at equal budget, repeated.")
@run_config_options
@space_options
@click.option("--repeats", type=AsciiIntRange(1, MAX_REPEATS), default=5, show_default=True,
              help="Independent random/grid pairs (stage seeds --seed, --seed+1, ...).")
@click.option("--trials", type=AsciiIntRange(1, MAX_TRIALS), default=16, show_default=True,
              help="Budget of each stage: the grid takes k values per range (and every category), the most "
                   "that fit; the random stage as many trials as the grid has points.")
@click.option("--epochs", type=AsciiIntRange(min=1), default=2, show_default=True, help="Epochs per trial.")
@explode_option
@campaign_option("compare-<UTC timestamp>")
@out_option("<campaign>")
@storage_option
@jobs_option
@heartbeat_option
@json_option
def compare(base: RunConfig, space_spec: list, repeats: int, trials: int, epochs: int, explode_factor: float,
            campaign: str | None, out_dir: str | None, storage: str | None, jobs: int, heartbeat: int,
            as_json: bool) -> int:
    """Random vs grid search at equal budget, repeated: wins/ties/losses and the spread of the best.

    Runs --repeats pairs of a random stage (random-r) and a grid stage (grid-r) with the same
    ranges, epochs and data into campaign compare-<UTC timestamp> (or --campaign, a campaign of
    its own: one of search auto or search coarse is refused), then writes repeats.png (best value
    against trials used, median over repeats with a band) and compare.json. Bergstra & Bengio
    (2012) on your own problem.

    \b
    Example:
      search compare --repeats 5 --trials 16 --epochs 2
    """
    from search.campaign import check_batch_sizes, check_campaign_kind
    from search.cli.stages import check_largest_network
    from search.compare import compare_pair, default_compare_campaign, run_compare
    from studies.report import safe_dirname, write_compare_report

    name = campaign or default_compare_campaign()
    out_dir = out_dir or default_folder(safe_dirname(name))
    check_not_written(out_dir, ["repeats.png", "compare.json"],  # before the stages run
                      {"--data": base.data.name, "--storage": storage_file(storage)})
    run = base.with_params({"train.epochs": epochs})
    space = build_space(space_spec, DEFAULT_SPACE, run, click.get_current_context().meta["fixed"])
    dataset = run.load()  # bad data fails here too, before the database is touched
    check_largest_network(space, run, dataset)
    check_batch_sizes(space, dataset)  # the stages check it too, but after the database is made
    # as each stage command's: a bar on a terminal, a line a trial through a pipe (notes before them either way);
    # nothing with --json. A line after each stage says how it went
    ex = execution(storage, jobs, heartbeat, as_json)

    def on_stage(s: Any) -> None:
        if not as_json:
            c = s.counts
            say(f"{s.stage:<10} best {fmt(s.best_value)}  ({s.n_trials} trials: {c['complete']} complete, "
                f"{c['pruned']} pruned, {c['fail']} failed)", "  ")

    check_campaign_kind(ex.storage(), name, compare=True)  # before the line that says what it will run
    if not as_json:
        random_stage, grid_stage = compare_pair(name, run, space, trials, run.train.seed, 0, explode_factor)
        size = (f"{random_stage.n_trials} trials each" if random_stage.n_trials == grid_stage.n_trials else
                f"{random_stage.n_trials} random trials and {grid_stage.n_trials} grid points")
        fit = "" if random_stage.n_trials == trials else f" (the grid that --trials {trials} fits)"
        pairs = "1 pair" if repeats == 1 else f"{repeats} pairs"
        epoch_text = "1 epoch" if epochs == 1 else f"{epochs} epochs"
        say(f"campaign {name}: {pairs} of random and grid stages, {size}{fit}, {epoch_text} a trial, "
            f"on {run.data.name}")
    try:
        result = run_compare(ex, name, run, space, trials, repeats, run.train.seed, explode_factor,
                             on_stage=on_stage)
    except (KeyboardInterrupt, Interrupted) as stop:
        if campaign is None:  # named by the time it started: the same command again would start another campaign
            stop.campaign = name  # type: ignore[union-attr]
        raise
    written = write_compare_report(result.report, out_dir)
    summary = result.report.summary
    errors = [e for pair in result.pairs for s in pair for e in s.errors]
    if as_json:
        echo_json({**summary, "files": {k: str(v) for k, v in written.items()}, "errors": errors})
    else:
        click.echo(f"\n{'repeat':>6} {'random best':>11} {'grid best':>9}  outcome")
        for i, p in enumerate(summary["pairs"]):
            click.echo(f"{i:6d} {fmt(p['random_best']):>11} {fmt(p['grid_best']):>9}  {p['outcome']}")
        r, g = summary["random"], summary["grid"]
        click.echo(f"\nrandom wins {summary['wins']}, ties {summary['ties']}, losses {summary['losses']} "
                   f"(of {summary['repeats']})")
        click.echo(f"best value random: mean {fmt(r['mean'])} std {fmt(r['std'])} "
                   f"[{fmt(r['min'])}, {fmt(r['max'])}]")
        click.echo(f"best value grid:   mean {fmt(g['mean'])} std {fmt(g['std'])} "
                   f"[{fmt(g['min'])}, {fmt(g['max'])}]")
        say(f"wrote {written['repeats']} and {written['compare.json']}")
        click.echo(f"full report: search report --campaign {shlex.quote(name)}")
        for e in errors:
            echo(f"  error: {e}", err=True)
    return 1 if errors else 0


# --------------------------------------------------------------------------- dashboard
def _cannot_listen(port: int, error: OSError) -> SearchError:
    return SearchError(f"--port {port}: cannot listen on 127.0.0.1:{port}: {error.strerror or error}")


def _check_port(port: int) -> None:
    """SearchError naming the port when nothing may listen on 127.0.0.1:port (in use, or not allowed)."""
    with socket.socket() as probe:
        # as the server sets it: a port whose last connection is still in TIME_WAIT is free to it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise _cannot_listen(port, e) from None


# the names a page of the dashboard is opened by: here, or through a tunnel (ssh -L 9000:127.0.0.1:8080) on any port
_OWN_HOST = re.compile(r"(127\.0\.0\.1|localhost)(:\d+)?", re.IGNORECASE)


def _own_pages_only(app: Callable, port: int, writes: bool = False) -> Callable:
    """The WSGI ``app`` answering only the dashboard's own pages: a request whose Host names another site than
    127.0.0.1 or localhost, or that carries another site's Origin, is refused (403). A page of another site whose name
    resolves to 127.0.0.1 (DNS rebinding), or a form it posts there, deleted stages through optuna-dashboard's API.
    Without ``writes`` it only reads: a request of another method than GET or HEAD (optuna-dashboard's deleting,
    renaming, telling a trial, notes) is refused (405), as any local process or page could send one."""
    def answer(environ: dict[str, Any], start_response: Callable) -> Any:
        host, origin = environ.get("HTTP_HOST"), environ.get("HTTP_ORIGIN")
        if (host is not None and not _OWN_HOST.fullmatch(host)) or (
                origin is not None and not _OWN_HOST.fullmatch(origin.removeprefix("http://"))):
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"refused: open the dashboard at http://127.0.0.1:{port}/dashboard\n".encode()]
        if not writes and environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain; charset=utf-8"),
                                                      ("Allow", "GET, HEAD")])
            return [b"refused: the dashboard only reads the database; start it with --allow-writes to change it\n"]
        return app(environ, start_response)

    return answer


def _stopping_handler() -> type:
    """wsgiref's request handler, stopped by a Ctrl-C or SIGTERM received while it answers a request, once it is
    answered: wsgiref caught the signal's exception as an error of the request, printed its traceback and served on,
    for ever. They are held from the request's headers read to its answer only: a connection that sends nothing (a
    browser's preconnect) left the server deaf to them until its client closed it."""
    from contextlib import ExitStack
    from wsgiref.simple_server import WSGIRequestHandler

    class StoppingHandler(WSGIRequestHandler):
        def setup(self) -> None:
            self.held = ExitStack()
            super().setup()

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            self.held.enter_context(stops_held())
            return parsed

        def finish(self) -> None:
            with self.held:
                super().finish()

    return StoppingHandler


@click.command(cls=SectionedCommand, short_help="Serve the study database in optuna-dashboard.")
@click.option("--port", type=AsciiIntRange(1, 65535), default=8080, show_default=True,
              help="Port on 127.0.0.1 to serve on.")
@click.option("--allow-writes", is_flag=True,
              help="Let the dashboard change the database (delete or rename studies, tell trials, write notes); "
                   "without it, it only reads.")
@storage_option
def dashboard(port: int, allow_writes: bool, storage: str | None) -> int:
    """Serve the study database in optuna-dashboard on 127.0.0.1 (optional extra: pip install '.[dashboard]'), to
    its own pages only: a request that names another site (Host, Origin) is refused. It only reads the database
    unless given --allow-writes.

    Do not point it at a SQLite database while workers are writing to it: use PostgreSQL, or
    open the dashboard after the stage has finished.

    \b
    Example:
      search dashboard --port 8080   # then open http://127.0.0.1:8080/dashboard
    """
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise SearchError("optuna-dashboard is not installed: pip install '.[dashboard]'")
    _check_port(port)  # before the banners: a port in use is one line
    from wsgiref.simple_server import make_server

    import optuna
    import optuna_dashboard

    from studies.store import (
        SQLITE_BUSY_TIMEOUT_S,
        mask_url,
        open_storage,
        resolve_storage_url,
        url_dialect,
        with_available_driver,
    )

    url = resolve_storage_url(storage)
    open_storage(url, create=False).engine.dispose()  # clear errors for a missing or foreign database
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url_dialect(url) == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    st = optuna.storages.RDBStorage(with_available_driver(url), engine_kwargs=engine_kwargs,
                                    skip_table_creation=True)
    stopped_by: type[BaseException] | None = None
    try:
        # optuna_dashboard.run_server printed nothing of its own before it listened: the address was said seconds
        # before it answered. The same app on the same wsgiref server, made (bound and listening) before it is said
        with make_server("127.0.0.1", port, _own_pages_only(optuna_dashboard.wsgi(st), port, allow_writes),
                         handler_class=_stopping_handler()) as server:
            click.echo(f"optuna-dashboard for {mask_url(url)} at http://127.0.0.1:{port}/dashboard (Ctrl-C to stop)",
                       err=True)
            server.serve_forever()
        stopped_by = pending()  # the server may swallow the interrupt and return
    except OSError as e:  # taken since it was checked
        raise _cannot_listen(port, e) from None
    except (KeyboardInterrupt, Interrupted) as e:
        stopped_by = type(e)
    finally:
        st.engine.dispose()
    if stopped_by is None:
        return 0
    forget_pending()  # handled here: stopping the server is what the signal asked for
    click.echo("dashboard stopped", err=True)
    return STOP_EXIT_CODES["terminated" if stopped_by is Interrupted else "interrupted"]


COMMANDS = [report, compare, dashboard]
