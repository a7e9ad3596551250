"""Raw reading of an HTCondor event log between byte offsets, through the bindings' quirks.

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
import logging
import re
import tempfile
from collections.abc import Iterator

import htcondor2

from ingest.condor.mapping import ReadStats

log = logging.getLogger(__name__)

_SCAN_BLOCK = 1 << 16
_SEPARATOR = b"\n...\n"

class NotAJobEventLog(ValueError):
    """The file yielded no HTCondor event at all (empty, text, JSON lines, binary, ...).

    Converting such a file to zero records and succeeding would let a wrong path look like an idle
    submission; the message is one sentence the CLI prints as it is."""


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

