"""A replay killed (SIGKILL) at any moment, then run again, leaves a store that verify passes and whose
headline numbers equal their drill-down lists.

The replay runs as `stagewatch replay` in a subprocess whose sink kills the process at a chosen point:
inside a raw-events write (half of its rows written), between the raw-events and the state writes,
inside the state writes (after job rows, before file and stage rows), and at random times. Small
batches give every replay several raw-only flushes and several state flushes. Before the fix, a kill
after a raw-events write left jobs and files with events but no state row, for ever: the next replay
loaded their events and dropped their dirty state, so missing-files listed fewer files than the
headline and (old) verify said ok.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from ingest.simulator import PRESETS, simulate_many
from processors.engine import Engine
from schemas.events import decode_event, encode_event
from stagewatch.reading import read_missing_files, read_status
from stagewatch.replay import replay_paths
from stagewatch.store import open_store
from stagewatch.verify import verify
from tests.builders import job

AS_OF = 1497960000.0
BATCH, STATE_EVERY = 40, 120  # ~10 flushes per replay of the tiny preset, state written every third

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from stagewatch import replay, sink

    table, nth, where = os.environ.get("KILL_TABLE"), int(os.environ.get("KILL_AT", "0")), os.environ.get("KILL_WHEN")
    slow = float(os.environ.get("SLOW_S", "0"))
    seen = {"n": 0}
    insert = sink.StoreSink._insert_with_retry

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def patched(self, t, rows, columns):
        if slow:
            time.sleep(slow)
        if t != table:
            return insert(self, t, rows, columns)
        seen["n"] += 1
        hit = seen["n"] == nth
        if hit and where == "before":
            die()
        if hit and where == "during":  # a write cut in the middle: some of its rows stored
            insert(self, t, rows[: len(rows) // 2], columns)
            die()
        insert(self, t, rows, columns)
        if hit and where == "after":
            die()

    sink.StoreSink._insert_with_retry = patched
    init = replay.Replayer.__init__

    def small_batches(self, store, **kw):
        kw.update(batch_size=int(os.environ["BATCH"]), state_every=int(os.environ["STATE_EVERY"]))
        init(self, store, **kw)

    replay.Replayer.__init__ = small_batches
    from stagewatch.cli import main

    sys.argv = ["stagewatch", "replay", "-q", "--store", os.environ["URL"], *sys.argv[1:]]
    main()
""")


@pytest.fixture(scope="module")
def events():
    return list(simulate_many(PRESETS["tiny"](), 7))


@pytest.fixture(scope="module")
def inputs(events, tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    half = len(events) // 2
    paths = []
    for i, part in enumerate((events[:half], events[half:])):
        p = d / f"part{i}.jsonl"
        p.write_bytes(b"".join(encode_event(e) + b"\n" for e in part))
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def expected(events):
    e = Engine()
    e.apply_all(events)
    return e.numbers(as_of=AS_OF)


def run_replay(url, paths, *, timeout=120, kill_after_s=None, batch=BATCH, state_every=STATE_EVERY, **kill):
    env = dict(os.environ, URL=url, BATCH=str(batch), STATE_EVERY=str(state_every),
               **{k: str(v) for k, v in kill.items()})
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, *paths], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        if kill_after_s is not None:
            try:
                proc.wait(kill_after_s)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode(errors="replace")


def assert_trustworthy(url, expected):
    """verify passes, and every headline number equals its drill-down (and the engine's number)."""
    with open_store(url) as st:
        report = verify(st)
        assert report.ok, report.differences[:20]
        stages = read_status(st, as_of=AS_OF)["stages"]
        assert stages == expected
        for s in stages:
            w = f"campaign = '{s['campaign']}' AND stage = '{s['stage']}'"
            buckets = Counter({r["bucket"]: int(r["n"]) for r in st.query(
                f"SELECT bucket, count() AS n FROM file_state FINAL WHERE {w} AND is_input = 1 GROUP BY bucket")})
            for b in ("files_located", "files_declared_not_located", "files_consumed_no_output", "files_in_flight",
                      "files_failed", "files_pending"):
                assert s[b] == buckets[b], (s["stage"], b)
            assert s["input_files"] == sum(buckets.values())
            states = Counter({r["state"]: int(r["n"]) for r in st.query(
                f"SELECT state, count() AS n FROM job_state FINAL WHERE {w} GROUP BY state")})
            for state in ("idle", "running", "held", "suspended", "completed", "removed"):
                assert s[f"jobs_{state}"] == states[state], (s["stage"], state)
            assert s["jobs"] == sum(states.values())
            missing = read_missing_files(st, s["campaign"], s["stage"])
            assert len(missing) == s["files_without_located_output"], s["stage"]


