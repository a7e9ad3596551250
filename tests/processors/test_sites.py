"""Per-site numbers (processors.sites): the glossary's attribution rules, and sites sum to the stage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import simulator
from processors.engine import Engine
from processors.numbers import RESTART_CAUSES
from processors.sites import SITE_COUNTERS, site_counters, site_row
from tests.builders import C, S, job
from tests.stagewatch.test_timetravel import sited_scenarios


def sites_of(events):
    e = Engine()
    e.apply_all(events)
    stage = e.stage(C, S)
    stage.settle()
    return site_counters(ent.view for ent in stage.jobs.values())


def test_restart_and_badput_belong_to_the_interrupted_attempts_site_cpu_to_the_ended_one():
    sites = sites_of([
        job("j", "submitted", 0.0, cores=4),
        job("j", "started", 100.0, site="FNAL"),
        job("j", "evicted", 1000.0, wall_s=900.0),
        job("j", "started", 2000.0, site="UCSD"),
        job("j", "terminated", 2100.0, exit_code=0, cpu_user_s=80.0, cpu_sys_s=10.0, wall_s=100.0, cores=1),
    ])
    assert sites["FNAL"]["attempts"] == 1 and sites["FNAL"]["restarts"] == 1 and sites["FNAL"]["restarts_evicted"] == 1
    assert sites["FNAL"]["badput_core_ms"] == 900 * 4 * 1000 and sites["FNAL"]["cpu_terminations"] == 0
    assert sites["UCSD"]["attempts"] == 1 and sites["UCSD"]["restarts"] == 0 and sites["UCSD"]["badput_core_ms"] == 0
    row = site_row(C, S, "UCSD", sites["UCSD"])
    assert row["cpu_efficiency_pct"] == 90.0 and site_row(C, S, "FNAL", sites["FNAL"])["cpu_efficiency_pct"] is None
    assert site_row(C, S, "FNAL", sites["FNAL"])["badput_core_hours"] == 1.0


def test_no_site_is_unknown_silent_restart_is_unknown_cause_held_job_at_its_latest_site():
    sites = sites_of([
        job("a", "started", 10.0),  # no site
        job("a", "started", 20.0, site=""),  # silent restart (cause unknown), empty site
        job("a", "held", 30.0, reason="disk", hold_code=12),
        job("b", "terminated", 5.0, exit_code=0, cpu_user_s=1.0, cpu_sys_s=0.0, wall_s=2.0),  # before any start
        job("c", "submitted", 1.0), job("c", "held", 2.0),  # held, never started
        job("d", "started", 1.0, site="FNAL"), job("d", "held", 2.0),
    ])
    assert set(sites) == {"unknown", "FNAL"}
    u = sites["unknown"]
    assert (u["attempts"], u["restarts"], u["restarts_unknown"], u["jobs_held"], u["cpu_terminations"]) == (2, 1, 1, 2, 1)
    assert sites["FNAL"]["jobs_held"] == 1 and sites["FNAL"]["restarts_held"] == 0


def test_a_terminated_attempt_restarted_keeps_its_cpu_and_gives_its_site_the_restart():
    sites = sites_of([
        job("j", "started", 10.0, site="X"),
        job("j", "terminated", 20.0, exit_code=1, cpu_user_s=5.0, cpu_sys_s=0.0, wall_s=10.0),
        job("j", "started", 30.0, site="Y"),
    ])
    assert sites["X"]["cpu_terminations"] == 1 and sites["X"]["restarts"] == 1 and sites["X"]["restarts_unknown"] == 1
    assert sites["X"]["badput_core_ms"] == 0  # a terminated attempt is not badput
    assert sites["Y"]["attempts"] == 1 and sites["Y"]["restarts"] == 0


def _check_sums(engine: Engine, as_of: float = 1e10) -> int:
    checked = 0
    for (c, s), stage in engine.stages.items():
        n = stage.numbers(as_of)
        sites = site_counters(ent.view for ent in stage.jobs.values())
        total = {k: sum(v[k] for v in sites.values()) for k in SITE_COUNTERS}
        counters = stage.counters
        assert total["attempts"] == n["job_attempts"]
        assert total["restarts"] == n["restarts"]
        for cause in RESTART_CAUSES:
            assert total[f"restarts_{cause}"] == n["restarts_by_cause"][cause]
        for k in ("badput_core_ms", "cpu_terminations", "cpu_ms", "core_wall_ms"):
            assert total[k] == counters[k], k
        assert total["jobs_held"] == n["jobs_held"]
        checked += 1
    return checked


@settings(max_examples=300, deadline=None)
@given(sited_scenarios())
def test_sites_sum_to_the_stage_any_scenario(scenario):
    events, _ = scenario
    e = Engine()
    e.apply_all(events)
    _check_sums(e)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000))
def test_sites_sum_to_the_stage_simulated_campaigns_with_sites_and_evictions(seed):
    e = Engine()
    events = list(simulator.simulate_many(simulator.tiny(), seed))
    e.apply_all(events)
    assert _check_sums(e) == 2
    stage = e.stage("demo", "mcgen")
    sites = site_counters(ent.view for ent in stage.jobs.values())
    assert len(sites) > 1 and stage.counters["restarts"] > 0  # the scenario has sites and restarts
