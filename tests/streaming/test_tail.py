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
from ingest.simulator import simulate_many
from schemas.events import JobEvent, decode_event, encode_event
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


def schedd_chunks(campaign: str) -> tuple[list[str], str]:
    """The tiny preset's jobs of its busiest schedd as a schedd-wide event log, one chunk per event and one
    per 028; every 5th job's first 028 comes 40 chunks late (its events are held until then)."""
    import collections
    import dataclasses

    from ingest.condor.writer import POMS_ATTRS, ad_text, event_text
    from ingest.simulator import tiny

    seen: set[str] = set()
    every = []
    for e in simulate_many([dataclasses.replace(s, campaign=campaign) for s in tiny()], 1):
        if isinstance(e, JobEvent) and e.event_id not in seen:
            seen.add(e.event_id)
            every.append(e)
    schedd = collections.Counter(e.job_id.split("#")[0] for e in every).most_common(1)[0][0]
    evs = [e for e in every if e.job_id.split("#")[0] == schedd]
    evs.sort(key=lambda e: e.ts)
    chunks: list[str] = []
    late: dict[int, str] = {}
    first: set[str] = set()
    site: dict[str, str | None] = {}
    for e in evs:
        if e.type == "started":
            site[e.job_id] = e.site
        chunks.append(event_text(e))
        values = {attr: (site.get(e.job_id) if name == "site" else getattr(e, name))
                  for name, attr in POMS_ATTRS.items()}
        a = ad_text(e, values)
        if e.job_id not in first and int(e.job_id.rsplit(".", 1)[1]) % 5 == 0:
            first.add(e.job_id)
            late[len(chunks) + 40] = a
            continue
        first.add(e.job_id)
        chunks.append(a)
        if len(chunks) in late:
            chunks.append(late.pop(len(chunks)))
    return chunks + list(late.values()), schedd


SCHEDD_ROUTE = ["--campaign-attr", "POMS4_CAMPAIGN_NAME", "--stage-attr", "POMS4_CAMPAIGN_STAGE_NAME",
                "--attr", "site=MATCH_GLIDEIN_Site", "--attr", "submission=POMS4_SUBMISSION_ID",
                "--max-hold-s", "864000"]  # (a late 028 comes hours of log time later)


def test_tail_of_a_schedd_wide_log_through_rotation_and_kill9_while_events_are_held(pipeline: Any,
                                                                                    tmp_path: Path) -> None:
    """Issue 8: events waiting for their job's 028 event are in the checkpoint: a kill -9 while some are held,
    a rotation while nobody follows, and a restart publish exactly the events of a one-shot conversion."""
    from ingest.condor import Routing, convert_logs
    from ingest.condor.writer import POMS_ATTRS

    p = pipeline()
    log, ckpt, out = tmp_path / "EventLog", tmp_path / "EventLog.ckpt", tmp_path / "tail.out"
    chunks, schedd = schedd_chunks(p.campaign)
    assert len(chunks) > 150
    written: list[str] = []

    def write(cs: list[str]) -> None:
        with open(log, "a") as f:
            for c in cs:
                f.write(c)
                written.append(c)

    def start() -> subprocess.Popen:
        f = open(out, "ab")
        return subprocess.Popen([*CLI, "tail", "condor-log", str(log), *SCHEDD_ROUTE, "--schedd", schedd, "--checkpoint", str(ckpt),
                                 "--poll-s", "0.05", "--kafka", p.kafka, "--topic-prefix", p.prefix],
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def saved() -> dict:
        try:
            return json.loads(ckpt.read_bytes())
        except (OSError, ValueError):
            return {}

    log.write_text("")
    t1, t2 = start(), None
    try:
        def waiting(i: int) -> set[str]:
            """Jobs with events in chunks[:i] and no 028 yet: their events are held at a cut there."""
            ids = [(c[:3], c[4:].split(")", 1)[0]) for c in chunks[:i]]  # ("005", "(cluster.proc.000")
            return {j for t, j in ids if t != "028"} - {j for t, j in ids if t == "028"}

        cut = next(i for i in range(60, len(chunks)) if waiting(i))  # (a late 028 is still to come)
        write(chunks[:cut])
        size = log.stat().st_size
        wait_until(lambda: saved().get("offset") == size, 60, "the tail to commit the end of the log")
        assert saved()["held"], "the test means to kill the tail while events are held"
        os.kill(t1.pid, signal.SIGKILL)
        t1.wait(10)
        write(chunks[cut:cut + 30])
        os.replace(log, f"{log}.old")  # EVENT_LOG_MAX_ROTATIONS = 1, while nobody follows
        log.write_text("")
        t2 = start()
        write(chunks[cut + 30:])
        final = (log.stat().st_ino, log.stat().st_size)
        wait_until(lambda: (saved().get("ino"), saved().get("offset")) == final, 60,
                   "the restarted tail to reach the end of EventLog")
        os.kill(t2.pid, signal.SIGTERM)
        assert t2.wait(30) == 0
    finally:
        for t in (t1, t2):
            if t is not None and t.poll() is None:
                t.kill()
    text = " ".join(out.read_text().split())
    assert f"stopped following {log} at byte {final[1]}" in text and "0 dead letters" in text
    assert "job ad (028) events" in text

    whole = tmp_path / "whole.log"
    whole.write_text("".join(written))
    routing = Routing(attrs=POMS_ATTRS, max_hold_s=864000)
    expected = list(convert_logs([str(whole)], routing=routing, schedd=schedd))
    assert len(expected) == sum(1 for c in chunks if not c.startswith("028"))
    msgs = read_topic(p.kafka, p.topics.job_events, len(expected))
    got: dict[str, bytes] = {}
    for m in msgs:
        ev = decode_event(m.value())
        assert got.setdefault(ev.event_id, m.value()) == m.value(), "one event_id, two different events"
    assert set(got) == {e.event_id for e in expected}, "events lost or invented across kill -9 and rotation"
    assert all(got[e.event_id] == encode_event(e) for e in expected)
    assert {decode_event(v).stage for v in got.values()} == {"mcgen", "reco"}


def test_tail_whose_log_was_replaced_says_what_was_lost_and_what_to_do(pipeline: Any, tmp_path: Path) -> None:
    """A checkpoint whose file is gone (deleted, replaced by another log, no rotated copy) is an error that
    says so; a rotation is not (the message no longer tells the user to start over after one)."""
    p = pipeline()
    log, ckpt, out = tmp_path / "job.log", tmp_path / "job.ckpt", tmp_path / "tail.out"
    log.write_text("".join(job_events(700, i, i) for i in range(5)))
    t = start_tail(p, log, ckpt, out)
    try:
        wait_until(lambda: committed_offset(ckpt) == log.stat().st_size, 30, "the tail to read the log")
        os.kill(t.pid, signal.SIGTERM)
        assert t.wait(30) == 0
        other = tmp_path / "other.log"  # made while job.log exists: another inode, for sure
        other.write_text(job_events(800, 0, 0))
        os.replace(other, log)  # replaced by another, shorter log: nothing holds the first one's unread end
        t = start_tail(p, log, ckpt, out)
        assert t.wait(30) == 2
    finally:
        if t.poll() is None:
            t.kill()
    text = " ".join(out.read_text().split())
    assert f"stopped following {log} at byte" in text and "published 15 events" in text
    assert "0 unparseable stretches skipped" in text and "0 refused by the contract" in text
    assert f"is neither {log} nor a rotated copy of it" in text and "Start with a new --checkpoint" in text
    assert "Rotations to .old, .1, ... are followed without help" in text
    assert "if the log was rotated" not in text
