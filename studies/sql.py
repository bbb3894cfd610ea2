"""Read-only SQL over the study database, enforced by the database itself, and the ``trials_flat`` view.

What keeps ``run_readonly_sql`` from writing, by dialect (the keyword checks here only give
clearer messages; the database is what refuses):

SQLite: a ``mode=ro`` (or ``immutable=1``) connection with ``PRAGMA query_only`` and an authorizer that
refuses ATTACH and a PRAGMA setting a value, which ``mode=ro`` allows; sqlite3 runs
one statement per call; a progress handler stops the query at the time limit or on Ctrl-C.

PostgreSQL: a READ ONLY transaction (also the session default) that the text cannot end: the
text is passed as a value and opened as a cursor by PL/pgSQL (``OPEN ... FOR EXECUTE``), which
accepts exactly one row-returning statement -- no ``COMMIT``, no second statement; then
``FETCH`` at most ``max_rows + 1`` rows (on both dialects a chunk at a time, refused once their values pass
MAX_RESULT_BYTES). ``SET LOCAL statement_timeout`` ends it on the server even when the client dies;
Ctrl-C cancels it. When the login may, the query runs as the NOLOGIN role
``search_readonly`` (created on first use, SELECT on the schema's tables only), so
a plain call of a function with side effects on others (``pg_terminate_backend``,
``pg_cancel_backend``, reading server files) is refused. Without that role (the login cannot
create roles or grant it) the query runs read-only, single, time-limited, with the login's own
privileges. The role is no hard boundary: ANY login can leave it from inside the query
(``set_config('role', 'none', true)`` earlier in the same statement) and then has its own
privileges back for what follows -- a superuser's reads server files and ends any session; any
login ends its own other sessions (e.g. the workers', when they share it). Writing stays
refused. For a hard boundary, run queries with a login of their own that may only SELECT.
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy

from studies.errors import QueryError, StorageBusyError
from studies.store import (
    LOCK_POLL_S, is_locked, readonly_engine, readonly_open_error, url_dialect, with_available_driver,
)

if TYPE_CHECKING:  # pandas is imported where a frame is built: a worker never needs it
    import pandas as pd

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_ROWS = 10_000
MAX_RESULT_BYTES = 256 << 20  # the cells' text and bytes a query may return, whatever its rows (and one SQLite value)
_FETCH_ROWS = 500  # rows fetched at a time, counting the bytes as they come
READONLY_ROLE = "search_readonly"
_CURSOR = "search_rows"
_QUERY_SETTING = "search.query"


class QueryTimeoutError(QueryError):
    """A read-only query ran past its time limit and was stopped (exit code 1: the work failed, the input may be fine)."""

    exit_code = 1


_READ_KEYWORDS = frozenset({"SELECT", "WITH", "VALUES", "EXPLAIN"})
_VIEW_NAME = "trials_flat"
_VIEW_TEXT_ATTRS = ("stop_reason", "diagnosis", "worker")
_VIEW_INTEGER_ATTRS = ("iterations", "best_epoch", "model_parameters")  # whole numbers, as trials_frame gives them
_VIEW_NUMERIC_ATTRS = ("seconds", "iterations", "val_acc", "best_val_acc", "val_balanced_accuracy", "best_epoch",
                       "train_acc", "initial_loss", "final_loss", "model_parameters")
# a JSON string PostgreSQL's JSONB takes and can give as text: escapes but \u0000, surrogates only in pairs
_PG_JSON_TEXT = (r'^"([^"\\[:cntrl:]]|\\["\\/bfnrt]|\\u(?!0000)(?![dD][89a-fA-F])[0-9a-fA-F]{4}'
                 r'|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})*"$')
_SQL_FLOAT_TYPE = {"sqlite": "REAL", "postgresql": "DOUBLE PRECISION"}
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")


def _is_word_char(char: str, dialect: str = "sqlite") -> bool:
    """Can ``char`` continue a name? PostgreSQL names may hold ``$`` (``x$$a$`` is one name)."""
    return char.isalnum() or char == "_" or (char == "$" and dialect == "postgresql")


def scan_sql(sql: str, dialect: str = "sqlite") -> tuple[list[str], list[str]]:
    """Split SQL on ``;`` outside strings, quoted names and comments.

    Returns (statements, masks): each non-blank statement's text and the same text with
    strings and comments blanked out (for keyword checks). Follows the dialect's lexing:
    PostgreSQL nested comments, E'' escapes and $tag$ quotes; SQLite [names] and `names`.
    """
    pg = dialect == "postgresql"
    mask: list[str] = []
    bounds: list[int] = []
    i, n = 0, len(sql)

    def skip_quoted(start: int, close: str, backslash: bool) -> int:
        j = start + 1
        while j < n:
            if backslash and sql[j] == "\\":
                j += 2
                continue
            if sql[j] == close:
                if close != "]" and j + 1 < n and sql[j + 1] == close:
                    j += 2
                    continue
                return j + 1
            j += 1
        raise QueryError(f"unterminated {close} quote in the SQL")

    while i < n:
        char = sql[i]
        pair = sql[i : i + 2]
        if pair == "--":
            end = sql.find("\n", i)
            end = n if end < 0 else end
            mask.append(" " * (end - i))
            i = end
        elif pair == "/*":
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                elif pg and sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                else:
                    j += 1
            if depth:
                raise QueryError("unterminated /* comment in the SQL")
            mask.append(" " * (j - i))
            i = j
        elif char == "'":
            escape_string = (
                pg and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_word_char(sql[i - 2], dialect))
            )
            end = skip_quoted(i, "'", escape_string)
            mask.append("'" + " " * (end - i - 2) + "'")
            i = end
        elif char == '"' or (not pg and char in "[`"):
            close = {'"': '"', "[": "]", "`": "`"}[char]
            end = skip_quoted(i, close, False)
            mask.append(sql[i:end].replace(";", " "))
            i = end
        elif pg and char == "$" and (i == 0 or not _is_word_char(sql[i - 1], dialect)) and _DOLLAR_TAG.match(sql, i):
            tag = _DOLLAR_TAG.match(sql, i).group(0)  # type: ignore[union-attr]
            close_at = sql.find(tag, i + len(tag))
            if close_at < 0:
                raise QueryError(f"unterminated {tag} quote in the SQL")
            end = close_at + len(tag)
            mask.append("'" + " " * (end - i - 2) + "'")
            i = end
        else:
            if char == ";":
                bounds.append(i)
            mask.append(char)
            i += 1

    masked = "".join(mask)
    statements, masks, start = [], [], 0
    for end in [*bounds, n]:
        if masked[start:end].strip():
            statements.append(sql[start:end])
            masks.append(masked[start:end])
        start = end + 1
    return statements, masks


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _column_names(param_names: Sequence[str]) -> list[str]:
    """``param_<name>`` with non-word characters replaced, made unique."""
    used: set[str] = set()
    columns = []
    for name in param_names:
        column = "param_" + re.sub(r"\W", "_", name)
        while column in used:
            column += "_"
        used.add(column)
        columns.append(column)
    return columns


def param_kinds(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Per param name, from (param_name, distribution_json) rows: how trials_flat shows its values.

    ``int``: always an IntDistribution, its stored number as a whole number; ``float``: never categorical, Optuna's
    stored number. Otherwise from the choices of its
    categorical distributions (and any numeric ones): ``number``, ``bool``, or ``text``.
    """
    seen: dict[str, set[str]] = {}
    for name, distribution_json in rows:
        try:
            distribution = json.loads(distribution_json)
        except (TypeError, ValueError):
            distribution = {}
        types = seen.setdefault(name, set())
        if not isinstance(distribution, dict) or distribution.get("name") != "CategoricalDistribution":
            types.add("int" if isinstance(distribution, dict) and distribution.get("name") == "IntDistribution"
                      else "float")
            continue
        types.add("categorical")
        for choice in (distribution.get("attributes") or {}).get("choices") or []:
            if isinstance(choice, bool):
                types.add("bool")
            elif isinstance(choice, (int, float)):
                types.add("number")
            elif choice is not None:
                types.add("text")
    kinds = {}
    for name, types in seen.items():
        values = types - {"categorical"}
        if "categorical" not in types:
            kinds[name] = "int" if types == {"int"} else "float"
        elif values <= {"number", "float", "int"}:
            kinds[name] = "number"
        elif values == {"bool"}:
            kinds[name] = "bool"
        else:
            kinds[name] = "text"
    return kinds


