"""The overview (`stagewatch status`): fits 120 columns, degrades to 80 by leaving columns out, never cuts a
number (every value of the JSON of a shown column appears whole on its stage's line), hostile names
included; --wide shows every number; --help shows options first; --watch / --exit-when-done."""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console

from ingest.simulator import PRESETS, simulate_many
from processors.numbers import FILE_BUCKETS, JOB_STATES
from stagewatch.console import fmt_ago, fmt_number
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from stagewatch.views import watch as watching
from stagewatch.views.overview import COMPACT, overview, render
from tests.builders import file, job
from tests.stagewatch.test_cli_escaping import flat, run_cli

T0 = 1497960000.0
HOSTILE = ["nova[/prod]", "s[red]x", "a" * 70, "stage with spaces and [bold]", "ünïcødé_stage"]


def big_result(names: list[tuple[str, str]], scale: int = 1) -> dict:
    """A status result with wide numbers (every number different, so a cut one cannot match another)."""
    stages = []
    for i, (c, s) in enumerate(names):
        base = (i + 1) * 7919 * scale
        st = {"campaign": c, "stage": s, "input_files": 0}
        for j, b in enumerate(FILE_BUCKETS):
            st[b] = base + 101 * j
        st["input_files"] = sum(st[b] for b in FILE_BUCKETS)
        st["files_without_located_output"] = st["input_files"] - st["files_located"]
        st["completion_pct"] = round(100 * st["files_located"] / st["input_files"], 1)
        st["outputs_declared"], st["outputs_located"] = base + 5, base + 3
        for j, js in enumerate(JOB_STATES):
            st[f"jobs_{js}"] = base + 13 * j + 1
        st["jobs"] = sum(st[f"jobs_{js}"] for js in JOB_STATES)
        st["jobs_completed_ok"] = st["jobs_completed"] - 17
        st["jobs_completed_failed"] = 17
        st["job_attempts"], st["restarts"] = st["jobs"] + 999, 999
        st["restarts_by_cause"] = {"evicted": 900, "shadow_exception": 50, "reconnect_failed": 30, "held": 10,
                                   "unknown": 9}
        st["cpu_efficiency_pct"] = 87.9 if i % 2 else None
        st["badput_core_hours"] = 1234.56 * (i + 1)
        st["last_event_ts"] = T0 - 60 * i
        st["last_progress_ts"] = None if i == 1 else T0 - 3600 * (i + 1)
        st["stalled"] = i % 2 == 0
        stages.append(st)
    return {"as_of": T0, "stall_threshold_s": 7200.0, "stages": stages}


def rendered(result: dict, width: int, wide: bool = False) -> tuple[list[str], object]:
    group, w = render(result, width, wide=wide)
    c = Console(width=w, record=True, force_terminal=False, color_system=None)
    c.print(group)
    return c.export_text().splitlines(), overview(result, width, wide)


def row_lines(lines: list[str], stage: str) -> list[str]:
    """The lines of a stage's row (its first line holds every number: numbers never wrap)."""
    return [ln for ln in lines if ln.startswith(stage[:12])]


def check_no_number_cut(result: dict, width: int, wide: bool = False) -> object:
    lines, view = rendered(result, width, wide)
    assert max(len(ln) for ln in lines) <= view.width
    if not wide:
        assert view.width == width
    now = result["as_of"]
    for s in result["stages"]:
        candidates = [ln for ln in lines if all(col.text(s, now) in ln for col in view.shown)]
        assert candidates, (s["stage"], [c.header for c in view.shown], lines)
    return view


