"""Read HTCondor user job event logs (the ``log =`` file of a submission) into job-event/1 records.

Parsing is delegated to the official bindings (PyPI ``htcondor`` 25.x, module ``htcondor2``) so that every
log format HTCondor itself writes (local time without zone, ISO with ``Z``, sub-second times, resource
tables, execute-event slot properties) is understood exactly as HTCondor understands it.  This module adds
what the bindings do not do:

* the mapping of HTCondor event numbers to the contract's event types, usage strings to seconds, and the
  per-attempt bookkeeping (``wall_s``, host, site, cores of the running attempt);
* event ids that are stable across reruns and across growth of the log (see :func:`event_id`);
* a resumable follower (:class:`LogFollower`) whose position only advances when the caller says the events
  were durably published, so a crash (even ``kill -9``) never loses an event and never renames one, and
  which follows the log through rotations (HTCondor's ``.old`` / ``.1``, ``.2``, ... and users' renames
  or copy-truncate), finishing the old file before the new one;
* records checked against the contract the way every consumer checks them, and counts (:class:`ReadStats`)
  of everything skipped; a file with no event at all is :class:`NotAJobEventLog`.

Three quirks of ``htcondor2.JobEventLog`` shape the reader (verified against htcondor 25.14):

* A reader that hits a file ending in the first bytes of an event header (``0``, ``00``, ``005``) stops for
  good, even after the rest is appended.  So the reader is reopened at the last good byte offset on every
  poll, and it is never asked for an event beyond the last complete ``...`` separator line.
* An event HTCondor cannot parse raises ``HTCondorException`` (``ULOG_RD_ERROR``) or ends the iteration
  early (a stray line).  Such a segment is skipped up to the next ``...`` line or event header with a
  warning and a count, which is deterministic, so ids of the events after it stay stable.
* The format (text, XML, JSON) is decided from the first bytes of the file at every open, whatever the
  offset: a log that starts with anything but an event yields nothing at all.  Such a log is read through
  temporary copies that start at the offset (:func:`_reader_at`).

The byte offset of the reader is exposed only through pickling (``JobEventLog.__getstate__`` returns
``(state, offset)``; ``__setstate__`` reopens and seeks), which the bindings document as the way to resume
("A pickled JobEventLog resumes generating events if ... the file is identical except for appended events").
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import htcondor2
import msgspec

from schemas.events import MAX_NAME_CHARS, MAX_REASON_CHARS, JobEvent, decode_event, encode_event

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointMismatch",
    "LogFollower",
    "LogReplaced",
    "NotAJobEventLog",
    "ReadStats",
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

CHECKPOINT_FORMAT = "stagewatch-condor-log-checkpoint/2"
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


class NotAJobEventLog(ValueError):
    """The file yielded no HTCondor event at all (empty, text, JSON lines, binary, ...).

    Converting such a file to zero records and succeeding would let a wrong path look like an idle
    submission; the message is one sentence the CLI prints as it is."""


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

    def record(self, ev: htcondor2.JobEvent, where: str) -> JobEvent | None:
        """The contract-checked record of one parsed event, or None (unmapped, or invalid: logged, counted).

        A ``JobEvent(...)`` built in Python skips msgspec's constraints, which only run when decoding; so the
        record goes through ``decode_event(encode_event(...))``, the very check every consumer applies.
        An event that cannot be mapped at all (a value HTCondor accepted but this reader cannot use) is
        skipped the same way rather than ending the conversion."""
        self.stats.events += 1
        try:
            rec = self.map(ev)
            if rec is None:
                return None
            rec = decode_event(encode_event(rec))
        except Exception as exc:  # a data boundary: one bad event must never end the conversion
            self.stats.invalid_events += 1
            log.warning("condor_log.invalid_event where=%s reason=%r", where, _bounded(str(exc), 500))
            return None
        self.stats.job_events += 1
        return rec  # type: ignore[return-value]

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


#: Where reading resumes after bytes the bindings cannot parse: just after the next ``...`` line, or at the
#: header of the next event (``005 (123.000.000) 2024-...``) when that comes first, so that garbage with no
#: ``...`` line of its own (a torn write, a pasted line) never takes the event after it along.
_RESYNC_RE = re.compile(rb"\n\.\.\.\n|[0-9]{3} \(-?[0-9]+\.-?[0-9]+\.-?[0-9]+\) [0-9]")
_RESYNC_OVERLAP = 64


def _resync(path: str, pos: int, limit: int) -> int:
    """The first place after ``pos`` (at most ``limit``) where an event can start: see ``_RESYNC_RE``."""
    with open(path, "rb") as f:
        if pos == 0 and f.read(4) == b"...\n":
            return min(4, limit)
        start = pos
        while start < limit:
            rlo = max(start - 1, 0)  # one byte before, for a separator line that starts right at ``start``
            f.seek(rlo)
            buf = f.read(min(limit, start + _SCAN_BLOCK) - rlo)
            for m in _RESYNC_RE.finditer(buf):
                if m.group().startswith(b"\n"):
                    end = rlo + m.end()
                    if end > pos:
                        return min(end, limit)
                elif rlo + m.start() > pos:
                    return rlo + m.start()
            if rlo + len(buf) >= limit or len(buf) <= _RESYNC_OVERLAP:
                break
            start = rlo + len(buf) - _RESYNC_OVERLAP
    return limit


#: Most bytes copied into one shifted view (see :func:`_reader_at`).
_VIEW_BYTES = 4 << 20


def _needs_view(path: str) -> bool:
    """Whether htcondor2 cannot read this file in place: it decides the log format from the file's first
    bytes (verified on 25.14: a file starting with text, ``{``, ``<`` or a stray ``...`` line yields no
    event at any offset), so a log whose beginning is garbage must be read through shifted views."""
    with open(path, "rb") as f:
        first = f.read(1)
    return first not in (b"", b"0")


@contextlib.contextmanager
def _reader_at(
    path: str, pos: int, limit: int, shifted: bool
) -> Iterator[tuple[htcondor2.JobEventLog, int, int]]:
    """``(reader, base, end)``: a reader whose offsets plus ``base`` are file offsets, valid up to ``end``.

    Normally the file itself at ``pos``; for a file htcondor2 cannot read in place, a temporary copy of
    the complete events from ``pos`` on (at most about ``_VIEW_BYTES`` at a time)."""
    if not shifted:
        jel = _open_at(path, pos)
        try:
            yield jel, 0, limit
        finally:
            jel.close()
        return
    end = _last_complete_end(path, pos, min(limit, pos + _VIEW_BYTES))
    if end <= pos:
        end = limit
    with tempfile.NamedTemporaryFile(prefix="stagewatch-condor-view-", suffix=".log") as tmp:
        with open(path, "rb") as src:
            src.seek(pos)
            left = end - pos
            while left > 0:
                chunk = src.read(min(left, _SCAN_BLOCK))
                if not chunk:
                    break
                tmp.write(chunk)
                left -= len(chunk)
        tmp.flush()
        jel = htcondor2.JobEventLog(tmp.name)
        try:
            yield jel, pos, end
        finally:
            jel.close()


def _read_events(
    path: str,
    start: int,
    limit: int,
    max_events: int | None = None,
    *,
    label: str | None = None,
    stats: ReadStats | None = None,
) -> Iterator[tuple[htcondor2.JobEvent | None, int]]:
    """Yield ``(event, end_offset)`` for every event that lies wholly in ``[start, limit)``, in file order.

    An unparseable segment is skipped (with a warning naming ``label``, the file as the user knows it, and
    counted in ``stats``) up to the next separator line or event header (:func:`_resync`) and reported as
    ``(None, end_offset)``, so a follower's position moves past it too."""
    pos = start
    count = 0
    shifted = _needs_view(path)
    while pos < limit and (max_events is None or count < max_events):
        with _reader_at(path, pos, limit, shifted) as (jel, base, seg_end):
            failed: str | None = None
            it = jel.events(0)
            while pos < seg_end and (max_events is None or count < max_events):
                try:
                    ev = next(it)
                except StopIteration:
                    failed = "the reader stopped before the end of the complete events"
                    break
                except OSError:
                    raise
                except Exception as exc:  # HTCondorException (ULOG_RD_ERROR), ValueError, ...: bad bytes
                    failed = f"{type(exc).__name__}: {exc}"
                    break
                end = base + _reader_offset(jel)
                if end <= pos or end > seg_end:
                    failed = f"the reader moved from byte {pos} to {end}"
                    break
                pos = end
                count += 1
                yield ev, end
        if failed is not None and pos < limit:
            nxt = _resync(path, pos, limit)
            log.warning("%s: skipping unparseable bytes %d-%d (%s)", label or path, pos, nxt, failed)
            if stats is not None:
                stats.skipped_segments += 1
                stats.skipped_bytes += nxt - pos
            pos = nxt
            yield None, pos


def _final_end(path: str, start: int, size: int, label: str, stats: ReadStats | None) -> int:
    """Where the events of a file that will not grow any more end: after its last ``...`` line, or at its
    very end when only the final newline is missing (a hand-edited file).  Bytes after that are an event
    whose writing never finished; they are logged and counted, never parsed as a half event."""
    limit = _last_complete_end(path, start, size)
    if limit < size:
        with open(path, "rb") as f:
            f.seek(max(limit, size - 4))
            tail = f.read()
        if size - limit > 4 and tail == b"\n...":
            return size
        log.info("%s: ignoring an incomplete last event (bytes %d-%d)", label, limit, size)
        if stats is not None:
            stats.skipped_bytes += size - limit
    return limit


# --------------------------------------------------------------------------------------------------
# Public API: one-shot conversion
# --------------------------------------------------------------------------------------------------


def convert_log(
    path: str | os.PathLike[str],
    *,
    campaign: str,
    stage: str,
    submission: str | None = None,
    schedd: str | None = None,
    stats: ReadStats | None = None,
) -> Iterator[JobEvent]:
    """Convert a whole HTCondor job event log, lazily, in file order.

    Like :class:`LogFollower`, an event still being written at the end of the file is left out.  A segment
    HTCondor cannot parse is skipped up to the next ``...`` line and an event whose record breaks the
    contract is left out, each with a warning and a count in ``stats``; the events after them are read
    as usual.  A file that yields no HTCondor event at all raises :class:`NotAJobEventLog` (once the
    events before the end, if any, were yielded: the conversion stays lazy).

    ``job_id`` is ``"{schedd}#{cluster}.{proc}"`` when ``schedd`` is given (cluster ids are only unique
    per schedd), else ``"{cluster}.{proc}"``.  Converting the same file twice gives identical records;
    converting it after it grew gives the same records for the old part first."""
    p = os.fspath(path)
    stats = stats if stats is not None else ReadStats()
    mapper = _Mapper(campaign, stage, submission, schedd, stats=stats)
    limit = _final_end(p, 0, os.path.getsize(p), p, stats)
    for raw, end in _read_events(p, 0, limit, label=p, stats=stats):
        ev = mapper.record(raw, f"{p}:{end}") if raw is not None else None
        if ev is not None:
            yield ev
    if stats.events == 0:
        raise NotAJobEventLog(
            f"{p} has no HTCondor job events: is it a job event log (the submit file's `log = ...`)?"
        )


# --------------------------------------------------------------------------------------------------
# Following a log through rotations
# --------------------------------------------------------------------------------------------------


def _fd_path(fd: int) -> str:
    """A name that opens the very file behind ``fd`` whatever it is called now, even once deleted."""
    return f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else f"/dev/fd/{fd}"


class _File:
    """One log file held open: renames (rotation) and deletion do not change what it reads.

    htcondor2 needs a path; :attr:`path` names the open descriptor, so a rotation between two reads can
    never make the follower read one file's bytes at another file's offsets."""

    __slots__ = ("fd", "ident", "name")

    def __init__(self, fd: int, name: str) -> None:
        st = os.fstat(fd)
        self.fd = fd
        self.ident = (st.st_dev, st.st_ino)
        self.name = name  # where it was found, for messages (it may have been renamed since)

    @classmethod
    def open(cls, name: str) -> _File | None:
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            return cls(fd, name)
        except BaseException:
            os.close(fd)
            raise

    @property
    def path(self) -> str:
        return _fd_path(self.fd)

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _header_end(fd: int) -> int:
    """Length of a global event log's header event (``008 ... Global JobLog: ... sequence=...``), else 0.

    HTCondor rewrites that header in place (its size and event count) when it rotates the file, so the
    fingerprint that recognises a file after a rotation starts after it."""
    head = os.pread(fd, 4096, 0)
    if head.startswith(b"008 (") and b"Global JobLog:" in head.split(b"\n", 1)[0]:
        i = head.find(_SEPARATOR)
        if i >= 0:
            return i + len(_SEPARATOR)
    return 0


def _fingerprint(fd: int, skip: int, n: int) -> tuple[int, str]:
    data = os.pread(fd, n, skip) if n > 0 else b""
    return len(data), hashlib.sha1(data).hexdigest()


class _Checkpoint(msgspec.Struct, kw_only=True):
    format: str
    path: str  # the followed name
    schedd: str | None
    offset: int  # in the file being read
    head_len: int  # fingerprint of that file: sha1 of bytes [head_skip, head_skip + head_len)
    head_sha1: str
    jobs: dict[str, _JobState]
    head_skip: int = 0
    dev: int | None = None  # identity of the file being read (format /1 had none)
    ino: int | None = None
    file: str | None = None  # the name it had when the checkpoint was written (informational)


CHECKPOINT_FORMATS = ("stagewatch-condor-log-checkpoint/1", CHECKPOINT_FORMAT)
_ckpt_decoder = msgspec.json.Decoder(_Checkpoint)
_ckpt_encoder = msgspec.json.Encoder()


class LogFollower:
    """Follows a growing job event log with an at-least-once, resumable position, through rotations.

    Use ``poll()`` to get the events appended since the previous poll, publish them durably, then
    ``commit()``.  Only ``commit()`` writes the checkpoint (atomically), so after a crash the events of
    uncommitted polls are produced again, with the same ids (the per-job state that ids and ``wall_s``
    depend on is saved in the same checkpoint as the byte offset).  A partially written event at the end
    of the file is not returned until its ``...`` line is complete.

    **Rotation.**  The position belongs to a file (device and inode, plus a fingerprint of its first 4 KiB),
    not to the name.  When ``path`` names another file, the old one is read to its end first, found through
    the descriptor held open or, after a restart, by its inode among ``PATH.old`` / ``PATH.1``,
    ``PATH.2``, ... (HTCondor's ``EVENT_LOG_MAX_ROTATIONS`` names) and the rest of the directory; then the
    newer rotated files in order (two rotations between polls: ``.2`` then ``.1``), then ``path``.  A file
    is left only once it has not been written to for ``rotation_grace_s`` (a writer that still had it
    open); bytes written to it later are counted in ``stats.late_bytes`` with a warning, not read.
    A copy-truncate rotation (``path`` truncated in place) continues in the copy, found by fingerprint
    among the rotated names.  Switching to the next file is a poll of its own, which moves ``offset``
    (to 0), so a caller that commits when ``offset`` moved records the switch.

    :class:`LogReplaced` is raised only when the file of the position is nowhere to be found (deleted, or
    replaced by another log) or was rewritten in place with no copy left: the unread part is then lost,
    and saying so beats continuing at the wrong place.
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
        rotation_grace_s: float = 1.0,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.checkpoint_path = os.fspath(checkpoint_path)
        self.rotation_grace_s = rotation_grace_s
        self.stats = ReadStats()
        self._mapper = _Mapper(campaign, stage, submission, schedd, stats=self.stats)
        self._rotated_re = re.compile(re.escape(os.path.basename(self.path)) + r"\.(old|[0-9]+)")
        self._file: _File | None = None  # the file being read, held open
        self._ident: tuple[int, int] | None = None  # its identity (known from the checkpoint before it is found)
        self._offset = 0  # position after the last poll, in that file
        self._committed = 0
        self._head_skip = 0
        self._head_len = 0
        self._head_sha1 = hashlib.sha1(b"").hexdigest()
        self._retired: _File | None = None  # the previous file, watched for late writes
        self._retired_size = 0
        self._ckpt_file: str | None = None
        self._load()

    # -- checkpoint -------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            with open(self.checkpoint_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        try:
            ckpt = _ckpt_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise CheckpointMismatch(f"{self.checkpoint_path} is not a stagewatch checkpoint ({exc})") from None
        if ckpt.format not in CHECKPOINT_FORMATS:
            raise CheckpointMismatch(f"{self.checkpoint_path}: unknown checkpoint format {ckpt.format!r}")
        if ckpt.path != self.path:
            raise CheckpointMismatch(f"{self.checkpoint_path} is for {ckpt.path}, not {self.path}")
        if (ckpt.schedd or None) != (self._mapper.schedd or None):
            raise CheckpointMismatch(
                f"{self.checkpoint_path} was written with schedd={ckpt.schedd!r}, not {self._mapper.schedd!r}"
            )
        self._offset = self._committed = ckpt.offset
        self._head_skip, self._head_len, self._head_sha1 = ckpt.head_skip, ckpt.head_len, ckpt.head_sha1
        self._ident = (ckpt.dev, ckpt.ino) if ckpt.dev is not None and ckpt.ino is not None else None
        self._mapper.jobs = ckpt.jobs
        self._ckpt_file = ckpt.file

    def commit(self) -> None:
        """Persist the position after the last ``poll()`` (tmp file + fsync + ``os.replace``)."""
        f = self._file
        if f is not None and self._offset > 0:
            if self._head_len == 0:
                self._head_skip = _header_end(f.fd)
            want = min(max(self._offset - self._head_skip, 0), _HEAD_BYTES)
            if self._head_len < want:
                self._head_len, self._head_sha1 = _fingerprint(f.fd, self._head_skip, want)
        ckpt = _Checkpoint(
            format=CHECKPOINT_FORMAT,
            path=self.path,
            schedd=self._mapper.schedd,
            offset=self._offset,
            head_len=self._head_len,
            head_sha1=self._head_sha1,
            jobs=self._mapper.jobs,
            head_skip=self._head_skip,
            dev=self._ident[0] if self._ident else None,
            ino=self._ident[1] if self._ident else None,
            file=f.name if f is not None else None,
        )
        data = _ckpt_encoder.encode(ckpt)
        directory = os.path.dirname(os.path.abspath(self.checkpoint_path))
        fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
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
        """Byte offset after the last polled event, in the file being read (0 after a switch to the next)."""
        return self._offset

    @property
    def committed_offset(self) -> int:
        """Byte offset stored by the last ``commit()`` (or loaded from the checkpoint)."""
        return self._committed

    @property
    def reading(self) -> str:
        """The name under which the file being read was found (``path`` itself unless it was rotated)."""
        return self._file.name if self._file is not None else self.path

    def close(self) -> None:
        """Release the files held open (also done when the follower is garbage collected)."""
        for f in (self._file, self._retired):
            if f is not None:
                f.close()
        self._file = self._retired = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- finding files ----------------------------------------------------------------------------

    def _rotated_names(self) -> list[str]:
        """Existing rotated names of ``path``, oldest first: ``PATH.N`` ... ``PATH.1``, then ``PATH.old``."""
        directory = os.path.dirname(self.path)
        found: list[tuple[tuple[int, int], str]] = []
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    m = self._rotated_re.fullmatch(entry.name)
                    if m:
                        key = (1, 0) if m.group(1) == "old" else (0, -int(m.group(1)))
                        found.append((key, entry.path))
        except FileNotFoundError:
            return []
        return [name for _, name in sorted(found)]

    def _chain(self) -> list[tuple[str, os.stat_result]]:
        """The rotation chain as it stands, oldest first, ending with ``path`` when it exists."""
        out = []
        for name in [*self._rotated_names(), self.path]:
            try:
                st = os.stat(name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not os.path.isdir(name):
                out.append((name, st))
        return out

    def _matches(self, f: _File) -> bool:
        """Whether ``f`` holds the bytes the position was taken on: long enough, same fingerprint."""
        if f.stat().st_size < self._offset:
            return False
        if self._head_len == 0:
            return True
        return _fingerprint(f.fd, self._head_skip, self._head_len) == (self._head_len, self._head_sha1)

    def _by_identity(self) -> _File | None:
        """The file of the position by device and inode: at ``path``, a rotated name, or elsewhere in the
        directory (a rename that is not HTCondor's naming)."""
        assert self._ident is not None
        names = [self.path, *reversed(self._rotated_names())]
        directory = os.path.dirname(self.path)
        try:
            with os.scandir(directory) as it:
                names += [e.path for e in it if e.inode() == self._ident[1] and e.path not in names]
        except FileNotFoundError:
            pass
        for name in names:
            f = _File.open(name)
            if f is None:
                continue
            if f.ident == self._ident and self._matches(f):
                return f
            f.close()
        return None

    def _copy(self) -> _File | None:
        """A copy of the file of the position among the rotated names (copy-truncate rotation): another
        inode with the same fingerprint and at least the bytes already read."""
        if self._head_len == 0:
            return None
        for name in reversed(self._rotated_names()):
            f = _File.open(name)
            if f is None:
                continue
            if f.ident != self._ident and self._matches(f):
                return f
            f.close()
        return None

    def _lost(self, what: str) -> LogReplaced:
        return LogReplaced(
            f"{what}; the events after byte {self._offset} of it cannot be read. Start with a new --checkpoint "
            f"to read {self.path} from its beginning (events already published keep their ids)."
        )

    def _locate(self) -> _File | None:
        """The file the position belongs to, when the follower starts (None: nothing to read yet)."""
        if self._ident is None and self._head_len == 0 and self._offset == 0:
            return _File.open(self.path)  # a fresh start, or a checkpoint taken before the log existed
        if self._ident is not None:
            f = self._by_identity()
            if f is not None:
                return f
        else:  # a format /1 checkpoint: the file is known by its fingerprint only
            f = _File.open(self.path)
            if f is not None and self._matches(f):
                return f
            if f is not None:
                f.close()
        f = self._copy()
        if f is not None:
            log.warning("condor_log.found_copy file=%s offset=%d (the log was rotated by copy)", f.name, self._offset)
            return f
        if self._offset == 0:
            log.warning("condor_log.restart_at_path path=%s (the file of the checkpoint is gone; nothing of it "
                        "had been read)", self.path)
            return _File.open(self.path)
        try:
            st = os.stat(self.path)
            in_place = self._ident is not None and (st.st_dev, st.st_ino) == self._ident
        except OSError:
            in_place = False
        if in_place:
            # (the same inode with other bytes: rewritten in place, or a new file that reuses a freed inode)
            raise self._lost(
                f"{self.path} no longer holds the bytes the checkpoint {self.checkpoint_path} was taken on: it was "
                f"truncated or rewritten in place (copy-truncate rotation?), or the file the checkpoint was reading "
                f"was deleted or replaced by another log, and no rotated copy (.old, .1, ...) holds its first "
                f"{self._offset} bytes"
            )
        where = f" (inode {self._ident[1]})" if self._ident else ""
        raise self._lost(
            f"The log file the checkpoint {self.checkpoint_path} was reading, {self._ckpt_file or self.path}{where}, "
            f"is neither {self.path} nor a rotated copy of it (.old, .1, ...): it was deleted or replaced by "
            f"another log"
        )

    def _adopt(self, f: _File) -> None:
        if self._file is not None and self._file is not f:
            self._file.close()
        self._file = f
        self._ident = f.ident

    def _next_file(self, cur: _File, st: os.stat_result) -> _File | None:
        """The file written after ``cur``: the next one in the rotation chain, or, when ``cur`` is not in
        it any more (deleted, or renamed out of HTCondor's naming), the oldest chain file written since."""
        chain = self._chain()
        idx = next((i for i, (_, s) in enumerate(chain) if (s.st_dev, s.st_ino) == cur.ident), None)
        if idx is not None:
            later = chain[idx + 1:]
        else:
            later = [(n, s) for n, s in chain if s.st_mtime_ns >= st.st_mtime_ns]
        if not later:
            return None
        name, s = later[0]
        f = _File.open(name)
        if f is None or f.ident != (s.st_dev, s.st_ino):  # renamed meanwhile: look again next poll
            if f is not None:
                f.close()
            return None
        return f

    def _switch(self, nxt: _File, size: int) -> None:
        cur = self._file
        assert cur is not None
        log.info("condor_log.rotation finished=%s at=%d next=%s", cur.name, self._offset, nxt.name)
        if self._retired is not None:
            self._retired.close()
        self._retired, self._retired_size = cur, size
        self._file, self._ident = nxt, nxt.ident
        self._offset = 0
        self._head_skip, self._head_len, self._head_sha1 = 0, 0, hashlib.sha1(b"").hexdigest()
        self.stats.rotations += 1

    def _check_retired(self) -> None:
        """Count (and warn about) bytes a writer still appended to the previous file after it was left."""
        if self._retired is None:
            return
        size = self._retired.stat().st_size
        if size > self._retired_size:
            log.warning("condor_log.late_write file=%s bytes=%d (appended to a rotated log after it was finished "
                        "and the next file begun; they are not read)", self._retired.name, size - self._retired_size)
            self.stats.late_bytes += size - self._retired_size
            self._retired_size = size

    # -- reading ----------------------------------------------------------------------------------

    def _is_current(self, f: _File) -> bool:
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return (st.st_dev, st.st_ino) == f.ident

    def poll(self, max_events: int | None = 10_000) -> list[JobEvent]:
        """Events appended since the previous poll (at most ``max_events`` log events are read; call
        again while ``offset`` moves).  A missing log file yields nothing: it may not exist yet."""
        self._check_retired()
        if self._file is None:
            pinned = self._ident is not None
            f = self._locate()
            if f is None:
                return []
            self._adopt(f)
            if not pinned and self._offset == 0:
                # Pin the file before handing out any event: a process killed before its first commit
                # must find this file again after a rotation, not start over at whatever ``path`` is then.
                self.commit()
        f = self._file
        assert f is not None
        if not self._matches(f):  # truncated or rewritten in place
            copy = self._copy()
            if copy is None:
                raise self._lost(
                    f"{f.name} was truncated or rewritten in place (copy-truncate rotation?) and no copy of it "
                    f"holding its first {self._offset} bytes is among its rotated names (.old, .1, ...)"
                )
            log.warning("condor_log.copy_truncate file=%s copy=%s offset=%d", f.name, copy.name, self._offset)
            self._adopt(copy)
            f = copy
        st = f.stat()
        current = self._is_current(f)
        finished = not current and time.time() - st.st_mtime >= self.rotation_grace_s
        if finished:
            limit = _final_end(f.path, self._offset, st.st_size, f.name, None)
        else:
            limit = _last_complete_end(f.path, self._offset, st.st_size)
        out: list[JobEvent] = []
        if limit > self._offset:
            for raw, end in _read_events(f.path, self._offset, limit, max_events, label=f.name, stats=self.stats):
                # Unmapped and unparseable events move the position too, so they are not re-read.
                ev = self._mapper.record(raw, f"{f.name}:{end}") if raw is not None else None
                self._offset = end
                if ev is not None:
                    out.append(ev)
            return out
        if finished:
            nxt = self._next_file(f, st)
            if nxt is not None:
                if st.st_size > self._offset:
                    log.warning("%s: skipping an incomplete last event of a rotated log (bytes %d-%d)",
                                f.name, self._offset, st.st_size)
                    self.stats.skipped_bytes += st.st_size - self._offset
                self._switch(nxt, st.st_size)
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
    rotation_grace_s: float = 1.0,
) -> Iterator[JobEvent]:
    """Yield events as they are appended to ``path`` (like ``tail -f``, through rotations) until ``stop``
    is set.

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
        rotation_grace_s=rotation_grace_s,
    )
    stop = stop if stop is not None else threading.Event()
    try:
        while not stop.is_set():
            before = follower.offset
            events = follower.poll()
            yield from events
            if follower.offset != follower.committed_offset:
                follower.commit()
            if follower.offset == before:
                stop.wait(poll_s)
    finally:
        follower.close()