def _param_value_sql(kind: str, dialect: str) -> str:
    """The SQL of a trial_params row's value: categoricals decoded from their choices (see param_kinds)."""
    if kind == "float":
        return "tp.param_value"
    if kind == "int":
        return "CAST(tp.param_value AS BIGINT)"
    categorical = "tp.distribution_json LIKE '%CategoricalDistribution%'"
    index = "CAST(tp.param_value AS INTEGER)"
    if dialect == "sqlite":
        path = f"'$.attributes.choices[' || {index} || ']'"
        choice = f"json_extract(tp.distribution_json, {path})"
        if kind == "text":
            boolean = f"json_type(tp.distribution_json, {path})"
            choice = f"CASE {boolean} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST({choice} AS TEXT) END"
            return f"CASE WHEN {categorical} THEN {choice} ELSE CAST(tp.param_value AS TEXT) END"
        return f"CASE WHEN {categorical} THEN {choice} ELSE tp.param_value END"
    choice = f"(CAST(tp.distribution_json AS JSONB) -> 'attributes' -> 'choices' -> {index}) #>> '{{}}'"
    if kind == "bool":
        return f"CASE WHEN {categorical} THEN CAST({choice} AS BOOLEAN) END"
    if kind == "number":
        return f"CASE WHEN {categorical} THEN CAST({choice} AS DOUBLE PRECISION) ELSE tp.param_value END"
    return f"CASE WHEN {categorical} THEN {choice} ELSE CAST(tp.param_value AS TEXT) END"


