"""Stages whose ratios have a zero divisor, on chDB and on the ClickHouse 18.16 server (read-only user).

18.16 evaluates both branches of if(): `if(input_files = 0, 0., intDiv(..., 2 * input_files))` raised
"Division by zero" for the whole query as soon as one stage had no input files (jobs from HTCondor logs
only), which broke `stagewatch status`, the overview, the alert rules and the report. The scenario's EDGE
campaign has a job-only stage, a file-only stage, a stage with input files and none located (0 %), a stage
without any CPU report and one whose only termination reports 0 s of wall time; each must run everywhere
and give the documented values (scenarios.EDGE_EXPECTED, processors.numbers).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dashboards import alerts, build
from dashboards.alerts import AlertOptions, evaluate_rule
from dashboards.macros import ALL, TimeRange, Variable, expand
from processors.numbers import NUMBERS, ratio_pct
from schemas import queries as sq
from stagewatch.reading import read_job, read_jobs, read_missing_files, read_status
from stagewatch.report import build_report, collect
from stagewatch.store.base import Store
from stagewatch.verify import verify
from tests.dashboards import scenarios
from tests.dashboards.conftest import Loaded
from tests.schemas.test_queries_division import unguarded_divisions

DASHBOARDS = {uid: build.to_json(d) for uid, d in build.all_dashboards().items()}
EDGE_STAGES = sorted(scenarios.EDGE_EXPECTED)


class Recording:
    """A store that remembers every SQL it ran (a real store underneath)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.sql: list[str] = []

    def query(self, sql: str) -> list[dict[str, Any]]:
        self.sql.append(sql)
        return self._store.query(sql)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _norm(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _tr(loaded: Loaded) -> TimeRange:
    return TimeRange(loaded.scenario.now - 7 * 86400, loaded.scenario.now + 60, interval_s=300)


def test_status_gives_the_documented_values(loaded: Loaded) -> None:
    rows = {s["stage"]: s for s in read_status(loaded.store, scenarios.EDGE, as_of=time.time())["stages"]}
    assert sorted(rows) == EDGE_STAGES
    for stage, expected in scenarios.EDGE_EXPECTED.items():
        got = {k: rows[stage][k] for k in expected}
        assert got == expected, stage
    # every stage at once (the query that failed for the whole store on 18.16)
    everything = read_status(loaded.store, as_of=time.time())["stages"]
    assert {(scenarios.EDGE, s) for s in EDGE_STAGES} <= {(r["campaign"], r["stage"]) for r in everything}


def test_every_panel_runs_for_each_zero_divisor_stage(loaded: Loaded) -> None:
    tr = _tr(loaded)
    campaigns = [r["campaign"] for r in loaded.store.query(build.CAMPAIGN_VARIABLE_SQL)]
    ran = 0
    for stage in EDGE_STAGES:
        (st,) = read_status(loaded.store, scenarios.EDGE, stage, as_of=time.time())["stages"]
        vs = [Variable("campaign", scenarios.EDGE), Variable("stage", stage), Variable("job_id", "jo-1")]
        for uid in (build.UID_STAGE, build.UID_JOB):
            for panel, target in build.iter_panel_queries(DASHBOARDS[uid]):
                rows = loaded.store.query(expand(target["rawSql"], tr, vs))
                ran += 1
                if panel["title"] == "Stage numbers":
                    (row,) = rows
                    for col in build.STAGE_HEADLINE:
                        assert _norm(row[col]) == _norm(st[col]), (stage, col)
    for selection in (ALL, [scenarios.EDGE]):
        vs = [Variable("campaign", selection, options=campaigns)]
        for uid in (build.UID_OVERVIEW, build.UID_HEALTH):
            for panel, target in build.iter_panel_queries(DASHBOARDS[uid]):
                rows = loaded.store.query(expand(target["rawSql"], tr, vs))
                ran += 1
                if panel["title"] == "Stages":
                    by = {(r["campaign"], r["stage"]): r for r in rows}
                    for stage, expected in scenarios.EDGE_EXPECTED.items():
                        row = by[(scenarios.EDGE, stage)]
                        assert {k: _norm(row[k]) for k in expected} == {k: _norm(v) for k, v in expected.items()}
    assert ran > 40


def test_every_alert_rule_runs_with_zero_divisor_stages(loaded: Loaded) -> None:
    """Including the CPU rule over a window whose only completed job reports 0 s of wall time."""
    for options in (AlertOptions(), AlertOptions(cpu_min_jobs=1)):
        for rule in alerts.to_json(alerts.rules(options)):
            evaluate_rule(rule, loaded.store, loaded.scenario.now)
    cpu = next(r for r in alerts.to_json(alerts.rules(AlertOptions(cpu_min_jobs=1)))
               if r["uid"] == alerts.UID_CPU_EFFICIENCY)
    edge = {i["labels"]["stage"]: i for i in evaluate_rule(cpu, loaded.store, loaded.scenario.now)
            if i["labels"].get("campaign") == scenarios.EDGE}
    # jobs-only's job completed 2 h ago (inside the 6 h window) at 50 %; zero-wall has no wall time: no row
    assert edge["jobs-only"]["value"] == 50.0 and "zero-wall" not in edge
    stalled = next(r for r in alerts.to_json(alerts.rules()) if r["uid"] == alerts.UID_STALLED)
    assert {i["labels"]["stage"] for i in evaluate_rule(stalled, loaded.store, loaded.scenario.now)
            if i["labels"].get("campaign") == scenarios.EDGE} == set(EDGE_STAGES)


def test_report_runs_and_shows_the_documented_values(loaded: Loaded) -> None:
    data = collect(loaded.store, campaign=scenarios.EDGE)
    status = {s["stage"]: s for s in data["status"]}
    for stage, expected in scenarios.EDGE_EXPECTED.items():
        assert {k: status[stage][k] for k in expected} == expected, stage
    page = build_report(loaded.store)
    assert page.count('<article class="stage') == len(read_status(loaded.store, as_of=time.time())["stages"])
    assert "0.0 %" in page


def test_the_sql_that_ran_guards_its_divisions(chdb_loaded: Loaded) -> None:
    """The SQL of status, the drill-downs, verify and the report, recorded from a run, passes the static scan."""
    rec = Recording(chdb_loaded.store)
    build_report(rec)  # type: ignore[arg-type]
    read_status(rec, scenarios.EDGE, as_of=time.time())  # type: ignore[arg-type]
    read_missing_files(rec, scenarios.EDGE, "none-located")  # type: ignore[arg-type]
    read_jobs(rec, scenarios.EDGE, "jobs-only", state=None, order="job_id", limit=5)  # type: ignore[arg-type]
    read_job(rec, scenarios.EDGE, "jobs-only", "jo-1")  # type: ignore[arg-type]
    verify(rec, scenarios.EDGE)  # type: ignore[arg-type]
    assert len(rec.sql) > 10
    bad = [f"{d}\n  in: {' '.join(sql.split())[:300]}" for sql in rec.sql for d in unguarded_divisions(sql)]
    assert bad == []


@pytest.mark.parametrize("name", [n.name for n in NUMBERS if n.name in ("completion_pct", "cpu_efficiency_pct")])
def test_glossary_documents_the_zero_divisor_value(name: str) -> None:
    """The values asserted above are the glossary's words, not this test's invention."""
    definition = next(n.definition for n in NUMBERS if n.name == name)
    assert ("0 when the stage has no input files" in definition if name == "completion_pct"
            else "null when there are none" in definition)


def _status_expression(alias: str) -> str:
    """The SELECT item of STATUS_SQL that defines `alias` (its text, unchanged)."""
    body = sq.STATUS_SQL.split("SELECT", 1)[1].split("FROM stage_numbers", 1)[0]
    items, depth, cur = [], 0, ""
    for ch in body:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    (item,) = [i for i in items if i.strip().endswith(f" AS {alias}")]
    return item.strip()[: -len(f" AS {alias}")]


def test_ratios_round_exactly_as_ratio_pct(loaded: Loaded) -> None:
    """STATUS_SQL's own expressions over a grid of (n, d), zero divisors included: equal to
    processors.numbers.ratio_pct to the last digit wherever d > 0, the documented value where d = 0."""
    pairs = [(n, d) for d in range(0, 41) for n in range(0, d + 3)]
    pairs += [(1, 2000), (1, 2001), (1, 1999), (3, 6000), (10**12 + 1, 3 * 10**12), (2, 3), (1, 8), (7, 7)]
    sql = f"""
SELECT n, d, {_status_expression("completion_pct")} AS completion_pct,
       {_status_expression("cpu_efficiency_pct")} AS cpu_efficiency_pct
FROM (
    SELECT tupleElement(p, 1) AS n, tupleElement(p, 2) AS d,
           toUInt64(n) AS files_located, toUInt64(d) AS input_files,
           toUInt64(n) AS cpu_ms, toUInt64(d) AS core_wall_ms, toUInt64(1) AS cpu_terminations
    FROM (SELECT arrayJoin([{", ".join(f"({n}, {d})" for n, d in pairs)}]) AS p)
) AS grid
"""
    rows = loaded.store.query(sql)
    assert len(rows) == len(pairs)
    for r in rows:
        n, d = int(r["n"]), int(r["d"])
        assert r["completion_pct"] == (ratio_pct(n, d) if d else 0.0), (n, d)
        assert r["cpu_efficiency_pct"] == (ratio_pct(n, d) if d else None), (n, d)
