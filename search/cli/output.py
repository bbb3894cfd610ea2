"""Printing: JSON, tables of DataFrames, numbers and parameter values."""
from __future__ import annotations

import json
import math
from typing import Any

import click


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


def fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_value(v: Any) -> str:
    """A parameter value for a table: 3 significant digits for floats, the value itself otherwise."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def print_frame(frame: Any, fmt_name: str) -> None:
    if fmt_name == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt_name == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", indent=2))
    elif frame.empty:
        click.echo("(no rows)")
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                               "display.float_format", "{:.4g}".format):
            click.echo(frame.to_string(index=False))
