"""A throwaway PostgreSQL server for tests.

``postgres_url`` (session scope) starts a private server from the Debian
``postgresql`` package's binaries (``/usr/lib/postgresql/*/bin``): ``initdb`` into
a temporary directory, listen on 127.0.0.1 on a free port, Unix socket in the same
directory, trust authentication for the ``postgres`` role. It yields a SQLAlchemy
URL to a fresh database and stops the server (``pg_ctl stop -m immediate``) and
removes the directory at teardown.

PostgreSQL refuses to run as root, so when the tests run as root every server
command runs as the ``postgres`` system user (``runuser`` or ``su``), and the
temporary directory is handed to that user.

``pg_database`` (function scope) creates a new database on that server for one test
and drops it afterwards.

Anything missing (binaries, psycopg2, the ``postgres`` user) or a server that does
not start makes the tests that use these fixtures skip, with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

START_TIMEOUT = 30.0  # seconds to wait for the server to accept connections
SERVER_USER = "postgres"  # the system user to run the server as when we are root


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "(no output)"


def _version_key(path: str) -> tuple:
    # /usr/lib/postgresql/15/bin -> (15,); highest version first
    parts = re.findall(r"\d+", Path(path).parent.name)
    return tuple(int(p) for p in parts)


def find_pg_bindir() -> Path | None:
    """Directory holding initdb and pg_ctl, newest version first; or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for d in candidates:
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(
            os.path.join(d, "pg_ctl"), os.X_OK
        ):
            return Path(d)
    # Other layouts (e.g. a source build or Homebrew) put them on PATH.
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Runner:
    """Run server commands as ourselves, or as the postgres user when we are root."""

    def __init__(self) -> None:
        self.as_root = os.geteuid() == 0
        self.prefix: list[str] | None = None
        self.use_su = False
        self.uid = self.gid = None
        if not self.as_root:
            return
        try:
            pw = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root and there is no '{SERVER_USER}' system user to run PostgreSQL as"
            ) from None
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        runuser = shutil.which("runuser") or (
            "/usr/sbin/runuser" if os.access("/usr/sbin/runuser", os.X_OK) else None
        )
        if runuser:
            self.prefix = [runuser, "-u", SERVER_USER, "--"]
        elif shutil.which("su"):
            self.use_su = True
        else:
            raise RuntimeError("running as root and neither runuser nor su is available")

    def give(self, path: Path) -> None:
        """Hand a directory we created to the server user."""
        if self.as_root:
            os.chown(path, self.uid, self.gid)

    def run(self, argv: list[str], cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
        if self.as_root:
            if self.use_su:
                argv = ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(argv)]
            else:
                argv = [*self.prefix, *argv]
        env = dict(os.environ)
        env.setdefault("LC_ALL", "C")
        env.pop("PGDATA", None)
        return subprocess.run(
            argv,
            cwd=cwd,  # the server user may not be able to enter the caller's cwd
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def can_use(self, path: Path) -> bool:
        """Whether the server user can write into ``path``."""
        if not self.as_root:
            return os.access(path, os.W_OK | os.X_OK)
        try:
            return self.run(["test", "-w", str(path), "-a", "-x", str(path)], cwd=Path("/")).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def _make_base_dir(runner: _Runner) -> Path:
    """A temporary directory the server user owns; fall back to /tmp when the
    default temp dir is not reachable by that user (e.g. TMPDIR under /root)."""
    tried = []
    for parent in dict.fromkeys([tempfile.gettempdir(), "/tmp"]):
        base = Path(tempfile.mkdtemp(prefix="pgtest-", dir=parent))
        runner.give(base)
        if runner.can_use(base):
            return base
        tried.append(str(parent))
        shutil.rmtree(base, ignore_errors=True)
    raise RuntimeError(f"the '{SERVER_USER}' user cannot write to a temp dir under {', '.join(tried)}")


def _connect(port: int, dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(
        host="127.0.0.1", port=port, user="postgres", dbname=dbname, connect_timeout=5
    )


def _wait_ready(port: int, timeout: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            _connect(port).close()
            return
        except psycopg2.OperationalError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout:.0f} s: {_first_line(str(last))}")


def _run_outside_a_transaction(port: int, statement: str) -> None:
    """Run ``statement`` on the server's postgres database with autocommit (CREATE/DROP DATABASE need it)."""
    conn = _connect(port)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def create_database(port: int, name: str) -> None:
    _run_outside_a_transaction(port, f'CREATE DATABASE "{name}"')


def drop_database(port: int, name: str) -> None:
    # FORCE (PostgreSQL 13+) ends sessions a test left open, e.g. a pooled
    # SQLAlchemy engine that was never disposed.
    _run_outside_a_transaction(port, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresServer:
    """One private PostgreSQL server in a temporary directory."""

    def __init__(self) -> None:
        self.bindir = find_pg_bindir()
        if self.bindir is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found under "
                "/usr/lib/postgresql/*/bin or on PATH; install the 'postgresql' package"
            )
        self.runner = _Runner()
        self.base: Path | None = None
        self.port: int | None = None
        self.started = False

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    def _log_error(self) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return ""
        for line in text.splitlines():
            if re.search(r"\b(FATAL|ERROR|PANIC)\b", line):
                return line.strip()
        return _first_line(text) if text.strip() else ""

    def start(self) -> None:
        self.base = _make_base_dir(self.runner)
        r = self.runner.run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.datadir),
                "-A", "trust",
                "-U", "postgres",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=self.base,
        )
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {_first_line(r.stderr or r.stdout)}")

        # A free port can be taken between picking and binding; try a few.
        last_error = ""
        for _ in range(3):
            self.port = free_port()
            self._write_conf()
            r = self.runner.run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D", str(self.datadir),
                    "-l", str(self.logfile),
                    "-w", "-t", str(int(START_TIMEOUT)),
                    "start",
                ],
                cwd=self.base,
                timeout=START_TIMEOUT + 30,
            )
            if r.returncode == 0:
                self.started = True
                break
            last_error = self._log_error() or _first_line(r.stderr or r.stdout)
            if "already in use" not in last_error and "could not bind" not in last_error:
                break
        if not self.started:
            raise RuntimeError(f"pg_ctl start failed: {last_error}")
        _wait_ready(self.port, START_TIMEOUT)

    def _write_conf(self) -> None:
        conf = self.datadir / "postgresql.auto.conf"
        # postgresql.auto.conf is read last, so these settings win; rewritten on
        # every attempt so only the current port is in it.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            # A throwaway server: durability is not needed, speed is.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        text = "".join(f"{k} = {v}\n" for k, v in settings.items())
        conf.write_text(text)
        self.runner.give(conf)

    def stop(self) -> None:
        try:
            if self.started:
                self.runner.run(
                    [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
                    cwd=self.base,
                    timeout=60,
                )
        finally:
            self.started = False
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None


def pg_url(port: int, dbname: str) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{dbname}"


@pytest.fixture(scope="session")
def postgres_server():
    """The running PostgreSQL server (a ``PostgresServer``), or skip."""
    try:
        import psycopg2  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"PostgreSQL tests need psycopg2: {_first_line(str(exc))}")
    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.skip(f"cannot run a PostgreSQL server: {exc}")
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        pytest.skip(f"PostgreSQL server did not start: {_first_line(str(exc))}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server):
    """SQLAlchemy URL of a database on a throwaway PostgreSQL server, shared by the session."""
    name = "test_session"
    create_database(postgres_server.port, name)
    yield pg_url(postgres_server.port, name)


@pytest.fixture
def pg_database(postgres_server):
    """SQLAlchemy URL of a new, empty database for this test only; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    create_database(postgres_server.port, name)
    try:
        yield pg_url(postgres_server.port, name)
    finally:
        drop_database(postgres_server.port, name)
