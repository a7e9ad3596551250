"""Rows of the current-state tables, derived from the domain views.

These are plain dicts keyed by the column names of schemas/sql/tables.sql; the store adapters only
insert them. Each row carries a `version` that grows with every event that can change it, so the
ReplacingMergeTree tables keep the newest row, and writing the same row twice changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from processors import files as filemod
from processors.jobs import JobSummary
from processors.numbers import RESTART_CAUSES, core_hours, ratio_pct
from schemas.events import FileEvent, JobEvent

if TYPE_CHECKING:
    from processors.stage import StageState


def job_row(st: "StageState", s: JobSummary) -> dict[str, Any]:
    last = s.attempts[-1] if s.attempts else None
    row: dict[str, Any] = {
        "campaign": st.campaign, "stage": st.stage, "job_id": s.job_id, "state": s.state,
        "submission": s.submission or "", "attempts": len(s.attempts), "restarts": s.restarts,
    }
    for cause in RESTART_CAUSES:
        row[f"restarts_{cause}"] = s.restart_causes.get(cause, 0)
    row.update({
        "exit_code": s.exit_code, "signal": s.signal, "completed_ok": int(s.completed_ok),
        "cpu_terminations": s.cpu_terminations, "cpu_ms": s.cpu_ms, "core_wall_ms": s.core_wall_ms,
        "cpu_efficiency_pct": ratio_pct(s.cpu_ms, s.core_wall_ms) if s.cpu_terminations and s.core_wall_ms else None,
        "badput_core_ms": s.badput_core_ms, "badput_core_hours": core_hours(s.badput_core_ms),
        "first_ts": s.first_ts, "last_ts": s.last_ts, "submitted_ts": s.submitted_ts,
        "site": (last.site or "") if last else "", "host": (last.host or "") if last else "",
        "hold_reason": s.hold_reason or "", "hold_code": s.hold_code, "hold_subcode": s.hold_subcode,
        "held_ts": s.held_ts, "pre_start_cpu_terminations": s.pre_start_cpu_terminations,
        "pre_start_cpu_ms": s.pre_start_cpu_ms, "pre_start_core_wall_ms": s.pre_start_core_wall_ms,
        "events": s.events, "version": s.version or s.events,
    })
    return row


def job_attempt_rows(st: "StageState", s: JobSummary) -> Iterator[dict[str, Any]]:
    for a in s.attempts:
        yield {
            "campaign": st.campaign, "stage": st.stage, "job_id": s.job_id, "attempt": a.number,
            "started_ts": a.started_ts, "ended_ts": a.ended_ts, "ended_by": a.ended_by or "",
            "wall_s": a.wall_s, "cores": a.cores, "badput_core_ms": a.badput_core_ms,
            "exit_code": a.exit_code, "signal": a.signal, "site": a.site or "", "host": a.host or "",
            "restart_cause": a.restart_cause or "", "cpu_terminations": a.cpu_terminations, "cpu_ms": a.cpu_ms,
            "core_wall_ms": a.core_wall_ms,
            "version": s.version or s.events,
        }


def file_row(st: "StageState", name: str) -> dict[str, Any]:
    """Row of a settled file (the engine settles before it asks for rows)."""
    ent = st.files[name]
    f = ent.view
    return {
        "campaign": st.campaign, "stage": st.stage, "file": name,
        "is_input": int(f.is_input), "bucket": (ent.bucket or "") if f.is_input else "",
        "is_output": int(f.declared_output), "located": int(f.located), "location": f.location or "",
        "parents": sorted(f.parents), "outputs": sorted(st.children.get(name, ())),
        "consumed": int(f.consumed), "disposition": f.disposition or "", "disposition_job": f.disposition_job or "",
        "deliveries": f.deliveries, "first_ts": f.first_ts, "last_ts": f.last_ts, "located_ts": f.located_ts,
        "input_located_ts": filemod.input_located_ts(name, st.outputs_of(name)) if f.is_input else None,
        "version": ent.version,
    }


def stage_row(st: "StageState") -> dict[str, Any]:
    st.settle()
    return st.totals.row()


RAW_COLUMNS: tuple[str, ...] = (
    "campaign", "stage", "kind", "entity", "event_id", "type", "ts", "submission", "job_id", "file",
    "exit_code", "signal", "cpu_user_s", "cpu_sys_s", "wall_s", "cores", "reason", "site", "host",
    "hold_code", "hold_subcode", "parents", "location", "source", "ingested_ts",
)


def raw_event_row(ev: Any, source: str, ingested_ts: float) -> list[Any]:
    """The raw_events row of one accepted event, in RAW_COLUMNS order (a list: this is the hot path)."""
    if ev.__class__.__name__ == "JobEvent":
        return [ev.campaign, ev.stage, "job", ev.job_id, ev.event_id, ev.type, ev.ts, ev.submission or "",
                ev.job_id, "", ev.exit_code, ev.signal, ev.cpu_user_s, ev.cpu_sys_s, ev.wall_s, ev.cores,
                ev.reason or "", ev.site or "", ev.host or "", ev.hold_code, ev.hold_subcode, [], "", source,
                ingested_ts]
    return [ev.campaign, ev.stage, "file", ev.file, ev.event_id, ev.type, ev.ts, ev.submission or "",
            ev.job_id or "", ev.file, None, None, None, None, None, None, "", "", "", None, None, ev.parents or [],
            ev.location or "", source, ingested_ts]


def event_from_raw_row(row: dict[str, Any]) -> Any:
    """Rebuild the event of a raw_events row (the inverse of raw_event_row).

    Written out field by field: it runs once per stored event whenever a stage is loaded back (replay,
    `--at`, history), so it avoids per-call imports and intermediate dicts.
    """
    get = row.get
    if row["kind"] == "job":
        ec, sig, cores, hc, hs = row["exit_code"], row["signal"], row["cores"], get("hold_code"), get("hold_subcode")
        cu, cs, wall = row["cpu_user_s"], row["cpu_sys_s"], row["wall_s"]
        return JobEvent(
            event_id=row["event_id"], ts=float(row["ts"]), campaign=row["campaign"], stage=row["stage"],
            type=row["type"], submission=row["submission"] or None, job_id=row["entity"],
            reason=row["reason"] or None, site=row["site"] or None, host=row["host"] or None,
            exit_code=None if ec is None else int(ec), signal=None if sig is None else int(sig),
            cores=None if cores is None else int(cores),
            hold_code=None if hc is None else int(hc),  # absent from rows an older query selects
            hold_subcode=None if hs is None else int(hs),
            # a store may give Float64 columns back as int (0) or Decimal: the contract says float
            cpu_user_s=None if cu is None else float(cu), cpu_sys_s=None if cs is None else float(cs),
            wall_s=None if wall is None else float(wall))
    return FileEvent(event_id=row["event_id"], ts=float(row["ts"]), campaign=row["campaign"], stage=row["stage"],
                     type=row["type"], submission=row["submission"] or None, file=row["entity"],
                     job_id=row["job_id"] or None, parents=list(row["parents"]) or None,
                     location=row["location"] or None)


def dead_letter_row(dl: Any, received_ts: float) -> dict[str, Any]:
    """The dead_letter row of a rejected record (schemas.events.DeadLetter).

    ``raw`` keeps the exact bytes: their text when they are UTF-8, else ``hex:`` and their hex
    (schemas.events.raw_to_text; raw_from_text and the SQL in schemas/sql/tables.sql read them back).
    """
    from schemas.events import raw_to_text

    return {"received_ts": received_ts, "source": dl.source, "position": dl.position, "reason": dl.reason,
            "raw": raw_to_text(bytes(dl.raw))}
