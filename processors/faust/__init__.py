"""The faust-streaming worker: Kafka topics in, ClickHouse tables out, numbers equal to the embedded replay.

One module per idea:

* ``app``          - the topology (topics, tables, agents, timers) and the batch cycle; ``run_worker``;
* ``config``       - WorkerConfig, the ports the CLI edge hands in (sink, store check, metrics), exit codes;
* ``tables``       - table state on RocksDB (default) or in memory, written after the changelog is durable;
* ``batch_reader`` - batches read from an agent's channel in bulk, with Faust's tracking rules;
* ``recovery_report`` - what the recovery watchdog sees of Faust's recovery, and its stall report;
* ``fetch_loop``   - the replacement of faust-streaming's consumer fetch loop and the upstream race it
  closes (drop it when faust-streaming fixes that race).

Nothing here imports ``stagewatch``: the worker is built from ``processors`` (domain core), ``ingest``
(Kafka plumbing) and ``schemas``.
"""

from processors.faust.app import StreamWorker, run_worker
from processors.faust.config import (
    FATAL_EXIT, STOPPED_EXIT, TABLE_STORES, WorkerConfig, WorkerError, WorkerPorts,
)
from processors.faust.fetch_loop import install_fast_consumer

__all__ = ["FATAL_EXIT", "STOPPED_EXIT", "TABLE_STORES", "StreamWorker", "WorkerConfig", "WorkerError",
           "WorkerPorts", "install_fast_consumer", "run_worker"]
