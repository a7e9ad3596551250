"""job-event/1 records -> an HTCondor event log in HTCondor's own text format (a schedd-wide ``EVENT_LOG``).

What a schedd writes with ``EVENT_LOG_JOB_AD_INFORMATION_ATTRS`` set: each job event, then a
JobAdInformation event (028) with the listed attributes of the job's ad.  Used to make test logs and the
benchmark's large log from the simulator's jobs (whose numbers are known), so the reader is checked on
logs with the layout of real ones: every event here is parsed back by ``htcondor2.JobEventLog``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TextIO

from schemas.events import JobEvent

#: The attributes POMS sets on its jobs (``+POMS4_CAMPAIGN_NAME`` ...) and the glidein site of the match.
POMS_ATTRS: dict[str, str] = {
    "campaign": "POMS4_CAMPAIGN_NAME",
    "stage": "POMS4_CAMPAIGN_STAGE_NAME",
    "submission": "POMS4_SUBMISSION_ID",
    "site": "MATCH_GLIDEIN_Site",
}

_NUMBERS = {"submitted": 0, "started": 1, "evicted": 4, "terminated": 5, "shadow_exception": 7, "removed": 9,
            "suspended": 10, "unsuspended": 11, "held": 12, "released": 13, "disconnected": 22,
            "reconnected": 23, "reconnect_failed": 24}
_TRIGGER = {0: "ULOG_SUBMIT", 1: "ULOG_EXECUTE", 4: "ULOG_JOB_EVICTED", 5: "ULOG_JOB_TERMINATED",
            7: "ULOG_SHADOW_EXCEPTION", 9: "ULOG_JOB_ABORTED", 10: "ULOG_JOB_SUSPENDED",
            11: "ULOG_JOB_UNSUSPENDED", 12: "ULOG_JOB_HELD", 13: "ULOG_JOB_RELEASED",
            22: "ULOG_JOB_DISCONNECTED", 23: "ULOG_JOB_RECONNECTED", 24: "ULOG_JOB_RECONNECT_FAILED"}


def cluster_proc(job_id: str) -> tuple[int, int]:
    """``"schedd#123.4"`` or ``"123.4"`` -> ``(123, 4)``."""
    cluster, _, proc = job_id.rsplit("#", 1)[-1].partition(".")
    return int(cluster), int(proc or 0)


def _when(ts: float) -> str:
    whole = int(ts)
    ms = round((ts - whole) * 1000)
    if ms == 1000:
        whole, ms = whole + 1, 0
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{base}.{ms:03d}" if ms else base


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    return f"{d} {s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _usage(ev: JobEvent) -> str:
    usr, sys_ = _hms(ev.cpu_user_s or 0), _hms(ev.cpu_sys_s or 0)
    return (f"\t\tUsr {usr}, Sys {sys_}  -  Run Remote Usage\n"
            "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n")


def _quote(value: str) -> str:
    return '"' + value.replace('"', '\\"').replace("\n", " ") + '"'


def event_text(ev: JobEvent, host: str | None = None, cores: int | None = None) -> str:
    """One event in HTCondor's text format, ``...`` line included."""
    number = _NUMBERS[ev.type]
    cluster, proc = cluster_proc(ev.job_id)
    head = f"{number:03d} ({cluster:03d}.{proc:03d}.000) {_when(ev.ts)}Z "  # type: ignore[arg-type]
    host = ev.host or host or "wn.example.org"
    reason = (ev.reason or "").replace("\n", " ")
    t = ev.type
    if t == "submitted":
        body = "Job submitted from host: <131.225.1.1:9618?addrs=131.225.1.1-9618&alias=schedd.example.org>\n"
    elif t == "started":
        body = (f"Job executing on host: <10.0.0.5:9618?addrs=10.0.0.5-9618&alias={host}>\n"
                f"\tSlotName: slot1@{host}\n")
        if ev.cores or cores:
            body += f"\tCpus = {ev.cores or cores}\n"
    elif t == "evicted":
        body = "Job was evicted.\n\t(0) Job was not checkpointed.\n" + _usage(ev)
        body += "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
    elif t == "terminated":
        if ev.signal is not None:
            how = f"\t(0) Abnormal termination (signal {ev.signal})\n\t(0) No core file\n"
        else:
            how = f"\t(1) Normal termination (return value {ev.exit_code if ev.exit_code is not None else 0})\n"
        body = ("Job terminated.\n" + how + _usage(ev)
                + _usage(ev).replace("Run Remote", "Total Remote").replace("Run Local", "Total Local")
                + "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
                "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n")
        if ev.cores or cores:
            c = ev.cores or cores
            body += ("\tPartitionable Resources :    Usage  Request Allocated\n"
                     f"\t   Cpus                 :                 {c}         {c}\n")
    elif t == "shadow_exception":
        body = (f"Shadow exception!\n\t{reason or 'Error from slot1@' + host}\n"
                "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n")
    elif t == "removed":
        body = f"Job was aborted.\n\t{reason or 'via condor_rm (by user prod)'}\n"
    elif t == "suspended":
        body = "Job was suspended.\n\tNumber of processes actually suspended: 1\n"
    elif t == "unsuspended":
        body = "Job was unsuspended.\n"
    elif t == "held":
        body = f"Job was held.\n\t{reason or 'via condor_hold (by user prod)'}\n"
        body += f"\tCode {ev.hold_code if ev.hold_code is not None else 1} Subcode {ev.hold_subcode or 0}\n"
    elif t == "released":
        body = f"Job was released.\n\t{reason or 'via condor_release (by user prod)'}\n"
    elif t == "disconnected":
        body = ("Job disconnected, attempting to reconnect\n"
                f"    {reason or 'Socket between submit and execute hosts closed unexpectedly'}\n"
                f"    Trying to reconnect to slot1@{host} <10.0.0.5:9618?addrs=10.0.0.5-9618>\n")
    elif t == "reconnected":
        body = (f"Job reconnected to slot1@{host}\n    startd address: <10.0.0.5:9618?addrs=10.0.0.5-9618>\n"
                "    starter address: <10.0.0.5:9618?addrs=10.0.0.5-9618&sock=starter_1>\n")
    else:  # reconnect_failed
        body = (f"Job reconnection failed\n    {reason or 'Job lease expired'}\n"
                f"    Can not reconnect to slot1@{host}, rescheduling job\n")
    return head + body + "...\n"


