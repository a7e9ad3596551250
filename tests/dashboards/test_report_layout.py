"""The report's layout and headline: tiles first (with a missing-files command that runs as printed, hostile
names included), labelled column groups, a table that fits a 1,400 px window without cutting a column
(measured in headless Chromium), charts with axis ticks and labels, jobs by state equal to the Engine, and
`report --at` equal to `status --at`."""

from __future__ import annotations

import html
import json
import re
import shlex
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from dashboards.build import OVERVIEW_COLUMNS
from stagewatch.reading import read_status
from stagewatch.report import COLUMN_GROUPS, REPORT_COLUMNS, build_report, collect, render
from stagewatch.report_tiles import SHOWN, missing_files_command
from tests.dashboards import scenarios
from tests.dashboards.conftest import Loaded
from tests.dashboards.test_report import chromium, console_lines, needs_chromium
from tests.dashboards.test_states_over_time import engine_counts

ROOT = Path(__file__).resolve().parents[2]

MEASURE = """<script>
(function () {
  var d = document.documentElement, cut = [];
  document.querySelectorAll('table.overview th, table.overview td, .tile, .stage').forEach(function (c) {
    if (c.scrollWidth > c.clientWidth + 1) { cut.push(c.tagName + ' ' + c.textContent.slice(0, 40)); }
  });
  var t = document.querySelector('table.overview').getBoundingClientRect();
  var box = document.getElementById('overview');
  var tiles = document.getElementById('tiles').getBoundingClientRect();
  var charts = document.querySelectorAll('svg .tick-x').length, touching = [];
  document.querySelectorAll('svg').forEach(function (svg) {  // neighbouring time labels must not touch
    var r = Array.prototype.map.call(svg.querySelectorAll('.tick-x'), function (e) {
      return [e.getBoundingClientRect(), e.textContent]; });
    for (var i = 1; i < r.length; i++) {
      if (r[i][0].left < r[i - 1][0].right + 2) { touching.push(r[i - 1][1] + ' | ' + r[i][1]); }
    }
  });
  document.body.setAttribute('data-fit', JSON.stringify({
    scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, tableRight: t.right, tilesTop: tiles.top,
    tableTop: t.top, cut: cut, boxScroll: box.scrollWidth, boxClient: box.clientWidth, columns: document.querySelectorAll('table.overview thead tr:last-child th').length,
    xTicks: charts, touching: touching, fontPx: Number(document.body.getAttribute('data-table-font-px'))}));
})();
</script>"""


def measure(page: str, tmp: Path, width: int = 1400) -> dict[str, Any]:
    """Open the page at `width` px in headless Chromium and return what MEASURE found after the page's script."""
    out = tmp / f"measured-{time.monotonic_ns()}.html"
    out.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = chromium(out, tmp, "--dump-dom", f"--window-size={width},1600")
    assert dom.returncode == 0 and console_lines(dom.stderr) == [], dom.stderr[-2000:]
    m = re.search(r'data-fit="([^"]*)"', dom.stdout)
    assert m, "the measuring script did not run"
    return json.loads(html.unescape(m.group(1)))


@needs_chromium
def test_report_fits_1400px_without_cutting_a_column(chdb_loaded: Loaded, tmp_path: Path) -> None:
    """Every stage of the scenario (hostile 170-character names included): no horizontal scroll, no cell or
    tile whose content is clipped, every column on screen, tiles above the table."""
    page = build_report(chdb_loaded.store)
    fit = measure(page, tmp_path)
    assert fit["scrollWidth"] <= fit["clientWidth"], fit
    assert fit["tableRight"] <= fit["clientWidth"] and fit["cut"] == [], fit
    assert fit["boxScroll"] <= fit["boxClient"], fit  # the table does not scroll inside its box either
    assert fit["columns"] == len(REPORT_COLUMNS)
    assert fit["tilesTop"] < fit["tableTop"]
    assert fit["xTicks"] >= 2 * len(collect(chdb_loaded.store)["stages"])  # two time charts per stage, ticked
    assert fit["touching"] == [] and fit["fontPx"] == 13, fit  # these numbers fit at the table's own size


