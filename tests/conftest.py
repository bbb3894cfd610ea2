from tests.fixtures_browser import chromium_path  # noqa: F401
from tests.fixtures_pg import pg_database, postgres_server, postgres_url  # noqa: F401
