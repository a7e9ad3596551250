"""Stage counters as the sum of per-entity contributions, keeping only the newest per entity.

This is what makes the streaming path idempotent: an entity (a job or a file) always sends its whole
contribution with a version that grows with every event that can change it; the stage keeps the
latest version per entity and applies the difference. Re-delivering, re-processing or replaying an
old contribution changes nothing, so at-least-once delivery gives exactly-once numbers. The embedded
StageState uses the same class, so both paths count the same way.

Time stats (first/last event, last progress) fold with min/max, which is order-free while an entity
only grows. A conflicting copy that wins can move an entity's times inwards (the loser's ts must not
stay in the stage's numbers): when an entity's times shrink, the stage refolds them from every
entity's newest times (rare; only entities that send their times, as the streaming steps do).
"""

from __future__ import annotations

from typing import Any

import msgspec

from processors.numbers import COUNTERS, STALL_THRESHOLD_S, finalise

Times = tuple[float | None, float | None, float | None]  # an entity's (first_ts, last_ts, progress_ts)
Entry = tuple[int, dict[str, int], Times | None]  # an entity's (version, contribution, times)

# Packed entries (StageCounters(packed=True)): one bytes object per entity instead of a tuple holding an
# int, a dict of ints and a tuple of floats (a job's: ~540 bytes of Python objects; ~130 packed). The streaming
# stage step keeps every entity of its stages in memory, so this is most of a worker's resident state.
_pack = msgspec.msgpack.Encoder().encode
_unpack_raw = msgspec.msgpack.Decoder().decode


_KEYS = (*COUNTERS, "events")  # every key a contribution may have (StageCounters.counters)
_INDEX = {k: i for i, k in enumerate(_KEYS)}


def _pack_entry(version: int, contribution: dict[str, int], times: Times | None) -> bytes:
    """(version, [key index, value, ...], times): the counter names as one-byte indexes, not text."""
    flat: list[int] = []
    for k, v in contribution.items():
        flat += (_INDEX[k], v)
    return _pack((version, flat, times))


def _unpack_entry(raw: bytes) -> Entry:
    version, flat, times = _unpack_raw(raw)
    keys = _KEYS
    contribution = {keys[flat[i]]: flat[i + 1] for i in range(0, len(flat), 2)}
    return version, contribution, (tuple(times) if times is not None else None)  # type: ignore[return-value]


def _shrinks(old: Times, new: Times) -> bool:
    """Whether an entity's new times leave out part of its old range (only a replaced event does that)."""
    of, ol, op = old
    nf, nl, np_ = new
    return ((of is not None and (nf is None or nf > of)) or (ol is not None and (nl is None or nl < ol))
            or (op is not None and (np_ is None or np_ < op)))


class StageCounters:
    """A stage's counters and the newest contribution of each of its entities.

    ``packed=True`` keeps each entity's entry as bytes (see ``_pack_entry``): four times less memory for a
    msgpack decode per replaced entry; ``entities`` then maps to bytes (read them with ``entry``).
    """

    __slots__ = ("campaign", "stage", "counters", "entities", "first_event_ts", "last_event_ts",
                 "last_progress_ts", "version_sum", "_times_stale", "packed")

    def __init__(self, campaign: str, stage: str, packed: bool = False) -> None:
        self.campaign = campaign
        self.stage = stage
        # "events" (distinct events behind the numbers) rides along as a counter: it is the version
        # of the stage row, identical on every worker that computes it.
        self.counters: dict[str, int] = dict.fromkeys((*COUNTERS, "events"), 0)
        # entity key -> (version, contribution, (first_ts, last_ts, progress_ts) or None)
        self.entities: dict[str, Any] = {}  # Entry, or its bytes when packed
        self.first_event_ts: float | None = None
        self.last_event_ts: float | None = None
        self.last_progress_ts: float | None = None
        self.version_sum = 0  # of the entities' versions: the streaming stage row's version (StageAggregator.row)
        self._times_stale = False
        self.packed = packed

    def entry(self, entity: str) -> Entry | None:
        """The entity's (version, contribution, times), or None."""
        raw = self.entities.get(entity)
        if raw is None or not self.packed:
            return raw
        return _unpack_entry(raw)

    @property
    def events(self) -> int:
        return self.counters["events"]

    def apply(self, entity: str, version: int, contribution: dict[str, int], times: Times | None = None) -> bool:
        """Replace an entity's contribution if this version is newer; False if it is stale.

        With ``times``, the entity's time stats are folded in too (and refolded if they shrank).
        """
        old = self.entry(entity)
        if old is not None:
            if version <= old[0]:
                return False
            for k, v in old[1].items():
                self.counters[k] -= v
            self.version_sum -= old[0]
            if times is not None and old[2] is not None and _shrinks(old[2], times):
                self._times_stale = True
        for k, v in contribution.items():
            self.counters[k] += v
        self.version_sum += version
        self.entities[entity] = (_pack_entry(version, contribution, times) if self.packed
                                 else (version, contribution, times))
        if times is not None and not self._times_stale:
            self.observe(*times)
        return True

    def _refold_times(self) -> None:
        self.first_event_ts = self.last_event_ts = self.last_progress_ts = None
        values = self.entities.values()
        for _, _, times in (map(_unpack_entry, values) if self.packed else values):
            if times is not None:
                self.observe(*times)
        self._times_stale = False

    def observe(self, first_ts: float | None, last_ts: float | None, progress_ts: float | None) -> None:
        """Fold an entity's time stats in (min/max: idempotent and order-free)."""
        if first_ts is not None and (self.first_event_ts is None or first_ts < self.first_event_ts):
            self.first_event_ts = first_ts
        if last_ts is not None and (self.last_event_ts is None or last_ts > self.last_event_ts):
            self.last_event_ts = last_ts
        if progress_ts is not None and (self.last_progress_ts is None or progress_ts > self.last_progress_ts):
            self.last_progress_ts = progress_ts

    def numbers(self, as_of: float, threshold_s: float = STALL_THRESHOLD_S) -> dict[str, Any]:
        if self._times_stale:
            self._refold_times()
        out: dict[str, Any] = {"campaign": self.campaign, "stage": self.stage}
        out.update(finalise(self.counters, first_event_ts=self.first_event_ts, last_event_ts=self.last_event_ts,
                            last_progress_ts=self.last_progress_ts, as_of=as_of, threshold_s=threshold_s))
        return out

    def row(self) -> dict[str, Any]:
        """The stage_numbers row; version = distinct events behind it (grows with every new event).

        A conflicting copy that wins leaves the count, and so this version, unchanged: the embedded
        replay writes the new row after the old one, and ReplacingMergeTree keeps the last inserted of
        equal versions. (A version with the content bonus could fall below a stored one after a
        restart, which rebuilds from the winners alone; a count cannot.) The streaming stage step,
        whose entries are durable, uses ``version_sum`` instead.
        """
        if self._times_stale:
            self._refold_times()
        n = self.events
        row: dict[str, Any] = {"campaign": self.campaign, "stage": self.stage}
        row.update({k: self.counters[k] for k in COUNTERS})
        row.update({"events": n, "first_event_ts": self.first_event_ts, "last_event_ts": self.last_event_ts,
                    "last_progress_ts": self.last_progress_ts, "version": n})
        return row
