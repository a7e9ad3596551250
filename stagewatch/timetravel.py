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


def events_until(store: Store, at: float | None, campaign: str | None = None, stage: str | None = None) -> list[Any]:
    """Every stored raw event of the selected stages with ``ts <= at``, sorted by (ts, event_id).

    Copies of one event may appear (raw_events is read without FINAL): the Engine counts them once.
    The sort only makes the result deterministic; the Engine is order independent.
    """
    until = "" if at is None else f" AND ts <= {literal(float(at))}"  # None: every event
    rows = store.query(f"SELECT {EVENT_COLUMNS} FROM raw_events WHERE {where(campaign, stage)}{until}")
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


# ------------------------------------------------------------------------------------------- history
#: More steps than this is almost surely a mistaken --every (1 s over a month): refused with a sentence.
MAX_HISTORY_STEPS = 100_000


class TooManySteps(ValueError):
    """A history that would have more than MAX_HISTORY_STEPS steps; the message says what to change."""


def history(store: Store, campaign: str, stage: str, *, every_s: float, since: float | None = None,
            until: float | None = None, threshold_s: float | None = None,
            rate_window_h: float | None = None) -> list[dict[str, Any]]:
    """Every number of one stage at since, since + every, ... up to until (both included when on a step).

    Each step's numbers are those of the events with ts <= the step, with the step as the stall clock:
    exactly what `status --at STEP --format json` gives (the test compares the two). The events are
    applied in ts order to one Engine and the numbers taken at each step; that is exact because the
    Engine's numbers depend only on the set of events applied, not on their order.

    Defaults: since = the stage's first event, until = its last event (a step is added there).
    """
    from processors.forecast import (DEFAULT_RATE_WINDOW_H, LocatedTimes, eta, located_rate_per_h, stage_forecast,
                                     window_seconds)
    from processors.numbers import STALL_THRESHOLD_S

    if not every_s > 0:
        raise ValueError("every_s must be positive")
    threshold_s = STALL_THRESHOLD_S if threshold_s is None else threshold_s
    window_s = window_seconds(DEFAULT_RATE_WINDOW_H if rate_window_h is None else rate_window_h)
    events = events_until(store, until, campaign, stage)
    if not events:
        return []
    start = events[0].ts if since is None else since
    end = events[-1].ts if until is None else until
    if end >= start and (end - start) / every_s >= MAX_HISTORY_STEPS:
        raise TooManySteps(f"--every {every_s:g} s from {start:.0f} to {end:.0f} would be "
                           f"{int((end - start) // every_s) + 1:,} steps (at most {MAX_HISTORY_STEPS:,}): give a longer "
                           "--every or a shorter --since/--until range.")
    steps: list[float] = []
    t = start
    while t <= end:
        steps.append(t)
        t = start + every_s * len(steps)  # no drift from adding floats
    if until is None and steps[-1] < end:
        steps.append(end)  # the latest numbers are always the last step
    engine = Engine()
    located = LocatedTimes(events)  # one pass for every step's forecast (exact unless a conflict was resolved)
    conflicted = False
    i, out = 0, []
    for step in steps:
        while i < len(events) and events[i].ts <= step:
            engine.apply(events[i])
            i += 1
        conflicted = conflicted or bool(engine.take_conflicts())
        st = engine.stages.get((campaign, stage))
        if st is None:  # no event of the stage yet
            continue
        numbers = st.numbers(step, threshold_s)
        if conflicted:
            numbers.update(stage_forecast(st, step, window_s))
        else:
            n = located.in_window(step, window_s)
            remaining = numbers["input_files"] - numbers["files_located"]
            numbers.update(located_rate_per_h=located_rate_per_h(n, window_s), eta=eta(step, remaining, n, window_s))
        out.append({"ts": step, **numbers})
    return out
