"""The store as it stood at a moment T: `--at T` on the read commands.

Why a separate store: a number "at T" must be computed from exactly the raw events with ``ts <= T``
(event time, not arrival time) by the same definitions as now, with T also the clock of the stall rule.
The current-state tables only hold the state after *all* events, and a job's or file's state at T
is not a column of it. The exact way is the definition itself: apply those raw events to the same
Engine and read the numbers through the same reading functions (the same SQL). By construction that
equals replaying only those events into an empty store (the property tests in
tests/stagewatch/test_timetravel.py and test_timetravel_fast.py check it).

What makes it fast (measured on the demo store, see the module's tests and the report of issue 10):

* A stage whose every stored event has ``ts <= T`` (and whose stored stage row is current: it counts
  exactly the stored distinct events, and no conflicting copy was recorded for it) stood at T exactly
  as it stands now, so it is read from the user's store as it is. When every selected stage is such a
  stage, the view *is* the user's store: no event is read at all.
* The other stages' events are applied to an Engine in memory (no replay through the store), and
  `status --at` takes its numbers from it directly (StageState.numbers, processors.forecast.stage_forecast):
  no ephemeral store at all.
* The other read commands get an ephemeral chDB store whose tables are written lazily, each in one bulk
  insert, the first time a query names them: `files --at` writes file_state only, `jobs --at`
  job_state, and raw_events (the biggest) is written only for a query that reads it (forecast, `job`,
  `--by submission`, the report's series).

Read commands never create anything in the user's store: the events are read with SELECTs and the
ephemeral store is a temporary directory, deleted afterwards (also on errors).

chDB allows one data path per process (a second ``Session(path)`` is refused while one is open), so
when the user's store is itself chDB its session is closed while the ephemeral store is open and
re-opened afterwards (read-only: nothing is created); a ClickHouse server store stays open throughout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from processors.engine import Engine
from processors.rows import RAW_COLUMNS, event_from_raw_row, raw_event_row
from schemas.events import raw_from_text
from schemas.queries import literal, where
from stagewatch.store.base import Store

log = logging.getLogger("stagewatch.timetravel")

#: The raw_events columns an event is rebuilt from (hold codes: schema version 3).
EVENT_COLUMNS = ("kind, entity, event_id, ts, campaign, stage, type, submission, job_id, exit_code, signal, "
                 "cpu_user_s, cpu_sys_s, wall_s, cores, reason, site, host, hold_code, hold_subcode, parents, "
                 "location")

StageKey = tuple[str, str]


def events_until(store: Store, at: float | None, campaign: str | None = None, stage: str | None = None) -> list[Any]:
    """Every stored raw event of the selected stages with ``ts <= at``, sorted by (ts, event_id).

    Copies of one event may appear (raw_events is read without FINAL): the Engine counts them once.
    The sort only makes the result deterministic; the Engine is order independent.
    """
    events = _read_events(store, [where(campaign, stage)], at)
    events.sort(key=lambda e: (e.ts, e.event_id))
    return events


def _read_events(store: Store, wheres: Iterable[str], at: float | None) -> list[Any]:
    """The raw events (ts <= at; None: all) of each `where` clause, unsorted."""
    until = "" if at is None else f" AND ts <= {literal(float(at))}"
    events: list[Any] = []
    for w in wheres:
        events.extend(map(event_from_raw_row, store.query(f"SELECT {EVENT_COLUMNS} FROM raw_events WHERE {w}{until}")))
    return events


def engine_at(store: Store, at: float, campaign: str | None = None, stage: str | None = None) -> Engine:
    """An Engine holding exactly the selected stages' events with ts <= at (for Python-side numbers)."""
    engine = Engine()
    engine.apply_all(events_until(store, at, campaign, stage))
    engine.take_conflicts()
    return engine


# ------------------------------------------------------------------------- which stages need events
@dataclass
class Split:
    """The selected stages that have events with ts <= at: `done` ones stood at `at` as they stand now
    (read from the user's store as they are), `partial` ones need their events up to `at` replayed."""

    done: list[StageKey] = field(default_factory=list)
    partial: list[StageKey] = field(default_factory=list)
    later: list[StageKey] = field(default_factory=list)  # only events after `at`: absent from the view

    @property
    def all_done(self) -> bool:
        """Every selected stage stood at `at` as it stands now: the user's store is the view."""
        return bool(self.done) and not self.partial and not self.later


