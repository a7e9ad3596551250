"""Helpers for the streaming tests: a namespaced pipeline (topic prefix, app id, campaign) per test,
workers run as `stagewatch worker` subprocesses (so they can be kill -9'ed), and polling for
"the numbers in ClickHouse equal the embedded engine's" with a deadline.

Isolation: every test gets its own topic prefix and Faust app id (so its own consumer group,
internal topics and changelogs) and its own campaign name, so its stages are its own rows in the
shared ClickHouse database (the project's writer user may only use database `stagewatch`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

from ingest.kafka_io import SafeProducer, Topics, create_topics
from ingest.simulator import StageSpec, simulate_many, tiny
from processors.engine import Engine
from processors.recovery_watchdog import RESTART_EXIT
from schemas.events import Event, encode_event, event_key
from stagewatch.reading import read_status
from stagewatch.store import open_store
from tests.servers import free_ports

# The fixed stall clock ("now") of every comparison. Events may come later (the simulated span varies with the
# campaign name), so the CLI is given it as --now: --at / --as-of would cut the events at it.
AS_OF = 1_497_960_000.0
CLI = [sys.executable, "-c", "from stagewatch.cli import main; main()"]
_counter = itertools.count()


def scaled_tiny(campaign: str, scale: int = 1) -> list[StageSpec]:
    """The simulator's small preset under our campaign name, optionally with `scale` times the files."""
    specs = []
    for s in tiny():
        kw: dict[str, Any] = {"campaign": campaign}
        if scale > 1:
            kw["n_input_files"] = s.n_input_files * scale
            kw["n_jobs"] = s.n_jobs * scale if s.n_jobs else None
            kw["n_unlocated"] = s.n_unlocated * scale if s.n_unlocated is not None else None
            kw["batch_size"] = s.batch_size * scale
        specs.append(dataclasses.replace(s, **kw))
    return specs


def expected_numbers(events: Iterable[Event]) -> list[dict[str, Any]]:
    e = Engine()
    e.apply_all(events)
    return e.numbers(as_of=AS_OF)


class Worker:
    """A `stagewatch worker` subprocess with its own workdir, log file and metrics port.

    Like the deployments' restart policy (deploy/k8s, deploy/docker), a worker that exits with code 75
    (RESTART_EXIT: its table recovery stalled) is started again; `restarts` counts that.
    """

    def __init__(self, pipe: "Pipeline", name: str, cwd: Path | None = None, workdir: Path | None = None) -> None:
        """With `cwd`, the worker runs there with the default --workdir, as a user would start it; with
        `workdir`, in that workdir (a restart on the same machine reopens its local table state)."""
        self.pipe = pipe
        self.name = name
        self.cwd = cwd
        self.workdir = workdir or (pipe.dir / name if cwd is None else cwd / ".stagewatch-worker")
        if cwd is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "worker.log" if cwd is None and workdir is None else pipe.dir / f"{name}.log"
        (self.metrics_port,) = free_ports(1)
        workdir = ["--workdir", str(self.workdir)] if cwd is None else []
        self.cmd = [*CLI, "worker", "--kafka", pipe.kafka, "--store", pipe.store_url, "--app-id", pipe.app_id,
                    "--topic-prefix", pipe.prefix, *workdir,
                    "--metrics-port", str(self.metrics_port), "--batch-within", "0.2", "--stage-flush", "0.3",
                    "--session-timeout", "6", "--batch-max", "2000", "--recovery-stall-timeout", "30",
                    "--table-store", pipe.table_store,
                    *os.environ.get("STAGEWATCH_TEST_WORKER_ARGS", "").split()]
        self._log = open(self.log_path, "ab")
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = False
        self.proc = self._spawn()
        threading.Thread(target=self._supervise, name=f"supervise-{name}", daemon=True).start()
        pipe.workers.append(self)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.cwd)

    def _supervise(self) -> None:
        while True:
            rc = self.proc.wait()
            with self._lock:
                if rc != RESTART_EXIT or self._stopping:
                    return
                self.restarts += 1
                self.proc = self._spawn()

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics as {name{labels}: value}; {} while it is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def processed(self, topic_part: str = "stagewatch.") -> float:
        """Event messages this worker has processed (job and file topics)."""
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("stagewatch_events_processed_total") and topic_part in k)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Running, or about to be started again after asking for a restart."""
        rc = self.proc.poll()
        return rc is None or (rc == RESTART_EXIT and not self._stopping)

    def kill9(self) -> None:
        with self._lock:
            self._stopping = True
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (graceful: in-flight batches finish, offsets commit) and wait."""
        with self._lock:
            self._stopping = True
            if self.alive():
                os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc

    def cleanup(self) -> None:
        with self._lock:
            self._stopping = True
            if self.alive():
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


