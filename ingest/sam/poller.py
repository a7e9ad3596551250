"""One SAM poll: read a stage's snapshot with a bounded number of bulk requests, return new events.

A poll costs (``PollResult.requests``, logged as ``sam.poll``):

    1 (definition files) + 5 per project (summary + 4 consumed_status groups) + 1 (children)
    + ceil(new children / 500) (metadata with parents, create_date and locations)
    + for outputs declared without a location yet: GET /files/locations in 4,000-byte URLs, or their
      metadata 500 a POST when that takes fewer requests (at most ceil(unlocated / 500))

so a 30,000-file definition with two projects and 8,785 outputs costs 30 requests on its first poll
and 12 + one per 500 unlocated outputs on later ones, whatever its size (plus retries, counted separately). The calls after the first run on a bounded
thread pool.

A poll is all or nothing: any error (SAM unreachable after retries, a 4xx, the query limit, a
malformed body) raises before a single event is returned, and the checkpoint is untouched. New
facts get their first-seen ts and are saved in the checkpoint as pending *before* the caller writes
them; ``commit()`` after an acknowledged write marks them emitted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import msgspec

from ingest.sam import api
from ingest.sam.checkpoint import SamCheckpoint
from ingest.sam.facts import (RANK_STEP_S, STATUS_GROUPS, Fact, dead_letter, event_id, output_facts,
                              parse_sam_time, to_event)
from ingest.sam.http import SamError, SamHttp
from schemas.events import DeadLetter, FileEvent, InvalidEvent, decode_event, encode_event

#: Position prefix of a checkpointed event that no longer decodes (followed by the digest of its bytes).
CHECKPOINT_POSITION = "checkpoint"

log = logging.getLogger("stagewatch.sam")


@dataclass(frozen=True)
class SamSource:
    """What one poller reads: a stage's definition, its projects, and which children are its outputs."""

    url: str
    definition: str
    campaign: str
    stage: str
    projects: tuple[str, ...] = ()
    output_dims: str | None = None

    def identity(self) -> dict[str, Any]:
        return {"url": self.url.rstrip("/"), "definition": self.definition, "campaign": self.campaign,
                "stage": self.stage, "output_dims": self.output_dims or ""}

    def children_dims(self) -> str:
        dims = f"ischildof:( defname:{self.definition} )"
        return f"{dims} and ( {self.output_dims} )" if self.output_dims else dims

    def check(self) -> None:
        for name, value in (("--definition", self.definition), *(("--project", p) for p in self.projects)):
            if not value or any(c.isspace() or c in "'\"()," for c in value):
                raise SamError(f"{name} {value!r} is not a SAM name (no spaces, quotes, commas or parentheses); "
                               "check its spelling.")