KILL_POINTS = [
    # (table, which write of it, before/during/after)
    ("raw_events", 1, "during"),       # the first raw write cut in half: nothing else written yet
    ("raw_events", 2, "after"),        # raw-only flush done, the state of those events never written
    ("raw_events", 3, "after"),        # in a state flush: raw written, no state row of this flush
    ("raw_events", 5, "during"),
    ("job_state", 1, "after"),         # in the state flush: jobs written, files and stage rows not
    ("file_state", 2, "during"),       # file rows half written
    ("stage_numbers", 2, "before"),    # every entity row written, the stage row not
    ("stage_numbers", 3, "during"),    # the last write of the replay, cut
]


@pytest.mark.parametrize("table,nth,when", KILL_POINTS, ids=[f"{t}-{n}-{w}" for t, n, w in KILL_POINTS])
def test_kill_at_a_chosen_point_then_replay_again(tmp_path, inputs, expected, table, nth, when):
    url = f"chdb:{tmp_path / 'store'}"
    rc, err = run_replay(url, inputs, KILL_TABLE=table, KILL_AT=nth, KILL_WHEN=when)
    assert rc == -signal.SIGKILL, f"the replay was not killed at {table} #{nth} {when}: rc={rc}\n{err}"
    with open_store(url) as st:
        report = replay_paths(st, inputs)  # the same replay again, in the default batches
    assert report.invalid == []
    assert_trustworthy(url, expected)


def test_killed_again_while_repairing_then_replayed(tmp_path, inputs, expected):
    url = f"chdb:{tmp_path / 'store'}"
    rc, _ = run_replay(url, inputs, KILL_TABLE="raw_events", KILL_AT=4, KILL_WHEN="after")
    assert rc == -signal.SIGKILL
    # the repairing replay is itself killed after its first raw write, before it wrote the repaired rows
    rc, _ = run_replay(url, inputs, KILL_TABLE="raw_events", KILL_AT=1, KILL_WHEN="after")
    assert rc == -signal.SIGKILL
    rc, err = run_replay(url, inputs)
    assert rc == 0, err
    assert_trustworthy(url, expected)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_at_a_random_time_then_replay_again(tmp_path, inputs, expected, seed):
    url = f"chdb:{tmp_path / 'store'}"
    # every write takes 50 ms more, so the replay lasts long enough for the kill to land inside it
    t0 = time.monotonic()
    delay = random.Random(seed).uniform(0.5, 4.0)
    rc, err = run_replay(url, inputs, kill_after_s=delay, SLOW_S=0.05)
    assert rc in (0, -signal.SIGKILL), err
    if os.path.exists(tmp_path / "store"):
        rc, err = run_replay(url, inputs)
        assert rc == 0, err
        assert_trustworthy(url, expected)
    else:  # killed before the store was created: nothing to repair
        assert time.monotonic() - t0 < 30


@pytest.mark.skipif(not hasattr(Engine, "take_conflicts"), reason="the engine reports no conflicts yet")
def test_kill_after_a_winning_copy_replaced_a_stored_event_then_replay_again(tmp_path):
    """The hardest case: same event count, same stage numbers, only one job's row is stale."""
    t0 = 1_500_000_000.0
    base = [job("1", "submitted", t0), job("2", "submitted", t0), job("2", "started", t0 + 1, host="n2")]
    a, b = (decode_event(encode_event(job("1", "started", t0 + 5, eid="s1", site="S", host=h))) for h in ("h1", "h2"))
    e = Engine()
    e.apply(a)
    e.apply(b)
    (c,) = e.take_conflicts()
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(encode_event(ev) + b"\n" for ev in base + [c.dropped]))
    second.write_bytes(encode_event(c.kept) + b"\n")
    url = f"chdb:{tmp_path / 'store'}"
    # one flush (raw + state) per file; killed right after the second file's raw write: the winner is stored,
    # its job row still says the loser's host, and the stage row is right
    rc, err = run_replay(url, [str(first), str(second)], batch=len(base) + 1, state_every=1,
                         KILL_TABLE="raw_events", KILL_AT=2, KILL_WHEN="after")
    assert rc == -signal.SIGKILL, err
    with open_store(url) as st:
        (row,) = st.query("SELECT host FROM job_state FINAL WHERE job_id = '1'")
        assert row["host"] == c.dropped.host  # the damage this test is about
        replay_paths(st, [str(first), str(second)])
        assert verify(st).ok
        (row,) = st.query("SELECT host FROM job_state FINAL WHERE job_id = '1'")
        assert row["host"] == c.kept.host
