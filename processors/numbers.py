"""The catalogue of every number stagewatch reports: its name, its definition, and how it is finalised.

This module is the one place where a number is defined in words. The glossary (docs/glossary.md),
the CLI help, the table headers, the JSON keys, the ClickHouse columns and the Grafana column
descriptions are all taken from here (tests check that they agree), so one number never has
three definitions again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STALL_THRESHOLD_S = 2 * 3600.0
"""Default stall threshold: a stage with work left and no progress for longer than this is stalled."""

FILE_BUCKETS = (
    "files_located",
    "files_declared_not_located",
    "files_consumed_no_output",
    "files_in_flight",
    "files_failed",
    "files_pending",
)
"""Input-file buckets in precedence order: a file is in the first bucket whose rule applies."""

JOB_STATES = ("idle", "running", "held", "suspended", "completed", "removed")
RESTART_CAUSES = ("evicted", "shadow_exception", "reconnect_failed", "held", "unknown")

GLOSSARY_URL = "docs/glossary.md"


@dataclass(frozen=True)
class Number:
    name: str
    group: str  # "files", "jobs", "time"
    short: str  # column header in the overview table
    definition: str


NUMBERS: tuple[Number, ...] = (
    # --- files: the real measure of a stage ---
    Number("input_files", "files", "Input files",
           "Distinct files with an `input_declared` event in the stage (the stage's input dataset). "
           "Equals the sum of the six file buckets."),
    Number("files_located", "files", "Located",
           "Input files for which some output file whose `parents` include it has an `output_located` "
           "event (the location may arrive before the declaration). Bucket 1."),
    Number("files_declared_not_located", "files", "Declared, not located",
           "Input files not located, for which some output with it as parent is declared "
           "(`output_declared`) but none is located. Bucket 2."),
    Number("files_consumed_no_output", "files", "Consumed, no output",
           "Input files in no earlier bucket that have a `consumed` event but no declared output. Bucket 3."),
    Number("files_in_flight", "files", "In flight",
           "Input files in no earlier bucket whose latest of delivered/consumed/skipped/failed is "
           "`delivered` (a job has it now). Bucket 4."),
    Number("files_failed", "files", "Failed",
           "Input files in no earlier bucket whose latest of delivered/consumed/skipped/failed is "
           "`failed` or `skipped`. Bucket 5."),
    Number("files_pending", "files", "Pending",
           "Input files in no earlier bucket: never delivered to a job. Bucket 6."),
    Number("files_without_located_output", "files", "Without located output",
           "input_files - files_located: the files a recovery submission needs "
           "(listed by `stagewatch missing-files`)."),
    Number("completion_pct", "files", "Complete %",
           "100 * files_located / input_files, 1 decimal; 0 when the stage has no input files."),
    Number("outputs_declared", "files", "Outputs declared",
           "Distinct output files of the stage with an `output_declared` event."),
    Number("outputs_located", "files", "Outputs located",
           "Distinct output files of the stage with an `output_located` event."),
    # --- jobs ---
    Number("jobs", "jobs", "Jobs",
           "Distinct job_ids in the stage. A job counts once however often it is evicted and restarted; "
           "a job seen without a `submitted` event still counts. The six job states sum to it."),
    Number("jobs_idle", "jobs", "Idle",
           "Jobs whose latest event is submitted, evicted, shadow_exception, reconnect_failed or released."),
    Number("jobs_running", "jobs", "Running",
           "Jobs whose latest event is started, reconnected, unsuspended or disconnected."),
    Number("jobs_held", "jobs", "Held", "Jobs whose latest event is held."),
    Number("jobs_suspended", "jobs", "Suspended", "Jobs whose latest event is suspended."),
    Number("jobs_completed", "jobs", "Completed", "Jobs whose latest event is terminated."),
    Number("jobs_removed", "jobs", "Removed", "Jobs whose latest event is removed."),
    Number("jobs_completed_ok", "jobs", "Completed OK",
           "Completed jobs whose final `terminated` event has exit_code 0 and no signal."),
    Number("jobs_completed_failed", "jobs", "Completed failed",
           "Completed jobs that are not completed OK (non-zero or missing exit code, or a signal)."),
    Number("job_attempts", "jobs", "Attempts", "Number of `started` events (each is one attempt to run a job)."),
    Number("restarts", "jobs", "Restarts",
           "Attempts beyond each job's first: sum over jobs of (started events - 1). "
           "Equals the sum of restarts_by_cause."),
    Number("restarts_by_cause", "jobs", "Restarts by cause",
           "For each restart (a `started` that is not the job's first), what ended the attempt before it: "
           "the first of evicted, shadow_exception, reconnect_failed, held after the previous `started`; "
           "`unknown` when there is none (a restart with no information, as OSG evictions often are)."),
    Number("cpu_efficiency_pct", "jobs", "CPU eff %",
           "Over `terminated` events carrying cpu_user_s, cpu_sys_s and wall_s: "
           "100 * sum(cpu_user_s + cpu_sys_s) / sum(wall_s * cores), 1 decimal; null when there are none. "
           "cores: the event's `cores`, else its attempt's `started` event's, else the first of the job's events "
           "that carries `cores`, else 1."),
    Number("badput_core_hours", "jobs", "Badput core-h",
           "Over attempts that ended without `terminated` and were followed by another `started`: the "
           "attempt's wall time times cores, / 3600, 2 decimals. Wall time is the `wall_s` of the event that "
           "ended it if given, else the time from its `started` to that event, or (cause unknown) to the "
           "next `started`. cores: the ending event's `cores`, else the attempt's `started` event's, else the first "
           "of the job's events that carries `cores`, else 1."),
    # --- time ---
    Number("last_event_ts", "time", "Last event", "Latest `ts` of any job or file event of the stage."),
    Number("last_progress_ts", "time", "Last progress",
           "Latest `ts` of a `terminated` job event or an `output_located` file event; null when none yet."),
    Number("stalled", "time", "Stalled",
           "True when the stage has work left (idle, running, held or suspended jobs, or in-flight or pending "
           "files) and as_of - last_progress_ts exceeds the stall threshold (default 2 h); a stage with no "
           "progress yet measures from its first event. as_of is now unless given."),
)

NUMBERS_BY_NAME = {n.name: n for n in NUMBERS}

#: Per execution site of a stage (`stagewatch sites`, schemas.queries.SITES_SQL, processors.sites). The
#: sums over a stage's sites are the stage's numbers of the same names.
SITE_NUMBERS: tuple[Number, ...] = (
    Number("site", "sites", "Site",
           "An attempt's site is the `site` of its `started` event; `unknown` when that event has none. A "
           "held job belongs to the site of its latest attempt (`unknown` when it never started)."),
    Number("attempts", "sites", "Attempts", "The site's attempts (`started` events at the site)."),
    Number("site_restarts", "sites", "Restarts",
           "Restarts whose interrupted attempt ran at the site (a restart and its badput belong to the site of "
           "the attempt it interrupted), by cause as in restarts_by_cause (JSON keys `restarts` and "
           "`restarts_by_cause`)."),
    Number("site_badput_core_hours", "sites", "Badput core-h",
           "badput_core_hours of the attempts that ran at the site (JSON key `badput_core_hours`); sites are "
           "sorted by it, most first."),
    Number("site_cpu_efficiency_pct", "sites", "CPU eff %",
           "cpu_efficiency_pct over the `terminated` events of the attempts that ran at the site (a terminated "
           "event's CPU and wall time belong to the site of the attempt it ended; before any `started`: "
           "`unknown`) (JSON key `cpu_efficiency_pct`)."),
    Number("site_jobs_held", "sites", "Held",
           "Held jobs whose latest attempt ran at the site (JSON key `jobs_held`)."),
)

#: The forecast of a stage (`status --format json`, the ETA column, processors.forecast, FORECAST_SQL).
FORECAST_NUMBERS: tuple[Number, ...] = (
    Number("located_rate_per_h", "forecast", "Located/h",
           "Input files newly located per hour over the last `--rate-window` hours before as_of (default 6): "
           "input files whose located time is in (as_of - window, as_of], / window hours, 2 decimals. A file's "
           "located time is when it entered files_located: the earliest, over its located outputs, of the later "
           "of the output's first `output_declared` naming it and its first `output_located`."),
    Number("eta", "forecast", "ETA",
           "When files_without_located_output would all be located at located_rate_per_h: as_of + remaining * "
           "window / (files located in the window), Unix seconds rounded half up; null when the rate is 0 or "
           "nothing is left."),
)

#: Integer counters summed over entity contributions (internal; the store keeps them so that
#: ratios can be re-derived and verified exactly).
COUNTERS: tuple[str, ...] = (
    "input_files", *FILE_BUCKETS, "outputs_declared", "outputs_located",
    "jobs", *(f"jobs_{s}" for s in JOB_STATES), "jobs_completed_ok", "jobs_completed_failed",
    "job_attempts", "restarts", *(f"restarts_{c}" for c in RESTART_CAUSES),
    "cpu_terminations", "cpu_ms", "core_wall_ms", "badput_core_ms",
)


def ratio_pct(numerator: int, denominator: int) -> float:
    """100 * n / d rounded half up to 1 decimal, exactly, on integers.

    The SQL in schemas/queries.py uses the same integer formula, so Python and ClickHouse agree to the
    last digit: intDiv(2000 * n + d, 2 * d) / 10.
    """
    return ((2000 * numerator + denominator) // (2 * denominator)) / 10


def core_hours(core_ms: int) -> float:
    """Core-milliseconds to core-hours, rounded half up to 2 decimals: intDiv(200 * ms + H, 2 * H) / 100."""
    h = 3600 * 1000
    return ((200 * core_ms + h) // (2 * h)) / 100


def is_stalled(counters: dict[str, Any], last_progress_ts: float | None, first_event_ts: float | None,
               as_of: float, threshold_s: float = STALL_THRESHOLD_S) -> bool:
    """The glossary's stall rule (the SQL in schemas/sql/queries.py states the same rule)."""
    active = (counters.get("jobs_idle", 0) + counters.get("jobs_running", 0) + counters.get("jobs_held", 0)
              + counters.get("jobs_suspended", 0) + counters.get("files_in_flight", 0)
              + counters.get("files_pending", 0)) > 0
    reference = last_progress_ts if last_progress_ts is not None else first_event_ts
    if not active or reference is None:
        return False
    return (as_of - reference) > threshold_s


