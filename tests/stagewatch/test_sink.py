"""StoreSink: retries, giving up promptly on a stop request, write order, and replaced raw rows."""

import threading
import time

import pytest

from processors.rows import RAW_COLUMNS, raw_event_row
from stagewatch.sink import TABLE_ORDER, StoreSink
from stagewatch.store.base import StoreError
from tests.builders import job


class FakeStore:
    """Refuses the first `fail` inserts, then records what it is given."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls = 0
        self.inserted: list[tuple[str, list]] = []

    def insert(self, table, rows, columns=None):
        self.calls += 1
        if self.calls <= self.fail:
            raise StoreError("Connection refused")
        self.inserted.append((table, list(rows)))


def test_retries_until_the_store_accepts():
    store = FakeStore(fail=3)
    waits = []
    sink = StoreSink(store, retry_for_s=float("inf"), sleep=waits.append)
    sink.add("dead_letter", {"x": 1, "position": "7"})
    assert sink.flush() == 1
    assert waits == [0.5, 1.0, 2.0]
    assert store.inserted == [("dead_letter", [{"x": 1, "position": "7"}])]
    assert len(sink) == 0


def test_stop_set_during_a_retry_wait_gives_up_promptly():
    store = FakeStore(fail=10**9)  # never accepts
    stop = threading.Event()
    sink = StoreSink(store, retry_for_s=float("inf"), stop=stop)
    sink.add("dead_letter", {"x": 1})
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="stopped before the write succeeded"):
        sink.flush()
    assert time.monotonic() - t0 < 1.5  # the first wait is 0.5 s, then 1 s, 2 s, ...: it did not wait them out
    assert len(sink) == 1  # the rows are still pending, not silently dropped


def test_stop_already_set_raises_at_the_first_failure_without_waiting():
    stop = threading.Event()
    stop.set()
    store = FakeStore(fail=10**9)
    sink = StoreSink(store, retry_for_s=float("inf"), stop=stop, sleep=lambda s: pytest.fail("waited"))
    sink.add("dead_letter", {"x": 1})
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="stopped"):
        sink.flush()
    assert time.monotonic() - t0 < 0.2 and store.calls == 1


def test_stop_unset_keeps_retrying_and_succeeds():
    stop = threading.Event()
    store = FakeStore(fail=1)
    sink = StoreSink(store, retry_for_s=float("inf"), stop=stop)
    sink.add("dead_letter", {"x": 1})
    assert sink.flush() == 1 and store.calls == 2


def test_state_tables_are_written_after_raw_events_and_stage_rows_last():
    store = FakeStore()
    sink = StoreSink(store)
    for table in reversed(TABLE_ORDER):
        sink.add(table, {"t": table})
    sink.flush()
    order = [t for t, _ in store.inserted]
    assert order.index("raw_events") < min(order.index(t) for t in ("job_state", "file_state", "job_attempts"))
    assert order[-1] == "stage_numbers"


def test_a_replaced_raw_row_leaves_only_the_winner_in_the_batch():
    store = FakeStore()
    sink = StoreSink(store)
    loser = job("7", "terminated", 1.5e9, eid="same", exit_code=1)
    winner = job("7", "terminated", 1.5e9, eid="same", exit_code=0)
    other = job("8", "started", 1.5e9, eid="other")
    sink.add("raw_events", raw_event_row(loser, "a", 1.0))
    sink.add("raw_events", raw_event_row(other, "a", 1.0))
    sink.add("raw_events", raw_event_row(winner, "b", 2.0))
    sink.replaced("raw_events")
    sink.flush()
    ((table, rows),) = store.inserted
    assert table == "raw_events"
    ent, code, src = (RAW_COLUMNS.index(c) for c in ("entity", "exit_code", "source"))
    assert sorted((r[ent], r[code], r[src]) for r in rows) == [("7", 0, "b"), ("8", None, "a")]
    # without a replacement, rows are written as they are (no per-batch cost on the hot path)
    sink.add("raw_events", raw_event_row(loser, "a", 1.0))
    sink.add("raw_events", raw_event_row(loser, "a", 1.0))
    sink.flush()
    assert len(store.inserted[-1][1]) == 2


def test_only_keyed_tables_can_be_replaced():
    with pytest.raises(ValueError):
        StoreSink(FakeStore()).replaced("job_state")
