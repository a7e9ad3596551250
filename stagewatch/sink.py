"""Batching sink from the engine to a store (add rows, flush in batches; quixstreams-style).

Every table it writes is keyed and versioned (raw events by event_id, state rows by version), so a
batch written twice changes no number. A failed write is retried until it succeeds or the caller
gives up: nothing is dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Callable

from processors.engine import Engine
from processors.rows import RAW_COLUMNS
from stagewatch.store.base import Store, StoreError

log = logging.getLogger("stagewatch.sink")

#: Tables whose rows are added as sequences (hot paths) rather than dicts.
ROW_COLUMNS: dict[str, tuple[str, ...]] = {"raw_events": RAW_COLUMNS}

TABLE_ORDER = ("dead_letter", "raw_events", "job_attempts", "job_state", "file_state", "stage_numbers")


class StoreSink:
    def __init__(self, store: Store, *, retry_for_s: float = 0.0, sleep: Callable[[float], None] = time.sleep,
                 on_flush: Callable[[str, int, float], None] | None = None) -> None:
        self.store = store
        self.retry_for_s = retry_for_s
        self.sleep = sleep
        self.on_flush = on_flush
        self.pending: dict[str, list[Any]] = defaultdict(list)

    def add(self, table: str, row: Any) -> None:
        """Queue a row: a dict, or for tables in ROW_COLUMNS a sequence in that column order."""
        self.pending[table].append(row)

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
                log.warning("sink.retry table=%s rows=%d error=%s next_try_in_s=%.1f",
                            table, len(rows), str(exc).splitlines()[0], delay)
                self.sleep(delay)
                delay = min(delay * 2, 10.0)
