"""Every panel's and variable's SQL, expanded as Grafana + the ClickHouse plugin expand it, on chDB and on the
ClickHouse 18.16 server (through the read-only user), against the known scenario.

The headline numbers must equal what `read_status` (= `stagewatch status --format json`) returns, and the
drill-down lists what `stagewatch missing-files` / `jobs` / `job` return. No Grafana runs here: the macro
expansion is dashboards/macros.py, which test_macros.py pins to the plugin's behaviour.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dashboards import build
from dashboards.macros import ALL, TimeRange, Variable, expand
from processors.numbers import FILE_BUCKETS, JOB_STATES, NUMBERS, RESTART_CAUSES
from schemas import queries as sq
from stagewatch.reading import read_job, read_jobs, read_missing_files, read_status
from stagewatch.store.base import StoreError
from tests.dashboards import scenarios
from tests.dashboards.conftest import Loaded

DASHBOARDS = {uid: build.to_json(d) for uid, d in build.all_dashboards().items()}
CAMPAIGNS = [scenarios.PROBLEM, scenarios.HEALTHY]


def _tr(loaded: Loaded) -> TimeRange:
    """A range covering the whole scenario (the dashboards' default is 7 days)."""
    return TimeRange(loaded.scenario.now - 7 * 86400, loaded.scenario.now + 60, interval_s=300)


def _panel(uid: str, title: str, ref: str = "A") -> str:
    for panel, target in build.iter_panel_queries(DASHBOARDS[uid]):
        if panel["title"] == title and target["refId"] == ref:
            return target["rawSql"]
    raise KeyError(title)


def _stage_vars(campaign: str, stage: str, job_id: str = "") -> list[Variable]:
    return [Variable("campaign", campaign), Variable("stage", stage), Variable("job_id", job_id)]


def _all_campaigns(loaded: Loaded) -> list[str]:
    return [r["campaign"] for r in loaded.store.query(build.CAMPAIGN_VARIABLE_SQL)]


def _status(loaded: Loaded, campaign: str | None = None, stage: str | None = None) -> list[dict[str, Any]]:
    return read_status(loaded.store, campaign, stage, as_of=time.time())["stages"]


def _norm(v: Any) -> Any:
    """Compare across drivers: booleans/ints/floats by value."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _same_numbers(row: dict[str, Any], status: dict[str, Any], columns: list[str]) -> None:
    for col in columns:
        if col.startswith("restarts_") and col[9:] in RESTART_CAUSES:
            expected = status["restarts_by_cause"][col[9:]]
        else:
            expected = status[col]
        assert _norm(row[col]) == _norm(expected), f"{status['campaign']}/{status['stage']} {col}: {row[col]} != {expected}"


def test_every_panel_and_variable_runs(loaded: Loaded) -> None:
    """Each query of each dashboard runs on this backend with typical variable values, and returns rows."""
    tr = _tr(loaded)
    overview_vars = [Variable("campaign", ALL, options=_all_campaigns(loaded))]
    stage_vars = _stage_vars(scenarios.PROBLEM, "reco", "reco-2")
    # may legitimately be empty; reco has no held job (test_operator_panels checks them with rows, for `stuck`)
    empty_ok = {"Jobs with most badput", "Hold reasons", "Held jobs"}
    ran = 0
    for uid, data in DASHBOARDS.items():
        vs = overview_vars if uid in (build.UID_OVERVIEW, build.UID_HEALTH) else stage_vars
        for name, sql in build.iter_variable_queries(data):
            assert loaded.store.query(expand(sql, tr, vs)), f"{uid} variable {name} returned nothing"
            ran += 1
        for panel, target in build.iter_panel_queries(data):
            rows = loaded.store.query(expand(target["rawSql"], tr, vs))
            assert rows or panel["title"] in empty_ok, f"{uid}: {panel['title']} returned no rows"
            ran += 1
    assert ran >= 25


def test_overview_equals_status_for_all_and_for_one_campaign(loaded: Loaded) -> None:
    sql = _panel(build.UID_OVERVIEW, "Stages")
    tr = _tr(loaded)
    everything = loaded.store.query(expand(sql, tr, [Variable("campaign", ALL, options=_all_campaigns(loaded))]))
    status_all = _status(loaded)
    assert list(everything[0]) == build._status_columns()  # the organize transformation's column list is right
    assert [(r["campaign"], r["stage"]) for r in everything] == [(s["campaign"], s["stage"]) for s in status_all]
    numbers = [n.name for n in NUMBERS if n.name != "restarts_by_cause"] + [f"restarts_{c}" for c in RESTART_CAUSES]
    for row, st in zip(everything, status_all):
        _same_numbers(row, st, numbers)
    one = loaded.store.query(expand(sql, tr, [Variable("campaign", [scenarios.PROBLEM])]))
    assert [r["stage"] for r in one] == ["reco", "storm", "stuck"]
    for row, st in zip(one, _status(loaded, scenarios.PROBLEM)):
        _same_numbers(row, st, numbers)
    # The scenario's known answers, so a bug shared by both paths cannot hide.
    by = {r["stage"]: r for r in one}
    assert _norm(by["stuck"]["stalled"]) == 1 and _norm(by["storm"]["stalled"]) == 0
    assert (by["reco"]["input_files"], by["reco"]["files_located"], by["reco"]["completion_pct"]) == (6, 2, 33.3)
    assert by["storm"]["restarts"] == 8 and by["storm"]["jobs_running"] == 4


@pytest.mark.parametrize("stage", ["reco", "storm", "stuck"])
def test_stage_panels_equal_status(loaded: Loaded, stage: str) -> None:
    tr = _tr(loaded)
    vs = _stage_vars(scenarios.PROBLEM, stage)
    (st,) = _status(loaded, scenarios.PROBLEM, stage)
    for title, cols in (("Stage numbers", list(build.STAGE_HEADLINE)),
                        ("Input files by bucket", list(FILE_BUCKETS)),
                        ("Jobs by state", [f"jobs_{s}" for s in JOB_STATES]),
                        ("Restarts by cause", [f"restarts_{c}" for c in RESTART_CAUSES])):
        (row,) = loaded.store.query(expand(_panel(build.UID_STAGE, title), tr, vs))
        assert sorted(row) == sorted(cols), title
        _same_numbers(row, st, cols)

    per_hour = loaded.store.query(expand(_panel(build.UID_STAGE, "Files located and jobs completed per hour"), tr, vs))
    assert sum(r["files_located"] for r in per_hour) == st["files_located"]
    completed = loaded.store.query(expand(_panel(build.UID_STAGE, "Files located and jobs completed per hour", "B"),
                                          tr, vs))
    assert sum(r["jobs_completed"] for r in completed) == st["jobs_completed"]
    restarts = loaded.store.query(expand(_panel(build.UID_STAGE, "Restarts per hour"), tr, vs))
    assert sum(r["restarts"] for r in restarts) == st["restarts"]
    exits = loaded.store.query(expand(_panel(build.UID_STAGE, "Exit codes of completed jobs"), tr, vs))
    assert sum(r["jobs"] for r in exits) == st["jobs_completed"]
    assert sum(r["jobs"] for r in exits if r["exit"] == "exit 0") == st["jobs_completed_ok"]
    hist = loaded.store.query(expand(_panel(build.UID_STAGE, "CPU efficiency of completed jobs"), tr, vs))
    assert sum(r["jobs"] for r in hist) == st["jobs_completed"]  # every completed job here reports CPU


def test_time_filter_narrows_the_per_hour_panels(loaded: Loaded) -> None:
    """The last hour only: reco's file located 30 min ago and its job completed 40 min ago, nothing older."""
    now = loaded.scenario.now
    vs = _stage_vars(scenarios.PROBLEM, "reco")
    last_hour = TimeRange(now - 3600, now, 60)
    rows = loaded.store.query(expand(_panel(build.UID_STAGE, "Files located and jobs completed per hour"), last_hour, vs))
    assert sum(r["files_located"] for r in rows) == 1
    rows = loaded.store.query(expand(_panel(build.UID_STAGE, "Files located and jobs completed per hour", "B"),
                                     last_hour, vs))
    assert sum(r["jobs_completed"] for r in rows) == 1


def test_drill_down_lists_are_the_cli_lists(loaded: Loaded) -> None:
    tr = _tr(loaded)
    for stage in ("reco", "storm", "stuck"):
        vs = _stage_vars(scenarios.PROBLEM, stage)
        missing = loaded.store.query(expand(_panel(build.UID_STAGE, "Input files without a located output"), tr, vs))
        assert [r["file"] for r in missing] == read_missing_files(loaded.store, scenarios.PROBLEM, stage)
        (st,) = _status(loaded, scenarios.PROBLEM, stage)
        assert len(missing) == st["files_without_located_output"]
        top = loaded.store.query(expand(_panel(build.UID_STAGE, "Jobs with most restarts"), tr, vs))
        cli = read_jobs(loaded.store, scenarios.PROBLEM, stage, state="restarted", order="restarts DESC, job_id",
                        limit=50)
        assert [r["job_id"] for r in top] == [r["job_id"] for r in cli]
        assert sum(r["restarts"] for r in top) == st["restarts"]
    vs = _stage_vars(scenarios.PROBLEM, "reco", "reco-2")
    cli_job = read_job(loaded.store, scenarios.PROBLEM, "reco", "reco-2")
    attempts = loaded.store.query(expand(_panel(build.UID_JOB, "Attempts (table)"), tr, vs))
    events = loaded.store.query(expand(_panel(build.UID_JOB, "Events"), tr, vs))
    assert [a["attempt"] for a in attempts] == [a["attempt"] for a in cli_job["attempts"]] == [1, 2]
    assert [e["event_id"] for e in events] == [e["event_id"] for e in cli_job["events"]]
    timeline = loaded.store.query(expand(_panel(build.UID_JOB, "Attempts"), tr, vs))
    assert [r["state"] for r in timeline] == ["attempt 1 running", "evicted", "attempt 2 running", "terminated"]


def test_pipeline_health_counts(loaded: Loaded) -> None:
    tr = _tr(loaded)
    vs = [Variable("campaign", [scenarios.PROBLEM])]
    latest = {r["source"]: r for r in loaded.store.query(expand(_panel(build.UID_HEALTH, "Latest event per source"),
                                                                 tr, vs))}
    for source, events in loaded.scenario.events_by_source.items():
        assert latest[source]["events"] == len({e.event_id for e in events})  # copies of an event are not written
    dead = [r for r in loaded.store.query(expand(_panel(build.UID_HEALTH, "Latest dead letters"), tr, vs))
            if r["source"] == scenarios.PROBLEM_SOURCE]
    assert sorted(r["position"] for r in dead) == ["0/17", "0/18"]
    by_type = loaded.store.query(expand(_panel(build.UID_HEALTH, "Events per minute by type (event time)"), tr, vs))
    # rate * interval / 60 gives back the count of the campaign's events in range
    total = sum(r["events_per_minute"] * tr.interval_s / 60 for r in by_type)
    assert round(total) == len(loaded.scenario.events_by_source[scenarios.PROBLEM_SOURCE])


def test_panels_never_use_time_interval_macro() -> None:
    """$__timeInterval expands to toStartOfInterval, which ClickHouse 18.16 lacks (see the next test)."""
    for uid, data in DASHBOARDS.items():
        for panel, target in build.iter_panel_queries(data):
            assert "$__timeInterval" not in target["rawSql"], f"{uid}: {panel['title']}"


def test_time_interval_macro_runs_on_chdb_only(loaded: Loaded) -> None:
    sql = expand("SELECT $__timeInterval(event_time) AS t, count() AS n FROM raw_events GROUP BY t", _tr(loaded), [])
    if loaded.backend == "chdb":
        assert loaded.store.query(sql)
    else:
        with pytest.raises(StoreError, match="toStartOfInterval"):
            loaded.store.query(sql)


def test_status_sql_is_used_verbatim() -> None:
    """No panel redefines a headline number: the overview's SQL is STATUS_SQL with Grafana's filter and now()."""
    assert _panel(build.UID_OVERVIEW, "Stages").strip() == sq.STATUS_SQL.format(
        where=build.OVERVIEW_WHERE, as_of="toUnixTimestamp(now())", threshold_s=repr(7200.0)).strip()
    for title in ("Stage numbers", "Input files by bucket", "Jobs by state", "Restarts by cause"):
        assert sq.STATUS_SQL.format(where=build.STAGE_WHERE, as_of="toUnixTimestamp(now())",
                                    threshold_s=repr(7200.0)) in _panel(build.UID_STAGE, title)
