"""`stagewatch history`: every number of one stage at regular steps, as it stood then.

Each step is what `status --at STEP` says (stagewatch.timetravel.history: the events with ts <= the
step, the step as the stall clock, the same definitions); the Grafana time series panels show the same.
"""

# no `from __future__ import annotations`: typer reads the option types inside register() at definition time

import csv
import json
import re
import sys
from enum import Enum
from typing import Any, Optional

import typer

from processors.forecast import DEFAULT_RATE_WINDOW_H
from processors.numbers import RESTART_CAUSES, STALL_THRESHOLD_S


class HistoryFmt(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hour|d|day|w)?\s*$", re.I)


def parse_every(value: str) -> float:
    """'1h', '30min', '15m', '2d', '90s' or plain seconds -> seconds (at least 1)."""
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"--every {value!r} is not a duration: give e.g. 1h, 30min, 2d or seconds.")
    seconds = float(m.group(1)) * _UNIT_S[(m.group(2) or "s").lower()]
    if seconds < 1:
        raise ValueError(f"--every {value!r} is shorter than one second: give e.g. 1h, 30min or 2d.")
    return seconds


def flat(step: dict[str, Any]) -> dict[str, Any]:
    """A step with restarts_by_cause as restarts_<cause> columns (for CSV)."""
    out = {k: v for k, v in step.items() if k != "restarts_by_cause"}
    for c in RESTART_CAUSES:
        out[f"restarts_{c}"] = step["restarts_by_cause"][c]
    return out


TABLE_COLUMNS = ("input_files", "files_located", "files_without_located_output", "files_in_flight", "files_failed",
                 "files_pending", "jobs_running", "jobs_idle", "jobs_held", "restarts", "located_rate_per_h")


def history_table(steps: list[dict[str, Any]], title: str, width: int = 10_000) -> Any:
    """Each step's numbers, one row per step, fitted to `width` as the other tables are
    (stagewatch.views.tables) in the overview's light box: the time and the stall flag are kept longest,
    the numbers' headers wrap between words so thirteen columns fit 120."""
    from rich.text import Text

    from processors.numbers import FORECAST_NUMBERS, NUMBERS
    from stagewatch.console import fmt_number, fmt_ts
    from stagewatch.views.tables import Field, fitted_table

    short = {n.name: n.short for n in (*NUMBERS, *FORECAST_NUMBERS)}
    numbers = [Field(short[n], (lambda n: lambda s: fmt_number(s[n]))(n), "right") for n in TABLE_COLUMNS]
    fields = [Field("Time (UTC)", lambda s: fmt_ts(s["ts"])), *numbers,
              Field("Stalled", lambda s: Text("STALLED" if s["stalled"] else "", style="red bold"))]
    return fitted_table(steps, fields, title, width, ["Time (UTC)", "Stalled", *(f.header for f in numbers)],
                        note="Each row: the numbers as they stood then (`status --at`); every number: --format json "
                             "or csv. Definitions: `stagewatch glossary`.", light=True, header_whole=0)


def register(app: typer.Typer) -> None:
    from stagewatch.cli import StoreOpt

    @app.command("history")
    def history_cmd(
        campaign: str = typer.Option(..., "--campaign"),
        stage: str = typer.Option(..., "--stage"),
        every: str = typer.Option("1h", "--every", metavar="DURATION", help="Step: e.g. 1h, 30min, 2d."),
        since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                            help="First step (RFC 3339 or Unix seconds). Default: the stage's first "
                                                 "event."),
        until: Optional[str] = typer.Option(None, "--until", metavar="TIME",
                                            help="Last step at most (RFC 3339 or Unix seconds). Default: the stage's "
                                                 "last event (always a step)."),
        format: HistoryFmt = typer.Option(HistoryFmt.table, "--format", help="table, json or csv (every number)."),
        stall_threshold: float = typer.Option(STALL_THRESHOLD_S / 3600, "--stall-threshold-hours"),
        rate_window: float = typer.Option(DEFAULT_RATE_WINDOW_H, "--rate-window", metavar="HOURS", min=0.001,
                                          help="Window of located_rate_per_h and eta."),
        store: Optional[str] = StoreOpt,
    ) -> None:
        """Every number of one stage at each step, as it stood then (the events up to the step, the step as the
        stall clock): what `status --at` gives, at regular times."""
        from stagewatch.cli import UserError, console, err, open_read, parse_time, require_known
        from stagewatch.console import fmt_ts
        from stagewatch.timetravel import TooManySteps, history

        try:
            every_s = parse_every(every)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        since_s, until_s = parse_time(since, "--since"), parse_time(until, "--until")
        if since_s is not None and until_s is not None and until_s < since_s:
            raise UserError(f"--until {until} is before --since {since}: give a later --until.")
        with open_read(store) as st:
            require_known(st, campaign, stage, tables=("stage_numbers", "raw_events"))
            try:
                steps = history(st, campaign, stage, every_s=every_s, since=since_s, until=until_s,
                                threshold_s=stall_threshold * 3600, rate_window_h=rate_window)
            except TooManySteps as exc:
                raise UserError(str(exc)) from None
        if format == HistoryFmt.json:
            doc = {"campaign": campaign, "stage": stage, "every_s": every_s, "stall_threshold_s": stall_threshold * 3600,
                   "rate_window_h": rate_window, "steps": steps}
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            return
        if format == HistoryFmt.csv:
            rows = [flat(s) for s in steps]
            if rows:
                w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
                w.writeheader()
                w.writerows(rows)
            return
        if not steps:
            err.print("No events of this stage in that time range.")
            return
        title = f"History — {campaign} / {stage} — every {every}"
        if len(steps) > 1:
            title += f", {fmt_ts(steps[0]['ts'])} .. {fmt_ts(steps[-1]['ts'])} UTC"
        console.print(history_table(steps, title, console.width))
