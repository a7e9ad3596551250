"""Store adapters: `chdb:PATH` (embedded, the default) and `clickhouse://user:pass@host:port/db`."""

from __future__ import annotations

import os

from stagewatch.store.base import Store, StoreError

DEFAULT_STORE = "chdb:./stagewatch-data"


def default_store_url() -> str:
    return os.environ.get("STAGEWATCH_STORE") or DEFAULT_STORE


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open a store by URL and make sure its tables exist."""
    url = url or default_store_url()
    if url.startswith("chdb:"):
        from stagewatch.store.chdb_store import ChdbStore

        store: Store = ChdbStore(url[len("chdb:"):] or "./stagewatch-data")
    elif url.startswith("clickhouse://") or url.startswith("clickhouse+native://"):
        from stagewatch.store.clickhouse_store import ClickHouseStore

        store = ClickHouseStore(url)
    else:
        raise StoreError(f"Unknown store {url!r}: use chdb:PATH (embedded) or clickhouse://user:pass@host:port/db.")
    if create:
        store.ensure_schema()
    return store


__all__ = ["Store", "StoreError", "open_store", "default_store_url", "DEFAULT_STORE"]
