"""`stagewatch history`: each step equals a replay of the events up to it (hypothesis) and equals
`status --at STEP` (the timetravel store read through the SQL); the CLI's formats and errors."""

from __future__ import annotations

import csv
import io
import itertools
import uuid
import json

import pytest
from hypothesis import HealthCheck, given, settings

from processors.engine import Engine
from processors.forecast import stage_forecast, window_seconds
from stagewatch import reading
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from stagewatch.timetravel import history, store_at
from tests.builders import file, job
from tests.stagewatch.test_cli_escaping import flat, run_cli
from tests.stagewatch.test_timetravel import renamed, sited_scenarios

_n = itertools.count()
_RUN = f"hi{uuid.uuid4().hex[:6]}_"  # campaigns unique per module and run: the 18.16 server is shared by the session
WINDOW_H = 0.002  # 7.2 s: the scenarios' ts are 0..20


def prefix_numbers(events, campaign, stage, t):
    e = Engine()
    e.apply_all([ev for ev in events if ev.ts <= t])
    st = e.stages.get((campaign, stage))
    if st is None:
        return None
    return {"ts": t, **st.numbers(t), **stage_forecast(st, t, window_seconds(WINDOW_H))}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = open_store(f"chdb:{tmp_path_factory.mktemp('history') / 'store'}")
    yield st
    st.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sited_scenarios())
def test_each_step_equals_a_replay_of_the_prefix(store, scenario):
    events, _ = scenario
    c = f"{_RUN}h{next(_n)}"
    events = renamed(events, c)
    replay_events(store, events)
    for stage in ("s1", "s2"):
        steps = history(store, c, stage, every_s=3.0, since=-1.0, until=21.0, rate_window_h=WINDOW_H)
        want = [n for n in (prefix_numbers(events, c, stage, t) for t in range(-1, 22, 3)) if n is not None]
        assert steps == want


def test_steps_equal_status_at_through_the_sql(store):
    c = f"{_RUN}h{next(_n)}"
    T = 1_500_000_000.0
    kw = dict(campaign=c)
    events = [file("in1", "input_declared", T, **kw), file("in2", "input_declared", T, **kw),
              file("in1", "delivered", T + 600, **kw), job("j1", "submitted", T + 500, **kw),
              job("j1", "started", T + 700, site="FNAL", **kw),
              file("o1", "output_declared", T + 4000, parents=["in1"], **kw),
              file("o1", "output_located", T + 3000, **kw),  # located before declared: located at T + 4000
              job("j1", "terminated", T + 4100, exit_code=0, cpu_user_s=10.0, cpu_sys_s=1.0, wall_s=3000.0, **kw),
              file("in2", "delivered", T + 9000, **kw)]
    replay_events(store, events)
    steps = history(store, c, "stage1", every_s=1800.0, rate_window_h=1.0)
    assert [s["ts"] for s in steps] == [T + 1800 * i for i in range(6)]  # the last event (T + 9000) is a step
    for s in steps:
        with store_at(store, s["ts"], c, "stage1") as past:
            (st,) = reading.read_status(past, c, "stage1", as_of=s["ts"], forecast=True, rate_window_h=1.0)["stages"]
        assert s == {"ts": s["ts"], **st}
    by = {s["ts"]: s for s in steps}
    assert by[T + 3600]["files_located"] == 0 and by[T + 5400]["files_located"] == 1
    assert by[T + 5400]["located_rate_per_h"] == 1.0 and by[T + 5400]["eta"] == T + 5400 + 3600
    assert by[T + 9000]["located_rate_per_h"] == 0.0 and by[T + 9000]["eta"] is None


@pytest.fixture(scope="module")
def cli_store(store):
    """The module's store with a stage of campaign `camp`, closed (chDB: one path per process; the CLI opens it)."""
    T = 1_500_000_000.0
    replay_events(store, [file("in1", "input_declared", T), file("in1", "delivered", T + 7200),
                          job("j[1]", "started", T + 3600, site="[bold]X")])
    store.close()
    return store.url, T


