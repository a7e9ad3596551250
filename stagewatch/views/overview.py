"""The overview of `stagewatch status`: compact (fits the terminal, 120 or 80 columns) or `--wide`.

Why columns are dropped rather than squeezed: rich shrinks every column of a table that is too wide,
which cuts numbers ("44,2…") with no sign; an operator then reads a wrong number. So each number column
is exactly as wide as its widest value (or the longest word of its header, which wraps on words), and
columns are taken in priority order while they fit: files first (the real measure), then jobs, then
the rest. Names (campaign, stage) may fold onto several lines; numbers never do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from processors.numbers import FILE_BUCKETS, GLOSSARY_URL, JOB_STATES, NUMBERS_BY_NAME, RESTART_CAUSES
from stagewatch.console import fmt_ago, fmt_number, fmt_ts

NAME_MIN = 20
"""Narrowest the name column gets when names are longer (they fold onto more lines below it)."""
GAP = 1
"""Characters between two columns: the box's (blank) divider."""


def short(name: str) -> str:
    """The glossary's short name of a number (the column header), its name if it has none."""
    n = NUMBERS_BY_NAME.get(name)
    return n.short if n is not None else name


def fmt_eta(eta: Any, as_of: float) -> str:
    """An ETA (a Unix time, or null) as "in 3 h"; '-' when there is none."""
    if eta is None:
        return "-"
    text = fmt_ago(eta, as_of)
    return text if text.startswith("in ") else "now"


@dataclass(frozen=True)
class Column:
    """One column of the overview: its header, its cell text for a stage, and the JSON keys it shows."""
    header: str
    text: Callable[[dict[str, Any], float], str]
    keys: tuple[str, ...] = ()
    style: str | None = None
    justify: str = "right"


def _num(key: str, digits: int | None = None) -> Callable[[dict[str, Any], float], str]:
    return lambda s, now: fmt_number(s.get(key), digits)


def _located(s: dict[str, Any], now: float) -> str:
    return (f"{fmt_number(s['files_located'])}/{fmt_number(s['input_files'])} "
            f"{fmt_number(s['completion_pct'], 1)}%")


def _slash(*keys: str) -> Callable[[dict[str, Any], float], str]:
    return lambda s, now: "/".join(fmt_number(s.get(k)) for k in keys)


STALLED_SUFFIX = " STALLED"
"""The compact overview's stall flag, after the stage's name (or under it when the names have no room)."""

COMPACT: tuple[Column, ...] = (
    # priority order: the first columns are the last to go (names and STALLED are in the first column)
    Column(f"{short('files_located')}/ {short('input_files')} %", _located,
           ("files_located", "input_files", "completion_pct"), "cyan"),
    Column(short("files_without_located_output"), _num("files_without_located_output"),
           ("files_without_located_output",), "cyan bold"),
    Column(short("files_in_flight"), _num("files_in_flight"), ("files_in_flight",), "cyan"),
    Column(short("files_failed"), _num("files_failed"), ("files_failed",), "cyan"),
    Column(short("files_pending"), _num("files_pending"), ("files_pending",), "cyan"),
    Column(f"{short('jobs_running')}/ {short('jobs_idle')}/ {short('jobs_held')}",
           _slash("jobs_running", "jobs_idle", "jobs_held"), ("jobs_running", "jobs_idle", "jobs_held")),
    Column(f"{short('jobs_completed_ok')}/ {short('jobs_completed_failed').replace('Completed ', '')}",
           _slash("jobs_completed_ok", "jobs_completed_failed"), ("jobs_completed_ok", "jobs_completed_failed")),
    Column(short("restarts"), _num("restarts"), ("restarts",)),
    Column(short("cpu_efficiency_pct"), _num("cpu_efficiency_pct", 1), ("cpu_efficiency_pct",)),
    Column(short("last_progress_ts"), lambda s, now: fmt_ago(s.get("last_progress_ts"), now), ("last_progress_ts",)),
    Column("ETA", lambda s, now: fmt_eta(s.get("eta"), now), ("eta",)),
)
"""The compact overview's columns, most important first; ETA only when the result carries `eta`."""


