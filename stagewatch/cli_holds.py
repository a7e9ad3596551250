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


def holds_table(rows: list[dict[str, Any]], *, title: str, clock: float, width: int = 10_000) -> Any:
    """The hold reasons, fitted to `width` (stagewatch.views.tables): the reason wraps, numbers stay whole."""
    from stagewatch.console import fmt_duration, fmt_number, fmt_ts
    from stagewatch.views.tables import Field, fitted_table

    def since(r: dict[str, Any]) -> str:
        ts = r["held_since_ts"]
        return fmt_ts(ts) + ("" if ts is None else f" ({fmt_duration(clock - ts)} ago)")

    fields = [Field("Campaign", lambda r: r["campaign"]), Field("Stage", lambda r: r["stage"]),
              Field("Held", lambda r: fmt_number(r["jobs_held"]), "right"),
              Field("Code", lambda r: r["hold_code"], "right"), Field("Sub", lambda r: r["hold_subcode"], "right"),
              Field("Reason", lambda r: r["hold_reason"], free=True), Field("Held since (UTC)", since)]
    return fitted_table(rows, fields, title, width,
                        ["Campaign", "Stage", "Held", "Reason", "Held since (UTC)", "Code", "Sub"],
                        note="Held jobs by their latest hold; codes are HTCondor's HoldReasonCode/SubCode ('-' "
                             "when the events carry none).")


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
        console.print(holds_table(rows, title=title, clock=time.time() if clock is None else clock,
                                  width=console.width))
