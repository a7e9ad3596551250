"""Table state on a real (unstarted) Faust app, RocksDB and memory: reads through pending values, writes to
the local store only at commit (after the changelog is acknowledged), the changelog offset with the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from processors.faust.tables import ROCKSDB_OPTIONS, RocksTableState, TableState


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []

    def produce(self, topic: str, value: bytes, key: bytes, *, partition: int) -> None:
        self.sent.append((topic, value, key, partition))


def _table(tmp_path: Path, kind: str, app_id: str = "tables-test") -> Any:
    app = faust.App(app_id, broker="kafka://127.0.0.1:1", store="rocksdb://" if kind == "rocksdb" else "memory://",
                    datadir=str(tmp_path / "faust"))
    options = dict(ROCKSDB_OPTIONS) if kind == "rocksdb" else None
    t = app.Table("jobs", key_type=bytes, value_type=bytes, partitions=4, options=options)
    return TableState.for_table(t, "tables-test-jobs-changelog", kind)


@pytest.mark.parametrize("kind", ["rocksdb", "memory"])
def test_values_reach_the_store_only_at_commit_and_are_read_through_pending(tmp_path: Path, kind: str) -> None:
    ts = _table(tmp_path, kind)
    prod = _Producer()
    ts.put(prod, "c|s|j1", b"v1", 2)
    ts.put(prod, "c|s|j2", b"v2", 3)
    assert prod.sent == [("tables-test-jobs-changelog", b"v1", b"c|s|j1", 2),
                         ("tables-test-jobs-changelog", b"v2", b"c|s|j2", 3)]
    view = ts.view({"c|s|j1": 2, "c|s|j2": 3, "c|s|j3": 1})
    assert view.get("c|s|j1") == b"v1" and view.get("c|s|j3") is None      # the batch sees its own values
    assert ts.values_in({2, 3}) == []                                     # ... the store does not, yet
    ts.discard()                                                          # a failed batch leaves nothing
    assert ts.view({"c|s|j1": 2}).get("c|s|j1") is None
    ts.put(prod, "c|s|j1", b"v1", 2)
    ts.put(prod, "c|s|j2", b"v2", 3)
    assert ts.commit({2: 41, 3: 7}) == 2
    assert sorted(ts.values_in({2, 3})) == [b"v1", b"v2"] and ts.values_in({0, 1}) == []
    assert ts.view({"c|s|j2": 3}).get("c|s|j2") == b"v2" and ts.pending == {}
    if kind == "rocksdb":
        store = ts.table.data
        assert store.persisted_offset(TP("tables-test-jobs-changelog", 2)) == 41
        assert store.persisted_offset(TP("tables-test-jobs-changelog", 3)) == 7
        assert store.persisted_offset(TP("tables-test-jobs-changelog", 0)) is None


def test_rocksdb_state_survives_the_process_and_keeps_its_changelog_offset(tmp_path: Path) -> None:
    """What a restarted worker reopens: the values and the offset Faust's recovery resumes after."""
    ts = _table(tmp_path, "rocksdb")
    assert isinstance(ts, RocksTableState)
    ts.put(_Producer(), "c|s|j1", b"state", 1)
    ts.commit({1: 99})
    ts.table.data._dbs.clear()   # what a stopped process leaves: the files
    import gc
    gc.collect()
    again = _table(tmp_path, "rocksdb")
    assert again.values_in({1}) == [b"state"]
    assert again.view({"c|s|j1": 1}).get("c|s|j1") == b"state"
    assert again.table.data.persisted_offset(TP("tables-test-jobs-changelog", 1)) == 99


def test_a_missing_rocksdict_is_a_sentence_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from processors.faust.tables import table_store_missing

    assert table_store_missing("rocksdb") is None and table_store_missing("memory") is None
    monkeypatch.setitem(sys.modules, "rocksdict", None)   # as if not installed
    msg = table_store_missing("rocksdb")
    assert msg is not None and "pip install rocksdict" in msg and "--table-store memory" in msg
    assert table_store_missing("memory") is None
