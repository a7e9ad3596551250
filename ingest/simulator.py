"""A deterministic, seeded simulator of HTCondor production-campaign stages.

The monitor has to be right about messy streams: jobs that restart after OSG evictions (sometimes
without any eviction event), holds, disconnects, recovery submissions, outputs located before they are
declared, duplicated and reordered deliveries. Real logs with known answers are hard to come by, so this
module produces such streams with a ground truth attached (``expected_outcome`` or ``record=``), which
lets tests compare the counting engine with the truth and lets demos replay a believable campaign.

Design, and why:

* The per-file *plan* (how many of its jobs fail, how the file ends) is drawn up front, because the
  talk's numbers (30,000 files, 44,248 job ids, 310 files without a located output) must come out
  exactly, not on average. Time is simulated afterwards, job by job.
* Jobs are generated in submission-time order and their events kept in a heap that is drained up to
  the next submission time; every event of a job is later than its submission, so the stream leaves
  the heap in timestamp order while only the in-flight jobs are held in memory.
* A running or stalled stage is the same simulation cut at a moment. When a target number of files
  without a located output is given, a first pass finds the moment at which the stage shows exactly
  that number and the second pass cuts there (optionally shifting the whole timeline so that the
  observation ends at ``end_ts``, so several stages can share one "now").
* Delivery effects (duplicates, reordering) are applied last with their own random stream, so they
  never change *what* happened, only how it arrives.

Every stage draws from random streams derived from (seed, campaign, stage), so a stage produces the
same events whether it is simulated alone or with others in ``simulate_many``.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import math
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal

from schemas.events import FileEvent, JobEvent

__all__ = [
    "StageSpec",
    "StageOutcome",
    "simulate",
    "simulate_many",
    "expected_outcome",
    "expected_outcomes",
    "preset",
    "PRESETS",
    "FILE_BUCKETS",
    "JOB_STATES",
    "TALK_NOW",
]

Event = JobEvent | FileEvent
EndKind = Literal["finished", "running", "stalled"]

FILE_BUCKETS: tuple[str, ...] = (
    "located",
    "declared_not_located",
    "consumed_no_output",
    "in_flight",
    "failed",
    "pending",
)
JOB_STATES: tuple[str, ...] = ("idle", "running", "held", "suspended", "completed", "removed")

_JOB_STATE_OF: dict[str, str] = {
    "submitted": "idle",
    "evicted": "idle",
    "shadow_exception": "idle",
    "reconnect_failed": "idle",
    "released": "idle",
    "started": "running",
    "reconnected": "running",
    "unsuspended": "running",
    "disconnected": "running",
    "held": "held",
    "suspended": "suspended",
    "terminated": "completed",
    "removed": "removed",
}
_RUNNING_TYPES = frozenset(t for t, s in _JOB_STATE_OF.items() if s == "running")

# 2017-06-20T12:00:00Z: the "now" of the talk-sized presets (the contract's own example date).
TALK_NOW = 1497960000.0
_DAY = 86400.0
_HOUR = 3600.0

# The final fate of an input file, decided in the plan.
_LOCATED, _NEVER_LOCATED, _NO_OUTPUT, _FINAL_FAILED, _FINAL_SKIPPED = range(5)
# What a job is meant to do; non-negative values are the fates above for a file's last job.
_FAIL = -1  # fails its file; a recovery job will retry it
_EXTRA_EMPTY, _EXTRA_REMOVED_IDLE, _EXTRA_HELD_REMOVED = -2, -3, -4

_LN_6H = math.log(6 * _HOUR)
_MAX_ATTEMPTS = 8  # restarts are capped so a job cannot bounce forever

# (site, share of OSG slots); FNAL (GPGrid) is chosen separately with spec.fnal_share.
_OSG_SITES: tuple[tuple[str, float], ...] = (
    ("OSG-Nebraska", 0.24),
    ("OSG-UCSD", 0.18),
    ("OSG-Wisconsin", 0.16),
    ("OSG-MWT2", 0.14),
    ("OSG-Caltech", 0.1),
    ("OSG-SU-ITS", 0.1),
    ("OSG-FZU", 0.08),
)
_HOLD_REASONS = (
    "Job has gone over memory limit of 2000 megabytes. Peak usage: 2481 megabytes.",
    "Error from slot1_3@{host}: Failed to transfer files",
    "Job exceeded allowed max runtime of 86400 seconds",
    "Transfer output files failure at execution point",
)
_EVICT_REASONS = (
    "Job was evicted.",
    "Job was evicted: glidein lifetime ended",
    "Job was evicted: preempted by higher priority user",
)
_FAIL_EXITS: tuple[tuple[int | None, int | None, float], ...] = (
    # (exit_code, signal, weight): art/SAM errors, aborts and out-of-memory kills
    (1, None, 0.35),
    (65, None, 0.3),
    (134, None, 0.15),
    (None, 9, 0.2),
)


@dataclass(frozen=True)
class StageSpec:
    """Everything that shapes one simulated stage.

    Counts are exact where the talk needs exact numbers: for a finished stage ``n_jobs`` distinct
    job ids and ``n_unlocated`` input files without a located output come out exactly. For a running
    or stalled stage ``n_unlocated`` is exact at the end of the observation (the cut is chosen for it)
    while ``n_jobs`` is the plan, of which only the jobs submitted before the cut are seen.
    With both ``n_unlocated`` and ``end_ts``, a running or stalled stage is shifted in time so that its
    observation ends at ``end_ts`` (the stage's realised start is in its ``StageOutcome``); without a
    target it is simply cut at ``end_ts`` (a stalled one stops progressing ``stall_s`` before).
    Probabilities are per job attempt unless said otherwise; eviction rates are for OSG slots, FNAL
    slots are evicted a quarter as often and never silently.
    """

    campaign: str
    stage: str
    n_input_files: int
    n_jobs: int | None = None
    n_unlocated: int | None = None
    start_ts: float = TALK_NOW - 14 * _DAY
    end: EndKind = "finished"
    end_ts: float | None = None
    stall_s: float = 8 * _HOUR

    # submissions
    first_submit_s: float = 600.0
    batch_size: int = 1000
    batch_interval_s: float = 4 * _HOUR
    input_arrival_s: float = 300.0
    recovery_interval_s: float = 12 * _HOUR
    max_recoveries: int = 3
    extra_job_rate: float = 0.05
    p_job_fail: float = 0.15
    p_fail_held_removed: float = 0.1

    # per-file terminal losses (also the mix of reasons when n_unlocated is given)
    p_final_failed: float = 0.005
    p_final_skipped: float = 0.001
    p_never_located: float = 0.003
    p_no_output: float = 0.0005

    # per-attempt interruptions and noise
    p_evict: float = 0.06
    p_evict_silent: float = 0.02
    p_hold: float = 0.015
    hold_release_median_s: float = 1 * _HOUR
    p_shadow_exception: float = 0.008
    p_reconnect_failed: float = 0.006
    p_disconnect: float = 0.03
    p_suspend: float = 0.01
    fnal_share: float = 0.45

    # timing and resources
    queue_wait_median_s: float = 20 * 60.0
    wall_median_s: float = 3 * _HOUR
    wall_sigma: float = 0.35
    locate_delay_median_s: float = 25 * 60.0
    locate_delay_sigma: float = 1.1
    p_located_early: float = 0.03
    cores: int = 1
    cpu_eff_mean: float = 0.88
    cpu_eff_sd: float = 0.06

    # delivery effects
    duplicate_fraction: float = 0.0
    reorder_window_s: float = 0.0

    # naming
    file_template: str = "{stage}_r{run:08d}_s{subrun:02d}.root"
    storage: str = "enstore:/pnfs/nova/archive"

    def __post_init__(self) -> None:
        if self.n_input_files < 1:
            raise ValueError("n_input_files must be at least 1")
        if self.end not in ("finished", "running", "stalled"):
            raise ValueError("end must be 'finished', 'running' or 'stalled'")
        if self.end != "finished" and self.n_unlocated is None and self.end_ts is None:
            raise ValueError("a running or stalled stage needs n_unlocated or end_ts to know where it ends")
        if self.n_unlocated is not None and not 0 <= self.n_unlocated <= self.n_input_files:
            raise ValueError("n_unlocated must be between 0 and n_input_files")
        if not 0 <= self.duplicate_fraction <= 1:
            raise ValueError("duplicate_fraction must be within [0, 1]")
        if self.reorder_window_s < 0 or self.batch_size < 1 or self.cores < 1:
            raise ValueError("reorder_window_s must be >= 0, batch_size and cores >= 1")


@dataclass
class StageOutcome:
    """The truth about one simulated stage at the end of its observation, for comparing with an engine.

    Computed from the clean, timestamp-ordered stream before duplication and reordering, so an engine
    that handles those delivery effects correctly must arrive at exactly these numbers.
    """

    campaign: str
    stage: str
    end: EndKind
    start_ts: float
    end_ts: float
    input_files: int
    located_files: frozenset[str]
    file_buckets: dict[str, int]
    jobs: int
    job_states: dict[str, int]
    restarts: int
    events: int
    deliveries: int = 0
    duplicates: int = 0

    @property
    def files_without_located_output(self) -> int:
        return self.input_files - len(self.located_files)


# --------------------------------------------------------------------------------------------------
# ground truth, observed as the events leave the simulation


class _Tracker:
    """Applies the counting rules to the clean stream; also tells the cut search when files locate."""

    __slots__ = (
        "inputs",
        "n_inputs",
        "last_file",
        "consumed",
        "declared_parents",
        "declared_inputs",
        "located_outputs",
        "located_inputs",
        "last_job",
        "starts",
        "events",
        "last_ts",
    )

    def __init__(self) -> None:
        self.inputs: dict[str, None] = {}
        self.n_inputs = 0
        self.last_file: dict[str, str] = {}
        self.consumed: set[str] = set()
        self.declared_parents: dict[str, list[str]] = {}
        self.declared_inputs: set[str] = set()
        self.located_outputs: set[str] = set()
        self.located_inputs: set[str] = set()
        self.last_job: dict[str, str] = {}
        self.starts: dict[str, int] = {}
        self.events = 0
        self.last_ts = 0.0

    def observe(self, ev: Event) -> None:
        self.events += 1
        self.last_ts = ev.ts  # type: ignore[assignment]
        typ = ev.type
        if ev.__class__ is JobEvent:
            jid = ev.job_id  # type: ignore[union-attr]
            self.last_job[jid] = typ
            if typ == "started":
                self.starts[jid] = self.starts.get(jid, 0) + 1
            return
        name = ev.file  # type: ignore[union-attr]
        if typ == "delivered" or typ == "failed" or typ == "skipped":
            self.last_file[name] = typ
        elif typ == "consumed":
            self.last_file[name] = typ
            self.consumed.add(name)
        elif typ == "input_declared":
            if name not in self.inputs:
                self.inputs[name] = None
                self.n_inputs += 1
        elif typ == "output_declared":
            parents = ev.parents or []  # type: ignore[union-attr]
            self.declared_parents[name] = parents
            self.declared_inputs.update(parents)
            if name in self.located_outputs:
                self.located_inputs.update(parents)
        elif typ == "output_located":
            self.located_outputs.add(name)
            parents = self.declared_parents.get(name)
            if parents:
                self.located_inputs.update(parents)

    def outcome(self, spec: StageSpec, start_ts: float, end_ts: float) -> StageOutcome:
        buckets = dict.fromkeys(FILE_BUCKETS, 0)
        located: set[str] = set()
        for name in self.inputs:
            if name in self.located_inputs:
                located.add(name)
                buckets["located"] += 1
            elif name in self.declared_inputs:
                buckets["declared_not_located"] += 1
            elif name in self.consumed:
                buckets["consumed_no_output"] += 1
            else:
                last = self.last_file.get(name)
                if last is None:
                    buckets["pending"] += 1
                elif last == "delivered":
                    buckets["in_flight"] += 1
                else:  # failed or skipped (consumed is handled above)
                    buckets["failed"] += 1
        states = dict.fromkeys(JOB_STATES, 0)
        for typ in self.last_job.values():
            states[_JOB_STATE_OF[typ]] += 1
        return StageOutcome(
            campaign=spec.campaign,
            stage=spec.stage,
            end=spec.end,
            start_ts=start_ts,
            end_ts=end_ts,
            input_files=self.n_inputs,
            located_files=frozenset(located),
            file_buckets=buckets,
            jobs=len(self.last_job),
            job_states=states,
            restarts=sum(n - 1 for n in self.starts.values() if n > 1),
            events=self.events,
        )


# --------------------------------------------------------------------------------------------------
# the plan: how every file ends and how many jobs it takes


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split an exact total by weights (largest remainder), so exact targets stay exact."""
    wsum = sum(weights)
    if total == 0:
        return [0] * len(weights)
    if wsum <= 0:
        raise ValueError("the terminal-loss probabilities are all zero but losses are required")
    raw = [total * w / wsum for w in weights]
    counts = [int(x) for x in raw]
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass
class _Plan:
    fates: bytearray  # per input file: its final fate
    failures: bytearray  # per input file: jobs that fail it before its final job
    n_extra: int
    n_jobs: int


def _make_plan(spec: StageSpec, rng: random.Random) -> _Plan:
    """Decide every file's fate and failure count so that the exact targets hold by construction."""
    n = spec.n_input_files
    weights = [spec.p_final_failed, spec.p_final_skipped, spec.p_never_located, spec.p_no_output]
    if spec.end == "finished" and spec.n_unlocated is not None:
        n_loss = spec.n_unlocated
    else:
        n_loss = min(n, round(n * sum(weights)))
    per_reason = _apportion(n_loss, weights)
    reasons = [_FINAL_FAILED] * per_reason[0] + [_FINAL_SKIPPED] * per_reason[1]
    reasons += [_NEVER_LOCATED] * per_reason[2] + [_NO_OUTPUT] * per_reason[3]
    rng.shuffle(reasons)
    fates = bytearray(n)  # all _LOCATED
    for idx, reason in zip(rng.sample(range(n), n_loss), reasons):
        fates[idx] = reason

    cap = spec.max_recoveries
    failures = bytearray(n)
    n_failed_final = per_reason[0]
    for i in range(n):
        if fates[i] == _FINAL_FAILED:
            failures[i] = cap  # a file is given up only after its recoveries are used up
    candidates = [i for i in range(n) if fates[i] not in (_FINAL_FAILED, _FINAL_SKIPPED)]
    n_extra = round(n * spec.extra_job_rate)
    required = n_failed_final * cap
    if spec.n_jobs is not None:
        free = spec.n_jobs - n - n_extra - required
        if free < 0:
            # Too few job ids for the extra jobs: the exact job count wins over the extra-job rate.
            n_extra = max(0, n_extra + free)
            free = spec.n_jobs - n - n_extra - required
        if free < 0:
            raise ValueError(
                f"n_jobs={spec.n_jobs} is too small: {n} files plus {required} recovery jobs for "
                f"{n_failed_final} finally failed files need more"
            )
    else:
        p = min(spec.p_job_fail, 0.9)
        free = round(len(candidates) * p / (1 - p))
    if free > cap * len(candidates):
        raise ValueError(f"n_jobs too large: at most {cap} recoveries per file (max_recoveries)")
    # Failures cluster (a file that failed once is likelier to fail again), within the cap.
    failed_once: list[int] = []
    left = free
    while left:
        if failed_once and rng.random() < 0.3:
            i = failed_once[rng.randrange(len(failed_once))]
        else:
            i = candidates[rng.randrange(len(candidates))]
        if failures[i] >= cap:
            continue
        if failures[i] == 0:
            failed_once.append(i)
        failures[i] += 1
        left -= 1
    return _Plan(fates=fates, failures=failures, n_extra=n_extra, n_jobs=n + n_extra + required + free)


# --------------------------------------------------------------------------------------------------
# the simulation proper


def _lognormal(rng: random.Random, mu: float, sigma: float) -> float:
    """exp(N(mu, sigma)); random.gauss is about twice as fast as lognormvariate's normalvariate."""
    return math.exp(mu + sigma * rng.gauss(0.0, 1.0))


def _derive_seed(seed: int, *parts: str) -> int:
    """A stable seed per (seed, parts); hash() is salted per process, so it cannot be used here."""
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big")


class _StageRun:
    """One pass over one stage: yields (rel_time, seq, event) in timestamp order up to an optional cut."""

    def __init__(self, spec: StageSpec, seed: int, t0: float, cut: float | None, stall_until: float | None):
        self.spec = spec
        self.t0 = t0
        self.cut = cut
        self.stall_until = stall_until
        self.rng = random.Random(_derive_seed(seed, spec.campaign, spec.stage, "core"))
        self.stall_rng = random.Random(_derive_seed(seed, spec.campaign, spec.stage, "stall"))
        self.tracker = _Tracker()
        self.plan = _make_plan(spec, self.rng)
        self.n = 0
        self.id_prefix = f"sim:{spec.campaign}:{spec.stage}:"
        self.out: list[tuple[float, int, Event]] = []
        self.subs: list[tuple[float, int, str, object]] = []
        self.recovery_batches: dict[float, list[tuple[int, int]]] = {}
        self.job_sub: dict[str, str] = {}  # only kept for a stalled stage, whose hung jobs live on
        rng = self.rng
        self.cluster = rng.randrange(14_000_000, 24_000_000)
        self.submission_no = rng.randrange(10_000, 40_000)
        self.inputs = [
            spec.file_template.format(stage=spec.stage, index=i, run=10_000 + i // 64, subrun=i % 64)
            for i in range(spec.n_input_files)
        ]
        self.ln_wait = math.log(spec.queue_wait_median_s)
        self.ln_wall = math.log(spec.wall_median_s)
        self.ln_hold = math.log(spec.hold_release_median_s)
        self.ln_locate = math.log(spec.locate_delay_median_s)
        self.osg_names = [s for s, _ in _OSG_SITES]
        self.osg_cum: list[float] = []
        acc = 0.0
        for _, w in _OSG_SITES:
            acc += w
            self.osg_cum.append(acc)
        self._declare_inputs_and_batches()

    # --- event construction -----------------------------------------------------------------------

    def job(self, rel: float, jid: str, typ: str, sub: str, **kw: object) -> None:
        n = self.n
        self.n = n + 1
        spec = self.spec
        ev = JobEvent(
            event_id=self.id_prefix + str(n),
            ts=round(self.t0 + rel, 3),
            campaign=spec.campaign,
            stage=spec.stage,
            job_id=jid,
            type=typ,  # type: ignore[arg-type]
            submission=sub,
            **kw,  # type: ignore[arg-type]
        )
        heapq.heappush(self.out, (rel, n, ev))

    def file(self, rel: float, name: str, typ: str, sub: str | None, jid: str | None, **kw: object) -> None:
        n = self.n
        self.n = n + 1
        spec = self.spec
        ev = FileEvent(
            event_id=self.id_prefix + str(n),
            ts=round(self.t0 + rel, 3),
            campaign=spec.campaign,
            stage=spec.stage,
            file=name,
            type=typ,  # type: ignore[arg-type]
            submission=sub,
            job_id=jid,
            **kw,  # type: ignore[arg-type]
        )
        heapq.heappush(self.out, (rel, n, ev))

    # --- set-up -------------------------------------------------------------------------------------

    def _declare_inputs_and_batches(self) -> None:
        """Declare the input dataset and lay out the producer's submissions as files become available."""
        spec, rng = self.spec, self.rng
        n = spec.n_input_files
        arrival = sorted(rng.uniform(0.0, spec.input_arrival_s) + 1.0 for _ in range(n))
        for i, rel in enumerate(arrival):
            self.file(rel, self.inputs[i], "input_declared", None, None)
        batches: list[tuple[float, list[int]]] = []
        i, k = 0, 0
        while i < n:
            t = spec.first_submit_s + k * spec.batch_interval_s
            k += 1
            files: list[int] = []
            while i < n and len(files) < spec.batch_size and arrival[i] <= t:
                files.append(i)
                i += 1
            if files:
                batches.append((t, files))
        extra = [0] * len(batches)
        for _ in range(self.plan.n_extra):
            extra[rng.randrange(len(batches))] += 1
        for b, (t, files) in enumerate(batches):
            heapq.heappush(self.subs, (t, b, "primary", (files, extra[b])))

    def _new_cluster(self) -> tuple[str, int, str]:
        """A new cluster on one of the schedds; other users' clusters interleave between ours."""
        rng = self.rng
        self.cluster += rng.randint(3, 400)
        self.submission_no += rng.randint(1, 40)
        schedd = "fifebatch1.fnal.gov" if rng.random() < 0.5 else "fifebatch2.fnal.gov"
        return schedd, self.cluster, str(self.submission_no)

    # --- the run ------------------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[float, int, Event]]:
        out, subs, tracker = self.out, self.subs, self.tracker
        cut = self.cut
        heappop = heapq.heappop
        while subs:
            t_sub = subs[0][0]
            if cut is not None and t_sub > cut:
                break
            while out and out[0][0] <= t_sub:
                item = heappop(out)
                tracker.observe(item[2])
                yield item
            _, _, kind, payload = heappop(subs)
            if kind == "primary":
                files, n_extra = payload  # type: ignore[misc]
                self._primary(t_sub, files, n_extra)
            else:
                self._recovery(t_sub, self.recovery_batches.pop(t_sub))
        limit = math.inf if cut is None else cut
        while out and out[0][0] <= limit:
            item = heappop(out)
            tracker.observe(item[2])
            yield item
        out.clear()
        if self.stall_until is not None and cut is not None:
            yield from self._stall(cut, self.stall_until)

    def _primary(self, t: float, files: list[int], n_extra: int) -> None:
        schedd, cluster, sub = self._new_cluster()
        plan, rng = self.plan, self.rng
        proc = 0
        for f in files:
            t_job = t + proc * 0.05  # condor_submit queues procs in quick succession
            fate = _FAIL if plan.failures[f] > 0 else plan.fates[f]
            self._job(t_job, f"{schedd}#{cluster}.{proc}", cluster, proc, sub, f, 0, fate)
            proc += 1
        for _ in range(n_extra):
            r = rng.random()
            mode = _EXTRA_EMPTY if r < 0.6 else _EXTRA_REMOVED_IDLE if r < 0.9 else _EXTRA_HELD_REMOVED
            self._job(t + proc * 0.05, f"{schedd}#{cluster}.{proc}", cluster, proc, sub, -1, 0, mode)
            proc += 1

    def _recovery(self, t: float, items: list[tuple[int, int]]) -> None:
        schedd, cluster, sub = self._new_cluster()
        plan = self.plan
        for proc, (f, attempt) in enumerate(items):
            fate = _FAIL if attempt < plan.failures[f] else plan.fates[f]
            self._job(t + proc * 0.05, f"{schedd}#{cluster}.{proc}", cluster, proc, sub, f, attempt, fate)

    def _schedule_recovery(self, t_fail: float, f: int, attempt: int) -> None:
        """Failed files are resubmitted by the next periodic recovery launch (POMS-style)."""
        step = self.spec.recovery_interval_s
        t_rec = (math.floor(t_fail / step) + 1) * step + 300.0
        batch = self.recovery_batches.get(t_rec)
        if batch is None:
            batch = self.recovery_batches[t_rec] = []
            # -1 sorts a recovery launch before a primary submission at the same moment
            heapq.heappush(self.subs, (t_rec, -1, "recovery", None))
        batch.append((f, attempt + 1))

    # --- one job ------------------------------------------------------------------------------------

    def _slot(self) -> tuple[str, str, bool]:
        rng = self.rng
        if rng.random() < self.spec.fnal_share:
            return "FNAL", f"fnpc{rng.randint(3000, 9999)}.fnal.gov", False
        r = rng.random() * self.osg_cum[-1]
        i = 0
        while self.osg_cum[i] < r:
            i += 1
        site = self.osg_names[i]
        a = rng.randint(1, 400)
        host = {
            "OSG-Nebraska": f"red-c{a:04d}.unl.edu",
            "OSG-UCSD": f"cabinet-{a % 12}-{a % 7}-{a % 30}.t2.ucsd.edu",
            "OSG-Wisconsin": f"e{a}.chtc.wisc.edu",
            "OSG-MWT2": f"uct2-c{a:03d}.mwt2.org",
            "OSG-Caltech": f"compute-{a % 20}-{a % 16}.ultralight.org",
            "OSG-SU-ITS": f"its-condor-{a}.syr.edu",
            "OSG-FZU": f"gpu{a:03d}.farm.particle.cz",
        }[site]
        return site, host, True

    def _interruption(self, osg: bool) -> str | None:
        spec = self.spec
        r = self.rng.random()
        p = spec.p_evict * (1.0 if osg else 0.25)
        if r < p:
            return "evicted"
        r -= p
        if osg:
            if r < spec.p_evict_silent:
                return "silent"
            r -= spec.p_evict_silent
        if r < spec.p_hold:
            return "held"
        r -= spec.p_hold
        if r < spec.p_shadow_exception:
            return "shadow_exception"
        r -= spec.p_shadow_exception
        if r < spec.p_reconnect_failed:
            return "reconnect_failed"
        return None

    def _noise(self, t: float, run: float, jid: str, sub: str, site: str, host: str) -> float:
        """Harmless interruptions inside an attempt; returns when the attempt ends (suspension adds)."""
        rng, spec = self.rng, self.spec
        if rng.random() < spec.p_disconnect:
            td = t + run * rng.uniform(0.1, 0.45)
            self.job(td, jid, "disconnected", sub, site=site, host=host,
                     reason="Socket between submit and execute hosts closed unexpectedly")
            # reconnect before anything else happens to the attempt (suspension starts at 0.55 * run)
            back = min(rng.uniform(20.0, 900.0), run * 0.1)
            self.job(td + back, jid, "reconnected", sub, site=site, host=host)
        if rng.random() < spec.p_suspend:
            ts = t + run * rng.uniform(0.55, 0.9)
            pause = rng.uniform(300.0, 2 * _HOUR)
            self.job(ts, jid, "suspended", sub, site=site, host=host)
            self.job(ts + pause, jid, "unsuspended", sub, site=site, host=host)
            run += pause
        return t + run

    def _usage(self, wall: float) -> dict[str, float | int]:
        spec = self.spec
        eff = min(1.0, max(0.05, self.rng.gauss(spec.cpu_eff_mean, spec.cpu_eff_sd)))
        cpu = wall * spec.cores * eff
        return {"cpu_user_s": round(cpu * 0.96, 1), "cpu_sys_s": round(cpu * 0.04, 1),
                "wall_s": round(wall, 1), "cores": spec.cores}

    def _job(self, t: float, jid: str, cluster: int, proc: int, sub: str, f: int, attempt: int, fate: int) -> None:
        """Generate one job's whole life; failed files are handed to the next recovery launch."""
        rng, spec = self.rng, self.spec
        J, F = self.job, self.file
        J(t, jid, "submitted", sub, cores=spec.cores)
        if self.stall_until is not None:
            self.job_sub[jid] = sub
        if fate == _EXTRA_REMOVED_IDLE:
            # a duplicate submission by the producer, removed before it ever ran
            J(t + rng.uniform(600.0, 6 * _HOUR), jid, "removed", sub, reason="via condor_rm (by user novapro)")
            return
        name = self.inputs[f] if f >= 0 else None
        attempts = 0
        while True:
            t += max(30.0, _lognormal(rng, self.ln_wait, 1.0))
            site, host, osg = self._slot()
            J(t, jid, "started", sub, site=site, host=host)
            if name is not None:
                F(t + rng.uniform(5.0, 60.0), name, "delivered", sub, jid)
            wall = max(900.0, _lognormal(rng, self.ln_wall, spec.wall_sigma))
            attempts += 1
            kind = self._interruption(osg) if attempts < _MAX_ATTEMPTS else None
            if kind is None:
                break
            t_start = t
            t = self._noise(t, max(120.0, wall * rng.uniform(0.03, 0.9)), jid, sub, site, host)
            if kind == "evicted":
                J(t, jid, "evicted", sub, site=site, host=host, wall_s=round(t - t_start, 1),
                  reason=_EVICT_REASONS[rng.randrange(3)])
            elif kind == "held":
                J(t, jid, "held", sub, site=site, host=host,
                  reason=_HOLD_REASONS[rng.randrange(4)].format(host=host))
                t += max(60.0, _lognormal(rng, self.ln_hold, 1.0))
                J(t, jid, "released", sub, reason="periodic release")
            elif kind == "shadow_exception":
                J(t, jid, "shadow_exception", sub, site=site, host=host,
                  reason=f"Error from slot1@{host}: Failed to open '/var/lib/condor/execute/dir_{proc}/.job.ad'")
            elif kind == "reconnect_failed":
                J(t, jid, "disconnected", sub, site=site, host=host,
                  reason="Socket between submit and execute hosts closed unexpectedly")
                t += rng.uniform(1200.0, 2400.0)  # the job lease runs out
                J(t, jid, "reconnect_failed", sub, site=site, host=host, reason="Job lease expired")
            # "silent": the glidein vanished; the next start is the only trace
        t_start = t

        if fate == _EXTRA_EMPTY:
            # the SAM project had no file left for it: a short, successful, file-less job
            end = self._noise(t, rng.uniform(120.0, 900.0), jid, sub, site, host)
            J(end, jid, "terminated", sub, site=site, host=host, exit_code=0, **self._usage(end - t_start))
            return
        if fate == _EXTRA_HELD_REMOVED or (fate in (_FAIL, _FINAL_FAILED) and rng.random() < spec.p_fail_held_removed):
            end = self._noise(t, max(120.0, wall * rng.uniform(0.1, 0.9)), jid, sub, site, host)
            J(end, jid, "held", sub, site=site, host=host, reason=_HOLD_REASONS[0])
            t_rm = end + max(600.0, _lognormal(rng, _LN_6H, 0.8))
            J(t_rm, jid, "removed", sub, reason="periodic remove: held for too long")
            if name is not None:
                F(t_rm + rng.uniform(1.0, 30.0), name, "failed", sub, jid)
                if fate == _FAIL:
                    self._schedule_recovery(t_rm, f, attempt)
            return
        if fate in (_FAIL, _FINAL_FAILED):
            end = self._noise(t, max(120.0, wall * rng.uniform(0.02, 1.0)), jid, sub, site, host)
            r = rng.random()
            for exit_code, sig, w in _FAIL_EXITS:
                if r < w:
                    break
                r -= w
            assert name is not None
            F(end - rng.uniform(5.0, 30.0), name, "failed", sub, jid)
            usage = self._usage(end - t_start)
            if sig is None:
                J(end, jid, "terminated", sub, site=site, host=host, exit_code=exit_code, **usage)
            else:
                J(end, jid, "terminated", sub, site=site, host=host, signal=sig, **usage)
            if fate == _FAIL:
                self._schedule_recovery(end, f, attempt)
            return
        assert name is not None
        if fate == _FINAL_SKIPPED:
            end = self._noise(t, rng.uniform(120.0, 600.0), jid, sub, site, host)
            F(end - rng.uniform(5.0, 30.0), name, "skipped", sub, jid)
            J(end, jid, "terminated", sub, site=site, host=host, exit_code=0, **self._usage(end - t_start))
            return
        # a successful job: consumed, output declared, terminated, output located (maybe earlier)
        end = self._noise(t, wall, jid, sub, site, host)
        F(end - rng.uniform(60.0, 180.0), name, "consumed", sub, jid)
        J(end, jid, "terminated", sub, site=site, host=host, exit_code=0, **self._usage(end - t_start))
        if fate == _NO_OUTPUT:
            return
        stem = name.rsplit(".", 1)[0]
        out = f"{stem}.{cluster}.{proc}.out.root"
        t_decl = end - rng.uniform(2.0, 40.0)
        F(t_decl, out, "output_declared", sub, jid, parents=[name])
        if fate == _NEVER_LOCATED:
            return
        if rng.random() < spec.p_located_early:
            t_loc = t_decl - rng.uniform(1.0, 30.0)  # the location registration won the race
        else:
            t_loc = end + max(5.0, _lognormal(rng, self.ln_locate, spec.locate_delay_sigma))
        where = f"{spec.storage}/{spec.campaign}/{spec.stage}/{(cluster + proc) % 256:02x}"
        F(t_loc, out, "output_located", sub, jid, location=where)

    # --- a stalled stage keeps its running jobs alive but makes no progress ------------------------

    def _stall(self, cut: float, until: float) -> Iterator[tuple[float, int, Event]]:
        rng = self.stall_rng
        hung = [(jid, typ) for jid, typ in self.tracker.last_job.items() if typ in _RUNNING_TYPES]
        for jid, typ in hung:
            t = cut
            if typ == "disconnected":
                t += rng.uniform(30.0, 900.0)
                self.job(t, jid, "reconnected", self.job_sub[jid])
            while True:
                t += rng.expovariate(1.0 / (3 * _HOUR))
                if t + 1000.0 > until:
                    break
                self.job(t, jid, "disconnected", self.job_sub[jid],
                         reason="Socket between submit and execute hosts closed unexpectedly")
                t += rng.uniform(20.0, 900.0)
                self.job(t, jid, "reconnected", self.job_sub[jid])
        out = self.out
        while out:
            item = heapq.heappop(out)
            self.tracker.observe(item[2])
            yield item


# --------------------------------------------------------------------------------------------------
# cuts, delivery effects and the public functions


def _find_cut(spec: StageSpec, seed: int) -> float:
    """The relative time at which the stage shows exactly ``n_unlocated`` files without a located output.

    Takes the last such stretch of time (for a stage whose inputs keep arriving, the count can pass
    the target more than once); once every input is declared the count only falls, so the search
    stops as soon as it is below the target.
    """
    target = spec.n_unlocated
    assert target is not None
    run = _StageRun(spec, seed, spec.start_ts, None, None)
    tracker = run.tracker
    n_total = spec.n_input_files
    best: tuple[float, float] | None = None
    since: float | None = None
    current = -1
    for rel, _, _ in run.events():
        value = tracker.n_inputs - len(tracker.located_inputs)
        if value != current:
            if since is not None and rel > since:
                best = (since, rel)
            since = rel if value == target else None
            current = value
        if tracker.n_inputs == n_total and value < target:
            break
    if best is None:
        # A stretch still open when the stage is done would mean a finished stage, not a running one.
        raise ValueError(
            f"{spec.stage}: the stage never shows exactly {target} files without a located output while "
            "it is still running; use end='finished' or another n_unlocated"
        )
    return (best[0] + best[1]) / 2


def stage_stream(
    spec: StageSpec, seed: int, index: int, record: dict[tuple[str, str], StageOutcome] | None
) -> Iterator[tuple[float, int, int, int, Event]]:
    """One stage's events as (delivery time, stage index, seq, copy, event), in delivery order.

    The tuple is the merge key of ``simulate_many`` (heapq.merge of these streams): stages can be
    simulated in separate processes and their keyed lines merged afterwards into the same order
    (bench/scale_steps.child_simulate does this on both cores)."""
    stall = spec.stall_s if spec.end == "stalled" else 0.0
    t0 = spec.start_ts
    cut: float | None = None
    if spec.end != "finished":
        if spec.n_unlocated is not None:
            cut = _find_cut(spec, seed)
            if spec.end_ts is not None:
                t0 = spec.end_ts - stall - cut
        else:
            assert spec.end_ts is not None
            cut = spec.end_ts - stall - spec.start_ts
    run = _StageRun(spec, seed, t0, cut, cut + stall if spec.end == "stalled" and cut is not None else None)
    rng = random.Random(_derive_seed(seed, spec.campaign, spec.stage, "delivery"))
    window, dup = spec.reorder_window_s, spec.duplicate_fraction
    deliveries = duplicates = 0
    if window <= 0 and dup <= 0:
        for _, seq, ev in run.events():
            deliveries += 1
            yield ev.ts, index, seq, 0, ev  # type: ignore[misc]
    else:
        pending: list[tuple[float, int, int, int, Event]] = []
        push, pop, rand = heapq.heappush, heapq.heappop, rng.random
        for _, seq, ev in run.events():
            ts: float = ev.ts  # type: ignore[assignment]
            push(pending, (ts + rand() * window, index, seq, 0, ev))
            if dup and rand() < dup:
                # a redelivery of the same message (at-least-once transport): same event_id
                push(pending, (ts + rand() * window, index, seq, 1, copy.copy(ev)))
                duplicates += 1
            # every later event has ts >= this one and so a delivery time >= ts: these are final
            while pending[0][0] <= ts:
                deliveries += 1
                yield pop(pending)
        while pending:
            deliveries += 1
            yield pop(pending)
    if record is not None:
        tracker = run.tracker
        end_ts = t0 + cut + stall if cut is not None else tracker.last_ts
        outcome = tracker.outcome(spec, t0, end_ts)
        outcome.deliveries = deliveries
        outcome.duplicates = duplicates
        record[(spec.campaign, spec.stage)] = outcome


def simulate(
    spec: StageSpec, seed: int, *, record: dict[tuple[str, str], StageOutcome] | None = None
) -> Iterator[Event]:
    """Stream one stage's events in delivery order (after duplication and reordering).

    Same spec and seed give the same events in the same order with the same event_ids. If ``record``
    is given, the stage's ``StageOutcome`` is stored in it under (campaign, stage) once the stream is
    exhausted, which saves a second generation for tests that need the truth.
    """
    for item in stage_stream(spec, seed, 0, record):
        yield item[4]


def simulate_many(
    specs: Iterable[StageSpec], seed: int, *, record: dict[tuple[str, str], StageOutcome] | None = None
) -> Iterator[Event]:
    """Merge several stages by delivery time; each stage's own stream equals ``simulate(spec, seed)``."""
    specs = list(specs)
    keys = [(s.campaign, s.stage) for s in specs]
    if len(set(keys)) != len(keys):
        raise ValueError("every (campaign, stage) may appear only once")
    streams = [stage_stream(s, seed, i, record) for i, s in enumerate(specs)]
    for item in heapq.merge(*streams):
        yield item[4]


def expected_outcome(spec: StageSpec, seed: int) -> StageOutcome:
    """The truth for ``simulate(spec, seed)`` (and for the same stage inside ``simulate_many``)."""
    record: dict[tuple[str, str], StageOutcome] = {}
    for _ in stage_stream(spec, seed, 0, record):
        pass
    return record[(spec.campaign, spec.stage)]


def expected_outcomes(specs: Iterable[StageSpec], seed: int) -> dict[tuple[str, str], StageOutcome]:
    """The truth for every stage of ``simulate_many(specs, seed)``, keyed by (campaign, stage)."""
    return {(s.campaign, s.stage): expected_outcome(s, seed) for s in specs}


# --------------------------------------------------------------------------------------------------
# presets


def _keepup(now: float, n_files: int, days: float, **delivery: float) -> StageSpec:
    """A keepup stage: raw files arrive all the time and are processed within the hour.

    Observed ``days`` into an arrival period a third longer, so data is still arriving at ``now``.
    """
    return StageSpec(
        campaign="nova_keepup",
        stage="fd_keepup_raw2root",
        n_input_files=n_files,
        start_ts=now - days * _DAY,
        end="running",
        end_ts=now,
        input_arrival_s=days * 4 / 3 * _DAY,
        batch_size=100,
        batch_interval_s=1 * _HOUR,
        recovery_interval_s=2 * _HOUR,
        wall_median_s=40 * 60.0,
        queue_wait_median_s=5 * 60.0,
        p_evict=0.02,
        p_evict_silent=0.0,
        fnal_share=0.9,
        file_template="fardet_r{run:08d}_s{subrun:02d}_t00.raw",
        **delivery,  # type: ignore[arg-type]
    )


def nova_talk(
    now: float = TALK_NOW, duplicate_fraction: float = 0.01, reorder_window_s: float = 120.0
) -> list[StageSpec]:
    """The stages of the talk's table, with the MC generation stage's numbers reproduced exactly.

    fd_mcgen_cry_fhc_all: 30,000 input files, 44,248 job ids, 310 files without a located output,
    finished days before ``now``. The others end their observation at ``now``: a data stage still
    running (1,100 of 2,500 files without a located output), a reconstruction stage stalled for eight
    hours (520 of 1,200), and a small keepup stage fed as raw data arrives.
    """
    delivery = {"duplicate_fraction": duplicate_fraction, "reorder_window_s": reorder_window_s}
    return [
        StageSpec(
            campaign="nova_prod5_mc",
            stage="fd_mcgen_cry_fhc_all",
            n_input_files=30_000,
            n_jobs=44_248,
            n_unlocated=310,
            start_ts=now - 12 * _DAY,
            end="finished",
            batch_size=1000,
            batch_interval_s=4 * _HOUR,
            extra_job_rate=0.07,
            max_recoveries=3,
            wall_median_s=2.5 * _HOUR,
            file_template="fd_cry_fhc_all_r{run:08d}_s{subrun:02d}.fcl",
            **delivery,  # type: ignore[arg-type]
        ),
        StageSpec(
            campaign="nova_prod5_data",
            stage="fd_data_period1",
            n_input_files=2_500,
            n_jobs=3_000,
            n_unlocated=1_100,
            end="running",
            end_ts=now,
            batch_size=250,
            batch_interval_s=3 * _HOUR,
            wall_median_s=4 * _HOUR,
            cores=2,
            file_template="fardet_r{run:08d}_s{subrun:02d}_t02_data.artdaq.root",
            storage="dcache:/pnfs/nova/persistent",
            **delivery,  # type: ignore[arg-type]
        ),
        StageSpec(
            campaign="nova_prod5_mc",
            stage="fd_reco_cry_fhc_all",
            n_input_files=1_200,
            n_jobs=1_500,
            n_unlocated=520,
            end="stalled",
            end_ts=now,
            stall_s=8 * _HOUR,
            batch_size=200,
            batch_interval_s=3 * _HOUR,
            wall_median_s=5 * _HOUR,
            file_template="fd_cry_fhc_all_r{run:08d}_s{subrun:02d}.artdaq.root",
            **delivery,  # type: ignore[arg-type]
        ),
        _keepup(now, 480, 3.0, **delivery),
    ]


def nova_week(
    now: float = TALK_NOW, duplicate_fraction: float = 0.01, reorder_window_s: float = 120.0
) -> list[StageSpec]:
    """A NOvA production week for benchmarks: about 100,000 job ids and about a million events.

    Busier OSG weather than the talk preset (more evictions, holds and disconnects), because a
    benchmark should exercise the restart and state bookkeeping, not only the happy path.
    """
    delivery = {"duplicate_fraction": duplicate_fraction, "reorder_window_s": reorder_window_s}
    weather = {
        "p_evict": 0.2,
        "p_evict_silent": 0.07,
        "p_hold": 0.03,
        "p_shadow_exception": 0.015,
        "p_reconnect_failed": 0.01,
        "p_disconnect": 0.2,
        "p_suspend": 0.04,
        "fnal_share": 0.35,
    }
    week = now - 7 * _DAY
    mc = "nova_prod5_mc"
    return [
        StageSpec(
            campaign=mc, stage="fd_mcgen_genie_fhc_nonswap", n_input_files=32_000, n_jobs=43_000,
            n_unlocated=260, start_ts=week, batch_size=1500, batch_interval_s=3 * _HOUR,
            wall_median_s=2 * _HOUR, file_template="fd_genie_fhc_nonswap_r{run:08d}_s{subrun:02d}.fcl",
            **weather, **delivery,  # type: ignore[arg-type]
        ),
        StageSpec(
            campaign=mc, stage="nd_mcgen_genie_rhc", n_input_files=24_000, n_jobs=31_000, n_unlocated=190,
            start_ts=week + 6 * _HOUR, batch_size=1500, batch_interval_s=3 * _HOUR, wall_median_s=3 * _HOUR,
            file_template="nd_genie_rhc_r{run:08d}_s{subrun:02d}.fcl", **weather, **delivery,  # type: ignore[arg-type]
        ),
        StageSpec(
            campaign=mc, stage="fd_reco_genie_fhc_nonswap", n_input_files=18_000, n_jobs=22_000,
            n_unlocated=5_500, end="running", end_ts=now, batch_size=1000, batch_interval_s=2 * _HOUR,
            wall_median_s=5 * _HOUR, cores=2,
            file_template="fd_genie_fhc_nonswap_r{run:08d}_s{subrun:02d}.artdaq.root",
            **weather, **delivery,  # type: ignore[arg-type]
        ),
        StageSpec(
            campaign="nova_prod5_data", stage="nd_data_period3", n_input_files=10_000, n_jobs=12_000,
            n_unlocated=3_500, end="stalled", end_ts=now, stall_s=10 * _HOUR, batch_size=500,
            batch_interval_s=2 * _HOUR, wall_median_s=4 * _HOUR,
            file_template="neardet_r{run:08d}_s{subrun:02d}_t00_data.artdaq.root",
            storage="dcache:/pnfs/nova/persistent", **weather, **delivery,  # type: ignore[arg-type]
        ),
        _keepup(now, 3_200, 6.0, **delivery),
    ]


def tiny(now: float = TALK_NOW, duplicate_fraction: float = 0.05, reorder_window_s: float = 60.0) -> list[StageSpec]:
    """Two small stages, a few hundred events, every delivery effect switched on: for tests and docs."""
    delivery = {"duplicate_fraction": duplicate_fraction, "reorder_window_s": reorder_window_s}
    return [
        StageSpec(
            campaign="demo", stage="mcgen", n_input_files=24, n_jobs=34, n_unlocated=3, start_ts=now - 2 * _DAY,
            batch_size=12, batch_interval_s=2 * _HOUR, max_recoveries=2, extra_job_rate=0.1, p_evict=0.15,
            p_evict_silent=0.08, p_hold=0.05, p_disconnect=0.1, p_located_early=0.15,
            **delivery,  # type: ignore[arg-type]
        ),
        StageSpec(
            campaign="demo", stage="reco", n_input_files=16, n_unlocated=9, end="running", end_ts=now,
            batch_size=4, batch_interval_s=2 * _HOUR, p_evict=0.15, p_evict_silent=0.08,
            **delivery,  # type: ignore[arg-type]
        ),
    ]


PRESETS: dict[str, Callable[..., list[StageSpec]]] = {
    "nova-talk": nova_talk,
    "nova-week": nova_week,
    "tiny": tiny,
}


def preset(name: str, **kwargs: object) -> list[StageSpec]:
    """The stage specs of a named preset; keyword arguments go to the preset (now, delivery effects)."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None
    return factory(**kwargs)
