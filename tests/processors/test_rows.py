"""Rows of the current-state tables: versions that always let the newest state win, and raw rows that
give back exactly the event they were made from."""

from __future__ import annotations

from typing import Any

from processors.engine import Engine
from processors.rows import RAW_COLUMNS, event_from_raw_row, raw_event_row
from tests.builders import job


def _rows(engine: Engine, table: str) -> list[dict[str, Any]]:
    return [row for t, row in engine.dirty_rows() if t == table]


def test_a_winning_copy_gives_job_rows_a_greater_version_with_the_same_event_count() -> None:
    """Both copies make one event: a ReplacingMergeTree keeps the winner only if its version is greater."""
    a = job("1.0", "submitted", 1e9, eid="e1")
    b = job("1.0", "submitted", 1e9, eid="e1", submission="other")
    rows: dict[str, list[dict[str, Any]]] = {}
    for first, second in ((a, b), (b, a)):
        e = Engine()
        e.apply(first)
        before = _rows(e, "job_state")
        e.apply(second)
        after = _rows(e, "job_state")
        rows[first.submission or "a"] = before + after
    for written in rows.values():
        if len(written) == 2:  # the second copy won: its row must outrank the first one's
            assert written[1]["version"] > written[0]["version"]
            assert written[1]["events"] == written[0]["events"] == 1
    assert any(len(w) == 2 for w in rows.values())  # one order of the two makes the winner arrive second


def test_job_attempt_rows_carry_the_job_version() -> None:
    e = Engine()
    e.apply_all([job("1.0", "submitted", 1e9), job("1.0", "started", 1e9 + 5, site="S")])
    e.apply(job("1.0", "evicted", 1e9 + 9))
    written = list(e.dirty_rows())  # one call: it hands out each dirty entity once
    (jr,) = [r for t, r in written if t == "job_state"]
    attempts = [r for t, r in written if t == "job_attempts"]
    assert attempts and all(r["version"] == jr["version"] for r in attempts)


def test_raw_rows_round_trip_with_the_contract_types_whatever_the_store_returns() -> None:
    ev = job("1.0", "terminated", 1e9, exit_code=0, cpu_user_s=3.0, cpu_sys_s=0.0, wall_s=10.0, cores=2)
    row = dict(zip(RAW_COLUMNS, raw_event_row(ev, "src", 1e9)))
    row.update(cpu_sys_s=0, wall_s=10, cores=2.0)  # a store may give a whole Float64 back as int, and so on
    back = event_from_raw_row(row)
    assert back == ev
    assert type(back.cpu_sys_s) is float and type(back.wall_s) is float and type(back.cores) is int
