"""ingest.condor_log against HTCondor user logs written by hand in the real text format.

Every log here is parsed by the real bindings (htcondor2.JobEventLog); the helpers below produce the
exact layouts HTCondor writes (checked event by event against what htcondor2 exposes).  Most logs use
the UTC ISO header (``2024-03-01T10:00:00Z``) so expected Unix times do not depend on the test machine's
time zone; one test covers the older local-time header.
"""

from __future__ import annotations

import calendar
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from ingest.condor_log import (
    CheckpointMismatch,
    LogFollower,
    LogReplaced,
    convert_log,
    event_id,
    follow_log,
    parse_usage,
)
from schemas.events import decode_event, encode_event

HERE = Path(__file__).parent
SAMPLES = HERE / "condor_logs"
KW = dict(campaign="mc2024", stage="sim")


# ---------------------------------------------------------------------------------------------------
# Real-format event writers
# ---------------------------------------------------------------------------------------------------


def T(hms: str, day: str = "2024-03-01") -> str:
    """Header time in HTCondor's UTC ISO format."""
    return f"{day}T{hms}Z"


def U(hms: str, day: str = "2024-03-01") -> float:
    """The Unix time of T(hms)."""
    return float(calendar.timegm(time.strptime(f"{day} {hms}", "%Y-%m-%d %H:%M:%S")))


def _hdr(num: int, job: str, when: str) -> str:
    cluster, proc = job.split(".")
    return f"{num:03d} ({int(cluster):03d}.{int(proc):03d}.000) {when} "


def submitted(job: str, when: str) -> str:
    return _hdr(0, job, when) + "Job submitted from host: <131.225.1.1:9618?addrs=131.225.1.1-9618>\n...\n"


def executing(job: str, when: str, ip: str = "10.0.0.5", slot: str | None = None, props: str = "") -> str:
    s = _hdr(1, job, when) + f"Job executing on host: <{ip}:9618?addrs={ip}-9618&noUDP>\n"
    if slot:
        s += f"\tSlotName: {slot}\n"
    s += props
    return s + "...\n"


def image_size(job: str, when: str) -> str:
    return (_hdr(6, job, when) + "Image size of job updated: 1000\n"
            "\t50  -  MemoryUsage of job (MB)\n\t40000  -  ResidentSetSize of job (KB)\n...\n")


def _usage(usr: str, sys_: str) -> str:
    return f"Usr 0 {usr}, Sys 0 {sys_}"


def evicted(job: str, when: str, usr: str = "00:40:00", sys_: str = "00:00:10") -> str:
    return (_hdr(4, job, when) + "Job was evicted.\n"
            "\t(0) Job was not checkpointed.\n"
            f"\t\t{_usage(usr, sys_)}  -  Run Remote Usage\n"
            "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
            "\t0  -  Run Bytes Sent By Job\n"
            "\t0  -  Run Bytes Received By Job\n...\n")


def terminated(job: str, when: str, *, ret: int | None = 0, sig: int | None = None,
               usr: str = "01:10:00", sys_: str = "00:01:00", cpus: int | None = 1) -> str:
    if sig is None:
        how = f"\t(1) Normal termination (return value {ret})\n"
    else:
        how = f"\t(0) Abnormal termination (signal {sig})\n\t(0) No core file\n"
    s = (_hdr(5, job, when) + "Job terminated.\n" + how
         + f"\t\t{_usage(usr, sys_)}  -  Run Remote Usage\n"
         "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
         f"\t\t{_usage(usr, sys_)}  -  Total Remote Usage\n"
         "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
         "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
         "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n")
    if cpus is not None:
        s += ("\tPartitionable Resources :    Usage  Request Allocated\n"
              f"\t   Cpus                 :                 {cpus}         {cpus}\n"
              "\t   Disk (KB)            :       10       100    100\n"
              "\t   Memory (MB)          :       50      2000   2048\n")
    return s + "...\n"


