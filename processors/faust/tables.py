"""The worker's table state: Faust tables used as bytes storage, on RocksDB (default) or in memory.

Why not ``table[key] = value``: that sends the changelog record through Faust's per-message producer
buffer, to the partition of "the current event" (ambiguous in a batch). Here a batch's new values are
held in ``pending`` (the steps read through them) and their changelog records go, through the batch's
confluent producer, to the changelog partition of the message that changed them. Only after the
producer's flush (every changelog record acknowledged by Kafka) does :meth:`TableState.commit` write
them to the local store, so the local state is never ahead of the changelog: a kill -9 at any moment
leaves a local state that the changelog tail brings up to date.

RocksDB (``store="rocksdb://"``, driver rocksdict): one database per table and partition under the
worker's workdir, which survives a restart. Each commit also records, in the same write batch, the
changelog offset it reached (Faust's ``persisted_offset`` key), so a restarted worker's recovery reads
only the changelog records after it. A partition this worker never had has no database: Faust
recovers it from the start of the changelog. Memory tables hold everything in the process and recover
every partition from the whole changelog at each start.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Mapping

log = logging.getLogger("stagewatch.worker")

# RocksDB sizes per table and partition (Faust's defaults are 64 MB x 3 write buffers and a 2 GiB block
# cache for each database: 3 tables x N partitions of those is gigabytes; 4 MB buffers and 8 MB caches
# still made ~200 MB of a worker's RSS with 8 partitions, about the size of its whole state on disk).
# The worker reads each entity once per batch that touches it, so a small cache costs little (the OS
# page cache holds the files).
ROCKSDB_OPTIONS: dict[str, Any] = {
    "driver": "rocksdict",
    "write_buffer_size": 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 8 * 1024 * 1024,
    "block_cache_size": 2 * 1024 * 1024,
    "block_cache_compressed_size": 0,
}


def table_store_missing(kind: str) -> str | None:
    """A sentence saying what to install when ``kind``'s library is missing (else None), before Faust fails
    deep inside its start-up with ImproperlyConfigured."""
    if kind != "rocksdb":
        return None
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return ("RocksDB tables (the default --table-store) need the rocksdict package: `pip install rocksdict` "
                "(it comes with `pip install stagewatch`), or run the worker with --table-store memory.")
    return None


class TableState:
    """One Faust table as bytes storage: reads for the steps, writes after the changelog is durable."""

    def __init__(self, table: Any, changelog: str) -> None:
        self.table = table
        self.changelog = changelog
        self.pending: dict[bytes, tuple[bytes, int]] = {}  # key -> (value, partition), not yet committed

    @property
    def _store(self) -> Any:
        return self.table.data

    @staticmethod
    def for_table(table: Any, changelog: str, kind: str) -> "TableState":
        return RocksTableState(table, changelog) if kind == "rocksdb" else MemoryTableState(table, changelog)

    def view(self, partition_of: Mapping[str, int]) -> Mapping[str, bytes]:
        """The table seen with str keys, this batch's pending values first (``partition_of``: key -> partition)."""
        return _View(self.pending, self._lookup, partition_of)

    def put(self, producer: Any, key: str, value: bytes, partition: int) -> None:
        kb = key.encode()
        self.pending[kb] = (value, partition)
        producer.produce(self.changelog, value, kb, partition=partition)

    def commit(self, changelog_offsets: Mapping[int, int]) -> int:
        """Write the pending values to the local store (call after the producer's flush succeeded).

        ``changelog_offsets``: partition -> offset of the last changelog record acknowledged for it.
        """
        n = len(self.pending)
        if n or changelog_offsets:
            self._write(self.pending, changelog_offsets)
        self.pending = {}
        return n

    def discard(self) -> None:
        self.pending = {}

    def _lookup(self, kb: bytes, partition: int | None) -> bytes | None:
        raise NotImplementedError

    def _write(self, pending: dict[bytes, tuple[bytes, int]], offsets: Mapping[int, int]) -> None:
        raise NotImplementedError

    def values_in(self, partitions: set[int]) -> list[bytes]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class MemoryTableState(TableState):
    """Faust's memory store: a dict, and ``_key_partition`` to drop the keys of revoked partitions."""

    def _lookup(self, kb: bytes, partition: int | None) -> bytes | None:
        return self._store.data.get(kb)

    def _write(self, pending: dict[bytes, tuple[bytes, int]], offsets: Mapping[int, int]) -> None:
        store = self._store
        data, kp = store.data, store._key_partition
        for kb, (value, partition) in pending.items():
            data[kb] = value
            kp[kb] = partition

    def values_in(self, partitions: set[int]) -> list[bytes]:
        store = self._store
        kp = store._key_partition
        return [v for k, v in store.data.items() if kp.get(k) in partitions]

    def __len__(self) -> int:
        return len(self._store.data)


class RocksTableState(TableState):
    """Faust's RocksDB store (rocksdict): one database per partition, the changelog offset kept with the data."""

    def _db(self, partition: int) -> Any:
        return self._store._db_for_partition(partition)

    def _lookup(self, kb: bytes, partition: int | None) -> bytes | None:
        if partition is None:
            return None
        return self._db(partition).get(kb)

    def _write(self, pending: dict[bytes, tuple[bytes, int]], offsets: Mapping[int, int]) -> None:
        import rocksdict

        store = self._store
        batches: dict[int, Any] = {}
        for kb, (value, partition) in pending.items():
            wb = batches.get(partition)
            if wb is None:
                wb = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
            wb.put(kb, value)
        for partition, offset in offsets.items():
            wb = batches.get(partition)
            if wb is None:
                wb = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
            # in the same atomic write as the data: an offset is never recorded without what it covers
            wb.put(store.offset_key, str(offset).encode())
        for partition, wb in batches.items():
            self._db(partition).write(wb)

    def values_in(self, partitions: set[int]) -> list[bytes]:
        store = self._store
        out: list[bytes] = []
        for p in sorted(partitions):
            out.extend(store._visible_values(self._db(p)))
        return out

    def __len__(self) -> int:
        return sum(1 for _ in self._store._iterkeys())


class _View(Mapping[str, bytes]):
    """Pending values over the store, with str keys (what processors.stream uses)."""

    __slots__ = ("_pending", "_lookup", "_partition_of")

    def __init__(self, pending: dict[bytes, tuple[bytes, int]], lookup: Callable[[bytes, int | None], bytes | None],
                 partition_of: Mapping[str, int]) -> None:
        self._pending = pending
        self._lookup = lookup
        self._partition_of = partition_of

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        kb = key.encode()
        hit = self._pending.get(kb)
        if hit is not None:
            return hit[0]
        value = self._lookup(kb, self._partition_of.get(key))
        return default if value is None else value

    def __getitem__(self, key: str) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:  # the steps only look keys up
        raise TypeError("a table view is not iterable: look keys up")

    def __len__(self) -> int:
        raise TypeError("a table view has no length")
