"""HTCondor events -> job-event/1 records: event numbers to types, usage to seconds, per-attempt state.

The per-job state (:class:`JobState`) is what ids, ``wall_s``, host, site and cores of later events depend
on; a follower saves it in its checkpoint so a restart maps the rest of the log exactly as one run would.
Campaign and stage are not decided here: :mod:`ingest.condor.routing` fills them in (fixed names, or the
job's own JobAdInformation attributes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import htcondor2
import msgspec

from schemas.events import (
    INT32_MAX,
    INT32_MIN,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    MIN_HOLD_CODE,
    JobEvent,
    decode_event,
    encode_event,
)

log = logging.getLogger(__name__)

#: HTCondor event number -> job-event/1 type.  Every other number (006 image size, 028 job ad
#: information, 035 cluster submitted, 040 file transfer, ...) is skipped.
EVENT_TYPES: dict[int, str] = {
    0: "submitted",
    1: "started",
    4: "evicted",
    5: "terminated",
    7: "shadow_exception",
    9: "removed",
    10: "suspended",
    11: "unsuspended",
    12: "held",
    13: "released",
    22: "disconnected",
    23: "reconnected",
    24: "reconnect_failed",
}

#: Events that end the running attempt: they get the attempt's ``wall_s`` (the glossary's badput and CPU
#: efficiency read it from the event that ended the attempt) and the attempt state is cleared afterwards.
_ATTEMPT_ENDING = frozenset({4, 5, 7, 9, 12, 24})
#: Events after which nothing more happens to the job: its per-job state is dropped to keep the
#: checkpoint as small as the number of live jobs.
_FINAL = frozenset({5, 9})

#: Where a site name may be found: the execute event's slot properties (``ExecuteProps``, filled from
#: the slot ad per JOB_EXECUTE_EVENT_ATTRS) or the event itself.  Glidein pools publish GLIDEIN_Site.
_SITE_ATTRS = ("GLIDEIN_Site", "MATCH_EXP_JOBGLIDEIN_Site", "MATCH_GLIDEIN_Site", "Site")

_USAGE_RE = re.compile(
    r"Usr\s+(\d+)\s+(\d+):(\d+):(\d+)(?:\.\d+)?\s*,\s*Sys\s+(\d+)\s+(\d+):(\d+):(\d+)(?:\.\d+)?"
)
_SINFUL_ALIAS_RE = re.compile(r"[?&]alias=([^&>]+)")
_SINFUL_HOST_RE = re.compile(r"^<(?:\[([^\]]+)\]|([^:>?]+))")

@dataclass
class ReadStats:
    """What a conversion or a follower read and what it had to leave out, so nothing is skipped silently.

    Every skip is also logged as a warning with the file and byte offsets."""

    events: int = 0  #: HTCondor events parsed, mapped or not (008 headers, 006 image size, ...)
    job_events: int = 0  #: job-event/1 records produced
    skipped_segments: int = 0  #: unparseable stretches skipped up to the next ``...`` line
    skipped_bytes: int = 0  #: bytes in those stretches and in incomplete ends of finished files
    invalid_events: int = 0  #: parsed events whose record broke the contract (logged, not produced)
    rotations: int = 0  #: files finished before going on to the next one of a rotation (LogFollower)
    late_bytes: int = 0  #: bytes appended to a rotated file after it was finished (LogFollower; not read)
    ads: int = 0  #: JobAdInformation (028) events read
    jobs_without_attrs: int = 0  #: jobs whose 028 events lack the campaign/stage attributes (skipped)
    events_without_attrs: int = 0  #: their job events, skipped
    defaulted_events: int = 0  #: job events given --default-campaign/--default-stage
    dead_letters: int = 0  #: job events that could not be routed (no 028 within the bounds, bad names)

    def summary(self) -> str:
        """One line of what was read and what was left out, for the closing line of a command."""
        parts = [f"{self.events:,} HTCondor events read, {self.job_events:,} job events written"]
        if self.ads:
            parts.append(f"{self.ads:,} job ad (028) events")
        if self.jobs_without_attrs or self.events_without_attrs:
            parts.append(f"{self.jobs_without_attrs:,} jobs without the campaign/stage attributes skipped "
                         f"({self.events_without_attrs:,} events)")
        if self.defaulted_events:
            parts.append(f"{self.defaulted_events:,} events given the default campaign/stage")
        if self.dead_letters:
            parts.append(f"{self.dead_letters:,} dead letters")
        parts.append(f"{self.skipped_segments:,} unparseable stretches skipped ({self.skipped_bytes:,} bytes)")
        parts.append(f"{self.invalid_events:,} refused by the contract")
        if self.rotations:
            parts.append(f"{self.rotations:,} rotations followed")
        if self.late_bytes:
            parts.append(f"{self.late_bytes:,} bytes written to rotated files after they were finished (not read)")
        return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# Field helpers
# --------------------------------------------------------------------------------------------------


def parse_usage(text: Any) -> tuple[float, float] | None:
    """``"Usr 0 01:10:00, Sys 0 00:01:00"`` -> ``(4200.0, 60.0)`` (user, system seconds); None if absent.

    HTCondor writes usage as days plus H:M:S; the bindings hand over the string unchanged."""
    if not isinstance(text, str):
        return None
    m = _USAGE_RE.search(text)
    if m is None:
        return None
    d1, h1, m1, s1, d2, h2, m2, s2 = (int(g) for g in m.groups())
    return (
        float(d1 * 86400 + h1 * 3600 + m1 * 60 + s1),
        float(d2 * 86400 + h2 * 3600 + m2 * 60 + s2),
    )


def _event_ts(ev: htcondor2.JobEvent) -> float:
    """Unix seconds of an event, keeping the sub-second part that ``JobEvent.timestamp`` truncates.

    ``timestamp`` interprets ``EventTime`` (which the bindings already converted to local time when the
    log carries ``...Z``) in the local zone; logs without a zone are local time of the writer, so run the
    converter in the schedd's time zone.  The same is computed here with ``fromisoformat`` (C) instead of
    ``timestamp``'s ``strptime``, which took a sixth of a conversion's time; anything it cannot read goes
    to ``timestamp`` itself."""
    raw = ev.get("EventTime")
    if isinstance(raw, str):
        head, dot, frac = raw.rstrip("Z").partition(".")
        try:
            ts = float(int(_local_seconds(head)))
        except ValueError:
            ts = float(ev.timestamp)
        if dot and frac.isdigit():
            ts += float("0." + frac)
        return ts
    return float(ev.timestamp)


def _local_seconds(text: str) -> float:
    """``YYYY-mm-ddTHH:MM:SS`` in the local zone -> Unix seconds (what ``JobEvent.timestamp`` computes)."""
    return datetime.fromisoformat(text).timestamp()


def _str_attr(ad: Mapping[str, Any] | None, names: tuple[str, ...]) -> str | None:
    """The first of ``names`` whose value in ``ad`` is a non-empty string (ClassAd lookups ignore case)."""
    if ad is None:
        return None
    for name in names:
        try:
            value = ad.get(name)
        except Exception:  # a ClassAd expression that does not evaluate
            continue
        if isinstance(value, str) and value.strip() and value.strip().lower() not in ("unknown", "undefined"):
            return value.strip()
    return None


def _cores(ad: Mapping[str, Any] | None) -> int | None:
    """Allocated cores (``Cpus``) of a resource table or slot ad, else the requested ones; None if absent."""
    if ad is None:
        return None
    for name in ("Cpus", "RequestCpus"):
        try:
            value = ad.get(name)
        except Exception:
            continue
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and value >= 1:
            return int(value)
    return None


def _host_of(ev: htcondor2.JobEvent) -> str | None:
    """Machine name of an execute event: from ``SlotName`` (slot1_3@wn05 -> wn05), else the ``alias`` of
    the ExecuteHost sinful string, else its address.  A name groups attempts per machine; the sinful
    string itself changes with every startd restart."""
    slot = ev.get("SlotName")
    if isinstance(slot, str) and "@" in slot:
        return slot.split("@", 1)[1] or None
    sinful = ev.get("ExecuteHost")
    if not isinstance(sinful, str) or not sinful:
        return None
    m = _SINFUL_ALIAS_RE.search(sinful)
    if m:
        return m.group(1)
    m = _SINFUL_HOST_RE.match(sinful)
    if m:
        return m.group(1) or m.group(2)
    return sinful


def event_id(schedd: str | None, cluster: int, proc: int, number: int, ts: float, ordinal: int) -> str:
    """The stable id of one log event: ``"{schedd}|{cluster}.{proc}|{NNN}|{ts in ms}|{ordinal}"``.

    Everything in it is read from the event itself, so rerunning the conversion, or converting a log that
    has grown, gives the same id to the same event.  ``ordinal`` counts earlier events of the same job with
    the same type and millisecond (file order), so two real events never share an id."""
    return f"{schedd or ''}|{cluster}.{proc}|{number:03d}|{round(ts * 1000)}|{ordinal}"


# --------------------------------------------------------------------------------------------------
# Event mapping with per-job state
# --------------------------------------------------------------------------------------------------


class _JobState(msgspec.Struct, omit_defaults=True):
    """What must survive between events of one job (and across restarts, in the checkpoint)."""

    start: float | None = None  # ts of the running attempt's `started`
    host: str | None = None
    site: str | None = None
    cores: int | None = None
    seen: dict[str, int] = msgspec.field(default_factory=dict)  # "NNN|ts_ms" -> count, for ordinals
    #: [campaign, stage, submission] from the job's JobAdInformation (028) attributes, once known
    route: list[str] | None = None
    #: the job's 028 events do not carry the campaign/stage attributes: its events are skipped (counted)
    skip: bool = False


JobState = _JobState


def _bounded(text: str | None, limit: int = MAX_NAME_CHARS) -> str | None:
    """``text`` cut to the contract's bound (``limit`` characters, the last one an ellipsis).

    A hold reason, host or site name longer than the contract allows only comes from a corrupt or hostile
    log; cutting the text keeps the event itself, which the numbers need, instead of losing it."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


