"""The `stagewatch` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from processors.forecast import DEFAULT_RATE_WINDOW_H
from processors.numbers import FILE_BUCKETS, GLOSSARY_URL, NUMBERS, STALL_THRESHOLD_S
from stagewatch.console import RFC3339, esc, fmt_duration, fmt_number, fmt_ts
from stagewatch.views.tables import Field, fitted_table
from stagewatch.samweb_dims import DEFAULT_MAX_CHARS as DEFAULT_DIMS_CHARS
from stagewatch.store import DEFAULT_STORE, DEMO_STORE, Store, StoreError, open_store

console = Console(width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True)

DEFINITIONS_EPILOG = "Every number is defined in " + GLOSSARY_URL + " (also: `stagewatch glossary`)."

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  pretty_exceptions_enable=False,
                  help="stagewatch: how every campaign stage stands, in files and in jobs. " + DEFINITIONS_EPILOG)

StoreOpt = typer.Option(None, "--store", help=f"chdb:PATH (embedded) or clickhouse://user:pass@host:port/db "
                                              "(optionally ?connect_timeout=S&send_receive_timeout=S; defaults 10 "
                                              f"and 300). Default: $STAGEWATCH_STORE or {DEFAULT_STORE}.")


class UserError(Exception):
    """An error whose message is a sentence the user can act on."""


class Fmt(str, Enum):
    table = "table"
    json = "json"


def _setup_logging(level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stderr,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    if numeric > logging.DEBUG:
        # clickhouse-driver logs each failed connection attempt with its traceback at WARNING; the store
        # turns that failure into one sentence, so the traceback shows only with --log-level DEBUG.
        logging.getLogger("clickhouse_driver").setLevel(max(numeric, logging.ERROR))


@app.callback()
def _main(log_level: str = typer.Option("WARNING", "--log-level", help="DEBUG, INFO, WARNING or ERROR.")) -> None:
    _setup_logging(log_level)


def parse_time(value: str | None, option: str = "--as-of") -> float | None:
    """RFC 3339 (with zone) or Unix seconds; errors name the `option` the value came from."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise UserError(f"{option} {value!r} is not a time: give Unix seconds or an RFC 3339 time like "
                            "2017-06-20T11:25:00Z.")
        return seconds
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{option} {value!r} is neither Unix seconds nor an RFC 3339 time like 2017-06-20T11:25:00Z.")
    if dt.tzinfo is None:
        raise UserError(f"{option} {value!r} has no time zone; add one, e.g. {value}Z.")
    return dt.timestamp()


def open_read(url: str | None) -> Store:
    """The store of a read command: it must exist; nothing is created (a read-only user can run it)."""
    return open_store(url, create=False)


def require_known(st: Store, campaign: str | None, stage: str | None,
                  tables: tuple[str, ...] = ("stage_numbers",)) -> None:
    """An unknown campaign or stage is a usage error listing the known ones (never a silent empty answer)."""
    from stagewatch.reading import UnknownStage, require_known as check

    try:
        check(st, campaign, stage, tables=tables)
    except UnknownStage as exc:
        raise UserError(str(exc)) from None


def write_jsonl(events: Any, out: Path | None) -> int:
    """Write events as JSON lines to a file or stdout; returns how many.

    A file is written under a temporary name and renamed at the end: an interrupted or failed
    conversion never leaves a complete-looking but partial --out file.
    """
    from schemas.events import encode_event

    if out is None:
        n = 0
        for ev in events:
            sys.stdout.buffer.write(encode_event(ev) + b"\n")
            n += 1
        return n
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as sink:
            n = 0
            for ev in events:
                sink.write(encode_event(ev) + b"\n")
                n += 1
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"Cannot write {out}: {exc.strerror or exc}; pass --out with a path you can write.") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


