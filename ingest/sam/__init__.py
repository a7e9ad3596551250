"""SAM (Sequential Access via Metadata) as a source of file-event/1 events.

SAM knows a stage's input dataset (a definition), how each file fared in the stage's projects
(consumed_status), the stage's outputs (children of the inputs) and where they are stored
(locations). It gives snapshots; ``ingest.sam.poller`` turns them into events that are the same
event (same event_id, same ts) however often and by however many pollers the same fact is seen.

Modules: ``http`` (the SAMWeb HTTP client: bulk calls, POST for long dimensions, retries, auth),
``api`` (the documented SAMWeb endpoints, parsed as samweb_client parses them), ``facts`` (snapshot
-> contract events, deterministic ids), ``checkpoint`` (first-seen times and what was emitted),
``poller`` (one poll, all or nothing).
"""

from ingest.sam.http import SamError, SamHttp, SamHttpError, SamQueryLimit, SamUnavailable, SamBadResponse
from ingest.sam.poller import PollResult, SamPoller, SamSource

__all__ = ["SamError", "SamHttp", "SamHttpError", "SamQueryLimit", "SamUnavailable", "SamBadResponse",
           "PollResult", "SamPoller", "SamSource"]
