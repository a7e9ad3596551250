"""The report's headline tiles: what needs doing, before any table.

1. Files without a located output: the total, and per stage (most first) the exact `stagewatch
   missing-files` command that lists them, shell-quoted (`shlex.join`) so a name with quotes, `$`,
   spaces or newlines is one argument when pasted into a POSIX shell. The command reads the same store
   and, for a report `--at T`, the same moment.
2. Stalled stages: how many, and for how long each has made no progress.
3. The biggest evicting site: the execution site with the most restarts caused by evictions (the
   sites numbers of `stagewatch sites`, summed over the selected stages), with its badput.

Each tile is coloured by the thresholds the Grafana stat panels use (dashboards.operator_panels).
"""

from __future__ import annotations

import html
import shlex
from typing import Any

from dashboards.operator_panels import color_for
from stagewatch.console import RFC3339, fmt_duration, fmt_ts

SHOWN = 5
"""Stages listed per tile; the rest are counted ("and 3 more")."""


def missing_files_command(campaign: str, stage: str, *, store_url: str | None = None,
                          at: float | None = None) -> str:
    """The `stagewatch missing-files` command for one stage, quoted for a POSIX shell.

    `--store` is given for an embedded (chdb:) store, whose URL is its path; a server URL is left out
    (it would need the password, which is never printed): set $STAGEWATCH_STORE as for the report.
    """
    args = ["stagewatch", "missing-files", "--campaign", campaign, "--stage", stage]
    if store_url and store_url.startswith("chdb:"):
        args += ["--store", store_url]
    if at is not None:
        args += ["--at", _at_text(float(at))]
    return shlex.join(args)


def _at_text(at: float) -> str:
    """`--at`'s value as people write it (RFC 3339, UTC) when that is exact, else the Unix seconds (fmt_ts
    gives a whole second beyond what a datetime holds as its number, exactly too)."""
    return fmt_ts(at, RFC3339) if at.is_integer() else repr(at)


def recovery_tile(stages: list[dict[str, Any]], *, store_url: str | None, at: float | None) -> dict[str, Any]:
    need = sorted((s for s in stages if s["files_without_located_output"] > 0),
                  key=lambda s: (-s["files_without_located_output"], s["campaign"], s["stage"]))
    total = sum(s["files_without_located_output"] for s in need)
    return {"total": total, "color": color_for("files_without_located_output", total), "more": max(0, len(need) - SHOWN),
            "stages": [{"campaign": s["campaign"], "stage": s["stage"], "files": s["files_without_located_output"],
                        "command": missing_files_command(s["campaign"], s["stage"], store_url=store_url, at=at)}
                       for s in need[:SHOWN]]}


def stalled_tile(stages: list[dict[str, Any]], as_of: float) -> dict[str, Any]:
    def quiet_s(s: dict[str, Any]) -> float:
        return as_of - s["last_progress_ts"] if s["last_progress_ts"] is not None else float("inf")

    stalled = sorted((s for s in stages if s["stalled"]), key=lambda s: (-quiet_s(s), s["campaign"], s["stage"]))
    return {"count": len(stalled), "color": color_for("stalled_stages", len(stalled)),
            "more": max(0, len(stalled) - SHOWN),
            "stages": [{"campaign": s["campaign"], "stage": s["stage"],
                        "quiet": ("no progress yet" if s["last_progress_ts"] is None
                                  else f"no progress for {fmt_duration(quiet_s(s))}")}
                       for s in stalled[:SHOWN]]}


def site_tile(sites: list[dict[str, Any]]) -> dict[str, Any]:
    """The site with the most evictions over the selected stages (ties: more badput, then the name)."""
    by: dict[str, dict[str, Any]] = {}
    for r in sites:
        s = by.setdefault(r["site"], {"site": r["site"], "evicted": 0, "restarts": 0, "badput_core_hours": 0.0,
                                      "stages": 0})
        evicted = int(r["restarts_by_cause"]["evicted"])
        s["evicted"] += evicted
        s["restarts"] += int(r["restarts"])
        s["badput_core_hours"] += float(r["badput_core_hours"])
        s["stages"] += evicted > 0  # the stages where it evicted jobs
    ranked = sorted((s for s in by.values() if s["evicted"] > 0),
                    key=lambda s: (-s["evicted"], -s["badput_core_hours"], s["site"]))
    top = ranked[0] if ranked else None
    if top is not None:
        top = {**top, "badput_core_hours": round(top["badput_core_hours"], 2)}
    return {"site": top, "sites_evicting": len(ranked), "color": "orange" if top else "green"}


def tiles(stages: list[dict[str, Any]], sites: list[dict[str, Any]], *, as_of: float, store_url: str | None,
          at: float | None) -> dict[str, Any]:
    return {"recovery": recovery_tile(stages, store_url=store_url, at=at), "stalled": stalled_tile(stages, as_of),
            "site": site_tile(sites)}


def _more(n: int) -> str:
    return f'<li class="more">and {n:,} more</li>' if n else ""


def render_tiles(t: dict[str, Any]) -> str:
    esc = html.escape
    rec, stl, site = t["recovery"], t["stalled"], t["site"]
    rec_items = "".join(
        f'<li><b>{esc(s["campaign"])} / {esc(s["stage"])}</b>: {s["files"]:,} files'
        f'<code class="cmd">{esc(s["command"])}</code></li>' for s in rec["stages"])
    stl_items = "".join(
        f'<li><b>{esc(s["campaign"])} / {esc(s["stage"])}</b>: {esc(s["quiet"])}</li>'
        for s in stl["stages"])
    top = site["site"]
    if top is None:
        site_body = '<div class="big">none</div><div class="what">no restart was caused by an eviction</div>'
    else:
        site_body = (f'<div class="big">{esc(top["site"])}</div>'
                     f'<div class="what">{top["evicted"]:,} evictions ({top["restarts"]:,} restarts in all) and '
                     f'{top["badput_core_hours"]:,.2f} badput core-hours; it evicted jobs of {top["stages"]:,} stage'
                     f'{"s" if top["stages"] != 1 else ""}; {site["sites_evicting"]:,} site'
                     f'{"s" if site["sites_evicting"] != 1 else ""} evicted jobs.</div>')
    return f"""<section class="tiles" id="tiles">
<div class="tile {rec["color"] or ""}" id="tile-recovery"><h3>Files needing recovery</h3>
<div class="big">{rec["total"]:,}</div><div class="what">input files without a located output; each command lists a
stage's files for a recovery submission</div><ul>{rec_items}{_more(rec["more"])}</ul></div>
<div class="tile {stl["color"] or ""}" id="tile-stalled"><h3>Stalled stages</h3>
<div class="big">{stl["count"]:,}</div><div class="what">work left and no progress for longer than the stall
threshold</div><ul>{stl_items}{_more(stl["more"])}</ul></div>
<div class="tile {site["color"]}" id="tile-site"><h3>Biggest evicting site</h3>{site_body}</div>
</section>"""


__all__ = ["missing_files_command", "tiles", "render_tiles", "SHOWN"]
