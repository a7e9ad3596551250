"""The HTML report's style sheet and script (inline in the page: it opens with no network access).

Kept apart from stagewatch/report.py (which collects the numbers and writes the HTML) because they are
another language each. The script reads the page's JSON data block and draws every chart as SVG: bars
(file buckets, restarts by cause) and time lines with axis ticks, tick labels and axis titles (progress,
jobs by state over time). It only ever sets text with `textContent` and attributes with setAttribute, so
names from the data are never parsed as HTML. A time no JavaScript Date holds is labelled with its Unix
seconds rather than throwing (toISOString would raise RangeError and stop the script).

Layout rule: nothing is wider than the window. Names (campaign, stage, store, commands) wrap anywhere;
numbers never wrap; the overview table is sized to 100 % of the page and its headers wrap between words;
when the numbers are too wide for that (millions in every column) the script steps the table's font down
to FIT_MIN_PX until it fits, so at 1,400 px every column is on screen (tests/dashboards/test_report_layout.py
measures it in Chromium, at the demo's numbers and at seven digits in every column). Time-axis labels that
would touch are thinned to every other one until they do not.
"""

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dee7; --bg:#fff; --head:#f3f5f9; --bad:#fbe3e3; --badfg:#9b1c1c;
        --green:#2f9e58; --orange:#d9822b; --red:#d64545; --blue:#3b6fd8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
       margin: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 6px; overflow-wrap: anywhere; }
h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 0 0 6px; }
.meta { color: var(--muted); margin: 0 0 16px; overflow-wrap: anywhere; }
.tiles { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 16px; margin: 0 0 20px; }
.tile { border: 1px solid var(--line); border-left: 6px solid var(--muted); border-radius: 6px; padding: 12px 14px;
        min-width: 0; }
.tile.green { border-left-color: var(--green); } .tile.orange { border-left-color: var(--orange); }
.tile.red { border-left-color: var(--red); } .tile.blue { border-left-color: var(--blue); }
.tile .big { font-size: 30px; font-weight: 700; line-height: 1.1; font-variant-numeric: tabular-nums; }
.tile .what { color: var(--muted); margin-bottom: 8px; }
.tile ul { margin: 4px 0 0; padding: 0; list-style: none; }
.tile li { margin: 6px 0; overflow-wrap: anywhere; }
.tile code, .cmd { display: block; white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f7fa;
        border: 1px solid var(--line); border-radius: 4px; padding: 4px 6px; font: 12px/1.4 ui-monospace, monospace;
        margin-top: 2px; user-select: all; }
.more { color: var(--muted); font-size: 12px; }
#overview { overflow-x: auto; }  /* the script shrinks the table's font to fit; past its floor the box scrolls */
table.overview { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 13px; }
table.overview th, table.overview td { border-bottom: 1px solid var(--line); padding: 4px 3px; text-align: right;
       white-space: nowrap; }
table.overview td.name { white-space: normal; overflow-wrap: anywhere; text-align: left; min-width: 7em; }
table.overview td[data-number="eta"] { white-space: normal; min-width: 4.5em; }  /* "in 13 h / 16 min" */
table.overview th { background: var(--head); position: relative; cursor: help; font-weight: 600;
       white-space: normal; vertical-align: bottom; font-size: .92em; min-width: 3.5em; }
table.overview tr.groups th { cursor: default; text-align: center; font-size: .92em; text-transform: uppercase;
       letter-spacing: .05em; color: var(--muted); border-bottom: 0; padding-top: 6px; }
