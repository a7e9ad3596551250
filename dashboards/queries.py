"""Shared SQL for the dashboards, the alert rules and the HTML report, on top of schemas/queries.py.

The headline numbers (every name in processors.numbers.NUMBERS) come from `schemas.queries.STATUS_SQL`
and nowhere else: a panel that shows one selects its column from STATUS_SQL used as a subquery
(`from_status`). Their drill-down lists come from FILES_SQL, JOBS_SQL, ATTEMPTS_SQL and JOB_EVENTS_SQL
unchanged. What lives here is only what STATUS_SQL does not answer: numbers over a time window (files
located per hour, restarts in the last hour, CPU efficiency of recently completed jobs), histograms,
and pipeline health (events per minute, dead letters, latest event per source).

Templates are filled with `str.format` like those of schemas/queries.py; `{where}` is a boolean SQL
expression over `campaign` and `stage`. Grafana macros (`$__timeFilter(col)`, `$__fromTime`,
`$__toTime`, `$__interval_s`) are left in the SQL for the plugin to expand (dashboards/macros.py
mirrors it for tests). Everything runs on ClickHouse 18.16 and on modern ClickHouse/chDB: no window
functions, no `WITH` subqueries, no `toStartOfInterval` (18.16 lacks it: buckets are
`intDiv(toUInt32(t), N) * N`), explicit `ALL` join strictness, every joined subquery aliased.
Every divisor is a positive constant or `safe_divisor(...)` (greatest(d, 1)): 18.16 evaluates both
branches of if() and raises on intDiv by 0 even under a NULL mask (see schemas/queries.py).
"""

from __future__ import annotations

from typing import Iterable

from processors.numbers import STALL_THRESHOLD_S
from schemas.queries import STATUS_SQL, current_attempts, safe_divisor

INTERVAL_S = "$__interval_s"
"""The panel's interval in seconds (the plugin's macro; at least 1 there, guarded as a divisor all the same)."""

GRAFANA_AS_OF = "toUnixTimestamp(now())"
"""`{as_of}` of STATUS_SQL in dashboards: the moment the panel is refreshed."""

ALERT_AS_OF = "toUnixTimestamp($__toTime)"
"""`{as_of}` of STATUS_SQL in alert rules: the end of the rule's evaluation window (now, in Grafana)."""


def status_sql(where: str, as_of: str = GRAFANA_AS_OF, threshold_s: float = STALL_THRESHOLD_S) -> str:
    """STATUS_SQL with SQL expressions (not literals) for the filter and `as_of`."""
    return STATUS_SQL.format(where=where, as_of=as_of, threshold_s=repr(float(threshold_s)))


def from_status(columns: Iterable[str], where: str, as_of: str = GRAFANA_AS_OF,
                threshold_s: float = STALL_THRESHOLD_S) -> str:
    """Some columns of STATUS_SQL, unchanged: how a panel shows a headline number without redefining it."""
    cols = ", ".join(columns)
    return f"SELECT {cols}\nFROM ({status_sql(where, as_of, threshold_s)}) AS status"


def hour_bucket(col: str, seconds: int | str = 3600) -> str:
    """The start of `col`'s bucket as a DateTime (toStartOfInterval does not exist on 18.16).

    A bucket size that is not a positive int literal (a macro such as `$__interval_s`) is guarded as a divisor.
    """
    n = str(seconds) if isinstance(seconds, int) and seconds > 0 else safe_divisor(str(seconds))
    return f"toDateTime(intDiv(toUInt32({col}), {n}) * {n})"


# --- files and jobs over time ---------------------------------------------------------------------

INPUT_LOCATED_SQL = """
SELECT campaign, stage, file, toDateTime(toUInt32(min(located_ts))) AS located_time
FROM (
    SELECT campaign, stage, file, output
    FROM file_state FINAL
    ARRAY JOIN outputs AS output
    WHERE {where} AND is_input = 1 AND bucket = 'files_located'
) AS inputs
ALL INNER JOIN (
    SELECT campaign, stage, file AS output, located_ts
    FROM file_state FINAL
    WHERE {where} AND located = 1 AND located_ts IS NOT NULL
) AS outputs_located USING (campaign, stage, output)
GROUP BY campaign, stage, file
"""
"""Each located input file (bucket files_located) with the moment it became located: the first
`output_located` among the outputs that have it as a parent."""

