"""The dev ClickHouse server: Debian's ``clickhouse-server`` 18.16 on 127.0.0.1.

Its config and users file are generated from ``deploy/local/clickhouse/*.xml.in`` into
``<dev dir>/clickhouse`` at every start (users.xml holds password hashes only, mode 0600).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as _xml_escape

from stagewatch.devservers.accounts import CH_DATABASE, CH_RO_USER, CH_WRITER_USER, ch_passwords, sha256
from stagewatch.devservers.common import DEPLOY_DIR, STOP_TIMEOUT, DevServerError, now_iso, render, write_private
from stagewatch.devservers.ports import check_port_free, port_listening
from stagewatch.devservers.processes import is_ours, spawn, stop_pid, tail_text
from stagewatch.devservers.state import DevState, stop_recorded

logger = logging.getLogger("stagewatch.devservers")

NAME = "clickhouse"
DEFAULT_CH_PORT = 19000
DEFAULT_CH_HTTP_PORT = 18123
CH_START_TIMEOUT = 60.0


def clickhouse_binary() -> str:
    """The clickhouse-server executable (``$STAGEWATCH_CLICKHOUSE_SERVER``, else PATH, else Debian's path)."""
    env = os.environ.get("STAGEWATCH_CLICKHOUSE_SERVER")
    for cand in (env, shutil.which("clickhouse-server"), "/usr/sbin/clickhouse-server"):
        if cand and Path(cand).exists() and os.access(cand, os.X_OK):
            return cand
    raise DevServerError("clickhouse-server is not installed; run `sudo deploy/local/install-deps.sh` "
                         "(Debian package clickhouse-server).")


def markers(state: DevState) -> list[str]:
    """What the command line of this dir's server contains (a reused pid does not)."""
    return ["clickhouse", str(state.dir / "clickhouse" / "config.xml")]


def _ch_client(state: DevState, user: str, password: str, database: str | None = None,
               connect_timeout: float = 3.0):
    from clickhouse_driver import Client

    kwargs = {"database": database} if database else {}
    return Client(state.host, port=state.clickhouse["tcp_port"], user=user, password=password,
                  connect_timeout=connect_timeout, send_receive_timeout=30, sync_request_timeout=5, **kwargs)


def _write_clickhouse_config(state: DevState, tcp_port: int, http_port: int) -> Path:
    cdir = state.dir / "clickhouse"
    paths = {name: cdir / name for name in ("data", "tmp", "user_files", "format_schemas", "logs")}
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)
    pw = ch_passwords(state.dir, create=True)
    tmpl = DEPLOY_DIR / "clickhouse"
    users = cdir / "users.xml"
    write_private(users, render(tmpl / "users.xml.in", {
        "ADMIN_SHA256": sha256(pw["admin"]), "WRITER_SHA256": sha256(pw["writer"]),
        "RO_SHA256": sha256(pw["readonly"]), "WRITER_USER": CH_WRITER_USER,
        "RO_USER": CH_RO_USER, "DATABASE": CH_DATABASE,
    }))
    config = cdir / "config.xml"
    config.write_text(render(tmpl / "config.xml.in", {
        "TCP_PORT": str(tcp_port), "HTTP_PORT": str(http_port),
        "DATA_DIR": _xml_escape(str(paths["data"])), "TMP_DIR": _xml_escape(str(paths["tmp"])),
        "USER_FILES_DIR": _xml_escape(str(paths["user_files"])),
        "FORMAT_SCHEMAS_DIR": _xml_escape(str(paths["format_schemas"])),
        "LOG_DIR": _xml_escape(str(paths["logs"])), "USERS_XML": _xml_escape(str(users)),
    }))
    return config


