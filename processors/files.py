"""Per-file state and the input-file bucket rule.

A file's own facts (declared as input, its latest delivery outcome, declared as output with parents,
located) come from its own events. Which bucket an input file is in also depends on the outputs that
name it as a parent; the stage keeps that parent -> outputs index and hands the outputs in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from schemas.events import FileEvent

FILE_TYPE_ORDER: tuple[str, ...] = (
    "input_declared", "delivered", "consumed", "skipped", "failed", "output_declared", "output_located",
)
FILE_TYPE_RANK = {t: i for i, t in enumerate(FILE_TYPE_ORDER)}
DISPOSITIONS = frozenset({"delivered", "consumed", "skipped", "failed"})


def sort_key(ev: FileEvent) -> tuple[float, int, str]:
    return (ev.ts, FILE_TYPE_RANK[ev.type], ev.event_id)  # type: ignore[arg-type]


@dataclass(slots=True)
class FileFacts:
    """What a file's own events say; parents is the union over all its output declarations."""

    file: str
    events: int
    is_input: bool = False
    consumed: bool = False
    disposition: str | None = None  # latest of delivered/consumed/skipped/failed
    disposition_job: str | None = None
    deliveries: int = 0
    declared_output: bool = False
    parents: frozenset[str] = frozenset()
    located: bool = False
    location: str | None = None
    first_ts: float = 0.0
    last_ts: float = 0.0
    located_ts: float | None = None  # first output_located
    last_located_ts: float | None = None  # latest output_located (progress)
    declared_ts: float | None = None  # first output_declared
    later_parents: dict[str, float] | None = None  # parents first named after declared_ts -> that time


def file_facts(events: Sequence[FileEvent]) -> FileFacts:
    """Replay one file's events (sorted by sort_key, no duplicates)."""
    f = FileFacts(file=events[0].file, events=len(events), first_ts=events[0].ts, last_ts=events[-1].ts)
    parents: set[str] = set()
    for ev in events:
        t = ev.type
        if t == "input_declared":
            f.is_input = True
        elif t in DISPOSITIONS:
            f.disposition, f.disposition_job = t, ev.job_id
            if t == "consumed":
                f.consumed = True
            elif t == "delivered":
                f.deliveries += 1
        elif t == "output_declared":
            if not f.declared_output:
                f.declared_output = True
                f.declared_ts = ev.ts
                parents.update(ev.parents or ())
            else:
                for p in ev.parents or ():
                    if p not in parents:
                        parents.add(p)
                        if ev.ts > f.declared_ts:  # type: ignore[operator]
                            if f.later_parents is None:
                                f.later_parents = {}
                            f.later_parents[p] = ev.ts
        elif t == "output_located":
            if not f.located:
                f.located_ts = ev.ts
            f.last_located_ts = ev.ts
            f.located = True
            if ev.location:
                f.location = ev.location
    f.parents = frozenset(parents)
    return f


def located_for(out: FileFacts, parent: str) -> float | None:
    """When output ``out`` made ``parent`` located: the later of its first `output_declared` naming the
    parent and its first `output_located`; None while it does not (not located, or not naming it).

    Why both: an output locates its parent only once it is both declared as the parent's output and
    located, whichever of the two events comes first (a location may arrive before its declaration).
    """
    if out.located_ts is None or parent not in out.parents:
        return None
    named = out.declared_ts if out.later_parents is None else out.later_parents.get(parent, out.declared_ts)
    return max(named, out.located_ts)  # type: ignore[type-var]


def input_located_ts(name: str, outputs: Iterable[FileFacts]) -> float | None:
    """An input file's *located time*: when it entered files_located, the earliest located_for over the
    outputs naming it (None: not located). It depends only on events with ts <= itself, so the located
    time of a file as it stood at T is this one when it is <= T (the forecast's window counts on it)."""
    best: float | None = None
    for out in outputs:
        t = located_for(out, name)
        if t is not None and (best is None or t < best):
            best = t
    return best


def input_bucket(facts: FileFacts, outputs: Iterable[FileFacts]) -> str:
    """The first bucket that applies to an input file, given the outputs declaring it as a parent."""
    any_declared = False
    for out in outputs:
        if out.located:
            return "files_located"
        any_declared = True
    if any_declared:
        return "files_declared_not_located"
    if facts.consumed:
        return "files_consumed_no_output"
    if facts.disposition == "delivered":
        return "files_in_flight"
    if facts.disposition in ("failed", "skipped"):
        return "files_failed"
    return "files_pending"