table.overview tr.groups th.g-files { border-top: 3px solid #3b6fd8; color: #2c56ad; }
table.overview tr.groups th.g-jobs { border-top: 3px solid #8a5cd0; color: #6c44ad; }
table.overview tr.groups th.g-attempts { border-top: 3px solid #2f9e7a; color: #23775c; }
table.overview tr.groups th.g-progress { border-top: 3px solid #d65050; color: #a33a3a; }
table.overview th.first, table.overview td.first { border-left: 1px solid var(--line); }
table.overview th:nth-last-child(-n+6) .tip { left: auto; right: 0; }
table.overview th.name { text-align: left; }
table.overview th .tip { display: none; position: absolute; top: 100%; left: 0; z-index: 5; width: 320px;
       white-space: normal; text-align: left; font-weight: 400; background: #1d2330; color: #fff; padding: 8px 10px;
       border-radius: 4px; box-shadow: 0 4px 14px rgba(0,0,0,.25); text-transform: none; letter-spacing: 0; }
table.overview th:hover .tip, table.overview th:focus .tip { display: block; }
tr.stalled td { background: var(--bad); color: var(--badfg); font-weight: 600; }
a { color: #2456b8; }
.stage { border: 1px solid var(--line); border-radius: 6px; padding: 12px 16px; margin: 16px 0; }
.stage.stalled { border-color: #e39a9a; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 16px; }
figure { margin: 0; min-width: 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg { display: block; max-width: 100%; }
svg text { font: 11px system-ui, sans-serif; fill: var(--fg); }
svg text.axis-title { fill: var(--muted); font-size: 10px; }
svg .grid { stroke: #e6e9ef; }
.legend { color: var(--muted); font-size: 12px; overflow-wrap: anywhere; }
.badge { display: inline-block; background: var(--bad); color: var(--badfg); border-radius: 3px; padding: 0 6px;
       font-size: 12px; margin-left: 6px; }
footer { color: var(--muted); margin-top: 28px; font-size: 12px; }
@media (max-width: 900px) { .tiles { grid-template-columns: 1fr; } }
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
  var FIT_MIN_PX = 10;
  var COLORS = ['#3b6fd8', '#e0a03a', '#8a5cd0', '#2f9e7a', '#d65050', '#8d96a8'];
  var STATE_COLORS = {idle: '#d9a21b', running: '#2f9e58', held: '#d64545'};
  function fmtNum(v) { return Math.abs(v) >= 1e6 ? (v / 1e6).toPrecision(3) + 'M' :
                              Math.abs(v) >= 1e4 ? (v / 1e3).toPrecision(3) + 'k' : String(v); }
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
  // --- time axes --------------------------------------------------------------------------------
  function dateOk(v) { return !isNaN(new Date(v * 1000).getTime()); }
  function timeLabel(v, span) {  // total: a time no Date holds is shown as its Unix seconds
    if (!dateOk(v)) { return String(v); }
    var iso = new Date(v * 1000).toISOString();
    return span > 4 * 86400 ? iso.slice(0, 10) : iso.slice(5, 16).replace('T', ' ');
  }
  var TIME_STEPS = [60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000,
                    7776000, 31536000];
  function niceStep(range, n) {
    var raw = range / Math.max(n, 1), p = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10));
    var m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  function ticksEvery(x0, x1, step) {
    var out = [], t = Math.ceil(x0 / step) * step;
    for (; t <= x1 && out.length < 50; t += step) { out.push(t); }
    return out;
  }
  function timeTicks(x0, x1, n) {
    var span = x1 - x0, k = TIME_STEPS.length - 1, step = TIME_STEPS[k];
    for (var i = 0; i < TIME_STEPS.length; i++) { if (span / TIME_STEPS[i] <= n) { k = i; step = TIME_STEPS[i]; break; } }
    if (span / step > n) { step = niceStep(span, n); }
    var out = ticksEvery(x0, x1, step);
    // a span a little over one step may hold a single boundary (it depends on the time of day): take the
    // next smaller step until the axis has two labels, so it always shows a scale
    while (out.length < 2 && k > 0) { k -= 1; out = ticksEvery(x0, x1, TIME_STEPS[k]); }
    return out;
  }
  function valueTicks(ymax) {
    var step = Math.max(1, niceStep(ymax, 4)), out = [];
    for (var v = 0; out.length < 12; v += step) { out.push(v); if (v >= ymax) { break; } }
    return out;
  }
  // One chart with time on x: series of [t, v] points drawn as steps (a count holds until it changes).
  function timeChart(series, opts) {
    var w = 360, h = 214, l = 46, r = 12, t = 10, b = 58;
    var s = svg(w, h); s.setAttribute('class', opts.cls); s.setAttribute('aria-label', opts.title);
    var xs = [], ymax = opts.ymin || 1;
    series.forEach(function (sr) { sr.pts.forEach(function (p) { xs.push(p[0]); ymax = Math.max(ymax, p[1]); }); });
    if (!xs.length) {
      s.appendChild(el('text', {x: w / 2, y: h / 2, 'text-anchor': 'middle'}, opts.empty));
      return s;
    }
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs.concat([opts.x1 || 0]));
    if (x1 === x0) { x0 -= 3600; }
    var yt = valueTicks(ymax); ymax = Math.max(ymax, yt[yt.length - 1]);
    function X(v) { return l + (w - l - r) * (v - x0) / (x1 - x0); }
    function Y(v) { return t + (h - t - b) * (1 - v / ymax); }
    yt.forEach(function (v) {
      s.appendChild(el('line', {x1: l, y1: Y(v), x2: w - r, y2: Y(v), 'class': 'grid'}));
      s.appendChild(el('text', {x: l - 5, y: Y(v) + 4, 'text-anchor': 'end', 'class': 'tick-y'}, fmtNum(v)));
    });
    s.appendChild(el('line', {x1: l, y1: Y(0), x2: w - r, y2: Y(0), stroke: '#8d96a8'}));
    s.appendChild(el('line', {x1: l, y1: t, x2: l, y2: Y(0), stroke: '#8d96a8'}));
    // a label is centred on its tick unless that would cut it at the viewBox's edge (11 px text: ~6.2 units
    // a character); ticks are then thinned to every other one until no two neighbouring labels touch
    function label(v) {
      var text = timeLabel(v, x1 - x0), lw = 6.2 * text.length, x = X(v);
      var anchor = x - lw / 2 < 2 ? 'start' : x + lw / 2 > w - 2 ? 'end' : 'middle';
      var left = anchor === 'start' ? x : anchor === 'end' ? x - lw : x - lw / 2;
      return {text: text, anchor: anchor, left: left, right: left + lw};
    }
    function touching(ts) {
      for (var j = 1; j < ts.length; j++) { if (label(ts[j]).left < label(ts[j - 1]).right + 6) { return true; } }
      return false;
    }
    var ticks = timeTicks(x0, x1, 3);
    while (ticks.length > 2 && touching(ticks)) {
      ticks = ticks.filter(function (_, j) { return j % 2 === 0; });
    }
    ticks.forEach(function (v) {
      var lab = label(v);
      s.appendChild(el('line', {x1: X(v), y1: Y(0), x2: X(v), y2: Y(0) + 4, stroke: '#8d96a8'}));
      s.appendChild(el('text', {x: X(v), y: Y(0) + 15, 'text-anchor': lab.anchor, 'class': 'tick-x'}, lab.text));
    });
    s.appendChild(el('text', {x: (l + w - r) / 2, y: Y(0) + 29, 'text-anchor': 'middle', 'class': 'axis-title'},
                     dateOk(x1) ? 'time (UTC)' : 'time (Unix seconds)'));
    s.appendChild(el('text', {x: 10, y: (t + Y(0)) / 2, 'text-anchor': 'middle', 'class': 'axis-title',
                              transform: 'rotate(-90 10 ' + (t + Y(0)) / 2 + ')'}, opts.ylabel));
    if (opts.hline) {
      s.appendChild(el('line', {x1: l, y1: Y(opts.hline), x2: w - r, y2: Y(opts.hline),
                                stroke: '#3b6fd8', 'stroke-dasharray': '3 3', opacity: 0.6}));
    }
    var lx = l;
    series.forEach(function (sr) {
      if (!sr.pts.length) { return; }
      var d = 'M' + X(sr.pts[0][0]) + ',' + Y(sr.from0 ? 0 : sr.pts[0][1]);
      sr.pts.forEach(function (p, j) {
        var prev = j ? sr.pts[j - 1][1] : (sr.from0 ? 0 : p[1]);
        d += ' L' + X(p[0]) + ',' + Y(prev) + ' L' + X(p[0]) + ',' + Y(p[1]);
      });
      d += ' L' + X(x1) + ',' + Y(sr.pts[sr.pts.length - 1][1]);
      s.appendChild(el('path', {d: d, fill: 'none', stroke: sr.color, 'stroke-width': 2, 'class': 'series',
                                'stroke-dasharray': sr.dash || ''}));
      s.appendChild(el('text', {x: lx, y: h - 6, style: 'fill:' + sr.color, 'class': 'legend-item'},
                       '\u2014 ' + sr.name));
      lx += 12 + 6.2 * (sr.name.length + 2);
    });
    return s;
  }
  function cumulative(points) {
    var total = 0;
    return points.map(function (p) { total += p[1]; return [p[0], total]; });
  }
  function progress(stage) {
    // jobs first (dashed), files on top: where the two coincide both stay visible
    return timeChart([
      {name: 'jobs completed', pts: cumulative(stage.completed_per_hour), color: COLORS[2], dash: '5 3', from0: true},
      {name: 'input files located', pts: cumulative(stage.located_per_hour), color: COLORS[0], from0: true}],
      {cls: 'chart-progress', title: 'progress', empty: 'no progress yet', ylabel: 'files / jobs',
       x1: stage.jobs_over_time.end, ymin: stage.input_files, hline: stage.input_files});
  }
  function jobsByState(stage) {
    var j = stage.jobs_over_time;
    var series = j.states.map(function (name, k) {
      return {name: name, color: STATE_COLORS[name] || COLORS[k],
              pts: j.points.map(function (p) { return [p[0], p[k + 1]]; })};
    });
    return timeChart(series, {cls: 'chart-states', title: 'jobs by state', empty: 'no jobs', ylabel: 'jobs',
                              x1: j.end});
  }
  var drawn = 0;
  data.stages.forEach(function (stage, i) {
    var box = document.getElementById('charts-' + i);
    if (!box) { return; }
    [['Input files by bucket', bars(stage.buckets, 'buckets')],
     ['Progress (cumulative)', progress(stage)],
     ['Jobs by state over time', jobsByState(stage)],
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
  // the overview table: numbers never wrap nor get cut, so when they are too wide for the window the font
  // steps down (headers follow in em) until the table fits its box; below the floor the box scrolls
  var box = document.getElementById('overview'), table = box && box.querySelector('table.overview');
  var px = table ? parseFloat(getComputedStyle(table).fontSize) : 0;  // the style sheet's size to start from
  while (table && box.scrollWidth > box.clientWidth && px > FIT_MIN_PX) {
    px -= 0.5;
    table.style.fontSize = px + 'px';
  }
  document.body.setAttribute('data-table-font-px', String(px));
})();
"""

CHARTS_PER_STAGE = 4
"""Figures the script draws for each stage (the tests count them)."""
