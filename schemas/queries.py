"""The SQL definitions of the reported numbers and their drill-down lists.

`stagewatch status`, `stagewatch missing-files`, the Grafana panels, the alert rules and the HTML
report all run these templates, so a number shown anywhere is computed by exactly one piece of SQL.
Placeholders are filled with `str.format`: `{where}` is a boolean SQL expression over `campaign`
and `stage` (literal filters from the CLI, dashboard variables in Grafana), `{as_of}` a Unix-seconds
expression (a literal, or `toUnixTimestamp(now())` in Grafana), `{threshold_s}` the stall threshold.

The SQL runs on ClickHouse 18.16 as well as on modern ClickHouse and chDB: integer rounding
(intDiv(2 * 1000 * n + d, 2 * d) / 10 is n / d in percent, rounded half up to 1 decimal, exactly as
processors.numbers.ratio_pct) and no newer syntax.

Division: ClickHouse 18.16 evaluates BOTH branches of `if()` (and of multiIf), and its intDiv/modulo
raise "Division by zero" even for a NULL divisor (`nullIf(d, 0)` does not help there: the function runs
on the nested 0 before the NULL mask is applied). So every divisor is either a positive constant or
`greatest(d, 1)` (see `safe_divisor`), and the `if()` around it only chooses the documented value (0 or
NULL) for d = 0. For d >= 1, greatest(d, 1) = d: the numbers are unchanged. tests/schemas/test_queries_division.py
runs every query with zero divisors on 18.16 and chDB and scans all the SQL the project builds for
divisions without such a guard.
"""

from __future__ import annotations

from typing import Any, Iterable

from processors.numbers import FILE_BUCKETS, RESTART_CAUSES, STALL_THRESHOLD_S


def safe_divisor(expr: str) -> str:
    """`expr` as a divisor that is never 0 (nor NULL): greatest(expr, 1), equal to expr whenever expr >= 1.

    The form the division scan (tests/schemas/test_queries_division.py) accepts for a non-constant divisor.
    """
    return f"greatest({expr}, 1)"


ACTIVE_SQL = "(jobs_idle + jobs_running + jobs_held + jobs_suspended + files_in_flight + files_pending)"

STATUS_SQL = """
SELECT
    campaign,
    stage,
    input_files,
    files_located,
    files_declared_not_located,
    files_consumed_no_output,
    files_in_flight,
    files_failed,
    files_pending,
    input_files - files_located AS files_without_located_output,
    if(input_files = 0, 0.,
       intDiv(2000 * files_located + input_files, 2 * {input_files}) / 10) AS completion_pct,
    outputs_declared,
    outputs_located,
    jobs,
    jobs_idle,
    jobs_running,
    jobs_held,
    jobs_suspended,
    jobs_completed,
    jobs_removed,
    jobs_completed_ok,
    jobs_completed_failed,
    job_attempts,
    restarts,
{cause_columns},
    if(cpu_terminations = 0 OR core_wall_ms = 0, NULL,
       intDiv(2000 * cpu_ms + core_wall_ms, 2 * {core_wall_ms}) / 10) AS cpu_efficiency_pct,
    intDiv(200 * badput_core_ms + 3600000, 7200000) / 100 AS badput_core_hours,
    last_event_ts,
    last_progress_ts,
    first_event_ts,
    ({active} > 0 AND ({{as_of}} - ifNull(last_progress_ts, first_event_ts)) > {{threshold_s}}) AS stalled
FROM stage_numbers FINAL
WHERE {{where}}
ORDER BY campaign, stage
""".format(
    cause_columns=",\n".join(f"    restarts_{c}" for c in RESTART_CAUSES),
    active=ACTIVE_SQL,
    input_files=safe_divisor("input_files"),
    core_wall_ms=safe_divisor("core_wall_ms"),
)

FILES_SQL = """
SELECT file, bucket, deliveries, disposition, disposition_job, outputs, last_ts
FROM file_state FINAL
WHERE {where} AND is_input = 1 AND {bucket_filter}
ORDER BY file
"""
"""Input files of a stage in some buckets: the drill-down list behind each file number."""