def finalise(counters: dict[str, int], *, first_event_ts: float | None, last_event_ts: float | None,
             last_progress_ts: float | None, as_of: float, threshold_s: float = STALL_THRESHOLD_S) -> dict[str, Any]:
    """Turn a stage's integer counters into the reported numbers, named as in NUMBERS."""
    c = {k: int(counters.get(k, 0)) for k in COUNTERS}
    located, inputs = c["files_located"], c["input_files"]
    out: dict[str, Any] = {k: c[k] for k in ("input_files", *FILE_BUCKETS)}
    out["files_without_located_output"] = inputs - located
    out["completion_pct"] = ratio_pct(located, inputs) if inputs else 0.0
    out["outputs_declared"] = c["outputs_declared"]
    out["outputs_located"] = c["outputs_located"]
    for k in ("jobs", *(f"jobs_{s}" for s in JOB_STATES), "jobs_completed_ok", "jobs_completed_failed",
              "job_attempts", "restarts"):
        out[k] = c[k]
    out["restarts_by_cause"] = {cause: c[f"restarts_{cause}"] for cause in RESTART_CAUSES}
    if c["cpu_terminations"] and c["core_wall_ms"]:
        out["cpu_efficiency_pct"] = ratio_pct(c["cpu_ms"], c["core_wall_ms"])
    else:
        out["cpu_efficiency_pct"] = None
    out["badput_core_hours"] = core_hours(c["badput_core_ms"])
    out["last_event_ts"] = last_event_ts
    out["last_progress_ts"] = last_progress_ts
    out["stalled"] = is_stalled(c, last_progress_ts, first_event_ts, as_of, threshold_s)
    return out
