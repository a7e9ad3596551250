"""Per-site numbers of a stage, from its job summaries (the Python side of schemas.queries.SITES_SQL).

Why both: `sites` reads SQL from the store (one definition for the CLI and Grafana); this module states
the same glossary rules over the Engine's job summaries, so tests can check the SQL against it and
check that a stage's sites sum to its numbers (processors.numbers.SITE_NUMBERS).
"""

from __future__ import annotations

from typing import Any, Iterable

from processors.jobs import JobSummary
from processors.numbers import RESTART_CAUSES, core_hours, ratio_pct

UNKNOWN_SITE = "unknown"
SITE_COUNTERS = ("attempts", "restarts", *(f"restarts_{c}" for c in RESTART_CAUSES), "badput_core_ms",
                 "cpu_terminations", "cpu_ms", "core_wall_ms", "jobs_held")


def site_name(site: str | None) -> str:
    return site or UNKNOWN_SITE


def site_counters(summaries: Iterable[JobSummary]) -> dict[str, dict[str, int]]:
    """site -> integer counters (SITE_COUNTERS), over the jobs of one stage."""
    out: dict[str, dict[str, int]] = {}

    def at(site: str | None) -> dict[str, int]:
        name = site_name(site)
        c = out.get(name)
        if c is None:
            c = out[name] = dict.fromkeys(SITE_COUNTERS, 0)
        return c

    for s in summaries:
        for a in s.attempts:
            c = at(a.site)
            c["attempts"] += 1
            if a.restart_cause:
                c["restarts"] += 1
                c[f"restarts_{a.restart_cause}"] += 1
            c["badput_core_ms"] += a.badput_core_ms
            c["cpu_terminations"] += a.cpu_terminations
            c["cpu_ms"] += a.cpu_ms
            c["core_wall_ms"] += a.core_wall_ms
        if s.pre_start_cpu_terminations:
            c = at(None)
            c["cpu_terminations"] += s.pre_start_cpu_terminations
            c["cpu_ms"] += s.pre_start_cpu_ms
            c["core_wall_ms"] += s.pre_start_core_wall_ms
        if s.state == "held":
            at(s.attempts[-1].site if s.attempts else None)["jobs_held"] += 1
    return out


def site_row(campaign: str, stage: str, site: str, c: dict[str, int]) -> dict[str, Any]:
    """One site in `sites --format json`'s shape."""
    return {
        "campaign": campaign, "stage": stage, "site": site, "attempts": c["attempts"], "restarts": c["restarts"],
        "restarts_by_cause": {cause: c[f"restarts_{cause}"] for cause in RESTART_CAUSES},
        "badput_core_hours": core_hours(c["badput_core_ms"]),
        "cpu_efficiency_pct": ratio_pct(c["cpu_ms"], c["core_wall_ms"]) if c["cpu_terminations"] and c["core_wall_ms"]
        else None,
        "jobs_held": c["jobs_held"],
    }


def sort_key(row_and_counters: tuple[dict[str, Any], dict[str, int]]) -> tuple:
    """SITES_SQL's order: badput (ms) most first, then restarts most first, then campaign, stage, site."""
    row, c = row_and_counters
    return (-c["badput_core_ms"], -c["restarts"], row["campaign"], row["stage"], row["site"])
