"""Batching sink from the engine to a store (add rows, flush in batches; quixstreams-style).

Every table it writes is keyed and versioned (raw events by event_id, state rows by version), so a
batch written twice changes no number. A failed write is retried until it succeeds or the caller
gives up (the retry time runs out, or its `stop` event is set): nothing is dropped silently.

Raw events are written before state rows (TABLE_ORDER), and the stage row last: a write interrupted
between them leaves state rows behind the events, never ahead, which the replay detects and repairs.

Dead letters are keyed by (source, position) (a ReplacingMergeTree: the same bad record seen twice is one
row). A record without a position (events fed as objects: stagewatch.replay.replay_events, the SAM and
follow store writers, any writer that passes none) gets one derived from its bytes here
(schemas.events.dead_letter_position), so distinct records never collapse into one row and a re-run adds no copy. A
conflicting copy that lost is keyed by its own content (processors.stage.Conflict.dead_letter_position), not
by the line that met it; its source stays the input where it was met, so a loser met from two different inputs in two runs (its
winner's file first, then its own) is one row per input.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any, Callable

from processors.engine import Engine
from processors.rows import RAW_COLUMNS
from schemas.events import dead_letter_position
from stagewatch.store.base import Store, StoreError

log = logging.getLogger("stagewatch.sink")

#: Tables whose rows are added as sequences (hot paths) rather than dicts.
ROW_COLUMNS: dict[str, tuple[str, ...]] = {"raw_events": RAW_COLUMNS}

#: The key columns (positions in ROW_COLUMNS) of tables whose rows may be replaced within one batch: a
#: conflicting copy of an event that wins replaces the loser's row (raw_events has no version column).
ROW_KEYS: dict[str, tuple[int, ...]] = {"raw_events": tuple(RAW_COLUMNS.index(c) for c in (
    "campaign", "stage", "kind", "entity", "event_id"))}

TABLE_ORDER = ("dead_letter", "raw_events", "job_attempts", "job_state", "file_state", "stage_numbers")

def keyed_dead_letters(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` with a derived position for each dead letter that has none (see dead_letter_position)."""
    return [r if r.get("position") else {**r, "position": dead_letter_position(r.get("raw") or "", r.get("reason") or "")}
            for r in rows]


class StoreSink:
    def __init__(self, store: Store, *, retry_for_s: float = 0.0, sleep: Callable[[float], None] = time.sleep,
                 on_flush: Callable[[str, int, float], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        """`stop`: when set while a failed write waits for its retry, the write gives up at once (a worker
        asked to stop must not block forever behind a store that keeps refusing a batch)."""
        self.store = store
        self.retry_for_s = retry_for_s
        self.sleep = sleep
        self.on_flush = on_flush
        self.stop = stop
        self.pending: dict[str, list[Any]] = defaultdict(list)
        self._replaced: set[str] = set()  # tables whose pending rows may hold several rows of one key

    def add(self, table: str, row: Any) -> None:
        """Queue a row: a dict, or for tables in ROW_COLUMNS a sequence in that column order."""
        self.pending[table].append(row)

    def replaced(self, table: str) -> None:
        """A row added later replaces an earlier pending row of the same key (ROW_KEYS): only the last is written.

        Within one INSERT block ClickHouse does not promise which of two rows of a key survives, so the
        loser is dropped here rather than left to the row order.
        """
        if table not in ROW_KEYS:
            raise ValueError(f"{table} has no row key: rows of it cannot replace each other")
        self._replaced.add(table)

    def _last_per_key(self, table: str, rows: list[Any]) -> list[Any]:
        idx = ROW_KEYS[table]
        last: dict[tuple[Any, ...], Any] = {}
        for row in rows:
            last[tuple(row[i] for i in idx)] = row
        return list(last.values())

    def add_dirty(self, engine: Engine) -> None:
        for table, row in engine.dirty_rows():
            self.pending[table].append(row)

    def __len__(self) -> int:
        return sum(len(v) for v in self.pending.values())

    def flush(self) -> int:
        """Write everything pending; state tables last, so numbers never run ahead of their rows."""
        written = 0
        for table in TABLE_ORDER:
            rows = self.pending.get(table)
            if not rows:
                continue
            if table in self._replaced:
                rows = self.pending[table] = self._last_per_key(table, rows)
                self._replaced.discard(table)
            if table == "dead_letter":
                rows = self.pending[table] = keyed_dead_letters(rows)
            t0 = time.perf_counter()
            self._insert_with_retry(table, rows, ROW_COLUMNS.get(table))
            dt = time.perf_counter() - t0
            if self.on_flush:
                self.on_flush(table, len(rows), dt)
            log.debug("sink.flush table=%s rows=%d seconds=%.3f", table, len(rows), dt)
            written += len(rows)
            self.pending[table] = []
        return written

    def _insert_with_retry(self, table: str, rows: list[Any], columns: tuple[str, ...] | None) -> None:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.5
        while True:
            try:
                self.store.insert(table, rows, columns)
                return
            except StoreError as exc:
                if time.monotonic() >= deadline:
                    raise
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if self.stop is not None and self.stop.is_set():
                    raise self._stopped(table, rows, first) from exc
                log.warning("sink.retry table=%s rows=%d error=%s next_try_in_s=%.1f",
                            table, len(rows), first, delay)
                if self.stop is not None:
                    if self.stop.wait(delay):
                        raise self._stopped(table, rows, first) from exc
                else:
                    self.sleep(delay)
                delay = min(delay * 2, 10.0)

    @staticmethod
    def _stopped(table: str, rows: list[Any], error: str) -> StoreError:
        log.warning("sink.stopped table=%s rows=%d last_error=%s", table, len(rows), error)
        return StoreError(f"Writing {len(rows)} row(s) to {table} stopped before the write succeeded (last error: "
                          f"{error}); those rows are still pending in the sink, not written.")
