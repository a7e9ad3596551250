"""`stagewatch verify`: recompute every number from raw events in SQL and compare with the stored ones.

The recount (views v_job_recount and v_file_recount, schemas/sql/views.sql) is independent code: it
reads only raw_events and implements the glossary in ClickHouse SQL, while the stored numbers come
from the Python engine (embedded replay or Faust workers). Agreement of the two is the trust check;
every difference is reported down to the job or file that causes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from processors.numbers import COUNTERS, FILE_BUCKETS, JOB_STATES, RESTART_CAUSES
from schemas.queries import current_attempts, literal, sites_sql, where
from stagewatch.store.base import Store

JOB_AGG = """
SELECT campaign, stage,
    count() AS r_jobs,
{states},
    countIf(state = 'completed' AND completed_ok = 1) AS r_jobs_completed_ok,
    countIf(state = 'completed' AND completed_ok = 0) AS r_jobs_completed_failed,
    sum(attempts) AS r_job_attempts,
    sum(restarts) AS r_restarts,
{causes},
    sum(cpu_terminations) AS r_cpu_terminations,
    sum(cpu_ms) AS r_cpu_ms,
    sum(core_wall_ms) AS r_core_wall_ms,
    sum(badput_core_ms) AS r_badput_core_ms,
    sum(events) AS r_events,
    min(first_ts) AS r_first_ts,
    max(last_ts) AS r_last_ts,
    max(has_progress) AS r_has_progress,
    maxIf(progress_ts, has_progress = 1) AS r_progress_ts
FROM v_job_recount
WHERE {where}
GROUP BY campaign, stage
""".replace("{states}", ",\n".join(f"    countIf(state = '{s}') AS r_jobs_{s}" for s in JOB_STATES)).replace(
    "{causes}", ",\n".join(f"    sum(restarts_{c}) AS r_restarts_{c}" for c in RESTART_CAUSES))

FILE_AGG = """
SELECT campaign, stage,
    countIf(is_input = 1) AS r_input_files,
{buckets},
    countIf(is_output = 1) AS r_outputs_declared,
    countIf(located = 1) AS r_outputs_located,
    sum(events) AS r_events,
    min(first_ts) AS r_first_ts,
    max(last_ts) AS r_last_ts,
    max(has_progress) AS r_has_progress,
    maxIf(progress_ts, has_progress = 1) AS r_progress_ts
