"""Streaming benchmark: Kafka -> faust-streaming worker(s) -> ClickHouse, on servers it starts itself.

Measures, and prints (no assertions: figures depend on the machine):

1. throughput of one worker: events/s from the first to the last processed event of a pre-published
   simulated campaign, and until the final stage numbers are visible in ClickHouse;
2. the same with two workers sharing the partitions;
3. end-to-end latency at a steady publishing rate (default 1,000 events/s): from the moment an event
   is handed to the producer to the moment ClickHouse's stage row counts it (p50, p99, max);
4. worker memory: resident set size growth per 100,000 jobs of state (the worker of run 1);
5. recovery: a worker restarted on run 1's workdir (RocksDB tables: it reopens its local state and reads
   only the changelog tail) and one started on an empty workdir (every partition from the changelog):
   seconds from start to "tables recovered" and changelog records read.

Usage:  python bench/stream_bench.py [--preset nova-talk] [--partitions 8] [--rate 1000] [--latency-s 60]
                                     [--table-store rocksdb|memory] [--skip one,two,latency,recovery]
                                     [--profile-out worker.prof [--profile-top 25]]

``--profile-out`` runs the worker of run 1 under cProfile (its event-loop thread: the agents, Faust and
the consumer) and prints the top functions by own and cumulative time, and the worker's last
``worker.memory`` log line (RSS, Python heap, memory glibc holds free). bench/worker_profile.py profiles
the pure steps without servers.

It starts a Kafka broker and a ClickHouse server from stagewatch.devservers in a temporary directory on
free ports, and stops them (by pid) at the end.
"""

from __future__ import annotations

import argparse
import bisect
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import msgspec
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.kafka_io import SafeProducer, Topics, create_topics  # noqa: E402
from ingest.simulator import PRESETS, simulate_many  # noqa: E402
from processors.engine import Engine  # noqa: E402
from processors.faust.memory import proc_status_mib  # noqa: E402
from schemas.events import JobEvent, encode_event, event_key  # noqa: E402
from stagewatch import devservers  # noqa: E402
from stagewatch.devservers.ports import free_ports  # noqa: E402
from stagewatch.store import open_store  # noqa: E402

CLI = [sys.executable, "-c", "from stagewatch.cli import main; main()"]
# The same, under cProfile (written when the worker ends, also on SIGTERM: typer's exit is a SystemExit).
PROFILED_CLI = [sys.executable, "-c", "import cProfile, sys\n"
                "from stagewatch.cli import main\n"
                "out = sys.argv.pop(1)\n"
                "p = cProfile.Profile()\n"
                "p.enable()\n"
                "try:\n    main()\nfinally:\n    p.disable()\n    p.dump_stats(out)\n"]
# The workers import the code of this checkout, not whatever stagewatch is installed (`python -c` puts the
# working directory, not the checkout, first on sys.path): a figure belongs to the tree that printed it.
CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))


TABLE_STORE = ["--table-store", "rocksdb"]  # set from --table-store in main()


