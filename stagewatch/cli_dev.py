"""``stagewatch dev ...``: start/stop/inspect the local Kafka and ClickHouse servers.

The main CLI mounts this with ``app.add_typer(dev_app, name="dev")``; it also runs
on its own as ``python -m stagewatch.cli_dev up``.

``up`` prints only ``export NAME=value`` lines on stdout (values shell-quoted; progress goes to
stderr), so that the servers' addresses reach every later command and its children::

    eval "$(stagewatch dev up)"

``--format json`` prints the same variables as one JSON object, for scripts that are not a shell.
"""

from __future__ import annotations

import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stagewatch import devservers

dev_app = typer.Typer(
    help="Local Kafka (KRaft) and ClickHouse servers on 127.0.0.1 for development and tests.",
    no_args_is_help=True,
)

_err = Console(stderr=True)


class Server(str, Enum):
    kafka = "kafka"
    clickhouse = "clickhouse"


class EnvFormat(str, Enum):
    env = "env"
    json = "json"


_FORMAT_HELP = ("env: `export NAME=value` lines (shell-quoted) for `eval \"$(...)\"`; "
                "json: one object {NAME: value} for scripts.")


_DIR_HELP = "Dev dir holding state.json, data and logs (default ./.stagewatch-dev)."


def _setup_logging(quiet: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("stagewatch").setLevel(logging.WARNING if quiet else logging.INFO)


def _fail(exc: Exception) -> None:
    _err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
    raise typer.Exit(code=1)


@dev_app.command()
def up(
    dir: Optional[Path] = typer.Option(None, "--dir", envvar=devservers.DIR_ENV, help=_DIR_HELP),
    only: Optional[Server] = typer.Option(None, "--only", help="Start only this server."),
    kafka_port: Optional[int] = typer.Option(
        None, "--kafka-port", help=f"Kafka listener port (default {devservers.DEFAULT_KAFKA_PORT}, or the recorded one)."),
    kafka_controller_port: Optional[int] = typer.Option(
        None, "--kafka-controller-port",
        help=f"KRaft controller port (default {devservers.DEFAULT_KAFKA_CONTROLLER_PORT}, or --kafka-port + 1)."),
    ch_port: Optional[int] = typer.Option(
        None, "--ch-port", help=f"ClickHouse native TCP port (default {devservers.DEFAULT_CH_PORT})."),
    ch_http_port: Optional[int] = typer.Option(
        None, "--ch-http-port", help=f"ClickHouse HTTP port (default {devservers.DEFAULT_CH_HTTP_PORT})."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
    format: EnvFormat = typer.Option(EnvFormat.env, "--format", help=_FORMAT_HELP),
) -> None:
    """Start the servers (those not already running), wait until they answer, print their env.

    Use it as `eval "$(stagewatch dev up)"`: it prints `export STAGEWATCH_KAFKA=...` and
    `export STAGEWATCH_STORE=...`, so every later command (and its children) finds the servers."""
    _setup_logging(quiet)
    only_name = only.value if only else None
    try:
        state = devservers.up(dir, only=only_name, kafka_port=kafka_port, ch_port=ch_port,
                              ch_http_port=ch_http_port, kafka_controller_port=kafka_controller_port)
    except devservers.DevServerError as exc:
        _fail(exc)
    _echo_env(state.env(only_name), format)


def _echo_env(env: dict[str, str], format: EnvFormat) -> None:
    """Print the env in the asked format (nothing at all for an empty env in `env` format)."""
    text = devservers.format_env(env, format.value)
    if text:
        typer.echo(text)


@dev_app.command()
def down(
    dir: Optional[Path] = typer.Option(None, "--dir", envvar=devservers.DIR_ENV, help=_DIR_HELP),
    only: Optional[Server] = typer.Option(None, "--only", help="Stop only this server."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
) -> None:
    """Stop the servers by their recorded pids (SIGTERM, then SIGKILL after 20 s)."""
    _setup_logging(quiet)
    try:
        result = devservers.down(dir, only=only.value if only else None)
    except devservers.DevServerError as exc:
        _fail(exc)
    out = Console()
    for name, outcome in result.items():
        text = {"SIGTERM": "stopped", "SIGKILL": "killed (did not stop within 20 s)",
                "already-dead": "was not running (stale pid cleared)",
                "not-ours": "recorded pid now runs another program: left alone, cleared",
                "not-running": "not running"}.get(outcome, outcome)
        out.print(f"{name}: {text}", highlight=False)


@dev_app.command()
def status(
    dir: Optional[Path] = typer.Option(None, "--dir", envvar=devservers.DIR_ENV, help=_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show each server: running / stopped / stale (pid dead) / foreign (pid reused), pid, address."""
    try:
        report = devservers.status(dir)
    except devservers.DevServerError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    colour = {"running": "green", "stopped": "yellow", "absent": "dim", "stale": "red", "foreign": "red"}
    table = Table(title=f"stagewatch dev servers ({escape(report['dir'])})")
    for col in ("server", "state", "pid", "address", "also", "since"):
        table.add_column(col, overflow="fold")
    logs = []
    for name in devservers.SERVERS:
        r = report[name]
        st = r["state"]
        shown = st
        if st == "running" and not r.get("listening"):
            shown = "running, port not answering"
        elif st == "stale":
            shown = "stale (pid dead)"
        elif st == "foreign":
            shown = "foreign (pid reused)"
        if name == "clickhouse":
            also = f"http :{r['http'].rsplit(':', 1)[1]}" if r.get("http") else ""
        else:
            also = f"controller :{r['controller'].rsplit(':', 1)[1]}" if r.get("controller") else ""
        since = (r.get("started_at") or "").replace("+00:00", "Z") if st == "running" else ""
        table.add_row(name, f"[{colour.get(st, 'white')}]{shown}[/]", str(r["pid"] or ""),
                      escape(r["address"] or ""), also or "", since)
        if r.get("log"):
            logs.append(f"{name} log: {r['log']}")
    console = Console()
    console.print(table)
    for line in logs:
        console.print(line, style="dim", highlight=False, soft_wrap=True, markup=False)


@dev_app.command()
def env(
    dir: Optional[Path] = typer.Option(None, "--dir", envvar=devservers.DIR_ENV, help=_DIR_HELP),
    readonly: bool = typer.Option(False, "--readonly", help="Also print STAGEWATCH_STORE_RO (read-only user)."),
    format: EnvFormat = typer.Option(EnvFormat.env, "--format", help=_FORMAT_HELP),
) -> None:
    """Print the env of the recorded servers again, for a new shell: eval "$(stagewatch dev env)"."""
    try:
        env_vars = devservers.DevState.load(dir).env(readonly=readonly)
    except devservers.DevServerError as exc:
        _fail(exc)
    _echo_env(env_vars, format)


@dev_app.command()
def prepare(quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Assemble the Kafka jars into the cache and check clickhouse-server is installed."""
    _setup_logging(quiet)
    try:
        lib = devservers.ensure_kafka_lib()
        binary = devservers.clickhouse_binary()
    except devservers.DevServerError as exc:
        _fail(exc)
    typer.echo(f"kafka {devservers.KAFKA_VERSION} class path: {lib}")
    typer.echo(f"clickhouse-server: {binary}")


if __name__ == "__main__":
    dev_app(prog_name="stagewatch dev")
