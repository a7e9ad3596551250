"""dead_letter.raw keeps a rejected record's exact bytes in both stores, readable back in plain SQL.

ClickHouse 18.16 has neither base64Decode nor ADD COLUMN IF NOT EXISTS, hence one String column holding
the text of UTF-8 bytes, or 'hex:' + hex: `if(startsWith(raw, 'hex:'), unhex(substring(raw, 5)), raw)`
gives the bytes on both engines, and stores created before need no migration.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from processors.rows import dead_letter_row
from schemas.events import DeadLetter, raw_from_text

RAWS = [b"not json", "caf\u00e9 \u2603".encode(), b"\xff\xfe\x00{\"a\":1}", b"hex:41", bytes(range(256)),
        b"\x1f\x8b\x08\x00gzip-ish"]
BYTES_SQL = "if(startsWith(raw, 'hex:'), unhex(substring(raw, 5)), raw)"


def _round_trip(store: Any, source: str) -> None:
    store.ensure_schema()
    rows = [dead_letter_row(DeadLetter(source, str(i), "bad", raw), time.time()) for i, raw in enumerate(RAWS)]
    store.insert("dead_letter", rows)
    got = store.query(f"SELECT position, raw, hex({BYTES_SQL}) AS bytes_hex FROM dead_letter FINAL "
                      f"WHERE source = '{source}' ORDER BY toUInt32(position)")
    assert [raw_from_text(r["raw"]) for r in got] == RAWS
    assert [bytes.fromhex(r["bytes_hex"]) for r in got] == RAWS  # the SQL in tables.sql gives the bytes too
    assert got[1]["raw"] == "caf\u00e9 \u2603" and got[0]["raw"] == "not json"  # text stays readable


def test_chdb_keeps_dead_letter_bytes(tmp_path: Any) -> None:
    from stagewatch.store import open_store

    with open_store(f"chdb:{tmp_path / 'store'}") as st:
        _round_trip(st, "chdb-test")


@pytest.mark.servers
def test_clickhouse_18_16_keeps_dead_letter_bytes(clickhouse_server: Any) -> None:
    from stagewatch.store import open_store

    with open_store(clickhouse_server.store_url) as st:
        _round_trip(st, f"ch-test-{time.time_ns()}")
