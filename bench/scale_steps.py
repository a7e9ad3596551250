"""The measured steps of bench/scale_bench.py, each run in a child process of its own.

Each step opens the store itself and reports its own peak RSS, so the figure is that step's memory, not
the orchestrator's. Steps talk to the orchestrator by one JSON line on stdout and "[progress] ..." lines
on stderr. Reads go through the CLI's reading functions (stagewatch.reading) and the replay through the
public replay API (stagewatch.replay.replay_paths), so the figures follow whatever those become.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
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
    done = [0, time.monotonic()]

    def progress(nbytes: int) -> None:
        done[0] += nbytes
        if time.monotonic() - done[1] > 30:
            done[1] = time.monotonic()
            _progress(f"replay {100 * done[0] / size:.0f} %")

    t0 = time.perf_counter()
    with open_store(url) as st:
        report = replay_paths(st, [path], progress=progress)
        (row,) = st.query("SELECT count() AS n FROM raw_events")
    wall = time.perf_counter() - t0
    return {"lines": report.lines, "new_events": report.new_events, "duplicates": report.duplicates,
            "invalid": len(report.invalid), "stages": len(report.stages), "raw_rows": int(row["n"]),
            "seconds": wall, "events_per_s": report.lines / wall,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def stats_ms(samples: list[float]) -> dict[str, float]:
    """Median and p95 (nearest rank) in milliseconds."""
    s = sorted(samples)
    return {"median_ms": statistics.median(s) * 1000, "p95_ms": s[max(0, math.ceil(0.95 * len(s)) - 1)] * 1000,
            "runs": len(s)}


def timed(fn: Callable[[], Any], runs: int) -> tuple[dict[str, float], Any]:
    result = fn()  # warm-up (not counted)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t)
    return stats_ms(samples), result


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


def child_time(url: str, runs: int, skip_panels: bool) -> dict[str, Any]:
    from stagewatch.reading import read_files, read_job, read_jobs, read_missing_files, read_status
    from stagewatch.store import open_store

    t: dict[str, Any] = {}
    with open_store(url, create=False) as st:
        t["status"], status = timed(lambda: read_status(st, as_of=AS_OF), runs)
        stages = status["stages"]
        big = max(stages, key=lambda s: (s["input_files"], s["campaign"], s["stage"]))
        c, s = big["campaign"], big["stage"]
        _progress(f"overview timed; drill-downs on {c}/{s} ({big['input_files']:,} input files)")
        for bucket in ("files_failed", "files_pending"):
            t[f"files --bucket {bucket}"], rows = timed(lambda b=bucket: read_files(st, c, s, [b]), runs)
            t[f"files --bucket {bucket}"]["rows"] = len(rows)
        t["jobs --sort restarts --limit 50"], jobs = timed(
            lambda: read_jobs(st, c, s, state=None, order=RESTARTS_ORDER, limit=50), runs)
        t["missing-files"], missing = timed(lambda: read_missing_files(st, c, s), runs)
        t["missing-files"]["rows"] = len(missing)
        job_id = jobs[0]["job_id"]
        t[f"job {job_id}"], one = timed(lambda: read_job(st, c, s, job_id), runs)
        panels: dict[str, Any] = {}
        if not skip_panels:
            for name, sql in panel_queries(st):
                panels[name], rows = timed(lambda q=sql: st.query(q), runs)
                panels[name]["rows"] = len(rows)
        # FINAL merges a table's parts at read time: how many a replay left explains slow drill-downs
        parts = {r["table"]: int(r["n"]) for r in st.query(
            "SELECT table, count() AS n FROM system.parts WHERE active AND database = currentDatabase() "
            "GROUP BY table")}
    return {"timings": t, "panels": panels, "status": stages, "stage": [c, s], "parts": parts,
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
        rows = poms_pg.overview(conn)  # warm-up
        samples = []
        t_end = time.monotonic() + max_s
        for _ in range(runs):
            t = time.perf_counter()
            rows = poms_pg.overview(conn)
            samples.append(time.perf_counter() - t)
            if time.monotonic() > t_end:
                break
    for r in rows:
        r["completion_pct"] = float(r["completion_pct"])
    return {"counts": counts, "load_s": load_s, "overview": stats_ms(samples), "rows": rows,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
