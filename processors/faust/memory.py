"""Where a running worker's memory is, and giving back what the C allocator keeps after a batch.

Why this exists: a worker that had just processed the nova-talk stream held 590-700 MB per 100,000 jobs
while the same worker restarted on its workdir held ~210 MB: the difference was not state but memory
freed by the batches and kept by the allocators (glibc's malloc keeps freed chunks in its heaps and
returns the top of a heap only; a batch's hundreds of thousands of short-lived objects leave holes
below long-lived ones). ``memory_stats`` splits RSS into what Python has allocated, what glibc holds
in use and free, so the log (``worker.memory``) says which one grows; ``release_free_memory`` calls
glibc's ``malloc_trim(0)``, which also returns free pages *inside* its heaps (madvise), not only the top.

Both are no-ops off glibc (``available()`` is False).
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("stagewatch.worker")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def available() -> bool:
    """Whether glibc's malloc statistics and trim are there (Linux with glibc >= 2.33)."""
    return _LIBC is not None


def proc_status_mib(field: str = "VmRSS", pid: int | str = "self", missing: float = float("nan")) -> float:
    """A memory line of /proc/PID/status in MiB (``VmRSS`` resident now, ``VmHWM`` its peak so far), or
    `missing` when the process is gone or there is no /proc. The one reader of it for the worker and the
    benches, which watch other processes by pid."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return missing


def rss_mb() -> float:
    """This process's resident set size in MB (nan where /proc is missing)."""
    return proc_status_mib("VmRSS")


def memory_stats() -> dict[str, float]:
    """RSS and its parts in MB: ``malloc_used``/``malloc_free`` (glibc, all arenas: mmapped chunks count as
    used), ``py_blocks`` (objects Python's allocator has out, in thousands)."""
    out = {"rss_mb": rss_mb(), "py_blocks_k": sys.getallocatedblocks() / 1000}
    if _LIBC is not None:
        mi = _LIBC.mallinfo2()
        out["malloc_used_mb"] = (mi.uordblks + mi.hblkhd) / 2**20
        out["malloc_free_mb"] = mi.fordblks / 2**20
    return out


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters


def tune_malloc(arenas: int = 2, mmap_threshold: int = 256 * 1024) -> bool:
    """Set glibc's malloc up for a worker, before its threads start (False, changing nothing, off glibc).

    * ``M_ARENA_MAX``: glibc gives each thread that allocates its own arena (up to 8 per core) and keeps
      freed memory in each: the sink threads, librdkafka's and RocksDB's threads each held tens of MB of a
      batch's garbage. Two arenas are enough for threads that mostly wait.
    * ``M_MMAP_THRESHOLD``: a fixed threshold turns off glibc's dynamic one, which after the first large
      free moves every later buffer up to 32 MB (fetched Kafka data, encoded table values and row
      batches) into the heaps, where a long-lived object allocated after it keeps the pages. Buffers
      above the threshold are mmapped and given back when freed.
    """
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_ARENA_MAX, arenas))
    return bool(_LIBC.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and ok


def release_free_memory() -> bool:
    """Give the pages glibc holds free back to the OS (``malloc_trim(0)``); False when nothing was released
    or glibc is not there. Costs a walk of the free lists: call it between batches, not per message."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


def format_stats(stats: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.0f}" for k, v in stats.items())
