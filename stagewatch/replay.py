"""Embedded replay: JSON lines -> events -> engine -> store, with dead letters for bad lines.

A replay adds to what the store already holds: before the first new event of a stage is applied,
that stage's stored raw events are loaded back into the engine, so the new numbers are those of all
events ever replayed, and re-replaying a file changes nothing (its events are duplicates).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable, Iterator

from processors.engine import Engine
from processors.rows import dead_letter_row, raw_event_row
from schemas.events import DeadLetter, Event, InvalidEvent, decode_event
from stagewatch.sink import StoreSink
from stagewatch.store.base import Store

log = logging.getLogger("stagewatch.replay")


@dataclass
class ReplayReport:
    lines: int = 0
    new_events: int = 0
    duplicates: int = 0
    invalid: list[DeadLetter] = field(default_factory=list)
    stages: set[tuple[str, str]] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0


class Replayer:
    """Feeds events into an Engine and writes results to a store in batches."""

    def __init__(self, store: Store, *, batch_size: int = 100_000, state_every: int = 1_000_000,
                 on_invalid: Callable[[DeadLetter], None] | None = None) -> None:
        self.store = store
        self.engine = Engine()
        self.sink = StoreSink(store)
        self.batch_size = batch_size
        self.state_every = state_every  # state rows are rewritten per flush: fewer flushes, fewer rows
        self._since_state = 0
        self.on_invalid = on_invalid
        self.report = ReplayReport()
        self._loaded: set[tuple[str, str]] = set()
        self._since_flush = 0
        self._now = time.time()

    def _load_stage(self, key: tuple[str, str]) -> None:
        """Bring a stage's stored events into the engine before its first new event."""
        self._loaded.add(key)
        self.report.stages.add(key)
        n = 0
        for ev in self.store.load_events([key]):
            self.engine.apply(ev)
            n += 1
        self.engine.stage(*key).take_dirty()
        if n:
            log.info("replay.stage_loaded campaign=%s stage=%s stored_events=%d", key[0], key[1], n)

    def feed_event(self, ev: Event, source: str) -> bool:
        key = (ev.campaign, ev.stage)
        if key not in self._loaded:
            self._load_stage(key)
        self.report.lines += 1
        if not self.engine.apply(ev):
            self.report.duplicates += 1
            return False
        self.report.new_events += 1
        self.sink.add("raw_events", raw_event_row(ev, source, self._now))
        self._since_flush += 1
        if self._since_flush >= self.batch_size:
            self._since_state += self._since_flush
            self.flush(state=self._since_state >= self.state_every)
        return True

    def feed_line(self, raw: bytes, source: str, position: str) -> None:
        try:
            ev = decode_event(raw)
        except InvalidEvent as exc:
            self.report.lines += 1
            self.dead_letter(DeadLetter(source, position, str(exc), raw))
            return
        self.feed_event(ev, source)

    def dead_letter(self, dl: DeadLetter) -> None:
        self.report.invalid.append(dl)
        self.sink.add("dead_letter", dead_letter_row(dl, time.time()))
        if self.on_invalid:
            self.on_invalid(dl)

    def flush(self, state: bool = True) -> None:
        """Write raw events and dead letters; with state, also every changed job, file and stage row."""
        if state:
            self.sink.add_dirty(self.engine)
            self._since_state = 0
        self.sink.flush()
        self._since_flush = 0
        self._now = time.time()


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


def iter_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped line) for non-blank lines."""
    for n, line in enumerate(stream, 1):
        line = line.strip()
        if line:
            yield n, line


def replay_paths(store: Store, paths: Iterable[str], *, on_invalid: Callable[[DeadLetter], None] | None = None,
                 progress: Callable[[int], None] | None = None, batch_size: int = 100_000) -> ReplayReport:
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
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")
        source = "<stdin>" if path == "-" else path
        try:
            for n, line in iter_lines(stream):
                r.feed_line(line, source, str(n))
                if progress is not None:
                    progress(len(line) + 1)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
    r.flush()


def replay_events(store: Store, events: Iterable[Event], source: str = "simulator",
                  batch_size: int = 100_000) -> ReplayReport:
    """Replay already-decoded events (the simulator, tests)."""
    t0 = time.perf_counter()
    r = Replayer(store, batch_size=batch_size)
    with relaxed_gc():
        for ev in events:
            r.feed_event(ev, source)
        r.flush()
    r.report.seconds = time.perf_counter() - t0
    return r.report