@pytest.mark.parametrize("width", [120, 80])
def test_the_talks_numbers_fit_the_width_whole(width):
    names = [("nova_keepup", "fd_keepup_raw2root"), ("nova_prod5_data", "fd_data_period1"),
             ("nova_prod5_mc", "fd_mcgen_cry_fhc_all"), ("nova_prod5_mc", "fd_reco_cry_fhc_all")]
    view = check_no_number_cut(big_result(names), width)
    headers = [c.header for c in view.shown]
    assert headers == [c.header for c in COMPACT[:len(headers)]]  # strict priority: columns go from the end
    assert len(headers) >= 4  # located/input, without located output, in flight, failed at least
    if width == 120:
        assert len(headers) >= 8


@pytest.mark.parametrize("width", [120, 80, 60])
def test_hostile_and_long_names_never_cut_a_number(width):
    names = [(HOSTILE[0], HOSTILE[1]), (HOSTILE[2], HOSTILE[3]), (HOSTILE[0], HOSTILE[4])]
    result = big_result(names, scale=1000)  # 8-digit numbers
    view = check_no_number_cut(result, width)
    lines, _ = rendered(result, width)
    text = "\n".join(lines)
    for c, s in names:
        assert c[:8] in text and s[:8] in text  # names fold but are shown, verbatim (no markup parsed)
    hidden = [c.header for c in view.hidden]
    if hidden:
        assert "not shown at this width" in flat(text)


@pytest.mark.parametrize("width", [200, 150, 120, 80])
def test_stalled_is_on_the_stage_line_when_the_names_have_room(width):
    """STALLED follows a stalled stage's name on its line when the spare width allows, else goes under it;
    either way each stalled stage shows it once and no other does."""
    result = big_result([("nova_prod5_mc", "fd_mcgen_cry_fhc_all"), ("nova_prod5_mc", "fd_reco_cry_fhc_all"),
                         ("nova_keepup", "fd_keepup_raw2root")])
    lines, view = rendered(result, width)
    assert "\n".join(lines).count("STALLED") == sum(s["stalled"] for s in result["stages"]) == 2
    for s in result["stages"]:
        first = next(i for i, ln in enumerate(lines) if ln.startswith(s["stage"]))
        inline = lines[first].startswith(f"{s['stage']} STALLED")
        under = lines[first + 1].startswith("STALLED")
        assert (inline or under) == s["stalled"], lines
        assert not s["stalled"] or inline == (len(s["stage"]) + len(" STALLED") <= view.table.columns[0].min_width)
    if width == 200:
        assert all(ln.startswith("STALLED") is False for ln in lines)  # room enough: all inline


def test_narrower_means_fewer_columns_not_cut_ones():
    result = big_result([("c", "s"), ("c", "t")])
    shown = [len(overview(result, w).shown) for w in (200, 120, 100, 80, 60)]
    assert shown == sorted(shown, reverse=True) and shown[0] > shown[-1]


def test_wide_shows_every_bucket_so_the_sum_is_visible_and_every_job_state():
    result = big_result([("camp", "stage1"), ("camp", "stage2")])
    lines, view = rendered(result, 80, wide=True)
    keys = {k for c in view.shown for k in c.keys}
    assert set(FILE_BUCKETS) <= keys and {f"jobs_{s}" for s in JOB_STATES} <= keys
    assert {"input_files", "restarts", "badput_core_hours", "last_event_ts"} <= keys
    check_no_number_cut(result, 80, wide=True)
    for s in result["stages"]:
        (line,) = [ln for ln in lines if s["stage"] in ln]
        for b in (*FILE_BUCKETS, "input_files"):
            assert fmt_number(s[b]) in line
        assert sum(s[b] for b in FILE_BUCKETS) == s["input_files"]


def test_last_progress_is_how_long_ago():
    assert fmt_ago(T0 - 3 * 3600, T0) == "3 h ago"
    assert fmt_ago(None, T0) == "-"
    result = big_result([("c", "s")])
    lines, view = rendered(result, 200)
    assert any("1 h ago" in ln for ln in lines)


@pytest.fixture(scope="module")
def talk_like_store(tmp_path_factory):
    url = f"chdb:{tmp_path_factory.mktemp('overview') / 'store'}"
    with open_store(url) as st:
        replay_events(st, simulate_many(PRESETS["tiny"](), 1))
    return url


