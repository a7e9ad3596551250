"""`--at T`: the store as it stood at T equals replaying only the events with ts <= T into an empty store.

The ephemeral store of stagewatch.timetravel is compared, through the same reading functions, with
the selected events replayed under a fresh campaign name (a campaign the store has never seen is an
empty store for every number of that campaign): status (T as the stall clock), every file list, every
job list. Random, tie-heavy, duplicated scenarios (hypothesis), on chDB and on ClickHouse 18.16.
"""

from __future__ import annotations

import itertools
import uuid
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.numbers import FILE_BUCKETS
from schemas.events import JobEvent
from stagewatch import reading
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from stagewatch.timetravel import engine_at, events_until, store_at
from tests.builders import file, job
from tests.processors.test_order_independence import scenarios

_n = itertools.count()
_RUN = f"tt{uuid.uuid4().hex[:6]}_"  # campaigns unique per module and run: the 18.16 server is shared by the session
SITES = [None, "FNAL", "OSG_US_UCSD"]


@st.composite
def sited_scenarios(draw):
    """test_order_independence's scenarios with sites on starts and HTCondor codes on holds."""
    _, shuffled = draw(scenarios())
    out = []
    for ev in shuffled:
        d = {f: getattr(ev, f) for f in ev.__struct_fields__}
        if isinstance(ev, JobEvent):
            if ev.type == "started":
                d["site"] = SITES[int(ev.event_id[1:]) % 3]  # deterministic (str hash is salted per process)
            if ev.type == "held":
                d.update(reason=f"hold {ev.event_id}", hold_code=12, hold_subcode=int(ev.event_id[1:]))
        out.append(type(ev)(**d))
    at = float(draw(st.integers(-1, 21)))
    return out, at


def renamed(events, campaign):
    out = []
    for ev in events:
        d = {f: getattr(ev, f) for f in ev.__struct_fields__}
        d["campaign"] = campaign
        out.append(type(ev)(**d))
    return out


def everything(store, campaign, at):
    """Every reading of a campaign, with campaign names taken out (they differ by construction)."""
    status = reading.read_status(store, campaign, as_of=at, forecast=True, rate_window_h=0.002)
    stages = sorted(s["stage"] for s in status["stages"])
    for s in status["stages"]:
        s.pop("campaign")
    sites = reading.read_sites(store, campaign)
    holds = reading.read_holds(store, campaign)
    for row in sites + holds:
        row.pop("campaign")
    out = {"status": status, "sites": sites, "holds": holds, "files": {}, "jobs": {}}
    for stage in stages:
        out["files"][stage] = reading.read_files(store, campaign, stage, list(FILE_BUCKETS))
        out["jobs"][stage] = reading.read_jobs(store, campaign, stage, state=None, order="job_id", limit=1000)
    return out


def check(store, events, at):
    c = f"{_RUN}c{next(_n)}"
    replay_events(store, renamed(events, c))
    with store_at(store, at, campaign=c) as past:
        got = everything(past, c, at)
    expected_c = f"{_RUN}x{next(_n)}"
    replay_events(store, renamed([e for e in events if e.ts <= at], expected_c))
    assert everything(store, expected_c, at) == got


# first in the file: chDB holds one data path per process, and chdb_store keeps one open until the module ends
@pytest.mark.servers
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sited_scenarios())
def test_at_equals_replaying_only_earlier_events_clickhouse(clickhouse_server, scenario):
    events, at = scenario
    with open_store(clickhouse_server.store_url) as st:
        check(st, events, at)


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory):
    st = open_store(f"chdb:{tmp_path_factory.mktemp('tt') / 'store'}")
    yield st
    st.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sited_scenarios())
def test_at_equals_replaying_only_earlier_events_chdb(chdb_store, scenario):
    events, at = scenario
    check(chdb_store, events, at)


def test_later_events_and_other_stages_are_left_out_and_nothing_is_created(chdb_store):
    """Events after T do not count (event time, not arrival); the user's store gains nothing; the temporary
    store is gone afterwards; the user's store is usable again."""
    import tempfile

    st = chdb_store
    replay_events(st, [
        file("in1", "input_declared", 100.0), file("in1", "delivered", 200.0),
        file("out1", "output_declared", 300.0, parents=["in1"]), file("out1", "output_located", 400.0),
        job("j1", "submitted", 100.0), job("j1", "started", 150.0, site="FNAL"),
        job("j1", "terminated", 390.0, exit_code=0), file("other", "input_declared", 100.0, stage="s2"),
    ])
    tables = st.query("SELECT name, total_rows FROM system.tables WHERE database = currentDatabase() ORDER BY name")
    databases = st.query("SELECT name FROM system.databases ORDER BY name")
    tmp_before = set(os.listdir(tempfile.gettempdir()))
    with store_at(st, 250.0, campaign="camp") as past:
        rows = reading.read_status(past, as_of=250.0)["stages"]
        assert sorted(r["stage"] for r in rows) == ["s2", "stage1"]
        s = next(r for r in rows if r["stage"] == "stage1")
        assert (s["files_in_flight"], s["files_located"], s["jobs_running"]) == (1, 0, 1)
        assert s["last_progress_ts"] is None and s["last_event_ts"] == 200.0
        assert s["stalled"] is False  # 250 - first event 100 < 2 h
    with store_at(st, 250.0, campaign="camp", stage="stage1") as past:
        assert [r["stage"] for r in reading.read_status(past, as_of=250.0)["stages"]] == ["stage1"]
    (now,) = reading.read_status(st, "camp", "stage1", as_of=1e9)["stages"]
    assert now["files_located"] == 1
    assert [e.ts for e in events_until(st, 150.0, "camp", "stage1")] == [100.0, 100.0, 150.0]
    (n,) = engine_at(st, 250.0, "camp", "stage1").numbers(as_of=250.0)
    assert n["files_in_flight"] == 1
    assert st.query("SELECT name, total_rows FROM system.tables WHERE database = currentDatabase() "
                    "ORDER BY name") == tables
    assert st.query("SELECT name FROM system.databases ORDER BY name") == databases
    assert {p for p in set(os.listdir(tempfile.gettempdir())) - tmp_before if p.startswith("stagewatch-at-")} == set()


def test_the_stall_clock_is_t(chdb_store):
    replay_events(chdb_store, [file("in1", "input_declared", 1000.0, campaign="stall"),
                               file("in1", "delivered", 1001.0, campaign="stall"),
                               file("in2", "input_declared", 99999.0, campaign="stall")])
    with store_at(chdb_store, 1000.0 + 3 * 3600, campaign="stall") as past:
        (s,) = reading.read_status(past, as_of=1000.0 + 3 * 3600)["stages"]
    assert s["stalled"] is True and s["input_files"] == 1
