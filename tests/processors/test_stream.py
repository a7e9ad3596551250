"""The streaming steps (processors/stream.py) without Kafka: any delivery schedule gives the Engine's numbers.

The simulated topology has the same shape as the Faust worker: partitioned, ordered queues for
job events, file events, output links and contributions; state tables that survive "crashes"; and
at-least-once delivery modelled the way Kafka produces it: a crash loses the in-memory state and some
of the batch's emitted messages and state writes, and the consumer resumes from its last committed
position (so the batch is processed again).
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.kafka_io import partition_for_key
from processors.engine import Engine
from processors.stage import VERSION_UNIT, Conflict
from processors.stream import (
    ContributionBatch, FileEntity, JobEntity, Link, LinkBatch, StageAggregator, apply_file_inputs,
    apply_job_events, decode_contribution_batch, decode_link_batch, encode_message, stage_key,
)
from schemas.events import JOB_EVENT_TYPES, FileEvent, JobEvent, encode_event
from tests.processors.conflict_scenarios import losers, winners, with_conflicts
from tests.builders import file, job

T0 = 1_500_000_000.0  # inside the contract's ts range: the steps decode stored events with it
AS_OF = T0 + 100.0
FILE_TYPES = ["input_declared", "delivered", "consumed", "skipped", "failed", "output_declared", "output_located"]
INPUTS = ["in1", "in2", "in3", "in4"]
FILES = INPUTS + ["out1", "out2", "out3"]


@st.composite
def job_events(draw: Any, i: int) -> JobEvent:
    t = draw(st.sampled_from(JOB_EVENT_TYPES))
    kw: dict[str, Any] = {}
    if t == "terminated":
        kw = dict(exit_code=draw(st.sampled_from([0, 1, None])), signal=draw(st.sampled_from([None, 9])),
                  cpu_user_s=draw(st.sampled_from([None, 10.5])), cpu_sys_s=1.25,
                  wall_s=draw(st.sampled_from([None, 50.0])))
    if t in ("evicted", "held"):
        kw = dict(wall_s=draw(st.sampled_from([None, 33.3])))
    return JobEvent(event_id=f"e{i}", ts=T0 + draw(st.integers(0, 20)), campaign="c",
                    stage=draw(st.sampled_from(["s1", "s2"])), job_id=draw(st.sampled_from(["j1", "j2", "j3"])),
                    type=t, cores=draw(st.sampled_from([None, 1, 4])), **kw)


@st.composite
def file_events(draw: Any, i: int) -> FileEvent:
    t = draw(st.sampled_from(FILE_TYPES))
    parents = draw(st.lists(st.sampled_from(INPUTS), min_size=1, max_size=2)) if t == "output_declared" else None
    return FileEvent(event_id=f"e{i}", ts=T0 + draw(st.integers(0, 20)), campaign="c",
                     stage=draw(st.sampled_from(["s1", "s2"])), file=draw(st.sampled_from(FILES)), type=t,
                     parents=parents, location="/x" if t == "output_located" else None)


class Topology:
    """The worker's topics, tables and steps in one process, driven by a random scheduler."""

    def __init__(self, rng: random.Random, partitions: int, crash_p: float) -> None:
        self.rng = rng
        self.n = partitions
        self.crash_p = crash_p
        # topic -> partition -> (messages, committed position)
        self.topics: dict[str, list[list[Any]]] = {t: [[[], 0] for _ in range(partitions)]
                                                   for t in ("jobs", "files", "links", "contrib")}
        self.job_table: dict[str, bytes] = {}
        self.file_table: dict[str, bytes] = {}
        self.stage_table: dict[str, bytes] = {}
        self.stage = StageAggregator()
        self.rows: dict[tuple[str, tuple], tuple[int, int, dict]] = {}
        self.seq = 0
        self.crashes = 0
        self.conflicts: list[Any] = []

    def publish(self, ev: Any) -> None:
        topic = "jobs" if isinstance(ev, JobEvent) else "files"
        self.topics[topic][partition_for_key(ev.entity.encode(), self.n)][0].append(ev)

    # -- emission: each message goes to its partition, as the worker's producer does
    def _emit(self, contributions: list[ContributionBatch], links: list[Link], keep: float) -> None:
        for b in contributions:
            if self.rng.random() < keep:
                p = partition_for_key(stage_key(b.campaign, b.stage).encode(), self.n)
                self.topics["contrib"][p][0].append(encode_message(b))
        by_p: dict[int, list[Link]] = {}
        for link in links:
            by_p.setdefault(partition_for_key(link.parent.encode(), self.n), []).append(link)
        for p, ls in by_p.items():
            if self.rng.random() < keep:
                self.topics["links"][p][0].append(encode_message(LinkBatch(ls)))

    def _write(self, table: dict[str, bytes], updates: dict[str, bytes], keep: float) -> None:
        for k, v in updates.items():
            if self.rng.random() < keep:
                table[k] = v

    def _sink(self, rows: list[tuple[str, dict]]) -> None:
        for table, row in rows:
            key = (row["campaign"], row["stage"], row.get("job_id") or row.get("file"), row.get("attempt"))
            self.seq += 1
            old = self.rows.get((table, key))
            if old is None or (row["version"], self.seq) >= old[:2]:
                self.rows[(table, key)] = (row["version"], self.seq, row)

    def _take(self, topic: str, p: int) -> tuple[list[Any], int]:
        msgs, pos = self.topics[topic][p]
        n = self.rng.randint(1, 4)
        return msgs[pos:pos + n], pos

    def step(self) -> bool:
        """Process one batch of some non-empty partition; False when every partition is drained."""
        ready = [(t, p) for t, parts in self.topics.items() for p, (msgs, pos) in enumerate(parts) if pos < len(msgs)]
        if not ready:
            return False
        topic, p = self.rng.choice(ready)
        crash = self.rng.random() < self.crash_p
        keep = self.rng.random() if crash else 1.0
        if topic == "jobs":
            batch, pos = self._take("jobs", p)
            res = apply_job_events(self.job_table, batch)
            self.conflicts.extend(res.conflicts)
            self._write(self.job_table, res.updates, keep)
            self._emit(res.contribution_batches(), [], keep)
            self._sink(res.rows)
            end = {"jobs": pos + len(batch)}
        elif topic in ("files", "links"):
            # the file agent reads both co-partitioned topics of partition p in one batch
            evs, epos = self._take("files", p)
            lbs, lpos = self._take("links", p)
            links = [link for raw in lbs for link in decode_link_batch(raw).links]
            res = apply_file_inputs(self.file_table, evs, links)
            self.conflicts.extend(res.conflicts)
            self._write(self.file_table, res.updates, keep)
            self._emit(res.contribution_batches(), res.links, keep)
            self._sink(res.rows)
            end = {"files": epos + len(evs), "links": lpos + len(lbs)}
        else:
            batch, pos = self._take("contrib", p)
            for raw in batch:
                updates = self.stage.apply(decode_contribution_batch(raw))
                self._write(self.stage_table, updates, keep)
            end = {"contrib": pos + len(batch)}
        if crash:
            # Not acked: the consumer resumes at the committed position; in-memory state is gone.
            self.crashes += 1
            self.stage.load(self.stage_table.values())
        else:
            for t, new_pos in end.items():
                self.topics[t][p][1] = new_pos
        return True


