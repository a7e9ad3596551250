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
        from processors.rows import event_from_raw_row
        from schemas.queries import where

        cols = ("kind, entity, event_id, ts, campaign, stage, type, submission, job_id, exit_code, signal, "
                "cpu_user_s, cpu_sys_s, wall_s, cores, reason, site, host, parents, location")
        for campaign, stage in stages:
            for row in self.query(f"SELECT {cols} FROM raw_events WHERE {where(campaign, stage)}"):
                yield event_from_raw_row(row)