def trial_view_sql(params: Sequence[str] | Mapping[str, str], dialect: str = "sqlite") -> str:
    """A SELECT flattening Optuna's tables, one row per trial.

    ``params``: param names, or param name -> kind from ``param_kinds`` (a bare name is a
    ``float``). Columns: study, campaign, stage, trial_id, number, state, value,
    param_<name> (the param's value: numbers as stored, categorical choices as their values,
    booleans 1/0 on SQLite), stop_reason, diagnosis (its labels joined by commas, as in
    ``trials_frame``), seconds, iterations, val_acc, best_val_acc, val_balanced_accuracy, best_epoch, train_acc,
    initial_loss, final_loss, model_parameters (non-finite numbers are NULL), datetime_start,
    datetime_complete (as stored: naive UTC with Optuna 5).
    """
    if dialect not in _SQL_FLOAT_TYPE:
        raise QueryError(f"the trials view supports {', '.join(_SQL_FLOAT_TYPE)}, not {dialect}")
    float_type = _SQL_FLOAT_TYPE[dialect]

    def json_number(column: str) -> str:
        return (
            f"CASE WHEN {column} IN ('NaN', 'Infinity', '-Infinity', 'null', 'true', 'false')"
            f" OR {column} LIKE '\"%' OR {column} LIKE '[%' OR {column} LIKE '{{%'"
            f" THEN NULL ELSE CAST({column} AS {float_type}) END"
        )

    def json_text(column: str) -> str:
        # a JSON string decoded (Optuna writes non-ASCII as \uXXXX) where a text can hold it (no \u0000; on
        # PostgreSQL no lone surrogate either, which its JSONB refuses): any other value is shown as stored
        if dialect == "sqlite":
            return f"CASE WHEN {column} LIKE '\"%' AND json_valid({column}) AND instr({column}, '\\u0000') = 0 " \
                   f"THEN json_extract({column}, '$') ELSE {column} END"
        return f"CASE WHEN {column} ~ '{_PG_JSON_TEXT}' THEN CAST({column} AS JSONB) #>> '{{}}' ELSE {column} END"

    def json_labels(column: str) -> str:
        # a list of labels (plain names: no quotes or commas) -> "a,b"; the empty list -> ""
        joined = f"REPLACE(REPLACE(REPLACE({column}, '\", \"', ','), '[\"', ''), '\"]', '')"
        return f"CASE WHEN {column} = '[]' THEN '' WHEN {column} LIKE '[%' THEN {joined} ELSE {json_text(column)} END"

    attr_columns = [
        f"MAX(CASE WHEN ua.key = 'stop_reason' THEN {json_text('ua.value_json')} END) AS stop_reason",
        f"MAX(CASE WHEN ua.key = 'diagnosis' THEN {json_labels('ua.value_json')} END) AS diagnosis",
        f"MAX(CASE WHEN ua.key = 'worker' THEN {json_text('ua.value_json')} END) AS worker",
    ] + [
        f"MAX(CASE WHEN ua.key = {_sql_string(key)} THEN {json_number('ua.value_json')} END) AS {key}"
        if key not in _VIEW_INTEGER_ATTRS else
        f"CAST(MAX(CASE WHEN ua.key = {_sql_string(key)} THEN {json_number('ua.value_json')} END) AS BIGINT) AS {key}"
        for key in _VIEW_NUMERIC_ATTRS
    ]
    attr_keys = ", ".join(_sql_string(k) for k in (*_VIEW_TEXT_ATTRS, *_VIEW_NUMERIC_ATTRS))
    study_attr_columns = [
        f"MAX(CASE WHEN sa.key = {_sql_string(key)} THEN {json_text('sa.value_json')} END) AS {key}"
        for key in ("campaign", "stage")
    ]
    kinds = dict(params) if isinstance(params, Mapping) else dict.fromkeys(params, "float")
    param_columns = _column_names(list(kinds))
    param_select = [f'p."{column}" AS "{column}"' for column in param_columns]
    param_pivot = ", ".join(
        f"{'BOOL_OR' if kind == 'bool' and dialect == 'postgresql' else 'MAX'}(CASE WHEN tp.param_name = "
        f"{_sql_string(name)} THEN {_param_value_sql(kind, dialect)} END) AS \"{column}\""
        for (name, kind), column in zip(kinds.items(), param_columns)
    )
    select_columns = [
        "s.study_name AS study",
        "sattr.campaign AS campaign",
        "sattr.stage AS stage",
        "t.trial_id AS trial_id",
        "t.number AS number",
        "CAST(t.state AS VARCHAR(16)) AS state",
        "v.value AS value",
        *param_select,
        *(f"a.{key} AS {key}" for key in (*_VIEW_TEXT_ATTRS, *_VIEW_NUMERIC_ATTRS)),
        "t.datetime_start AS datetime_start",
        "t.datetime_complete AS datetime_complete",
    ]
    joins = [
        "FROM trials t",
        "JOIN studies s ON s.study_id = t.study_id",
        "LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0",
        f"LEFT JOIN (SELECT sa.study_id AS study_id, {', '.join(study_attr_columns)}"
        " FROM study_user_attributes sa WHERE sa.key IN ('campaign', 'stage')"
        " GROUP BY sa.study_id) sattr ON sattr.study_id = t.study_id",
        f"LEFT JOIN (SELECT ua.trial_id AS trial_id, {', '.join(attr_columns)}"
        f" FROM trial_user_attributes ua WHERE ua.key IN ({attr_keys})"
        " GROUP BY ua.trial_id) a ON a.trial_id = t.trial_id",
    ]
    if param_columns:
        joins.append(
            f"LEFT JOIN (SELECT tp.trial_id AS trial_id, {param_pivot}"
            " FROM trial_params tp GROUP BY tp.trial_id) p ON p.trial_id = t.trial_id"
        )
    return "SELECT " + ", ".join(select_columns) + " " + " ".join(joins)


