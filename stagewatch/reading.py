"""Reading numbers and drill-down lists back from a store, through the shared SQL definitions."""

from __future__ import annotations

import time
from typing import Any, Callable

from processors.forecast import DEFAULT_RATE_WINDOW_H, window_seconds
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
                as_of: float | None = None, threshold_s: float = STALL_THRESHOLD_S,
                forecast: "bool | Callable[[dict[str, Any]], bool]" = False,
                rate_window_h: float = DEFAULT_RATE_WINDOW_H) -> dict[str, Any]:
    """Every stage's numbers; with ``forecast``, also located_rate_per_h and eta (FORECAST_NUMBERS) per stage
    and ``rate_window_h`` at the top (what `status` shows: the Engine's numbers have no forecast).

    ``forecast`` may be a function of the result without it, saying whether to read it (the compact
    overview reads it only when the ETA column can show: views.overview.eta_can_show); when it says no,
    the result carries ``forecast_omitted``."""
    as_of = time.time() if as_of is None else as_of
    rows = store.query(queries.status_sql(campaign, stage, as_of=as_of, threshold_s=threshold_s))
    stages = [_shape(r) for r in rows]
    out: dict[str, Any] = {"as_of": as_of, "stall_threshold_s": threshold_s, "stages": stages}
    if callable(forecast):
        forecast = forecast(out)
        out["forecast_omitted"] = not forecast
    if forecast:
        out["rate_window_h"] = rate_window_h
        found = read_forecast(store, campaign, stage, as_of=as_of, rate_window_h=rate_window_h) if stages else {}
        for st in stages:
            st.update(found.get((st["campaign"], st["stage"]), {"located_rate_per_h": 0.0, "eta": None}))
    return out


# ------------------------------------------------------------------------------ sites, holds, forecast
def read_forecast(store: Store, campaign: str | None = None, stage: str | None = None, *, as_of: float,
                  rate_window_h: float = DEFAULT_RATE_WINDOW_H) -> dict[tuple[str, str], dict[str, Any]]:
    """(campaign, stage) -> {located_rate_per_h, eta} (schemas.queries.FORECAST_SQL)."""
    sql = queries.forecast_sql(campaign, stage, as_of=as_of, window_s=window_seconds(rate_window_h))
    return {(r["campaign"], r["stage"]): {"located_rate_per_h": float(r["located_rate_per_h"]),
                                         "eta": None if r["eta"] is None else float(r["eta"])}
            for r in store.query(sql)}


def read_sites(store: Store, campaign: str | None = None, stage: str | None = None) -> list[dict[str, Any]]:
    """Per execution site of each stage, in `sites --format json`'s shape, most badput first (SITES_SQL)."""
    out = []
    for r in store.query(queries.sites_sql(campaign, stage)):
        out.append({
            "campaign": r["campaign"], "stage": r["stage"], "site": r["site"], "attempts": int(r["attempts"]),
            "restarts": int(r["restarts"]),
            "restarts_by_cause": {c: int(r[f"restarts_{c}"]) for c in RESTART_CAUSES},
            "badput_core_hours": float(r["badput_core_hours"]),
            "cpu_efficiency_pct": None if r["cpu_efficiency_pct"] is None else float(r["cpu_efficiency_pct"]),
            "jobs_held": int(r["jobs_held"]),
        })
    return out


def read_holds(store: Store, campaign: str | None = None, stage: str | None = None, *,
               limit: int = 10) -> list[dict[str, Any]]:
    """The top hold reasons of each stage's held jobs, with counts and the oldest "held since" (HOLDS_SQL)."""
    return [{"campaign": r["campaign"], "stage": r["stage"], "hold_reason": r["hold_reason"],
             "hold_code": None if r["hold_code"] is None else int(r["hold_code"]),
             "hold_subcode": None if r["hold_subcode"] is None else int(r["hold_subcode"]),
             "jobs_held": int(r["jobs_held"]),
             "held_since_ts": None if r["held_since_ts"] is None else float(r["held_since_ts"])}
            for r in store.query(queries.holds_sql(campaign, stage, limit=limit))]


def read_held_jobs(store: Store, campaign: str, stage: str, *, limit: int) -> list[dict[str, Any]]:
    """Held jobs with their hold reason, codes and held since (for `jobs --state held`), longest held first."""
    return store.query(queries.held_jobs_sql(campaign, stage, limit=limit))


def read_missing_files(store: Store, campaign: str, stage: str) -> list[str]:
    return [r["file"] for r in store.query(queries.missing_files_sql(campaign, stage))]


