import os

from tests.fixtures_browser import chromium_path  # noqa: F401
from tests.fixtures_pg import pg_database, postgres_server, postgres_url  # noqa: F401

# The CLI's --jobs defaults to auto (one worker process per usable core). The tests run one process
# unless they ask for more, so that a suite on 2 shared cores does not start a pool per command;
# tests of --jobs auto pass it explicitly.
os.environ.setdefault("SEARCH_JOBS", "1")
