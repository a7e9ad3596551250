"""Small event builders for tests: unique event_ids, one campaign/stage unless told otherwise."""

from __future__ import annotations

import itertools
from typing import Any

from processors.engine import Engine
from schemas.events import FileEvent, JobEvent

_ids = itertools.count()
C, S = "camp", "stage1"


def job(job_id: str, type: str, ts: float, *, eid: str | None = None, campaign: str = C, stage: str = S,
        **kw: Any) -> JobEvent:
    return JobEvent(event_id=eid or f"j{next(_ids)}", ts=ts, campaign=campaign, stage=stage, job_id=job_id,
                    type=type, **kw)


def file(name: str, type: str, ts: float, *, eid: str | None = None, campaign: str = C, stage: str = S,
         **kw: Any) -> FileEvent:
    return FileEvent(event_id=eid or f"f{next(_ids)}", ts=ts, campaign=campaign, stage=stage, file=name,
                     type=type, **kw)


def numbers(events: list, as_of: float = 1e9, **kw: Any) -> dict[str, Any]:
    """The single stage's numbers after applying the events."""
    e = Engine()
    e.apply_all(events)
    (n,) = e.numbers(as_of=as_of, **kw)
    return n
