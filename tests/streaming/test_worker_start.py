"""The worker as a user starts it, and what it does with messages it cannot simply count.

* `stagewatch worker` with the default --workdir, from a fresh directory (it used to die at start:
  faust.Worker changes into the workdir, then the relative datadir no longer exists);
* SIGTERM while a ClickHouse write is retrying ends the worker promptly without committing the batch
  (it used to wait for the write forever), and a restarted worker loses nothing;
* conflicting copies of an event_id: the copy with the smaller content hash counts, whatever the order;
  every losing copy is a dead letter and never replaces the winner's raw_events row.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ingest.kafka_io import headers_dict
from processors.stage import conflict_position, content_digest
from schemas.events import JobEvent, decode_event, encode_event
from stagewatch import devservers
from stagewatch.store import open_store
from tests.processors.conflict_scenarios import losers, winners
from tests.streaming.conftest import expected_numbers, tail, wait_until
from tests.streaming.test_pipeline import read_topic

pytestmark = pytest.mark.servers


def test_worker_with_the_default_workdir_from_a_fresh_directory(pipeline: Any, tmp_path: Path) -> None:
    p = pipeline()
    events = p.events(seed=21)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    p.publish(events)
    w = p.worker("w1", cwd=fresh)
    p.wait_numbers(expected_numbers(events))
    assert (fresh / ".stagewatch-worker").is_dir()
    assert w.alive() and "FileNotFoundError" not in w.log()
    assert w.stop() == 0


def test_sigterm_while_a_write_retries_exits_promptly_and_loses_nothing(pipeline: Any,
                                                                         clickhouse_server: Any) -> None:
    p = pipeline()
    events = p.events(seed=22)
    first, rest = events[: len(events) // 2], events[len(events) // 2:]
    p.publish(first)
    w1 = p.worker("w1")
    wait_until(lambda: w1.processed() >= len(first), 60, "the worker to process the first half")
    devservers.stop_clickhouse(clickhouse_server)
    try:
        p.publish(rest)
        wait_until(lambda: w1.log().count("sink.retry") >= 2, 60, "the sink to retry a write (logged each time)")
        t0 = time.monotonic()
        rc = w1.stop(timeout=30)  # SIGTERM; used to block for as long as the store refused the write
        assert time.monotonic() - t0 < 20, tail(w1.log(), 30)
        assert rc == 0, tail(w1.log(), 30)
        assert "worker.stopped_during_write" in w1.log()
    finally:
        devservers.start_clickhouse(clickhouse_server)
    p.store.close()
    p.store = open_store(p.store_url)
    w2 = p.worker("w2")
    p.wait_numbers(expected_numbers(events), timeout=120)
    assert w2.stop() == 0


def _conflicting_copy(ev: Any, rng: random.Random) -> Any:
    changes: dict[str, Any] = {"ts": ev.ts + rng.choice([-30.0, 7.0, 400.0])}
    if isinstance(ev, JobEvent) and ev.type == "terminated":
        changes["exit_code"] = 1 if ev.exit_code == 0 else 0
    return msgspec.structs.replace(ev, **changes)


def test_conflicting_copies_count_the_winner_and_dead_letter_the_losers(pipeline: Any) -> None:
    p = pipeline()
    events = p.events(seed=23)
    rng = random.Random(3)
    originals = rng.sample([e for e in events if isinstance(e, JobEvent) and e.type in ("terminated", "started")], 20)
    originals += rng.sample([e for e in events if not isinstance(e, JobEvent) and e.type == "output_located"], 5)
    copies = [_conflicting_copy(e, rng) for e in originals]
    stream = list(events)
    for c in copies:  # each copy before or after its original
        stream.insert(rng.randrange(len(stream) + 1), c)
    everything = events + copies
    p.publish(stream)
    w = p.worker()
    p.wait_numbers(expected_numbers(winners(everything)))

    lost = losers(everything)
    assert len(lost) == len(copies)
    dl = read_topic(p.kafka, p.topics.dead_letter, len(lost))
    reasons = {m.value(): headers_dict(m.headers())["reason"] for m in dl}
    assert {encode_event(decode_event(v)) for v in reasons} == lost
    assert all(r.startswith("conflicting duplicate of event_id ") for r in reasons.values())
    ids = ", ".join(f"'{e.event_id}'" for e in originals)
    rows = p.store.query(f"SELECT event_id, ts, exit_code FROM raw_events FINAL WHERE campaign = '{p.campaign}' "
                         f"AND event_id IN ({ids})")
    won = {e.event_id: e for e in winners(everything) if e.event_id in {o.event_id for o in originals}}
    assert {r["event_id"]: (float(r["ts"]), r["exit_code"]) for r in rows} == \
        {k: (e.ts, getattr(e, "exit_code", None)) for k, e in won.items()}
    # the same losers met again (a re-publish, or a batch processed again after a crash) add no dead-letter row:
    # each is keyed by its own content digest, not by the offset that met it
    t1 = time.time()
    p.publish([decode_event(v) for v in lost])
    where = f"reason LIKE 'conflicting duplicate%' AND source LIKE '{p.prefix}%'"
    deadline = time.monotonic() + 120
    while p.store.query(f"SELECT count() AS n FROM dead_letter WHERE {where} AND received_ts > {t1}")[0]["n"] < len(lost):
        assert time.monotonic() < deadline, "the second dead letters never reached the store"
        time.sleep(0.5)
    positions = [r["position"] for r in p.store.query(f"SELECT position FROM dead_letter FINAL WHERE {where}")]
    assert sorted(positions) == sorted(conflict_position(content_digest(decode_event(v))) for v in lost)
    assert w.alive() and w.stop() == 0