def _widest(data: dict[str, Any]) -> dict[str, Any]:
    """`collect`'s data with seven digits in every count of the table (a stage of millions of files and jobs),
    the longest forecast and percentages, every stage stalled."""
    as_of = data["as_of"]
    for i, s in enumerate(data["status"]):
        for col in REPORT_COLUMNS:
            if isinstance(s.get(col), int) and not isinstance(s[col], bool):
                s[col] = 9_876_543 - i
        s.update(completion_pct=100.0, cpu_efficiency_pct=100.0, located_rate_per_h=98_765.43, stalled=True,
                 eta=as_of + 999 * 86400 + 23 * 3600)
    return data


@needs_chromium
def test_report_fits_1400px_with_millions_in_every_column(chdb_loaded: Loaded, tmp_path: Path) -> None:
    """Numbers never wrap nor get cut: when they are too wide the table's font steps down (not below 10 px)
    until every column is on screen, and the page never scrolls sideways."""
    page = render(_widest(collect(chdb_loaded.store)))
    assert "9,876,543" in page and "in 999\u00a0d 23\u00a0h" in page
    fit = measure(page, tmp_path)
    assert fit["scrollWidth"] <= fit["clientWidth"] and fit["cut"] == [], fit
    assert fit["boxScroll"] <= fit["boxClient"] and fit["tableRight"] <= fit["clientWidth"], fit
    assert 10 <= fit["fontPx"] < 13, fit


def _stretched(data: dict[str, Any], days: float) -> dict[str, Any]:
    """`collect`'s data with every stage's time series spread over `days` days (same shape, same counts)."""
    for st in data["stages"]:
        series = [st["located_per_hour"], st["completed_per_hour"], st["jobs_over_time"]["points"]]
        ts = [p[0] for pts in series for p in pts] + [st["jobs_over_time"]["end"]]
        t0, t1 = min(ts), max(ts)
        k = days * 86400 / max(t1 - t0, 1)
        for pts in series:
            for p in pts:
                p[0] = t0 + (p[0] - t0) * k
        st["jobs_over_time"]["end"] = t0 + (st["jobs_over_time"]["end"] - t0) * k
    return data


@needs_chromium
@pytest.mark.parametrize("days", [0.3, 1.2, 2, 3, 5, 9, 45, 400, 4000])
def test_time_axis_labels_never_touch(chdb_loaded: Loaded, tmp_path: Path, days: float) -> None:
    """A stage that ran for hours, days, months or years: its time labels are thinned until none touches."""
    data = _stretched(collect(chdb_loaded.store, campaign=scenarios.TIMELINE), days)
    fit = measure(render(data), tmp_path)
    assert fit["touching"] == [] and fit["xTicks"] >= 4, fit  # two charts, two labels at least each


@needs_chromium
def test_the_fit_measurement_catches_overflow(tmp_path: Path, chdb_loaded: Loaded) -> None:
    """The check above can fail: an element wider than the window is seen."""
    page = build_report(chdb_loaded.store, campaign=scenarios.HEALTHY)
    wide = page.replace('<section id="stages">', '<div style="width:2000px">wide</div><section id="stages">')
    assert measure(wide, tmp_path)["scrollWidth"] > 1400


