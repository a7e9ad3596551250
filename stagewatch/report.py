"""`stagewatch report`: one self-contained HTML page for people without Grafana.

The page holds the campaign overview table (every column's glossary definition on hover) and, per
stage, three charts: input files by bucket, progress over time (input files located and jobs
completed, cumulative), and restarts by cause. Its numbers come from the same SQL as everything else:
`read_status` (STATUS_SQL) for the table, the buckets and the restarts, and the Stage dashboard's
per-hour queries (dashboards/queries.py, macros expanded by dashboards/macros.py exactly as the Grafana
plugin would) for progress. CSS, JavaScript and the data are inline and the charts are SVG drawn by
the page's own script: the file opens from disk with no network access, no CDN, no fonts to fetch.
"""

from __future__ import annotations

import html
import json
import math
import time
from typing import Any

from dashboards import queries as dq
from dashboards.build import OVERVIEW_COLUMNS, number_column
from dashboards.macros import TimeRange, expand
from processors.numbers import FILE_BUCKETS, GLOSSARY_URL, NUMBERS_BY_NAME, RESTART_CAUSES, STALL_THRESHOLD_S
from schemas.queries import where as where_sql
from stagewatch.console import fmt_ts
from stagewatch.reading import read_status
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


def _fmt(col: str, value: Any) -> str:
    if value is None:
        return "–"
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


def collect(store: Store, *, campaign: str | None = None, as_of: float | None = None,
            threshold_s: float = STALL_THRESHOLD_S) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data."""
    as_of = time.time() if as_of is None else as_of
    status = read_status(store, campaign, as_of=as_of, threshold_s=threshold_s)
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
            "jobs_completed": s["jobs_completed"],
            "files_located": s["files_located"],
        })
    return {"as_of": as_of, "stall_threshold_s": threshold_s, "status": status["stages"], "stages": stages}


CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dee7; --bg:#fff; --head:#f3f5f9; --bad:#fbe3e3; --badfg:#9b1c1c; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
       margin: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: var(--muted); margin: 0 0 16px; }
table.overview { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.overview th, table.overview td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: right;
       white-space: nowrap; }
table.overview th { background: var(--head); position: relative; cursor: help; font-weight: 600;
       white-space: normal; vertical-align: bottom; font-size: 13px; }
table.overview th:nth-last-child(-n+6) .tip { left: auto; right: 0; }
table.overview th:nth-child(-n+2), table.overview td:nth-child(-n+2) { text-align: left; }
table.overview th .tip { display: none; position: absolute; top: 100%; left: 0; z-index: 5; width: 320px;
       white-space: normal; text-align: left; font-weight: 400; background: #1d2330; color: #fff; padding: 8px 10px;
       border-radius: 4px; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
table.overview th:hover .tip, table.overview th:focus .tip { display: block; }
table.overview th.group-files { border-top: 3px solid #3b6fd8; } table.overview th.group-jobs { border-top: 3px solid #8a5cd0; }
tr.stalled td { background: var(--bad); color: var(--badfg); font-weight: 600; }
a { color: #2456b8; }
.stage { border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; margin: 16px 0; }
.stage.stalled { border-color: #e39a9a; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 16px; }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--fg); }
.legend { color: var(--muted); font-size: 12px; }
.badge { display: inline-block; background: var(--bad); color: var(--badfg); border-radius: 3px; padding: 0 6px;
       font-size: 12px; margin-left: 6px; }
footer { color: var(--muted); margin-top: 28px; font-size: 12px; }
"""