# --------------------------------------------------------------------------------------------------
@app.command()
def replay(
    files: list[str] = typer.Argument(..., help="JSON-lines files of job-event/1 and file-event/1 ('-' is stdin)."),
    store: Optional[str] = StoreOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Replay events into the store (adds to what is there; duplicates change nothing)."""
    from stagewatch.replay import replay_paths

    for f in files:
        if f != "-" and not os.path.isfile(f):
            raise UserError(f"No such file: {f}")
    total = sum(os.path.getsize(f) for f in files if f != "-")
    invalid_shown = 0

    def on_invalid(dl: Any) -> None:
        nonlocal invalid_shown
        invalid_shown += 1
        if invalid_shown <= 20:
            err.print(f"[yellow]invalid[/] {esc(dl)} (kept in the dead_letter table)", markup=True, highlight=False)

    with open_store(store) as st:
        if quiet or not err.is_terminal:
            report = replay_paths(st, files, on_invalid=on_invalid)
        else:
            with Progress(TextColumn("replaying"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          TimeRemainingColumn(), console=err) as prog:
                task = prog.add_task("replay", total=total or None)
                report = replay_paths(st, files, on_invalid=on_invalid,
                                      progress=lambda n: prog.advance(task, n))
    if len(report.invalid) > 20:
        err.print(f"... and {len(report.invalid) - 20} more invalid lines (SELECT * FROM dead_letter)")
    err.print(f"replayed {report.lines} lines: {report.new_events} new events, {report.duplicates} duplicates, "
              f"{len(report.invalid)} invalid, {len(report.stages)} stage(s) in {report.seconds:.1f} s "
              f"({report.events_per_s:,.0f} lines/s) into {esc(st.url)}", highlight=False)
    _replay_notices(report)


def _replay_notices(report: Any) -> None:
    """What the summary line does not say: conflicts resolved, stages repaired, files or events refused.

    Conflicts and repairs are information (the numbers are right); an unreadable file or an event the
    engine raised on means data the user gave was not counted, so the exit status is 1.
    """
    if report.conflicts:
        err.print(f"{report.conflicts} conflicting cop{'y' if report.conflicts == 1 else 'ies'} of an event_id: "
                  "the copy with the smallest content hash counts, the other is in the dead_letter table",
                  highlight=False)
    if report.repaired_stages:
        names = ", ".join(f"{c}/{s}" for c, s in sorted(report.repaired_stages))
        err.print(f"repaired the state rows of {len(report.repaired_stages)} stage(s) left behind by an "
                  f"interrupted replay: {esc(names)}", highlight=False)
    if report.unreadable:
        for dl in report.unreadable:
            err.print(f"[red]not replayed:[/] {esc(dl.source)}: {esc(dl.reason)}", highlight=False)
    if report.engine_errors:
        err.print(f"[red]{report.engine_errors} event(s) raised an error in the engine[/] (a bug: please report it; "
                  "each is in the dead_letter table with the error as its reason)", highlight=False)
    if report.unreadable or report.engine_errors:
        raise typer.Exit(1)


STATUS_HELP = "How every stage stands: files first (the real measure), then jobs."
STATUS_EPILOG = ("The table fits the terminal (120 columns; at 80 fewer columns: a column that does not fit is "
                 "left out, never cut); --wide shows every number. Column headers are the glossary's short "
                 "names: `stagewatch glossary` prints every definition (also in " + GLOSSARY_URL + ").")

AT_HELP = ("Numbers as they stood at TIME (RFC 3339 or Unix seconds): computed from exactly the events with "
           "ts <= TIME, and TIME is also the stall clock. Default: now, from every event.")
NOW_HELP = ("Only the clock of the stall rule and of 'ago' (RFC 3339 or Unix seconds); the numbers count every "
            "event. Default: now.")
AS_OF_HELP = "Deprecated: an alias of --at (it used to move only the stall clock, which is now --now)."


def moment(at: str | None, as_of: str | None = None, now: str | None = None) -> tuple[float | None, float | None]:
    """(at, clock) from --at / --as-of / --now: at is None for the current numbers; clock None means now."""
    if at is not None and as_of is not None:
        raise UserError("--as-of is an alias of --at: give one of them.")
    at_s = parse_time(at, "--at") if at is not None else parse_time(as_of, "--as-of")
    now_s = parse_time(now, "--now")
    if at_s is not None and now_s is not None:
        raise UserError("--at TIME already sets the stall clock to TIME: give --at or --now, not both.")
    return at_s, (at_s if at_s is not None else now_s)


@contextlib.contextmanager
def view_at(st: Store, at: float | None, campaign: str | None = None, stage: str | None = None) -> Iterator[Store]:
    """The store to read: the user's, or (with --at) the selected stages as they stood at `at`.

    The user's store must not be queried inside (a chDB store is paused while the view exists).
    """
    if at is None:
        yield st
        return
    from stagewatch.timetravel import store_at

    with store_at(st, at, campaign, stage) as past:
        yield past


def _terminal_width() -> int:
    """The overview's width: the terminal's, else $COLUMNS, else 120 (what the compact view is made for)."""
    if console.is_terminal:
        return console.width
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 120


@app.command(help=STATUS_HELP, epilog=STATUS_EPILOG)
def status(
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Only this campaign."),
    stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
    now: Optional[str] = typer.Option(None, "--now", metavar="TIME", help=NOW_HELP),
    wide: bool = typer.Option(False, "--wide", help="Every number: all six file buckets (their sum is the input "
                                                    "files), every job state, restarts by cause."),
    watch: Optional[float] = typer.Option(None, "--watch", metavar="SECONDS", min=0.1,
                                          help="Redraw in place every SECONDS (like condor_watch_q); Ctrl-C stops."),
    exit_when_done: bool = typer.Option(False, "--exit-when-done",
                                        help="Keep reading (every --watch SECONDS, default 60) until every selected "
                                             "stage has no work left (exit 0) or one is stalled (exit 1)."),
    format: Fmt = typer.Option(Fmt.table, "--format", help="table, or json (every number by its glossary name)."),
    stall_threshold: float = typer.Option(STALL_THRESHOLD_S / 3600, "--stall-threshold-hours"),
    rate_window: float = typer.Option(DEFAULT_RATE_WINDOW_H, "--rate-window", metavar="HOURS", min=0.01,
                                      help="Hours over which located_rate_per_h (and the ETA) is measured."),
    store: Optional[str] = StoreOpt,
    as_of: Optional[str] = typer.Option(None, "--as-of", metavar="TIME", help=AS_OF_HELP),
) -> None:
    from stagewatch.views.overview import render
    from stagewatch.views.watch import watch_loop

    when, clock = moment(at, as_of, now)
    if (watch is not None or exit_when_done) and when is not None:
        raise UserError("--watch and --exit-when-done follow the numbers as they change: drop --at.")
    if watch is not None and format == Fmt.json and not exit_when_done:
        raise UserError("--watch redraws the table in place; for a script, add --exit-when-done (the JSON is "
                        "printed once, when it exits) or run status --format json in a loop.")

    def eta_fits(result: dict[str, Any]) -> bool:
        from stagewatch.views.overview import eta_can_show

        return eta_can_show(result, _terminal_width())

    def read() -> dict[str, Any]:
        result = _read_status(store, campaign, stage, when, clock, stall_threshold * 3600, rate_window,
                              forecast=True if format == Fmt.json or wide else eta_fits)
        if not result["stages"]:
            if when is not None:
                err.print(f"No events of the selected stages at or before {fmt_ts(when)} UTC (--at): their first "
                          "events are later; try a later --at.", highlight=False)
            else:
                err.print("No stages match. Replay events first (stagewatch replay FILE, or stagewatch demo).")
            raise typer.Exit(1)
        return result

    def show(result: dict[str, Any]) -> Any:
        table, width = render(result, _terminal_width(), wide=wide)
        return table, width

    if watch is None and not exit_when_done:
        result = read()
        if format == Fmt.json:
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
            return
        table, width = show(result)
        Console(width=width, file=console.file, force_terminal=console.is_terminal).print(table)
        return
    code = watch_loop(read, None if format == Fmt.json else (lambda r: show(r)[0]), console,
                      interval=watch if watch is not None else 60.0, exit_when_done=exit_when_done)
    raise typer.Exit(code)


def _read_status(url: str | None, campaign: str | None, stage: str | None, at: float | None, clock: float | None,
                 threshold_s: float, rate_window_h: float = DEFAULT_RATE_WINDOW_H,
                 forecast: "bool | Callable[[dict[str, Any]], bool]" = True) -> dict[str, Any]:
    """`read_status` at a moment: `at` selects the events (ts <= at), `clock` is the stall clock; with the
    forecast (located_rate_per_h, eta) over `rate_window_h` (see read_status for a callable `forecast`)."""
    from stagewatch.reading import read_status

    with open_read(url) as st:
        if at is None:
            result = read_status(st, campaign, stage, as_of=clock, threshold_s=threshold_s, forecast=forecast,
                                 rate_window_h=rate_window_h)
        else:  # in memory, no ephemeral store: the same numbers as read_status on store_at (tested)
            from stagewatch.timetravel import status_at

            result = status_at(st, at, campaign, stage, as_of=clock, threshold_s=threshold_s,
                               rate_window_h=rate_window_h)
        if not result["stages"]:
            require_known(st, campaign, stage)  # one cheap query, only when a filter matched nothing
    result["at"] = at
    return result


def overview_table(result: dict[str, Any]) -> Any:
    """The compact overview at this terminal's width (the demo's view)."""
    from stagewatch.views.overview import render

    return render(result, _terminal_width())[0]


class MissingFmt(str, Enum):
    plain = "plain"
    json = "json"
    samweb = "samweb"


class GroupBy(str, Enum):
    none = "none"
    submission = "submission"


@app.command("missing-files")
def missing_files(
    campaign: str = typer.Option(..., "--campaign"),
    stage: str = typer.Option(..., "--stage"),
    format: MissingFmt = typer.Option(MissingFmt.plain, "--format",
                                      help="plain (one file a line), json, or samweb (SAM dimensions strings "
                                           "`file_name a, b, ...` selecting exactly these files, one a line, each "
                                           "at most --max-chars long)."),
    by: GroupBy = typer.Option(GroupBy.none, "--by", help="submission: grouped by the submission that last had "
                                                           "each file (its latest delivered/consumed/skipped/failed "
                                                           "event); files no job had are under '-'."),
    max_chars: int = typer.Option(DEFAULT_DIMS_CHARS, "--max-chars", min=32,
                                  help="Longest samweb string (samweb_client sends longer ones by POST, not in the "
                                       "URL; 1024 works everywhere)."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
    store: Optional[str] = StoreOpt,
    as_of: Optional[str] = typer.Option(None, "--as-of", metavar="TIME", help=AS_OF_HELP),
) -> None:
    """Input files without a located output: what a recovery submission needs (plain, json or samweb)."""
    from stagewatch.reading import read_last_submissions, read_missing_files
    from stagewatch.samweb_dims import dims_strings

    when, _ = moment(at, as_of)
    with open_read(store) as st:
        with view_at(st, when, campaign, stage) as view:
            names = read_missing_files(view, campaign, stage)
            last = read_last_submissions(view, campaign, stage) if by == GroupBy.submission else {}
        if not names:
            require_known(st, campaign, stage)
    groups: list[tuple[str | None, list[str]]]
    if by == GroupBy.submission:
        grouped: dict[str | None, list[str]] = {}
        for name in names:
            grouped.setdefault(last.get(name), []).append(name)
        groups = sorted(grouped.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    else:
        groups = [(None, names)]
    out = sys.stdout
    if format == MissingFmt.json:
        doc: dict[str, Any] = {"campaign": campaign, "stage": stage, "at": when, "count": len(names)}
        if by == GroupBy.submission:
            doc["submissions"] = [{"submission": sub, "count": len(files), "files": files} for sub, files in groups]
        else:
            doc["files"] = names
        out.write(json.dumps(doc, indent=2) + "\n")
        return
    unselectable: list[str] = []
    for sub, files in groups:
        if by == GroupBy.submission:
            out.write(f"# submission {_one_line(sub) if sub is not None else '-'}: {len(files)} file(s)\n")
        if format == MissingFmt.plain:
            out.writelines(name + "\n" for name in files)
            continue
        dims = dims_strings(files, max_chars)
        out.writelines(s + "\n" for s in dims.strings)
        unselectable += dims.unselectable
    if unselectable:
        err.print(f"[red]{len(unselectable)} file name(s) cannot be written in SAM dimensions[/] (quotes, "
                  "backslashes, wildcards or control characters) and are in no string above; list them with "
                  "--format plain or json: " + esc(", ".join(repr(n) for n in unselectable[:5]))
                  + (" ..." if len(unselectable) > 5 else ""), highlight=False)
        raise typer.Exit(1)


def _one_line(value: str) -> str:
    """A name from data on one output line (a newline in it must not start a line of its own)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


