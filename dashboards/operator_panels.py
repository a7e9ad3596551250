"""The panels an operator reads first: headline stats with thresholds, jobs by state over time, hold
reasons, per-site restarts and badput, and the forecast (located/h, ETA) per stage.

Holds, sites and the forecast are INSIGHT's definitions in schemas/queries.py (HOLDS_SQL, HELD_JOBS_SQL,
SITES_SQL, FORECAST_SQL, the SQL of `stagewatch holds`, `jobs --state held`, `sites` and the status
forecast) used unchanged as subqueries: the outer SELECT only picks columns, orders rows and turns Unix
seconds into milliseconds for Grafana's time units.

Thresholds are defined once here (`THRESHOLDS`) and used by the Grafana stat panels and by the HTML
report's tiles (`color_for`), so a red number is red in both. They colour, they do not redefine: every
value is a column of STATUS_SQL, or its sum over the selected stages.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import queries as dq
from dashboards.chquery import datasource_ref
from dashboards.parts import OVERVIEW_WHERE, STAGE_WHERE, BuildOptions, _prop, _query, _table, number_column
from dashboards.states_over_time import OVER_TIME_STATES, grafana_jobs_by_state_sql
from processors.forecast import window_seconds
from processors.numbers import NUMBERS_BY_NAME, RESTART_CAUSES
from schemas import queries as sq

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


# --- holds ----------------------------------------------------------------------------------------

HOLD_REASONS_LIMIT = 10
HELD_JOBS_LIMIT = 200


def hold_reasons_sql(where: str, *, with_stage: bool) -> str:
    """HOLDS_SQL (`stagewatch holds`): the top hold reasons per stage, held since as Grafana milliseconds."""
    stage_cols = "campaign, stage, " if with_stage else ""
    return (f"SELECT {stage_cols}hold_reason, hold_code, hold_subcode, jobs_held, held_since_ts * 1000 AS held_since\n"
            f"FROM ({sq.HOLDS_SQL.format(where=where, limit=HOLD_REASONS_LIMIT).strip()}) AS holds\n"
            "ORDER BY campaign, stage, jobs_held DESC, hold_reason, hold_code, hold_subcode")


def held_jobs_sql(where: str) -> str:
    """HELD_JOBS_SQL (`jobs --state held`): held jobs, longest held first, held since in milliseconds."""
    return (f"SELECT job_id, hold_reason, hold_code, hold_subcode, held_ts * 1000 AS held_since, site, host, "
            f"attempts, restarts\nFROM ({sq.HELD_JOBS_SQL.format(where=where, limit=HELD_JOBS_LIMIT).strip()}) AS held"
            "\nORDER BY held_since, job_id")


def _hold_columns(panel: Any) -> Any:
    return (panel.override_by_name("hold_reason", [_prop("displayName", "Hold reason"), _prop(
                "description", "HTCondor's HoldReason of the job's current hold (its latest `held` event).")])
            .override_by_name("hold_code", [_prop("displayName", "Code"), _prop(
                "description", "HTCondor's HoldReasonCode, when the event carried it.")])
            .override_by_name("hold_subcode", [_prop("displayName", "Subcode"), _prop(
                "description", "HTCondor's HoldReasonSubCode, when the event carried it.")])
            .override_by_name("held_since", [_prop("displayName", "Held since"), _prop("unit", "dateTimeAsIso"),
                                             _prop("description", "When the (oldest) current hold began.")]))


def hold_reasons_panel(pid: int, opts: BuildOptions, *, overview: bool) -> table.Panel:
    where = OVERVIEW_WHERE if overview else STAGE_WHERE
    p = (_table().id(pid).title("Hold reasons").datasource(datasource_ref(opts.datasource_uid))
         .description(f"Held jobs grouped by their current hold (reason, HTCondor code and subcode), most jobs first, "
                      f"at most {HOLD_REASONS_LIMIT} per stage: the SQL of `stagewatch holds`.")
         .with_target(_query(hold_reasons_sql(where, with_stage=overview), opts=opts))
         .override_by_name("jobs_held", [_prop("displayName", "Held jobs"),
                                         _prop("description", NUMBERS_BY_NAME["jobs_held"].definition)])
         .height(8).span(12))
    return _hold_columns(p)


def held_jobs_panel(pid: int, opts: BuildOptions, job_link: dict[str, Any]) -> table.Panel:
    p = (_table().id(pid).title("Held jobs").datasource(datasource_ref(opts.datasource_uid))
         .description(f"The stage's held jobs with their hold, longest held first (at most {HELD_JOBS_LIMIT}): "
                      "the SQL of `stagewatch jobs --state held`. Click a job for its attempts and events.")
         .with_target(_query(held_jobs_sql(STAGE_WHERE), opts=opts))
         .override_by_name("job_id", [_prop("links", [job_link])])
         .height(8).span(12))
    return _hold_columns(p)


# --- sites ----------------------------------------------------------------------------------------

SITE_COLUMNS = ("site", "attempts", "restarts", *(f"restarts_{c}" for c in RESTART_CAUSES), "badput_core_hours",
                "cpu_efficiency_pct", "jobs_held")
SITE_DEFINITIONS = {"site": "site", "attempts": "attempts", "restarts": "site_restarts",
                    "badput_core_hours": "site_badput_core_hours", "cpu_efficiency_pct": "site_cpu_efficiency_pct",
                    "jobs_held": "site_jobs_held"}


def sites_sql(where: str, *, with_stage: bool) -> str:
    """SITES_SQL (`stagewatch sites`): per execution site of each stage, most badput first."""
    cols = ("campaign", "stage", *SITE_COLUMNS) if with_stage else SITE_COLUMNS
    return (f"SELECT {', '.join(cols)}\nFROM ({sq.SITES_SQL.format(where=where).strip()}) AS sites\n"
            "ORDER BY badput_core_ms DESC, restarts DESC, campaign, stage, site")


def _site_overrides(panel: Any, columns: tuple[str, ...]) -> Any:
    for col in columns:
        if col in SITE_DEFINITIONS:
            short, definition = number_column(SITE_DEFINITIONS[col])
        elif col.startswith("restarts_"):
            short, definition = number_column(col)
        else:
            continue
        panel = panel.override_by_name(col, [_prop("displayName", short), _prop("description", definition)])
    return panel


def sites_panel(pid: int, opts: BuildOptions, *, overview: bool) -> table.Panel:
    where = OVERVIEW_WHERE if overview else STAGE_WHERE
    p = (_table().id(pid).title("Sites").datasource(datasource_ref(opts.datasource_uid))
         .description("Per execution site: attempts, restarts by cause and badput belong to the site of the attempt "
                      "they interrupted; most badput first. The sites of a stage add up to its numbers. The SQL of "
                      "`stagewatch sites`.")
         .with_target(_query(sites_sql(where, with_stage=overview), opts=opts))
         .height(9).span(24 if overview else 12))
    return _site_overrides(p, SITE_COLUMNS)


def site_restarts_panel(pid: int, opts: BuildOptions) -> barchart.Panel:
    cols = ("site", *(f"restarts_{c}" for c in RESTART_CAUSES))
    p = (barchart.Panel().id(pid).title("Restarts by cause per site").datasource(datasource_ref(opts.datasource_uid))
         .description("Each site's restarts (the attempts it ran that were interrupted), stacked by cause. "
                      + NUMBERS_BY_NAME["restarts_by_cause"].definition)
         .with_target(_query(sites_sql(STAGE_WHERE, with_stage=False), opts=opts))
         .x_field("site").stacking(cm.StackingMode.NORMAL).orientation(cm.VizOrientation.HORIZONTAL)
         .show_value(cm.VisibilityMode.AUTO).fill_opacity(80).gradient_mode(cm.GraphGradientMode.NONE).line_width(1)
         .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
             "excludeByName": {c: True for c in SITE_COLUMNS if c not in cols}, "indexByName": {}, "renameByName": {}}))
         .height(9).span(12))
    return _site_overrides(p, cols)


# --- forecast -------------------------------------------------------------------------------------


def forecast_sql(where: str, opts: BuildOptions) -> str:
    """FORECAST_SQL (the status forecast) at the panel's now(), ETA in milliseconds."""
    w = window_seconds(opts.rate_window_h)
    inner = sq.FORECAST_SQL.format(where=where, as_of=dq.GRAFANA_AS_OF, window_s=w, window_2s=2 * w).strip()
    return (f"SELECT campaign, stage, remaining AS files_without_located_output, located_rate_per_h, "
            f"eta * 1000 AS eta\nFROM ({inner}) AS forecast\nORDER BY campaign, stage")


