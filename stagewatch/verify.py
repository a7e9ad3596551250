"""`stagewatch verify`: recompute every number from raw events in SQL and compare with the stored ones.

The recount (views v_job_recount and v_file_recount, schemas/sql/views.sql) is independent code: it
reads only raw_events and implements the glossary in ClickHouse SQL, while the stored numbers come
from the Python engine (embedded replay or Faust workers). Agreement of the two is the trust check;
every difference is reported down to the job or file that causes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.numbers import COUNTERS, FILE_BUCKETS, JOB_STATES, RESTART_CAUSES
from schemas.queries import where
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

JOB_DIFF_COLUMNS = ("state", "attempts", "restarts", *(f"restarts_{c}" for c in RESTART_CAUSES), "completed_ok",
                    "cpu_terminations", "cpu_ms", "core_wall_ms", "badput_core_ms", "events")


@dataclass
class VerifyReport:
    stages_checked: int = 0
    differences: list[str] = field(default_factory=list)

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
    report = VerifyReport()
    expected = recount(store, campaign, stage)
    stored = {(r["campaign"], r["stage"]): r for r in
              store.query(f"SELECT * FROM stage_numbers FINAL WHERE {where(campaign, stage)}")}
    for key in sorted(set(expected) | set(stored)):
        report.stages_checked += 1
        label = f"{key[0]} / {key[1]}"
        if key not in stored:
            report.differences.append(f"{label}: has raw events but no stored numbers")
            continue
        if key not in expected:
            report.differences.append(f"{label}: has stored numbers but no raw events")
            continue
        exp, got = expected[key], stored[key]
        for name in (*COUNTERS, "events"):
            if int(got[name]) != exp[name]:
                report.differences.append(f"{label}: {name} stored {got[name]} but raw events give {exp[name]}")
        for name in ("first_event_ts", "last_event_ts", "last_progress_ts"):
            g = None if got[name] is None else float(got[name])
            if g != exp[name]:
                report.differences.append(f"{label}: {name} stored {g} but raw events give {exp[name]}")
    if report.differences:
        report.differences += entity_differences(store, campaign, stage, limit=max_entities)
    return report


def entity_differences(store: Store, campaign: str | None, stage: str | None, *, limit: int) -> list[str]:
    """Name the jobs and files whose stored state differs from the recount (to find the cause)."""
    w = where(campaign, stage)
    cols = ", ".join(JOB_DIFF_COLUMNS)
    stored = {(r["campaign"], r["stage"], r["job_id"]): r for r in
              store.query(f"SELECT campaign, stage, job_id, {cols} FROM job_state FINAL WHERE {w}")}
    out = []
    for r in store.query(f"SELECT campaign, stage, job_id, {cols} FROM v_job_recount WHERE {w}"):
        s = stored.get((r["campaign"], r["stage"], r["job_id"]))
        diffs = [c for c in JOB_DIFF_COLUMNS if s is None or int(s[c] if c != "state" else 0) != int(
            r[c] if c != "state" else 0) or (c == "state" and s[c] != r[c])]
        if diffs:
            out.append(f"  job {r['campaign']} / {r['stage']} / {r['job_id']}: " + (
                "no stored state" if s is None else ", ".join(f"{c} stored {s[c]} vs {r[c]}" for c in diffs)))
        if len(out) >= limit:
            return out
    files = {(r["campaign"], r["stage"], r["file"]): r["bucket"] for r in
             store.query(f"SELECT campaign, stage, file, bucket FROM file_state FINAL WHERE {w} AND is_input = 1")}
    for r in store.query(f"SELECT campaign, stage, file, bucket FROM v_file_recount WHERE {w} AND is_input = 1"):
        got = files.get((r["campaign"], r["stage"], r["file"]))
        if got != r["bucket"]:
            out.append(f"  file {r['campaign']} / {r['stage']} / {r['file']}: bucket stored {got} vs {r['bucket']}")
        if len(out) >= limit:
            break
    return out