MISSING_FILES_FILTER = "bucket != 'files_located'"
"""files_without_located_output = input_files - files_located: exactly the inputs not in that bucket."""

JOBS_SQL = """
SELECT job_id, state, attempts, restarts, restarts_evicted, restarts_shadow_exception,
       restarts_reconnect_failed, restarts_held, restarts_unknown, exit_code, signal, completed_ok,
       cpu_efficiency_pct, badput_core_hours, site, host, submitted_ts, last_ts
FROM job_state FINAL
WHERE {where} AND {job_filter}
ORDER BY {order}
LIMIT {limit}
"""

JOB_STATE_FILTERS = {
    "idle": "state = 'idle'", "running": "state = 'running'", "held": "state = 'held'",
    "suspended": "state = 'suspended'", "completed": "state = 'completed'", "removed": "state = 'removed'",
    "completed_ok": "state = 'completed' AND completed_ok = 1",
    "completed_failed": "state = 'completed' AND completed_ok = 0",
    "restarted": "restarts > 0",
}

def current_attempts(columns: str, where: str = "{where}") -> str:
    """SQL selecting `columns` from the job_attempts rows that count: attempts up to the job's current number.

    job_attempts is keyed by (campaign, stage, job_id, attempt) and its rows are never deleted. When a winning
    conflicting copy takes a `started` away from a job whose rows were already written (an earlier replay, an
    earlier worker batch), the row of the attempt that no longer exists stays behind. job_state.attempts is
    the job's current number of attempts (its row is replaced by the winner's), so rows beyond it are stale
    and no reader may count them: every SQL that reads job_attempts is built on this (the scan in
    tests/schemas/test_attempt_readers.py refuses any other). `where` is a template filter over campaign and
    stage (and job_id), applied on both sides. ALL INNER JOIN, not ANY: the right side has one row per job, and
    modern ClickHouse's ANY INNER JOIN keeps one left row per key (18.16's kept every one).
    """
    return (f"SELECT {columns}\nFROM job_attempts FINAL\nALL INNER JOIN (\n"
            f"    SELECT campaign, stage, job_id, attempts AS job_attempts_now FROM job_state FINAL WHERE {where}\n"
            f") AS js USING (campaign, stage, job_id)\nWHERE {where} AND attempt <= job_attempts_now")


ATTEMPTS_SQL = "\n" + current_attempts(
    "attempt, started_ts, ended_ts, ended_by, wall_s, cores, badput_core_ms, exit_code, signal, site, host",
    "{where} AND job_id = {job_id}") + "\nORDER BY attempt\n"
"""One job's current attempts (`stagewatch job ID`, the Job dashboard)."""

JOB_EVENTS_SQL = """
SELECT ts, type, event_id, exit_code, signal, cpu_user_s, cpu_sys_s, wall_s, cores, reason, site, host
FROM raw_events FINAL
WHERE {where} AND kind = 'job' AND entity = {job_id}
ORDER BY ts, event_id
"""


