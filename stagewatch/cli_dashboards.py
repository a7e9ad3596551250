"""`stagewatch dashboards build|publish` and `stagewatch report` (registered by stagewatch/cli.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from dashboards.alerts import AlertOptions
from dashboards.build import BuildOptions
from dashboards.chquery import DATASOURCE_UID
from processors.numbers import STALL_THRESHOLD_S
from stagewatch.console import esc

err = Console(stderr=True, soft_wrap=True)  # soft wrap: paths and URLs are never broken across lines

dashboards_app = typer.Typer(no_args_is_help=True, help=(
    "Grafana dashboards, data source and alert rules as code (grafana-foundation-sdk). "
    "`build` writes files for Grafana's provisioning; `publish` pushes them through Grafana's HTTP API."))

_defaults = AlertOptions()


def _alert_options(stall_threshold_hours: float, eviction_window_minutes: int, eviction_fraction: float,
                   eviction_min_restarts: int, cpu_window_hours: float, cpu_threshold_pct: float,
                   cpu_min_jobs: int, dead_letter_window_minutes: int, source_silence_minutes: int,
                   source_lookback_hours: float, interval_seconds: int, datasource_uid: str,
                   folder_uid: str, folder_title: str) -> AlertOptions:
    return AlertOptions(
        datasource_uid=datasource_uid, folder_uid=folder_uid, folder_title=folder_title,
        interval_s=interval_seconds, stall_threshold_s=stall_threshold_hours * 3600,
        eviction_window_s=int(eviction_window_minutes * 60), eviction_fraction=eviction_fraction,
        eviction_min_restarts=eviction_min_restarts, cpu_window_s=int(cpu_window_hours * 3600),
        cpu_threshold_pct=cpu_threshold_pct, cpu_min_jobs=cpu_min_jobs,
        dead_letter_window_s=int(dead_letter_window_minutes * 60), source_silence_s=int(source_silence_minutes * 60),
        source_lookback_s=int(source_lookback_hours * 3600))


# Options shared by build and publish (thresholds of the alert rules and where things go in Grafana).
StallOpt = typer.Option(STALL_THRESHOLD_S / 3600, "--stall-threshold-hours",
                        help="A stage with work left and no progress for longer is stalled (dashboards and alert).")
EvWinOpt = typer.Option(_defaults.eviction_window_s // 60, "--eviction-window-minutes",
                        help="Eviction storm: window in which restarts are counted.")
EvFracOpt = typer.Option(_defaults.eviction_fraction, "--eviction-fraction",
                         help="Eviction storm: fires when restarts in the window exceed this fraction of the "
                              "stage's running jobs.")
EvMinOpt = typer.Option(_defaults.eviction_min_restarts, "--eviction-min-restarts",
                        help="Eviction storm: and at least this many restarts.")
CpuWinOpt = typer.Option(_defaults.cpu_window_s / 3600, "--cpu-window-hours",
                         help="Low CPU efficiency: jobs completed in this many hours.")
CpuThrOpt = typer.Option(_defaults.cpu_threshold_pct, "--cpu-efficiency-threshold",
                         help="Low CPU efficiency: fires below this many percent.")
CpuMinOpt = typer.Option(_defaults.cpu_min_jobs, "--cpu-min-jobs",
                         help="Low CPU efficiency: only with at least this many completed jobs in the window.")
DlOpt = typer.Option(_defaults.dead_letter_window_s // 60, "--dead-letter-window-minutes",
                     help="Dead letters: fires when any arrived in this many minutes.")
SilOpt = typer.Option(_defaults.source_silence_s // 60, "--source-silence-minutes",
                      help="Source silent: fires when a source sent nothing for this many minutes.")
LookOpt = typer.Option(_defaults.source_lookback_s / 3600, "--source-lookback-hours",
                       help="Source silent: only sources seen in this many hours are watched.")
IntOpt = typer.Option(_defaults.interval_s, "--rule-interval-seconds", help="Alert rule group evaluation interval.")
DsOpt = typer.Option(DATASOURCE_UID, "--datasource-uid", help="uid of the ClickHouse data source in Grafana.")
FolderUidOpt = typer.Option(_defaults.folder_uid, "--folder-uid", help="Grafana folder uid.")
FolderTitleOpt = typer.Option(_defaults.folder_title, "--folder-title", help="Grafana folder title.")


@dashboards_app.command("build")
def build_cmd(
    out: Path = typer.Option(..., "--out", help="Directory to write dashboards/ and provisioning/ into."),
    ch_host: str = typer.Option("127.0.0.1", "--ch-host", help="ClickHouse host as Grafana sees it."),
    ch_port: int = typer.Option(9000, "--ch-port", help="ClickHouse port (native 9000, HTTP 8123)."),
    ch_protocol: str = typer.Option("native", "--ch-protocol", help="native or http."),
    ch_user: str = typer.Option("stagewatch_ro", "--ch-user", help="The READ-ONLY ClickHouse user."),
    ch_database: str = typer.Option("stagewatch", "--ch-database"),
    grafana_dashboards_path: Optional[str] = typer.Option(
        None, "--grafana-dashboards-path",
        help="Where Grafana will see OUT/dashboards (e.g. inside a container). Default: its absolute path here."),
    stall_threshold_hours: float = StallOpt, eviction_window_minutes: int = EvWinOpt,
    eviction_fraction: float = EvFracOpt, eviction_min_restarts: int = EvMinOpt,
    cpu_window_hours: float = CpuWinOpt, cpu_threshold_pct: float = CpuThrOpt, cpu_min_jobs: int = CpuMinOpt,
    dead_letter_window_minutes: int = DlOpt, source_silence_minutes: int = SilOpt,
    source_lookback_hours: float = LookOpt, interval_seconds: int = IntOpt, datasource_uid: str = DsOpt,
    folder_uid: str = FolderUidOpt, folder_title: str = FolderTitleOpt,
) -> None:
    """Write the dashboard JSON and Grafana provisioning files (data source, dashboard provider, alert rules).

    The data source uses the read-only user; its password is `${STAGEWATCH_CH_RO_PASSWORD}`, filled in by
    Grafana from its own environment (it is never written to disk).
    """
    from dashboards.provisioning import ClickHouseConnection, write

    if ch_protocol not in ("native", "http"):
        raise typer.BadParameter("--ch-protocol must be native or http")
    ao = _alert_options(stall_threshold_hours, eviction_window_minutes, eviction_fraction, eviction_min_restarts,
                        cpu_window_hours, cpu_threshold_pct, cpu_min_jobs, dead_letter_window_minutes,
                        source_silence_minutes, source_lookback_hours, interval_seconds, datasource_uid,
                        folder_uid, folder_title)
    paths = write(out, build_opts=BuildOptions(datasource_uid=datasource_uid,
                                               stall_threshold_s=stall_threshold_hours * 3600),
                  alert_opts=ao, conn=ClickHouseConnection(host=ch_host, port=ch_port, protocol=ch_protocol,
                                                           username=ch_user, database=ch_database),
                  grafana_dashboards_path=grafana_dashboards_path)
    for p in paths:
        sys.stdout.write(f"{p}\n")
    err.print(f"wrote {len(paths)} files into {esc(out)}. Point Grafana's provisioning directory at "
              f"{esc(out)}/provisioning and set STAGEWATCH_CH_RO_PASSWORD in Grafana's environment; or import "
              f"{esc(out)}/import/*.json through Grafana's UI (Dashboards > New > Import), choosing the ClickHouse "
              "data source.", highlight=False)


@dashboards_app.command("publish")
def publish_cmd(
    url: str = typer.Option(..., "--url", help="Grafana base URL, e.g. http://grafana:3000."),
    stall_threshold_hours: float = StallOpt, eviction_window_minutes: int = EvWinOpt,
    eviction_fraction: float = EvFracOpt, eviction_min_restarts: int = EvMinOpt,
    cpu_window_hours: float = CpuWinOpt, cpu_threshold_pct: float = CpuThrOpt, cpu_min_jobs: int = CpuMinOpt,
    dead_letter_window_minutes: int = DlOpt, source_silence_minutes: int = SilOpt,
    source_lookback_hours: float = LookOpt, interval_seconds: int = IntOpt, datasource_uid: str = DsOpt,
    folder_uid: str = FolderUidOpt, folder_title: str = FolderTitleOpt,
) -> None:
    """Create or update the folder, dashboards and alert rules in Grafana, by uid (token from $GRAFANA_TOKEN).

    Idempotent: run it after every upgrade. The ClickHouse data source itself comes from the provisioning
    file of `build` (its password stays in Grafana's environment).
    """
    from dashboards.publish import PublishError, publish_url

    ao = _alert_options(stall_threshold_hours, eviction_window_minutes, eviction_fraction, eviction_min_restarts,
                        cpu_window_hours, cpu_threshold_pct, cpu_min_jobs, dead_letter_window_minutes,
                        source_silence_minutes, source_lookback_hours, interval_seconds, datasource_uid,
                        folder_uid, folder_title)
    try:
        rep = publish_url(url, build_opts=BuildOptions(datasource_uid=datasource_uid,
                                                       stall_threshold_s=stall_threshold_hours * 3600),
                          alert_opts=ao)
    except PublishError as exc:
        err.print(f"[red]error:[/] {esc(exc)}", highlight=False)
        raise typer.Exit(2)
    except Exception as exc:  # connection refused, TLS, timeouts: one sentence, not a traceback
        err.print(f"[red]error:[/] publishing to {esc(url)} failed: {esc(exc)}", highlight=False)
        raise typer.Exit(1)
    err.print(f"folder {esc(folder_uid)}: {esc(rep.folder)}; dashboards: {esc(', '.join(rep.dashboards))}; rules "
              f"created: {len(rep.rules_created)}, updated: {len(rep.rules_updated)}", highlight=False)


def report_cmd(
    out: Path = typer.Option(..., "--out", help="The HTML file to write, e.g. overview.html."),
    store: Optional[str] = typer.Option(None, "--store", help="chdb:PATH or clickhouse://user:pass@host:port/db. "
                                                              "Default: $STAGEWATCH_STORE or chdb:./stagewatch-data."),
    campaign: Optional[str] = typer.Option(None, "--campaign", help="Only this campaign."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME",
                                     help="The page as it stood at TIME (RFC 3339 or Unix seconds): numbers from "
                                          "exactly the events with ts <= TIME, and TIME is the stall clock."),
    now: Optional[str] = typer.Option(None, "--now", metavar="TIME",
                                      help="Only the clock of the stall rule; the numbers count every event."),
    as_of: Optional[str] = typer.Option(None, "--as-of", metavar="TIME", help="Deprecated: an alias of --at."),
    stall_threshold_hours: float = StallOpt,
    rate_window: float = typer.Option(6.0, "--rate-window", metavar="HOURS",
                                      help="Located/h and ETA count the input files located in this many hours "
                                           "before the report's moment."),
) -> None:
    """Write one self-contained HTML page: headline tiles (files needing recovery with the command that lists
    them, stalled stages, the biggest evicting site), the campaign overview table (definitions on hover) and
    per-stage charts (file buckets, progress, jobs by state over time, restarts by cause). It opens with no
    network access."""
    from schemas.events import MAX_NAME_CHARS
    from stagewatch.cli import UserError, moment, open_read, require_known, view_at
    from stagewatch.report import build_report

    if campaign is not None and len(campaign) > MAX_NAME_CHARS:
        raise UserError(f"--campaign is {len(campaign):,} characters long; no campaign name is longer than "
                        f"{MAX_NAME_CHARS:,} (the event contract's bound).")
    at_s, clock = moment(at, as_of, now)
    if not rate_window > 0:
        raise UserError(f"--rate-window {rate_window:g} is not a number of hours: give a positive number, e.g. 6.")

    if not out.parent.is_dir():
        err.print(f"[red]error:[/] cannot write {esc(out)}: the directory {esc(out.parent)} does not exist.",
                  highlight=False)
        raise typer.Exit(1)
    # A read command: a missing store (a typo in the path) is an error naming it, never a new empty store,
    # and a read-only ClickHouse user can run it. With --at the page is built from the store as it stood then.
    with open_read(store) as st:
        require_known(st, campaign, None)
        url = st.url
        with view_at(st, at_s, campaign) as view:
            page = build_report(view, campaign=campaign, as_of=clock, threshold_s=stall_threshold_hours * 3600,
                                source_url=url, at=at_s, rate_window_h=rate_window)
    try:
        _write_atomically(out, page)
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write {esc(out)}: {esc(exc.strerror or exc)}.", highlight=False)
        raise typer.Exit(1)
    err.print(f"wrote {esc(out)} ({len(page):,} bytes)", highlight=False)


def _write_atomically(out: Path, text: str) -> None:
    """Write under a temporary name, then rename: an interrupted run never leaves half a page at `out`."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def register(app: typer.Typer) -> None:
    """Called by stagewatch/cli.py: mounts `dashboards` and `report`."""
    app.add_typer(dashboards_app, name="dashboards")
    app.command("report")(report_cmd)


__all__ = ["register", "dashboards_app", "report_cmd"]