FILES_LOCATED_PER_HOUR_SQL = """
SELECT {bucket} AS time, count() AS files_located
FROM ({located}) AS located
WHERE $__timeFilter(located_time)
GROUP BY time
ORDER BY time
"""

JOBS_COMPLETED_PER_HOUR_SQL = """
SELECT {bucket} AS time, count() AS jobs_completed
FROM (
    SELECT toDateTime(toUInt32(last_ts)) AS completed_time
    FROM job_state FINAL
    WHERE {where} AND state = 'completed'
) AS completed
WHERE $__timeFilter(completed_time)
GROUP BY time
ORDER BY time
"""
"""Completed jobs by the time of their latest event (the `terminated` that completed them)."""

RESTARTS_SQL = "\n" + current_attempts(
    "campaign, stage, job_id, attempt, toDateTime(toUInt32(started_ts)) AS restart_time") + " AND attempt > 1\n"
"""Every restart: a current attempt that is not its job's first (a `started` that is not the first)."""

RESTARTS_PER_HOUR_SQL = """
SELECT {bucket} AS time, count() AS restarts
FROM ({restarts}) AS restarts
WHERE $__timeFilter(restart_time)
GROUP BY time
ORDER BY time
"""

RESTARTS_IN_WINDOW_SQL = """
SELECT campaign, stage, count() AS restarts_in_window
FROM ({restarts}) AS restarts
WHERE restart_time >= $__fromTime AND restart_time <= $__toTime
GROUP BY campaign, stage
"""


def files_located_per_hour_sql(where: str) -> str:
    return FILES_LOCATED_PER_HOUR_SQL.format(bucket=hour_bucket("located_time"),
                                             located=INPUT_LOCATED_SQL.format(where=where))


def jobs_completed_per_hour_sql(where: str) -> str:
    return JOBS_COMPLETED_PER_HOUR_SQL.format(bucket=hour_bucket("completed_time"), where=where)


def restarts_per_hour_sql(where: str) -> str:
    return RESTARTS_PER_HOUR_SQL.format(bucket=hour_bucket("restart_time"), restarts=RESTARTS_SQL.format(where=where))


def restarts_in_window_sql(where: str) -> str:
    return RESTARTS_IN_WINDOW_SQL.format(restarts=RESTARTS_SQL.format(where=where))


# --- distributions over completed jobs ------------------------------------------------------------

CPU_EFFICIENCY_HISTOGRAM_SQL = """
SELECT if(b >= 10, '100%+', concat(toString(b * 10), '-', toString(b * 10 + 10), '%')) AS cpu_efficiency, jobs
FROM (
    SELECT least(intDiv(toUInt32(assumeNotNull(cpu_efficiency_pct)), 10), 10) AS b, count() AS jobs
    FROM job_state FINAL
    WHERE {where} AND state = 'completed' AND cpu_efficiency_pct IS NOT NULL
    GROUP BY b
) AS buckets
ORDER BY b
"""
"""Completed jobs with a CPU efficiency, in 10 % buckets (a job's own cpu_efficiency_pct, as `jobs` shows)."""

EXIT_CODES_SQL = """
SELECT exit, jobs
FROM (
    SELECT multiIf(signal IS NOT NULL, concat('signal ', toString(assumeNotNull(signal))),
                   exit_code IS NULL, 'no exit code',
                   concat('exit ', toString(assumeNotNull(exit_code)))) AS exit,
           count() AS jobs
    FROM job_state FINAL
    WHERE {where} AND state = 'completed'
    GROUP BY exit
) AS codes
ORDER BY jobs DESC, exit
"""
"""Completed jobs by how their final `terminated` ended; the counts add up to jobs_completed."""

