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


def ddl_statements() -> list[str]:
    """The CREATE TABLE statements of schemas/sql/tables.sql, comments removed."""
    text = resources.files("schemas").joinpath("sql/tables.sql").read_text()
    text = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in text.split(";") if s.strip()]


class Store(ABC):
    url: str

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the database and tables if missing (idempotent)."""

    @abstractmethod
    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows (dicts keyed by column name; all rows of one call have the same keys)."""

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
