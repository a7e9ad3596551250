"""Grafana alert rules for stagewatch, built with grafana-foundation-sdk, and a local evaluator for tests.

Each rule is query A (ClickHouse SQL, table format) -> B reduce(last) -> C threshold, the shape the
Grafana UI creates. Query A returns one row per stage (or per source): string columns are the alert
instance's labels and exactly one numeric column, `value`, is compared with the threshold. Grafana
treats such a table as "numeric data", one alert instance per row. Thresholds are options
(`AlertOptions`), either in the threshold expression or, where the rule is more than a comparison, in
the SQL. Alert rules run in Grafana's backend only, so their SQL uses only the plugin's backend macros
(`$__fromTime`, `$__toTime`, `$__timeFilter`) with the rule's relative time range; "now" is
`$__toTime`, which also makes them testable at any moment.

`evaluate_rule` re-implements the three steps on a store so tests can check that a rule fires on a
scenario built for it and stays quiet on a healthy one. No Grafana runs in the test suite.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from typing import Any, Callable

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import queries as dq
from dashboards.build import UID_HEALTH, UID_OVERVIEW, UID_STAGE
from dashboards.chquery import DATASOURCE_UID, ClickHouseQueryBuilder
from dashboards.macros import TimeRange, expand
from processors.numbers import NUMBERS_BY_NAME, STALL_THRESHOLD_S

FOLDER_UID = "stagewatch"
FOLDER_TITLE = "stagewatch"
RULE_GROUP = "stagewatch"
EXPR_UID = "__expr__"

UID_STALLED = "stagewatch-stage-stalled"
UID_EVICTION_STORM = "stagewatch-eviction-storm"
UID_CPU_EFFICIENCY = "stagewatch-cpu-efficiency-low"
UID_DEAD_LETTERS = "stagewatch-dead-letters"
UID_SOURCE_SILENT = "stagewatch-source-silent"
RULE_UIDS = (UID_STALLED, UID_EVICTION_STORM, UID_CPU_EFFICIENCY, UID_DEAD_LETTERS, UID_SOURCE_SILENT)


@dataclass(frozen=True)
class AlertOptions:
    """Thresholds and windows of the alert rules (CLI: `stagewatch dashboards build/publish --help`)."""

    datasource_uid: str = DATASOURCE_UID
    folder_uid: str = FOLDER_UID
    folder_title: str = FOLDER_TITLE
    rule_group: str = RULE_GROUP
    interval_s: int = 60
    #: stalled: the glossary's stall threshold (STATUS_SQL's `stalled`).
    stall_threshold_s: float = STALL_THRESHOLD_S
    #: eviction storm: restarts in the window > fraction x the stage's running jobs, and at least min_restarts.
    eviction_window_s: int = 3600
    eviction_fraction: float = 0.5
    eviction_min_restarts: int = 5
    #: CPU efficiency of the jobs completed in the window below threshold (with at least min_jobs jobs).
    cpu_window_s: int = 6 * 3600
    cpu_threshold_pct: float = 50.0
    cpu_min_jobs: int = 5
    #: dead letters received in the window.
    dead_letter_window_s: int = 900
    #: a source that sent events within the lookback but none for silence_s.
    source_silence_s: int = 1800
    source_lookback_s: int = 24 * 3600
    #: restricts the stage rules to some campaigns/stages (SQL over campaign, stage); "1" = all.
    where: str = "1"


@dataclass(frozen=True)
class RuleSpec:
    """What a rule is, in our terms, before it becomes the SDK's model."""

    uid: str
    title: str
    sql: str
    window_s: int
    comparison: str  # gt, lt
    threshold: float
    summary: str
    description: str
    dashboard_uid: str
    for_: str = "0s"
    severity: str = "warning"


