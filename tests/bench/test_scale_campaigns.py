"""bench/scale_campaigns.py: the simulated year has the sizes and the mix of stages asked for."""

from __future__ import annotations

from collections import Counter

from bench.scale_campaigns import scale_specs
from ingest.simulator import expected_outcomes


def test_a_million_jobs_plan() -> None:
    specs = scale_specs(1_000_000)
    assert len(specs) == 200 and len({s.campaign for s in specs}) == 20
    assert len({(s.campaign, s.stage) for s in specs}) == 200
    assert Counter(s.end for s in specs) == {"finished": 120, "running": 60, "stalled": 20}
    files = sum(s.n_input_files for s in specs)
    assert abs(files - 3_000_000) / 3_000_000 < 0.01
    # finished stages are spread over the year; open ones end their observation at the same "now"
    starts = [s.start_ts for s in specs if s.end == "finished"]
    assert max(starts) - min(starts) > 300 * 86400
    assert len({s.end_ts for s in specs if s.end != "finished"}) == 1


def test_simulated_sizes_are_near_the_targets() -> None:
    """Jobs and input files as simulated (the simulator's truth), within 15 % of what was asked."""
    specs = scale_specs(10_000, files_per_job=2.0)
    truth = expected_outcomes(specs, 1)
    jobs = sum(o.jobs for o in truth.values())
    files = sum(o.input_files for o in truth.values())
    assert abs(jobs - 10_000) / 10_000 < 0.15, jobs
    assert abs(files - 20_000) / 20_000 < 0.15, files
    ends = {o.end for o in truth.values()}
    assert ends == {"finished", "running"}
    restarts = sum(o.restarts for o in truth.values())
    assert restarts > 0.1 * jobs  # the busy weather: evictions and restarts are exercised
