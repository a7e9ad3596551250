"""Attempt rows left behind by a winning conflicting copy are never counted, on chDB and on ClickHouse 18.16.

job_attempts is a ReplacingMergeTree keyed by (campaign, stage, job_id, attempt): rows are never deleted.
When the copy of an event_id that wins (the smaller content hash) takes a `started` away from a job whose
rows were already written (an earlier replay, or an earlier worker batch), the row of the attempt that no
longer exists stays in the table. Every reader of job_attempts (`job ID`'s attempts, `sites`, the
dashboards' restarts and attempt panels) must count only the job's current attempts (job_state.attempts),
and `verify` must pass on such a store while still catching a reader that counts the stale row.

Both write paths are covered: the embedded replay (stagewatch.replay) and the worker's job step
(processors.stream.apply_job_events rows written by stagewatch.sink.StoreSink).
"""

from __future__ import annotations

import itertools
import uuid

import pytest

from dashboards import queries as dq
from processors.engine import Engine
from processors.rows import raw_event_row
from processors.stage import resolve
from processors.stream import StageAggregator, apply_job_events
from schemas import queries
from schemas.events import decode_event, encode_event
from stagewatch import reading, verify as verify_mod
from stagewatch.replay import replay_events
from stagewatch.sink import StoreSink
from stagewatch.store import open_store
from stagewatch.verify import verify
from tests.builders import job

T0 = 1_500_000_000.5
AS_OF = T0 + 100_000
_RUN = f"st{uuid.uuid4().hex[:6]}_"  # the 18.16 server is shared by the test session
_n = itertools.count()


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.servers)], scope="module")
def store(request, tmp_path_factory):
    if request.param == "chdb":
        url = f"chdb:{tmp_path_factory.mktemp('stale-attempts') / 'store'}"
    else:
        url = request.getfixturevalue("clickhouse_server").store_url
    st = open_store(url)
    yield st
    st.close()


def _roundtrip(ev):
    return decode_event(encode_event(ev))


def scenario(campaign: str):
    """(base events, losing `started` copy, winning copy of the same event_id that is not a `started`).

    The job: started at A, evicted, started at B (the copy that loses), so the stored rows have two attempts;
    the winner (a `held` with the same event_id) leaves one. The copies differ only by a reason, chosen so that
    the `started` copy has the larger content hash whatever the campaign name.
    """
    base = [job("j", "submitted", T0, campaign=campaign),
            job("j", "started", T0 + 10, campaign=campaign, site="A", cores=2),
            job("j", "evicted", T0 + 20.5, campaign=campaign, wall_s=10.5),
            job("k", "submitted", T0, campaign=campaign), job("k", "started", T0 + 5, campaign=campaign, site="A")]
    started = _roundtrip(job("j", "started", T0 + 30, eid=f"{campaign}-s2", campaign=campaign, site="B"))
    for i in range(1000):
        other = _roundtrip(job("j", "held", T0 + 30, eid=f"{campaign}-s2", campaign=campaign, reason=f"r{i}"))
        c = resolve(started, other)
        if c is not None and c.kept is other:
            return [_roundtrip(e) for e in base], started, other
    raise AssertionError("no winning held copy found")


def expected_numbers(events):
    e = Engine()
    e.apply_all(events)
    return e.numbers(as_of=AS_OF)


def _new_campaign() -> str:
    return f"{_RUN}{next(_n)}"


def _replayed(store):
    """A store where the replay path left a stale attempt row: the loser's state was written by one replay,
    the winner came in a later one."""
    c = _new_campaign()
    base, loser, winner = scenario(c)
    replay_events(store, base + [loser])
    assert [r["attempt"] for r in store.query(f"SELECT attempt FROM job_attempts FINAL WHERE campaign = '{c}' "
                                              "AND job_id = 'j' ORDER BY attempt")] == [1, 2]
    replay_events(store, [winner])
    return c, base + [winner]


