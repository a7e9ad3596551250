"""Kafka plumbing shared by the publishers and the workers: topic names, topic creation, a producer
that never loses a message silently, and the dead-letter record format.

Why a wrapper around confluent-kafka's Producer: ``produce()`` only queues a message; whether it
reached the broker is reported later, in a delivery callback, and a caller that forgets to look at
those reports loses messages without noticing. ``SafeProducer`` records every failed delivery and its
``flush()`` raises :class:`DeliveryError` (how many, and why) if any message could not be delivered,
so "publish, flush, then commit the source position" is an at-least-once hand-off.

Partitioning: every producer here uses ``partitioner=murmur2_random``, the Java client's murmur2
hash of the key (and Kafka Streams', and aiokafka's default). The workers join an output file's facts
into its input files by sending "link" messages to the partition of the *parent* file's key; that only
works if every producer of the file-events topic hashes keys the same way. ``partition_for_key`` is
the same function in Python (checked against the broker in tests/streaming).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable, Mapping

log = logging.getLogger("stagewatch.kafka")

JOB_EVENTS = "stagewatch.job-events"
FILE_EVENTS = "stagewatch.file-events"
DEAD_LETTER = "stagewatch.dead-letter"

DEFAULT_PARTITIONS = 8
DEFAULT_CONNECT_TIMEOUT_S = 10.0


class KafkaError(RuntimeError):
    """A Kafka operation failed; the message is a sentence the user can act on."""


class KafkaUnavailable(KafkaError):
    """The broker did not answer."""


class MessageTooLarge(KafkaError):
    """Kafka refused one message as too large (librdkafka's MSG_SIZE_TOO_LARGE, before sending it)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class DeliveryError(KafkaError):
    """Some produced messages were not acknowledged by the broker (they are NOT in Kafka)."""

    def __init__(self, message: str, failed: int) -> None:
        super().__init__(message)
        self.failed = failed


@dataclass(frozen=True)
class Topics:
    """The public topic names, optionally prefixed (tests and parallel deployments use a prefix)."""

    prefix: str = ""

    @property
    def job_events(self) -> str:
        return self.prefix + JOB_EVENTS

    @property
    def file_events(self) -> str:
        return self.prefix + FILE_EVENTS

    @property
    def dead_letter(self) -> str:
        return self.prefix + DEAD_LETTER

    def all(self) -> tuple[str, str, str]:
        return (self.job_events, self.file_events, self.dead_letter)

    def for_event(self, event: Any) -> str:
        """The topic of an event: job events and file events go to their own topics."""
        return self.job_events if event.__class__.__name__ == "JobEvent" else self.file_events


# ------------------------------------------------------------------------------------------------ hashing

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's ``Utils.murmur2``), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        i4 = i * 4
        k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra >= 3:
        h ^= data[(length & ~3) + 2] << 16
    if extra >= 2:
        h ^= data[(length & ~3) + 1] << 8
    if extra >= 1:
        h ^= data[length & ~3]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition the Java-compatible partitioner picks for ``key`` (``toPositive(murmur2) % n``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# ------------------------------------------------------------------------------------------------ admin

def _admin(bootstrap: str, timeout_s: float) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": int(min(timeout_s, 10) * 1000),
        "log_level": 0,
    })


def unavailable_message(bootstrap: str, timeout_s: float) -> str:
    return (f"Kafka at {bootstrap} did not answer within {timeout_s:g} s; start it with `stagewatch dev up` "
            f"or pass --kafka (or set STAGEWATCH_KAFKA).")


