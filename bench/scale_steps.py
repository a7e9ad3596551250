"""The measured steps of bench/scale_bench.py, each run in a child process of its own.

Each step opens the store itself and reports its own peak RSS, so the figure is that step's memory, not
the orchestrator's. Steps talk to the orchestrator by one JSON line on stdout and "[progress] ..." lines
on stderr. Reads go through the CLI's reading functions (stagewatch.reading) and the replay through the
public replay API (stagewatch.replay.replay_paths), so the figures follow whatever those become.
"""

from __future__ import annotations

import heapq
import math
import os
import resource
import statistics
import struct
import sys
import time
from typing import Any, Callable

from ingest.simulator import TALK_NOW

# `stagewatch jobs --sort restarts` (stagewatch/cli.py's order for that choice)
RESTARTS_ORDER = "restarts DESC, badput_core_hours DESC, job_id"
AS_OF = TALK_NOW  # every simulated stage ends its observation at the talk's "now"


def _progress(msg: str) -> None:
    print(f"[progress] {msg}", file=sys.stderr, flush=True)


def child_replay(url: str, path: str) -> dict[str, Any]:
    from stagewatch.replay import replay_paths
    from stagewatch.store import open_store

    size = os.path.getsize(path)
    t0 = time.perf_counter()
    done = [0, time.monotonic()]

    def progress(nbytes: int) -> None:
        done[0] += nbytes
        if time.monotonic() - done[1] > 30:
            done[1] = time.monotonic()
            took = time.perf_counter() - t0
            left = took * (size - done[0]) / max(done[0], 1)
            _progress(f"replay {100 * done[0] / size:.0f} % of the input after {took:,.0f} s "
                      f"(about {left:,.0f} s left at this rate)")

    with open_store(url) as st:
        report = replay_paths(st, [path], progress=progress)
        (row,) = st.query("SELECT count() AS n FROM raw_events")
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)  # chDB's threads included: it runs in this process
    return {"lines": report.lines, "new_events": report.new_events, "duplicates": report.duplicates,
            "invalid": len(report.invalid), "stages": len(report.stages), "raw_rows": int(row["n"]),
            "seconds": wall, "events_per_s": report.lines / wall, "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# A simulated line in a part file: this sort key, then the event's JSON line. The key is
# ``ingest.simulator.simulate_many``'s merge order (delivery time, stage index, seq, copy) as fixed-width
# hex of big-endian numbers (a positive IEEE double's bytes sort like its value), so merging the parts
# as plain byte strings gives exactly ``simulate_many``'s order.
SIM_KEY_LEN = 16 + 8 + 16 + 2


def sim_key(delivery: float, index: int, seq: int, copy: int) -> bytes:
    return struct.pack(">dIQB", delivery, index, seq, copy).hex().encode()


def child_simulate(jobs: int, files_per_job: float, seed: int, part: int, parts: int, out: str) -> dict[str, Any]:
    """Simulate every ``parts``-th stage of the scale bench's year (from ``part``) into ``out``, keyed lines.

    Each stage's stream depends only on its spec, the seed and its index (``stage_stream``, the
    per-stage generator ``simulate_many`` merges), so the stages can be simulated in separate processes
    and merged afterwards (bench/scale_bench.py ``generate``): the same lines, in the same order, on both
    cores.
    """
    from bench.scale_campaigns import scale_specs
    from ingest.simulator import stage_stream  # simulate_many without its merge (which drops the sort key)
    from schemas.events import encode_event

    specs = scale_specs(jobs, files_per_job)
    streams = [stage_stream(spec, seed, i, None) for i, spec in enumerate(specs) if i % parts == part]
    n = 0
    with open(out, "wb") as fh:
        for delivery, index, seq, copy, ev in heapq.merge(*streams):
            fh.write(sim_key(delivery, index, seq, copy) + encode_event(ev) + b"\n")
            n += 1
            if n % 1_000_000 == 0:
                _progress(f"{n:,} events simulated")
    return {"events": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def stats_ms(samples: list[float]) -> dict[str, float]:
    """Median and p95 (nearest rank) in milliseconds."""
    s = sorted(samples)
    return {"median_ms": statistics.median(s) * 1000, "p95_ms": s[max(0, math.ceil(0.95 * len(s)) - 1)] * 1000,
            "runs": len(s)}


def timed(fn: Callable[[], Any], runs: int, budget_s: float = math.inf, *,
          clock: Callable[[], float] = time.perf_counter) -> tuple[dict[str, Any], Any]:
    """Median and p95 of up to ``runs`` timed calls of ``fn`` after one warm-up call (not counted).

    Timing stops once ``budget_s`` seconds (warm-up included) have gone, after at least one timed call:
    one slow query then costs about ``budget_s``, not ``runs`` times its time, and the figures say how
    many runs they are the median of (``runs``, ``budget_hit``).
    """
    start = clock()
    result = fn()  # warm-up (not counted)
    samples: list[float] = []
    for _ in range(runs):
        t = clock()
        result = fn()
        samples.append(clock() - t)
        if clock() - start >= budget_s:
            break
    out: dict[str, Any] = stats_ms(samples)
    out["budget_hit"] = len(samples) < runs
    out["seconds"] = clock() - start
    return out, result


def panel_queries(store: Any) -> list[tuple[str, str]]:
    """(name, SQL) of every panel and variable query of the overview and stage dashboards, expanded."""
    from dashboards import build
    from dashboards.macros import ALL, TimeRange, Variable, expand
    from stagewatch.reading import read_jobs, read_status

    stages = read_status(store, as_of=AS_OF)["stages"]
    big = max(stages, key=lambda s: (s["input_files"], s["campaign"], s["stage"]))
    top = read_jobs(store, big["campaign"], big["stage"], state=None, order=RESTARTS_ORDER, limit=1)
    campaigns = sorted({s["campaign"] for s in stages})
    tr = TimeRange(AS_OF - 7 * 86400, AS_OF, interval_s=300)
    vars_for = {
        build.UID_OVERVIEW: [Variable("campaign", ALL, options=campaigns)],
        build.UID_STAGE: [Variable("campaign", big["campaign"]), Variable("stage", big["stage"]),
                          Variable("job_id", top[0]["job_id"] if top else "")],
    }
    out = []
    for uid, vs in vars_for.items():
        data = build.to_json(build.all_dashboards()[uid])
        for name, sql in build.iter_variable_queries(data):
            out.append((f"{uid.removeprefix('stagewatch-')} variable {name}", expand(sql, tr, vs)))
        for panel, target in build.iter_panel_queries(data):
            out.append((f"{uid.removeprefix('stagewatch-')} panel {panel['title']} {target['refId']}",
                        expand(target["rawSql"], tr, vs)))
    return out


STATUS = "status"  # the compact view (80/120 columns): no forecast query, it shows no ETA
STATUS_WIDE = "status --wide/--format json"  # every number, with the forecast (located_rate_per_h, eta)


def child_time(url: str, runs: int, skip_panels: bool, budget_s: float = math.inf) -> dict[str, Any]:
    """Time the reads as the CLI runs them, each query for at most about ``budget_s`` seconds."""
    from stagewatch.reading import read_files, read_job, read_jobs, read_missing_files, read_status
    from stagewatch.store import open_store

    t: dict[str, Any] = {}
    t0 = time.perf_counter()

    def measure(name: str, fn: Callable[[], Any]) -> Any:
        t[name], result = timed(fn, runs, budget_s)
        if isinstance(result, list):
            t[name]["rows"] = len(result)
        stopped = f", stopped by the {budget_s:g} s budget" if t[name]["budget_hit"] else ""
        _progress(f"{name}: median {t[name]['median_ms']:,.1f} ms over {t[name]['runs']} run(s){stopped}")
        return result

    with open_store(url, create=False) as st:
        stages = measure(STATUS, lambda: read_status(st, as_of=AS_OF, forecast=False))["stages"]
        measure(STATUS_WIDE, lambda: read_status(st, as_of=AS_OF, forecast=True))
        big = max(stages, key=lambda s: (s["input_files"], s["campaign"], s["stage"]))
        c, s = big["campaign"], big["stage"]
        _progress(f"drill-downs on {c}/{s} ({big['input_files']:,} input files)")
        for bucket in ("files_failed", "files_pending"):
            measure(f"files --bucket {bucket}", lambda b=bucket: read_files(st, c, s, [b]))
        jobs = measure("jobs --sort restarts --limit 50",
                       lambda: read_jobs(st, c, s, state=None, order=RESTARTS_ORDER, limit=50))
        measure("missing-files", lambda: read_missing_files(st, c, s))
        job_id = jobs[0]["job_id"]
        measure(f"job {job_id}", lambda: read_job(st, c, s, job_id))
        panels: dict[str, Any] = {}
        if not skip_panels:
            for name, sql in panel_queries(st):
                panels[name], rows = timed(lambda q=sql: st.query(q), runs, budget_s)
                panels[name]["rows"] = len(rows)
                if panels[name]["budget_hit"]:
                    _progress(f"{name}: median {panels[name]['median_ms']:,.1f} ms over {panels[name]['runs']} "
                              f"run(s), stopped by the {budget_s:g} s budget")
        # FINAL merges a table's parts at read time: how many a replay left explains slow drill-downs
        parts = {r["table"]: int(r["n"]) for r in st.query(
            "SELECT table, count() AS n FROM system.parts WHERE active AND database = currentDatabase() "
            "GROUP BY table")}
    return {"timings": t, "panels": panels, "status": stages, "stage": [c, s], "parts": parts,
            "reads_s": time.perf_counter() - t0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_poms(url: str, dsn: str, runs: int, max_s: float) -> dict[str, Any]:
    """Load the store's current state into the POMS-style database, then time its overview by joins."""
    import psycopg

    from bench import poms_pg
    from stagewatch.store import open_store

    with psycopg.connect(dsn) as conn, open_store(url, create=False) as st:
        poms_pg.create_schema(conn)
        t0 = time.perf_counter()
        counts = poms_pg.load_from_store(st, conn, progress=_progress)
        load_s = time.perf_counter() - t0
        _progress(f"POMS-style database loaded in {load_s:.0f} s; timing its overview")
        overview, rows = timed(lambda: poms_pg.overview(conn), runs, max_s)
        stopped = f", stopped by the {max_s:g} s budget" if overview["budget_hit"] else ""
        _progress(f"POMS-style overview: median {overview['median_ms']:,.1f} ms over {overview['runs']} run(s)"
                  f"{stopped}")
    for r in rows:
        r["completion_pct"] = float(r["completion_pct"])
    return {"counts": counts, "load_s": load_s, "overview": overview, "reads_s": overview["seconds"], "rows": rows,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
