"""The recovery watchdog: when a table recovery stops advancing, the worker gives up and asks to restart."""

from __future__ import annotations

import threading

from processors.recovery_watchdog import RecoveryProbe, RecoveryWatchdog, StallClock

IDLE = RecoveryProbe(False, None)


def rec(progress: object) -> RecoveryProbe:
    return RecoveryProbe(True, progress)


def test_stall_clock_counts_only_time_without_progress_during_a_recovery() -> None:
    c = StallClock()
    assert c.observe(0.0, IDLE) == 0.0
    assert c.observe(1.0, rec((1, 10))) == 0.0       # a recovery starts
    assert c.observe(4.0, rec((1, 10))) == 3.0       # no progress for 3 s
    assert c.observe(5.0, rec((1, 11))) == 0.0       # one more record applied
    assert c.observe(9.5, rec((1, 11))) == 4.5
    assert c.observe(10.0, IDLE) == 0.0              # finished: the clock stops
    assert c.observe(11.0, rec((1, 11))) == 0.0      # a later recovery starts a new count
    assert c.observe(12.0, rec((1, 11))) == 1.0


def test_watchdog_fires_once_after_the_timeout_and_not_before() -> None:
    now = [0.0]
    probes = iter([rec("a"), rec("a"), rec("b"), rec("b"), rec("b"), rec("b")])
    stalls: list[float] = []
    w = RecoveryWatchdog(lambda: next(probes), stalls.append, timeout_s=10.0, clock=lambda: now[0])
    results = []
    for t in (0.0, 9.0, 9.5, 15.0, 19.0, 19.5):
        now[0] = t
        results.append(w.check())
    assert results == [False, False, False, False, False, True]   # "b" since 9.5 s; 19.5 - 9.5 = 10
    assert stalls == [10.0]


def test_watchdog_ignores_probes_that_fail_and_idle_workers() -> None:
    def broken() -> RecoveryProbe:
        raise RuntimeError("app not started")

    stalls: list[float] = []
    assert RecoveryWatchdog(broken, stalls.append, timeout_s=0.0001).check() is False
    idle = RecoveryWatchdog(lambda: IDLE, stalls.append, timeout_s=0.0001)
    assert [idle.check() for _ in range(3)] == [False, False, False]
    assert stalls == []


def test_watchdog_thread_calls_on_stall_and_ends() -> None:
    fired = threading.Event()
    w = RecoveryWatchdog(lambda: rec("stuck"), lambda s: fired.set(), timeout_s=0.05, interval_s=0.01)
    w.start()
    assert fired.wait(5), "the watchdog thread never reported the stalled recovery"
    w.stop()


def test_a_zero_timeout_disables_the_watchdog() -> None:
    w = RecoveryWatchdog(lambda: rec("stuck"), lambda s: None, timeout_s=0)
    w.start()
    assert w._thread is None
