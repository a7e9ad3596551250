"""LogFollower through log rotations: nothing of the old file is lost, nothing is counted twice.

The logs are real HTCondor text (parsed by htcondor2).  ``CondorRotation`` does what HTCondor's
``WriteUserLog::checkGlobalLogRotation`` / ``doRotation`` do to an event log (EVENT_LOG_MAX_ROTATIONS):
rewrite the ``008 ... Global JobLog:`` header of the full file in place (its size and event count), rename
``PATH.N-1`` to ``PATH.N`` down to ``PATH`` to ``PATH.1`` (or ``PATH`` to ``PATH.old`` when only one
rotation is kept, overwriting the previous one), then start ``PATH`` with a new header.  Users rotate their
``log = job.log`` by hand (rename to any name, or copy then truncate), which is tested too.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ingest.condor_log import LogFollower, LogReplaced, convert_log
from schemas.events import decode_event, encode_event
from tests.ingest.test_condor_log import KW, T, disconnected, executing, submitted, terminated

HERE = Path(__file__).parent


def job(i: int) -> list[str]:
    """The 4 events of job 50.i: submitted, executing, disconnected, terminated."""
    j = f"50.{i}"
    m = 10 + i
    return [submitted(j, T(f"10:{m:02d}:00")), executing(j, T(f"10:{m:02d}:10")),
            disconnected(j, T(f"10:{m:02d}:20")), terminated(j, T(f"10:{m:02d}:50"))]


def events(n_jobs: int) -> list[str]:
    return [e for i in range(n_jobs) for e in job(i)]


def header(seq: int, size: int = 0, count: int = 0, max_rot: int = 3) -> str:
    """A global event log header as HTCondor writes it (info padded to 256 characters)."""
    info = (f"Global JobLog: ctime=1709287200 id=sched1.77.1709287200.{seq} sequence={seq} size={size} "
            f"events={count} offset=0 event_off=0 max_rotation={max_rot} creator_name=<SCHEDD>")
    return f"008 (-01.-01.-01) 2024-03-01T10:00:00Z {info.ljust(256)}\n...\n"


class CondorRotation:
    """An event log written and rotated the way HTCondor does it; remembers every byte it wrote, in order."""

    def __init__(self, path: Path, max_rotations: int) -> None:
        self.path, self.max_rotations, self.seq = path, max_rotations, 1
        self.written: list[str] = []  # what a one-shot conversion of the whole history reads
        self._new_file()

    def _new_file(self) -> None:
        self.path.write_text(header(self.seq, max_rot=self.max_rotations))
        self.written.append(header(self.seq, max_rot=self.max_rotations))

    def append(self, *chunks: str) -> None:
        with open(self.path, "a") as f:
            for c in chunks:
                f.write(c)
                self.written.append(c)

    def rotate(self) -> None:
        size = self.path.stat().st_size
        with open(self.path, "r+") as f:  # the header rewrite: same length, new numbers
            new = header(self.seq, size=size, count=99, max_rot=self.max_rotations)
            assert len(new) == len(header(self.seq, max_rot=self.max_rotations))
            f.write(new)
        if self.max_rotations == 1:
            os.replace(self.path, f"{self.path}.old")
        else:
            for i in range(self.max_rotations, 1, -1):
                if os.path.exists(f"{self.path}.{i - 1}"):
                    os.replace(f"{self.path}.{i - 1}", f"{self.path}.{i}")
            os.replace(self.path, f"{self.path}.1")
        self.seq += 1
        self._new_file()

    def expected(self, tmp: Path) -> list:
        """The records of a one-shot conversion of everything written, in the order written."""
        whole = tmp / "whole-history.log"
        whole.write_text("".join(self.written))
        return list(convert_log(whole, **KW))


def copytruncate(p: Path) -> None:
    """logrotate's copytruncate: shift PATH.N up, copy PATH to PATH.1, truncate PATH in place."""
    n = 1
    while os.path.exists(f"{p}.{n}"):
        n += 1
    for i in range(n, 1, -1):
        os.replace(f"{p}.{i - 1}", f"{p}.{i}")
    shutil.copy(p, f"{p}.1")
    with open(p, "r+") as f:
        f.truncate(0)


def follower(p: Path, ckpt: Path, **kw) -> LogFollower:
    return LogFollower(p, **{**KW, "rotation_grace_s": 0.0, **kw}, checkpoint_path=ckpt)