def rule_specs(o: AlertOptions = AlertOptions()) -> list[RuleSpec]:
    """The five rules of issue 4, section 3."""
    w = o.where
    stalled_sql = (f"SELECT campaign, stage, toFloat64(stalled) AS value\n"
                   f"FROM ({dq.status_sql(w, dq.ALERT_AS_OF, o.stall_threshold_s)}) AS status")
    storm_sql = f"""
SELECT campaign, stage,
       if(restarts_in_window >= {int(o.eviction_min_restarts)},
          restarts_in_window / greatest(jobs_running, 1), 0) AS value
FROM ({dq.from_status(["campaign", "stage", "jobs_running"], w, dq.ALERT_AS_OF, o.stall_threshold_s)}) AS running
ALL INNER JOIN ({dq.restarts_in_window_sql(w)}) AS restarts USING (campaign, stage)
"""
    cpu_sql = f"""
SELECT campaign, stage, cpu_efficiency_pct AS value
FROM ({dq.CPU_EFFICIENCY_WINDOW_SQL.format(where=w)}) AS recent
WHERE jobs >= {int(o.cpu_min_jobs)}
"""
    dead_sql = """
SELECT source, toFloat64(count()) AS value
FROM dead_letter FINAL
WHERE $__timeFilter(received_time)
GROUP BY source
"""
    silent_sql = """
SELECT source, (toUnixTimestamp($__toTime) - max(ingested_ts)) / 60 AS value
FROM raw_events
WHERE ingested_ts >= toUnixTimestamp($__fromTime) AND ingested_ts <= toUnixTimestamp($__toTime)
GROUP BY source
"""
    stall_h = o.stall_threshold_s / 3600
    return [
        RuleSpec(UID_STALLED, "Stage stalled", stalled_sql, 600, "gt", 0,
                 "{{ $labels.campaign }}/{{ $labels.stage }} is stalled",
                 NUMBERS_BY_NAME["stalled"].definition + f" Threshold here: {stall_h:g} h.", UID_OVERVIEW),
        RuleSpec(UID_EVICTION_STORM, "Eviction storm", storm_sql, o.eviction_window_s, "gt", o.eviction_fraction,
                 "{{ $labels.campaign }}/{{ $labels.stage }}: restarts in the last "
                 f"{o.eviction_window_s // 60} min above {o.eviction_fraction:g} x running jobs",
                 f"Restarts (a `started` that is not the job's first) in the last {o.eviction_window_s // 60} min, "
                 f"divided by the stage's running jobs (jobs_running, at least 1), above {o.eviction_fraction:g}, "
                 f"with at least {o.eviction_min_restarts} restarts.", UID_STAGE, for_="5m"),
        RuleSpec(UID_CPU_EFFICIENCY, "Low CPU efficiency", cpu_sql, o.cpu_window_s, "lt", o.cpu_threshold_pct,
                 "{{ $labels.campaign }}/{{ $labels.stage }}: CPU efficiency of recently completed jobs below "
                 f"{o.cpu_threshold_pct:g} %",
                 f"cpu_efficiency_pct over the jobs completed in the last {o.cpu_window_s / 3600:g} h (at least "
                 f"{o.cpu_min_jobs} jobs) below {o.cpu_threshold_pct:g} %. "
                 + NUMBERS_BY_NAME["cpu_efficiency_pct"].definition, UID_STAGE, for_="15m"),
        RuleSpec(UID_DEAD_LETTERS, "Dead letters", dead_sql, o.dead_letter_window_s, "gt", 0,
                 "{{ $labels.source }}: input that does not satisfy the event contract",
                 f"Dead letters received in the last {o.dead_letter_window_s // 60} min (SELECT * FROM dead_letter "
                 "for the reasons).", UID_HEALTH),
        RuleSpec(UID_SOURCE_SILENT, "Source silent", silent_sql, o.source_lookback_s, "gt",
                 o.source_silence_s / 60,
                 "{{ $labels.source }}: no events for {{ $values.B }} min",
                 f"A source that delivered events in the last {o.source_lookback_s / 3600:g} h has delivered none "
                 f"for more than {o.source_silence_s // 60} min: the pipeline or that feed is down.", UID_HEALTH,
                 severity="critical"),
    ]


def _expr_ds() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val="__expr__", uid=EXPR_UID)


