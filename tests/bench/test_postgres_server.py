"""bench/postgres_server.py: Debian's PostgreSQL starts on a free port, answers, and stops leaving nothing."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest

from bench import postgres_server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_starts_answers_and_stops_leaving_nothing() -> None:
    with postgres_server.running_postgres() as pg:
        with psycopg.connect(pg.dsn) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1), (2)")
            assert conn.execute("SELECT sum(x) FROM t").fetchone() == (3,)
            backends = postgres_server._children(pg.pid)
            assert backends, "a connected server has backend processes"
            assert pg.rss_mib() > 0 and pg.disk_bytes() > 0
        pid, port, root = pg.pid, pg.port, pg.dir
        assert _alive(pid) and not _port_free(port) and root.exists()
    assert not _alive(pid), "the postmaster is still running"
    assert not [p for p in backends if _alive(p)], "backends are still running"
    assert _port_free(port), "the port is still taken"
    assert not root.exists(), "the temporary directory was left behind"


def test_stopped_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with postgres_server.running_postgres() as pg:
            pid, root = pg.pid, pg.dir
            raise RuntimeError("boom")
    assert not _alive(pid) and not root.exists()


def test_missing_postgres_is_a_sentence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(postgres_server, "PG_BIN", tmp_path / "nowhere")
    with pytest.raises(postgres_server.PostgresError, match="install Debian's postgresql-15"):
        postgres_server.start()