def drain(fol: LogFollower, published: list, *, max_events: int | None = None) -> None:
    """Poll, publish, commit (as `tail` does) until the follower has nothing more to do."""
    while True:
        before = fol.offset
        got = fol.poll(max_events)
        published.extend(got)
        if fol.offset != fol.committed_offset:
            fol.commit()
        if fol.offset == before and not got:
            return


def assert_complete(published: list, expected: list) -> None:
    """Every expected record published, nothing else, and one id always means the same record."""
    by_id: dict[str, bytes] = {}
    for e in published:
        assert by_id.setdefault(e.event_id, encode_event(e)) == encode_event(e), "one event_id, two records"
    assert set(by_id) == {e.event_id for e in expected}, "a gap, or an event a one-shot conversion does not give"
    assert all(by_id[e.event_id] == encode_event(e) for e in expected)


# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_rotations", [1, 3], ids=["old", "numbered"])
def test_rotation_between_polls_finishes_the_old_file_first(tmp_path, max_rotations):
    """The issue's case: 16 events, 7 of them at the end of the old file when it is rotated."""
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(4)
    log = CondorRotation(p, max_rotations)
    log.append(*evs[:4])
    fol = follower(p, ckpt)
    published: list = []
    drain(fol, published)
    log.append(*evs[4:11])  # written, then the log rotates before the next poll
    log.rotate()
    log.append(*evs[11:])
    drain(fol, published)
    assert len(published) == 16
    assert [e.event_id for e in published] == [e.event_id for e in log.expected(tmp_path)]  # in order too
    assert fol.stats.rotations == 1
    assert os.path.exists(f"{p}.old" if max_rotations == 1 else f"{p}.1")


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "restart-from-checkpoint"])
def test_two_rotations_between_polls_read_dot2_then_dot1_then_the_log(tmp_path, restart):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(6)
    log = CondorRotation(p, 3)
    log.append(*evs[:5])
    fol = follower(p, ckpt)
    published: list = []
    drain(fol, published)
    log.append(*evs[5:9])
    log.rotate()  # the polled file is now job.log.1 ...
    log.append(*evs[9:15])
    log.rotate()  # ... and then job.log.2; the second file is job.log.1
    log.append(*evs[15:])
    if restart:
        fol.close()
        fol = follower(p, ckpt)
    drain(fol, published)
    expected = log.expected(tmp_path)
    assert [e.event_id for e in published] == [e.event_id for e in expected]
    assert fol.stats.rotations == 2


def test_one_rotation_kept_and_rotated_twice(tmp_path, caplog):
    """EVENT_LOG_MAX_ROTATIONS = 1, two rotations: the polled file is deleted (job.log.old overwritten).
    A running follower still holds it open and loses nothing; after a restart it is gone, which is an
    error that says so (not a silent gap)."""
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(5)
    log = CondorRotation(p, 1)
    log.append(*evs[:3])
    fol = follower(p, ckpt)
    published: list = []
    drain(fol, published)
    log.append(*evs[3:8])
    log.rotate()
    log.append(*evs[8:14])
    log.rotate()
    log.append(*evs[14:])
    drain(fol, published)
    assert [e.event_id for e in published] == [e.event_id for e in log.expected(tmp_path)]

    p2, ckpt2 = tmp_path / "b" / "job.log", tmp_path / "b" / "job.ckpt"
    p2.parent.mkdir()
    log2 = CondorRotation(p2, 1)
    log2.append(*evs[:3])
    drain(follower(p2, ckpt2), [])
    log2.append(*evs[3:8])
    log2.rotate()
    log2.append(*evs[8:14])
    log2.rotate()
    with pytest.raises(LogReplaced, match="deleted or replaced") as err:
        follower(p2, ckpt2).poll()
    assert "--checkpoint" in str(err.value)


