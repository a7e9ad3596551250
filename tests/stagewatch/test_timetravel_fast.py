"""`--at T` made fast, still exact: status from the Engine in memory (no ephemeral store), done stages read
from the user's store as they are, the ephemeral store's tables written lazily (raw_events only when read).

Each property compares with replaying only the events with ts <= T into an empty store (a fresh campaign
name in the same store), on chDB and ClickHouse 18.16; the other tests pin the paths that make it fast
(they fail on the replay-everything implementation) and that nothing is left behind on errors.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.rows import RAW_COLUMNS, dead_letter_row, raw_event_row
from schemas.events import DeadLetter, encode_event
from stagewatch import reading
from stagewatch import timetravel
from stagewatch.replay import CONFLICT_REASON_PREFIX, replay_events
from stagewatch.store import open_store
from stagewatch.timetravel import split_stages, status_at, store_at
from tests.builders import file, job
from tests.processors.conflict_scenarios import winners, with_conflicts
from tests.processors.test_order_independence import file_events, job_events
from tests.stagewatch.test_timetravel import renamed, sited_scenarios

_n = itertools.count()
_RUN = f"tf{uuid.uuid4().hex[:6]}_"  # campaigns unique per module and run: the 18.16 server is shared
WINDOW_H = 0.002  # 7 s: the scenarios' ts are 0..20, so the forecast window cuts through them


def _status(result):
    """read_status's result without campaign names (they differ by construction)."""
    out = dict(result)
    out["stages"] = [{k: v for k, v in s.items() if k != "campaign"} for s in result["stages"]]
    return out


def check_status(store, events, expected_events, at):
    """status_at on a store holding `events` == read_status on a replay of `expected_events` alone
    (a list, or a function of the campaign name the events were stored under)."""
    c = f"{_RUN}c{next(_n)}"
    replay_events(store, renamed(events, c))
    got = status_at(store, at, c, as_of=at, rate_window_h=WINDOW_H)
    if callable(expected_events):
        expected_events = expected_events(c)
    x = f"{_RUN}x{next(_n)}"
    replay_events(store, renamed(expected_events, x))
    want = reading.read_status(store, x, as_of=at, forecast=True, rate_window_h=WINDOW_H)
    assert _status(got) == _status(want)
    return c


# first in the file: chDB holds one data path per process, and chdb_store keeps one open until the module ends
@pytest.mark.servers
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sited_scenarios())
def test_status_at_equals_replaying_only_earlier_events_clickhouse(clickhouse_server, scenario):
    events, at = scenario
    with open_store(clickhouse_server.store_url) as s:
        check_status(s, events, [e for e in events if e.ts <= at], at)


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory):
    s = open_store(f"chdb:{tmp_path_factory.mktemp('tf') / 'store'}")
    yield s
    s.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sited_scenarios())
def test_status_at_equals_replaying_only_earlier_events_chdb(chdb_store, scenario):
    """Stages done at T (every event <= T: read from the store), partial (replayed in memory) and absent
    (first event after T) mix in one campaign: the numbers and the forecast equal the prefix replay's."""
    events, at = scenario
    check_status(chdb_store, events, [e for e in events if e.ts <= at], at)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(with_conflicts(lambda i: st.one_of(job_events(i), file_events(i)), n_max=25), st.integers(-1, 21))
def test_status_at_with_conflicting_copies_counts_the_stored_winners(chdb_store, scenario, at):
    """Conflicting copies (a stage with conflict dead letters is never read as done): the store keeps the
    winning copies, and the numbers at T are those of the winners with ts <= T."""
    copies, shuffled = scenario
    # which copy wins depends on the whole content, campaign included: decided under the stored name
    c = check_status(chdb_store, shuffled, lambda c: [e for e in winners(renamed(copies, c)) if e.ts <= at],
                     float(at))
    if any(len([x for x in copies if (x.stage, x.entity, x.event_id) == (e.stage, e.entity, e.event_id)]) > 1
           for e in copies):
        conflicted = {k for k in timetravel.conflicted_stages(chdb_store) if k[0] == c}
        assert conflicted and not set(split_stages(chdb_store, 1e9, c).done) & conflicted


