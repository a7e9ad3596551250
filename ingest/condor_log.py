"""Read HTCondor user job event logs (the ``log =`` file of a submission) into job-event/1 records.

Parsing is delegated to the official bindings (PyPI ``htcondor`` 25.x, module ``htcondor2``) so that every
log format HTCondor itself writes (local time without zone, ISO with ``Z``, sub-second times, resource
tables, execute-event slot properties) is understood exactly as HTCondor understands it.  This module adds
what the bindings do not do:

* the mapping of HTCondor event numbers to the contract's event types, usage strings to seconds, and the
  per-attempt bookkeeping (``wall_s``, host, site, cores of the running attempt);
* event ids that are stable across reruns and across growth of the log (see :func:`event_id`);
* a resumable follower (:class:`LogFollower`) whose position only advances when the caller says the events
  were durably published, so a crash (even ``kill -9``) never loses an event and never renames one.

Two quirks of ``htcondor2.JobEventLog`` shape the reader (both verified against htcondor 25.14):

* A reader that hits a file ending in the first bytes of an event header (``0``, ``00``, ``005``) stops for
  good, even after the rest is appended.  So the reader is reopened at the last good byte offset on every
  poll, and it is never asked for an event beyond the last complete ``...`` separator line.
* An event HTCondor cannot parse raises ``HTCondorException`` (``ULOG_RD_ERROR``) or ends the iteration
  early (a stray line).  Such a segment is skipped up to the next ``...`` line with a warning, which is
  deterministic, so ids of the events after it stay stable.

The byte offset of the reader is exposed only through pickling (``JobEventLog.__getstate__`` returns
``(state, offset)``; ``__setstate__`` reopens and seeks), which the bindings document as the way to resume
("A pickled JobEventLog resumes generating events if ... the file is identical except for appended events").
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import htcondor2
import msgspec

from schemas.events import JobEvent

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointMismatch",
    "LogFollower",
    "LogReplaced",
    "convert_log",
    "event_id",
    "follow_log",
    "parse_usage",
]

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

CHECKPOINT_FORMAT = "stagewatch-condor-log-checkpoint/1"
_HEAD_BYTES = 4096
_SCAN_BLOCK = 1 << 16
_SEPARATOR = b"\n...\n"

_USAGE_RE = re.compile(
    r"Usr\s+(\d+)\s+(\d+):(\d+):(\d+)(?:\.\d+)?\s*,\s*Sys\s+(\d+)\s+(\d+):(\d+):(\d+)(?:\.\d+)?"
)
_SINFUL_ALIAS_RE = re.compile(r"[?&]alias=([^&>]+)")
_SINFUL_HOST_RE = re.compile(r"^<(?:\[([^\]]+)\]|([^:>?]+))")


class LogReplaced(RuntimeError):
    """The followed file is not the log the checkpoint was taken on (shorter, or different first bytes).

    Raised instead of silently re-reading from the start, which would re-emit old events under the
    continuing per-job ordinals and so under different ids."""


class CheckpointMismatch(ValueError):
    """The checkpoint belongs to a different log path or schedd name; ids would not line up."""


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
    converter in the schedd's time zone."""
    ts = float(ev.timestamp)
    raw = ev.get("EventTime")
    if isinstance(raw, str) and "." in raw:
        frac = raw.rsplit(".", 1)[1].rstrip("Z")
        if frac.isdigit():
            ts += float("0." + frac)
    return ts


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


@dataclass
class _Mapper:
    """Turns ``htcondor2.JobEvent`` objects into ``JobEvent`` records, one log in file order."""

    campaign: str
    stage: str
    submission: str | None
    schedd: str | None
    jobs: dict[str, _JobState] = field(default_factory=dict)

    def map(self, ev: htcondor2.JobEvent) -> JobEvent | None:
        number = int(ev.get("EventTypeNumber", -1))
        kind = EVENT_TYPES.get(number)
        if kind is None:
            return None
        cluster, proc = int(ev.cluster), int(ev.proc)
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
            state.host = _host_of(ev)
            state.site = _str_attr(props, _SITE_ATTRS) or _str_attr(ev, _SITE_ATTRS)
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
        if number in _ATTEMPT_ENDING and state.start is not None:
            wall = ts - state.start
            if wall >= 0:
                fields["wall_s"] = wall

        reason = _reason(number, ev)
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


# --------------------------------------------------------------------------------------------------
# Raw reading between byte offsets
# --------------------------------------------------------------------------------------------------


def _open_at(path: str, offset: int) -> htcondor2.JobEventLog:
    """A reader positioned at ``offset`` (the end of a complete event), via the bindings' pickle state."""
    jel = htcondor2.JobEventLog(path)
    if offset:
        state, _ = jel.__getstate__()
        jel.close()
        jel.__setstate__((state, offset))
    return jel


def _reader_offset(jel: htcondor2.JobEventLog) -> int:
    return int(jel.__getstate__()[1])


