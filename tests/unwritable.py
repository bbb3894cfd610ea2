"""A file or folder made unwritable even for root, for tests of read-only databases."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """``path`` unwritable while the block runs (chmod, or `chattr +i` as root); skips the test where impossible."""
    folder = path.is_dir()
    if os.geteuid() != 0:
        path.chmod(0o555 if folder else 0o444)
    elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)],
                                                          capture_output=True).returncode != 0:
        pytest.skip("running as root without a working `chattr +i`: root can write anything")
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o755 if folder else 0o644)
