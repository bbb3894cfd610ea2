"""Issue 9 (hostile audit): read-only SQL enforced by the server, time limits, row caps, categorical values."""
from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg2
import pytest
import sqlalchemy
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import create_trial

import studies.sql
from studies.errors import QueryError
from studies.queries import trials_frame
from studies.sql import READONLY_ROLE, QueryTimeoutError, param_kinds, run_readonly_sql, scan_sql
from studies.store import open_storage, with_available_driver

optuna.logging.set_verbosity(optuna.logging.WARNING)

EXPLOIT = "SELECT 1 AS x$$a$; COMMIT; BEGIN READ WRITE; DELETE FROM trial_values; COMMIT; SELECT 1 AS y$a$"
FOREVER_SQLITE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
ONE_QUERY = "refused: only one read-only query (SELECT, WITH, VALUES, EXPLAIN) may run"
READ_ONLY = "refused: the database is opened read-only"
NOT_AUTHORIZED = "refused: read-only queries may not do that"
DISTRIBUTIONS = {
    "activation": CategoricalDistribution(["relu", "tanh"]),
    "batchnorm": CategoricalDistribution([True, False]),
    "hidden": IntDistribution(16, 256),
    "lr": FloatDistribution(1e-5, 1.0, log=True),
}
PARAMS = [
    {"activation": "tanh", "batchnorm": True, "hidden": 64, "lr": 1e-3},
    {"activation": "relu", "batchnorm": False, "hidden": 200, "lr": 0.02},
    {"activation": "tanh", "batchnorm": False, "hidden": 16, "lr": 0.5},
]


def _build(url: str) -> None:
    """One service study (digits/coarse) with categorical, int and float params, 3 complete trials."""
    study = optuna.create_study(storage=with_available_driver(url), study_name="digits/coarse", direction="maximize")
    for key, value in {"campaign": "digits", "stage": "coarse", "ready": True}.items():
        study.set_user_attr(key, value)
    for i, params in enumerate(PARAMS):
        study.add_trial(create_trial(value=0.5 + 0.1 * i, params=params, distributions=DISTRIBUTIONS))


@pytest.fixture()
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'search.db'}"
    open_storage(url).engine.dispose()
    _build(url)
    return url


@pytest.fixture()
def pg_url(request) -> str:
    """A fresh database on the throwaway server (tests/fixtures_pg.py) with the study of _build."""
    url = request.getfixturevalue("pg_database")
    open_storage(url).engine.dispose()
    _build(url)
    return url


def _count(url: str, table: str = "trial_values") -> int:
    engine = sqlalchemy.create_engine(with_available_driver(url))
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
    finally:
        engine.dispose()


class _AnyKeyword(frozenset):
    def __contains__(self, keyword: object) -> bool:
        return True


def _naive_splitter(monkeypatch) -> None:
    """Take any text as ONE statement of any first keyword, so that only the database stands between it and the
    data."""
    monkeypatch.setattr(studies.sql, "scan_sql", lambda sql, dialect="sqlite": ([sql], [sql]))
    monkeypatch.setattr(studies.sql, "_READ_KEYWORDS", _AnyKeyword())


def _interrupt_after(seconds: float, signum: int = signal.SIGINT) -> threading.Event:
    """``signum`` ``seconds`` after the query's thread has started (set the returned event to call it off): a Ctrl-C
    sent while the connection is still being made can land in a finaliser, where Python drops it, and the query
    then ran until its 600 s limit."""
    stop = threading.Event()

    def send() -> None:
        while not any(t.name == "search-query" for t in threading.enumerate()):
            if stop.wait(0.01):
                return
        if not stop.wait(seconds):
            os.kill(os.getpid(), signum)

    threading.Thread(target=send, daemon=True).start()
    return stop


# --- 1. the database refuses writes, several statements and side effects --------------------


def test_scan_sql_takes_dollars_inside_postgresql_names_as_part_of_the_name() -> None:
    statements, _ = scan_sql(EXPLOIT, "postgresql")
    assert len(statements) == 6
    assert scan_sql("SELECT $a$;$a$", "postgresql")[0] == ["SELECT $a$;$a$"]


def test_postgresql_exploit_is_refused_and_deletes_nothing(pg_url) -> None:
    assert _count(pg_url) == 3
    with pytest.raises(QueryError, match="one statement"):
        run_readonly_sql(pg_url, EXPLOIT)
    assert _count(pg_url) == 3


