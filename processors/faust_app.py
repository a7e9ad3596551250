"""The faust-streaming worker: Kafka topics in, ClickHouse tables out, numbers equal to the embedded replay.

Topology (all topics co-partitioned: same partition count N, keys hashed with murmur2; Faust's
assignor gives partition p of every topic to the same worker):

    <prefix>stagewatch.job-events   (key job_id)  -> job agent   -> table  <app>-jobs   (job's events)
    <prefix>stagewatch.file-events  (key file)    -> file agent  -> table  <app>-files  (file's events +
    <app>-output-links     (key parent file)      ->                 its outputs' (version, located))
    <app>-contributions    (key campaign|stage)   -> stage agent -> table  <app>-stage  (newest contribution
                                                                   per entity) -> StageCounters in memory

What each agent does with a batch is in processors/stream.py (pure, unit-tested); this module moves
bytes. Delivery guarantee: at-least-once (``processing_guarantee="at_least_once"``, never
``exactly_once``), made exactly-once *in the numbers* by idempotent steps (see processors/stream.py).
The order inside one batch is what makes that hold:

1. take a batch of messages (they are "tracked": a rebalance or shutdown waits for them);
2. apply it: table entries in memory, changelog records, contributions, links, rows;
3. write the rows to ClickHouse (StoreSink, retrying for as long as the server is down; in a thread,
   so Kafka heartbeats go on) and flush the Kafka producer (raises if any message failed);
4. only then ack the batch's messages, which lets Faust commit their offsets.

A crash anywhere before 4 leaves the offsets uncommitted: the batch is read again and re-applied,
which changes nothing that was already written. Any unexpected error in 2-3 therefore ends the
process at once (exit code 70) instead of letting a half-done batch be acked.

Throughput. Faust's per-message stream machinery (Stream.__aiter__ / take(), two asyncio tasks per
message in the consumer's fetch loop) costs 70-100 us per message on the 2-core machine this was
built on, which caps a worker near 10,000 messages/s *before* any work. So:

* agents read their channel's queue in bulk (``BatchReader``, the same generation/flow-control checks
  and ack tracking as ``Stream.take_events``) instead of iterating the stream per message;
* side outputs (changelogs, contributions, links, dead letters) go through a confluent-kafka
  producer (librdkafka, C) with explicit partitions instead of Faust's per-message Python producer
  buffer; Faust still owns the tables, their changelog topics and their recovery;
* contributions and links are sent as one message per stage / partition per batch (msgpack);
* ``install_fast_consumer`` (on by default, ``--no-fast-consumer`` to disable) replaces Faust
  0.15.3's consumer fetch loop with one that calls the message callback directly while the flow is
  not suspended (the stock loop wraps every message in ``wait_first``, i.e. two tasks). It applies
  only to the Faust version it was written against.

Memory tables (``store="memory://"``) recover from their compacted changelog topics when a worker
starts or is assigned a partition; the StageCounters are rebuilt from the stage table after every
recovery, never persisted on their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Mapping

from ingest.kafka_io import (
    DeliveryError, KafkaError, SafeProducer, Topics, check_kafka, create_topics, dead_letter_headers,
    partition_for_key,
)
from processors.recovery_watchdog import RESTART_EXIT, RecoveryProbe, RecoveryWatchdog
from processors.rows import dead_letter_row, raw_event_row
from processors.stream import (
    Link, LinkBatch, StageAggregator, StepResult, apply_file_inputs, apply_job_events, decode_contribution_batch,
    decode_link_batch, encode_message, entity_key, stage_key,
)
from schemas.events import DeadLetter, FileEvent, InvalidEvent, JobEvent, decode_event, encode_event
from stagewatch.metrics import WorkerMetrics
from stagewatch.sink import StoreSink

log = logging.getLogger("stagewatch.worker")

FATAL_EXIT = 70  # EX_SOFTWARE: the batch was not acked; a restart re-processes it
STOPPED_EXIT = 0  # asked to stop (SIGTERM/SIGINT) while a write was retrying: the batch was not acked


@dataclass
class WorkerConfig:
    """Everything a worker needs; the CLI fills it from options and environment."""

    kafka: str
    store_url: str
    app_id: str = "stagewatch"
    topic_prefix: str = ""
    workdir: str = ".stagewatch-worker"
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    web_port: int | None = None
    batch_max: int = 5000
    batch_within_s: float = 0.5
    stage_flush_s: float = 1.0
    replication_factor: int = 1
    session_timeout_s: float = 10.0
    fast_consumer: bool = True
    log_level: str = "info"
    recovery_stall_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        # faust.Worker chdirs into the workdir before the app opens its datadir: a relative path would
        # then name a directory inside itself (FileNotFoundError at start with the default workdir).
        self.workdir = str(Path(self.workdir).expanduser().resolve())

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def contributions_topic(self) -> str:
        return f"{self.app_id}-contributions"

    @property
    def links_topic(self) -> str:
        return f"{self.app_id}-output-links"

    def changelog(self, table: str) -> str:
        """Faust's name for a table's changelog topic."""
        return f"{self.app_id}-{table}-changelog"


class WorkerError(RuntimeError):
    """The worker cannot start; the message says what to do."""


def fatal(message: str, *args: Any) -> None:
    """End the process now, without acking anything: the unfinished batch is re-processed on restart."""
    log.critical("worker.fatal " + message + " action=exit code=%d (offsets of the batch are not committed)",
                 *args, FATAL_EXIT)
    exit_now(FATAL_EXIT)


def exit_now(code: int) -> None:
    """Flush the log and end the process at once: no shutdown path that could ack or commit anything."""
    for h in logging.getLogger().handlers:
        try:
            h.flush()
        except Exception:
            pass
    sys.stderr.flush()
    os._exit(code)


# ------------------------------------------------------------------------------------------------ Faust glue

class _Resume:
    """An awaitable that finishes a coroutine which was started by hand and is suspended on ``first``.

    Lets the fetch loop run a delivery synchronously when it completes without waiting (no task), and
    hand it to ``wait_first`` (a task, cancellable by a rebalance) only when it does have to wait.
    Exceptions thrown in (cancellation) are delivered to the coroutine at its suspension point.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Any:
        coro, fut = self.coro, self.first
        while True:
            try:
                yield fut
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    fut = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    fut = coro.send(None)
                except StopIteration as stop:
                    return stop.value