def _wide_columns(result: dict[str, Any]) -> list[Column]:
    """Every number: all six buckets (so their sum is visible), every job state, restarts by cause."""
    cols = [Column(short(k), _num(k, 1 if k == "completion_pct" else None), (k,), "cyan")
            for k in ("input_files", *FILE_BUCKETS, "files_without_located_output", "completion_pct",
                      "outputs_declared", "outputs_located")]
    cols += [Column(short(k), _num(k), (k,)) for k in
             ("jobs", *(f"jobs_{s}" for s in JOB_STATES), "jobs_completed_ok", "jobs_completed_failed",
              "job_attempts", "restarts")]
    cols += [Column(f"Restarts {c.replace('_', ' ')}",
                    (lambda c: lambda s, now: fmt_number((s.get("restarts_by_cause") or {}).get(c)))(c),
                    (f"restarts_by_cause.{c}",)) for c in RESTART_CAUSES]
    cols += [Column(short("cpu_efficiency_pct"), _num("cpu_efficiency_pct", 1), ("cpu_efficiency_pct",)),
             Column(short("badput_core_hours"), _num("badput_core_hours", 2), ("badput_core_hours",))]
    stages = result.get("stages") or []
    if any("located_rate_per_h" in s for s in stages):
        cols.append(Column(short("located_rate_per_h"), _num("located_rate_per_h", 1), ("located_rate_per_h",)))
    if any("eta" in s for s in stages):
        cols.append(Column("ETA", lambda s, now: fmt_ts(s.get("eta")), ("eta",)))
    cols += [Column(f"{short('last_event_ts')} (UTC)", lambda s, now: fmt_ts(s.get("last_event_ts")),
                    ("last_event_ts",)),
             Column(f"{short('last_progress_ts')} (UTC)", lambda s, now: fmt_ts(s.get("last_progress_ts")),
                    ("last_progress_ts",)),
             Column(short("stalled"), lambda s, now: "STALLED" if s["stalled"] else "", ("stalled",),
                    "red bold", "left")]
    return cols


def _width(col: Column, cells: list[str]) -> int:
    """The column's width: its widest cell, or the longest word of its header (headers wrap on words)."""
    words = col.header.split() or [""]
    return max([len(w) for w in words] + [len(c) for c in cells])


def _bar_text(text: str, stage: dict[str, Any]) -> Text:
    """The located/input cell drawn as its % bar: the located share of the cell on green."""
    t = Text(text)
    try:
        share = max(0.0, min(1.0, float(stage["completion_pct"]) / 100))
    except (TypeError, ValueError):
        return t
    n = int(len(text) * share)
    if n:
        t.stylize("black on green", 0, n)
    if n < len(text):
        t.stylize("on grey23", n, len(text))
    return t


@dataclass
class Overview:
    """A rendered overview: the table, the columns shown and those left out for the width."""
    table: Table
    shown: list[Column]
    hidden: list[Column]
    width: int
    spare: int = 0  # compact: columns left over after the number columns shown (before names widen)


