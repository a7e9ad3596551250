"""Embedded replay: JSON lines -> events -> engine -> store, with dead letters for bad lines.

A replay adds to what the store already holds, at a cost that depends on the new events, not on the
history: events are applied in batches, and before a batch is applied, the stored events of exactly
the entities it touches (its jobs, its files and the files linked to them as parent or output) are
loaded back, in a few queries per batch (Replayer._load_touched). A stage starts from its stored
stage row (processors.stage.StageState.seed); after each state flush the entities that did not change
are paged out of memory again (StageState.page_out), so memory is bounded by the active entities, not
by the events replayed. Re-replaying a file changes nothing (its events are duplicates).

Why an interrupted replay repairs itself: raw events are written before the state rows (and more
often), so a replay killed between the two leaves events without their job/file/stage rows. The
stage row is written last in every state flush and counts the distinct events behind it, so when its
count equals the stored events' count, every state row of the stage is current and the stage can
start from it; when it does not, the whole stage is loaded and every row written again (see
Replayer._load_whole_stage). One case keeps the event count and may keep every stage number: a
conflicting copy that replaced a stored event. Its dead letter is written before its raw row, so a
stage named by conflict dead letters is loaded whole and the entities they name have their rows
written again (conflicts are rare: a few stages).

Every input line ends as an event or a dead letter: undecodable lines, a file that cannot be read as
JSON lines (the good lines of the other files are kept), conflicting copies of an event, and an event
the engine fails on (a bug: logged at error level, the replay goes on).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ingest.lines import InputError, iter_input_lines
from processors.engine import Engine
from processors.rows import dead_letter_row, raw_event_row, stage_row
from schemas.events import (STDIN_SOURCE, DeadLetter, Event, InvalidEvent, JobEvent, decode_event, encode_event,
                            raw_from_text)
from schemas.queries import literal, where
from stagewatch.paged_names import PagedNames
from stagewatch.sink import StoreSink
from stagewatch.store.base import Store

log = logging.getLogger("stagewatch.replay")


#: How the reason of a conflicting copy's dead letter starts (processors.stage.Conflict.reason).
CONFLICT_REASON_PREFIX = "conflicting duplicate of event_id"


@dataclass
class ReplayReport:
    lines: int = 0
    new_events: int = 0
    duplicates: int = 0
    invalid: list[DeadLetter] = field(default_factory=list)
    unreadable: list[DeadLetter] = field(default_factory=list)  # whole files refused (also in `invalid`)
    conflicts: int = 0  # conflicting copies of an event_id (each one's dropped copy is in `invalid`)
    engine_errors: int = 0  # events the engine raised on (bugs; each is in `invalid`)
    repaired_stages: set[tuple[str, str]] = field(default_factory=set)  # state rows rewritten on load
    stages: set[tuple[str, str]] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0


class Replayer:
    """Feeds events into an Engine in batches and writes results to a store.

    `batch_size` events are applied at a time (their stored entities loaded first) and their raw rows
    written; every `state_every` events the changed job, file and stage rows are written too, and with
    `page_out` the entities that did not change since the previous state write leave memory.
    """

    def __init__(self, store: Store, *, batch_size: int = 50_000, state_every: int = 250_000,
                 on_invalid: Callable[[DeadLetter], None] | None = None, page_out: bool = True) -> None:
        self.store = store
        self.engine = Engine()
        self.sink = StoreSink(store)
        self.batch_size = batch_size
        # State rows are rewritten per state write, and entities that did not change leave memory then: more
        # often is less memory but more rows written and more entities loaded back. Measured on the NOvA week
        # (bench/replay_bench.py, 2026-12-03): every 50,000 events 14,400 events/s and 819 MiB peak, every
        # 125,000 15,800/s and 1,004 MiB, every 250,000 19,600/s and 1,177 MiB (before paging: 19,800/s and
        # 1,758 MiB). The default keeps the replay as fast as before paging.
        self.state_every = state_every
        self.page_out = page_out
        self._since_state = 0
        self.on_invalid = on_invalid
        self.report = ReplayReport()
        self._opened: set[tuple[str, str]] = set()
        self._pending: list[tuple[Event, str, str, bytes | None]] = []
        self._now = time.time()
        # The raw_events row of an accepted event: a store may take its own cheaper form of it (a chDB store:
        # stagewatch.store.chdb_store.PendingEvent, written by the store from the event itself).
        self._raw_row: Callable[[Event, str, float], Any] = getattr(store, "pending_raw_row", None) or raw_event_row
        # Engines that resolve conflicting copies of an event_id report them here (processors.stage.Conflict).
        self._take_conflicts: Callable[[], list[Any]] | None = getattr(self.engine, "take_conflicts", None)
        self._conflicted: dict[tuple[str, str], set[tuple[str, str]]] | None = None  # stage -> {(kind, name)}
        self.loaded_entities = 0  # stored entities brought back into memory (figures, tests)
        # Stages this process started empty (not from a stored row): every stored entity of them went through
        # this process, so the names it paged out (and their file links) say what to load without asking the
        # store which names it has. Stages seeded from a stored row ask the store (_load_touched).
        self._paged: dict[tuple[str, str], _Paged] = {}

    # -- opening stages and loading entities ---------------------------------------------------------
    def _open_stage(self, key: tuple[str, str]) -> None:
        """Before a stage's first new event in this process: start from its stored row when that row is
        current, else load the whole stage (repair) or, for a stage never stored, start empty."""
        self._opened.add(key)
        self.report.stages.add(key)
        w = where(*key)
        rows = self.store.query(f"SELECT * FROM stage_numbers FINAL WHERE {w}")
        (count,) = self.store.query(f"SELECT uniqExact(kind, entity, event_id) AS n FROM raw_events WHERE {w}")
        stored = int(count["n"])
        if not stored and not rows:
            self._paged[key] = _Paged()  # a new stage
            return
        if self._conflicted is None:
            self._conflicted = self._load_conflicted()
        if len(rows) == 1 and int(rows[0]["events"]) == stored and key not in self._conflicted:
            self.engine.stage(*key).seed(rows[0])
            log.info("replay.stage_opened campaign=%s stage=%s stored_events=%d", key[0], key[1], stored)
            return
        self._load_whole_stage(key)

    def _load_whole_stage(self, key: tuple[str, str]) -> None:
        """Bring every stored event of a stage into the engine (a repair, or a stage with conflicts).

        The state rows of the loaded entities are normally current and are not written again; when the
        stored stage row is behind the stored events (a replay was interrupted between its raw-event
        and state writes), they are all written again with the next state flush.
        """
        n = 0
        for ev in self.store.load_events([key]):
            self.engine.apply(ev)
            n += 1
        if self._take_conflicts is not None:
            self._take_conflicts()  # stored copies resolved again, the same way: recorded when they arrived
        st = self.engine.stage(*key)
        if n:
            st.track_versions(stored_versions(self.store, key))  # rows written again must outrank the stored ones
        if n and not self._state_current(key, stage_row(st)):
            self.report.repaired_stages.add(key)
            st.settle()  # keeps every loaded entity dirty: written with the next state flush
            log.warning("replay.state_behind_events campaign=%s stage=%s stored_events=%d action=rewrite_state_rows",
                        key[0], key[1], n)
        else:
            st.take_dirty()
            self._redo_conflicted(key)
        if n:
            log.info("replay.stage_loaded campaign=%s stage=%s stored_events=%d", key[0], key[1], n)

    def _load_touched(self, batch: list[tuple[Event, str, str, bytes | None]]) -> None:
        """Open the batch's new stages and load the stored entities it touches in the stages that start from a
        stored row (partial)."""
        jobs: dict[tuple[str, str], set[str]] = {}
        files: dict[tuple[str, str], set[str]] = {}
        stages = self.engine.stages
        paged = self._paged
        for ev, _, _, _ in batch:
            key = (ev.campaign, ev.stage)
            st = stages.get(key)
            if st is None:
                if key not in self._opened:
                    self._open_stage(key)
                st = self.engine.stage(*key)
            if not st.partial:
                continue
            known = paged.get(key)
            if type(ev) is JobEvent:
                if ev.job_id not in st.jobs and (known is None or ev.job_id in known.jobs):
                    jobs.setdefault(key, set()).add(ev.job_id)
            else:
                names = files.setdefault(key, set())
                if ev.file not in st.files and (known is None or ev.file in known.files):
                    names.add(ev.file)
                for p in ev.parents or ():  # a new output joins its parents' groups
                    if p not in st.files and (known is None or p in known.files):
                        names.add(p)
        for key, names in jobs.items():
            by: dict[str, list[Any]] = {}
            for ev in self.store.load_entities(*key, "job", sorted(names)):
                by.setdefault(ev.job_id, []).append(ev)
            stages[key].load_jobs(by)
            self.loaded_entities += len(by)
        for key, names in files.items():
            if names:
                self._load_file_groups(key, names)

    def _load_file_groups(self, key: tuple[str, str], names: set[str]) -> None:
        """Load the stored files named and every stored file linked to them, transitively (whole groups)."""
        st = self.engine.stages[key]
        group, frontier = set(names), set(names)
        while frontier:
            found: set[str] = set()
            for out, parents in self.store.file_links(*key, sorted(frontier)):
                found.add(out)
                found.update(parents)
            frontier = {f for f in found if f not in group and f not in st.files}
            group |= frontier
        by: dict[str, list[Any]] = {}
        for ev in self.store.load_entities(*key, "file", sorted(group)):
            by.setdefault(ev.file, []).append(ev)
        st.load_files(by)
        self.loaded_entities += len(by)

    def _load_rest(self, key: tuple[str, str]) -> None:
        """Load every stored entity of a partial stage not in memory (a winning conflicting copy moved a time
        the stage's times must be refolded from: rare)."""
        st = self.engine.stages[key]
        jobs: dict[str, list[Any]] = {}
        files: dict[str, list[Any]] = {}
        for ev in self.store.load_events([key]):
            if type(ev) is JobEvent:
                if ev.job_id not in st.jobs:
                    jobs.setdefault(ev.job_id, []).append(ev)
            elif ev.file not in st.files:
                files.setdefault(ev.file, []).append(ev)
        st.load_jobs(jobs)
        st.load_files(files)
        st.partial = False
        if key in self._paged:
            self._paged[key] = _Paged()
        self.loaded_entities += len(jobs) + len(files)
        log.info("replay.stage_loaded_for_times campaign=%s stage=%s entities=%d", key[0], key[1],
                 len(jobs) + len(files))

    def _redo_conflicted(self, key: tuple[str, str]) -> None:
        """Keep dirty the loaded entities that conflict dead letters name (and the inputs an output names).

        A replay killed after a winning copy's raw row but before its state rows leaves the stage row
        right (same events, maybe the same numbers) and the entity's row stale: only its dead letter,
        written first, tells.
        """
        if self._conflicted is None:
            self._conflicted = self._load_conflicted()
        names = self._conflicted.get(key)
        if not names:
            return
        st = self.engine.stage(*key)
        for kind, name in names:
            if kind == "job" and name in st.jobs:
                st.dirty_jobs.add(name)
            elif kind == "file" and name in st.files:
                st.dirty_files.add(name)
                view = st.files[name].view
                st.dirty_files.update(p for p in (view.parents if view is not None else ()) if p in st.files)
        log.info("replay.conflicted_rows_rewritten campaign=%s stage=%s entities=%d", key[0], key[1], len(names))

    def _load_conflicted(self) -> dict[tuple[str, str], set[tuple[str, str]]]:
        out: dict[tuple[str, str], set[tuple[str, str]]] = {}
        like = literal(CONFLICT_REASON_PREFIX.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%")
        for row in self.store.query(f"SELECT DISTINCT raw FROM dead_letter WHERE reason LIKE {like}"):
            try:
                d = json.loads(raw_from_text(row["raw"]))
                kind = "job" if d["schema"].startswith("job-") else "file"
                out.setdefault((d["campaign"], d["stage"]), set()).add((kind, d["job_id" if kind == "job" else "file"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not an event of ours: nothing to redo
        return out

    def _state_current(self, key: tuple[str, str], derived: dict[str, Any]) -> bool:
        """Whether the stored stage row is the one the stored events give (then every state row is current).

        The stage row is the last row of every state flush and counts the distinct events behind it, so
        it equals the derived row iff the last state flush completed after the last raw-event write.
        """
        rows = self.store.query(f"SELECT * FROM stage_numbers FINAL WHERE {where(*key)}")
        if len(rows) != 1:
            return False
        stored = rows[0]
        for name, value in derived.items():
            if name == "version":
                continue
            got = stored.get(name)
            if value is None or got is None:
                if value is not got:
                    return False
            elif isinstance(value, float):
                if float(got) != value:
                    return False
            elif got != value and int(got) != value:
                return False
        return True

    def feed_event(self, ev: Event, source: str, position: str = "", raw: bytes | None = None) -> bool:
        """Queue one event; it is applied with its batch (at `batch_size` events, or at the next flush).

        Returns True (queued): whether it was new is known when its batch is applied (the report says).
        """
        self.report.lines += 1
        self._pending.append((ev, source, position, raw))
        if len(self._pending) >= self.batch_size:
            self._since_state += len(self._pending)
            self.flush(state=self._since_state >= self.state_every)
        return True

    def _run_batch(self) -> None:
        """Apply the queued events: open new stages, load the stored entities they touch, apply in order."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._load_touched(batch)
        # The replay's hot loop (once per event): no per-event method lookups.
        apply, take, report, add = self.engine.apply, self._take_conflicts, self.report, self.sink.add
        raw_row, now = self._raw_row, self._now
        for ev, source, position, raw in batch:
            try:
                new = apply(ev)
            except Exception as exc:  # a bug in the engine must not lose the replay: this event is a dead letter
                self._engine_failed(ev, exc, source, position, raw)
                continue
            replaced = False
            if take is not None:
                conflicts = take()
                if conflicts:
                    self._record_conflicts(conflicts, source, position)
                    replaced = any(c.kept is ev for c in conflicts)
            if not new:
                report.duplicates += 1  # an exact copy, or a conflicting copy that lost (also a dead letter)
                continue
            if not replaced:  # a winning conflicting copy replaces an event: counted in report.conflicts
                report.new_events += 1
            add("raw_events", raw_row(ev, source, now))
        for key, st in self.engine.stages.items():
            if st.partial and st._times_stale:
                self._load_rest(key)

    def _engine_failed(self, ev: Event, exc: Exception, source: str, position: str, raw: bytes | None) -> None:
        self.report.engine_errors += 1
        log.error("replay.engine_error source=%s position=%s event_id=%s error=%s: %s", source, position,
                  ev.event_id, type(exc).__name__, exc, exc_info=exc)
        self.dead_letter(DeadLetter(source, position, f"the engine failed on this event ({type(exc).__name__}: "
                                    f"{exc}); this is a bug in stagewatch, please report it", 
                                    raw if raw is not None else encode_event(ev)))

    def _record_conflicts(self, conflicts: list[Any], source: str, position: str) -> None:
        """Each conflicting copy that lost is a dead letter; a winner's raw row replaces a queued loser's."""
        for c in conflicts:
            self.report.conflicts += 1
            log.warning("replay.conflicting_duplicate source=%s position=%s event_id=%s", source, position,
                        c.dropped.event_id)
            # keyed by the losing copy, not by the line that met it: a re-run meets it at another line
            met = f" (met at line {position})" if position.isdigit() else f" (met at {position})" if position else ""
            self.dead_letter(DeadLetter(source, c.dead_letter_position, c.reason + met,
                                        encode_event(c.dropped)))
        self.sink.replaced("raw_events")

    def feed_line(self, raw: bytes, source: str, position: str) -> None:
        try:
            ev = decode_event(raw)
        except InvalidEvent as exc:
            self.report.lines += 1
            self.dead_letter(DeadLetter(source, position, str(exc), raw))
            return
        self.report.lines += 1
        self._pending.append((ev, source, position, raw))
        if len(self._pending) >= self.batch_size:
            self._since_state += len(self._pending)
            self.flush(state=self._since_state >= self.state_every)

    def dead_letter(self, dl: DeadLetter) -> None:
        """Record a rejected record (report, dead_letter row, on_invalid).

        dead_letter is keyed by (source, position): a record without a position and a line of stdin are keyed
        by their bytes too (schemas.events.DeadLetter.keyed), so distinct records never share a row.
        """
        dl = dl.keyed()
        self.report.invalid.append(dl)
        self.sink.add("dead_letter", dead_letter_row(dl, time.time()))
        if self.on_invalid:
            self.on_invalid(dl)

    def flush(self, state: bool = True) -> None:
        """Apply the queued events, write raw events and dead letters; with state, also every changed job,
        file and stage row, then (page_out) let the entities that did not change leave memory."""
        self._run_batch()
        if state:
            self.sink.add_dirty(self.engine)
            self._since_state = 0
        self.sink.flush()
        self._now = time.time()
        if state and self.page_out:
            jobs = files = 0
            for key, st in self.engine.stages.items():
                dropped_jobs, dropped_files = st.page_out()
                known = self._paged.get(key)
                if known is not None:
                    known.jobs.update(dropped_jobs)
                    # a parent named but never seen is found too, for when it comes: its outputs are stored
                    known.files.update(itertools.chain(dropped_files, *dropped_files.values()))
                jobs += len(dropped_jobs)
                files += len(dropped_files)
            log.debug("replay.paged_out jobs=%d files=%d", jobs, files)


class _Paged:
    """The names this process paged out of a stage it started empty (stagewatch.paged_names): its jobs, and its
    files with every file they were linked to (a parent named but never seen has no row of its own yet)."""

    __slots__ = ("jobs", "files")

    def __init__(self) -> None:
        self.jobs = PagedNames()
        self.files = PagedNames()


def stored_versions(store: Store, key: tuple[str, str]) -> dict[str, int]:
    """The newest stored row version of every job ("job:ID") and file ("file:NAME") of a stage.

    Why: a stage loaded whole may derive lower versions than the rows it wrote before (a winning copy's
    content-hash bonus and a former output's version live only in the process that met the conflict);
    StageState.track_versions makes every row written again outrank the stored one.
    """
    w = where(*key)
    out = {"job:" + r["job_id"]: int(r["v"]) for r in
           store.query(f"SELECT job_id, max(version) AS v FROM job_state WHERE {w} GROUP BY job_id")}
    out.update({"file:" + r["file"]: int(r["v"]) for r in
                store.query(f"SELECT file, max(version) AS v FROM file_state WHERE {w} GROUP BY file")})
    return out


@contextlib.contextmanager
def relaxed_gc(gen0: int = 200_000):
    """Fewer garbage-collector passes while millions of long-lived event objects are built.

    The engine's state has no reference cycles; with default thresholds CPython re-scans that whole
    heap over and over, which costs a third of a large replay.
    """
    old = gc.get_threshold()
    gc.set_threshold(gen0, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def replay_paths(store: Store, paths: Iterable[str], *, on_invalid: Callable[[DeadLetter], None] | None = None,
                 progress: Callable[[int], None] | None = None, batch_size: int = 50_000) -> ReplayReport:
    """Replay JSON-lines files (``-`` is stdin) into the store; returns what happened."""
    t0 = time.perf_counter()
    r = Replayer(store, batch_size=batch_size, on_invalid=on_invalid)
    with relaxed_gc():
        _replay_files(r, paths, progress)
    r.report.seconds = time.perf_counter() - t0
    log.info("replay.done lines=%d new_events=%d duplicates=%d invalid=%d stages=%d seconds=%.2f",
             r.report.lines, r.report.new_events, r.report.duplicates, len(r.report.invalid),
             len(r.report.stages), r.report.seconds)
    return r.report


def _replay_files(r: Replayer, paths: Iterable[str], progress: Callable[[int], None] | None) -> None:
    for path in paths:
        source = STDIN_SOURCE if path == "-" else path
        last = 0
        try:
            for n, line in iter_input_lines(path):
                last = n
                r.feed_line(line, source, str(n))
                if progress is not None:
                    progress(len(line) + 1)
        except (InputError, OSError) as exc:
            # One unreadable file must not cost the others their data: it is a dead letter, the replay goes on.
            reason = str(exc) if isinstance(exc, InputError) else (
                f"cannot read {source} ({exc.strerror or exc}); check the path and its permissions")
            log.error("replay.input_refused source=%s after_line=%d reason=%s", source, last, reason)
            dl = DeadLetter(source, str(last + 1), reason, b"")
            r.report.unreadable.append(dl)
            r.dead_letter(dl)
    r.flush()


def replay_events(store: Store, events: Iterable[Event], source: str = "simulator",
                  batch_size: int = 50_000) -> ReplayReport:
    """Replay already-decoded events (the simulator, tests)."""
    t0 = time.perf_counter()
    r = Replayer(store, batch_size=batch_size)
    with relaxed_gc():
        for ev in events:
            r.feed_event(ev, source)
        r.flush()
    r.report.seconds = time.perf_counter() - t0
    return r.report