def _streamed(store):
    """The same through the worker's steps: job step rows, raw rows and stage rows through a StoreSink."""
    c = _new_campaign()
    base, loser, winner = scenario(c)
    table: dict[str, bytes] = {}
    agg = StageAggregator()
    for batch in (base + [loser], [winner]):  # two batches: the first batch's rows are written first
        sink = StoreSink(store)
        res = apply_job_events(table, batch)
        table.update(res.updates)
        dropped = {id(x.dropped) for x in res.conflicts}
        for ev in batch:
            if id(ev) not in dropped:
                sink.add("raw_events", raw_event_row(ev, "job-events", 1.0))
        for t, row in res.rows:
            sink.add(t, row)
        for cb in res.contribution_batches():
            agg.apply(cb)
        for row in agg.take_dirty_rows():
            sink.add("stage_numbers", row)
        sink.flush()
    return c, base + [winner]


@pytest.fixture(params=["replay", "worker"])
def stale(request, store):
    c, events = (_replayed if request.param == "replay" else _streamed)(store)
    rows = store.query(f"SELECT attempt FROM job_attempts FINAL WHERE campaign = '{c}' AND job_id = 'j' ORDER BY attempt")
    assert [r["attempt"] for r in rows] == [1, 2], "the scenario must leave the stale row (rows are never deleted)"
    assert reading.read_status(store, c, as_of=AS_OF)["stages"] == expected_numbers(events)
    return c, events


def test_job_attempts_list_has_only_the_current_attempts(store, stale):
    c, _ = stale
    got = reading.read_job(store, c, "stage1", "j")["attempts"]
    assert [(a["attempt"], a["site"]) for a in got] == [(1, "A")]


def test_sites_count_only_current_attempts(store, stale):
    c, events = stale
    (n,) = expected_numbers(events)
    sites = reading.read_sites(store, c, "stage1")
    assert sum(s["attempts"] for s in sites) == n["job_attempts"] == 2
    assert {s["site"] for s in sites} == {"A"}


def test_dashboard_restart_panels_count_only_current_attempts(store, stale):
    c, events = stale
    (n,) = expected_numbers(events)
    w = queries.where(c, "stage1")
    assert n["restarts"] == 0
    assert store.query(dq.RESTARTS_SQL.format(where=w)) == []
    timeline = dq.attempt_timeline_sql(queries.ATTEMPTS_SQL.format(where=w, job_id="'j'").strip())
    assert [r["state"] for r in store.query(timeline)] == ["attempt 1 running", "evicted"]


def test_verify_passes_and_says_how_many_rows_it_did_not_count(store, stale):
    c, _ = stale
    report = verify(store, campaign=c)
    assert report.ok, report.differences
    assert report.stale_attempt_rows == 1


def test_verify_catches_a_reader_that_counts_the_stale_row(store, stale, monkeypatch):
    """verify recounts what the readers count (the sites' sums), so an unguarded reader is a difference."""
    c, _ = stale
    unguarded = queries.SITES_SQL.replace("attempt <= job_attempts_now", "1")
    assert unguarded != queries.SITES_SQL
    monkeypatch.setattr(queries, "SITES_SQL", unguarded)
    report = verify(store, campaign=c)
    assert any("sites" in d and "attempts" in d for d in report.differences), report.differences
    monkeypatch.undo()
    assert verify_mod.verify(store, campaign=c).ok


@pytest.mark.servers
def test_cli_verify_says_how_many_attempt_rows_it_did_not_count(capsys, clickhouse_server, stale, store):
    from tests.stagewatch.test_cli_escaping import flat, run_cli

    if not store.url.startswith("clickhouse"):
        return  # the chDB store is open in this process (one path per process): the server case runs the CLI
    c, _ = stale
    code, out, err = run_cli(capsys, "verify", "--store", clickhouse_server.store_url, "--campaign", c)
    assert code == 0, err
    assert "1 attempt row(s) left by conflicting copies are kept but not counted" in flat(err)
