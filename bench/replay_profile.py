"""Where the embedded replay's time goes, by phase: one command, a profile anyone can reproduce.

    python bench/replay_profile.py [--preset nova-week] [--seed 1] [--lines N] [--top 12] [--save FILE]

Runs the same replay as bench/replay_bench.py (JSON lines -> events -> engine -> rows -> chDB, into a
fresh temporary store) under cProfile, on the preset's cached lines (generated once, as the bench does)
or their first N lines, and prints:

- the time of each phase (read+decode, engine apply, re-derive/settle, rows, store insert, store
  load/query, other), as the sum of the own time of the functions that belong to it: the phases add up
  to the whole profile, so the table says what stands in the way of a faster replay;
- each phase's top functions by own time and by cumulative time.

cProfile slows pure-Python code down more than C code (chDB, msgspec), so its shares lean towards the
engine: a first run without the profiler (`--no-plain` skips it, `--timers-only` makes it the only one)
charges the CPU time of every thread to the same phases through a few wrapped functions, for the
honest split.
Nothing is asserted: these are figures to read.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

#: Phases, first match wins: (phase, path fragment of the function's file or "", function-name prefixes or ()).
#: The file of a builtin is "~", its name the C function's (e.g. "<method 'query' of ...>").
PHASES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("read+decode", "ingest/lines.py", ()),
    ("read+decode", "schemas/events.py", ("decode_event", "_check", "_to_unix", "__post_init__")),
    ("read+decode", "~", ("<method 'decode' of 'msgspec.json.Decoder",)),
    ("read+decode", "stagewatch/replay.py", ("feed_line", "_replay_files")),
    ("store load/query", "stagewatch/store/base.py", ("load_events", "load_entities", "file_links", "_event",
                                                     "_chunks")),
    ("store load/query", "processors/rows.py", ("event_from_raw_row",)),
    ("store load/query", "stagewatch/replay.py", ("_open_stage", "_load", "_state_current")),
    ("store load/query", "stagewatch/store/chdb_store.py", ("query",)),
    ("store load/query", "processors/stage.py", ("load_jobs", "load_files", "_loaded_entity", "seed",
                                                 "page_out", "linked_files")),
    ("rows", "processors/rows.py", ()),
    ("rows", "processors/engine.py", ("dirty_rows",)),
    ("rows", "processors/numbers.py", ("ratio_pct", "core_hours", "_half_up")),
    ("rows", "stagewatch/sink.py", ("add_dirty", "add", "_last_per_key")),
    ("re-derive/settle", "processors/stage.py", ("settle", "_refresh_file", "_file_contribution", "file_version",
                                                 "_outputs_of", "outputs_of", "own_version", "entity_version", "take_dirty",
                                                 "_refold_times")),
    ("re-derive/settle", "processors/jobs.py", ("summarize_job", "contribution", "_cores", "__init__")),
    ("re-derive/settle", "processors/files.py", ("file_facts", "input_bucket", "__init__")),
    ("re-derive/settle", "processors/contributions.py", ("apply",)),
    ("re-derive/settle", "<string>", ("__init__",)),  # dataclass constructors (Attempt, JobSummary, FileFacts)
    ("engine apply", "processors/", ()),
    ("engine apply", "stagewatch/replay.py", ("_apply", "_run_batch", "feed_event")),
    ("store insert", "stagewatch/store/", ()),
    ("store insert", "stagewatch/sink.py", ()),
    ("store insert", "~", ("<method 'query' of", "<method 'encode' of 'msgspec", "<method 'join' of 'bytes",
                           "<method 'decode' of 'bytes", "<method 'send_query'", "<method 'insert")),
)
PHASE_ORDER = ("read+decode", "engine apply", "re-derive/settle", "rows", "store insert", "store load/query",
               "other")


def _rule(func: tuple[str, int, str]) -> str | None:
    path, _, name = func
    path = path.replace(os.sep, "/")
    for phase, frag, prefixes in PHASES:
        if frag == "~":
            if path != "~":
                continue
        elif frag not in path:
            continue
        if not prefixes or any(name.startswith(p) for p in prefixes):
            return phase
    return None


def phase_of(func: tuple[str, int, str], raw: dict[Any, Any], depth: int = 0) -> str:
    """The phase of a profiled function (file, line, name). A function no rule names (a builtin such as
    len or list.append, a library function such as chDB's Session.query) belongs to the phase of the
    caller that spent the most time in it."""
    phase = _rule(func)
    if phase is not None:
        return phase
    callers = raw.get(func, (0, 0, 0, 0, {}))[4]
    if callers and depth < 8:
        best = max(callers.items(), key=lambda kv: kv[1][3])[0]  # the caller's cumulative time in it
        if best != func:
            return phase_of(best, raw, depth + 1)
    return "other"


def _short(func: tuple[str, int, str]) -> str:
    path, line, name = func
    p = path.replace(os.sep, "/")
    for anchor in ("/processors/", "/schemas/", "/stagewatch/", "/ingest/", "/bench/"):
        if anchor in p:
            p = anchor[1:] + p.split(anchor, 1)[1]
            break
    else:
        p = os.path.basename(p) if p != "~" else ""
    return f"{p}:{line}({name})" if p else name


def report(stats: pstats.Stats, top: int, wall: float, plain_wall: float | None, lines: int) -> str:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    phases: dict[str, list[tuple[Any, float, float, int]]] = {p: [] for p in PHASE_ORDER}
    for func, (cc, nc, tt, ct, callers) in raw.items():
        phases[phase_of(func, raw)].append((func, tt, ct, nc))
    out = io.StringIO()
    w = out.write
    w(f"{lines:,} lines; profiled wall {wall:.1f} s ({lines / wall:,.0f} events/s under cProfile)")
    if plain_wall is not None:
        w(f"; without the profiler {plain_wall:.1f} s ({lines / plain_wall:,.0f} events/s)")
    w(f"\nown time by phase (sums to the profile's {total:.1f} s):\n")
    for p in PHASE_ORDER:
        s = sum(x[1] for x in phases[p])
        w(f"  {p:<18} {s:8.2f} s  {100 * s / total if total else 0:5.1f} %\n")
    for p in PHASE_ORDER:
        rows = phases[p]
        if not rows:
            continue
        w(f"\n== {p}: top by own time ==\n")
        for func, tt, ct, nc in sorted(rows, key=lambda r: -r[1])[:top]:
            w(f"  {tt:8.2f} s own {ct:8.2f} s cum {nc:>10,} calls  {_short(func)}\n")
        w(f"== {p}: top by cumulative time ==\n")
        for func, tt, ct, nc in sorted(rows, key=lambda r: -r[2])[:top]:
            w(f"  {ct:8.2f} s cum {tt:8.2f} s own {nc:>10,} calls  {_short(func)}\n")
    return out.getvalue()


class PhaseTimers:
    """CPU time (every thread: chDB's too) per phase, without cProfile's overhead: a few wrapped functions,
    each charged its exclusive time (a nested wrapped call is charged to its own phase)."""

    WRAPPED: tuple[tuple[str, str, str, str], ...] = (
        # (module, object or "", attribute, phase)
        ("stagewatch.replay", "", "decode_event", "read+decode"),
        ("stagewatch.replay", "Replayer", "_run_batch", "engine apply"),
        ("processors.stage", "StageState", "settle", "re-derive/settle"),
        ("stagewatch.sink", "StoreSink", "add_dirty", "rows"),
        ("stagewatch.sink", "StoreSink", "flush", "store insert"),
        ("stagewatch.replay", "Replayer", "_open_stage", "store load/query"),
        ("stagewatch.replay", "Replayer", "_load_touched", "store load/query"),
        ("stagewatch.replay", "Replayer", "_load_rest", "store load/query"),
        ("processors.stage", "StageState", "page_out", "store load/query"),
    )

    def __init__(self) -> None:
        self.spent: dict[str, float] = dict.fromkeys(PHASE_ORDER, 0.0)
        self._stack: list[str] = ["other"]
        self._mark = 0.0
        self._undo: list[tuple[Any, str, Any]] = []

    def _wrap(self, fn: Any, phase: str) -> Any:
        clock, spent, stack = time.process_time, self.spent, self._stack

        def timed(*a: Any, **k: Any) -> Any:
            now = clock()
            spent[stack[-1]] += now - self._mark
            self._mark = now
            stack.append(phase)
            try:
                return fn(*a, **k)
            finally:
                now = clock()
                spent[stack.pop()] += now - self._mark
                self._mark = now
        return timed

    def __enter__(self) -> "PhaseTimers":
        import importlib

        for mod, obj, attr, phase in self.WRAPPED:
            owner = importlib.import_module(mod)
            if obj:
                owner = getattr(owner, obj)
            orig = getattr(owner, attr, None)
            if orig is None:  # renamed since: say so rather than charge its time elsewhere silently
                print(f"note: {mod}.{obj}.{attr} not found; its time counts as its caller's", file=sys.stderr)
                continue
            self._undo.append((owner, attr, orig))
            setattr(owner, attr, self._wrap(orig, phase))
        self._mark = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent[self._stack[-1]] += time.process_time() - self._mark
        for owner, attr, orig in reversed(self._undo):
            setattr(owner, attr, orig)

    def report(self, lines: int, wall: float) -> str:
        total = sum(self.spent.values())
        out = [f"{lines:,} lines; wall {wall:.1f} s ({lines / wall:,.0f} events/s), CPU {total:.1f} s "
               f"({lines / total:,.0f} events per CPU second), without cProfile; CPU by phase:"]
        for p in PHASE_ORDER:
            s = self.spent[p]
            out.append(f"  {p:<18} {s:8.2f} s  {100 * s / total if total else 0:5.1f} %  "
                       f"{1e6 * s / lines if lines else 0:6.2f} us/event")
        return "\n".join(out)


def _data(preset: str, seed: int, lines: int | None) -> tuple[Path, int]:
    from replay_bench import generate

    cache = Path(tempfile.gettempdir()) / "stagewatch-bench"
    cache.mkdir(exist_ok=True)
    data = cache / f"{preset}-{seed}.jsonl"
    if not data.exists():
        n = generate(preset, seed, data)
        print(f"generated {n:,} events of {preset} -> {data}", file=sys.stderr)
    if lines is None:
        with open(data, "rb") as f:
            return data, sum(1 for _ in f)
    part = cache / f"{preset}-{seed}-first{lines}.jsonl"
    if not part.exists():
        tmp = part.with_suffix(".tmp")
        with open(data, "rb") as f, open(tmp, "wb") as out:
            out.writelines(itertools.islice(f, lines))
        tmp.rename(part)
    with open(part, "rb") as f:
        return part, sum(1 for _ in f)


def _replay(path: Path) -> None:
    from stagewatch.replay import replay_paths
    from stagewatch.store import open_store

    with tempfile.TemporaryDirectory() as store_dir, open_store(f"chdb:{store_dir}/s") as st:
        replay_paths(st, [str(path)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="nova-week")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lines", type=int, default=None, help="replay only the first N lines")
    ap.add_argument("--top", type=int, default=12, help="functions listed per phase")
    ap.add_argument("--save", default=None, help="also write the raw profile here (for snakeviz, pstats)")
    ap.add_argument("--no-plain", action="store_true", help="skip the run without the profiler")
    ap.add_argument("--timers-only", action="store_true", help="only the run without the profiler (its CPU by phase)")
    args = ap.parse_args()
    data, n = _data(args.preset, args.seed, args.lines)
    plain = None
    if not args.no_plain:
        t0 = time.perf_counter()
        with PhaseTimers() as timers:
            _replay(data)
        plain = time.perf_counter() - t0
        print(timers.report(n, plain))
        if args.timers_only:
            return
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    _replay(data)
    prof.disable()
    wall = time.perf_counter() - t0
    if args.save:
        prof.dump_stats(args.save)
    stats = pstats.Stats(prof)
    print(f"preset {args.preset} (seed {args.seed}), {data.name}")
    print(report(stats, args.top, wall, plain, n))


if __name__ == "__main__":
    main()
