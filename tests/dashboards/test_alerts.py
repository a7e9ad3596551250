"""The alert rules, evaluated on the known scenario on chDB and on ClickHouse 18.16 (read-only user).

Each rule's query A is expanded with the plugin's backend macros for the rule's relative time range ending
at the scenario's `now`, then reduce/threshold are applied as Grafana applies them to numeric (table) data
(dashboards.alerts.evaluate_rule). No Grafana runs in this suite: what is tested is the rule JSON we
provision and its SQL against real ClickHouse engines.

Alert instances are told apart by their labels, so the healthy campaign/feed (HEALTHY, HEALTHY_SOURCE)
living in the same store as the problem one shows each rule staying quiet where nothing is wrong.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dashboards import alerts
from dashboards.alerts import AlertOptions, evaluate_rule
from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.models import alerting as am
from tests.dashboards import scenarios
from tests.dashboards.conftest import Loaded

OURS_CAMPAIGNS = {scenarios.PROBLEM, scenarios.HEALTHY}
OURS_SOURCES = {scenarios.PROBLEM_SOURCE, scenarios.HEALTHY_SOURCE}
# The scenario's storm stage has a single recent completion; require one job for the CPU rule.
OPTIONS = AlertOptions(cpu_min_jobs=1)


def _rule(uid: str, options: AlertOptions = OPTIONS) -> dict[str, Any]:
    return next(r for r in alerts.to_json(alerts.rules(options)) if r["uid"] == uid)


def _ours(instances: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    out = {}
    for i in instances:
        lab = i["labels"]
        if lab.get("campaign") in OURS_CAMPAIGNS or lab.get("source") in OURS_SOURCES:
            out[tuple(lab.get(k, "") for k in ("campaign", "stage", "source") if k in lab)] = i
    return out


def _firing(loaded: Loaded, uid: str, *, options: AlertOptions = OPTIONS, at: float | None = None) -> set[tuple[str, ...]]:
    inst = evaluate_rule(_rule(uid, options), loaded.store, loaded.scenario.now if at is None else at)
    return {k for k, i in _ours(inst).items() if i["firing"]}


def test_stalled_fires_for_the_stuck_stage_only(loaded: Loaded) -> None:
    inst = _ours(evaluate_rule(_rule(alerts.UID_STALLED), loaded.store, loaded.scenario.now))
    assert {k for k, i in inst.items() if i["firing"]} == {(scenarios.PROBLEM, "stuck")}
    # every stage of ours is evaluated (one alert instance per stage), the healthy ones at 0
    assert set(inst) == {(scenarios.PROBLEM, s) for s in ("reco", "storm", "stuck")} | {
        (scenarios.HEALTHY, s) for s in ("gen", "done")}
    # the glossary's threshold is an option: 6 h is longer than `stuck` has been without progress (5 h)
    assert _firing(loaded, alerts.UID_STALLED, options=AlertOptions(stall_threshold_s=6 * 3600)) == set()


def test_eviction_storm_fires_for_the_storm_stage_only(loaded: Loaded) -> None:
    inst = _ours(evaluate_rule(_rule(alerts.UID_EVICTION_STORM), loaded.store, loaded.scenario.now))
    assert {k for k, i in inst.items() if i["firing"]} == {(scenarios.PROBLEM, "storm")}
    assert inst[(scenarios.PROBLEM, "storm")]["value"] == 2.0  # 8 restarts in the hour / 4 running jobs
    # thresholds: a fraction above 2, or more restarts required than happened, silence it
    assert _firing(loaded, alerts.UID_EVICTION_STORM, options=AlertOptions(eviction_fraction=2.5)) == set()
    assert _firing(loaded, alerts.UID_EVICTION_STORM, options=AlertOptions(eviction_min_restarts=9)) == set()
    # two hours later those restarts are out of the window
    assert _firing(loaded, alerts.UID_EVICTION_STORM, at=loaded.scenario.now + 2 * 3600) == set()


def test_low_cpu_efficiency_fires_for_the_storm_stage_only(loaded: Loaded) -> None:
    inst = _ours(evaluate_rule(_rule(alerts.UID_CPU_EFFICIENCY), loaded.store, loaded.scenario.now))
    assert {k for k, i in inst.items() if i["firing"]} == {(scenarios.PROBLEM, "storm")}
    assert inst[(scenarios.PROBLEM, "storm")]["value"] == 20.0
    assert _firing(loaded, alerts.UID_CPU_EFFICIENCY, options=AlertOptions(cpu_min_jobs=1,
                                                                         cpu_threshold_pct=10)) == set()
    # default: at least 5 completed jobs in the window, which no stage of the scenario has
    assert _firing(loaded, alerts.UID_CPU_EFFICIENCY, options=AlertOptions()) == set()


def test_dead_letters_fire_for_the_problem_feed_only(loaded: Loaded) -> None:
    # The replayer stamps dead letters with the wall clock when it loads the scenario (just after
    # scenario.now), so evaluate at the wall clock; an hour later they are out of the 15 min window.
    now = time.time() + 1
    assert _firing(loaded, alerts.UID_DEAD_LETTERS, at=now) == {(scenarios.PROBLEM_SOURCE,)}
    assert _firing(loaded, alerts.UID_DEAD_LETTERS, at=now + 3600) == set()


def test_silent_source_fires_for_the_quiet_feed_only(loaded: Loaded) -> None:
    assert _firing(loaded, alerts.UID_SOURCE_SILENT) == {(scenarios.PROBLEM_SOURCE,)}  # quiet for 40 min
    assert _firing(loaded, alerts.UID_SOURCE_SILENT, options=AlertOptions(source_silence_s=3600)) == set()


def test_rules_are_quiet_on_the_healthy_scenario(loaded: Loaded) -> None:
    for rule in alerts.to_json(alerts.rules(OPTIONS)):
        for i in evaluate_rule(rule, loaded.store, loaded.scenario.now):
            lab = i["labels"]
            if lab.get("campaign") == scenarios.HEALTHY or lab.get("source") == scenarios.HEALTHY_SOURCE:
                assert not i["firing"], (rule["uid"], i)


def test_rule_json_loads_back_through_the_sdk_and_has_the_grafana_shape() -> None:
    cogplugins.register_default_plugins()
    rules = alerts.to_json(alerts.rules())
    assert [r["uid"] for r in rules] == list(alerts.RULE_UIDS)
    for r in rules:
        back = am.Rule.from_json(r)
        assert alerts.to_json(back) == r
        assert back.data[0].model.__class__.__name__ == "ClickHouseQuery"
        assert r["condition"] == "C" and [d["refId"] for d in r["data"]] == ["A", "B", "C"]
        assert r["data"][0]["datasourceUid"] == r["data"][0]["model"]["datasource"]["uid"] == "stagewatch-clickhouse"
        assert r["data"][0]["model"]["format"] == 1
        assert r["folderUID"] == alerts.FOLDER_UID and r["ruleGroup"] == alerts.RULE_GROUP and r["orgID"] == 1
        assert "${" not in r["data"][0]["model"]["rawSql"] and "$__conditionalAll" not in r["data"][0]["model"]["rawSql"]
    doc = alerts.provisioning_document(AlertOptions(eviction_fraction=0.8, interval_s=120))
    (group,) = doc["groups"]
    assert group["interval"] == "120s" and group["folder"] == alerts.FOLDER_TITLE
    storm = next(r for r in group["rules"] if r["uid"] == alerts.UID_EVICTION_STORM)
    assert storm["data"][2]["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [0.8]}


@pytest.mark.parametrize("uid", alerts.RULE_UIDS)
def test_rule_sql_gives_grafana_numeric_data(loaded: Loaded, uid: str) -> None:
    """Grafana accepts a table as alert data only with string label columns and one numeric column."""
    rows = evaluate_rule(_rule(uid), loaded.store, time.time() + 1)  # raises otherwise
    assert rows
