"""HTCondor job event logs -> job-event/1 records: per-submission logs and the schedd-wide event log.

Parsing is delegated to the official bindings (PyPI ``htcondor`` 25.x, module ``htcondor2``) so that every
log format HTCondor itself writes is understood exactly as HTCondor understands it.  One idea a module:

* :mod:`~ingest.condor.mapping`: HTCondor events to records (types, usage, per-attempt state, stable ids);
* :mod:`~ingest.condor.reading`: raw reading between byte offsets, through the bindings' quirks;
* :mod:`~ingest.condor.routing`: each job's campaign/stage/submission/site from fixed names or from its
  JobAdInformation (028) attributes, with events held (bounded) until they are known;
* :mod:`~ingest.condor.convert`: one-shot conversion of one log or a rotation's files;
* :mod:`~ingest.condor.follower`: :class:`LogFollower`, a resumable follower through rotations (its
  docstring shows the ``poll()`` / ``take_dead_letters()`` / ``commit()`` loop);
* :mod:`~ingest.condor.checkpoint`, :mod:`~ingest.condor.files`: the follower's checkpoint and open files;
* :mod:`~ingest.condor.tailing`: the poll / publish / flush / commit loop, for any publisher;
* :mod:`~ingest.condor.writer`: records back to HTCondor's text format (test logs, the benchmark's log).
"""

from ingest.condor.checkpoint import CHECKPOINT_FORMAT, CheckpointMismatch
from ingest.condor.convert import convert_log, convert_logs
from ingest.condor.follower import LogFollower, LogReplaced, follow_log
from ingest.condor.mapping import EVENT_TYPES, ReadStats, event_id, parse_usage
from ingest.condor.reading import NotAJobEventLog
from ingest.condor.routing import ROUTED_FIELDS, Routing, RoutingError

__all__ = [
    "CHECKPOINT_FORMAT",
    "EVENT_TYPES",
    "ROUTED_FIELDS",
    "CheckpointMismatch",
    "LogFollower",
    "LogReplaced",
    "NotAJobEventLog",
    "ReadStats",
    "Routing",
    "RoutingError",
    "convert_log",
    "convert_logs",
    "event_id",
    "follow_log",
    "parse_usage",
]
