"""The worker's memory: packed stage entries, the C allocator's free memory given back, malloc settings."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import concurrent.futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from processors.contributions import StageCounters
from processors.faust import memory
from processors.faust.app import StreamWorker
from processors.stream import Contribution, ContributionBatch, StageAggregator

REPO = Path(__file__).resolve().parents[2]

_times = hs.one_of(hs.none(), hs.tuples(*[hs.one_of(hs.none(), hs.floats(1e9, 2e9)) for _ in range(3)]))
_applies = hs.lists(hs.tuples(
    hs.sampled_from([f"job:j{i}" for i in range(5)] + [f"file:f{i}" for i in range(5)]),
    hs.integers(1, 6).map(lambda n: n << 36),
    hs.dictionaries(hs.sampled_from(["events", "jobs", "jobs_running", "cpu_ms", "input_files", "files_pending"]),
                    hs.integers(0, 10**12), max_size=6),
    _times), max_size=60)


@settings(max_examples=150, deadline=None)
@given(_applies)
def test_packed_counters_count_exactly_as_unpacked(applies: list[Any]) -> None:
    """Packing is a storage change only: the same applies (stale, repeated, shrinking times) give the same
    answers, counters, times, rows and entries."""
    plain, packed = StageCounters("c", "s"), StageCounters("c", "s", packed=True)
    for entity, version, contribution, times in applies:
        assert plain.apply(entity, version, dict(contribution), times) == packed.apply(entity, version,
                                                                                     dict(contribution), times)
    assert packed.counters == plain.counters and packed.version_sum == plain.version_sum
    assert packed.row() == plain.row()
    assert packed.numbers(2.5e9) == plain.numbers(2.5e9)
    assert set(packed.entities) == set(plain.entities)
    for entity in plain.entities:
        assert packed.entry(entity) == plain.entry(entity) == plain.entities[entity]
        assert isinstance(packed.entities[entity], bytes)


def _deep_size(o: Any, seen: set[int]) -> int:
    if id(o) in seen:
        return 0
    seen.add(id(o))
    n = sys.getsizeof(o)
    if isinstance(o, dict):
        n += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in o.items())
    elif isinstance(o, (tuple, list)):
        n += sum(_deep_size(v, seen) for v in o)
    return n


def _job_contribution(i: int) -> dict[str, int]:
    return {"events": 7, "jobs": 1, "jobs_completed": 1, "jobs_completed_ok": 1, "job_attempts": 2,
            "restarts": 1, "restarts_evicted": 1, "cpu_terminations": 1, "cpu_ms": 3_600_000 + i,
            "core_wall_ms": 4_000_000 + i}


def test_the_stage_step_keeps_entries_packed_in_a_third_of_the_memory() -> None:
    """The aggregator holds every entity of its stages for as long as the worker runs: packed entries
    (what a job's entry costs: ~110 bytes instead of ~600) are most of a worker's resident state."""
    agg = StageAggregator()
    plain = StageCounters("c", "s")
    items = [Contribution(f"job:fifebatch1#{1000 + i}.0", 7 << 36, _job_contribution(i), 1.5e9 + i, 1.5e9 + i + 60,
                          1.5e9 + i + 60) for i in range(2000)]
    agg.apply(ContributionBatch("c", "s", items))
    for it in items:
        plain.apply(it.entity, it.version, dict(it.contribution), (it.first_ts, it.last_ts, it.progress_ts))
    st = agg.stages[("c", "s")]
    assert st.packed and st.counters == plain.counters
    values = lambda c: _deep_size(list(c.entities.values()), set())  # noqa: E731
    assert values(st) * 3 < values(plain)
    assert agg.row("c", "s")["jobs_completed_ok"] == 2000


_FRAGMENT = """
import sys
sys.path.insert(0, {repo!r})
from processors.faust import memory
keep, junk = [], []
for i in range(200_000):
    (keep if i % 16 == 0 else junk).append(bytes(700) + i.to_bytes(4, "little"))
del junk
before = memory.memory_stats()
released = memory.release_free_memory()
after = memory.memory_stats()
print(before["rss_mb"], after["rss_mb"], before["malloc_free_mb"], released)
"""


@pytest.mark.skipif(not memory.available(), reason="glibc's malloc statistics are not available")
def test_release_free_memory_gives_back_what_a_batch_left_behind() -> None:
    """A batch's garbage below long-lived objects stays in glibc's heap (RSS) until malloc_trim returns it."""
    out = subprocess.run([sys.executable, "-c", _FRAGMENT.format(repo=str(REPO))], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    rss_before, rss_after, free_mb, released = float(out[0]), float(out[1]), float(out[2]), out[3]
    assert free_mb > 100  # the garbage was there, free but held
    assert released == "True" and rss_before - rss_after > 50


_THRESHOLD = """
import ctypes, sys
sys.path.insert(0, {repo!r})
from processors.faust import memory
if {tune}:
    assert memory.tune_malloc()
big = ctypes.create_string_buffer(8 * 1024 * 1024)  # mmapped; freeing it raises glibc's dynamic threshold
del big
mmapped = lambda: memory._LIBC.mallinfo2().hblkhd
before = mmapped()
buf = ctypes.create_string_buffer(1024 * 1024)
print(mmapped() - before)
"""


@pytest.mark.skipif(not memory.available(), reason="glibc's malloc is not available")
@pytest.mark.parametrize("tune", [True, False])
def test_tune_malloc_keeps_large_buffers_out_of_the_heap(tune: bool) -> None:
    """After tune_malloc a 1 MiB buffer is mmapped (given back when freed) even after a larger one was freed;
    glibc's default dynamic threshold puts it in the heap instead."""
    out = subprocess.run([sys.executable, "-c", _THRESHOLD.format(repo=str(REPO), tune=tune)], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    grew = int(out.split()[0])
    assert (grew >= 1024 * 1024) is tune


def test_the_worker_timer_releases_memory_off_the_event_loop(monkeypatch: Any) -> None:
    """The memory timer calls malloc_trim in its own thread (it releases the GIL; the loop goes on)."""
    threads: list[str] = []

    def fake_release() -> bool:
        threads.append(threading.current_thread().name)
        return True

    monkeypatch.setattr("processors.faust.app.release_free_memory", fake_release)
    w = SimpleNamespace(aggregator=StageAggregator(), _memory_logs=0,
                        _memory_executor=concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="memory"))
    asyncio.run(StreamWorker._release_memory(w))  # type: ignore[arg-type]
    asyncio.run(StreamWorker._release_memory(w))  # type: ignore[arg-type]
    w._memory_executor.shutdown()
    assert len(threads) == 2 and all(t.startswith("memory") for t in threads)
    assert w._memory_logs == 2

