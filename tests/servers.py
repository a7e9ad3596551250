"""Pytest fixtures that run the real local servers of ``stagewatch.devservers``.

Import them from a conftest::

    from tests.servers import kafka_server, clickhouse_server  # noqa: F401

Each fixture is session-scoped, starts ONLY its own server in a fresh temporary
dev dir on free ports found at run time (so tests never collide with a
developer's ``stagewatch dev up`` on the default ports, nor with each other),
yields the :class:`stagewatch.devservers.DevState`, and at the end stops the
server by its recorded pid and asserts that its ports are free again.

Useful attributes of the yielded state:
  * ``kafka_server.kafka_bootstrap``        -> "127.0.0.1:<port>"
  * ``clickhouse_server.store_url``         -> writer URL (clickhouse://stagewatch:...)
  * ``clickhouse_server.readonly_store_url``-> read-only URL (stagewatch_ro, readonly=1)
  * ``stop_clickhouse(clickhouse_server)`` / ``start_clickhouse(clickhouse_server)`` for
    outage tests (same dir, same ports, data kept).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest

from stagewatch import devservers
from stagewatch.devservers.ports import free_ports  # noqa: F401  (the tests take it from here)


def _server_ports(state: devservers.DevState, only: str) -> list[int]:
    rec = state.kafka if only == "kafka" else state.clickhouse
    if only == "kafka":
        return [rec["port"], rec["controller_port"]]
    return [rec["tcp_port"], rec["http_port"]]


@contextlib.contextmanager
def running_server(dir: Path, only: str, attempts: int = 3) -> Iterator[devservers.DevState]:
    """Start one server ("kafka" or "clickhouse") in ``dir`` on free ports; stop it on exit.

    A port grabbed by someone else between choosing it and binding it is retried
    with new ports (up to ``attempts`` times).
    """
    for attempt in range(1, attempts + 1):
        a, b = free_ports(2)
        kwargs = ({"kafka_port": a, "kafka_controller_port": b} if only == "kafka"
                  else {"ch_port": a, "ch_http_port": b})
        try:
            state = devservers.up(dir, only=only, **kwargs)
            break
        except devservers.PortTakenError:
            if attempt == attempts:
                raise
    ports = _server_ports(state, only)
    try:
        yield state
    finally:
        # A test may have restarted the server (stop_clickhouse/start_clickhouse):
        # collect the pid from the yielded object and from state.json.
        pids = {(getattr(s, only) or {}).get("pid") for s in (state, devservers.DevState.load(dir))} - {None}
        devservers.down(dir, only=only)
        final = devservers.DevState.load(dir)
        final_rec = getattr(final, only) or {}
        assert not final_rec.get("pid"), f"{only} pid still recorded after down: {final_rec}"
        alive = [p for p in pids if devservers.pid_alive(p)]
        assert not alive, f"{only} pid(s) {alive} still alive after down"
        busy = [p for p in _server_ports(final, only) + ports if not devservers.port_free(p)]
        assert not busy, f"{only} ports {busy} still taken after down"


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory) -> Iterator[devservers.DevState]:
    """A real single-node Kafka 4.x broker (KRaft) on 127.0.0.1:<free port>."""
    with running_server(tmp_path_factory.mktemp("kafka-server"), "kafka") as state:
        yield state


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory) -> Iterator[devservers.DevState]:
    """A real ClickHouse 18.16 server on 127.0.0.1:<free port>, database ``stagewatch``."""
    with running_server(tmp_path_factory.mktemp("clickhouse-server"), "clickhouse") as state:
        yield state


__all__ = ["kafka_server", "clickhouse_server", "free_ports", "running_server"]
