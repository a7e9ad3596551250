"""What a worker is given: its configuration, the ports to the outside it must not import, its exit codes.

The ports exist for the layering rule (nothing under processors/ imports stagewatch/): the ClickHouse
sink, the store check and the Prometheus metrics live in stagewatch/, and the CLI edge
(``stagewatch worker``) hands them to the worker as a :class:`WorkerPorts`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ingest.kafka_io import Topics

log = logging.getLogger("stagewatch.worker")

FATAL_EXIT = 70  # EX_SOFTWARE: the batch was not acked; a restart re-processes it
STOPPED_EXIT = 0  # asked to stop (SIGTERM/SIGINT) while a write was retrying: the batch was not acked

TABLE_STORES = ("rocksdb", "memory")

# Every message the worker produces stays under this many bytes (Kafka's default message.max.bytes is
# 1,000,000 on the broker and in librdkafka; records carry some framing besides key and value).
MAX_MESSAGE_BYTES = 900_000


class Sink(Protocol):
    """Rows to a store, written in batches (stagewatch.sink.StoreSink)."""

    def add(self, table: str, row: Any) -> None: ...

    def flush(self) -> int: ...


class Metrics(Protocol):
    """The worker's counters (stagewatch.metrics.WorkerMetrics): prometheus_client-like labelled metrics."""

    events: Any
    duplicates: Any
    dead_letters: Any
    lag: Any
    batch_seconds: Any
    batch_size: Any
    contributions: Any

    def serve(self, port: int, addr: str = "127.0.0.1") -> None: ...


@dataclass
class WorkerPorts:
    """What the worker uses of the world outside the domain core, built by the CLI edge.

    ``check_store()`` raises WorkerError (a sentence) when the store cannot be reached or refuses the
    schema; ``new_sink(stop)`` opens one store connection wrapped in a sink that retries until it
    succeeds or ``stop`` is set.
    """

    check_store: Callable[[], None]
    new_sink: Callable[[threading.Event], Sink]
    metrics: Metrics


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
    table_store: str = "rocksdb"
    max_message_bytes: int = MAX_MESSAGE_BYTES
    memory_release_s: float = 10.0  # how often freed memory goes back to the OS (processors/faust/memory.py)
    # Built by the CLI edge (stagewatch.cli_stream.worker_ports): not configuration, but carried here so that
    # ``run_worker(cfg)`` is the whole entry point.
    ports: WorkerPorts | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # faust.Worker chdirs into the workdir before the app opens its datadir: a relative path would
        # then name a directory inside itself (FileNotFoundError at start with the default workdir).
        self.workdir = str(Path(self.workdir).expanduser().resolve())
        if self.table_store not in TABLE_STORES:
            raise WorkerError(f"Unknown table store {self.table_store!r}; choose one of {', '.join(TABLE_STORES)}.")

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
