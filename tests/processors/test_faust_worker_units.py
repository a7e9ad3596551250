"""Worker pieces that need no broker: its config, message decoding, conflict dead letters, stopping."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ingest.kafka_io import Topics
from processors.faust import app as faust_app
from processors.faust import STOPPED_EXIT, StreamWorker, WorkerConfig
from processors.rows import RAW_COLUMNS
from processors.stream import apply_job_events
from schemas.events import JobEvent, encode_event
from stagewatch.metrics import WorkerMetrics
from tests.builders import job

T0 = 1_500_000_000.0


def test_default_workdir_is_absolute_before_faust_sees_it(tmp_path: Path, monkeypatch: Any) -> None:
    """faust.Worker chdirs into the workdir: a relative one (the default) made its datadir vanish."""
    monkeypatch.chdir(tmp_path)
    cfg = WorkerConfig(kafka="k:1", store_url="clickhouse://h/db")
    assert Path(cfg.workdir).is_absolute() and Path(cfg.workdir) == tmp_path / ".stagewatch-worker"
    assert WorkerConfig(kafka="k:1", store_url="x", workdir="~/w").workdir == str(Path.home() / "w")


class _Msg(SimpleNamespace):
    pass


def _fev(value: bytes, key: bytes, offset: int, topic: str = "stagewatch.job-events") -> Any:
    return SimpleNamespace(message=_Msg(topic=topic, partition=0, offset=offset, key=key, value=value))


class _Sink:
    def __init__(self) -> None:
        self.rows: list[tuple[str, Any]] = []

    def add(self, table: str, row: Any) -> None:
        self.rows.append((table, row))


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Any, Any]] = []

    def produce(self, topic: str, value: bytes, key: Any = None, headers: Any = None, **kw: Any) -> None:
        self.sent.append((topic, value, key, dict(headers or [])))


def _worker() -> Any:
    w = SimpleNamespace(topics=Topics(""), metrics=WorkerMetrics(), stopping=threading.Event())
    for name in ("_decode", "_reject", "_raw_rows", "_exit_if_stopping"):
        setattr(w, name, getattr(StreamWorker, name).__get__(w))
    return w


def test_any_exception_while_decoding_is_a_dead_letter(monkeypatch: Any) -> None:
    """decode_event raises only InvalidEvent by contract; anything else from one message must not end the
    worker (exit 70 and a crash loop on the same message)."""
    def explode(raw: bytes) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(faust_app, "decode_event", explode)
    ev, bad = _worker()._decode(_fev(b"[" * 5000, b"j1", 7), JobEvent)
    assert ev is None and bad is not None
    assert "RecursionError" in bad.reason and bad.raw == b"[" * 5000 and bad.offset == 7


def test_conflicting_copies_in_a_batch_dead_letter_the_loser_and_write_only_the_winner_raw_row() -> None:
    a = job("j1", "terminated", T0 + 5, eid="t", exit_code=0)
    b = job("j1", "terminated", T0 + 9, eid="t", exit_code=1)
    raw_a, raw_b = encode_event(a) + b" ", encode_event(b)  # the message bytes, kept exactly
    w = _worker()
    io = SimpleNamespace(sink=_Sink(), producer=_Producer())
    fevs = [_fev(raw_a, b"j1", 1), _fev(raw_b, b"j1", 2)]
    events, origin = [], {}
    for fev in fevs:
        ev, bad = w._decode(fev, JobEvent)
        assert bad is None
        events.append(ev)
        origin[id(ev)] = fev
    res = apply_job_events({}, events)
    (c,) = res.conflicts
    w._raw_rows(io, events, origin, res)
    raw_rows = [r for t, r in io.sink.rows if t == "raw_events"]
    assert len(raw_rows) == 1
    kept = dict(zip(RAW_COLUMNS, raw_rows[0]))
    assert (kept["ts"], kept["exit_code"]) == (c.kept.ts, c.kept.exit_code)
    (dl,) = [r for t, r in io.sink.rows if t == "dead_letter"]
    loser_raw = raw_a if c.dropped.exit_code == 0 else raw_b
    assert dl["reason"].startswith("conflicting duplicate of event_id 't'")
    assert dl["reason"] == f"{c.reason} (met at 0/{1 if loser_raw is raw_a else 2})"
    assert dl["position"] == c.dead_letter_position  # the loser's content, not the offset that met it
    (sent,) = io.producer.sent
    assert sent[0] == w.topics.dead_letter and sent[1] == loser_raw


def test_a_stop_request_ends_a_retrying_write_without_acking(monkeypatch: Any) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(faust_app, "exit_now", fake_exit)
    w = _worker()
    io = SimpleNamespace(name="jobs")
    w._exit_if_stopping(io, RuntimeError("store refused"))  # not stopping: the caller goes on (fatal)
    assert codes == []
    w.stopping.set()
    with pytest.raises(SystemExit):
        w._exit_if_stopping(io, RuntimeError("store refused"))
    assert codes == [STOPPED_EXIT]


def test_a_huge_bad_record_is_a_bounded_dead_letter_message_and_a_whole_row() -> None:
    """_reject goes through ingest.kafka_io.publish_dead_letter: a 3 MB bad record cannot make the worker's
    producer fail (MSG_SIZE_TOO_LARGE, exit 70, the same batch again after every restart)."""
    from ingest.kafka_io import DEAD_LETTER_MAX_VALUE_BYTES
    from schemas.events import raw_from_text

    w = _worker()
    io = SimpleNamespace(sink=_Sink(), producer=_Producer())
    raw = b"{" + b"x" * 3_000_000
    ev, bad = w._decode(_fev(raw, b"j1", 11), JobEvent)
    assert ev is None and bad is not None
    w._reject(io, bad)
    (sent,) = io.producer.sent
    topic, value, key, headers = sent
    assert topic == w.topics.dead_letter and key == b"j1"
    assert len(value) <= DEAD_LETTER_MAX_VALUE_BYTES and raw.startswith(value)
    assert headers["raw_bytes"] == str(len(raw)).encode() and headers["raw_truncated"] == b"true"
    assert headers["position"] == b"0/11" and headers["source"] == b"stagewatch.job-events"
    (row,) = [r for t, r in io.sink.rows if t == "dead_letter"]
    assert row["position"] == "0/11" and raw_from_text(row["raw"]) == raw   # the table keeps every byte
