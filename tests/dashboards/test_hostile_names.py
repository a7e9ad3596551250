"""Names from data through every layer of the dashboards and the report: SQL literals, Grafana variables and
macros, HTML text, JSON inside <script>, JavaScript.

The scenario's HOSTILE campaign and stage names hold quotes, backslashes, `$__toTime`, `${campaign}`,
`[[stage]]`, commas and braces, `</script>`, `<!--<script`, `&amp;` and U+2028/U+2029. Grafana's quoting
formats escape quotes but not backslashes and the plugin expands `$__` macros inside string literals, so
the dashboards pass every variable as `decodeURLComponent('${x:percentencode}')`; the report escapes its
embedded JSON so the HTML parser cannot end or re-open the data block early.
"""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from dashboards import build
from dashboards.macros import ALL, TimeRange, Variable, encode_uri_component_strict, expand
from schemas.events import MAX_NAME_CHARS
from stagewatch.reading import read_job, read_missing_files, read_status
from stagewatch.report import build_report, collect, json_for_script
from stagewatch.report_static import CHARTS_PER_STAGE
from stagewatch.store.base import StoreError
from tests.dashboards import scenarios
from tests.dashboards.conftest import Loaded
from tests.dashboards.test_report import chromium, console_lines, needs_chromium

DASHBOARDS = {uid: build.to_json(d) for uid, d in build.all_dashboards().items()}
NAMES = [scenarios.HOSTILE, scenarios.HOSTILE_STAGE, scenarios.HOSTILE_JOB, "</script><script>alert(1)</script>",
         "<!--<script", "a\u2028b\u2029c", "&amp;", "it's \"quoted\"", "back\\slash\\", "\\'", "${campaign}"]
MAX_QUERY_SIZE = 262144  # ClickHouse's default max_query_size (18.16 and modern)


def _tr(loaded: Loaded) -> TimeRange:
    return TimeRange(loaded.scenario.now - 7 * 86400, loaded.scenario.now + 60, interval_s=300)


def _panel(uid: str, title: str) -> str:
    return next(t["rawSql"] for p, t in build.iter_panel_queries(DASHBOARDS[uid]) if p["title"] == title)


def _hostile_vars(job_id: str = scenarios.HOSTILE_JOB) -> list[Variable]:
    return [Variable("campaign", scenarios.HOSTILE), Variable("stage", scenarios.HOSTILE_STAGE),
            Variable("job_id", job_id)]


# --------------------------------------------------------------------------------------------------
# Grafana variables -> SQL


def test_percentencode_is_grafanas() -> None:
    """encodeURIComponent plus ! ' ( ) *, UTF-8; a multi-value is joined as {a,b} before encoding."""
    assert encode_uri_component_strict("o'brien (x)!*~._-\\ é$") == "o%27brien%20%28x%29%21%2A~._-%5C%20%C3%A9%24"
    tr = TimeRange(0, 1)
    assert expand("${c:percentencode}", tr, [Variable("c", "a'b")]) == "a%27b"
    assert expand("${c:percentencode}", tr, [Variable("c", ["a", "b,c"])]) == "%7Ba%2Cb%2Cc%7D"
    assert expand("${c:percentencode}", tr, [Variable("c", ALL, options=["x"])]) == "%7Bx%7D"


def test_dashboard_sql_passes_variables_only_percent_encoded() -> None:
    """No panel or variable query quotes a value itself (no :singlequote, :sqlstring, bare $var, [[var]])."""
    import re

    checked = 0
    for uid, data in DASHBOARDS.items():
        queries = [(p["title"], t["rawSql"]) for p, t in build.iter_panel_queries(data)]
        queries += [(f"variable {n}", sql) for n, sql in build.iter_variable_queries(data)]
        for title, sql in queries:
            rest = re.sub(r"decodeURLComponent\('\$\{\w+:percentencode\}'\)", "", sql)
            rest = re.sub(r",\s*\$\w+\)", ")", rest)  # $__conditionalAll(condition, $var): the plugin's test only
            rest = re.sub(r"\$__\w+", "", rest)
            leftover = re.findall(r"\$\w+|\$\{[^}]*\}|\[\[[^\]]*\]\]", rest)
            assert leftover == [], f"{uid} {title}: {leftover}"
            checked += 1
    assert checked > 25


