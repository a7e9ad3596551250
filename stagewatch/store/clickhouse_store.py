"""ClickHouse server store through clickhouse-driver (native protocol).

Inserts always pass rows to the driver: a literal INSERT ... VALUES statement hangs on 18.16.
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import unquote, urlparse

from stagewatch.store.base import DATABASE, Store, StoreError


def _brief(exc: Exception) -> str:
    """The server's message without its C++ stack trace."""
    text = str(exc)
    return text.split("Stack trace:")[0].strip().replace("\n", " ")


class ClickHouseStore(Store):
    def __init__(self, url: str, *, connect_timeout: float = 10, send_receive_timeout: float = 300) -> None:
        from clickhouse_driver import Client

        p = urlparse(url)
        if p.scheme not in ("clickhouse", "clickhouse+native"):
            raise StoreError(f"Store URL {url!r} is not clickhouse://user:password@host:port/database.")
        self.database = (p.path or "/").lstrip("/") or DATABASE
        self.host = p.hostname or "127.0.0.1"
        self.port = p.port or 9000
        self.user = unquote(p.username) if p.username else "default"
        self._password = unquote(p.password) if p.password else ""
        self.url = f"clickhouse://{self.user}@{self.host}:{self.port}/{self.database}"
        self._kw = dict(host=self.host, port=self.port, user=self.user, password=self._password,
                        connect_timeout=connect_timeout, send_receive_timeout=send_receive_timeout)
        self._client = Client(database=self.database, **self._kw)

    def ensure_schema(self) -> None:
        from clickhouse_driver import Client

        boot = Client(**self._kw)
        try:
            boot.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        except Exception as exc:
            raise StoreError(f"Cannot create database {self.database} on {self.url}: {_brief(exc)}") from exc
        finally:
            boot.disconnect()
        self._apply_ddl()

    def _insert_rows(self, table: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", rows)
        except Exception as exc:
            raise StoreError(f"Insert into {table} on {self.url} failed: {_brief(exc)}") from exc

    def query(self, sql: str) -> list[dict[str, Any]]:
        try:
            rows, cols = self._client.execute(sql, with_column_types=True)
        except Exception as exc:
            raise StoreError(f"Query on {self.url} failed: {_brief(exc)}\nSQL: {sql[:500]}") from exc
        names = [c[0] for c in cols]
        return [dict(zip(names, r)) for r in rows]

    def command(self, sql: str) -> None:
        try:
            self._client.execute(sql)
        except Exception as exc:
            raise StoreError(f"Statement on {self.url} failed: {_brief(exc)}\nSQL: {sql[:500]}") from exc

    def close(self) -> None:
        self._client.disconnect()
