"""Conflicting copies of an event (one event_id, different content) in a replay: any order gives the same
numbers and the same stored raw row (the winner's), every losing copy is a dead letter, and a loser
queued in the same write as its winner never reaches the store."""

import pytest

from processors.engine import Engine
from schemas.events import decode_event, encode_event
from processors.stage import content_digest
from stagewatch.reading import read_status
from stagewatch.replay import replay_paths
from processors.stage import conflict_position
from stagewatch.store import open_store
from stagewatch.verify import verify
from tests.builders import job

pytestmark = pytest.mark.skipif(not hasattr(Engine, "take_conflicts"), reason="the engine reports no conflicts yet")

T0 = 1_500_000_000.0
AS_OF = T0 + 10_000


def copies():
    """Two copies of one terminate, as the replay decodes them (the winner is decided on decoded content).

    Times are not whole numbers: a whole float read back from chDB comes back as an int, and the
    canonical encoding of the stored copy then differs from the file's (reported as a follow-up).
    """
    ok = job("1", "terminated", T0 + 100, eid="t1", exit_code=0, wall_s=50.5, cpu_user_s=10.25, cpu_sys_s=1.5)
    failed = job("1", "terminated", T0 + 100, eid="t1", exit_code=3, wall_s=50.5, cpu_user_s=10.25, cpu_sys_s=1.5)
    return decode_event(encode_event(ok)), decode_event(encode_event(failed))


def base():
    return [job("1", "submitted", T0), job("1", "started", T0 + 10), job("2", "submitted", T0)]


def winner_of(a, b):
    e = Engine()
    e.apply(a)
    e.apply(b)
    (c,) = e.take_conflicts()
    return c.kept, c.dropped


def replay(tmp_path, name, evs, batch_size, inserts):
    st = open_store(f"chdb:{tmp_path / name}")
    real = st.insert

    def recording(table, rows, columns=None):
        if table == "raw_events":
            inserts.append([tuple(r[:5]) for r in rows])
        return real(table, rows, columns)

    st.insert = recording
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in evs))
    return st, replay_paths(st, [str(path)], batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [100, 2], ids=["same-write", "separate-writes"])
def test_any_order_gives_the_winner_and_the_loser_is_a_dead_letter(tmp_path, batch_size):
    ok, failed = copies()
    kept, dropped = winner_of(ok, failed)
    results = []
    for name, order in (("ab", [ok, failed]), ("ba", [failed, ok])):
        inserts = []
        st, report = replay(tmp_path, f"{name}{batch_size}", base() + order, batch_size, inserts)
        try:
            for rows in inserts:  # no write holds two rows of one key: the loser never races its winner
                assert len(rows) == len(set(rows))
            (dl,) = report.invalid
            assert dl.reason.startswith("conflicting duplicate of event_id 't1'")
            # keyed by the losing copy (a re-run meets it at another line: tests/stagewatch/test_dead_letter_keys.py)
            assert dl.raw == encode_event(dropped) and dl.position == conflict_position(content_digest(dropped))
            assert dl.reason.endswith("(met at line 5)")
            assert report.conflicts == 1 and report.new_events == 4
            (raw,) = st.query("SELECT exit_code FROM raw_events FINAL WHERE event_id = 't1'")
            assert raw["exit_code"] == kept.exit_code
            assert verify(st).ok
            results.append(read_status(st, as_of=AS_OF)["stages"])
        finally:
            st.close()
    want = Engine()
    want.apply_all(base() + [kept])
    assert results[0] == results[1] == want.numbers(as_of=AS_OF)


def test_the_winner_arriving_in_a_later_replay_replaces_the_stored_loser(tmp_path):
    ok, failed = copies()
    kept, dropped = winner_of(ok, failed)
    st = open_store(f"chdb:{tmp_path / 's'}")
    try:
        for i, evs in enumerate((base() + [dropped], [kept])):
            p = tmp_path / f"{i}.jsonl"
            p.write_bytes(b"".join(encode_event(e) + b"\n" for e in evs))
            report = replay_paths(st, [str(p)])
        assert report.conflicts == 1 and [d.raw for d in report.invalid] == [encode_event(dropped)]
        (raw,) = st.query("SELECT exit_code FROM raw_events FINAL WHERE event_id = 't1'")
        assert raw["exit_code"] == kept.exit_code
        assert verify(st).ok
        want = Engine()
        want.apply_all(base() + [kept])
        assert read_status(st, as_of=AS_OF)["stages"] == want.numbers(as_of=AS_OF)
    finally:
        st.close()
