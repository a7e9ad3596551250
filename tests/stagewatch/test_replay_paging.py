"""Replays that start from stored stage rows, load only the entities a batch touches and page entities out
after every state write give the numbers and rows of one engine over all events: any order, duplicates,
conflicting copies, any batch size, any number of separate replays (processes) into one store."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from processors.engine import Engine
from stagewatch.reading import read_status
from stagewatch.replay import Replayer, replay_events
from stagewatch.store import open_store
from stagewatch.verify import verify
from tests.builders import file, job
from tests.processors.conflict_scenarios import winners, with_conflicts
from tests.processors.test_order_independence import file_events, job_events

AS_OF = 100.0
_n = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = open_store(f"chdb:{tmp_path_factory.mktemp('paging') / 'store'}")
    yield s
    s.close()


def _in_campaign(events, campaign):
    out = []
    for ev in events:
        d = {f: getattr(ev, f) for f in ev.__struct_fields__}
        d["campaign"] = campaign
        out.append(type(ev)(**d))
    return out


def _replay(store, events, batch_size, state_every):
    r = Replayer(store, batch_size=batch_size, state_every=state_every)
    for ev in events:  # dead letters are keyed by (source, position): one position per line, as in a file
        r.feed_event(ev, "test", str(next(_n)))
    r.flush()
    return r


def _rows(store, campaign):
    """job, attempt and file rows without their versions (a reloaded entity may carry a smaller conflict bonus)."""
    out = {}
    for table, key in (("job_state", "job_id"), ("file_state", "file"), ("job_attempts", "job_id")):
        extra = ", attempt" if table == "job_attempts" else ""
        for r in store.query(f"SELECT * FROM {table} FINAL WHERE campaign = '{campaign}' ORDER BY stage, {key}{extra}"):
            out[(table, r["stage"], r[key], r.get("attempt"))] = {k: v for k, v in r.items() if k != "version"}
    return out


@st.composite
def paged_replays(draw):
    copies, shuffled = draw(with_conflicts(lambda i: st.one_of(job_events(i), file_events(i))))
    cuts = sorted(draw(st.lists(st.integers(0, len(shuffled)), max_size=3)))
    parts = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)])]
    batch = draw(st.integers(1, 6))
    state_every = draw(st.integers(1, 12))
    return copies, parts, batch, state_every


@settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(paged_replays())
def test_paged_replays_equal_one_engine_over_the_winners(store, scenario):
    copies, parts, batch, state_every = scenario
    campaign = f"p{next(_n)}"
    for part in parts:  # each part: a new process (Replayer) on the same store
        _replay(store, _in_campaign(part, campaign), batch, state_every)
    won = winners(_in_campaign(copies, campaign))  # the campaign is part of the content that is hashed
    e = Engine()
    e.apply_all(won)
    assert read_status(store, campaign, as_of=AS_OF)["stages"] == e.numbers(as_of=AS_OF)
    report = verify(store, campaign=campaign)
    # Known and older than paging: a winning copy that turns a `started` into another type across two state
    # writes leaves the lost attempt's job_attempts row behind (rows are never deleted); verify reports it.
    # Every other difference fails.
    assert [d for d in report.differences if "job_attempts row(s) up to attempt" not in d] == []
    # the same events replayed whole, in one batch, into the same store under another campaign: the same rows
    other = f"{campaign}w"
    _replay(store, _in_campaign(won, other), 10_000, 10_000)
    mine = {k: {c: v for c, v in r.items() if c != "campaign"} for k, r in _rows(store, campaign).items()}
    whole = {k: {c: v for c, v in r.items() if c != "campaign"} for k, r in _rows(store, other).items()}
    live = {(k[1], k[2]): r["attempts"] for k, r in whole.items() if k[0] == "job_state"}
    mine = {k: r for k, r in mine.items() if k[0] != "job_attempts" or k[3] <= live.get((k[1], k[2]), 0)}
    diff = {k: {c: (v, whole.get(k, {}).get(c)) for c, v in r.items() if whole.get(k, {}).get(c) != v}
            for k, r in mine.items() if whole.get(k) != r}
    assert mine == whole, diff


def test_a_batch_loads_only_the_entities_it_touches(store):
    """The second replay loads the touched job, the touched input file and the output that names it; not the
    rest of the stage."""
    t0 = 1.5e9
    c = f"load{next(_n)}"
    first = [job(f"{i}.0", "submitted", t0 + i, campaign=c) for i in range(50)]
    first += [file(f"in{i}", "input_declared", t0 + i, campaign=c) for i in range(50)]
    first += [file("out7", "output_declared", t0 + 100, parents=["in7"], campaign=c),
              file("out7", "output_located", t0 + 101, campaign=c)]
    replay_events(store, first)
    new = [job("3.0", "started", t0 + 200, campaign=c), file("in7", "delivered", t0 + 200, campaign=c)]
    r = _replay(store, new, 100, 100)
    assert r.loaded_entities == 3  # job 3.0, in7 and out7 (its bucket needs the output)
    e = Engine()
    e.apply_all(first + new)
    assert read_status(store, c, as_of=t0 + 300)["stages"] == e.numbers(as_of=t0 + 300)
    assert verify(store, campaign=c).ok


def test_page_out_keeps_memory_to_the_active_entities(store):
    t0 = 1.5e9
    c = f"mem{next(_n)}"
    events = [job(f"{i}.0", t, t0 + i + k, campaign=c) for i in range(300)
              for k, t in enumerate(("submitted", "started"))]
    r = Replayer(store, batch_size=50, state_every=50)
    for ev in events:
        r.feed_event(ev, "test")
    r.flush()
    (stage,) = r.engine.stages.values()
    assert len(stage.jobs) <= 50  # at most the last batch's jobs are in memory
    e = Engine()
    e.apply_all(events)
    assert read_status(store, c, as_of=t0 + 1000)["stages"] == e.numbers(as_of=t0 + 1000)


@pytest.mark.parametrize("self_parent", [True, False])
def test_rows_written_after_a_conflict_outrank_the_stored_ones_in_a_later_replay(store, self_parent):
    """A winning copy takes a parent away (the parent's version kept the former output's version and the
    content bonus); the losing copy's raw row is gone. A later replay derives lower versions from the winners
    alone: its rows must still replace the stored ones (found by hypothesis: a file's `outputs` stayed [])."""
    from processors.stage import resolve

    campaign = f"floor{next(_n)}"
    parent = "in3" if self_parent else "in0"
    declared = file("in3", "output_declared", 15.0, eid="e20", campaign=campaign, parents=[parent])
    ts = 10.0
    while True:  # a `failed` copy of e20 that wins over the declaration (the smaller content hash)
        failed = file("in3", "failed", ts, eid="e20", campaign=campaign)
        if resolve(declared, failed).kept is failed:
            break
        ts += 1.0
    first = [file("in3", "skipped", 0.0, campaign=campaign), file("in0", "input_declared", 1.0, campaign=campaign),
             declared]
    _replay(store, first, 50_000, 250_000)
    _replay(store, [failed], 50_000, 250_000)  # a later process meets the winning copy
    first.append(failed)
    later = [file("out1", "output_declared", 9.0, campaign=campaign, parents=["in3", "in0"]),
             file("out1", "output_located", 12.0, campaign=campaign)]
    _replay(store, later, 1, 2)
    e = Engine()
    e.apply_all(winners(first + later))
    assert read_status(store, campaign, as_of=AS_OF)["stages"] == e.numbers(as_of=AS_OF)
    report = verify(store, campaign=campaign)
    assert report.ok, report.differences
