"""Reading numbers and drill-down lists back from a store, through the shared SQL definitions."""

from __future__ import annotations

import time
from typing import Any

from processors.numbers import NUMBERS, RESTART_CAUSES, STALL_THRESHOLD_S
from schemas import queries
from stagewatch.store.base import Store

REPORTED = [n.name for n in NUMBERS]


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    """A status row in the documented JSON shape: campaign, stage, then every number by its name."""
    out: dict[str, Any] = {"campaign": row["campaign"], "stage": row["stage"]}
    for name in REPORTED:
        if name == "restarts_by_cause":
            out[name] = {c: int(row[f"restarts_{c}"]) for c in RESTART_CAUSES}
        elif name == "stalled":
            out[name] = bool(row["stalled"])
        elif name in ("completion_pct", "badput_core_hours"):
            out[name] = float(row[name])
        elif name == "cpu_efficiency_pct":
            out[name] = None if row[name] is None else float(row[name])
        elif name in ("last_event_ts", "last_progress_ts"):
            out[name] = None if row[name] is None else float(row[name])
        else:
            out[name] = int(row[name])
    return out


def read_status(store: Store, campaign: str | None = None, stage: str | None = None, *,
                as_of: float | None = None, threshold_s: float = STALL_THRESHOLD_S) -> dict[str, Any]:
    as_of = time.time() if as_of is None else as_of
    rows = store.query(queries.status_sql(campaign, stage, as_of=as_of, threshold_s=threshold_s))
    return {"as_of": as_of, "stall_threshold_s": threshold_s, "stages": [_shape(r) for r in rows]}


def read_missing_files(store: Store, campaign: str, stage: str) -> list[str]:
    return [r["file"] for r in store.query(queries.missing_files_sql(campaign, stage))]


def read_files(store: Store, campaign: str, stage: str, buckets: list[str] | None) -> list[dict[str, Any]]:
    return store.query(queries.files_sql(campaign, stage, buckets))


def read_jobs(store: Store, campaign: str, stage: str, *, state: str | None, order: str, limit: int) -> list[dict]:
    job_filter = queries.JOB_STATE_FILTERS[state] if state else "1"
    return store.query(queries.JOBS_SQL.format(where=queries.where(campaign, stage), job_filter=job_filter,
                                               order=order, limit=int(limit)))


def read_job(store: Store, campaign: str, stage: str, job_id: str) -> dict[str, Any]:
    w = queries.where(campaign, stage)
    jid = queries.literal(job_id)
    return {
        "attempts": store.query(queries.ATTEMPTS_SQL.format(where=w, job_id=jid)),
        "events": store.query(queries.JOB_EVENTS_SQL.format(where=w, job_id=jid)),
    }


def known_stages(store: Store) -> list[tuple[str, str]]:
    return [(r["campaign"], r["stage"]) for r in
            store.query("SELECT DISTINCT campaign, stage FROM stage_numbers ORDER BY campaign, stage")]
