"""One campaign stage: its jobs, its files, and its counters, maintained incrementally.

An event touches one job or one file (plus, for an output file, the input files it names as
parents). The stage re-derives only those entities from their own events and applies the difference
of their contributions to the counters. No update ever walks the whole stage, which is what keeps
the numbers cheap at 100,000 jobs; and because each entity's contribution is a pure function of its
set of events, arrival order and duplicates cannot change a number.
"""

from __future__ import annotations

import bisect
from typing import Any

from processors import files as filemod
from processors import jobs as jobmod
from processors.contributions import StageCounters
from processors.numbers import STALL_THRESHOLD_S
from schemas.events import Event, FileEvent, JobEvent


class _Entity:
    """The sorted, de-duplicated events of one job or file, plus its current derived view."""

    __slots__ = ("name", "keys", "events", "eids", "view", "bucket", "version")

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: list[tuple[float, int, str]] = []
        self.events: list[Any] = []
        self.eids: list[str] = []  # the event_ids, in arrival order: `in` on a list runs in C (the hot path)
        self.view: Any = None
        self.bucket: str | None = None  # input files: the glossary bucket, set when the file is refreshed
        self.version = 0

    def add(self, key: tuple[float, int, str], ev: Any) -> bool:
        """Insert in order; False when an event with this event_id is already here."""
        eid = key[2]
        if eid in self.eids:
            return False
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


class StageState:
    """Counters and entity state of one (campaign, stage)."""

    def __init__(self, campaign: str, stage: str) -> None:
        self.campaign = campaign
        self.stage = stage
        self.jobs: dict[str, _Entity] = {}
        self.files: dict[str, _Entity] = {}
        self.children: dict[str, set[str]] = {}  # input file -> outputs declaring it as a parent
        self.totals = StageCounters(campaign, stage)
        self.dirty_jobs: set[str] = set()
        self.dirty_files: set[str] = set()
        self._stale_jobs: set[str] = set()
        self._stale_files: set[str] = set()
        self._strings: dict[str, str] = {}  # one object per distinct site/host/...: a week repeats a few hundred

    # -- applying events -------------------------------------------------------------------------
    def apply(self, ev: Event) -> bool:
        """Apply one event; False (and nothing changes) when it is a duplicate."""
        if type(ev) is JobEvent:
            ok = self._apply_job(ev)
        else:
            ok = self._apply_file(ev)  # type: ignore[arg-type]
        if not ok:
            return False
        ts = ev.ts
        self.totals.observe(ts, ts, ts if ev.type in ("terminated", "output_located") else None)
        return True

    @property
    def counters(self) -> dict[str, int]:
        return self.totals.counters

    def _apply_job(self, ev: JobEvent) -> bool:
        ent = self.jobs.get(ev.job_id)
        if ent is None:
            ent = self.jobs[ev.job_id] = _Entity(ev.job_id)
        if not ent.add(jobmod.sort_key(ev), ev):
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
        if not ent.add(filemod.sort_key(ev), ev):
            return False
        ev.file, ev.campaign, ev.stage = ent.name, self.campaign, self.stage
        strings = self._strings
        if ev.job_id is not None:
            ev.job_id = strings.setdefault(ev.job_id, ev.job_id)
        if ev.submission is not None:
            ev.submission = strings.setdefault(ev.submission, ev.submission)
        self._stale_files.add(ent.name)
        return True

    def settle(self) -> None:
        """Re-derive the entities that received events since the last settle, and fix the counters.

        Deferring this to read time (numbers, rows) means a job that got five events in one batch is
        summarised once, not five times; the result is the same as settling after every event.
        """
        if self._stale_jobs:
            for job_id in self._stale_jobs:
                ent = self.jobs[job_id]
                ent.view = jobmod.summarize_job(ent.events)
                self.totals.apply("job:" + job_id, len(ent.events), ent.view.contribution())
            self.dirty_jobs |= self._stale_jobs
            self._stale_jobs = set()
        if self._stale_files:
            refresh: set[str] = set()
            for name in self._stale_files:
                ent = self.files[name]
                old = ent.view
                ent.view = facts = filemod.file_facts(ent.events)
                refresh.add(name)
                if old is None or old.parents != facts.parents or old.located != facts.located:
                    for parent in facts.parents:
                        if old is None or parent not in old.parents:
                            self.children.setdefault(parent, set()).add(name)
                        refresh.add(parent)
            self._stale_files = set()
            for name in refresh:
                self._refresh_file(name)

    def _refresh_file(self, name: str) -> None:
        ent = self.files.get(name)
        if ent is None:  # a parent named by an output, not (yet) seen itself: contributes nothing
            return
        facts: filemod.FileFacts = ent.view
        new: dict[str, int] = {"events": facts.events}
        if facts.is_input:
            new["input_files"] = 1
            ent.bucket = filemod.input_bucket(facts, self._outputs_of(name))
            new[ent.bucket] = 1
        if facts.declared_output:
            new["outputs_declared"] = 1
        if facts.located:
            new["outputs_located"] = 1
        ent.version = self.file_version(name)
        self.totals.apply("file:" + name, ent.version, new)
        self.dirty_files.add(name)

    def _outputs_of(self, name: str) -> list[filemod.FileFacts]:
        return [self.files[o].view for o in self.children.get(name, ())]

    # -- reading -----------------------------------------------------------------------------------
    def file_version(self, name: str) -> int:
        """Grows with every event that can change the file's row (its own and its outputs')."""
        return len(self.files[name].events) + sum(len(self.files[o].events) for o in self.children.get(name, ()))

    def numbers(self, as_of: float, threshold_s: float = STALL_THRESHOLD_S) -> dict[str, Any]:
        self.settle()
        return self.totals.numbers(as_of, threshold_s)

    def take_dirty(self) -> tuple[set[str], set[str]]:
        self.settle()
        jobs, files = self.dirty_jobs, self.dirty_files
        self.dirty_jobs, self.dirty_files = set(), set()
        return jobs, files