def held(job: str, when: str, reason: str = "Error from slot1@wn05: Failed to open '/data/in.root'") -> str:
    return _hdr(12, job, when) + f"Job was held.\n\t{reason}\n\tCode 13 Subcode 2\n...\n"


def released(job: str, when: str) -> str:
    return _hdr(13, job, when) + "Job was released.\n\tvia condor_release (by user alice)\n...\n"


def removed(job: str, when: str) -> str:
    return _hdr(9, job, when) + "Job was aborted.\n\tvia condor_rm (by user alice)\n...\n"


def disconnected(job: str, when: str) -> str:
    return (_hdr(22, job, when) + "Job disconnected, attempting to reconnect\n"
            "    Socket between submit and execute hosts closed unexpectedly\n"
            "    Trying to reconnect to slot1@wn05 <10.0.0.5:9618?addrs=10.0.0.5-9618>\n...\n")


def job_ad_info(job: str, when: str) -> str:
    cluster, proc = job.split(".")
    return (_hdr(28, job, when) + "Job ad information event triggered.\n"
            f"Proc = {int(proc)}\nEventTime = \"{when.rstrip('Z')}\"\n"
            "TriggerEventTypeName = \"ULOG_JOB_TERMINATED\"\nTriggerEventTypeNumber = 5\n"
            f"Cluster = {int(cluster)}\nEventTypeNumber = 28\n...\n")


def _write(directory: Path, text: str, name: str = "job.log") -> Path:
    p = directory / name
    p.write_text(text)
    return p


def convert(path: Path, **kw) -> list:
    return list(convert_log(path, **{**KW, **kw}))


def ids(events) -> list[str]:
    return [e.event_id for e in events]


# ---------------------------------------------------------------------------------------------------
# convert_log: mapping
# ---------------------------------------------------------------------------------------------------


def test_every_mapped_type_from_the_sample_log():
    evs = convert(SAMPLES / "all_types.log", schedd="sched1", submission="sub-7")
    assert [(e.job_id, e.type) for e in evs] == [
        ("sched1#200.0", "submitted"),
        ("sched1#200.1", "submitted"),
        ("sched1#200.0", "started"),
        ("sched1#200.0", "suspended"),
        ("sched1#200.0", "unsuspended"),
        ("sched1#200.0", "disconnected"),
        ("sched1#200.0", "reconnected"),
        ("sched1#200.0", "disconnected"),
        ("sched1#200.0", "reconnect_failed"),
        ("sched1#200.0", "started"),
        ("sched1#200.0", "shadow_exception"),
        ("sched1#200.0", "held"),
        ("sched1#200.0", "released"),
        ("sched1#200.1", "started"),
        ("sched1#200.0", "removed"),
        ("sched1#200.1", "terminated"),
    ]  # 035 cluster submitted, 006 image size and 028 job ad information are skipped
    assert all(e.campaign == "mc2024" and e.stage == "sim" and e.submission == "sub-7" for e in evs)
    by = {(e.job_id, e.type, e.ts): e for e in evs}

    first_start = by[("sched1#200.0", "started", U("10:01:00"))]
    assert (first_start.host, first_start.site, first_start.cores) == ("wn05.example.org", "MWT2", 4)
    # events of a running attempt say where it runs; the attempt ends with reconnect_failed
    assert by[("sched1#200.0", "suspended", U("10:02:00"))].host == "wn05.example.org"
    rf = by[("sched1#200.0", "reconnect_failed", U("10:26:00"))]
    assert (rf.reason, rf.wall_s, rf.site) == ("Job lease expired", 1500.0, "MWT2")
    assert by[("sched1#200.0", "disconnected", U("10:04:00"))].reason == (
        "Socket between submit and execute hosts closed unexpectedly")

    second_start = by[("sched1#200.0", "started", U("10:30:00"))]
    assert (second_start.host, second_start.site, second_start.cores) == ("10.0.0.6", None, None)
    se = by[("sched1#200.0", "shadow_exception", U("10:31:00"))]
    assert se.reason.startswith("Error from slot1@wn06.example.org: Failed to open")
    assert se.wall_s == 60.0
    h = by[("sched1#200.0", "held", U("10:32:00"))]
    assert h.reason == "Error from slot1@wn06.example.org: Failed to open '/data/in.root'"
    assert (h.host, h.wall_s) == (None, None)  # the attempt already ended with the shadow exception
    assert by[("sched1#200.0", "released", U("10:40:00"))].reason == "via condor_release (by user alice)"
    rm = by[("sched1#200.0", "removed", U("10:50:00"))]
    assert (rm.reason, rm.wall_s) == ("via condor_rm (by user alice)", None)

    term = by[("sched1#200.1", "terminated", U("12:41:00"))]
    assert (term.exit_code, term.signal) == (0, None)
    assert (term.cpu_user_s, term.cpu_sys_s, term.wall_s, term.cores) == (6600.0, 120.0, 7200.0, 1)
    assert (term.host, term.site) == ("wn07.example.org", None)  # alias= of the sinful string

    # the records satisfy the contract and round-trip through its JSON
    for e in evs:
        assert decode_event(encode_event(e)) == e


