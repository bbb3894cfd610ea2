"""Storage URLs and opening Optuna's RDB storage safely (SQLite with WAL, PostgreSQL for many machines)."""
from __future__ import annotations

import functools
import importlib.util
import logging
import math
import os
import random
import re
import secrets
import stat
import time
import warnings
import weakref
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import optuna
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from studies import optuna_rdb
from studies.budget import RetryStaleTrialOnce
from studies.errors import EmptyDatabaseError, StorageBusyError, StorageError

DEFAULT_STORAGE = "sqlite:///search.db"
STORAGE_ENV = "SEARCH_STORAGE"
SQLITE_BUSY_TIMEOUT_S = 60
# the files SQLite keeps beside a database ``path`` as ``path`` + suffix: its write-ahead log, the log's index, its
# rollback journal; SQLite reads them as that database's own
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
# Opening a SQLite file waits for another process's lock in steps this long: SQLite's own busy wait ignores signals
# and sqlite3's interrupt(), so a Ctrl-C (and a query's --timeout) is acted on between the steps
LOCK_POLL_S = 0.1
# PRAGMA synchronous of writing SQLite connections: NORMAL (WAL syncs at checkpoints, not at each
# commit; a power loss can lose the last commits, never consistency) or FULL (a sync per commit)
SQLITE_SYNC_ENV = "SEARCH_SQLITE_SYNCHRONOUS"
_SQLITE_HEADER = b"SQLite format 3\x00"
# Seconds libpq waits to connect to a PostgreSQL server (unless the URL gives ?connect_timeout=)
PG_CONNECT_TIMEOUT_S = 10
_PG_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's error code of a statement that gave up waiting for a lock
# A writing engine's pooled server connection idle longer than this is pinged before it is used again
PING_IDLE_SECONDS = 1.0
# A fresh database raced by several processes can see "table ... already exists" from
# create_all, or a duplicate alembic_version row (IntegrityError) from Optuna stamping the
# schema version, in the loser; trying again finds them and goes on. create_all makes the tables
# one by one, so with several racers each try may lose on another table: try up to once per table.
_OPEN_ATTEMPTS = 20
# The pool logs the errors it recovers from, e.g. "Error closing cursor" with a traceback when Ctrl-C cut a
# query and the connection was closed under the cursor; with no logging configured Python would print them on
# stderr. A handler here keeps them for whoever configures logging, off a terminal that did not ask for them.
logging.getLogger("sqlalchemy.pool").addHandler(logging.NullHandler())


def resolve_storage_url(url: str | None) -> str:
    """The storage URL to use: the explicit one, else $SEARCH_STORAGE, else sqlite:///search.db."""
    if url:
        return url
    return os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


