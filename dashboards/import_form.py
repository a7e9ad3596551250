"""The dashboards in Grafana's import form: `__inputs`, `__requires`, and `${DS_...}` for the data source.

Two ways a dashboard reaches Grafana, two forms of one JSON:

* Provisioning (`OUT/dashboards/*.json`, and `dashboards publish`): Grafana reads the file as it is and
  substitutes nothing, so every data source reference carries the real uid (`stagewatch-clickhouse` or
  `--datasource-uid`). A `${DS_...}` left in that form would be sent to the plugin as a uid and fail.
* Import through the UI (Dashboards > New > Import, `OUT/import/*.json`): Grafana reads `__inputs`, asks
  the user to pick a data source of the declared plugin for each, and replaces `${NAME}` in every string of
  the JSON with the picked data source's uid (pkg/services/dashboardimport/utils/dash_template_evaluator.go:
  regex `\\$\\{.+?\\}` over every string value, only declared names replaced, `__inputs` dropped).
  `__requires` lists Grafana, the ClickHouse plugin and the panel types, which the import page checks.

`import_form` derives the second from the first, so the two cannot drift; `evaluate_import` mirrors
Grafana's evaluator so the tests can prove that importing gives back the provisioned dashboard.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from dashboards.chquery import DATASOURCE_NAME, DATASOURCE_TYPE

DS_INPUT = "DS_STAGEWATCH_CLICKHOUSE"
"""The import input's name; the import form refers to the data source as `${DS_STAGEWATCH_CLICKHOUSE}`."""

GRAFANA_VERSION = "11.6.0"
"""The Grafana the dashboards are built for (grafana-foundation-sdk 11.6 build)."""

PLUGIN_VERSION = "4.0.0"
"""The oldest grafana-clickhouse-datasource whose raw-SQL query model (editorType, rawSql, format) they use."""

PANEL_NAMES = {"table": "Table", "stat": "Stat", "timeseries": "Time series", "bargauge": "Bar gauge",
               "barchart": "Bar chart", "state-timeline": "State timeline", "text": "Text",
               "piechart": "Pie chart", "gauge": "Gauge"}

_VAR = re.compile(r"(\$\{.+?\})")


def _replace_datasource(node: Any, uid: str, ref: str) -> Any:
    """Every data source reference {type: the plugin, uid} of the node with its uid replaced by `ref`."""
    if isinstance(node, dict):
        out = {k: _replace_datasource(v, uid, ref) for k, v in node.items()}
        if out.get("type") == DATASOURCE_TYPE and out.get("uid") == uid and set(out) <= {"type", "uid"}:
            out["uid"] = ref
        return out
    if isinstance(node, list):
        return [_replace_datasource(v, uid, ref) for v in node]
    return node


def panel_types(dashboard: dict[str, Any]) -> list[str]:
    types = set()
    for p in dashboard.get("panels", []):
        for sub in [p, *p.get("panels", [])]:
            if sub.get("type") and sub["type"] != "row":
                types.add(sub["type"])
    return sorted(types)


def import_form(dashboard: dict[str, Any], datasource_uid: str) -> dict[str, Any]:
    """The provisioned dashboard JSON (data source uid `datasource_uid`) as Grafana's import form."""
    body = _replace_datasource(copy.deepcopy(dashboard), datasource_uid, "${" + DS_INPUT + "}")
    body.pop("id", None)
    requires = [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
                {"type": "datasource", "id": DATASOURCE_TYPE, "name": "ClickHouse", "version": PLUGIN_VERSION}]
    requires += [{"type": "panel", "id": t, "name": PANEL_NAMES.get(t, t), "version": ""}
                 for t in panel_types(dashboard)]
    return {
        "__inputs": [{"name": DS_INPUT, "label": DATASOURCE_NAME, "type": "datasource",
                      "pluginId": DATASOURCE_TYPE, "pluginName": "ClickHouse",
                      "description": "The ClickHouse data source holding the stagewatch database (read-only user)."}],
        "__elements": {},
        "__requires": requires,
        "id": None,
        **body,
    }


def evaluate_import(template: Any, inputs: dict[str, str]) -> Any:
    """What Grafana's import does with the template and the user's choices (input name -> value)."""
    variables = {"${" + name + "}": value for name, value in inputs.items()}
    missing = [i["name"] for i in template.get("__inputs", []) if i["name"] not in inputs]
    if missing:
        raise ValueError(f"dashboard import failed: missing dashboard input variable {missing[0]}")

    def ev(node: Any) -> Any:
        if isinstance(node, str):
            return _VAR.sub(lambda m: variables.get(m.group(1), m.group(1)), node)
        if isinstance(node, dict):
            return {k: ev(v) for k, v in node.items() if k != "__inputs"}
        if isinstance(node, list):
            return [ev(v) for v in node]
        return node

    return ev(template)


__all__ = ["DS_INPUT", "import_form", "evaluate_import", "panel_types"]