def _now_and_later(campaign):
    """stage1 ends at 400 (done at 500), s2 has events at 100 and 900 (partial at 500), s3 starts at 800."""
    return [
        file("in1", "input_declared", 100.0, campaign=campaign), file("in1", "delivered", 200.0, campaign=campaign),
        file("out1", "output_declared", 300.0, parents=["in1"], campaign=campaign),
        file("out1", "output_located", 400.0, campaign=campaign),
        job("j1", "submitted", 100.0, campaign=campaign), job("j1", "started", 150.0, site="FNAL", campaign=campaign),
        job("j1", "terminated", 390.0, exit_code=0, campaign=campaign),
        job("k1", "submitted", 100.0, stage="s2", campaign=campaign),
        job("k1", "started", 120.0, stage="s2", site="UCSD", campaign=campaign),
        job("k1", "evicted", 200.0, stage="s2", campaign=campaign),
        job("k1", "started", 900.0, stage="s2", campaign=campaign),
        file("a", "input_declared", 800.0, stage="s3", campaign=campaign),
    ]


def test_split_stages_done_partial_absent(chdb_store):
    c = f"{_RUN}split{next(_n)}"
    replay_events(chdb_store, _now_and_later(c))
    split = split_stages(chdb_store, 500.0, c)
    assert split.done == [(c, "stage1")] and split.partial == [(c, "s2")] and split.later == [(c, "s3")]
    assert not split.all_done
    assert split_stages(chdb_store, 50.0, c).done == split_stages(chdb_store, 50.0, c).partial == []
    assert split_stages(chdb_store, 900.0, c).done == [(c, "s2"), (c, "s3"), (c, "stage1")]