def start_clickhouse(state: DevState, tcp_port: int | None = None, http_port: int | None = None,
                     timeout: float = CH_START_TIMEOUT) -> DevState:
    """Start the ClickHouse server of ``state.dir`` and wait for ``SELECT 1``.

    Restarts reuse the recorded ports and data. Creates database ``stagewatch``
    (as the writer user). A no-op if the recorded server is already running.
    """
    rec = state.clickhouse or {}
    if is_ours(rec.get("pid"), markers(state)):
        if (tcp_port and tcp_port != rec.get("tcp_port")) or (http_port and http_port != rec.get("http_port")):
            raise DevServerError(
                f"ClickHouse from {state.dir} already runs on ports {rec.get('tcp_port')}/{rec.get('http_port')} "
                f"(pid {rec['pid']}); run `stagewatch dev down --only clickhouse` first to change them.")
        logger.info("clickhouse.already_running pid=%s tcp_port=%s", rec["pid"], rec["tcp_port"])
        return state
    if rec.get("pid"):
        logger.info("clickhouse.stale_pid pid=%s (not running any more)", rec["pid"])

    tcp_port = int(tcp_port or rec.get("tcp_port") or DEFAULT_CH_PORT)
    http_port = int(http_port or rec.get("http_port") or DEFAULT_CH_HTTP_PORT)
    if tcp_port == http_port:
        raise DevServerError(f"ClickHouse native and HTTP ports must differ (both {tcp_port}).")
    check_port_free(tcp_port, "ClickHouse native TCP", "--ch-port")
    check_port_free(http_port, "ClickHouse HTTP", "--ch-http-port")

    binary = clickhouse_binary()
    config = _write_clickhouse_config(state, tcp_port, http_port)
    logs = state.dir / "clickhouse" / "logs"
    t0 = time.monotonic()
    proc = spawn([binary, f"--config-file={config}"], cwd=state.dir / "clickhouse", out_file=logs / "stdout.log")
    logger.info("clickhouse.starting pid=%s tcp_port=%s http_port=%s", proc.pid, tcp_port, http_port)
    state.clickhouse = {
        "pid": proc.pid, "tcp_port": tcp_port, "http_port": http_port, "started_at": now_iso(),
        "binary": binary, "config": str(config), "log": str(logs / "clickhouse-server.log"),
        "database": CH_DATABASE, "writer_user": CH_WRITER_USER, "readonly_user": CH_RO_USER,
    }
    state.save()

    pw = ch_passwords(state.dir, roles=("writer",))
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if proc.poll() is not None:
            state.clickhouse["pid"] = None
            state.save()
            raise DevServerError(
                f"clickhouse-server exited with code {proc.returncode} while starting; see {logs}. "
                f"Last lines:\n{tail_text(logs / 'clickhouse-server.err.log')}\n"
                f"{tail_text(logs / 'stdout.log', 10)}")
        if port_listening(tcp_port):
            client = _ch_client(state, CH_WRITER_USER, pw["writer"], connect_timeout=1.0)
            try:
                if client.execute("SELECT 1") == [(1,)]:
                    client.execute(f"CREATE DATABASE IF NOT EXISTS {CH_DATABASE}")
                    break
            except Exception as exc:  # not ready yet, or wrong password in an old users.xml
                last_error = exc
            finally:
                client.disconnect()
        if time.monotonic() >= deadline:
            stop_pid("clickhouse", proc.pid, markers(state), timeout=10)
            state.clickhouse["pid"] = None
            state.save()
            raise DevServerError(
                f"ClickHouse did not answer SELECT 1 on {state.host}:{tcp_port} within {timeout:.0f} s "
                f"(last error: {last_error}); it was stopped. See {logs}/clickhouse-server.err.log:\n"
                f"{tail_text(logs / 'clickhouse-server.err.log')}")
        time.sleep(0.2)
    state.clickhouse["startup_seconds"] = round(time.monotonic() - t0, 1)
    state.save()
    logger.info("clickhouse.started pid=%s tcp_port=%s http_port=%s seconds=%.1f",
                proc.pid, tcp_port, http_port, state.clickhouse["startup_seconds"])
    return state


def stop_clickhouse(state: DevState, timeout: float = STOP_TIMEOUT) -> str:
    """Stop the recorded server by pid (SIGTERM, SIGKILL after ``timeout`` s); its ports must be free after."""
    return stop_recorded(state, NAME, markers(state), ports(state.clickhouse or {}), timeout)


def ports(rec: dict[str, Any]) -> list[int]:
    """The ports a server record holds (native TCP, HTTP)."""
    return [p for p in (rec.get("tcp_port"), rec.get("http_port")) if p]


def describe(state: DevState, rec: dict[str, Any]) -> dict[str, Any]:
    """The ClickHouse part of ``dev status``: address, main port and what else it listens on."""
    return {"address": f"{state.host}:{rec.get('tcp_port')}", "main_port": rec.get("tcp_port"),
            "http": f"http://{state.host}:{rec.get('http_port')}", "database": CH_DATABASE}