def test_grafana_quoting_formats_would_break(loaded: Loaded) -> None:
    """Why percentencode: the quoting formats leave a backslash that ends ClickHouse's literal early."""
    sql = "SELECT count() AS n FROM stage_numbers WHERE campaign = ${campaign:singlequote}"
    with pytest.raises(StoreError):
        loaded.store.query(expand(sql, _tr(loaded), [Variable("campaign", "back\\slash\\")]))
    safe = sql.replace("${campaign:singlequote}", build.variable_value("campaign"))
    for name in NAMES:
        assert loaded.store.query(expand(safe, _tr(loaded), [Variable("campaign", name)])) == [
            {"n": 1 if name == scenarios.HOSTILE else 0}], name


def test_stage_and_job_views_of_a_hostile_stage(loaded: Loaded) -> None:
    tr, vs = _tr(loaded), _hostile_vars()
    (st,) = read_status(loaded.store, scenarios.HOSTILE, scenarios.HOSTILE_STAGE, as_of=time.time())["stages"]
    for uid in (build.UID_STAGE, build.UID_JOB):
        for panel, target in build.iter_panel_queries(DASHBOARDS[uid]):
            loaded.store.query(expand(target["rawSql"], tr, vs))
    (row,) = loaded.store.query(expand(_panel(build.UID_STAGE, "Stage numbers"), tr, vs))
    assert (row["input_files"], row["files_located"], row["jobs"]) == (st["input_files"], st["files_located"], 1) == (
        2, 1, 1)
    missing = loaded.store.query(expand(_panel(build.UID_STAGE, "Input files without a located output"), tr, vs))
    assert [r["file"] for r in missing] == read_missing_files(loaded.store, scenarios.HOSTILE,
                                                              scenarios.HOSTILE_STAGE) == ["h1 \u2028"]
    job = read_job(loaded.store, scenarios.HOSTILE, scenarios.HOSTILE_STAGE, scenarios.HOSTILE_JOB)
    attempts = loaded.store.query(expand(_panel(build.UID_JOB, "Attempts (table)"), tr, vs))
    events = loaded.store.query(expand(_panel(build.UID_JOB, "Events"), tr, vs))
    assert [a["attempt"] for a in attempts] == [a["attempt"] for a in job["attempts"]] == [1]
    assert [e["event_id"] for e in events] == [e["event_id"] for e in job["events"]] and len(events) == 3
    stage_var = dict(build.iter_variable_queries(DASHBOARDS[build.UID_STAGE]))["stage"]
    assert [r["stage"] for r in loaded.store.query(expand(stage_var, tr, vs))] == [scenarios.HOSTILE_STAGE]


def test_overview_selects_exactly_the_chosen_campaigns(loaded: Loaded) -> None:
    tr, sql = _tr(loaded), _panel(build.UID_OVERVIEW, "Stages")
    all_campaigns = [r["campaign"] for r in loaded.store.query(build.CAMPAIGN_VARIABLE_SQL)]
    assert scenarios.HOSTILE in all_campaigns
    for selection in ([scenarios.HOSTILE], [scenarios.HOSTILE, scenarios.PROBLEM], [scenarios.PROBLEM],
                      scenarios.HOSTILE):
        rows = loaded.store.query(expand(sql, tr, [Variable("campaign", selection, options=all_campaigns)]))
        chosen = {selection} if isinstance(selection, str) else set(selection)
        expected = [(s["campaign"], s["stage"]) for s in read_status(loaded.store, as_of=time.time())["stages"]
                    if s["campaign"] in chosen]
        assert [(r["campaign"], r["stage"]) for r in rows] == expected, selection


def test_sql_grows_with_a_name_only_within_the_name_bound(loaded: Loaded) -> None:
    """A name at the contract's bound (1,024 characters of 4-byte UTF-8) keeps every panel's SQL far under
    ClickHouse's max_query_size, and runs; "All" campaigns adds nothing however many and long they are."""
    tr = _tr(loaded)
    longest = "\U0001d518" * MAX_NAME_CHARS
    vs = [Variable("campaign", longest), Variable("stage", longest), Variable("job_id", longest)]
    empty = [Variable("campaign", ""), Variable("stage", ""), Variable("job_id", "")]
    for uid in (build.UID_STAGE, build.UID_JOB):
        for panel, target in build.iter_panel_queries(DASHBOARDS[uid]):
            sql = expand(target["rawSql"], tr, vs)
            uses = target["rawSql"].count(":percentencode}")
            bound = len(expand(target["rawSql"], tr, empty)) + uses * 12 * MAX_NAME_CHARS  # %XX per UTF-8 byte
            assert len(sql) == bound < MAX_QUERY_SIZE, panel["title"]
    assert loaded.store.query(expand(_panel(build.UID_STAGE, "Stage numbers"), tr, vs)) == []
    overview = _panel(build.UID_OVERVIEW, "Stages")
    few = expand(overview, tr, [Variable("campaign", ALL, options=["a"])])
    many = expand(overview, tr, [Variable("campaign", ALL, options=[longest] * 500)])
    assert len(few) == len(many)


