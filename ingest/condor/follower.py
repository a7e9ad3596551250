"""Following a growing HTCondor event log through rotations, with a resumable at-least-once position.

The API other code builds on (``stagewatch tail condor-log``, ``stagewatch follow``)::

    follower = LogFollower(["EventLog.old", "EventLog"],           # files in order, rotations first
                           routing=Routing(attrs={"campaign": "POMS4_CAMPAIGN_NAME",
                                                  "stage": "POMS4_CAMPAIGN_STAGE_NAME"}),
                           schedd="fifebatch1", checkpoint_path="EventLog.ckpt")
    while running:
        events = follower.poll()              # job-event/1 records read since the last poll
        dead = follower.take_dead_letters()   # DeadLetter records (events that could not be routed)
        publish(events, dead)                 # durably (Kafka flush, a store write, a file fsync)
        if follower.uncommitted:
            follower.commit()                 # only now does the checkpoint move
        if nothing new: sleep

``poll()`` never loses and ``commit()`` never skips: after a crash before ``commit()`` the same events
come again with the same ids.  ``stats`` (:class:`ReadStats`) counts what was read and left out;
``reading`` names the file being read.  ``LogFollower(path, campaign=..., stage=...)`` is a per-submission
log with fixed names.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence

from ingest.condor.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointMismatch,
    load_checkpoint,
    save_checkpoint,
)
from ingest.condor.files import _File, _fingerprint, _header_end
from ingest.condor.mapping import ReadStats
from ingest.condor.reading import _final_end, _last_complete_end, _read_events
from ingest.condor.routing import Router, Routing
from schemas.events import DeadLetter, JobEvent

log = logging.getLogger(__name__)

_HEAD_BYTES = 4096


class LogReplaced(RuntimeError):
    """The followed file is not the log the checkpoint was taken on (shorter, or different first bytes).

    Raised instead of silently re-reading from the start, which would re-emit old events under the
    continuing per-job ordinals and so under different ids."""



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
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        campaign: str | None = None,
        stage: str | None = None,
        submission: str | None = None,
        routing: Routing | None = None,
        schedd: str | None = None,
        checkpoint_path: str | os.PathLike[str],
        rotation_grace_s: float = 1.0,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise ValueError("LogFollower needs at least one log file")
        names = [os.path.abspath(os.fspath(p)) for p in paths]
        self.path = names[-1]  # the live log; the others are read first, in order (rotations first)
        self.backlog = names[:-1]
        self.routing = routing if routing is not None else Routing(campaign=campaign, stage=stage,
                                                                  submission=submission)
        self.routing.check()
        self.checkpoint_path = os.fspath(checkpoint_path)
        self.rotation_grace_s = rotation_grace_s
        self.stats = ReadStats()
        self._router = Router.create(self.routing, schedd, self.stats)
        self.schedd = schedd
        self._rotated_re = re.compile(re.escape(os.path.basename(self.path)) + r"\.(old|[0-9]+)")
        self._file: _File | None = None  # the file being read, held open
        self._ident: tuple[int, int] | None = None  # its identity (known from the checkpoint before it is found)
        self._offset = 0  # position after the last poll, in that file
        self._committed = 0
        self._changes = 0  # polls that moved the position (or switched files) since the last commit
        self._head_skip = 0
        self._head_len = 0
        self._head_sha1 = hashlib.sha1(b"").hexdigest()
        self._retired: _File | None = None  # the previous file, watched for late writes
        self._retired_size = 0
        self._ckpt_file: str | None = None
        self._load()

    # -- checkpoint -------------------------------------------------------------------------------

    def _load(self) -> None:
        ckpt = load_checkpoint(self.checkpoint_path)
        if ckpt is None:
            return
        if ckpt.path != self.path:
            raise CheckpointMismatch(f"{self.checkpoint_path} is for {ckpt.path}, not {self.path}")
        if (ckpt.schedd or None) != (self.schedd or None):
            raise CheckpointMismatch(
                f"{self.checkpoint_path} was written with schedd={ckpt.schedd!r}, not {self.schedd!r}"
            )
        self._offset = self._committed = ckpt.offset
        self._head_skip, self._head_len, self._head_sha1 = ckpt.head_skip, ckpt.head_len, ckpt.head_sha1
        self._ident = (ckpt.dev, ckpt.ino) if ckpt.dev is not None and ckpt.ino is not None else None
        self._router.mapper.jobs = ckpt.jobs
        self._router.restore(ckpt.held, ckpt.newest_ts)
        self._ckpt_file = ckpt.file

    def commit(self) -> None:
        """Persist the position after the last ``poll()``, with the per-job state and the held events
        (tmp file + fsync + ``os.replace``).  Call it once the events (and dead letters) of the polls
        before it are durably published."""
        f = self._file
        if f is not None and self._offset > 0:
            if self._head_len == 0:
                self._head_skip = _header_end(f.fd)
            want = min(max(self._offset - self._head_skip, 0), _HEAD_BYTES)
            if self._head_len < want:
                self._head_len, self._head_sha1 = _fingerprint(f.fd, self._head_skip, want)
        save_checkpoint(self.checkpoint_path, Checkpoint(
            format=CHECKPOINT_FORMAT,
            path=self.path,
            schedd=self.schedd,
            offset=self._offset,
            head_len=self._head_len,
            head_sha1=self._head_sha1,
            jobs=self._router.mapper.jobs,
            head_skip=self._head_skip,
            dev=self._ident[0] if self._ident else None,
            ino=self._ident[1] if self._ident else None,
            file=f.name if f is not None else None,
            held=self._router.held_state(),
            newest_ts=self._router.newest_ts,
        ))
        self._committed = self._offset
        self._changes = 0

    @property
    def uncommitted(self) -> bool:
        """Whether a poll moved the position (read events, skipped bytes, switched files) since ``commit()``."""
        return self._changes > 0

    @property
    def held(self) -> int:
        """Events read but waiting for their job's JobAdInformation (028) event (kept in the checkpoint)."""
        return self._router.held_count

    def take_dead_letters(self) -> list[DeadLetter]:
        """Events the polls could not route or the contract refused, with the reason; publish them with the
        events, before ``commit()``."""
        return self._router.take_dead_letters()

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
        rotated = self._rotated_names()
        extra = [n for n in self.backlog if n not in rotated and n != self.path]  # files given, other names
        out, seen = [], set()
        for name in [*extra, *rotated, self.path]:
            try:
                st = os.stat(name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not os.path.isdir(name) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
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
            # a fresh start (or a checkpoint taken before the log existed): the first file given that exists
            for name in (*self.backlog, self.path):
                f = _File.open(name)
                if f is not None or name == self.path:
                    return f
            return None
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
        self._changes += 1
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
                if raw is not None:
                    out.extend(self._router.feed(raw, f"{f.name}:{end}"))
                self._offset = end
                self._changes += 1
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
            if follower.uncommitted:
                follower.commit()
            if follower.offset == before:
                stop.wait(poll_s)
    finally:
        follower.close()