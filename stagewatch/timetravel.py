"""The store as it stood at a moment T: `--at T` on the read commands.

Why a separate store: a number "at T" must be computed from exactly the raw events with ``ts <= T``
(event time, not arrival time) by the same definitions as now, with T also the clock of the stall rule.
The current-state tables only hold the state after *all* events, and a job's or file's state at T
is not a column of it. The simplest exact way is the definition itself: replay those raw events into
an empty, ephemeral chDB store with the same Engine and run the same reading functions (the same SQL)
on it. By construction that equals replaying only those events into an empty store (the property test
in tests/stagewatch/test_timetravel.py checks it).

Read commands never create anything in the user's store: the events are read with one SELECT and the
ephemeral store is a temporary directory, deleted afterwards (also on errors).

chDB allows one data path per process (a second ``Session(path)`` is refused while one is open), so
when the user's store is itself chDB its session is closed while the ephemeral store is open and
re-opened afterwards (read-only: nothing is created); a ClickHouse server store stays open throughout.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from typing import Any, Iterator

from processors.engine import Engine
from processors.rows import event_from_raw_row
from schemas.queries import literal, where
from stagewatch.store.base import Store

log = logging.getLogger("stagewatch.timetravel")

#: The raw_events columns an event is rebuilt from (hold codes: schema version 3).
EVENT_COLUMNS = ("kind, entity, event_id, ts, campaign, stage, type, submission, job_id, exit_code, signal, "
                 "cpu_user_s, cpu_sys_s, wall_s, cores, reason, site, host, hold_code, hold_subcode, parents, "
                 "location")


def events_until(store: Store, at: float, campaign: str | None = None, stage: str | None = None) -> list[Any]:
    """Every stored raw event of the selected stages with ``ts <= at``, sorted by (ts, event_id).

    Copies of one event may appear (raw_events is read without FINAL): the Engine counts them once.
    The sort only makes the result deterministic; the Engine is order independent.
    """
    rows = store.query(f"SELECT {EVENT_COLUMNS} FROM raw_events WHERE {where(campaign, stage)} "
                       f"AND ts <= {literal(float(at))}")
    events = [event_from_raw_row(r) for r in rows]
    events.sort(key=lambda e: (e.ts, e.event_id))
    return events


def engine_at(store: Store, at: float, campaign: str | None = None, stage: str | None = None) -> Engine:
    """An Engine holding exactly the selected stages' events with ts <= at (for Python-side numbers)."""
    engine = Engine()
    engine.apply_all(events_until(store, at, campaign, stage))
    engine.take_conflicts()
    return engine


@contextlib.contextmanager
def _user_store_paused(store: Store) -> Iterator[None]:
    """Close a chDB user store's session for the duration (one chDB path per process), then re-open it."""
    from stagewatch.store.chdb_store import ChdbStore

    if not isinstance(store, ChdbStore):
        yield
        return
    url = store.url
    store.close()
    try:
        yield
    finally:
        # the same read-only open the command made (create=False: nothing is created)
        ChdbStore.__init__(store, store.path, create=False)
        store.url = url


@contextlib.contextmanager
def store_at(store: Store, at: float, campaign: str | None = None, stage: str | None = None) -> Iterator[Store]:
    """An ephemeral store holding the selected stages as they stood at ``at`` (events with ts <= at).

    Use the reading functions on it with ``as_of=at`` (the stall clock). Deleted on exit.
    """
    from stagewatch.replay import replay_events
    from stagewatch.store.chdb_store import ChdbStore

    t0 = time.perf_counter()
    events = events_until(store, at, campaign, stage)
    with _user_store_paused(store):
        tmp = tempfile.mkdtemp(prefix="stagewatch-at-")
        try:
            eph = ChdbStore(tmp, create=True)
            try:
                eph.ensure_schema()
                replay_events(eph, events, source="timetravel")
                log.info("timetravel.ready at=%s events=%d seconds=%.2f", at, len(events), time.perf_counter() - t0)
                yield eph
            finally:
                eph.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