def test_signal_versus_exit_code_and_cpu_and_wall(tmp_path):
    p = _write(tmp_path, submitted("7.0", T("10:00:00")) + executing("7.0", T("10:00:30"))
               + terminated("7.0", T("10:10:30"), sig=9, usr="00:05:00", sys_="00:00:03", cpus=8)
               + submitted("7.1", T("10:00:00")) + executing("7.1", T("10:01:00"))
               + terminated("7.1", T("11:01:00"), ret=3, usr="00:59:00", sys_="00:00:30", cpus=None))
    evs = {e.job_id: e for e in convert(p) if e.type == "terminated"}
    killed, failed = evs["7.0"], evs["7.1"]
    assert (killed.signal, killed.exit_code) == (9, None)
    assert (killed.cpu_user_s, killed.cpu_sys_s, killed.wall_s, killed.cores) == (300.0, 3.0, 600.0, 8)
    assert (failed.exit_code, failed.signal) == (3, None)
    assert (failed.cpu_user_s, failed.cpu_sys_s, failed.wall_s, failed.cores) == (3540.0, 30.0, 3600.0, None)


def test_evicted_then_restarted_gives_each_attempt_its_own_wall_and_host(tmp_path):
    p = _write(tmp_path, submitted("123.0", T("10:00:00"))
               + executing("123.0", T("10:05:00"), ip="10.0.0.5", slot="slot1_1@wn05",
                           props="\tCpus = 2\n\tGLIDEIN_Site = \"Nebraska\"\n")
               + image_size("123.0", T("10:06:00"))
               + evicted("123.0", T("11:00:00"), usr="00:40:00", sys_="00:00:10")
               + executing("123.0", T("11:10:00"), ip="10.0.0.9", slot="slot1_4@wn09")
               + terminated("123.0", T("12:30:00"), usr="01:10:00", sys_="00:01:00", cpus=1))
    evs = convert(p)
    assert [e.type for e in evs] == ["submitted", "started", "evicted", "started", "terminated"]
    _, s1, ev, s2, term = evs
    assert (s1.host, s1.site, s1.cores) == ("wn05", "Nebraska", 2)
    assert (ev.wall_s, ev.cpu_user_s, ev.cpu_sys_s) == (3300.0, 2400.0, 10.0)
    assert (ev.host, ev.site, ev.cores) == ("wn05", "Nebraska", 2)  # cores of the attempt's slot
    assert (s2.host, s2.site) == ("wn09", None)
    assert (term.wall_s, term.cpu_user_s, term.host, term.cores) == (4800.0, 4200.0, "wn09", 1)


