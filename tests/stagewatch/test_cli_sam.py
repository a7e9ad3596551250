"""`stagewatch sam poll` as a user runs it: into a file, into a store, followed, and every error a sentence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ingest.samweb_standin import BUCKETS, SamStandin, bucket_scenario

CLI = [sys.executable, "-c", "from stagewatch.cli import main; main()"]
PROJECTS = ["--project", "nova_proj_1", "--project", "nova_proj_2_recovery"]


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWATCH_")}
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def poll_args(base: str, *extra: str) -> list[str]:
    return ["sam", "poll", "--url", base, "--definition", "nova_def", *PROJECTS, "--campaign", "nova_prod5_mc",
            "--stage", "fd_reco", "--output-dims", "data_tier reco", *extra]


def status(store: str, cwd: Path) -> dict:
    r = run(["status", "--store", store, "--format", "json"], cwd)
    assert r.returncode == 0, r.stderr
    (s,) = json.loads(r.stdout)["stages"]
    return s


@pytest.fixture
def standin():
    sc, expected = bucket_scenario(240, seed=4)
    with SamStandin(sc) as s:
        s.expected = expected
        yield s


def test_once_into_a_file_then_replay(standin, tmp_path):
    r = run(poll_args(standin.base, "--once", "--out", "sam.jsonl"), tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sam nova_prod5_mc/fd_reco:" in r.stderr and "requests" in r.stderr
    lines = (tmp_path / "sam.jsonl").read_bytes()
    assert list(tmp_path.glob(".stagewatch-sam-nova_prod5_mc.fd_reco-*.json"))  # the default checkpoint
    r = run(poll_args(standin.base, "--once", "--out", "sam.jsonl"), tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sam.jsonl").read_bytes() == lines  # nothing new: nothing written
    r = run(["replay", "-q", "--store", "chdb:st", "sam.jsonl"], tmp_path)
    assert r.returncode == 0, r.stderr
    s = status("chdb:st", tmp_path)
    assert {k: s[k] for k in standin.expected} == standin.expected


def test_once_into_a_store_twice_and_verify(standin, tmp_path):
    for ckpt in ("a.json", "b.json"):  # a second poller (its own checkpoint) changes no number
        r = run(poll_args(standin.base, "--once", "--store", "chdb:st", "--checkpoint", ckpt), tmp_path)
        assert r.returncode == 0, r.stderr
        s = status("chdb:st", tmp_path)
        assert {k: s[k] for k in standin.expected} == standin.expected
    assert run(["verify", "--store", "chdb:st"], tmp_path).returncode == 0


def test_followed_until_sigterm(standin, tmp_path):
    pending = [f for f in standin.scenario.definitions["nova_def"] if f not in
               standin.scenario.projects["nova_proj_1"]["status"] and f not in
               standin.scenario.projects["nova_proj_2_recovery"]["status"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWATCH_")}
    proc = subprocess.Popen(CLI + poll_args(standin.base, "--interval", "0.5", "--out", "sam.jsonl"), cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while standin.count("/definitions/") < 2 and time.time() < deadline:
            time.sleep(0.1)
        standin.scenario.projects["nova_proj_1"]["status"][pending[0]] = "delivered"  # SAM moves on
        n = standin.count("/definitions/")
        while standin.count("/definitions/") < n + 2 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stderr.count("sam nova_prod5_mc/fd_reco:") >= 3  # one status line per poll
    events = [json.loads(x) for x in (tmp_path / "sam.jsonl").read_text().splitlines()]
    assert [e for e in events if e["file"] == pending[0] and e["type"] == "delivered"]
    assert len({e["event_id"] for e in events}) == len(events)


def test_errors_are_sentences(standin, tmp_path):
    r = run(["sam", "poll", "--url", standin.base, "--definition", "[bold]nope", "--campaign", "c", "--stage", "s",
             "--once", "--out", "x.jsonl"], tmp_path)
    assert r.returncode == 1
    assert "error:" in r.stderr and "[bold]nope" in r.stderr and "not found" in r.stderr
    assert not (tmp_path / "x.jsonl").exists() and not list(tmp_path.iterdir())  # a failed run makes nothing
    standin.scenario.query_limit = 10
    r = run(poll_args(standin.base, "--once", "--out", "x.jsonl", "--checkpoint", "q.json"), tmp_path)
    assert r.returncode == 1 and "query limit" in r.stderr and "Traceback" not in r.stderr
    r = run(poll_args(standin.base, "--once", "--out", "x.jsonl", "--store", "chdb:st"), tmp_path)
    assert r.returncode == 2 and "Give one destination" in r.stderr
    r = run(poll_args(standin.base, "--once"), tmp_path)
    assert r.returncode == 2 and "No destination" in r.stderr
    r = run(poll_args("samweb.fnal.gov/api", "--once", "--out", "x.jsonl"), tmp_path)
    assert r.returncode == 2 and "not an http(s) URL" in r.stderr
    r = run(poll_args(standin.base, "--once", "--out", "nodir/x.jsonl"), tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run(poll_args(standin.base, "--once", "--out", "x.jsonl", "--interval", "0"), tmp_path)
    assert r.returncode == 2 and "--interval" in r.stderr
    # a checkpoint of another stage
    standin.scenario.query_limit = None
    assert run(poll_args(standin.base, "--once", "--out", "y.jsonl", "--checkpoint", "s.json"), tmp_path).returncode == 0
    r = run(["sam", "poll", "--url", standin.base, "--definition", "nova_def", "--campaign", "c", "--stage", "other",
             "--once", "--out", "y.jsonl", "--checkpoint", "s.json"], tmp_path)
    assert r.returncode == 2 and "another SAM source" in r.stderr
    assert "Traceback" not in r.stderr


def test_torn_out_file_is_cut_and_rewritten(standin, tmp_path):
    """A crash mid-write leaves a torn last line and pending events: the restart cuts it, writes them whole."""
    from ingest.sam import SamHttp, SamPoller, SamSource

    src = SamSource(standin.base, "nova_def", "nova_prod5_mc", "fd_reco", ("nova_proj_1",), "data_tier reco")
    p = SamPoller(src, SamHttp(standin.base), tmp_path / "ck.json")
    res = p.poll()  # crash before commit: the file got one and a half lines
    from schemas.events import encode_event

    first = encode_event(res.events[0]) + b"\n"
    (tmp_path / "sam.jsonl").write_bytes(first + encode_event(res.events[1])[:20])
    r = run(["sam", "poll", "--url", standin.base, "--definition", "nova_def", "--project", "nova_proj_1",
             "--campaign", "nova_prod5_mc", "--stage", "fd_reco", "--output-dims", "data_tier reco", "--once",
             "--out", "sam.jsonl", "--checkpoint", "ck.json"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "sam.jsonl").read_bytes().splitlines(keepends=True)
    assert lines[0] == first
    assert sorted(lines[1:]) == sorted(encode_event(e) + b"\n" for e in res.events)
