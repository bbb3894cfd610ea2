"""Opening the study database: URL resolution, WAL, and refusing bad files without touching them."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from studies.errors import StorageError, StudyError
from studies import optuna_rdb
from studies.store import (
    DEFAULT_STORAGE,
    connect_readonly,
    mask_url,
    open_storage,
    resolve_storage_url,
    sqlite_path,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def _make_study_db(path: Path, n_trials: int = 3) -> None:
    """A closed Optuna database with one study of ``n_trials`` complete trials."""
    storage = open_storage(_url(path))
    study = optuna.create_study(storage=storage, study_name="digits/coarse", direction="maximize")
    for i in range(n_trials):
        study.add_trial(optuna.trial.create_trial(value=0.1 * i))
    storage.engine.dispose()


def test_errors_share_one_root_with_exit_code_2() -> None:
    assert issubclass(StorageError, StudyError)
    assert StorageError.exit_code == 2


def test_resolve_storage_url_prefers_explicit_then_env_then_default(monkeypatch) -> None:
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    assert resolve_storage_url(None) == DEFAULT_STORAGE == "sqlite:///search.db"
    monkeypatch.setenv("SEARCH_STORAGE", "sqlite:///env.db")
    assert resolve_storage_url(None) == "sqlite:///env.db"
    assert resolve_storage_url("sqlite:///cli.db") == "sqlite:///cli.db"


def test_mask_url_hides_the_password() -> None:
    masked = mask_url("postgresql://u:secret@h/db")
    assert "secret" not in masked
    assert masked == "postgresql://u:***@h/db"
    assert mask_url("sqlite:///search.db") == "sqlite:///search.db"
    # libpq also takes the password as a URL argument; it was shown as written
    assert (mask_url("postgresql://u@h/db?sslmode=require&Password=secret&connect_timeout=3")
            == "postgresql://u@h/db?sslmode=require&Password=***&connect_timeout=3")


def test_mask_url_shows_the_url_as_written_but_its_password() -> None:
    # SQLAlchemy's rendering escaped a SQLite path's colons: sqlite:///:memory: was shown as sqlite:///%3Amemory%3A
    assert mask_url("sqlite:///:memory:") == "sqlite:///:memory:"
    assert mask_url("sqlite:////data/run:2/search.db") == "sqlite:////data/run:2/search.db"
    assert mask_url("postgresql://host:5432/db") == "postgresql://host:5432/db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert (mask_url("postgresql://u:p%40ss/w:rd@h:5432/db?connect_timeout=3")
            == "postgresql://u:***@h:5432/db?connect_timeout=3")


def test_sqlite_path_only_for_sqlite_files(tmp_path) -> None:
    assert sqlite_path(_url(tmp_path / "a.db")) == tmp_path / "a.db"
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://u:p@h/db") is None


def test_open_sets_wal_and_busy_timeout(tmp_path) -> None:
    path = tmp_path / "x.db"
    storage = open_storage(_url(path))
    optuna.create_study(storage=storage, study_name="digits/coarse")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    storage.engine.dispose()


def _add_trials_in_worker(url: str, n_trials: int) -> None:
    storage = open_storage(url, create=False)
    study = optuna.load_study(study_name="digits/coarse", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-6, 1.0, log=True), n_trials=n_trials)
    storage.engine.dispose()


def test_parallel_workers_do_not_hit_database_is_locked(tmp_path) -> None:
    url = _url(tmp_path / "par.db")
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="digits/coarse", direction="maximize")
    storage.engine.dispose()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_trials_in_worker, args=(url, 15)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    storage = open_storage(url, create=False)
    trials = optuna.load_study(study_name="digits/coarse", storage=storage).trials
    assert len(trials) == 60
    assert sorted(t.number for t in trials) == list(range(60))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def _open_fresh(url: str, barrier) -> str:
    barrier.wait()
    try:
        open_storage(url).engine.dispose()
        return "ok"
    except StorageError as exc:
        return str(exc)


@pytest.mark.slow
def test_a_fresh_database_opened_by_six_processes_at_once(tmp_path) -> None:
    # create_all makes the tables one by one and Optuna stamps the schema version: racers lose
    # on "table ... already exists" or a duplicate alembic_version row, and must try again
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        for attempt in range(3):
            url = _url(tmp_path / f"fresh{attempt}.db")
            barrier = manager.Barrier(6)
            with context.Pool(6) as pool:
                assert pool.starmap(_open_fresh, [(url, barrier)] * 6) == ["ok"] * 6
            storage = open_storage(url, create=False)
            assert storage.get_current_version() == optuna_rdb._alembic_scripts().get_current_head()  # alembic's own
            storage.engine.dispose()


def test_missing_parent_folder_is_refused(tmp_path) -> None:
    url = _url(tmp_path / "nope" / "x.db")
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(url)
    assert not (tmp_path / "nope").exists()


def test_create_false_on_missing_file_says_no_database(tmp_path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(StorageError, match="no database at"):
        open_storage(_url(path), create=False)
    assert not path.exists()


def test_not_a_database_is_refused_and_left_unchanged(tmp_path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 20)
    before = _snapshot(path)
    with pytest.raises(StorageError, match="not a SQLite database") as info:
        open_storage(_url(path))
    assert str(path) in str(info.value)
    assert _snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_foreign_sqlite_database_is_refused_and_left_unchanged(tmp_path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    before = _snapshot(path)
    with pytest.raises(StorageError, match="not an Optuna study database"):
        open_storage(_url(path))
    assert _snapshot(path) == before


def test_read_only_file_is_refused_for_writing(tmp_path) -> None:
    path = tmp_path / "ro.db"
    _make_study_db(path)
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if as_root:  # root bypasses file permissions; an immutable file is read-only even for root
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
            pytest.skip("root bypasses file permissions and `chattr +i` is not available here")
    else:
        path.chmod(0o444)
    try:
        with pytest.raises(StorageError, match="read-only"):
            open_storage(_url(path))
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o644)


def test_read_only_file_check_uses_os_access(tmp_path, monkeypatch) -> None:
    # Runs under root too: pretend the OS says the file is not writable.
    path = tmp_path / "ro.db"
    _make_study_db(path)
    before = _snapshot(path)
    real_access = os.access

    def access(target, mode, *args, **kwargs):
        if Path(target) == path and mode == os.W_OK:
            return False
        return real_access(target, mode, *args, **kwargs)

    monkeypatch.setattr("studies.store.os.access", access)
    with pytest.raises(StorageError, match="is read-only"):
        open_storage(_url(path))
    assert _snapshot(path) == before


def _set_schema_revision(path: Path, revision: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


def test_newer_schema_is_refused_and_file_untouched(tmp_path) -> None:
    path = tmp_path / "future.db"
    _make_study_db(path)
    _set_schema_revision(path, "v9.9.9.x")
    before = _snapshot(path)
    for create in (True, False):
        with pytest.raises(StorageError, match="newer or unknown Optuna schema") as info:
            open_storage(_url(path), create=create)
        assert "v9.9.9.x" in str(info.value)
    assert _snapshot(path) == before


def test_older_schema_asks_for_upgrade(tmp_path) -> None:
    path = tmp_path / "old.db"
    _make_study_db(path)
    _set_schema_revision(path, "v3.0.0.d")
    before = _snapshot(path)
    with pytest.raises(StorageError, match="older Optuna schema.*optuna storage upgrade"):
        open_storage(_url(path))
    assert _snapshot(path) == before


def test_reopen_existing_database_keeps_trials(tmp_path) -> None:
    path = tmp_path / "keep.db"
    _make_study_db(path, n_trials=4)
    storage = open_storage(_url(path), create=False)
    study = optuna.load_study(study_name="digits/coarse", storage=storage)
    assert len(study.trials) == 4
    assert study.best_value == pytest.approx(0.3)


def test_connect_readonly_reads_but_cannot_write(tmp_path) -> None:
    path = tmp_path / "ro.db"
    _make_study_db(path, n_trials=5)
    with connect_readonly(_url(path)) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM trials").scalar() == 5
        with pytest.raises(sqlalchemy.exc.OperationalError, match=r"\(sqlite3\.OperationalError\) attempt to write a "
                                                                 r"readonly database"):
            conn.exec_driver_sql("DELETE FROM trials")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM trials").fetchone()[0] == 5


def test_connect_readonly_on_missing_file(tmp_path) -> None:
    with pytest.raises(StorageError, match="no database at"):
        with connect_readonly(_url(tmp_path / "missing.db")):
            pass
    assert not (tmp_path / "missing.db").exists()


def test_unreachable_server_is_a_storage_error_with_masked_url() -> None:
    url = "postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2"
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert "secret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


def _enqueue_in_another_process(url: str, n: int) -> None:
    storage = open_storage(url)
    study = optuna.load_study(study_name="pooled", storage=storage)
    for _ in range(n):
        study.enqueue_trial({})
    storage.engine.dispose()  # its last connection closes: SQLite checkpoints, and deletes the WAL if alone


def test_a_pooled_sqlite_storage_sees_other_processes_commits_and_keeps_its_wal(tmp_path):
    """Writing engines pool connections: each session is a real BEGIN ... COMMIT, so a parent sees its
    workers' commits; reopening the file in this process keeps the POSIX locks that guard the WAL."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'pooled.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="pooled", direction="maximize")
    assert study.get_trials() == []  # a pooled connection now holds the file open
    open_storage(url).engine.dispose()  # checks the file's header again in this process
    for round_ in (1, 2):
        worker = multiprocessing.get_context("spawn").Process(target=_enqueue_in_another_process, args=(url, 3))
        worker.start()
        worker.join(60)
        assert worker.exitcode == 0
        assert len(study.get_trials()) == 3 * round_  # the other process's commits, through the pool
    study.enqueue_trial({})  # the WAL this process uses is still the file's
    storage.engine.dispose()
    assert len(optuna.load_study(study_name="pooled", storage=open_storage(url)).get_trials()) == 7


