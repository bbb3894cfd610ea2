"""The test fixtures themselves: a throwaway PostgreSQL server and headless Chromium."""

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from tests.fixtures_browser import screenshot


def test_postgres_url_stores_and_counts_rows(postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE fixture_check (id integer PRIMARY KEY, name text)"))
            conn.execute(
                sa.text("INSERT INTO fixture_check (id, name) VALUES (:id, :name)"),
                [{"id": i, "name": f"row{i}"} for i in range(3)],
            )
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM fixture_check")).scalar_one() == 3
            assert conn.execute(sa.text("SELECT version()")).scalar_one().startswith("PostgreSQL")
            conn.execute(sa.text("DROP TABLE fixture_check"))
            conn.commit()
    finally:
        engine.dispose()


def _table_names(url):
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# Run twice: each run starts from an empty database of its own and leaves a table
# behind, so whichever runs second would see the other's table if they shared one.
_seen_urls = []


@pytest.mark.parametrize("run", ["first", "second"])
def test_pg_database_is_fresh_per_test(pg_database, run):
    assert pg_database not in _seen_urls
    _seen_urls.append(pg_database)
    assert _table_names(pg_database) == set()
    engine = sa.create_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE left_by_{run} (x integer)"))
    # Deliberately leave the engine's pooled connection open: teardown must still
    # drop the database.
    assert _table_names(pg_database) == {f"left_by_{run}"}


def test_chromium_screenshot_shows_red_block(chromium_path, tmp_path):
    page = tmp_path / "red.html"
    page.write_text(
        "<!doctype html><html><body style='margin:0;background:#fff'>"
        "<div style='width:300px;height:200px;background:#ff0000'></div>"
        "<p>fixture check</p></body></html>"
    )
    png = screenshot(chromium_path, page, tmp_path / "red.png", width=400, height=400)
    assert isinstance(png, Path) and png.is_file()

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    red = (r > 200) & (g < 60) & (b < 60)
    # The block is 300x200 of a 400x400 window: 37.5 % of the pixels, at its place in the top left corner.
    assert rgb.shape == (400, 400, 3)
    assert red.sum() == 300 * 200 and red[:200, :300].all(), f"{red.mean():.1%} red pixels"
    # And the white page around it is there too: the screenshot is the page, not a blank.
    white = (r > 240) & (g > 240) & (b > 240)
    assert white.mean() > 0.10
