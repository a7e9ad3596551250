"""Replay throughput and peak memory at NOvA-week scale (issue #2's figure).

    python bench/replay_bench.py [--preset nova-week] [--seed 1] [--cores 0]

Generates the preset's JSON lines once (cached under $TMPDIR/stagewatch-bench), then replays them in
a fresh child process pinned to one core into a fresh chDB store: JSON lines -> events -> numbers
-> store. Prints events/s and the child's peak RSS. Nothing is asserted: these are figures to read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate(preset: str, seed: int, out: Path) -> int:
    from ingest.simulator import PRESETS, simulate_many
    from schemas.events import encode_event

    n = 0
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        for ev in simulate_many(PRESETS[preset](), seed):
            fh.write(encode_event(ev) + b"\n")
            n += 1
    tmp.rename(out)
    return n


def child(path: str, store_dir: str) -> None:
    """Runs in the pinned child: the measured replay."""
    from stagewatch.replay import replay_paths
    from stagewatch.store import open_store

    t0 = time.perf_counter()
    c0 = time.process_time()
    with open_store(f"chdb:{store_dir}") as st:
        report = replay_paths(st, [path])
        (row,) = st.query("SELECT count() AS n FROM raw_events")
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0  # all threads (chDB's included): on a shared machine, steadier than wall
    print(json.dumps({
        "cpu_seconds": cpu, "events_per_cpu_s": report.lines / cpu,
        "lines": report.lines, "new_events": report.new_events, "duplicates": report.duplicates,
        "stages": len(report.stages), "rows_in_store": row["n"], "seconds": wall,
        "events_per_s": report.lines / wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="nova-week")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cores", default="0", help="CPU list for taskset ('' = no pinning)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    cache = Path(tempfile.gettempdir()) / "stagewatch-bench"
    cache.mkdir(exist_ok=True)
    data = cache / f"{args.preset}-{args.seed}.jsonl"
    if not data.exists():
        t0 = time.perf_counter()
        n = generate(args.preset, args.seed, data)
        print(f"generated {n:,} events of {args.preset} in {time.perf_counter() - t0:.1f} s -> {data}")
    size_mb = data.stat().st_size / 1e6
    with tempfile.TemporaryDirectory() as store_dir:
        cmd = [sys.executable, __file__, "--child", str(data), store_dir]
        if args.cores and os.path.exists("/usr/bin/taskset"):
            cmd = ["taskset", "-c", args.cores, *cmd]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"preset {args.preset} (seed {args.seed}): {r['lines']:,} lines ({size_mb:.0f} MB), "
          f"{r['new_events']:,} distinct events, {r['duplicates']:,} duplicates, {r['stages']} stages")
    print(f"replay on {'core ' + args.cores if args.cores else 'all cores'}: {r['seconds']:.1f} s, "
          f"{r['events_per_s']:,.0f} events/s (JSON lines -> numbers in chDB), peak RSS {r['peak_rss_mib']:,.0f} MiB; "
          f"{r['cpu_seconds']:.1f} CPU s ({r['events_per_cpu_s']:,.0f} events per CPU second, every thread)")


if __name__ == "__main__":
    main()
