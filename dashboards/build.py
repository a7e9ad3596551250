"""The four stagewatch dashboards, built with grafana-foundation-sdk.

Campaign overview -> Stage -> Job, plus Pipeline health. Every panel's SQL is one of the shared
templates (schemas/queries.py for the headline numbers and their drill-down lists, dashboards/queries.py
for time windows, histograms and pipeline health) with Grafana variables filling `{where}`, so a
number on a dashboard is, by construction, the number `stagewatch status` prints.

Every column that shows a number carries its glossary definition (processors.numbers.NUMBERS) as its
field description and its short header as display name, so the glossary travels with the data.
Dashboard and panel ids/uids are fixed constants: building twice gives identical JSON, and publishing
updates dashboards in place instead of duplicating them.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from grafana_foundation_sdk.builders import barchart, bargauge, stat, statetimeline, text, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.text import TextMode

from dashboards import queries as dq
from dashboards.chquery import datasource_ref
from dashboards.operator_panels import (forecast_stat, forecast_table, held_jobs_panel, hold_reasons_panel,
                                        jobs_by_state_panel, overview_stats, site_restarts_panel, sites_panel,
                                        with_thresholds)
from dashboards.parts import (JOB_ID, OVERVIEW_WHERE, STAGE_WHERE, BuildOptions, _number_overrides, _prop,
                              _query, _table, number_column, variable_contains, variable_value)
from processors.numbers import FILE_BUCKETS, GLOSSARY_URL, JOB_STATES, NUMBERS_BY_NAME, RESTART_CAUSES
from schemas import queries as sq

UID_OVERVIEW = "stagewatch-overview"
UID_STAGE = "stagewatch-stage"
UID_JOB = "stagewatch-job"
UID_HEALTH = "stagewatch-pipeline-health"
DASHBOARD_UIDS = (UID_OVERVIEW, UID_STAGE, UID_JOB, UID_HEALTH)
TAGS = ["stagewatch"]



# The overview table: files first, then jobs (the order), then the stall flag.
OVERVIEW_COLUMNS = (
    "campaign", "stage",
    "input_files", "files_located", "files_without_located_output", "completion_pct",
    "files_in_flight", "files_failed", "files_pending",
    "jobs_idle", "jobs_running", "jobs_held", "jobs_completed_ok", "jobs_completed_failed", "jobs_removed",
    "restarts", "cpu_efficiency_pct", "stalled",
)


def _stage_link(title: str = "Open the stage view") -> dict[str, Any]:
    return {"title": title, "url": f"/d/{UID_STAGE}/stage?var-campaign=${{__data.fields.campaign:percentencode}}"
                                   f"&var-stage=${{__value.raw:percentencode}}&${{__url_time_range}}"}


def _job_link() -> dict[str, Any]:
    return {"title": "Open the job view", "url": f"/d/{UID_JOB}/job?var-campaign=${{campaign:percentencode}}"
                                                 f"&var-stage=${{stage:percentencode}}"
                                                 f"&var-job_id=${{__value.raw:percentencode}}&${{__url_time_range}}"}


def _stalled_mappings() -> list[Any]:
    return [dm.ValueMap(options={
        "1": dm.ValueMappingResult(text="STALLED", color="red", index=0),
        "0": dm.ValueMappingResult(text="no", color="transparent", index=1),
    })]


def _ch_variable(name: str, label: str, sql: str, *, multi: bool, opts: BuildOptions) -> db.QueryVariable:
    v = (db.QueryVariable(name).label(label)
         # The plugin's variable query model (CHVariableQuery: refId, queryType "sql", rawSql); editorType and
         # format also let older plugin versions, which ran it as a CHQuery, read it.
         .query({"refId": f"var-{name}", "queryType": "sql", "editorType": "sql", "format": 1,
                 "rawSql": sql.strip()})
         .datasource(datasource_ref(opts.datasource_uid))
         .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
         .sort(dm.VariableSort.ALPHABETICAL_ASC))
    if multi:
        v = v.multi(True).include_all(True).current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    return v


CAMPAIGN_VARIABLE_SQL = "SELECT DISTINCT campaign FROM stage_numbers FINAL ORDER BY campaign"
STAGE_VARIABLE_SQL = ("SELECT DISTINCT stage FROM stage_numbers FINAL WHERE campaign = "
                      f"{variable_value('campaign')} ORDER BY stage")


def _base(uid: str, title: str, description: str) -> db.Dashboard:
    return (db.Dashboard(title).uid(uid).description(description).tags(TAGS)
            .time("now-7d", "now").refresh("1m").timezone("utc").editable()
            .link(db.DashboardLink("stagewatch").type(dm.DashboardLinkType.DASHBOARDS).tags(TAGS).as_dropdown(True)
                  .include_vars(True).keep_time(True)))


def _reduce_all_fields() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().values(False).calcs(["lastNotNull"]).fields("")


# --------------------------------------------------------------------------------------------------
# Campaign overview


def overview(opts: BuildOptions = BuildOptions()) -> dm.Dashboard:
    """One row per stage, files first, stalled stages highlighted; stage names open the stage view."""
    sql = dq.status_sql(OVERVIEW_WHERE, dq.GRAFANA_AS_OF, opts.stall_threshold_s)
    hidden = [c for c in _status_columns() if c not in OVERVIEW_COLUMNS]
    organize = dm.DataTransformerConfig(id_val="organize", options={
        "excludeByName": {c: True for c in hidden},
        "indexByName": {c: i for i, c in enumerate(OVERVIEW_COLUMNS)},
        "renameByName": {},
    })
    t = (_table().id(1).title("Stages").description(
        "Every stage of the selected campaigns: input files and their buckets first (the real measure of a "
        f"stage), then jobs. Hover a column header for its definition ({GLOSSARY_URL}). A stage is highlighted "
        f"when it is stalled (no progress for {opts.stall_threshold_s / 3600:g} h with work left). Click a stage "
        "name for its stage view.")
         .datasource(datasource_ref(opts.datasource_uid))
         .with_target(_query(sql, opts=opts))
         .with_transformation(organize)
         .height(14).span(24)
         .show_header(True)
         .sort_by([cb.TableSortByFieldState().display_name("campaign")]))
    t = _number_overrides(t, [c for c in OVERVIEW_COLUMNS])
    t = t.override_by_name("stage", [
        _prop("links", [_stage_link()]),
        _prop("description", "The stage (click for its stage view)."),
    ]).override_by_name("campaign", [_prop("description", "The campaign.")])
    t = t.override_by_name("stalled", [
        _prop("mappings", _stalled_mappings()),
        _prop("custom.cellOptions", {"type": "color-background", "applyToRow": True, "mode": "basic"}),
    ])
    help_text = (text.Panel().id(2).title("How to read this").height(4).span(24).mode(TextMode.MARKDOWN).content(
        "Numbers are defined once, in the glossary (`stagewatch glossary`, docs/glossary.md): the same SQL "
        "feeds `stagewatch status`, these panels, the alert rules and `stagewatch report`. "
        "Input files are counted once each, in the first bucket whose rule applies; jobs count once however "
        "often they restart."))
    d = (_base(UID_OVERVIEW, "stagewatch / Campaign overview",
               "The 30,000 ft view: every stage in files and in jobs.")
         .with_variable(_ch_variable("campaign", "Campaign", CAMPAIGN_VARIABLE_SQL, multi=True, opts=opts))
         .with_panel(overview_stats(3, opts)).with_panel(t).with_panel(forecast_table(4, opts))
         .with_panel(hold_reasons_panel(5, opts, overview=True).span(24)).with_panel(sites_panel(6, opts, overview=True))
         .with_panel(help_text))
    return d.build()


def _status_columns() -> list[str]:
    """The column names STATUS_SQL returns, in order (parsed from its SELECT list)."""
    body = sq.STATUS_SQL.split("SELECT", 1)[1].split("FROM stage_numbers", 1)[0]
    cols = []
    depth = 0
    cur = ""
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            cols.append(cur)
            cur = ""
        else:
            cur += ch
    cols.append(cur)
    names = []
    for c in cols:
        c = " ".join(c.split())
        names.append(c.rsplit(" AS ", 1)[1] if " AS " in c else c)
    return names


# --------------------------------------------------------------------------------------------------
# Stage


STAGE_HEADLINE = ("input_files", "files_located", "files_without_located_output", "completion_pct",
                  "jobs", "restarts", "cpu_efficiency_pct", "badput_core_hours", "stalled")


def stage(opts: BuildOptions = BuildOptions()) -> dm.Dashboard:
    """One stage: its numbers, file buckets, jobs, restarts, efficiency, progress, and drill-down lists."""
    w = STAGE_WHERE
    ds = datasource_ref(opts.datasource_uid)

    def status_cols(cols: tuple[str, ...] | list[str]) -> str:
        return dq.from_status(cols, w, dq.GRAFANA_AS_OF, opts.stall_threshold_s)

    headline = (stat.Panel().id(1).title("Stage numbers").datasource(ds)
                .with_target(_query(status_cols(STAGE_HEADLINE), opts=opts))
                .reduce_options(_reduce_all_fields()).height(5).span(24)
                .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
                .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
                .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("blue")))
    headline = _number_overrides(headline, list(STAGE_HEADLINE))
    headline = headline.override_by_name("stalled", [_prop("mappings", _stalled_mappings())])
    headline = with_thresholds(headline, STAGE_HEADLINE)

    def gauge(pid: int, title: str, cols: tuple[str, ...], description: str) -> Any:
        p = (bargauge.Panel().id(pid).title(title).description(description).datasource(ds)
             .with_target(_query(status_cols(cols), opts=opts))
             .reduce_options(_reduce_all_fields()).orientation(cm.VizOrientation.HORIZONTAL)
             .display_mode(cm.BarGaugeDisplayMode.BASIC).show_unfilled(True).min(0)
             .height(8).span(8))
        return _number_overrides(p, list(cols))

    buckets = gauge(2, "Input files by bucket", FILE_BUCKETS,
                    "Each input file is in exactly one bucket (the first whose rule applies); the six add up "
                    "to input_files.")
    states = gauge(3, "Jobs by state", tuple(f"jobs_{s}" for s in JOB_STATES),
                   "Each job is in exactly one state (from its latest event); the six add up to jobs.")
    causes = gauge(4, "Restarts by cause", tuple(f"restarts_{c}" for c in RESTART_CAUSES),
                   NUMBERS_BY_NAME["restarts_by_cause"].definition)

    progress = (timeseries.Panel().id(5).title("Files located and jobs completed per hour").datasource(ds)
                .description("Input files by the hour they became located (their first output located), and jobs "
                             "by the hour they completed. Over the whole history they add up to files_located "
                             "and jobs_completed.")
                .with_target(_query(dq.files_located_per_hour_sql(w), "A", time_series=True, opts=opts))
                .with_target(_query(dq.jobs_completed_per_hour_sql(w), "B", time_series=True, opts=opts))
                .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60).height(8).span(12))
    restarts = (timeseries.Panel().id(6).title("Restarts per hour").datasource(ds)
                .description("Restarts (a `started` that is not the job's first) by the hour they started. "
                             "Over the whole history they add up to restarts.")
                .with_target(_query(dq.restarts_per_hour_sql(w), time_series=True, opts=opts))
                .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60).height(8).span(12))

    cpu_hist = (barchart.Panel().id(7).title("CPU efficiency of completed jobs").datasource(ds)
                .description("Completed jobs by their own CPU efficiency (cpu_efficiency_pct per job), in 10 % "
                             "buckets. The stage's CPU efficiency above is over all their CPU and wall time. "
                             + NUMBERS_BY_NAME["cpu_efficiency_pct"].definition)
                .with_target(_query(dq.CPU_EFFICIENCY_HISTOGRAM_SQL.format(where=w), opts=opts))
                .x_field("cpu_efficiency").show_value(cm.VisibilityMode.AUTO).height(8).span(12))
    exits = (barchart.Panel().id(8).title("Exit codes of completed jobs").datasource(ds)
             .description("Completed jobs by how their final `terminated` ended (a signal wins over an exit "
                          "code). They add up to jobs_completed; `exit 0` is jobs_completed_ok.")
             .with_target(_query(dq.EXIT_CODES_SQL.format(where=w), opts=opts))
             .x_field("exit").orientation(cm.VizOrientation.HORIZONTAL).show_value(cm.VisibilityMode.AUTO)
             .height(8).span(12))

    missing = (_table().id(9).title("Input files without a located output").datasource(ds)
               .description(NUMBERS_BY_NAME["files_without_located_output"].definition
                            + " Same SQL as `stagewatch missing-files`.")
               .with_target(_query(sq.FILES_SQL.format(where=w, bucket_filter=sq.MISSING_FILES_FILTER), opts=opts))
               .height(10).span(24))
    top_restarts = (_table().id(10).title("Jobs with most restarts").datasource(ds)
                    .description("The jobs of the stage with the most restarts (same SQL as `stagewatch jobs "
                                 "--state restarted`). Click a job for its attempts and events.")
                    .with_target(_query(sq.JOBS_SQL.format(where=w, job_filter=sq.JOB_STATE_FILTERS["restarted"],
                                                           order="restarts DESC, job_id", limit=50), opts=opts))
                    .override_by_name("job_id", [_prop("links", [_job_link()])])
                    .height(10).span(12))
    top_badput = (_table().id(11).title("Jobs with most badput").datasource(ds)
                  .description(NUMBERS_BY_NAME["badput_core_hours"].definition + " Click a job for its attempts.")
                  .with_target(_query(sq.JOBS_SQL.format(where=w, job_filter="badput_core_ms > 0",
                                                         order="badput_core_hours DESC, job_id", limit=50), opts=opts))
                  .override_by_name("job_id", [_prop("links", [_job_link()])])
                  .height(10).span(12))
    for p in (top_restarts, top_badput):
        for col in ("restarts", "badput_core_hours", "cpu_efficiency_pct"):
            short, definition = number_column(col)
            p.override_by_name(col, [_prop("description", definition + " (this job only)")])

    d = (_base(UID_STAGE, "stagewatch / Stage", "One stage of a campaign: files, jobs, restarts, progress.")
         .with_variable(_ch_variable("campaign", "Campaign", CAMPAIGN_VARIABLE_SQL, multi=False, opts=opts))
         .with_variable(_ch_variable("stage", "Stage", STAGE_VARIABLE_SQL, multi=False, opts=opts))
         .with_panel(headline).with_panel(forecast_stat(13, opts))
         .with_panel(buckets).with_panel(states).with_panel(causes)
         .with_panel(progress).with_panel(restarts).with_panel(jobs_by_state_panel(12, opts))
         .with_panel(hold_reasons_panel(14, opts, overview=False)).with_panel(held_jobs_panel(15, opts, _job_link()))
         .with_panel(sites_panel(16, opts, overview=False)).with_panel(site_restarts_panel(17, opts))
         .with_panel(cpu_hist).with_panel(exits)
         .with_panel(missing).with_panel(top_restarts).with_panel(top_badput))
    return d.build()


# --------------------------------------------------------------------------------------------------
# Job


def job(opts: BuildOptions = BuildOptions()) -> dm.Dashboard:
    """One job: its attempts on a state timeline and in a table, and every event it sent."""
    ds = datasource_ref(opts.datasource_uid)
    attempts = sq.ATTEMPTS_SQL.format(where=STAGE_WHERE, job_id=JOB_ID)
    timeline = (statetimeline.Panel().id(1).title("Attempts").datasource(ds)
                .description("Each attempt from its `started` to what ended it (terminated, evicted, held, ...).")
                .with_target(_query(dq.attempt_timeline_sql(attempts.strip()), time_series=False, opts=opts))
                .height(6).span(24))
    attempts_table = (_table().id(2).title("Attempts (table)").datasource(ds)
                      .with_target(_query(attempts, opts=opts)).height(8).span(24))
    events = (_table().id(3).title("Events").datasource(ds)
              .description("Every stored event of the job, in time order (same SQL as `stagewatch job`).")
              .with_target(_query(sq.JOB_EVENTS_SQL.format(where=STAGE_WHERE, job_id=JOB_ID), opts=opts))
              .height(12).span(24))
    d = (_base(UID_JOB, "stagewatch / Job", "One job's attempts and events.")
         .with_variable(_ch_variable("campaign", "Campaign", CAMPAIGN_VARIABLE_SQL, multi=False, opts=opts))
         .with_variable(_ch_variable("stage", "Stage", STAGE_VARIABLE_SQL, multi=False, opts=opts))
         .with_variable(db.TextBoxVariable("job_id").label("Job id"))
         .with_panel(timeline).with_panel(attempts_table).with_panel(events))
    return d.build()


# --------------------------------------------------------------------------------------------------
# Pipeline health


def pipeline_health(opts: BuildOptions = BuildOptions()) -> dm.Dashboard:
    """Is data flowing? Events per minute by source and by type, dead letters, latest event per source."""
    ds = datasource_ref(opts.datasource_uid)
    by_source = (timeseries.Panel().id(1).title("Events per minute by source (arrival time)").datasource(ds)
                 .description("Events written per minute, per source (Kafka topic or replayed file), by the time "
                              "they were ingested.")
                 .with_target(_query(dq.events_per_minute_by_source_sql(), time_series=True, opts=opts))
                 .height(8).span(12))
    by_type = (timeseries.Panel().id(2).title("Events per minute by type (event time)").datasource(ds)
               .description("Events per minute by kind:type, by their own timestamp, for the selected campaigns.")
               .with_target(_query(dq.events_per_minute_by_type_sql(OVERVIEW_WHERE), time_series=True, opts=opts))
               .height(8).span(12))
    dl_series = (timeseries.Panel().id(3).title("Dead letters").datasource(ds)
                 .description("Input that did not satisfy the event contract, per source. Kept with the reason "
                              "in the dead_letter table, never silently dropped.")
                 .with_target(_query(dq.dead_letters_per_interval_sql(), time_series=True, opts=opts))
                 .draw_style(cm.GraphDrawStyle.BARS).height(8).span(12))
    latest = (_table().id(4).title("Latest event per source").datasource(ds)
              .description("When each source last delivered an event; a feed that went quiet shows here first.")
              .with_target(_query(dq.LATEST_EVENT_PER_SOURCE_SQL, opts=opts))
              .override_by_name("seconds_since_ingest", [_prop("unit", "s")])
              .height(8).span(12))
    dl_table = (_table().id(5).title("Latest dead letters").datasource(ds)
                .with_target(_query(dq.DEAD_LETTERS_SQL, opts=opts)).height(10).span(24))
    d = (_base(UID_HEALTH, "stagewatch / Pipeline health", "Events flowing in, dead letters, silent sources.")
         .time("now-6h", "now")
         .with_variable(_ch_variable("campaign", "Campaign", CAMPAIGN_VARIABLE_SQL, multi=True, opts=opts))
         .with_panel(by_source).with_panel(by_type).with_panel(dl_series).with_panel(latest).with_panel(dl_table))
    return d.build()


# --------------------------------------------------------------------------------------------------


def all_dashboards(opts: BuildOptions = BuildOptions()) -> dict[str, dm.Dashboard]:
    """uid -> dashboard model, in navigation order."""
    return {UID_OVERVIEW: overview(opts), UID_STAGE: stage(opts), UID_JOB: job(opts), UID_HEALTH: pipeline_health(opts)}


def to_json(model: Any) -> dict[str, Any]:
    """A built SDK model as plain JSON data (what Grafana stores)."""
    return json.loads(json.dumps(model, cls=JSONEncoder, sort_keys=True))


def load_dashboard(data: dict[str, Any]) -> dm.Dashboard:
    """Parse dashboard JSON back through the SDK's typed models (panels, options, our query type)."""
    cogplugins.register_default_plugins()
    import dashboards.chquery  # noqa: F401 - registers the ClickHouse query variant

    return dm.Dashboard.from_json(data)


def iter_panel_queries(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query target of a dashboard's JSON, rows included."""
    for panel in data.get("panels", []):
        for sub in [panel, *panel.get("panels", [])]:
            for target in sub.get("targets", []) or []:
                yield sub, target


def iter_variable_queries(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(variable name, SQL) of every ClickHouse query variable."""
    for var in (data.get("templating") or {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            yield var["name"], q["rawSql"] if isinstance(q, dict) else q


__all__ = ["BuildOptions", "DASHBOARD_UIDS", "UID_OVERVIEW", "UID_STAGE", "UID_JOB", "UID_HEALTH", "overview",
           "stage", "job", "pipeline_health", "all_dashboards", "to_json", "load_dashboard", "iter_panel_queries",
           "iter_variable_queries", "number_column", "OVERVIEW_COLUMNS", "OVERVIEW_WHERE", "STAGE_WHERE",
           "variable_value", "variable_contains"]
