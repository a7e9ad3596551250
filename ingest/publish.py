"""Publishers: JSON-lines files and the simulator (live), to Kafka (a growing HTCondor log: ingest.condor.tailing).

Every publisher validates against the contract before sending, keys events by their entity (job_id or
file) so that all events of one job or file land in one partition, and ends with a producer flush that
raises if any message was not acknowledged: a run that returns normally has put every valid event in
Kafka. Invalid lines go to the dead-letter topic with headers reason/source/position (and, when a
store is given, to its dead_letter table) and are reported to the caller.

Events are published in their canonical encoding (``encode_event``: ts as Unix seconds), the same
bytes the raw events table stores.

Every input line ends as exactly one of: a published event, or a dead letter with its reason. A line
the contract rejects, and an event Kafka refuses as too large (at produce, or later by the broker), are
dead letters; neither stops the run. Files are read by ``ingest.lines.iter_input_lines`` (gzip, BOM,
binary refused up front with InputError).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ingest.kafka_io import MessageTooLarge, SafeProducer, Topics, publish_dead_letter
from ingest.lines import InputError, iter_input_lines
from processors.rows import dead_letter_row
from schemas.events import STDIN_SOURCE, DeadLetter, Event, InvalidEvent, decode_event, encode_event, event_key

log = logging.getLogger("stagewatch.publish")


@dataclass
class PublishReport:
    lines: int = 0
    published: int = 0
    job_events: int = 0
    file_events: int = 0
    invalid: list[DeadLetter] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0


class Publisher:
    """Sends events and dead letters through one SafeProducer.

    It registers itself as the producer's ``on_too_large`` handler, so an event the broker refuses as
    too large after it was queued becomes a dead letter too (during ``flush``), not a delivery error.
    """

    def __init__(self, producer: SafeProducer, topics: Topics = Topics(), *,
                 on_invalid: Callable[[DeadLetter], None] | None = None, dead_letter_sink: Any = None) -> None:
        self.producer = producer
        self.topics = topics
        self.on_invalid = on_invalid
        self.dead_letter_sink = dead_letter_sink  # a StoreSink, or None
        self.report = PublishReport()
        producer.on_too_large = self._refused_by_broker

    def event(self, ev: Event, raw: bytes | None = None, source: str = "", position: str = "") -> bool:
        """Publish one event; False if Kafka refused it as too large (then it is a dead letter).

        ``raw``/``source``/``position`` say where it came from (an input line); without them the dead
        letter of a refused event holds its canonical encoding and the topic.
        """
        topic = self.topics.for_event(ev)
        value = encode_event(ev)
        context = (raw if raw is not None else value, source or topic, position, topic)
        try:
            self.producer.produce(topic, value, event_key(ev), context=context)
        except MessageTooLarge as exc:
            self.reject(context[0], context[1], position, f"{exc}; shorten the event's values")
            return False
        self._count(topic, 1)
        return True

    def _count(self, topic: str, n: int) -> None:
        self.report.published += n
        if topic == self.topics.job_events:
            self.report.job_events += n
        else:
            self.report.file_events += n

    def _refused_by_broker(self, msg: Any, context: Any, err: Any) -> None:
        """Delivery report of an event the broker refused as too large: it becomes a dead letter."""
        raw, source, position, topic = context
        self._count(topic, -1)
        detail = err.str() if hasattr(err, "str") else str(err)
        self.reject(raw, source, position, f"Kafka refused the event's message as too large ({detail}): "
                                           f"{len(msg.value() or b''):,} bytes; shorten its values or raise "
                                           f"the topic's max.message.bytes")

    def line(self, raw: bytes, source: str, position: str) -> None:
        self.report.lines += 1
        try:
            ev = decode_event(raw)
        except InvalidEvent as exc:
            self.reject(raw, source, position, str(exc))
            return
        self.event(ev, raw, source, position)

    def reject(self, raw: bytes, source: str, position: str, reason: str) -> None:
        r = DeadLetter(source, position, reason, raw).keyed()  # a line of stdin: keyed by its bytes too
        publish_dead_letter(self.producer, self.topics, raw, reason, source, r.position)
        self.report.invalid.append(r)
        if self.dead_letter_sink is not None:
            self.dead_letter_sink.add("dead_letter", dead_letter_row(r, time.time()))
        if self.on_invalid is not None:
            self.on_invalid(r)

    def flush(self, timeout_s: float = 120.0) -> None:
        """Wait for the broker to acknowledge everything sent; raises DeliveryError otherwise."""
        self.producer.flush(timeout_s)
        if self.dead_letter_sink is not None:
            self.dead_letter_sink.flush()


def publish_files(pub: Publisher, paths: Iterable[str]) -> PublishReport:
    """Publish JSON-lines files ('-' is stdin) and flush; invalid lines become dead letters.

    Raises InputError for a file that is not JSON lines (binary, damaged gzip); what was read before
    it is published (flushed) first.
    """
    t0 = time.perf_counter()
    try:
        for path in paths:
            source = STDIN_SOURCE if path == "-" else path
            for n, raw in iter_input_lines(path):
                pub.line(raw, source, str(n))
    except InputError:
        pub.flush()
        raise
    pub.flush()
    pub.report.seconds = time.perf_counter() - t0
    log.info("publish.files lines=%d published=%d invalid=%d seconds=%.2f", pub.report.lines,
             pub.report.published, len(pub.report.invalid), pub.report.seconds)
    return pub.report


def publish_events(pub: Publisher, events: Iterable[Event], *, speed: float = 0.0,
                   stop: threading.Event | None = None, progress: Callable[[PublishReport], None] | None = None,
                   progress_every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> PublishReport:
    """Publish events as they come, paced so that ``speed`` simulated seconds pass per real second.

    ``speed=0`` publishes as fast as possible. Pacing follows the latest event time seen (a delivery
    stream with bounded reordering goes back in time a little; that never makes it wait).
    """
    if speed < 0:
        raise ValueError("speed must be >= 0 (0 = as fast as possible)")
    stop = stop or threading.Event()
    t0 = clock()
    sim0: float | None = None
    sim_max = float("-inf")
    next_progress = t0 + progress_every_s
    for ev in events:
        if stop.is_set():
            break
        ts: float = ev.ts  # type: ignore[assignment]
        if speed > 0:
            if sim0 is None:
                sim0 = ts
            if ts > sim_max:
                sim_max = ts
                wait = t0 + (sim_max - sim0) / speed - clock()
                while wait > 0 and not stop.is_set():
                    pub.producer.poll(min(wait, 0.1))  # serve delivery reports while waiting
                    wait = t0 + (sim_max - sim0) / speed - clock()
        pub.event(ev)
        if progress is not None and clock() >= next_progress:
            pub.report.seconds = clock() - t0
            progress(pub.report)
            next_progress = clock() + progress_every_s
    pub.flush()
    pub.report.seconds = clock() - t0
    log.info("publish.events published=%d seconds=%.2f speed=%g", pub.report.published, pub.report.seconds, speed)
    return pub.report
