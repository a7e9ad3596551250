"""The counting engine: routes events to their stage. Pure Python, no I/O.

The same Engine runs in the embedded replay, inside Faust agents and in unit tests; adapters feed
it events and read back numbers and the rows of changed entities.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from processors.numbers import STALL_THRESHOLD_S
from processors.rows import file_row, job_attempt_rows, job_row, stage_row
from processors.stage import StageState
from schemas.events import Event

StageKey = tuple[str, str]


class Engine:
    def __init__(self) -> None:
        self.stages: dict[StageKey, StageState] = {}

    def stage(self, campaign: str, stage: str) -> StageState:
        key = (campaign, stage)
        st = self.stages.get(key)
        if st is None:
            st = self.stages[key] = StageState(campaign, stage)
        return st

    def apply(self, ev: Event) -> bool:
        """Apply one event; False when it is a duplicate (same event_id already applied)."""
        return self.stage(ev.campaign, ev.stage).apply(ev)

    def apply_all(self, events: Iterable[Event]) -> int:
        """Apply events; returns how many were new."""
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
            for job_id in jobs:
                ent = st.jobs[job_id]
                yield "job_state", job_row(st, ent.view)
                for row in job_attempt_rows(st, ent.view):
                    yield "job_attempts", row
            for name in files:
                yield "file_state", file_row(st, name)
            yield "stage_numbers", stage_row(st)
