"""Store adapters: `chdb:PATH` (embedded, the default) and `clickhouse://user:pass@host:port/db`.

Every store records its schema version; see store/migrations.py (`stagewatch migrate` upgrades).

`open_store(url)` is for commands that write (replay, publish --store, worker, demo): it creates the
store, its database and tables if missing. `open_store(url, create=False)` is for commands that only
read (status, files, jobs, job, missing-files, verify, report): it creates nothing, so a typo in a
path or URL is an error naming it, and a read-only ClickHouse user can use it.
"""

from __future__ import annotations

import os

from stagewatch.store.base import Store, StoreError

DEFAULT_STORE = "chdb:./stagewatch-data"
DEMO_STORE = "chdb:./stagewatch-demo"  # chdb_store.DEMO_PATH
SCHEMES = ("chdb:", "clickhouse://", "clickhouse+native://")


def default_store_url() -> str:
    return os.environ.get("STAGEWATCH_STORE") or DEFAULT_STORE


def open_store(url: str | None = None, *, create: bool = True, kind: str = "store", check: bool = True) -> Store:
    """Open a store by URL; with `create`, make it (a chDB store marked as `kind`) and its tables if missing.

    An existing store must be at this stagewatch's schema version (store/migrations.py): an older one is
    refused with a sentence naming `stagewatch migrate`, a newer one with a sentence naming an upgrade.
    `check=False` skips that (only `stagewatch migrate`, which upgrades it, opens a store so).
    """
    url = url or default_store_url()
    if url.startswith("chdb:"):
        from stagewatch.store.chdb_store import ChdbStore

        path = url[len("chdb:"):]
        if not path.strip():
            raise StoreError(f"The store URL {url!r} names no directory: use chdb:PATH, e.g. {DEFAULT_STORE}.")
        store: Store = ChdbStore(path, create=create, kind=kind)
    elif url.startswith(("clickhouse://", "clickhouse+native://")):
        from stagewatch.store.clickhouse_store import ClickHouseStore, _without_password

        try:
            store = ClickHouseStore(url)
        except StoreError:
            raise
        except ValueError as exc:  # urllib's own complaints (e.g. a malformed IPv6 host)
            raise StoreError(f"The store URL {_without_password(url)!r} is malformed ({exc}): use "
                             "clickhouse://user:password@host:port/database.") from exc
    else:
        from stagewatch.store.clickhouse_store import _without_password

        raise StoreError(f"Unknown store {_without_password(url)!r}: use chdb:PATH (embedded) or "
                         "clickhouse://user:pass@host:port/db.")
    try:
        if create:
            store.ensure_schema()
        elif check:
            store.check_schema()
    except BaseException:
        store.close()
        raise
    return store


__all__ = ["Store", "StoreError", "open_store", "default_store_url", "DEFAULT_STORE", "DEMO_STORE"]