FROM v_file_recount
WHERE {where}
GROUP BY campaign, stage
""".replace("{buckets}", ",\n".join(f"    countIf(is_input = 1 AND bucket = '{b}') AS r_{b}" for b in FILE_BUCKETS))

# (recount view column, state table column) of every compared column: the whole row but for what is
# derived from other columns (cpu_efficiency_pct, badput_core_hours) or bookkeeping (version).
JOB_COLUMNS: tuple[tuple[str, str], ...] = (
    ("state", "state"), ("first_submission", "submission"), ("attempts", "attempts"), ("restarts", "restarts"),
    *((f"restarts_{c}", f"restarts_{c}") for c in RESTART_CAUSES), ("last_exit_code", "exit_code"),
    ("last_signal", "signal"), ("completed_ok", "completed_ok"), ("cpu_terminations", "cpu_terminations"),
    ("cpu_ms", "cpu_ms"), ("core_wall_ms", "core_wall_ms"), ("badput_core_ms", "badput_core_ms"),
    ("first_ts", "first_ts"), ("last_ts", "last_ts"), ("submitted_ts", "submitted_ts"), ("last_site", "site"),
    ("last_host", "host"), ("events", "events"))
FILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("is_input", "is_input"), ("if(is_input = 1, bucket, '')", "bucket"), ("is_output", "is_output"),
    ("located", "located"), ("last_location", "location"), ("output_parents", "parents"),
    ("outputs_of", "outputs"), ("consumed", "consumed"), ("disposition", "disposition"),
    ("disposition_job", "disposition_job"), ("deliveries", "deliveries"), ("first_ts", "first_ts"),
    ("last_ts", "last_ts"), ("located_ts", "located_ts"), ("input_located_ts", "input_located_ts"))
NULLABLE = frozenset({"exit_code", "signal", "submitted_ts", "located_ts", "input_located_ts"})

@dataclass
class VerifyReport:
    """What verify compared and every difference found (entity lines capped per check, with their count).

    An unknown campaign or stage is not an error here: nothing matches, stages_checked is 0 (the CLI
    refuses unknown names before it calls verify).
    """

    stages_checked: int = 0
    jobs_checked: int = 0
    files_checked: int = 0
    differences: list[str] = field(default_factory=list)
    entity_differences: int = 0  # jobs, attempts and files that differ, including those not listed
    stale_attempt_rows: int = 0  # job_attempts rows beyond their job's attempts: left by winning copies, not counted

    @property
    def ok(self) -> bool:
        return not self.differences


def recount(store: Store, campaign: str | None = None, stage: str | None = None) -> dict[tuple[str, str], dict]:
    """Per stage, the counters and time stats recomputed from raw_events alone."""
    w = where(campaign, stage)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for sql in (JOB_AGG.replace("{where}", w), FILE_AGG.replace("{where}", w)):
        for raw in store.query(sql):
            row = {k[2:] if k.startswith("r_") else k: v for k, v in raw.items()}
            key = (row["campaign"], row["stage"])
            acc = out.setdefault(key, {**dict.fromkeys(COUNTERS, 0), "events": 0, "first_event_ts": None,
                                       "last_event_ts": None, "last_progress_ts": None})
            for k, v in row.items():
                if k in acc and k not in ("first_event_ts", "last_event_ts", "last_progress_ts"):
                    acc[k] += int(v)
            acc["first_event_ts"] = _min(acc["first_event_ts"], row["first_ts"])
            acc["last_event_ts"] = _max(acc["last_event_ts"], row["last_ts"])
            if row["has_progress"]:
                acc["last_progress_ts"] = _max(acc["last_progress_ts"], row["progress_ts"])
    return out


def _min(a: float | None, b: float) -> float:
    return float(b) if a is None else min(a, float(b))


def _max(a: float | None, b: float) -> float:
    return float(b) if a is None else max(a, float(b))


def verify(store: Store, campaign: str | None = None, stage: str | None = None, *, max_entities: int = 20) -> VerifyReport:
    """Compare every stage row, job row and file row with its recount from raw events (presence and values).

    Stage rows are compared in Python (one row per stage); jobs and files in SQL joins and anti-joins,
    so that a store of 100,000 jobs is checked without moving its rows: only differences come back,
    at most `max_entities` per check, with the count of all of them.
    """
    report = VerifyReport()
    expected = recount(store, campaign, stage)
    report.differences += stage_differences(store, campaign, stage, report, expected)
    report.differences += site_differences(store, campaign, stage, expected)
    w = where(campaign, stage)
    for check in (_job_checks(w), _file_checks(w)):
        for kind, sql, count_sql, describe in check:
            rows = store.query(f"{sql}\nLIMIT {int(max_entities)}") if max_entities > 0 else []
            n = len(rows)
            if n >= max_entities:
                n = int(store.query(count_sql)[0]["n"])
            report.entity_differences += n
            report.differences += [describe(r) for r in rows]
            if n > len(rows):
                report.differences.append(f"  ... and {n - len(rows)} more {kind} (verify lists {max_entities} per check)")
    report.jobs_checked = int(store.query(f"SELECT count() AS n FROM (SELECT DISTINCT campaign, stage, entity "
                                          f"FROM raw_events WHERE kind = 'job' AND {w})")[0]["n"])
    report.files_checked = int(store.query(f"SELECT count() AS n FROM (SELECT DISTINCT campaign, stage, entity "
                                           f"FROM raw_events WHERE kind = 'file' AND {w})")[0]["n"])
    report.stale_attempt_rows = int(store.query(STALE_ATTEMPTS_SQL.format(where=w))[0]["n"])
    return report


STALE_ATTEMPTS_SQL = """
SELECT count() AS n
FROM job_attempts FINAL
ALL INNER JOIN (
    SELECT campaign, stage, job_id, attempts AS job_attempts_now FROM job_state FINAL WHERE {where}
) AS js USING (campaign, stage, job_id)
WHERE {where} AND attempt > job_attempts_now
"""
"""Attempt rows that no reader counts (schemas.queries.current_attempts): said, not a difference."""

#: (column of schemas.queries.SITES_SQL summed over a stage's sites, the stage counter it must equal): those
#: read from job_attempts (held jobs come from job_state rows, which the job checks compare one by one)
SITE_SUMS: tuple[tuple[str, str], ...] = (
    ("attempts", "job_attempts"), ("restarts", "restarts"), *((f"restarts_{c}", f"restarts_{c}") for c in RESTART_CAUSES),
    ("badput_core_ms", "badput_core_ms"), ("cpu_terminations", "cpu_terminations"), ("cpu_ms", "cpu_ms"),
    ("core_wall_ms", "core_wall_ms"))


def site_differences(store: Store, campaign: str | None, stage: str | None,
                     expected: dict[tuple[str, str], dict] | None = None) -> list[str]:
    """What `sites` (and the Sites panels) count, summed over each stage's sites, equals the recount.

    The sites read job_attempts, whose rows are never deleted: this is where an attempt row that no longer
    exists (or a reader that counts one) would show, while the job checks compare the counted rows per job.
    """
    if expected is None:
        expected = recount(store, campaign, stage)
    sums: dict[tuple[str, str], dict[str, int]] = {}
    for r in store.query(sites_sql(campaign, stage)):
        acc = sums.setdefault((r["campaign"], r["stage"]), dict.fromkeys((s for s, _ in SITE_SUMS), 0))
        for col, _ in SITE_SUMS:
            acc[col] += int(r[col])
    out = []
    for key in sorted(expected):
        got = sums.get(key, dict.fromkeys((s for s, _ in SITE_SUMS), 0))
        for col, counter in SITE_SUMS:
            if got[col] != int(expected[key][counter]):
                out.append(f"{key[0]} / {key[1]}: the sites count {got[col]} {col} but raw events give "
                           f"{expected[key][counter]} {counter}")
    return out


def stage_differences(store: Store, campaign: str | None, stage: str | None, report: VerifyReport,
                      expected: dict[tuple[str, str], dict] | None = None) -> list[str]:
    """Every stage with raw events has its stage_numbers row, equal to the recount; no row without events."""
    out: list[str] = []
    if expected is None:
        expected = recount(store, campaign, stage)
    stored = {(r["campaign"], r["stage"]): r for r in
              store.query(f"SELECT * FROM stage_numbers FINAL WHERE {where(campaign, stage)}")}
    for key in sorted(set(expected) | set(stored)):
        report.stages_checked += 1
        label = f"{key[0]} / {key[1]}"
        if key not in stored:
            out.append(f"{label}: has raw events but no stored numbers")
            continue
        if key not in expected:
            out.append(f"{label}: has stored numbers but no raw events")
            continue
        exp, got = expected[key], stored[key]
        for name in (*COUNTERS, "events"):
            if int(got[name]) != exp[name]:
                out.append(f"{label}: {name} stored {got[name]} but raw events give {exp[name]}")
        for name in ("first_event_ts", "last_event_ts", "last_progress_ts"):
            g = None if got[name] is None else float(got[name])
            if g != exp[name]:
                out.append(f"{label}: {name} stored {g} but raw events give {exp[name]}")
    return out


def _equal(recount_col: str, state_col: str) -> str:
    """SQL: the recount value equals the stored one (NULL equals NULL: 18.16 has no `<=>`)."""
    s = f"s_{state_col}"
    if state_col in NULLABLE:
        return f"((isNull({recount_col}) AND isNull({s})) OR ifNull({recount_col} = {s}, 0))"
    return f"({recount_col} = {s})"


def _entity_check(kind: str, view: str, table: str, key: str, raw_kind: str, columns: Iterable[tuple[str, str]],
                  w: str) -> list[tuple[str, str, str, Any]]:
    """(kind, mismatch SQL, count SQL, describe) for one entity table: every recounted entity has its row with
    equal values; every row has raw events. ANY LEFT JOIN ... USING with a `present` marker: 18.16 fills a
    missing right side with defaults (0), modern ClickHouse too (join_use_nulls = 0)."""
    columns = tuple(columns)
    rc = ", ".join(f"{r} AS r_{s}" for r, s in columns)
    sc = ", ".join(f"{s} AS s_{s}" for _, s in columns)
    equal = " AND ".join(_equal(f"r_{s}", s) for _, s in columns)
    body = (f"FROM (SELECT campaign, stage, {key}, {rc} FROM {view} WHERE {w}) AS r\n"
            f"ANY LEFT JOIN (SELECT campaign, stage, {key}, 1 AS present, {sc} FROM {table} FINAL WHERE {w}) AS s\n"
            f"USING (campaign, stage, {key})\nWHERE present = 0 OR NOT ({equal})")
    cols = ", ".join([f"r_{s}" for _, s in columns] + [f"s_{s}" for _, s in columns])
    mismatch = f"SELECT campaign, stage, {key}, present, {cols}\n{body}\nORDER BY campaign, stage, {key}"

    def describe(r: dict[str, Any]) -> str:
        label = f"  {kind} {r['campaign']} / {r['stage']} / {r[key]}"
        if not r["present"]:
            return f"{label}: has raw events but no {table} row"
        diffs = [f"{s} stored {r['s_' + s]!r} vs recount {r['r_' + s]!r}" for _, s in columns
                 if not _same(r["r_" + s], r["s_" + s])]
        return f"{label}: " + ", ".join(diffs)

    orphan_body = (f"FROM (SELECT campaign, stage, {key} FROM {table} FINAL WHERE {w}) AS s\n"
                   f"ANY LEFT JOIN (SELECT DISTINCT campaign, stage, entity AS {key}, 1 AS present FROM raw_events "
                   f"WHERE kind = {literal(raw_kind)} AND {w}) AS r\nUSING (campaign, stage, {key})\nWHERE present = 0")
    return [
        (f"{kind}s", mismatch, f"SELECT count() AS n {body}", describe),
        (f"{table} rows", f"SELECT campaign, stage, {key} {orphan_body}\nORDER BY campaign, stage, {key}",
         f"SELECT count() AS n {orphan_body}",
         lambda r: f"  {kind} {r['campaign']} / {r['stage']} / {r[key]}: has a {table} row but no raw events"),
    ]


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _job_checks(w: str) -> list[tuple[str, str, str, Any]]:
    checks = _entity_check("job", "v_job_recount", "job_state", "job_id", "job", JOB_COLUMNS, w)
    # job_attempts: the rows every reader counts (current_attempts) are one per attempt of the recount (none
    # missing, none beyond the last); rows beyond the job's attempts are left by winning copies and not counted
    counted = current_attempts("campaign, stage, job_id, count() AS n_rows, max(attempt) AS max_attempt").format(
        where=w) + " GROUP BY campaign, stage, job_id"
    body = (f"FROM (SELECT campaign, stage, job_id, attempts FROM v_job_recount WHERE {w}) AS r\n"
            f"ANY LEFT JOIN ({counted}) AS s\n"
            f"USING (campaign, stage, job_id)\nWHERE n_rows != attempts OR max_attempt != attempts")
    checks.append((
        "jobs' attempts", f"SELECT campaign, stage, job_id, attempts, n_rows, max_attempt {body}\n"
        "ORDER BY campaign, stage, job_id", f"SELECT count() AS n {body}",
        lambda r: f"  job {r['campaign']} / {r['stage']} / {r['job_id']}: {r['n_rows']} job_attempts row(s) up to "
                  f"attempt {r['max_attempt']} but raw events give {r['attempts']} attempt(s)"))
    return checks


def _file_checks(w: str) -> list[tuple[str, str, str, Any]]:
    return _entity_check("file", "v_file_recount", "file_state", "file", "file", FILE_COLUMNS, w)
