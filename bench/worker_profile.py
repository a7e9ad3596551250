"""Where a worker's time and memory go: the worker's pure steps on a simulated stream, profiled.

Two modes, each printing figures and a top-N profile (no assertions: figures depend on the machine):

``steps`` (default, no servers): the job, file and stage steps of processors/stream.py applied to a
simulated campaign exactly as a worker applies them (messages as the JSON bytes a publisher sends,
batches of ``--batch`` messages per agent and Kafka partition mix, table values as bytes in a dict,
links fed back to the file step, contributions to the stage step), without Kafka, Faust or ClickHouse.
It prints the steps' events/s (the ceiling of one worker, before any transport), the cProfile top-N
by own time, and the tracemalloc top-N of what is still allocated at the end (the state a worker keeps)
with the Python object counts of the aggregator.

``worker`` (starts Kafka and ClickHouse like bench/stream_bench.py): one real worker process run under
cProfile (``--profile-out``) on a pre-published stream, with the worker's own memory log lines
(``worker.memory``: RSS, Python heap in use, memory the C allocator holds free) printed at the end.

Usage:
    python bench/worker_profile.py [--preset nova-talk] [--top 25] [--batch 5000] [--partitions 8]
    python bench/worker_profile.py --mode worker [--table-store rocksdb|memory] [--top 25]

Run it ``nice``d on a shared machine and say so with the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.kafka_io import partition_for_key  # noqa: E402
from ingest.simulator import PRESETS, simulate_many  # noqa: E402
from processors.faust.memory import rss_mb  # noqa: E402
from processors.stream import (  # noqa: E402
    StageAggregator, apply_file_inputs, apply_job_events, decode_contribution_batch, decode_link_batch, entity_key,
    split_contribution_batch, split_links, stage_key,
)
from schemas.events import FileEvent, JobEvent, decode_event, encode_event, event_key  # noqa: E402

MAX_MESSAGE_BYTES = 900_000


class StepsRun:
    """The worker's batch cycle over pure steps: what processors/faust/app.py does, minus the transport."""

    def __init__(self, partitions: int, batch: int) -> None:
        self.partitions = partitions
        self.batch = batch
        self.jobs: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.stage: dict[str, bytes] = {}
        self.aggregator = StageAggregator()
        self.links: list[bytes] = []  # LinkBatch messages not yet read by the file step
        self.contributions: list[bytes] = []
        self.rows = 0

    def run(self, messages: list[tuple[str, bytes, bytes]]) -> None:
        job_q = [m for m in messages if m[0] == "job"]
        file_q = [m for m in messages if m[0] == "file"]
        b = self.batch
        i = j = 0
        while i < len(job_q) or j < len(file_q) or self.links or self.contributions:
            if i < len(job_q):
                self.job_batch(job_q[i:i + b])
                i += b
            if j < len(file_q) or self.links:
                self.file_batch(file_q[j:j + b])
                j += b
            self.stage_batch()

    def job_batch(self, batch: list[tuple[str, bytes, bytes]]) -> None:
        events = []
        partition_of: dict[str, int] = {}  # the worker takes an event's partition from its message
        for _, key, raw in batch:
            ev = decode_event(raw)
            assert isinstance(ev, JobEvent) and ev.entity.encode() == key
            events.append(ev)
            partition_of[entity_key(ev.campaign, ev.stage, ev.job_id)] = 0
        res = apply_job_events(self.jobs, events)
        self._write(res, self.jobs)

    def file_batch(self, batch: list[tuple[str, bytes, bytes]]) -> None:
        events = []
        links = []
        partition_of: dict[str, int] = {}  # as the worker builds it (from the messages' partitions)
        for data in self.links:
            for link in decode_link_batch(data).links:
                links.append(link)
                partition_of[entity_key(link.campaign, link.stage, link.parent)] = 0
        self.links = []
        for _, key, raw in batch:
            ev = decode_event(raw)
            assert isinstance(ev, FileEvent) and ev.entity.encode() == key
            events.append(ev)
            partition_of[entity_key(ev.campaign, ev.stage, ev.file)] = 0
        res = apply_file_inputs(self.files, events, links)
        self._write(res, self.files)
        by_partition: dict[int, list[Any]] = {}
        for link in res.links:
            by_partition.setdefault(partition_for_key(link.parent.encode(), self.partitions), []).append(link)
        for _, ls in by_partition.items():
            self.links.extend(split_links(ls, MAX_MESSAGE_BYTES - 5))

    def _write(self, res: Any, table: dict[str, bytes]) -> None:
        table.update(res.updates)
        for cb in res.contribution_batches():
            key = stage_key(cb.campaign, cb.stage).encode()
            self.contributions.extend(split_contribution_batch(cb, MAX_MESSAGE_BYTES - len(key)))
        self.rows += len(res.rows)

    def stage_batch(self) -> None:
        for data in self.contributions:
            self.stage.update(self.aggregator.apply(decode_contribution_batch(data)))
        self.contributions = []
        self.aggregator.take_dirty_rows()