CPU_EFFICIENCY_WINDOW_SQL = """
SELECT campaign, stage,
       intDiv(2000 * sum(cpu_ms) + sum(core_wall_ms), 2 * {core_wall_ms}) / 10 AS cpu_efficiency_pct,
       count() AS jobs
FROM job_state FINAL
WHERE {where} AND state = 'completed' AND cpu_terminations > 0
  AND last_ts >= toUnixTimestamp($__fromTime) AND last_ts <= toUnixTimestamp($__toTime)
GROUP BY campaign, stage
HAVING sum(core_wall_ms) > 0
""".replace("{core_wall_ms}", safe_divisor("sum(core_wall_ms)"))
"""cpu_efficiency_pct's formula restricted to the jobs completed in the window (same integer rounding)."""


# --- pipeline health ------------------------------------------------------------------------------

EVENTS_PER_MINUTE_BY_SOURCE_SQL = """
SELECT {bucket} AS time, source, count() * 60 / {interval} AS events_per_minute
FROM raw_events
WHERE ingested_ts >= toUnixTimestamp($__fromTime) AND ingested_ts <= toUnixTimestamp($__toTime)
GROUP BY time, source
ORDER BY time
"""
"""Arrival rate per source (topic or file), by ingestion time. Rows as written: a batch written twice
counts twice until ClickHouse merges it (FINAL would make this panel scan the whole table)."""

EVENTS_PER_MINUTE_BY_TYPE_SQL = """
SELECT {bucket} AS time, concat(kind, ':', type) AS event_type, count() * 60 / {interval} AS events_per_minute
FROM raw_events
WHERE {where} AND $__timeFilter(event_time)
GROUP BY time, event_type
ORDER BY time
"""
"""What happens, by event type and event time (`ts`)."""

DEAD_LETTERS_PER_INTERVAL_SQL = """
SELECT {bucket} AS time, source, count() AS dead_letters
FROM dead_letter FINAL
WHERE $__timeFilter(received_time)
GROUP BY time, source
ORDER BY time
"""

DEAD_LETTERS_SQL = """
SELECT received_time, source, position, reason, substring(raw, 1, 300) AS raw
FROM dead_letter FINAL
WHERE $__timeFilter(received_time)
ORDER BY received_ts DESC, source, position
LIMIT 200
"""

LATEST_EVENT_PER_SOURCE_SQL = """
SELECT source,
       toDateTime(toUInt32(max(ts))) AS latest_event_time,
       toDateTime(toUInt32(max(ingested_ts))) AS latest_ingest_time,
       toUnixTimestamp(now()) - toUInt32(max(ingested_ts)) AS seconds_since_ingest,
       count() AS events
FROM raw_events
GROUP BY source
ORDER BY source
"""


def events_per_minute_by_source_sql() -> str:
    return EVENTS_PER_MINUTE_BY_SOURCE_SQL.format(bucket=hour_bucket("ingested_ts", INTERVAL_S),
                                                  interval=safe_divisor(INTERVAL_S))


def events_per_minute_by_type_sql(where: str) -> str:
    return EVENTS_PER_MINUTE_BY_TYPE_SQL.format(bucket=hour_bucket("event_time", INTERVAL_S),
                                                interval=safe_divisor(INTERVAL_S), where=where)


def dead_letters_per_interval_sql() -> str:
    return DEAD_LETTERS_PER_INTERVAL_SQL.format(bucket=hour_bucket("received_time", INTERVAL_S))


# --- job view -------------------------------------------------------------------------------------


def attempt_timeline_sql(attempts_sql: str) -> str:
    """One job's attempts as state changes for a state timeline: 'attempt N' at each start, then how
    the attempt ended (ended_by) at its end. Built on ATTEMPTS_SQL."""
    return f"""
SELECT time, state
FROM (
    SELECT toDateTime(toUInt32(started_ts)) AS time, concat('attempt ', toString(attempt), ' running') AS state
    FROM ({attempts_sql}) AS a1
    UNION ALL
    SELECT toDateTime(toUInt32(assumeNotNull(ended_ts))) AS time,
           if(ended_by = '', 'ended', ended_by) AS state
    FROM ({attempts_sql}) AS a2
    WHERE ended_ts IS NOT NULL
) AS transitions
ORDER BY time
"""