def read_files(store: Store, campaign: str, stage: str, buckets: list[str] | None,
               limit: int | None = None) -> list[dict[str, Any]]:
    """The stage's input files in `buckets`, by name; the first `limit` of them when given."""
    sql = queries.files_sql(campaign, stage, buckets)
    return store.query(sql if limit is None else f"{sql}\nLIMIT {int(limit)}")


def count_files(store: Store, campaign: str, stage: str, buckets: list[str] | None) -> int:
    """How many files `read_files` would list without its limit (to say when a list is capped)."""
    rows = store.query(f"SELECT count() AS n FROM ({queries.files_sql(campaign, stage, buckets)}) AS f")
    return int(rows[0]["n"]) if rows else 0


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


def known_stages(store: Store, tables: tuple[str, ...] = ("stage_numbers",)) -> list[tuple[str, str]]:
    """The (campaign, stage) pairs that have rows in any of `tables`."""
    found: set[tuple[str, str]] = set()
    for table in tables:
        found.update((r["campaign"], r["stage"]) for r in
                     store.query(f"SELECT DISTINCT campaign, stage FROM {table}"))
    return sorted(found)


class UnknownStage(LookupError):
    """A campaign or stage the store has no numbers for; the message lists the known ones."""


def require_known(store: Store, campaign: str | None, stage: str | None, *,
                  tables: tuple[str, ...] = ("stage_numbers",)) -> None:
    """Raise UnknownStage unless the store has numbers for this campaign (and stage).

    One cheap query (DISTINCT over stage_numbers): callers run it only when a filtered read came back
    empty, so `stagewatch status` pays nothing when names match. `verify` also counts stages that
    only have raw events (an interrupted replay): those are what it must report, not "unknown".
    """
    from stagewatch.console import did_you_mean

    if campaign is None and stage is None:
        return
    known = known_stages(store, tables)
    campaigns = sorted({c for c, _ in known})
    if campaign is not None and campaign not in campaigns:
        raise UnknownStage(f"No campaign {campaign!r} in this store; " + did_you_mean(campaign, campaigns, "campaign"))
    if stage is None:
        return
    stages = sorted({s for c, s in known if campaign is None or c == campaign})
    if stage not in stages:
        where = f" in campaign {campaign!r}" if campaign is not None else ""
        raise UnknownStage(f"No stage {stage!r}{where}; " + did_you_mean(stage, stages, "stage"))


def count_jobs(store: Store, campaign: str, stage: str, *, state: str | None) -> int:
    """How many jobs `read_jobs` would list without its limit (to say when a list is capped)."""
    job_filter = queries.JOB_STATE_FILTERS[state] if state else "1"
    rows = store.query(f"SELECT count() AS n FROM job_state FINAL WHERE {queries.where(campaign, stage)} "
                       f"AND {job_filter}")
    return int(rows[0]["n"]) if rows else 0


def read_last_submissions(store: Store, campaign: str, stage: str) -> dict[str, str | None]:
    """For each input file of the stage that a job had, the submission that last had it.

    "Last had" is the file's latest delivered/consumed/skipped/failed event in the glossary's event
    order (ts, then type in lifecycle order, then event_id: duplicates and arrival order change
    nothing); its submission, or else the submission of the job it names. Files no job ever had
    are absent. Two stage-wide queries (never one that grows with the list of files).
    """
    from processors.files import FILE_TYPE_RANK

    w = queries.where(campaign, stage)
    rows = store.query(f"SELECT DISTINCT entity, ts, type, event_id, submission, job_id FROM raw_events "
                       f"WHERE {w} AND kind = 'file' AND type IN ('delivered', 'consumed', 'skipped', 'failed')")
    latest: dict[str, tuple] = {}
    for r in rows:
        key = (float(r["ts"]), FILE_TYPE_RANK[r["type"]], r["event_id"])
        have = latest.get(r["entity"])
        if have is None or key > have[0]:
            latest[r["entity"]] = (key, r["submission"] or "", r["job_id"] or "")
    by_job = {}
    if any(not sub and job for _, sub, job in latest.values()):
        by_job = {r["job_id"]: r["submission"] for r in
                  store.query(f"SELECT job_id, submission FROM job_state FINAL WHERE {w} AND submission != ''")}
    return {f: (sub or by_job.get(job) or None) for f, (_, sub, job) in latest.items()}


def find_job(store: Store, job_id: str) -> list[tuple[str, str]]:
    """The (campaign, stage) pairs that have a job with this id (to run `job ID` without naming them)."""
    rows = store.query(f"SELECT DISTINCT campaign, stage FROM raw_events WHERE kind = 'job' "
                       f"AND entity = {queries.literal(job_id)} ORDER BY campaign, stage")
    return [(r["campaign"], r["stage"]) for r in rows]
