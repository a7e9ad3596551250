"""The per-entity steps of the streaming topology, as pure functions over bytes (no Faust, no Kafka).

The Faust workers (processors/faust/) only move bytes between Kafka, these steps and
ClickHouse; everything that decides a number happens here, with the same domain code as the embedded
replay (processors.jobs, processors.files, processors.contributions). That keeps the streaming logic
unit-testable without a broker (tests/processors/test_stream.py).

Topology (one arrow = one Kafka topic, all co-partitioned: same partition count, murmur2 key hash):

    job-events  (key job_id) --> JOB STEP   --contributions (key campaign|stage)--> STAGE STEP
    file-events (key file)   --> FILE STEP  --contributions----------------------->
    output-links (key parent file) -^   |
                 ^----------------------+  (an output file's facts, sent to each of its parents)

Why it is idempotent under at-least-once delivery:

* A job's or file's state is the *set* of its events (deduplicated by event_id), plus for a file the
  newest (version, located) of each output that names it as a parent. Adding an event twice, or a
  stale link, changes nothing; the state is a join-semilattice and only grows.
* Every step emits an entity's *whole* contribution to its stage with a version that grows with the
  state (job: processors.stage.entity_version of its events; file: that of its own events plus the sum
  of its outputs' versions).
* Conflicting copies of an event_id are resolved as in the embedded engine (processors.stage: the
  smaller content hash wins, whatever the order); each is reported in StepResult.conflicts. The stage
  keeps the newest version per entity (StageCounters.apply) and ignores anything older or equal, so a
  re-delivered, re-processed or out-of-order contribution changes nothing.
* A step re-emits the contribution (and links, and state rows) of every entity a batch touches, even
  when all of the batch's events were duplicates: after a crash between "state written" and
  "contribution sent", re-processing the same input re-sends what may have been lost.

The stage row's version is the sum of its entities' versions: it grows with every accepted
contribution (not only with new events: a file moving to "located" because of its output does not
add an event to the stage), so ReplacingMergeTree(version) keeps the newest stage row even when an
old row is written late.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import msgspec

from processors import files as filemod
from processors import jobs as jobmod
from processors.contributions import StageCounters
from processors.rows import job_attempt_rows, job_row
from processors.stage import Conflict, entity_version, find_copy, resolve
from schemas.events import FileEvent, JobEvent, encode_event

KEY_SEP = "|"


def stage_key(campaign: str, stage: str) -> str:
    """Key of a stage's messages on the contributions topic (one partition per stage)."""
    return f"{campaign}{KEY_SEP}{stage}"


def entity_key(campaign: str, stage: str, name: str) -> str:
    """Key of a job, file or stage-entity in a table ("campaign|stage|name")."""
    return f"{campaign}{KEY_SEP}{stage}{KEY_SEP}{name}"


# ------------------------------------------------------------------------------------------------ messages

class Contribution(msgspec.Struct, array_like=True, frozen=True):
    """An entity's whole share of its stage's counters, with the version of the state it comes from."""

    entity: str  # "job:<job_id>" or "file:<file>"
    version: int
    contribution: dict[str, int]
    first_ts: float | None
    last_ts: float | None
    progress_ts: float | None


class ContributionBatch(msgspec.Struct, array_like=True):
    """The contributions of one stage from one processed batch (one Kafka message, key campaign|stage)."""

    campaign: str
    stage: str
    items: list[Contribution]


class Link(msgspec.Struct, array_like=True, frozen=True):
    """An output file's facts, for one of its parents (its `parents` name input files)."""

    campaign: str
    stage: str
    parent: str
    child: str
    version: int  # the child's own version (processors.stage.entity_version): grows with its state
    located: bool
    gone: bool = False  # the child no longer names this parent (a winning conflicting copy took it away)
    located_at: float | None = None  # when the child made this parent located (processors.files.located_for)


class LinkBatch(msgspec.Struct, array_like=True):
    """Links bound for one partition of the output-links topic (one Kafka message)."""

    links: list[Link]


class StageEntry(msgspec.Struct, array_like=True, frozen=True):
    """What the stage table keeps per entity (the newest contribution)."""

    campaign: str
    stage: str
    item: Contribution


_msgpack = msgspec.msgpack.Encoder()
encode_message = _msgpack.encode
decode_contribution_batch = msgspec.msgpack.Decoder(ContributionBatch).decode
decode_link_batch = msgspec.msgpack.Decoder(LinkBatch).decode
decode_stage_entry = msgspec.msgpack.Decoder(StageEntry).decode



