"""Write docs/glossary.md from the catalogue in processors.numbers (`python -m processors.glossary`).

The glossary is generated, never edited by hand, so the words next to a number are always the
words the code implements; a test fails when the file is stale.
"""

from __future__ import annotations

from pathlib import Path

from processors.files import FILE_TYPE_ORDER
from processors.jobs import JOB_TYPE_ORDER, STATE_AFTER
from processors.numbers import FORECAST_NUMBERS, NUMBERS, SITE_NUMBERS, STALL_THRESHOLD_S

EXAMPLES = {
    "input_files": "30,000 files declared as the input dataset of fd_mcgen_cry_fhc_all -> 30,000.",
    "files_located": "in.root has an output out.root (parents [in.root]) with an output_located event -> located, "
                     "even if the location arrived first.",
    "files_declared_not_located": "out.root declared with parents [in.root], no location yet -> in.root is here.",
    "files_consumed_no_output": "in.root consumed by a job that declared no output -> here.",
    "files_in_flight": "in.root delivered to a job that is still running -> here.",
    "files_failed": "in.root delivered, then failed (or skipped), and no output -> here.",
    "files_pending": "in.root declared as input, never delivered -> here.",
    "files_without_located_output": "30,000 input files, 29,690 located -> 310 (not the 14,510 'not located' jobs "
                                    "POMS showed).",
    "completion_pct": "29,690 of 30,000 located -> 99.0; 1 of 8 -> 12.5; 1 of 16 -> 6.3 (half up).",
    "outputs_declared": "two outputs declared for one input -> 2.",
    "outputs_located": "one of those two located -> 1.",
    "jobs": "44,248 job ids, some evicted and restarted three times -> 44,248 (not the number of attempts).",
    "jobs_idle": "submitted, started, evicted (no restart yet) -> idle.",
    "jobs_running": "started, disconnected -> running (the shadow is still waiting for the starter).",
    "jobs_held": "started, held -> held.",
    "jobs_suspended": "started, suspended -> suspended.",
    "jobs_completed": "started, terminated -> completed.",
    "jobs_removed": "submitted, removed -> removed.",
    "jobs_completed_ok": "terminated with exit_code 0 -> OK; exit_code 0 and signal 9 -> failed.",
    "jobs_completed_failed": "terminated with exit_code 65 -> failed; terminated without an exit_code -> failed.",
    "job_attempts": "started, evicted, started, terminated -> 2 attempts.",
    "restarts": "started, started, started -> 2 restarts (3 attempts - 1).",
    "restarts_by_cause": "started, evicted, started -> evicted: 1; started, started (OSG eviction with no event) "
                         "-> unknown: 1; started, held, released, started -> held: 1.",
    "cpu_efficiency_pct": "one job: cpu 150 + 10 s on 2 cores for 100 s, another: 90 s on 1 core for 100 s -> "
                          "100 * 250 / 300 = 83.3.",
    "badput_core_hours": "4 cores, evicted after 900 s (wall_s 900), then restarted -> 1.00 core-hours.",
    "last_event_ts": "the newest event of the stage, whatever its kind.",
    "last_progress_ts": "the newest terminated job or output_located file event.",
    "stalled": "idle jobs, last progress 3 h before as_of, threshold 2 h -> stalled; all jobs completed and no "
               "pending files -> never stalled.",
    "site": "started at FNAL, evicted, started with no site -> one attempt at FNAL, one at unknown.",
    "attempts": "started at FNAL, evicted, started at UCSD, terminated -> FNAL 1, UCSD 1.",
    "site_restarts": "started at FNAL, evicted, started at UCSD -> FNAL: 1 restart (evicted: 1), UCSD: 0.",
    "site_badput_core_hours": "4 cores at FNAL evicted after 900 s, restarted at UCSD -> FNAL 1.00, UCSD 0.00.",
    "site_cpu_efficiency_pct": "evicted at FNAL, restarted and terminated at UCSD with 90 s CPU in 100 s on 1 core "
                               "-> UCSD 90.0, FNAL null.",
    "site_jobs_held": "started at FNAL, held -> FNAL 1.",
    "located_rate_per_h": "12 input files located in the last 6 h -> 2.0.",
    "eta": "100 files left at 2.0 per hour -> as_of + 50 h.",
}

HEADER = """# Glossary: every number stagewatch reports

This file is generated from `processors/numbers.py` by `python -m processors.glossary`; the CLI
(`stagewatch status --help`, `stagewatch glossary`), the JSON keys, the ClickHouse columns and the
Grafana column descriptions use the same words. Numbers are per (campaign, stage).

## How events are combined

- Copies of one event (same `event_id`) count once.
- Each job's and each file's events are applied in `ts` order, whatever order they arrive in. Events
  of one job with the same `ts` are ordered by type, in lifecycle order:
  {job_order}; then by `event_id`. File events with the same `ts`: {file_order}; then by `event_id`.
- So the same events in any order, with any duplicates, give the same numbers.
- A job's state is the state after its latest event: {states}.
- Percentages and core-hours are rounded half up (2.25 -> 2.3), on exact integer sums of milliseconds.
- The default stall threshold is {threshold:g} hours (`--stall-threshold-hours`).
"""


def render() -> str:
    states = "; ".join(f"{t} -> {s}" for t, s in STATE_AFTER.items())
    out = [HEADER.format(job_order=", ".join(JOB_TYPE_ORDER), file_order=", ".join(FILE_TYPE_ORDER),
                         states=states, threshold=STALL_THRESHOLD_S / 3600)]
    for group, title in (("files", "Files (the real measure of a stage)"), ("jobs", "Jobs"),
                         ("time", "Time and stalls")):
        out.append(f"\n## {title}\n")
        for n in NUMBERS:
            if n.group != group:
                continue
            out.append(f"\n### `{n.name}` — {n.short}\n\n{n.definition}\n\n*Example:* {EXAMPLES[n.name]}\n")
    for numbers, title in ((FORECAST_NUMBERS, "Forecast (`status --format json`, the ETA column)"),
                           (SITE_NUMBERS, "Sites (`stagewatch sites`): per execution site, summing to the stage")):
        out.append(f"\n## {title}\n")
        for n in numbers:
            out.append(f"\n### `{n.name}` — {n.short}\n\n{n.definition}\n\n*Example:* {EXAMPLES[n.name]}\n")
    return "".join(out)


PATH = Path(__file__).resolve().parent.parent / "docs" / "glossary.md"


def main() -> None:
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text(render())
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
