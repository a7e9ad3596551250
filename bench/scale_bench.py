"""The million-job figures, side by side with a POMS-style PostgreSQL (issue 9, section 3).

    python bench/scale_bench.py [--jobs 1000000] [--files-per-job 3] [--runs 20] [--skip server,poms]
                                [--stream] [--partitions 4] [--json figures.json]

What it does, printing progress and figures (it asserts nothing about time):

1. simulates ``--jobs`` job ids and ``--files-per-job`` times as many input files over many campaigns and
   stages (bench/scale_campaigns.py: the simulator's rules, evictions, recoveries, duplicates and
   reordering), written once as JSON lines and cached under $TMPDIR/stagewatch-bench;
2. replays them with the public replay API (``stagewatch.replay.replay_paths``) into a fresh chDB store
   and into a ClickHouse 18.16 server started on free ports (``stagewatch.devservers``), each replay in
   a child process whose peak RSS is its memory figure;
3. times, in a child process per store, median and p95 over ``--runs`` runs (after one warm-up run) of
   the CLI's reading functions (``stagewatch.reading``): the overview (``status``), ``files --bucket``
   and ``missing-files`` of the stage with most input files, ``jobs --sort restarts --limit 50``,
   ``job ID`` (the job with most restarts), and every panel and variable query of the Grafana overview
   and stage dashboards, expanded as Grafana does (dashboards/macros.py);
4. loads the same current state into a POMS-style PostgreSQL (bench/poms_pg.py, Debian's PostgreSQL 15
   started and stopped by bench/postgres_server.py) and times the overview computed by joins at page
   load; prints the ratio to stagewatch's overview, and CHECKS that both give the same numbers, and that
   chDB and the server give the same status: any difference is printed and the bench exits 1;
5. with ``--stream``, publishes the same lines to Kafka and counts them with 1 and then 2 faust-streaming
   workers into their own ClickHouse databases, until their numbers equal the embedded replay's
   (checked, as above): events/s and the workers' peak RSS;
6. reports each process's memory and each store's disk size per million events.

The query times are those of the reading functions in a warm process, not of a `stagewatch` process
(whose Python start-up, ~0.5 s, is the same for every command). The machine is shared and has 2 cores:
run it niced and read the figures as such. ``--skip`` takes any of chdb, server, poms, panels.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale_steps import AS_OF, child_poms, child_replay, child_time  # noqa: E402

GOAL_OVERVIEW_MS = 50.0
GOAL_DRILL_MS = 200.0
GOAL_RATIO = 100.0
SKIPPABLE = ("chdb", "server", "poms", "panels")
_T0 = time.monotonic()


class BenchFailure(SystemExit):
    """The two sides disagree (or a step failed): printed, and the bench exits 1."""


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f} s] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# memory and disk


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident set so far (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def du_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def per_million(value: float, events: int) -> float:
    return value / max(events, 1) * 1_000_000


# ------------------------------------------------------------------------------------------------
# 1. the events


def generate(jobs: int, files_per_job: float, seed: int, out: Path) -> int:
    """Write the simulated year as JSON lines (atomically: a half-written cache is never reused)."""
    from bench.scale_campaigns import scale_specs
    from ingest.simulator import simulate_many
    from schemas.events import encode_event

    specs = scale_specs(jobs, files_per_job)
    say(f"simulating {len(specs)} stages in {len({s.campaign for s in specs})} campaigns "
        f"(~{jobs:,} jobs, ~{round(jobs * files_per_job):,} input files) -> {out}")
    tmp = out.with_suffix(".tmp")
    n = 0
    with open(tmp, "wb") as fh:
        for ev in simulate_many(specs, seed):
            fh.write(encode_event(ev) + b"\n")
            n += 1
            if n % 1_000_000 == 0:
                say(f"  {n:,} events simulated")
    tmp.rename(out)
    return n


# ------------------------------------------------------------------------------------------------
# child processes: each measured step in its own process, so its peak RSS is its own


def run_child(*args: str, timeout: float = 7200) -> dict[str, Any]:
    """Run one measured step in a niced child process; its progress lines are shown as they come."""
    import threading

    cmd = ["nice", "-n", "10", sys.executable, str(Path(__file__).resolve()), "--child", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    err: list[str] = []

    def pump() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            if line.startswith("[progress]"):
                say("  " + line[len("[progress] "):].rstrip())
            else:
                err.append(line)

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    timer = threading.Timer(timeout, proc.kill)  # a step that hangs is ended by its own pid
    timer.start()
    try:
        out = proc.stdout.read()  # type: ignore[union-attr]
        proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    th.join(10)
    if proc.returncode != 0:
        raise BenchFailure(f"step {args[0]} failed (exit {proc.returncode}):\n{''.join(err)[-4000:]}")
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# checks


def status_diffs(a: list[dict[str, Any]], b: list[dict[str, Any]], a_name: str, b_name: str) -> list[str]:
    """Every number that differs between two `status` results (same stages, same numbers)."""
    ka = {(s["campaign"], s["stage"]): s for s in a}
    kb = {(s["campaign"], s["stage"]): s for s in b}
    out = [f"{c}/{s}: only in {a_name}" for c, s in sorted(ka.keys() - kb.keys())]
    out += [f"{c}/{s}: only in {b_name}" for c, s in sorted(kb.keys() - ka.keys())]
    for key in sorted(ka.keys() & kb.keys()):
        for name, value in ka[key].items():
            if kb[key].get(name) != value:
                out.append(f"{key[0]}/{key[1]} {name}: {a_name} {value!r} != {b_name} {kb[key].get(name)!r}")
    return out


def fail_if(diffs: list[str], what: str) -> None:
    if diffs:
        lines = "\n  ".join(diffs[:50])
        more = f"\n  ... and {len(diffs) - 50} more" if len(diffs) > 50 else ""
        raise BenchFailure(f"CHECK FAILED: {what}: {len(diffs)} difference(s):\n  {lines}{more}")
    say(f"check: {what}: same numbers")


# ------------------------------------------------------------------------------------------------
# printing


def print_timings(label: str, r: dict[str, Any]) -> None:
    say(f"{label}: query times over {r['timings']['status']['runs']} runs (median / p95):")
    for name, t in r["timings"].items():
        goal = GOAL_OVERVIEW_MS if name == "status" else GOAL_DRILL_MS
        rows = f", {t['rows']:,} rows" if "rows" in t else ""
        mark = "ok" if t["median_ms"] < goal else f"OVER the {goal:.0f} ms goal"
        print(f"    {name:<45} {t['median_ms']:8.1f} / {t['p95_ms']:8.1f} ms{rows}  [{mark}]", flush=True)
    if r.get("parts"):
        print("    active parts (FINAL merges them at read time): "
              + ", ".join(f"{t} {n}" for t, n in sorted(r["parts"].items())), flush=True)
    if r["panels"]:
        worst = max(r["panels"].items(), key=lambda kv: kv[1]["median_ms"])
        over = [n for n, t in r["panels"].items() if t["median_ms"] >= GOAL_DRILL_MS]
        print(f"    {len(r['panels'])} Grafana panel/variable queries: slowest {worst[0]!r} "
              f"{worst[1]['median_ms']:.1f} / {worst[1]['p95_ms']:.1f} ms; {len(over)} over {GOAL_DRILL_MS:.0f} ms",
              flush=True)
        for name, t in sorted(r["panels"].items()):
            print(f"      {name:<60} {t['median_ms']:8.1f} / {t['p95_ms']:8.1f} ms, {t['rows']:,} rows", flush=True)


# ------------------------------------------------------------------------------------------------
# the servers


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports free now (bound to port 0 together, then released)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_clickhouse(dev_dir: Path) -> Any:
    from stagewatch import devservers

    for attempt in range(3):
        a, b = free_ports(2)
        try:
            return devservers.up(dev_dir, only="clickhouse", ch_port=a, ch_http_port=b)
        except devservers.PortTakenError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def stream_run(store_url: str, kafka: str, path: Path, workers: int, partitions: int,
               expected: list[dict[str, Any]], work: Path, timeout_s: float) -> dict[str, Any]:
    """Publish the lines, then count them with `workers` workers into a ClickHouse server of their own.

    Done when the server's `status` equals the embedded replay's (`expected`), every number: the event
    counts arrive first, the links from outputs to their parents a little later.
    """
    from bench.stream_bench import Worker
    from ingest.kafka_io import Topics, create_topics
    from stagewatch.reading import read_status
    from stagewatch.store import open_store

    tag = f"scale-w{workers}"
    topics = Topics(f"{tag}.")
    create_topics(kafka, partitions, 1, topics=topics)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from stagewatch.cli import main; main()", "publish", str(path),
                    "--kafka", kafka, "--topic-prefix", topics.prefix], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    publish_s = time.perf_counter() - t
    say(f"  published {path.name} in {publish_s:.0f} s; starting {workers} worker(s)")
    ws = [Worker(kafka, store_url, tag, topics.prefix, work / f"{tag}-{i}") for i in range(workers)]
    t0 = time.perf_counter()
    peak = [0.0] * workers
    done_s = None
    diffs: list[str] = []
    try:
        with open_store(store_url) as st:
            deadline = time.monotonic() + timeout_s
            last_say = time.monotonic()
            while time.monotonic() < deadline:
                peak = [max(p, peak_rss_mib(w.proc.pid)) for p, w in zip(peak, ws)]
                got = read_status(st, as_of=AS_OF)["stages"]
                diffs = status_diffs(expected, got, "embedded replay", f"{workers} worker(s)")
                if not diffs:
                    done_s = time.perf_counter() - t0
                    break
                if any(w.proc.poll() is not None for w in ws):
                    raise BenchFailure(f"a worker exited early: see its log under {work}")
                if time.monotonic() - last_say > 30:
                    last_say = time.monotonic()
                    say(f"  {sum(s['events'] for s in got):,} of {sum(s['events'] for s in expected):,} "
                        f"distinct events counted; {len(diffs)} number(s) still differ")
                time.sleep(1.0)
    finally:
        for w in ws:
            w.stop()
    if done_s is None:
        fail_if(diffs, f"{workers} worker(s) reach the embedded replay's numbers within {timeout_s:.0f} s")
    lines = sum(1 for _ in open(path, "rb"))
    return {"workers": workers, "publish_s": publish_s, "seconds": done_s, "events_per_s": lines / done_s,
            "peak_rss_mib": peak}


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1_000_000, help="job ids to simulate (default 1,000,000)")
    ap.add_argument("--files-per-job", type=float, default=3.0, help="input files per job (default 3)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per query (default 20, after one warm-up)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip", default="", help=f"comma-separated steps to skip: {', '.join(SKIPPABLE)}")
    ap.add_argument("--stream", action="store_true", help="also count through Kafka with 1 and 2 workers")
    ap.add_argument("--partitions", type=int, default=4, help="partitions per topic with --stream")
    ap.add_argument("--stream-timeout", type=float, default=1800.0, help="seconds a worker run may take")
    ap.add_argument("--poms-max-s", type=float, default=300.0, help="stop timing POMS's overview after this")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "stagewatch-bench",
                    help="where the simulated lines are kept between runs")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        op, *rest = args.child
        out = {"replay": lambda: child_replay(*rest),
               "time": lambda: child_time(rest[0], int(rest[1]), rest[2] == "1"),
               "poms": lambda: child_poms(rest[0], rest[1], int(rest[2]), float(rest[3]))}[op]()
        print(json.dumps(out))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - set(SKIPPABLE)
    if unknown:
        ap.error(f"--skip: unknown step(s) {', '.join(sorted(unknown))}; choose from {', '.join(SKIPPABLE)}")
    if args.jobs < 1 or args.runs < 1 or args.files_per_job <= 0:
        ap.error("--jobs and --runs must be at least 1 and --files-per-job above 0")
    if "chdb" in skip and "server" in skip:
        ap.error("--skip chdb,server leaves no store to measure: keep at least one")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        figures = run(args, skip)
    except BenchFailure as exc:
        print(exc.code, file=sys.stderr, flush=True)
        return 1
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0


def run(args: argparse.Namespace, skip: set[str]) -> dict[str, Any]:
    from bench import poms_pg, postgres_server
    from stagewatch import devservers

    say(f"machine: {os.cpu_count()} cores, shared; every step runs niced")
    args.cache.mkdir(parents=True, exist_ok=True)
    data = args.cache / f"scale-{args.jobs}-{args.files_per_job:g}-{args.seed}.jsonl"
    if not data.exists():
        t = time.perf_counter()
        n = generate(args.jobs, args.files_per_job, args.seed, data)
        say(f"simulated {n:,} events in {time.perf_counter() - t:.0f} s ({data.stat().st_size / 1e6:,.0f} MB)")
    lines = sum(1 for _ in open(data, "rb"))
    say(f"input: {data} ({lines:,} lines, {data.stat().st_size / 1e6:,.0f} MB)")
    figures: dict[str, Any] = {"jobs_target": args.jobs, "lines": lines, "runs": args.runs}
    work = Path(tempfile.mkdtemp(prefix="stagewatch-scale-"))
    say(f"stores and servers under {work}")
    stores: dict[str, str] = {}
    read_urls: dict[str, str] = {}
    state = None
    dev_dirs: list[Path] = []  # every devservers directory started, stopped at the end whatever happens
    try:
        if "chdb" not in skip:
            stores["chdb"] = read_urls["chdb"] = f"chdb:{work / 'chdb'}"
        if "server" not in skip:
            dev_dirs.append(work / "dev")
            state = start_clickhouse(work / "dev")
            say(f"ClickHouse 18.16 server on port {state.clickhouse['tcp_port']} (pid {state.clickhouse['pid']})")
            if "server" not in skip:
                stores["server"], read_urls["server"] = state.store_url, state.readonly_store_url
        results: dict[str, dict[str, Any]] = {}
        for name, url in stores.items():
            say(f"replaying into {name} ...")
            rep = run_child("replay", url, str(data))
            if name == "chdb":
                rep["disk_bytes"] = du_bytes(work / "chdb")
            else:
                rep["disk_bytes"] = du_bytes(work / "dev" / "clickhouse" / "data" / "data" / devservers.CH_DATABASE)
                rep["server_peak_rss_mib"] = peak_rss_mib(state.clickhouse["pid"])
            say(f"{name}: {rep['lines']:,} lines ({rep['new_events']:,} distinct events, {rep['duplicates']:,} "
                f"duplicates, {rep['stages']} stages) in {rep['seconds']:.0f} s = {rep['events_per_s']:,.0f} "
                f"events/s; replay peak RSS {rep['peak_rss_mib']:,.0f} MiB; store on disk "
                f"{rep['disk_bytes'] / 2**20:,.0f} MiB = {per_million(rep['disk_bytes'], lines) / 2**20:,.0f} "
                f"MiB per million events" + (f"; server peak RSS {rep['server_peak_rss_mib']:,.0f} MiB"
                                             if name == "server" else ""))
            say(f"timing reads on {name} ({args.runs} runs each) ...")
            tm = run_child("time", read_urls[name], str(args.runs), "1" if "panels" in skip else "0")
            rep.update(tm)
            if name == "server":
                rep["server_peak_rss_mib"] = peak_rss_mib(state.clickhouse["pid"])
            print_timings(name, rep)
            say(f"{name}: timing process peak RSS {rep['peak_rss_mib']:,.0f} MiB")
            results[name] = rep
        figures["stores"] = results
        first = next(iter(results))
        jobs = sum(s["jobs"] for s in results[first]["status"])
        files = sum(s["input_files"] for s in results[first]["status"])
        say(f"state: {jobs:,} jobs, {files:,} input files in {len(results[first]['status'])} stages")
        figures.update(jobs=jobs, input_files=files)
        if len(results) == 2:
            fail_if(status_diffs(results["chdb"]["status"], results["server"]["status"], "chDB", "server"),
                    "status on chDB equals status on the ClickHouse server")

        if "poms" not in skip:
            say("starting PostgreSQL 15 for the POMS-style database ...")
            with postgres_server.running_postgres() as pg:
                say(f"PostgreSQL on port {pg.port} (pid {pg.pid}); loading the current state of {first}")
                pr = run_child("poms", read_urls[first], pg.dsn, str(args.runs), str(args.poms_max_s))
                pr["server_rss_mib"] = pg.rss_mib()
                pr["disk_bytes"] = pg.disk_bytes()
            figures["poms"] = {k: v for k, v in pr.items() if k != "rows"}
            o = pr["overview"]
            say(f"POMS-style: loaded {pr['counts']} in {pr['load_s']:.0f} s; database on disk "
                f"{pr['disk_bytes'] / 2**20:,.0f} MiB; PostgreSQL RSS {pr['server_rss_mib']:,.0f} MiB")
            say(f"POMS-style overview by joins at page load: median {o['median_ms']:,.1f} ms, p95 "
                f"{o['p95_ms']:,.1f} ms over {o['runs']} runs")
            for name, rep in results.items():
                ours = rep["timings"]["status"]["median_ms"]
                ratio = o["median_ms"] / max(ours, 1e-6)
                figures["poms"][f"ratio_{name}"] = ratio
                say(f"ratio: stagewatch status on {name} ({ours:.1f} ms) is {ratio:,.0f}x faster than the "
                    f"POMS-style overview (goal >= {GOAL_RATIO:.0f}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'})")
            fail_if(poms_pg.compare(pr["rows"], results[first]["status"]),
                    "the POMS-style overview equals stagewatch's status")

        if args.stream:
            say("starting Kafka for the streaming runs ...")
            a, b = free_ports(2)
            dev_dirs.append(work / "kafka")
            kafka_state = devservers.up(work / "kafka", only="kafka", kafka_port=a, kafka_controller_port=b)
            expected = results[first]["status"]
            for n in (1, 2):
                dev_dirs.append(work / f"dev-w{n}")
                ch = start_clickhouse(dev_dirs[-1])  # a server of its own: the numbers start from nothing
                say(f"stream with {n} worker(s) into a new ClickHouse server (pid {ch.clickhouse['pid']}) ...")
                sr = stream_run(ch.store_url, kafka_state.kafka_bootstrap, data, n, args.partitions, expected,
                                work, args.stream_timeout)
                sr["server_peak_rss_mib"] = peak_rss_mib(ch.clickhouse["pid"])
                say(f"check: status after {n} worker(s) equals the embedded replay's: same numbers")
                figures[f"stream_{n}"] = sr
                say(f"{n} worker(s): {sr['events_per_s']:,.0f} events/s ({lines:,} lines counted in "
                    f"{sr['seconds']:.0f} s after publishing, which took {sr['publish_s']:.0f} s); worker peak RSS "
                    + ", ".join(f"{m:,.0f} MiB" for m in sr["peak_rss_mib"]))
    finally:
        for d in reversed(dev_dirs):
            devservers.down(d)
        if dev_dirs:
            say("servers stopped")
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    say("done")
    return figures


if __name__ == "__main__":
    sys.exit(main())