def test_cli_json_csv_and_table(cli_store, capsys):
    url, T = cli_store
    code, out, err = run_cli(capsys, "history", "--store", url, "--campaign", "camp", "--stage", "stage1",
                             "--every", "1h", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [s["ts"] for s in doc["steps"]] == [T, T + 3600, T + 7200]
    assert [s["jobs_running"] for s in doc["steps"]] == [0, 1, 1]
    assert [s["files_in_flight"] for s in doc["steps"]] == [0, 0, 1]
    assert doc["every_s"] == 3600 and "located_rate_per_h" in doc["steps"][0] and "eta" in doc["steps"][0]
    code, out, err = run_cli(capsys, "history", "--store", url, "--campaign", "camp", "--stage", "stage1",
                             "--every", "30min", "--since", "2017-07-14T02:40:00Z", "--until", repr(T + 3600),
                             "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [float(r["ts"]) for r in rows] == [T, T + 1800, T + 3600]
    assert "restarts_unknown" in rows[0] and "restarts_by_cause" not in rows[0]
    code, out, err = run_cli(capsys, "history", "--store", url, "--campaign", "camp", "--stage", "stage1")
    assert code == 0 and "Located/h" in out


@pytest.mark.parametrize("args,says", [
    (["--every", "soon"], "is not a duration"),
    (["--every", "0s"], "shorter than one second"),
    (["--since", "2017-07-14T03:00:00Z", "--until", "2017-07-14T02:00:00Z"], "is before --since"),
    (["--since", "yesterday"], "--since 'yesterday'"),
    (["--every", "1s", "--since", "2017-01-01T00:00:00Z"], "steps (at most 100,000)"),
])
def test_cli_usage_errors_are_sentences(cli_store, capsys, args, says):
    url, _ = cli_store
    code, _, err = run_cli(capsys, "history", "--store", url, "--campaign", "camp", "--stage", "stage1", *args)
    assert code == 2 and says in flat(err)


def test_cli_unknown_stage(cli_store, capsys):
    url, _ = cli_store
    code, _, err = run_cli(capsys, "history", "--store", url, "--campaign", "camp", "--stage", "stage2")
    assert code == 2 and "stage1" in flat(err)


@pytest.mark.servers
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sited_scenarios())
def test_each_step_equals_a_replay_of_the_prefix_clickhouse(clickhouse_server, scenario):
    events, _ = scenario
    c = f"{_RUN}hs{next(_n)}"
    events = renamed(events, c)
    with open_store(clickhouse_server.store_url) as st:
        replay_events(st, events)
        steps = history(st, c, "s1", every_s=4.0, since=0.0, until=20.0, rate_window_h=WINDOW_H)
    want = [n for n in (prefix_numbers(events, c, "s1", t) for t in range(0, 21, 4)) if n is not None]
    assert steps == want


@pytest.mark.parametrize("width", [200, 120, 80, 50])
def test_table_fits_the_terminal_whole_columns_left_out_and_named(width):
    """As the overview: each shown column whole (no ellipsis, no folded number), the lines within the width,
    the time and the stall flag kept longest, the columns left out named under the table."""
    from rich.console import Console

    from stagewatch.cli_history import TABLE_COLUMNS, history_table
    from stagewatch.console import fmt_number

    steps = []
    for i in range(3):
        s = {n: 1_234_567 + i for n in TABLE_COLUMNS}
        s.update(ts=1_500_000_000 + 3600 * i, stalled=i == 2, located_rate_per_h=12_345.6)
        steps.append(s)
    c = Console(width=width, record=True, force_terminal=False, color_system=None)
    c.print(history_table(steps, "h", width))
    text = c.export_text()
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= width and "…" not in text
    data = [ln for ln in lines if ln.startswith("2017-")]
    assert len(data) == 3 and data[2].rstrip().endswith("STALLED")  # one line per step: nothing folded
    shown = data[0].split()[2:]  # after the date and the time
    assert all(v == "1,234,567" or v == fmt_number(12_345.6) for v in shown)
    named = "Not shown at this width" in text
    assert named == (len(shown) < len(TABLE_COLUMNS))
