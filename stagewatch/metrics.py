"""Prometheus metrics of a stagewatch worker (served on --metrics-port at /metrics).

A dedicated registry, not prometheus_client's global one, so that several workers built in one
process (tests, benchmarks) do not collide and the endpoint shows only what the worker defines.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class WorkerMetrics:
    """The worker's counters; names follow Prometheus conventions (``_total``, base units)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("stagewatch_events_processed_total",
                              "Messages taken from a topic and fully processed (written and acked), per topic.",
                              ["topic"], registry=r)
        self.duplicates = Counter("stagewatch_duplicate_events_total",
                                  "Valid events whose event_id the entity already had (at-least-once redelivery).",
                                  ["topic"], registry=r)
        self.dead_letters = Counter("stagewatch_dead_letters_total",
                                    "Invalid messages sent to the dead-letter topic and table, per source topic.",
                                    ["topic"], registry=r)
        self.lag = Gauge("stagewatch_consumer_lag",
                         "Messages in the partition after the last one this worker processed (high watermark - "
                         "next offset), per assigned partition.", ["topic", "partition"], registry=r)
        self.sink_rows = Histogram("stagewatch_sink_batch_rows", "Rows per ClickHouse insert, per table.", ["table"],
                                   buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000), registry=r)
        self.sink_seconds = Histogram("stagewatch_sink_flush_seconds",
                                      "Seconds per ClickHouse insert of one table's batch, retries included.",
                                      ["table"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                                          30, 60), registry=r)
        self.batch_seconds = Histogram("stagewatch_batch_seconds",
                                       "Seconds from taking a batch to acking it (processing, sink, producer flush).",
                                       ["agent"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                       registry=r)
        self.batch_size = Histogram("stagewatch_batch_messages", "Messages per processed batch.", ["agent"],
                                    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000), registry=r)
        self.contributions = Counter("stagewatch_contributions_total",
                                     "Entity contributions received by the stage step, by result "
                                     "(applied = newer version, stale = older or equal: a redelivery).",
                                     ["result"], registry=r)
        self.recovered = Counter("stagewatch_changelog_records_recovered_total",
                                 "Changelog records read back into a table by recovery (all of them with memory "
                                 "tables; only the tail after the local state with RocksDB), per table.",
                                 ["table"], registry=r)

    def on_sink_flush(self, table: str, rows: int, seconds: float) -> None:
        """StoreSink's on_flush hook."""
        self.sink_rows.labels(table).observe(rows)
        self.sink_seconds.labels(table).observe(seconds)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose /metrics on ``addr:port`` (a daemon thread)."""
        start_http_server(port, addr=addr, registry=self.registry)