def test_hold_or_removal_of_a_running_job_ends_its_attempt(tmp_path):
    p = _write(tmp_path, executing("6.0", T("10:00:00"), slot="slot1@wn01") + held("6.0", T("10:20:00"))
               + released("6.0", T("10:30:00")) + executing("6.0", T("10:40:00"), slot="slot2@wn02")
               + removed("6.0", T("10:45:00")))
    _, h, rel, _, rm = convert(p)
    assert (h.type, h.wall_s, h.host, h.reason) == (
        "held", 1200.0, "wn01", "Error from slot1@wn05: Failed to open '/data/in.root'")
    assert (rel.host, rel.wall_s) == (None, None)
    assert (rm.type, rm.wall_s, rm.host, rm.reason) == ("removed", 300.0, "wn02", "via condor_rm (by user alice)")


def test_requeued_exit_is_an_eviction_with_the_exit_code(tmp_path):
    """on_exit_remove = false: HTCondor logs the exit as an eviction with the termination inside it."""
    p = _write(tmp_path, executing("6.1", T("10:00:00")) + _hdr(4, "6.1", T("10:10:00")) + "Job was evicted.\n"
               "\t(0) Job terminated and was requeued\n"
               "\t\tUsr 0 00:09:00, Sys 0 00:00:10  -  Run Remote Usage\n"
               "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
               "\t29  -  Run Bytes Sent By Job\n\t144  -  Run Bytes Received By Job\n"
               "\t(1) Normal termination (return value 3)\n"
               "\tThe OnExitRemove expression 'ExitCode == 0' evaluated to False\n...\n")
    _, ev = convert(p)
    assert (ev.type, ev.exit_code, ev.signal, ev.wall_s, ev.cpu_user_s) == ("evicted", 3, None, 600.0, 540.0)
    assert ev.reason == "The OnExitRemove expression 'ExitCode == 0' evaluated to False"


def test_skipped_event_types_produce_nothing(tmp_path):
    p = _write(tmp_path, image_size("5.0", T("10:00:00")) + job_ad_info("5.0", T("10:00:01"))
               + _hdr(35, "5.-1", T("10:00:02")) + "Cluster submitted from host: <131.225.1.1:9618>\n...\n")
    assert convert(p) == []


def test_job_id_without_and_with_schedd(tmp_path):
    p = _write(tmp_path, submitted("42.3", T("10:00:00")))
    (plain,) = convert(p)
    (named,) = convert(p, schedd="schedd01.fnal.gov")
    assert (plain.job_id, named.job_id) == ("42.3", "schedd01.fnal.gov#42.3")
    assert plain.event_id == event_id(None, 42, 3, 0, U("10:00:00"), 0)
    assert named.event_id != plain.event_id


def test_local_time_header_and_sub_second_times(tmp_path):
    p = _write(tmp_path, _hdr(0, "1.0", "2017-06-20 10:00:00") + "Job submitted from host: <1.2.3.4:9618>\n...\n"
               + _hdr(0, "1.1", "2024-03-01T10:00:00.250Z") + "Job submitted from host: <1.2.3.4:9618>\n...\n")
    old, new = convert(p)
    assert old.ts == datetime(2017, 6, 20, 10, 0, 0).timestamp()  # no zone: the converter's local time
    assert new.ts == U("10:00:00") + 0.25


def test_utc_headers_do_not_depend_on_the_local_time_zone(monkeypatch):
    p = SAMPLES / "all_types.log"
    utc = convert(p)
    monkeypatch.setenv("TZ", "America/Chicago")
    time.tzset()
    try:
        chicago = convert(p)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert [(e.event_id, e.ts) for e in chicago] == [(e.event_id, e.ts) for e in utc]
    assert utc[1].ts == U("10:00:00")


