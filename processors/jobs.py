"""Per-job state: what one job's events say about it, recomputed from that job's own few events.

A job's summary depends only on the set of its events, sorted by (ts, lifecycle rank, event_id), so
the same events in any arrival order, with any duplicates, give the same summary. Recomputing a job
from its own events (typically under twenty) is cheap and removes every incremental-update corner case
that made evicted-then-restarted jobs miscounted elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from schemas.events import JobEvent

#: Tie order for events of one job at the same `ts` (then event_id): the order a job lives through.
JOB_TYPE_ORDER: tuple[str, ...] = (
    "submitted", "started", "disconnected", "reconnected", "reconnect_failed", "suspended", "unsuspended",
    "held", "released", "evicted", "shadow_exception", "terminated", "removed",
)
JOB_TYPE_RANK = {t: i for i, t in enumerate(JOB_TYPE_ORDER)}

STATE_AFTER: dict[str, str] = {
    "submitted": "idle", "evicted": "idle", "shadow_exception": "idle", "reconnect_failed": "idle",
    "released": "idle",
    "started": "running", "reconnected": "running", "unsuspended": "running", "disconnected": "running",
    "held": "held",
    "suspended": "suspended",
    "terminated": "completed",
    "removed": "removed",
}

#: Events that end an attempt without the job finishing; the first one after a `started` is the
#: cause of the next restart.
ATTEMPT_ENDERS = frozenset({"evicted", "shadow_exception", "reconnect_failed", "held"})

MS = 1000  # sums are kept as integer milliseconds: exact, order-independent, no overflow


def sort_key(ev: JobEvent) -> tuple[float, int, str]:
    return (ev.ts, JOB_TYPE_RANK[ev.type], ev.event_id)  # type: ignore[arg-type]


@dataclass(slots=True)
class Attempt:
    """One try at running the job: from a `started` to what ended it (or still running)."""

    number: int
    started_ts: float
    ended_ts: float | None = None
    ended_by: str | None = None  # terminated / evicted / ... / unknown (a silent restart) / None (open)
    wall_s: float | None = None
    cores: int = 1
    badput_core_ms: int = 0
    exit_code: int | None = None
    signal: int | None = None
    site: str | None = None
    host: str | None = None
    # the cause of the restart that interrupted this attempt (the next `started`), None when none did:
    # restarts and their badput belong to the site of the attempt they interrupted
    restart_cause: str | None = None
    # `terminated` events that ended this attempt (or came after it ended, before the next start),
    # with CPU, wall and cores: their CPU and wall time belong to this attempt's site
    cpu_terminations: int = 0
    cpu_ms: int = 0
    core_wall_ms: int = 0


@dataclass(slots=True)
class JobSummary:
    job_id: str
    state: str
    events: int
    first_ts: float
    last_ts: float
    submitted_ts: float | None
    attempts: list[Attempt] = field(default_factory=list)
    restart_causes: dict[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    signal: int | None = None
    completed_ok: bool = False
    cpu_terminations: int = 0
    cpu_ms: int = 0
    core_wall_ms: int = 0
    badput_core_ms: int = 0
    submission: str | None = None
    last_terminated_ts: float | None = None
    # the current hold (state == "held"): the latest held event's reason, HTCondor codes and ts
    hold_reason: str | None = None
    hold_code: int | None = None
    hold_subcode: int | None = None
    held_ts: float | None = None
    # CPU of `terminated` events before the job's first `started`: no attempt, so site `unknown`
    pre_start_cpu_terminations: int = 0
    pre_start_cpu_ms: int = 0
    pre_start_core_wall_ms: int = 0
    version: int = 0  # of the job's event set (processors.stage.entity_version), set by whoever holds the set

    @property
    def restarts(self) -> int:
        return max(0, len(self.attempts) - 1)

    def contribution(self) -> dict[str, int]:
        """This job's share of its stage's counters (added/subtracted as the job changes)."""
        c: dict[str, int] = {"events": self.events, "jobs": 1, f"jobs_{self.state}": 1}
        if self.state == "completed":
            c["jobs_completed_ok" if self.completed_ok else "jobs_completed_failed"] = 1
        if self.attempts:
            c["job_attempts"] = len(self.attempts)
        if self.restarts:
            c["restarts"] = self.restarts
            for cause, n in self.restart_causes.items():
                c[f"restarts_{cause}"] = n
        if self.cpu_terminations:
            c["cpu_terminations"] = self.cpu_terminations
            c["cpu_ms"] = self.cpu_ms
            c["core_wall_ms"] = self.core_wall_ms
        if self.badput_core_ms:
            c["badput_core_ms"] = self.badput_core_ms
        return c


def _cores(*candidates: int | None) -> int:
    for c in candidates:
        if c is not None:
            return c
    return 1


def summarize_job(events: Sequence[JobEvent]) -> JobSummary:
    """Replay one job's events (already sorted by sort_key, no duplicates) into its summary.

    Cores of an attempt: the `cores` of the event that ended it, else of its `started`, else the first
    event of the job that carries `cores`, else 1.
    """
    first = events[0]
    job_cores = next((e.cores for e in events if e.cores is not None), None)
    s = JobSummary(job_id=first.job_id, state=STATE_AFTER[first.type], events=len(events), first_ts=first.ts,
                   last_ts=events[-1].ts, submitted_ts=None)
    start: JobEvent | None = None
    ender: JobEvent | None = None  # first attempt-ender after the current start
    terminated_in_attempt = False
    causes: dict[str, int] = {}
    last_term: JobEvent | None = None
    for ev in events:
        t = ev.type
        s.state = STATE_AFTER[t]
        if ev.submission and s.submission is None:
            s.submission = ev.submission
        if t == "submitted":
            if s.submitted_ts is None:
                s.submitted_ts = ev.ts
        elif t == "started":
            if start is not None:
                prev = s.attempts[-1]
                cause = ender.type if ender is not None else "unknown"
                causes[cause] = causes.get(cause, 0) + 1
                prev.restart_cause = cause
                if not terminated_in_attempt:
                    end_ev = ender if ender is not None else ev
                    wall = ender.wall_s if (ender is not None and ender.wall_s is not None) else end_ev.ts - start.ts
                    cores = _cores(ender.cores if ender is not None else None, start.cores, job_cores)
                    prev.badput_core_ms = round(wall * cores * MS)
                    s.badput_core_ms += prev.badput_core_ms
                    prev.ended_ts = end_ev.ts if ender is not None else ev.ts
                    prev.ended_by = cause
                    prev.wall_s = wall
                    prev.cores = cores
            start, ender, terminated_in_attempt = ev, None, False
            s.attempts.append(Attempt(number=len(s.attempts) + 1, started_ts=ev.ts,
                                      cores=_cores(ev.cores, job_cores), site=ev.site, host=ev.host))
        elif t in ATTEMPT_ENDERS:
            if start is not None and ender is None:
                ender = ev  # the restart cause, even after a terminate (the glossary's rule)
                if not terminated_in_attempt:
                    a = s.attempts[-1]
                    a.ended_ts, a.ended_by = ev.ts, t
                    a.wall_s = ev.wall_s if ev.wall_s is not None else ev.ts - start.ts
        elif t == "terminated":
            last_term = ev
            s.last_terminated_ts = ev.ts
            cores = _cores(ev.cores, start.cores if start is not None else None, job_cores)
            if ev.cpu_user_s is not None and ev.cpu_sys_s is not None and ev.wall_s is not None:
                cpu_ms, core_wall_ms = round((ev.cpu_user_s + ev.cpu_sys_s) * MS), round(ev.wall_s * cores * MS)
                s.cpu_terminations += 1
                s.cpu_ms += cpu_ms
                s.core_wall_ms += core_wall_ms
                if s.attempts:
                    a = s.attempts[-1]
                    a.cpu_terminations += 1
                    a.cpu_ms += cpu_ms
                    a.core_wall_ms += core_wall_ms
                else:
                    s.pre_start_cpu_terminations += 1
                    s.pre_start_cpu_ms += cpu_ms
                    s.pre_start_core_wall_ms += core_wall_ms
            if start is not None and not terminated_in_attempt:
                terminated_in_attempt = True
                a = s.attempts[-1]
                a.ended_ts, a.ended_by = ev.ts, "terminated"
                a.wall_s = ev.wall_s if ev.wall_s is not None else ev.ts - start.ts
                a.cores, a.exit_code, a.signal = cores, ev.exit_code, ev.signal
    s.restart_causes = causes
    last = events[-1]
    if s.state == "held":  # the latest event is a `held`: the current hold, its reason and codes the latest's
        s.hold_reason, s.hold_code, s.hold_subcode = last.reason, last.hold_code, last.hold_subcode
        i = len(events) - 1
        while i > 0 and events[i - 1].type == "held":  # held again while held: held since the first of them
            i -= 1
        s.held_ts = events[i].ts
    if last_term is not None:
        s.exit_code, s.signal = last_term.exit_code, last_term.signal
    s.completed_ok = s.state == "completed" and s.exit_code == 0 and s.signal is None
    return s