# --------------------------------------------------------------------------------------------------
# The report


class _Page(HTMLParser):
    """The parts of a page that a name could break: script elements, h2 headings, links' text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, Any], str]] = []
        self.h2: list[str] = []
        self._in: str | None = None
        self._attrs: dict[str, Any] = {}
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "h2"):
            self._in, self._attrs, self._text = tag, dict(attrs), ""

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in == "script":
            self.scripts.append((self._attrs, self._text))
            self._in = None
        elif tag == "h2" and self._in == "h2":
            self.h2.append(self._text)
            self._in = None


@pytest.mark.parametrize("name", NAMES)
def test_json_for_script_keeps_any_name(name: str) -> None:
    data = {"campaign": name, "stages": [{"stage": name, "v": [1.5, None]}], "bad": float("nan")}
    text = json_for_script(data)
    for ch in "<>&\u2028\u2029":
        assert ch not in text
    assert json.loads(text) == {**data, "bad": None}


def test_report_page_keeps_hostile_names_verbatim(chdb_loaded: Loaded) -> None:
    as_of = time.time()
    data = collect(chdb_loaded.store, as_of=as_of)
    page = build_report(chdb_loaded.store, as_of=as_of)
    parsed = _Page()
    parsed.feed(page)
    assert len(parsed.scripts) == 2  # the data block and the page's script, nothing opened by a name
    attrs, payload = parsed.scripts[0]
    assert attrs.get("id") == "report-data"
    assert json.loads(payload) == json.loads(json.dumps(data))
    assert f"{scenarios.HOSTILE} / {scenarios.HOSTILE_STAGE}" in parsed.h2
    assert [s["campaign"] for s in json.loads(payload)["stages"]].count(scenarios.HOSTILE) == 1


@needs_chromium
def test_report_with_hostile_names_renders_in_chromium(chdb_loaded: Loaded, tmp_path: Path) -> None:
    """The charts of every stage are drawn (the data block parsed) and the names show as text, verbatim."""
    out = tmp_path / "hostile.html"
    out.write_text(build_report(chdb_loaded.store), encoding="utf-8")
    dom = chromium(out, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and console_lines(dom.stderr) == [], dom.stderr[-2000:]
    n_stages = len(collect(chdb_loaded.store)["stages"])
    assert f'data-charts-rendered="{CHARTS_PER_STAGE * n_stages}"' in dom.stdout
    parsed = _Page()
    parsed.feed(dom.stdout)
    assert len(parsed.scripts) == 2
    assert f"{scenarios.HOSTILE} / {scenarios.HOSTILE_STAGE}" in parsed.h2


def test_report_tiles_keep_hostile_names_verbatim() -> None:
    """Site, campaign and stage names in the tiles are HTML text, never markup; the commands stay exact."""
    import html as html_mod
    import shlex

    from stagewatch.report_tiles import render_tiles, tiles

    site = "<b>site</b> & 'x' $__toTime </div>"
    stage = {"campaign": scenarios.HOSTILE, "stage": scenarios.HOSTILE_STAGE, "files_without_located_output": 3,
             "stalled": True, "last_progress_ts": 100.0}
    row = {"campaign": scenarios.HOSTILE, "stage": scenarios.HOSTILE_STAGE, "site": site, "restarts": 2,
           "restarts_by_cause": {"evicted": 2}, "badput_core_hours": 1.5}
    page = render_tiles(tiles([stage], [row], as_of=7300.0, store_url="chdb:/s", at=None))
    assert "<b>site</b>" not in page and "</div> &" not in page
    assert f'<div class="big">{html_mod.escape(site)}</div>' in page
    (cmd,) = re.findall(r'<code class="cmd">(.*?)</code>', page, re.S)
    assert shlex.split(html_mod.unescape(cmd))[3:6] == [scenarios.HOSTILE, "--stage", scenarios.HOSTILE_STAGE]
    parsed = _Page()
    parsed.feed(page)
    assert parsed.scripts == []
