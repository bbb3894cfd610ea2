"""Helpers for tests that run the real ``search`` command in processes and check a stage's budget in the database."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from search.workers import BLAS_THREAD_VARS
from studies.budget import RETRY_OF, unretried_failures
from studies.errors import StorageError
from studies.store import open_storage

ROOT = Path(__file__).resolve().parents[2]
SEARCH = [sys.executable, "-m", "search"]
# trials of a few tens of milliseconds: many of them fit in a fault-injection round
SMALL = ["--data", "digits", "--train-size", "200", "--epochs", "1", "--hidden", "20"]
# trials of about a second (no explosions in this lr range): a signal sent while one runs lands mid-trial
LONG = ["--data", "digits", "--epochs", "150", "--hidden", "100", "--batch-size", "20",
        "--lr", "1e-4:1e-3", "--reg", "1e-5:1e-4"]


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "SEARCH_STORAGE"}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
    for name in BLAS_THREAD_VARS:  # several processes on few cores: one BLAS thread each, as --jobs does
        e[name] = "1"
    return e


@dataclass
class Proc:
    """A ``search`` subprocess whose stdout/stderr go to files (a pipe nobody reads would block it)."""

    popen: subprocess.Popen
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float = 120) -> int:
        return self.popen.wait(timeout=timeout)

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()


def start(args: list[str], folder: Path, tag: str, new_session: bool = False,
          extra_env: dict[str, str] | None = None, command: list[str] | None = None) -> Proc:
    """Start ``search ARGS`` (or ``command``) in ``folder``, output to ``<tag>.out``/``<tag>.err``."""
    out, err = folder / f"{tag}.out", folder / f"{tag}.err"
    with open(out, "w") as o, open(err, "w") as e:
        popen = subprocess.Popen([*(command or SEARCH), *args], cwd=folder, env={**env(), **(extra_env or {})},
                                 stdout=o, stderr=e,
                                 stdin=subprocess.DEVNULL, start_new_session=new_session)
    return Proc(popen, out, err)


def run(args: list[str], folder: Path, tag: str = "run", timeout: float = 120) -> Proc:
    proc = start(args, folder, tag)
    proc.wait(timeout)
    return proc


def read_terminal(terminal: int) -> str:
    """All a pseudo-terminal's other end wrote, read until it closed; ``terminal`` (the reading end) is closed."""
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # the terminal's other end closed: all read
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    return shown.decode()


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Budget:
    """A stage's trials as the budget sees them."""

    n_trials: int | None
    ready: bool
    trials: list[FrozenTrial] = field(default_factory=list)

    @property
    def states(self) -> Counter:
        return Counter(t.state.name for t in self.trials)

    @property
    def finished(self) -> int:
        return self.states["COMPLETE"] + self.states["PRUNED"]

    @property
    def retries(self) -> list[int]:
        return [t.system_attrs[RETRY_OF] for t in self.trials if RETRY_OF in t.system_attrs]

    @property
    def unretried(self) -> list[int]:
        """Re-runnable FAIL trials without their copy yet (what a killed process may leave for the next one)."""
        return unretried_failures(self.trials)

    def problems(self) -> list[str]:
        """What breaks the budget's invariant: N slots, each a chain of failed tries ending in one live or finished trial."""
        if not self.ready:
            return [] if not self.trials else [f"{len(self.trials)} trials in a stage that is not ready"]
        found = []
        live = self.finished + self.states["WAITING"] + self.states["RUNNING"] + len(self.unretried)
        if live != self.n_trials:
            found.append(f"finished+waiting+running+unretried = {live}, budget {self.n_trials}: {dict(self.states)}")
        if len(self.retries) != len(set(self.retries)):
            found.append(f"a failed trial was re-enqueued twice: {sorted(self.retries)}")
        if self.finished > (self.n_trials or 0):
            found.append(f"{self.finished} finished trials, more than the budget {self.n_trials}")
        return found


def training(url: str, name: str) -> list[FrozenTrial]:
    """RUNNING trials of stage ``name`` past sampling their parameters: a signal now lands in the middle of training."""
    b = budget(url, name)
    return [t for t in b.trials if t.state.name == "RUNNING" and t.params] if b else []


def budget(url: str, name: str) -> Budget | None:
    """The stage's budget read from the database; None when the database or the study does not exist yet."""
    try:
        storage = open_storage(url, create=False)
    except StorageError:
        return None
    try:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            return None
        return Budget(study.user_attrs.get("n_trials"), bool(study.user_attrs.get("ready")), study.get_trials())
    finally:
        storage.engine.dispose()
