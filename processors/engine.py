"""The counting engine: routes events to their stage. Pure Python, no I/O.

The same Engine runs in the embedded replay, inside Faust agents and in unit tests; adapters feed
it events and read back numbers and the rows of changed entities.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from processors.numbers import STALL_THRESHOLD_S
from processors.rows import file_row, job_attempt_rows, job_row, stage_row
from processors.stage import Conflict, StageState
from schemas.events import Event

StageKey = tuple[str, str]


class Engine:
    def __init__(self) -> None:
        self.stages: dict[StageKey, StageState] = {}
        self._conflicts: list[Conflict] = []  # shared with every stage: take_conflicts is O(1) when empty

    def stage(self, campaign: str, stage: str) -> StageState:
        key = (campaign, stage)
        st = self.stages.get(key)
        if st is None:
            st = self.stages[key] = StageState(campaign, stage, self._conflicts)
        return st

    def apply(self, ev: Event) -> bool:
        """Apply one event; True when it changed the state: a new event, or a conflicting copy of a stored
        event that wins (smaller content hash) and replaces it. False for an exact duplicate or a losing copy.
        """
        st = self.stages.get((ev.campaign, ev.stage))  # the stage exists but for an event's first: one lookup
        if st is None:
            st = self.stage(ev.campaign, ev.stage)
        return st.apply(ev)

    def take_conflicts(self) -> list[Conflict]:
        """The conflicting copies seen since the last call (each: kept, dropped, reason), oldest first."""
        c = self._conflicts
        if not c:
            return []
        out = c[:]
        c.clear()
        return out

    def apply_all(self, events: Iterable[Event]) -> int:
        """Apply events; returns how many changed the state (see apply)."""
        n = 0
        for ev in events:
            if self.stage(ev.campaign, ev.stage).apply(ev):
                n += 1
        return n

    def numbers(self, as_of: float | None = None, threshold_s: float = STALL_THRESHOLD_S) -> list[dict[str, Any]]:
        """Every stage's numbers, sorted by (campaign, stage)."""
        now = time.time() if as_of is None else as_of
        return [self.stages[k].numbers(now, threshold_s) for k in sorted(self.stages)]

    def dirty_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(table, row) for every entity changed since the last call, then each changed stage's row."""
        for key in sorted(self.stages):
            st = self.stages[key]
            jobs, files = st.take_dirty()
            if not jobs and not files:
                continue
            floors = st.floors is not None  # after a conflict: versions never at or below one written before
            for job_id in jobs:
                ent = st.jobs[job_id]
                row = job_row(st, ent.view)
                if floors:
                    row["version"] = st.floored("job:" + job_id, row["version"])
                yield "job_state", row
                for arow in job_attempt_rows(st, ent.view):
                    if floors:
                        arow["version"] = row["version"]
                    yield "job_attempts", arow
            for name in files:
                row = file_row(st, name)
                if floors:
                    row["version"] = st.floored("file:" + name, row["version"])
                yield "file_state", row
            yield "stage_numbers", stage_row(st)