def _last_complete_end(path: str, start: int, size: int) -> int:
    """Offset just past the last ``...`` separator line at or after ``start`` (``start`` if none).

    Scans backwards from the end in blocks, so following a large log costs one block per poll."""
    if size <= start:
        return start
    with open(path, "rb") as f:
        hi = size
        while hi > start:
            lo = max(start, hi - _SCAN_BLOCK)
            rlo = lo - 1 if lo > 0 else 0  # include the newline that precedes a separator line
            f.seek(rlo)
            buf = f.read(min(hi + len(_SEPARATOR) - 1, size) - rlo)
            i = buf.rfind(_SEPARATOR)
            if i >= 0:
                return rlo + i + len(_SEPARATOR)
            if rlo == 0 and buf.startswith(b"...\n"):
                return 4
            hi = lo
    return start


def _next_separator_end(path: str, pos: int, limit: int) -> int:
    """Offset just past the first ``...`` line after ``pos`` (at most ``limit``): where to resume after
    a segment the bindings cannot parse."""
    with open(path, "rb") as f:
        if pos == 0:
            if f.read(4) == b"...\n":
                return 4
        rlo = max(pos - 1, 0)
        while rlo < limit:
            f.seek(rlo)
            buf = f.read(min(_SCAN_BLOCK, limit - rlo))
            i = buf.find(_SEPARATOR)
            if i >= 0:
                return min(rlo + i + len(_SEPARATOR), limit)
            if len(buf) < len(_SEPARATOR):
                break
            rlo += len(buf) - len(_SEPARATOR) + 1
    return limit


def _read_events(
    path: str, start: int, limit: int, max_events: int | None = None
) -> Iterator[tuple[htcondor2.JobEvent | None, int]]:
    """Yield ``(event, end_offset)`` for every event that lies wholly in ``[start, limit)``, in file order.

    An unparseable segment is skipped (with a warning) up to the next separator line and reported as
    ``(None, end_offset)``, so a follower's position moves past it too."""
    pos = start
    count = 0
    while pos < limit and (max_events is None or count < max_events):
        jel = _open_at(path, pos)
        failed: str | None = None
        try:
            it = jel.events(0)
            while pos < limit and (max_events is None or count < max_events):
                try:
                    ev = next(it)
                except StopIteration:
                    failed = "the reader stopped before the end of the complete events"
                    break
                except (htcondor2.HTCondorException, ValueError) as exc:
                    failed = f"{type(exc).__name__}: {exc}"
                    break
                end = _reader_offset(jel)
                if end <= pos or end > limit:
                    failed = f"the reader moved from byte {pos} to {end}"
                    break
                pos = end
                count += 1
                yield ev, end
        finally:
            jel.close()
        if failed is not None and pos < limit:
            nxt = _next_separator_end(path, pos, limit)
            log.warning("%s: skipping unparseable bytes %d-%d (%s)", path, pos, nxt, failed)
            pos = nxt
            yield None, pos


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def convert_log(
    path: str | os.PathLike[str],
    *,
    campaign: str,
    stage: str,
    submission: str | None = None,
    schedd: str | None = None,
) -> Iterator[JobEvent]:
    """Convert a whole HTCondor job event log, lazily, in file order.

    Like :class:`LogFollower`, an event still being written at the end of the file is left out.

    ``job_id`` is ``"{schedd}#{cluster}.{proc}"`` when ``schedd`` is given (cluster ids are only unique
    per schedd), else ``"{cluster}.{proc}"``.  Converting the same file twice gives identical records;
    converting it after it grew gives the same records for the old part first."""
    p = os.fspath(path)
    mapper = _Mapper(campaign, stage, submission, schedd)
    size = os.path.getsize(p)
    limit = _last_complete_end(p, 0, size)
    if limit < size:
        with open(p, "rb") as f:
            f.seek(max(limit, size - 4))
            tail = f.read()
        if size - limit > 4 and tail == b"\n...":
            limit = size  # a finished file whose last line lacks its newline (hand-edited, say)
        else:
            log.info("%s: ignoring an incomplete last event (bytes %d-%d)", p, limit, size)
    for raw, _end in _read_events(p, 0, limit):
        ev = mapper.map(raw) if raw is not None else None
        if ev is not None:
            yield ev


class _Checkpoint(msgspec.Struct, kw_only=True):
    format: str
    path: str
    schedd: str | None
    offset: int
    head_len: int
    head_sha1: str
    jobs: dict[str, _JobState]


_ckpt_decoder = msgspec.json.Decoder(_Checkpoint)
_ckpt_encoder = msgspec.json.Encoder()