JS = r"""
(function () {
  'use strict';
  var NS = 'http://www.w3.org/2000/svg';
  var data = JSON.parse(document.getElementById('report-data').textContent);
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function svg(w, h) { return el('svg', {viewBox: '0 0 ' + w + ' ' + h, width: '100%', role: 'img'}); }
  var COLORS = ['#3b6fd8', '#e0a03a', '#8a5cd0', '#2f9e7a', '#d65050', '#8d96a8'];
  function bars(items, title) {
    var w = 360, rowH = 22, left = 150, h = items.length * rowH + 8;
    var s = svg(w, h); s.setAttribute('aria-label', title); s.setAttribute('class', 'chart-bars');
    var max = Math.max.apply(null, items.map(function (d) { return d.value; }).concat([1]));
    items.forEach(function (d, i) {
      var y = 4 + i * rowH, bw = (w - left - 50) * d.value / max;
      var label = el('text', {x: left - 6, y: y + 14, 'text-anchor': 'end'}, d.label);
      if (d.definition) { label.appendChild(el('title', {}, d.definition)); }
      s.appendChild(label);
      var r = el('rect', {x: left, y: y + 3, width: Math.max(bw, d.value > 0 ? 1 : 0), height: rowH - 8,
                          fill: COLORS[i % COLORS.length], 'data-value': d.value});
      r.appendChild(el('title', {}, d.label + ': ' + d.value));
      s.appendChild(r);
      s.appendChild(el('text', {x: left + bw + 4, y: y + 14}, String(d.value)));
    });
    return s;
  }
  function cumulative(points) {
    var total = 0;
    return points.map(function (p) { total += p[1]; return [p[0], total]; });
  }
  function progress(stage) {
    var w = 360, h = 190, l = 40, r = 10, t = 10, b = 34;
    var s = svg(w, h); s.setAttribute('class', 'chart-progress'); s.setAttribute('aria-label', 'progress');
    // jobs first (dashed), files on top: where the two coincide both stay visible
    var lines = [{name: 'jobs completed', pts: cumulative(stage.completed_per_hour), color: COLORS[2], dash: '5 3'},
                 {name: 'input files located', pts: cumulative(stage.located_per_hour), color: COLORS[0], dash: ''}];
    var xs = [], ymax = 1;
    lines.forEach(function (ln) { ln.pts.forEach(function (p) { xs.push(p[0]); ymax = Math.max(ymax, p[1]); }); });
    ymax = Math.max(ymax, stage.input_files);
    if (!xs.length) {
      s.appendChild(el('text', {x: w / 2, y: h / 2, 'text-anchor': 'middle'}, 'no progress yet'));
      return s;
    }
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs.concat([data.as_of]));
    if (x1 === x0) { x0 -= 3600; }
    function X(v) { return l + (w - l - r) * (v - x0) / (x1 - x0); }
    function Y(v) { return t + (h - t - b) * (1 - v / ymax); }
    s.appendChild(el('line', {x1: l, y1: Y(0), x2: w - r, y2: Y(0), stroke: '#aab2c0'}));
    s.appendChild(el('line', {x1: l, y1: t, x2: l, y2: Y(0), stroke: '#aab2c0'}));
    s.appendChild(el('text', {x: l - 4, y: Y(ymax) + 4, 'text-anchor': 'end'}, String(ymax)));
    s.appendChild(el('text', {x: l - 4, y: Y(0) + 4, 'text-anchor': 'end'}, '0'));
    if (stage.input_files > 0) {
      s.appendChild(el('line', {x1: l, y1: Y(stage.input_files), x2: w - r, y2: Y(stage.input_files),
                                stroke: '#3b6fd8', 'stroke-dasharray': '3 3', opacity: 0.6}));
    }
    function day(v) {  // total: a time no Date holds is shown as its Unix seconds (toISOString would throw)
      var d = new Date(v * 1000);
      return isNaN(d.getTime()) ? String(v) : d.toISOString().slice(5, 16).replace('T', ' ');
    }
    s.appendChild(el('text', {x: l, y: h - b + 14}, day(x0)));
    s.appendChild(el('text', {x: w - r, y: h - b + 14, 'text-anchor': 'end'}, day(x1)));
    lines.forEach(function (ln, i) {
      if (!ln.pts.length) { return; }
      var d = 'M' + X(x0) + ',' + Y(0);
      ln.pts.forEach(function (p, j) {
        var prev = j ? ln.pts[j - 1][1] : 0;
        d += ' L' + X(p[0]) + ',' + Y(prev) + ' L' + X(p[0]) + ',' + Y(p[1]);
      });
      d += ' L' + X(x1) + ',' + Y(ln.pts[ln.pts.length - 1][1]);
      s.appendChild(el('path', {d: d, fill: 'none', stroke: ln.color, 'stroke-width': 2, 'class': 'series',
                                'stroke-dasharray': ln.dash}));
      s.appendChild(el('text', {x: l + 6 + i * 150, y: h - 4, style: 'fill:' + ln.color, 'class': 'legend-item'},
                       '\u2014 ' + ln.name));
    });
    return s;
  }
  var drawn = 0;
  data.stages.forEach(function (stage, i) {
    var box = document.getElementById('charts-' + i);
    if (!box) { return; }
    [['Input files by bucket', bars(stage.buckets, 'buckets')],
     ['Progress (cumulative)', progress(stage)],
     ['Restarts by cause', bars(stage.restarts, 'restarts')]].forEach(function (c) {
      var f = document.createElement('figure');
      var cap = document.createElement('figcaption');
      cap.textContent = c[0];
      f.appendChild(cap);
      f.appendChild(c[1]);
      box.appendChild(f);
      drawn += 1;
    });
  });
  document.body.setAttribute('data-charts-rendered', String(drawn));
})();
"""


