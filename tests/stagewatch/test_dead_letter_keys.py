"""Every dead letter keeps its own row, and a re-run adds none, on chDB and on ClickHouse 18.16.

dead_letter is a ReplacingMergeTree keyed by (source, position): two records with one key are one row (a
loss), and a record written again under another key is a copy. Records that come without a position
(decoded events: stagewatch.replay.replay_events, the SAM/follow store writer) and conflicting copies (met at
a line that depends on the order) must be keyed by the record itself.
"""

from __future__ import annotations

import itertools
import uuid

import pytest

from ingest.sam import SamHttp, SamPoller, SamSource
from schemas.events import DeadLetter, decode_event, encode_event
from stagewatch.cli_sam import StoreWriter
from stagewatch.replay import Replayer, replay_events, replay_paths
from schemas.events import dead_letter_position
from stagewatch.sink import StoreSink
from stagewatch.store import open_store
from tests.builders import job
from tests.ingest.samweb_standin import SamStandin, Scenario

T0 = 1_500_000_000.25
N = 7
_RUN = f"dk{uuid.uuid4().hex[:6]}_"  # the 18.16 server is shared by the test session
_n = itertools.count()


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.servers)], scope="module")
def store_url(request, tmp_path_factory):
    if request.param == "chdb":
        return f"chdb:{tmp_path_factory.mktemp('dead-letter-keys') / 'store'}"
    return request.getfixturevalue("clickhouse_server").store_url


@pytest.fixture(scope="module")
def store(store_url):
    st = open_store(store_url)
    yield st
    st.close()


def source() -> str:
    return f"{_RUN}{next(_n)}"


def rows(store, src: str) -> list[dict]:
    return store.query(f"SELECT position, reason, raw FROM dead_letter FINAL WHERE source = '{src}' ORDER BY raw")


def conflicting_pairs(campaign: str, n: int) -> list:
    """n event_ids, each sent as two copies with different content: n losing copies."""
    out = []
    for i in range(n):
        for code in (0, 1):
            out.append(decode_event(encode_event(job(f"j{i}", "terminated", T0 + i, eid=f"{campaign}-t{i}",
                                                     campaign=campaign, exit_code=code))))
    return out


def test_losing_copies_fed_as_events_are_one_dead_letter_each_and_a_rerun_adds_none(store):
    src = source()
    evs = conflicting_pairs(src, N)
    first = replay_events(store, evs, source=src)
    assert first.conflicts == N
    got = rows(store, src)
    assert len(got) == N
    assert {r["raw"] for r in got} == {d.raw.decode() for d in first.invalid}
    again = replay_events(store, list(reversed(evs)), source=src)  # same input, other order: the same losers
    assert again.conflicts == N and rows(store, src) == got


def test_records_without_position_through_the_replayer_keep_a_row_each(store):
    """What the SAM/follow StoreWriter does with a refused record: Replayer.dead_letter with no position."""
    src = source()
    bad = [f'{{"n": {i}, "bad": true}}'.encode() for i in range(N)] + [b"\xff\xfe not utf-8", b""]
    for _ in range(2):  # a re-run writes the same keys
        r = Replayer(store)
        for raw in bad:
            r.dead_letter(DeadLetter(src, "", "refused" if raw else "nothing was read", raw))
        r.flush()
        got = rows(store, src)
        assert len(got) == N + 2
        assert all(row["position"] for row in got)


def test_conflicts_met_at_other_lines_in_a_rerun_are_not_copies(store, tmp_path):
    """Replaying a file twice: the loser is met at the winner's line the first time, at its own line the
    second time. Keyed by the losing copy's content, not the line: one dead letter per loser."""
    src_campaign = source()
    evs = conflicting_pairs(src_campaign, N)
    path = tmp_path / f"{src_campaign}.jsonl"
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in evs))
    for _ in range(2):
        report = replay_paths(store, [str(path)])
        assert report.conflicts == N
        got = rows(store, str(path))
        assert len(got) == N, got
        assert all(r["reason"].startswith("conflicting duplicate of event_id") for r in got)


def test_the_sink_derives_the_same_position_for_the_same_bytes_only(store):
    src = source()

    def row(raw: str, reason: str = "r") -> dict:
        return {"received_ts": 1.0, "source": src, "position": "", "reason": reason, "raw": raw}

    sink = StoreSink(store)
    for raw in ("a", "b", "a"):
        sink.add("dead_letter", row(raw))
    sink.add("dead_letter", {**row("c"), "position": "12"})  # a given position is kept
    sink.flush()
    assert sorted(r["position"] for r in rows(store, src)) == sorted(
        ["12", dead_letter_position("a", "r"), dead_letter_position("b", "r")])
    assert dead_letter_position("", "x") != dead_letter_position("", "y")


def test_sam_facts_refused_for_one_file_are_a_dead_letter_each(store_url, tmp_path):
    """A name over the contract's bound, declared and delivered by two projects, and a second long name
    with the same first 200 characters: four refused facts, four rows; a crash before the commit (the same
    dead letters written again) adds none."""
    long_a, long_b = "x" * 1100 + "a", "x" * 1100 + "b"
    sc = Scenario(definitions={"nova_def": ["ok.raw", long_a, long_b]},
                  projects={"p1": {"status": {long_a: "delivered"}}, "p2": {"status": {long_a: "delivered"}}},
                  files={"ok.raw": {}, long_a: {}, long_b: {}})
    campaign = source()
    with SamStandin(sc) as s:
        src = SamSource(s.base, "nova_def", campaign, "fd_reco", ("p1", "p2"), None)
        for _ in range(2):
            poller = SamPoller(src, SamHttp(s.base, sleep=lambda _s: None), tmp_path / "ck.json")
            res = poller.poll()
            assert len(res.dead_letters) == 4
            writer = StoreWriter(store_url)
            try:
                for ev in res.events:
                    writer.event(ev)
                for dl in res.dead_letters:
                    writer.reject(dl.raw, dl.source, dl.position, dl.reason)
                writer.flush()
                got = writer.store.query(f"SELECT position FROM dead_letter FINAL WHERE source = "
                                         f"'{res.dead_letters[0].source}'")
            finally:
                writer.close()
            assert len({r["position"] for r in got}) == 4
            # no commit: the next poll (a restart) emits the same dead letters again


def test_bad_lines_of_two_different_stdin_inputs_are_two_dead_letters(store, monkeypatch):
    """Every input read from `-` has the source <stdin>: its line numbers alone would make line 1 of the
    next input replace line 1 of this one. Keyed by line and bytes: distinct lines stay, a re-run adds none."""
    import io
    import sys

    tag = uuid.uuid4().hex
    inputs = [f'{{"not": "an event", "tag": "{tag}", "n": {i}}}\n'.encode() for i in range(3)]

    def stored() -> list[dict]:
        return store.query(f"SELECT position, raw FROM dead_letter FINAL WHERE source = '<stdin>' "
                           f"AND raw LIKE '%{tag}%' ORDER BY raw")

    for data in inputs + inputs:  # each input twice
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(data)})())
        report = replay_paths(store, ["-"])
        assert [d.position.split(" ")[0] for d in report.invalid] == ["1"]
    got = stored()
    assert [r["raw"].encode() + b"\n" for r in got] == inputs
    assert len({r["position"] for r in got}) == 3
