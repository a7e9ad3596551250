"""`stagewatch report`: one self-contained HTML page for people without Grafana.

Top to bottom: headline tiles (files needing recovery with the exact `stagewatch missing-files` command per
stage, stalled stages, the biggest evicting site: stagewatch/report_tiles.py), the campaign overview table
(columns in labelled groups, every column's glossary definition on hover, sized to fit a 1,400 px window),
and per stage four charts: input files by bucket, progress over time (input files located and jobs
completed, cumulative), jobs by state over time (idle, running, held) and restarts by cause.

Its numbers come from the same SQL as everything else: `read_status` (STATUS_SQL) for the table, the
tiles, the buckets and the restarts; `read_sites` (SITES_SQL) for the site tile; the Stage dashboard's
per-hour queries (dashboards/queries.py, macros expanded by dashboards/macros.py exactly as the Grafana
plugin would) for progress; and dashboards/states_over_time.py, the definition `stagewatch history` and
the Grafana panel share, for jobs by state. CSS, JavaScript (stagewatch/report_static.py) and the data are
inline and the charts are SVG drawn by the page's own script: the file opens from disk with no network
access, no CDN, no fonts to fetch.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from typing import Any

from dashboards import queries as dq
from dashboards.build import number_column
from dashboards.macros import TimeRange, expand
from dashboards.states_over_time import OVER_TIME_STATES, jobs_by_state_sql
from processors.forecast import DEFAULT_RATE_WINDOW_H
from processors.numbers import FILE_BUCKETS, GLOSSARY_URL, NUMBERS_BY_NAME, RESTART_CAUSES, STALL_THRESHOLD_S
from schemas.queries import where as where_sql
from stagewatch.console import fmt_duration, fmt_ts
from stagewatch.reading import read_sites, read_status
from stagewatch.report_static import CSS, JS
from stagewatch.report_tiles import render_tiles, tiles
from stagewatch.store.base import Store

# Characters that must not appear literally in JSON inside <script>: `<` and `>` (`</script>`, `<!--` and
# `<script` change how the HTML parser ends the element), `&` (for good measure, as in JSON-in-HTML
# practice) and U+2028/U+2029 (line terminators in older JavaScript). JSON's \uXXXX keeps them as data.
_JSON_IN_HTML = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as null: JSON.parse accepts neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_for_script(data: Any) -> str:
    """`data` as JSON that can sit inside an HTML <script> element whatever its strings hold.

    Every name from the data (campaign, stage, ...) may contain `</script>`, `<!--<script`, `&`, quotes
    or U+2028; escaped this way the text is still valid JSON and JSON.parse gives back the exact strings.
    """
    return json.dumps(_finite(data), sort_keys=True, ensure_ascii=False, allow_nan=False).translate(_JSON_IN_HTML)


DATETIME_MAX = 2**32 - 1
"""The last second a ClickHouse DateTime holds (UInt32)."""


def _fmt(col: str, value: Any, as_of: float | None = None) -> str:
    if value is None:
        return "–"
    if col == "eta":  # when, from the report's moment: "in 5 h 10 min" (the UTC time is the cell's title)
        if as_of is None or value <= as_of:
            return "now"
        # a no-break space keeps each number with its unit when the narrow cell wraps: "in 2 h / 53 min"
        return "in " + re.sub(r"(\d) ", "\\1\u00a0", fmt_duration(value - as_of))
    if col == "stalled":
        return "STALLED" if value else "no"
    if col in ("completion_pct", "cpu_efficiency_pct"):
        return f"{value:.1f} %"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _utc(ts: float | None) -> str:
    """A Unix time as UTC text; never raises (a time no calendar date holds is shown as its number)."""
    return "–" if ts is None else f"{fmt_ts(ts)} UTC"


def _series(store: Store, sql: str, column: str, tr: TimeRange) -> list[list[float]]:
    """[[unix seconds, value], ...] of a per-hour query, its `time` read as a number (no time zones involved)."""
    wrapped = f"SELECT toUInt32(time) AS t, {column} AS v FROM ({expand(sql, tr, variables=[])}) AS s ORDER BY t"
    return [[float(r["t"]), float(r["v"])] for r in store.query(wrapped)]


CHART_POINTS = 120
"""At most this many steps in a jobs-by-state chart (the step is a whole number of hours)."""


def chart_end(first_ts: float | None, last_ts: float | None, as_of: float) -> float:
    """Where a stage's time charts end: its last event plus a quarter of its span (at least an hour), so a
    stage that went quiet shows a flat tail, but never after `as_of` nor beyond what a DateTime holds (a
    2017 campaign viewed in 2026 keeps its own time scale)."""
    if first_ts is None or last_ts is None:
        return min(as_of, DATETIME_MAX)
    return min(as_of, last_ts + max(0.25 * (last_ts - first_ts), 3600.0), DATETIME_MAX)


def jobs_over_time(store: Store, where: str, first_ts: float | None, last_ts: float | None,
                   as_of: float) -> dict[str, Any]:
    """Jobs by state at hourly (or coarser) steps from the stage's first event to its chart_end; the last
    step is at or after the last event (unless that is after as_of), so the chart ends at today's numbers."""
    end = chart_end(first_ts, last_ts, as_of)
    out: dict[str, Any] = {"states": list(OVER_TIME_STATES), "step_s": 3600, "points": [], "end": end}
    if first_ts is None or end < first_ts:
        return out
    start = int(first_ts // 3600 * 3600)
    step = 3600 * max(1, math.ceil((end - start) / 3600 / CHART_POINTS))
    n = int((end - start) // step) + 1
    target = min(last_ts if last_ts is not None else end, as_of)
    if start + (n - 1) * step < target and start + n * step <= min(as_of, DATETIME_MAX):
        n += 1
    rows = store.query(f"SELECT toUInt32(time) AS t, * FROM ({jobs_by_state_sql(where, str(start), str(step), str(n))})"
                       " AS s ORDER BY t")
    out["step_s"] = step
    out["points"] = [[int(r["t"]), *(int(r[f"jobs_{s}"]) for s in OVER_TIME_STATES)] for r in rows]
    out["end"] = max(end, out["points"][-1][0]) if out["points"] else end
    return out


def _first_event_ts(store: Store, campaign: str, stage: str) -> float | None:
    rows = store.query(f"SELECT first_event_ts FROM stage_numbers FINAL WHERE {where_sql(campaign, stage)}")
    return float(rows[0]["first_event_ts"]) if rows and rows[0]["first_event_ts"] is not None else None


def collect(store: Store, *, campaign: str | None = None, as_of: float | None = None,
            threshold_s: float = STALL_THRESHOLD_S, source_url: str | None = None,
            at: float | None = None, rate_window_h: float = DEFAULT_RATE_WINDOW_H) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data.

    `source_url` is the user's store (the commands in the tiles read it; `store` may be the ephemeral view
    of `--at`), `at` the moment of `--at`, repeated in those commands.
    """
    as_of = time.time() if as_of is None else as_of
    status = read_status(store, campaign, as_of=as_of, threshold_s=threshold_s, forecast=True,
                         rate_window_h=rate_window_h)
    stages = []
    for s in status["stages"]:
        w = where_sql(s["campaign"], s["stage"])
        tr = TimeRange(0, min(as_of, DATETIME_MAX), 3600)  # a later --as-of would wrap in toDateTime
        stages.append({
            "campaign": s["campaign"], "stage": s["stage"], "stalled": s["stalled"],
            "input_files": s["input_files"],
            "buckets": [{"name": b, "label": NUMBERS_BY_NAME[b].short, "value": s[b],
                         "definition": NUMBERS_BY_NAME[b].definition} for b in FILE_BUCKETS],
            "restarts": [{"name": c, "label": c, "value": s["restarts_by_cause"][c]} for c in RESTART_CAUSES],
            "located_per_hour": _series(store, dq.files_located_per_hour_sql(w), "files_located", tr),
            "completed_per_hour": _series(store, dq.jobs_completed_per_hour_sql(w), "jobs_completed", tr),
            "jobs_over_time": jobs_over_time(store, w, _first_event_ts(store, s["campaign"], s["stage"]),
                                             s["last_event_ts"], as_of),
            "jobs_completed": s["jobs_completed"],
            "files_located": s["files_located"],
        })
    url = source_url if source_url is not None else getattr(store, "url", None)
    return {"as_of": as_of, "at": at, "stall_threshold_s": threshold_s, "rate_window_h": rate_window_h,
            "status": status["stages"], "stages": stages,
            "tiles": tiles(status["stages"], read_sites(store, campaign), as_of=as_of, store_url=url, at=at)}


# The overview's columns in labelled groups (a first header row names each group).
COLUMN_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("stage", "Stage", ("campaign", "stage")),
    ("files", "Input files: each in one bucket", ("input_files", "files_located", "files_without_located_output",
                                                  "completion_pct", "files_in_flight", "files_failed",
                                                  "files_pending")),
    ("jobs", "Jobs by state", ("jobs_idle", "jobs_running", "jobs_held", "jobs_completed_ok",
                               "jobs_completed_failed", "jobs_removed")),
    ("attempts", "Attempts", ("restarts", "cpu_efficiency_pct")),
    ("progress", "Progress", ("located_rate_per_h", "eta", "stalled")),
)
REPORT_COLUMNS = tuple(c for _, _, group in COLUMN_GROUPS for c in group)
"""The Grafana overview's columns (OVERVIEW_COLUMNS, same order) and the forecast before the stall flag."""


def _columns() -> list[tuple[str, str]]:
    """(column, group key) in table order."""
    return [(c, key) for key, _, group in COLUMN_GROUPS for c in group]


def _breakable(name: str) -> str:
    """A name as HTML text with line-break opportunities (<wbr>) after `_ - . /`, so a narrow column breaks
    `nova_prod5_data` as `nova_prod5_` / `data` rather than anywhere (CSS still breaks anywhere if it must).
    Escaped first; the entities html.escape writes contain none of these characters."""
    out = html.escape(name)
    for ch in "_-./":
        out = out.replace(ch, ch + "<wbr>")
    return out


def _table(data: dict[str, Any]) -> str:
    esc = html.escape
    groups = "".join(f'<th colspan="{len(cols)}" class="g-{key}{" first" if i else ""}" scope="colgroup">'
                     f'{esc(label)}</th>' for i, (key, label, cols) in enumerate(COLUMN_GROUPS))
    firsts = {group[0] for _, _, group in COLUMN_GROUPS[1:]}
    head_cells = []
    for col, key in _columns():
        first = " first" if col in firsts else ""
        if col in ("campaign", "stage"):
            head_cells.append(f'<th tabindex="0" class="name g-{key}{first}" scope="col">{col.capitalize()}'
                              f'<span class="tip">The {col}{" (click for its charts)" if col == "stage" else ""}.'
                              f'</span></th>')
            continue
        short, definition = number_column(col)
        head_cells.append(f'<th tabindex="0" class="g-{key}{first}" scope="col" data-number="{col}" '
                          f'aria-description="{esc(definition)}">'
                          f'{esc(short)}<span class="tip"><b>{esc(col)}</b>: {esc(definition)}</span></th>')
    rows = []
    for i, s in enumerate(data["status"]):
        cells = []
        for col, _ in _columns():
            v = s[col]
            first = ' class="first"' if col in firsts else ""
            if col == "campaign":
                cells.append(f'<td class="name">{_breakable(str(v))}</td>')
            elif col == "stage":
                cells.append(f'<td class="name"><a href="#stage-{i}">{_breakable(str(v))}</a></td>')
            else:
                title = f' title="{esc(_utc(v))}"' if col == "eta" and v is not None else ""
                cells.append(f'<td{first}{title} data-number="{col}">{esc(_fmt(col, v, data["as_of"]))}</td>')
        cls = ' class="stalled"' if s["stalled"] else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    empty = f'<tr><td colspan="{len(REPORT_COLUMNS)}">No stages in this store.</td></tr>'
    return (f'<table class="overview"><thead><tr class="groups">{groups}</tr><tr>{"".join(head_cells)}</tr></thead>'
            f'<tbody>{"".join(rows) or empty}</tbody></table>')


def render(data: dict[str, Any], *, source: str = "") -> str:
    """The HTML page for `collect`'s data."""
    esc = html.escape
    sections = []
    for i, st in enumerate(data["stages"]):
        badge = '<span class="badge">STALLED</span>' if st["stalled"] else ""
        s = data["status"][i]
        sections.append(
            f'<article class="stage{" stalled" if st["stalled"] else ""}" id="stage-{i}">'
            f'<h2>{esc(st["campaign"])} / {esc(st["stage"])}{badge}</h2>'
            f'<p class="legend">{s["files_located"]:,} of {s["input_files"]:,} input files located '
            f'({_fmt("completion_pct", s["completion_pct"])}); {s["jobs"]:,} jobs, {s["restarts"]:,} restarts; '
            f'last progress {_utc(s["last_progress_ts"])}.</p>'
            f'<div class="charts" id="charts-{i}"></div></article>')
    payload = json_for_script(data)
    threshold_h = data["stall_threshold_s"] / 3600
    moment = (f"At {_utc(data['at'])} (from the events up to then)" if data.get("at") is not None
              else f"As of {_utc(data['as_of'])}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stagewatch report: campaign overview</title>
<style>{CSS}</style></head>
<body>
<h1>stagewatch: campaign overview</h1>
<p class="meta">{moment}{" · " + esc(source) if source else ""} · stalled = no progress for
{threshold_h:g} h with work left · located/h over the last {data["rate_window_h"]:g} h · hover a column for
its definition ({esc(GLOSSARY_URL)}).</p>
{render_tiles(data["tiles"])}
<section id="overview">{_table(data)}</section>
<section id="stages">{''.join(sections)}</section>
<footer>Generated by <code>stagewatch report</code>. The numbers come from the same SQL as
<code>stagewatch status</code> and the Grafana dashboards. This page needs no network access.</footer>
<script type="application/json" id="report-data">{payload}</script>
<script>{JS}</script>
</body></html>
"""


def build_report(store: Store, *, campaign: str | None = None, as_of: float | None = None,
                 threshold_s: float = STALL_THRESHOLD_S, source_url: str | None = None,
                 at: float | None = None, rate_window_h: float = DEFAULT_RATE_WINDOW_H) -> str:
    """The page for `store`; `source_url`/`at`: the user's store and `--at` moment when `store` is a view."""
    url = source_url if source_url is not None else store.url
    return render(collect(store, campaign=campaign, as_of=as_of, threshold_s=threshold_s, source_url=url, at=at,
                          rate_window_h=rate_window_h), source=url)


__all__ = ["collect", "render", "build_report", "json_for_script", "COLUMN_GROUPS", "REPORT_COLUMNS", "jobs_over_time"]