class LogFollower:
    """Follows a growing job event log with an at-least-once, resumable position.

    Use ``poll()`` to get the events appended since the previous poll, publish them durably, then
    ``commit()``.  Only ``commit()`` writes the checkpoint (atomically), so after a crash the events of
    uncommitted polls are produced again, with the same ids (the per-job state that ids and ``wall_s``
    depend on is saved in the same checkpoint as the byte offset).  A partially written event at the end
    of the file is not returned until its ``...`` line is complete.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        campaign: str,
        stage: str,
        submission: str | None = None,
        schedd: str | None = None,
        checkpoint_path: str | os.PathLike[str],
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.checkpoint_path = os.fspath(checkpoint_path)
        self._mapper = _Mapper(campaign, stage, submission, schedd)
        self._offset = 0  # position after the last poll
        self._committed = 0
        self._head_len = 0
        self._head_sha1 = hashlib.sha1(b"").hexdigest()
        self._verified_ident: tuple[int, int] | None = None
        self._load()

    # -- checkpoint -------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            with open(self.checkpoint_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        ckpt = _ckpt_decoder.decode(raw)
        if ckpt.format != CHECKPOINT_FORMAT:
            raise CheckpointMismatch(f"{self.checkpoint_path}: unknown checkpoint format {ckpt.format!r}")
        if ckpt.path != self.path:
            raise CheckpointMismatch(f"{self.checkpoint_path} is for {ckpt.path}, not {self.path}")
        if (ckpt.schedd or None) != (self._mapper.schedd or None):
            raise CheckpointMismatch(
                f"{self.checkpoint_path} was written with schedd={ckpt.schedd!r}, not {self._mapper.schedd!r}"
            )
        self._offset = self._committed = ckpt.offset
        self._head_len, self._head_sha1 = ckpt.head_len, ckpt.head_sha1
        self._mapper.jobs = ckpt.jobs

    def commit(self) -> None:
        """Persist the position after the last ``poll()`` (tmp file + fsync + ``os.replace``)."""
        if self._offset > 0 and self._head_len < min(self._offset, _HEAD_BYTES):
            self._head_len, self._head_sha1 = self._head(min(self._offset, _HEAD_BYTES))
        ckpt = _Checkpoint(
            format=CHECKPOINT_FORMAT,
            path=self.path,
            schedd=self._mapper.schedd,
            offset=self._offset,
            head_len=self._head_len,
            head_sha1=self._head_sha1,
            jobs=self._mapper.jobs,
        )
        data = _ckpt_encoder.encode(ckpt)
        directory = os.path.dirname(os.path.abspath(self.checkpoint_path))
        fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.checkpoint_path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        try:
            dfd = os.open(directory, os.O_RDONLY)
        except OSError:
            pass
        else:
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self._committed = self._offset

    @property
    def offset(self) -> int:
        """Byte offset after the last polled event."""
        return self._offset

    @property
    def committed_offset(self) -> int:
        """Byte offset stored by the last ``commit()`` (or loaded from the checkpoint)."""
        return self._committed

    # -- reading ----------------------------------------------------------------------------------

    def _head(self, n: int) -> tuple[int, str]:
        with open(self.path, "rb") as f:
            data = f.read(n)
        return len(data), hashlib.sha1(data).hexdigest()

    def _check_same_log(self, st: os.stat_result) -> None:
        """Refuse to continue on a truncated or replaced file (see :class:`LogReplaced`)."""
        if st.st_size < self._offset:
            raise LogReplaced(f"{self.path} is {st.st_size} bytes, shorter than the position {self._offset}")
        ident = (st.st_dev, st.st_ino)
        if ident == self._verified_ident or self._head_len == 0:
            self._verified_ident = ident
            return
        if self._head(self._head_len) != (self._head_len, self._head_sha1):
            raise LogReplaced(f"{self.path} does not start with the bytes the checkpoint was taken on")
        self._verified_ident = ident

    def poll(self, max_events: int | None = 10_000) -> list[JobEvent]:
        """Events appended since the previous poll (at most ``max_events`` log events are read; call
        again while it returns events).  A missing log file yields nothing: it may not exist yet."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        self._check_same_log(st)
        limit = _last_complete_end(self.path, self._offset, st.st_size)
        out: list[JobEvent] = []
        for raw, end in _read_events(self.path, self._offset, limit, max_events):
            # Unmapped and unparseable events move the position too, so they are not re-read.
            ev = self._mapper.map(raw) if raw is not None else None
            self._offset = end
            if ev is not None:
                out.append(ev)
        return out


def follow_log(
    path: str | os.PathLike[str],
    *,
    campaign: str,
    stage: str,
    submission: str | None = None,
    schedd: str | None = None,
    checkpoint_path: str | os.PathLike[str],
    poll_s: float = 1.0,
    stop: threading.Event | None = None,
) -> Iterator[JobEvent]:
    """Yield events as they are appended to ``path`` (like ``tail -f``) until ``stop`` is set.

    The checkpoint is committed when the consumer asks for the next event after the last one of a batch,
    i.e. once it has handled the whole batch; a consumer that publishes synchronously therefore gets
    at-least-once delivery.  A publisher that acknowledges asynchronously (Kafka delivery callbacks) should
    use :class:`LogFollower` directly and ``commit()`` after its flush."""
    follower = LogFollower(
        path,
        campaign=campaign,
        stage=stage,
        submission=submission,
        schedd=schedd,
        checkpoint_path=checkpoint_path,
    )
    stop = stop if stop is not None else threading.Event()
    while not stop.is_set():
        before = follower.offset
        events = follower.poll()
        yield from events
        if follower.offset != follower.committed_offset:
            follower.commit()
        if follower.offset == before:
            stop.wait(poll_s)