# user:password@ after the scheme: the user up to ":" or "/", the password up to the last "@" before the arguments (a
# password holding an "@" not written %40 is refused, and none of it shown; SQLAlchemy ends it at the first "@")
_URL_PASSWORD = re.compile(r"(://[^:/]*:)[^?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL as written with its password replaced by ``***``, for every message that shows it.

    Not SQLAlchemy's rendering, which escapes a SQLite path's colons (sqlite:///:memory: as sqlite:///%3Amemory%3A).
    """
    masked = _URL_PASSWORD.sub(r"\1***@", str(url), count=1)
    return _QUERY_PASSWORD.sub(r"\1***", masked)  # libpq's ?password= too


# the port of a server URL where SQLAlchemy's make_url finds it: after user:password@ and the host (IPv6 in brackets)
_URL_PORT = re.compile(r"[\w+]+://(?:[^:/]*(?::[^@]*)?@)?(?:(?:\[[^/?]+\]|[^/:?]+)?(?::(?P<port>[^/?]*))?)?")


def _parse_url(url: str) -> URL:
    found = _URL_PORT.match(url)
    port = found["port"] if found else None
    if port is not None and not (re.fullmatch(r"[0-9]+", port) and 1 <= int(port) <= 65535):
        # SQLAlchemy's int() said "invalid literal for int() with base 10: 'x'", and read a port of other scripts'
        # digits (:５４３２) as that number
        raise StorageError(f"invalid storage URL {mask_url(url)!r}: its port must be a number from 1 to 65535 (digits "
                           f"0-9), got {port!r}")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        if "://" not in url and "@" not in url:  # a file name where a URL belongs, e.g. search.db or sqlite:search.db
            path = url[len("sqlite:"):] if url.lower().startswith("sqlite:") else url
            raise StorageError(f"invalid storage URL {url!r}: not a database URL; write sqlite:///{path}") from None
        raise StorageError(f"invalid storage URL {mask_url(url)!r}: {exc}") from None
    if parsed.host and "@" in parsed.host:  # the host SQLAlchemy read began with the rest of the password
        raise StorageError(f"invalid storage URL {mask_url(url)!r}: an '@' in its password is written %40")
    if parsed.drivername.split("+")[0] == "postgres":  # Heroku's and libpq's spelling; SQLAlchemy has no such dialect
        raise StorageError(f"invalid storage URL {mask_url(url)!r}: write postgresql://, not postgres://")
    values = [v for value in parsed.query.values() for v in ((value,) if isinstance(value, str) else value)]
    if any("\x00" in part for part in (parsed.username, parsed.password, parsed.host, parsed.database, *values)
           if part):  # os.stat and libpq raised ValueError, a traceback
        raise StorageError(f"invalid storage URL {mask_url(url)!r}: it holds a NUL character (%00), which no part "
                           f"of a database URL may hold")
    if parsed.get_backend_name() == "sqlite" and "?" in url and not parsed.query:
        # SQLAlchemy drops "?x.db" (no "="): sqlite:///run?2.db would quietly be the database "run"
        raise StorageError(f"invalid storage URL {url!r}: a '?' starts URL arguments; write %3F for a '?' "
                           f"in a file name")
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_url_args(url, parsed)
        unknown = sorted(set(parsed.query) - set(_SQLITE_URL_ARGS))  # SQLAlchemy would warn and drop them
        database = parsed.database or ""
        if unknown and not sqlalchemy.util.asbool(parsed.query.get("uri", False)):
            raise StorageError(f"invalid storage URL {mask_url(url)!r}: SQLite takes no ?{unknown[0]}=")
        if unknown and not database.startswith("file:") and parsed.query.get("mode") != "memory":
            # SQLite's own arguments beside a path: every check and read went to the file named, the stage's writes
            # to another one, named with them ("search.db?mode=ro"), which no later command read
            raise StorageError(f"invalid storage URL {mask_url(url)!r}: SQLite's own URI arguments (?{unknown[0]}=) "
                               f"are not taken with a file path; give sqlite:///{database}")
    return parsed


def _seconds(text: str) -> float:
    """``text`` as a number of seconds to wait; ValueError for one that is not finite or is below 0
    (sqlite3.connect took nan, -5 and inf without a word)."""
    seconds = float(text)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(text)
    return seconds


# the ?arguments SQLAlchemy passes to sqlite3.connect (others need uri=true and then belong to SQLite's own URI), and
# what each must be with the reader that checks it (None: any text)
_SQLITE_URL_ARGS = {"timeout": ("a finite number of seconds >= 0", _seconds), "isolation_level": None,
                    "detect_types": ("a whole number", int),
                    "check_same_thread": ("true or false", sqlalchemy.util.asbool),
                    "cached_statements": ("a whole number", int), "uri": ("true or false", sqlalchemy.util.asbool)}


def _check_sqlite_url_args(url: str, parsed: URL) -> None:
    """StorageError naming a SQLite URL argument whose value sqlite3.connect cannot take (``?uri=maybe`` ended in a
    traceback, ``?timeout=abc`` in "could not convert string to float")."""
    for key, check in _SQLITE_URL_ARGS.items():
        value = parsed.query.get(key)
        if value is None or check is None:
            continue
        want, read = check
        try:
            if not isinstance(value, str):
                raise ValueError("given twice")
            read(value)
        except ValueError:
            raise StorageError(f"invalid storage URL {mask_url(url)!r}: ?{key}= must be {want}, got "
                               f"{value if isinstance(value, str) else '&'.join(value)!r}") from None


def sqlite_path(url: str) -> Path | None:
    """The database file of a file-backed SQLite URL, or None (not SQLite, or in memory)."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def with_available_driver(url: str) -> str:
    """The URL with an installed driver: SQLAlchemy 2.1 maps bare ``postgresql://`` to psycopg 3,
    so fall back to psycopg2 when only psycopg2 is installed. A PostgreSQL URL also gets libpq's
    ``connect_timeout`` (PG_CONNECT_TIMEOUT_S) unless it names one: without it a host that accepts the
    connection and never answers (a firewall, a stopped VM) leaves every command waiting forever."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    if parsed.drivername == "postgresql" and not _module_available("psycopg") and _module_available("psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(PG_CONNECT_TIMEOUT_S)})
    return parsed.render_as_string(hide_password=False)


def url_dialect(url: str) -> str:
    """The SQLAlchemy backend name of a URL: sqlite, postgresql, mysql..."""
    return _parse_url(url).get_backend_name()


@functools.cache
def _optuna_tables() -> set[str]:
    """Names of the tables of Optuna's RDB storage (and alembic's version table)."""
    return optuna_rdb.optuna_tables()


def _is_in_memory_sqlite(url: str) -> bool:
    """True for ``sqlite://``, ``sqlite:///:memory:`` and ``mode=memory`` URIs: gone when the command ends."""
    parsed = _parse_url(url)
    database = parsed.database or ""
    return parsed.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or "mode=memory" in database or parsed.query.get("mode") == "memory"
    )


def _refuse_file_uri(url: str, where: str) -> None:
    """StorageError for a SQLite ``file:`` URI (not in memory): its own ``mode=`` would decide whether the file may be
    written or created, past every check a path gets (a reading command made an empty file); names the URL to write."""
    database = _parse_url(url).database or ""
    if database.startswith("file:") and not _is_in_memory_sqlite(url) and ":memory:" not in database:
        named = database.removeprefix("file:").removeprefix("//localhost").removeprefix("//")
        raise StorageError(f"{where} takes a file path, not a file: URI; write sqlite:///{named}")