def top_profile(prof: cProfile.Profile, top: int, sort: str = "tottime") -> str:
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out)
    st.strip_dirs().sort_stats(sort).print_stats(top)
    text = out.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text


def steps_mode(args: argparse.Namespace) -> None:
    t = time.perf_counter()
    events = list(simulate_many(PRESETS[args.preset](), args.seed))
    messages = [("job" if isinstance(ev, JobEvent) else "file", event_key(ev), encode_event(ev)) for ev in events]
    del events
    gc.collect()
    print(f"# preset {args.preset}: {len(messages):,} messages (simulated and encoded in "
          f"{time.perf_counter() - t:.1f} s); batches of {args.batch}; {os.cpu_count()} cores", flush=True)

    run = StepsRun(args.partitions, args.batch)
    rss0 = rss_mb()
    t = time.perf_counter()
    cpu = time.process_time()
    run.run(messages)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    jobs = len(run.jobs)
    print(f"steps    : {len(messages) / wall:,.0f} events/s wall, {len(messages) / cpu:,.0f} per CPU second "
          f"({len(messages):,} events, {wall:.1f} s; {jobs:,} jobs, {len(run.files):,} files, "
          f"{len(run.stage):,} stage entries, {run.rows:,} rows)", flush=True)
    table_mb = sum(len(k) + len(v) for t_ in (run.jobs, run.files, run.stage) for k, v in t_.items()) / 2**20
    entities = sum(len(st.entities) for st in run.aggregator.stages.values())
    print(f"state    : table values {table_mb:,.0f} MB as bytes (what RocksDB holds); process RSS {rss0:.0f} -> "
          f"{rss_mb():.0f} MB; aggregator {entities:,} entities in {len(run.aggregator.stages)} stages", flush=True)

    if "cpu" in args.what:
        run2 = StepsRun(args.partitions, args.batch)
        prof = cProfile.Profile()
        prof.enable()
        run2.run(messages)
        prof.disable()
        print(f"\n## cProfile of the steps, top {args.top} by own time", flush=True)
        print(top_profile(prof, args.top), flush=True)
        print(f"## cProfile, top {args.top} by cumulative time", flush=True)
        print(top_profile(prof, args.top, "cumulative"), flush=True)
        del run2, prof
    if "memory" in args.what:
        del run
        gc.collect()
        tracemalloc.start(args.frames)
        run3 = StepsRun(args.partitions, args.batch)
        run3.run(messages)
        del messages
        gc.collect()
        snap = tracemalloc.take_snapshot()
        traced, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        agg_only = _aggregator_bytes(run3.aggregator)
        print(f"\n## tracemalloc at the end: {traced / 2**20:,.0f} MB still allocated (peak {peak / 2**20:,.0f} MB); "
              f"the aggregator alone {agg_only / 2**20:,.0f} MB "
              f"({agg_only / max(1, len(run3.jobs)) * 100_000 / 2**20:,.0f} MB per 100,000 jobs)", flush=True)
        for stat in snap.statistics("lineno" if args.frames == 1 else "traceback")[: args.top]:
            print(f"{stat.size / 2**20:9.1f} MB {stat.count:>10,} blocks  {stat.traceback.format()[-1].strip()}")
    print(f"# peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB", flush=True)


def _aggregator_bytes(agg: StageAggregator) -> int:
    """Deep size of the aggregator's per-entity state (shared interned strings counted once)."""
    seen: set[int] = set()
    total = 0

    def size(o: Any) -> None:
        nonlocal total
        if id(o) in seen:
            return
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            for k, v in o.items():
                size(k)
                size(v)
        elif isinstance(o, (tuple, list)):
            for v in o:
                size(v)

    for st in agg.stages.values():
        size(st.entities)
    return total


def worker_mode(args: argparse.Namespace) -> None:
    import runpy

    sys.argv = ["stream_bench.py", "--preset", args.preset, "--partitions", str(args.partitions),
                "--skip", "two,latency,recovery", "--table-store", args.table_store,
                "--profile-out", args.profile_out, "--profile-top", str(args.top)]
    runpy.run_path(str(REPO / "bench" / "stream_bench.py"), run_name="__main__")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["steps", "worker"], default="steps")
    ap.add_argument("--preset", default="nova-talk", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--batch", type=int, default=5000, help="messages per agent batch (the worker's --batch-max)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--frames", type=int, default=1, help="tracemalloc frames per allocation")
    ap.add_argument("--what", default="cpu,memory", help="steps mode: cpu,memory (profiles to print)")
    ap.add_argument("--table-store", default="rocksdb", choices=["rocksdb", "memory"])
    ap.add_argument("--profile-out", default="worker.prof", help="worker mode: where the worker's cProfile goes")
    args = ap.parse_args()
    if args.mode == "steps":
        steps_mode(args)
    else:
        worker_mode(args)


if __name__ == "__main__":
    main()
