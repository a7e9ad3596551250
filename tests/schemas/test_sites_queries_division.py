"""The sites, holds and forecast SQL guard every division (the scanner of test_queries_division.py)."""

import pytest

from schemas import queries as sq
from tests.schemas.test_queries_division import unguarded_divisions

SQL = {
    "SITES_SQL": sq.sites_sql("c", "s"),
    "HOLDS_SQL": sq.holds_sql("c", "s", limit=3),
    "HELD_JOBS_SQL": sq.held_jobs_sql("c", "s", limit=3),
    "FORECAST_SQL": sq.forecast_sql("c", "s", as_of=1.5e9, window_s=21600),
}


@pytest.mark.parametrize("name", sorted(SQL))
def test_divisions_are_guarded(name):
    assert unguarded_divisions(SQL[name]) == []


def test_the_scanner_sees_these_divisions():
    assert unguarded_divisions(SQL["SITES_SQL"].replace("greatest(core_wall_ms, 1)", "core_wall_ms"))
    assert unguarded_divisions(SQL["FORECAST_SQL"].replace("greatest(located_in_window, 1)", "located_in_window"))


def test_forecast_window_must_be_positive():
    with pytest.raises(ValueError):
        sq.forecast_sql(as_of=1.0, window_s=0)