def test_parse_usage():
    assert parse_usage("Usr 0 01:10:00, Sys 0 00:01:00") == (4200.0, 60.0)
    assert parse_usage("Usr 1 00:00:01, Sys 2 00:00:00") == (86401.0, 172800.0)
    assert parse_usage(None) is None and parse_usage("nonsense") is None


def test_unparseable_event_is_skipped_and_later_ids_are_unchanged(caplog, tmp_path):
    good = submitted("9.0", T("10:00:00")) + executing("9.0", T("10:01:00"))
    tail = terminated("9.0", T("10:31:00"))
    bad = _hdr(5, "9.0", T("10:30:00")) + "Job terminated.\n\tnonsense\n...\n"
    clean = convert(_write(tmp_path, good + tail, "clean.log"))
    dirty = convert(_write(tmp_path, good + bad + tail, "dirty.log"))
    assert ids(dirty) == ids(clean)
    assert "skipping unparseable bytes" in caplog.text


# ---------------------------------------------------------------------------------------------------
# convert_log: ids
# ---------------------------------------------------------------------------------------------------


def test_event_ids_are_stable_across_runs_and_unique():
    p = SAMPLES / "all_types.log"
    a, b = convert(p, schedd="s1"), convert(p, schedd="s1")
    assert [encode_event(e) for e in a] == [encode_event(e) for e in b]
    assert len(set(ids(a))) == len(a)


def test_identical_job_type_and_time_get_ordinals_in_file_order(tmp_path):
    # a job that fails to start twice within the same second
    p = _write(tmp_path, executing("3.0", T("10:00:00")) + disconnected("3.0", T("10:00:00"))
               + disconnected("3.0", T("10:00:00")) + disconnected("3.1", T("10:00:00")))
    evs = convert(p)
    assert ids(evs) == [
        f"|3.0|001|{int(U('10:00:00') * 1000)}|0",
        f"|3.0|022|{int(U('10:00:00') * 1000)}|0",
        f"|3.0|022|{int(U('10:00:00') * 1000)}|1",
        f"|3.1|022|{int(U('10:00:00') * 1000)}|0",
    ]


def test_a_grown_log_keeps_the_old_ids(tmp_path):
    head = submitted("11.0", T("10:00:00")) + executing("11.0", T("10:01:00")) + disconnected("11.0", T("10:02:00"))
    more = disconnected("11.0", T("10:02:00")) + terminated("11.0", T("10:30:00"))
    p = _write(tmp_path, head)
    before = convert(p)
    with open(p, "a") as f:
        f.write(more)
    after = convert(p)
    assert [encode_event(e) for e in after[: len(before)]] == [encode_event(e) for e in before]
    assert [e.type for e in after[len(before):]] == ["disconnected", "terminated"]
    assert after[3].event_id.endswith("|1")  # the second identical disconnect
    assert after[-1].wall_s == 1740.0


def test_convert_leaves_out_an_incomplete_last_event(tmp_path):
    full = submitted("1.0", T("10:00:00")) + terminated("1.0", T("10:05:00"))
    p = _write(tmp_path, full[:-20])
    assert [e.type for e in convert(p)] == ["submitted"]
    p.write_text(full[:-1])  # only the final newline missing: a finished, hand-edited file
    assert [e.type for e in convert(p)] == ["submitted", "terminated"]


# ---------------------------------------------------------------------------------------------------
# LogFollower / follow_log
# ---------------------------------------------------------------------------------------------------


def _follower(p: Path, ckpt: Path, **kw) -> LogFollower:
    return LogFollower(p, **{**KW, **kw}, checkpoint_path=ckpt)


