"""Shared fixtures, and the ``slow`` marker: the process-killing and long end-to-end tests.

``python -m pytest`` runs them where the environment says it is CI (``CI`` set to anything but
``0``/``false``/``no``; CI sets ``CI=true``) or with ``--slow``; elsewhere it skips them, so a
developer's run is quick and CI's run is the whole suite.
"""
import os

import pytest

from tests.fixtures_browser import chromium_path  # noqa: F401
from tests.fixtures_pg import pg_database, postgres_server, postgres_url  # noqa: F401

# The CLI's --jobs defaults to auto (one worker process per usable core). The tests run one process
# unless they ask for more, so that a suite on 2 shared cores does not start a pool per command;
# tests of --jobs auto pass it explicitly.
os.environ.setdefault("SEARCH_JOBS", "1")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow (CI runs them always)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a process-killing or long end-to-end test (run in CI or with --slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or _in_ci():
        return
    skip = pytest.mark.skip(reason="slow: runs in CI, or locally with --slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
