"""Known scenarios for the dashboard and alert tests, built from tests/builders.py events.

Times are relative to `now` (real time, so Grafana's `now()` in the dashboards' STATUS_SQL agrees with
`read_status(as_of=time.time())` within seconds; every margin below is at least 20 minutes).

Campaign PROBLEM ("dash-problem") has three stages, each built to trip one rule:
  * reco  : healthy, recent progress, efficient jobs, one old restart;
  * stuck : work left (running and idle jobs, pending files) and no progress for 5 h -> stalled;
  * storm : 4 running jobs restarted 8 times in the last hour (evictions) and one recent
            inefficient completion -> eviction storm and low CPU efficiency.
Its feed ("dash-problem-feed") delivered its last event 40 minutes ago, and two lines of it were
dead letters. Campaign HEALTHY ("dash-healthy") is all fine and its feed ("dash-healthy-feed") is live.

Campaign EDGE ("dash-edge") holds the stages whose ratios have a zero divisor (ClickHouse 18.16 evaluates
both branches of if(), so each once raised "Division by zero"), with their documented values in
EDGE_EXPECTED: jobs from HTCondor logs only (no input files), input files only (no jobs), input files
with none located (0 %), jobs without any CPU report, and a job whose only termination reports 0 s of wall
time. Campaign HOSTILE has a name and a stage name built to break every quoting layer (SQL string
literals, Grafana's variable formats and $__ macros, HTML, JSON inside <script>, JavaScript line
terminators); its numbers are ordinary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stagewatch.replay import DeadLetter, Replayer
from stagewatch.store.base import Store
from tests.builders import file, job

PROBLEM = "dash-problem"
HEALTHY = "dash-healthy"
PROBLEM_SOURCE = "dash-problem-feed"
HEALTHY_SOURCE = "dash-healthy-feed"
EDGE = "dash-edge"
EDGE_SOURCE = "dash-edge-feed"
HOSTILE = ("dash-hostile <!--<script o'brien \\ \\' \"dq\" &amp; \u2028\u2029 $__toTime ${campaign} "
           "$campaign [[stage]] %27 ,{x}")
HOSTILE_STAGE = "</script><script>alert(1)</script> it's \\"
HOSTILE_JOB = "job 'q' \\ $__fromTime"
HOSTILE_SOURCE = "dash-hostile-feed"
TIMELINE = "dash-timeline"
TIMELINE_STAGE = "ties"
TIMELINE_SOURCE = "dash-timeline-feed"

EDGE_EXPECTED: dict[str, dict[str, Any]] = {
    # stage: documented values (processors.numbers) for its zero divisors
    "jobs-only": {"input_files": 0, "completion_pct": 0.0, "files_without_located_output": 0, "jobs": 2,
                  "jobs_completed": 1, "cpu_efficiency_pct": 50.0},
    "files-only": {"input_files": 3, "files_pending": 3, "completion_pct": 0.0, "jobs": 0,
                   "cpu_efficiency_pct": None},
    "none-located": {"input_files": 2, "files_located": 0, "files_without_located_output": 2,
                     "completion_pct": 0.0, "jobs_completed_failed": 1, "cpu_efficiency_pct": 90.0},
    "no-cpu": {"input_files": 0, "completion_pct": 0.0, "jobs": 1, "jobs_idle": 1, "cpu_efficiency_pct": None},
    "zero-wall": {"input_files": 0, "completion_pct": 0.0, "jobs": 1, "jobs_completed": 1,
                  "cpu_efficiency_pct": None},
}
H = 3600.0
M = 60.0


@dataclass
class Scenario:
    now: float
    events_by_source: dict[str, list[Any]]
    ingested_ago_s: dict[str, float]
    dead_letters: list[DeadLetter]


def _done_job(c: str, s: str, jid: str, f: str, t0: float, t_end: float, *, eff: float = 0.9, exit_code: int = 0,
              signal: int | None = None, cores: int = 1, restarts: list[tuple[float, float]] | None = None,
              locate: bool = True) -> list[Any]:
    """A job that processed input file f: submitted, started (possibly evicted and restarted), terminated,
    and (if it ended well and locate) declared and located one output of f."""
    ev = [job(jid, "submitted", t0, campaign=c, stage=s), file(f, "delivered", t0 + 60, campaign=c, stage=s, job_id=jid),
          job(jid, "started", t0 + 120, campaign=c, stage=s, cores=cores, site="OSG-UCSD")]
    for evicted_at, restarted_at in restarts or []:
        ev += [job(jid, "evicted", evicted_at, campaign=c, stage=s),
               job(jid, "started", restarted_at, campaign=c, stage=s, cores=cores, site="FNAL")]
    wall = 3000.0
    ev.append(job(jid, "terminated", t_end, campaign=c, stage=s, exit_code=exit_code, signal=signal,
                  cpu_user_s=wall * eff * cores * 0.9, cpu_sys_s=wall * eff * cores * 0.1, wall_s=wall, cores=cores))
    if exit_code == 0 and signal is None:
        ev.append(file(f, "consumed", t_end, campaign=c, stage=s, job_id=jid))
        if locate:
            out = f"{f}.out"
            ev += [file(out, "output_declared", t_end + 30, campaign=c, stage=s, job_id=jid, parents=[f]),
                   file(out, "output_located", t_end + 600, campaign=c, stage=s, parents=[f],
                        location="enstore:/pnfs/x")]
    else:
        ev.append(file(f, "failed", t_end, campaign=c, stage=s, job_id=jid))
    return ev


def _inputs(c: str, s: str, names: list[str], ts: float) -> list[Any]:
    return [file(n, "input_declared", ts, campaign=c, stage=s) for n in names]


TIMELINE_TYPES = ("submitted", "started", "disconnected", "reconnected", "reconnect_failed", "suspended",
                  "unsuspended", "held", "released", "evicted", "shadow_exception", "terminated", "removed")


def timeline_events(now: float, jobs: int = 40, seed: int = 10) -> list[Any]:
    """Jobs whose events jump between every state, on a coarse 15-minute grid (many events of one job share a
    `ts`, so the lifecycle tie order decides), two to three days before `now`, some sent twice, fed shuffled.
    Every job ends completed or removed, so the stage is never stalled and never storms (alert tests)."""
    import random

    rnd = random.Random(seed)
    t0 = now - 3 * 86400
    out: list[Any] = []
    for n in range(jobs):
        jid = f"tl-{n}"
        t = t0 + rnd.randrange(0, 24) * 900
        evs = [job(jid, "submitted", t, campaign=TIMELINE, stage=TIMELINE_STAGE)]
        for _ in range(rnd.randrange(1, 9)):
            t += rnd.choice((0, 0, 900, 1800, 3600))
            typ = rnd.choice(TIMELINE_TYPES[:-2])
            kw: dict[str, Any] = {"site": rnd.choice(("FNAL", "OSG-UCSD", ""))} if typ == "started" else {}
            if typ == "held":
                kw = {"reason": rnd.choice(("memory", "disk quota")), "hold_code": rnd.choice((26, 34)),
                      "hold_subcode": rnd.choice((0, 102))}
            evs.append(job(jid, typ, t, campaign=TIMELINE, stage=TIMELINE_STAGE, **kw))
        end = rnd.choice(("terminated", "removed"))
        evs.append(job(jid, end, t + rnd.choice((0, 900)), campaign=TIMELINE, stage=TIMELINE_STAGE,
                       **({"exit_code": 0} if end == "terminated" else {})))
        out += evs + [e for e in evs if rnd.random() < 0.2]  # duplicates: the same event_id again
    rnd.shuffle(out)
    return out


def build(now: float) -> Scenario:
    P, Hc = PROBLEM, HEALTHY
    problem: list[Any] = []
    # reco: healthy
    problem += _inputs(P, "reco", [f"r{i}" for i in range(6)], now - 12 * H)
    problem += _done_job(P, "reco", "reco-1", "r0", now - 11 * H, now - 8 * H)
    problem += _done_job(P, "reco", "reco-2", "r1", now - 10 * H, now - 40 * M,
                         restarts=[(now - 9 * H, now - 9 * H + 600)])
    problem += _done_job(P, "reco", "reco-3", "r2", now - 10 * H, now - 5 * H, exit_code=1)
    problem += _done_job(P, "reco", "reco-4", "r3", now - 9 * H, now - 2 * H, locate=False)  # consumed, no output
    problem += [job("reco-5", "submitted", now - 2 * H, campaign=P, stage="reco"),
                file("r4", "delivered", now - 2 * H, campaign=P, stage="reco", job_id="reco-5"),
                job("reco-5", "started", now - 2 * H + 300, campaign=P, stage="reco", cores=2)]
    # r5: pending
    # stuck: no progress for 5 h, work left
    problem += _inputs(P, "stuck", [f"s{i}" for i in range(5)], now - 20 * H)
    problem += _done_job(P, "stuck", "stuck-1", "s0", now - 19 * H, now - 5 * H - 700)
    problem += [job("stuck-2", "submitted", now - 6 * H, campaign=P, stage="stuck"),
                file("s1", "delivered", now - 6 * H, campaign=P, stage="stuck", job_id="stuck-2"),
                job("stuck-2", "started", now - 6 * H + 100, campaign=P, stage="stuck"),
                job("stuck-3", "submitted", now - 6 * H, campaign=P, stage="stuck"),
                job("stuck-4", "submitted", now - 6 * H, campaign=P, stage="stuck"),
                job("stuck-4", "held", now - 5 * H, campaign=P, stage="stuck", reason="memory")]
    # storm: 4 running jobs, each restarted twice in the last hour; one inefficient completion
    problem += _inputs(P, "storm", [f"t{i}" for i in range(5)], now - 4 * H)
    for i in range(4):
        jid = f"storm-{i}"
        problem += [job(jid, "submitted", now - 3 * H, campaign=P, stage="storm"),
                    file(f"t{i}", "delivered", now - 3 * H, campaign=P, stage="storm", job_id=jid),
                    job(jid, "started", now - 3 * H + 60, campaign=P, stage="storm"),
                    job(jid, "evicted", now - 50 * M, campaign=P, stage="storm"),
                    job(jid, "started", now - 45 * M, campaign=P, stage="storm"),
                    job(jid, "evicted", now - 35 * M, campaign=P, stage="storm"),
                    job(jid, "started", now - 30 * M + i, campaign=P, stage="storm")]
    problem += _done_job(P, "storm", "storm-9", "t4", now - 3 * H, now - 50 * M, eff=0.2)

    healthy: list[Any] = []
    healthy += _inputs(Hc, "gen", [f"g{i}" for i in range(4)], now - 10 * H)
    healthy += _done_job(Hc, "gen", "gen-1", "g0", now - 9 * H, now - 6 * H)
    healthy += _done_job(Hc, "gen", "gen-2", "g1", now - 9 * H, now - 3 * H, restarts=[(now - 8 * H, now - 8 * H + 300)])
    healthy += _done_job(Hc, "gen", "gen-3", "g2", now - 4 * H, now - 50 * M, cores=4, eff=0.8)
    healthy += [job("gen-4", "submitted", now - H, campaign=Hc, stage="gen"),
                file("g3", "delivered", now - H, campaign=Hc, stage="gen", job_id="gen-4"),
                job("gen-4", "started", now - H + 60, campaign=Hc, stage="gen")]
    healthy += _inputs(Hc, "done", ["d0", "d1"], now - 30 * H)
    healthy += _done_job(Hc, "done", "done-1", "d0", now - 29 * H, now - 26 * H)
    healthy += _done_job(Hc, "done", "done-2", "d1", now - 29 * H, now - 25 * H)

    E = EDGE
    edge: list[Any] = []
    # jobs-only: an HTCondor log and nothing else (no file events): one job done at 50 %, one running
    edge += [job("jo-1", "submitted", now - 3 * H, campaign=E, stage="jobs-only"),
             job("jo-1", "started", now - 3 * H + 60, campaign=E, stage="jobs-only"),
             job("jo-1", "terminated", now - 2 * H, campaign=E, stage="jobs-only", exit_code=0,
                 cpu_user_s=1000.0, cpu_sys_s=500.0, wall_s=3000.0, cores=1),
             job("jo-2", "submitted", now - 20 * M, campaign=E, stage="jobs-only"),
             job("jo-2", "started", now - 15 * M, campaign=E, stage="jobs-only")]
    # files-only: input files declared, no job yet
    edge += _inputs(E, "files-only", ["fo0", "fo1", "fo2"], now - 20 * M)
    # none-located: input files, a job that failed on one of them: 0 % complete
    edge += _inputs(E, "none-located", ["nl0", "nl1"], now - 3 * H)
    edge += _done_job(E, "none-located", "nl-1", "nl0", now - 3 * H, now - 30 * M, exit_code=1)
    # no-cpu: a job submitted, nothing else (no termination, so no CPU report)
    edge += [job("nc-1", "submitted", now - 10 * M, campaign=E, stage="no-cpu")]
    # zero-wall: the only termination reports CPU and 0 s of wall time (core_wall_ms = 0)
    edge += [job("zw-1", "submitted", now - 2 * H, campaign=E, stage="zero-wall"),
             job("zw-1", "started", now - 2 * H + 60, campaign=E, stage="zero-wall"),
             job("zw-1", "terminated", now - 30 * M, campaign=E, stage="zero-wall", exit_code=0,
                 cpu_user_s=0.0, cpu_sys_s=0.0, wall_s=0.0, cores=1)]

    hostile = _inputs(HOSTILE, HOSTILE_STAGE, ["h0 </script>", "h1 \u2028"], now - 3 * H)
    hostile += _done_job(HOSTILE, HOSTILE_STAGE, HOSTILE_JOB, "h0 </script>", now - 3 * H, now - 40 * M)

    dead = [DeadLetter(PROBLEM_SOURCE, "0/17", "not valid JSON: truncated", b'{"schema": "job-event/1", "ts'),
            DeadLetter(PROBLEM_SOURCE, "0/18", "missing field `job_id`", b'{"schema": "job-event/1"}')]
    return Scenario(now=now, events_by_source={PROBLEM_SOURCE: problem, HEALTHY_SOURCE: healthy, EDGE_SOURCE: edge,
                                               HOSTILE_SOURCE: hostile, TIMELINE_SOURCE: timeline_events(now)},
                    ingested_ago_s={PROBLEM_SOURCE: 40 * M, HEALTHY_SOURCE: 60.0, EDGE_SOURCE: 60.0,
                                    HOSTILE_SOURCE: 60.0, TIMELINE_SOURCE: 60.0}, dead_letters=dead)


def load(store: Store, sc: Scenario) -> None:
    """Replay the scenario into a store; each source's events carry its own ingestion time."""
    for source, events in sc.events_by_source.items():
        r = Replayer(store)
        r._now = sc.now - sc.ingested_ago_s[source]  # when that feed delivered them
        for ev in events:
            r.feed_event(ev, source)
        if source == PROBLEM_SOURCE:
            for dl in sc.dead_letters:
                r.dead_letter(dl)
        r.flush()
