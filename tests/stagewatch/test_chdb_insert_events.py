"""The chDB store's fast raw_events path (PendingEvent rows written from the events' own JSON) writes exactly
the rows processors.rows.raw_event_row gives, through the sink as any row does (replacement, order)."""

from __future__ import annotations

import pytest

from processors.rows import RAW_COLUMNS, raw_event_row
from stagewatch.replay import Replayer
from stagewatch.sink import StoreSink
from stagewatch.store import open_store
from stagewatch.store.chdb_store import PendingEvent
from tests.builders import file, job

ALL = "SELECT * FROM raw_events ORDER BY campaign, stage, kind, entity, event_id, source"
NASTY = "q'uote \\back\\slash\n\tnew line {ingested_ts} {source} ü € 😀 \\' '\\"


def tricky_events() -> list:
    t = 1_500_000_000.123456
    long_name = "x" * 1024
    return [
        job("j1", "submitted", t, submission="sub'1", cores=1024),
        job("j1", "started", t + 1, site=NASTY, host="h\\1", campaign=NASTY, stage="s'2"),
        job("j1", "terminated", t + 2.5, exit_code=-2147483648, signal=2147483647, cpu_user_s=0.1 + 0.2,
            cpu_sys_s=1e-9, wall_s=31_622_400.0, cores=3),
        job("j2", "held", t, reason=NASTY * 3, hold_code=2147483647, hold_subcode=-1, submission=""),
        job(long_name, "evicted", t, eid=long_name, reason="", site="", host=""),
        file("in.root", "input_declared", t, submission="s"),
        file("in.root", "delivered", t + 1, job_id="j1"),
        file(NASTY, "output_declared", t + 2, parents=["in.root", NASTY, "a\"b", long_name], location=NASTY),
        file("out2", "output_located", t + 3, location="enstore:/pnfs/ü"),
        file("out3", "output_declared", t + 4, parents=["p"] * 3),
    ]


@pytest.fixture()
def store(tmp_path):
    with open_store(f"chdb:{tmp_path / 'store'}") as st:
        yield st


def test_pending_rows_are_the_rows_raw_event_row_gives(store):
    evs = tricky_events()
    runs = [(NASTY, 1_764_780_000.123456), ("<stdin>", 1_764_780_001.5)]  # two sources in one insert
    rows = [raw_event_row(ev, src, ts) for src, ts in runs for ev in evs]
    store.insert("raw_events", rows, RAW_COLUMNS)
    expected = store.query(ALL)
    assert len(expected) == 2 * len(evs)
    store.command("TRUNCATE TABLE raw_events")
    pending = [store.pending_raw_row(ev, src, ts) for src, ts in runs for ev in evs]
    assert all(type(p) is PendingEvent for p in pending)
    store.insert("raw_events", pending, RAW_COLUMNS)
    assert store.query(ALL) == expected
    # the staging table is the session's own: not in the store, and left empty
    tables = {r["name"] for r in store.query("SELECT name FROM system.tables WHERE database = 'stagewatch'")}
    assert not any("staging" in t for t in tables)
    (n,) = store.query("SELECT count() AS n FROM stagewatch_raw_staging")
    assert int(n["n"]) == 0


def test_a_pending_row_has_the_raw_row_key_where_the_sink_reads_it(store):
    """stagewatch.sink reads a raw row's key (campaign, stage, kind, entity, event_id) by position."""
    for ev in tricky_events():
        assert list(store.pending_raw_row(ev, "s", 1.0)[:5]) == raw_event_row(ev, "s", 1.0)[:5]


def test_a_replaced_pending_row_leaves_only_the_winner(store):
    loser = job("7", "terminated", 1.5e9, eid="same", exit_code=1)
    winner = job("7", "terminated", 1.5e9, eid="same", exit_code=0)
    other = job("8", "started", 1.5e9, eid="other")
    sink = StoreSink(store)
    for ev, src in ((loser, "a"), (other, "a"), (winner, "b")):
        sink.add("raw_events", store.pending_raw_row(ev, src, 1.0))
    sink.replaced("raw_events")
    sink.flush()
    got = store.query("SELECT entity, exit_code, source FROM raw_events ORDER BY entity")
    assert [(r["entity"], r["exit_code"], r["source"]) for r in got] == [("7", 0, "b"), ("8", None, "a")]


def test_pending_rows_are_only_raw_events_rows(store):
    with pytest.raises(ValueError):
        store.insert("job_state", [store.pending_raw_row(job("1", "submitted", 1.5e9), "a", 1.0)])


def test_the_replay_queues_the_stores_own_raw_rows(store, tmp_path):
    r = Replayer(store)
    for ev in tricky_events():
        r.feed_event(ev, "src")
    assert r._pending and not r.sink.pending.get("raw_events")
    r._run_batch()
    queued = r.sink.pending["raw_events"]
    assert len(queued) == len(tricky_events()) and all(type(p) is PendingEvent for p in queued)
    r.flush()
    assert len(store.query(ALL)) == len(tricky_events())
