"""One campaign stage: its jobs, its files, and its counters, maintained incrementally.

An event touches one job or one file (plus, for an output file, the input files it names as
parents). The stage re-derives only those entities from their own events and applies the difference
of their contributions to the counters. No update ever walks the whole stage, which is what keeps
the numbers cheap at 100,000 jobs; and because each entity's contribution is a pure function of its
set of events, arrival order and duplicates cannot change a number.

Conflicting copies (two events with one event_id and different content) are resolved the same way in
any order: the copy whose canonical content (schemas.events.encode_event) has the smaller blake2b
digest wins, and each conflict is recorded (``Conflict``) for the caller to dead-letter the loser.
Content is hashed only when an event_id is already present, never on the new-event path.

Versions. An entity's version is ``events * VERSION_UNIT``, plus, once a conflict has replaced one of
its events in this process, a bonus per event that is larger the smaller its digest
(``content_bonus``). So a winning copy gives its entity a strictly greater version than the loser's
state (same event count, larger bonus); the bonus of a whole entity stays below one VERSION_UNIT
(entities of fewer than 2**16 events), so an entity rebuilt without the bonus (a restart) still
outranks every stored row once it changes: a new event adds a whole unit, a new conflict turns the
bonus on again for every event, which is at least what any earlier process computed.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import Any

from processors import files as filemod
from processors import jobs as jobmod
from processors.contributions import StageCounters
from processors.numbers import STALL_THRESHOLD_S
from schemas.events import Event, FileEvent, JobEvent, encode_event

_bisect_left = bisect.bisect_left
_JOB_RANK, _FILE_RANK = jobmod.JOB_TYPE_RANK, filemod.FILE_TYPE_RANK

#: One event's worth of version (see the module doc): the conflict bonus of an entity stays below it.
VERSION_UNIT = 1 << 36
_BONUS_BITS = 20  # bonus per event < 2**20, so entities of up to 2**16 events keep it below one unit


def content_digest(ev: Any) -> bytes:
    """Stable digest of an event's canonical content (not Python's hash(): the same in every process)."""
    return hashlib.blake2b(encode_event(ev), digest_size=16).digest()


def content_bonus(digest: bytes) -> int:
    """Version bonus of an event: grows as its digest gets smaller (the winning direction)."""
    return ((1 << _BONUS_BITS) - 1) - (int.from_bytes(digest[:8], "big") >> (64 - _BONUS_BITS))


def entity_version(events: Any, hashed: bool) -> int:
    """Version of an entity's event set (module doc); the digests are computed only for `hashed` ones."""
    v = len(events) * VERSION_UNIT
    if hashed:
        v += sum(content_bonus(content_digest(e)) for e in events)
    return v


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two copies of one event_id with different content: the one kept and the one dropped."""

    kept: Any
    dropped: Any
    kept_digest: bytes = b""
    dropped_digest: bytes = b""

    @property
    def dead_letter_position(self) -> str:
        """Where the losing copy's dead letter is keyed: its content digest, the same whichever copy came first,
        wherever it was met and however often (a re-run, a batch processed again after a crash)."""
        return conflict_position(self.dropped_digest)

    @property
    def reason(self) -> str:
        return (f"conflicting duplicate of event_id {self.kept.event_id!r}: kept the copy with the smaller content "
                f"hash ({self.kept_digest.hex()[:12]} < {self.dropped_digest.hex()[:12]})")


CONFLICT_POSITION_PREFIX = "conflicting copy "


def conflict_position(dropped_digest: bytes) -> str:
    """The dead-letter position of a conflicting copy that lost (Conflict.dropped_digest: the blake2b of its
    canonical content)."""
    return CONFLICT_POSITION_PREFIX + dropped_digest.hex()


def resolve(stored: Any, arriving: Any) -> Conflict | None:
    """Which of two copies of one event_id wins; None when their canonical content is the same."""
    a, b = encode_event(stored), encode_event(arriving)
    if a == b:
        return None
    da, db = hashlib.blake2b(a, digest_size=16).digest(), hashlib.blake2b(b, digest_size=16).digest()
    if (db, b) < (da, a):
        return Conflict(arriving, stored, db, da)
    return Conflict(stored, arriving, da, db)


def find_copy(keys: list[tuple[float, int, str]], key: tuple[float, int, str]) -> int:
    """Index of the stored event with key[2]'s event_id: by bisection when it has the same key (an exact
    duplicate, the common case), else by a scan (a conflicting copy, rare)."""
    i = bisect.bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        return i
    eid = key[2]
    for j, k in enumerate(keys):
        if k[2] == eid:
            return j
    raise KeyError(eid)  # pragma: no cover - the caller checked that the event_id is present


class _Entity:
    """The sorted, de-duplicated events of one job or file, plus its current derived view."""

    __slots__ = ("name", "keys", "events", "eids", "view", "bucket", "version", "hashed")

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: list[tuple[float, int, str]] = []
        self.events: list[Any] = []
        self.eids: list[str] = []  # the event_ids, in arrival order: `in` on a list runs in C (the hot path)
        self.view: Any = None
        self.bucket: str | None = None  # input files: the glossary bucket, set when the file is refreshed
        self.version = 0
        self.hashed = False  # a conflict replaced one of its events: versions include the content bonus

    def add(self, key: tuple[float, int, str], ev: Any) -> "bool | Conflict":
        """Insert in order. True: a new event; False: an exact duplicate; a Conflict: another copy of this
        event_id was here (the state changed only if ``conflict.kept is ev``)."""
        eid = key[2]
        if eid in self.eids:
            keys = self.keys  # an exact duplicate has the same key: found by bisection, inline (re-replays)
            i = _bisect_left(keys, key)
            if i < len(keys) and keys[i] == key and self.events[i] == ev:
                return False
            return self._other_copy(key, ev)
        self.eids.append(eid)
        keys = self.keys
        if not keys or key >= keys[-1]:
            keys.append(key)
            self.events.append(ev)
        else:
            i = bisect.bisect(keys, key)
            keys.insert(i, key)
            self.events.insert(i, ev)
        return True

    def _other_copy(self, key: tuple[float, int, str], ev: Any) -> "bool | Conflict":
        i = find_copy(self.keys, key)
        old = self.events[i]
        if old == ev:
            return False
        c = resolve(old, ev)
        if c is None:
            return False
        if c.kept is ev:
            del self.keys[i], self.events[i]
            j = bisect.bisect(self.keys, key)
            self.keys.insert(j, key)
            self.events.insert(j, ev)
            self.hashed = True
        return c

    def own_version(self) -> int:
        """The version of this entity's own event set (module doc)."""
        return entity_version(self.events, self.hashed)


