"""What the recovery watchdog (processors/recovery_watchdog.py) sees of Faust's table recovery, and the
report it leaves before asking for a restart (exit 75) when that recovery stalls.

faust-streaming's recovery can wait forever for changelog records that never come (issues #74 and #155
upstream: "No event received for active tp ... since recovery start"); these read Faust's and aiokafka's
internals to say which partitions were stuck and where their fetch positions were.
"""

from __future__ import annotations

import logging
from typing import Any

from processors.faust import config as _config
from processors.recovery_watchdog import RESTART_EXIT, RecoveryProbe

log = logging.getLogger("stagewatch.worker")


def exit_now(code: int) -> None:
    _config.exit_now(code)


def recovery_probe(app: Any) -> RecoveryProbe:
    """Whether Faust's table recovery is under way, and a token that changes whenever it makes progress."""
    rec = app.tables.recovery
    if not rec.in_recovery:
        return RecoveryProbe(False, None)
    offsets = tuple(sorted((tp.topic, tp.partition, o) for tp, o in dict(rec.active_offsets).items()))
    return RecoveryProbe(True, (rec._recovery_started_at, offsets))


def report_stall_and_exit(app: Any, stalled_for: float) -> None:
    """Log what the recovery and the consumer look like, then exit for the supervisor to restart us."""
    try:
        rec = app.tables.recovery
        consumer = app.consumer
        read_offset = dict(getattr(consumer, "_read_offset", {}))
        assignment = None
        try:
            aio = consumer._thread._ensure_consumer()
            assignment = aio._subscription.subscription.assignment
        except Exception:
            pass
        fetcher = app._fetcher
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
                  app.flow_control.is_active(), app.rebalancing)
    except Exception as exc:
        log.error("worker.recovery_stalled seconds=%.0f diagnostics_failed=%r", stalled_for, exc)
    log.critical("worker.restart reason=recovery_stalled seconds=%.0f action=exit code=%d (nothing is lost: "
                 "unfinished batches are not committed; the supervisor starts the worker again)",
                 stalled_for, RESTART_EXIT)
    exit_now(RESTART_EXIT)
