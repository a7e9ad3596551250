"""Which campaign and stage each job's events belong to: fixed names, or the job's own ad attributes.

A per-submission log (``log = ...`` of one submit file) holds one stage: ``--campaign/--stage`` name it.  A
schedd-wide log (``EVENT_LOG``) mixes every job of the schedd; with ``EVENT_LOG_JOB_AD_INFORMATION_ATTRS``
the schedd writes, after each event of a job, a JobAdInformation event (028) carrying those attributes of
the job's ad (``htcondor2.JobEventLog`` gives them as attributes of the 028 event).  :class:`Router` reads
each job's campaign, stage (and submission, site, ...) from there:

* an event of a job whose route is not known yet is **held** until the job's first 028 arrives; held events
  are bounded in number (``max_held``) and in age (``max_hold_s`` of *log* time: the newest event time
  read minus the held event's time, so a replay of the same files decides the same); past a bound they are
  dead letters with the reason (or, with ``default_campaign``/``default_stage``, routed there);
* a job whose 028 events do not carry the attributes is skipped, and counted (``ReadStats``), unless the
  defaults keep it;
* ``site`` from an attribute (``--attr site=MATCH_GLIDEIN_Site``) is per attempt: the ``started`` event
  waits for the 028 the schedd writes right after it (or the job's next event), and the site then holds
  for the events of that attempt.

Routing never changes an event id (ids are read from the event itself), so a job's events keep their ids
whatever the routing options.  The held events and each job's route are part of a follower's checkpoint
(:mod:`ingest.condor.checkpoint`), so a ``kill -9`` while events are held loses none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ingest.condor.mapping import EVENT_TYPES, JobState, ReadStats, _Mapper, _str_attr
from schemas.events import MAX_NAME_CHARS, DeadLetter, JobEvent, encode_event

log = logging.getLogger(__name__)

#: Contract fields an ``--attr NAME=ATTRIBUTE`` may fill from the job ad.
ROUTED_FIELDS = ("campaign", "stage", "submission", "site")
#: The campaign/stage of a held event before its route is known (never written out).
PENDING = "?"
JOB_AD_INFORMATION = 28
EXECUTE = 1


class RoutingError(ValueError):
    """Routing options that cannot work together; the message is a sentence for the user."""


@dataclass(frozen=True)
class Routing:
    """Where each job's campaign, stage, submission and site come from.

    ``campaign``/``stage``/``submission`` are fixed names (a per-submission log); ``attrs`` maps contract
    fields (``ROUTED_FIELDS``) to job ad attributes read from 028 events (a schedd-wide log).  A field
    may not be both.  ``default_campaign``/``default_stage`` keep the events of jobs whose ads do not
    carry the attributes (or that never show a 028 within the bounds)."""

    campaign: str | None = None
    stage: str | None = None
    submission: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)
    default_campaign: str | None = None
    default_stage: str | None = None
    max_held: int = 100_000
    max_hold_s: float = 3600.0

    def check(self) -> None:
        """Raise :class:`RoutingError` unless every field has exactly one source and names fit the contract."""
        for name in self.attrs:
            if name not in ROUTED_FIELDS:
                raise RoutingError(f"--attr {name}=...: {name!r} is not one of {', '.join(ROUTED_FIELDS)}.")
        for name, value in (("campaign", self.campaign), ("stage", self.stage), ("submission", self.submission)):
            if value is not None and name in self.attrs:
                raise RoutingError(f"--{name} and --{name}-attr (or --attr {name}=...) both name the {name}; "
                                   f"give one.")
        for name, value in (("campaign", self.campaign), ("stage", self.stage)):
            if value is None and name not in self.attrs:
                raise RoutingError(f"No {name}: pass --{name} NAME (a per-submission log) or --{name}-attr "
                                   f"ATTRIBUTE (a schedd-wide log with EVENT_LOG_JOB_AD_INFORMATION_ATTRS).")
        for name, value in (("default-campaign", self.default_campaign), ("default-stage", self.default_stage)):
            if value is not None and name.split("-")[1] not in self.attrs:
                raise RoutingError(f"--{name} only applies with --{name.split('-')[1]}-attr.")
        for opt, value in (("--campaign", self.campaign), ("--stage", self.stage), ("--submission", self.submission),
                           ("--default-campaign", self.default_campaign), ("--default-stage", self.default_stage),
                           *((f"--attr {k}=", v) for k, v in self.attrs.items())):
            if value is not None and not 0 < len(value) <= MAX_NAME_CHARS:
                raise RoutingError(f"{opt} must be 1 to {MAX_NAME_CHARS:,} characters (the contract's name bound), "
                                   f"not {len(value):,}.")
        if self.max_held < 0 or self.max_hold_s < 0:
            raise RoutingError("The hold bounds must be >= 0.")

    @property
    def needs_ads(self) -> bool:
        """Whether events wait for 028 events at all (no: a per-submission log, read as before)."""
        return bool(self.attrs)

    def describe(self) -> str:
        """The attributes that route a job, for messages: ``campaign=ATTR, stage=ATTR``."""
        return ", ".join(f"{k}={self.attrs[k]}" for k in ("campaign", "stage") if k in self.attrs) or "no attributes"


class _Held(msgspec.Struct, array_like=True):
    """One held event: the job, where it was read (file:byte), its record (campaign/stage PENDING)."""

    job: str
    where: str
    ts: float
    record: bytes


def _value(ad: Any, attr: str) -> str | None:
    """An ad attribute as a name: strings as they are, numbers as text; absent, empty or unexpanded: None."""
    try:
        v = ad.get(attr)
    except Exception:  # an expression that does not evaluate
        return None
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        v = v.strip()
        if not v or v.startswith("$$(") or v.lower() in ("undefined", "error"):
            return None
        return v
    return None


@dataclass
class Router:
    """Maps parsed events (through :class:`_Mapper`) and routes them; see the module docstring.

    ``feed(event, where)`` returns the records ready to publish (possibly earlier held ones);
    ``dead_letters`` collects what could not be routed; ``finish()`` ends a finite read (``convert``)."""

    routing: Routing
    mapper: _Mapper
    stats: ReadStats
    held: dict[str, list[_Held]] = field(default_factory=dict)  # job key -> its held events, in file order
    held_count: int = 0
    newest_ts: float = 0.0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    _next_sweep: float = 0.0

    def __post_init__(self) -> None:
        self.mapper.on_invalid = self._invalid

    @classmethod
    def create(cls, routing: Routing, schedd: str | None, stats: ReadStats) -> Router:
        mapper = _Mapper(routing.campaign or PENDING, routing.stage or PENDING, routing.submission, schedd,
                         stats=stats)
        return cls(routing, mapper, stats)

    @property
    def jobs(self) -> dict[str, JobState]:
        return self.mapper.jobs

    # -- input ------------------------------------------------------------------------------------

    def feed(self, ev: Any, where: str) -> list[JobEvent]:
        if not self.routing.needs_ads:  # a per-submission log: fixed names, nothing waits
            rec = self.mapper.record(ev, where)
            if rec is None:
                return []
            self.stats.job_events += 1
            return [rec]
        try:
            number = int(ev.get("EventTypeNumber", -1))
            if number != JOB_AD_INFORMATION and number not in EVENT_TYPES:
                self.mapper.record(ev, where)  # (counted; nothing to route)
                return []
            cluster, proc = int(ev.cluster), int(ev.proc)
        except Exception:
            number, cluster, proc = -1, -1, -1
        key = f"{cluster}.{proc}"
        if number == JOB_AD_INFORMATION:
            self.stats.events += 1
            self.stats.ads += 1
            if cluster < 0 or proc < 0:
                return []
            return self._ad(key, ev)
        state = self.mapper.jobs.get(key)
        route = state.route if state is not None else None
        skip = state.skip if state is not None else False
        rec = self.mapper.record(ev, where, (number, cluster, proc))
        if rec is None:
            return []
        if rec.ts > self.newest_ts:  # type: ignore[operator]
            self.newest_ts = rec.ts  # type: ignore[assignment]
        out: list[JobEvent] = []
        if skip:
            self.stats.events_without_attrs += 1
        elif route is not None and not (rec.type == "started" and "site" in self.routing.attrs):
            out.extend(self._release(key, route, None))
            out.append(self._emit(rec, route, None, where))
        else:
            if route is not None:  # a started event waiting for its site: an earlier one waits no more
                out.extend(self._release(key, route, None))
            self.held.setdefault(key, []).append(_Held(key, where, rec.ts, encode_event(rec)))  # type: ignore[arg-type]
            self.held_count += 1
        out.extend(self._enforce_bounds())
        return [e for e in out if e is not None]

    def _ad(self, key: str, ad: Any) -> list[JobEvent]:
        r, attrs = self.routing, self.routing.attrs
        campaign = r.campaign or (_value(ad, attrs["campaign"]) if "campaign" in attrs else None)
        stage = r.stage or (_value(ad, attrs["stage"]) if "stage" in attrs else None)
        submission = r.submission or (_value(ad, attrs["submission"]) if "submission" in attrs else None)
        site = _str_attr(ad, (attrs["site"],)) if "site" in attrs else None
        if site is not None and site.startswith("$$("):
            site = None
        state = self.mapper.jobs.get(key)
        defaulted = (campaign is None and r.default_campaign is not None) or (
            stage is None and r.default_stage is not None)
        campaign = campaign or r.default_campaign
        stage = stage or r.default_stage
        if campaign is None or stage is None:  # the ad does not carry them: skip the job (counted), now and later
            newly = (not state.skip) if state is not None else key in self.held  # (a 028 after a final event)
            if state is not None:
                state.skip, state.route = True, None
            if newly:
                self.stats.jobs_without_attrs += 1
                log.info("condor_log.job_without_attrs job=%s attrs=%s", key, r.describe())
            dropped = self.held.pop(key, [])
            self.held_count -= len(dropped)
            self.stats.events_without_attrs += len(dropped)
            return []
        if defaulted:
            self.stats.defaulted_events += len(self.held.get(key, ()))
        route = [campaign, stage, submission or ""]  # type: ignore[list-item]
        if state is not None:
            state.route, state.skip = route, False
            if site is not None and state.start is not None:
                state.site = site[:MAX_NAME_CHARS]  # the running attempt's later events say where it ran
        trigger = ad.get("TriggerEventTypeNumber")
        return self._release(key, route, site if trigger in (None, EXECUTE) else None)

    # -- output -----------------------------------------------------------------------------------

    def _release(self, key: str, route: list[str], site: str | None) -> list[JobEvent]:
        held = self.held.pop(key, None)
        if not held:
            return []
        self.held_count -= len(held)
        out = []
        for h in held:
            rec = msgspec.json.decode(h.record, type=JobEvent)
            ev = self._emit(rec, route, site if rec.type == "started" else None, h.where)
            if ev is not None:
                out.append(ev)
        return out

    def _emit(self, rec: JobEvent, route: list[str], site: str | None, where: str) -> JobEvent | None:
        campaign, stage, submission = route
        for name, value in (("campaign", campaign), ("stage", stage), ("submission", submission)):
            if len(value) > MAX_NAME_CHARS:
                self._dead(rec, where, f"the job's {name} attribute ({self.routing.attrs.get(name)}) is "
                                       f"{len(value):,} characters, more than the contract's {MAX_NAME_CHARS:,}")
                return None
        changes: dict[str, Any] = {"campaign": campaign, "stage": stage}
        if submission or "submission" in self.routing.attrs:
            changes["submission"] = submission or None
        if site is not None:
            changes["site"] = site[:MAX_NAME_CHARS]
        self.stats.job_events += 1
        return msgspec.structs.replace(rec, **changes)

    def _dead(self, rec: JobEvent, where: str, reason: str) -> None:
        raw = msgspec.json.encode({k: v for k, v in msgspec.structs.asdict(rec).items()
                                   if v is not None and k not in ("campaign", "stage")})
        self._add_dead(where, reason, raw)

    def _add_dead(self, where: str, reason: str, raw: bytes) -> None:
        source, _, position = where.rpartition(":")
        self.dead_letters.append(DeadLetter(source or where, f"byte {position}" if source else "", reason, raw))
        self.stats.dead_letters += 1
        log.warning("condor_log.dead_letter where=%s reason=%s", where, reason)

    def _invalid(self, ev: Any, where: str, reason: str) -> None:
        try:
            raw = msgspec.json.encode(dict(ev.items()) if hasattr(ev, "items") else str(ev), enc_hook=str)
        except Exception:
            raw = repr(ev).encode()
        self._add_dead(where, reason, raw)

    def take_dead_letters(self) -> list[DeadLetter]:
        out, self.dead_letters = self.dead_letters, []
        return out

    # -- bounds -----------------------------------------------------------------------------------

    def _expire(self, key: str, why: str) -> list[JobEvent]:
        """The held events of one job whose wait is over: routed if its route or the defaults allow it,
        else dead letters with ``why``."""
        state = self.mapper.jobs.get(key)
        route = state.route if state is not None else None
        if route is not None:
            return self._release(key, route, None)
        r = self.routing
        if r.default_campaign is not None or r.default_stage is not None:
            campaign = r.campaign or r.default_campaign
            stage = r.stage or r.default_stage
            if campaign is not None and stage is not None:
                self.stats.defaulted_events += len(self.held.get(key, ()))
                return self._release(key, [campaign, stage, r.submission or ""], None)
        held = self.held.pop(key, [])
        self.held_count -= len(held)
        for h in held:
            rec = msgspec.json.decode(h.record, type=JobEvent)
            self._dead(rec, h.where, f"no JobAdInformation (028) event of job {key} carrying {r.describe()} {why}; "
                                     f"set EVENT_LOG_JOB_AD_INFORMATION_ATTRS on the schedd, or pass "
                                     f"--default-campaign/--default-stage to keep such jobs")
        return []

    def _enforce_bounds(self) -> list[JobEvent]:
        out: list[JobEvent] = []
        r = self.routing
        while self.held_count > r.max_held and self.held:
            key = next(iter(self.held))  # the job held longest
            out.extend(self._expire(key, f"among the {r.max_held:,} most recent held events"))
        if self.held and self.newest_ts >= self._next_sweep:
            limit = self.newest_ts - r.max_hold_s
            for key in [k for k, hs in self.held.items() if hs[0].ts < limit]:
                out.extend(self._expire(key, f"within {r.max_hold_s:g} s (log time) of its first held event"))
            self._next_sweep = self.newest_ts + max(r.max_hold_s / 16, 1.0)
        return out

    def finish(self) -> list[JobEvent]:
        """The end of a finite read: every job still waiting is expired (routed, defaulted or dead)."""
        out: list[JobEvent] = []
        for key in list(self.held):
            out.extend(self._expire(key, "before the end of the log"))
        return out

    # -- checkpoint -------------------------------------------------------------------------------

    def held_state(self) -> list[_Held]:
        return [h for hs in self.held.values() for h in hs]

    def restore(self, held: list[_Held], newest_ts: float) -> None:
        self.held = {}
        for h in held:
            self.held.setdefault(h.job, []).append(h)
        self.held_count = len(held)
        self.newest_ts = newest_ts


__all__ = ["EVENT_TYPES", "PENDING", "ROUTED_FIELDS", "Router", "Routing", "RoutingError"]