def engine_rows(events: list[Any]) -> dict[tuple[str, tuple], dict]:
    e = Engine()
    e.apply_all(events)
    out = {}
    for table, row in e.dirty_rows():
        if table == "stage_numbers":
            continue
        key = (row["campaign"], row["stage"], row.get("job_id") or row.get("file"), row.get("attempt"))
        out[(table, key)] = row
    return out


def run_topology(events: list[Any], deliveries: list[Any], seed: int, partitions: int, crash_p: float) -> Topology:
    topo = Topology(random.Random(seed), partitions, crash_p)
    for ev in deliveries:
        topo.publish(ev)
    steps = 0
    while topo.step():
        steps += 1
        assert steps < 100_000, "the topology does not converge"
    return topo


@st.composite
def scenarios(draw: Any) -> tuple[list[Any], list[Any], int, int, float]:
    n = draw(st.integers(1, 40))
    events = [draw(st.one_of(job_events(i), file_events(i))) for i in range(n)]
    dupes = draw(st.lists(st.sampled_from(events), max_size=12))
    deliveries = draw(st.permutations(events + dupes))
    return events, deliveries, draw(st.integers(0, 2**32)), draw(st.integers(1, 4)), draw(st.sampled_from([0.0, 0.2, 0.5]))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_any_schedule_with_redelivery_and_crashes_equals_engine(scenario: Any) -> None:
    events, deliveries, seed, partitions, crash_p = scenario
    topo = run_topology(events, deliveries, seed, partitions, crash_p)
    e = Engine()
    e.apply_all(events)
    assert topo.stage.numbers(AS_OF) == e.numbers(as_of=AS_OF)
    # After a crash the stage is rebuilt from its table alone: the same numbers.
    rebuilt = StageAggregator()
    rebuilt.load(topo.stage_table.values())
    assert rebuilt.numbers(AS_OF) == e.numbers(as_of=AS_OF)
    # The newest state row per key (what ReplacingMergeTree keeps) equals the embedded rows.
    expected = engine_rows(events)
    got = {k: v[2] for k, v in topo.rows.items()}
    assert got == expected