def split_stages(store: Store, at: float, campaign: str | None = None, stage: str | None = None) -> Split:
    """Sort the selected stages by what `at` needs of them (stages with no event at or before `at` are absent).

    A stage is `done` when its last stored event has ts <= at, its stored stage row counts exactly its
    distinct stored events (the invariant stagewatch.replay relies on: the stage row is written last, so
    then every state row of the stage is current) and no conflicting copy of one of its events was recorded
    (a replay killed after a winning copy's raw row may leave an entity row stale with the same count).
    Three stage-wide queries, whatever the number of events.
    """
    w = where(campaign, stage)
    t = literal(float(at))
    seen = store.query(f"SELECT campaign, stage, uniqExact(kind, entity, event_id) AS n "
                       f"FROM raw_events WHERE {w} AND ts <= {t} GROUP BY campaign, stage")
    later = {(r["campaign"], r["stage"]) for r in store.query(
        f"SELECT DISTINCT campaign, stage FROM raw_events WHERE {w} AND ts > {t}")}
    if not seen:
        return Split(later=sorted(later))
    rows = {(r["campaign"], r["stage"]): int(r["events"]) for r in store.query(
        f"SELECT campaign, stage, events FROM stage_numbers FINAL WHERE {w}")}
    conflicted = conflicted_stages(store)
    out = Split(later=sorted(later - {(r["campaign"], r["stage"]) for r in seen}))
    for r in seen:
        key = (r["campaign"], r["stage"])
        if key not in later and rows.get(key) == int(r["n"]) and key not in conflicted:
            out.done.append(key)
        else:
            out.partial.append(key)
    out.done.sort()
    out.partial.sort()
    return out