def _with_trials_view(statement: str, mask: str, view_sql: str) -> str:
    """The statement with ``trials_flat`` defined as a leading common table expression."""
    cte = f"{_VIEW_NAME} AS ({view_sql})"
    match = re.match(r"\s*(WITH)(\s+RECURSIVE)?\b", mask, re.IGNORECASE)
    if match:
        cut = match.end()
        return f"{statement[:cut]} {cte},{statement[cut:]}"
    return f"WITH {cte}\n{statement}"


def _refusal_message(exc: BaseException) -> str:
    text = str(exc).strip()
    detail = text.splitlines()[0] if text else type(exc).__name__
    lowered = detail.lower()
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return f"refused: the database is opened read-only ({detail})"
    if "multi-query" in lowered or "as cursor" in lowered or "one statement at a time" in lowered:
        return f"refused: only one read-only query (SELECT, WITH, VALUES, EXPLAIN) may run ({detail})"
    if ("permission denied" in lowered or "not authorized" in lowered
            or re.search(r"must be (a )?(member|superuser)", lowered)):
        return f"refused: read-only queries may not do that ({detail})"
    if "string or blob too big" in lowered:
        return f"SQL failed: {detail} (a value may hold at most {MAX_RESULT_BYTES >> 20} MiB)"
    missing = re.search(r'no such column: (\w+)$|column "(\w+)" does not exist', detail)  # SQLite, PostgreSQL
    if missing and not (missing[1] or missing[2]).startswith("param_"):  # `WHERE lr > 0` for param_lr
        return (f"SQL failed: {detail} (searched parameters are columns param_NAME; search query --help lists "
                f"every column of trials_flat)")
    return f"SQL failed: {detail}"