def _without_version(rows: dict[Any, dict]) -> dict[Any, dict]:
    """Rows without their version, and without attempt rows beyond their job's attempts.

    A winning copy can take a `started` away from a job: the loser's last attempt row then stays in a
    keyed table (a known limit: readers must take a job's attempts from job_state.attempts).
    """
    attempts = {(r["campaign"], r["stage"], r["job_id"]): r["attempts"] for (t, _), r in rows.items() if t == "job_state"}
    return {k: {c: v for c, v in row.items() if c != "version"} for k, row in rows.items()
            if k[0] != "job_attempts" or row["attempt"] <= attempts[(row["campaign"], row["stage"], row["job_id"])]}


@st.composite
def conflict_scenarios(draw: Any) -> tuple[list[Any], list[Any], int, int, float]:
    copies, deliveries = draw(with_conflicts(lambda i: st.one_of(job_events(i), file_events(i))))
    return copies, deliveries, draw(st.integers(0, 2**32)), draw(st.integers(1, 4)), draw(st.sampled_from([0.0, 0.3]))


@settings(max_examples=200, deadline=None)
@given(conflict_scenarios())
def test_conflicting_copies_any_schedule_equals_the_winners_alone(scenario: Any) -> None:
    """Conflicting copies through the steps, in any order, with redelivery and crashes: the numbers (stage
    times included) and the newest rows are those of the winners alone, and every losing copy is reported."""
    copies, deliveries, seed, partitions, crash_p = scenario
    topo = run_topology(copies, deliveries, seed, partitions, crash_p)
    won = winners(copies)
    e = Engine()
    e.apply_all(won)
    assert topo.stage.numbers(AS_OF) == e.numbers(as_of=AS_OF)
    rebuilt = StageAggregator()
    rebuilt.load(topo.stage_table.values())
    assert rebuilt.numbers(AS_OF) == e.numbers(as_of=AS_OF)
    assert _without_version({k: v[2] for k, v in topo.rows.items()}) == _without_version(engine_rows(won))
    assert {encode_event(c.dropped) for c in topo.conflicts} == losers(copies)


