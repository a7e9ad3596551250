"""Hypothesis scenarios with conflicting copies (same event_id and entity, different content), and the
independent oracle of which copy wins: the smallest blake2b digest of the canonical JSON, then the bytes.

Shared by the Engine property (test_order_independence.py) and the streaming-steps property
(test_stream.py): both must give, for any arrival order and duplication, the numbers and rows of the
winners alone.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import msgspec
from hypothesis import strategies as st

from schemas.events import JobEvent, encode_event


def _rank(ev: Any) -> tuple[bytes, bytes]:
    raw = encode_event(ev)
    return hashlib.blake2b(raw, digest_size=16).digest(), raw


def winners(copies: list[Any]) -> list[Any]:
    """One event per (campaign, stage, entity, event_id): the copy with the smallest content hash."""
    best: dict[tuple[str, str, str, str], Any] = {}
    for ev in copies:
        k = (ev.campaign, ev.stage, ev.entity, ev.event_id)
        if k not in best or _rank(ev) < _rank(best[k]):
            best[k] = ev
    return list(best.values())


def losers(copies: list[Any]) -> set[bytes]:
    """Canonical bytes of every copy that is not a winner."""
    won = {encode_event(e) for e in winners(copies)}
    return {encode_event(e) for e in copies} - won


def as_copy_of(variant: Any, ev: Any) -> Any:
    """`variant`'s content under `ev`'s identity (event_id, campaign, stage, entity)."""
    entity = {"job_id": ev.job_id} if isinstance(ev, JobEvent) else {"file": ev.file}
    if isinstance(variant, JobEvent) != isinstance(ev, JobEvent):
        return None  # a job copy of a file event is another entity altogether: not a conflict
    return msgspec.structs.replace(variant, event_id=ev.event_id, campaign=ev.campaign, stage=ev.stage, **entity)


@st.composite
def with_conflicts(draw: Any, make: Callable[[int], Any], n_max: int = 40) -> tuple[list[Any], list[Any]]:
    """(every copy, a shuffled delivery with duplicates): events, some with 1-2 conflicting copies."""
    n = draw(st.integers(1, n_max))
    events = [draw(make(i)) for i in range(n)]
    copies = list(events)
    for ev in draw(st.lists(st.sampled_from(events), max_size=8)):
        c = as_copy_of(draw(make(10_000 + len(copies))), ev)
        if c is not None and encode_event(c) != encode_event(ev):
            copies.append(c)
    dupes = draw(st.lists(st.sampled_from(copies), max_size=12))
    return copies, draw(st.permutations(copies + dupes))
