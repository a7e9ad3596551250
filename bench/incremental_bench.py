"""Cost of adding 1,000 new events to a big store (issue 9 §1): it must not grow with the history.

    python bench/incremental_bench.py [--jobs 100000] [--tail 1000] [--keep DIR]

Builds a chDB store from the NOvA-week stream (about 100,000 jobs; `--jobs 1000000` replays ten copies
of it under ten campaign names), holding back the last `--tail` lines of the first copy; then adds those
lines the way a user does, `stagewatch replay tail.jsonl`, in a fresh process, and prints its wall time
(whole command) and the replay's own time, plus the entities it loaded back from the store. Nothing is
asserted: these are figures to read. The store build is the slow part (minutes per 100,000 jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def copies(src: Path, n: int, tail: int, out_main: Path, out_tail: Path) -> int:
    """Write `n` copies of the stream (copy k>0 under campaign name + f'_c{k}'); the last `tail` lines of
    copy 0 go to out_tail."""
    import msgspec

    lines = src.read_bytes().splitlines()
    head, last = lines[:-tail], lines[-tail:]
    out_tail.write_bytes(b"\n".join(last) + b"\n")
    total = 0
    with open(out_main, "wb") as fh:
        fh.write(b"\n".join(head) + b"\n")
        total += len(head)
        for k in range(1, n):
            for line in lines:
                d = msgspec.json.decode(line)
                d["campaign"] = f"{d['campaign']}_c{k}"
                fh.write(msgspec.json.encode(d) + b"\n")
                total += 1
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000, help="about 100,000 per copy of the NOvA week")
    ap.add_argument("--tail", type=int, default=1000)
    ap.add_argument("--keep", help="build the store here and keep it (reused when it exists)")
    args = ap.parse_args()
    from replay_bench import generate

    cache = Path(tempfile.gettempdir()) / "stagewatch-bench"
    cache.mkdir(exist_ok=True)
    week = cache / "nova-week-1.jsonl"
    if not week.exists():
        generate("nova-week", 1, week)
    n = max(1, round(args.jobs / 100_000))
    work = Path(args.keep or tempfile.mkdtemp(prefix="stagewatch-incr-"))
    work.mkdir(parents=True, exist_ok=True)
    main_path, tail_path, store = work / "history.jsonl", work / "tail.jsonl", work / "store"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-c", "from stagewatch.cli import main; main()"]  # `stagewatch` from this checkout
    if not store.exists():
        t0 = time.perf_counter()
        total = copies(week, n, args.tail, main_path, tail_path)
        print(f"history: {total:,} lines ({n} cop{'y' if n == 1 else 'ies'} of the NOvA week)", flush=True)
        rc = subprocess.run([*cmd, "replay", "-q", str(main_path), "--store", f"chdb:{store}"], env=env,
                            cwd=work).returncode
        if rc not in (0, 1):  # 1: the replay reports conflicts or dead letters
            raise SystemExit(f"building the store failed (exit {rc})")
        import resource

        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"store built in {time.perf_counter() - t0:.0f} s (the full replay's peak RSS {rss:,.0f} MiB): {store}",
              flush=True)
    probe = (
        "import json, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from stagewatch.replay import Replayer, _replay_files\n"
        "from stagewatch.store import open_store\n"
        "st = open_store(sys.argv[1])\n"
        "t1 = time.perf_counter()\n"
        "r = Replayer(st)\n"
        "_replay_files(r, [sys.argv[2]], None)\n"
        "t2 = time.perf_counter()\n"
        "jobs = st.query('SELECT count() AS n FROM job_state FINAL')[0]['n']\n"
        "print(json.dumps({'open_s': t1 - t0, 'replay_s': t2 - t1, 'new_events': r.report.new_events,\n"
        "                  'loaded_entities': r.loaded_entities, 'stages': len(r.report.stages), 'jobs': jobs}))\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, f"chdb:{store}", str(tail_path)], check=True, env=env,
                         capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t0
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"store of {r['jobs']:,} jobs: adding {args.tail:,} lines ({r['new_events']:,} new events, "
          f"{r['stages']} stages, {r['loaded_entities']:,} stored entities loaded back): "
          f"replay {r['replay_s']:.2f} s, opening the store {r['open_s']:.2f} s, whole process {wall:.2f} s")
    # the same lines again: all duplicates, still only their entities loaded
    t0 = time.perf_counter()
    subprocess.run([*cmd, "replay", "-q", str(tail_path), "--store", f"chdb:{store}"], check=True, env=env, cwd=work,
                   capture_output=True)
    print(f"`stagewatch replay tail.jsonl` again (duplicates only), whole command: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
