"""`stagewatch sites`: the issue's JSON shape, the glossary's attribution, sums equal to the stage's numbers,
`--at` equal to replaying only the earlier events, escaping, and read-only behaviour; chDB and 18.16."""

from __future__ import annotations

import itertools
import uuid
import json
import os

import pytest

from ingest import simulator
from processors.engine import Engine
from processors.numbers import RESTART_CAUSES
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from tests.builders import job
from tests.stagewatch.test_cli_escaping import flat, run_cli
from tests.stagewatch.test_sites_sql import python_sites
from tests.stagewatch.test_timetravel import renamed

_n = itertools.count()
_RUN = f"cs{uuid.uuid4().hex[:6]}_"  # campaigns unique per module and run: the 18.16 server is shared by the session
HOSTILE_SITE = "[red]OSG[/] 'x'"


def campaign_events(campaign: str) -> list:
    """The tiny simulated campaign (sites, evictions, holds) with HTCondor codes on holds and a hostile site."""
    events = list(simulator.simulate_many(simulator.tiny(), 3))
    for i, e in enumerate(e for e in events if e.type == "held"):
        e.hold_code, e.hold_subcode = 12 + i % 2, i
    t0 = min(e.ts for e in events)
    events += [job("h1", "started", t0 + 60, stage="mcgen", site=HOSTILE_SITE, cores=2),
               job("h1", "evicted", t0 + 3660, stage="mcgen", wall_s=3600.0),
               job("h1", "started", t0 + 7200, stage="mcgen", site="FNAL")]
    return renamed(events, campaign)


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.servers)], scope="module")
def loaded(request, tmp_path_factory):
    campaign = f"{_RUN}sites{next(_n)}"
    if request.param == "chdb":
        url = f"chdb:{tmp_path_factory.mktemp('cli-sites') / 'store'}"
    else:
        url = request.getfixturevalue("clickhouse_server").store_url
    events = campaign_events(campaign)
    with open_store(url) as st:
        replay_events(st, events)
    return url, campaign, events


def engine_of(events) -> Engine:
    e = Engine()
    e.apply_all(events)
    return e


def test_json_shape_and_values_equal_the_definitions(loaded, capsys):
    url, campaign, events = loaded
    code, out, err = run_cli(capsys, "sites", "--store", url, "--campaign", campaign, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ["sites"]
    assert doc["sites"] == python_sites(engine_of(events), campaign)
    for row in doc["sites"]:
        assert list(row) == ["campaign", "stage", "site", "attempts", "restarts", "restarts_by_cause",
                             "badput_core_hours", "cpu_efficiency_pct", "jobs_held"]
        assert list(row["restarts_by_cause"]) == list(RESTART_CAUSES)
    badput = [r["badput_core_hours"] for r in doc["sites"]]
    assert badput == sorted(badput, reverse=True)
    hostile = next(r for r in doc["sites"] if r["site"] == HOSTILE_SITE)
    assert (hostile["stage"], hostile["attempts"], hostile["restarts_by_cause"]["evicted"], hostile["badput_core_hours"]) \
        == ("mcgen", 1, 1, 2.0)


def test_sites_sum_to_the_stage_numbers(loaded, capsys):
    url, campaign, _ = loaded
    _, out, _ = run_cli(capsys, "sites", "--store", url, "--campaign", campaign, "--format", "json")
    sites = json.loads(out)["sites"]
    code, out, err = run_cli(capsys, "status", "--store", url, "--campaign", campaign, "--format", "json")
    assert code == 0, err
    stages = json.loads(out)["stages"]
    assert len(stages) == 2
    for st in stages:
        mine = [r for r in sites if r["stage"] == st["stage"]]
        assert len(mine) > 1
        assert sum(r["attempts"] for r in mine) == st["job_attempts"]
        assert sum(r["restarts"] for r in mine) == st["restarts"]
        for c in RESTART_CAUSES:
            assert sum(r["restarts_by_cause"][c] for r in mine) == st["restarts_by_cause"][c]
        assert sum(r["jobs_held"] for r in mine) == st["jobs_held"]
        assert abs(sum(r["badput_core_hours"] for r in mine) - st["badput_core_hours"]) <= 0.005 * len(mine)


def test_at_equals_replaying_only_the_earlier_events(loaded, capsys):
    url, campaign, events = loaded
    times = sorted(e.ts for e in events)
    for at in (times[len(times) // 3], times[2 * len(times) // 3]):
        code, out, err = run_cli(capsys, "sites", "--store", url, "--campaign", campaign, "--stage", "mcgen",
                                 "--at", repr(at), "--format", "json")
        assert code == 0, err
        earlier = [e for e in events if e.ts <= at and e.stage == "mcgen"]
        assert json.loads(out)["sites"] == python_sites(engine_of(earlier), campaign)
        assert json.loads(out)["sites"] != python_sites(engine_of([e for e in events if e.stage == "mcgen"]), campaign)


def test_table_shows_names_verbatim_and_unknown_names_are_usage_errors(loaded, capsys):
    url, campaign, _ = loaded
    code, out, err = run_cli(capsys, "sites", "--store", url, "--campaign", campaign, "--stage", "mcgen")
    assert code == 0, err
    assert HOSTILE_SITE in out and "evicted 1" in out and "Badput core-h" in out
    code, _, err = run_cli(capsys, "sites", "--store", url, "--campaign", campaign, "--stage", "mcgenn")
    assert code == 2 and "mcgen" in flat(err)


def test_a_missing_store_is_an_error_and_nothing_is_created(tmp_path, capsys):
    path = tmp_path / "nothing"
    code, _, err = run_cli(capsys, "sites", "--store", f"chdb:{path}")
    assert code == 1 and "No store at" in flat(err)
    assert not os.path.exists(path)


def test_attempt_rows_beyond_the_jobs_attempts_are_not_counted(tmp_path, capsys):
    """A winning conflicting copy can leave an attempt row beyond the job's attempts (rows are never
    deleted); the sites must still sum to the stage, whatever the order the copies came in."""
    from processors.rows import job_attempt_rows
    from processors.stage import StageState

    url = f"chdb:{tmp_path / 'store'}"
    evs = [job("j", "started", 10.0, site="A"), job("j", "evicted", 20.0), job("j", "started", 30.0, site="B")]
    with open_store(url) as st:
        replay_events(st, evs)
        stage = StageState("camp", "stage1")
        for e in evs + [job("j", "evicted", 40.0), job("j", "started", 50.0, site="STALE")]:
            stage.apply(e)
        stage.settle()
        stale = [r for r in job_attempt_rows(stage, stage.jobs["j"].view) if r["attempt"] == 3]
        stale[0]["version"] = 1  # an old row, as a loser's would be
        st.insert("job_attempts", stale)
    code, out, err = run_cli(capsys, "sites", "--store", url, "--format", "json")
    assert code == 0, err
    assert [(r["site"], r["attempts"], r["restarts"]) for r in json.loads(out)["sites"]] == [("A", 1, 1), ("B", 1, 0)]