def test_a_winning_copy_raises_every_version_and_replaces_the_stage_times() -> None:
    """The winner's job contribution and file link get strictly greater versions than the loser's state,
    and the stage's last_event_ts no longer includes the loser's ts."""
    state: dict[str, bytes] = {}
    agg = StageAggregator()
    a = job("j1", "terminated", T0 + 50, eid="t", exit_code=0)
    b = job("j1", "terminated", T0 + 9, eid="t", exit_code=1)
    (win, lose) = (a, b) if winners([a, b])[0] is a else (b, a)
    versions = []
    for ev in (job("j1", "submitted", T0 + 1, eid="s"), lose, win, lose):
        res = apply_job_events(state, [ev])
        state.update(res.updates)
        for batch in res.contribution_batches():
            agg.apply(batch)
        versions.append(res.contributions[("camp", "stage1")][0].version)
    assert versions[0] < versions[1] < versions[2] == versions[3]
    (n,) = agg.numbers(AS_OF)
    assert n["last_event_ts"] == win.ts and n["jobs_completed_ok"] == int(win.exit_code == 0)
    f = FileEntity()
    f.add(file("o1", "output_declared", T0 + 1, eid="d", parents=["in1"]))
    v = f.own_version
    for other in (file("o1", "output_located", T0 + 2, eid="d"),
                  file("o1", "output_declared", T0 + 3, eid="d", parents=["in2"])):
        before = list(f.events)
        c = f.add(other)
        assert isinstance(c, Conflict)
        if c.kept is other:
            assert f.own_version > v and f.events == [other]
        else:
            assert f.own_version == v and f.events == before
        v = f.own_version


def test_a_winning_copy_that_names_no_parent_sends_a_gone_link() -> None:
    """The losing copy made out1 an output of in1 (a link was sent); the winner names no parent: in1 is told,
    in every order, and counts as the Engine does with the winners alone."""
    declared = file("out1", "output_declared", T0 + 3, eid="d", parents=["in1"])
    other = file("out1", "input_declared", T0 + 9, eid="d")
    assert winners([declared, other]) == [other]  # the copy without parents wins (by its content hash)
    inp = [file("in1", "input_declared", T0 + 1), file("in1", "consumed", T0 + 2)]
    e = Engine()
    e.apply_all(inp + winners([declared, other]))
    for order in ([declared, other], [other, declared], [declared, other, declared]):
        for seed in range(5):
            topo = run_topology(inp + order, inp + order, seed=seed, partitions=2, crash_p=0.3)
            assert topo.stage.numbers(AS_OF) == e.numbers(as_of=AS_OF)


def test_crashes_really_happen_in_the_model() -> None:
    """Guard against a model that never exercises re-delivery (the property above would be vacuous)."""
    evs = [job("j1", "submitted", T0 + 1), job("j1", "started", T0 + 2), file("in1", "input_declared", T0 + 1),
           file("out1", "output_located", T0 + 3), file("out1", "output_declared", T0 + 4, parents=["in1"])]
    topo = run_topology(evs, evs * 2, seed=7, partitions=2, crash_p=0.5)
    assert topo.crashes > 0
    e = Engine()
    e.apply_all(evs)
    (n,) = e.numbers(as_of=AS_OF)
    assert n["files_located"] == 1 and n["jobs_running"] == 1
    assert topo.stage.numbers(AS_OF) == e.numbers(as_of=AS_OF)


def test_located_before_declared_joins_through_the_link() -> None:
    """output_located and output_declared of one output arrive on its own key; the input moves once both are in."""
    state: dict[str, bytes] = {}
    agg = StageAggregator()

    def run(events: list[Any], links: list[Link]) -> list[Link]:
        res = apply_file_inputs(state, events, links)
        state.update(res.updates)
        for b in res.contribution_batches():
            agg.apply(b)
        return res.links

    assert run([file("in1", "input_declared", T0 + 1), file("in1", "consumed", T0 + 2)], []) == []
    assert agg.numbers(AS_OF)[0]["files_consumed_no_output"] == 1
    assert run([file("out1", "output_located", T0 + 3, location="/x")], []) == []  # no parents known yet
    links = run([file("out1", "output_declared", T0 + 4, parents=["in1"])], [])
    assert [(x.parent, x.child, x.version, x.located) for x in links] == [("in1", "out1", 2 * VERSION_UNIT, True)]
    run([], links)
    n = agg.numbers(AS_OF)[0]
    assert (n["files_located"], n["files_consumed_no_output"], n["outputs_located"]) == (1, 0, 1)
    # the same link again, and an older one: nothing changes
    assert run([], links + [Link("camp", "stage1", "in1", "out1", VERSION_UNIT, False)]) == []
    assert agg.numbers(AS_OF)[0] == n


