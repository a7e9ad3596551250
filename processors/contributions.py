"""Stage counters as the sum of per-entity contributions, keeping only the newest per entity.

This is what makes the streaming path idempotent: an entity (a job or a file) always sends its whole
contribution with a version that grows with every event that can change it; the stage keeps the
latest version per entity and applies the difference. Re-delivering, re-processing or replaying an
old contribution changes nothing, so at-least-once delivery gives exactly-once numbers. The embedded
StageState uses the same class, so both paths count the same way.
"""

from __future__ import annotations

from typing import Any

from processors.numbers import COUNTERS, STALL_THRESHOLD_S, finalise


class StageCounters:
    __slots__ = ("campaign", "stage", "counters", "entities", "first_event_ts", "last_event_ts",
                 "last_progress_ts")

    def __init__(self, campaign: str, stage: str) -> None:
        self.campaign = campaign
        self.stage = stage
        # "events" (distinct events behind the numbers) rides along as a counter: it is the version
        # of the stage row, identical on every worker that computes it.
        self.counters: dict[str, int] = dict.fromkeys((*COUNTERS, "events"), 0)
        self.entities: dict[str, tuple[int, dict[str, int]]] = {}  # entity key -> (version, contribution)
        self.first_event_ts: float | None = None
        self.last_event_ts: float | None = None
        self.last_progress_ts: float | None = None

    @property
    def events(self) -> int:
        return self.counters["events"]

    def apply(self, entity: str, version: int, contribution: dict[str, int]) -> bool:
        """Replace an entity's contribution if this version is newer; False if it is stale."""
        old = self.entities.get(entity)
        if old is not None:
            if version <= old[0]:
                return False
            for k, v in old[1].items():
                self.counters[k] -= v
        for k, v in contribution.items():
            self.counters[k] += v
        self.entities[entity] = (version, contribution)
        return True

    def observe(self, first_ts: float | None, last_ts: float | None, progress_ts: float | None) -> None:
        """Fold an entity's time stats in (min/max: idempotent and order-free)."""
        if first_ts is not None and (self.first_event_ts is None or first_ts < self.first_event_ts):
            self.first_event_ts = first_ts
        if last_ts is not None and (self.last_event_ts is None or last_ts > self.last_event_ts):
            self.last_event_ts = last_ts
        if progress_ts is not None and (self.last_progress_ts is None or progress_ts > self.last_progress_ts):
            self.last_progress_ts = progress_ts

    def numbers(self, as_of: float, threshold_s: float = STALL_THRESHOLD_S) -> dict[str, Any]:
        out: dict[str, Any] = {"campaign": self.campaign, "stage": self.stage}
        out.update(finalise(self.counters, first_event_ts=self.first_event_ts, last_event_ts=self.last_event_ts,
                            last_progress_ts=self.last_progress_ts, as_of=as_of, threshold_s=threshold_s))
        return out

    def row(self) -> dict[str, Any]:
        """The stage_numbers row; version = distinct events behind it (grows with every new event)."""
        n = self.events
        row: dict[str, Any] = {"campaign": self.campaign, "stage": self.stage}
        row.update({k: self.counters[k] for k in COUNTERS})
        row.update({"events": n, "first_event_ts": self.first_event_ts, "last_event_ts": self.last_event_ts,
                    "last_progress_ts": self.last_progress_ts, "version": n})
        return row
