"""The scale bench's measured steps as child processes, its clock and its table of steps.

bench/scale_bench.py runs each measured step (simulate, replay, time reads, POMS) in a niced child
process of its own, so that each peak RSS is that step's, and runs some of them at the same time (the
chDB and the server replays, one core each). This module holds what that needs: the bench's clock
(every "[  12.3 s]" and the step table count from ``restart_clock()``), the child processes, their
memory and CPU figures from /proc, and the table the 30-minute goal is read from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from processors.faust.memory import proc_status_mib

BENCH = Path(__file__).resolve().with_name("scale_bench.py")  # its ``--child`` runs one step
ROOT = BENCH.parent.parent
GOAL_TOTAL_S = 30 * 60.0  # the whole bench at --jobs 1000000 on the 2-core machine
GOAL_JOBS = 1_000_000
_start = time.monotonic()


def restart_clock() -> None:
    """Count the bench's seconds from now (a run of main(), not the import of this module)."""
    global _start
    _start = time.monotonic()


def since_start() -> float:
    return time.monotonic() - _start


class BenchFailure(SystemExit):
    """The two sides disagree (or a step failed): printed, and the bench exits 1."""


def say(msg: str) -> None:
    print(f"[{since_start():7.1f} s] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# memory and CPU of a process


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident set so far (0 when it is gone)."""
    return proc_status_mib("VmHWM", pid, 0.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone): /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------
# child processes: each measured step in its own process, so its peak RSS is its own


class Child:
    """One measured step in a niced child process of its own, started now, its result read by ``result()``.

    Its peak RSS is its own (it reports it), its "[progress]" lines are shown as they come, prefixed with
    ``label`` (two children may run at once: the chDB and the server replays, one core each), and a step
    that hangs is ended by its own pid after ``timeout`` seconds.
    """

    def __init__(self, label: str, *args: str, timeout: float = 7200) -> None:
        import threading

        cmd = ["nice", "-n", "10", sys.executable, str(BENCH), "--child", *args]
        self.label, self.step = label, args[0]
        self.started = since_start()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self._err: list[str] = []
        self._out: list[str] = []
        self.ended: float | None = None  # when the process exited (not when its result was read)
        self._threads = [threading.Thread(target=self._pump_err, daemon=True),
                         threading.Thread(target=self._read_out, daemon=True)]
        for th in self._threads:
            th.start()
        self._timer = threading.Timer(timeout, self.kill)
        self._timer.start()

    def _pump_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            if line.startswith("[progress]"):
                say(f"  [{self.label}] " + line[len("[progress] "):].rstrip())
            else:
                self._err.append(line)

    def _read_out(self) -> None:
        self._out.append(self.proc.stdout.read())  # type: ignore[union-attr]
        self.proc.wait()
        self.ended = since_start()

    def result(self) -> dict[str, Any]:
        """Wait for the step; its JSON result with ``started``/``ended`` (seconds since the bench started)."""
        try:
            self.proc.wait()
        finally:
            self._timer.cancel()
        for th in self._threads:
            th.join(10)
        ended = self.ended if self.ended is not None else since_start()
        if self.proc.returncode != 0:
            raise BenchFailure(f"step {self.step} ({self.label}) failed (exit {self.proc.returncode}):\n"
                               f"{''.join(self._err)[-4000:]}")
        out = json.loads("".join(self._out).strip().splitlines()[-1])
        out.update(started=self.started, ended=ended)
        return out

    def kill(self) -> None:
        """End the child by its pid if it still runs (a failed sibling, a timeout, Ctrl-C)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_child(*args: str, label: str = "", timeout: float = 7200) -> dict[str, Any]:
    """Run one measured step in a niced child process and wait for it."""
    child = Child(label or args[0], *args, timeout=timeout)
    try:
        return child.result()
    finally:
        child.kill()


def run_children(steps: dict[str, tuple[str, ...]], timeout: float = 7200) -> dict[str, dict[str, Any]]:
    """Run several measured steps at the same time, one child each; if one fails the others are ended."""
    children: dict[str, Child] = {}
    try:
        for label, args in steps.items():
            children[label] = Child(label, *args, timeout=timeout)
        return {label: child.result() for label, child in children.items()}
    finally:
        for child in children.values():
            child.kill()


# ------------------------------------------------------------------------------------------------
# the steps and their wall times


class Steps:
    """Wall time of each step (start and end since the bench started: parallel steps overlap)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, started: float, ended: float, note: str = "") -> None:
        self.rows.append({"step": name, "started": started, "ended": ended, "seconds": ended - started,
                          "note": note})

    def print_table(self, total_s: float, jobs: int = GOAL_JOBS, goal_s: float = GOAL_TOTAL_S) -> None:
        """The table the 30-minute goal is read from: each step, then the total wall time (judged against
        the goal only for a run of the goal's size: a smaller one meeting it says nothing)."""
        print("steps (wall time; steps that ran at the same time overlap):", flush=True)
        print(f"    {'step':<22} {'seconds':>9} {'from':>8} {'to':>8}  note", flush=True)
        for r in self.rows:
            print(f"    {r['step']:<22} {r['seconds']:9.1f} {r['started']:8.1f} {r['ended']:8.1f}  {r['note']}",
                  flush=True)
        goal = f"goal at {GOAL_JOBS:,} jobs: under {goal_s / 60:.0f} min"
        verdict = ("met" if total_s < goal_s else "NOT met") if jobs >= GOAL_JOBS else f"this run: {jobs:,} jobs"
        print(f"    {'total wall time':<22} {total_s:9.1f} = {total_s / 60:.1f} min ({goal}: {verdict})", flush=True)