@dataclass
class _Mapper:
    """Turns ``htcondor2.JobEvent`` objects into ``JobEvent`` records, one log in file order."""

    campaign: str
    stage: str
    submission: str | None
    schedd: str | None
    jobs: dict[str, _JobState] = field(default_factory=dict)
    stats: ReadStats = field(default_factory=ReadStats)
    #: called with (event, where, reason) for an event the contract refuses (a dead letter)
    on_invalid: Callable[[Any, str, str], None] | None = None

    def record(self, ev: htcondor2.JobEvent, where: str,
               head: tuple[int, int, int] | None = None) -> JobEvent | None:
        """The contract-checked record of one parsed event, or None (unmapped, or invalid: logged, counted).

        A ``JobEvent(...)`` built in Python skips msgspec's constraints, which only run when decoding; so the
        record goes through ``decode_event(encode_event(...))``, the very check every consumer applies.
        An event that cannot be mapped at all (a value HTCondor accepted but this reader cannot use) is
        skipped the same way rather than ending the conversion."""
        self.stats.events += 1
        try:
            rec = self.map(ev, head)
            if rec is None:
                return None
            rec = decode_event(encode_event(rec))
        except Exception as exc:  # a data boundary: one bad event must never end the conversion
            self.stats.invalid_events += 1
            reason = _bounded(str(exc), 500)
            log.warning("condor_log.invalid_event where=%s reason=%r", where, reason)
            if self.on_invalid is not None:
                self.on_invalid(ev, where, f"refused by the job-event/1 contract: {reason}")
            return None
        return rec  # type: ignore[return-value]

    def map(self, ev: htcondor2.JobEvent, head: tuple[int, int, int] | None = None) -> JobEvent | None:
        """The record of one event (None: not a job-event/1 type); ``head`` is its (number, cluster, proc)
        when the caller already read them (each ClassAd lookup costs microseconds)."""
        number = int(ev.get("EventTypeNumber", -1)) if head is None else head[0]
        kind = EVENT_TYPES.get(number)
        if kind is None:
            return None
        cluster, proc = (int(ev.cluster), int(ev.proc)) if head is None else head[1:]
        if cluster < 0 or proc < 0:  # cluster-level records name no job
            return None
        key = f"{cluster}.{proc}"
        ts = _event_ts(ev)
        state = self.jobs.setdefault(key, _JobState())

        seen_key = f"{number:03d}|{round(ts * 1000)}"
        ordinal = state.seen.get(seen_key, 0)
        state.seen[seen_key] = ordinal + 1

        fields: dict[str, Any] = {}
        if number == 1:
            props = ev.get("ExecuteProps")
            props = props if isinstance(props, Mapping) else None
            state.start = ts
            state.host = _bounded(_host_of(ev))
            state.site = _bounded(_str_attr(props, _SITE_ATTRS) or _str_attr(ev, _SITE_ATTRS))
            state.cores = _cores(props)
            fields.update(host=state.host, site=state.site, cores=state.cores)
        elif state.start is not None and number not in (0, 13):
            # Events during (or ending) a running attempt say where it ran.
            fields.update(host=state.host, site=state.site)

        if number in (4, 5):
            usage = parse_usage(ev.get("RunRemoteUsage"))
            if usage is not None:
                fields.update(cpu_user_s=usage[0], cpu_sys_s=usage[1])
            cores = _cores(ev) or state.cores
            if cores is not None:
                fields["cores"] = cores
        if number == 5 or (number == 4 and ev.get("TerminatedAndRequeued") is True):
            # (an eviction that is really an exit requeued by on_exit_remove = false carries the exit too)
            if ev.get("TerminatedNormally") is True:
                fields["exit_code"] = _int_or_none(ev.get("ReturnValue"))
            else:
                fields["signal"] = _int_or_none(ev.get("TerminatedBySignal"))
        if number == 12:
            # HoldReasonCode / HoldReasonSubCode (HTCondor's hold reason table); a value outside the
            # contract's bounds is left out rather than losing the held event with it.
            code, sub = _int_or_none(ev.get("HoldReasonCode")), _int_or_none(ev.get("HoldReasonSubCode"))
            if code is not None and MIN_HOLD_CODE <= code <= INT32_MAX:
                fields["hold_code"] = code
            if sub is not None and INT32_MIN <= sub <= INT32_MAX:
                fields["hold_subcode"] = sub
        if number in _ATTEMPT_ENDING and state.start is not None:
            wall = ts - state.start
            if wall >= 0:
                fields["wall_s"] = wall

        reason = _bounded(_reason(number, ev), MAX_REASON_CHARS)
        if reason is not None:
            fields["reason"] = reason

        if number in _ATTEMPT_ENDING:
            state.start = state.host = state.site = state.cores = None
        if number in _FINAL:
            del self.jobs[key]

        job_id = f"{self.schedd}#{key}" if self.schedd else key
        return JobEvent(
            event_id=event_id(self.schedd, cluster, proc, number, ts, ordinal),
            ts=ts,
            campaign=self.campaign,
            stage=self.stage,
            job_id=job_id,
            type=kind,  # type: ignore[arg-type]
            submission=self.submission,
            **fields,
        )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_REASON_ATTRS: dict[int, tuple[str, ...]] = {
    4: ("Reason",),
    7: ("Message",),
    9: ("Reason",),
    12: ("HoldReason",),
    13: ("Reason",),
    22: ("DisconnectReason",),
    24: ("Reason",),
}


def _reason(number: int, ev: htcondor2.JobEvent) -> str | None:
    names = _REASON_ATTRS.get(number)
    return _str_attr(ev, names) if names else None

