"""The sites, holds and forecast SQL (schemas.queries) equal their Python definitions, on chDB and 18.16.

The Python side (processors.sites, processors.forecast, the Engine's job summaries) states the glossary's
rules; the SQL is what `sites`, `holds`, `status --format json` and the dashboards run. Simulated
campaigns (sites, evictions, holds, late locations) and random tie-heavy scenarios (hypothesis).
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import simulator
from processors.engine import Engine
from processors.forecast import stage_forecast, window_seconds
from processors.sites import site_counters, site_row, sort_key
from stagewatch import reading
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from tests.stagewatch.test_timetravel import renamed, sited_scenarios

_n = itertools.count()
_RUN = f"sq{uuid.uuid4().hex[:6]}_"  # campaigns unique per module and run: the 18.16 server is shared by the session


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.servers)], scope="module")
def store(request, tmp_path_factory):
    if request.param == "chdb":
        url = f"chdb:{tmp_path_factory.mktemp('sites') / 'store'}"
    else:
        url = request.getfixturevalue("clickhouse_server").store_url
    st = open_store(url)
    yield st
    st.close()


def python_sites(engine: Engine, campaign: str) -> list[dict]:
    rows = []
    for (c, s), stage in engine.stages.items():
        if c != campaign:
            continue
        stage.settle()
        for site, counters in site_counters(ent.view for ent in stage.jobs.values()).items():
            rows.append((site_row(c, s, site, counters), counters))
    return [r for r, _ in sorted(rows, key=sort_key)]


def python_holds(engine: Engine, campaign: str, limit: int = 10) -> list[dict]:
    out = []
    for (c, s) in sorted(engine.stages):
        if c != campaign:
            continue
        held = [e.view for e in engine.stages[(c, s)].jobs.values() if e.view.state == "held"]
        groups = Counter((j.hold_reason or "", j.hold_code, j.hold_subcode) for j in held)
        since = {}
        for j in held:
            k = (j.hold_reason or "", j.hold_code, j.hold_subcode)
            since[k] = min(since.get(k, j.held_ts), j.held_ts)
        keyed = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0][0], _nulls_last(kv[0][1]), _nulls_last(kv[0][2])))
        for (reason, code, sub), n in keyed[:limit]:
            out.append({"campaign": c, "stage": s, "hold_reason": reason, "hold_code": code, "hold_subcode": sub,
                        "jobs_held": n, "held_since_ts": since[(reason, code, sub)]})
    return out


def _nulls_last(v):
    return (1, 0) if v is None else (0, v)


def check(store, events, as_of: float, window_h: float) -> Engine:
    c = f"{_RUN}c{next(_n)}"
    events = renamed(events, c)
    replay_events(store, events)
    engine = Engine()
    engine.apply_all(events)
    assert reading.read_sites(store, c) == python_sites(engine, c)
    assert reading.read_holds(store, c) == python_holds(engine, c)
    got = reading.read_forecast(store, c, as_of=as_of, rate_window_h=window_h)
    want = {(c, s): stage_forecast(st, as_of, window_seconds(window_h)) for (cc, s), st in engine.stages.items()
            if cc == c}
    assert got == want
    return engine


def test_simulated_campaign(store):
    events = list(simulator.simulate_many(simulator.tiny(), 11))
    last = max(e.ts for e in events)
    held = [e for e in events if e.type == "held"]
    for i, e in enumerate(held):  # HTCondor codes on the holds, two reasons
        e.hold_code, e.hold_subcode, e.reason = 12 + (i % 2), i % 2, f"reason {i % 2}"
    for as_of in (last - 30 * 3600, last - 6 * 3600, last):
        engine = check(store, events, as_of, 6.0)
    assert any(st.counters["restarts"] for st in engine.stages.values())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sited_scenarios())
def test_random_scenarios(store, scenario):
    events, at = scenario
    check(store, events, at, 0.002)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sited_scenarios(), st.randoms(use_true_random=False))
def test_random_scenarios_replayed_in_two_parts(store, scenario, rnd):
    """Rows are rewritten (an earlier output event arriving later moves an input's located time): only each
    file's newest row is counted by the forecast window, on both stores."""
    events, at = scenario
    c = f"{_RUN}c{next(_n)}"
    events = renamed(events, c)
    rnd.shuffle(events)
    cut = rnd.randint(0, len(events))
    replay_events(store, events[:cut])
    replay_events(store, events[cut:])
    engine = Engine()
    engine.apply_all(events)
    got = reading.read_forecast(store, c, as_of=at, rate_window_h=0.002)
    assert got == {(c, s): stage_forecast(stg, at, window_seconds(0.002)) for (cc, s), stg in engine.stages.items()
                   if cc == c}
    assert reading.read_sites(store, c) == python_sites(engine, c)


def test_a_located_time_moved_earlier_leaves_the_window(store):
    """The row written first has the input located inside the window; an output_declared with an earlier ts
    arrives later and moves the located time before the window: the forecast counts nothing."""
    from schemas.events import FileEvent

    c = f"{_RUN}c{next(_n)}"
    t0 = 1_700_000_000.0

    def fev(eid, typ, ts, file, **kw):
        return FileEvent(event_id=eid, ts=ts, campaign=c, stage="s", type=typ, file=file, **kw)

    first = [fev("i", "input_declared", t0, "in.root"),
             fev("d2", "output_declared", t0 + 7200, "out.root", parents=["in.root"]),
             fev("l", "output_located", t0 + 100, "out.root", location="enstore:/x")]
    replay_events(store, first)
    window_h = 1.0
    assert reading.read_forecast(store, c, as_of=t0 + 7300, rate_window_h=window_h)[(c, "s")]["located_rate_per_h"] == 1.0
    replay_events(store, [fev("d1", "output_declared", t0 + 50, "out.root", parents=["in.root"])])
    assert reading.read_forecast(store, c, as_of=t0 + 7300, rate_window_h=window_h)[(c, "s")]["located_rate_per_h"] == 0.0
    assert reading.read_forecast(store, c, as_of=t0 + 200, rate_window_h=window_h)[(c, "s")]["located_rate_per_h"] == 1.0
