"""`stagewatch sites`: per execution site, which sites evict most and waste the most core-hours.

One row per (campaign, stage, site), most badput first, from schemas.queries.SITES_SQL (the dashboards run
the same SQL); `--at TIME` reads the stages as they stood at TIME (stagewatch.timetravel). The
definitions are processors.numbers.SITE_NUMBERS: per-site numbers sum to the stage's.
"""

# no `from __future__ import annotations`: typer reads the option types inside register() at definition time

import json
import sys
from typing import Any, Optional

import typer

from processors.numbers import RESTART_CAUSES

#: Short names of the restart causes in the table's "by cause" column.
CAUSE_SHORT = {"evicted": "evicted", "shadow_exception": "shadow", "reconnect_failed": "reconnect",
               "held": "held", "unknown": "unknown"}


def causes_text(by_cause: dict[str, int]) -> str:
    """'evicted 3, unknown 1' (causes with a count, in the glossary's order); '-' when none."""
    parts = [f"{CAUSE_SHORT[c]} {by_cause[c]:,}" for c in RESTART_CAUSES if by_cause.get(c)]
    return ", ".join(parts) or "-"


def sites_table(rows: list[dict[str, Any]], *, title: str, one_stage: bool, width: int = 10_000) -> Any:
    """The sites, fitted to `width` (stagewatch.views.tables): badput and restarts before the rest."""
    from stagewatch.console import fmt_number
    from stagewatch.views.tables import Field, fitted_table

    names = [] if one_stage else [Field("Campaign", lambda r: r["campaign"]), Field("Stage", lambda r: r["stage"])]
    fields = [*names, Field("Site", lambda r: r["site"]),
              Field("Attempts", lambda r: fmt_number(r["attempts"]), "right"),
              Field("Restarts", lambda r: fmt_number(r["restarts"]), "right"),
              Field("Restarts by cause", lambda r: causes_text(r["restarts_by_cause"]), free=True),
              Field("Badput core-h", lambda r: fmt_number(r["badput_core_hours"], 2), "right"),
              Field("CPU eff %", lambda r: fmt_number(r["cpu_efficiency_pct"]), "right"),
              Field("Held", lambda r: fmt_number(r["jobs_held"]), "right")]
    priority = [f.header for f in names] + ["Site", "Badput core-h", "Restarts", "Restarts by cause", "Attempts",
                                            "CPU eff %", "Held"]
    return fitted_table(rows, fields, title, width, priority,
                        note="Definitions: `stagewatch glossary` (Sites). Sorted by badput.")


def register(app: typer.Typer) -> None:
    from stagewatch.cli import AT_HELP, Fmt, StoreOpt

    @app.command("sites")
    def sites(
        campaign: Optional[str] = typer.Option(None, "--campaign", help="Only this campaign."),
        stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage."),
        at: Optional[str] = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
        format: Fmt = typer.Option(Fmt.table, "--format", help="table, or json: {\"sites\": [...]}, one object per "
                                                                "campaign, stage and site."),
        store: Optional[str] = StoreOpt,
    ) -> None:
        """Per execution site: attempts, restarts by cause, badput core-hours, CPU efficiency, held jobs; most
        badput first. An attempt's site is its `started` event's (`unknown` when absent); a restart and its
        badput belong to the site of the attempt it interrupted; a site's numbers sum to the stage's."""
        from stagewatch.cli import console, err, moment, open_read, require_known, view_at
        from stagewatch.console import esc, fmt_ts
        from stagewatch.reading import read_sites

        when, _ = moment(at)
        with open_read(store) as st:
            with view_at(st, when, campaign, stage) as view:
                rows = read_sites(view, campaign, stage)
            if not rows:
                require_known(st, campaign, stage)  # an unknown name is exit 2 with the known ones
        if format == Fmt.json:
            sys.stdout.write(json.dumps({"sites": rows}, indent=2) + "\n")
            return
        if not rows:
            err.print("No attempts and no held jobs in the selected stages" + (f" at {esc(fmt_ts(when))} UTC" if when
                                                                               is not None else "") + ".")
            return
        title = "Sites" + (f" — {campaign} / {stage}" if campaign is not None and stage is not None else "")
        if when is not None:
            title += f" — as it stood at {fmt_ts(when)} UTC"
        one = campaign is not None and stage is not None
        console.print(sites_table(rows, title=title, one_stage=one, width=console.width))