@pytest.mark.parametrize(
    "sql, refusal",
    [
        (EXPLOIT, f"{ONE_QUERY} (cannot open multi-query plan as cursor)"),
        ("SELECT 1; COMMIT; BEGIN READ WRITE; DELETE FROM trial_values; COMMIT",
         f"{ONE_QUERY} (cannot open multi-query plan as cursor)"),
        ("COMMIT", f"{ONE_QUERY} (cannot open COMMIT query as cursor)"),
        ("DELETE FROM trial_values RETURNING trial_id",
         f"{READ_ONLY} (cannot execute DELETE in a read-only transaction)"),
        ("WITH gone AS (DELETE FROM trial_values RETURNING trial_id) SELECT count(*) FROM gone",
         f"{READ_ONLY} (cannot execute SELECT in a read-only transaction)"),
        ("SELECT set_config('transaction_read_only', 'off', true), count(*) FROM trial_values",
         "SQL failed: transaction read-write mode must be set before any query"),
    ],
)
def test_postgresql_server_alone_refuses_writes(pg_url, monkeypatch, sql, refusal) -> None:
    _naive_splitter(monkeypatch)
    with pytest.raises(QueryError) as refused:
        run_readonly_sql(pg_url, sql)
    assert str(refused.value) == refusal
    assert _count(pg_url) == 3 and _count(pg_url, "trials") == 3


def test_postgresql_query_cannot_kill_other_backends(pg_url) -> None:
    victim = psycopg2.connect(sqlalchemy.engine.make_url(pg_url).render_as_string(hide_password=False)
                              .replace("postgresql+psycopg2://", "postgresql://"))
    try:
        victim_pid = victim.get_backend_pid()
        with pytest.raises(QueryError, match="refused"):
            run_readonly_sql(pg_url, f"SELECT pg_terminate_backend({victim_pid})")
        with victim.cursor() as cursor:  # still alive
            cursor.execute("SELECT 42")
            assert cursor.fetchone() == (42,)
    finally:
        victim.close()
    roles = run_readonly_sql(pg_url, f"SELECT count(*) AS n FROM pg_roles WHERE rolname = '{READONLY_ROLE}'")
    assert roles["n"].tolist() == [1]


def test_sqlite_several_statements_are_refused_by_sqlite(sqlite_url, monkeypatch) -> None:
    _naive_splitter(monkeypatch)
    for sql, refusal in (
        ("SELECT 1; DELETE FROM trial_values", f"{ONE_QUERY} (You can only execute one statement at a time.)"),
        ("DELETE FROM trial_values", f"{READ_ONLY} (attempt to write a readonly database)"),
        ("DROP TABLE trials", f"{READ_ONLY} (attempt to write a readonly database)"),
        ("PRAGMA user_version = 5", f"{NOT_AUTHORIZED} (not authorized)"),
    ):
        with pytest.raises(QueryError) as refused:
            run_readonly_sql(sqlite_url, sql)
        assert str(refused.value) == refusal, sql
    assert _count(sqlite_url) == 3 and _count(sqlite_url, "trials") == 3


def test_sqlite_attach_and_a_pragma_that_sets_a_value_are_refused_by_the_authorizer(sqlite_url, tmp_path,
                                                                                    monkeypatch) -> None:
    """What a mode=ro connection itself allows: ATTACH creates the file it names, query_only can be turned off."""
    _naive_splitter(monkeypatch)
    made = tmp_path / "made.db"
    for sql in (f"ATTACH DATABASE '{made}' AS x", "PRAGMA query_only = OFF", "DETACH DATABASE main"):
        with pytest.raises(QueryError) as refused:
            run_readonly_sql(sqlite_url, sql)
        assert str(refused.value) == f"{NOT_AUTHORIZED} (not authorized)", sql
    assert not made.exists()
    assert run_readonly_sql(sqlite_url, "PRAGMA query_only")["query_only"].tolist() == [1]  # reading one is allowed


def test_sqlite_pragma_functions_describing_a_table_still_answer(sqlite_url) -> None:
    # the authorizer refused every PRAGMA given an argument, these reads among them ("not authorized")
    columns = run_readonly_sql(sqlite_url, "SELECT name FROM pragma_table_info('trial_values') ORDER BY cid")
    assert columns["name"].tolist() == ["trial_value_id", "trial_id", "objective", "value", "value_type"]
    indexes = run_readonly_sql(sqlite_url, "SELECT count(*) AS n FROM pragma_index_list('trial_values')")
    assert indexes["n"].tolist() == [1]
    keys = run_readonly_sql(sqlite_url, "SELECT \"table\" FROM pragma_foreign_key_list('trial_values')")
    assert keys["table"].tolist() == ["trials"]
    with pytest.raises(QueryError) as refused:  # one that writes, given its argument the same way
        run_readonly_sql(sqlite_url, "SELECT * FROM pragma_optimize(65538)")
    assert str(refused.value) == f"{NOT_AUTHORIZED} (not authorized)"