def render(data: dict[str, Any], *, source: str = "") -> str:
    """The HTML page for `collect`'s data."""
    esc = html.escape
    head_cells = []
    for col in OVERVIEW_COLUMNS:
        if col in ("campaign", "stage"):
            head_cells.append(f'<th tabindex="0">{col.capitalize()}'
                              f'<span class="tip">The {col}{" (click for its charts)" if col == "stage" else ""}.'
                              f'</span></th>')
            continue
        short, definition = number_column(col)
        group = NUMBERS_BY_NAME[col].group
        head_cells.append(f'<th tabindex="0" class="group-{group}" data-number="{col}" aria-description="{esc(definition)}">'
                          f'{esc(short)}<span class="tip"><b>{esc(col)}</b>: {esc(definition)}</span></th>')
    rows = []
    for i, s in enumerate(data["status"]):
        cells = []
        for col in OVERVIEW_COLUMNS:
            v = s[col]
            if col == "stage":
                cells.append(f'<td><a href="#stage-{i}">{esc(str(v))}</a></td>')
            else:
                cells.append(f'<td data-number="{col}">{esc(_fmt(col, v))}</td>')
        cls = ' class="stalled"' if s["stalled"] else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
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
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stagewatch report: campaign overview</title>
<style>{CSS}</style></head>
<body>
<h1>stagewatch: campaign overview</h1>
<p class="meta">As of {_utc(data["as_of"])}{" · " + esc(source) if source else ""} · stalled = no progress for
{threshold_h:g} h with work left · hover a column for its definition ({esc(GLOSSARY_URL)}).</p>
<section id="overview"><table class="overview">
<thead><tr>{''.join(head_cells)}</tr></thead>
<tbody>{''.join(rows) or '<tr><td colspan="18">No stages in this store.</td></tr>'}</tbody>
</table></section>
<section id="stages">{''.join(sections)}</section>
<footer>Generated by <code>stagewatch report</code>. The numbers come from the same SQL as
<code>stagewatch status</code> and the Grafana dashboards. This page needs no network access.</footer>
<script type="application/json" id="report-data">{payload}</script>
<script>{JS}</script>
</body></html>
"""


def build_report(store: Store, *, campaign: str | None = None, as_of: float | None = None,
                 threshold_s: float = STALL_THRESHOLD_S) -> str:
    return render(collect(store, campaign=campaign, as_of=as_of, threshold_s=threshold_s), source=store.url)


__all__ = ["collect", "render", "build_report", "json_for_script"]