BUCKET_ALIASES: dict[str, str] = {
    **{b: b for b in FILE_BUCKETS},
    **{b.removeprefix("files_"): b for b in FILE_BUCKETS},
    "declared": "files_declared_not_located", "consumed": "files_consumed_no_output", "flight": "files_in_flight",
    "skipped": "files_failed",
}
"""--bucket names: the glossary's, without `files_`, or a first word; `missing` is every bucket but located."""
MISSING_BUCKETS = tuple(b for b in FILE_BUCKETS if b != "files_located")


def resolve_buckets(names: list[str] | None) -> list[str] | None:
    """--bucket values as glossary bucket names (None: every bucket but located, the default)."""
    from stagewatch.console import resolve_choice

    if not names:
        return None
    out: list[str] = []
    for name in names:
        key = name.strip().lower().replace("-", "_")
        if key in ("missing", "files_without_located_output", "without_located_output", "not_located"):
            out.extend(MISSING_BUCKETS)
            continue
        try:
            out.append(resolve_choice(name, BUCKET_ALIASES, "--bucket", shown=FILE_BUCKETS))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return list(dict.fromkeys(out))


@app.command()
def files(
    campaign: str = typer.Option(..., "--campaign"),
    stage: str = typer.Option(..., "--stage"),
    bucket: Optional[list[str]] = typer.Option(None, "--bucket", help="A bucket: located, declared_not_located, "
                                                                       "consumed_no_output, in_flight, failed, "
                                                                       "pending (with or without files_), or missing; "
                                                                       "repeatable. Default: all not located."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Most files listed, by name (a capped list "
                                                                      "says so on stderr). Default: all."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
    store: Optional[str] = StoreOpt,
    format: Fmt = typer.Option(Fmt.table, "--format"),
    as_of: Optional[str] = typer.Option(None, "--as-of", metavar="TIME", help=AS_OF_HELP),
) -> None:
    """Drill down from a file number to its files (bucket, deliveries, outputs)."""
    from stagewatch.reading import count_files, read_files

    buckets = resolve_buckets(bucket)
    when, _ = moment(at, as_of)
    with open_read(store) as st:
        with view_at(st, when, campaign, stage) as view:
            rows = read_files(view, campaign, stage, buckets, limit)
            total = (count_files(view, campaign, stage, buckets) if limit is not None and len(rows) >= limit
                     else len(rows))
        if not rows:
            require_known(st, campaign, stage)
    if total > len(rows):  # stderr: stdout (a table or the JSON list) keeps its shape
        err.print(f"showing {len(rows):,} of {total:,} files; --limit N for more", highlight=False)
    if format == Fmt.json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    when_text = f" at {fmt_ts(when)} UTC" if when is not None else ""
    shown = f"{len(rows):,} of {total:,}" if total > len(rows) else f"{len(rows):,}"
    fields = [Field("file", lambda r: r["file"]), Field("bucket", lambda r: r["bucket"]),
              Field("deliveries", lambda r: r["deliveries"], "right"), Field("disposition", lambda r: r["disposition"]),
              Field("disposition job", lambda r: r["disposition_job"]),
              Field("outputs", lambda r: ", ".join(map(str, r["outputs"])), free=True),
              Field("last event (UTC)", lambda r: fmt_ts(r.get("last_ts")))]
    console.print(fitted_table(rows, fields, f"{campaign} / {stage}: {shown} input files{when_text}", console.width,
                               ["file", "bucket", "deliveries", "last event (UTC)", "disposition", "outputs",
                                "disposition job"]))


SORT_ALIASES: dict[str, str] = {
    "restarts": "restarts", "restart": "restarts", "badput": "badput", "badput_core_hours": "badput",
    "last": "last", "last_ts": "last", "recent": "last", "latest": "last",
}
SORTS = ("restarts", "badput", "last")


def state_aliases() -> dict[str, str]:
    """--state names: the filters' own, the glossary's (jobs_held), and short ones (ok, failed, done)."""
    from schemas.queries import JOB_STATE_FILTERS

    out = {k: k for k in JOB_STATE_FILTERS}
    out.update({f"jobs_{k}": k for k in JOB_STATE_FILTERS})
    extra = {"ok": "completed_ok", "failed": "completed_failed", "done": "completed", "run": "running",
             "hold": "held", "restart": "restarted", "restarts": "restarted", "wait": "idle", "queued": "idle"}
    out.update({k: v for k, v in extra.items() if v in JOB_STATE_FILTERS})
    return out


@app.command()
def jobs(
    campaign: str = typer.Option(..., "--campaign"),
    stage: str = typer.Option(..., "--stage"),
    state: Optional[str] = typer.Option(None, "--state", help="idle, running, held, suspended, completed, "
                                                              "removed, completed_ok (ok), completed_failed (failed), "
                                                              "restarted"),
    sort: str = typer.Option("restarts", "--sort", help="restarts, badput or last (latest event first)."),
    limit: int = typer.Option(50, "--limit", min=1, help="Most jobs listed (a capped list says so on stderr)."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
    store: Optional[str] = StoreOpt,
    format: Fmt = typer.Option(Fmt.table, "--format"),
    as_of: Optional[str] = typer.Option(None, "--as-of", metavar="TIME", help=AS_OF_HELP),
) -> None:
    """Drill down from a stage to its jobs (most restarts or badput first)."""
    from schemas.queries import JOB_STATE_FILTERS
    from stagewatch.console import resolve_choice
    from stagewatch.reading import count_jobs, read_held_jobs, read_jobs

    try:
        state = resolve_choice(state, state_aliases(), "--state", shown=tuple(JOB_STATE_FILTERS)) if state else None
        sort = resolve_choice(sort, SORT_ALIASES, "--sort", shown=SORTS)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    order = {"restarts": "restarts DESC, badput_core_hours DESC, job_id",
             "badput": "badput_core_hours DESC, restarts DESC, job_id", "last": "last_ts DESC, job_id"}[sort]
    when, _ = moment(at, as_of)
    with open_read(store) as st:
        with view_at(st, when, campaign, stage) as view:
            if state == "held":  # with their hold: reason, HTCondor code/subcode, held since (longest first)
                rows = read_held_jobs(view, campaign, stage, limit=limit)
            else:
                rows = read_jobs(view, campaign, stage, state=state, order=order, limit=limit)
            total = count_jobs(view, campaign, stage, state=state) if len(rows) >= limit else len(rows)
        if not rows:
            require_known(st, campaign, stage)
    if total > len(rows):  # stderr: stdout (a table or the JSON list) keeps its shape
        err.print(f"showing {len(rows):,} of {total:,} jobs; --limit N for more", highlight=False)
    if format == Fmt.json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    console.print((held_table if state == "held" else jobs_table)(
        rows, f"{campaign} / {stage}: jobs" + (f" ({state})" if state else "")
        + (f", {len(rows):,} of {total:,}" if total > len(rows) else "")
        + (f" at {fmt_ts(when)} UTC" if when is not None else ""), now=when if when is not None else time.time(),
        width=console.width))


def _code(r: dict[str, Any]) -> str | None:
    code, sub = r.get("hold_code"), r.get("hold_subcode")
    return None if code is None else f"{code}/{'-' if sub is None else sub}"


def held_table(rows: list[dict[str, Any]], title: str, now: float, width: int = 10_000) -> Table:
    """Held jobs, longest held first, laid out as `condor_q -hold`: the short fields, then why (free text,
    the column that wraps). Attempts, restarts and the submission are in `jobs` and `job ID`."""
    since = lambda r: r.get("held_ts")  # noqa: E731
    fields = [Field("job_id", lambda r: r["job_id"]),
              Field("held since (UTC)", lambda r: fmt_ts(since(r))),
              Field("held for", lambda r: None if since(r) is None else fmt_duration(now - float(since(r))), "right"),
              Field("code/sub", _code), Field("site", lambda r: r.get("site")),
              Field("hold reason", lambda r: r.get("hold_reason"), free=True)]
    return fitted_table(rows, fields, title, width,
                        ["job_id", "hold reason", "held for", "held since (UTC)", "code/sub", "site"])


def jobs_table(rows: list[dict[str, Any]], title: str, now: float, width: int = 10_000) -> Table:
    """The jobs list (the glossary's short names as headers); holds (reason, code/subcode, held since) when the
    rows carry them. Columns that do not fit the terminal go, least needed first, and are named."""
    fields = [Field("job_id", lambda r: r["job_id"]), Field("state", lambda r: r["state"]),
              Field("attempts", lambda r: r["attempts"], "right"), Field("restarts", lambda r: r["restarts"], "right"),
              Field("exit code", lambda r: r["exit_code"], "right"), Field("signal", lambda r: r["signal"], "right"),
              Field("CPU eff %", lambda r: fmt_number(r["cpu_efficiency_pct"], 1), "right"),
              Field("badput core-h", lambda r: fmt_number(r["badput_core_hours"], 2), "right"),
              Field("site", lambda r: r["site"]), Field("last event (UTC)", lambda r: fmt_ts(r.get("last_ts")))]
    priority = ["job_id", "state", "restarts", "attempts", "last event (UTC)", "site", "badput core-h", "CPU eff %",
                "exit code", "signal"]
    if any(r.get("hold_reason") for r in rows):
        fields += [Field("hold reason", lambda r: r.get("hold_reason"), free=True), Field("code/sub", _code),
                   Field("held since (UTC)", lambda r: None if r.get("held_ts") is None else
                         f"{fmt_ts(r['held_ts'])} ({fmt_duration(now - float(r['held_ts']))})")]
        priority[2:2] = ["hold reason"]
        priority += ["held since (UTC)", "code/sub"]
    return fitted_table(rows, fields, title, width, priority)


@app.command()
def job(
    job_id: str = typer.Argument(..., help="The job id (schedd#cluster.proc); --campaign/--stage only when it "
                                           "is in more than one stage."),
    campaign: Optional[str] = typer.Option(None, "--campaign"),
    stage: Optional[str] = typer.Option(None, "--stage"),
    store: Optional[str] = StoreOpt,
    format: Fmt = typer.Option(Fmt.table, "--format"),
) -> None:
    """Drill down to one job: its attempts (what ended each, for how long) and its events."""
    from stagewatch.reading import find_job, read_job

    with open_read(store) as st:
        if campaign is None or stage is None:
            if campaign is not None or stage is not None:
                require_known(st, campaign, stage)
            places = [(c, s) for c, s in find_job(st, job_id)
                      if (campaign is None or c == campaign) and (stage is None or s == stage)]
            if not places:
                raise UserError(f"No job {job_id!r} in this store; `stagewatch jobs --campaign C --stage S` lists "
                                "a stage's jobs.")
            if len(places) > 1:
                where_ = "; ".join(f"--campaign {_shell_word(c)} --stage {_shell_word(s)}" for c, s in places[:10])
                raise UserError(f"Job {job_id!r} is in {len(places)} stages: give one of {where_}"
                                + (" ..." if len(places) > 10 else "") + ".")
            campaign, stage = places[0]
        data = read_job(st, campaign, stage, job_id)
        if not data["events"]:
            require_known(st, campaign, stage)
    if not data["events"]:
        raise UserError(f"No job {job_id!r} in {campaign} / {stage}; `stagewatch jobs --campaign C --stage S` "
                        "lists its jobs.")
    if format == Fmt.json:
        sys.stdout.write(json.dumps({"campaign": campaign, "stage": stage, "job_id": job_id, **data}, indent=2,
                                    default=str) + "\n")
        return
    right = "right"
    attempts = [Field("attempt", lambda a: a["attempt"], right), Field("started (UTC)", lambda a: fmt_ts(a["started_ts"])),
                Field("ended (UTC)", lambda a: fmt_ts(a["ended_ts"])),
                Field("ended by", lambda a: a["ended_by"] or "(open)"),
                Field("wall", lambda a: fmt_duration(a["wall_s"]), right), Field("cores", lambda a: a["cores"], right),
                Field("exit code", lambda a: a["exit_code"], right), Field("signal", lambda a: a["signal"], right),
                Field("site", lambda a: a["site"]), Field("host", lambda a: a["host"], free=True)]
    console.print(fitted_table(data["attempts"], attempts, f"{job_id}: attempts ({campaign} / {stage})",
                               console.width, ["attempt", "started (UTC)", "ended by", "wall", "site", "host",
                                               "ended (UTC)", "exit code", "signal", "cores"]))
    events = [Field("time (UTC)", lambda ev: fmt_ts(ev["ts"])), Field("type", lambda ev: ev["type"]),
              Field("reason", lambda ev: ev["reason"], free=True), Field("event_id", lambda ev: ev["event_id"])]
    console.print(fitted_table(data["events"], events, f"{job_id}: events", console.width,
                               ["time (UTC)", "type", "reason", "event_id"]))


def _shell_word(value: str) -> str:
    """A name as one shell word, so a listed choice can be pasted as is."""
    import shlex

    return shlex.quote(value)


@app.command()
def verify(
    store: Optional[str] = StoreOpt,
    campaign: Optional[str] = typer.Option(None, "--campaign"),
    stage: Optional[str] = typer.Option(None, "--stage"),
) -> None:
    """Recompute every number from the raw events in SQL and compare with the stored numbers.

    The recount is independent code (the views v_job_recount and v_file_recount, which you can also
    query yourself). Prints each difference and exits 1 if there is any.
    """
    from stagewatch.verify import verify as run_verify

    with open_read(store) as st:
        # before the recount: `verify --stage nope` must not say ok; a stage with raw events only is known
        require_known(st, campaign, stage, ("stage_numbers", "raw_events"))
        from stagewatch.views.progress import CountingStore, ticking

        with ticking(err, "verifying: recounting from raw events", "queries") as tick:
            report = run_verify(CountingStore(st, tick), campaign, stage)  # type: ignore[arg-type]
    for line in report.differences:
        console.print(line, highlight=False, markup=False)
    checked = (f"{report.stages_checked} stage(s), {report.jobs_checked:,} job(s) and "
               f"{report.files_checked:,} file(s) checked")
    if report.stale_attempt_rows:
        checked += (f"; {report.stale_attempt_rows:,} attempt row(s) left by conflicting copies are kept but not "
                    "counted by any number")
    if not report.ok:
        entities = (f", {report.entity_differences:,} job/attempt/file row(s) differ"
                    if report.entity_differences else "")
        err.print(f"[red]verify failed[/]: {len(report.differences)} difference(s) listed{entities}; {checked}",
                  highlight=False)
        raise typer.Exit(1)
    err.print(f"verify ok: {checked}; every number and every row equals its recount from raw events",
              highlight=False)


@app.command()
def glossary() -> None:
    """Print every number's definition."""
    for n in NUMBERS:
        console.print(f"[bold]{n.name}[/] ({n.group}): {n.definition}")


@app.command()
def simulate(
    preset: str = typer.Argument("nova-talk", help="A simulator preset (nova-talk, nova-week, tiny)."),
    seed: int = typer.Option(1, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write JSON lines here instead of stdout."),
) -> None:
    """Write a simulated campaign as JSON lines (deterministic for a seed)."""
    from ingest.simulator import PRESETS, simulate_many

    if preset not in PRESETS:
        raise UserError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    from stagewatch.views.progress import counting

    # the bar only when the lines go to a file (on a terminal, stdout's lines would scroll it away)
    with counting(err, f"simulating {esc(preset)}", "events", enabled=err.is_terminal and out is not None) as track:
        n = write_jsonl(track(simulate_many(PRESETS[preset](), seed)), out)
    err.print(f"wrote {n} events of preset {preset} (seed {seed})")


@app.command()
def demo(
    store: str = typer.Option(DEMO_STORE, "--store", help="A chdb:PATH for the demo's own store (not "
                                                          "$STAGEWATCH_STORE: the demo never mixes with real "
                                                          "numbers)."),
    preset: str = typer.Option("nova-talk", "--preset"),
    seed: int = typer.Option(1, "--seed"),
    fresh: bool = typer.Option(True, "--fresh/--keep", help="Start from an empty demo store (only a store "
                                                            "`stagewatch demo` created is ever deleted)."),
) -> None:
    """Simulate the talk's campaign, replay it into a local chDB store of its own and print the overview."""
    from ingest.simulator import PRESETS, simulate_many
    from stagewatch.reading import read_status
    from stagewatch.replay import replay_events

    if preset not in PRESETS:
        raise UserError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    url = store or DEMO_STORE
    if not url.startswith("chdb:"):
        raise UserError(f"The demo writes an embedded store: pass --store chdb:PATH, not {url!r} (replay into a "
                        "server with `stagewatch simulate ... | stagewatch replay - --store URL`).")
    if fresh:
        _remove_demo_store(url[len("chdb:"):])
    t0 = time.perf_counter()
    from stagewatch.views.progress import counting

    last = -math.inf

    def latest(events: Any) -> Any:
        nonlocal last
        for ev in events:
            last = ev.ts if ev.ts > last else last
            yield ev

    with open_store(url, kind="demo") as st:
        with counting(err, f"simulating {esc(preset)} into {esc(url)}", "events") as track:
            report = replay_events(st, track(latest(simulate_many(PRESETS[preset](), seed))))
        result = read_status(st, as_of=last if math.isfinite(last) else None, forecast=True)
    console.print(overview_table(result))
    # the talk's events are from 2017: read "now", every stage with work left is STALLED, so the next command
    # shown puts the stall clock at the last event, as the overview above does
    clock, why = "", ""
    if math.isfinite(last) and time.time() - last > STALL_THRESHOLD_S:
        clock = f" --now {fmt_ts(math.ceil(last), RFC3339)}"
        why = (" (--now: the stall clock at the simulation's last event, as above; without it every stage with "
               "work left is STALLED today)")
    err.print(f"{report.lines:,} events ({report.duplicates:,} duplicate deliveries) replayed in "
              f"{time.perf_counter() - t0:.1f} s into {esc(url)}; as of the last event. Next: "
              f"`stagewatch status --store {esc(url)}{clock}`{why}, `stagewatch missing-files --store {esc(url)} "
              "--campaign C --stage S`.", highlight=False)


def _remove_demo_store(path: str) -> None:
    """Delete the demo's previous store, but only if `stagewatch demo` created it (its marker says so)."""
    import shutil

    from stagewatch.store.chdb_store import MARKER, read_marker

    if not os.path.lexists(path):
        return
    marker = read_marker(path) if os.path.isdir(path) and not os.path.islink(path) else None
    if marker is None:
        raise UserError(f"{path} is not a store created by `stagewatch demo` (no {MARKER} marker); refusing to "
                        "delete it. Pass another --store chdb:PATH (the default is ./stagewatch-demo).")
    if marker.get("kind") != "demo":
        raise UserError(f"{path} is a stagewatch store with real numbers, not the demo's; refusing to delete it. "
                        "Pass another --store chdb:PATH, or --keep to add the demo's events to it.")
    shutil.rmtree(path)
    logging.getLogger("stagewatch.cli").info("demo.store_removed path=%s", path)


def _register_optional() -> None:
    """Sub-commands that live in their own modules."""
    import importlib

    for module, attr, name in (("stagewatch.cli_dev", "dev_app", "dev"),):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        app.add_typer(getattr(mod, attr), name=name)
    import importlib.util

    # each module has `register(app)`; a module that exists must import (its errors are not hidden)
    for module in ("stagewatch.cli_stream", "stagewatch.cli_dashboards", "stagewatch.cli_samples",
                   "stagewatch.cli_condor", "stagewatch.cli_sam", "stagewatch.cli_follow",
                   "stagewatch.cli_migrate", "stagewatch.cli_sites", "stagewatch.cli_history",
                   "stagewatch.cli_holds"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(app)


_register_optional()


def _known_errors() -> tuple[type[BaseException], ...]:
    """Error classes whose messages are sentences for the user (bad input, Kafka unreachable, ...).

    Only classes of modules already imported: a command that never loaded the Kafka client cannot
    raise its errors, and `stagewatch status` should not pay for importing it.
    """
    found: list[type[BaseException]] = []
    for module, name in (("ingest.lines", "InputError"), ("ingest.kafka_io", "KafkaError"),
                         ("schemas.events", "InvalidEvent"), ("ingest.condor.reading", "NotAJobEventLog"),
                         ("ingest.condor.checkpoint", "CheckpointMismatch"),
                         ("ingest.condor.follower", "LogReplaced"), ("ingest.sam.http", "SamError"),
                         ("processors.faust.config", "WorkerError")):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def main() -> None:
    """Entry point: usage errors are click's; our errors become one actionable sentence (escaped: they
    quote names from data); anything else is a bug and keeps its traceback."""
    try:
        app()
    except UserError as exc:
        err.print(f"[red]error:[/] {esc(exc)}", highlight=False)
        sys.exit(2)
    except StoreError as exc:
        err.print(f"[red]store error:[/] {esc(exc)}", highlight=False)
        sys.exit(1)
    except Exception as exc:
        if not isinstance(exc, _known_errors()):
            raise
        err.print(f"[red]error:[/] {esc(exc)}", highlight=False)
        sys.exit(1)
