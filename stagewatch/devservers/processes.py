"""Server processes: spawn them detached, tell whether a recorded pid is still ours, stop it.

A process is only ever signalled after ``/proc/<pid>/cmdline`` confirms it still runs the server a
dev dir started (pids are reused; nothing is ever stopped by name).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from stagewatch.devservers.common import STOP_TIMEOUT, DevServerError

logger = logging.getLogger("stagewatch.devservers")

# Popen objects of servers started by this Python process, kept so that they
# are reaped (no zombies that look alive) and so Popen never warns on __del__.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` runs (a zombie counts as dead)."""
    if not pid:
        return False
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the ")" that closes the command name.
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The pid's command line ([] if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int | None, markers: list[str]) -> bool:
    """The pid is alive and its command line contains every marker."""
    if not pid_alive(pid):
        return False
    cmd = " ".join(cmdline(pid))  # type: ignore[arg-type]
    return bool(cmd) and all(m in cmd for m in markers)


def spawn(cmd: list[str], cwd: Path, out_file: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server in its own session (it survives the `up` command and Ctrl-C in its shell)."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def stop_pid(name: str, pid: int, markers: list[str], timeout: float = STOP_TIMEOUT) -> str:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns what happened.

    ``already-dead`` and ``not-ours`` (the pid now runs another program, left alone) are outcomes,
    not errors: a stale state.json must never stop the caller.
    """
    if not pid_alive(pid):
        return "already-dead"
    if not is_ours(pid, markers):
        logger.warning("%s.stop.refused pid=%s reason=not-ours cmdline=%r", name, pid,
                       " ".join(cmdline(pid))[:200])
        return "not-ours"
    t0 = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = t0 + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    how = "SIGTERM"
    if pid_alive(pid):
        logger.warning("%s.stop.kill pid=%s reason=still-alive-after=%ss", name, pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.1)
        how = "SIGKILL"
        if pid_alive(pid):
            raise DevServerError(f"{name} (pid {pid}) survived SIGKILL; check `ps -p {pid}`.")
    _CHILDREN.pop(pid, None)
    logger.info("%s.stopped pid=%s signal=%s seconds=%.1f", name, pid, how, time.monotonic() - t0)
    return how


def tail_text(path: Path, lines: int = 25) -> str:
    """The last lines of a server log, for an error message that says why a start failed."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])