def _split(items: list[Any], encode: Any, max_bytes: int) -> list[bytes]:
    """``encode(items)`` cut into consecutive pieces of at most ``max_bytes`` each (halving until they fit).

    A batch's side outputs grow with the batch; Kafka refuses a message over message.max.bytes (1 MB by
    default), which stopped a worker on the same batch at every restart. One item alone is never cut: an
    entity's contribution or link is small and bounded by the contract's name lengths.
    """
    data = encode(items)
    if len(data) <= max_bytes or len(items) <= 1:
        return [data]
    mid = len(items) // 2
    return _split(items[:mid], encode, max_bytes) + _split(items[mid:], encode, max_bytes)


def split_contribution_batch(batch: ContributionBatch, max_bytes: int) -> list[bytes]:
    """The batch as messages of at most ``max_bytes`` each (the stage step applies each on its own)."""
    return _split(batch.items, lambda items: encode_message(ContributionBatch(batch.campaign, batch.stage, items)),
                  max_bytes)


def split_links(links: list[Link], max_bytes: int) -> list[bytes]:
    """Links for one partition as LinkBatch messages of at most ``max_bytes`` each."""
    return _split(links, lambda items: encode_message(LinkBatch(items)), max_bytes)


_job_decoder = msgspec.json.Decoder(JobEvent)
_file_decoder = msgspec.json.Decoder(FileEvent)


# ------------------------------------------------------------------------------------------------ entity state

class _Events:
    """The distinct events of one entity, sorted by the domain's sort key, with their canonical JSON."""

    __slots__ = ("keys", "events", "lines", "eids", "hashed")

    def __init__(self) -> None:
        self.keys: list[tuple[float, int, str]] = []
        self.events: list[Any] = []
        self.lines: list[bytes] = []
        self.eids: list[str] = []  # as processors.stage._Entity: `in` on a list runs in C (the hot path)
        self.hashed = False  # a conflict replaced one of its events here: versions include the content bonus

    def _insert(self, key: tuple[float, int, str], ev: Any, line: bytes) -> "bool | Conflict":
        """True: a new event; False: an exact duplicate; a Conflict: another copy of its event_id was here
        (processors.stage._Entity.add: the state changed only if ``conflict.kept is ev``)."""
        eid = key[2]
        if eid in self.eids:
            return self._other_copy(key, ev, line)
        self.eids.append(eid)
        i = len(self.keys) if not self.keys or key >= self.keys[-1] else bisect.bisect(self.keys, key)
        self.keys.insert(i, key)
        self.events.insert(i, ev)
        self.lines.insert(i, line)
        return True

    def _other_copy(self, key: tuple[float, int, str], ev: Any, line: bytes) -> "bool | Conflict":
        i = find_copy(self.keys, key)
        old = self.events[i]
        if old == ev:
            return False
        c = resolve(old, ev)
        if c is None:
            return False
        if c.kept is ev:
            del self.keys[i], self.events[i], self.lines[i]
            j = bisect.bisect(self.keys, key)
            self.keys.insert(j, key)
            self.events.insert(j, ev)
            self.lines.insert(j, line)
            self.hashed = True
        return c

    @property
    def own_version(self) -> int:
        """The version of the entity's own event set (processors.stage.entity_version)."""
        return entity_version(self.events, self.hashed)

    def __len__(self) -> int:
        return len(self.events)


_HASHED = b"#hashed"  # first line of a stored job whose versions include the conflict bonus (not JSON)


class JobEntity(_Events):
    """A job's state: its distinct events. Stored (and sent to the changelog) as JSON lines."""

    __slots__ = ()

    @classmethod
    def decode(cls, raw: bytes | None) -> "JobEntity":
        ent = cls()
        if raw:
            lines = raw.split(b"\n")
            if lines[0] == _HASHED:
                ent.hashed = True
                del lines[0]
            for line in lines:
                ev = _job_decoder.decode(line)
                ent._insert(jobmod.sort_key(ev), ev, line)
        return ent

    def add(self, ev: JobEvent) -> "bool | Conflict":
        """Add an event; False for an exact duplicate, a Conflict for another copy of its event_id."""
        return self._insert(jobmod.sort_key(ev), ev, encode_event(ev))

    def encode(self) -> bytes:
        # The conflict flag is state too: a re-processed batch must re-send the version the stage has.
        return b"\n".join([_HASHED, *self.lines] if self.hashed else self.lines)