def _timeout_error(timeout: float) -> QueryTimeoutError:
    return QueryTimeoutError(f"query stopped after its time limit of {timeout:g} s (give a larger --timeout or a LIMIT)")


def _check_limits(timeout: float, max_rows: int) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 10**7:
        raise QueryError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise QueryError(f"max_rows must be a positive integer, got {max_rows!r}")


def run_readonly_sql(
    url: str, sql: str, timeout: float = DEFAULT_TIMEOUT_S, max_rows: int = DEFAULT_MAX_ROWS
) -> pd.DataFrame:
    """Run ONE read-only query (``trials_flat`` available) for at most ``timeout`` s and ``max_rows`` rows.

    Binary values come back as hex text (``\\x00ff``, PostgreSQL's form). The frame's ``attrs["truncated"]``
    is True when rows beyond ``max_rows`` were left out.
    QueryError (exit 2) when refused or failing, QueryTimeoutError (exit 1) past the time
    limit; Ctrl-C cancels the query and raises KeyboardInterrupt.
    """
    _check_limits(timeout, max_rows)
    dialect = url_dialect(url)
    statements, masks = scan_sql(sql, dialect)
    if not statements:
        raise QueryError("empty SQL: give one SELECT statement")
    if len(statements) > 1:
        raise QueryError(f"refused: one statement at a time, found {len(statements)} separated by ';'")
    statement, mask = statements[0], masks[0]
    keyword_match = re.match(r"[\s(]*([A-Za-z]+)", mask)
    keyword = keyword_match.group(1).upper() if keyword_match else ""
    if keyword not in _READ_KEYWORDS:
        allowed = ", ".join(sorted(_READ_KEYWORDS))
        got = keyword or statement.strip()[:20]
        raise QueryError(f"refused: only read-only queries ({allowed}) may run, got {got!r}")
    uses_view = re.search(rf"\b{_VIEW_NAME}\b", mask, re.IGNORECASE) is not None
    defines_view = re.search(rf"\b{_VIEW_NAME}[\"`\]]?\s*(\([^)]*\))?\s*AS\s*((NOT\s+)?MATERIALIZED\s*)?\(", mask,
                             re.IGNORECASE) is not None  # the query's own (quoted, materialized or not)
    if uses_view and not defines_view and keyword == "EXPLAIN":
        raise QueryError(f"{_VIEW_NAME} cannot be used with EXPLAIN; EXPLAIN the underlying tables")
    view = (lambda kinds: _with_trials_view(statement, mask, trial_view_sql(kinds, dialect))) if (
        uses_view and not defines_view
    ) else None
    run = _run_postgresql if dialect == "postgresql" else _run_sqlite
    started = time.monotonic()  # the time limit covers waiting for another process's lock while opening too
    try:
        engine = readonly_engine(url, wait=timeout)
    except StorageBusyError:
        raise _timeout_error(timeout) from None
    try:
        try:
            raw = engine.raw_connection()
        except Exception as exc:  # the driver's own errors, wrapped or not
            raise readonly_open_error(url, exc) from None
        try:
            columns, rows = run(raw, url, statement, view, max(0.001, timeout - (time.monotonic() - started)), max_rows)
        except QueryTimeoutError:
            raise _timeout_error(timeout) from None
        finally:
            raw.close()
    finally:
        engine.dispose()
    import pandas as pd
    kept = [tuple(map(_binary_as_hex, row)) for row in rows[:max_rows]]
    frame = pd.DataFrame(kept, columns=unique_names(columns))
    for i, column in enumerate(frame.columns):  # whole numbers with a NULL among them stay whole (not 94.0)
        values = [row[i] for row in kept if row[i] is not None]
        if values and frame[column].dtype.kind == "f" and all(type(v) is int for v in values):
            # from the values themselves: through float64 a number past 2**53 loses its last digits
            frame.isetitem(i, pd.array([row[i] for row in kept], dtype="Int64"))
    frame.attrs["truncated"] = len(rows) > max_rows
    frame.attrs["max_rows"] = max_rows
    return frame


