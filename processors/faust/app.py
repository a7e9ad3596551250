"""The worker's topology: a Faust app whose agents move bytes between Kafka, the pure steps and ClickHouse.

Topology (all topics co-partitioned: same partition count N, keys hashed with murmur2; Faust's
assignor gives partition p of every topic to the same worker):

    <prefix>stagewatch.job-events   (key job_id)  -> job agent   -> table  <app>-jobs   (job's events)
    <prefix>stagewatch.file-events  (key file)    -> file agent  -> table  <app>-files  (file's events +
    <app>-output-links     (key parent file)      ->                 its outputs' (version, located))
    <app>-contributions    (key campaign|stage)   -> stage agent -> table  <app>-stage  (newest contribution
                                                                   per entity) -> StageCounters in memory

What each agent does with a batch is in processors/stream.py (pure, unit-tested); the package's other
modules: config.py (configuration, ports, exit codes), tables.py (table state on RocksDB or in memory),
batch_reader.py (bulk reads of an agent's channel), fetch_loop.py (the consumer fetch-loop fix).
Delivery guarantee: at-least-once (``processing_guarantee="at_least_once"``), made exactly-once *in the
numbers* by idempotent steps (see processors/stream.py). The order inside one batch is what makes
that hold:

1. take a batch of messages (they are "tracked": a rebalance or shutdown waits for them);
2. apply it: new table values held as pending, changelog records, contributions, links, rows;
3. write the rows to ClickHouse (the sink retries for as long as the server is down; in a thread, so
   Kafka heartbeats go on) and flush the Kafka producer (raises if any message failed);
4. write the pending table values (and the changelog offsets they reach) to the local table store;
5. only then ack the batch's messages, which lets Faust commit their offsets.

A crash anywhere before 5 leaves the offsets uncommitted: the batch is read again and re-applied,
which changes nothing that was already written. Any unexpected error in 2-4 therefore ends the
process at once (exit code 70) instead of letting a half-done batch be acked.

Every message the worker produces is bounded in size whatever the batch: contributions and links are
split into messages of at most ``max_message_bytes`` (processors.stream.split_*), dead letters are cut
(ingest.kafka_io.publish_dead_letter), and an entity value too large for one changelog record ends the
worker with a sentence (it cannot be stored; a larger message.max.bytes on the broker is the fix).

Throughput: agents read their channel's queue in bulk (batch_reader.py); side outputs (changelogs,
contributions, links, dead letters) go through a confluent-kafka producer (librdkafka, C) with explicit
partitions instead of Faust's per-message Python producer; Faust still owns the tables, their changelog
topics and their recovery; the fetch loop makes no task per message (fetch_loop.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ingest.kafka_io import (
    DeliveryError, KafkaError, SafeProducer, check_kafka, create_topics, partition_for_key,
    publish_dead_letter,
)
from processors.faust import config as _config
from processors.faust.batch_reader import BatchReader, raw_topic_class
from processors.faust.config import STOPPED_EXIT, Sink, WorkerConfig, WorkerError, WorkerPorts, fatal
from processors.faust.fetch_loop import install_fast_consumer
from processors.faust.memory import format_stats, memory_stats, release_free_memory, tune_malloc
from processors.faust.recovery_report import recovery_probe, report_stall_and_exit
from processors.faust.tables import ROCKSDB_OPTIONS, TableState, table_store_missing
from processors.recovery_watchdog import RecoveryProbe, RecoveryWatchdog
from processors.rows import dead_letter_row, raw_event_row
from processors.stream import (
    Link, StageAggregator, StepResult, apply_file_inputs, apply_job_events, decode_contribution_batch,
    decode_link_batch, entity_key, split_contribution_batch, split_links, stage_key,
)
from schemas.events import DeadLetter, FileEvent, InvalidEvent, JobEvent, decode_event, encode_event

log = logging.getLogger("stagewatch.worker")


def exit_now(code: int) -> None:
    """config.exit_now, looked up at call time (tests replace it)."""
    _config.exit_now(code)


@dataclass
class _Rejected:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes
    reason: str
    position: str | None = None  # None: "partition/offset" of the message


@dataclass
class AgentIO:
    """One agent's outputs: a Kafka producer, a ClickHouse sink, and a thread for the blocking parts."""

    name: str
    producer: SafeProducer
    sink: Sink
    executor: concurrent.futures.ThreadPoolExecutor
    processed: int = 0
    batches: int = 0
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class StreamWorker:
    """Builds the Faust app (topics, tables, agents, timers) for one worker process."""

    def __init__(self, cfg: WorkerConfig, ports: WorkerPorts) -> None:
        import faust

        missing = table_store_missing(cfg.table_store)
        if missing:
            raise WorkerError(missing)
        self.cfg = cfg
        self.ports = ports
        self.metrics = ports.metrics
        self.stopping = threading.Event()  # set on SIGTERM/SIGINT: interrupts the sinks' retry waits
        self.topics = cfg.topics
        self.partitions = self._prepare_topics()
        ports.check_store()  # fails at start, with a sentence, if ClickHouse is unreachable
        self.aggregator = StageAggregator()
        self._stage_partitions: set[int] = set()
        Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
        if cfg.fast_consumer:
            install_fast_consumer()

        self.app = app = faust.App(
            cfg.app_id,
            broker=f"kafka://{cfg.kafka}",
            store="rocksdb://" if cfg.table_store == "rocksdb" else "memory://",
            datadir=str(Path(cfg.workdir) / "faust"),
            topic_partitions=self.partitions,
            topic_replication_factor=cfg.replication_factor,
            key_serializer="raw",
            value_serializer="raw",
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            stream_buffer_maxsize=max(4096, 2 * cfg.batch_max),
            # aiokafka prefetches up to this much per assigned partition (Faust's default, 1 MiB, held ~40 MB
            # of fetched records over 8 partitions of 5 topics while running); Kafka still returns a larger
            # record whole, and 256 KiB a partition is ~1,000 events a fetch: more than an agent's share.
            consumer_max_fetch_size=256 * 1024,
            broker_commit_interval=1.0,
            # A killed worker's partitions move after this long (Faust's default, 60 s, is a minute of
            # standstill). Heartbeats run on the event loop, which sink waits never block (thread).
            broker_session_timeout=cfg.session_timeout_s,
            broker_heartbeat_interval=max(0.5, cfg.session_timeout_s / 10),
            web_enabled=cfg.web_port is not None,
            web_port=cfg.web_port or 6066,
            web_bind="127.0.0.1",
            worker_redirect_stdouts=False,
        )
        n = self.partitions
        Topic = raw_topic_class()
        job_topic = Topic(app, topics=[self.topics.job_events], key_type=bytes, value_type=bytes, partitions=n)
        file_topics = Topic(app, topics=[self.topics.file_events, cfg.links_topic], key_type=bytes, value_type=bytes,
                            partitions=n)
        contrib_topic = Topic(app, topics=[cfg.contributions_topic], key_type=bytes, value_type=bytes, partitions=n,
                              internal=True)
        kind = cfg.table_store

        def table(name: str, help: str) -> Any:
            # a fresh dict each: Faust's RocksDB store pops keys from the one it is given
            options = dict(ROCKSDB_OPTIONS) if kind == "rocksdb" else None
            return app.Table(name, key_type=bytes, value_type=bytes, partitions=n, help=help, options=options)

        self.jobs = TableState.for_table(table("jobs", "job: its events (JSON lines)"), cfg.changelog("jobs"), kind)
        self.files = TableState.for_table(table("files", "file: its events and its outputs' facts"),
                                          cfg.changelog("files"), kind)
        stage_table = table("stage", "stage|entity: the newest contribution")
        self.stage = TableState.for_table(stage_table, cfg.changelog("stage"), kind)
        self._table_of = {"jobs": self.jobs, "files": self.files, "stage": self.stage}
        self.recovered: dict[str, int] = {name: 0 for name in self._table_of}  # changelog records read back
        self._started_at = time.monotonic()
        for name, ts in self._table_of.items():
            self._count_recovery(name, ts.table)
        stage_table.on_recover(self._on_stage_recovered)
        app.on_partitions_revoked.connect(self._on_revoked)

        # One Kafka producer, ClickHouse connection and sink thread per agent (and one for the stage-row
        # timer), opened now: opening one later, during a ClickHouse outage, would fail instead of wait.
        self.io: dict[str, AgentIO] = {}
        self._memory_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory")
        self._memory_logs = 0
        for name in ("jobs", "files", "stage", "stage-rows"):
            self._agent_io(name)
        app.agent(job_topic, name="stagewatch.jobs")(self._job_agent)
        app.agent(file_topics, name="stagewatch.files")(self._file_agent)
        app.agent(contrib_topic, name="stagewatch.stage")(self._stage_agent)
        app.timer(cfg.stage_flush_s, name="stagewatch.stage_rows")(self._write_stage_rows)
        app.timer(5.0, name="stagewatch.lag")(self._update_lag)
        app.timer(cfg.memory_release_s, name="stagewatch.memory")(self._release_memory)

    # -- setup --------------------------------------------------------------------------------
    def _prepare_topics(self) -> int:
        """Check the event topics; create the internal ones with the same partition count."""
        cfg = self.cfg
        existing = check_kafka(cfg.kafka)
        missing = [t for t in (self.topics.job_events, self.topics.file_events) if t not in existing]
        if missing:
            raise WorkerError(f"Topic(s) {', '.join(missing)} do not exist on {cfg.kafka}; create them with "
                              f"`stagewatch topics create --kafka {cfg.kafka}"
                              + (f" --topic-prefix {cfg.topic_prefix}" if cfg.topic_prefix else "") + "`.")
        n_jobs, n_files = existing[self.topics.job_events], existing[self.topics.file_events]
        if n_jobs != n_files:
            raise WorkerError(f"{self.topics.job_events} has {n_jobs} partitions but {self.topics.file_events} has "
                              f"{n_files}; the worker needs both (and its internal topics) co-partitioned. "
                              f"Recreate them with the same --partitions.")
        for t in (cfg.contributions_topic, cfg.links_topic):
            if t in existing and existing[t] != n_jobs:
                raise WorkerError(f"Internal topic {t} has {existing[t]} partitions, the event topics {n_jobs}; "
                                  f"use another --app-id (or delete the {cfg.app_id}-* topics).")
        compact = {"cleanup.policy": "compact", "segment.ms": str(10 * 60 * 1000),
                   "min.cleanable.dirty.ratio": "0.2"}
        extra = {cfg.contributions_topic: {"retention.ms": str(7 * 24 * 3600 * 1000)},
                 cfg.links_topic: {"retention.ms": str(7 * 24 * 3600 * 1000)},
                 **{cfg.changelog(t): compact for t in ("jobs", "files", "stage")}}
        create_topics(cfg.kafka, n_jobs, cfg.replication_factor, topics=self.topics, extra=extra)
        log.info("worker.topics partitions=%d job_events=%s file_events=%s app_id=%s",
                 n_jobs, self.topics.job_events, self.topics.file_events, cfg.app_id)
        return n_jobs

    def _agent_io(self, name: str) -> AgentIO:
        io = self.io.get(name)
        if io is None:
            producer = SafeProducer(self.cfg.kafka, client_id=f"{self.cfg.app_id}-{name}", linger_ms=2,
                                    extra={"message.max.bytes": self.cfg.max_message_bytes + 100_000})
            producer.track_offsets({self.cfg.changelog(t) for t in ("jobs", "files", "stage")})
            sink = self.ports.new_sink(self.stopping)  # one store connection per agent
            io = self.io[name] = AgentIO(name, producer, sink, concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"sink-{name}"))
        return io

    # -- writing out a batch ---------------------------------------------------------------------
    async def _commit_effects(self, io: AgentIO, flush_sink: bool = True, table: TableState | None = None) -> None:
        """Make the batch's effects durable: ClickHouse rows (retrying while it is down), Kafka messages, and
        then (never before the changelog is acknowledged) the table's local state."""
        loop = asyncio.get_running_loop()

        def work() -> None:
            if flush_sink:
                io.sink.flush()  # retries forever on StoreError: nothing is dropped
            io.producer.flush(timeout_s=120.0)
            offsets = io.producer.take_offsets()
            if table is not None:
                table.commit({p: o for (t, p), o in offsets.items() if t == table.changelog})

        try:
            await loop.run_in_executor(io.executor, work)
        except DeliveryError as exc:
            fatal("agent=%s kafka_delivery_failed error=%s", io.name, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a non-retryable store error: do not ack
            self._exit_if_stopping(io, exc)
            fatal("agent=%s commit_failed error=%r", io.name, exc)

    def _exit_if_stopping(self, io: AgentIO, exc: Exception) -> None:
        """A stop request gave up a retrying write (StoreSink's `stop`): leave now, acking nothing.

        Faust's graceful shutdown would wait for this very batch; its offsets are not committed, so the
        next start reads it again (nothing is lost, nothing counts twice).
        """
        if self.stopping.is_set():
            log.warning("worker.stopped_during_write agent=%s error=%s action=exit code=%d (the batch is not "
                        "committed: it is processed again at the next start)", io.name, exc, STOPPED_EXIT)
            exit_now(STOPPED_EXIT)

    def request_stop(self, reason: str) -> None:
        """SIGTERM/SIGINT: sink writes that are retrying give up at once (see _exit_if_stopping)."""
        log.info("worker.stop_requested signal=%s", reason)
        self.stopping.set()

    def _reject(self, io: AgentIO, r: _Rejected) -> None:
        """A bad record: to the dead-letter topic (cut to a size Kafka accepts: raw_bytes/raw_truncated headers)
        and, with every byte, to the dead_letter table."""
        position = r.position or f"{r.partition}/{r.offset}"
        publish_dead_letter(io.producer, self.topics, r.raw, r.reason, r.topic, position, r.key)
        io.sink.add("dead_letter", dead_letter_row(DeadLetter(r.topic, position, r.reason, r.raw), time.time()))
        self.metrics.dead_letters.labels(r.topic).inc()
        log.warning("worker.dead_letter topic=%s position=%s reason=%s", r.topic, position, r.reason)

    def _decode(self, fev: Any, want: type) -> tuple[Any, _Rejected | None]:
        """Decode and check one event message: the contract, the topic, and that its key is its entity."""
        msg = fev.message
        raw = msg.value if isinstance(msg.value, (bytes, bytearray)) else (msg.value or b"")
        raw = bytes(raw)
        key = msg.key

        def rejected(reason: str) -> tuple[None, _Rejected]:
            return None, _Rejected(msg.topic, msg.partition, msg.offset, key, raw, reason)

        try:
            ev = decode_event(raw)
        except InvalidEvent as exc:
            return rejected(str(exc))
        except Exception as exc:  # decode_event should raise only InvalidEvent; one message must never stop us
            log.error("worker.decode_error topic=%s position=%s/%s error=%r", msg.topic, msg.partition, msg.offset,
                      exc)
            return rejected(f"could not be decoded ({type(exc).__name__}: {exc})")
        if not isinstance(ev, want):
            other = "job-event/1" if isinstance(ev, JobEvent) else "file-event/1"
            dest = self.topics.job_events if isinstance(ev, JobEvent) else self.topics.file_events
            return rejected(f"a {other} record on topic {msg.topic}; publish it to {dest}")
        entity = ev.entity
        if key is None or key != entity.encode():
            what = "job_id" if want is JobEvent else "file"
            return rejected(f"message key {key!r} is not the event's {what} {entity!r}; events must be keyed by "
                            f"{what} so that all events of one {what.replace('_id', '')} reach the same worker")
        return ev, None

    def _raw_rows(self, io: AgentIO, events: list[Any], origin: dict[int, Any], res: StepResult) -> None:
        """Raw rows of the batch's events except conflicting copies that lost, which are dead letters.

        A losing copy's row would replace the winner's (raw_events keeps the last row per event_id); a
        winner's row, written after the loser's, replaces it.
        """
        now = time.time()
        dropped: set[int] = set()
        for c in res.conflicts:
            dropped.add(id(c.dropped))
            fev = origin.get(id(c.dropped)) or origin.get(id(c.kept))  # the message that met the other copy
            msg = fev.message
            # keyed by the losing copy's content, not by the message that met it: a batch processed again
            # after a crash (or a re-publish) meets it at another offset and must not add a second row
            raw = bytes(msg.value) if origin.get(id(c.dropped)) is fev else encode_event(c.dropped)
            self._reject(io, _Rejected(msg.topic, msg.partition, msg.offset, msg.key, raw,
                                       f"{c.reason} (met at {msg.partition}/{msg.offset})", c.dead_letter_position))
        for ev in events:
            if id(ev) not in dropped:
                io.sink.add("raw_events", raw_event_row(ev, origin[id(ev)].message.topic, now))

    def _write_step(self, io: AgentIO, table: TableState, res: StepResult, partition_of: dict[str, int]) -> None:
        producer = io.producer
        limit = self.cfg.max_message_bytes
        for key, value in res.updates.items():
            self._put(io, table, key, value, partition_of[key])
        for cb in res.contribution_batches():
            key = stage_key(cb.campaign, cb.stage).encode()
            for data in split_contribution_batch(cb, limit - len(key)):
                producer.produce(self.cfg.contributions_topic, data, key)
        if res.links:
            by_partition: dict[int, list[Link]] = {}
            for link in res.links:
                by_partition.setdefault(partition_for_key(link.parent.encode(), self.partitions), []).append(link)
            for p, links in by_partition.items():
                for data in split_links(links, limit - 5):
                    producer.produce(self.cfg.links_topic, data, b"links", partition=p)
        for t, row in res.rows:
            io.sink.add(t, row)

    def _put(self, io: AgentIO, table: TableState, key: str, value: bytes, partition: int) -> None:
        """A table value and its changelog record; one that no Kafka message can hold stops the worker with a
        sentence (it cannot be made durable, and skipping it would lose the entity's events)."""
        if len(value) + len(key) > self.cfg.max_message_bytes:
            fatal("agent=%s table=%s key=%r value_bytes=%d over max_message_bytes=%d: one entity's state no longer "
                  "fits a Kafka message; raise message.max.bytes on the broker and --max-message-bytes", io.name,
                  table.changelog, key[:200], len(value), self.cfg.max_message_bytes)
        table.put(io.producer, key, value, partition)

    def _account(self, io: AgentIO, batch: list[Any], started: float) -> None:
        counts: dict[str, int] = {}
        for fev in batch:
            msg = fev.message
            counts[msg.topic] = counts.get(msg.topic, 0) + 1
            tp = (msg.topic, msg.partition)
            if msg.offset > io.last_offsets.get(tp, -1):
                io.last_offsets[tp] = msg.offset
        for topic, n in counts.items():
            self.metrics.events.labels(topic).inc(n)
        io.processed += len(batch)
        io.batches += 1
        dt = time.perf_counter() - started
        self.metrics.batch_seconds.labels(io.name).observe(dt)
        self.metrics.batch_size.labels(io.name).observe(len(batch))
        log.debug("worker.batch agent=%s messages=%d seconds=%.3f processed=%d", io.name, len(batch), dt,
                  io.processed)

    # -- agents ----------------------------------------------------------------------------------
    async def _run_agent(self, name: str, stream: Any, within_s: float,
                         process: Callable[[AgentIO, list[Any]], Any]) -> None:
        io = self._agent_io(name)
        reader = BatchReader(self.app, stream, self.cfg.batch_max, within_s)
        log.info("worker.agent_started agent=%s batch_max=%d within_s=%.2f", name, self.cfg.batch_max, within_s)
        while True:
            batch = await reader.next_batch()
            if batch is None:
                log.info("worker.agent_stopped agent=%s processed=%d batches=%d", name, io.processed, io.batches)
                return
            t0 = time.perf_counter()
            try:
                flush_sink = process(io, batch)
            except Exception as exc:
                fatal("agent=%s process_failed messages=%d error=%r", name, len(batch), exc)
            await self._commit_effects(io, flush_sink=bool(flush_sink), table=self._table_of.get(name))
            BatchReader.ack(batch)
            self._account(io, batch, t0)

    async def _job_agent(self, stream: Any) -> None:
        await self._run_agent("jobs", stream, self.cfg.batch_within_s, self._process_jobs)

    async def _file_agent(self, stream: Any) -> None:
        await self._run_agent("files", stream, self.cfg.batch_within_s, self._process_files)

    async def _stage_agent(self, stream: Any) -> None:
        await self._run_agent("stage", stream, min(self.cfg.batch_within_s, 0.2), self._process_contributions)

    def _process_jobs(self, io: AgentIO, batch: list[Any]) -> bool:
        events: list[JobEvent] = []
        origin: dict[int, Any] = {}  # id(event) -> its message
        partition_of: dict[str, int] = {}
        for fev in batch:
            ev, bad = self._decode(fev, JobEvent)
            if bad is not None:
                self._reject(io, bad)
                continue
            events.append(ev)
            origin[id(ev)] = fev
            partition_of[entity_key(ev.campaign, ev.stage, ev.job_id)] = fev.message.partition
        res = apply_job_events(self.jobs.view(partition_of), events)
        self._raw_rows(io, events, origin, res)
        self._write_step(io, self.jobs, res, partition_of)
        if res.duplicates:
            self.metrics.duplicates.labels(self.topics.job_events).inc(res.duplicates)
        return True

    def _process_files(self, io: AgentIO, batch: list[Any]) -> bool:
        events: list[FileEvent] = []
        origin: dict[int, Any] = {}
        links: list[Link] = []
        partition_of: dict[str, int] = {}
        links_topic = self.cfg.links_topic
        for fev in batch:
            msg = fev.message
            if msg.topic == links_topic:
                for link in decode_link_batch(msg.value).links:
                    links.append(link)
                    partition_of[entity_key(link.campaign, link.stage, link.parent)] = msg.partition
                continue
            ev, bad = self._decode(fev, FileEvent)
            if bad is not None:
                self._reject(io, bad)
                continue
            events.append(ev)
            origin[id(ev)] = fev
            partition_of[entity_key(ev.campaign, ev.stage, ev.file)] = msg.partition
        res = apply_file_inputs(self.files.view(partition_of), events, links)
        self._raw_rows(io, events, origin, res)
        self._write_step(io, self.files, res, partition_of)
        if res.duplicates:
            self.metrics.duplicates.labels(self.topics.file_events).inc(res.duplicates)
        return True

    def _process_contributions(self, io: AgentIO, batch: list[Any]) -> bool:
        agg = self.aggregator
        applied = stale = 0
        for fev in batch:
            msg = fev.message
            self._stage_partitions.add(msg.partition)
            cb = decode_contribution_batch(msg.value)
            updates = agg.apply(cb)
            applied += len(updates)
            stale += len(cb.items) - len(updates)
            for key, value in updates.items():
                self._put(io, self.stage, key, value, msg.partition)
        self.metrics.contributions.labels("applied").inc(applied)
        self.metrics.contributions.labels("stale").inc(stale)
        return False  # stage rows are written by the timer; only the changelog must be durable before ack

    # -- stage rows, recovery, rebalance -----------------------------------------------------------
    async def _write_stage_rows(self) -> None:
        rows = self.aggregator.take_dirty_rows()
        if not rows:
            return
        io = self._agent_io("stage-rows")
        for row in rows:
            io.sink.add("stage_numbers", row)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(io.executor, io.sink.flush)
        except Exception as exc:
            self._exit_if_stopping(io, exc)
            fatal("agent=stage-rows sink_failed error=%r", exc)
        log.info("worker.stage_rows stages=%d events=%s", len(rows), ",".join(str(r["events"]) for r in rows))

    def _assigned_partitions(self, topic: str) -> set[int]:
        try:
            return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}
        except Exception:
            return set()

    def _count_recovery(self, name: str, table: Any) -> None:
        """Count the changelog records Faust's recovery applies to ``table`` (how much a restart read back)."""
        apply = table.apply_changelog_batch
        counter = self.metrics.recovered.labels(name) if hasattr(self.metrics, "recovered") else None

        def counted(batch: Any) -> None:
            n = len(batch)
            self.recovered[name] += n
            if counter is not None:
                counter.inc(n)
            apply(batch)

        table.apply_changelog_batch = counted

    async def _on_stage_recovered(self) -> None:
        """After every recovery: rebuild the stage counters from the stage table (the durable truth)."""
        parts = self._assigned_partitions(self.cfg.contributions_topic)
        t0 = time.perf_counter()
        n = self.aggregator.load(self.stage.values_in(parts))
        log.info("worker.stage_rebuilt partitions=%s entities=%d stages=%d seconds=%.3f",
                 sorted(parts), n, len(self.aggregator.stages), time.perf_counter() - t0)
        log.info("worker.recovered table_store=%s changelog_records_read=%s seconds_since_start=%.2f",
                 self.cfg.table_store, ",".join(f"{k}:{v}" for k, v in self.recovered.items()),
                 time.monotonic() - self._started_at)

    async def _on_revoked(self, sender: Any = None, revoked: Any = None, **kwargs: Any) -> None:
        """Stop writing rows for stages this worker may no longer own; recovery rebuilds what it keeps."""
        self.aggregator.clear()
        log.info("worker.partitions_revoked count=%d", len(revoked or ()))

    async def _update_lag(self) -> None:
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:
            return
        committed = getattr(consumer, "_committed_offset", {})
        last: dict[tuple[str, int], int] = {}
        for io in self.io.values():
            last.update(io.last_offsets)
        self.metrics.lag.clear()
        for tp in assignment:
            if tp.topic.endswith("-changelog") or "__assignor" in tp.topic:
                continue
            try:
                hw = consumer.highwater(tp)
            except Exception:
                continue
            if hw is None:
                continue
            done = last.get((tp.topic, tp.partition))
            # next offset to process: after the last one processed here, else the group's committed one
            nxt = done + 1 if done is not None else (committed.get(tp) or 0)
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - nxt))

    async def _release_memory(self) -> None:
        """Give back what the allocator keeps free after batches (processors/faust/memory.py says why), in a
        thread of its own: malloc_trim walks the heaps for tens of ms and releases the GIL meanwhile."""
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        await loop.run_in_executor(self._memory_executor, release_free_memory)
        self._memory_logs += 1
        if self._memory_logs % 6 == 1:  # every minute with the default interval: where the memory is
            log.info("worker.memory %s trim_s=%.3f aggregator_entities=%d", format_stats(memory_stats()),
                     time.perf_counter() - t0, sum(len(st.entities) for st in self.aggregator.stages.values()))

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGTERM/SIGINT (graceful: in-flight batches finish, offsets are committed)."""
        import faust

        if self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_port, self.cfg.metrics_addr)
            log.info("worker.metrics url=http://%s:%d/metrics", self.cfg.metrics_addr, self.cfg.metrics_port)
        tune_malloc()
        # Batches allocate hundreds of thousands of short-lived objects; with CPython's default
        # thresholds the collector also re-scans the long-lived stage state over and over.
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        watchdog = RecoveryWatchdog(self._recovery_probe, self._on_recovery_stalled,
                                    timeout_s=self.cfg.recovery_stall_timeout_s)
        watchdog.start()
        request_stop = self.request_stop

        class Worker(faust.Worker):  # type: ignore[misc]
            def _schedule_shutdown(self, signal: Any) -> None:  # mode's SIGTERM/SIGINT handlers call this
                request_stop(getattr(signal, "name", str(signal)))
                super()._schedule_shutdown(signal)

        worker = Worker(self.app, loglevel=self.cfg.log_level, quiet=True, workdir=self.cfg.workdir,
                        redirect_stdouts=False)
        try:
            worker.execute_from_commandline()
        finally:
            watchdog.stop()

    # -- recovery watchdog (processors/recovery_watchdog.py says why; the report: recovery_report.py) --
    def _recovery_probe(self) -> RecoveryProbe:
        return recovery_probe(self.app)

    def _on_recovery_stalled(self, stalled_for: float) -> None:
        """Log what the recovery and the consumer look like, then exit for the supervisor to restart us."""
        report_stall_and_exit(self.app, stalled_for)


def run_worker(cfg: WorkerConfig, ports: WorkerPorts | None = None) -> None:
    """Start a worker process (blocks); ``ports`` (default ``cfg.ports``) come from the CLI edge."""
    ports = ports or cfg.ports
    if ports is None:
        raise WorkerError("The worker was started without its store and metrics (WorkerPorts); start it with "
                          "`stagewatch worker`.")
    if not cfg.store_url.startswith(("clickhouse://", "clickhouse+native://")):
        raise WorkerError(f"The worker writes to a ClickHouse server; pass --store clickhouse://user:pass@host:port/db "
                          f"(got {cfg.store_url.split('@')[-1]!r}; chdb: stores are for the embedded replay).")
    try:
        worker = StreamWorker(cfg, ports)
    except KafkaError as exc:
        raise WorkerError(str(exc)) from exc
    worker.run()