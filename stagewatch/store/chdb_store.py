"""Embedded store: chDB, a modern ClickHouse engine inside this process (no server to run).

A chDB store is a directory. When stagewatch creates one it writes a marker file (MARKER) saying so
and for what (`store`, or `demo` for `stagewatch demo`'s own store): only a directory with a marker
is ever deleted (`demo --fresh`), and read commands open only a directory that is a stagewatch store
(the marker, or the `stagewatch` database of a store made before markers existed), because
`chdb.session.Session(path)` would otherwise create a store wherever a typo points.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from typing import Any, Sequence

import msgspec

from schemas.events import JOB_SCHEMA, FileEvent, JobEvent
from schemas.queries import literal
from stagewatch.store.base import DATABASE, Store, StoreError

log = logging.getLogger("stagewatch.store")

_encoder = msgspec.json.Encoder()
_INSERT_SETTINGS = "optimize_on_insert=0, max_threads=1, max_insert_threads=1, input_format_parallel_parsing=0"

_RAW_STAGING = "stagewatch_raw_staging"  # the session-local Memory table of ChdbStore._insert_events


class PendingEvent(tuple):
    """A raw_events row not spelled out yet: what the replay queues for a chDB store instead of
    processors.rows.raw_event_row's 25 values (ChdbStore._insert_events writes the same row from it).

    Items: the row key (campaign, stage, kind, entity, event_id, at the positions raw_event_row has them,
    which is all stagewatch.sink reads of a raw row), then the event, its source and its ingestion time.
    """

    __slots__ = ()


def pending_event(ev: Any, source: str, ingested_ts: float) -> PendingEvent:
    if type(ev) is JobEvent:
        return PendingEvent((ev.campaign, ev.stage, "job", ev.job_id, ev.event_id, ev, source, ingested_ts))
    return PendingEvent((ev.campaign, ev.stage, "file", ev.file, ev.event_id, ev, source, ingested_ts))

MARKER = ".stagewatch-store"
MARKER_FORMAT = 1
KINDS = ("store", "demo")
DEMO_PATH = "./stagewatch-demo"  # stagewatch.store.DEMO_STORE without its scheme (named here for messages)


def read_marker(path: str) -> dict[str, Any] | None:
    """The marker of the store at `path`, or None if there is none (or it is not ours)."""
    try:
        with open(os.path.join(path, MARKER), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MARKER_FORMAT else None


def is_store_dir(path: str) -> bool:
    """A stagewatch chDB store: our marker, or (made before markers) the stagewatch database inside."""
    return (read_marker(path) is not None
            or os.path.isdir(os.path.join(path, "metadata", DATABASE))
            or os.path.isfile(os.path.join(path, "metadata", f"{DATABASE}.sql")))


def _write_marker(path: str, kind: str) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("stagewatch")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        ver = "unknown"
    body = {"format": MARKER_FORMAT, "kind": kind, "created_by": f"stagewatch {ver}", "created_ts": time.time()}
    tmp = os.path.join(path, MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(body, f)
        f.write("\n")
    os.replace(tmp, os.path.join(path, MARKER))


def _prepare_dir(path: str, shown: str, *, create: bool, kind: str) -> None:
    """Check (read) or create (write) the store directory before chDB touches it; errors are sentences."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreError(f"The store path {shown} is a file, not a directory: pass --store chdb:DIR with a "
                         "directory (a new one is created by `stagewatch replay`).")
    if not create:
        if not os.path.isdir(path):
            raise StoreError(f"No store at {shown}: check the path, or make one with `stagewatch replay FILE "
                             f"--store chdb:{shown}` (`stagewatch demo` makes its own, {DEMO_PATH}).")
        if not is_store_dir(path):
            raise StoreError(f"{shown} is not a stagewatch store (no {MARKER} marker and no stagewatch "
                             "database in it): check the path, or make a store with `stagewatch replay FILE`.")
        return
    if os.path.isdir(path):
        if is_store_dir(path):
            marker = read_marker(path)
            # a store made before markers is adopted; real events written into the demo's store make it a
            # real store, which `demo --fresh` then refuses to delete
            if marker is None or (marker.get("kind") == "demo" and kind == "store"):
                _safe_write_marker(path, shown, "store")
            return
        if set(os.listdir(path)) - {MARKER + ".tmp"}:  # (a creation killed while writing the marker left only it)
            raise StoreError(f"{shown} is a directory that is not a stagewatch store and not empty; refusing to "
                             "write a store into it: pass --store chdb:NEW_DIR.")
    else:
        try:
            os.makedirs(path)
        except OSError as exc:
            raise StoreError(f"Cannot create the store directory {shown}: {exc.strerror or exc}. Pass --store "
                             "chdb:DIR with a directory you can write.") from exc
    _safe_write_marker(path, shown, kind)


def _safe_write_marker(path: str, shown: str, kind: str) -> None:
    try:
        _write_marker(path, kind)
    except OSError as exc:
        raise StoreError(f"Cannot write to the store directory {shown}: {exc.strerror or exc}. Pass --store "
                         "chdb:DIR with a directory you can write.") from exc
    log.info("store.created path=%s kind=%s", path, kind)