class StageState:
    """Counters and entity state of one (campaign, stage)."""

    def __init__(self, campaign: str, stage: str, conflicts: list[Conflict] | None = None) -> None:
        self.campaign = campaign
        self.stage = stage
        self.jobs: dict[str, _Entity] = {}
        self.files: dict[str, _Entity] = {}
        self.children: dict[str, set[str]] = {}  # input file -> outputs declaring it as a parent
        # input file -> outputs that named it until a winning conflicting copy took it away: their
        # versions stay in its version, which must never go down
        self.former_children: dict[str, set[str]] = {}
        self.totals = StageCounters(campaign, stage)
        self.dirty_jobs: set[str] = set()
        self.dirty_files: set[str] = set()
        self._stale_jobs: set[str] = set()
        self._stale_files: set[str] = set()
        self._strings: dict[str, str] = {}  # one object per distinct site/host/...: a week repeats a few hundred
        self.conflicts: list[Conflict] = [] if conflicts is None else conflicts  # appended to; the Engine takes them
        self._times_stale = False  # a replaced event's ts may still be in the stage's first/last/progress ts
        # Paging (see "Partial stages" below): whether the counters came from a stored stage row, so that
        # some entities behind them are not in memory; and the entities changed since the last page-out.
        self.partial = False
        self._recent_jobs: set[str] = set()
        self._recent_files: set[str] = set()
        # Version floors ("job:ID" / "file:NAME" -> the version last written for it), kept once a conflict
        # touched the stage (None before). Why: a winning copy's rows carry versions raised by content-hash
        # bonuses and by outputs that no longer name a file (former_children); an entity loaded again
        # after its losing copy left raw_events (merged away) or after a restart derives a lower version,
        # and its new rows would lose to the stale ones in the ReplacingMergeTree. A row is never written
        # at or below its floor (processors.engine.Engine.dirty_rows).
        self.floors: dict[str, int] | None = None

    # -- applying events -------------------------------------------------------------------------
    def apply(self, ev: Event) -> bool:
        """Apply one event; False (and nothing changes) when it is a duplicate or a losing conflicting copy.

        True for a new event and for a conflicting copy that replaced the stored one (in ``conflicts``).
        """
        if type(ev) is JobEvent:
            ok = self._apply_job(ev)
        else:
            ok = self._apply_file(ev)  # type: ignore[arg-type]
        if not ok:
            return False
        ts = ev.ts  # StageCounters.observe(ts, ts, ts if progress), inline: once per event
        t = self.totals
        if t.first_event_ts is None or ts < t.first_event_ts:
            t.first_event_ts = ts
        if t.last_event_ts is None or ts > t.last_event_ts:
            t.last_event_ts = ts
        if (ev.type == "terminated" or ev.type == "output_located") and (
                t.last_progress_ts is None or ts > t.last_progress_ts):
            t.last_progress_ts = ts
        return True

    @property
    def counters(self) -> dict[str, int]:
        return self.totals.counters

    def _apply_job(self, ev: JobEvent) -> bool:
        ent = self.jobs.get(ev.job_id)
        if ent is None:
            ent = self.jobs[ev.job_id] = _Entity(ev.job_id)
        r = ent.add((ev.ts, _JOB_RANK[ev.type], ev.event_id), ev)  # jobmod.sort_key, inline
        if r is not True:
            if r is False or not self._conflict(r, ev):
                return False
        ev.job_id, ev.campaign, ev.stage = ent.name, self.campaign, self.stage
        strings = self._strings  # interned inline: a call per field costs more than the lookup
        if ev.site is not None:
            ev.site = strings.setdefault(ev.site, ev.site)
        if ev.host is not None:
            ev.host = strings.setdefault(ev.host, ev.host)
        if ev.submission is not None:
            ev.submission = strings.setdefault(ev.submission, ev.submission)
        self._stale_jobs.add(ent.name)
        return True

    def _apply_file(self, ev: FileEvent) -> bool:
        ent = self.files.get(ev.file)
        if ent is None:
            ent = self.files[ev.file] = _Entity(ev.file)
        r = ent.add((ev.ts, _FILE_RANK[ev.type], ev.event_id), ev)  # filemod.sort_key, inline
        if r is not True:
            if r is False or not self._conflict(r, ev):
                return False
        ev.file, ev.campaign, ev.stage = ent.name, self.campaign, self.stage
        strings = self._strings
        if ev.job_id is not None:
            ev.job_id = strings.setdefault(ev.job_id, ev.job_id)
        if ev.submission is not None:
            ev.submission = strings.setdefault(ev.submission, ev.submission)
        self._stale_files.add(ent.name)
        return True

    def _conflict(self, c: Conflict, ev: Event) -> bool:
        """Record a conflict; True when the arriving copy won (its entity changed)."""
        self.conflicts.append(c)
        if self.floors is None:
            self.floors = {}
        if c.kept is not ev:
            return False
        self._times_stale = True
        return True

    def settle(self) -> None:
        """Re-derive the entities that received events since the last settle, and fix the counters.

        Deferring this to read time (numbers, rows) means a job that got five events in one batch is
        summarised once, not five times; the result is the same as settling after every event.
        """
        if self._stale_jobs:
            for job_id in self._stale_jobs:
                ent = self.jobs[job_id]
                ent.view = view = jobmod.summarize_job(ent.events)
                view.version = ent.own_version() if ent.hashed else len(ent.events) * VERSION_UNIT
                self.totals.apply("job:" + job_id, view.version, view.contribution())
            self.dirty_jobs |= self._stale_jobs
            self._recent_jobs |= self._stale_jobs
            self._stale_jobs = set()
        if self._stale_files:
            refresh: set[str] = set()
            for name in self._stale_files:
                ent = self.files[name]
                old = ent.view
                ent.view = facts = filemod.file_facts(ent.events)
                refresh.add(name)
                if (old is None or old.parents != facts.parents or old.located != facts.located
                        or old.located_ts != facts.located_ts or old.declared_ts != facts.declared_ts
                        or old.later_parents != facts.later_parents):  # what the parents' rows show moved
                    for parent in facts.parents:
                        if old is None or parent not in old.parents:
                            self.children.setdefault(parent, set()).add(name)
                        refresh.add(parent)
                    if old is not None and not old.parents <= facts.parents:  # only a winning copy does this
                        for parent in old.parents - facts.parents:
                            self.children[parent].discard(name)
                            self.former_children.setdefault(parent, set()).add(name)
                            refresh.add(parent)
            self._stale_files = set()
            self._recent_files |= refresh
            for name in refresh:
                self._refresh_file(name)
        if self._times_stale:
            self._refold_times()

    def _refold_times(self) -> None:
        """Stage time stats again from every entity (after a conflict replaced an event: rare)."""
        if self.partial:
            raise RuntimeError("a partial stage cannot refold its times: load every entity first (load_all)")
        t = self.totals
        t.first_event_ts = t.last_event_ts = t.last_progress_ts = None
        for ent in self.jobs.values():
            v = ent.view
            t.observe(v.first_ts, v.last_ts, v.last_terminated_ts)
        for ent in self.files.values():
            f = ent.view
            t.observe(f.first_ts, f.last_ts, f.last_located_ts)
        self._times_stale = False

    def _refresh_file(self, name: str) -> None:
        ent = self.files.get(name)
        if ent is None:  # a parent named by an output, not (yet) seen itself: contributes nothing
            return
        new = self._file_contribution(name, ent)
        self.totals.apply("file:" + name, ent.version, new)
        self.dirty_files.add(name)

    def _file_contribution(self, name: str, ent: Any) -> dict[str, int]:
        """A file's share of the stage counters (its bucket and version are set on the way): one place for
        a refreshed file and a file loaded back from the store."""
        facts: filemod.FileFacts = ent.view
        new: dict[str, int] = {"events": facts.events}
        if facts.is_input:
            new["input_files"] = 1
            ent.bucket = filemod.input_bucket(facts, self.outputs_of(name))
            new[ent.bucket] = 1
        if facts.declared_output:
            new["outputs_declared"] = 1
        if facts.located:
            new["outputs_located"] = 1
        ent.version = self.file_version(name)
        return new

    def outputs_of(self, name: str) -> list[filemod.FileFacts]:
        """The facts of the outputs naming ``name`` as a parent (its bucket and located time come from them)."""
        return [self.files[o].view for o in self.children.get(name, ())]

    def track_versions(self, stored: dict[str, int]) -> None:
        """Start (or extend) the version floors with stored rows' versions ("job:ID"/"file:NAME" -> version)."""
        floors = self.floors if self.floors is not None else {}
        for k, v in stored.items():
            if v > floors.get(k, -1):
                floors[k] = v
        self.floors = floors

    def floored(self, key: str, version: int) -> int:
        """The version to write for entity ``key``: above its floor, which then becomes this version."""
        floors = self.floors
        if floors is None:
            return version
        f = floors.get(key)
        if f is not None and version <= f:
            version = f + 1
        floors[key] = version
        return version

    # -- reading -----------------------------------------------------------------------------------
    def file_version(self, name: str) -> int:
        """Grows with every event that can change the file's row (its own and its outputs'), and with every
        conflicting copy that replaces one of those events."""
        files = self.files
        v = files[name].own_version() + sum(files[o].own_version() for o in self.children.get(name, ()))
        if self.former_children:
            v += sum(files[o].own_version() for o in self.former_children.get(name, ()))
        return v

    def numbers(self, as_of: float, threshold_s: float = STALL_THRESHOLD_S) -> dict[str, Any]:
        self.settle()
        return self.totals.numbers(as_of, threshold_s)

    def take_dirty(self) -> tuple[set[str], set[str]]:
        self.settle()
        jobs, files = self.dirty_jobs, self.dirty_files
        self.dirty_jobs, self.dirty_files = set(), set()
        return jobs, files

    # -- partial stages: counters from the store, entities loaded on demand and paged out -------------------
    #
    # Why: a year of events does not fit in memory, and a new event needs only its own entity. A stage
    # can start from its stored counters (``seed``) with no entity in memory; before an event of an entity
    # stored earlier is applied, the caller loads that entity's stored events (``load_jobs``/``load_files``),
    # which re-derives its view and registers its contribution as already counted. After the entity's row is
    # written, it can be paged out again (``page_out``). Each contribution is a pure function of the entity's
    # event set, so a reloaded entity contributes exactly what the stored counters hold for it.
    #
    # Files are loaded and paged out by linked groups: an input file's bucket depends on every output that
    # names it, and an output's change refreshes every parent, so the files in memory are always closed under
    # the parent links (a file is either in memory with every file it is linked to, or paged out with them).

    def seed(self, row: dict[str, Any]) -> None:
        """Start from a stored stage row (processors.rows.stage_row's columns); no entity in memory yet."""
        t = self.totals
        for k in t.counters:
            t.counters[k] = int(row.get(k) or 0)
        t.first_event_ts, t.last_event_ts, t.last_progress_ts = (
            row.get("first_event_ts"), row.get("last_event_ts"), row.get("last_progress_ts"))
        self.partial = True

    def _loaded_entity(self, name: str, events: list[Any], key: Any) -> _Entity:
        ent = _Entity(name)
        for ev in events:
            r = ent.add(key(ev), ev)
            if r is not True and r is not False and r.kept is ev:  # two stored copies: the same winner as ever
                ent.hashed = True
        return ent

    def load_jobs(self, events_by_job: dict[str, list[Any]]) -> None:
        """Bring stored jobs into memory, as already counted (neither dirty nor re-counted)."""
        for job_id, events in events_by_job.items():
            if job_id in self.jobs:
                raise ValueError(f"job {job_id!r} is already in memory")
            ent = self.jobs[job_id] = self._loaded_entity(job_id, events, jobmod.sort_key)
            ent.view = view = jobmod.summarize_job(ent.events)
            view.version = ent.own_version() if ent.hashed else len(ent.events) * VERSION_UNIT
            self.totals.entities["job:" + job_id] = (view.version, view.contribution(), None)

    def load_files(self, events_by_file: dict[str, list[Any]]) -> None:
        """Bring stored files into memory, as already counted; the caller passes whole linked groups."""
        for name, events in events_by_file.items():
            if name in self.files:
                raise ValueError(f"file {name!r} is already in memory")
            ent = self.files[name] = self._loaded_entity(name, events, filemod.sort_key)
            ent.view = filemod.file_facts(ent.events)
        for name in events_by_file:
            for parent in self.files[name].view.parents:
                self.children.setdefault(parent, set()).add(name)
        for name in events_by_file:
            ent = self.files[name]
            new = self._file_contribution(name, ent)
            self.totals.entities["file:" + name] = (ent.version, new, None)

    def linked_files(self, name: str) -> set[str]:
        """The files in memory linked to `name` (its outputs and, for an output, its parents)."""
        ent = self.files.get(name)
        out = set(self.children.get(name, ()))
        if ent is not None and ent.view is not None:
            out |= ent.view.parents
        return out

    def page_out(self) -> tuple[list[str], dict[str, tuple[str, ...]]]:
        """Drop from memory every entity not changed since the last page-out; returns the jobs dropped and the
        files dropped with the files each was linked to (so a caller can find a group again without asking
        the store).

        Only after every change is written (nothing dirty or stale): a dropped entity is reloaded from its
        stored events. Files go by linked groups: a group stays while any of its files changed.
        """
        if self._stale_jobs or self._stale_files or self.dirty_jobs or self.dirty_files:
            raise RuntimeError("page_out with unwritten changes: write the dirty rows first")
        recent_j, recent_f = self._recent_jobs, self._recent_files
        self._recent_jobs, self._recent_files = set(), set()
        entities = self.totals.entities
        drop_jobs = [j for j in self.jobs if j not in recent_j]
        for j in drop_jobs:
            del self.jobs[j]
            entities.pop("job:" + j, None)
        # files linked (transitively) to a recently changed file stay; so do the groups of files that lost an
        # output to a winning conflicting copy (former_children: their versions, which must never go down,
        # include that output's, and only this process knows it)
        keep: set[str] = set()
        todo = [f for f in recent_f if f in self.files]
        for p, outs in self.former_children.items():
            todo.extend(f for f in (p, *outs) if f in self.files)
        while todo:
            f = todo.pop()
            if f in keep:
                continue
            keep.add(f)
            todo.extend(x for x in self.linked_files(f) if x not in keep and x in self.files)
        drop_files = {f: tuple(self.linked_files(f)) for f in self.files if f not in keep}
        for f in drop_files:
            del self.files[f]
            entities.pop("file:" + f, None)
        if drop_files:
            # an output in memory may name a parent not seen yet: its entry stays for when the parent arrives
            self.children = {p: c for p, c in self.children.items() if p in keep or not c.isdisjoint(keep)}
        if drop_jobs or drop_files:
            self.partial = True
            if len(self._strings) > 100_000:
                self._strings = {}  # interning only saves memory of events in memory
        return drop_jobs, drop_files