@pytest.mark.parametrize("columns", ["120", "80"])
def test_status_command_fits_columns(capsys, monkeypatch, talk_like_store, columns):
    monkeypatch.setenv("COLUMNS", columns)
    code, out, err = run_cli(capsys, "status", "--store", talk_like_store, "--at", "2017-06-20T12:00:00Z")
    assert code == 0, err
    assert max(len(ln) for ln in out.splitlines()) <= int(columns)
    code, js, _ = run_cli(capsys, "status", "--store", talk_like_store, "--at", "2017-06-20T12:00:00Z",
                          "--format", "json")
    for s in json.loads(js)["stages"]:
        assert fmt_number(s["files_without_located_output"]) in out
        assert f"{fmt_number(s['files_located'])}/{fmt_number(s['input_files'])}" in out


def test_status_wide_command(capsys, talk_like_store):
    code, out, err = run_cli(capsys, "status", "--wide", "--store", talk_like_store)
    assert code == 0, err
    for word in ("Declared", "Consumed", "Suspended", "Removed", "Attempts"):
        assert word in out


def test_status_help_shows_options_first_and_points_to_the_glossary(capsys):
    code, out, err = run_cli(capsys, "status", "--help")
    assert code == 0
    text = flat(out)
    assert text.index("Options") < text.index("stagewatch glossary")
    assert text.index("Options") < 300  # not after a page of definitions
    for opt in ("--at", "--now", "--wide", "--watch", "--exit-when-done", "--as-of"):
        assert opt in text


# ---------------------------------------------------------------------------------------- watching
def stage(**kw):
    base = {k: 0 for k in watching.WORK_LEFT}
    base.update(stalled=False)
    base.update(kw)
    return base


def test_verdict_done_stalled_or_wait():
    assert watching.verdict({"stages": [stage(), stage()]}) == 0
    assert watching.verdict({"stages": [stage(), stage(jobs_held=1)]}) is None
    assert watching.verdict({"stages": [stage(files_pending=3, stalled=True), stage()]}) == 1
    assert watching.verdict({"stages": []}) is None


def test_watch_loop_redraws_until_done(capsys):
    results = iter([{"stages": [stage(jobs_running=2)]}, {"stages": [stage(jobs_running=1)]},
                    {"stages": [stage()]}])
    reads, sleeps, drawn = [], [], []

    def read():
        r = next(results)
        reads.append(r)
        return r

    def draw(r):
        drawn.append(r)
        return f"running {r['stages'][0]['jobs_running']}"

    code = watching.watch_loop(read, draw, Console(file=open("/dev/null", "w")), interval=5,
                               exit_when_done=True, sleep=sleeps.append)
    assert code == 0 and len(reads) == 3 and sleeps == [5, 5] and len(drawn) == 3


def test_watch_loop_exits_1_when_a_stage_stalls():
    results = iter([{"stages": [stage(jobs_idle=2)]}, {"stages": [stage(jobs_idle=2, stalled=True)]}])
    code = watching.watch_loop(lambda: next(results), None, Console(file=open("/dev/null", "w")), interval=1,
                               exit_when_done=True, sleep=lambda s: None)
    assert code == 1


def done_and_stalled_store(tmp_path) -> str:
    url = f"chdb:{tmp_path / 'store'}"
    with open_store(url) as st:
        replay_events(st, [
            job("1.0", "submitted", T0, stage="done"), job("1.0", "started", T0 + 10, stage="done"),
            job("1.0", "terminated", T0 + 20, exit_code=0, stage="done"),
            job("2.0", "submitted", T0, stage="stuck"), file("in.root", "input_declared", T0, stage="stuck"),
        ])
    return url