def _binary_as_hex(value: Any) -> Any:
    """A binary value (SQLite's bytes, psycopg2's memoryview) as PostgreSQL's hex text ``\\x00ff``, not a repr."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    return value


def unique_names(columns: list[str]) -> list[str]:
    """Result column names made unique as pandas' CSV reader does: a name seen before gets ``.1``, ``.2``, ...
    (``SELECT * FROM trials t JOIN studies s ON s.study_id = t.study_id`` names study_id twice)."""
    seen: dict[str, int] = {}
    out = []
    for name in columns:
        if name in seen:
            seen[name] += 1
            while f"{name}.{seen[name]}" in columns or f"{name}.{seen[name]}" in out:
                seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


_PARAMS_SQL = "SELECT DISTINCT param_name, distribution_json FROM trial_params"
Rows = tuple[list[str], list[tuple[Any, ...]]]
ViewBuilder = Callable[[dict[str, str]], str] | None


_SQLITE_DENIED_FUNCTIONS = frozenset({"fts3_tokenizer"})  # gives a pointer into the process, or sets one
# the PRAGMAs whose argument names what they describe (a table, an index) and sets nothing: what the table-valued
# functions SELECT ... FROM pragma_table_info('trials') run, argument and all
_SQLITE_DESCRIBING_PRAGMAS = frozenset({"table_info", "table_xinfo", "table_list", "index_info", "index_xinfo",
                                        "index_list", "foreign_key_list", "foreign_key_check", "integrity_check",
                                        "quick_check"})


def _sqlite_authorizer(action: int, arg1: Any, arg2: Any, _db: Any, _source: Any) -> int:
    """Refuse the SQL functions that reach into the process rather than the data, and what a ``mode=ro``
    connection still allows: ATTACH (which creates the file it names) and a PRAGMA that sets a value
    (``query_only = OFF``); one whose argument names what it describes (``pragma_table_info('trials')``) runs."""
    if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and str(arg1).lower() not in _SQLITE_DESCRIBING_PRAGMAS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _run_sqlite(raw: Any, _url: str, statement: str, view: ViewBuilder, timeout: float, max_rows: int) -> Rows:
    """SQLite: one statement on the read-only connection, in a thread stopped at the deadline or on Ctrl-C.

    The query runs in a thread because signals reach only the main thread, and an exception
    raised by a signal handler inside sqlite3's progress callback would be swallowed: the main
    thread waits, and on the deadline or any exception (Ctrl-C, a SIGTERM handler's) sets the
    flag the progress handler checks and calls ``interrupt()``.
    """
    conn = raw.driver_connection
    stop, timed_out = threading.Event(), threading.Event()
    # a lock another process holds is waited for in short steps (SQLite's busy wait ignores interrupt()), the query
    # tried again after each until the deadline or Ctrl-C sets ``stop``
    conn.execute(f"PRAGMA busy_timeout = {int(LOCK_POLL_S * 1000)}")
    # no single value past the result's budget is built at all (randomblob(1e9): "string or blob too big")
    length = conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_RESULT_BYTES)
    conn.set_authorizer(_sqlite_authorizer)
    # a lone surrogate Optuna wrote as JSON (\udc80, from a file name in an error) comes back as Python wrote it
    conn.text_factory = lambda data: data.decode("utf-8", "surrogatepass")

    def work() -> Rows:
        conn.set_progress_handler(lambda: int(stop.is_set()), 1000)
        try:
            while True:
                try:
                    text = statement if view is None else view(param_kinds(conn.execute(_PARAMS_SQL).fetchall()))
                    cursor = conn.execute(text)
                    rows = _fetch_within(cursor.fetchmany, max_rows) if cursor.description else []
                    return [d[0] for d in cursor.description or ()], [tuple(row) for row in rows]
                except sqlite3.OperationalError as exc:
                    if not is_locked(exc) or stop.is_set():
                        raise
        finally:
            conn.set_progress_handler(None, 0)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, length)
            conn.set_authorizer(None)

    def cancel(deadline: bool = False) -> None:
        if deadline:
            timed_out.set()
        stop.set()
        conn.interrupt()

    try:
        return _run_cancellable(work, cancel, timeout)
    except _QueryFailed as failed:  # sqlite3.Error, and ProgrammingError for several statements
        exc = failed.args[0]
        if timed_out.is_set():
            raise _timeout_error(timeout) from None
        if isinstance(exc, QueryError):  # the result's own limits
            raise exc from None
        raise QueryError(_refusal_message(exc)) from None


_OPEN_CURSOR = f"""DO $search$
DECLARE c refcursor := '{_CURSOR}';
BEGIN
  OPEN c NO SCROLL FOR EXECUTE current_setting('{_QUERY_SETTING}');
END
$search$"""


def _ensure_readonly_role(url: str, timeout: float) -> None:
    """Create ``search_readonly`` (NOLOGIN, SELECT on this schema's tables) and let the login use it; best effort.

    Gives up after ``timeout`` s: a GRANT waits for any session holding a lock on a table (an ALTER TABLE
    left open), for as long as that session lives."""
    limit = max(1, int(timeout * 1000))
    engine = sqlalchemy.create_engine(
        with_available_driver(url), poolclass=sqlalchemy.pool.NullPool,
        connect_args={"options": f"-c lock_timeout={limit} -c statement_timeout={limit}"},
    )
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"DO $r$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READONLY_ROLE}')"
                f" THEN CREATE ROLE {READONLY_ROLE} NOLOGIN; END IF; END $r$"
            )
            schema = conn.exec_driver_sql("SELECT quote_ident(current_schema())").scalar()
            conn.exec_driver_sql(f"GRANT {READONLY_ROLE} TO CURRENT_USER")
            conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {READONLY_ROLE}")
            conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {READONLY_ROLE}")
    except Exception:  # noqa: BLE001  no CREATEROLE, not the tables' owner, a racing creator...: run without it
        pass
    finally:
        engine.dispose()


_ROLE_USABLE_SQL = f"""SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = '{READONLY_ROLE}'
  AND pg_has_role(current_user, r.oid, 'MEMBER')
  AND NOT EXISTS (SELECT 1 FROM pg_tables t WHERE t.schemaname = current_schema()
    AND NOT has_table_privilege(r.oid, quote_ident(t.schemaname) || '.' || quote_ident(t.tablename), 'SELECT')))"""


def _run_postgresql(raw: Any, url: str, statement: str, view: ViewBuilder, timeout: float, max_rows: int) -> Rows:
    """PostgreSQL: the text opened as one cursor in a read-only transaction, as ``search_readonly`` when possible."""
    conn = raw.driver_connection
    try:
        cursor = conn.cursor()
        cursor.execute(_ROLE_USABLE_SQL)
        use_role = cursor.fetchone()[0]
        conn.rollback()
        if not use_role:
            _ensure_readonly_role(url, timeout)
            cursor.execute(_ROLE_USABLE_SQL)
            use_role = cursor.fetchone()[0]
            conn.rollback()

        def work() -> Rows:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
            if use_role:
                cursor.execute(f"SET LOCAL ROLE {READONLY_ROLE}")
            text = statement
            if view is not None:
                cursor.execute(_PARAMS_SQL)
                text = view(param_kinds(cursor.fetchall()))
            cursor.execute("SELECT set_config(%s, %s, true)", (_QUERY_SETTING, text))
            cursor.execute(_OPEN_CURSOR)
            def fetch(n: int) -> list[tuple[Any, ...]]:
                cursor.execute(f"FETCH FORWARD {int(n)} FROM {_CURSOR}")
                return cursor.fetchall()

            rows = _fetch_within(fetch, max_rows)
            return [d.name for d in cursor.description], rows

        try:
            return _run_cancellable(work, lambda deadline=False: conn.cancel())
        except _QueryFailed as failed:  # psycopg2.Error
            exc = failed.args[0]
            if getattr(exc, "pgcode", None) == "57014":  # query_canceled: by statement_timeout (Ctrl-C re-raises)
                raise _timeout_error(timeout) from None
            if isinstance(exc, QueryError):  # the result's own limits
                raise exc from None
            raise QueryError(_refusal_message(exc)) from None
    finally:
        conn.rollback()


def _fetch_within(fetch: Callable[[int], Sequence[Any]], max_rows: int) -> list[Any]:
    """Up to ``max_rows + 1`` rows from ``fetch(n)`` (the next n rows, fewer at the end), a chunk at a time; QueryError
    once their text and bytes pass MAX_RESULT_BYTES, before more is fetched."""
    rows: list[Any] = []
    size = 0
    while len(rows) <= max_rows:
        chunk = fetch(min(_FETCH_ROWS, max_rows + 1 - len(rows)))
        if not chunk:
            break
        size += sum(len(v) if isinstance(v, (str, bytes, bytearray, memoryview)) else 8 for row in chunk for v in row)
        if size > MAX_RESULT_BYTES:
            raise QueryError(f"the result passed {MAX_RESULT_BYTES >> 20} MiB within its first "
                             f"{len(rows) + len(chunk)} rows: select fewer rows or columns, or shorter values "
                             f"(substr, length)")
        rows += chunk
    return rows


def _run_cancellable(work: Callable[[], Rows], cancel: Callable[..., None], timeout: float | None = None) -> Rows:
    """Run ``work`` in a thread; ``cancel(deadline=True)`` after ``timeout`` s, ``cancel()`` on any exception here.

    Any exception here is Ctrl-C's KeyboardInterrupt or a signal handler's (e.g. the CLI's for
    SIGTERM): the query is cancelled, its thread waited for, and the exception raised again.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["rows"] = work()
        except BaseException as exc:  # noqa: BLE001  handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="search-query", daemon=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.05)
            if deadline is not None and time.monotonic() > deadline:
                cancel(deadline=True)
                deadline = None
    except BaseException:
        cancel()
        thread.join()
        raise
    if "error" in outcome:
        raise _QueryFailed(outcome["error"])
    return outcome["rows"]


class _QueryFailed(Exception):
    """The query's own error (its ``args[0]``), told apart from an exception raised in the waiting thread."""


__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TIMEOUT_S",
    "QueryTimeoutError",
    "READONLY_ROLE",
    "param_kinds",
    "run_readonly_sql",
    "scan_sql",
    "trial_view_sql",
]
