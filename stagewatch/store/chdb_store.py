"""Embedded store: chDB, a modern ClickHouse engine inside this process (no server to run)."""

from __future__ import annotations

import atexit
import os
from typing import Any, Sequence

import msgspec

from stagewatch.store.base import DATABASE, Store, StoreError

_encoder = msgspec.json.Encoder()
_INSERT_SETTINGS = "optimize_on_insert=0, max_threads=1, max_insert_threads=1, input_format_parallel_parsing=0"


class ChdbStore(Store):
    def __init__(self, path: str) -> None:
        try:
            from chdb import session
        except ImportError as exc:  # pragma: no cover - chdb is a core dependency
            raise StoreError("chDB is not installed; run `pip install -e .` first.") from exc
        self.path = os.path.abspath(path)
        self.url = f"chdb:{path}"
        os.makedirs(self.path, exist_ok=True)
        try:
            self._session = session.Session(self.path)
        except Exception as exc:
            raise StoreError(f"Cannot open the chDB store at {self.path}: {exc}. Only one process may use a "
                             "chDB data path at a time; stop the other one or pass another --store.") from exc
        self._session.query(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        self._session.query(f"USE {DATABASE}")
        atexit.register(self.close)  # chDB crashes at interpreter exit with a session still open

    def ensure_schema(self) -> None:
        self._apply_ddl()

    def _insert_rows(self, table: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
        # JSONCompactEachRow (arrays, no keys) parses about twice as fast as JSONEachRow; the
        # ReplacingMergeTree de-duplication runs at merge and FINAL time anyway, so doing it on insert
        # too (optimize_on_insert) only costs; one thread avoids contention with the replay itself.
        body = b"\n".join(map(_encoder.encode, rows))
        self._run(f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS {_INSERT_SETTINGS} "
                  f"FORMAT JSONCompactEachRow\n" + body.decode())

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
