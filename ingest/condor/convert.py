"""One-shot conversion of HTCondor event logs (one log, or a rotation's files in order) to job-event/1."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

from ingest.condor.mapping import ReadStats
from ingest.condor.reading import NotAJobEventLog, _final_end, _read_events
from ingest.condor.routing import Router, Routing
from schemas.events import DeadLetter, JobEvent


def convert_logs(
    paths: Sequence[str | os.PathLike[str]],
    *,
    routing: Routing,
    schedd: str | None = None,
    stats: ReadStats | None = None,
    on_dead_letter: Callable[[DeadLetter], None] | None = None,
) -> Iterator[JobEvent]:
    """Convert the files of one log in order (rotations first: ``EventLog.old``, then ``EventLog``), lazily.

    The files are one stream: per-job state (ordinals, the running attempt, the job's route) carries from
    one to the next, as it does for :class:`~ingest.condor.follower.LogFollower` through a rotation, so
    both give the same records.  Events waiting for their job's JobAdInformation (028) event when the
    last file ends are routed by the defaults or become dead letters (``on_dead_letter``; see
    :mod:`ingest.condor.routing`).  A non-empty file with no HTCondor event at all, or files with no
    event between them, raise :class:`NotAJobEventLog` (after the events before it were yielded)."""
    routing.check()
    stats = stats if stats is not None else ReadStats()
    router = Router.create(routing, schedd, stats)

    def drain() -> None:
        for dl in router.take_dead_letters():
            if on_dead_letter is not None:
                on_dead_letter(dl)

    names = [os.fspath(p) for p in paths]
    for p in names:
        before = stats.events
        size = os.path.getsize(p)
        limit = _final_end(p, 0, size, p, stats)
        for raw, end in _read_events(p, 0, limit, label=p, stats=stats):
            if raw is not None:
                yield from router.feed(raw, f"{p}:{end}")
                if router.dead_letters:
                    drain()
        if size > 0 and stats.events == before:
            raise NotAJobEventLog(
                f"{p} has no HTCondor job events: is it a job event log (the submit file's `log = ...`)?"
            )
    yield from router.finish()
    drain()
    if stats.events == 0:
        what = names[0] if len(names) == 1 else ", ".join(names)
        raise NotAJobEventLog(
            f"{what} has no HTCondor job events: is it a job event log (the submit file's `log = ...`)?"
        )


def convert_log(
    path: str | os.PathLike[str],
    *,
    campaign: str,
    stage: str,
    submission: str | None = None,
    schedd: str | None = None,
    stats: ReadStats | None = None,
) -> Iterator[JobEvent]:
    """Convert a whole per-submission HTCondor job event log, lazily, in file order, with fixed names.

    Like :class:`~ingest.condor.follower.LogFollower`, an event still being written at the end of the file
    is left out.  A segment HTCondor cannot parse is skipped up to the next ``...`` line and an event whose
    record breaks the contract is left out, each with a warning and a count in ``stats``; the events after
    them are read as usual.  A file that yields no HTCondor event at all raises :class:`NotAJobEventLog`.

    ``job_id`` is ``"{schedd}#{cluster}.{proc}"`` when ``schedd`` is given (cluster ids are only unique
    per schedd), else ``"{cluster}.{proc}"``.  Converting the same file twice gives identical records;
    converting it after it grew gives the same records for the old part first."""
    return convert_logs([path], routing=Routing(campaign=campaign, stage=stage, submission=submission),
                        schedd=schedd, stats=stats)