def test_a_done_selection_is_read_from_the_users_store_itself(chdb_store, monkeypatch):
    """No event is read and no ephemeral store made when every selected stage stood at T as it stands now."""
    c = f"{_RUN}done{next(_n)}"
    replay_events(chdb_store, _now_and_later(c))
    monkeypatch.setattr(timetravel, "partial_engine", _refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", _refuse)
    with store_at(chdb_store, 500.0, c, "stage1") as past:
        assert past is chdb_store
        (s,) = reading.read_status(past, c, "stage1", as_of=500.0)["stages"]
    assert s["files_located"] == 1 and s["jobs_completed_ok"] == 1
    got = status_at(chdb_store, 1000.0, c)
    assert [s["stage"] for s in got["stages"]] == ["s2", "s3", "stage1"]


def test_a_stage_that_starts_after_t_keeps_the_view_ephemeral(chdb_store):
    """stage1 done and s3 not started at T: the user's store would show s3, so the view is built."""
    c = f"{_RUN}later{next(_n)}"
    replay_events(chdb_store, [e for e in _now_and_later(c) if e.stage != "s2"])
    assert split_stages(chdb_store, 500.0, c).later == [(c, "s3")]
    with store_at(chdb_store, 500.0, c) as past:
        assert past is not chdb_store
        assert [s["stage"] for s in reading.read_status(past, c, as_of=500.0)["stages"]] == ["stage1"]
    assert [s["stage"] for s in status_at(chdb_store, 500.0, c)["stages"]] == ["stage1"]


def _refuse(*a, **kw):
    raise AssertionError("this path must not be taken")


def test_status_at_makes_no_ephemeral_store(chdb_store, monkeypatch):
    c = f"{_RUN}mem{next(_n)}"
    replay_events(chdb_store, _now_and_later(c))
    monkeypatch.setattr(tempfile, "mkdtemp", _refuse)
    monkeypatch.setattr(timetravel, "_user_store_paused", _refuse)
    got = {s["stage"]: s for s in status_at(chdb_store, 500.0, c)["stages"]}
    assert sorted(got) == ["s2", "stage1"]
    assert (got["s2"]["jobs_idle"], got["s2"]["restarts"], got["s2"]["last_event_ts"]) == (1, 0, 200.0)
    assert got["stage1"]["stalled"] is False and got["stage1"]["files_located"] == 1


def test_a_stage_row_behind_its_events_is_replayed_not_read(chdb_store):
    """A replay killed between its raw-event and state writes leaves the stage row behind: such a stage is
    never taken as done (its state rows are stale), its events are replayed."""
    c = f"{_RUN}behind{next(_n)}"
    events = _now_and_later(c)
    replay_events(chdb_store, events[:6])
    late = job("j2", "submitted", 350.0, campaign=c)
    chdb_store.insert("raw_events", [raw_event_row(late, "killed", time.time())], RAW_COLUMNS)
    assert split_stages(chdb_store, 500.0, c).partial == [(c, "stage1")]
    (s,) = status_at(chdb_store, 500.0, c)["stages"]
    assert (s["jobs"], s["jobs_idle"]) == (2, 1)
    with store_at(chdb_store, 500.0, c) as past:
        assert [r["job_id"] for r in reading.read_jobs(past, c, "stage1", state=None, order="job_id",
                                                       limit=10)] == ["j1", "j2"]


def test_a_stage_with_a_conflict_dead_letter_is_replayed(chdb_store):
    c = f"{_RUN}conf{next(_n)}"
    replay_events(chdb_store, _now_and_later(c))
    ev = job("j1", "submitted", 100.0, campaign=c)
    chdb_store.insert("dead_letter", [dead_letter_row(DeadLetter("x", "1", CONFLICT_REASON_PREFIX + " 'e': kept",
                                                                 encode_event(ev)), time.time())])
    split = split_stages(chdb_store, 1000.0, c)
    assert (c, "stage1") in split.partial and (c, "s2") in split.done


@pytest.mark.parametrize("per_stage", [20, 0])
def test_tables_are_written_when_first_read_raw_events_only_for_event_queries(chdb_store, monkeypatch, per_stage):
    """`files --at` writes file_state only; a query of raw_events writes the replayed stages' events and
    copies the done stages' raw rows from the user's store (the dance between the two chDB paths).
    per_stage 0: the stages are read with one query over the selection, the others' rows dropped."""
    monkeypatch.setattr(timetravel, "PER_STAGE_QUERIES", per_stage)
    c = f"{_RUN}lazy{next(_n)}"
    replay_events(chdb_store, _now_and_later(c))
    want_j1 = reading.read_job(chdb_store, c, "stage1", "j1")
    with store_at(chdb_store, 500.0, c) as past:
        assert isinstance(past, timetravel._LazyStore)
        files = reading.read_files(past, c, "stage1", None)
        assert past._filled == {"file_state"}
        assert past.inner.query("SELECT count() AS n FROM raw_events") == [{"n": 0}]
        assert reading.read_sites(past, c, "s2")[0]["restarts"] == 0  # the restart at 900 is after T
        assert "raw_events" not in past._filled
        assert reading.read_job(past, c, "stage1", "j1") == want_j1  # a done stage: copied
        assert [e["type"] for e in reading.read_job(past, c, "s2", "k1")["events"]] == ["submitted", "started",
                                                                                      "evicted"]
    assert files == reading.read_files(chdb_store, c, "stage1", None)
    assert reading.read_status(chdb_store, c, "stage1", as_of=1e9)["stages"][0]["jobs"] == 1  # usable again


def test_an_error_inside_removes_the_ephemeral_store_and_reopens_the_users(chdb_store):
    c = f"{_RUN}err{next(_n)}"
    replay_events(chdb_store, _now_and_later(c))
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("stagewatch-at-")}
    tables = chdb_store.query("SELECT name, total_rows FROM system.tables WHERE database = currentDatabase() "
                              "ORDER BY name")
    with pytest.raises(RuntimeError, match="boom"):
        with store_at(chdb_store, 500.0, c) as past:
            reading.read_job(past, c, "stage1", "j1")  # after the dance between the two paths
            raise RuntimeError("boom")
    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("stagewatch-at-")}
    assert after - before == set()
    assert chdb_store.query("SELECT name, total_rows FROM system.tables WHERE database = currentDatabase() "
                            "ORDER BY name") == tables  # nothing created in the user's store