def literal(value: Any) -> str:
    """A SQL literal for a Python value (strings quoted and escaped for ClickHouse)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    s = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{s}'"


def where(campaign: str | None = None, stage: str | None = None) -> str:
    parts = []
    if campaign is not None:
        parts.append(f"campaign = {literal(campaign)}")
    if stage is not None:
        parts.append(f"stage = {literal(stage)}")
    return " AND ".join(parts) or "1"


def bucket_filter(buckets: Iterable[str] | None) -> str:
    if buckets is None:
        return MISSING_FILES_FILTER
    names = list(buckets)
    unknown = [b for b in names if b not in FILE_BUCKETS]
    if unknown:
        raise ValueError(f"unknown file bucket(s) {unknown}; choose from {', '.join(FILE_BUCKETS)}")
    return f"bucket IN ({', '.join(literal(b) for b in names)})"


def status_sql(campaign: str | None = None, stage: str | None = None, *, as_of: float,
               threshold_s: float = STALL_THRESHOLD_S) -> str:
    return STATUS_SQL.format(where=where(campaign, stage), as_of=literal(float(as_of)),
                             threshold_s=literal(float(threshold_s)))


def missing_files_sql(campaign: str, stage: str) -> str:
    return FILES_SQL.format(where=where(campaign, stage), bucket_filter=MISSING_FILES_FILTER)


def files_sql(campaign: str, stage: str, buckets: Iterable[str] | None) -> str:
    return FILES_SQL.format(where=where(campaign, stage), bucket_filter=bucket_filter(buckets))


# --------------------------------------------------------------------------------- sites, holds, forecast
# One definition each for `stagewatch sites`, `stagewatch holds`, the forecast in `status --format json`
# and the Grafana panels (same placeholders as above; the forecast adds {window_s}, {window_2s}).

SITES_SQL = """
SELECT
    campaign,
    stage,
    site,
    attempts,
    restarts,
{cause_sums},
    intDiv(200 * badput_core_ms + 3600000, 7200000) / 100 AS badput_core_hours,
    if(cpu_terminations = 0 OR core_wall_ms = 0, NULL,
       intDiv(2000 * cpu_ms + core_wall_ms, 2 * {core_wall_ms}) / 10) AS cpu_efficiency_pct,
    jobs_held,
    badput_core_ms,
    cpu_terminations,
    cpu_ms,
    core_wall_ms
FROM (
    SELECT campaign, stage, site,
        sum(n_attempts) AS attempts, sum(n_restarts) AS restarts,
{cause_inner},
        sum(n_badput_core_ms) AS badput_core_ms, sum(n_cpu_terminations) AS cpu_terminations,
        sum(n_cpu_ms) AS cpu_ms, sum(n_core_wall_ms) AS core_wall_ms, sum(n_jobs_held) AS jobs_held
    FROM (
        {attempts}
        UNION ALL
        SELECT campaign, stage, if(site = '', 'unknown', site) AS site, toUInt64(0) AS n_attempts,
            toUInt64(0) AS n_restarts,
{cause_zero},
            toUInt64(0) AS n_badput_core_ms, toUInt64(0) AS n_cpu_terminations, toUInt64(0) AS n_cpu_ms,
            toUInt64(0) AS n_core_wall_ms, toUInt64(1) AS n_jobs_held
        FROM job_state FINAL
        WHERE {{where}} AND state = 'held'
        UNION ALL
        SELECT campaign, stage, 'unknown' AS site, toUInt64(0) AS n_attempts, toUInt64(0) AS n_restarts,
{cause_zero},
            toUInt64(0) AS n_badput_core_ms, toUInt64(pre_start_cpu_terminations) AS n_cpu_terminations,
            toUInt64(pre_start_cpu_ms) AS n_cpu_ms, toUInt64(pre_start_core_wall_ms) AS n_core_wall_ms,
            toUInt64(0) AS n_jobs_held
        FROM job_state FINAL
        WHERE {{where}} AND pre_start_cpu_terminations > 0
    )
    GROUP BY campaign, stage, site
)
ORDER BY badput_core_ms DESC, restarts DESC, campaign, stage, site
""".format(
    cause_sums=",\n".join(f"    restarts_{c}" for c in RESTART_CAUSES),
    cause_inner=",\n".join(f"        sum(n_restarts_{c}) AS restarts_{c}" for c in RESTART_CAUSES),
    attempts=current_attempts(
        "campaign, stage, if(site = '', 'unknown', site) AS site, toUInt64(1) AS n_attempts,\n"
        "    toUInt64(restart_cause != '') AS n_restarts,\n"
        + ",\n".join(f"    toUInt64(restart_cause = '{c}') AS n_restarts_{c}" for c in RESTART_CAUSES) + ",\n"
        "    toUInt64(badput_core_ms) AS n_badput_core_ms, toUInt64(cpu_terminations) AS n_cpu_terminations,\n"
        "    toUInt64(cpu_ms) AS n_cpu_ms, toUInt64(core_wall_ms) AS n_core_wall_ms, toUInt64(0) AS n_jobs_held"
    ).replace("\n", "\n        "),
    cause_zero=",\n".join(f"            toUInt64(0) AS n_restarts_{c}" for c in RESTART_CAUSES),
    core_wall_ms=safe_divisor("core_wall_ms"),
)
"""Per execution site of each stage (processors.numbers.SITE_NUMBERS): an attempt's site is its `started`
event's (`unknown` when absent); restarts and badput belong to the attempt they interrupted, CPU to the
attempt a `terminated` ended (`unknown` before any start); held jobs to their latest attempt's site.
Sorted by badput, most first. The sums over a stage's sites are the stage's numbers: attempt rows beyond
the job's current attempts (left by a conflicting copy that won after its loser was written) are not counted
(current_attempts)."""

HOLDS_SQL = """
SELECT campaign, stage, hold_reason, hold_code, hold_subcode, count() AS jobs_held, min(held_ts) AS held_since_ts
FROM job_state FINAL
WHERE {where} AND state = 'held'
GROUP BY campaign, stage, hold_reason, hold_code, hold_subcode
ORDER BY campaign, stage, jobs_held DESC, hold_reason, hold_code, hold_subcode
LIMIT {limit} BY campaign, stage
"""
"""The held jobs of each stage grouped by their current hold (reason text, HTCondor code and subcode),
most jobs first, with the oldest "held since" of each group; at most {limit} reasons per stage."""

HELD_JOBS_SQL = """
SELECT job_id, hold_reason, hold_code, hold_subcode, held_ts, site, host, submission, attempts, restarts
FROM job_state FINAL
WHERE {where} AND state = 'held'
ORDER BY held_ts, job_id
LIMIT {limit}
"""
"""Held jobs of a stage with their hold: what `jobs --state held` shows (the longest held first)."""

FORECAST_SQL = """
SELECT campaign, stage, remaining, located_in_window,
    intDiv(720000 * located_in_window + {window_s}, {window_2s}) / 100 AS located_rate_per_h,
    if(remaining = 0 OR located_in_window = 0, NULL,
       {as_of} + intDiv(2 * remaining * {window_s} + located_in_window,
                        2 * greatest(located_in_window, 1))) AS eta