def check_kafka(bootstrap: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> dict[str, int]:
    """Ask the broker for its topics; returns {topic: partition count}. Raises KafkaUnavailable."""
    if not bootstrap:
        raise KafkaUnavailable("No Kafka broker given: pass --kafka HOST:PORT or set STAGEWATCH_KAFKA "
                               "(`eval \"$(stagewatch dev up)\"` sets it).")
    try:
        md = _admin(bootstrap, timeout_s).list_topics(timeout=timeout_s)
    except Exception as exc:  # KafkaException on timeout / transport failure
        raise KafkaUnavailable(unavailable_message(bootstrap, timeout_s)) from exc
    if not md.brokers:
        raise KafkaUnavailable(unavailable_message(bootstrap, timeout_s))
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def create_topics(bootstrap: str, partitions: int = DEFAULT_PARTITIONS, replication_factor: int = 1, *,
                  topics: Topics = Topics(), extra: Mapping[str, Mapping[str, str]] | None = None,
                  timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> dict[str, str]:
    """Create the public topics (and ``extra`` ones: name -> config) if missing. Idempotent.

    Returns {topic: "created" | "exists (N partitions)"}. Raises KafkaError if an existing job- or
    file-events topic has a different partition count than asked for, because the workers need the
    event topics and their own internal topics to be co-partitioned (same count, same hashing).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    if partitions < 1 or replication_factor < 1:
        raise KafkaError("--partitions and --replication-factor must be at least 1.")
    existing = check_kafka(bootstrap, timeout_s)
    wanted: dict[str, dict[str, str]] = {
        topics.job_events: {},
        topics.file_events: {},
        # Dead letters are evidence: keep them for 30 days.
        topics.dead_letter: {"retention.ms": str(30 * 24 * 3600 * 1000)},
    }
    for name, cfg in (extra or {}).items():
        wanted[name] = dict(cfg)
    result: dict[str, str] = {}
    new = []
    for name, cfg in wanted.items():
        if name in existing:
            result[name] = f"exists ({existing[name]} partitions)"
            if name in (topics.job_events, topics.file_events) and existing[name] != partitions:
                raise KafkaError(
                    f"Topic {name} already exists with {existing[name]} partitions, not {partitions}; pass "
                    f"--partitions {existing[name]} (the event topics and the workers' internal topics must "
                    f"have the same partition count).")
        else:
            new.append(NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                                config=cfg))
    if new:
        admin = _admin(bootstrap, timeout_s)  # keep a reference: the futures die with their client
        futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "created"
                log.info("kafka.topic_created topic=%s partitions=%d replication_factor=%d",
                         name, partitions, replication_factor)
            except KafkaException as exc:
                err = exc.args[0]
                if getattr(err, "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                    result[name] = "exists"  # created concurrently by someone else
                    continue
                raise KafkaError(f"Could not create topic {name} on {bootstrap}: {err}. With a single broker, "
                                 f"--replication-factor must be 1.") from exc
    return result


def wait_for_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> dict[str, int]:
    """Wait until every topic in ``names`` has metadata (a freshly created topic takes a moment)."""
    names = list(names)
    deadline = time.monotonic() + timeout_s
    while True:
        existing = check_kafka(bootstrap, min(10.0, timeout_s))
        missing = [n for n in names if n not in existing]
        if not missing:
            return {n: existing[n] for n in names}
        if time.monotonic() >= deadline:
            raise KafkaError(f"Topics {', '.join(missing)} do not exist on {bootstrap}; "
                             f"create them with `stagewatch topics create`.")
        time.sleep(0.2)


# ------------------------------------------------------------------------------------------------ producer

class SafeProducer:
    """confluent-kafka Producer with idempotence, acks=all and loud delivery failures.

    ``produce`` never blocks for long: when the local queue is full it serves delivery reports until
    there is room. ``flush`` waits for every queued message and raises DeliveryError if any failed
    (or are still undelivered at the timeout), naming how many and the first reasons.
    """

    def __init__(self, bootstrap: str, *, linger_ms: int = 5, message_timeout_ms: int = 120_000,
                 client_id: str = "stagewatch", extra: Mapping[str, Any] | None = None,
                 on_failure: Callable[[str, Any], None] | None = None) -> None:
        from confluent_kafka import Producer

        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            # No compression: the workers read with aiokafka, which has no lz4/snappy/zstd codec installed.
            "compression.type": "none",
            "partitioner": "murmur2_random",
            # How long librdkafka keeps retrying one message before reporting it as failed.
            "message.timeout.ms": message_timeout_ms,
            "queue.buffering.max.messages": 500_000,
            "log_level": 3,
        }
        conf.update(extra or {})
        self.bootstrap = bootstrap
        self._conf = conf
        self._p = Producer(conf)
        self._solo: SafeProducer | None = None  # one message per request: retries of refused batches
        self._is_solo = False
        self.on_failure = on_failure
        # Called as on_too_large(msg, context, err) when the broker refuses a message produced with a
        # ``context`` as too large; such a message is the caller's (a dead letter), not a delivery failure.
        self.on_too_large: Callable[[Any, Any, Any], None] | None = None
        self.max_message_bytes = int(conf.get("message.max.bytes", 1_000_000))
        self.failed = 0
        self.delivered = 0
        self.reasons: list[str] = []
        self._since_poll = 0
        self._tracked: frozenset[str] = frozenset()
        self._offsets: dict[tuple[str, int], int] = {}

    def track_offsets(self, topics: Iterable[str]) -> None:
        """Remember the highest acknowledged offset per partition of these topics (see take_offsets)."""
        self._tracked = frozenset(topics)

    def take_offsets(self) -> dict[tuple[str, int], int]:
        """{(topic, partition): highest offset acknowledged} of tracked topics since the last call.

        The worker records a table's changelog position next to its local state with it, so a restart
        reads only the changelog after it.
        """
        offsets, self._offsets = self._offsets, {}
        return offsets

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            if self._tracked and msg.topic() in self._tracked:
                tp = (msg.topic(), msg.partition())
                off = msg.offset()
                if off > self._offsets.get(tp, -1):
                    self._offsets[tp] = off
            return
        self.failed += 1
        if len(self.reasons) < 5:
            self.reasons.append(f"{msg.topic()}: {err.str() if hasattr(err, 'str') else err}")
        if self.on_failure is not None:
            self.on_failure(msg.topic(), err)

    def _on_delivery_with(self, context: Any, err: Any, msg: Any) -> None:
        if err is not None and self.on_too_large is not None and _is_too_large(err):
            if self._is_solo:  # refused alone: this message itself is too large
                self.on_too_large(msg, context, err)
                return
            # The broker's limit is per request batch: the messages batched with a too-large one are
            # refused with it. Send each refused message again alone; refused alone, it is too large.
            self._solo_producer().produce(msg.topic(), msg.value(), msg.key(), partition=msg.partition(),
                                          headers=msg.headers(), context=context)
            return
        self._on_delivery(err, msg)

    def _solo_producer(self) -> "SafeProducer":
        if self._solo is None:
            extra = {k: v for k, v in self._conf.items() if k not in ("bootstrap.servers", "client.id")}
            extra.update({"batch.num.messages": 1, "linger.ms": 0})
            self._solo = SafeProducer(self.bootstrap, client_id=f"{self._conf['client.id']}-solo", extra=extra)
            self._solo._is_solo = True
            self._solo.on_too_large = self._refused_alone
        return self._solo

    def _refused_alone(self, msg: Any, context: Any, err: Any) -> None:
        if self.on_too_large is not None:
            self.on_too_large(msg, context, err)

    def produce(self, topic: str, value: bytes, key: bytes | None = None, *, partition: int | None = None,
                headers: list[tuple[str, bytes]] | None = None, context: Any = None) -> None:
        """Queue one message. Raises MessageTooLarge (nothing queued) if it exceeds message.max.bytes.

        With a ``context``, a later refusal by the broker as too large goes to ``on_too_large`` with it.
        """
        kwargs: dict[str, Any] = {"key": key, "on_delivery": self._on_delivery if context is None
                                  else partial(self._on_delivery_with, context)}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self._p.produce(topic, value, **kwargs)
                break
            except BufferError:  # local queue full: let the broker catch up
                self._p.poll(0.05)
            except Exception as exc:  # confluent_kafka.KafkaException
                if exc.args and _is_too_large(exc.args[0]):
                    size = len(value) + len(key or b"") + sum(len(k) + len(v or b"") for k, v in headers or ())
                    raise MessageTooLarge(
                        f"Kafka refused the message as too large: {size:,} bytes with its key and headers, more "
                        f"than the producer's message.max.bytes ({self.max_message_bytes:,})", size) from None
                raise
        self._since_poll += 1
        if self._since_poll >= 256:  # serve delivery reports now and then (flush serves the rest)
            self._since_poll = 0
            self._p.poll(0)

    def pending(self) -> int:
        """Messages queued or in flight (not yet acknowledged or failed)."""
        return len(self._p)

    def poll(self, timeout_s: float = 0.0) -> int:
        return self._p.poll(timeout_s)

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for every queued message; raise DeliveryError if any could not be delivered.

        Returns the number of messages delivered since the previous flush.
        """
        left = self._p.flush(timeout_s)
        if self._solo is not None:  # refused batches re-sent one by one; their refusals add dead letters here
            self.delivered += self._solo.flush(timeout_s)
            left = self._p.flush(timeout_s)
        failed, reasons = self.failed, self.reasons
        delivered = self.delivered
        self.failed, self.reasons, self.delivered = 0, [], 0
        if left:
            raise DeliveryError(
                f"{left} message(s) were still not acknowledged by Kafka at {self.bootstrap} after {timeout_s:g} s "
                f"(and {failed} failed); they may not be in Kafka. Check the broker (`stagewatch dev status`) and "
                f"publish again: duplicates are harmless, events carry their event_id.", left + failed)
        if failed:
            raise DeliveryError(
                f"{failed} message(s) could not be delivered to Kafka at {self.bootstrap}: {'; '.join(reasons)}. "
                f"They are NOT in Kafka; publish again (duplicates are harmless).", failed)
        return delivered

    def close(self, timeout_s: float = 30.0) -> None:
        self.flush(timeout_s)


# ------------------------------------------------------------------------------------------------ dead letters

def _is_too_large(err: Any) -> bool:
    """Whether a confluent_kafka KafkaError says the message (or its batch) is too large."""
    name = getattr(err, "name", None)
    return callable(name) and name() in ("MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE")


# A dead letter's value, headers and key must fit in one Kafka message whatever was rejected (a line may
# be up to the contract's MAX_LINE_BYTES, over Kafka's default 1,000,000): the value keeps at most this
# many bytes of the raw record (header raw_bytes gives the full length, raw_truncated says it was cut;
# the store's dead_letter table keeps every byte), each header value at most DEAD_LETTER_HEADER_BYTES.
DEAD_LETTER_MAX_VALUE_BYTES = 256 * 1024
DEAD_LETTER_HEADER_BYTES = 4096


def _header(text: str) -> bytes:
    data = text.encode("utf-8", "replace")
    if len(data) <= DEAD_LETTER_HEADER_BYTES:
        return data
    return data[:DEAD_LETTER_HEADER_BYTES - 3].decode("utf-8", "ignore").encode() + b"..."


def dead_letter_headers(reason: str, source: str, position: str, raw_bytes: int | None = None,
                        truncated: bool = False) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter message: why, where it came from, where in the source (each bounded)."""
    headers = [("reason", _header(reason)), ("source", _header(source)), ("position", _header(position))]
    if raw_bytes is not None:
        headers.append(("raw_bytes", str(raw_bytes).encode()))
    if truncated:
        headers.append(("raw_truncated", b"true"))
    return headers


def dead_letter_message(raw: bytes, reason: str, source: str, position: str, key: bytes | None = None,
                        max_message_bytes: int | None = None) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    """(value, key, headers) of the dead letter of ``raw``, bounded so that Kafka does not refuse it.

    The value keeps at most DEAD_LETTER_MAX_VALUE_BYTES of ``raw``, less if the producer's
    ``max_message_bytes`` leaves less room next to the key and headers (and 512 bytes of framing).
    """
    if key is not None and len(key) > DEAD_LETTER_HEADER_BYTES:
        key = key[:DEAD_LETTER_HEADER_BYTES]
    headers = dead_letter_headers(reason, source, position, len(raw), True)
    room = DEAD_LETTER_MAX_VALUE_BYTES
    if max_message_bytes is not None:
        overhead = 512 + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
        room = max(0, min(room, max_message_bytes - overhead))
    value = raw[:room]
    return value, key, dead_letter_headers(reason, source, position, len(raw), len(value) < len(raw))


def publish_dead_letter(producer: SafeProducer, topics: Topics, raw: bytes, reason: str, source: str,
                        position: str, key: bytes | None = None) -> None:
    """Send the raw bytes of a rejected record (cut to a size Kafka accepts) to the dead-letter topic."""
    value, key, headers = dead_letter_message(raw, reason, source, position, key,
                                              getattr(producer, "max_message_bytes", None))
    producer.produce(topics.dead_letter, value, key, headers=headers)


def headers_dict(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """Decode message headers (as consumers receive them) into a dict."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (headers or [])}