_T = TypeVar("_T")


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" (another process holds the lock) and "database table is locked":
    the error a read waits out, tried again (``_read_sqlite``, a query of ``studies.sql``)."""
    return isinstance(exc, sqlite3.OperationalError) and "is locked" in str(exc)


def _unreadable(message: str, exc: BaseException) -> StorageError:
    """StorageError ``message: why`` for a SQLite file that could not be read; StorageBusyError (exit 1) for a lock
    held past the wait, which the same command gets past once it is released."""
    error = StorageBusyError if is_locked(exc) else StorageError
    return error(f"{message}: {describe_storage_error(exc)}")


def _wait_deadline(deadline: float | None) -> float:
    return time.monotonic() + SQLITE_BUSY_TIMEOUT_S if deadline is None else deadline


def _read_sqlite(uri: str, read: Callable[[sqlite3.Connection], _T], deadline: float | None = None) -> _T:
    """``read(a connection to uri)``, tried again while another process holds the lock, until ``deadline``
    (``time.monotonic()``; default SQLITE_BUSY_TIMEOUT_S from now), then its "database is locked" raised."""
    deadline = _wait_deadline(deadline)
    while True:
        conn = sqlite3.connect(uri, uri=True, timeout=LOCK_POLL_S)
        try:
            return read(conn)
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or time.monotonic() >= deadline:
                raise
        finally:
            conn.close()


# SQLite files read in this process that had no -wal and no -shm beside them when first read (see sqlite_read_uri)
_READ_WITHOUT_SIDE_FILES: set[Path] = set()


def tidy_read_side_files() -> None:
    """Remove the empty ``-wal`` and its ``-shm`` that reading a SQLite file in WAL mode made beside it, where neither
    was there when this process first read it: the last connection to close removes them, which a read-only one
    cannot do (a read command left them behind). A read-write connection that reads the schema and closes does it
    as SQLite does it, only where no other connection, of any process, has the file open, and writes nothing into
    it while the ``-wal`` holds no commit; a ``-wal`` that holds one (a writer's, since) is left to its writer."""
    while _READ_WITHOUT_SIDE_FILES:
        path = _READ_WITHOUT_SIDE_FILES.pop()
        try:
            if (os.path.getsize(f"{path}-wal") or not os.access(path, os.W_OK)
                    or not os.access(path.parent if str(path.parent) else ".", os.W_OK)):
                continue
            conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=rw", uri=True, timeout=0)
            try:
                conn.execute("PRAGMA query_only = ON")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                conn.close()
        except (OSError, sqlite3.Error):  # gone, or locked by another process: left as it is
            continue


def sqlite_read_uri(path: Path, deadline: float | None = None) -> str:
    """A URI that reads ``path`` without ever writing or taking a lock that blocks a writer.

    ``mode=ro`` normally. A WAL database needs its ``-shm`` file, which SQLite cannot create in
    a read-only folder: there, when no ``-wal`` file holds unmerged commits, the file is opened
    ``immutable=1`` (no locks, no ``-shm``; correct because nobody can write in that folder
    either). A read-only folder beside a non-empty ``-wal`` without its ``-shm`` is refused.
    A lock another process holds is waited for until ``deadline`` (see ``_read_sqlite``): StorageBusyError.
    """
    if not any(os.path.lexists(f"{path}{suffix}") for suffix in ("-wal", "-shm")):
        _READ_WITHOUT_SIDE_FILES.add(path)  # what reading it makes there is removed when the command ends
    base = f"file:{quote(str(path.resolve()))}"
    try:
        _read_sqlite(f"{base}?mode=ro", lambda conn: conn.execute("SELECT count(*) FROM sqlite_master").fetchone(),
                     deadline)
        return f"{base}?mode=ro"
    except sqlite3.OperationalError as exc:
        wal = Path(f"{path}-wal")
        if is_locked(exc) or os.access(path.parent, os.W_OK) or (wal.exists() and wal.stat().st_size > 0):
            raise _unreadable(f"cannot read {str(path)!r}", exc) from None
        return f"{base}?immutable=1"


def _read_sqlite_layout(path: Path, writable: bool = False,
                        deadline: float | None = None) -> tuple[set[str], str | None]:
    """(table names, alembic revision or None) read through a read-only connection, or (``writable``, for a
    command that will write anyway) a read-write one, which can recover the WAL index a killed writer left."""
    deadline = _wait_deadline(deadline)
    if writable:
        uri = f"file:{quote(str(path.resolve()))}"
    else:
        uri = sqlite_read_uri(path, deadline) if path.stat().st_size else f"file:{quote(str(path.resolve()))}?mode=ro"

    def read(conn: sqlite3.Connection) -> tuple[set[str], str | None]:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        revision = None
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        return tables, revision

    return _read_sqlite(uri, read, deadline)


def _check_schema(revision: str | None, where: str) -> None:
    """Refuse a schema this Optuna cannot use, before anything is written."""
    if revision is None:
        return
    head, known = optuna_rdb.schema_revisions()
    if revision == head:
        return
    if revision in known:
        raise StorageError(
            f"{where} has an older Optuna schema ({revision}, this Optuna uses {head}): "
            f"upgrade it with `optuna storage upgrade --storage URL` after a backup"
        )
    raise StorageError(
        f"{where} has a newer or unknown Optuna schema ({revision}, this Optuna "
        f"{optuna.__version__} knows up to {head}): use a newer optuna; nothing was changed"
    )


_HEADER_FDS: dict[tuple[int, int], int] = {}


def _read_header(path: Path) -> bytes:
    """The first 16 bytes of ``path``, through a descriptor kept open for the life of the process.

    Closing ANY descriptor of a SQLite file drops every POSIX lock this process holds on it,
    including those of its pooled connections; another process then believes it is alone and
    deletes the WAL under them (https://www.sqlite.org/howtocorrupt.html, section 2.2).
    """
    st = os.stat(path)
    key = (st.st_dev, st.st_ino)
    if key not in _HEADER_FDS:
        _HEADER_FDS[key] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return os.pread(_HEADER_FDS[key], len(_SQLITE_HEADER), 0)


def _refuse_name_without_room_for_a_log(path: Path, folder: Path, where: str) -> None:
    """StorageError where the folder's file names are too short for ``path``'s name with SQLite's ``-journal``
    after it: every write makes one, and failed (unable to open database file) after the database was made."""
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    size = len(os.fsencode(path.name))
    if size + len("-journal") > longest:
        raise StorageError(f"{where}: its file name is {size} bytes long, and the log SQLite writes beside it (the "
                           f"name with '-journal' added) would pass the {longest} bytes a file name may have there: "
                           f"use a name of at most {longest - len('-journal')} bytes")


def _check_sqlite_file(path: Path, create: bool, where: str, deadline: float | None = None) -> None:
    """All checks on a SQLite file that must pass before Optuna may touch it; a lock is waited for until
    ``deadline`` (see ``_read_sqlite``)."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # no database yet, or no such folder: said below
    except OSError as exc:  # a name longer than the file system takes, a loop of links
        raise StorageError(f"{where}: {str(path)!r}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise StorageError(f"{where}: folder {str(folder)!r} does not exist")
    if create:
        _refuse_name_without_room_for_a_log(path, folder, where)
    if not path.exists():
        if not create:
            raise StorageError(f"no database at {str(path)!r} ({where}): search coarse or search auto makes one; a "
                               f"database made elsewhere is read from its folder, or with --storage")
        if not os.access(folder, os.W_OK):
            raise StorageError(f"{where}: cannot create a database in read-only folder {str(folder)!r}")
        _refuse_orphaned_journal(path, where)
        return
    if path.is_dir():
        raise StorageError(f"{where}: {str(path)!r} is a folder, not a database file")
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would hang the open, a device is no database
        raise StorageError(f"{where}: {str(path)!r} is not a regular file, not a database file")
    if not os.access(path, os.R_OK):
        raise StorageError(f"{where}: {str(path)!r} is not readable")
    try:
        header = _read_header(path)
    except OSError as exc:  # e.g. /proc/self/mem: a "regular" file that cannot be read
        raise StorageError(f"{where}: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if not header and path.stat().st_size == 0 and Path("/proc") in path.resolve().parents:
        raise StorageError(f"{where}: {str(path)!r} is a /proc file, not a database file")
    if not header:
        _refuse_orphaned_journal(path, where)
    if header and header != _SQLITE_HEADER:
        raise StorageError(f"{where}: {str(path)!r} is not a SQLite database")
    if create and not (os.access(path, os.W_OK) and os.access(folder, os.W_OK)):
        raise StorageError(
            f"{where}: {str(path)!r} is read-only (the file and its folder must be writable)"
        )
    tables: set[str] = set()
    revision = None
    if header:  # an empty file is a valid empty SQLite database
        try:
            tables, revision = _read_sqlite_layout(path, writable=create, deadline=deadline)
        except sqlite3.DatabaseError as exc:
            raise _unreadable(f"{where}: cannot read {str(path)!r}", exc) from None
    if not tables and not create:
        raise StorageError(f"no database at {str(path)!r} ({where}): the file is empty")
    # only Optuna's tables but not yet version_info: another process is creating them right now
    being_created = create and tables <= _optuna_tables()
    if tables and "version_info" not in tables and not being_created:
        raise StorageError(
            f"{where}: {str(path)!r} is a SQLite database but not an Optuna study database"
        )
    if not create and "alembic_version" in tables and revision is None:  # Optuna would write the version to read it
        raise StorageError(f"{where}: {str(path)!r} has no Optuna schema version (its alembic_version table is "
                           f"empty: being created right now, or damaged); nothing was changed")
    _check_schema(revision, where)


def _ping_when_idle(engine: sqlalchemy.engine.Engine) -> None:
    """Ping a pooled server connection before it is reused only after PING_IDLE_SECONDS idle.

    ``pool_pre_ping`` pings before every transaction, one more network round trip each (three per
    trial). A connection lost to a server restart within the idle time fails its first statement
    instead; the pool then discards its connections and the worker's retry (``retry_storage``) runs
    on a fresh one.
    """
    @event.listens_for(engine, "checkin")
    def _idle_from(dbapi_connection: object, record: object) -> None:
        record.info["idle_since"] = time.monotonic()  # type: ignore[attr-defined]

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: object, record: object, proxy: object) -> None:
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) <= PING_IDLE_SECONDS:  # type: ignore[attr-defined]
            return  # fresh, or used a moment ago
        try:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()  # type: ignore[attr-defined]
        except Exception as exc:
            raise sqlalchemy.exc.DisconnectionError(str(exc)) from exc  # the pool reconnects and checks out again


def _driver_missing(url: str, where: str, exc: ImportError) -> StorageError:
    """The error for a database URL whose driver is not installed, saying what to install."""
    install = ("pip install '.[postgres]'" if url_dialect(url) == "postgresql"
               else "install the driver the URL names")
    return StorageError(f"{where}: database driver missing ({exc}): {install}")


def _check_server_database(url: str, create: bool, where: str, writable: bool = False) -> None:
    """Schema check on a server database (PostgreSQL...), reading only, before Optuna writes; a lock another session
    holds on the version table is waited for as long as SQLite's busy timeout, then StorageBusyError. ``writable``: a
    PostgreSQL login that may not insert into or update the study tables is refused (StorageError), where its first
    write ended in a traceback."""
    postgresql = url_dialect(url) == "postgresql"
    try:
        engine = sqlalchemy.create_engine(url, pool_pre_ping=True,
                                          connect_args={"options": _pg_options(readonly=True)} if postgresql else {})
    except ImportError as exc:
        raise _driver_missing(url, where, exc) from None
    except (ArgumentError, ValueError) as exc:
        raise StorageError(f"{where}: invalid storage URL: {exc}") from None
    try:
        with engine.connect() as conn:
            inspector = sqlalchemy.inspect(conn)
            tables = set(inspector.get_table_names())
            revision = None
            if "alembic_version" in tables:
                try:
                    revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                except DBAPIError as exc:
                    if getattr(exc.orig, "pgcode", None) != _PG_LOCK_NOT_AVAILABLE:
                        raise
                    raise StorageBusyError(f"{where}: cannot read its schema version: "
                                           f"{describe_storage_error(exc)}") from None
            denied = (conn.exec_driver_sql(
                "SELECT relname FROM pg_class WHERE relname = ANY(%(names)s) AND relkind = 'r' "
                "AND pg_table_is_visible(oid) AND NOT (has_table_privilege(oid, 'INSERT') "
                "AND has_table_privilege(oid, 'UPDATE')) ORDER BY relname",
                {"names": sorted(tables & _optuna_tables() - {"alembic_version"})}).scalars().all()
                      if postgresql and writable and "version_info" in tables else [])
    except SQLAlchemyError as exc:
        raise StorageError(f"{where}: cannot connect: {describe_storage_error(exc)}") from None
    finally:
        engine.dispose()
    if not tables and not create:  # made with createdb and not written yet, as a worker started first finds it
        raise EmptyDatabaseError(f"no Optuna study database at {where} yet: the database is empty; search coarse or "
                                 "search auto makes one")
    if "version_info" not in tables and not create:
        raise StorageError(f"no Optuna study database at {where}")
    if denied:
        raise StorageError(f"{where}: its login may read the study tables but not write them (no INSERT or UPDATE on "
                           f"{', '.join(denied[:3])}{', ...' if len(denied) > 3 else ''}): this command writes; give "
                           f"a login that may, or read with search studies, trials, best, report or query")
    _check_schema(revision, where)


def _serialise_sqlite_transactions(engine: sqlalchemy.engine.Engine, writable: bool) -> None:
    """WAL (once something is written: see ``_wal_after_first_write``) and, where writable, every transaction as
    BEGIN IMMEDIATE.

    Optuna claims a WAITING trial and fails a stale one by reading the trial's state and then
    writing it, trusting SELECT ... FOR UPDATE to make that atomic. SQLite ignores FOR UPDATE,
    so two workers could both claim one trial. Taking the write lock at BEGIN (SQLAlchemy's
    documented pysqlite recipe) makes each read-then-write transaction atomic; the busy
    timeout makes the others wait for it instead of failing.
    """
    if writable:
        _wal_after_first_write(engine)
        event.listen(engine, "begin", _begin_immediate)
    engine.dispose()  # connections made while Optuna created the tables lack the listeners


WAL_SWITCH_WAIT_MS = 200  # the longest a switch to WAL waits for another connection's lock before it is left for later


def _wal_after_first_write(engine: sqlalchemy.engine.Engine) -> None:
    """Put the file in WAL mode (readers and one writer at once; the mode is stored in the file) once a transaction
    of ``engine`` has written, when its connection is returned to the pool, outside any transaction; and set each
    connection's ``PRAGMA synchronous`` (pysqlite's own BEGIN off: SQLAlchemy's "begin" event emits BEGIN IMMEDIATE).

    Not when the storage is opened: a command refused before it writes (a study this service did not create in a
    plain Optuna file) leaves the file as it was, its journal mode too. The switch waits at most WAL_SWITCH_WAIT_MS
    for another connection's lock (a reader's holds it off), and is tried again at each later return of a connection
    that wrote until the file reports WAL. NORMAL loses no consistency in WAL mode only: until then a connection
    writes with FULL, as a rollback journal needs, and is set to the configured level at its next checkout after.
    """
    wal: list[bool] = []  # the file seen in WAL mode (switched here or found so): it stays so

    def synchronous(dbapi_connection: sqlite3.Connection, record: Any) -> None:
        level = sqlite_synchronous() if wal else "FULL"
        if record.info.get("synchronous") != level:
            dbapi_connection.execute(f"PRAGMA synchronous = {level}")
            record.info["synchronous"] = level

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, record: Any) -> None:
        dbapi_connection.isolation_level = None
        if not wal and str(dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            wal.append(True)
        synchronous(dbapi_connection, record)

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: sqlite3.Connection, record: Any, _proxy: object) -> None:
        synchronous(dbapi_connection, record)

    @event.listens_for(engine, "checkin")
    def _switch(dbapi_connection: sqlite3.Connection | None, _record: object) -> None:
        if wal or dbapi_connection is None or not dbapi_connection.total_changes:
            return
        try:
            (busy,) = dbapi_connection.execute("PRAGMA busy_timeout").fetchone()
            dbapi_connection.execute(f"PRAGMA busy_timeout = {WAL_SWITCH_WAIT_MS}")
            try:
                (mode,) = dbapi_connection.execute("PRAGMA journal_mode = WAL").fetchone()
            finally:
                dbapi_connection.execute(f"PRAGMA busy_timeout = {int(busy)}")
        except sqlite3.Error:
            return  # locked, or the connection broken: the next connection that wrote tries again
        if str(mode).lower() == "wal":
            wal.append(True)


def sqlite_synchronous() -> str:
    """``PRAGMA synchronous`` of writing SQLite connections: $SEARCH_SQLITE_SYNCHRONOUS, NORMAL or FULL (any case),
    NORMAL when unset; StorageError for another value, rather than a weaker setting than asked for."""
    given = os.environ.get(SQLITE_SYNC_ENV, "")
    value = given.strip().upper() or "NORMAL"
    if value not in ("NORMAL", "FULL"):
        raise StorageError(f"${SQLITE_SYNC_ENV} must be NORMAL or FULL, got {given!r}")
    return value


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _pg_options(readonly: bool) -> str:
    """libpq options of a PostgreSQL connection: a lock another session holds waited for as long as SQLite's busy
    timeout, then given up on (a session left in a transaction after LOCK TABLE or ALTER TABLE would otherwise keep
    every command waiting for ever; a worker's writes are then retried); ``readonly``: no writes either.

    A writing session idle inside a transaction for half that time is ended by the server: its client is gone
    (a machine lost, a network cut) while holding a lock, e.g. a study's row lock, that the server would otherwise
    keep until TCP keepalive notices, hours later, while every other worker gives up waiting for it."""
    lock = f"-c lock_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}"
    if readonly:
        return f"-c default_transaction_read_only=on {lock}"
    return f"{lock} -c idle_in_transaction_session_timeout={SQLITE_BUSY_TIMEOUT_S * 1000 // 2}"


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    create: bool = True,
    readonly: bool = False,
) -> optuna.storages.RDBStorage:
    """Open (and with ``create`` make) Optuna's RDB storage at ``url``; StorageError if unusable.

    ``readonly`` (for commands that only read; implies ``create=False``): nothing is ever
    written and no lock is taken that could wait for a writer -- SQLite through a read-only
    URI (see ``sqlite_read_uri``), PostgreSQL in read-only transactions.
    """
    where = f"storage {mask_url(url)}"
    given = url
    create = create and not readonly
    path = sqlite_path(url)
    url = with_available_driver(url)
    engine_kwargs: dict[str, object]
    if url_dialect(url) == "sqlite":
        if _is_in_memory_sqlite(url):
            raise StorageError(
                f"{where} is an in-memory database, gone when the command ends: give a file, "
                "e.g. sqlite:///search.db"
            )
        _refuse_file_uri(url, where)
        if not readonly:
            sqlite_synchronous()  # a bad value is refused before the file is made or written
        # Writing engines pool their connections: every transaction on them is an explicit BEGIN
        # IMMEDIATE ... COMMIT/ROLLBACK (see _serialise_sqlite_transactions), so none keeps an old WAL
        # snapshot open between sessions (pysqlite's implicit transactions did). Read-only: NullPool.
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
                         "poolclass": sqlalchemy.pool.NullPool if readonly else sqlalchemy.pool.QueuePool}
        if path is not None:
            deadline = _wait_deadline(None)
            _check_sqlite_file(path, create, where, deadline)
            if readonly:
                engine_kwargs["creator"] = _readonly_sqlite_creator(sqlite_read_uri(path, deadline))
            else:
                _remove_left_temporary_names(path)
    else:
        engine_kwargs = {"pool_pre_ping": readonly}  # writing engines: _ping_when_idle
        if url_dialect(url) == "postgresql":
            engine_kwargs["connect_args"] = {"options": _pg_options(readonly)}
        _check_server_database(url, create, where, writable=not readonly)

    optuna_rdb.skip_alembic_at_head()
    if create and path is not None and not path.exists():
        _create_sqlite_whole(url, path, engine_kwargs, where)
    last_error: Exception | None = None
    for _attempt in range(_OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and the way to do this
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    # fail_stale_trials fails a dead worker's trial, then this enqueues its copy (exactly once)
                    heartbeat_stale_trial_callback=RetryStaleTrialOnce(),
                    skip_table_creation=not create,
                )
        except ImportError as exc:
            raise _driver_missing(url, where, exc) from None
        except RuntimeError as exc:
            # Optuna's schema-compatibility check (the SQLite path is checked earlier).
            raise StorageError(f"{where}: {exc}") from None
        except ValueError as exc:
            raise StorageError(f"{where}: {exc}") from None
        except SQLAlchemyError as exc:
            last_error = exc
            if "already exists" in str(exc) or isinstance(exc, IntegrityError):
                time.sleep(random.uniform(0.0, 0.05))  # out of step with the other racers
                continue
            raise StorageError(f"{where}: cannot open: {describe_storage_error(exc)}") from None
        except optuna.exceptions.StorageInternalError as exc:
            raise StorageError(f"{where}: cannot open: {describe_storage_error(exc)}") from None
        else:
            if storage.engine.dialect.name == "sqlite" and not readonly:
                _serialise_sqlite_transactions(storage.engine, writable=path is None or os.access(path, os.W_OK))
            elif not readonly:
                _ping_when_idle(storage.engine)
            if storage.engine.dialect.name == "postgresql":
                _sessions_in_utc(storage.engine)
            _OPENED[given] = time.monotonic()
            _GIVEN[storage] = given
            return storage
    raise StorageError(f"{where}: cannot open: {describe_storage_error(last_error)}")


_OPENED: dict[str, float] = {}  # storage URL -> when open_storage last opened it, for ``unreadable_stored_value``
# storage -> the URL open_storage was given, which its own ``url`` is not where a driver or connect_timeout was added
_GIVEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def given_url(storage: optuna.storages.BaseStorage) -> str | None:
    """The URL ``storage`` was opened with as written (for a command to paste), or its own URL, or None."""
    url = _GIVEN.get(storage, getattr(storage, "url", None))
    return url if isinstance(url, str) else None


def unreadable_stored_value(since: float) -> str | None:
    """Where a database this process opened at ``time.monotonic()`` ``since`` or later holds a value that cannot be
    read (see ``optuna_rdb.unreadable_value``), as "storage URL: study NAME, ...", or None (also when that cannot be
    told): for a command that failed unexpectedly, to say so in one line rather than with a traceback."""
    for url in [url for url, opened in _OPENED.items() if opened >= since]:
        try:
            storage = open_storage(url, readonly=True)
            try:
                found = optuna_rdb.unreadable_value(storage)
            finally:
                storage.engine.dispose()
        except Exception:  # noqa: BLE001  the database itself failed: said as it is by the caller
            continue
        if found:
            return f"storage {mask_url(url)}: {found}"
    return None


# what a log SQLite would replay starts with (the WAL's magic number, either byte order flag; a rollback journal's
# header): a journal kept by journal_mode=PERSIST has its header zeroed, a truncated one is empty, and neither is
# replayed
_LOG_MAGIC = {"-wal": (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83"),
              "-journal": (b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7",)}


def _refuse_orphaned_journal(path: Path, where: str) -> None:
    """StorageError where a write-ahead log or rollback journal of a database no longer at ``path`` is left beside
    it (the file deleted while a killed process had it open): SQLite would replay its pages into the new database
    made there, which then held another database's tables and failed its integrity check. Also where ``path`` is an
    empty file (emptied while a process had it open): SQLite deletes the log of an empty database on opening it, and
    the last changes in it with it."""
    side = {suffix: path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES}
    for suffix in ("-wal", "-journal"):  # the logs; "-shm" indexes the WAL and holds no pages
        left = side[suffix]
        try:
            with left.open("rb") as log:
                head = log.read(8)
            # made by now: the log is of the new database
            gone = not path.exists()
            orphaned = head.startswith(_LOG_MAGIC[suffix]) and (gone or path.stat().st_size == 0)
        except OSError:
            continue
        if orphaned:
            others = " and ".join(repr(str(side[s])) for s in (suffix, "-shm") if side[s].exists())
            raise StorageError(f"{where}: {str(left)!r} is left from a database {str(path)!r} that is "
                               + ("gone (deleted while a process had it open); a new database there would take in "
                                  "its pages" if gone else "now an empty file (emptied while a process had it open); "
                                  "opening it would delete the log, and the pages in it")
                               + f": remove {others}, or put the database back")


_TEMPORARY_HEX = 6  # random bytes in the name of the temporary file a new SQLite database is made in
_TEMPORARY_STEM = 64  # bytes of the database's name, at most, that name it


def _temporary_stem(name: str) -> str:
    """The start of a database's file ``name`` that names its temporary: whole characters, at most _TEMPORARY_STEM
    bytes (64 characters of a name in emoji or another 4-byte script were 256 bytes, more than a name may have)."""
    stem = name[:_TEMPORARY_STEM]
    while len(os.fsencode(stem)) > _TEMPORARY_STEM:
        stem = stem[:-1]
    return stem


def _remove_left_temporary_names(path: Path) -> None:
    """Remove the temporary name ``_create_sqlite_whole`` gave the database at ``path`` where the process that made
    it was killed between linking it into place and unlinking it: a hidden second name of the same file, which kept
    its data on disk after ``path`` was deleted. A temporary that is another file (a creator killed before its link,
    or one still making its tables) is left as it is."""
    pattern = re.compile(rf"\.{re.escape(_temporary_stem(path.name))}\.[0-9a-f]{{{2 * _TEMPORARY_HEX}}}\.tmp")
    try:
        names = [entry.path for entry in os.scandir(path.parent) if pattern.fullmatch(entry.name)]
    except OSError:
        return
    for name in names:
        try:
            if not os.path.islink(name) and os.path.samefile(name, path):
                os.unlink(name)
        except OSError:
            continue  # gone meanwhile (another process removed it), or a folder this process may not change


def _create_sqlite_whole(url: str, path: Path, engine_kwargs: dict[str, object], where: str) -> None:
    """Make a new SQLite study database at ``path`` whole or not at all.

    Optuna creates its tables one statement at a time, each committed: a Ctrl-C among them left a file of some of
    them, which every reading command then called "not an Optuna study database". They are made in a temporary file
    beside ``path`` instead, linked into place unless another process linked its own first (that one is used: a
    rename would replace it, and the trials written into it since). A kill between the link and the unlink leaves the
    temporary as a second name of the database, which the next writing open removes. Where
    the link fails (a file system without hard links) nothing is at ``path`` and the caller creates it there; where
    the tables cannot be made (a full disk, a file size limit) StorageError, nothing at ``path`` either: made there,
    they were left half made, which reading commands called "not an Optuna study database" or "read-only".
    """
    # its name and its -journal's fit within a file name's 255 bytes
    tmp = path.parent / f".{_temporary_stem(path.name)}.{secrets.token_hex(_TEMPORARY_HEX)}.tmp"
    try:
        try:
            storage = optuna.storages.RDBStorage(make_url(url).set(database=str(tmp)).render_as_string(
                hide_password=False), engine_kwargs=engine_kwargs)
            storage.engine.dispose()
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"{where}: cannot create the database: {describe_storage_error(exc)}") from None
        try:
            os.link(tmp, path)
        except OSError:
            pass  # FileExistsError: another process made it first
    finally:
        for leftover in (tmp, tmp.with_name(f"{tmp.name}-journal")):
            leftover.unlink(missing_ok=True)


def _sessions_in_utc(engine: sqlalchemy.engine.Engine) -> None:
    """Every PostgreSQL session of ``engine`` in UTC, whatever the server's zone, PGTZ or a role's setting say.

    Optuna stores heartbeats as timestamps without time zone (the server's clock in the writer's session TimeZone)
    and judges them stale against the same clock in the judge's session: sessions in different zones, or one
    zone across a DST change, failed live trials at once or left dead ones RUNNING for hours. libpq's PGTZ
    overrides ``-c timezone`` in the connection options, so it is set on each new connection instead.
    """
    @event.listens_for(engine, "connect", insert=True)
    def _utc(dbapi_connection: Any, _record: object) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # not undone by the pool's rollback when the connection is returned
        cursor = dbapi_connection.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.close()
        dbapi_connection.autocommit = autocommit

    engine.dispose()  # connections made while Optuna opened the storage: made again with the listener


def _readonly_sqlite_creator(uri: str) -> Callable[[], sqlite3.Connection]:
    """Connections to ``uri`` that refuse writes (``PRAGMA query_only``) and never take the write lock."""

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn

    return connect


def _first_line(exc: BaseException | None) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip()
    code = getattr(exc, "sqlite_errorname", None)  # e.g. SQLITE_READONLY_RECOVERY for "readonly database"
    if text and code and code not in text:
        text = f"{text.splitlines()[0]} [{code}]"
    return text.splitlines()[0] if text else type(exc).__name__


# (fragments of a driver's message, lowercase), what is wrong (the database ... while a write is retried: else
# "failing"), what it means, what to do then where that is to run the command again (left out while it is retried),
# in the order they are tried
_STORAGE_PROBLEMS: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    # SQLITE_IOERR_SHMSIZE: the WAL index (-shm) could not grow, which is a full disk in practice
    (("disk is full", "no space left", "sqlite_ioerr_shmsize"), "disk full",
     "the disk holding the database is full: free some space", " and run again"),
    (("database is locked", "database table is locked", "lock timeout"), "locked",
     "the database is locked: another process has held its write lock too long", "; try again when it is done"),
    # a hot journal: reading it needs a rollback, a write, which a read-only connection may not do
    (("sqlite_readonly_rollback",), "failing", "a process writing it was killed mid-transaction and left a journal "
     "that only a writing command rolls back: run the interrupted command again, then this one", ""),
    (("readonly database", "read-only"), "failing", "the database is read-only: it cannot be written here", ""),
    # the server answered (libpq's text begins "connection to server ... failed" here too): name what it refused
    (("password authentication failed", "no password supplied"), "failing",
     "the server refused the user name or password: correct them in the storage URL", ""),
    (('fatal: database "',), "failing",
     "the server has no database of that name: create it (createdb NAME) or correct the URL", ""),
    (('fatal: role "',), "failing", "the server has no user of that name: correct the user name in the storage URL",
     ""),
    (("could not connect", "connection refused", "could not translate host", "no route to host",
      "timeout expired", "connection to server"), "unreachable",
     "cannot reach the database server: is it running, and are the host, port and name right?", ""),
    (("server closed the connection", "terminating connection", "connection already closed",
      "ssl syscall error", "server conn crashed"), "unreachable",
     "the database server closed the connection (stopped or restarted?)", ""),  # retried, or said with what to do
    (("unable to open database file",), "unreachable",
     "cannot open the database file: check that its folder exists and may be read", ""),
    (("file is not a database", "database disk image is malformed"), "failing",
     "the file is not a SQLite database, or is damaged", ""),
)


def storage_problem(exc: BaseException | None, retrying: bool = False) -> tuple[str, str]:
    """What is wrong with the database ("disk full", "locked", "unreachable", else "failing") and one plain sentence
    saying it, else the driver's first line; ``retrying``: a write is retried, the sentence does not tell to run
    the command again.

    Looks through Optuna's StorageInternalError ("invalid data in the commit, e.g. exceeding
    max length") and SQLAlchemy's wrappers to the driver's own message.
    """
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        if isinstance(exc, DBAPIError) and exc.orig is not None:
            seen.append(exc.orig)
        exc = exc.__cause__ or exc.__context__
    if not seen:
        return "failing", "unknown storage error"
    for candidate in seen:
        # libpq writes "FATAL:  database" with two spaces; SQLite's code (sqlite_errorname) is not in its text
        text = " ".join(f"{candidate} {getattr(candidate, 'sqlite_errorname', '')}".lower().split())
        for fragments, kind, sentence, again in _STORAGE_PROBLEMS:
            if any(fragment in text for fragment in fragments):
                return kind, f"{sentence}{'' if retrying else again} ({_first_line(candidate)})"
    drivers = [e for e in seen if not isinstance(e, (optuna.exceptions.StorageInternalError, SQLAlchemyError))]
    return "failing", _first_line(drivers[0] if drivers else seen[-1])


def describe_storage_error(exc: BaseException | None) -> str:
    """One plain sentence for a database failure: full disk, lock, unreachable server..., else its first line
    (``storage_problem``)."""
    return storage_problem(exc)[1]


def readonly_engine(url: str, wait: float | None = None) -> sqlalchemy.engine.Engine:
    """An engine whose connections cannot write: SQLite mode=ro, PostgreSQL read-only transactions.

    A SQLite lock another process holds is waited for at most ``wait`` s (default SQLITE_BUSY_TIMEOUT_S), then
    StorageBusyError."""
    where = f"storage {mask_url(url)}"
    dialect = url_dialect(url)
    if dialect == "sqlite":
        path = sqlite_path(url)
        _refuse_file_uri(url, f"{where}: read-only SQL")
        if path is None:
            raise StorageError(f"{where}: read-only SQL needs a SQLite file, not an in-memory database")
        deadline = _wait_deadline(None if wait is None else time.monotonic() + wait)
        _check_sqlite_file(path, False, where, deadline)
        creator = _readonly_sqlite_creator(sqlite_read_uri(path, deadline))
        return sqlalchemy.create_engine("sqlite://", creator=creator, poolclass=sqlalchemy.pool.NullPool)
    if dialect == "postgresql":
        _check_server_database(with_available_driver(url), False, where)  # as SQLite: an Optuna study database
        engine = sqlalchemy.create_engine(
            with_available_driver(url),
            pool_pre_ping=True,
            connect_args={"options": _pg_options(readonly=True)},
        )

        @event.listens_for(engine, "begin")
        def _read_only_transaction(conn: Connection) -> None:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")

        return engine
    raise StorageError(f"{where}: read-only SQL is supported on SQLite and PostgreSQL, not {dialect}")


def readonly_open_error(url: str, exc: BaseException) -> StorageError:
    """The error of a connection of ``readonly_engine(url)`` that could not be opened."""
    return StorageError(f"storage {mask_url(url)}: cannot open read-only: {describe_storage_error(exc)}")


@contextmanager
def connect_readonly(url: str) -> Iterator[Connection]:
    """A SQLAlchemy connection (in a transaction, rolled back at the end) that cannot write."""
    engine = readonly_engine(url)
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise readonly_open_error(url, exc) from None
        with conn:
            transaction = conn.begin()
            try:
                yield conn
            finally:
                transaction.rollback()
    finally:
        engine.dispose()