def test_entity_codecs_round_trip() -> None:
    j = JobEntity()
    assert j.add(job("j9", "started", T0 + 5, cores=4)) and j.add(job("j9", "submitted", T0 + 1))
    assert not j.add(j.events[0])
    back = JobEntity.decode(j.encode())
    assert [e.type for e in back.events] == ["submitted", "started"] and back.encode() == j.encode()
    f = FileEntity()
    f.add(file("in9", "input_declared", T0 + 1))
    assert f.link("o", 2, True, located_at=T0 + 7) and not f.link("o", 2, False) and not f.link("o", 1, False)
    g = FileEntity.decode(f.encode())
    assert g.children == {"o": (2, True, T0 + 7)} and g.version == VERSION_UNIT + 2 and g.encode() == f.encode()


def test_stage_row_version_grows_with_every_accepted_contribution() -> None:
    """A bucket move without a new event still raises the stage row's version (ReplacingMergeTree keeps it)."""
    agg = StageAggregator()
    state: dict[str, bytes] = {}
    versions = []
    for evs, links in ([[file("in1", "input_declared", T0 + 1)], []],
                       [[file("out1", "output_declared", T0 + 2, parents=["in1"])], []]):
        res = apply_file_inputs(state, evs, links)
        state.update(res.updates)
        for b in res.contribution_batches():
            agg.apply(b)
        versions.append(agg.take_dirty_rows()[0]["version"])
        if res.links:
            res2 = apply_file_inputs(state, [], res.links)
            state.update(res2.updates)
            for b in res2.contribution_batches():
                agg.apply(b)
            row = agg.take_dirty_rows()[0]
            assert row["files_declared_not_located"] == 1
            versions.append(row["version"])
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def _big_job_batch(n_jobs: int) -> tuple[ContributionBatch, list[Link]]:
    """A batch's side outputs grown past Kafka's 1 MB default: contributions of one stage and links."""
    state: dict[str, bytes] = {}
    events = [job(f"fifebatch1#{i}.0/" + "x" * 200, "started", T0 + i, cores=1) for i in range(n_jobs)]
    res = apply_job_events(state, events)
    (cb,) = res.contribution_batches()
    links = [Link("c", "s", "in-" + "p" * 300, f"out{i}-" + "c" * 300, i + 1, i % 2 == 0) for i in range(n_jobs)]
    return cb, links


def test_side_outputs_are_split_into_messages_under_the_limit_and_lose_nothing() -> None:
    """A stream_bench worker died with MSG_SIZE_TOO_LARGE on a contributions message (one per stage per batch)
    and crash-looped on the same batch: every message is now bounded, whatever the batch."""
    from processors.stream import split_contribution_batch, split_links

    cb, links = _big_job_batch(6000)
    assert len(encode_message(cb)) > 1_000_000 and len(encode_message(LinkBatch(links))) > 1_000_000
    parts = split_contribution_batch(cb, 100_000)
    assert len(parts) > 10 and all(len(p) <= 100_000 for p in parts)
    back = [decode_contribution_batch(p) for p in parts]
    assert {(b.campaign, b.stage) for b in back} == {(cb.campaign, cb.stage)}
    assert [i for b in back for i in b.items] == cb.items   # every contribution, in order, once
    lparts = split_links(links, 100_000)
    assert all(len(p) <= 100_000 for p in lparts)
    assert [link for p in lparts for link in decode_link_batch(p).links] == links
    # a batch under the limit stays one message
    assert split_contribution_batch(cb, 10_000_000) == [encode_message(cb)]
    # the stage step applied to the pieces equals the whole
    whole, pieces = StageAggregator(), StageAggregator()
    whole.apply(cb)
    for b in back:
        pieces.apply(b)
    assert whole.numbers(T0) == pieces.numbers(T0)
