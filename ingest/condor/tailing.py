"""The follow loop: poll, publish events and dead letters, flush, then commit, until stopped.

Kept apart from any transport: ``publisher`` is anything with ``event(ev)``, ``reject(raw, source, position,
reason)`` and ``flush()`` (``ingest.publish.Publisher`` for Kafka), so the same loop serves ``stagewatch
tail condor-log`` and other followers.  The checkpoint moves only after ``flush()`` returned (every event
and dead letter read before it acknowledged), so a crash at any point resumes with no gap; what was
published after the last commit is published again with the same event ids, which count once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class FollowReport:
    polls: int = 0
    published: int = 0  #: events published and committed
    dead_letters: int = 0  #: dead letters published and committed
    commits: int = 0


def run_follower(publisher: Any, follower: Any, *, poll_s: float = 1.0, stop: threading.Event | None = None,
                 max_events_per_poll: int = 10_000,
                 on_batch: Callable[[int, int], None] | None = None,
                 report: FollowReport | None = None) -> FollowReport:
    """Follow ``follower`` (a :class:`~ingest.condor.follower.LogFollower`) into ``publisher`` until ``stop``.

    ``report`` is filled as the loop goes, so a caller still has the counts when it raises."""
    stop = stop or threading.Event()
    rep = report if report is not None else FollowReport()
    while not stop.is_set():
        before = (follower.reading, follower.offset)
        events = follower.poll(max_events_per_poll)
        dead = follower.take_dead_letters()
        rep.polls += 1
        for ev in events:
            publisher.event(ev)
        for dl in dead:
            publisher.reject(dl.raw, dl.source, dl.position, dl.reason)
        if follower.uncommitted:
            publisher.flush()  # raises (DeliveryError): then the checkpoint is not moved
            follower.commit()
            rep.commits += 1
            rep.published += len(events)
            rep.dead_letters += len(dead)
            log.info("tail.commit events=%d dead_letters=%d file=%s offset=%d held=%d", len(events), len(dead),
                     follower.reading, follower.offset, follower.held)
            if on_batch is not None:
                on_batch(len(events), follower.offset)
        if (follower.reading, follower.offset) == before:
            stop.wait(poll_s)
    return rep