def ad_text(ev: JobEvent, values: Mapping[str, str | None]) -> str:
    """The JobAdInformation (028) event the schedd writes after ``ev``, with the ad attributes ``values``."""
    number = _NUMBERS[ev.type]
    cluster, proc = cluster_proc(ev.job_id)
    when = _when(ev.ts)  # type: ignore[arg-type]
    lines = [f"028 ({cluster:03d}.{proc:03d}.000) {when}Z Job ad information event triggered.",
             f"Proc = {proc}", f'EventTime = "{when}"', f'TriggerEventTypeName = "{_TRIGGER[number]}"',
             f"TriggerEventTypeNumber = {number}"]
    lines += [f"{attr} = {_quote(v)}" for attr, v in values.items() if v is not None]
    lines += [f"Cluster = {cluster}", "EventTypeNumber = 28", "..."]
    return "\n".join(lines) + "\n"


def write_event_log(
    events: Iterable[JobEvent],
    out: TextIO,
    *,
    attrs: Mapping[str, str] | None = POMS_ATTRS,
    carry: frozenset[str] | None = None,
) -> int:
    """Write ``events`` (in the order given: sort by ``ts`` first for a real log's order) as a schedd-wide
    event log; after each, a 028 event with the job's ``attrs`` (contract field -> ad attribute; None: no
    028 events, a log without EVENT_LOG_JOB_AD_INFORMATION_ATTRS).  ``carry``, when given, is the set of
    job ids whose ads have the attributes (the others' 028 events carry only the standard ones).  The site
    attribute is written from the ``started`` event on (before the match it is not defined).  Returns the
    number of job events written."""
    n = 0
    site: dict[str, str | None] = {}
    hosts: dict[str, str] = {}
    cores: dict[str, int] = {}
    for ev in events:
        if ev.cores:
            cores.setdefault(ev.job_id, ev.cores)
        if ev.type == "started":
            site[ev.job_id] = ev.site
            if ev.host:
                hosts[ev.job_id] = ev.host
        out.write(event_text(ev, hosts.get(ev.job_id), cores.get(ev.job_id)))
        n += 1
        if attrs is None:
            continue
        values: dict[str, str | None] = {}
        if carry is None or ev.job_id in carry:
            for name, attr in attrs.items():
                values[attr] = site.get(ev.job_id) if name == "site" else getattr(ev, name, None)
        out.write(ad_text(ev, values))
    return n