class _FileValue(msgspec.Struct, array_like=True):
    lines: list[bytes]
    children: list[tuple[str, int, bool]]
    hashed: bool = False  # _Events.hashed (a default: state written before it existed decodes as False)
    former: list[str] = []  # parents this file named until a winning copy replaced the naming event
    retracted: list[tuple[str, int]] = []  # outputs that no longer name this file, with their link version
    # children's located_for times, in the order of ``children`` (state written before it: none known)
    children_located_at: list[float | None] = []


_file_value_decoder = msgspec.msgpack.Decoder(_FileValue)


class FileEntity(_Events):
    """A file's state: its distinct events, and the newest (version, located, located_at) of each output naming it."""

    __slots__ = ("children", "_children_sum", "former", "retracted")

    def __init__(self) -> None:
        super().__init__()
        self.children: dict[str, tuple[int, bool, float | None]] = {}
        self._children_sum = 0  # of the children's and the retracted outputs' link versions
        self.former: set[str] = set()  # parents it no longer names: they get a `gone` link with every re-send
        self.retracted: dict[str, int] = {}  # outputs that no longer name it -> version of that news

    @classmethod
    def decode(cls, raw: bytes | None) -> "FileEntity":
        ent = cls()
        if raw:
            val = _file_value_decoder.decode(raw)
            for line in val.lines:
                ev = _file_decoder.decode(line)
                ent._insert(filemod.sort_key(ev), ev, line)
            ent.hashed = val.hashed
            at = val.children_located_at if len(val.children_located_at) == len(val.children) else None
            ent.children = {c: (v, loc, at[i] if at is not None else None) for i, (c, v, loc) in enumerate(val.children)}
            ent.former = set(val.former)
            ent.retracted = dict(val.retracted)
            ent._children_sum = sum(v for _, v, _ in val.children) + sum(ent.retracted.values())
        return ent

    def add(self, ev: FileEvent) -> "bool | Conflict":
        return self._insert(filemod.sort_key(ev), ev, encode_event(ev))

    def link(self, child: str, version: int, located: bool, gone: bool = False,
             located_at: float | None = None) -> bool:
        """Record an output's facts (or that it no longer names this file) if newer than what is known;
        False for a stale or repeated link."""
        old = self.children.get(child)
        old_version = old[0] if old is not None else self.retracted.get(child, 0)
        if version <= old_version:
            return False
        if gone:
            self.children.pop(child, None)
            self.retracted[child] = version
        else:
            self.children[child] = (version, located, located_at)
            self.retracted.pop(child, None)
        self._children_sum += version - old_version  # retracted versions stay: the version never goes down
        return True

    @property
    def version(self) -> int:
        """Grows with every event that can change the file's row: its own and its outputs'."""
        return self.own_version + self._children_sum

    def encode(self) -> bytes:
        children = sorted(self.children.items())
        return _msgpack.encode(_FileValue(self.lines, [(c, v, loc) for c, (v, loc, _) in children],
                                          self.hashed, sorted(self.former), sorted(self.retracted.items()),
                                          [at for _, (_, _, at) in children]))


class _Out(NamedTuple):
    """What input_bucket needs to know about an output: whether it is located."""

    located: bool


class _StageRef(NamedTuple):
    campaign: str
    stage: str


# ------------------------------------------------------------------------------------------------ step results

@dataclass
class StepResult:
    """What one batch through a step produces; the worker writes it out before acking the batch."""

    updates: dict[str, bytes] = field(default_factory=dict)  # table key -> new state (changed keys only)
    contributions: dict[tuple[str, str], list[Contribution]] = field(default_factory=dict)
    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (table, row) for ClickHouse
    links: list[Link] = field(default_factory=list)
    new_events: int = 0
    duplicates: int = 0
    stale_links: int = 0
    conflicts: list[Conflict] = field(default_factory=list)  # conflicting copies met (the worker dead-letters the dropped)

    def contribution_batches(self) -> list[ContributionBatch]:
        return [ContributionBatch(c, s, items) for (c, s), items in self.contributions.items()]


def job_contribution(summary: jobmod.JobSummary) -> Contribution:
    return Contribution("job:" + summary.job_id, summary.version, summary.contribution(), summary.first_ts,
                        summary.last_ts, summary.last_terminated_ts)