@dataclass
class PollResult:
    events: list[FileEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    facts: int = 0
    inputs: int = 0
    children: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class SamPoller:
    def __init__(self, source: SamSource, http: SamHttp, checkpoint_path: Path | None = None, *,
                 clock: Callable[[], float] = time.time, workers: int = 4) -> None:
        source.check()
        self.source = source
        self.http = http
        self.clock = clock
        self.workers = max(1, workers)
        self.ckpt = SamCheckpoint.load(checkpoint_path, source.identity())
        self.src = f"sam:{source.url.rstrip('/')}"
        self._uncommitted: list[str] = []

    # ------------------------------------------------------------------------------------------ poll
    def poll(self) -> PollResult:
        """Read the snapshot and return the events not emitted yet (pending ones from a crash first)."""
        t0 = time.perf_counter()
        req0, retry0 = self.http.requests_made, self.http.retried
        facts, n_inputs, n_children, child_state = self._read_snapshot()
        now = round(self.clock(), 3)
        res = PollResult(inputs=n_inputs, children=n_children, facts=len(facts))
        pending_ids = set()
        for raw in self.ckpt.pending:  # written before a crash? write again, same bytes
            try:
                ev = decode_event(msgspec.json.encode(raw))
            except InvalidEvent as exc:  # cannot happen for what we saved, but never lose it silently
                data = msgspec.json.encode(raw)  # keyed by its bytes: several refused ones are several rows
                res.dead_letters.append(DeadLetter(self.src, f"{CHECKPOINT_POSITION} "
                                                   f"{hashlib.blake2b(data, digest_size=16).hexdigest()}",
                                                   str(exc), data))
                continue
            pending_ids.add(ev.event_id)
            res.events.append(ev)  # type: ignore[arg-type]
        seen_now: set[str] = set()
        for fact in facts:
            eid = event_id(self.src, self.source.campaign, self.source.stage, fact)
            if eid in self.ckpt.emitted or eid in pending_ids or eid in seen_now:
                continue
            seen_now.add(eid)
            ts = fact.sam_ts if fact.sam_ts is not None else round(now + fact.rank * RANK_STEP_S, 3)
            try:
                ev = to_event(fact, eid, ts, self.source.campaign, self.source.stage)
            except (InvalidEvent, ValueError, TypeError) as exc:
                res.dead_letters.append(dead_letter(self.src, fact, str(exc), eid))
                continue
            res.events.append(ev)  # type: ignore[arg-type]
        # write-ahead: the first-seen ts of every new event is on disk before anything is written
        self.ckpt.pending = [msgspec.json.decode(encode_event(ev)) for ev in res.events]
        self._uncommitted = [ev.event_id for ev in res.events] + [
            event_id(self.src, self.source.campaign, self.source.stage, _fact_of(dl)) for dl in res.dead_letters
            if not dl.position.startswith(CHECKPOINT_POSITION)]
        self.ckpt.children |= child_state["fetched"]
        self.ckpt.declared |= child_state["declared"]
        self.ckpt.located |= child_state["located"]
        self.ckpt.polls += 1
        self.ckpt.save()
        for ev in res.events:
            res.by_type[ev.type] = res.by_type.get(ev.type, 0) + 1
        res.requests = self.http.requests_made - req0
        res.retries = self.http.retried - retry0
        res.seconds = time.perf_counter() - t0
        log.info("sam.poll definition=%s campaign=%s stage=%s requests=%d retries=%d inputs=%d children=%d facts=%d "
                 "new_events=%d dead_letters=%d seconds=%.2f", self.source.definition, self.source.campaign,
                 self.source.stage, res.requests, res.retries, n_inputs, n_children, len(facts), len(res.events),
                 len(res.dead_letters), res.seconds)
        return res

    def commit(self) -> None:
        """The events of the last poll were written and acknowledged: never emit them again."""
        self.ckpt.emitted.update(self._uncommitted)
        self.ckpt.pending = []
        self._uncommitted = []
        self.ckpt.save()

    # -------------------------------------------------------------------------------------- snapshot
    def _read_snapshot(self) -> tuple[list[Fact], int, int, dict[str, set[str]]]:
        src, http = self.source, self.http
        inputs = api.definition_files(http, src.definition)
        input_set = set(inputs)
        facts = [Fact("input_declared", f, detail=src.definition) for f in inputs]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sam") as pool:
            summaries = {p: pool.submit(api.project_summary, http, p) for p in src.projects}
            lists = {(p, typ): pool.submit(api.list_files, http, _status_dims(p, statuses))
                     for p in src.projects for typ, statuses in STATUS_GROUPS}
            children_f = pool.submit(api.list_files, http, src.children_dims())
            starts = {p: _project_start(f.result()) for p, f in summaries.items()}
            ranks = _project_ranks(src.projects, starts)
            sam_starts = dict(starts)
            for p in src.projects:  # equal starts: 1 ms apart, in rank order
                earlier = [q for q in src.projects if ranks[q] < ranks[p] and sam_starts[q] == sam_starts[p]]
                if sam_starts[p] is not None and earlier:
                    starts[p] = round(sam_starts[p] + len(earlier) * RANK_STEP_S, 3)
            for (p, typ), fut in lists.items():
                for f in fut.result():
                    if f in input_set:  # a project may deliver files outside the stage's definition
                        facts.append(Fact(typ, f, detail=p, submission=p, sam_ts=starts[p], rank=ranks[p]))
            children = children_f.result()
            new = [c for c in children if c not in self.ckpt.children]
            mds = [md for fut in [pool.submit(api.metadata, http, chunk) for chunk in api.chunks(new, api.METADATA_CHUNK)]
                   for md in fut.result()]
            fetched, declared, located = set(), set(), set()
            for md in mds:
                fetched.add(md["file_name"])
                out = output_facts(md, input_set)
                if not out:
                    continue
                facts.extend(out)
                declared.add(md["file_name"])
                if md.get("locations"):
                    for loc in api.location_names(md["locations"]):
                        facts.append(Fact("output_located", md["file_name"], detail=loc))
                    located.add(md["file_name"])
            unlocated = sorted((self.ckpt.declared - self.ckpt.located) & set(children))
            gets = list(api.location_chunks(unlocated))
            if len(gets) <= math.ceil(len(unlocated) / api.METADATA_CHUNK):  # GET /files/locations
                answers = [pool.submit(api.locations, http, chunk) for chunk in gets]
            else:  # many outputs still unlocated: their metadata with locations, 500 a POST
                answers = [pool.submit(_metadata_locations, http, chunk)
                           for chunk in api.chunks(unlocated, api.METADATA_CHUNK)]
            for fut in answers:
                for name, locs in fut.result().items():
                    if name not in self.ckpt.declared:
                        continue
                    names = api.location_names(locs)
                    for loc in names:
                        facts.append(Fact("output_located", name, detail=loc))
                    if names:
                        located.add(name)
        return facts, len(inputs), len(children), {"fetched": fetched, "declared": declared, "located": located}


def _metadata_locations(http: SamHttp, names: list[str]) -> dict[str, Any]:
    """The locations of many files through POST /files/metadata (locations=1): fewer requests than GETs."""
    return {md["file_name"]: md.get("locations") or [] for md in api.metadata(http, names)}


def _fact_of(dl: DeadLetter) -> Fact:
    import json

    d = json.loads(dl.raw)
    return Fact(d["type"], d["file"], detail=d["detail"], parents=tuple(d["parents"]) if d["parents"] else None,
                submission=d["submission"])


def _status_dims(project: str, statuses: Sequence[str]) -> str:
    return f"project_name {project} and consumed_status {','.join(statuses)}"


def _project_start(summary: dict[str, Any]) -> float | None:
    """SAM's start time of a project, from its summary (None when it gives none)."""
    for key in ("project_start_time", "start_time", "started"):
        t = parse_sam_time(summary.get(key))
        if t is not None:
            return t
    return None


def _project_ranks(projects: Sequence[str], starts: dict[str, float | None]) -> dict[str, int]:
    """Projects ordered by SAM's start time (given order breaks ties and stands in when SAM gives none)."""
    order = sorted(projects, key=lambda p: (starts.get(p) if starts.get(p) is not None else float("inf"),
                                            projects.index(p)))
    return {p: i for i, p in enumerate(order)}