def _rule(spec: RuleSpec, o: AlertOptions) -> alerting.Rule:
    query = (alerting.Query("A").datasource_uid(o.datasource_uid)
             .relative_time_range(am.RelativeTimeRange(from_val=spec.window_s, to=0))
             .model(ClickHouseQueryBuilder().sql(spec.sql.strip() + "\n").ref_id("A").table()
                    .datasource_uid(o.datasource_uid)))
    reduce_ = (alerting.Query("B").datasource_uid(EXPR_UID)
               .model(expr.TypeReduce().ref_id("B").expression("A").reducer("last").datasource(_expr_ds())))
    threshold = (alerting.Query("C").datasource_uid(EXPR_UID)
                 .model(expr.TypeThreshold().ref_id("C").expression("B").datasource(_expr_ds()).conditions([
                     expr.ExprTypeThresholdConditions().evaluator(
                         expr.ExprTypeThresholdConditionsEvaluator().type(spec.comparison)  # type: ignore[arg-type]
                         .params([float(spec.threshold)]))])))
    return (alerting.Rule(spec.title).uid(spec.uid).org_id(1).folder_uid(o.folder_uid).rule_group(o.rule_group)
            .condition("C").with_query(query).with_query(reduce_).with_query(threshold)
            .no_data_state("OK").exec_err_state("Error").for_val(spec.for_).is_paused(False)
            .labels({"team": "production", "severity": spec.severity, "source_system": "stagewatch"})
            .annotations({"summary": spec.summary, "description": spec.description,
                          "__dashboardUid__": spec.dashboard_uid}))


def rules(o: AlertOptions = AlertOptions()) -> list[am.Rule]:
    return [_rule(s, o).build() for s in rule_specs(o)]


def rule_group(o: AlertOptions = AlertOptions()) -> am.RuleGroup:
    g = alerting.RuleGroup(o.rule_group).folder_uid(o.folder_uid).interval(o.interval_s)
    for s in rule_specs(o):
        g = g.with_rule(_rule(s, o))
    return g.build()


def to_json(model: Any) -> Any:
    return json.loads(json.dumps(model, cls=JSONEncoder, sort_keys=True))


def provisioning_document(o: AlertOptions = AlertOptions()) -> dict[str, Any]:
    """Grafana's file-provisioning format for alert rules (provisioning/alerting/*.yaml)."""
    out_rules = []
    for r in to_json(rules(o)):
        out_rules.append({k: r[k] for k in ("uid", "title", "condition", "data", "noDataState", "execErrState",
                                            "for", "annotations", "labels", "isPaused") if k in r})
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": o.rule_group, "folder": o.folder_title, "interval": f"{o.interval_s}s",
        "rules": out_rules,
    }]}


# --------------------------------------------------------------------------------------------------
# Local evaluation (tests): the same three steps Grafana runs, on one store


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt, "lt": operator.lt, "gte": operator.ge, "lte": operator.le,
    "eq": operator.eq, "ne": operator.ne,
}


def evaluate_rule(rule: dict[str, Any], store: Any, now: float) -> list[dict[str, Any]]:
    """Evaluate a rule's JSON at `now`: one {labels, value, firing} per row of query A.

    Mirrors Grafana's handling of table results as numeric data: string columns become labels and
    there must be exactly one numeric column. Reduce is a no-op on numbers; the threshold compares.
    """
    data = {d["refId"]: d for d in rule["data"]}
    a, b, c = data["A"], data["B"]["model"], data["C"]["model"]
    assert rule["condition"] == "C" and b["type"] == "reduce" and b["expression"] == "A"
    assert c["type"] == "threshold" and c["expression"] == "B"
    rel = a["relativeTimeRange"]
    sql = expand(a["model"]["rawSql"], TimeRange(now - rel["from"], now - rel["to"]))
    ev = c["conditions"][0]["evaluator"]
    compare = _COMPARE[ev["type"]]
    out = []
    for row in store.query(sql):
        labels = {k: v for k, v in row.items() if isinstance(v, str)}
        numbers = {k: v for k, v in row.items() if not isinstance(v, str)}
        if len(numbers) != 1:
            raise AssertionError(f"rule {rule['uid']}: Grafana needs exactly one numeric column, got {sorted(numbers)}")
        value = next(iter(numbers.values()))
        firing = value is not None and compare(float(value), float(ev["params"][0]))
        out.append({"labels": labels, "value": None if value is None else float(value), "firing": firing})
    return out


__all__ = ["AlertOptions", "RuleSpec", "rule_specs", "rules", "rule_group", "provisioning_document",
           "evaluate_rule", "RULE_UIDS", "FOLDER_UID", "FOLDER_TITLE", "RULE_GROUP", "to_json"]