def install_fast_consumer() -> bool:
    """Replace Faust 0.15.3's consumer fetch loop with one that does not spawn two tasks per message.

    The stock loop runs ``await wait_first(callback(message), suspend_flow.wait())`` for every message
    so that a rebalance can interrupt a delivery (two tasks per message). This version starts the
    delivery by hand; when it completes without waiting (the flow is running and the agent's queue has
    room: nearly always) no task is made at all, and when it has to wait it continues under exactly the
    stock ``wait_first``, so a rebalance still interrupts it. (Awaiting it directly instead deadlocks:
    a put into a full queue parked across a rebalance then waits for the flow to resume, which waits for
    table recovery, which waits for this loop.) Returns False (and changes nothing) on any other Faust
    version.

    It also closes a race that loses messages after a rebalance (stock Faust has it too): recovery
    resumes the stream partitions and *then* seeks them back to their committed offsets. Records
    fetched in between, from the position the consumer had reached before the rebalance, could be
    delivered after the seek had reset the read offset; they moved the read offset past the committed
    one, so the re-fetched messages in between were dropped as already read (and registered as an
    offset gap that a commit skips). Seen as a few lost file events when a second worker joined. Here
    every ``perform_seek`` bumps an epoch; records of a fetch that a seek overlapped are discarded and
    their partitions sought again (``_reseek``), so they are read afresh.
    """
    import faust
    from faust.transport.consumer import Consumer

    if getattr(Consumer, "_stagewatch_fast", False):
        return True
    if faust.__version__ != "0.15.3":
        log.warning("worker.fast_consumer skipped=true faust_version=%s (written for 0.15.3)", faust.__version__)
        return False

    async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - runs inside Faust
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        from faust.transport.consumer import CONSUMER_FETCHING

        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set
        yield_every = 1000
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                epoch = self._stagewatch_seek_epoch  # records fetched from here on predate any later seek
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                stale_tps: set[Any] = set()
                if not self.should_stop:
                    async for tp, message in ait:
                        if stale_tps or self._stagewatch_seek_epoch != epoch:
                            stale_tps.add(tp)  # a seek ran while these were fetched or delivered: drop them
                            continue
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                coro = callback(message)
                                try:
                                    first = coro.send(None)
                                except StopIteration:
                                    pass  # delivered without waiting: the common case, no task needed
                                else:
                                    # The delivery must wait (full queue, flow being stopped): from here
                                    # on it is interruptible by a rebalance, as in the stock loop.
                                    await self.wait_first(_Resume(coro, first), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    if stale_tps:
                        await _reseek(self, stale_tps)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _reseek(self: Any, tps: set[Any]) -> None:  # pragma: no cover - runs inside Faust
        """Put partitions whose fetched records were dropped back where their unprocessed messages start.

        That is the committed offset; a partition with none (nothing committed yet, or 0, which
        aiokafka's seek_to_committed leaves alone) goes back to its beginning, as the worker's
        ``auto_offset_reset="earliest"`` would place it. Re-reading is harmless: every step is idempotent.
        """
        log.info("worker.fetch_discarded reason=seek_during_fetch partitions=%s action=seek_to_committed",
                 ",".join(sorted(f"{tp.topic}/{tp.partition}" for tp in tps)))
        try:
            await self.perform_seek()
            rewind = [tp for tp in tps if not self._committed_offset.get(tp)]
            if rewind:
                # an explicit seek, not seek_to_beginning: that leaves the position unset until a broker
                # answers, and Faust's livelock detector asserts on an unset position meanwhile
                earliest = await self.earliest_offsets(*rewind)
                for tp in rewind:
                    await self.seek(tp, earliest.get(tp) or 0)
                    self._read_offset[tp] = None
        except Exception as exc:  # a rebalance under way: it seeks to committed offsets itself
            log.warning("worker.reseek_failed error=%r", exc)

    perform_seek = Consumer.perform_seek

    async def _perform_seek(self: Any) -> None:  # pragma: no cover - runs inside Faust
        self._stagewatch_seek_epoch += 1
        try:
            await perform_seek(self)
        finally:
            self._stagewatch_seek_epoch += 1

    Consumer._stagewatch_seek_epoch = 0  # type: ignore[attr-defined]
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    Consumer._stagewatch_fast = True  # type: ignore[attr-defined]
    log.info("worker.fast_consumer installed=true faust_version=%s", faust.__version__)
    return True


def raw_topic_class() -> type:
    """A faust Topic whose messages reach the agent as bytes, without a codec lookup per message.

    The worker decodes (and validates) message values itself with msgspec; Faust's serializer
    machinery (``raw`` codec included) costs several microseconds per message for nothing.
    """
    import faust
    from faust.events import Event

    class RawTopic(faust.Topic):  # type: ignore[misc]
        async def decode(self, message: Any, *, propagate: bool = False) -> Any:
            return Event(self.app, message.key, message.value, message.headers, message)

    return RawTopic


class BatchReader:
    """Batches of events from an agent's channel, read from its queue in bulk.

    Mirrors what ``Stream.take_events`` guarantees: events of an older consumer generation (from
    before a rebalance) or arriving while the flow is stopped are dropped, not processed; every
    taken message is tracked, so a rebalance or shutdown waits until it is acked; and nothing is
    acked here - the caller acks a batch after its effects are durable (``ack``).
    """

    def __init__(self, app: Any, stream: Any, max_n: int, within_s: float) -> None:
        self.app = app
        self.channel = aiter(stream.channel)  # registers the iterator with the conductor
        self.queue = self.channel.queue
        self.max_n = max_n
        self.within_s = within_s
        self.skipped = 0

    async def next_batch(self) -> list[Any] | None:
        """The next non-empty batch, or None when Faust stops the channel (worker shutdown).

        On shutdown Faust throws StopAsyncIteration into the channel; messages collected but not yet
        returned are neither tracked nor acked, so they are simply read again after a restart.
        """
        q = self.queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                batch = [await q.get()]
                deadline = loop.time() + self.within_s
                while len(batch) < self.max_n:
                    while not q.empty() and len(batch) < self.max_n:
                        batch.append(q.get_nowait())
                    remaining = deadline - loop.time()
                    if len(batch) >= self.max_n or remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(q.get(), remaining))
                    except asyncio.TimeoutError:
                        break
                kept = self._filter(batch)
                if kept:
                    return kept
        except StopAsyncIteration:
            return None

    def _filter(self, batch: list[Any]) -> list[Any]:
        app = self.app
        gen = app.consumer_generation_id
        active = app.flow_control.is_active()
        unacked_add = app.consumer._unacked_messages.add
        kept = []
        for ev in batch:
            msg = ev.message
            if not active or msg.generation_id != gen:
                self.skipped += 1  # a pre-rebalance delivery: its partition is re-read from the commit
                continue
            if not msg.tracked:
                msg.tracked = True
                unacked_add(msg)  # Consumer.track_message without its per-message sensor calls
            kept.append(ev)
        if len(kept) != len(batch):
            log.info("worker.batch_skipped stale_events=%d generation=%s flow_active=%s",
                     len(batch) - len(kept), gen, active)
        return kept

    @staticmethod
    def ack(batch: Iterable[Any]) -> None:
        for ev in batch:
            ev.ack()

    async def __aiter__(self) -> AsyncIterator[list[Any]]:  # pragma: no cover - convenience
        while (batch := await self.next_batch()) is not None:
            yield batch