def test_column_groups_are_labelled_and_cover_every_column(chdb_loaded: Loaded) -> None:
    page = build_report(chdb_loaded.store, campaign=scenarios.PROBLEM)

    class Head(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.groups: list[tuple[int, str]] = []
            self._in: int | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "th" and a.get("scope") == "colgroup":
                self._in = int(a["colspan"] or 0)
                self.groups.append((self._in, ""))

        def handle_data(self, data: str) -> None:
            if self._in is not None:
                n, text = self.groups[-1]
                self.groups[-1] = (n, text + data)

        def handle_endtag(self, tag: str) -> None:
            if tag == "th":
                self._in = None

    h = Head()
    h.feed(page)
    assert [label for _, label in h.groups] == [label for _, label, _ in COLUMN_GROUPS]
    assert sum(n for n, _ in h.groups) == len(REPORT_COLUMNS) == len(OVERVIEW_COLUMNS) + 2
    # the Grafana overview's columns in its order, and the forecast before the stall flag
    assert [c for c in REPORT_COLUMNS if c not in ("located_rate_per_h", "eta")] == list(OVERVIEW_COLUMNS)


def test_tiles_come_first_and_name_the_work(chdb_loaded: Loaded) -> None:
    data = collect(chdb_loaded.store, campaign=scenarios.PROBLEM)
    rec, stl = data["tiles"]["recovery"], data["tiles"]["stalled"]
    status = read_status(chdb_loaded.store, scenarios.PROBLEM, as_of=data["as_of"])["stages"]
    assert rec["total"] == sum(s["files_without_located_output"] for s in status) == 12
    assert [s["files"] for s in rec["stages"]] == sorted((s["files_without_located_output"] for s in status
                                                          if s["files_without_located_output"]), reverse=True)
    assert stl["count"] == 1 and stl["stages"][0]["stage"] == "stuck" and stl["color"] == "red"
    assert stl["stages"][0]["quiet"].startswith("no progress for 5 h")
    page = build_report(chdb_loaded.store, campaign=scenarios.PROBLEM)
    assert page.index('id="tiles"') < page.index('<table class="overview"') < page.index('id="stages"')
    everything = collect(chdb_loaded.store)["tiles"]["recovery"]
    assert len(everything["stages"]) == SHOWN and everything["more"] > 0  # capped, and says so


def test_command_quotes_hostile_names_for_the_shell() -> None:
    for name in (scenarios.HOSTILE, scenarios.HOSTILE_STAGE, "a'b", "$(touch /tmp/x)", "-x", "a\nb", ""):
        cmd = missing_files_command(name, name, store_url="chdb:/tmp/a b", at=1.5)
        assert shlex.split(cmd) == ["stagewatch", "missing-files", "--campaign", name, "--stage", name,
                                    "--store", "chdb:/tmp/a b", "--at", "1.5"]
    # a server URL is left out (its password is never printed); the user's $STAGEWATCH_STORE applies
    assert "--store" not in missing_files_command("c", "s", store_url="clickhouse://u@h:9000/db")


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from stagewatch.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def scenario_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A chDB store with the scenario, written in a subprocess (this package's chDB store is open here)."""
    path = tmp_path_factory.mktemp("report-cli") / "store"
    now = time.time()
    code = ("import sys; from stagewatch.store import open_store; from tests.dashboards import scenarios; "
            "st = open_store('chdb:' + sys.argv[1]); scenarios.load(st, scenarios.build(float(sys.argv[2]))); "
            "st.close()")
    subprocess.run([sys.executable, "-c", code, str(path), repr(now)], check=True, cwd=ROOT, timeout=300)
    return path, now


def _commands(page: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r'<code class="cmd">(.*?)</code>', page, re.S)]


def test_the_printed_command_runs_in_bash_and_lists_the_files(scenario_store: tuple[Path, float],
                                                               tmp_path: Path) -> None:
    """The command copied from the page, run by bash as it is, prints exactly the stage's missing files."""
    store, _ = scenario_store
    out = tmp_path / "hostile.html"
    res = _cli("report", "--store", f"chdb:{store}", "--campaign", scenarios.HOSTILE, "--out", str(out))
    assert res.returncode == 0, res.stderr
    (cmd,) = _commands(out.read_text())
    assert shlex.split(cmd)[3] == scenarios.HOSTILE and shlex.split(cmd)[5] == scenarios.HOSTILE_STAGE
    run = subprocess.run(["bash", "-c", cmd.replace("stagewatch ", f"{shlex.quote(sys.executable)} -c "
                                                    "'from stagewatch.cli import main; main()' ", 1)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "h1 \u2028\n"  # the one input file without a located output, name verbatim
    assert not (tmp_path / "stagewatch-data").exists()


def test_report_at_equals_status_at(scenario_store: tuple[Path, float], tmp_path: Path) -> None:
    """`report --at T` shows the numbers `status --at T` shows, and its commands carry --at T."""
    store, now = scenario_store
    at = now - 4 * 3600
    out = tmp_path / "at.html"
    res = _cli("report", "--store", f"chdb:{store}", "--campaign", scenarios.PROBLEM, "--at", repr(at),
               "--out", str(out))
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                                re.S).group(1))
    status = _cli("status", "--store", f"chdb:{store}", "--campaign", scenarios.PROBLEM, "--at", repr(at),
                  "--format", "json")
    assert status.returncode == 0, status.stderr
    expected = {(s["campaign"], s["stage"]): s for s in json.loads(status.stdout)["stages"]}
    got = {(s["campaign"], s["stage"]): s for s in data["status"]}
    assert got.keys() == expected.keys()
    for key, s in got.items():
        for name in ("input_files", "files_located", "files_without_located_output", "jobs_running", "jobs_idle",
                     "jobs_held", "restarts", "stalled"):
            assert s[name] == expected[key][name], (key, name)
    # at T the storm stage had not yet been evicted (evictions are 50 and 35 min before now)
    assert got[(scenarios.PROBLEM, "storm")]["restarts"] == 0
    cmds = _commands(page)
    assert cmds and all(shlex.split(c)[-2:] == ["--at", repr(at)] for c in cmds)
    assert "At " in page and data["at"] == at


def test_jobs_chart_equals_the_engine_at_every_point(loaded: Loaded) -> None:
    data = collect(loaded.store, campaign=scenarios.TIMELINE)
    (stage,) = data["stages"]
    events = [e for evs in loaded.scenario.events_by_source.values() for e in evs if e.campaign == scenarios.TIMELINE]
    points = stage["jobs_over_time"]["points"]
    assert len(points) > 10 and stage["jobs_over_time"]["states"] == ["idle", "running", "held"]
    for t, idle, running, held in points:
        assert {"jobs_idle": idle, "jobs_running": running, "jobs_held": held} == engine_counts(
            events, scenarios.TIMELINE, scenarios.TIMELINE_STAGE, t), t
    last_event = max(e.ts for e in events)
    first_event = min(e.ts for e in events)
    # past the last event (today's numbers are the last point), up to a quarter of the span later
    assert last_event <= points[-1][0] <= last_event + max(0.25 * (last_event - first_event), 3600)
    assert points[-1][0] <= data["as_of"]


def test_charts_keep_the_stage_own_time_scale() -> None:
    """A stage that went quiet long ago is drawn up to its last event plus a quarter of its span (at least an
    hour), not squeezed against today; never past as_of or a DateTime."""
    from stagewatch.report import DATETIME_MAX, chart_end

    day = 86400.0
    assert chart_end(1_500_000_000, 1_500_000_000 + 8 * day, 1_800_000_000) == 1_500_000_000 + 10 * day
    assert chart_end(1_500_000_000, 1_500_000_100, 1_800_000_000) == 1_500_000_100 + 3600
    assert chart_end(1_500_000_000, 1_500_000_000 + 8 * day, 1_500_000_000 + 9 * day) == 1_500_000_000 + 9 * day
    assert chart_end(None, None, 1e13) == DATETIME_MAX


@needs_chromium
def test_time_charts_have_ticks_and_axis_titles(chdb_loaded: Loaded, tmp_path: Path) -> None:
    out = tmp_path / "axes.html"
    out.write_text(build_report(chdb_loaded.store, campaign=scenarios.TIMELINE), encoding="utf-8")
    dom = chromium(out, tmp_path, "--dump-dom")
    assert console_lines(dom.stderr) == []
    for cls in ("chart-progress", "chart-states"):
        (svg,) = re.findall(rf'<svg[^>]*class="{cls}".*?</svg>', dom.stdout, re.S)
        assert len(re.findall(r'class="tick-x">[^<]+<', svg)) >= 2, cls
        assert len(re.findall(r'class="tick-y">[^<]+<', svg)) >= 2, cls
        assert ">time (UTC)<" in svg and re.search(r'class="axis-title"[^>]*>(jobs|files / jobs)<', svg), cls


def test_site_tile_is_the_site_with_most_evictions(loaded: Loaded) -> None:
    """From `stagewatch sites`' numbers (read_sites) summed over the selected stages; known answers."""
    from stagewatch.reading import read_sites

    for campaign, site, evicted in ((scenarios.PROBLEM, "unknown", 8), (scenarios.HEALTHY, "OSG-UCSD", 1)):
        tile = collect(loaded.store, campaign=campaign)["tiles"]["site"]
        per_site: dict[str, int] = {}
        for r in read_sites(loaded.store, campaign):
            per_site[r["site"]] = per_site.get(r["site"], 0) + r["restarts_by_cause"]["evicted"]
        assert tile["site"]["site"] == max(per_site, key=lambda k: (per_site[k], k == site)) == site
        assert tile["site"]["evicted"] == per_site[site] == evicted
        assert tile["site"]["stages"] == sum(1 for r in read_sites(loaded.store, campaign)
                                             if r["site"] == site and r["restarts_by_cause"]["evicted"])
    assert collect(loaded.store, campaign=scenarios.EDGE)["tiles"]["site"]["site"] is None  # no eviction at all


def test_eta_column_is_the_forecast(chdb_loaded: Loaded) -> None:
    as_of = time.time()
    data = collect(chdb_loaded.store, campaign=scenarios.PROBLEM, as_of=as_of)
    forecast = {(s["campaign"], s["stage"]): s for s in
                read_status(chdb_loaded.store, scenarios.PROBLEM, as_of=as_of, forecast=True)["stages"]}
    for s in data["status"]:
        f = forecast[(s["campaign"], s["stage"])]
        assert (s["located_rate_per_h"], s["eta"]) == (f["located_rate_per_h"], f["eta"])
    # reco located one file 30 min ago: 1 in 6 h -> 0.17/h, 4 left -> ETA 24 h after as_of
    reco = next(s for s in data["status"] if s["stage"] == "reco")
    assert reco["located_rate_per_h"] == 0.17 and reco["eta"] == pytest.approx(as_of + 4 * 6 * 3600, abs=1)
    page = build_report(chdb_loaded.store, campaign=scenarios.PROBLEM, as_of=as_of)
    assert '>in 1\u00a0d<' in page  # reco's ETA cell, as a duration from the report's moment


@needs_chromium
def test_time_axes_have_two_ticks_whatever_the_time_of_day(tmp_path: Path) -> None:
    """The report's timeTicks, run in Chromium over spans from 10 minutes to a year, each starting at every
    hour of a day: at least two tick labels (a span a little over one step held a single midnight at some
    hours of the day, and the layout test failed only then)."""
    from stagewatch.report_static import JS

    start, end = JS.index("  var TIME_STEPS"), JS.index("  function valueTicks")
    spans = [600, 3600, 5400, 7200, 36000, 86400 * 1.2, 86400 * 1.6, 86400 * 2.2, 86400 * 5, 86400 * 40, 86400 * 365]
    cases = [[1_764_547_200 + h * 3600 + 17, s] for s in spans for h in range(24)]
    page = tmp_path / "ticks.html"
    page.write_text("<html><body><pre id='out'></pre><script>\n" + JS[start:end] + "\nvar cases = "
                    + json.dumps(cases) + ";\ndocument.getElementById('out').textContent = JSON.stringify("
                    "cases.map(function (c) { return timeTicks(c[0], c[0] + c[1], 3).length; }));\n"
                    "</script></body></html>", encoding="utf-8")
    dom = chromium(page, tmp_path, "--dump-dom")
    assert console_lines(dom.stderr) == []
    counts = json.loads(html.unescape(re.search(r"<pre id=\"out\">(.*?)</pre>", dom.stdout, re.S).group(1)))
    assert len(counts) == len(cases)
    short = [(c, n) for c, n in zip(cases, counts) if n < 2]
    assert not short, short
    assert max(counts) <= 12