FROM (
    SELECT campaign, stage, toUInt64(input_files - files_located) AS remaining
    FROM stage_numbers FINAL
    WHERE {where}
) AS n ANY LEFT JOIN (
    SELECT campaign, stage, toUInt64(count()) AS located_in_window
    FROM (
        SELECT campaign, stage, is_input, input_located_ts
        FROM file_state FINAL
        WHERE {where}
    ) AS f
    WHERE is_input = 1 AND input_located_ts > {as_of} - {window_s} AND input_located_ts <= {as_of}
    GROUP BY campaign, stage
) AS w USING (campaign, stage)
ORDER BY campaign, stage
"""
"""The forecast of each stage (processors.numbers.FORECAST_NUMBERS, processors.forecast): input files whose
located time (file_state.input_located_ts, precomputed: no raw events are read) is in (as_of - window, as_of],
their rate per hour, and the ETA of the rest at that rate. The window filter is outside the FINAL subquery
so only each file's newest row is tested (an older row's located time must not count)."""


def sites_sql(campaign: str | None = None, stage: str | None = None) -> str:
    return SITES_SQL.format(where=where(campaign, stage))


def holds_sql(campaign: str | None = None, stage: str | None = None, *, limit: int = 10) -> str:
    return HOLDS_SQL.format(where=where(campaign, stage), limit=int(limit))


def held_jobs_sql(campaign: str, stage: str, *, limit: int) -> str:
    return HELD_JOBS_SQL.format(where=where(campaign, stage), limit=int(limit))


def forecast_sql(campaign: str | None = None, stage: str | None = None, *, as_of: float, window_s: int) -> str:
    window_s = int(window_s)
    if window_s < 1:
        raise ValueError("the rate window must be at least 1 second")
    return FORECAST_SQL.format(where=where(campaign, stage), as_of=literal(float(as_of)), window_s=window_s,
                               window_2s=2 * window_s)
