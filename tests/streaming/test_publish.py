"""Publishers: pacing of the live simulator (no broker), and the CLI paths on the real broker."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ingest.kafka_io import DeliveryError, Topics, headers_dict
from ingest.publish import Publisher, publish_events
from tests.builders import job
from tests.streaming.conftest import CLI


class FakeProducer:
    """Records produce() calls and the (fake) time of each; poll() advances the fake clock."""

    def __init__(self, clock: list[float], fail: int = 0) -> None:
        self.clock = clock
        self.sent: list[tuple[str, bytes, float]] = []
        self.fail = fail

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        self.sent.append((topic, key or b"", self.clock[0]))

    def poll(self, timeout_s: float = 0.0) -> int:
        self.clock[0] += timeout_s
        return 0

    def flush(self, timeout_s: float = 60.0) -> int:
        if self.fail:
            raise DeliveryError(f"{self.fail} message(s) could not be delivered", self.fail)
        return len(self.sent)


def test_live_simulator_is_paced_by_simulated_time() -> None:
    """--speed X: X simulated seconds per real second, following the latest event time seen."""
    clock = [100.0]
    prod = FakeProducer(clock)
    pub = Publisher(prod, Topics("p."))  # type: ignore[arg-type]
    evs = [job("a", "submitted", 1000), job("a", "started", 1010), job("b", "submitted", 1005),
           job("a", "terminated", 1030)]
    publish_events(pub, evs, speed=10.0, clock=lambda: clock[0])
    times = [t - 100.0 for _, _, t in prod.sent]
    assert times[0] == pytest.approx(0.0)
    assert times[1] == pytest.approx(1.0, abs=0.02)   # 10 simulated s at 10x
    assert times[2] == pytest.approx(times[1])          # earlier than the latest seen: no wait
    assert times[3] == pytest.approx(3.0, abs=0.02)
    assert {t for t, _, _ in prod.sent} == {"p.stagewatch.job-events"} and prod.sent[0][1] == b"a"


def test_failed_delivery_is_an_error_not_a_silent_loss() -> None:
    clock = [0.0]
    pub = Publisher(FakeProducer(clock, fail=3), Topics())  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match="3 message"):
        publish_events(pub, [job("a", "submitted", 1)], speed=0)


@pytest.mark.servers
def test_publish_cli_simulate_and_invalid_lines(pipeline: Any, tmp_path: Any) -> None:
    """`publish --simulate tiny` sends every event; `publish FILE --store` also records invalid lines."""
    from tests.streaming.test_pipeline import read_topic

    p = pipeline()
    r = subprocess.run([*CLI, "publish", "--simulate", "tiny", "--speed", "0", "--kafka", p.kafka,
                        "--topic-prefix", p.prefix], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "published 410 events" in r.stderr
    assert len(read_topic(p.kafka, p.topics.job_events, 199)) + len(read_topic(p.kafka, p.topics.file_events, 211)) \
        == 410

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"schema":"job-event/1","event_id":"x"}\nnot json\n')
    r = subprocess.run([*CLI, "publish", str(bad), "--kafka", p.kafka, "--topic-prefix", p.prefix, "--store",
                        p.store_url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 invalid line(s)" in r.stderr and f"{bad}:1:" in r.stderr and f"{bad}:2: not valid JSON" in r.stderr
    dl = read_topic(p.kafka, p.topics.dead_letter, 2)
    assert sorted(headers_dict(m.headers())["position"] for m in dl) == ["1", "2"]
    rows = p.store.query(f"SELECT position, reason FROM dead_letter FINAL WHERE source = '{bad}' ORDER BY position")
    assert [r["position"] for r in rows] == ["1", "2"] and "missing required field" in rows[0]["reason"]
