"""Printing: JSON, tables of DataFrames, numbers and parameter values."""
from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable
from typing import Any

import click

from search.space import value_text
from search.text import visible, visible_line, wrapped


def echo(text: str = "", err: bool = False) -> None:
    """A line as it is (a table's row, a path written), its control characters written out (``visible``)."""
    click.echo(visible(text), err=err)


def say(text: str, indent: str = "", err: bool = False) -> None:
    """Prose wrapped to the terminal's width (continuation lines indented); numbers and paths never split."""
    click.echo(wrapped(text, indent), err=err)


class LostOutput(io.StringIO):
    """stdout of a command started with it closed (``>&-``): what the command prints is kept, and its loss said in
    one line once the command is over (``search.cli.SearchGroup``)."""


def note_on_output(text: str) -> None:
    """A note on stderr about what the command printed (columns or rows left out): none where that output is lost
    (stdout closed), which the command's one line says instead."""
    if not isinstance(sys.stdout, LostOutput):
        say(text, err=True)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def echo_json_items(obj: dict[str, Any], key: str, items: Iterable[Any]) -> None:
    """echo_json of ``obj`` with ``items`` as the list under its last key ``key``, the same text, each item written as
    it comes: the whole list is never held (search predict --json's rows, of 10,000 classes each)."""
    head = json.dumps(obj, indent=2, default=_json_default)[:-2] + ",\n" if obj else "{\n"  # "{...}" without its "\n}"
    before = f"{head}  {json.dumps(key)}: ["
    end = "]\n}"  # of an empty list
    for item in items:  # an item's JSON holds no newline but its own layout's: strings escape theirs
        text = json.dumps(item, indent=2, default=_json_default).replace("\n", "\n    ")
        click.echo(f"{before}\n    {text}", nl=False)
        before, end = ",", "\n  ]\n}"
    click.echo(before.lstrip(",") + end)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return str(o)


def save_plot(fig: Any, path: str) -> None:
    """``fig`` into the file ``path``, in the format its suffix names (``studies.plots.save``), as a model file is
    written: a file or link there replaced once the plot is whole, never written through; WriteError if it cannot."""
    from engine.checkpoint import write_replacing
    from studies import plots

    write_replacing(path, lambda f: plots.save(fig, f, suffix=os.path.splitext(path)[1]))


# a cell a spreadsheet runs as a formula (OWASP's CSV injection): one that begins with one of these, unless a number
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_safe(cell: Any) -> Any:
    """``cell`` as OWASP advises writing it into a CSV a spreadsheet may open: a text that begins with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return, and is no number (-0.5 stays as it is), prefixed with a single quote,
    which the spreadsheet shows as text instead of running it; any other cell as it is."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def fmt(x: float | None) -> str:
    """An accuracy to 4 decimals; ``-`` for none, or one not finite."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.4f}"


def final_runs_text(final: Any) -> str:
    """``0.9889 +- 0.0012 over 3 runs of 12 epochs``: search auto's choice ``final`` (a ``search.campaign.FinalScore``)
    by its mean value over its runs in the final stage."""
    # one run has no spread: its std of 0 would read as a value known exactly
    epochs = f"{final.epochs} epoch{'' if final.epochs == 1 else 's'}"
    return (f"{final.value:.4f} +- {final.std:.4f} over {final.runs} runs of {epochs}" if final.runs > 1
            else f"{final.value:.4f} over 1 run of {epochs} (1 run: no spread)")


def say_final_runs(final: Any) -> None:
    """Lines under search auto's choice ``final``: its mean value over its runs in the final stage
    (``final_runs_text``), its retrains' scores (where it has them), and what always predicting the most frequent
    class scores on test (where one class dominates)."""
    say(f"{final.study}: value {final_runs_text(final)}", "  ")
    if (r := final.retrained) is not None:
        test_spread = f" +- {r.test_std:.4f}" if r.runs > 1 else " (1 retrain: no spread)"
        balanced = "" if r.test_balanced_accuracy is None else f", balanced {r.test_balanced_accuracy:.4f}"
        say(f"retrained {r.runs}x: val_acc {r.val_acc:.4f}, test_acc {r.test_acc:.4f}{test_spread}{balanced}", "  ")
        if (baseline := r.most_frequent_class) is not None:
            say(f"always predicting the most frequent class, {baseline['class']!r}: test_acc "
                f"{baseline['test_acc']:.4f}" + ("; the chosen network does no better: it learned nothing but the "
                                                  "class frequencies" if r.test_acc <= baseline["test_acc"] else ""),
                "  ")


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """Rows as plain Python values: ints stay ints, NaN and NaT become None, timestamps ISO text, decimals
    (PostgreSQL's numeric) numbers."""
    import decimal

    import pandas as pd

    rows = []
    for record in frame.to_dict(orient="records"):
        row = {}
        for key, value in record.items():
            if isinstance(value, decimal.Decimal):
                value = int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
            if value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value)):
                value = None
            elif isinstance(value, pd.Timestamp):
                value = value.isoformat()  # to the microsecond, as csv gives it (a table: to the second)
            elif hasattr(value, "item"):
                value = value.item()
            row[key] = value
        rows.append(row)
    return rows


