"""A year of production for the scale bench: many campaigns and stages from the simulator's own rules.

The simulator's presets stop at a NOvA week (100,000 jobs). The million-job bench needs ~1,000,000 jobs
and ~3,000,000 input files over many campaigns, so this module only *parameterises* the simulator
(``ingest.simulator.StageSpec``; nothing in the simulator is changed): evictions, holds, recoveries,
duplicates and reordering all come from its rules.

The simulator gives each job one input file (recoveries add jobs, not files), so a year's 3:1 ratio of
input files to jobs comes from what a real year holds: most stages finished, and the stages still open
at "now" have declared whole input datasets of which only a part has been submitted yet (their files
are pending). Of every ten stages of a campaign, six are finished, three running and one stalled; the
finished ones start at dates spread over the year, the open ones end their observation at ``now``.

Sizes are targets, not exact: the jobs of an open stage are the ones submitted before its cut, which
the cut time is chosen for (submissions come in batches of ``batch_size`` files every
``batch_interval_s``, plus ~20 % recovery and extra jobs).
"""

from __future__ import annotations

from ingest.simulator import TALK_NOW, StageSpec

DAY = 86400.0
HOUR = 3600.0
JOBS_PER_STAGE = 5_000
STAGES_PER_CAMPAIGN = 10
# Six finished, three running, one stalled in ten, interleaved so that a small bench has every kind.
KINDS = ("finished", "running", "stalled", "finished", "running", "finished", "finished", "running", "finished",
         "finished")
# NOvA-week weather (bench/replay_bench.py's stream): the restart bookkeeping must be exercised.
WEATHER = {
    "p_evict": 0.2, "p_evict_silent": 0.07, "p_hold": 0.03, "p_shadow_exception": 0.015,
    "p_reconnect_failed": 0.01, "p_disconnect": 0.2, "p_suspend": 0.04, "fnal_share": 0.35,
}
JOBS_PER_FILE_FINISHED = 1.35  # nova-week: 43,000 job ids for 32,000 files
JOBS_PER_FILE_OPEN = 1.12  # jobs seen per file submitted before the cut (measured: recoveries, extra jobs)


def scale_specs(jobs: int = 1_000_000, files_per_job: float = 3.0, *, now: float = TALK_NOW,
                duplicate_fraction: float = 0.01, reorder_window_s: float = 120.0) -> list[StageSpec]:
    """Stage specs for about ``jobs`` job ids and ``files_per_job * jobs`` input files.

    One stage per ``JOBS_PER_STAGE`` jobs (at least two), ten stages a campaign.
    """
    n_stages = max(2, round(jobs / JOBS_PER_STAGE))
    per_stage = jobs / n_stages
    n_open = sum(1 for i in range(n_stages) if KINDS[i % len(KINDS)] != "finished")
    n_finished = n_stages - n_open
    finished_files = per_stage / JOBS_PER_FILE_FINISHED
    # The open stages hold the rest of the input files (at least what their submitted jobs need).
    open_files = max(per_stage / JOBS_PER_FILE_OPEN * 1.05,
                     (files_per_job * jobs - n_finished * finished_files) / max(n_open, 1))
    delivery = {"duplicate_fraction": duplicate_fraction, "reorder_window_s": reorder_window_s}
    specs: list[StageSpec] = []
    for i in range(n_stages):
        kind = KINDS[i % len(KINDS)]
        campaign = f"bench_c{i // STAGES_PER_CAMPAIGN:03d}"
        stage = f"s{i % STAGES_PER_CAMPAIGN:02d}_{kind}"
        common = dict(campaign=campaign, stage=stage, batch_size=1000, batch_interval_s=3 * HOUR,
                      wall_median_s=(2 + i % 4) * HOUR, cores=1 + (i % 7 == 0),
                      file_template=f"{campaign}_{stage}_r{{run:08d}}_s{{subrun:02d}}.root",
                      **WEATHER, **delivery)
        if kind == "finished":
            n_files = max(1, round(finished_files))
            # spread over the year; each finished stage is observed after it is done
            start = now - 365 * DAY + (i * 7919 % 330) * DAY
            specs.append(StageSpec(n_input_files=n_files, n_jobs=round(n_files * JOBS_PER_FILE_FINISHED),
                                   n_unlocated=max(0, round(n_files * 0.008)), start_ts=start, end="finished",
                                   **common))  # type: ignore[arg-type]
        else:
            n_files = max(1, round(open_files))
            batches = max(1.0, per_stage / JOBS_PER_FILE_OPEN / 1000)  # batches of 1,000 files wanted
            stall = 8 * HOUR if kind == "stalled" else 0.0
            observed = 600.0 + (batches - 1) * 3 * HOUR + 2 * HOUR  # cut after the last batch wanted is submitted
            specs.append(StageSpec(n_input_files=n_files, start_ts=now - observed - stall, end=kind,
                                   end_ts=now, stall_s=8 * HOUR, **common))  # type: ignore[arg-type]
    return specs
