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
