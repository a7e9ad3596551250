"""The store interface: where events, current state and numbers live (an I/O manager, dagster-style).

Two adapters implement it, embedded chDB and a ClickHouse server; everything above them (replay,
status, verify, dashboards tests) speaks only this interface and plain SQL.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from importlib import resources
from typing import Any, Iterable, Iterator, Sequence

DATABASE = "stagewatch"


class StoreError(RuntimeError):
    """A store could not be opened or queried; the message says what to do."""


def _statements(name: str, **fill: str) -> list[str]:
    text = resources.files("schemas").joinpath(f"sql/{name}").read_text()
    text = re.sub(r"--[^\n]*", "", text)
    for key, value in fill.items():
        text = text.replace("{" + key + "}", value)
    return [s.strip() for s in text.split(";") if s.strip()]


def _sql_array(items: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


def ddl_statements() -> list[str]:
    """The statements of schemas/sql/tables.sql and views.sql (views re-created: they hold no data)."""
    from processors.files import FILE_TYPE_ORDER
    from processors.jobs import ATTEMPT_ENDERS, JOB_TYPE_ORDER, STATE_AFTER

    return _statements("tables.sql") + _statements(
        "views.sql", job_order=_sql_array(JOB_TYPE_ORDER), file_order=_sql_array(FILE_TYPE_ORDER),
        job_types=_sql_array(STATE_AFTER), job_states=_sql_array(STATE_AFTER.values()),
        enders=_sql_array(sorted(ATTEMPT_ENDERS)))


class Store(ABC):
    url: str

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the database and tables if missing (idempotent)."""

    def _versioned_schema(self) -> None:
        """Create a new store at the current schema version, or check an existing one's (migrations.py)."""
        from stagewatch.store import migrations

        migrations.create_or_check(self, self._apply_ddl)

    def check_schema(self) -> None:
        """Raise a StoreError unless the store's schema version is this stagewatch's (reads only)."""
        from stagewatch.store import migrations

        migrations.check(self)

    def _apply_ddl(self) -> None:
        """Run the DDL; a view re-created by another process at the same moment is not an error."""
        for stmt in ddl_statements():
            try:
                self.command(stmt)
            except StoreError as exc:
                if stmt.startswith("CREATE VIEW") and "already exists" in str(exc):
                    continue
                raise

    def insert(self, table: str, rows: Sequence[Any], columns: Sequence[str] | None = None) -> None:
        """Insert rows: dicts keyed by column name, or sequences in the order of `columns`."""
        if not rows:
            return
        if columns is None:
            columns = list(rows[0])
            rows = [[r[c] for c in columns] for r in rows]
        self._insert_rows(table, list(columns), rows)

    @abstractmethod
    def _insert_rows(self, table: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows given as sequences in column order."""

    @abstractmethod
    def query(self, sql: str) -> list[dict[str, Any]]:
        """Run a SELECT and return its rows as dicts."""

    @abstractmethod
    def command(self, sql: str) -> None:
        """Run a statement that returns nothing."""

    def close(self) -> None:  # noqa: B027 - optional for adapters
        pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load_events(self, stages: Iterable[tuple[str, str]]) -> Iterator[Any]:
        """Every stored raw event of these stages, rebuilt as events (duplicates possible)."""
        from schemas.queries import where

        cols = _raw_select()
        for campaign, stage in stages:
            for row in self.query(f"SELECT {cols} FROM raw_events WHERE {where(campaign, stage)}"):
                yield _event(row)

    def load_entities(self, campaign: str, stage: str, kind: str, names: Iterable[str]) -> Iterator[Any]:
        """The stored raw events of these jobs (kind 'job') or files ('file') of one stage (duplicates possible).

        Reads only those entities (the primary key starts with campaign, stage, kind, entity); the names go
        into the SQL as escaped literals, in chunks that stay below ClickHouse's max_query_size.
        """
        from schemas.queries import literal, where

        cols = _raw_select()
        head = f"SELECT {cols} FROM raw_events WHERE {where(campaign, stage)} AND kind = {literal(kind)} AND entity IN "
        for chunk in _chunks(names):
            for row in self.query(head + "(" + ", ".join(map(literal, chunk)) + ")"):
                yield _event(row)

    def file_links(self, campaign: str, stage: str, names: Iterable[str]) -> list[tuple[str, list[str]]]:
        """(output, parents) of every stored output declaration of the stage that is one of `names` or names one
        of them as a parent: the links that put files in one group (processors.stage, partial stages)."""
        from schemas.queries import literal, where

        out: list[tuple[str, list[str]]] = []
        for chunk in _chunks(names, budget=_QUERY_BUDGET // 2):
            arr = ", ".join(map(literal, chunk))
            for row in self.query(
                    f"SELECT DISTINCT entity, parents FROM raw_events WHERE {where(campaign, stage)} "
                    f"AND kind = 'file' AND type = 'output_declared' "
                    f"AND (entity IN ({arr}) OR hasAny(parents, [{arr}]))"):
                out.append((row["entity"], list(row["parents"])))
        return out


#: Characters of names per query: ClickHouse refuses a query text above max_query_size (256 KiB by default).
_QUERY_BUDGET = 200_000


def _chunks(names: Iterable[str], budget: int = _QUERY_BUDGET) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for name in names:
        n = 4 * len(name) + 4  # UTF-8 bytes at most, quoted and separated (a name is at most 1,024 characters)
        if chunk and size + n > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(name)
        size += n
    if chunk:
        yield chunk


def _raw_select() -> str:
    """The raw_events columns an event is rebuilt from (processors.rows.RAW_COLUMNS but the replay's own)."""
    from processors.rows import RAW_COLUMNS

    return ", ".join(c for c in RAW_COLUMNS if c not in ("file", "source", "ingested_ts"))


def _event(row: dict[str, Any]) -> Any:
    from processors.rows import event_from_raw_row

    return event_from_raw_row(row)