def conflicted_stages(store: Store) -> set[StageKey]:
    """Stages named by a conflicting-copy dead letter (stagewatch.replay.CONFLICT_REASON_PREFIX)."""
    from stagewatch.replay import CONFLICT_REASON_PREFIX

    like = literal(CONFLICT_REASON_PREFIX.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%")
    out: set[StageKey] = set()
    for row in store.query(f"SELECT DISTINCT raw FROM dead_letter WHERE reason LIKE {like}"):
        try:
            d = json.loads(raw_from_text(row["raw"]))
            out.add((d["campaign"], d["stage"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # not an event of ours: it names no stage
    return out


#: Up to this many stages are read with one query each (by the primary key); more with one query over the
#: selection whose other stages' rows are dropped here (a query costs about 10 ms on chDB: 200 stages, 2 s).
PER_STAGE_QUERIES = 20


def rows_of(store: Store, select: str, keys: Sequence[StageKey], selection: str, *, every: bool,
            extra: str = "") -> list[dict[str, Any]]:
    """The rows of `select` (a SELECT ... FROM ... naming campaign and stage among its columns) of these stages.

    `selection` is the WHERE condition of the command's selection; `every` says the keys are every stage of
    it that has rows (one query, no filter); `extra` is ANDed to every condition.
    """
    if every:
        return store.query(f"{select} WHERE {selection}{extra}")
    if len(keys) <= PER_STAGE_QUERIES:
        out: list[dict[str, Any]] = []
        for c, s in keys:
            out += store.query(f"{select} WHERE {where(c, s)}{extra}")
        return out
    wanted = set(keys)
    return [r for r in store.query(f"{select} WHERE {selection}{extra}") if (r["campaign"], r["stage"]) in wanted]


def partial_engine(store: Store, at: float, split: Split, campaign: str | None = None,
                   stage: str | None = None) -> Engine:
    """An Engine holding exactly the events with ts <= at of the split's partial stages."""
    from stagewatch.replay import relaxed_gc

    engine = Engine()
    if not split.partial:
        return engine
    rows = rows_of(store, f"SELECT {EVENT_COLUMNS} FROM raw_events", split.partial, where(campaign, stage),
                   every=not split.done, extra=f" AND ts <= {literal(float(at))}")  # later-only stages: no rows
    with relaxed_gc():
        engine.apply_all(map(event_from_raw_row, rows))
    engine.take_conflicts()  # resolved the way the replay resolves them: recorded when they arrived
    return engine


# ------------------------------------------------------------------------------------- status --at
def status_at(store: Store, at: float, campaign: str | None = None, stage: str | None = None, *,
              as_of: float | None = None, threshold_s: float | None = None,
              rate_window_h: float | None = None) -> dict[str, Any]:
    """What `reading.read_status(store_at(...), forecast=True)` gives, without any ephemeral store.

    Done stages come from the user's store through read_status itself (the SQL); the others from an
    Engine holding their events up to `at`: StageState.numbers and processors.forecast.stage_forecast,
    the Python definitions the SQL is tested against (tests/stagewatch/test_timetravel_fast.py).
    """
    from processors.forecast import DEFAULT_RATE_WINDOW_H, stage_forecast, window_seconds
    from processors.numbers import STALL_THRESHOLD_S
    from stagewatch.reading import _shape, read_status

    t0 = time.perf_counter()
    as_of = at if as_of is None else as_of
    threshold_s = STALL_THRESHOLD_S if threshold_s is None else threshold_s
    rate_window_h = DEFAULT_RATE_WINDOW_H if rate_window_h is None else rate_window_h
    split = split_stages(store, at, campaign, stage)
    stages: list[dict[str, Any]] = []
    if split.done:
        done = set(split.done)
        now = read_status(store, campaign, stage, as_of=as_of, threshold_s=threshold_s, forecast=True,
                          rate_window_h=rate_window_h)
        stages += [s for s in now["stages"] if (s["campaign"], s["stage"]) in done]
    if split.partial:
        engine = partial_engine(store, at, split, campaign, stage)
        window_s = window_seconds(rate_window_h)
        for key in sorted(engine.stages):
            st = engine.stages[key]
            n = st.numbers(as_of, threshold_s)
            row = {**n, **{f"restarts_{c}": v for c, v in n["restarts_by_cause"].items()}}
            shaped = _shape(row)
            shaped.update(stage_forecast(st, as_of, window_s))
            stages.append(shaped)
    stages.sort(key=lambda s: (s["campaign"], s["stage"]))
    log.info("timetravel.status at=%s done_stages=%d partial_stages=%d seconds=%.2f", at, len(split.done),
             len(split.partial), time.perf_counter() - t0)
    return {"as_of": as_of, "stall_threshold_s": threshold_s, "stages": stages, "rate_window_h": rate_window_h}


# ----------------------------------------------------------------------------- the ephemeral store
#: The tables an ephemeral store fills from the Engine, and the views that read raw_events.
STATE_TABLES = ("job_state", "job_attempts", "file_state", "stage_numbers")
_RECOUNT_VIEW = re.compile(r"\bv_\w+")


class _LazyStore(Store):
    """A chDB store whose tables are written from an Engine the first time a query names them.

    Why lazy: writing rows costs more than computing them, and each read command needs one or two tables
    (`files` file_state, `jobs` job_state, `sites` job_state and job_attempts); raw_events, the biggest,
    only for the queries that read events. Each table is written in one bulk insert (two with done stages).

    `done_state` holds the state rows of the done stages as the user's store has them (copied, not
    replayed); `done_raw` fetches their raw rows (in RAW_COLUMNS order) when a query needs raw_events.
    """

    def __init__(self, inner: Store, engine: Engine, done_state: dict[str, list[dict[str, Any]]] | None = None,
                 done_raw: Callable[[], list[list[Any]]] | None = None) -> None:
        self.inner = inner
        self.url = inner.url
        self.engine = engine
        self._state: dict[str, list[dict[str, Any]]] | None = None
        self._done_state = done_state or {}
        self._done_raw = done_raw
        self._filled: set[str] = set()

    def _fill_for(self, sql: str) -> None:
        if len(self._filled) == len(STATE_TABLES) + 1:
            return
        wanted = [t for t in ("raw_events", *STATE_TABLES) if t not in self._filled and re.search(rf"\b{t}\b", sql)]
        if _RECOUNT_VIEW.search(sql) and "raw_events" not in self._filled:
            wanted.append("raw_events")  # the recount views (schemas/sql/views.sql) read raw_events
        for table in wanted:
            t0 = time.perf_counter()
            n = self._fill(table)
            self._filled.add(table)
            log.info("timetravel.table_written table=%s rows=%d seconds=%.2f", table, n, time.perf_counter() - t0)

    def _fill(self, table: str) -> int:
        if table == "raw_events":
            rows = list(self._raw_rows())
            if self._done_raw is not None:
                rows += self._done_raw()
            self.inner.insert("raw_events", rows, RAW_COLUMNS)
            return len(rows)
        if self._state is None:
            self._state = {t: [] for t in STATE_TABLES}
            for t, row in self.engine.dirty_rows():
                self._state[t].append(row)
        rows = self._state.pop(table)
        copied = self._done_state.pop(table, [])
        self.inner.insert(table, rows)
        self.inner.insert(table, copied)  # its own column list: SELECT * of the user's table
        return len(rows) + len(copied)

    def _raw_rows(self) -> Iterator[list[Any]]:
        """The raw row of every event the Engine kept (duplicates once, conflicts resolved: what a replay writes)."""
        now = time.time()
        for key in sorted(self.engine.stages):
            st = self.engine.stages[key]
            for ents in (st.jobs, st.files):
                for ent in ents.values():
                    for ev in ent.events:
                        yield raw_event_row(ev, "timetravel", now)

    def ensure_schema(self) -> None:
        self.inner.ensure_schema()

    def query(self, sql: str) -> list[dict[str, Any]]:
        self._fill_for(sql)
        return self.inner.query(sql)

    def command(self, sql: str) -> None:
        self._fill_for(sql)
        self.inner.command(sql)

    def _insert_rows(self, table: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
        self._fill_for(table)
        self.inner.insert(table, rows, columns)

    def close(self) -> None:
        self.inner.close()


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


def _read_done_state(store: Store, split: Split, selection: str) -> dict[str, list[dict[str, Any]]]:
    """The state rows of the done stages, as the user's store has them."""
    return {table: rows_of(store, f"SELECT * FROM {table} FINAL", split.done, selection,
                           every=not split.partial and not split.later) for table in STATE_TABLES}


def _read_done_raw(store: Store, split: Split, selection: str) -> list[list[Any]]:
    """The raw rows of the done stages in RAW_COLUMNS order, as the user's store has them (copies included:
    reading the user's store now gives the same)."""
    rows = rows_of(store, f"SELECT {', '.join(RAW_COLUMNS)} FROM raw_events", split.done, selection,
                   every=not split.partial and not split.later)
    return [[r[k] for k in RAW_COLUMNS] for r in rows]


@contextlib.contextmanager
def _user_store_back(store: Store, inner: Store) -> Iterator[None]:
    """Inside a pause (one chDB path per process): close the ephemeral store, re-open the user's for the
    duration, then the other way round again. Nothing happens for a ClickHouse server user store."""
    from stagewatch.store.chdb_store import ChdbStore

    if not isinstance(store, ChdbStore) or not isinstance(inner, ChdbStore):
        yield
        return
    url, inner_url = store.url, inner.url
    inner.close()
    try:
        ChdbStore.__init__(store, store.path, create=False)
        store.url = url
        try:
            yield
        finally:
            store.close()
    finally:
        ChdbStore.__init__(inner, inner.path, create=False)
        inner.url = inner_url


@contextlib.contextmanager
def store_at(store: Store, at: float, campaign: str | None = None, stage: str | None = None) -> Iterator[Store]:
    """A store holding the selected stages as they stood at ``at`` (events with ts <= at).

    Use the reading functions on it with ``as_of=at`` (the stall clock). When every selected stage is
    done at ``at`` (split_stages) that is the user's store itself; otherwise an ephemeral store, deleted
    on exit, whose tables are written from an Engine when first read (_LazyStore).
    """
    from stagewatch.store.chdb_store import ChdbStore

    t0 = time.perf_counter()
    split = split_stages(store, at, campaign, stage)
    if split.all_done:
        log.info("timetravel.ready at=%s done_stages=%d store=user seconds=%.2f", at, len(split.done),
                 time.perf_counter() - t0)
        yield store
        return
    engine = partial_engine(store, at, split, campaign, stage)
    selection = where(campaign, stage)
    done_state = _read_done_state(store, split, selection) if split.done else {}
    with _user_store_paused(store):
        tmp = tempfile.mkdtemp(prefix="stagewatch-at-")
        try:
            inner = ChdbStore(tmp, create=True)
            try:  # closed whatever happens: the user's store cannot re-open while it is open
                inner.ensure_schema()  # before the wrapper: the schema check's queries need no rows

                def done_raw() -> list[list[Any]]:
                    with _user_store_back(store, inner):
                        return _read_done_raw(store, split, selection)

                eph = _LazyStore(inner, engine, done_state, done_raw if split.done else None)
                log.info("timetravel.ready at=%s stages=%d seconds=%.2f", at, len(engine.stages),
                         time.perf_counter() - t0)
                yield eph
            finally:
                inner.close()
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
