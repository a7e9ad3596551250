"""The operator panels: headline stats (sums of STATUS_SQL over the selected stages, with thresholds) and
jobs by state over time on the Stage dashboard, on chDB and ClickHouse 18.16; thresholds shared with the report."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dashboards import build
from dashboards.alerts import AlertOptions
from dashboards.macros import ALL, TimeRange, Variable, expand
from dashboards.operator_panels import (OVERVIEW_STATS, THRESHOLDS, color_for, overview_stats_sql,
                                        thresholds_config)
from dashboards.states_over_time import grafana_jobs_by_state_sql
from processors.numbers import RESTART_CAUSES
from stagewatch.reading import read_status
from tests.dashboards import scenarios
from tests.dashboards.conftest import Loaded

DASHBOARDS = {uid: build.to_json(d) for uid, d in build.all_dashboards().items()}


def _panel(uid: str, title: str) -> dict[str, Any]:
    (p,) = [p for p in DASHBOARDS[uid]["panels"] if p["title"] == title]
    return p


def _overrides(panel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for o in panel["fieldConfig"]["overrides"]:
        out.setdefault(o["matcher"]["options"], {}).update({p["id"]: p.get("value") for p in o["properties"]})
    return out


def _expected(stages: list[dict[str, Any]]) -> dict[str, int]:
    out = {c: sum(int(s[c]) for s in stages) for c in OVERVIEW_STATS if c != "stalled_stages"}
    out["stalled_stages"] = sum(1 for s in stages if s["stalled"])
    return out


def test_overview_stats_are_sums_of_the_status_numbers(loaded: Loaded) -> None:
    sql = _panel(build.UID_OVERVIEW, "Right now")["targets"][0]["rawSql"]
    assert sql.strip() == overview_stats_sql(build.BuildOptions()).strip()
    tr = TimeRange(loaded.scenario.now - 86400, loaded.scenario.now)
    campaigns = [r["campaign"] for r in loaded.store.query(build.CAMPAIGN_VARIABLE_SQL)]
    for selection, campaign in ((ALL, None), ([scenarios.PROBLEM], scenarios.PROBLEM),
                                ([scenarios.PROBLEM, scenarios.HEALTHY], None)):
        (row,) = loaded.store.query(expand(sql, tr, [Variable("campaign", selection, options=campaigns)]))
        stages = read_status(loaded.store, campaign, as_of=time.time())["stages"]
        if isinstance(selection, list):
            stages = [s for s in stages if s["campaign"] in selection]
        assert {k: int(v) for k, v in row.items()} == _expected(stages), selection
    # the scenario's known answer: PROBLEM has one stalled stage (stuck) and one held job
    (row,) = loaded.store.query(expand(sql, tr, [Variable("campaign", [scenarios.PROBLEM])]))
    assert (int(row["stalled_stages"]), int(row["jobs_held"])) == (1, 1)


def test_stat_panels_carry_thresholds() -> None:
    stats = _overrides(_panel(build.UID_OVERVIEW, "Right now"))
    assert stats["stalled_stages"]["thresholds"] == thresholds_config("stalled_stages")
    assert stats["stalled_stages"]["color"] == {"mode": "thresholds"}
    assert stats["files_without_located_output"]["thresholds"]["steps"][1] == {"color": "orange", "value": 1}
    headline = _overrides(_panel(build.UID_STAGE, "Stage numbers"))
    for col in ("completion_pct", "cpu_efficiency_pct", "stalled", "files_without_located_output"):
        assert headline[col]["thresholds"] == thresholds_config(col) and headline[col]["color"] == {"mode": "thresholds"}
    assert "mappings" in headline["stalled"]  # STALLED / no text kept next to the colour


def test_color_for_picks_the_step_as_grafana_does() -> None:
    assert [color_for("cpu_efficiency_pct", v) for v in (0, 49.9, 50, 74.9, 75, 100)] == [
        "red", "red", "orange", "orange", "green", "green"]
    assert [color_for("stalled_stages", v) for v in (0, 1, 7)] == ["green", "red", "red"]
    assert color_for("cpu_efficiency_pct", None) is None and color_for("jobs", 3) is None
    # red below the low-CPU-efficiency alert's default threshold: one number, two places
    assert THRESHOLDS["cpu_efficiency_pct"][1] == (AlertOptions().cpu_threshold_pct, "orange")


def test_stage_dashboard_charts_jobs_by_state_over_time() -> None:
    p = _panel(build.UID_STAGE, "Jobs by state over time")
    assert p["type"] == "timeseries" and p["targets"][0]["format"] == 0
    assert p["targets"][0]["rawSql"].strip() == grafana_jobs_by_state_sql(build.STAGE_WHERE).strip()
    ov = _overrides(p)
    assert [ov[c]["displayName"] for c in ("jobs_idle", "jobs_running", "jobs_held")] == ["Idle", "Running", "Held"]


@pytest.mark.parametrize("stage", ["storm", "stuck"])
def test_jobs_by_state_panel_ends_at_the_status_numbers(loaded: Loaded, stage: str) -> None:
    """At the last step (now) the panel shows what `stagewatch status` shows."""
    sql = _panel(build.UID_STAGE, "Jobs by state over time")["targets"][0]["rawSql"]
    now = time.time()
    tr = TimeRange(now - 86400, now, interval_s=600)
    rows = loaded.store.query(expand(sql, tr, [Variable("campaign", scenarios.PROBLEM), Variable("stage", stage)]))
    (st,) = read_status(loaded.store, scenarios.PROBLEM, stage, as_of=now)["stages"]
    last = rows[-1]
    assert {c: int(last[c]) for c in ("jobs_idle", "jobs_running", "jobs_held")} == {
        c: st[c] for c in ("jobs_idle", "jobs_running", "jobs_held")}


# --- holds, sites, forecast: INSIGHT's SQL, so the panels equal `stagewatch holds`, `jobs --state held`,
# `sites` and the status forecast

def _sql(uid: str, title: str) -> str:
    return _panel(uid, title)["targets"][0]["rawSql"]


def _tr(loaded: Loaded) -> TimeRange:
    return TimeRange(loaded.scenario.now - 7 * 86400, loaded.scenario.now + 60, interval_s=300)


def _stage_vars(campaign: str, stage: str) -> list[Variable]:
    return [Variable("campaign", campaign), Variable("stage", stage), Variable("job_id", "")]


def _ms(v: Any) -> float | None:
    return None if v is None else float(v) / 1000


def test_hold_panels_equal_stagewatch_holds(loaded: Loaded) -> None:
    from stagewatch.reading import read_held_jobs, read_holds

    vs = _stage_vars(scenarios.PROBLEM, "stuck")
    rows = loaded.store.query(expand(_sql(build.UID_STAGE, "Hold reasons"), _tr(loaded), vs))
    cli = read_holds(loaded.store, scenarios.PROBLEM, "stuck")
    assert [(r["hold_reason"], r["hold_code"], r["hold_subcode"], int(r["jobs_held"]), _ms(r["held_since"]))
            for r in rows] == [(h["hold_reason"], h["hold_code"], h["hold_subcode"], h["jobs_held"],
                                h["held_since_ts"]) for h in cli]
    assert [(r["hold_reason"], int(r["jobs_held"])) for r in rows] == [("memory", 1)]  # the scenario's answer
    held = loaded.store.query(expand(_sql(build.UID_STAGE, "Held jobs"), _tr(loaded), vs))
    assert [(r["job_id"], _ms(r["held_since"])) for r in held] == [
        (r["job_id"], float(r["held_ts"])) for r in read_held_jobs(loaded.store, scenarios.PROBLEM, "stuck", limit=200)]
    assert [r["job_id"] for r in held] == ["stuck-4"]
    campaigns = [r["campaign"] for r in loaded.store.query(build.CAMPAIGN_VARIABLE_SQL)]
    every = loaded.store.query(expand(_sql(build.UID_OVERVIEW, "Hold reasons"), _tr(loaded),
                                      [Variable("campaign", ALL, options=campaigns)]))
    assert [(r["campaign"], r["stage"], r["hold_reason"], int(r["jobs_held"])) for r in every] == [
        (h["campaign"], h["stage"], h["hold_reason"], h["jobs_held"]) for h in read_holds(loaded.store)]


def _site_rows(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["site"], int(r["attempts"]), int(r["restarts"]), *(int(r[f"restarts_{c}"]) for c in RESTART_CAUSES),
             float(r["badput_core_hours"]), None if r["cpu_efficiency_pct"] is None else float(r["cpu_efficiency_pct"]),
             int(r["jobs_held"])) for r in rows]


def _cli_sites(sites: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(s["site"], s["attempts"], s["restarts"], *(s["restarts_by_cause"][c] for c in RESTART_CAUSES),
             s["badput_core_hours"], s["cpu_efficiency_pct"], s["jobs_held"]) for s in sites]


@pytest.mark.parametrize("campaign,stage", [(scenarios.PROBLEM, "reco"), (scenarios.PROBLEM, "storm"),
                                            (scenarios.PROBLEM, "stuck"), (scenarios.TIMELINE, scenarios.TIMELINE_STAGE),
                                            (scenarios.HOSTILE, scenarios.HOSTILE_STAGE)])
def test_site_panels_equal_stagewatch_sites(loaded: Loaded, campaign: str, stage: str) -> None:
    from stagewatch.reading import read_sites

    vs = _stage_vars(campaign, stage)
    rows = loaded.store.query(expand(_sql(build.UID_STAGE, "Sites"), _tr(loaded), vs))
    cli = read_sites(loaded.store, campaign, stage)
    assert _site_rows(rows) == _cli_sites(cli) and rows
    (st,) = read_status(loaded.store, campaign, stage, as_of=time.time())["stages"]
    bars = loaded.store.query(expand(_sql(build.UID_STAGE, "Restarts by cause per site"), _tr(loaded), vs))
    for c in RESTART_CAUSES:  # the sites add up to the stage
        assert sum(int(r[f"restarts_{c}"]) for r in bars) == st["restarts_by_cause"][c], c


def test_overview_sites_equal_stagewatch_sites_for_the_selection(loaded: Loaded) -> None:
    from stagewatch.reading import read_sites

    rows = loaded.store.query(expand(_sql(build.UID_OVERVIEW, "Sites"), _tr(loaded),
                                     [Variable("campaign", [scenarios.PROBLEM, scenarios.HEALTHY])]))
    cli = [s for s in read_sites(loaded.store) if s["campaign"] in (scenarios.PROBLEM, scenarios.HEALTHY)]
    assert [(r["campaign"], r["stage"]) for r in rows] == [(s["campaign"], s["stage"]) for s in cli]
    assert _site_rows(rows) == _cli_sites(cli)


def test_forecast_panels_equal_the_status_forecast(loaded: Loaded) -> None:
    from stagewatch.reading import read_forecast

    campaigns = [r["campaign"] for r in loaded.store.query(build.CAMPAIGN_VARIABLE_SQL)]
    before = time.time()
    rows = loaded.store.query(expand(_sql(build.UID_OVERVIEW, "Forecast"), _tr(loaded),
                                     [Variable("campaign", ALL, options=campaigns)]))
    cli = read_forecast(loaded.store, as_of=before)
    status = {(s["campaign"], s["stage"]): s for s in read_status(loaded.store, as_of=before)["stages"]}
    assert {(r["campaign"], r["stage"]) for r in rows} == set(cli) == set(status)
    for r in rows:
        key = (r["campaign"], r["stage"])
        assert float(r["located_rate_per_h"]) == cli[key]["located_rate_per_h"], key
        assert int(r["files_without_located_output"]) == status[key]["files_without_located_output"]
        eta = _ms(r["eta"])
        assert (eta is None) == (cli[key]["eta"] is None), key
        if eta is not None:  # the panel's now() is a moment after `before`
            assert abs(eta - cli[key]["eta"]) < 30, key
    reco = next(r for r in rows if (r["campaign"], r["stage"]) == (scenarios.PROBLEM, "reco"))
    assert float(reco["located_rate_per_h"]) == 0.17  # one file located 30 min ago, 6 h window
    (stage_row,) = loaded.store.query(expand(_sql(build.UID_STAGE, "Forecast"), _tr(loaded),
                                             _stage_vars(scenarios.PROBLEM, "reco")))
    assert float(stage_row["located_rate_per_h"]) == 0.17 and stage_row["eta"] is not None


def test_forecast_window_is_a_build_option() -> None:
    from dashboards.operator_panels import forecast_sql

    assert "21600" in forecast_sql(build.STAGE_WHERE, build.BuildOptions())
    assert "3600" in forecast_sql(build.STAGE_WHERE, build.BuildOptions(rate_window_h=1)) and "21600" not in \
        forecast_sql(build.STAGE_WHERE, build.BuildOptions(rate_window_h=1))
