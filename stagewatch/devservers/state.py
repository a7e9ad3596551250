"""A dev dir's ``state.json``: what runs where, the connection strings and env lines derived from it,
the lock that serialises ``up``/``down``, and stopping a recorded server.

Every outside program reaches the servers through the env this module prints: ``export NAME=value``
lines (values shell-quoted), so that ``eval "$(stagewatch dev up)"`` reaches child processes too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from stagewatch.devservers.accounts import CH_DATABASE, CH_RO_USER, CH_WRITER_USER, ch_passwords
from stagewatch.devservers.common import HOST, STOP_TIMEOUT, DevServerError, now_iso, resolve_dir
from stagewatch.devservers.ports import port_owner, wait_ports_free
from stagewatch.devservers.processes import stop_pid

logger = logging.getLogger("stagewatch.devservers")

KAFKA_ENV = "STAGEWATCH_KAFKA"
STORE_ENV = "STAGEWATCH_STORE"
STORE_RO_ENV = "STAGEWATCH_STORE_RO"
ENV_FORMATS = ("env", "json")


@dataclass
class DevState:
    """What ``state.json`` records, plus the connection strings derived from it.

    ``kafka`` and ``clickhouse`` are dicts (``None`` when that server was never
    started from this dir). A ``pid`` of ``None`` means stopped.
    """

    dir: Path
    host: str = HOST
    kafka: dict[str, Any] | None = None
    clickhouse: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- persistence
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @classmethod
    def load(cls, dir: str | os.PathLike | None = None) -> "DevState":
        d = resolve_dir(dir)
        path = d / "state.json"
        if not path.exists():
            return cls(dir=d)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DevServerError(
                f"Cannot read {path} ({exc}). Stop any server it describes by hand "
                f"(see the pids in it) and delete the file, or use another --dir."
            ) from exc
        known = {"host", "kafka", "clickhouse", "dir", "version"}
        return cls(
            dir=d,
            host=raw.get("host", HOST),
            kafka=raw.get("kafka"),
            clickhouse=raw.get("clickhouse"),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"version": 1, "dir": str(self.dir), "host": self.host,
                "kafka": self.kafka, "clickhouse": self.clickhouse, **self.extra}
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    # ---- connection strings
    @property
    def kafka_bootstrap(self) -> str:
        if not self.kafka:
            raise DevServerError(f"No Kafka broker recorded in {self.state_file}; run `stagewatch dev up`.")
        return f"{self.host}:{self.kafka['port']}"

    def _store_url(self, user: str, password: str) -> str:
        if not self.clickhouse:
            raise DevServerError(
                f"No ClickHouse server recorded in {self.state_file}; run `stagewatch dev up`."
            )
        return (f"clickhouse://{quote(user, safe='')}:{quote(password, safe='')}"
                f"@{self.host}:{self.clickhouse['tcp_port']}/{CH_DATABASE}")

    @property
    def store_url(self) -> str:
        """Writer URL: ``clickhouse://stagewatch:<password>@127.0.0.1:<port>/stagewatch``."""
        return self._store_url(CH_WRITER_USER, ch_passwords(self.dir, roles=("writer",))["writer"])

    @property
    def readonly_store_url(self) -> str:
        """Read-only URL (user ``stagewatch_ro``, profile readonly=1)."""
        return self._store_url(CH_RO_USER, ch_passwords(self.dir, roles=("readonly",))["readonly"])

    @property
    def clickhouse_http_url(self) -> str:
        if not self.clickhouse:
            raise DevServerError(f"No ClickHouse server recorded in {self.state_file}.")
        return f"http://{self.host}:{self.clickhouse['http_port']}"

    # ---- the environment other commands read
    def env(self, only: str | None = None, readonly: bool = False) -> dict[str, str]:
        """``{NAME: value}`` for the servers recorded here (``only`` one of them), in print order."""
        out: dict[str, str] = {}
        if only in (None, "kafka") and self.kafka:
            out[KAFKA_ENV] = self.kafka_bootstrap
        if only in (None, "clickhouse") and self.clickhouse:
            out[STORE_ENV] = self.store_url
            if readonly:
                out[STORE_RO_ENV] = self.readonly_store_url
        return out

    def env_lines(self, only: str | None = None, readonly: bool = False) -> list[str]:
        """The ``export NAME=value`` lines ``up`` prints for ``eval``."""
        return export_lines(self.env(only, readonly=readonly))


def export_lines(env: dict[str, str]) -> list[str]:
    """``export NAME=value`` lines a POSIX shell can ``eval``: exported (child processes see them) and
    shell-quoted (a password with a space, ``$`` or quote cannot break or inject into the shell)."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def format_env(env: dict[str, str], fmt: str = "env") -> str:
    """The env as ``eval``-able export lines (``env``) or one JSON object (``json``, for scripts)."""
    if fmt == "json":
        return json.dumps(env, indent=2)
    if fmt == "env":
        return "\n".join(export_lines(env))
    raise DevServerError(f"--format must be one of {', '.join(ENV_FORMATS)} (got {fmt!r}).")


@contextlib.contextmanager
def locked(d: Path) -> Iterator[None]:
    """Serialise up/down on one dev dir (two shells, or a test and a shell)."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("devdir.waiting_for_lock dir=%s", d)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def stop_recorded(state: DevState, name: str, markers: list[str], ports: list[int],
                  timeout: float = STOP_TIMEOUT) -> str:
    """Stop one server by its recorded pid, clear the pid, check its ports are free again."""
    rec = getattr(state, name)
    if not rec or not rec.get("pid"):
        return "not-running"
    pid = rec["pid"]
    result = stop_pid(name, pid, markers, timeout)
    if result == "already-dead":
        logger.info("%s.stale_pid pid=%s cleared", name, pid)
    elif result == "not-ours":
        logger.warning("%s.stale_pid pid=%s now belongs to another program; left it alone and cleared it", name, pid)
    rec["pid"] = None
    rec["stopped_at"] = now_iso()
    state.save()
    if result != "not-ours":
        busy = wait_ports_free(ports)
        if busy:
            owners = ", ".join(f"{p} ({port_owner(p) or 'unknown'})" for p in busy)
            raise DevServerError(f"{name} was stopped but port(s) {owners} are still taken; "
                                 f"stop that process before the next `stagewatch dev up`.")
    return result
