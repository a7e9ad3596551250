"""Replay input: gzip and BOM files are read, a file that cannot be read is a dead letter while the good
data of the other files is kept, and an event the engine fails on is a dead letter, not a crash."""

import gzip
import logging

import pytest

from processors.engine import Engine
from schemas.events import encode_event
from stagewatch.reading import read_status
from stagewatch.replay import replay_paths
from stagewatch.store import open_store
from tests.builders import file, job

T0 = 1_500_000_000.0
AS_OF = T0 + 10_000


@pytest.fixture
def store(tmp_path):
    st = open_store(f"chdb:{tmp_path / 'data'}")
    yield st
    st.close()


def events(prefix: str, n: int = 3) -> list:
    out = []
    for i in range(n):
        out += [job(f"{prefix}{i}", "submitted", T0 + i), job(f"{prefix}{i}", "started", T0 + i + 1),
                file(f"{prefix}{i}.root", "input_declared", T0 + i)]
    return out


def lines(evs) -> bytes:
    return b"".join(encode_event(e) + b"\n" for e in evs)


def engine_numbers(evs):
    e = Engine()
    e.apply_all(evs)
    return e.numbers(as_of=AS_OF)


def test_gzip_and_bom_files_are_read_like_plain_ones(store, tmp_path):
    a, b = events("a"), events("b")
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines(a)))
    (tmp_path / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + lines(b))
    report = replay_paths(store, [str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.jsonl")])
    assert report.invalid == [] and report.new_events == len(a) + len(b)
    assert read_status(store, as_of=AS_OF)["stages"] == engine_numbers(a + b)


@pytest.mark.parametrize("bad", [b"\x89PNG\r\n\x1a\n" + bytes(range(256)), b'{"a": 1}\n\x00\x01\x02 binary\n'],
                         ids=["png", "nul-bytes"])
def test_a_binary_file_is_a_dead_letter_and_the_other_files_are_kept(store, tmp_path, bad):
    a, b = events("a"), events("b")
    (tmp_path / "a.jsonl").write_bytes(lines(a))
    (tmp_path / "bad.jsonl").write_bytes(bad)
    (tmp_path / "b.jsonl").write_bytes(lines(b))
    seen = []
    report = replay_paths(store, [str(tmp_path / n) for n in ("a.jsonl", "bad.jsonl", "b.jsonl")],
                          on_invalid=seen.append)
    assert [d.source for d in report.unreadable] == [str(tmp_path / "bad.jsonl")]
    assert seen == report.invalid == report.unreadable
    assert "JSON lines" in seen[0].reason and seen[0].position == "1"
    assert read_status(store, as_of=AS_OF)["stages"] == engine_numbers(a + b)
    (dl,) = store.query("SELECT source, position, reason FROM dead_letter FINAL")
    assert dl["source"].endswith("bad.jsonl") and "JSON lines" in dl["reason"]


def test_a_truncated_gzip_keeps_the_lines_before_the_cut(store, tmp_path):
    a, b = events("a", 40), events("b")
    whole = gzip.compress(lines(a))
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    (tmp_path / "b.jsonl").write_bytes(lines(b))
    report = replay_paths(store, [str(tmp_path / "cut.jsonl.gz"), str(tmp_path / "b.jsonl")])
    (dl,) = report.unreadable
    assert "truncated" in dl.reason
    read_before_cut = report.new_events - len(b)
    assert 0 < read_before_cut < len(a)
    assert dl.position == str(read_before_cut + 1)  # where reading stopped: the line after the last one read
    assert read_status(store, as_of=AS_OF)["stages"] == engine_numbers(a[:read_before_cut] + b)


def test_a_path_that_cannot_be_read_is_a_dead_letter(store, tmp_path):
    a = events("a")
    (tmp_path / "a.jsonl").write_bytes(lines(a))
    (tmp_path / "adir").mkdir()
    report = replay_paths(store, [str(tmp_path / "adir"), str(tmp_path / "a.jsonl")])
    (dl,) = report.unreadable
    assert dl.reason.startswith(f"cannot read {tmp_path / 'adir'}")
    assert report.new_events == len(a)


def test_an_event_the_engine_fails_on_is_a_dead_letter_and_the_batch_is_kept(store, tmp_path, monkeypatch, caplog):
    good = events("a")
    poison = job("p", "started", T0 + 5, eid="poison")
    (tmp_path / "p.jsonl").write_bytes(lines(good[:4] + [poison] + good[4:]))
    apply = Engine.apply

    def failing(self, ev):
        if ev.event_id == "poison":
            raise RuntimeError("kaboom [/x]")
        return apply(self, ev)

    monkeypatch.setattr(Engine, "apply", failing)
    with caplog.at_level(logging.ERROR, logger="stagewatch.replay"):
        report = replay_paths(store, [str(tmp_path / "p.jsonl")])
    (dl,) = report.invalid
    assert dl.position == "5" and "RuntimeError: kaboom [/x]" in dl.reason
    assert dl.raw == encode_event(poison)  # the line as it was read
    assert report.engine_errors == 1 and report.new_events == len(good)
    assert any(r.levelno == logging.ERROR and "replay.engine_error" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(Engine, "apply", apply)
    assert read_status(store, as_of=AS_OF)["stages"] == engine_numbers(good)
    assert store.query("SELECT position FROM dead_letter FINAL") == [{"position": "5"}]