def test_follower_resumes_after_a_crash_with_the_same_ids(tmp_path):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    p.write_text(submitted("1.0", T("10:00:00")) + executing("1.0", T("10:01:00")))
    f1 = _follower(p, ckpt, schedd="s1")
    first = f1.poll()
    assert [e.type for e in first] == ["submitted", "started"]
    f1.commit()

    with open(p, "a") as f:
        f.write(disconnected("1.0", T("10:02:00")) + disconnected("1.0", T("10:02:00")))
    polled = f1.poll()  # "published", then the process dies before commit()
    assert [e.event_id[-1] for e in polled] == ["0", "1"]
    del f1

    f2 = _follower(p, ckpt, schedd="s1")
    again = f2.poll()
    assert [encode_event(e) for e in again] == [encode_event(e) for e in polled]
    f2.commit()

    with open(p, "a") as f:
        f.write(terminated("1.0", T("10:31:00")))
    f3 = _follower(p, ckpt, schedd="s1")
    rest = f3.poll()
    assert [e.type for e in rest] == ["terminated"]
    assert rest[0].wall_s == 1800.0  # the attempt's start came from the checkpoint
    f3.commit()
    assert _follower(p, ckpt, schedd="s1").poll() == []

    # the whole history equals a one-shot conversion: no gap, no renamed event
    assert ids(first + again + rest) == ids(convert(p, schedd="s1"))


def test_partial_last_event_is_not_yielded_until_complete(tmp_path):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    done = submitted("2.0", T("10:00:00"))
    term = terminated("2.0", T("10:05:00"))
    p.write_text(done)
    fol = _follower(p, ckpt)
    assert [e.type for e in fol.poll()] == ["submitted"]
    # every split point of the next event, including the first bytes of its header ("0", "00", "005"),
    # which make a long-lived htcondor2 reader stop for good, and a "..." still missing its newline
    for cut in range(1, len(term)):
        with open(p, "w") as f:
            f.write(done + term[:cut])
        assert fol.poll() == [], cut
    with open(p, "w") as f:
        f.write(done + term)
    (ev,) = fol.poll()
    assert (ev.type, ev.exit_code) == ("terminated", 0)
    assert fol.poll() == []


def test_unmapped_events_move_the_committed_position(tmp_path):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    p.write_text(submitted("2.0", T("10:00:00")) + image_size("2.0", T("10:00:05")))
    fol = _follower(p, ckpt)
    assert len(fol.poll()) == 1
    fol.commit()
    assert fol.committed_offset == p.stat().st_size


def test_missing_log_then_created(tmp_path):
    p, ckpt = tmp_path / "later.log", tmp_path / "c.ckpt"
    fol = _follower(p, ckpt)
    assert fol.poll() == []
    fol.commit()
    p.write_text(submitted("4.0", T("10:00:00")))
    assert [e.type for e in _follower(p, ckpt).poll()] == ["submitted"]


def test_poll_batches_with_max_events(tmp_path):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    p.write_text("".join(submitted(f"8.{i}", T("10:00:00")) for i in range(25)))
    fol = _follower(p, ckpt)
    sizes = []
    while batch := fol.poll(max_events=10):
        sizes.append(len(batch))
    assert sizes == [10, 10, 5]


def test_replaced_or_truncated_log_and_mismatched_checkpoint_are_refused(tmp_path):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    p.write_text(submitted("1.0", T("10:00:00")) + submitted("1.1", T("10:00:00")))
    fol = _follower(p, ckpt, schedd="s1")
    fol.poll()
    fol.commit()
    with pytest.raises(CheckpointMismatch):
        _follower(p, ckpt, schedd="s2")
    with pytest.raises(CheckpointMismatch):
        _follower(tmp_path / "other.log", ckpt, schedd="s1")

    p.write_text(submitted("1.0", T("10:00:00")))  # truncated
    with pytest.raises(LogReplaced):
        _follower(p, ckpt, schedd="s1").poll()
    new = tmp_path / "new.log"  # a different log moved into place, longer than the position
    new.write_text(submitted("77.0", T("11:00:00")) * 3)
    os.replace(new, p)
    with pytest.raises(LogReplaced):
        _follower(p, ckpt, schedd="s1").poll()


