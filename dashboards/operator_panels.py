"""The panels an operator reads first: headline stats with thresholds and jobs by state over time.

Thresholds are defined once here (`THRESHOLDS`) and used by the Grafana stat panels and by the HTML
report's tiles (`color_for`), so a red number is red in both. They colour, they do not redefine: every
value is a column of STATUS_SQL, or its sum over the selected stages.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import queries as dq
from dashboards.chquery import datasource_ref
from dashboards.parts import OVERVIEW_WHERE, STAGE_WHERE, BuildOptions, _prop, _query, number_column
from dashboards.states_over_time import OVER_TIME_STATES, grafana_jobs_by_state_sql
from processors.numbers import NUMBERS_BY_NAME

CPU_EFFICIENCY_RED_BELOW = 50.0
"""Below this a stage's CPU efficiency is red: the default of the low-CPU-efficiency alert rule."""

THRESHOLDS: dict[str, list[tuple[float | None, str]]] = {
    # (from value, colour): the first step has no lower bound (None), as in Grafana.
    "stalled": [(None, "green"), (1, "red")],
    "stalled_stages": [(None, "green"), (1, "red")],
    "files_without_located_output": [(None, "green"), (1, "orange")],
    "jobs_held": [(None, "green"), (1, "orange")],
    "cpu_efficiency_pct": [(None, "red"), (CPU_EFFICIENCY_RED_BELOW, "orange"), (75, "green")],
    "completion_pct": [(None, "blue"), (100, "green")],
}

STATE_COLORS = {"idle": "yellow", "running": "green", "held": "red", "suspended": "purple"}


def color_for(name: str, value: float | None) -> str | None:
    """The threshold colour of a value (as Grafana picks it: the last step whose bound is <= value)."""
    steps = THRESHOLDS.get(name)
    if steps is None or value is None:
        return None
    color = steps[0][1]
    for bound, c in steps[1:]:
        if bound is not None and value >= bound:
            color = c
    return color


def thresholds_config(name: str) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in THRESHOLDS[name]]}


def with_thresholds(panel: Any, columns: list[str] | tuple[str, ...]) -> Any:
    """Per-field overrides: each column with thresholds is coloured by them."""
    for col in columns:
        if col in THRESHOLDS:
            panel = panel.override_by_name(col, [_prop("thresholds", thresholds_config(col)),
                                                 _prop("color", {"mode": "thresholds"})])
    return panel


# --- overview: headline stats ---------------------------------------------------------------------

OVERVIEW_STATS = ("stalled_stages", "files_without_located_output", "jobs_idle", "jobs_running", "jobs_held",
                  "restarts")

STALLED_STAGES_DESCRIPTION = ("Stages of the selected campaigns that are stalled. "
                              + NUMBERS_BY_NAME["stalled"].definition)


def overview_stats_sql(opts: BuildOptions) -> str:
    """Sums of STATUS_SQL's columns over the selected stages (stalled counted as 0/1)."""
    cols = ",\n       ".join(f"sum({'stalled' if c == 'stalled_stages' else c}) AS {c}" for c in OVERVIEW_STATS)
    return (f"SELECT {cols}\nFROM ({dq.status_sql(OVERVIEW_WHERE, dq.GRAFANA_AS_OF, opts.stall_threshold_s)})"
            " AS status")


def overview_stats(pid: int, opts: BuildOptions) -> stat.Panel:
    p = (stat.Panel().id(pid).title("Right now").datasource(datasource_ref(opts.datasource_uid))
         .description("Totals over the selected campaigns' stages, from the same SQL as the table below. "
                      "Red: a stage is stalled; orange: files without a located output or held jobs to look at.")
         .with_target(_query(overview_stats_sql(opts), opts=opts))
         .reduce_options(cb.ReduceDataOptions().values(False).calcs(["lastNotNull"]).fields(""))
         .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
         .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
         .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue"))
         .height(4).span(24))
    for col in OVERVIEW_STATS:
        if col == "stalled_stages":
            props = [_prop("displayName", "Stalled stages"), _prop("description", STALLED_STAGES_DESCRIPTION)]
        else:
            short, definition = number_column(col)
            props = [_prop("displayName", short),
                     _prop("description", definition + " Summed over the selected stages.")]
        p = p.override_by_name(col, props)
    return with_thresholds(p, OVERVIEW_STATS)


# --- stage: jobs by state over time ---------------------------------------------------------------


def jobs_by_state_panel(pid: int, opts: BuildOptions) -> timeseries.Panel:
    p = (timeseries.Panel().id(pid).title("Jobs by state over time").datasource(datasource_ref(opts.datasource_uid))
         .description("How many of the stage's jobs were idle, running and held at each moment: the state after "
                      "each job's latest event up to that moment, the same numbers `stagewatch history` prints. "
                      "Steps are the panel's interval.")
         .with_target(_query(grafana_jobs_by_state_sql(STAGE_WHERE), time_series=True, opts=opts))
         .line_width(2).fill_opacity(10).line_interpolation(cm.LineInterpolation.STEP_AFTER)
         .axis_label("jobs").min(0).decimals(0)
         .height(8).span(24))
    for s in OVER_TIME_STATES:
        col = f"jobs_{s}"
        short, definition = number_column(col)
        p = p.override_by_name(col, [_prop("displayName", short), _prop("description", definition),
                                     _prop("color", {"mode": "fixed", "fixedColor": STATE_COLORS[s]})])
    return p


__all__ = ["THRESHOLDS", "color_for", "thresholds_config", "with_thresholds", "overview_stats", "overview_stats_sql",
           "jobs_by_state_panel", "OVERVIEW_STATS", "CPU_EFFICIENCY_RED_BELOW"]
