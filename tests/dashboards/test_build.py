"""The built dashboards and provisioning files: they load back through the SDK's models, are stable between
builds, carry the glossary, and never contain the ClickHouse password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dashboards import alerts, build, provisioning
from dashboards.chquery import ClickHouseQuery, Format
from grafana_foundation_sdk.models import dashboard as dm
from processors.numbers import FORECAST_NUMBERS, NUMBERS, NUMBERS_BY_NAME, SITE_NUMBERS
from stagewatch.cli import app

DEFINITIONS = {n.definition for n in (*NUMBERS, *SITE_NUMBERS, *FORECAST_NUMBERS)}
"""A column may carry a stage number's definition or, in the sites and forecast panels, the per-site or
forecast number's (the glossary defines both)."""


def test_dashboards_load_back_through_the_sdk_models() -> None:
    for uid, model in build.all_dashboards().items():
        data = build.to_json(model)
        back = build.load_dashboard(data)
        assert isinstance(back, dm.Dashboard) and back.uid == uid
        assert build.to_json(back) == data, f"{uid} does not round-trip through the SDK models"
        targets = [t for p in back.panels or [] for t in (p.targets or [])]
        assert targets and all(isinstance(t, ClickHouseQuery) for t in targets)
        assert all(t.datasource_uid == "stagewatch-clickhouse" for t in targets)
        assert data["schemaVersion"] >= 39  # Grafana 11 schema, not the 10.1 default build


def test_uids_and_json_are_stable_between_builds(tmp_path: Path) -> None:
    a = provisioning.write(tmp_path / "a")
    b = provisioning.write(tmp_path / "b", grafana_dashboards_path=str((tmp_path / "a" / "dashboards").resolve()))
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    uids = [json.loads((tmp_path / "a" / "dashboards" / f"{u}.json").read_text())["uid"] for u in build.DASHBOARD_UIDS]
    assert uids == ["stagewatch-overview", "stagewatch-stage", "stagewatch-job", "stagewatch-pipeline-health"]
    # and in a fresh interpreter (no state carried over from this process)
    code = ("from dashboards.build import all_dashboards, to_json; import json; "
            "print(json.dumps({u: to_json(d) for u, d in all_dashboards().items()}, sort_keys=True))")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[2]).stdout
    assert json.loads(fresh) == {u: build.to_json(d) for u, d in build.all_dashboards().items()}


def _overrides(panel: dict) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for o in panel["fieldConfig"]["overrides"]:
        if o["matcher"]["id"] == "byName":
            out.setdefault(o["matcher"]["options"], {}).update({p["id"]: p.get("value") for p in o["properties"]})
    return out


def test_overview_columns_carry_the_glossary_and_link_to_the_stage_view() -> None:
    data = build.to_json(build.overview())
    (table,) = [p for p in data["panels"] if p["type"] == "table" and p["title"] == "Stages"]
    ov = _overrides(table)
    organize = table["transformations"][0]["options"]
    order = sorted(organize["indexByName"], key=organize["indexByName"].get)
    assert order == list(build.OVERVIEW_COLUMNS)
    # files first, then jobs
    assert order[2:9] == ["input_files", "files_located", "files_without_located_output", "completion_pct",
                          "files_in_flight", "files_failed", "files_pending"]
    for col in build.OVERVIEW_COLUMNS[2:]:
        assert ov[col]["description"] == NUMBERS_BY_NAME[col].definition, col
        assert ov[col]["displayName"] == NUMBERS_BY_NAME[col].short, col
    assert all(not hidden or c not in build.OVERVIEW_COLUMNS for c, hidden in organize["excludeByName"].items())
    link = ov["stage"]["links"][0]["url"]
    assert link.startswith("/d/stagewatch-stage/") and "var-stage=${__value.raw:percentencode}" in link
    assert "var-campaign=${__data.fields.campaign:percentencode}" in link  # names with & or # stay whole
    stalled = ov["stalled"]
    assert stalled["custom.cellOptions"] == {"type": "color-background", "applyToRow": True, "mode": "basic"}
    assert stalled["mappings"][0]["options"]["1"]["color"] == "red"
    assert data["templating"]["list"][0]["name"] == "campaign" and data["templating"]["list"][0]["includeAll"]


