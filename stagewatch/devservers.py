"""Local development servers: a real Kafka broker and a real ClickHouse server.

``stagewatch dev up`` starts, on 127.0.0.1 only:

* Apache Kafka (single KRaft node, broker+controller), run from jars that Maven
  assembles from Maven Central with ``deploy/local/kafka/pom.xml`` into a cache
  folder (``~/.cache/stagewatch/kafka-<version>/lib``);
* Debian's ``clickhouse-server`` 18.16, with a config and users file generated
  from ``deploy/local/clickhouse/*.xml.in`` into the dev dir.

Everything a run owns lives in one directory (default ``./.stagewatch-dev``,
``--dir`` / ``STAGEWATCH_DEV_DIR``)::

    state.json           pids, ports, start times
    secrets.env          generated ClickHouse passwords (mode 0600)
    kafka/               server.properties, data/, logs/
    clickhouse/          config.xml, users.xml, data/, tmp/, logs/, ...

Processes are only ever stopped by the pid recorded in ``state.json``, and
only after ``/proc/<pid>/cmdline`` confirms that the pid still runs the server
this directory started.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import secrets as _secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote
from xml.sax.saxutils import escape as _xml_escape

logger = logging.getLogger("stagewatch.devservers")

# --------------------------------------------------------------------------- constants

HOST = "127.0.0.1"

KAFKA_VERSION = os.environ.get("STAGEWATCH_KAFKA_VERSION", "4.1.1")
DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_CH_PORT = 19000
DEFAULT_CH_HTTP_PORT = 18123

DEFAULT_DIR = ".stagewatch-dev"
DIR_ENV = "STAGEWATCH_DEV_DIR"
CACHE_ENV = "STAGEWATCH_CACHE_DIR"

CH_DATABASE = "stagewatch"
CH_WRITER_USER = "stagewatch"
CH_RO_USER = "stagewatch_ro"
CH_PASSWORD_ENV = "STAGEWATCH_CH_PASSWORD"
CH_RO_PASSWORD_ENV = "STAGEWATCH_CH_RO_PASSWORD"
CH_ADMIN_PASSWORD_ENV = "STAGEWATCH_CH_ADMIN_PASSWORD"

KAFKA_START_TIMEOUT = 90.0
CH_START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

SERVERS = ("kafka", "clickhouse")

_REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = Path(os.environ.get("STAGEWATCH_DEPLOY_DIR", _REPO_ROOT / "deploy" / "local"))

# Jars whose absence means the Maven assembly is unusable.
_REQUIRED_JAR_PREFIXES = (
    "kafka_2.13-",
    "kafka-server-",
    "kafka-storage-",
    "kafka-raft-",
    "kafka-metadata-",
    "kafka-clients-",
    "scala-library-",
    "slf4j-api-",
    "log4j-core-",
    "log4j-slf4j-impl-",
)

# Popen objects of servers started by this Python process, kept so that they
# are reaped (no zombies that look alive) and so Popen never warns on __del__.
_CHILDREN: dict[int, subprocess.Popen] = {}


class DevServerError(RuntimeError):
    """A dev server could not be started, stopped or inspected.

    The message is meant for the user: it says what happened and what to do.
    """


class PortTakenError(DevServerError):
    """A port a server needs is already in use (``.port`` says which)."""

    def __init__(self, message: str, port: int):
        super().__init__(message)
        self.port = port


# --------------------------------------------------------------------------- state


def resolve_dir(dir: str | os.PathLike | None = None) -> Path:
    """The dev dir: the argument, else ``$STAGEWATCH_DEV_DIR``, else ``./.stagewatch-dev``."""
    raw = dir if dir is not None else os.environ.get(DIR_ENV) or DEFAULT_DIR
    return Path(raw).expanduser().resolve()


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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

    def env_lines(self, only: str | None = None) -> list[str]:
        """The ``NAME=value`` lines ``up`` prints for ``eval``."""
        lines = []
        if only in (None, "kafka") and self.kafka:
            lines.append(f"STAGEWATCH_KAFKA={self.kafka_bootstrap}")
        if only in (None, "clickhouse") and self.clickhouse:
            lines.append(f"STAGEWATCH_STORE={self.store_url}")
        return lines


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
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


# --------------------------------------------------------------------------- processes and ports


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` runs (a zombie counts as dead)."""
    if not pid:
        return False
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the ")" that closes the command name.
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_ours(pid: int | None, markers: list[str]) -> bool:
    """The pid is alive and its command line contains every marker."""
    if not pid_alive(pid):
        return False
    cmd = " ".join(_cmdline(pid))
    return bool(cmd) and all(m in cmd for m in markers)