class ChdbStore(Store):
    def __init__(self, path: str, *, create: bool = True, kind: str = "store") -> None:
        """Open the store at `path`; `create` makes it (and its database) if missing, else it must exist."""
        try:
            from chdb import session
        except ImportError as exc:  # pragma: no cover - chdb is a core dependency
            raise StoreError("chDB is not installed; run `pip install -e .` first.") from exc
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.path = os.path.abspath(path)
        self.url = f"chdb:{path}"
        _prepare_dir(self.path, path, create=create, kind=kind)
        try:
            self._session = session.Session(self.path)
        except Exception as exc:
            raise StoreError(f"Cannot open the chDB store at {self.path}: {exc}. Only one process may use a "
                             "chDB data path at a time; stop the other one or pass another --store.") from exc
        atexit.register(self.close)  # chDB crashes at interpreter exit with a session still open
        self._raw_sql: tuple[str, str] | None = None  # _insert_events' statements, made on first use
        try:
            if create:
                self._run(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
            self._run(f"USE {DATABASE}")
        except StoreError as exc:
            self.close()
            if create:
                raise
            raise StoreError(f"The store at {path} has no {DATABASE} database (its creation was interrupted?): "
                             f"replay into it again with `stagewatch replay FILE --store chdb:{path}`.") from exc

    def ensure_schema(self) -> None:
        self._versioned_schema()

    def _insert_rows(self, table: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
        # JSONCompactEachRow (arrays, no keys) parses about twice as fast as JSONEachRow; the
        # ReplacingMergeTree de-duplication runs at merge and FINAL time anyway, so doing it on insert
        # too (optimize_on_insert) only costs; one thread avoids contention with the replay itself.
        body = b"\n".join(map(_encoder.encode, rows))
        self._run(f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS {_INSERT_SETTINGS} "
                  f"FORMAT JSONCompactEachRow\n" + body.decode())

    #: The raw_events rows of accepted events, as the replay queues them for this store (see PendingEvent).
    pending_raw_row = staticmethod(pending_event)

    def insert(self, table: str, rows: Sequence[Any], columns: Sequence[str] | None = None) -> None:
        """Insert rows (Store.insert); raw_events rows queued as PendingEvent take the fast path."""
        if rows and type(rows[0]) is PendingEvent:
            if table != "raw_events":
                raise ValueError(f"pending events are raw_events rows, not {table} rows")
            self._insert_events(rows)
            return
        super().insert(table, rows, columns)

    def _insert_events(self, rows: Sequence[Any]) -> None:
        """Insert PendingEvent rows: the same raw_events rows as processors.rows.raw_event_row gives, faster.

        Why not rows: building a 25-column row per event in Python and having chDB parse it costs about
        twice what this does. Each event's own canonical JSON (schemas.events.encode_event, msgspec in C)
        goes into a session-local Memory table shaped like the contract, and one INSERT ... SELECT derives
        the row columns there: kind and entity from the schema tag, '' and NULL for absent fields (their
        defaults), the source and ingestion time as literals (one statement per run of rows that share
        them). tests/stagewatch/test_chdb_insert_events.py checks the rows equal raw_event_row's.
        The staging table is temporary (never in the store) and emptied before and after every use.
        """
        stage_sql, select_sql = self._raw_staging()
        i, n = 0, len(rows)
        while i < n:
            source, ingested_ts = rows[i][6], rows[i][7]
            j = i + 1
            while j < n and rows[j][6] == source and rows[j][7] == ingested_ts:
                j += 1
            body = b"\n".join([_encoder.encode(r[5]) for r in rows[i:j]])
            self._run(f"TRUNCATE TABLE {_RAW_STAGING}")
            try:
                self._run(stage_sql + body.decode())
                self._run(select_sql.format(source=literal(source), ingested_ts=repr(float(ingested_ts))))
            finally:
                self._run(f"TRUNCATE TABLE {_RAW_STAGING}")
            i = j

    def _raw_staging(self) -> tuple[str, str]:
        """The staging table (created once per session) and the two statements that go through it."""
        if self._raw_sql is None:
            from processors.rows import RAW_COLUMNS

            types = {r["name"]: r["type"] for r in self.query("DESCRIBE TABLE raw_events")}
            fields = {"schema": "String"}
            for cls in (JobEvent, FileEvent):
                for f in cls.__struct_fields__:
                    fields.setdefault(f, types[f])
            self._run(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_RAW_STAGING} "
                      f"({', '.join(f'{f} {t}' for f, t in fields.items())}) ENGINE = Memory")
            derived = {"kind": f"if(schema = {literal(JOB_SCHEMA)}, 'job', 'file')",
                       "entity": f"if(schema = {literal(JOB_SCHEMA)}, job_id, file)",
                       "source": "{source}", "ingested_ts": "{ingested_ts}"}
            missing = [c for c in RAW_COLUMNS if c not in derived and c not in fields]
            if missing:  # pragma: no cover - a raw column added without saying where it comes from
                raise StoreError(f"raw_events columns {missing} have no source in the event contract")
            self._raw_sql = (
                f"INSERT INTO {_RAW_STAGING} SETTINGS {_INSERT_SETTINGS}, input_format_skip_unknown_fields=0 "
                "FORMAT JSONEachRow\n",
                f"INSERT INTO raw_events ({', '.join(RAW_COLUMNS)}) SETTINGS {_INSERT_SETTINGS} "
                f"SELECT {', '.join(derived.get(c, c) for c in RAW_COLUMNS)} FROM {_RAW_STAGING}")
        return self._raw_sql

    def query(self, sql: str) -> list[dict[str, Any]]:
        res = self._run(sql, "JSONEachRow")
        data = res.bytes()
        if not data:
            return []
        return [msgspec.json.decode(line) for line in data.splitlines() if line]

    def command(self, sql: str) -> None:
        self._run(sql)

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        try:
            return self._session.query(sql, fmt)
        except Exception as exc:
            raise StoreError(f"chDB query failed: {exc}\nSQL: {sql[:500]}") from exc

    def close(self) -> None:
        sess, self._session = getattr(self, "_session", None), None
        if sess is not None:
            sess.close()
