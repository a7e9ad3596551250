"""`stagewatch tail condor-log`: a growing HTCondor job event log to Kafka, through kill -9 and restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.condor_log import convert_log
from schemas.events import decode_event, encode_event
from tests.streaming.conftest import CLI, wait_until
from tests.streaming.test_pipeline import read_topic

pytestmark = pytest.mark.servers


def _hdr(num: int, cluster: int, proc: int, hms: str) -> str:
    return f"{num:03d} ({cluster:03d}.{proc:03d}.000) 2024-03-01T{hms}Z "


def job_events(cluster: int, proc: int, minute: int) -> str:
    """submitted, executing, terminated of one job, in HTCondor's text format."""
    t = lambda m: f"{10 + m // 60:02d}:{m % 60:02d}:00"  # noqa: E731
    return (_hdr(0, cluster, proc, t(minute)) + "Job submitted from host: <131.225.1.1:9618?addrs=131.225.1.1-9618>\n...\n"
            + _hdr(1, cluster, proc, t(minute + 1)) + "Job executing on host: <10.0.0.5:9618?addrs=10.0.0.5-9618>\n...\n"
            + _hdr(5, cluster, proc, t(minute + 2)) + "Job terminated.\n\t(1) Normal termination (return value 0)\n"
            "\t\tUsr 0 00:10:00, Sys 0 00:00:10  -  Run Remote Usage\n"
            "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
            "\t\tUsr 0 00:10:00, Sys 0 00:00:10  -  Total Remote Usage\n"
            "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
            "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
            "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n...\n")


