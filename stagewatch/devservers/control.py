"""``up``, ``down`` and ``status`` of a dev dir: the same steps for each server, whichever it is.

Each server module (:mod:`.kafka`, :mod:`.clickhouse`) offers ``NAME``, ``markers``, ``ports``,
``describe`` and its start/stop; this module only orders and reports them.
"""

from __future__ import annotations

import logging
import os
import time
from types import ModuleType
from typing import Any

from stagewatch.devservers import clickhouse, kafka
from stagewatch.devservers.common import DevServerError, resolve_dir
from stagewatch.devservers.ports import port_listening
from stagewatch.devservers.processes import is_ours, pid_alive
from stagewatch.devservers.state import DevState, locked

logger = logging.getLogger("stagewatch.devservers")

SERVERS = (kafka.NAME, clickhouse.NAME)
_MODULES: dict[str, ModuleType] = {kafka.NAME: kafka, clickhouse.NAME: clickhouse}
_STOP = {kafka.NAME: kafka.stop_kafka, clickhouse.NAME: clickhouse.stop_clickhouse}


def _check_only(only: str | None) -> tuple[str, ...]:
    if only is None:
        return SERVERS
    if only not in SERVERS:
        raise DevServerError(f"--only must be one of {', '.join(SERVERS)} (got {only!r}).")
    return (only,)


def up(dir: str | os.PathLike | None = None, only: str | None = None, kafka_port: int | None = None,
       ch_port: int | None = None, ch_http_port: int | None = None,
       kafka_controller_port: int | None = None) -> DevState:
    """Start Kafka and/or ClickHouse (those not already running) and wait until they answer."""
    names = _check_only(only)
    d = resolve_dir(dir)
    with locked(d):
        state = DevState.load(d)
        t0 = time.monotonic()
        if clickhouse.NAME in names:  # the fast one first: a port clash shows up in 2 s, not 20
            clickhouse.start_clickhouse(state, tcp_port=ch_port, http_port=ch_http_port)
        if kafka.NAME in names:
            kafka.start_kafka(state, port=kafka_port, controller_port=kafka_controller_port)
        logger.info("dev.up dir=%s servers=%s seconds=%.1f", d, ",".join(names), time.monotonic() - t0)
        return state


def down(dir: str | os.PathLike | None = None, only: str | None = None) -> dict[str, str]:
    """Stop the servers recorded in ``<dir>/state.json`` by pid. Returns ``{server: outcome}``."""
    names = _check_only(only)
    d = resolve_dir(dir)
    if not (d / "state.json").exists():
        logger.info("dev.down dir=%s nothing-recorded", d)
        return {n: "not-running" for n in names}
    with locked(d):
        state = DevState.load(d)
        out = {}
        errors = []
        for name in names:
            try:
                out[name] = _STOP[name](state)
            except DevServerError as exc:
                out[name] = "error"
                errors.append(str(exc))
        if errors:
            raise DevServerError(" ".join(errors))
        logger.info("dev.down dir=%s %s", d, " ".join(f"{k}={v}" for k, v in out.items()))
        return out


def status(dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Report each server: ``running`` / ``stopped`` / ``stale`` (recorded pid dead) /
    ``foreign`` (recorded pid alive but running something else), with pid and address."""
    d = resolve_dir(dir)
    state = DevState.load(d)
    report: dict[str, Any] = {"dir": str(d), "state_file": str(state.state_file)}
    for name in SERVERS:
        rec = getattr(state, name)
        if not rec:
            report[name] = {"state": "absent", "pid": None, "address": None}
            continue
        mod = _MODULES[name]
        pid = rec.get("pid")
        if not pid:
            st = "stopped"
        elif is_ours(pid, mod.markers(state)):
            st = "running"
        elif pid_alive(pid):
            st = "foreign"
        else:
            st = "stale"
        described = mod.describe(state, rec)
        main_port = described.pop("main_port")
        address = described.pop("address")
        report[name] = {
            "state": st, "pid": pid, "address": address, "started_at": rec.get("started_at"),
            "startup_seconds": rec.get("startup_seconds"), "log": rec.get("log"),
            "listening": bool(main_port) and port_listening(main_port), **described,
        }
    return report