def _forecast_overrides(panel: Any) -> Any:
    for col in ("files_without_located_output", "located_rate_per_h"):
        short, definition = number_column(col)
        panel = panel.override_by_name(col, [_prop("displayName", short), _prop("description", definition)])
    short, definition = number_column("eta")
    return panel.override_by_name("eta", [_prop("displayName", short), _prop("description", definition),
                                          _prop("unit", "dateTimeFromNow")])


def forecast_table(pid: int, opts: BuildOptions) -> table.Panel:
    p = (_table().id(pid).title("Forecast").datasource(datasource_ref(opts.datasource_uid))
         .description(f"Per stage: input files located per hour over the last {opts.rate_window_h:g} h and when the "
                      "files without a located output would all be located at that rate (empty: rate 0 or "
                      "nothing left). The forecast of `stagewatch status`.")
         .with_target(_query(forecast_sql(OVERVIEW_WHERE, opts), opts=opts))
         .height(8).span(24))
    return _forecast_overrides(p)


def forecast_stat(pid: int, opts: BuildOptions) -> stat.Panel:
    p = (stat.Panel().id(pid).title("Forecast").datasource(datasource_ref(opts.datasource_uid))
         .description(f"Input files located per hour over the last {opts.rate_window_h:g} h, and when the rest "
                      "would be located at that rate (no value: rate 0 or nothing left).")
         .with_target(_query(forecast_sql(STAGE_WHERE, opts), opts=opts))
         .reduce_options(cb.ReduceDataOptions().values(False).calcs(["lastNotNull"])
                         .fields("/^(located_rate_per_h|eta)$/"))
         .color_mode(cm.BigValueColorMode.NONE).graph_mode(cm.BigValueGraphMode.NONE)
         .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).no_value("–")
         .height(4).span(24))
    return _forecast_overrides(p)


__all__ = ["THRESHOLDS", "color_for", "thresholds_config", "with_thresholds", "overview_stats", "overview_stats_sql",
           "jobs_by_state_panel", "OVERVIEW_STATS", "CPU_EFFICIENCY_RED_BELOW", "hold_reasons_panel", "held_jobs_panel",
           "hold_reasons_sql", "held_jobs_sql", "sites_panel", "site_restarts_panel", "sites_sql", "forecast_sql",
           "forecast_table", "forecast_stat"]
