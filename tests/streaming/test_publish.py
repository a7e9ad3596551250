"""Publishers: pacing of the live simulator (no broker), and the CLI paths on the real broker."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ingest.kafka_io import DeliveryError, Topics, headers_dict
from ingest.publish import Publisher, publish_events
from tests.builders import job
from tests.streaming.conftest import CLI


class FakeProducer:
    """Records produce() calls and the (fake) time of each; poll() advances the fake clock."""

    def __init__(self, clock: list[float], fail: int = 0) -> None:
        self.clock = clock
        self.sent: list[tuple[str, bytes, float]] = []
        self.fail = fail

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        self.sent.append((topic, key or b"", self.clock[0]))

    def poll(self, timeout_s: float = 0.0) -> int:
        self.clock[0] += timeout_s
        return 0

    def flush(self, timeout_s: float = 60.0) -> int:
        if self.fail:
            raise DeliveryError(f"{self.fail} message(s) could not be delivered", self.fail)
        return len(self.sent)


def test_live_simulator_is_paced_by_simulated_time() -> None:
    """--speed X: X simulated seconds per real second, following the latest event time seen."""
    clock = [100.0]
    prod = FakeProducer(clock)
    pub = Publisher(prod, Topics("p."))  # type: ignore[arg-type]
    evs = [job("a", "submitted", 1000), job("a", "started", 1010), job("b", "submitted", 1005),
           job("a", "terminated", 1030)]
    publish_events(pub, evs, speed=10.0, clock=lambda: clock[0])
    times = [t - 100.0 for _, _, t in prod.sent]
    assert times[0] == pytest.approx(0.0)
    assert times[1] == pytest.approx(1.0, abs=0.02)   # 10 simulated s at 10x
    assert times[2] == pytest.approx(times[1])          # earlier than the latest seen: no wait
    assert times[3] == pytest.approx(3.0, abs=0.02)
    assert {t for t, _, _ in prod.sent} == {"p.stagewatch.job-events"} and prod.sent[0][1] == b"a"


def test_failed_delivery_is_an_error_not_a_silent_loss() -> None:
    clock = [0.0]
    pub = Publisher(FakeProducer(clock, fail=3), Topics())  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match="3 message"):
        publish_events(pub, [job("a", "submitted", 1)], speed=0)


@pytest.mark.servers
def test_publish_cli_simulate_and_invalid_lines(pipeline: Any, tmp_path: Any) -> None:
    """`publish --simulate tiny` sends every event; `publish FILE --store` also records invalid lines."""
    from tests.streaming.test_pipeline import read_topic

    p = pipeline()
    r = subprocess.run([*CLI, "publish", "--simulate", "tiny", "--speed", "0", "--kafka", p.kafka,
                        "--topic-prefix", p.prefix], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "published 410 events" in r.stderr
    assert len(read_topic(p.kafka, p.topics.job_events, 199)) + len(read_topic(p.kafka, p.topics.file_events, 211)) \
        == 410

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"schema":"job-event/1","event_id":"x"}\nnot json\n')
    r = subprocess.run([*CLI, "publish", str(bad), "--kafka", p.kafka, "--topic-prefix", p.prefix, "--store",
                        p.store_url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 invalid line(s)" in r.stderr and f"{bad}:1:" in r.stderr and f"{bad}:2: not valid JSON" in r.stderr
    dl = read_topic(p.kafka, p.topics.dead_letter, 2)
    assert sorted(headers_dict(m.headers())["position"] for m in dl) == ["1", "2"]
    rows = p.store.query(f"SELECT position, reason FROM dead_letter FINAL WHERE source = '{bad}' ORDER BY position")
    assert [r["position"] for r in rows] == ["1", "2"] and "missing required field" in rows[0]["reason"]


# --------------------------------------------------------------------- every line: event or dead letter

import gzip  # noqa: E402
import json  # noqa: E402

from ingest.kafka_io import DEAD_LETTER_MAX_VALUE_BYTES, MessageTooLarge, SafeProducer  # noqa: E402
from ingest.lines import InputError  # noqa: E402
from ingest.publish import publish_files  # noqa: E402
from schemas.events import MAX_LINE_BYTES, MAX_NAME_CHARS, MAX_PARENTS, encode_event, raw_from_text  # noqa: E402
from tests.builders import file  # noqa: E402
from tests.servers import free_ports  # noqa: E402

T0 = 1_497_957_900.0


class RecordingProducer(SafeProducer):
    """A real SafeProducer (librdkafka's own size checks) with no broker: records what it accepted;
    flush drops the queue instead of waiting for a broker that is not there."""

    def __init__(self, **extra: Any) -> None:
        super().__init__(f"127.0.0.1:{free_ports(1)[0]}", extra={"log_level": 0, **extra})
        self.sent: list[tuple[str, bytes, bytes | None, dict[str, bytes]]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:  # type: ignore[override]
        super().produce(topic, value, key, **kw)
        self.sent.append((topic, value, key, dict(kw.get("headers") or [])))

    def flush(self, timeout_s: float = 60.0) -> int:
        self._p.purge()
        self._p.flush(0)
        return 0


class ListSink:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows.append((table, row))

    def flush(self) -> None:
        pass


def _good_lines() -> list[bytes]:
    return [encode_event(job(f"g{i}", "submitted", T0 + i)) for i in range(3)]


def _hostile_lines() -> list[bytes]:
    base = json.loads(encode_event(job("h", "terminated", T0)))
    deep = 5000
    return [
        b'{"schema":"job-event/1","x":' + b"[" * deep + b"]" * deep + b"}",          # RecursionError before
        json.dumps({**base, "ts": 1.7e12}).encode(),                                  # milliseconds
        json.dumps({**base, "ts": "9999-12-31T23:59:59Z"}).encode(),                   # year 9999
        json.dumps({**base, "exit_code": 2**40}).encode(),
        json.dumps({**base, "cores": 100000}).encode(),
        json.dumps({**base, "wall_s": 1e306}).encode(),
        json.dumps({**base, "campaign": "c" * 256 * 1024}).encode(),                   # a 256 KiB name
        json.dumps({**base, "pad": "x" * MAX_LINE_BYTES}).encode(),                    # over the line limit
        b"not json \xff\xfe",                                                          # not UTF-8 either
        b"[1, 2]",
    ]


def test_publish_files_every_line_is_an_event_or_a_dead_letter(tmp_path) -> None:
    """Hostile lines between good ones: each good line is published, each bad one is a dead letter
    (topic and store) with its reason and its exact bytes; nothing raises."""
    good, bad = _good_lines(), _hostile_lines()
    lines = [good[0], *bad[:5], good[1], *bad[5:], good[2]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    prod, sink = RecordingProducer(), ListSink()
    pub = Publisher(prod, Topics("t."), dead_letter_sink=sink)
    rep = publish_files(pub, [str(path)])
    assert rep.lines == len(lines) and rep.published == len(good) == rep.job_events
    bad_positions = [str(i + 1) for i, line in enumerate(lines) if line in bad]
    assert [d.position for d in rep.invalid] == bad_positions
    events = [v for t, v, _, _ in prod.sent if t == "t.stagewatch.job-events"]
    assert events == good  # canonical encodings of the good lines, in order
    dead = [(v, h) for t, v, _, h in prod.sent if t == "t.stagewatch.dead-letter"]
    assert [h["position"].decode() for _, h in dead] == bad_positions
    for (value, headers), raw in zip(dead, bad):
        kept = raw[:MAX_LINE_BYTES + 1]  # the reader holds no more of an overlong line than this
        assert int(headers["raw_bytes"]) == len(kept) and kept.startswith(value)
        assert len(value) <= DEAD_LETTER_MAX_VALUE_BYTES and len(headers["reason"]) <= 4096
    rows = [r for t, r in sink.rows if t == "dead_letter"]
    assert [raw_from_text(r["raw"]) for r in rows] == [line[:MAX_LINE_BYTES + 1] for line in bad]
    assert "nested" in rows[0]["reason"] and "milliseconds?" in rows[1]["reason"]
    assert "cores" in rows[4]["reason"] and "1024" in rows[4]["reason"]


def test_bad_lines_of_two_stdin_inputs_keep_two_dead_letters(monkeypatch) -> None:
    """Every input read from `-` has the source <stdin>: keyed by its line number alone, line 1 of the next
    input would replace line 1 of this one in the store. Keyed by line and bytes (topic and store alike):
    distinct lines keep distinct keys, the same input published again gets the same key."""
    import io
    import sys

    inputs = [b'{"not": "an event", "n": %d}\n' % i for i in range(2)]
    prod, sink = RecordingProducer(), ListSink()
    pub = Publisher(prod, Topics("t."), dead_letter_sink=sink)
    for data in [*inputs, inputs[0]]:
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(data)})())
        publish_files(pub, ["-"])
    rows = [r for t, r in sink.rows if t == "dead_letter"]
    positions = [r["position"] for r in rows]
    assert [r["source"] for r in rows] == ["<stdin>"] * 3 and all(p.startswith("1 blake2b:") for p in positions)
    assert positions[0] != positions[1] and positions[0] == positions[2]
    headers = [h["position"].decode() for t, _, _, h in prod.sent if t == "t.stagewatch.dead-letter"]
    assert headers == positions


def test_an_event_over_kafkas_message_size_is_a_dead_letter_not_a_crash(tmp_path) -> None:
    """A contract-valid event bigger than Kafka's message.max.bytes (1,000 parents of 1,000 characters is
    ~1 MB > librdkafka's default 1,000,000) is refused by the producer: a dead letter with the reason."""
    parents = [f"{i:04d}" + "p" * (MAX_NAME_CHARS - 30) for i in range(MAX_PARENTS)]
    big = encode_event(file("out.root", "output_declared", T0, parents=parents))
    assert 1_000_000 < len(big) <= MAX_LINE_BYTES
    path = tmp_path / "big.jsonl"
    path.write_bytes(_good_lines()[0] + b"\n" + big + b"\n" + _good_lines()[1] + b"\n")
    prod, sink = RecordingProducer(), ListSink()
    pub = Publisher(prod, Topics(), dead_letter_sink=sink)
    rep = publish_files(pub, [str(path)])
    assert rep.published == 2 and [d.position for d in rep.invalid] == ["2"]
    assert "too large" in rep.invalid[0].reason and "message.max.bytes" in rep.invalid[0].reason
    (dl,) = [(v, h) for t, v, _, h in prod.sent if t == Topics().dead_letter]
    assert dl[1]["raw_truncated"] == b"true" and big.startswith(dl[0])
    (row,) = [r for t, r in sink.rows if t == "dead_letter"]
    assert raw_from_text(row["raw"]) == big  # the store keeps every byte


def test_a_small_producer_limit_still_gets_its_dead_letter_through() -> None:
    """The dead letter of a refused message is cut to what the producer accepts, so it is never refused."""
    prod = RecordingProducer(**{"message.max.bytes": 4000})
    pub = Publisher(prod, Topics())
    ev = job("j" * MAX_NAME_CHARS, "submitted", T0, campaign="c" * MAX_NAME_CHARS, stage="s" * MAX_NAME_CHARS,
             site="x" * MAX_NAME_CHARS)
    assert pub.event(ev, encode_event(ev), "f.jsonl", "7") is False
    assert pub.report.published == 0 and [d.position for d in pub.report.invalid] == ["7"]
    (dl,) = prod.sent
    assert dl[0] == Topics().dead_letter and len(dl[1]) < 4000 and dl[3]["raw_truncated"] == b"true"


def test_safe_producer_turns_msg_size_too_large_into_message_too_large() -> None:
    prod = RecordingProducer(**{"message.max.bytes": 2000})
    with pytest.raises(MessageTooLarge, match="2,000") as info:
        prod.produce("t", b"x" * 3000, b"k")
    assert info.value.size >= 3000 and not prod.sent
    prod.flush()


class _Err:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return "Broker: Message size too large"


class _Msg:
    def __init__(self, topic: str, value: bytes) -> None:
        self._t, self._v = topic, value

    def topic(self) -> str:
        return self._t

    def value(self) -> bytes:
        return self._v

    def key(self) -> bytes:
        return b"g0"

    def partition(self) -> int:
        return 0

    def headers(self) -> None:
        return None


def test_an_event_the_broker_refuses_later_becomes_a_dead_letter() -> None:
    """The broker may refuse a message librdkafka accepted (topic max.message.bytes lower than the
    producer's), and it refuses the whole batch the message was sent in: each refused message is sent
    again alone, and refused alone it becomes a dead letter with the line's bytes and position, not a
    delivery failure (flush does not raise); other failures still are."""
    prod, sink = RecordingProducer(), ListSink()
    pub = Publisher(prod, Topics(), dead_letter_sink=sink)
    raw = _good_lines()[0]
    pub.line(raw, "in.jsonl", "12")
    assert pub.report.published == 1
    topic, value, _, _ = prod.sent[0]
    context = (raw, "in.jsonl", "12", topic)
    too_large, msg = _Err("MSG_SIZE_TOO_LARGE"), _Msg(topic, value)
    prod._on_delivery_with(context, too_large, msg)  # refused with its batch: re-sent alone
    assert prod._solo is not None and len(prod._solo._p) >= 1 and not pub.report.invalid
    prod._solo._on_delivery_with(context, too_large, msg)  # refused alone: a dead letter
    assert pub.report.published == 0 and pub.report.job_events == 0
    assert [(d.source, d.position) for d in pub.report.invalid] == [("in.jsonl", "12")]
    assert "too large" in pub.report.invalid[0].reason and prod.failed == prod._solo.failed == 0
    assert prod.sent[-1][0] == Topics().dead_letter and prod.sent[-1][1] == raw
    prod._on_delivery_with(context, _Err("_MSG_TIMED_OUT"), msg)
    assert prod.failed == 1
    prod._solo._p.purge()
    prod.flush()


def test_publish_reads_gzip_and_bom_and_refuses_binary_before_publishing(tmp_path) -> None:
    good = _good_lines()
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + b"\n".join(good) + b"\n"))
    pub = Publisher(RecordingProducer(), Topics())
    rep = publish_files(pub, [str(gz)])
    assert rep.published == 3 and not rep.invalid
    binary = tmp_path / "photo.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    prod = RecordingProducer()
    with pytest.raises(InputError, match="PNG"):
        publish_files(Publisher(prod, Topics()), [str(binary)])
    assert prod.sent == []


