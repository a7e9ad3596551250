"""The worker moved to the package processors/faust/ (one module per idea); this name is kept for the
imports that still use it (stagewatch.cli's list of error classes, the CLI's worker command and its test).
Remove it when they import processors.faust."""

from processors.faust import (  # noqa: F401
    FATAL_EXIT, STOPPED_EXIT, TABLE_STORES, StreamWorker, WorkerConfig, WorkerError, WorkerPorts, run_worker,
)
