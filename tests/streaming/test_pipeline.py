"""The streaming pipeline on the real servers: Kafka 4.1 (KRaft) and ClickHouse 18.16, no mocks.

Every test publishes simulated stages to Kafka, runs `stagewatch worker` subprocesses, and waits until
the stage numbers read back from ClickHouse equal what the embedded Engine computes for the same
events (at a fixed as_of) - through duplicates, reordering, kill -9, rebalancing, bad input and a
ClickHouse outage.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from ingest.kafka_io import headers_dict, partition_for_key
from schemas.events import encode_event
from stagewatch import devservers
from stagewatch.store import open_store
from tests.streaming.conftest import AS_OF, CLI, Pipeline, expected_numbers, tail, wait_until

pytestmark = pytest.mark.servers


def committed_and_end(p: Pipeline) -> tuple[int, int]:
    """(sum of the worker group's committed offsets, sum of end offsets) over the two event topics."""
    admin = AdminClient({"bootstrap.servers": p.kafka})
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(p.app_id)])[p.app_id]
    committed = sum(max(tp.offset, 0) for tp in fut.result().topic_partitions
                    if tp.topic in (p.topics.job_events, p.topics.file_events))
    c = Consumer({"bootstrap.servers": p.kafka, "group.id": f"{p.app_id}-probe"})
    try:
        end = sum(c.get_watermark_offsets(TopicPartition(t, i), timeout=10)[1]
                  for t in (p.topics.job_events, p.topics.file_events) for i in range(p.partitions))
    finally:
        c.close()
    return committed, end