def start_tail(p: Any, log: Path, ckpt: Path, out: Path) -> subprocess.Popen:
    f = open(out, "ab")
    return subprocess.Popen([*CLI, "tail", "condor-log", str(log), "--campaign", p.campaign, "--stage", "sim",
                             "--checkpoint", str(ckpt), "--poll-s", "0.05", "--kafka", p.kafka,
                             "--topic-prefix", p.prefix], stdout=f, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def committed_offset(ckpt: Path) -> int:
    try:
        return json.loads(ckpt.read_bytes())["offset"]
    except (OSError, ValueError, KeyError):
        return 0


def test_tail_resumes_after_kill9_without_gap(pipeline: Any, tmp_path: Path) -> None:
    p = pipeline()
    log, ckpt, out = tmp_path / "job.log", tmp_path / "job.ckpt", tmp_path / "tail.out"
    chunks = [job_events(300 + i // 10, i % 10, i % 1000) for i in range(300)]
    log.write_text("")
    t1 = start_tail(p, log, ckpt, out)
    try:
        with open(log, "a") as f:
            for c in chunks[:150]:
                f.write(c)
                f.flush()
                time.sleep(0.005)
        wait_until(lambda: committed_offset(ckpt) > 0, 30, "the tail to commit a first checkpoint")
        os.kill(t1.pid, signal.SIGKILL)  # no chance to flush or commit anything
        t1.wait(10)
        killed_at = committed_offset(ckpt)
        with open(log, "a") as f:  # the log keeps growing while nobody follows it
            for c in chunks[150:220]:
                f.write(c)
        t2 = start_tail(p, log, ckpt, out)
        with open(log, "a") as f:
            for c in chunks[220:]:
                f.write(c)
                f.flush()
                time.sleep(0.002)
        size = log.stat().st_size
        wait_until(lambda: committed_offset(ckpt) == size, 60, "the restarted tail to reach the end of the log")
        os.kill(t2.pid, signal.SIGTERM)
        assert t2.wait(30) == 0
    finally:
        for t in (t1, locals().get("t2")):
            if t is not None and t.poll() is None:
                t.kill()
    text = out.read_text()
    assert f"resuming at byte {killed_at}" in text

    expected = list(convert_log(str(log), campaign=p.campaign, stage="sim"))
    assert len(expected) == 900
    msgs = read_topic(p.kafka, p.topics.job_events, len(expected))
    got: dict[str, bytes] = {}
    for m in msgs:
        ev = decode_event(m.value())
        assert m.key() == ev.job_id.encode()
        assert got.setdefault(ev.event_id, m.value()) == m.value(), "one event_id, two different events"
    assert set(got) == {e.event_id for e in expected}, "a gap (or an unknown event) after the restart"
    # (events published after the last commit before the kill are sent again, with the same ids)
    assert all(got[e.event_id] == encode_event(e) for e in expected)


def checkpoint_at(ckpt: Path) -> tuple[int | None, int]:
    """(inode of the file the checkpoint is in, offset in it)."""
    try:
        c = json.loads(ckpt.read_bytes())
        return c.get("ino"), c["offset"]
    except (OSError, ValueError, KeyError):
        return None, 0


def rotate(log: Path, keep: int = 9) -> None:
    """HTCondor's numbered rotation (EVENT_LOG_MAX_ROTATIONS > 1): .N-1 -> .N, ..., log -> .1, new log."""
    for i in range(keep, 1, -1):
        if os.path.exists(f"{log}.{i - 1}"):
            os.replace(f"{log}.{i - 1}", f"{log}.{i}")
    os.replace(log, f"{log}.1")
    log.write_text("")


def test_tail_follows_rotations_through_kill9_without_gap(pipeline: Any, tmp_path: Path) -> None:
    """Issue 7: a log rotated between two polls lost the unread end of the old file.  Here the log rotates
    while the tail runs, while it is dead (kill -9, twice over) and after the restart: every event reaches
    Kafka, with the ids of a one-shot conversion of everything written, in one record per id."""
    p = pipeline()
    log, ckpt, out = tmp_path / "job.log", tmp_path / "job.ckpt", tmp_path / "tail.out"
    chunks = [job_events(500 + i // 10, i % 10, i % 1000) for i in range(240)]
    written: list[str] = []

    def write(cs: list[str], pause: float = 0.0) -> None:
        with open(log, "a") as f:
            for c in cs:
                f.write(c)
                f.flush()
                written.append(c)
                if pause:
                    time.sleep(pause)

    log.write_text("")
    t1 = start_tail(p, log, ckpt, out)
    t2 = None
    try:
        write(chunks[:60], 0.005)
        wait_until(lambda: checkpoint_at(ckpt)[1] > 0, 30, "the tail to commit a first checkpoint")
        write(chunks[60:80])
        rotate(log)  # the tail has not read the end of the old file yet (or is reading it)
        write(chunks[80:100])
        os.kill(t1.pid, signal.SIGKILL)
        t1.wait(10)
        write(chunks[100:120])  # nobody follows: two more rotations
        rotate(log)
        write(chunks[120:140])
        rotate(log)
        write(chunks[140:160])
        t2 = start_tail(p, log, ckpt, out)
        write(chunks[160:200], 0.002)
        rotate(log)
        write(chunks[200:], 0.002)
        final = (log.stat().st_ino, log.stat().st_size)
        wait_until(lambda: checkpoint_at(ckpt) == final, 60, "the restarted tail to reach the end of job.log")
        os.kill(t2.pid, signal.SIGTERM)
        assert t2.wait(30) == 0
    finally:
        for t in (t1, t2):
            if t is not None and t.poll() is None:
                t.kill()
    assert (tmp_path / "job.log.4").exists() and not (tmp_path / "job.log.5").exists()

    whole = tmp_path / "whole.log"
    whole.write_text("".join(written))
    expected = list(convert_log(str(whole), campaign=p.campaign, stage="sim"))
    assert len(expected) == 720
    msgs = read_topic(p.kafka, p.topics.job_events, len(expected))
    got: dict[str, bytes] = {}
    for m in msgs:
        ev = decode_event(m.value())
        assert got.setdefault(ev.event_id, m.value()) == m.value(), "one event_id, two different events"
    missing = {e.event_id for e in expected} - set(got)
    assert not missing, f"{len(missing)} events lost across the rotations"
    assert set(got) == {e.event_id for e in expected}
    assert all(got[e.event_id] == encode_event(e) for e in expected)
