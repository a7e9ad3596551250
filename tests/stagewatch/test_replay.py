"""Embedded replay into chDB: numbers, adding later files, duplicates, dead letters, drill-down."""

import json

import pytest

from processors.engine import Engine
from schemas.events import encode_event
from stagewatch.reading import read_job, read_missing_files, read_status
from stagewatch.replay import replay_paths
from stagewatch.store import open_store
from tests.builders import file as _file, job as _job

T0 = 1_500_000_000.0  # scenario times are offsets from T0: the contract accepts only ts after 1990


def job(job_id, type, ts, **kw):
    return _job(job_id, type, T0 + ts, **kw)


def file(name, type, ts, **kw):
    return _file(name, type, T0 + ts, **kw)


@pytest.fixture
def store(tmp_path):
    st = open_store(f"chdb:{tmp_path / 'data'}")
    yield st
    st.close()


def scenario():
    return [
        job("1", "submitted", 0), job("1", "started", 10, cores=2, site="OSG-UCSD"), job("1", "evicted", 100),
        job("1", "started", 200), job("1", "started", 500),
        job("1", "terminated", 900, exit_code=0, cpu_user_s=300, cpu_sys_s=10, wall_s=400),
        job("2", "submitted", 0), job("2", "started", 20), job("2", "held", 30, reason="memory"),
        file("a", "input_declared", 0), file("b", "input_declared", 0), file("c", "input_declared", 0),
        file("a", "delivered", 10, job_id="1"), file("a.out", "output_located", 950),
        file("a.out", "output_declared", 900, parents=["a"]),
        file("b", "delivered", 10, job_id="2"), file("b", "consumed", 100),
    ]


def write(path, events, extra=b""):
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in events) + extra)
    return str(path)


def test_replay_in_two_files_equals_engine_and_rereplay_changes_nothing(store, tmp_path):
    evs = scenario()
    expected = Engine()
    expected.apply_all(evs)
    want = expected.numbers(as_of=T0 + 1000)
    f1 = write(tmp_path / "1.jsonl", evs[::2])
    f2 = write(tmp_path / "2.jsonl", evs[1::2] + evs[:3])  # some overlap with the first file
    replay_paths(store, [f1])
    r2 = replay_paths(store, [f2])
    assert r2.duplicates == 3
    got = read_status(store, as_of=T0 + 1000)["stages"]
    assert got == want
    replay_paths(store, [f1, f2])
    assert read_status(store, as_of=T0 + 1000)["stages"] == want
    (row,) = store.query("SELECT count() AS n FROM raw_events FINAL")
    assert row["n"] == len(evs)


def test_invalid_lines_are_reported_kept_and_do_not_stop(store, tmp_path):
    bad = (b'not json\n{"schema":"job-event/1","event_id":"x","ts":1500000001,"campaign":"c","stage":"s","type":"started"}\n'
           b'\n{"schema":"file-event/1","event_id":"y","ts":1500000001,"campaign":"c","stage":"s","file":"f",'
           b'"type":"output_declared"}\n')
    path = write(tmp_path / "mixed.jsonl", scenario()[:3], bad + encode_event(scenario()[3]) + b"\n")
    seen = []
    report = replay_paths(store, [path], on_invalid=seen.append)
    assert [d.position for d in seen] == ["4", "5", "7"]
    assert "job_id" in seen[1].reason and "parents" in seen[2].reason
    assert report.new_events == 4
    dl = store.query("SELECT source, position, reason, raw FROM dead_letter FINAL ORDER BY position")
    assert [d["position"] for d in dl] == ["4", "5", "7"]
    assert dl[0]["raw"] == "not json"
    replay_paths(store, [path])  # the same bad lines again are the same records
    assert store.query("SELECT count() AS n FROM dead_letter FINAL")[0]["n"] == 3


def test_missing_files_is_the_drill_down_of_the_headline(store, tmp_path):
    replay_paths(store, [write(tmp_path / "s.jsonl", scenario())])
    (s,) = read_status(store, as_of=T0 + 1000)["stages"]
    missing = read_missing_files(store, "camp", "stage1")
    assert missing == ["b", "c"]
    assert len(missing) == s["files_without_located_output"]


def test_job_drill_down_has_attempts_and_events(store, tmp_path):
    replay_paths(store, [write(tmp_path / "s.jsonl", scenario())])
    data = read_job(store, "camp", "stage1", "1")
    assert [(a["attempt"], a["ended_by"]) for a in data["attempts"]] == [(1, "evicted"), (2, "unknown"),
                                                                        (3, "terminated")]
    assert [e["type"] for e in data["events"]] == ["submitted", "started", "evicted", "started", "started",
                                                   "terminated"]


def test_cli_replay_status_json_and_missing_files(tmp_path):
    from typer.testing import CliRunner

    from stagewatch.cli import app

    path = write(tmp_path / "s.jsonl", scenario())
    url = f"chdb:{tmp_path / 'cli'}"
    runner = CliRunner()
    r = runner.invoke(app, ["replay", "--store", url, "-q", path])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["status", "--store", url, "--as-of", "2017-07-14T02:56:40Z", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["as_of"] == T0 + 1000
    assert doc["stages"][0]["files_located"] == 1 and doc["stages"][0]["jobs_held"] == 1
    r = runner.invoke(app, ["missing-files", "--store", url, "--campaign", "camp", "--stage", "stage1"])
    assert r.stdout.split() == ["b", "c"]
    r = runner.invoke(app, ["status", "--store", url, "--as-of", "2017-06-20T11:25:00"])
    assert r.exit_code != 0