_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?")  # a timestamp of frame_records


def _cell(value: Any) -> str:
    """One value as a table cell: floats to 4 significant digits, lists joined by commas, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return _long(",".join(_cell(v) for v in value))
    if isinstance(value, str) and _ISO_TIME.fullmatch(value):
        return visible(value[:19].replace("T", " "))
    return _long(value_text(value))


# accuracies, to 4 decimals as every stage summary, search explain and search auto print them (0.9630, not 0.963)
ACCURACY_COLUMNS = {"value", "best_value", "highest_value", "val_acc", "train_acc", "best_val_acc", "test_acc",
                    "val_balanced_accuracy"}


def column_cell(column: str, value: Any) -> str:
    """A value of ``column`` as a table shows it: an accuracy to 4 decimals, anything else as ``_cell``."""
    return fmt(value) if column in ACCURACY_COLUMNS and isinstance(value, float) else _cell(value)

CELL_CHARS = 200  # a table shows this much of a longer text (a JSON blob, a query's long string); csv/json all


def _long(text: str) -> str:
    text = visible_line(text)
    return text if len(text) <= CELL_CHARS else f"{text[:CELL_CHARS]}... ({len(text):,} characters)"


def print_frame(frame: Any, fmt_name: str, columns: list[str] | None = None, wide: bool = False,
                more: str = "--wide, --columns or --format csv", everything: bool = False,
                short_params: bool = True) -> None:
    """A DataFrame as csv or json (every column), or as a table of ``columns`` (every column with ``everything``
    or without ``columns``): the whole columns that fit the terminal, or with ``everything`` all of them, their text
    folded to fit; with ``wide`` at full width, wider than the terminal if need be. ``more``: how to see the
    columns left out. ``short_params``: a param_<name> column headed <name> (False where the names are the user's
    own, as a query's are what its SQL must say)."""
    def heading(column: str) -> str:  # control characters and line breaks written out, as in the cells
        return visible_line(column.removeprefix("param_") if short_params else column)

    if fmt_name == "csv":  # on a terminal a value's control characters written out, as a table shows them; to a file
        text = frame.to_csv(index=False)  # or pipe as they are (color: click would drop an ESC[...m there as styling)
        click.echo(visible(text) if sys.stdout.isatty() else text, nl=False, color=True)
        return
    if fmt_name == "json":  # JSON has no infinities: null, as for NaN
        finite = [{k: None if isinstance(v, float) and math.isinf(v) else v for k, v in row.items()}
                  for row in frame_records(frame)]
        click.echo(json.dumps(finite, indent=2, default=_json_default))
        return
    if frame.empty:
        click.echo("(no rows)")
        return
    import shutil

    from rich.cells import cell_len
    from rich.console import Console

    def text_width(text: str) -> int:  # an ASCII cell (control characters written out): a column a character
        return len(text) if text.isascii() else cell_len(text)

    shown = list(frame.columns) if everything or not columns else [c for c in columns if c in frame.columns]
    # the cells are made twice, a block of rows at a time, for their widths and to print them: never all at once
    need = {c: text_width(heading(c)) for c in shown}
    for cells in _cell_blocks(frame, shown):
        for c in shown:
            need[c] = max(need[c], *map(text_width, cells[c]))
    terminal = shutil.get_terminal_size((80, 24)).columns
    left: list[str] = []
    if not wide and not everything:  # whole columns that fit the terminal, never a number cut short
        room, kept = terminal - 1, []
        for column in shown:
            if kept and room < need[column] + 2:
                break
            room -= need[column] + 2
            kept.append(column)
        left = [heading(c) for c in shown[len(kept):]]
        shown = kept
    numeric = {c: str(frame[c].dtype).startswith(("int", "float", "Int", "Float")) for c in shown}
    width = sum(need[c] for c in shown) + 2 * (len(shown) - 1)  # each column and the gap of two after it
    # markup and emoji codes off: a cell or a name such as "[red]x", "[/x]" or ":smile:" is text (it would be styled,
    # fail to parse or become a picture); as wide as the terminal the columns were chosen for
    console = Console(soft_wrap=False, highlight=False, markup=False, emoji=False,
                      width=max(terminal, width) if wide else terminal)
    console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    # the heading bold, but under NO_COLOR (no-color.org), where rich drops the colours only: no escape at all
    heading_style = "" if console.no_color else "bold"
    if width <= console.width:  # as rich lays out a table that fits, a line at a time (rich takes 1 ms a row)
        from rich.text import Text

        def line(cells: list[str]) -> str:  # no line ends in spaces: the last column's padding is no part of it
            pads = (" " * (need[c] - text_width(v)) for c, v in zip(shown, cells))
            return "  ".join(pad + v if numeric[c] else v + pad for c, v, pad in zip(shown, cells, pads)).rstrip(" ")

        console.print(Text(line([heading(c) for c in shown]), style=heading_style))
        for cells in _cell_blocks(frame, shown):
            sys.stdout.write("".join(line(row) + "\n" for row in zip(*(cells[c] for c in shown))))
        _say_left(left, more)
        return
    from rich.table import Table

    # a column folded to fit, by rich: one column (a query's long text) as wide as the terminal, a block of rows at a
    # time; several (search best's field/value list, a few rows) as wide as rich shares the terminal out among them
    one = len(shown) == 1

    def show(table: Table) -> None:  # rich pads every cell to its column's width: no line ends in spaces
        with console.capture() as captured:
            console.print(table)
        sys.stdout.write("".join(line.rstrip(" ") + "\n" for line in captured.get().splitlines()))

    table = None
    for block, cells in enumerate(_cell_blocks(frame, shown)):
        if table is None or one:
            table = Table(box=None, pad_edge=False, header_style=heading_style, show_edge=False, show_header=block == 0)
            for column in shown:  # a parameter by its own name; csv/json keep the prefix
                table.add_column(heading(column), justify="right" if numeric[column] else "left", overflow="fold",
                                 no_wrap=numeric[column], width=console.width if one else None)
        for row in zip(*(cells[c] for c in shown)):
            table.add_row(*row)
        if one:
            show(table)
    if not one:
        show(table)
    _say_left(left, more)


def _say_left(left: list[str], more: str) -> None:
    """The columns a table ``left`` out, and how to see them (``more``), on stderr."""
    if left:  # after the table, where a long one leaves the eye, as the stage summaries say theirs
        sys.stdout.flush()  # the table first, also where stdout is a pipe (2>&1 | less)
        note_on_output(f"({len(left)} more column{'s' if len(left) > 1 else ''}: {', '.join(left)}; {more})")


CELL_BLOCK = 10_000  # rows made into cells at a time


def _cell_blocks(frame: Any, columns: list[str]) -> Any:
    """The table cells of ``columns`` (column: its cells), a block of CELL_BLOCK rows at a time."""
    for start in range(0, len(frame), CELL_BLOCK):
        block = frame.iloc[start:start + CELL_BLOCK]
        yield {c: _column_cells(c, block[c]) for c in columns}


def _column_cells(column: str, values: Any) -> list[str]:
    """``column_cell`` of each of a column's values (a Series) as ``frame_records`` gives them (a missing value as
    None); a column of integers, floats or text read straight from its Python values, 5 times as fast."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(values.dtype):  # _cell of an int: its digits, never long
        return [str(v) if isinstance(v, int) else "-" for v in values.tolist()]
    if pd.api.types.is_float_dtype(values.dtype):
        return [column_cell(column, v if isinstance(v, float) and v == v else None) for v in values.tolist()]
    if isinstance(values.dtype, pd.StringDtype):
        return [column_cell(column, v if isinstance(v, str) else None) for v in values.tolist()]
    return [column_cell(column, row[column]) for row in frame_records(values.to_frame())]


def _broken_pipe() -> None:
    """rich's Console on a pipe whose reader left (``| head``) ends the process with exit 1 itself: the error goes
    to the CLI's one handler of a failed output instead."""
    raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def print_table(frame: Any, fmt_name: str, columns_text: str | None, default: list[str], wide: bool) -> None:
    """``print_frame`` of a listing: the --columns asked for, all of them at full width; else ``default`` fitted
    to the terminal, or with --wide every column at full width."""
    chosen = select_columns(columns_text, frame)
    print_frame(frame, fmt_name, chosen or default, wide or chosen is not None, everything=wide and not chosen)


def select_columns(text: str | None, frame: Any) -> list[str] | None:
    """Columns named by --columns (comma-separated), checked against the frame."""
    if text is None:
        return None
    from search.errors import SearchError

    names = [c.strip() for c in text.split(",") if c.strip()]
    # a parameter by the name the table shows (lr) or its column's (param_lr)
    names = [f"param_{c}" if c not in frame.columns and f"param_{c}" in frame.columns else c for c in names]
    unknown = [c for c in names if c not in frame.columns]
    shown = ", ".join(c.removeprefix("param_") for c in frame.columns)
    if not names:  # ",," showed the default columns at full width, as if nothing had been asked
        raise SearchError(f"--columns {text!r} names no column; columns: {shown}")
    if unknown:
        raise SearchError(f"--columns: no column {', '.join(unknown)}; columns: {shown}")
    return names