class TableState:
    """A Faust memory table used as bytes storage: reads for the steps, writes with our own changelog record.

    Writing ``table[key] = value`` would send the changelog record through Faust's per-message
    producer buffer, to the partition of "the current event" (ambiguous in a batch). Here the value goes
    into the table's store and, through the batch's confluent producer, to the changelog partition of
    the message that changed it; ``_key_partition`` is what the memory store uses to drop the keys of
    partitions this worker no longer owns after a rebalance.
    """

    def __init__(self, table: Any, changelog: str) -> None:
        self.table = table
        self.changelog = changelog

    @property
    def _store(self) -> Any:
        return self.table.data

    def view(self) -> Mapping[str, bytes]:
        return _StrKeyView(self._store.data)

    def put(self, producer: SafeProducer, key: str, value: bytes, partition: int) -> None:
        kb = key.encode()
        store = self._store
        store.data[kb] = value
        store._key_partition[kb] = partition
        producer.produce(self.changelog, value, kb, partition=partition)

    def values_in(self, partitions: set[int]) -> list[bytes]:
        store = self._store
        kp = store._key_partition
        return [v for k, v in store.data.items() if kp.get(k) in partitions]

    def __len__(self) -> int:
        return len(self._store.data)


class _StrKeyView(Mapping[str, bytes]):
    """The store's bytes-keyed dict seen with str keys (what processors.stream uses)."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self._d = data

    def __getitem__(self, key: str) -> bytes:
        return self._d[key.encode()]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._d.get(key.encode(), default)

    def __iter__(self) -> Any:
        return (k.decode() for k in self._d)

    def __len__(self) -> int:
        return len(self._d)


# ------------------------------------------------------------------------------------------------ the worker

@dataclass
class _Rejected:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes
    reason: str


@dataclass
class AgentIO:
    """One agent's outputs: a Kafka producer, a ClickHouse sink, and a thread for the blocking parts."""

    name: str
    producer: SafeProducer
    sink: StoreSink
    executor: concurrent.futures.ThreadPoolExecutor
    processed: int = 0
    batches: int = 0
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class StreamWorker:
    """Builds the Faust app (topics, tables, agents, timers) for one worker process."""

    def __init__(self, cfg: WorkerConfig, *, store_factory: Callable[..., Any] | None = None) -> None:
        import faust

        self.cfg = cfg
        self.metrics = WorkerMetrics()
        self.stopping = threading.Event()  # set on SIGTERM/SIGINT: interrupts the sinks' retry waits
        self.topics = cfg.topics
        self.partitions = self._prepare_topics()
        if store_factory is None:
            from stagewatch.store import open_store

            def store_factory(create: bool = False) -> Any:
                return open_store(cfg.store_url, create=create)
        self._store_factory = store_factory
        self._check_store()
        self.aggregator = StageAggregator()
        self._stage_partitions: set[int] = set()
        Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
        if cfg.fast_consumer:
            install_fast_consumer()

        self.app = app = faust.App(
            cfg.app_id,
            broker=f"kafka://{cfg.kafka}",
            store="memory://",
            datadir=str(Path(cfg.workdir) / "faust"),
            topic_partitions=self.partitions,
            topic_replication_factor=cfg.replication_factor,
            key_serializer="raw",
            value_serializer="raw",
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            stream_buffer_maxsize=max(4096, 2 * cfg.batch_max),
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
        self.jobs = TableState(app.Table("jobs", key_type=bytes, value_type=bytes, partitions=n,
                                         help="job: its events (JSON lines)"), cfg.changelog("jobs"))
        self.files = TableState(app.Table("files", key_type=bytes, value_type=bytes, partitions=n,
                                          help="file: its events and its outputs' facts"), cfg.changelog("files"))
        stage_table = app.Table("stage", key_type=bytes, value_type=bytes, partitions=n,
                                help="stage|entity: the newest contribution")
        self.stage = TableState(stage_table, cfg.changelog("stage"))
        stage_table.on_recover(self._on_stage_recovered)
        app.on_partitions_revoked.connect(self._on_revoked)

        # One Kafka producer, ClickHouse connection and sink thread per agent (and one for the stage-row
        # timer), opened now: opening one later, during a ClickHouse outage, would fail instead of wait.
        self.io: dict[str, AgentIO] = {}
        for name in ("jobs", "files", "stage", "stage-rows"):
            self._agent_io(name)
        app.agent(job_topic, name="stagewatch.jobs")(self._job_agent)
        app.agent(file_topics, name="stagewatch.files")(self._file_agent)
        app.agent(contrib_topic, name="stagewatch.stage")(self._stage_agent)
        app.timer(cfg.stage_flush_s, name="stagewatch.stage_rows")(self._write_stage_rows)
        app.timer(5.0, name="stagewatch.lag")(self._update_lag)

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

    def _check_store(self) -> None:
        """Fail at start, with the store's own message, if ClickHouse is unreachable or refuses the schema."""
        from stagewatch.store import StoreError

        for attempt in range(1, 6):
            try:
                self._store_factory(create=True).close()
                return
            except StoreError as exc:
                # ensure_schema re-creates the verify views (DROP + CREATE): two workers starting at the
                # same moment can collide on "already exists"; the next attempt finds them in place.
                if "already exists" in str(exc) and attempt < 5:
                    log.info("worker.schema_retry attempt=%d reason=concurrent_schema_creation", attempt)
                    time.sleep(0.3 * attempt)
                    continue
                raise WorkerError(f"{exc} Start it with `stagewatch dev up` or pass --store.") from exc
            except Exception as exc:
                raise WorkerError(f"Cannot reach the store {self.cfg.store_url.split('@')[-1]}: {exc}. Start it "
                                  f"with `stagewatch dev up` or pass --store.") from exc

    def _agent_io(self, name: str) -> AgentIO:
        io = self.io.get(name)
        if io is None:
            store = self._store_factory(create=False)  # the schema was ensured once, in _check_store
            producer = SafeProducer(self.cfg.kafka, client_id=f"{self.cfg.app_id}-{name}", linger_ms=2)
            sink = StoreSink(store, retry_for_s=float("inf"), on_flush=self.metrics.on_sink_flush, stop=self.stopping)
            io = self.io[name] = AgentIO(name, producer, sink, concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"sink-{name}"))
        return io

    # -- writing out a batch ---------------------------------------------------------------------
    async def _commit_effects(self, io: AgentIO, flush_sink: bool = True) -> None:
        """Make the batch's effects durable: ClickHouse rows (retrying while it is down), Kafka messages."""
        loop = asyncio.get_running_loop()

        def work() -> None:
            if flush_sink:
                io.sink.flush()  # retries forever on StoreError: nothing is dropped
            io.producer.flush(timeout_s=120.0)

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
        position = f"{r.partition}/{r.offset}"
        io.producer.produce(self.topics.dead_letter, r.raw, r.key,
                            headers=dead_letter_headers(r.reason, r.topic, position))
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
            raw = bytes(msg.value) if origin.get(id(c.dropped)) is fev else encode_event(c.dropped)
            self._reject(io, _Rejected(msg.topic, msg.partition, msg.offset, msg.key, raw, c.reason))
        for ev in events:
            if id(ev) not in dropped:
                io.sink.add("raw_events", raw_event_row(ev, origin[id(ev)].message.topic, now))

    def _write_step(self, io: AgentIO, table: TableState, res: StepResult, partition_of: dict[str, int]) -> None:
        producer = io.producer
        for key, value in res.updates.items():
            table.put(producer, key, value, partition_of[key])
        for cb in res.contribution_batches():
            producer.produce(self.cfg.contributions_topic, encode_message(cb), stage_key(cb.campaign, cb.stage).encode())
        if res.links:
            by_partition: dict[int, list[Link]] = {}
            for link in res.links:
                by_partition.setdefault(partition_for_key(link.parent.encode(), self.partitions), []).append(link)
            for p, links in by_partition.items():
                producer.produce(self.cfg.links_topic, encode_message(LinkBatch(links)), b"links", partition=p)
        for t, row in res.rows:
            io.sink.add(t, row)

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
            await self._commit_effects(io, flush_sink=bool(flush_sink))
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
        res = apply_job_events(self.jobs.view(), events)
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
        res = apply_file_inputs(self.files.view(), events, links)
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
                self.stage.put(io.producer, key, value, msg.partition)
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

    async def _on_stage_recovered(self) -> None:
        """After every recovery: rebuild the stage counters from the stage table (the durable truth)."""
        parts = self._assigned_partitions(self.cfg.contributions_topic)
        t0 = time.perf_counter()
        n = self.aggregator.load(self.stage.values_in(parts))
        log.info("worker.stage_rebuilt partitions=%s entities=%d stages=%d seconds=%.3f",
                 sorted(parts), n, len(self.aggregator.stages), time.perf_counter() - t0)

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

    # -- running -----------------------------------------------------------------------------------
    def run(self) -> None:
        """Run until SIGTERM/SIGINT (graceful: in-flight batches finish, offsets are committed)."""
        import faust

        if self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_port, self.cfg.metrics_addr)
            log.info("worker.metrics url=http://%s:%d/metrics", self.cfg.metrics_addr, self.cfg.metrics_port)
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

    # -- recovery watchdog (processors/recovery_watchdog.py says why) ------------------------------
    def _recovery_probe(self) -> RecoveryProbe:
        rec = self.app.tables.recovery
        if not rec.in_recovery:
            return RecoveryProbe(False, None)
        offsets = tuple(sorted((tp.topic, tp.partition, o) for tp, o in dict(rec.active_offsets).items()))
        return RecoveryProbe(True, (rec._recovery_started_at, offsets))

    def _on_recovery_stalled(self, stalled_for: float) -> None:
        """Log what the recovery and the consumer look like, then exit for the supervisor to restart us."""
        try:
            rec = self.app.tables.recovery
            consumer = self.app.consumer
            read_offset = dict(getattr(consumer, "_read_offset", {}))
            assignment = None
            try:
                aio = consumer._thread._ensure_consumer()
                assignment = aio._subscription.subscription.assignment
            except Exception:
                pass
            fetcher = self.app._fetcher
            for tp, hw in sorted(dict(rec.active_highwaters).items()):
                off = rec.active_offsets.get(tp)
                if hw is None or (off is not None and off >= hw):
                    continue
                state = None
                if assignment is not None:
                    try:
                        from aiokafka import TopicPartition

                        state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
                    except Exception:
                        state = None
                log.error("worker.recovery_stalled_partition topic=%s partition=%d applied_offset=%s highwater=%s "
                          "read_offset=%s fetch_position=%s fetch_status=%s fetch_highwater=%s last_fetch_ms=%s "
                          "paused=%s", tp.topic, tp.partition, off, hw, read_offset.get(tp),
                          getattr(state, "_position", None), getattr(state, "_status", None),
                          getattr(state, "highwater", None), getattr(state, "timestamp", None),
                          getattr(state, "paused", None))
            log.error("worker.recovery_stalled seconds=%.0f fetcher_started=%s fetcher_stopped=%s flow_active=%s "
                      "app_rebalancing=%s", stalled_for, fetcher._started.is_set(), fetcher._stopped.is_set(),
                      self.app.flow_control.is_active(), self.app.rebalancing)
        except Exception as exc:
            log.error("worker.recovery_stalled seconds=%.0f diagnostics_failed=%r", stalled_for, exc)
        log.critical("worker.restart reason=recovery_stalled seconds=%.0f action=exit code=%d (nothing is lost: "
                     "unfinished batches are not committed; the supervisor starts the worker again)",
                     stalled_for, RESTART_EXIT)
        exit_now(RESTART_EXIT)


def run_worker(cfg: WorkerConfig) -> None:
    """Start a worker process (blocks)."""
    if not cfg.store_url.startswith(("clickhouse://", "clickhouse+native://")):
        raise WorkerError(f"The worker writes to a ClickHouse server; pass --store clickhouse://user:pass@host:port/db "
                          f"(got {cfg.store_url.split('@')[-1]!r}; chdb: stores are for the embedded replay).")
    try:
        worker = StreamWorker(cfg)
    except KafkaError as exc:
        raise WorkerError(str(exc)) from exc
    worker.run()