def test_errors_the_pool_recovers_from_do_not_reach_a_terminal_that_configured_no_logging():
    # e.g. "Error closing cursor" and its traceback when Ctrl-C cut a query and the connection closed first
    code = ("import logging, studies.store\n"
            "logging.getLogger('sqlalchemy.pool.impl.QueuePool').error('Error closing cursor', exc_info=False)\n"
            "logging.getLogger('studies').error('shown')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stderr == "shown\n", done.stderr


def test_wal_is_switched_on_after_a_first_write_and_tried_again_while_a_reader_holds_it_off(tmp_path):
    from studies import store

    path = tmp_path / "plain.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30},
                                      poolclass=sqlalchemy.pool.NullPool)
    store._wal_after_first_write(engine)

    def mode() -> str:
        with sqlite3.connect(path) as conn:
            return conn.execute("PRAGMA journal_mode").fetchone()[0]

    with engine.connect() as c:  # reading only: left as it is
        c.exec_driver_sql("SELECT * FROM t").all()
    assert mode() == "delete"
    reader = sqlite3.connect(path, isolation_level=None)
    c = engine.connect()
    c.exec_driver_sql("INSERT INTO t VALUES (1)")
    c.commit()
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()  # a reader's lock when the writer's connection is returned
    c.close()  # the switch waits at most WAL_SWITCH_WAIT_MS, not the 30 s busy timeout, and is left for later
    reader.execute("COMMIT")
    reader.close()
    assert mode() == "delete"
    with engine.begin() as c:  # the next connection that wrote switches it
        c.exec_driver_sql("INSERT INTO t VALUES (2)")
    assert mode() == "wal"
    engine.dispose()


def test_a_file_not_yet_in_wal_mode_is_written_with_synchronous_full(tmp_path, monkeypatch):
    # NORMAL is safe from corruption on power loss in WAL mode only; a pooled connection made before the switch is set
    # to NORMAL at its next checkout (left at FULL it synced every commit: 0.06 -> 0.4 ms a transaction)
    import sqlalchemy

    from studies import store

    monkeypatch.delenv(store.SQLITE_SYNC_ENV, raising=False)
    with sqlite3.connect(tmp_path / "plain.db") as conn:
        conn.execute("CREATE TABLE t (x)")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'plain.db'}", poolclass=sqlalchemy.pool.QueuePool)
    store._wal_after_first_write(engine)

    def level(c: sqlalchemy.Connection) -> int:
        return c.exec_driver_sql("PRAGMA synchronous").scalar()

    with engine.connect() as c:
        assert level(c) == 2  # FULL: a rollback journal
        c.exec_driver_sql("INSERT INTO t VALUES (1)")
        c.commit()
    with engine.connect() as c:  # the same pooled connection, the file now in WAL mode
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal" and level(c) == 1  # NORMAL
    engine.dispose()
    with engine.connect() as c:  # a new connection to a file in WAL mode
        assert level(c) == 1
    engine.dispose()