class Pipeline:
    """One test's slice of Kafka and ClickHouse: prefix, app id, campaign, workers."""

    def __init__(self, kafka: str, store_url: str, directory: Path, name: str, partitions: int = 4,
                 table_store: str = "rocksdb") -> None:
        n = next(_counter)
        tag = f"{name}{n}{os.getpid() % 10000}"
        self.kafka = kafka
        self.store_url = store_url
        self.dir = directory
        self.prefix = f"t-{tag}."
        self.app_id = f"sw-{tag}"
        self.campaign = f"c_{tag}"
        self.topics = Topics(self.prefix)
        self.workers: list[Worker] = []
        self.partitions = partitions
        self.table_store = table_store
        create_topics(kafka, partitions, 1, topics=self.topics)
        self.producer = SafeProducer(kafka, client_id=f"test-{tag}")
        self.store = open_store(store_url)

    def events(self, scale: int = 1, seed: int = 1) -> list[Event]:
        return list(simulate_many(scaled_tiny(self.campaign, scale), seed))

    def publish(self, events: Iterable[Event]) -> int:
        n = 0
        for ev in events:
            self.producer.produce(self.topics.for_event(ev), encode_event(ev), event_key(ev))
            n += 1
        self.producer.flush()
        return n

    def publish_paced(self, events: list[Event], seconds: float) -> threading.Thread:
        """Publish in the background, spread over about `seconds` (flushing every chunk)."""
        chunks = max(1, int(seconds / 0.1))
        size = max(1, len(events) // chunks + 1)

        def run() -> None:
            for i in range(0, len(events), size):
                self.publish(events[i:i + size])
                time.sleep(0.1)

        t = threading.Thread(target=run, name="publisher", daemon=True)
        t.start()
        return t

    def worker(self, name: str = "w1", cwd: Path | None = None, workdir: Path | None = None) -> Worker:
        return Worker(self, name, cwd, workdir)

    def numbers(self) -> list[dict[str, Any]]:
        return read_status(self.store, campaign=self.campaign, as_of=AS_OF)["stages"]

    def wait_numbers(self, expected: list[dict[str, Any]], timeout: float = 60.0) -> None:
        """Poll ClickHouse until the stage numbers equal `expected`; fail with the difference and logs."""
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                got = self.numbers()
            except Exception:  # ClickHouse restarting
                got = []
            if got == expected:
                return
            dead = [w.name for w in self.workers if not w.alive() and w.proc.returncode not in (0, None)]
            if dead and all(not w.alive() for w in self.workers):
                break
            time.sleep(0.3)
        diffs = []
        by_stage = {(g["campaign"], g["stage"]): g for g in got}
        for e in expected:
            g = by_stage.get((e["campaign"], e["stage"]), {})
            diffs.append({k: (e[k], g.get(k)) for k in e if e[k] != g.get(k)})
        logs = "\n".join(f"--- {w.name} (rc={w.proc.poll()}, restarts={w.restarts}) ---\n{log_excerpt(w.log(), 40)}"
                         for w in self.workers)
        pytest.fail(f"numbers did not converge within {timeout:.0f} s; differences (expected, got): {diffs}\n{logs}")

    def close(self) -> None:
        for w in self.workers:
            w.cleanup()
        self.store.close()
        self.producer.flush(10)
        del self.producer  # librdkafka would keep reconnecting (and logging) after the broker stops


def tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def log_excerpt(text: str, n: int) -> str:
    """The last `n` lines of a worker log, with Faust's repeated recovery warnings collapsed to one each.

    A stuck recovery repeats the same few warnings every 5 s and would push every other line out.
    """
    seen: set[str] = set()
    kept: list[str] = []
    for line in text.splitlines():
        body = line.split("] ", 4)[-1]
        if "since recovery start" in body or "No event received" in body:
            key = re.sub(r"\(started .*\)|\(last event .*\)", "", body)
            if key in seen:
                continue
            seen.add(key)
        kept.append(line)
    return "\n".join(kept[-n:])


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, kafka_server: Any, clickhouse_server: Any,
             tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []
    name = re.sub(r"[^a-z0-9]", "", request.node.name.lower().replace("test_", ""))[:10]

    def make(partitions: int = 4, table_store: str = "rocksdb") -> Pipeline:
        p = Pipeline(kafka_server.kafka_bootstrap, clickhouse_server.store_url, tmp_path, name, partitions, table_store)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