def test_exit_when_done_exit_status(capsys, tmp_path):
    url = done_and_stalled_store(tmp_path)
    code, out, err = run_cli(capsys, "status", "--store", url, "--stage", "done", "--exit-when-done",
                             "--watch", "0.1")
    assert code == 0, err
    code, out, err = run_cli(capsys, "status", "--store", url, "--exit-when-done", "--format", "json")
    assert code == 1, err  # the stuck stage has been idle for years: stalled
    assert json.loads(out)["stages"][1]["stalled"] is True
    code, out, err = run_cli(capsys, "status", "--store", url, "--exit-when-done", "--at", str(T0 + 60))
    assert code == 2 and "drop --at" in flat(err)


def test_compact_cells_are_plain_numbers():
    """The located/input cell is 'located/input pct%' and the job triple is running/idle/held."""
    s = big_result([("c", "s")])["stages"][0]
    by = {c.keys: c for c in COMPACT}
    assert by[("files_located", "input_files", "completion_pct")].text(s, T0) == (
        f"{s['files_located']:,}/{s['input_files']:,} {s['completion_pct']:.1f}%")
    assert re.fullmatch(r"[\d,]+/[\d,]+/[\d,]+", by[("jobs_running", "jobs_idle", "jobs_held")].text(s, T0))


def test_eta_and_rate_are_shown_when_the_result_has_them():
    result = big_result([("c", "s"), ("c", "t")])
    result["stages"][0].update(located_rate_per_h=12.5, eta=T0 + 3 * 3600 + 60)
    result["stages"][1].update(located_rate_per_h=0.0, eta=None)
    lines, view = rendered(result, 220)
    assert "ETA" in [c.header for c in view.shown]
    assert any("in 3 h" in ln for ln in lines)
    lines, view = rendered(result, 80, wide=True)
    keys = {k for c in view.shown for k in c.keys}
    assert {"located_rate_per_h", "eta"} <= keys
    assert any("12.5" in ln and "2017-06-20 15:01" in ln for ln in lines)
    without = big_result([("c", "s")])
    assert "ETA" not in [c.header for c in overview(without, 220).shown]  # no forecast in the result, no column


@pytest.mark.parametrize("columns", ["80", "120", "400"])
def test_compact_status_reads_the_forecast_only_when_the_eta_can_show(capsys, monkeypatch, talk_like_store, columns):
    """The forecast scans every input's located time: the compact view reads it only when its ETA column (last
    in priority) can show; otherwise the caption still names the ETA among the columns not shown."""
    from stagewatch import reading

    calls = []
    real = reading.read_forecast
    monkeypatch.setattr(reading, "read_forecast", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setenv("COLUMNS", columns)
    code, out, err = run_cli(capsys, "status", "--store", talk_like_store)
    assert code == 0, err
    body, _, caption = out.partition("not shown at this width:")
    shown = "ETA" in body
    assert bool(calls) is shown, out
    if not shown:
        assert "ETA" in flat(caption), out
    if columns == "80":
        assert not calls  # at 80 columns the ETA never fits
    if columns == "400":
        assert calls and shown
    for args in (["--format", "json"], ["--wide"]):  # every number: always read
        calls.clear()
        code, out, err = run_cli(capsys, "status", "--store", talk_like_store, *args)
        assert code == 0, err
        assert calls


def test_eta_can_show_only_when_every_other_column_fits():
    from stagewatch.views.overview import eta_can_show

    result = big_result([("c", "s")])
    assert not eta_can_show(result, 80)
    wide_enough = next(w for w in range(80, 600) if eta_can_show(result, w))
    assert all(eta_can_show(result, w) for w in range(wide_enough, wide_enough + 50))
    with_eta = {**result, "stages": [{**s, "eta": None, "located_rate_per_h": 0.0} for s in result["stages"]]}
    assert "ETA" in [c.header for c in overview(with_eta, wide_enough).shown]
    assert "ETA" not in [c.header for c in overview(with_eta, wide_enough - 1).shown]
