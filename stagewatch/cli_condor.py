"""``stagewatch convert condor-log``: HTCondor event logs (per-submission or schedd-wide) -> job-event/1 lines.

The routing options (``--campaign/--stage`` or ``--campaign-attr/--stage-attr``, ``--attr NAME=ATTRIBUTE``,
the defaults and the hold bounds) are shared with ``stagewatch tail condor-log`` (stagewatch.cli_stream)
through :func:`routing_from_options`.  ``stagewatch.cli`` calls ``register(app)``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from stagewatch.console import esc

err = Console(stderr=True, soft_wrap=True)  # one line per message: logs and tests grep them
log = logging.getLogger("stagewatch.cli")

convert_app = typer.Typer(no_args_is_help=True, help="Convert other formats to stagewatch events (JSON lines).")

#: Room the job id needs besides the schedd name: "#" + cluster "." proc (two 32-bit numbers at most).
_JOB_ID_ROOM = 1 + 10 + 1 + 10

CampaignOpt = typer.Option(None, "--campaign", help="The campaign of every job (a per-submission log).")
StageOpt = typer.Option(None, "--stage", help="The stage of every job (a per-submission log).")
SubmissionOpt = typer.Option(None, "--submission", help="The submission of every job.")
CampaignAttrOpt = typer.Option(None, "--campaign-attr", help="Job ad attribute naming each job's campaign, read "
                                                             "from the JobAdInformation (028) events of a "
                                                             "schedd-wide log, e.g. POMS4_CAMPAIGN_NAME.")
StageAttrOpt = typer.Option(None, "--stage-attr", help="Job ad attribute naming each job's stage, e.g. "
                                                       "POMS4_CAMPAIGN_STAGE_NAME.")
AttrOpt = typer.Option(None, "--attr", help="NAME=ATTRIBUTE: fill the event field NAME (campaign, stage, "
                                            "submission, site) from that job ad attribute of the 028 events, "
                                            "e.g. site=MATCH_GLIDEIN_Site or submission=POMS4_SUBMISSION_ID. "
                                            "Repeatable.")
DefaultCampaignOpt = typer.Option(None, "--default-campaign", help="Campaign of jobs whose ads do not carry "
                                                                   "--campaign-attr (default: skip them, counted).")
DefaultStageOpt = typer.Option(None, "--default-stage", help="Stage of jobs whose ads do not carry --stage-attr "
                                                             "(default: skip them, counted).")
MaxHeldOpt = typer.Option(100_000, "--max-held", help="Most events held while waiting for their job's first 028 "
                                                      "event; past it the longest-held become dead letters.")
MaxHoldOpt = typer.Option(3600.0, "--max-hold-s", help="Seconds of log time an event may wait for its job's "
                                                       "first 028 event before it becomes a dead letter.")
SchedOpt = typer.Option(None, "--schedd", help="Schedd name, prefixed to job ids (schedd#123.0).")


def _user_error(message: str) -> Exception:
    from stagewatch.cli import UserError

    return UserError(message)


def routing_from_options(
    campaign: Optional[str],
    stage: Optional[str],
    submission: Optional[str],
    campaign_attr: Optional[str],
    stage_attr: Optional[str],
    attr: Optional[list[str]],
    default_campaign: Optional[str],
    default_stage: Optional[str],
    max_held: int,
    max_hold_s: float,
    schedd: Optional[str],
) -> Any:
    """The :class:`ingest.condor.Routing` the options describe, checked before anything is read (a usage
    error names the option)."""
    from ingest.condor import Routing, RoutingError
    from schemas.events import MAX_NAME_CHARS

    attrs: dict[str, str] = {}
    for item in attr or ():
        name, eq, field = item.partition("=")
        name, field = name.strip(), field.strip()
        if not eq or not name or not field:
            raise _user_error(f"--attr {item!r}: give NAME=ATTRIBUTE, e.g. --attr site=MATCH_GLIDEIN_Site.")
        if name in attrs and attrs[name] != field:
            raise _user_error(f"--attr {name}= is given twice ({attrs[name]} and {field}); give it once.")
        attrs[name] = field
    for name, value in (("campaign", campaign_attr), ("stage", stage_attr)):
        if value is not None:
            if name in attrs and attrs[name] != value:
                raise _user_error(f"--{name}-attr {value} and --attr {name}={attrs[name]} disagree; give one.")
            attrs[name] = value
    if schedd is not None and not 0 < len(schedd) <= MAX_NAME_CHARS - _JOB_ID_ROOM:
        raise _user_error(f"--schedd must be 1 to {MAX_NAME_CHARS - _JOB_ID_ROOM:,} characters (job ids "
                          f"schedd#cluster.proc must fit the contract's {MAX_NAME_CHARS:,}), not {len(schedd):,}.")
    routing = Routing(campaign=campaign, stage=stage, submission=submission, attrs=attrs,
                      default_campaign=default_campaign, default_stage=default_stage, max_held=max_held,
                      max_hold_s=max_hold_s)
    try:
        routing.check()
    except RoutingError as exc:
        raise _user_error(str(exc)) from None
    return routing


def check_distinct(paths: list[Path]) -> None:
    """The files of one log may each be given once: the same file twice would give its events twice under
    new ids (ordinals continue), so it is a usage error naming it."""
    seen: dict[tuple[int, int], Path] = {}
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            raise _user_error(f"{p} is the same file as {seen[ident]}; give each file of the log once, oldest first.")
        seen[ident] = p


def dead_letter_line(dl: Any) -> bytes:
    """A dead letter of the converter as one JSON line (not an event: `replay` keeps it as a dead letter)."""
    from schemas.events import raw_to_text

    return json.dumps({"dead_letter": "condor-log", "source": dl.source, "position": dl.position,
                       "reason": dl.reason, "raw": raw_to_text(dl.raw)}, ensure_ascii=False).encode() + b"\n"


@convert_app.command("condor-log")
def convert_condor_log(
    paths: list[Path] = typer.Argument(..., help="HTCondor event log file(s) of one log, in order (rotations "
                                                 "first: EventLog.old EventLog): a job's `log = ...` file or a "
                                                 "schedd's EVENT_LOG."),
    campaign: Optional[str] = CampaignOpt,
    stage: Optional[str] = StageOpt,
    submission: Optional[str] = SubmissionOpt,
    campaign_attr: Optional[str] = CampaignAttrOpt,
    stage_attr: Optional[str] = StageAttrOpt,
    attr: Optional[list[str]] = AttrOpt,
    default_campaign: Optional[str] = DefaultCampaignOpt,
    default_stage: Optional[str] = DefaultStageOpt,
    max_held: int = MaxHeldOpt,
    max_hold_s: float = MaxHoldOpt,
    schedd: Optional[str] = SchedOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of stdout."),
    dead_letters: Optional[Path] = typer.Option(None, "--dead-letters", help="Where events that cannot be routed "
                                                                             "(or that the contract refuses) "
                                                                             "go, as JSON lines with the reason. "
                                                                             "Default: OUT.dead-letters.jsonl "
                                                                             "with --out, else stderr."),
) -> None:
    """Write job-event/1 JSON lines from an HTCondor job event log: a per-submission log (--campaign, --stage)
    or a schedd-wide event log whose JobAdInformation events name each job's campaign and stage
    (--campaign-attr, --stage-attr)."""
    from ingest.condor import ReadStats
    from ingest.condor_log import NotAJobEventLog, convert_logs
    from stagewatch.cli import write_jsonl

    routing = routing_from_options(campaign, stage, submission, campaign_attr, stage_attr, attr, default_campaign,
                                   default_stage, max_held, max_hold_s, schedd)
    for p in paths:
        if not p.is_file():
            raise _user_error(f"No HTCondor log at {p}; check the path.")
    check_distinct(paths)
    dl_path = dead_letters or (out.with_name(out.name + ".dead-letters.jsonl") if out is not None else None)
    if dl_path is not None and any(dl_path.resolve() == p.resolve() for p in [*paths, *([out] if out else [])]):
        raise _user_error(f"--dead-letters {dl_path} is one of the input or output files; pass another path.")
    stats = ReadStats()
    dead: list[bytes] = []
    dl_out = sys.stderr.buffer if dl_path is None else None

    def on_dead_letter(dl: Any) -> None:
        line = dead_letter_line(dl)
        if dl_out is not None:
            dl_out.write(line)
        else:
            dead.append(line)

    try:
        n = write_jsonl(convert_logs([str(p) for p in paths], routing=routing, schedd=schedd, stats=stats,
                                     on_dead_letter=on_dead_letter), out)
    except NotAJobEventLog as exc:
        err.print(f"[red]error:[/] {esc(exc)}", highlight=False)
        raise typer.Exit(1)
    if dead and dl_path is not None:
        tmp = dl_path.with_name(f".{dl_path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(b"".join(dead))
            os.replace(tmp, dl_path)
        except OSError as exc:
            raise _user_error(f"Cannot write {dl_path}: {exc.strerror or exc}; pass --dead-letters with a path you "
                              "can write.") from None
        finally:
            if tmp.exists():
                tmp.unlink()
    what = paths[0] if len(paths) == 1 else f"{len(paths)} files ({', '.join(map(str, paths))})"
    where = ""
    if stats.dead_letters:
        where = f"; dead letters in {dl_path}" if dl_path is not None else "; dead letters written to stderr"
    err.print(f"converted {n:,} job events from {esc(what)}: {esc(stats.summary())}{esc(where)}", highlight=False)
    log.info("convert.condor_log events=%d dead_letters=%d", n, stats.dead_letters)


def register(app: typer.Typer) -> None:
    """Add ``convert`` (with ``condor-log``) to the main CLI."""
    app.add_typer(convert_app, name="convert")