def test_restart_at_every_poll_across_rotations_loses_nothing_and_renames_nothing(tmp_path):
    """A kill -9 at any poll: the events of that poll were published but not committed.  The restarted
    follower (from the checkpoint alone) republishes from the last commit, through every rotation kind."""
    evs = events(8)

    def scenario(log: CondorRotation, p: Path):
        yield lambda: log.append(*evs[:5])
        yield lambda: log.append(*evs[5:7])
        yield log.rotate  # numbered: .1
        yield lambda: log.append(*evs[7:12])
        yield log.rotate  # .2 and .1
        yield lambda: log.append(*evs[12:17])
        yield lambda: os.replace(p, p.with_name("job.log-20240301"))  # a user's own rename
        yield lambda: (p.write_text(""), log.written.append(""))
        yield lambda: log.append(*evs[17:23])
        yield lambda: copytruncate(p)
        yield lambda: log.append(*evs[23:])

    n_polls = 0
    for crash_at in range(0, 40):
        d = tmp_path / f"run{crash_at}"
        d.mkdir()
        p, ckpt = d / "job.log", d / "job.ckpt"
        log = CondorRotation(p, 3)
        published: list = []
        fol = follower(p, ckpt)
        polls = 0
        crashed = False
        for step in scenario(log, p):
            step()
            # poll a few events at a time, as a slow publisher would, and crash at poll `crash_at`
            while True:
                before = fol.offset
                got = fol.poll(max_events=3)
                published.extend(got)
                polls += 1
                if polls == crash_at and not crashed:
                    crashed = True
                    fol.close()
                    fol = follower(p, ckpt)  # kill -9: nothing committed after this poll
                    continue
                if fol.offset != fol.committed_offset:
                    fol.commit()
                if fol.offset == before and not got:
                    break
        drain(fol, published)
        n_polls = max(n_polls, polls)
        assert_complete(published, log.expected(d))
        if crash_at > n_polls:
            break
    assert n_polls > 10


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "restart-from-checkpoint"])
def test_copy_truncate_rotation_continues_in_the_copy(tmp_path, restart, caplog):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(4)
    p.write_text("".join(evs[:3]))
    fol = follower(p, ckpt)
    published: list = []
    drain(fol, published)
    with open(p, "a") as f:
        f.write("".join(evs[3:9]))
    copytruncate(p)
    with open(p, "a") as f:
        f.write("".join(evs[9:]))
    if restart:
        fol.close()
        fol = follower(p, ckpt)
    with caplog.at_level(logging.WARNING, logger="ingest.condor"):
        drain(fol, published)
    whole = tmp_path / "whole.log"
    whole.write_text("".join(evs))
    assert [e.event_id for e in published] == [e.event_id for e in convert_log(whole, **KW)]
    assert "copy" in caplog.text


def test_truncated_in_place_with_no_copy_is_an_error_that_names_the_loss(tmp_path):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(2)
    p.write_text("".join(evs[:4]))
    fol = follower(p, ckpt)
    drain(fol, [])
    p.write_text("".join(evs[4:6]))  # shorter: rewritten in place, no copy anywhere
    with pytest.raises(LogReplaced, match="truncated or rewritten in place"):
        fol.poll()
    p.write_text("".join(evs[4:]) * 3)  # longer than the position: the fingerprint still tells
    with pytest.raises(LogReplaced, match="truncated or rewritten in place"):
        follower(p, tmp_path / "job.ckpt").poll()


def test_rename_outside_condor_naming_is_found_by_inode_after_restart(tmp_path):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(3)
    p.write_text("".join(evs[:4]))
    published: list = []
    drain(follower(p, ckpt), published)
    with open(p, "a") as f:
        f.write("".join(evs[4:7]))
    os.rename(p, tmp_path / "job.log-20240301")  # logrotate dateext
    p.write_text("".join(evs[7:]))
    drain(follower(p, ckpt), published)
    whole = tmp_path / "whole.log"
    whole.write_text("".join(evs))
    assert [e.event_id for e in published] == [e.event_id for e in convert_log(whole, **KW)]


def test_a_rotated_file_still_written_is_read_until_quiet_and_later_writes_are_counted(tmp_path, caplog):
    """A shadow that still had job.log open keeps writing to the renamed file: the follower stays on it
    for rotation_grace_s after its last write; what arrives after it left is counted and logged."""
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(3)
    p.write_text("".join(evs[:2]))
    fol = follower(p, ckpt, rotation_grace_s=3600)
    published: list = []
    drain(fol, published)
    os.rename(p, f"{p}.1")
    p.write_text("".join(evs[6:8]))
    with open(f"{p}.1", "a") as f:
        f.write("".join(evs[2:6]))  # written after the rename
    drain(fol, published)
    assert [e.event_id for e in published] == [e.event_id for e in
                                                 list(_convert_text(tmp_path, "".join(evs[:6])))]
    fol.rotation_grace_s = 0.0
    drain(fol, published)
    assert len(published) == 8 and fol.stats.rotations == 1
    with open(f"{p}.1", "a") as f:
        f.write(evs[8])  # too late
    with caplog.at_level(logging.WARNING, logger="ingest.condor"):
        drain(fol, published)
    assert fol.stats.late_bytes == len(evs[8])
    assert "late_write" in caplog.text