@pytest.mark.servers
def test_broker_refusal_on_a_real_topic_is_a_dead_letter(kafka_server: Any, tmp_path: Any) -> None:
    """On a real broker whose job-events topic accepts at most 3,000 bytes per message, a 6 KB event is
    refused after produce; publish still succeeds, with that line in the dead-letter topic."""
    from ingest.kafka_io import create_topics, headers_dict
    from tests.streaming.test_pipeline import read_topic

    topics = Topics(f"big{free_ports(1)[0]}.")
    create_topics(kafka_server.kafka_bootstrap, 1, topics=topics,
                  extra={topics.job_events: {"max.message.bytes": "3000"}})
    big = encode_event(job("b" * MAX_NAME_CHARS, "submitted", T0, campaign="c" * MAX_NAME_CHARS,
                           stage="s" * MAX_NAME_CHARS, site="x" * MAX_NAME_CHARS, host="h" * MAX_NAME_CHARS,
                           submission="u" * MAX_NAME_CHARS))
    assert 6000 < len(big) < 1_000_000
    path = tmp_path / "e.jsonl"
    good = _good_lines()
    path.write_bytes(good[0] + b"\n" + big + b"\n" + good[1] + b"\n")
    pub = Publisher(SafeProducer(kafka_server.kafka_bootstrap), topics)
    rep = publish_files(pub, [str(path)])
    assert rep.published == 2 and [d.position for d in rep.invalid] == ["2"]
    assert "too large" in rep.invalid[0].reason
    (dl,) = read_topic(kafka_server.kafka_bootstrap, topics.dead_letter, 1)
    assert headers_dict(dl.headers())["position"] == "2" and dl.value() == big
    assert sorted(m.value() for m in read_topic(kafka_server.kafka_bootstrap, topics.job_events, 2)) == sorted(good[:2])


class _Delivered:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


def test_safe_producer_reports_the_highest_acknowledged_offset_of_tracked_topics() -> None:
    """The worker records a table's changelog position next to its RocksDB state from these offsets (a
    restart then reads only the changelog after them): only acknowledged records, only tracked topics."""
    prod = RecordingProducer()
    prod.track_offsets({"app-jobs-changelog"})
    for topic, part, off in [("app-jobs-changelog", 1, 7), ("app-jobs-changelog", 1, 5), ("app-jobs-changelog", 0, 3),
                             ("app-contributions", 1, 99)]:
        prod._on_delivery(None, _Delivered(topic, part, off))
    prod._on_delivery(_Err("_MSG_TIMED_OUT"), _Delivered("app-jobs-changelog", 2, 50))  # not acknowledged
    assert prod.take_offsets() == {("app-jobs-changelog", 1): 7, ("app-jobs-changelog", 0): 3}
    assert prod.take_offsets() == {}   # taken: the next batch starts afresh
