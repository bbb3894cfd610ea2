"""Issue 9 (hostile audit): reads behind a writer, read-only folders, odd storage files, plain error sentences."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from sqlalchemy import event

from studies.errors import StorageError
from studies.queries import list_studies, trials_frame
from studies.store import connect_readonly, describe_storage_error, open_storage
from tests.unwritable import unwritable

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _study_db(path: Path, n_trials: int = 3) -> None:
    """A closed WAL database with one service-made study of ``n_trials`` complete trials."""
    storage = open_storage(_url(path))
    study = optuna.create_study(storage=storage, study_name="digits/coarse", direction="maximize")
    for key, value in {"campaign": "digits", "stage": "coarse", "ready": True}.items():
        study.set_user_attr(key, value)
    for i in range(n_trials):
        study.add_trial(optuna.trial.create_trial(value=0.1 * i))
    storage.engine.dispose()


@contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    """Turn a hang into a TimeoutError (a blocking open() of a FIFO is interrupted by the signal)."""

    def fire(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- 3. reads never take the write lock ------------------------------------------------------


def test_reading_storage_lists_studies_while_a_writer_holds_the_lock(tmp_path) -> None:
    path = tmp_path / "search.db"
    _study_db(path)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE studies SET study_name = study_name")
        with _alarm(20):  # the busy timeout is 60 s: a read taking the write lock would time out here
            storage = open_storage(_url(path), readonly=True)
            try:
                frame = list_studies(storage)
                assert frame["study"].tolist() == ["digits/coarse"]
                assert frame["n_trials"].tolist() == [3]
                assert len(trials_frame(storage)) == 3
            finally:
                storage.engine.dispose()
            with connect_readonly(_url(path)) as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM trials").scalar() == 3
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_reading_storage_cannot_write(tmp_path) -> None:
    path = tmp_path / "search.db"
    _study_db(path)
    storage = open_storage(_url(path), readonly=True)
    try:
        with pytest.raises(optuna.exceptions.StorageInternalError) as info:
            optuna.create_study(storage=storage, study_name="x/coarse")
        assert describe_storage_error(info.value).startswith("the database is read-only")
    finally:
        storage.engine.dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM studies").fetchone()[0] == 1
    conn.close()


# --- 4. a WAL database in a read-only folder is still readable -------------------------------


def test_wal_database_in_a_read_only_folder_is_readable(tmp_path) -> None:
    folder = tmp_path / "frozen"
    folder.mkdir()
    path = folder / "search.db"
    _study_db(path, n_trials=4)
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    before = sorted(p.name for p in folder.iterdir())
    with unwritable(folder):
        storage = open_storage(_url(path), readonly=True)
        try:
            assert list_studies(storage)["n_trials"].tolist() == [4]
        finally:
            storage.engine.dispose()
        with connect_readonly(_url(path)) as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM trials").scalar() == 4
        with pytest.raises(StorageError, match="read-only"):
            open_storage(_url(path))  # writing is still refused, with a clear line
    assert sorted(p.name for p in folder.iterdir()) == before


# --- 5. odd storage files give one clear line ------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_in_memory_storage_is_refused(url) -> None:
    with pytest.raises(StorageError, match="in-memory database") as info:
        open_storage(url)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_a_fifo_as_the_database_is_refused_without_hanging(tmp_path) -> None:
    fifo = tmp_path / "search.db"
    os.mkfifo(fifo)
    for create in (True, False):
        with _alarm(10), pytest.raises(StorageError, match="not a regular file") as info:
            open_storage(_url(fifo), create=create)
        assert info.value.exit_code == 2
    with _alarm(10), pytest.raises(StorageError, match="not a regular file"):
        open_storage(_url(fifo), readonly=True)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="no /proc/self/mem on this system")
def test_proc_self_mem_is_refused() -> None:
    for create in (True, False):
        with pytest.raises(StorageError) as info:
            open_storage("sqlite:////proc/self/mem", create=create)
        # the reason after it is the system's (Input/output error here)
        assert str(info.value).startswith("storage sqlite:////proc/self/mem: cannot read '/proc/self/mem': ")
        assert "\n" not in str(info.value) and "exceeding max length" not in str(info.value)
        assert info.value.exit_code == 2


def test_an_empty_file_is_no_database_for_reading(tmp_path) -> None:
    path = tmp_path / "search.db"
    path.touch()
    for kwargs in ({"create": False}, {"readonly": True}):
        with pytest.raises(StorageError, match="no database at .*empty"):
            open_storage(_url(path), **kwargs)
    assert path.stat().st_size == 0


def test_a_journal_a_killed_writer_left_is_named_not_called_a_read_only_database(tmp_path) -> None:
    # kill -9 of search coarse as it made its database left a hot journal; search studies then said "the database
    # is read-only: it cannot be written here", though the next writing command rolled it back and went on
    import subprocess
    import sys

    path = tmp_path / "search.db"
    writer = (f"import os, sqlite3; c = sqlite3.connect({str(path)!r}, isolation_level=None); "
              "c.execute('PRAGMA cache_size = 1'); c.execute('CREATE TABLE t (x BLOB)'); "
              "c.execute('INSERT INTO t VALUES (zeroblob(100000))'); c.execute('BEGIN'); "
              "c.execute('UPDATE t SET x = zeroblob(200000)'); os._exit(0)")  # killed before its COMMIT
    subprocess.run([sys.executable, "-c", writer], check=True)
    assert (tmp_path / "search.db-journal").exists()
    with pytest.raises(StorageError) as info:
        open_storage(_url(path), readonly=True)
    assert str(info.value) == (
        f"cannot read '{path}': a process writing it was killed mid-transaction and left a journal that only a "
        "writing command rolls back: run the interrupted command again, then this one (attempt to write a readonly "
        "database [SQLITE_READONLY_ROLLBACK])")


def _leave_a_log(path: Path, mode: str) -> None:
    """A process that writes a table into ``path`` in journal ``mode`` and is killed (os._exit), its log left."""
    import subprocess
    import sys

    writer = (f"import os, sqlite3; c = sqlite3.connect({str(path)!r}, isolation_level=None); "
              f"c.execute('PRAGMA journal_mode = {mode}'); c.execute('PRAGMA cache_size = 1'); "
              "c.execute('CREATE TABLE old (x BLOB)'); c.execute('BEGIN'); "
              "c.execute('INSERT INTO old VALUES (zeroblob(200000))'); "
              + ("c.execute('COMMIT'); " if mode == "wal" else "") + "os._exit(0)")
    subprocess.run([sys.executable, "-c", writer], check=True)


@pytest.mark.parametrize("mode", ["wal", "journal"])
def test_a_log_left_by_a_deleted_database_is_not_replayed_into_a_new_one(tmp_path, mode) -> None:
    # rm search.db after a killed run left search.db-wal: the next search coarse made a new search.db that took in
    # the old one's pages (its tables beside Optuna's, "Page 29 is never used" from PRAGMA integrity_check)
    path = tmp_path / "search.db"
    open_storage(_url(path)).engine.dispose()
    _leave_a_log(path, mode)
    path.unlink()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert f"search.db-{mode}" in left
    with pytest.raises(StorageError) as info:
        open_storage(_url(path))
    assert info.value.exit_code == 2
    assert str(info.value) == (
        f"storage sqlite:///{path}: '{path}-{mode}' is left from a database '{path}' that is gone (deleted while a "
        f"process had it open); a new database there would take in its pages: remove '{path}-{mode}'"
        + (f" and '{path}-shm'" if mode == "wal" else "") + ", or put the database back")
    assert sorted(p.name for p in tmp_path.iterdir()) == left  # nothing made, nothing removed
    for name in left:
        (tmp_path / name).unlink()
    storage = open_storage(_url(path))
    storage.engine.dispose()
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert ("old",) not in tables and ("trials",) in tables


@pytest.mark.parametrize("mode", ["wal", "journal"])
@pytest.mark.parametrize("readonly", [False, True])
def test_a_log_beside_an_emptied_database_is_not_deleted(tmp_path, mode, readonly) -> None:
    # `: > search.db` while a process had it open: search coarse went on, SQLite deleting the log of the empty
    # database and the pages in it (a writer still running then found its database malformed)
    path = tmp_path / "search.db"
    open_storage(_url(path)).engine.dispose()
    _leave_a_log(path, mode)
    path.write_bytes(b"")
    left = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(StorageError) as info:
        open_storage(_url(path), readonly=readonly)
    assert info.value.exit_code == 2
    assert str(info.value) == (
        f"storage sqlite:///{path}: '{path}-{mode}' is left from a database '{path}' that is now an empty file "
        f"(emptied while a process had it open); opening it would delete the log, and the pages in it: remove "
        f"'{path}-{mode}'" + (f" and '{path}-shm'" if mode == "wal" else "") + ", or put the database back")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == left  # nothing made, changed or removed


@pytest.mark.parametrize("mode", ["persist", "truncate"])
def test_a_journal_sqlite_would_not_replay_does_not_stop_a_new_database(tmp_path, mode) -> None:
    # journal_mode=PERSIST zeroes the journal's header at each commit and TRUNCATE empties it: SQLite replays
    # neither, and a new database beside one was refused as if it would take in another's pages
    import subprocess
    import sys

    path = tmp_path / "search.db"
    writer = (f"import sqlite3; c = sqlite3.connect({str(path)!r}, isolation_level=None); "
              f"c.execute('PRAGMA journal_mode = {mode}'); c.execute('CREATE TABLE old (x BLOB)'); "
              "c.execute('INSERT INTO old VALUES (zeroblob(200000))'); c.close()")
    subprocess.run([sys.executable, "-c", writer], check=True)
    journal = tmp_path / "search.db-journal"
    assert journal.exists() and journal.read_bytes()[:8] == b"\0" * len(journal.read_bytes()[:8])
    path.unlink()
    open_storage(_url(path)).engine.dispose()
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert ("old",) not in tables and ("trials",) in tables


# --- 6. reading a missing database creates nothing --------------------------------------------


@pytest.mark.parametrize("kwargs", [{"create": False}, {"readonly": True}])
def test_reading_a_missing_database_creates_nothing(tmp_path, kwargs) -> None:
    path = tmp_path / "search.db"
    with pytest.raises(StorageError, match=f"no database at '{path}'") as info:
        open_storage(_url(path), **kwargs)
    assert info.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_a_new_database_whose_creation_is_interrupted_leaves_no_file_and_is_made_whole_next_time(
        tmp_path, monkeypatch) -> None:
    """Ctrl-C among the CREATE TABLEs left a file of some of Optuna's tables: every reading command (search studies,
    after search auto said "interrupted: the database is consistent") then called it not an Optuna study database."""
    path = tmp_path / "search.db"
    create_all = sqlalchemy.MetaData.create_all

    def first_table_then_ctrl_c(metadata, bind, tables=None, checkfirst=True):
        create_all(metadata, bind, tables=list(metadata.sorted_tables)[:1], checkfirst=checkfirst)
        raise KeyboardInterrupt

    monkeypatch.setattr(sqlalchemy.MetaData, "create_all", first_table_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        open_storage(_url(path))
    assert list(tmp_path.iterdir()) == []  # neither the database nor a temporary file

    monkeypatch.setattr(sqlalchemy.MetaData, "create_all", create_all)
    open_storage(_url(path)).engine.dispose()
    reading = open_storage(_url(path), readonly=True)
    assert list_studies(reading).empty
    reading.engine.dispose()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_creator_killed_between_linking_its_temporary_and_unlinking_it_leaves_no_second_name(tmp_path) -> None:
    """kill -9 as a new database was linked into place left its temporary beside it, a hidden second name of the
    same file (its data kept on disk after search.db was deleted); the next writing open removes it, and only it."""
    import subprocess
    import sys

    path = tmp_path / "search.db"
    creator = ("import os, signal\nlink = os.link\n"
               "def link_then_killed(src, dst):\n    link(src, dst)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
               f"os.link = link_then_killed\nfrom studies.store import open_storage\nopen_storage({_url(path)!r})")
    assert subprocess.run([sys.executable, "-c", creator]).returncode == -signal.SIGKILL
    (left,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert left.samefile(path) and path.stat().st_nlink == 2
    other = tmp_path / ".search.db.0123456789ab.tmp"  # another file: a creator killed before its link
    other.write_bytes(b"x")
    reading = open_storage(_url(path), readonly=True)  # reading writes nothing, in the folder either
    reading.engine.dispose()
    assert left.exists()
    open_storage(_url(path)).engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "search.db"]
    assert path.stat().st_nlink == 1


def test_a_long_database_name_is_made_or_refused_in_one_line_where_its_log_would_not_fit(tmp_path) -> None:
    # a name of 230 to 255 bytes ended in a traceback (OSError: File name too long): the temporary file the database
    # is made in was named after it, 26 bytes longer with its -journal
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    path = tmp_path / ("a" * (longest - len("-journal") - 3) + ".db")
    storage = open_storage(_url(path))
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    storage.engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # a name with no room for '-journal': the database was made, then failed at its first write (exit code 1)
    path = tmp_path / ("b" * (longest - len("-journal") - 2) + ".db")
    with pytest.raises(StorageError) as info:
        open_storage(_url(path))
    assert info.value.exit_code == 2
    assert str(info.value) == (
        f"storage sqlite:///{path}: its file name is {longest - 7} bytes long, and the log SQLite writes beside it "
        f"(the name with '-journal' added) would pass the {longest} bytes a file name may have there: use a name of "
        f"at most {longest - 8} bytes")
    assert not path.exists()


def test_a_long_database_name_of_four_byte_characters_is_made(tmp_path) -> None:
    # its temporary took the name's first 64 characters, 232 bytes of 58 emoji: with its -journal past 255 bytes, a
    # traceback (OSError: File name too long)
    path = tmp_path / ("\U0001f600" * 58 + ".db")  # 235 bytes, room for its own -journal
    storage = open_storage(_url(path))
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    storage.engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --- 5. plain sentences for full disks, locks and unreachable servers ------------------------


def test_a_full_disk_is_named_through_optunas_wrapper(tmp_path) -> None:
    path = tmp_path / "search.db"
    _study_db(path, n_trials=0)
    storage = open_storage(_url(path))
    study = optuna.load_study(study_name="digits/coarse", storage=storage)
    event.listen(storage.engine, "connect", lambda conn, _rec: conn.execute("PRAGMA max_page_count = 1"))
    storage.engine.dispose()  # writers pool their connections: the next one is new and gets the cap
    try:
        with pytest.raises(optuna.exceptions.StorageInternalError) as info:
            for i in range(50):  # each trial adds rows until the one-page cap is hit
                study.add_trial(optuna.trial.create_trial(value=float(i), user_attrs={"pad": "x" * 4000}))
    finally:
        storage.engine.dispose()
    assert "exceeding max length" in str(info.value)  # what Optuna says
    message = describe_storage_error(info.value)
    assert message.startswith("the disk holding the database is full")
    assert "database or disk is full" in message


def test_a_locked_database_is_named(tmp_path) -> None:
    path = tmp_path / "search.db"
    _study_db(path, n_trials=0)
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as info:
            other.execute("BEGIN IMMEDIATE")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        other.close()
    wrapped = sqlalchemy.exc.OperationalError("BEGIN IMMEDIATE", {}, info.value)
    assert describe_storage_error(wrapped).startswith("the database is locked")


def test_an_unreachable_server_is_named() -> None:
    with pytest.raises(StorageError) as info:
        open_storage("postgresql+psycopg2://user:secret@127.0.0.1:1/db", create=False)
    message = str(info.value)
    assert "cannot reach the database server" in message
    assert "secret" not in message and "\n" not in message


def test_an_unknown_error_keeps_its_first_line() -> None:
    assert describe_storage_error(ValueError("odd thing\nmore")) == "odd thing"
    assert describe_storage_error(None) == "unknown storage error"


def test_a_server_that_accepts_and_never_answers_is_given_up_on(monkeypatch) -> None:
    pytest.importorskip("psycopg2")
    from studies import store

    monkeypatch.setattr(store, "PG_CONNECT_TIMEOUT_S", 1, raising=False)
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody ever answers
    port = listener.getsockname()[1]
    url = f"postgresql+psycopg2://user:secret@127.0.0.1:{port}/db"
    try:
        with _alarm(30):
            with pytest.raises(StorageError) as opening:
                open_storage(url, readonly=True)
            with pytest.raises(StorageError) as querying:
                with connect_readonly(url):
                    pass
    finally:
        listener.close()
    for info in (opening, querying):
        assert str(info.value).endswith(f'(connection to server at "127.0.0.1", port {port} failed: timeout expired)')
        assert "cannot reach the database server" in str(info.value)
    assert store.with_available_driver("postgresql://u@h/db?connect_timeout=3").endswith("?connect_timeout=3")


@pytest.mark.parametrize("libpq, sentence", [
    ('FATAL:  password authentication failed for user "search"',
     "the server refused the user name or password: correct them in the storage URL"),
    ("fe_sendauth: no password supplied",
     "the server refused the user name or password: correct them in the storage URL"),
    ('FATAL:  database "serach" does not exist',
     "the server has no database of that name: create it (createdb NAME) or correct the URL"),
    ('FATAL:  role "serach" does not exist',
     "the server has no user of that name: correct the user name in the storage URL"),
])
def test_a_server_that_refuses_the_login_is_not_called_unreachable(libpq, sentence) -> None:
    text = f'connection to server at "127.0.0.1", port 5432 failed: {libpq}\n'
    wrapped = sqlalchemy.exc.OperationalError("connect", {}, Exception(text))
    assert describe_storage_error(wrapped) == f'{sentence} (connection to server at "127.0.0.1", port 5432 failed: {libpq})'


def test_a_wal_index_that_cannot_grow_is_named_a_full_disk() -> None:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"  # what SQLite reports when the -shm file cannot grow (ENOSPC)
    assert describe_storage_error(error) == ("the disk holding the database is full: free some space and run again "
                                             "(disk I/O error [SQLITE_IOERR_SHMSIZE])")
    other = sqlite3.OperationalError("disk I/O error")
    other.sqlite_errorname = "SQLITE_IOERR_READ"
    assert describe_storage_error(other) == "disk I/O error [SQLITE_IOERR_READ]"


def test_a_question_mark_in_a_sqlite_file_name_is_refused_not_cut_off(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/run?2.db"
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(StorageError) as info:
            open_storage(url, **kwargs)
        assert str(info.value) == (f"invalid storage URL {url!r}: a '?' starts URL arguments; write %3F for a '?' in a "
                                   "file name")
    assert list(tmp_path.iterdir()) == []
    open_storage(f"sqlite:///{tmp_path}/run%3F2.db").engine.dispose()
    assert (tmp_path / "run?2.db").is_file()


def test_a_database_whose_schema_version_row_is_gone_is_refused_for_reading_and_untouched(tmp_path) -> None:
    path = tmp_path / "search.db"
    _study_db(path)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM alembic_version")
    conn.close()
    before = path.read_bytes()
    for read in (lambda: open_storage(_url(path), readonly=True), lambda: connect_readonly(_url(path)).__enter__()):
        with pytest.raises(StorageError) as info:
            read()
        assert str(info.value) == (f"storage {_url(path)}: {str(path)!r} has no Optuna schema version (its "
                                   "alembic_version table is empty: being created right now, or damaged); nothing "
                                   "was changed")
    assert path.read_bytes() == before


@pytest.mark.parametrize("readonly", [True, False])
def test_a_postgresql_table_lock_held_by_another_session_is_given_up_on_after_the_busy_timeout(pg_database, monkeypatch,
                                                                                                readonly):
    import threading

    from studies import store

    storage = open_storage(pg_database)
    optuna.create_study(storage=storage, study_name="digits/coarse", direction="maximize")
    storage.engine.dispose()
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 1)
    holder = sqlalchemy.create_engine(store.with_available_driver(pg_database))
    locked = threading.Event()

    def hold() -> None:  # a session left in a transaction holding a table lock (for 15 s, so that a reader returns)
        with holder.connect() as conn:
            conn.exec_driver_sql("LOCK TABLE studies IN ACCESS EXCLUSIVE MODE")
            locked.set()
            conn.exec_driver_sql("SELECT pg_sleep(15)")
            conn.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(30)
        storage = open_storage(pg_database, readonly=readonly)
        try:
            with pytest.raises(optuna.exceptions.StorageInternalError) as info:
                if readonly:
                    storage.get_all_studies()
                else:
                    optuna.create_study(storage=storage, study_name="digits/fine-1", direction="maximize")
        finally:
            storage.engine.dispose()
    finally:
        thread.join()
        holder.dispose()
    assert describe_storage_error(info.value) == (
        "the database is locked: another process has held its write lock too long; try again when it is done "
        "(canceling statement due to lock timeout)")


@pytest.mark.parametrize("readonly", [True, False])
def test_a_postgresql_schema_version_locked_by_another_session_is_given_up_on_after_the_busy_timeout(
        pg_database, monkeypatch, readonly):
    # opening read the schema version without a lock timeout: a session left in a transaction holding a lock on
    # alembic_version (an `optuna storage upgrade` cut off mid-way, a LOCK TABLE) kept every command waiting for it
    import threading
    import time

    from studies import store
    from studies.errors import StorageBusyError

    open_storage(pg_database).engine.dispose()
    monkeypatch.setattr(store, "SQLITE_BUSY_TIMEOUT_S", 1)
    holder = sqlalchemy.create_engine(store.with_available_driver(pg_database))
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.connect() as conn:
            conn.exec_driver_sql("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)
            conn.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(30)
        started = time.monotonic()
        with pytest.raises(StorageBusyError) as info:
            open_storage(pg_database, readonly=readonly)
        waited = time.monotonic() - started
    finally:
        release.set()
        thread.join()
        holder.dispose()
    assert waited < 10
    assert str(info.value) == (f"storage {pg_database}: cannot read its schema version: the database is locked: "
                               "another process has held its write lock too long; try again when it is done "
                               "(canceling statement due to lock timeout)")


@pytest.mark.parametrize("tail", ["/run%00.db", "/run.db?timeout=1%00"])
def test_a_nul_character_in_a_sqlite_url_is_refused_in_one_line(tmp_path, tail) -> None:
    url = f"sqlite:///{tmp_path}{tail}"
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(StorageError) as info:  # was os.stat's ValueError: embedded null byte
            open_storage(url, **kwargs)
        assert str(info.value) == (f"invalid storage URL {url!r}: it holds a NUL character (%00), which no part of a "
                                   "database URL may hold")
        assert info.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_a_nul_character_in_a_postgresql_url_is_refused_before_connecting() -> None:
    with pytest.raises(StorageError) as info:  # was libpq's ValueError: embedded null character
        open_storage("postgresql://user:secret@localhost/d%00b")
    assert str(info.value) == ("invalid storage URL 'postgresql://user:***@localhost/d%00b': it holds a NUL character "
                               "(%00), which no part of a database URL may hold")


@pytest.mark.parametrize("url", ["postgresql://user:p@ss@127.0.0.1:1/runs", "postgresql://user:s3@cr@t@db.example/runs",
                                 "postgresql://user:p@ss@db.example/runs?connect_timeout=3"])
def test_an_at_sign_in_a_server_urls_password_is_refused_and_none_of_the_password_shown(url) -> None:
    # "postgresql://postgres:p@ss@host/db" connected to the host "ss@host", and the line showed part of the
    # password: "storage postgresql://postgres:***@ss@127.0.0.1:.../walk: cannot connect: ... (could not translate
    # host name "ss@127.0.0.1" to address ...)"
    with pytest.raises(StorageError) as info:
        open_storage(url)
    user, _, rest = url.partition("//")[2].partition(":")
    shown = f"postgresql://{user}:***@{rest.rpartition('@')[2]}"
    assert str(info.value) == f"invalid storage URL {shown!r}: an '@' in its password is written %40"
    assert "ss@" not in str(info.value) and "cr@t" not in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("url,port", [
    ("postgresql://user:secret@db.example:notaport/runs", "notaport"),  # once "invalid literal for int() ..."
    ("postgresql://user:secret@db.example:/runs", ""),
    ("postgresql://user:secret@db.example:５４３２/runs", "５４３２"),  # once read as 5432, as int() reads it
    ("postgresql://user:secret@db.example:0/runs", "0"),
    ("postgresql://user:secret@[::1]:x/runs", "x"),
])
def test_a_server_url_whose_port_is_no_port_number_is_refused_before_connecting(url, port) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert str(info.value) == (f"invalid storage URL {url.replace(':secret@', ':***@')!r}: its port must be a number "
                               f"from 1 to 65535 (digits 0-9), got {port!r}")
    assert info.value.exit_code == 2


def test_a_url_without_a_port_is_not_read_as_one_up_to_its_password() -> None:
    for url in ("postgresql://user:secret@127.0.0.1/runs", "postgresql://user:se/cret@127.0.0.1/runs"):
        with pytest.raises(StorageError) as info:  # no server there, or a login refused: not "its port must be ..."
            open_storage(url)
        assert "secret" not in str(info.value) and "se/cret" not in str(info.value)
        assert "port must be" not in str(info.value)
