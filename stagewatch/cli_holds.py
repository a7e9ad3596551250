"""`stagewatch holds`: why jobs are held, per stage, most common hold first.

Held jobs grouped by their current hold (HTCondor's reason text, HoldReasonCode and HoldReasonSubCode
when the events carry them), with counts and the oldest "held since" (schemas.queries.HOLDS_SQL, also
the dashboards' held-reasons panel). `--at TIME` reads the stages as they stood at TIME.
"""

# no `from __future__ import annotations`: typer reads the option types inside register() at definition time

import json
import sys
import time
from typing import Any, Optional

import typer


def holds_table(rows: list[dict[str, Any]], *, title: str, clock: float) -> Any:
    from rich.table import Table
    from rich.text import Text

    from stagewatch.console import cell, fmt_duration, fmt_number, fmt_ts

    t = Table(title=Text(title), caption=Text("Held jobs by their latest hold; codes are HTCondor's HoldReasonCode/"
                                              "SubCode ('-' when the events carry none)."))
    t.add_column("Campaign", no_wrap=True)
    t.add_column("Stage", no_wrap=True)
    t.add_column("Held", justify="right", no_wrap=True)
    t.add_column("Code", justify="right", no_wrap=True)
    t.add_column("Sub", justify="right", no_wrap=True)
    t.add_column("Reason", overflow="fold", max_width=60)
    t.add_column("Held since (UTC)", no_wrap=True)
    for r in rows:
        since = r["held_since_ts"]
        ago = "" if since is None else f" ({fmt_duration(clock - since)} ago)"
        t.add_row(cell(r["campaign"]), cell(r["stage"]), Text(fmt_number(r["jobs_held"])), cell(r["hold_code"]),
                  cell(r["hold_subcode"]), cell(r["hold_reason"]), Text(fmt_ts(since) + ago))
    return t


def register(app: typer.Typer) -> None:
    from stagewatch.cli import AT_HELP, Fmt, StoreOpt

    @app.command("holds")
    def holds(
        campaign: Optional[str] = typer.Option(None, "--campaign", help="Only this campaign."),
        stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage."),
        limit: int = typer.Option(10, "--limit", min=1, help="At most this many hold reasons per stage."),
        at: Optional[str] = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
        format: Fmt = typer.Option(Fmt.table, "--format", help="table, or json: {\"holds\": [...]}, one object per "
                                                                "stage and hold (reason, code, subcode)."),
        store: Optional[str] = StoreOpt,
    ) -> None:
        """The top hold reasons of each stage's held jobs, with how many jobs each holds and since when."""
        from stagewatch.cli import console, err, moment, open_read, require_known, view_at
        from stagewatch.console import esc, fmt_ts
        from stagewatch.reading import read_holds

        when, clock = moment(at)
        with open_read(store) as st:
            with view_at(st, when, campaign, stage) as view:
                rows = read_holds(view, campaign, stage, limit=limit)
            if not rows:
                require_known(st, campaign, stage)
        if format == Fmt.json:
            sys.stdout.write(json.dumps({"holds": rows}, indent=2) + "\n")
            return
        if not rows:
            err.print("No held jobs in the selected stages" + (f" at {esc(fmt_ts(when))} UTC" if when is not None
                                                               else "") + ".")
            return
        title = "Hold reasons" + (f" — as it stood at {fmt_ts(when)} UTC" if when is not None else "")
        console.print(holds_table(rows, title=title, clock=time.time() if clock is None else clock))
