"""A throw-away PostgreSQL server for the POMS comparison: Debian's PostgreSQL 15, on a free loopback port.

Why a real server and not a mock: the point of the comparison is what a POMS-style page costs when it
computes the overview by joins at page load, and that cost is the server's planner, buffer cache and
executor. The server lives in a fresh temporary directory (``initdb`` there, trust authentication on
127.0.0.1 only), is stopped by its own pid (fast shutdown, SIGINT; SIGKILL only if it does not go), and
its directory is deleted: nothing is left running or on disk.

PostgreSQL refuses to run as root; when the bench runs as root (as on this machine), the server runs as
the Debian ``postgres`` account, which owns the temporary directory.

Settings: ``fsync=off``/``synchronous_commit=off`` only make the bulk load faster (reads are
unaffected); ``shared_buffers`` and ``work_mem`` are raised from the defaults so the joins get the
memory a production POMS database would have had: the comparison should not be won by a starved server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from processors.faust.memory import proc_status_mib
from stagewatch.devservers.ports import free_ports, port_free

log = logging.getLogger("stagewatch.bench.postgres")

def _newest_pg_bin() -> Path:
    """Debian installs each major version under /usr/lib/postgresql/<major>/bin: take the newest."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = Path(os.environ["STAGEWATCH_PG_BIN"]) if os.environ.get("STAGEWATCH_PG_BIN") else _newest_pg_bin()
HOST = "127.0.0.1"
DB = "poms"
USER = "poms"


class PostgresError(RuntimeError):
    """The server could not be started; the message says what to install or look at."""


@dataclass
class PostgresServer:
    """A running server: its port, pid and directory (data, socket, log)."""

    dir: Path
    port: int
    proc: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def dsn(self) -> str:
        return f"host={HOST} port={self.port} user={USER} dbname={DB}"

    def rss_mib(self) -> float:
        """Resident memory of the postmaster and all its backends (PostgreSQL is one process per connection)."""
        return sum(proc_status_mib("VmRSS", p, 0.0) for p in [self.pid, *_children(self.pid)])

    def disk_bytes(self) -> int:
        """Size of the database's files (tables, indexes, WAL) under the data directory."""
        return _du(self.data_dir)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _as_postgres_user() -> tuple[dict, int | None, int | None]:
    """(popen kwargs, uid, gid) to run PostgreSQL's binaries: as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}, None, None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresError("PostgreSQL refuses to run as root and there is no 'postgres' account: "
                            "install Debian's postgresql-15 (apt-get install postgresql-15) or run as a normal user.") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}, pw.pw_uid, pw.pw_gid


def start(base: Path | None = None, *, shared_buffers: str = "1GB", work_mem: str = "256MB",
          timeout_s: float = 60.0) -> PostgresServer:
    """initdb in a new temporary directory and start ``postgres`` on a free port; wait until it answers."""
    if not (PG_BIN / "postgres").exists():
        raise PostgresError(f"No PostgreSQL server at {PG_BIN}: install Debian's postgresql-15 "
                            "(apt-get install postgresql-15) or set STAGEWATCH_PG_BIN to its bin directory.")
    run_as, uid, gid = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="stagewatch-pg-", dir=base))
    try:
        (root / "sock").mkdir()
        if uid is not None:
            for p in (root, root / "sock"):
                os.chown(p, uid, gid)
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", USER, "--auth=trust",
                        "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, cwd=root, **run_as)
        for attempt in range(3):
            (port,) = free_ports(1, HOST)
            log_file = open(root / "postgres.log", "ab")
            proc = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(root / "data"), "-p", str(port), "-k", str(root / "sock"),
                 "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", f"shared_buffers={shared_buffers}", "-c", f"work_mem={work_mem}",
                 "-c", "max_wal_size=4GB", "-c", "logging_collector=off"],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
                start_new_session=True, **run_as)
            log_file.close()
            server = PostgresServer(root, port, proc)
            if _wait_ready(server, timeout_s):
                _create_db(server)
                log.info("postgres.started port=%d pid=%d dir=%s", port, proc.pid, root)
                return server
            _stop_proc(proc)
        tail = (root / "postgres.log").read_text(errors="replace")[-2000:]
        raise PostgresError(f"PostgreSQL did not start in {timeout_s:.0f} s; its log ends with:\n{tail}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _wait_ready(server: PostgresServer, timeout_s: float) -> bool:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            with psycopg.connect(f"host={HOST} port={server.port} user={USER} dbname=postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            time.sleep(0.2)
    return False


def _create_db(server: PostgresServer) -> None:
    import psycopg

    with psycopg.connect(f"host={HOST} port={server.port} user={USER} dbname=postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DB}")


def _stop_proc(proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)  # "fast" shutdown: backends are told to end, then the postmaster exits
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("postgres.kill pid=%d reason=no exit %.0f s after SIGINT", proc.pid, timeout_s)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def stop(server: PostgresServer) -> None:
    """Stop the server by its pid, wait for its port to be free, delete its directory."""
    children = _children(server.pid)
    _stop_proc(server.proc)
    for pid in children:  # backends exit with the postmaster; a straggler is killed by its own pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not port_free(server.port, HOST) and time.monotonic() < deadline:
        time.sleep(0.1)
    shutil.rmtree(server.dir, ignore_errors=True)
    log.info("postgres.stopped port=%d pid=%d", server.port, server.pid)


@contextlib.contextmanager
def running_postgres(base: Path | None = None, **settings: str) -> Iterator[PostgresServer]:
    """A server for the duration of the block; stopped and deleted however the block ends."""
    server = start(base, **settings)
    try:
        yield server
    finally:
        stop(server)
