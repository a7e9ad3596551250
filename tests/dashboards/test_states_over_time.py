"""Jobs by state over time (dashboards/states_over_time.py) equal the Engine's numbers at each step, on chDB
and on ClickHouse 18.16: the value at step T is what replaying exactly the events with ts <= T gives
(`stagewatch history`'s definition), for stages whose events tie on ts, arrive shuffled and twice."""

from __future__ import annotations

from typing import Any

import pytest

from dashboards import build
from dashboards.macros import TimeRange, Variable, expand
from dashboards.states_over_time import OVER_TIME_STATES, grafana_jobs_by_state_sql, jobs_by_state_sql
from processors.engine import Engine
from schemas.queries import where
from tests.dashboards import scenarios
from tests.dashboards.conftest import Loaded


def engine_counts(events: list[Any], campaign: str, stage: str, at: float) -> dict[str, int]:
    """The glossary's numbers at `at`: only the events with ts <= at, replayed into an empty Engine."""
    e = Engine()
    e.apply_all([ev for ev in events if ev.ts <= at and ev.campaign == campaign and ev.stage == stage])
    rows = [n for n in e.numbers(as_of=at) if (n["campaign"], n["stage"]) == (campaign, stage)]
    if not rows:
        return {f"jobs_{s}": 0 for s in OVER_TIME_STATES}
    return {f"jobs_{s}": rows[0][f"jobs_{s}"] for s in OVER_TIME_STATES}


def _events(loaded: Loaded, campaign: str) -> list[Any]:
    return [ev for evs in loaded.scenario.events_by_source.values() for ev in evs if ev.campaign == campaign]


CASES = [
    (scenarios.TIMELINE, scenarios.TIMELINE_STAGE),
    (scenarios.PROBLEM, "storm"), (scenarios.PROBLEM, "stuck"), (scenarios.PROBLEM, "reco"),
    (scenarios.EDGE, "jobs-only"),
]


@pytest.mark.parametrize("campaign,stage", CASES)
def test_counts_equal_the_engine_at_every_step(loaded: Loaded, campaign: str, stage: str) -> None:
    events = _events(loaded, campaign)
    ts = sorted({ev.ts for ev in events if ev.stage == stage})
    first, last = ts[0], ts[-1]
    # steps before the first event, on event times exactly (ties), between them, and after the last
    for start, step in ((int(first) - 7200, 900), (int(first), 450), (int(first) - 1, 3600), (int(last) + 10, 60)):
        n = int((last + 3600 - start) // step) + 1
        rows = _run(loaded, jobs_by_state_sql(where(campaign, stage), str(start), str(step), str(n)))
        assert len(rows) == n
        for i, r in enumerate(rows):
            at = start + i * step
            assert r.pop("time") == at
            assert r == engine_counts(events, campaign, stage, at), (stage, at)
    assert any(engine_counts(events, campaign, stage, t)["jobs_held"] for t in ts) or campaign != scenarios.TIMELINE


def _run(loaded: Loaded, sql: str) -> list[dict[str, Any]]:
    """Rows with `time` as Unix seconds (drivers give DateTime back as text or datetime)."""
    rows = loaded.store.query(f"SELECT toUInt32(time) AS unix_time, * FROM ({sql}) AS q ORDER BY unix_time")
    return [{"time": int(r.pop("unix_time")), **{k: int(v) for k, v in r.items() if k != "time"}} for r in rows]


def test_the_timeline_scenario_moves_through_every_state(loaded: Loaded) -> None:
    """The scenario is not trivially flat: idle, running and held all reach 3+ jobs at some step."""
    events = _events(loaded, scenarios.TIMELINE)
    ts = sorted({ev.ts for ev in events})
    peaks = {s: max(engine_counts(events, scenarios.TIMELINE, scenarios.TIMELINE_STAGE, t)[f"jobs_{s}"] for t in ts)
             for s in OVER_TIME_STATES}
    assert min(peaks.values()) >= 3, peaks


def test_grafana_panel_uses_the_dashboard_range_and_interval(loaded: Loaded) -> None:
    events = _events(loaded, scenarios.TIMELINE)
    ts = sorted({ev.ts for ev in events})
    step = 1800
    tr = TimeRange(ts[0] - 5000, ts[-1] + 7000, interval_s=step)
    sql = grafana_jobs_by_state_sql(build.STAGE_WHERE)
    rows = _run(loaded, expand(sql, tr, [Variable("campaign", scenarios.TIMELINE),
                                         Variable("stage", scenarios.TIMELINE_STAGE)]))
    first = -(-int(tr.start) // step) * step
    assert [r["time"] for r in rows] == list(range(first, int(tr.end) + 1, step))
    for r in rows:
        at = r.pop("time")
        assert r == engine_counts(events, scenarios.TIMELINE, scenarios.TIMELINE_STAGE, at)


def test_a_range_shorter_than_a_step_gives_no_rows(loaded: Loaded) -> None:
    tr = TimeRange(1_000_000_001, 1_000_000_100, interval_s=3600)
    sql = grafana_jobs_by_state_sql(build.STAGE_WHERE)
    vs = [Variable("campaign", scenarios.TIMELINE), Variable("stage", scenarios.TIMELINE_STAGE)]
    assert loaded.store.query(expand(sql, tr, vs)) == []


@pytest.mark.parametrize("campaign,stage", [(scenarios.TIMELINE, scenarios.TIMELINE_STAGE), (scenarios.PROBLEM, "storm")])
def test_counts_equal_stagewatch_history(loaded: Loaded, campaign: str, stage: str) -> None:
    """The SQL series equals `stagewatch history` (stagewatch.timetravel.history) at each of its steps."""
    from stagewatch.timetravel import history

    events = _events(loaded, campaign)
    ts = sorted(ev.ts for ev in events if ev.stage == stage)
    since, every, until = int(ts[0]) - 3600, 1800, int(ts[-1]) + 3600
    n = (until - since) // every + 1
    sql_rows = {r.pop("time"): r for r in _run(loaded, jobs_by_state_sql(where(campaign, stage), str(since),
                                                                           str(every), str(n)))}
    hist = history(loaded.store, campaign, stage, every_s=every, since=since, until=until)
    assert len(hist) >= n - 3  # steps before the stage's first event have no history row
    for h in hist:
        assert sql_rows[int(h["ts"])] == {f"jobs_{s}": h[f"jobs_{s}"] for s in OVER_TIME_STATES}, h["ts"]
    for t, row in sql_rows.items():
        if t < ts[0]:
            assert set(row.values()) == {0}