def _added(out: StepResult, r: "bool | Conflict", ev: Any) -> bool:
    """Count one event's outcome; True when it changed its entity (new, or a winning conflicting copy)."""
    if r is True:
        out.new_events += 1
        return True
    if r is False:
        out.duplicates += 1
        return False
    out.conflicts.append(r)  # type: ignore[arg-type]
    if r.kept is ev:  # type: ignore[union-attr]
        return True
    out.duplicates += 1
    return False


def apply_job_events(state: Mapping[str, bytes], events: Sequence[JobEvent]) -> StepResult:
    """The job step: add a batch of job events to their jobs' states; re-derive every touched job.

    ``state`` maps "campaign|stage|job_id" to the stored job (JobEntity bytes); it is only read.
    """
    out = StepResult()
    touched: dict[str, tuple[JobEvent, JobEntity, bool]] = {}
    for ev in events:
        key = entity_key(ev.campaign, ev.stage, ev.job_id)
        t = touched.get(key)
        ent = JobEntity.decode(state.get(key)) if t is None else t[1]
        added = _added(out, ent.add(ev), ev)
        touched[key] = (ev, ent, added or (t is not None and t[2]))
    for key, (ev, ent, changed) in touched.items():
        if changed:
            out.updates[key] = ent.encode()
        summary = jobmod.summarize_job(ent.events)
        summary.version = ent.own_version
        out.contributions.setdefault((ev.campaign, ev.stage), []).append(job_contribution(summary))
        ref = _StageRef(ev.campaign, ev.stage)
        out.rows.append(("job_state", job_row(ref, summary)))  # type: ignore[arg-type]
        out.rows.extend(("job_attempts", r) for r in job_attempt_rows(ref, summary))  # type: ignore[arg-type]
    return out


def file_contribution(name: str, ent: FileEntity, facts: filemod.FileFacts) -> tuple[Contribution, str]:
    """(contribution, bucket or "") of a file, as StageState._refresh_file computes it."""
    new: dict[str, int] = {"events": facts.events}
    bucket = ""
    if facts.is_input:
        new["input_files"] = 1
        bucket = filemod.input_bucket(facts, [_Out(loc) for _, loc, _ in ent.children.values()])  # type: ignore[misc]
        new[bucket] = 1
    if facts.declared_output:
        new["outputs_declared"] = 1
    if facts.located:
        new["outputs_located"] = 1
    return Contribution("file:" + name, ent.version, new, facts.first_ts, facts.last_ts, facts.last_located_ts), bucket


def input_located_at(ent: FileEntity) -> float | None:
    """The input's located time (processors.files.input_located_ts) from its children's links."""
    times = [at for _, _, at in ent.children.values() if at is not None]
    return min(times) if times else None


def file_state_row(campaign: str, stage: str, name: str, ent: FileEntity, facts: filemod.FileFacts,
                   bucket: str) -> dict[str, Any]:
    """The file_state row (the same columns and values as processors.rows.file_row)."""
    return {
        "campaign": campaign, "stage": stage, "file": name,
        "is_input": int(facts.is_input), "bucket": bucket,
        "is_output": int(facts.declared_output), "located": int(facts.located), "location": facts.location or "",
        "parents": sorted(facts.parents), "outputs": sorted(ent.children),
        "consumed": int(facts.consumed), "disposition": facts.disposition or "",
        "disposition_job": facts.disposition_job or "", "deliveries": facts.deliveries,
        "first_ts": facts.first_ts, "last_ts": facts.last_ts, "located_ts": facts.located_ts,
        "input_located_ts": input_located_at(ent) if facts.is_input else None,
        "version": ent.version,
    }


