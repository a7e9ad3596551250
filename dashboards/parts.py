"""Pieces every dashboard module shares: build options, the query and table builders, variable expressions.

Split from dashboards/build.py so the operator panels (dashboards/operator_panels.py) and the four
dashboards use one definition of each without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.chquery import DATASOURCE_UID, ClickHouseQueryBuilder
from processors.forecast import DEFAULT_RATE_WINDOW_H
from processors.numbers import FORECAST_NUMBERS, NUMBERS_BY_NAME, RESTART_CAUSES, SITE_NUMBERS, STALL_THRESHOLD_S

DEFINED = {**NUMBERS_BY_NAME, **{n.name: n for n in FORECAST_NUMBERS}, **{n.name: n for n in SITE_NUMBERS}}
"""Every glossary entry by name: the stage numbers, the forecast and the per-site numbers."""


def variable_value(name: str) -> str:
    """A single-valued dashboard variable as a SQL string expression that no value can break out of.

    Grafana's quoting formats do not escape backslashes (`singlequote` turns `a\\` into `'a\\'`, an
    unterminated literal in ClickHouse, and `a\\'` into SQL that ends the string early), and the plugin
    expands its `$__` macros in the interpolated text, inside literals too. `percentencode` leaves only
    `A-Z a-z 0-9 - _ . ~ %` in the SQL, whatever the name; ClickHouse (18.16 too) decodes it back.
    """
    return f"decodeURLComponent('${{{name}:percentencode}}')"


def variable_contains(name: str, column: str) -> str:
    """Whether `column` is one of a multi-valued variable's selected values, safe for any value.

    Grafana percent-encodes a multi-value as `{a,b}` joined first, so the decoded text is split back on
    commas by position: exact for every name without a comma, and a selected name containing commas still
    matches itself. A single (string) value compares as it is.
    """
    d = variable_value(name)
    return (f"({d} = {column} OR position(concat(',', substring({d}, 2, length({d}) - 2), ','), "
            f"concat(',', {column}, ',')) > 0)")


OVERVIEW_WHERE = f"$__conditionalAll({variable_contains('campaign', 'campaign')}, $campaign)"
"""All campaigns, or the selected ones (the plugin drops the condition when "All" is selected)."""
STAGE_WHERE = f"campaign = {variable_value('campaign')} AND stage = {variable_value('stage')}"
JOB_ID = variable_value("job_id")

UNITS = {"completion_pct": "percent", "cpu_efficiency_pct": "percent", "badput_core_hours": "none"}


@dataclass(frozen=True)
class BuildOptions:
    """What a deployment may change; everything else is fixed so uids and JSON stay stable."""

    datasource_uid: str = DATASOURCE_UID
    stall_threshold_s: float = STALL_THRESHOLD_S
    rate_window_h: float = DEFAULT_RATE_WINDOW_H  # the forecast's window (located/h, ETA)


# --------------------------------------------------------------------------------------------------
# small helpers


def _query(sql: str, ref_id: str = "A", *, time_series: bool = False,
           opts: BuildOptions = BuildOptions()) -> ClickHouseQueryBuilder:
    q = ClickHouseQueryBuilder().sql(sql.strip() + "\n").ref_id(ref_id).datasource_uid(opts.datasource_uid)
    return q.time_series() if time_series else q.table()


def _table() -> table.Panel:
    """A table panel with its field defaults spelled out (as the SDK fills them when loading JSON back)."""
    return table.Panel().align(cm.FieldTextAlignment.AUTO).inspect(False)


def _prop(id_: str, value: Any) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=id_, value=value)


def number_column(column: str) -> tuple[str, str]:
    """(display name, description) of a STATUS_SQL (or forecast, or per-site) column, from the glossary."""
    if column.startswith("restarts_") and column[len("restarts_"):] in RESTART_CAUSES:
        cause = column[len("restarts_"):]
        return f"Restarts: {cause}", NUMBERS_BY_NAME["restarts_by_cause"].definition
    n = DEFINED[column]
    return n.short, n.definition


def _number_overrides(panel: Any, columns: list[str]) -> Any:
    for col in columns:
        if col in ("campaign", "stage"):
            continue
        short, definition = number_column(col)
        props = [_prop("displayName", short), _prop("description", definition)]
        if col in UNITS:
            props.append(_prop("unit", UNITS[col]))
        panel = panel.override_by_name(col, props)
    return panel