# --- 2. time limits, Ctrl-C and row caps ------------------------------------------------------


def test_sqlite_endless_query_stops_at_its_time_limit(sqlite_url) -> None:
    with pytest.raises(QueryTimeoutError, match="time limit of 0.3 s") as info:
        run_readonly_sql(sqlite_url, FOREVER_SQLITE, timeout=0.3)
    assert info.value.exit_code == 1 and "\n" not in str(info.value)


def test_sqlite_ctrl_c_cancels_the_query(sqlite_url) -> None:
    stop = _interrupt_after(0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_readonly_sql(sqlite_url, FOREVER_SQLITE, timeout=600)
    finally:
        stop.set()
    assert run_readonly_sql(sqlite_url, "SELECT count(*) AS n FROM trials")["n"].tolist() == [3]


@contextlib.contextmanager
def _locked_rollback_journal(url: str) -> Iterator[str]:
    """The URL of a copy of the database in rollback-journal mode (plain Optuna's), another connection holding its
    exclusive lock."""
    path = Path(url.removeprefix("sqlite:///")).with_name("journal.db")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as source:
            source.backup(holder)
        holder.execute("PRAGMA journal_mode = DELETE")
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield f"sqlite:///{path}"
        finally:
            holder.execute("ROLLBACK")


def test_sqlite_time_limit_covers_waiting_for_a_lock_while_opening(sqlite_url) -> None:
    started = time.monotonic()
    with _locked_rollback_journal(sqlite_url) as url, pytest.raises(QueryTimeoutError, match="limit of 0.5 s") as info:
        run_readonly_sql(url, "SELECT 1", timeout=0.5)
    # it waited the busy timeout (60 s); 15 s leaves a loaded machine room
    assert info.value.exit_code == 1 and time.monotonic() - started < 15


def test_sqlite_ctrl_c_while_waiting_for_a_lock_stops_at_once(sqlite_url, monkeypatch) -> None:
    monkeypatch.setattr(studies.sql, "_run_sqlite", lambda *args: pytest.fail("the query ran"))
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    with _locked_rollback_journal(sqlite_url) as url, pytest.raises(KeyboardInterrupt):
        timer.start()
        run_readonly_sql(url, "SELECT 1", timeout=30)
    assert time.monotonic() - started < 15  # it was acted on once the lock was released, 30 s later


def test_postgresql_sleep_stops_at_its_time_limit(pg_url) -> None:
    with pytest.raises(QueryTimeoutError) as info:
        run_readonly_sql(pg_url, "SELECT pg_sleep(100000)", timeout=0.3)
    assert info.value.exit_code == 1


def test_postgresql_ctrl_c_cancels_the_query_on_the_server(pg_url) -> None:
    stop = _interrupt_after(0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_readonly_sql(pg_url, "SELECT pg_sleep(100000)", timeout=600)
    finally:
        stop.set()
    sleeping = run_readonly_sql(pg_url, "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
    assert sleeping["n"].tolist() == [0]


@pytest.mark.parametrize(
    "backend, sql",
    [
        ("sqlite", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"),
        ("postgresql", "SELECT x FROM generate_series(1, 100000) AS x"),
    ],
)
def test_rows_are_capped_and_truncation_reported(request, backend, sql) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    frame = run_readonly_sql(url, sql, max_rows=50)
    assert frame["x"].tolist() == list(range(1, 51))
    assert frame.attrs["truncated"] is True
    whole = run_readonly_sql(url, "SELECT count(*) AS n FROM trials", max_rows=1)
    assert whole["n"].tolist() == [3] and whole.attrs["truncated"] is False


@pytest.mark.parametrize(
    "backend, sql",
    [
        ("sqlite", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x, printf('%.100c', 'a') "
                   "AS t FROM c"),
        ("postgresql", "SELECT x, repeat('a', 100) AS t FROM generate_series(1, 100000) AS x"),
    ],
)
def test_a_result_past_its_byte_budget_is_refused_before_it_is_all_fetched(request, monkeypatch, backend, sql) -> None:
    # only rows were capped: 10,000 rows of randomblob(1e9) ran the client out of memory
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    monkeypatch.setattr(studies.sql, "MAX_RESULT_BYTES", 20_000)
    monkeypatch.setattr(studies.sql, "_FETCH_ROWS", 50)
    with pytest.raises(QueryError) as refused:
        run_readonly_sql(url, sql, max_rows=1000)
    # 50 rows of 108 bytes a chunk: the fourth chunk passes 20,000
    assert str(refused.value) == ("the result passed 0 MiB within its first 200 rows: select fewer rows or columns, "
                                  "or shorter values (substr, length)")
    assert run_readonly_sql(url, sql, max_rows=150)["t"].str.len().tolist() == [100] * 150


def test_sqlite_refuses_the_function_that_gives_a_pointer_into_the_process(sqlite_url) -> None:
    # SELECT hex(fts3_tokenizer('simple')) gave the address of SQLite's tokenizer (and with a second argument sets it)
    for sql in ("SELECT hex(fts3_tokenizer('simple')) AS p", "SELECT fts3_tokenizer('simple', x'4141414141414141')"):
        with pytest.raises(QueryError) as refused:
            run_readonly_sql(sqlite_url, sql)
        assert str(refused.value) == ("refused: read-only queries may not do that (not authorized to use function: "
                                      "fts3_tokenizer)")
    assert run_readonly_sql(sqlite_url, "SELECT count(*) AS n FROM trials")["n"].tolist() == [3]


def test_sqlite_builds_no_value_past_the_byte_budget(sqlite_url, monkeypatch) -> None:
    monkeypatch.setattr(studies.sql, "MAX_RESULT_BYTES", 1 << 20)
    with pytest.raises(QueryError, match=r"^SQL failed: string or blob too big \(a value may hold at most 1 MiB\)$"):
        run_readonly_sql(sqlite_url, "SELECT randomblob(2000000)")
    assert run_readonly_sql(sqlite_url, "SELECT length(randomblob(1000)) AS n")["n"].tolist() == [1000]


@pytest.mark.parametrize("kwargs, refusal", [
    ({"timeout": 0}, "timeout must be a number of seconds > 0, got 0"),
    ({"timeout": -1}, "timeout must be a number of seconds > 0, got -1"),
    ({"max_rows": 0}, "max_rows must be a positive integer, got 0"),
    ({"max_rows": True}, "max_rows must be a positive integer, got True"),
])
def test_bad_limits_are_refused(sqlite_url, kwargs, refusal) -> None:
    with pytest.raises(QueryError) as refused:
        run_readonly_sql(sqlite_url, "SELECT 1", **kwargs)
    assert str(refused.value) == refusal


# --- 7. categorical params as their values -----------------------------------------------------


def test_param_kinds_from_distributions() -> None:
    rows = [(name, optuna.distributions.distribution_to_json(d)) for name, d in DISTRIBUTIONS.items()]
    assert param_kinds(rows) == {"activation": "text", "batchnorm": "bool", "hidden": "int", "lr": "float"}
    ints_and_floats = [("width", optuna.distributions.distribution_to_json(IntDistribution(1, 100))),
                       ("width", optuna.distributions.distribution_to_json(FloatDistribution(1, 100)))]
    assert param_kinds(ints_and_floats) == {"width": "float"}
    mixed = [("width", optuna.distributions.distribution_to_json(CategoricalDistribution([32, 64]))),
             ("width", optuna.distributions.distribution_to_json(FloatDistribution(1, 100)))]
    assert param_kinds(mixed) == {"width": "number"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trials_flat_shows_categorical_values(request, backend) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    flat = run_readonly_sql(
        url, "SELECT param_activation, param_batchnorm, param_hidden, param_lr FROM trials_flat ORDER BY number"
    )
    assert flat["param_activation"].tolist() == ["tanh", "relu", "tanh"]
    assert [bool(v) for v in flat["param_batchnorm"]] == [True, False, False]
    assert flat["param_hidden"].tolist() == [64, 200, 16]
    assert flat["param_lr"].tolist() == pytest.approx([1e-3, 0.02, 0.5])
    chosen = run_readonly_sql(url, "SELECT count(*) AS n FROM trials_flat WHERE param_activation = 'tanh'")
    assert chosen["n"].tolist() == [2]
    storage = open_storage(url, readonly=True)
    try:
        frame = trials_frame(storage)
    finally:
        storage.engine.dispose()
    assert frame["param_activation"].tolist() == ["tanh", "relu", "tanh"]
    assert frame["param_batchnorm"].tolist() == [True, False, False]
    assert frame["param_hidden"].tolist() == [64, 200, 16]


def test_sqlite_trials_flat_booleans_are_one_and_zero(sqlite_url) -> None:
    flat = run_readonly_sql(sqlite_url, "SELECT param_batchnorm FROM trials_flat ORDER BY number")
    assert flat["param_batchnorm"].tolist() == [1, 0, 0]


def test_sqlite_reading_leaves_the_file_unchanged(sqlite_url) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = path.read_bytes()
    run_readonly_sql(sqlite_url, "SELECT * FROM trials_flat")
    assert path.read_bytes() == before


def test_unreachable_server_is_one_storage_error_line() -> None:
    from studies.errors import StorageError

    with pytest.raises(StorageError, match="cannot reach the database server") as info:
        run_readonly_sql("postgresql://searcher:Sup3rS3cret@127.0.0.1:1/search?connect_timeout=3", "SELECT 1")
    assert "Sup3rS3cret" not in str(info.value) and "\n" not in str(info.value)


class _Terminated(Exception):
    """What a CLI's SIGTERM handler might raise."""


@contextlib.contextmanager
def _sigterm_raises_after(delay: float) -> Iterator[None]:
    """A SIGTERM to this process after ``delay`` s, whose handler raises _Terminated (as the CLI's does)."""
    def on_term(_signum, _frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, on_term)
    stop = _interrupt_after(delay, signal.SIGTERM)
    try:
        yield
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, previous)


def test_sqlite_sigterm_handler_exception_stops_the_query(sqlite_url) -> None:
    with _sigterm_raises_after(0.3), pytest.raises(_Terminated):
        run_readonly_sql(sqlite_url, FOREVER_SQLITE, timeout=600)


def test_postgresql_sigterm_handler_exception_cancels_the_query(pg_url) -> None:
    with _sigterm_raises_after(0.5), pytest.raises(_Terminated):
        run_readonly_sql(pg_url, "SELECT pg_sleep(100000)", timeout=600)
    sleeping = run_readonly_sql(pg_url, "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
    assert sleeping["n"].tolist() == [0]


# --- 8. audit 2: setting up the read-only role obeys the time limit; binary values ---------------


def test_postgresql_role_setup_blocked_by_a_lock_gives_up_at_the_time_limit(pg_url) -> None:
    """A GRANT that waits on another session's lock (here an ALTER TABLE left open) once kept the query
    waiting for as long as that session lived, whatever --timeout said."""
    run_readonly_sql(pg_url, "SELECT 1")  # the role exists and may read this database's tables
    dsn = sqlalchemy.engine.make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    holder = psycopg2.connect(dsn)
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"REVOKE SELECT ON trials FROM {READONLY_ROLE}")  # so the next query grants it again
            holder.commit()
            cursor.execute("ALTER TABLE trials ADD COLUMN left_open INTEGER")  # its transaction stays open
        outcome: dict[str, object] = {}
        worker = threading.Thread(
            target=lambda: outcome.update(frame=run_readonly_sql(pg_url, "SELECT 1 AS one", timeout=1)), daemon=True)
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), "the query waited for the other session's lock past its time limit"
        assert outcome["frame"]["one"].tolist() == [1]
    finally:
        holder.rollback()
        holder.close()
    assert _count(pg_url) == 3 and _count(pg_url, "trials") == 3


@pytest.mark.parametrize(
    "backend, sql",
    [("sqlite", "SELECT x'00ff41' AS b, NULL AS n"), ("postgresql", "SELECT '\\x00ff41'::bytea AS b, NULL AS n")],
)
def test_binary_values_are_shown_as_hex_text(request, backend, sql) -> None:
    """PostgreSQL's bytea once came back as a memoryview ('<memory at 0x...>' in every output format)."""
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    frame = run_readonly_sql(url, sql)
    assert frame["b"].tolist() == ["\\x00ff41"]
    assert frame["n"].tolist() == [None]


def test_sqlite_file_uri_is_refused_naming_what_to_write_and_creates_nothing(tmp_path) -> None:
    """A file: URI was refused as 'not an in-memory database', which it is not."""
    from studies.errors import StorageError

    missing = tmp_path / "missing.db"
    with pytest.raises(StorageError) as info:
        run_readonly_sql(f"sqlite:///file:{missing}?mode=rwc&uri=true", "SELECT 1")
    assert str(info.value) == (f"storage sqlite:///file:{missing}?mode=rwc&uri=true: read-only SQL takes a "
                               f"file path, not a file: URI; write sqlite:///{missing}")
    assert not missing.exists()


def test_postgresql_database_that_is_not_a_study_database_is_refused_and_left_alone(pg_database) -> None:
    """A query on another application's database once ran, and first granted search_readonly SELECT on its tables."""
    from studies.errors import StorageError

    dsn = sqlalchemy.engine.make_url(pg_database).set(drivername="postgresql").render_as_string(hide_password=False)
    with contextlib.closing(psycopg2.connect(dsn)) as other, other.cursor() as cursor:
        cursor.execute("CREATE TABLE secrets (x TEXT)")
        other.commit()
    with pytest.raises(StorageError) as info:
        run_readonly_sql(pg_database, "SELECT * FROM secrets")
    assert str(info.value) == f"no Optuna study database at storage {pg_database}"
    with contextlib.closing(psycopg2.connect(dsn)) as other, other.cursor() as cursor:
        cursor.execute("SELECT relacl FROM pg_class WHERE relname = 'secrets'")
        assert cursor.fetchone() == (None,)


@pytest.mark.parametrize("readonly", [True, False])
def test_storage_refuses_a_file_uri_and_creates_nothing(tmp_path, readonly) -> None:
    """`search studies --storage sqlite:///file:/dir/new.db?uri=true` made an empty new.db, then failed on its tables."""
    from studies.errors import StorageError
    from studies.store import open_storage

    missing = tmp_path / "new.db"
    with pytest.raises(StorageError) as info:
        open_storage(f"sqlite:///file:{missing}?uri=true", readonly=readonly)
    assert str(info.value) == (f"storage sqlite:///file:{missing}?uri=true takes a file path, not a file: URI; "
                               f"write sqlite:///{missing}")
    assert list(tmp_path.iterdir()) == []


def test_whole_numbers_with_a_null_among_them_keep_every_digit(sqlite_url) -> None:
    """A column of whole numbers with a NULL went through float64 on its way to Int64: 2**53 + 1 came back 2**53."""
    frame = run_readonly_sql(sqlite_url, "SELECT 9007199254740993 AS big UNION ALL SELECT NULL")
    assert str(frame["big"].dtype) == "Int64"
    assert frame["big"].tolist()[0] == 9007199254740993 and frame["big"].isna().tolist() == [False, True]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trials_flat_gives_text_attributes_as_written_not_as_json_escapes(request, backend) -> None:
    # Optuna stores attributes as JSON with non-ASCII characters escaped: "caf\u00e9"
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    campaign, reason = 'café "q" \\x 😀', "error: OSError: cannot open données/é.png \\ tab\there"
    study = optuna.create_study(storage=with_available_driver(url), study_name=f"{campaign}/coarse",
                                direction="maximize")
    for key, value in {"campaign": campaign, "stage": "coarse", "ready": True}.items():
        study.set_user_attr(key, value)
    odd = ["\x00", "\udc80", "\ud83d"]  # JSON escapes a text cannot hold (PostgreSQL: lone surrogates): as stored
    for stop_reason in [reason, *odd]:
        study.add_trial(create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"stop_reason": stop_reason}))
    study.add_trial(create_trial(state=optuna.trial.TrialState.FAIL))
    engine = sqlalchemy.create_engine(with_available_driver(url))
    with engine.begin() as conn:  # written by other code than Optuna's: not JSON
        conn.exec_driver_sql("INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                             "SELECT max(trial_id), 'stop_reason', '\\u0000' FROM trials")
    engine.dispose()
    flat = run_readonly_sql(url, "SELECT campaign, stop_reason FROM trials_flat WHERE campaign <> 'digits' "
                                 "ORDER BY number")
    assert flat["campaign"].tolist() == [campaign] * 5
    stored = ['"\\u0000"', '"\\udc80"', '"\\ud83d"', "\\u0000"]  # the last: not a JSON string at all
    assert flat["stop_reason"].tolist() == [reason, *(stored if backend == "postgresql" else
                                                      [stored[0], "\udc80", "\ud83d", stored[3]])]
    chosen = run_readonly_sql(url, f"SELECT count(*) AS n FROM trials_flat WHERE campaign = '{campaign}'")
    assert chosen["n"].tolist() == [5]
