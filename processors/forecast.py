"""Forecast of a stage: how fast input files are being located now, and when the rest would be.

Why exact integers: the same numbers come from SQL (schemas.queries.FORECAST_SQL, on chDB and on
ClickHouse 18.16) and from Python (history, tests); integer formulas rounded half up make both agree to
the last digit, like processors.numbers.ratio_pct.

An input file's *located time* is the moment it entered the files_located bucket: the earliest, over
its outputs that are located, of the later of that output's first `output_declared` naming it and
its first `output_located` (the location may arrive before the declaration). So the located time of
a file at T only depends on events with ts <= T, as every number does. It is defined once, in
processors.files.input_located_ts, and precomputed in each input's file_state row
(`input_located_ts`): the SQL counts a window over that column instead of joining raw events.
"""

from __future__ import annotations

from typing import Any, Iterable

from processors.files import input_located_ts

DEFAULT_RATE_WINDOW_H = 6.0
HOUR_S = 3600


def window_seconds(hours: float) -> int:
    """The rate window in whole seconds (the integer the SQL and Python formulas share); at least 1."""
    return max(1, round(hours * HOUR_S))


def located_rate_per_h(located_in_window: int, window_s: int) -> float:
    """Input files located per hour over the window, 2 decimals, half up: intDiv(200*3600*n + w, 2*w) / 100."""
    return ((200 * HOUR_S * located_in_window + window_s) // (2 * window_s)) / 100


def eta(as_of: float, remaining: int, located_in_window: int, window_s: int) -> float | None:
    """When the remaining files would be located at the window's rate: as_of + remaining * window / n
    seconds, rounded half up to whole seconds; None when nothing is left or nothing was located."""
    if remaining <= 0 or located_in_window <= 0:
        return None
    n = located_in_window
    return as_of + (2 * remaining * window_s + n) // (2 * n)


def forecast(located_times: Iterable[float | None], remaining: int, as_of: float, window_s: int) -> dict[str, Any]:
    """The forecast numbers of a stage from its input files' located times (None for files not located)."""
    n = sum(1 for t in located_times if t is not None and as_of - window_s < t <= as_of)
    return {"located_rate_per_h": located_rate_per_h(n, window_s), "eta": eta(as_of, remaining, n, window_s)}


def stage_forecast(stage: Any, as_of: float, window_s: int) -> dict[str, Any]:
    """The forecast of an Engine stage (processors.stage.StageState): what FORECAST_SQL gives for it."""
    stage.settle()
    times = []
    for name, ent in stage.files.items():
        if ent.view is None or not ent.view.is_input:
            continue
        times.append(input_located_ts(name, stage.outputs_of(name)))
    located = sum(1 for t in times if t is not None)
    return forecast(times, len(times) - located, as_of, window_s)


class LocatedTimes:
    """Every input file's declaration and located time, from a whole event list, to count a window fast.

    For the events with ts <= t, a file is an input iff its first `input_declared` is <= t, and its located
    time is the full list's when that is <= t (each is a minimum of ts over events, or a max of two such
    minima), else it is not located yet. So one pass over all events serves every step of a history. Not
    valid when conflicting copies of an event_id were resolved (another copy may win in a prefix): the
    caller then computes each step from its Engine (stage_forecast).
    """

    def __init__(self, events: Iterable[Any]) -> None:
        import bisect

        self._bisect = bisect
        declared_input: dict[str, float] = {}
        out_declared: dict[tuple[str, str], float] = {}  # (output, parent) -> first output_declared naming it
        out_located: dict[str, float] = {}
        for ev in events:
            t = ev.type
            if t == "input_declared":
                if ev.file not in declared_input or ev.ts < declared_input[ev.file]:
                    declared_input[ev.file] = ev.ts
            elif t == "output_declared":
                for p in ev.parents or ():
                    k = (ev.file, p)
                    if k not in out_declared or ev.ts < out_declared[k]:
                        out_declared[k] = ev.ts
            elif t == "output_located":
                if ev.file not in out_located or ev.ts < out_located[ev.file]:
                    out_located[ev.file] = ev.ts
        located: dict[str, float] = {}
        for (o, p), d in out_declared.items():
            lo = out_located.get(o)
            if lo is None or p not in declared_input:
                continue
            t = max(d, lo)
            if p not in located or t < located[p]:
                located[p] = t
        pairs = sorted((t, declared_input[p]) for p, t in located.items())
        self._times = [t for t, _ in pairs]
        self._declared = [d for _, d in pairs]

    def in_window(self, as_of: float, window_s: int) -> int:
        """Input files (declared by as_of) whose located time is in (as_of - window, as_of]."""
        lo = self._bisect.bisect_right(self._times, as_of - window_s)
        hi = self._bisect.bisect_right(self._times, as_of)
        return sum(1 for d in self._declared[lo:hi] if d <= as_of)
