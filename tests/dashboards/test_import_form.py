"""Both forms of the dashboards: provisioning (the data source uid written out, nothing for Grafana to
substitute) and the UI import form (`__inputs` declares the data source, `__requires` the plugin and panels).
Importing the import form the way Grafana does (dashboards.import_form.evaluate_import mirrors
pkg/services/dashboardimport/utils/dash_template_evaluator.go) gives back exactly the provisioned dashboard
for the data source the user picked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from dashboards import build, provisioning
from dashboards.chquery import DATASOURCE_TYPE
from dashboards.import_form import DS_INPUT, evaluate_import, import_form, panel_types


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "datasource" in node and isinstance(node["datasource"], dict):
            yield node["datasource"]
        for v in node.values():
            yield from _datasource_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _datasource_refs(v)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    provisioning.write(out, build_opts=build.BuildOptions(datasource_uid="ch-prod"))
    return out


def test_provisioned_form_has_no_unresolved_inputs(built: Path) -> None:
    files = sorted((built / "dashboards").glob("*.json"))
    assert [f.stem for f in files] == sorted(build.DASHBOARD_UIDS)
    for f in files:
        text = f.read_text()
        assert "${DS_" not in text and "__inputs" not in text, f.name
        refs = list(_datasource_refs(json.loads(text)))
        assert len(refs) >= 3 and all(r == {"type": DATASOURCE_TYPE, "uid": "ch-prod"} for r in refs), f.name
    # the provider loads only the provisioned form: the import form lives elsewhere
    prov = provisioning.read_provisioning_file(built / "provisioning/dashboards/stagewatch.yaml")["providers"][0]
    assert Path(prov["options"]["path"]) == (built / "dashboards").resolve()
    assert not list((built / "dashboards").rglob("*import*"))


def test_import_form_declares_its_input_and_requirements(built: Path) -> None:
    for uid in build.DASHBOARD_UIDS:
        text = (built / "import" / f"{uid}.json").read_text()
        data = json.loads(text)
        assert data["__inputs"] == [{"name": DS_INPUT, "label": "stagewatch ClickHouse", "type": "datasource",
                                     "pluginId": DATASOURCE_TYPE, "pluginName": "ClickHouse",
                                     "description": data["__inputs"][0]["description"]}]
        assert "ch-prod" not in text  # no reference escapes the input
        refs = list(_datasource_refs(data))
        assert refs and all(r == {"type": DATASOURCE_TYPE, "uid": "${" + DS_INPUT + "}"} for r in refs), uid
        req = {(r["type"], r["id"]) for r in data["__requires"]}
        assert {("grafana", "grafana"), ("datasource", DATASOURCE_TYPE)} <= req
        assert {t for k, t in req if k == "panel"} == set(panel_types(data)) != set()
        assert data["id"] is None and data["uid"] == uid


def test_importing_gives_back_the_provisioned_dashboard(built: Path) -> None:
    """Whatever data source the user picks, the imported dashboard is the one built for that uid, and it
    loads back through the SDK's models."""
    for picked in ("ch-prod", "P8E80F9AEF21F6940"):
        expected = {uid: build.to_json(d) for uid, d in
                    build.all_dashboards(build.BuildOptions(datasource_uid=picked)).items()}
        for uid in build.DASHBOARD_UIDS:
            template = json.loads((built / "import" / f"{uid}.json").read_text())
            got = evaluate_import(template, {DS_INPUT: picked})
            for key in ("__requires", "__elements", "id"):
                got.pop(key)
            assert got == {k: v for k, v in expected[uid].items() if k != "id"}, (uid, picked)
            assert build.load_dashboard(got).uid == uid


def test_import_without_the_input_fails_like_grafana() -> None:
    template = import_form(build.to_json(build.overview()), build.BuildOptions().datasource_uid)
    with pytest.raises(ValueError, match=f"missing dashboard input variable {DS_INPUT}"):
        evaluate_import(template, {})


def test_import_leaves_dashboard_variables_alone() -> None:
    """Grafana's import replaces only declared inputs: ${campaign:percentencode} in the SQL stays for the
    dashboard to fill at query time."""
    template = import_form(build.to_json(build.stage()), "x")
    got = json.dumps(evaluate_import(template, {DS_INPUT: "y"}))
    assert "${campaign:percentencode}" in got and "${stage:percentencode}" in got and "${DS_" not in got