def test_a_torn_last_event_of_a_rotated_file_is_skipped_with_a_count(tmp_path, caplog):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(2)
    p.write_text("".join(evs[:3]) + evs[3][:40])  # the writer died mid-event, then the log was rotated
    fol = follower(p, ckpt)
    published: list = []
    drain(fol, published)
    os.rename(p, f"{p}.old")
    p.write_text("".join(evs[4:]))
    with caplog.at_level(logging.WARNING, logger="ingest.condor"):
        drain(fol, published)
    assert [e.type for e in published] == ["submitted", "started", "disconnected"] + [
        "submitted", "started", "disconnected", "terminated"]
    assert fol.stats.skipped_bytes == 40 and "incomplete last event" in caplog.text


def test_a_format_1_checkpoint_still_resumes(tmp_path):
    """Checkpoints written before rotation support had no inode: the fingerprint alone finds the file."""
    import json

    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(2)
    p.write_text("".join(evs[:4]))
    fol = follower(p, ckpt)
    first: list = []
    drain(fol, first)
    old = json.loads(ckpt.read_bytes())
    v1 = {k: old[k] for k in ("path", "schedd", "offset", "head_len", "head_sha1", "jobs")}
    v1["format"] = "stagewatch-condor-log-checkpoint/1"
    ckpt.write_text(json.dumps(v1))
    with open(p, "a") as f:
        f.write("".join(evs[4:]))
    rest: list = []
    drain(follower(p, ckpt), rest)
    assert [e.type for e in rest] == ["submitted", "started", "disconnected", "terminated"]


def _convert_text(tmp: Path, text: str) -> list:
    whole = tmp / "text.log"
    whole.write_text(text)
    return list(convert_log(whole, **KW))


# ---------------------------------------------------------------------------------------------------
# kill -9 of a real follower process while the log rotates
# ---------------------------------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from ingest.condor_log import follow_log
    from schemas.events import encode_event
    out = os.open({out!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    for ev in follow_log({log!r}, campaign="mc2024", stage="sim", checkpoint_path={ckpt!r}, poll_s=0.01,
                         rotation_grace_s=0.05):
        os.write(out, encode_event(ev) + b"\\n")  # published (durable against SIGKILL)
        time.sleep(0.003)  # a slow publisher, so that kills land inside batches
""")


def _published(out: Path) -> list:
    """The complete lines the child published so far (a line still being written is read next time: a read
    racing the child's write may see part of it)."""
    if not out.exists():
        return []
    data = out.read_bytes()
    return [decode_event(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]


def test_kill_9_while_the_log_rotates_then_restart_loses_nothing(tmp_path):
    p, ckpt, out = tmp_path / "job.log", tmp_path / "job.ckpt", tmp_path / "published.jsonl"
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=str(HERE.parent.parent), out=str(out), log=str(p), ckpt=str(ckpt)))
    log = CondorRotation(p, 9)  # no rotated file is deleted while the follower may still need it
    evs = events(40)
    for round_ in range(5):
        child = subprocess.Popen([sys.executable, str(script)])
        try:
            deadline = time.monotonic() + 20
            while not ckpt.exists() and time.monotonic() < deadline:
                time.sleep(0.005)  # the first start pins job.log before it hands out anything
            chunk = evs[round_ * 32:(round_ + 1) * 32]
            log.append(*chunk[:20])
            time.sleep(0.05)
            log.rotate()  # while the child reads: the end of the old file is still unread
            log.append(*chunk[20:])
            target = len(_published(out)) + 10 + 13 * round_  # later rounds get past some commits
            deadline = time.monotonic() + 10
            while len(_published(out)) < target and time.monotonic() < deadline:
                time.sleep(0.002)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    expected = log.expected(tmp_path)
    assert len(expected) == 160
    child = subprocess.Popen([sys.executable, str(script)])  # catch up on everything
    try:
        deadline = time.monotonic() + 30
        while {e.event_id for e in _published(out)} != {e.event_id for e in expected} \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert_complete(_published(out), expected)
    assert (tmp_path / "job.log.5").exists() and not (tmp_path / "job.log.6").exists()  # five rotations


def test_a_follower_killed_before_its_first_commit_still_reads_the_rotated_file(tmp_path):
    """The first poll pins the file (checkpoint at byte 0 of its inode) before handing out events, so a
    kill -9 before any commit, then a rotation, does not make the restart begin at the new file."""
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    evs = events(2)
    p.write_text("".join(evs[:3]))
    fol = follower(p, ckpt)
    assert len(fol.poll()) == 3  # published, never committed: killed here
    fol.close()
    with open(p, "a") as f:
        f.write(evs[3])
    os.rename(p, f"{p}.old")
    p.write_text("".join(evs[4:]))
    published: list = []
    drain(follower(p, ckpt), published)
    assert len(published) == 8