class Worker:
    def __init__(self, kafka: str, store: str, app_id: str, prefix: str, workdir: Path, *extra: str,
                 log_name: str = "worker.log", profile: str | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        self.log_path = workdir / log_name
        self.log = open(self.log_path, "ab")
        self.started = time.perf_counter()
        cli = [*PROFILED_CLI, profile] if profile else CLI
        self.proc = subprocess.Popen(
            [*cli, "worker", "--kafka", kafka, "--store", store, "--app-id", app_id, "--topic-prefix", prefix,
             "--workdir", str(workdir), "--metrics-port", str(self.port), *TABLE_STORE, *extra],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env=CHILD_ENV)

    def processed(self) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("stagewatch_events_processed_total") and "stagewatch." in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def idle_rss(kafka: str, store_url: str, partitions: int, work: Path) -> float:
    """RSS of a worker that has started, joined its group and recovered (empty) tables: the baseline."""
    topics = Topics("bench-idle.")
    create_topics(kafka, partitions, 1, topics=topics)
    w = Worker(kafka, store_url, "bench-idle", topics.prefix, work / "idle-w0")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and b"worker.stage_rebuilt" not in w.log_path.read_bytes():
            time.sleep(0.2)
        time.sleep(2.0)  # let start-up allocations settle
        return proc_status_mib("VmRSS", w.proc.pid)
    finally:
        w.stop()


def stage_events(store: Any, campaigns: set[str]) -> dict[tuple[str, str], int]:
    names = ", ".join(f"'{c}'" for c in sorted(campaigns))
    rows = store.query(f"SELECT campaign, stage, events FROM stage_numbers FINAL WHERE campaign IN ({names})")
    return {(r["campaign"], r["stage"]): int(r["events"]) for r in rows}


def renamed(events: list[Any], tag: str) -> list[Any]:
    """The same events under campaign names of their own, so every run has its own stage rows."""
    return [msgspec.structs.replace(ev, campaign=f"{ev.campaign}-{tag}") for ev in events]


def publish_all(kafka: str, topics: Topics, events: list[Any]) -> float:
    p = SafeProducer(kafka, client_id="bench", linger_ms=20)
    t0 = time.perf_counter()
    for ev in events:
        p.produce(topics.for_event(ev), encode_event(ev), event_key(ev))
    p.flush()
    return time.perf_counter() - t0


def throughput_run(kafka: str, store_url: str, events: list[Any], expected: dict[tuple[str, str], int],
                   partitions: int, workers: int, work: Path, tag: str, profile: str | None = None) -> dict[str, Any]:
    topics = Topics(f"bench-{tag}.")
    create_topics(kafka, partitions, 1, topics=topics)
    events = renamed(events, tag)
    expected = {(f"{c}-{tag}", s): n for (c, s), n in expected.items()}
    pub_s = publish_all(kafka, topics, events)
    ws = [Worker(kafka, store_url, f"bench-{tag}", topics.prefix, work / f"{tag}-w{i}",
                 profile=profile if i == 0 else None) for i in range(workers)]
    store = open_store(store_url)
    total = len(events)
    t_first = t_last = t_numbers = None
    deadline = time.monotonic() + 1800
    try:
        while time.monotonic() < deadline:
            done = sum(w.processed() for w in ws)
            now = time.perf_counter()
            if done > 0 and t_first is None:
                t_first = now
            if done >= total and t_last is None:
                t_last = now
            if t_last is not None and stage_events(store, {c for c, _ in expected}) == expected:
                t_numbers = time.perf_counter()
                break
            if any(w.proc.poll() is not None for w in ws):
                raise SystemExit(f"a worker exited: see {work}")
            time.sleep(0.1)
        rss_end = proc_status_mib("VmRSS", ws[0].proc.pid)
    finally:
        for w in ws:
            w.stop()
        store.close()
    assert t_first is not None and t_last is not None and t_numbers is not None, "the run did not finish"
    memory_lines = [x for x in ws[0].log_path.read_text(errors="replace").splitlines() if "worker.memory " in x]
    return {"events": total, "publish_s": pub_s, "process_s": t_last - t_first,
            "memory_line": memory_lines[-1].split("worker.memory ", 1)[1] if memory_lines else "",
            "events_per_s": total / (t_last - t_first), "to_numbers_s": t_numbers - t_first,
            "rss_end_mb": rss_end, "prefix": topics.prefix, "app_id": f"bench-{tag}", "workdir": work / f"{tag}-w0"}


def recovery_run(kafka: str, store_url: str, app_id: str, prefix: str, workdir: Path, log_name: str) -> dict[str, Any]:
    """Start a worker on `workdir` and time it until its tables are recovered (its worker.recovered line)."""
    w = Worker(kafka, store_url, app_id, prefix, workdir, log_name=log_name)
    try:
        deadline = time.monotonic() + 1800
        line = ""
        while time.monotonic() < deadline and not line:
            if w.proc.poll() is not None:
                raise SystemExit(f"the recovering worker exited: see {w.log_path}")
            line = next((x for x in w.log_path.read_text(errors="replace").splitlines() if "worker.recovered " in x), "")
            time.sleep(0.05)
        seconds = time.perf_counter() - w.started
        rss = proc_status_mib("VmRSS", w.proc.pid)
    finally:
        w.stop()
    if not line:
        raise SystemExit(f"the worker did not recover within 30 minutes: see {w.log_path}")
    field = line.split("changelog_records_read=")[1].split()[0]
    read = sum(int(part.split(":")[1]) for part in field.split(","))
    return {"seconds": seconds, "records_read": read, "detail": field, "rss_mb": rss}


def latency_run(kafka: str, store_url: str, events: list[Any], rate: float, seconds: float, partitions: int,
                work: Path) -> dict[str, float]:
    """Publish at `rate` events/s; for each new event, the time until ClickHouse's stage row counts it."""
    topics = Topics("bench-lat.")
    create_topics(kafka, partitions, 1, topics=topics)
    events = renamed(events[: int(rate * seconds)], "lat")
    # for every event: its stage and the stage's distinct-event count once it is in (None for a duplicate)
    seen: set[str] = set()
    counts: dict[tuple[str, str], int] = {}
    need: list[tuple[tuple[str, str], int] | None] = []
    for ev in events:
        key = (ev.campaign, ev.stage)
        if ev.event_id in seen:
            need.append(None)
            continue
        seen.add(ev.event_id)
        counts[key] = counts.get(key, 0) + 1
        need.append((key, counts[key]))
    w = Worker(kafka, store_url, "bench-lat", topics.prefix, work / "lat-w0", "--batch-within", "0.2",
               "--stage-flush", "0.5")
    store = open_store(store_url)
    producer = SafeProducer(kafka, client_id="bench-lat", linger_ms=5)
    # warm up: wait until the worker has joined its group (it processes a first event)
    warm = JobEvent(event_id="bench-warm-up", ts=1.0, campaign="bench-warm-up", stage="warm-up", job_id="w",
                    type="submitted")
    producer.produce(topics.for_event(warm), encode_event(warm), event_key(warm))
    producer.flush()
    t_wait = time.monotonic() + 120
    while w.processed() < 1 and time.monotonic() < t_wait:
        time.sleep(0.1)
    published_at: list[float] = [0.0] * len(events)
    observations: dict[tuple[str, str], list[tuple[float, int]]] = {k: [] for k in counts}
    stop = threading.Event()
    campaigns = {k[0] for k in counts}

    def poll_clickhouse() -> None:
        poller = open_store(store_url)
        while not stop.is_set():
            t = time.perf_counter()
            for k, n in stage_events(poller, campaigns).items():
                obs = observations.setdefault(k, [])
                if not obs or n > obs[-1][1]:
                    obs.append((t, n))
            time.sleep(0.05)
        poller.close()

    th = threading.Thread(target=poll_clickhouse, daemon=True)
    th.start()
    t0 = time.perf_counter()
    for i, ev in enumerate(events):
        target = t0 + i / rate
        while True:
            now = time.perf_counter()
            if now >= target:
                break
            producer.poll(min(target - now, 0.01))
        producer.produce(topics.for_event(ev), encode_event(ev), event_key(ev))
        published_at[i] = time.perf_counter()
    producer.flush()
    pub_s = time.perf_counter() - t0
    final = dict(counts)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        last = {k: (v[-1][1] if v else 0) for k, v in observations.items()}
        if all(last.get(k, 0) >= n for k, n in final.items()):
            break
        time.sleep(0.2)
    stop.set()
    th.join(5)
    w.stop()
    store.close()
    lat = []
    for i, n in enumerate(need):
        if n is None:
            continue
        key, c = n
        obs = observations.get(key, [])
        j = bisect.bisect_left([o[1] for o in obs], c)
        if j < len(obs):
            lat.append(obs[j][0] - published_at[i])
    lat.sort()
    q = statistics.quantiles(lat, n=100)
    return {"events": len(events), "rate": len(events) / pub_s, "measured": len(lat), "p50_s": q[49],
            "p99_s": q[98], "max_s": lat[-1]}


def print_profile(path: str, top: int) -> None:
    """The top functions of a worker's cProfile, by own time and by cumulative time."""
    import io
    import pstats

    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(path, stream=out).strip_dirs().sort_stats(order).print_stats(top)
        text = out.getvalue()
        print(f"\n## worker cProfile ({path}), top {top} by {order}\n{text[text.find('   ncalls'):]}", flush=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="nova-talk", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s for the latency run")
    ap.add_argument("--latency-s", type=float, default=60.0, help="length of the latency run")
    ap.add_argument("--skip", default="", help="comma-separated: one,two,latency,recovery")
    ap.add_argument("--table-store", default="rocksdb", choices=["rocksdb", "memory"],
                    help="the workers' table store (--table-store of `stagewatch worker`)")
    ap.add_argument("--profile-out", default=None, help="run 1's worker under cProfile, its profile written here")
    ap.add_argument("--profile-top", type=int, default=25, help="functions to print from --profile-out")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    TABLE_STORE[1] = args.table_store

    # SIGTERM (e.g. a CI timeout) must still run the `finally` that stops the servers.
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="stagewatch-stream-bench-"))
    print(f"# servers and worker logs under {work}", flush=True)
    kp, kc, cp, ch = free_ports(4)
    state = devservers.up(work / "dev", kafka_port=kp, kafka_controller_port=kc, ch_port=cp, ch_http_port=ch)
    try:
        kafka, store_url = state.kafka_bootstrap, state.store_url
        t = time.perf_counter()
        events = list(simulate_many(PRESETS[args.preset](), args.seed))
        engine = Engine()
        engine.apply_all(events)
        engine.numbers(as_of=0)  # settles every stage
        expected = {key: st.totals.events for key, st in engine.stages.items()}
        jobs = sum(len(st.jobs) for st in engine.stages.values())
        files = sum(len(st.files) for st in engine.stages.values())
        print(f"# preset {args.preset}: {len(events):,} events, {jobs:,} jobs, {files:,} files, "
              f"{len(expected)} stages (simulated in {time.perf_counter() - t:.1f} s)", flush=True)
        print(f"# machine: {os.cpu_count()} cores; Kafka, ClickHouse, publisher and workers share them", flush=True)
        results: dict[str, Any] = {}
        if "one" not in skip:
            idle = idle_rss(kafka, store_url, args.partitions, work)
            r = results["one"] = throughput_run(kafka, store_url, events, expected, args.partitions, 1, work, "one",
                                                profile=args.profile_out)
            r["rss_idle_mb"] = idle
            print(f"1 worker : {r['events_per_s']:>9,.0f} events/s  ({r['events']:,} events processed in "
                  f"{r['process_s']:.1f} s; final numbers in ClickHouse after {r['to_numbers_s']:.1f} s; "
                  f"publishing took {r['publish_s']:.1f} s)", flush=True)
            grow = r["rss_end_mb"] - r["rss_idle_mb"]
            print(f"memory   : worker RSS {r['rss_idle_mb']:.0f} MB idle -> {r['rss_end_mb']:.0f} MB with the state "
                  f"of {jobs:,} jobs and {files:,} files: {grow / jobs * 100_000:,.0f} MB per 100,000 jobs "
                  f"(with their files; table store {args.table_store})", flush=True)
            if r["memory_line"]:
                print(f"memory   : the worker's last worker.memory line: {r['memory_line']}", flush=True)
            if args.profile_out:
                print_profile(args.profile_out, args.profile_top)
            if "recovery" not in skip:
                local = recovery_run(kafka, store_url, r["app_id"], r["prefix"], r["workdir"], "restart.log")
                scratch = recovery_run(kafka, store_url, r["app_id"], r["prefix"], work / "one-fresh",
                                       "worker.log")
                for what, rr in (("restart on its workdir", local), ("from scratch (empty workdir)", scratch)):
                    print(f"recovery : {what}: tables recovered {rr['seconds']:.1f} s after start, "
                          f"{rr['records_read']:,} changelog records read ({rr['detail']}), RSS {rr['rss_mb']:.0f} MB; "
                          f"state of {jobs:,} jobs and {files:,} files", flush=True)
        if "two" not in skip:
            r = results["two"] = throughput_run(kafka, store_url, events, expected, args.partitions, 2, work, "two")
            print(f"2 workers: {r['events_per_s']:>9,.0f} events/s  ({r['events']:,} events in {r['process_s']:.1f} s; "
                  f"final numbers after {r['to_numbers_s']:.1f} s)", flush=True)
        if "latency" not in skip:
            r = results["latency"] = latency_run(kafka, store_url, events, args.rate, args.latency_s,
                                                 args.partitions, work)
            print(f"latency  : at {r['rate']:,.0f} events/s for {r['events']:,} events, publish -> counted in "
                  f"ClickHouse: p50 {r['p50_s']:.2f} s, p99 {r['p99_s']:.2f} s, max {r['max_s']:.2f} s "
                  f"({r['measured']:,} new events measured)", flush=True)
    finally:
        devservers.down(work / "dev")
        print(f"# servers stopped; logs kept in {work}", flush=True)


if __name__ == "__main__":
    main()