def read_topic(kafka: str, topic: str, expected: int, timeout: float = 20) -> list[Any]:
    """Every message of `topic` from the beginning (waits until `expected` have arrived)."""
    c = Consumer({"bootstrap.servers": kafka, "group.id": f"reader-{topic}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expected:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append(m)
        # a little longer, to see any message beyond the expected ones
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        c.close()
    return out


def test_end_to_end_cli_publish_worker_status_verify(pipeline: Any, tmp_path: Any) -> None:
    """(a) `stagewatch publish FILE` -> `stagewatch worker` -> `status --format json` == embedded replay; verify passes."""
    p = pipeline()
    events = p.events()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    pub = subprocess.run([*CLI, "publish", str(path), "--kafka", p.kafka, "--topic-prefix", p.prefix],
                         capture_output=True, text=True, timeout=60)
    assert pub.returncode == 0, pub.stderr
    assert f"published {len(events):,} events" in pub.stderr
    w = p.worker()
    expected = expected_numbers(events)
    assert [n["stage"] for n in expected] == ["mcgen", "reco"] and expected[0]["files_located"] > 0
    p.wait_numbers(expected)

    status = subprocess.run([*CLI, "status", "--store", p.store_url, "--campaign", p.campaign, "--now", str(AS_OF),
                             "--format", "json"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    # every number of the engine, as `status` prints it (status may add derived columns of its own: rates, eta)
    got = [{k: g.get(k) for k in e} for e, g in zip(expected, json.loads(status.stdout)["stages"])]
    diff = [{k: (e[k], g[k]) for k in e if e[k] != g[k]} for e, g in zip(expected, got)]
    assert len(got) == len(expected) and got == expected, f"(expected, status --format json) per stage: {diff}"
    verify = subprocess.run([*CLI, "verify", "--store", p.store_url, "--campaign", p.campaign],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The worker commits its offsets (at-least-once, not "never commit"): the group reaches the end.
    wait_until(lambda: (lambda c, e: c == e)(*committed_and_end(p)), 20, "committed offsets to reach the end")
    m = w.metrics()
    assert m[f'stagewatch_events_processed_total{{topic="{p.topics.job_events}"}}'] + \
        m[f'stagewatch_events_processed_total{{topic="{p.topics.file_events}"}}'] == len(events)
    dups = sum(v for k, v in m.items() if k.startswith("stagewatch_duplicate_events_total"))
    assert dups == len(events) - len({e.event_id for e in events}) > 0  # the preset redelivers some events
    assert m['stagewatch_sink_batch_rows_sum{table="raw_events"}'] == len(events)
    assert m['stagewatch_sink_flush_seconds_count{table="stage_numbers"}'] >= 1

    def lag() -> dict[str, float]:
        return {k: v for k, v in w.metrics().items() if k.startswith("stagewatch_consumer_lag") and
                p.topics.job_events in k}

    # every job-events partition has a lag gauge, and all are 0 once everything is processed
    wait_until(lambda: len(lag()) == p.partitions and not any(lag().values()), 15, "consumer lag gauges at 0")
    assert w.stop() == 0


@pytest.mark.parametrize("table_store", ["rocksdb", "memory"])
def test_every_event_twice_and_shuffled_within_key_windows(pipeline: Any, table_store: str) -> None:
    """(b) Each event published twice, deliveries shuffled within a 30-minute window per key: same numbers."""
    p = pipeline(table_store=table_store)
    events = p.events(seed=3)
    rng = random.Random(5)
    window = 1800.0
    deliveries = [(e.ts + rng.random() * window, i, e) for i, e in enumerate(events)]
    deliveries += [(e.ts + rng.random() * window, len(events) + i, e) for i, e in enumerate(events)]
    deliveries.sort(key=lambda d: (d[0], d[1]))
    order = [e for _, _, e in deliveries]
    # the shuffle is real: some key sees its events out of time order
    assert any(a.entity == b.entity and a.ts > b.ts for a, b in zip(order, order[1:]))
    p.publish(order)
    w = p.worker()
    p.wait_numbers(expected_numbers(events))
    assert w.stop() == 0


@pytest.mark.parametrize("table_store", ["rocksdb", "memory"])
def test_kill9_mid_stream_then_restart(pipeline: Any, table_store: str) -> None:
    """(c) kill -9 of the worker while it processes a stream, then a restart elsewhere (no local state: every
    partition is recovered from the changelog): same numbers."""
    p = pipeline(table_store=table_store)
    events = p.events(scale=6, seed=11)
    pub = p.publish_paced(events, seconds=8)
    w1 = p.worker("w1")
    wait_until(lambda: w1.processed() > len(events) * 0.2, 60, "the first worker to process 20% of the stream")
    done_by_w1 = w1.processed()
    w1.kill9()
    w2 = p.worker("w2")
    pub.join(60)
    p.wait_numbers(expected_numbers(events), timeout=90)
    assert w2.processed() > 0, "the restarted worker did not process anything"
    assert "worker.stage_rebuilt" in w2.log()
    assert done_by_w1 < len(events), "the stream was over before the kill"
    assert w2.stop() == 0


def changelog_end(p: Pipeline) -> int:
    """Records ever written to the worker group's three table changelogs (sum of end offsets)."""
    c = Consumer({"bootstrap.servers": p.kafka, "group.id": f"{p.app_id}-probe"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(f"{p.app_id}-{t}-changelog", i), timeout=10)[1]
                   for t in ("jobs", "files", "stage") for i in range(p.partitions))
    finally:
        c.close()


def recovered_records(log: str) -> int:
    """Changelog records the worker's recoveries read back, from its last worker.recovered line."""
    lines = [line for line in log.splitlines() if "worker.recovered " in line]
    assert lines, "the worker logged no recovery"
    field = lines[-1].split("changelog_records_read=")[1].split()[0]
    return sum(int(part.split(":")[1]) for part in field.split(","))


def test_kill9_then_restart_in_the_same_workdir_reads_only_the_changelog_tail(pipeline: Any) -> None:
    """RocksDB tables: a worker killed with -9 and started again on its workdir reopens its local state and
    reads only the changelog records after it (memory tables read everything back); same numbers."""
    p = pipeline(table_store="rocksdb")
    events = p.events(scale=6, seed=21)
    half = len(events) // 2
    p.publish(events[:half])
    w1 = p.worker("w1")
    p.wait_numbers(expected_numbers(events[:half]), timeout=90)
    pub = p.publish_paced(events[half:], seconds=6)
    wait_until(lambda: w1.processed() > half + (len(events) - half) * 0.2, 60, "the worker to go on with the rest")
    w1.kill9()
    written = changelog_end(p)
    w2 = p.worker("w1-again", workdir=w1.workdir)
    pub.join(60)
    p.wait_numbers(expected_numbers(events), timeout=90)
    read = recovered_records(w2.log())
    assert 0 < written and read < written / 3, (read, written)   # the tail, not the whole changelog
    assert w2.stop() == 0


def test_side_outputs_over_a_default_broker_limit_are_split_not_fatal(pipeline: Any) -> None:
    """A batch whose contributions (one message per stage) and links (one per partition) grow past the
    broker's default message.max.bytes (1 MB): the worker used to exit 70 with MSG_SIZE_TOO_LARGE and
    crash-loop on that batch. The broker here has Kafka's default limits."""
    from tests.builders import file, job

    p = pipeline(partitions=2)
    c, s = p.campaign, "long_names"
    t0 = 1_497_000_000.0
    pad = "n" * 900
    events: list[Any] = []
    for i in range(4000):  # one event per job: a 2,000-message batch is ~2,000 contributions of one stage
        events.append(job(f"fifebatch1#{i}.0-{pad}", "started", t0 + i, campaign=c, stage=s))
    for i in range(2400):
        inp = f"in-{i}-{pad}"
        events += [file(inp, "input_declared", t0 + i, campaign=c, stage=s),
                   file(f"out-{i}-{pad}", "output_located", t0 + i + 5, campaign=c, stage=s, parents=[inp])]
    p.publish(events)
    w = p.worker()
    p.wait_numbers(expected_numbers(events), timeout=120)
    assert w.alive() and "MSG_SIZE_TOO_LARGE" not in w.log() and "worker.fatal" not in w.log()
    assert w.stop() == 0


def test_second_worker_joins_then_first_stops(pipeline: Any) -> None:
    """(d) A second worker started mid-stream shares the partitions; then the first stops: same numbers."""
    p = pipeline()
    events = p.events(scale=6, seed=12)
    first, rest = events[: len(events) // 4], events[len(events) // 4:]
    p.publish(first)
    w1 = p.worker("w1")
    wait_until(lambda: w1.processed() >= len(first), 60, "the first worker to process the first quarter")
    w2 = p.worker("w2")
    # the rest only once the second worker has joined and recovered its partitions: a slow start (a loaded
    # machine) must not let the first worker finish the stream alone
    wait_until(lambda: "worker.recovered " in w2.log(), 90, "the second worker to join and recover")
    pub = p.publish_paced(rest, seconds=10)
    wait_until(lambda: w2.processed() > 0, 60, "the second worker to get partitions and process events")
    done_by_w1 = w1.processed()
    assert w1.stop() == 0  # graceful: finishes its batch, commits, leaves the group
    assert done_by_w1 < len(events), "the stream was over before the first worker stopped"
    pub.join(60)
    p.wait_numbers(expected_numbers(events), timeout=90)
    assert "worker.stage_rebuilt" in w2.log()
    assert w2.stop() == 0


def test_malformed_messages_go_to_dead_letter_and_the_rest_is_processed(pipeline: Any) -> None:
    """(e) Not JSON, wrong schema, unknown type, missing field, wrong types, wrong topic, wrong key."""
    p = pipeline()
    events = p.events(seed=4)
    good = json.loads(encode_event(next(e for e in events if e.__class__.__name__ == "JobEvent")))
    good_file = json.loads(encode_event(next(e for e in events if e.__class__.__name__ == "FileEvent")))

    def variant(**changes: Any) -> bytes:
        d = {**good, "event_id": f"bad-{len(changes)}-{sorted(changes)}"}
        for k, v in changes.items():
            if v is None:
                d.pop(k)
            else:
                d[k] = v
        return json.dumps(d).encode()

    jobs, files = p.topics.job_events, p.topics.file_events
    key = good["job_id"].encode()
    bad = [
        (jobs, key, b"this is not json {", "not valid JSON"),
        (jobs, key, variant(schema="job-event/9"), "schema"),
        (jobs, key, variant(type="exploded"), "type"),
        (jobs, key, variant(job_id=None), "job_id"),
        (jobs, key, variant(exit_code="zero"), "exit_code"),
        (jobs, key, variant(ts="yesterday"), "ts"),
        (jobs, good_file["file"].encode(), json.dumps(good_file).encode(), "publish it to"),
        (jobs, b"some-other-key", variant(), "key"),
        (files, good_file["file"].encode(), json.dumps({**good_file, "parents": "in1"}).encode(), "parents"),
    ]
    for topic, k, raw, _ in bad:
        p.producer.produce(topic, raw, k)
    p.producer.flush()
    p.publish(events)
    w = p.worker()
    p.wait_numbers(expected_numbers(events))

    dl = read_topic(p.kafka, p.topics.dead_letter, len(bad))
    assert len(dl) == len(bad)
    got = {m.value(): headers_dict(m.headers()) for m in dl}
    for topic, _, raw, word in bad:
        h = got[raw]
        assert word in h["reason"], (raw, h["reason"])
        assert h["source"] == topic and "/" in h["position"]
    rows = p.store.query(f"SELECT source, position, reason FROM dead_letter FINAL WHERE source IN "
                         f"('{jobs}', '{files}')")
    assert len(rows) == len(bad)
    m = w.metrics()
    assert m[f'stagewatch_dead_letters_total{{topic="{jobs}"}}'] == len(bad) - 1
    assert m[f'stagewatch_dead_letters_total{{topic="{files}"}}'] == 1
    assert w.alive()
    assert w.stop() == 0


def test_clickhouse_down_20s_mid_stream(pipeline: Any, clickhouse_server: Any) -> None:
    """(f) ClickHouse stopped for 20 s while events stream in, then started: the sink waited, same numbers."""
    p = pipeline()
    events = p.events(scale=6, seed=13)
    first, rest = events[: len(events) // 3], events[len(events) // 3:]
    p.publish(first)
    w = p.worker()
    wait_until(lambda: w.processed() >= len(first), 60, "the worker to process the first third")
    devservers.stop_clickhouse(clickhouse_server)
    down_at = time.monotonic()
    try:
        pub = p.publish_paced(rest, seconds=10)
        wait_until(lambda: "sink.retry" in w.log(), 30, "the sink to notice the outage and retry")
        time.sleep(max(0.0, down_at + 20 - time.monotonic()))  # the outage itself lasts 20 s
    finally:
        devservers.start_clickhouse(clickhouse_server)
    pub.join(60)
    p.store.close()
    p.store = open_store(p.store_url)  # a fresh connection after the restart
    p.wait_numbers(expected_numbers(events), timeout=120)
    assert w.alive(), tail(w.log(), 40)
    assert w.stop() == 0


def test_producer_partitioning_matches_the_java_hash(pipeline: Any) -> None:
    """The link join needs every producer to put a key where kafka_io.partition_for_key says."""
    p = pipeline(partitions=7)
    keys = [f"file_{i:05d}.root".encode() for i in range(200)]
    for k in keys:
        p.producer.produce(p.topics.file_events, b"{}", k)
    p.producer.flush()
    msgs = read_topic(p.kafka, p.topics.file_events, len(keys))
    assert len(msgs) == len(keys)
    assert all(m.partition() == partition_for_key(m.key(), 7) for m in msgs)
    assert len({m.partition() for m in msgs}) == 7


def test_cli_errors_are_sentences(tmp_path: Any) -> None:
    """A broker that does not answer gives an actionable sentence, not a traceback."""
    r = subprocess.run([*CLI, "topics", "create", "--kafka", "127.0.0.1:9"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "did not answer" in r.stderr and "stagewatch dev up" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*CLI, "worker", "--kafka", "127.0.0.1:9", "--store", "chdb:/tmp/x"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "writes to a ClickHouse server" in r.stderr and "Traceback" not in r.stderr