def port_free(port: int, host: str = HOST) -> bool:
    """True if a server could listen on host:port now (SO_REUSEADDR, like servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_listening(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str | None:
    """Best effort: 'pid 123 (java ...)' for the process listening on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "0A":  # 0A = LISTEN
                continue
            if int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmd = " ".join(_cmdline(int(proc.name)))[:120]
                    return f"pid {proc.name} ({cmd})"
        except OSError:
            continue
    return "a process this user cannot see"


def _check_port_free(port: int, what: str, option: str) -> None:
    if port_free(port):
        return
    owner = port_owner(port)
    by = f" by {owner}" if owner else ""
    raise PortTakenError(
        f"Port {port} ({what}) is already taken{by}; pass {option} or stop that process.", port
    )


def _wait_ports_free(ports: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        busy = [p for p in ports if not port_free(p)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.2)


def _spawn(cmd: list[str], cwd: Path, out_file: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,  # survives the `up` command and Ctrl-C in its shell
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _stop_pid(name: str, pid: int, markers: list[str], timeout: float = STOP_TIMEOUT) -> str:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns what happened."""
    if not pid_alive(pid):
        return "already-dead"
    if not _is_ours(pid, markers):
        logger.warning("%s.stop.refused pid=%s reason=not-ours cmdline=%r", name, pid,
                       " ".join(_cmdline(pid))[:200])
        return "not-ours"
    t0 = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = t0 + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    how = "SIGTERM"
    if pid_alive(pid):
        logger.warning("%s.stop.kill pid=%s reason=still-alive-after=%ss", name, pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.1)
        how = "SIGKILL"
        if pid_alive(pid):
            raise DevServerError(f"{name} (pid {pid}) survived SIGKILL; check `ps -p {pid}`.")
    _CHILDREN.pop(pid, None)
    logger.info("%s.stopped pid=%s signal=%s seconds=%.1f", name, pid, how, time.monotonic() - t0)
    return how


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


# --------------------------------------------------------------------------- templates and secrets


def _render(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    for key, val in values.items():
        text = text.replace("{{%s}}" % key, val)
    if "{{" in text:
        start = text.index("{{")
        raise DevServerError(f"Template {template} has an unknown placeholder near {text[start:start + 40]!r}.")
    return text


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, val = line.split("=", 1)
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        out[key.strip()] = val
    return out


def ch_passwords(dir: str | os.PathLike | None = None, create: bool = False,
                 roles: tuple[str, ...] = ("writer", "readonly", "admin")) -> dict[str, str]:
    """ClickHouse passwords: env vars first, else ``<dir>/secrets.env``.

    With ``create=True`` a missing password is generated and stored in
    ``secrets.env`` (mode 0600). Passwords given by env var are not written.
    Only the ``roles`` asked for are required.
    """
    d = resolve_dir(dir)
    path = d / "secrets.env"
    stored = _read_env_file(path)
    result: dict[str, str] = {}
    changed = False
    for role, env in (("writer", CH_PASSWORD_ENV), ("readonly", CH_RO_PASSWORD_ENV),
                      ("admin", CH_ADMIN_PASSWORD_ENV)):
        if role not in roles:
            continue
        if os.environ.get(env):
            result[role] = os.environ[env]
        elif stored.get(env):
            result[role] = stored[env]
        elif create:
            result[role] = stored[env] = _secrets.token_urlsafe(18)
            changed = True
        else:
            raise DevServerError(
                f"No ClickHouse password for the {role} user: set {env} or run `stagewatch dev up` "
                f"(it writes {path})."
            )
    if changed:
        body = "".join(f"{k}={v}\n" for k, v in sorted(stored.items()))
        _write_private(path, "# Generated by `stagewatch dev up`; local dev only.\n" + body)
        logger.info("clickhouse.secrets.generated path=%s", path)
    return result


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- Kafka


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stagewatch").expanduser()


def kafka_lib_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}" / "lib"


def _lib_complete(lib: Path, version: str) -> bool:
    if not (lib / ".complete").exists():
        return False
    names = [p.name for p in lib.glob("*.jar")]
    if f"kafka_2.13-{version}.jar" not in names:
        return False
    return all(any(n.startswith(prefix) for n in names) for prefix in _REQUIRED_JAR_PREFIXES)


def ensure_kafka_lib(version: str = KAFKA_VERSION) -> Path:
    """Return the Kafka class-path dir, assembling it with Maven on first use."""
    lib = kafka_lib_dir(version)
    if _lib_complete(lib, version):
        logger.info("kafka.lib.cached path=%s jars=%d", lib, len(list(lib.glob("*.jar"))))
        return lib
    mvn = shutil.which("mvn")
    if not mvn:
        raise DevServerError("Maven (mvn) is not installed; run `sudo deploy/local/install-deps.sh`.")
    pom = DEPLOY_DIR / "kafka" / "pom.xml"
    if not pom.exists():
        raise DevServerError(f"{pom} is missing; run from a stagewatch checkout or set STAGEWATCH_DEPLOY_DIR.")
    tmp = lib.parent / f"lib.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-Dkafka.version={version}", f"-DoutputDirectory={tmp}"]
    logger.info("kafka.lib.assembling version=%s into=%s (first time only, needs Maven Central)", version, lib)
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DevServerError("Maven did not finish assembling the Kafka jars within 15 minutes; "
                             "check that Maven Central is reachable and retry.") from exc
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        out = (res.stdout + res.stderr).strip().splitlines()[-15:]
        raise DevServerError(
            f"Maven could not assemble Kafka {version} (exit {res.returncode}); check that "
            f"org.apache.kafka:kafka_2.13:{version} exists on Maven Central. Last output:\n" + "\n".join(out))
    (tmp / ".complete").write_text(f"kafka {version} assembled {_now_iso()}\n")
    if not _lib_complete(tmp, version):
        names = sorted(p.name for p in tmp.glob("*.jar"))
        shutil.rmtree(tmp, ignore_errors=True)
        raise DevServerError(f"The Maven assembly of Kafka {version} lacks required jars; got {names}.")
    if lib.exists():
        shutil.rmtree(lib, ignore_errors=True)
    try:
        os.replace(tmp, lib)
    except OSError:
        # Another process finished first; use its copy.
        shutil.rmtree(tmp, ignore_errors=True)
        if not _lib_complete(lib, version):
            raise
    logger.info("kafka.lib.assembled path=%s jars=%d seconds=%.1f", lib,
                len(list(lib.glob("*.jar"))), time.monotonic() - t0)
    return lib


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise DevServerError("Java is not installed (Kafka 4.x needs Java 17+); "
                             "run `sudo deploy/local/install-deps.sh`.")
    return java


def _kafka_cluster_id() -> str:
    # Kafka's Uuid.randomUuid(): 16 random bytes, URL-safe base64 without padding,
    # never starting with '-' (it would look like a CLI flag).
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _kafka_markers(state: DevState) -> list[str]:
    return ["kafka.Kafka", str(state.dir / "kafka" / "server.properties")]


def _kafka_ready(bootstrap: str, timeout: float) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": 2000,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
        "log_level": 0,  # connection-refused noise while the JVM boots
    })
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception:
        return False
    return bool(md.brokers)


def start_kafka(state: DevState, port: int | None = None, controller_port: int | None = None,
                timeout: float = KAFKA_START_TIMEOUT, version: str = KAFKA_VERSION) -> DevState:
    """Start the Kafka broker of ``state.dir`` and wait until it answers metadata requests.

    Ports: the arguments, else the ones recorded in ``state``, else 19092/19093.
    A no-op if the recorded broker is already running.
    """
    rec = state.kafka or {}
    if _is_ours(rec.get("pid"), _kafka_markers(state)):
        if port and port != rec.get("port"):
            raise DevServerError(
                f"Kafka from {state.dir} already runs on port {rec.get('port')} (pid {rec['pid']}); "
                f"run `stagewatch dev down --only kafka` first to move it to port {port}.")
        logger.info("kafka.already_running pid=%s port=%s", rec["pid"], rec["port"])
        return state
    if rec.get("pid"):
        logger.info("kafka.stale_pid pid=%s (not running any more)", rec["pid"])

    port = int(port or rec.get("port") or DEFAULT_KAFKA_PORT)
    controller_port = int(controller_port or rec.get("controller_port")
                          or (DEFAULT_KAFKA_CONTROLLER_PORT if port == DEFAULT_KAFKA_PORT else port + 1))
    if port == controller_port:
        raise DevServerError(f"Kafka listener and controller ports must differ (both {port}).")
    _check_port_free(port, "Kafka listener", "--kafka-port")
    _check_port_free(controller_port, "Kafka KRaft controller", "--kafka-controller-port")

    java = _java()
    lib = ensure_kafka_lib(version)
    kdir = state.dir / "kafka"
    data = kdir / "data"
    logs = kdir / "logs"
    for d in (data, logs):
        d.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.write_text(_render(DEPLOY_DIR / "kafka" / "server.properties.in", {
        "PORT": str(port), "CONTROLLER_PORT": str(controller_port), "LOG_DIRS": str(data),
    }))
    log4j = kdir / "log4j2.properties"
    shutil.copyfile(DEPLOY_DIR / "kafka" / "log4j2.properties", log4j)
    heap = os.environ.get("STAGEWATCH_KAFKA_HEAP", "-Xms256m -Xmx512m").split()
    jvm = [java, *heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
           "-Djava.awt.headless=true", f"-Dkafka.logs.dir={logs}",
           f"-Dlog4j2.configurationFile={log4j}", "-cp", str(lib / "*")]

    t0 = time.monotonic()
    cluster_id = rec.get("cluster_id")
    if not (data / "meta.properties").exists():
        cluster_id = _kafka_cluster_id()
        fmt = subprocess.run(
            [java, "-Xmx256m", "-cp", str(lib / "*"), f"-Dlog4j2.configurationFile={log4j}",
             f"-Dkafka.logs.dir={logs}", "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(props)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if fmt.returncode != 0:
            raise DevServerError(f"Formatting Kafka storage in {data} failed:\n{fmt.stdout}{fmt.stderr}")
        logger.info("kafka.formatted cluster_id=%s dir=%s seconds=%.1f", cluster_id, data, time.monotonic() - t0)

    proc = _spawn([*jvm, "kafka.Kafka", str(props)], cwd=kdir, out_file=logs / "kafka.out")
    logger.info("kafka.starting pid=%s port=%s controller_port=%s version=%s", proc.pid, port, controller_port, version)
    state.kafka = {
        "pid": proc.pid, "port": port, "controller_port": controller_port, "version": version,
        "cluster_id": cluster_id, "started_at": _now_iso(), "lib_dir": str(lib),
        "config": str(props), "log": str(logs / "server.log"),
    }
    state.save()

    bootstrap = f"{state.host}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            state.kafka["pid"] = None
            state.save()
            raise DevServerError(
                f"Kafka exited with code {proc.returncode} while starting; see {logs}/server.log "
                f"and {logs}/kafka.out. Last lines:\n{_tail(logs / 'server.log')}\n{_tail(logs / 'kafka.out', 10)}")
        if _kafka_ready(bootstrap, timeout=2.0):
            break
        if time.monotonic() >= deadline:
            _stop_pid("kafka", proc.pid, _kafka_markers(state), timeout=10)
            state.kafka["pid"] = None
            state.save()
            raise DevServerError(
                f"Kafka did not answer on {bootstrap} within {timeout:.0f} s; it was stopped. "
                f"See {logs}/server.log. Last lines:\n{_tail(logs / 'server.log')}")
        time.sleep(0.5)
    state.kafka["startup_seconds"] = round(time.monotonic() - t0, 1)
    state.save()
    logger.info("kafka.started pid=%s port=%s seconds=%.1f", proc.pid, port, state.kafka["startup_seconds"])
    return state


def stop_kafka(state: DevState, timeout: float = STOP_TIMEOUT) -> str:
    return _stop_server(state, "kafka", timeout)


# --------------------------------------------------------------------------- ClickHouse


def clickhouse_binary() -> str:
    env = os.environ.get("STAGEWATCH_CLICKHOUSE_SERVER")
    for cand in (env, shutil.which("clickhouse-server"), "/usr/sbin/clickhouse-server"):
        if cand and Path(cand).exists() and os.access(cand, os.X_OK):
            return cand
    raise DevServerError("clickhouse-server is not installed; run `sudo deploy/local/install-deps.sh` "
                         "(Debian package clickhouse-server).")


def _ch_markers(state: DevState) -> list[str]:
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
    _write_private(users, _render(tmpl / "users.xml.in", {
        "ADMIN_SHA256": _sha256(pw["admin"]), "WRITER_SHA256": _sha256(pw["writer"]),
        "RO_SHA256": _sha256(pw["readonly"]), "WRITER_USER": CH_WRITER_USER,
        "RO_USER": CH_RO_USER, "DATABASE": CH_DATABASE,
    }))
    config = cdir / "config.xml"
    config.write_text(_render(tmpl / "config.xml.in", {
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
    if _is_ours(rec.get("pid"), _ch_markers(state)):
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
    _check_port_free(tcp_port, "ClickHouse native TCP", "--ch-port")
    _check_port_free(http_port, "ClickHouse HTTP", "--ch-http-port")

    binary = clickhouse_binary()
    config = _write_clickhouse_config(state, tcp_port, http_port)
    logs = state.dir / "clickhouse" / "logs"
    t0 = time.monotonic()
    proc = _spawn([binary, f"--config-file={config}"], cwd=state.dir / "clickhouse", out_file=logs / "stdout.log")
    logger.info("clickhouse.starting pid=%s tcp_port=%s http_port=%s", proc.pid, tcp_port, http_port)
    state.clickhouse = {
        "pid": proc.pid, "tcp_port": tcp_port, "http_port": http_port, "started_at": _now_iso(),
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
                f"Last lines:\n{_tail(logs / 'clickhouse-server.err.log')}\n{_tail(logs / 'stdout.log', 10)}")
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
            _stop_pid("clickhouse", proc.pid, _ch_markers(state), timeout=10)
            state.clickhouse["pid"] = None
            state.save()
            raise DevServerError(
                f"ClickHouse did not answer SELECT 1 on {state.host}:{tcp_port} within {timeout:.0f} s "
                f"(last error: {last_error}); it was stopped. See {logs}/clickhouse-server.err.log:\n"
                f"{_tail(logs / 'clickhouse-server.err.log')}")
        time.sleep(0.2)
    state.clickhouse["startup_seconds"] = round(time.monotonic() - t0, 1)
    state.save()
    logger.info("clickhouse.started pid=%s tcp_port=%s http_port=%s seconds=%.1f",
                proc.pid, tcp_port, http_port, state.clickhouse["startup_seconds"])
    return state


def stop_clickhouse(state: DevState, timeout: float = STOP_TIMEOUT) -> str:
    return _stop_server(state, "clickhouse", timeout)


# --------------------------------------------------------------------------- stop / up / down / status


def _server_ports(name: str, rec: dict[str, Any]) -> list[int]:
    if name == "kafka":
        return [p for p in (rec.get("port"), rec.get("controller_port")) if p]
    return [p for p in (rec.get("tcp_port"), rec.get("http_port")) if p]


def _markers(state: DevState, name: str) -> list[str]:
    return _kafka_markers(state) if name == "kafka" else _ch_markers(state)


def _stop_server(state: DevState, name: str, timeout: float = STOP_TIMEOUT) -> str:
    """Stop one server by its recorded pid, check its ports are free, clear the pid."""
    rec = getattr(state, name)
    if not rec or not rec.get("pid"):
        return "not-running"
    pid = rec["pid"]
    result = _stop_pid(name, pid, _markers(state, name), timeout)
    if result == "already-dead":
        logger.info("%s.stale_pid pid=%s cleared", name, pid)
    elif result == "not-ours":
        logger.warning("%s.stale_pid pid=%s now belongs to another program; left it alone and cleared it", name, pid)
    rec["pid"] = None
    rec["stopped_at"] = _now_iso()
    state.save()
    if result not in ("not-ours",):
        busy = _wait_ports_free(_server_ports(name, rec))
        if busy:
            owners = ", ".join(f"{p} ({port_owner(p) or 'unknown'})" for p in busy)
            raise DevServerError(f"{name} was stopped but port(s) {owners} are still taken; "
                                 f"stop that process before the next `stagewatch dev up`.")
    return result


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
    with _locked(d):
        state = DevState.load(d)
        t0 = time.monotonic()
        if "clickhouse" in names:  # the fast one first: a port clash shows up in 2 s, not 20
            start_clickhouse(state, tcp_port=ch_port, http_port=ch_http_port)
        if "kafka" in names:
            start_kafka(state, port=kafka_port, controller_port=kafka_controller_port)
        logger.info("dev.up dir=%s servers=%s seconds=%.1f", d, ",".join(names), time.monotonic() - t0)
        return state


def down(dir: str | os.PathLike | None = None, only: str | None = None) -> dict[str, str]:
    """Stop the servers recorded in ``<dir>/state.json`` by pid. Returns ``{server: outcome}``."""
    names = _check_only(only)
    d = resolve_dir(dir)
    if not (d / "state.json").exists():
        logger.info("dev.down dir=%s nothing-recorded", d)
        return {n: "not-running" for n in names}
    with _locked(d):
        state = DevState.load(d)
        out = {}
        errors = []
        for name in names:
            try:
                out[name] = _stop_server(state, name)
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
        pid = rec.get("pid")
        if not pid:
            st = "stopped"
        elif _is_ours(pid, _markers(state, name)):
            st = "running"
        elif pid_alive(pid):
            st = "foreign"
        else:
            st = "stale"
        if name == "kafka":
            address = f"{state.host}:{rec.get('port')}"
            extra = {"controller": f"{state.host}:{rec.get('controller_port')}", "version": rec.get("version")}
            main_port = rec.get("port")
        else:
            address = f"{state.host}:{rec.get('tcp_port')}"
            extra = {"http": f"http://{state.host}:{rec.get('http_port')}", "database": CH_DATABASE}
            main_port = rec.get("tcp_port")
        report[name] = {
            "state": st, "pid": pid, "address": address, "started_at": rec.get("started_at"),
            "startup_seconds": rec.get("startup_seconds"), "log": rec.get("log"),
            "listening": bool(main_port) and port_listening(main_port), **extra,
        }
    return report


__all__ = [
    "DevServerError", "PortTakenError", "DevState", "up", "down", "status", "start_kafka", "stop_kafka",
    "start_clickhouse", "stop_clickhouse", "ensure_kafka_lib", "kafka_lib_dir", "ch_passwords",
    "resolve_dir", "port_free", "pid_alive", "KAFKA_VERSION",
]
