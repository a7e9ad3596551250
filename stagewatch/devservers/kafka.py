"""The dev Kafka broker: a single KRaft node (broker+controller) on 127.0.0.1.

It runs from jars that Maven assembles from Maven Central with ``deploy/local/kafka/pom.xml`` into a
cache folder (``~/.cache/stagewatch/kafka-<version>/lib``), with a config generated from
``deploy/local/kafka/server.properties.in`` into ``<dev dir>/kafka``.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from stagewatch.devservers.common import DEPLOY_DIR, STOP_TIMEOUT, DevServerError, now_iso, render
from stagewatch.devservers.ports import check_port_free
from stagewatch.devservers.processes import is_ours, spawn, stop_pid, tail_text
from stagewatch.devservers.state import DevState, stop_recorded

logger = logging.getLogger("stagewatch.devservers")

NAME = "kafka"
KAFKA_VERSION = os.environ.get("STAGEWATCH_KAFKA_VERSION", "4.1.1")
DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
CACHE_ENV = "STAGEWATCH_CACHE_DIR"
KAFKA_START_TIMEOUT = 90.0

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


def cache_root() -> Path:
    """Where assembled jars are kept between dev dirs (``$STAGEWATCH_CACHE_DIR``, else ~/.cache/stagewatch)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stagewatch").expanduser()


def kafka_lib_dir(version: str = KAFKA_VERSION) -> Path:
    """The class-path folder of one Kafka version in the cache."""
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
    (tmp / ".complete").write_text(f"kafka {version} assembled {now_iso()}\n")
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


def markers(state: DevState) -> list[str]:
    """What the command line of this dir's broker contains (a reused pid does not)."""
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
    if is_ours(rec.get("pid"), markers(state)):
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
    check_port_free(port, "Kafka listener", "--kafka-port")
    check_port_free(controller_port, "Kafka KRaft controller", "--kafka-controller-port")

    java = _java()
    lib = ensure_kafka_lib(version)
    kdir = state.dir / "kafka"
    data = kdir / "data"
    logs = kdir / "logs"
    for d in (data, logs):
        d.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.write_text(render(DEPLOY_DIR / "kafka" / "server.properties.in", {
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

    proc = spawn([*jvm, "kafka.Kafka", str(props)], cwd=kdir, out_file=logs / "kafka.out")
    logger.info("kafka.starting pid=%s port=%s controller_port=%s version=%s", proc.pid, port, controller_port, version)
    state.kafka = {
        "pid": proc.pid, "port": port, "controller_port": controller_port, "version": version,
        "cluster_id": cluster_id, "started_at": now_iso(), "lib_dir": str(lib),
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
                f"and {logs}/kafka.out. Last lines:\n{tail_text(logs / 'server.log')}\n"
                f"{tail_text(logs / 'kafka.out', 10)}")
        if _kafka_ready(bootstrap, timeout=2.0):
            break
        if time.monotonic() >= deadline:
            stop_pid("kafka", proc.pid, markers(state), timeout=10)
            state.kafka["pid"] = None
            state.save()
            raise DevServerError(
                f"Kafka did not answer on {bootstrap} within {timeout:.0f} s; it was stopped. "
                f"See {logs}/server.log. Last lines:\n{tail_text(logs / 'server.log')}")
        time.sleep(0.5)
    state.kafka["startup_seconds"] = round(time.monotonic() - t0, 1)
    state.save()
    logger.info("kafka.started pid=%s port=%s seconds=%.1f", proc.pid, port, state.kafka["startup_seconds"])
    return state


def stop_kafka(state: DevState, timeout: float = STOP_TIMEOUT) -> str:
    """Stop the recorded broker by pid (SIGTERM, SIGKILL after ``timeout`` s); its ports must be free after."""
    return stop_recorded(state, NAME, markers(state), ports(state.kafka or {}), timeout)


def ports(rec: dict[str, Any]) -> list[int]:
    """The ports a broker record holds (listener, controller)."""
    return [p for p in (rec.get("port"), rec.get("controller_port")) if p]


def describe(state: DevState, rec: dict[str, Any]) -> dict[str, Any]:
    """The Kafka part of ``dev status``: address, main port and what else it listens on."""
    return {"address": f"{state.host}:{rec.get('port')}", "main_port": rec.get("port"),
            "controller": f"{state.host}:{rec.get('controller_port')}", "version": rec.get("version")}