def test_follow_log_tails_a_growing_file_and_commits_consumed_batches(tmp_path):
    p, ckpt = tmp_path / "job.log", tmp_path / "job.ckpt"
    p.write_text(submitted("5.0", T("10:00:00")))
    stop = threading.Event()
    got: list = []

    def writer() -> None:
        time.sleep(0.1)
        with open(p, "a") as f:
            f.write(executing("5.0", T("10:01:00"))[:30])
            f.flush()
            time.sleep(0.1)
            f.write(executing("5.0", T("10:01:00"))[30:] + terminated("5.0", T("10:11:00")))

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 10
    for ev in follow_log(p, **KW, checkpoint_path=ckpt, poll_s=0.02, stop=stop):
        got.append(ev)
        if ev.type == "terminated" or time.monotonic() > deadline:
            break
    t.join()
    assert [e.type for e in got] == ["submitted", "started", "terminated"]
    assert got[-1].wall_s == 600.0
    # the generator had not come back for more after the last batch, so that batch is not committed:
    # a restart gives it again (it is a suffix of what was consumed; usually started + terminated)
    again = _follower(p, ckpt).poll()
    assert again and ids(again) == ids(got[-len(again):])


_CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from ingest.condor_log import follow_log
    from schemas.events import encode_event
    out = os.open({out!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    for ev in follow_log({log!r}, campaign="c", stage="s", schedd="s1", checkpoint_path={ckpt!r}, poll_s=0.01):
        os.write(out, encode_event(ev) + b"\\n")  # published (durable against SIGKILL)
        time.sleep(0.004)  # a slow publisher, so that the kill lands inside a batch
""")


def _published(out: Path) -> list:
    return [decode_event(line) for line in out.read_bytes().splitlines()] if out.exists() else []


def test_kill_9_and_restart_loses_nothing_and_renames_nothing(tmp_path):
    p, ckpt, out = tmp_path / "job.log", tmp_path / "job.ckpt", tmp_path / "published.jsonl"
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=str(HERE.parent.parent), out=str(out), log=str(p), ckpt=str(ckpt)))
    chunks = []
    for i in range(40):
        job = f"{100 + i}.0"
        chunks.append(submitted(job, T("10:00:00")) + executing(job, T("10:00:10"))
                      + disconnected(job, T("10:00:20")) + disconnected(job, T("10:00:20"))
                      + terminated(job, T("10:10:10")))
    p.write_text("")
    pending = ""  # the second half of an event that was being written when the follower died
    for round_ in range(4):
        child = subprocess.Popen([sys.executable, str(script)])
        try:
            before = len(_published(out))
            batch = "".join(chunks[round_ * 10:(round_ + 1) * 10])
            cut = len(batch) - 100
            with open(p, "a") as f:
                f.write(pending + batch[:cut])
            pending = batch[cut:]
            deadline = time.monotonic() + 10
            while len(_published(out)) < before + 10 and time.monotonic() < deadline:
                time.sleep(0.002)
        finally:
            os.kill(child.pid, signal.SIGKILL)  # mid-batch: published but not committed
            child.wait()
    with open(p, "a") as f:
        f.write(pending)
    expected = ids(convert(p, schedd="s1"))
    assert len(expected) == 200
    child = subprocess.Popen([sys.executable, str(script)])  # catch up on everything
    try:
        deadline = time.monotonic() + 15
        while {e.event_id for e in _published(out)} != set(expected) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    published = _published(out)
    assert {e.event_id for e in published} == set(expected)  # no gap, and no id a rerun would not give
    assert len(published) > len(expected)  # the kills did re-deliver uncommitted events ...
    by_id: dict[str, bytes] = {}
    for e in published:  # ... as identical records, so downstream dedup by event_id removes them
        assert by_id.setdefault(e.event_id, encode_event(e)) == encode_event(e)


# ---------------------------------------------------------------------------------------------------