def apply_file_inputs(state: Mapping[str, bytes], events: Sequence[FileEvent], links: Sequence[Link]) -> StepResult:
    """The file step: a batch of a partition's file events and of links addressed to its files.

    Own events join the file's event set; a link records an output's (version, located) under its
    parent. Every file touched by its own events re-sends its links (to each parent it names) and its
    contribution; a file touched only by links re-sends its contribution (its bucket may have moved).
    A file that has no events of its own yet (only outputs naming it) contributes nothing, as in
    StageState: it is not an input of the stage until its `input_declared` (or any event) arrives.
    """
    out = StepResult()
    # key -> (campaign, stage, name, entity, changed, touched_by_own_events)
    touched: dict[str, list[Any]] = {}

    def entity(campaign: str, stage: str, name: str) -> list[Any]:
        key = entity_key(campaign, stage, name)
        t = touched.get(key)
        if t is None:
            t = touched[key] = [campaign, stage, name, FileEntity.decode(state.get(key)), False, False]
        return t

    for ev in events:
        t = entity(ev.campaign, ev.stage, ev.file)
        r = t[3].add(ev)
        if _added(out, r, ev):
            t[4] = True
            if r is not True and r.dropped.parents:  # type: ignore[union-attr]
                t[3].former.update(r.dropped.parents)  # type: ignore[union-attr]  # kept below if no longer named
        t[5] = True
    for link in links:
        t = entity(link.campaign, link.stage, link.parent)
        if t[3].link(link.child, link.version, link.located, link.gone, link.located_at):
            t[4] = True
        else:
            out.stale_links += 1
    for key, (campaign, stage, name, ent, changed, own) in touched.items():
        facts = filemod.file_facts(ent.events) if ent.events else None
        if ent.former and facts is not None:
            ent.former -= facts.parents
        if changed:
            out.updates[key] = ent.encode()
        if facts is None:
            continue
        if own and (facts.parents or ent.former):
            version = ent.own_version
            for parent in sorted(facts.parents):
                out.links.append(Link(campaign, stage, parent, name, version, facts.located, False,
                                      filemod.located_for(facts, parent)))
            for parent in sorted(ent.former):  # re-sent like the others: a lost one is sent again
                out.links.append(Link(campaign, stage, parent, name, version, False, True))
        contribution, bucket = file_contribution(name, ent, facts)
        out.contributions.setdefault((campaign, stage), []).append(contribution)
        out.rows.append(("file_state", file_state_row(campaign, stage, name, ent, facts, bucket)))
    return out


# ------------------------------------------------------------------------------------------------ stage step

class StageAggregator:
    """The stage step: the newest contribution per entity, summed into StageCounters per stage.

    The durable state is the stage table (key "campaign|stage|entity" -> StageEntry bytes); the
    counters are rebuilt from it after recovery or a rebalance (``load``) rather than persisted
    separately, so they can never disagree with the entries they sum.
    """

    def __init__(self) -> None:
        self.stages: dict[tuple[str, str], StageCounters] = {}
        self.dirty: set[tuple[str, str]] = set()

    def _stage(self, campaign: str, stage: str) -> StageCounters:
        key = (campaign, stage)
        st = self.stages.get(key)
        if st is None:
            st = self.stages[key] = StageCounters(campaign, stage, packed=True)  # every entity stays in memory
        return st

    def clear(self) -> None:
        self.stages.clear()
        self.dirty.clear()

    def load(self, entries: Iterable[bytes]) -> int:
        """Rebuild from stored stage entries (replaces the current counters); marks every stage dirty."""
        self.clear()
        n = 0
        for raw in entries:
            e = decode_stage_entry(raw)
            self._apply_item(e.campaign, e.stage, e.item)
            n += 1
        self.dirty = set(self.stages)
        return n

    def _apply_item(self, campaign: str, stage: str, item: Contribution) -> bool:
        # the times ride with the contribution: a stale one (older state) cannot bring back a replaced ts
        return self._stage(campaign, stage).apply(item.entity, item.version, item.contribution,
                                                  (item.first_ts, item.last_ts, item.progress_ts))

    def apply(self, batch: ContributionBatch) -> dict[str, bytes]:
        """Apply one contributions message; returns the stage-table updates (newer entries only)."""
        updates: dict[str, bytes] = {}
        for item in batch.items:
            if self._apply_item(batch.campaign, batch.stage, item):
                updates[entity_key(batch.campaign, batch.stage, item.entity)] = encode_message(
                    StageEntry(batch.campaign, batch.stage, item))
                self.dirty.add((batch.campaign, batch.stage))
        return updates

    def row(self, campaign: str, stage: str) -> dict[str, Any]:
        """The stage_numbers row; its version is the sum of the entities' versions (see module doc)."""
        st = self.stages[(campaign, stage)]
        row = st.row()
        row["version"] = st.version_sum
        return row

    def take_dirty_rows(self) -> list[dict[str, Any]]:
        rows = [self.row(c, s) for c, s in sorted(self.dirty) if (c, s) in self.stages]
        self.dirty = set()
        return rows

    def numbers(self, as_of: float) -> list[dict[str, Any]]:
        """Every stage's numbers, sorted like Engine.numbers."""
        return [self.stages[k].numbers(as_of) for k in sorted(self.stages)]
