"""Noticing a table recovery that has stopped making progress, so the worker can restart itself.

Faust restores a worker's tables from their changelog topics after every rebalance and holds all
processing until that is done. Rarely, it waits forever: the changelog partitions it is reading are
fetched but no record reaches the recovery (faust-streaming issues #74 and #155 describe the same
symptom: "No event received for active tp ... since recovery start", repeated forever). Seen once in
this project's CI, when a second worker took over the partitions of one that had just stopped.

A restarted worker recovers from scratch, and nothing is lost by restarting (offsets of unfinished
batches are not committed), so the remedy is: when a recovery has made no progress for a while,
log what the consumer looked like and exit with ``RESTART_EXIT`` for the supervisor (Kubernetes,
Docker's restart policy, systemd) to start the worker again.

``StallClock`` is the decision, pure and unit-tested; ``RecoveryWatchdog`` is the thread that polls
a probe of the Faust app and calls ``on_stall``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

log = logging.getLogger("stagewatch.worker")

RESTART_EXIT = 75  # EX_TEMPFAIL: nothing is wrong with the data; start the worker again


@dataclass(frozen=True)
class RecoveryProbe:
    """One look at the recovery: is it running, and where has it got to.

    ``progress`` is anything that changes when the recovery advances (the offsets it has applied per
    partition, and when this recovery started, so a new recovery after a rebalance is new progress).
    """

    in_recovery: bool
    progress: Hashable


class StallClock:
    """How long the current recovery has been without progress."""

    def __init__(self) -> None:
        self._progress: Hashable = None
        self._since: float | None = None

    def observe(self, now: float, probe: RecoveryProbe) -> float:
        """Record a probe taken at `now`; return the seconds since the recovery last advanced (0 when idle)."""
        if not probe.in_recovery:
            self._progress, self._since = None, None
            return 0.0
        if self._since is None or probe.progress != self._progress:
            self._progress, self._since = probe.progress, now
            return 0.0
        return now - self._since


class RecoveryWatchdog:
    """A daemon thread: every `interval_s`, probe; after `timeout_s` without progress, call `on_stall` once.

    A thread rather than a Faust timer so that it also notices an event loop that no longer runs.
    """

    def __init__(self, probe: Callable[[], RecoveryProbe], on_stall: Callable[[float], Any], timeout_s: float,
                 interval_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.probe = probe
        self.on_stall = on_stall
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.clock = clock
        self.stall = StallClock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Probe once; True (after calling `on_stall`) when the recovery has stalled for `timeout_s`."""
        try:
            probe = self.probe()
        except Exception as exc:  # the app is starting or stopping: nothing to judge
            log.debug("worker.recovery_probe_failed error=%r", exc)
            return False
        stalled_for = self.stall.observe(self.clock(), probe)
        if stalled_for >= self.timeout_s:
            self.on_stall(stalled_for)
            return True
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.check():
                return

    def start(self) -> None:
        if self.timeout_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="recovery-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