def overview(result: dict[str, Any], width: int, wide: bool = False) -> Overview:
    """The overview table of a `read_status` result for a terminal `width` columns wide.

    Compact: the name column and as many number columns as fit, in priority order. Wide: every number,
    one column each, however wide that is (`width` is then what the table needs, at least the given).
    """
    now = float(result["as_of"])
    stages = result.get("stages") or []
    if wide:
        candidates = _wide_columns(result)
    else:
        candidates = [c for c in COMPACT if c.header != "ETA" or result.get("forecast_omitted")
                      or any("eta" in s for s in stages)]
    texts = {id(c): [c.text(s, now) for s in stages] for c in candidates}
    widths = {id(c): _width(c, texts[id(c)]) for c in candidates}
    longest_campaign = max([len("Campaign")] + [len(s["campaign"]) for s in stages])
    longest_stage = max([len("Stage")] + [len(s["stage"]) for s in stages])
    if wide:
        shown = list(candidates)
        need = (longest_campaign + longest_stage + sum(widths[id(c)] for c in shown) + GAP * (len(shown) + 1))
        width = max(width, need)
        used = need
    else:
        longest = max(longest_campaign, longest_stage)
        name_w = min(longest, NAME_MIN)
        shown, used = [], name_w
        for c in candidates:
            extra = widths[id(c)] + GAP
            if used + extra > width:
                break  # strict priority: a later, narrower column never replaces an earlier one
            shown.append(c)
            used += extra
        spare = width - used
        # what is left widens the names, up to the longest, and then to put STALLED on its stage's line
        inline = max([longest] + [len(st["stage"]) + len(STALLED_SUFFIX) for st in stages if st["stalled"]])
        name_w = min(inline, name_w + spare)
    hidden = [c for c in candidates if c not in shown]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0, expand=False)
    if wide:
        table.add_column("Campaign", min_width=longest_campaign, max_width=longest_campaign, overflow="fold")
        table.add_column("Stage", min_width=longest_stage, max_width=longest_stage, overflow="fold")
    else:
        table.add_column("Campaign / stage", min_width=name_w, max_width=name_w, overflow="fold")
    for c in shown:
        w = widths[id(c)]
        table.add_column(Text(c.header), justify=c.justify, style=c.style, overflow="fold", min_width=w, max_width=w)
    campaign = None
    for i, s in enumerate(stages):
        cells = [_bar_text(texts[id(c)][i], s) if c.keys[:1] == ("files_located",) else Text(texts[id(c)][i])
                 for c in shown]
        label = Text(s["stage"], style="bold")
        if s["stalled"] and not wide:  # on the stage's line when the names have room, else under it
            fits = len(s["stage"]) + len(STALLED_SUFFIX) <= name_w
            label.append(STALLED_SUFFIX if fits else "\nSTALLED", style="red bold")
        if wide:
            table.add_row(Text(s["campaign"]), label, *cells)
            continue
        if s["campaign"] != campaign:
            campaign = s["campaign"]
            table.add_row(Text(campaign, style="underline"), *([Text("")] * len(shown)))
        table.add_row(label, *cells)
    return Overview(table, shown, hidden, width, 0 if wide else spare)


def eta_can_show(result: dict[str, Any], width: int) -> bool:
    """Whether the compact overview of ``result`` (read without the forecast) at ``width`` could show the ETA.

    Why: the ETA is the last column in priority, so it shows only when every other column fits and room
    is left; at 120 and 80 columns it never does. `status` reads the forecast (a scan of every input's
    located time) only when this is true, and otherwise marks the result ``forecast_omitted`` so the
    caption still names the ETA among the columns not shown.
    """
    view = overview(result, width)
    return not view.hidden and view.spare >= GAP + len("ETA")


def caption(result: dict[str, Any], view: Overview) -> Text:
    """Under the table: the clock, the stall rule, what the width left out, where the definitions are."""
    text = Text(f"as of {fmt_ts(result['as_of'])} UTC; stalled: work left and no progress for > "
                f"{result['stall_threshold_s'] / 3600:g} h.", style="dim")
    if view.hidden:
        text.append("\nnot shown at this width: " + ", ".join(c.header for c in view.hidden)
                    + " (--wide shows every number).", style="dim")
    text.append(f"\nColumns are the glossary's short names: `stagewatch glossary` or {GLOSSARY_URL}.", style="dim")
    return text


def render(result: dict[str, Any], width: int, wide: bool = False) -> tuple[RenderableType, int]:
    """The overview and its caption, and the width to print them at (wider than asked only for --wide)."""
    view = overview(result, width, wide)
    title = Text(f"stagewatch — {len(result.get('stages') or [])} stage(s) as of {fmt_ts(result['as_of'])} UTC",
                 style="bold")
    return Group(title, view.table, caption(result, view)), view.width