def test_every_number_shown_anywhere_carries_its_definition() -> None:
    for uid, model in build.all_dashboards().items():
        data = build.to_json(model)
        for panel in data["panels"]:
            for col, props in _overrides(panel).items() if "fieldConfig" in panel else []:
                if col in NUMBERS_BY_NAME or col.startswith("restarts_"):
                    desc = str(props.get("description", ""))
                    assert any(desc.startswith(d) for d in DEFINITIONS), (uid, panel["title"], col)


def test_job_lists_link_to_the_job_view() -> None:
    data = build.to_json(build.stage())
    for title in ("Jobs with most restarts", "Jobs with most badput"):
        (panel,) = [p for p in data["panels"] if p["title"] == title]
        url = _overrides(panel)["job_id"]["links"][0]["url"]
        assert url.startswith("/d/stagewatch-job/") and "var-job_id=${__value.raw:percentencode}" in url


def test_time_series_panels_ask_for_time_series_format() -> None:
    for uid, model in build.all_dashboards().items():
        for panel, target in build.iter_panel_queries(build.to_json(model)):
            expected = Format.TIME_SERIES if panel["type"] == "timeseries" else Format.TABLE
            assert target["format"] == expected and target["queryType"] == ("timeseries" if expected == 0 else "table")
            assert target["editorType"] == "sql" and target["datasource"]["type"] == "grafana-clickhouse-datasource"


def test_provisioning_files(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    secret = "do-not-write-me-3141"
    monkeypatch.setenv(provisioning.PASSWORD_ENV, secret)
    written = provisioning.write(tmp_path, conn=provisioning.ClickHouseConnection(host="ch.internal", port=9440))
    for p in written:
        assert secret not in p.read_text(), f"{p} contains the password"
    ds = provisioning.read_provisioning_file(tmp_path / "provisioning/datasources/stagewatch.yaml")["datasources"][0]
    assert ds["type"] == "grafana-clickhouse-datasource" and ds["uid"] == "stagewatch-clickhouse"
    assert ds["jsonData"]["username"] == "stagewatch_ro" and ds["jsonData"]["defaultDatabase"] == "stagewatch"
    assert ds["jsonData"]["host"] == "ch.internal" and ds["jsonData"]["port"] == 9440
    assert ds["secureJsonData"] == {"password": "${STAGEWATCH_CH_RO_PASSWORD}"}
    prov = provisioning.read_provisioning_file(tmp_path / "provisioning/dashboards/stagewatch.yaml")["providers"][0]
    assert prov["options"]["path"] == str((tmp_path / "dashboards").resolve()) and prov["type"] == "file"
    rules = provisioning.read_provisioning_file(tmp_path / "provisioning/alerting/stagewatch-rules.yaml")
    assert [r["uid"] for r in rules["groups"][0]["rules"]] == list(alerts.RULE_UIDS)
    try:
        import yaml  # the files are YAML too (JSON flow style); check when PyYAML happens to be installed
    except ImportError:
        return
    for p in written:
        if p.suffix == ".yaml":
            assert yaml.safe_load(p.read_text()) == provisioning.read_provisioning_file(p)


def test_cli_build_writes_files_and_takes_thresholds(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != provisioning.PASSWORD_ENV}
    res = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path), "--eviction-fraction", "0.25",
                                   "--cpu-efficiency-threshold", "40", "--stall-threshold-hours", "3",
                                   "--source-silence-minutes", "20"], env=env)
    assert res.exit_code == 0, res.output
    rules = provisioning.read_provisioning_file(tmp_path / "provisioning/alerting/stagewatch-rules.yaml")["groups"][0]
    params = {r["uid"]: r["data"][2]["model"]["conditions"][0]["evaluator"]["params"][0] for r in rules["rules"]}
    assert params[alerts.UID_EVICTION_STORM] == 0.25 and params[alerts.UID_CPU_EFFICIENCY] == 40
    assert params[alerts.UID_SOURCE_SILENT] == 20
    stalled = next(r for r in rules["rules"] if r["uid"] == alerts.UID_STALLED)["data"][0]["model"]["rawSql"]
    assert "> 10800.0" in stalled  # 3 h, in STATUS_SQL's stall rule
    overview = json.loads((tmp_path / "dashboards/stagewatch-overview.json").read_text())
    assert "> 10800.0" in overview["panels"][0]["targets"][0]["rawSql"]
