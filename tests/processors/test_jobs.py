"""The job rules of the glossary, one by one."""

import pytest

from tests.builders import job, numbers


def test_states_follow_the_latest_event():
    evs = [
        job("idle1", "submitted", 0),
        job("idle2", "started", 0), job("idle2", "evicted", 5),
        job("idle3", "started", 0), job("idle3", "shadow_exception", 5),
        job("idle4", "started", 0), job("idle4", "reconnect_failed", 5),
        job("idle5", "held", 0), job("idle5", "released", 5),
        job("run1", "started", 0),
        job("run2", "started", 0), job("run2", "disconnected", 5),
        job("run3", "disconnected", 0), job("run3", "reconnected", 5),
        job("run4", "suspended", 0), job("run4", "unsuspended", 5),
        job("held1", "started", 0), job("held1", "held", 5),
        job("susp1", "started", 0), job("susp1", "suspended", 5),
        job("done1", "started", 0), job("done1", "terminated", 5, exit_code=0),
        job("rm1", "submitted", 0), job("rm1", "removed", 5),
    ]
    n = numbers(evs)

    assert n["jobs"] == 13
    assert n["jobs_idle"] == 5
    assert n["jobs_running"] == 4
    assert n["jobs_held"] == 1
    assert n["jobs_suspended"] == 1
    assert n["jobs_completed"] == 1
    assert n["jobs_removed"] == 1
    assert sum(n[f"jobs_{s}"] for s in ("idle", "running", "held", "suspended", "completed", "removed")) == n["jobs"]


def test_job_without_submitted_counts_once_however_often_it_restarts():
    evs = [job("a", "started", t) for t in (10, 20, 30, 40)] + [job("a", "terminated", 50, exit_code=0)]
    n = numbers(evs)
    assert n["jobs"] == 1
    assert n["job_attempts"] == 4
    assert n["restarts"] == 3
    assert n["jobs_completed_ok"] == 1


@pytest.mark.parametrize("kw,ok", [
    ({"exit_code": 0}, True),
    ({"exit_code": 1}, False),
    ({"exit_code": 0, "signal": 9}, False),
    ({"signal": 9}, False),
    ({}, False),
])
def test_completed_ok_needs_exit_code_zero_and_no_signal(kw, ok):
    n = numbers([job("a", "started", 0), job("a", "terminated", 10, **kw)])
    assert (n["jobs_completed_ok"], n["jobs_completed_failed"]) == ((1, 0) if ok else (0, 1))


def test_restart_causes_first_ender_after_previous_start_or_unknown():
    evs = [
        job("a", "submitted", 0), job("a", "started", 10),
        job("a", "disconnected", 20), job("a", "reconnect_failed", 30), job("a", "evicted", 40),  # -> reconnect_failed
        job("a", "started", 50),
        job("a", "started", 60),  # no information -> unknown (silent OSG eviction)
        job("a", "held", 70), job("a", "released", 80),
        job("a", "started", 90),  # -> held
        job("a", "shadow_exception", 100),
        job("a", "started", 110),  # -> shadow_exception
        job("a", "evicted", 120), job("a", "started", 130),  # -> evicted
        job("a", "terminated", 140, exit_code=0),
    ]
    n = numbers(evs)
    assert n["restarts"] == 5
    assert n["restarts_by_cause"] == {"evicted": 1, "shadow_exception": 1, "reconnect_failed": 1, "held": 1,
                                      "unknown": 1}
    assert sum(n["restarts_by_cause"].values()) == n["restarts"]


def test_ender_before_first_start_is_not_a_cause():
    n = numbers([job("a", "held", 0), job("a", "released", 5), job("a", "started", 10), job("a", "started", 20)])
    assert n["restarts_by_cause"]["unknown"] == 1
    assert n["restarts_by_cause"]["held"] == 0


def test_cpu_efficiency_over_terminated_events_with_all_three_fields():
    evs = [
        job("a", "started", 0, cores=2),
        job("a", "terminated", 100, cpu_user_s=150, cpu_sys_s=10, wall_s=100),  # cores from started: 2
        job("b", "started", 0),
        job("b", "terminated", 100, cpu_user_s=90, cpu_sys_s=0, wall_s=100, cores=1),
        job("c", "started", 0),
        job("c", "terminated", 100, cpu_user_s=5, wall_s=100),  # no cpu_sys_s: ignored
    ]
    n = numbers(evs)
    # 100 * (160 + 90) / (200 + 100) = 83.33 -> 83.3
    assert n["cpu_efficiency_pct"] == 83.3


def test_cpu_efficiency_null_without_data_and_rounds_half_up():
    assert numbers([job("a", "started", 0), job("a", "terminated", 5)])["cpu_efficiency_pct"] is None
    # 100 * 1 / 8 = 12.5 exactly at 1 decimal; 100 * 1 / 16 = 6.25 -> 6.3 (half up)
    n = numbers([job("a", "started", 0), job("a", "terminated", 16, cpu_user_s=1, cpu_sys_s=0, wall_s=16)])
    assert n["cpu_efficiency_pct"] == 6.3


def test_badput_uses_ender_wall_s_then_times_then_next_start_for_unknown():
    evs = [
        job("a", "started", 0, cores=4),
        job("a", "evicted", 1000, wall_s=900),  # ender carries wall_s: 900 s x 4 cores
        job("a", "started", 2000),
        job("a", "held", 2600),  # no wall_s: 600 s x 4 cores (cores from the job's first event with cores)
        job("a", "released", 2700),
        job("a", "started", 3000),
        job("a", "started", 6600),  # unknown: 3600 s to the next start x 4
        job("a", "terminated", 7000, exit_code=0),  # last attempt terminated: not badput
    ]
    n = numbers(evs)
    assert n["badput_core_hours"] == round((900 * 4 + 600 * 4 + 3600 * 4) / 3600, 2)


def test_badput_counts_only_attempts_followed_by_another_start():
    evs = [job("a", "started", 0), job("a", "evicted", 3600)]  # not (yet) restarted
    assert numbers(evs)["badput_core_hours"] == 0.0
    evs.append(job("a", "started", 7200))
    assert numbers(evs)["badput_core_hours"] == 1.0


def test_badput_ender_cores_win():
    evs = [job("a", "started", 0, cores=1), job("a", "evicted", 3600, cores=8), job("a", "started", 4000)]
    assert numbers(evs)["badput_core_hours"] == 8.0


def test_terminated_attempt_is_not_badput_even_if_restarted():
    evs = [job("a", "started", 0), job("a", "terminated", 3600, exit_code=1), job("a", "started", 4000)]
    n = numbers(evs)
    assert n["badput_core_hours"] == 0.0
    assert n["restarts_by_cause"]["unknown"] == 1
    assert n["jobs_running"] == 1
