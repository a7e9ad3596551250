"""The million-job figures, side by side with a POMS-style PostgreSQL (issue 9, section 3).

    python bench/scale_bench.py [--jobs 1000000] [--files-per-job 3] [--runs 20] [--time-budget-s 60]
                                [--skip server,poms] [--stream] [--partitions 4] [--json figures.json]

What it does, printing progress and figures (it asserts nothing about time):

1. simulates ``--jobs`` job ids and ``--files-per-job`` times as many input files over many campaigns and
   stages (bench/scale_campaigns.py: the simulator's rules, evictions, recoveries, duplicates and
   reordering), in two processes merged in the simulator's order, written once as JSON lines and cached
   under $TMPDIR/stagewatch-bench;
2. replays them with the public replay API (``stagewatch.replay.replay_paths``) into a fresh chDB store
   and into a ClickHouse 18.16 server started on free ports (``stagewatch.devservers``) *at the same
   time*, each replay in a child process of its own (one core each) whose peak RSS is its memory figure;
3. times, in a child process per store, one store after the other, median and p95 over ``--runs`` runs
   (after one warm-up run) of the CLI's reading functions (``stagewatch.reading``) as the CLI calls
   them: the compact overview (``status``: no forecast query) and ``status --wide/--format json`` (with
   the forecast), ``files --bucket`` and ``missing-files`` of the stage with most input files, ``jobs
   --sort restarts --limit 50``, ``job ID`` (the job with most restarts), and every panel and variable
   query of the Grafana overview and stage dashboards, expanded as Grafana does (dashboards/macros.py).
   A query stops being timed after ``--time-budget-s`` (warm-up included, at least one timed run): its
   median is over the runs made, and the output says how many;
4. loads the same current state into a POMS-style PostgreSQL (bench/poms_pg.py, Debian's PostgreSQL 15
   started and stopped by bench/postgres_server.py) and times the overview computed by joins at page
   load (under the same budget, ``--poms-max-s``); prints the ratio to stagewatch's overview, and CHECKS
   that both give the same numbers, and that chDB and the server give the same status: any difference
   is printed and the bench exits 1;
5. with ``--stream``, publishes the same lines to Kafka and counts them with 1 and then 2 faust-streaming
   workers into their own ClickHouse databases, until their numbers equal the embedded replay's
   (checked, as above): events/s and the workers' peak RSS;
6. reports each process's memory and each store's disk size per million events, and ends with a table
   of the steps' wall times and the total (goal at 1,000,000 jobs on the 2-core machine: under 30 min).

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

from bench.scale_procs import (  # noqa: E402
    BenchFailure, Steps, cpu_seconds, peak_rss_mib, restart_clock, run_child, run_children, say, since_start)
from bench.scale_steps import (  # noqa: E402
    AS_OF, STATUS, STATUS_WIDE, child_poms, child_replay, child_simulate, child_time)
from stagewatch.devservers.ports import free_ports  # noqa: E402

GOAL_OVERVIEW_MS = 50.0
GOAL_DRILL_MS = 200.0
GOAL_RATIO = 100.0
SKIPPABLE = ("chdb", "server", "poms", "panels")


# ------------------------------------------------------------------------------------------------
# disk


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


def generate(jobs: int, files_per_job: float, seed: int, out: Path, parts: int = 2) -> int:
    """Write the simulated year as JSON lines (atomically: a half-written cache is never reused).

    The stages are simulated in ``parts`` child processes (one a core), each writing its stages' lines
    with their sort key, then merged here in ``simulate_many``'s order: the same file as one process
    writes, in about half the time.
    """
    from bench.scale_campaigns import scale_specs

    specs = scale_specs(jobs, files_per_job)
    parts = max(1, min(parts, len(specs)))
    say(f"simulating {len(specs)} stages in {len({s.campaign for s in specs})} campaigns "
        f"(~{jobs:,} jobs, ~{round(jobs * files_per_job):,} input files) in {parts} processes -> {out}")
    files = [out.with_suffix(f".part{k}") for k in range(parts)]
    tmp = out.with_suffix(".tmp")
    try:
        run_children({f"simulate {k + 1}/{parts}": ("simulate", str(jobs), str(files_per_job), str(seed), str(k),
                                                    str(parts), str(f)) for k, f in enumerate(files)})
        say(f"merging the {parts} parts in delivery order ...")
        n = merge_parts(files, tmp)
        tmp.rename(out)
    finally:
        for f in files + [tmp]:
            f.unlink(missing_ok=True)
    return n


def merge_parts(files: list[Path], out: Path) -> int:
    """Merge keyed part files (bench/scale_steps.py ``child_simulate``) into plain JSON lines, in key order."""
    import heapq

    from bench.scale_steps import SIM_KEY_LEN

    n = 0
    handles = [open(f, "rb", buffering=1 << 20) for f in files]
    try:
        with open(out, "wb", buffering=1 << 20) as fh:
            write = fh.write
            for line in heapq.merge(*handles):  # fixed-width keys: byte order is the merge order
                write(line[SIM_KEY_LEN:])
                n += 1
    finally:
        for h in handles:
            h.close()
    return n


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


def _runs(t: dict[str, Any]) -> str:
    return f"{t['runs']} run(s), stopped by the time budget" if t.get("budget_hit") else f"{t['runs']} runs"


def fmt_ratio(ratio: float) -> str:
    """A speed-up as the output prints it: whole times from 10x, else two significant digits (0.38x)."""
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def goal_ms(name: str) -> float:
    """The goal of a read: the overview (compact or wide) under 50 ms, each drill-down under 200 ms."""
    return GOAL_OVERVIEW_MS if name in (STATUS, STATUS_WIDE) else GOAL_DRILL_MS


def print_timings(label: str, r: dict[str, Any], runs: int, budget_s: float) -> None:
    say(f"{label}: query times, median / p95 over up to {runs} runs each (a query stops being timed after "
        f"{budget_s:g} s):")
    for name, t in r["timings"].items():
        goal = goal_ms(name)
        rows = f", {t['rows']:,} rows" if "rows" in t else ""
        mark = "ok" if t["median_ms"] < goal else "OVER"
        print(f"    {name:<45} {t['median_ms']:9.1f} / {t['p95_ms']:9.1f} ms{rows}, {_runs(t)}  "
              f"[goal < {goal:.0f} ms: {mark}]", flush=True)
    if r.get("parts"):
        print("    active parts (FINAL merges them at read time): "
              + ", ".join(f"{t} {n}" for t, n in sorted(r["parts"].items())), flush=True)
    if r["panels"]:
        worst = max(r["panels"].items(), key=lambda kv: kv[1]["median_ms"])
        over = [n for n, t in r["panels"].items() if t["median_ms"] >= GOAL_DRILL_MS]
        print(f"    {len(r['panels'])} Grafana panel/variable queries (goal < {GOAL_DRILL_MS:.0f} ms each): slowest "
              f"{worst[0]!r} {worst[1]['median_ms']:.1f} / {worst[1]['p95_ms']:.1f} ms; {len(over)} over the goal",
              flush=True)
        for name, t in sorted(r["panels"].items()):
            mark = "ok" if t["median_ms"] < GOAL_DRILL_MS else "OVER"
            print(f"      {name:<60} {t['median_ms']:9.1f} / {t['p95_ms']:9.1f} ms, {t['rows']:,} rows, {_runs(t)}"
                  f"  [{mark}]", flush=True)


# ------------------------------------------------------------------------------------------------
# the servers


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
                    # the status shape has no event count: jobs and input files say how far the workers got
                    say(f"  {sum(s['jobs'] for s in got):,} of {sum(s['jobs'] for s in expected):,} jobs and "
                        f"{sum(s['input_files'] for s in got):,} of {sum(s['input_files'] for s in expected):,} "
                        f"input files counted; {len(diffs)} number(s) still differ")
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
    ap.add_argument("--time-budget-s", type=float, default=60.0,
                    help="stop timing a query after this many seconds, after at least one run (default 60): "
                         "its median is over the runs made, and the output says how many")
    ap.add_argument("--poms-max-s", type=float, default=None,
                    help="the same budget for POMS's overview (default: --time-budget-s)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "stagewatch-bench",
                    help="where the simulated lines are kept between runs")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        op, *rest = args.child
        out = {"replay": lambda: child_replay(*rest),
               "simulate": lambda: child_simulate(int(rest[0]), float(rest[1]), int(rest[2]), int(rest[3]),
                                                  int(rest[4]), rest[5]),
               "time": lambda: child_time(rest[0], int(rest[1]), rest[2] == "1", float(rest[3])),
               "poms": lambda: child_poms(rest[0], rest[1], int(rest[2]), float(rest[3]))}[op]()
        print(json.dumps(out))
        return 0
    restart_clock()  # the wall time the step table adds up to: this run's, from its start
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - set(SKIPPABLE)
    if unknown:
        ap.error(f"--skip: unknown step(s) {', '.join(sorted(unknown))}; choose from {', '.join(SKIPPABLE)}")
    if args.jobs < 1 or args.runs < 1 or args.files_per_job <= 0 or args.time_budget_s <= 0:
        ap.error("--jobs and --runs must be at least 1, --files-per-job and --time-budget-s above 0")
    if args.poms_max_s is None:
        args.poms_max_s = args.time_budget_s
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


def input_lines(args: argparse.Namespace, steps: Steps) -> tuple[Path, int]:
    """The simulated lines (made once, cached with their line count) and how many there are."""
    args.cache.mkdir(parents=True, exist_ok=True)
    data = args.cache / f"scale-{args.jobs}-{args.files_per_job:g}-{args.seed}.jsonl"
    counted = data.with_suffix(".lines")
    t = since_start()
    if data.exists():
        note = f"cached: {data}"
    else:
        n = generate(args.jobs, args.files_per_job, args.seed, data)
        counted.write_text(f"{n}\n")
        note = f"{n:,} events simulated"
        say(f"simulated {n:,} events in {since_start() - t:.0f} s ({data.stat().st_size / 1e6:,.0f} MB)")
    try:
        lines = int(counted.read_text())
    except (OSError, ValueError):
        lines = sum(1 for _ in open(data, "rb"))
        counted.write_text(f"{lines}\n")
    steps.add("simulate", t, since_start(), note)
    return data, lines


def run(args: argparse.Namespace, skip: set[str]) -> dict[str, Any]:
    steps = Steps()
    figures: dict[str, Any] = {"jobs_target": args.jobs, "runs": args.runs, "time_budget_s": args.time_budget_s}
    try:
        measure(args, skip, steps, figures)
    finally:
        total = since_start()
        figures.update(steps=steps.rows, wall_s=total)
        steps.print_table(total, args.jobs)
    return figures


def measure(args: argparse.Namespace, skip: set[str], steps: Steps, figures: dict[str, Any]) -> None:
    from bench import poms_pg, postgres_server
    from stagewatch import devservers

    say(f"machine: {os.cpu_count()} cores, shared; every step runs niced")
    data, lines = input_lines(args, steps)
    say(f"input: {data} ({lines:,} lines, {data.stat().st_size / 1e6:,.0f} MB)")
    figures["lines"] = lines
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
            stores["server"], read_urls["server"] = state.store_url, state.readonly_store_url
        say(f"replaying into {' and '.join(stores)}" + (" at the same time (a child process each)"
                                                        if len(stores) > 1 else "") + " ...")
        server_cpu0 = cpu_seconds(state.clickhouse["pid"]) if state else 0.0
        results = run_children({name: ("replay", url, str(data)) for name, url in stores.items()})
        for name, rep in results.items():
            if name == "chdb":
                rep["disk_bytes"] = du_bytes(work / "chdb")
            else:
                rep["disk_bytes"] = du_bytes(work / "dev" / "clickhouse" / "data" / "data" / devservers.CH_DATABASE)
                rep["server_peak_rss_mib"] = peak_rss_mib(state.clickhouse["pid"])
                rep["server_cpu_s"] = cpu_seconds(state.clickhouse["pid"]) - server_cpu0
            cpu = rep["cpu_s"] + rep.get("server_cpu_s", 0.0)  # what it costs on a machine of its own
            rep["events_per_cpu_s"] = rep["lines"] / max(cpu, 1e-6)
            steps.add(f"replay {name}", rep["started"], rep["ended"], f"{rep['events_per_s']:,.0f} events/s, "
                      f"{cpu:,.0f} CPU s" + (", in parallel" if len(results) > 1 else ""))
            say(f"{name}: replay CPU {rep['cpu_s']:,.0f} s" + (f" + ClickHouse server CPU {rep['server_cpu_s']:,.0f} s"
                                                               if name == "server" else "")
                + f" = {rep['events_per_cpu_s']:,.0f} events per CPU second")
            say(f"{name}: {rep['lines']:,} lines ({rep['new_events']:,} distinct events, {rep['duplicates']:,} "
                f"duplicates, {rep['stages']} stages) in {rep['seconds']:.0f} s = {rep['events_per_s']:,.0f} "
                f"events/s; replay peak RSS {rep['peak_rss_mib']:,.0f} MiB; store on disk "
                f"{rep['disk_bytes'] / 2**20:,.0f} MiB = {per_million(rep['disk_bytes'], lines) / 2**20:,.0f} "
                f"MiB per million events" + (f"; server peak RSS {rep['server_peak_rss_mib']:,.0f} MiB"
                                             if name == "server" else ""))
            rep["replay_peak_rss_mib"] = rep["peak_rss_mib"]
        for name, rep in results.items():
            say(f"timing reads on {name} (up to {args.runs} runs each, {args.time_budget_s:g} s budget a query) ...")
            tm = run_child("time", read_urls[name], str(args.runs), "1" if "panels" in skip else "0",
                           str(args.time_budget_s), label=f"reads {name}")
            steps.add(f"reads {name}", tm.pop("started"), tm.pop("ended"))
            rep.update(tm)
            if name == "server":
                rep["server_peak_rss_mib"] = peak_rss_mib(state.clickhouse["pid"])
            print_timings(name, rep, args.runs, args.time_budget_s)
            say(f"{name}: timing process peak RSS {rep['peak_rss_mib']:,.0f} MiB")
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
            t = since_start()
            with postgres_server.running_postgres() as pg:
                say(f"PostgreSQL on port {pg.port} (pid {pg.pid}); loading the current state of {first}")
                pr = run_child("poms", read_urls[first], pg.dsn, str(args.runs), str(args.poms_max_s),
                               label="poms")
                pr["server_rss_mib"] = pg.rss_mib()
                pr["disk_bytes"] = pg.disk_bytes()
            reads_from = pr["ended"] - pr["reads_s"]
            steps.add("poms load", t, reads_from, "PostgreSQL start, schema and load")
            steps.add("poms reads", reads_from, since_start(), "overview by joins, then stop")
            figures["poms"] = {k: v for k, v in pr.items() if k != "rows"}
            o = pr["overview"]
            say(f"POMS-style: loaded {pr['counts']} in {pr['load_s']:.0f} s; database on disk "
                f"{pr['disk_bytes'] / 2**20:,.0f} MiB; PostgreSQL RSS {pr['server_rss_mib']:,.0f} MiB")
            say(f"POMS-style overview by joins at page load: median {o['median_ms']:,.1f} ms, p95 "
                f"{o['p95_ms']:,.1f} ms over {_runs(o)}")
            for name, rep in results.items():
                for view in (STATUS, STATUS_WIDE):
                    ours = rep["timings"][view]["median_ms"]
                    ratio = o["median_ms"] / max(ours, 1e-6)
                    figures["poms"][f"ratio_{name}" + ("" if view == STATUS else "_wide")] = ratio
                    say(f"ratio: stagewatch `{view}` on {name} ({ours:,.1f} ms) is {fmt_ratio(ratio)} faster than "
                        f"the POMS-style overview (goal >= {GOAL_RATIO:.0f}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'})")
            fail_if(poms_pg.compare(pr["rows"], results[first]["status"]),
                    "the POMS-style overview equals stagewatch's status")

        if args.stream:
            say("starting Kafka for the streaming runs ...")
            a, b = free_ports(2)
            dev_dirs.append(work / "kafka")
            kafka_state = devservers.up(work / "kafka", only="kafka", kafka_port=a, kafka_controller_port=b)
            expected = results[first]["status"]
            for n in (1, 2):
                t = since_start()
                dev_dirs.append(work / f"dev-w{n}")
                ch = start_clickhouse(dev_dirs[-1])  # a server of its own: the numbers start from nothing
                say(f"stream with {n} worker(s) into a new ClickHouse server (pid {ch.clickhouse['pid']}) ...")
                sr = stream_run(ch.store_url, kafka_state.kafka_bootstrap, data, n, args.partitions, expected,
                                work, args.stream_timeout)
                sr["server_peak_rss_mib"] = peak_rss_mib(ch.clickhouse["pid"])
                steps.add(f"stream {n} worker(s)", t, since_start(), f"{sr['events_per_s']:,.0f} events/s")
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


if __name__ == "__main__":
    sys.exit(main())
