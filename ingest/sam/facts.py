"""SAM snapshot -> contract events, so that the same fact is always the same event.

A fact is what one poll saw: "file F is in definition D", "file F has consumed_status X in project P",
"output O (parents [...]) exists", "output O is at location L". Its ``event_id`` is a hash of the
source (the SAMWeb API root), campaign, stage, event type, file and the state that makes it a fact
(definition, project, sorted parents, location): seen again, by this poller or another, it is the same
id. Its ``ts`` is SAM's own time when SAM gives one, else the first time this source saw it (kept in
the checkpoint, so a restart or a re-poll gives the same ts):

* output_declared: the output's ``create_date`` (metadata);
* delivered/consumed/skipped/failed: the project's start time (summary). SAM's per-file project
  listings carry no time, and a first-seen time would differ between two pollers: the store keeps
  one copy of an event_id (the smaller content hash), so copies with different times could put a
  recovery project's "delivered" before the first project's "failed". The project's start is the
  same for every poller, orders a recovery project after the one it recovers, and within a project
  the contract's same-ts order (delivered < consumed < skipped < failed) is SAM's progression;
* input_declared, output_located: first seen (only their existence counts, so two pollers' copies
  with different times change no number; the copy that loses is a conflict dead letter).

consumed_status -> file event (POMS ``samweb_lite.do_totals`` counts "completed" as consumed, and its
recovery dimensions treat skipped, unconsumed and cancelled files as needing another try):

| SAM consumed_status | event |
|---|---|
| delivered, transferred | delivered (a process has it now) |
| consumed, completed | consumed |
| skipped, unconsumed, cancelled | skipped |
| failed | failed |

Without a start time in the summary, a project's facts take their first-seen time plus 1 ms per
project rank (projects ordered by start, then as given), so facts of several projects first seen in
one poll still put the recovery project's last.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from schemas.events import MAX_PARENTS, DeadLetter, FileEvent, encode_event

#: SAM consumed_status values queried per project, grouped by the event each becomes, in progress order.
STATUS_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("delivered", ("delivered", "transferred")),
    ("consumed", ("consumed", "completed")),
    ("skipped", ("skipped", "unconsumed", "cancelled")),
    ("failed", ("failed",)),
)
RANK_STEP_S = 0.001


@dataclass(frozen=True)
class Fact:
    """One thing SAM says, before it has a ts."""

    type: str
    file: str
    detail: str = ""  # definition, project, location, or parents chunk
    parents: tuple[str, ...] | None = None
    submission: str | None = None
    sam_ts: float | None = None  # SAM's own time of the fact, if it has one
    rank: int = 0  # project rank (first-seen ordering of facts of later projects)


def event_id(source: str, campaign: str, stage: str, fact: Fact) -> str:
    key = "\x1f".join((source, campaign, stage, fact.type, fact.file, fact.detail,
                       "\x1e".join(fact.parents or ())))
    return "sam:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def to_event(fact: Fact, eid: str, ts: float, campaign: str, stage: str) -> FileEvent:
    """The contract event; raises ValueError/TypeError (msgspec) when a value breaks the contract."""
    kw: dict[str, Any] = {}
    if fact.parents is not None:
        kw["parents"] = list(fact.parents)
    if fact.type == "output_located":
        kw["location"] = fact.detail
    if fact.submission:
        kw["submission"] = fact.submission
    ev = FileEvent(event_id=eid, ts=ts, campaign=campaign, stage=stage, file=fact.file, type=fact.type, **kw)
    # msgspec does not check Meta constraints on construction: round-trip through the decoder.
    from schemas.events import decode_event

    return decode_event(encode_event(ev))  # type: ignore[return-value]


def dead_letter(source: str, fact: Fact, reason: str, eid: str) -> DeadLetter:
    """A fact the contract refuses. Its position ends with the fact's event id (`event_id`: a hash of the
    source, campaign, stage, type, file, detail and parents), so two facts never share a dead_letter key
    (ReplacingMergeTree keyed by source and position): the same file delivered by two projects, two
    locations of one output, or two long names with the same first 200 characters are two dead letters;
    the type and the start of the name are kept before it for the reader."""
    import json

    raw = json.dumps({"type": fact.type, "file": fact.file, "detail": fact.detail,
                      "parents": list(fact.parents or ()), "submission": fact.submission},
                     ensure_ascii=False).encode("utf-8", "surrogatepass")
    return DeadLetter(source, f"{fact.type} {fact.file[:200]} {eid}", reason, raw)


def parse_sam_time(value: Any) -> float | None:
    """SAM's times: ISO 8601 strings (``2017-06-20T11:25:00+00:00``) or Unix seconds; None if neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)  # SAM serves UTC unless asked for a Timezone
        try:
            return dt.timestamp()
        except (OverflowError, ValueError):
            return None
    return None


def parent_names(md: dict[str, Any]) -> list[str]:
    """``parents`` of SAM metadata: objects with ``file_name`` (or plain names)."""
    parents = md.get("parents") or []
    if not isinstance(parents, list):
        from ingest.sam.http import SamBadResponse

        raise SamBadResponse(f"the parents of {md.get('file_name')!r:.200} in SAM's metadata are not a list")
    out = []
    for p in parents:
        name = p.get("file_name") if isinstance(p, dict) else p
        if isinstance(name, str) and name:
            out.append(name)
    return out


def output_facts(md: dict[str, Any], inputs: set[str]) -> list[Fact]:
    """output_declared for a child: its parents among the stage's inputs (in chunks of MAX_PARENTS)."""
    parents = sorted({p for p in parent_names(md) if p in inputs})
    if not parents:
        return []
    ts = parse_sam_time(md.get("create_date"))
    return [Fact("output_declared", md["file_name"], detail=f"parents#{i // MAX_PARENTS}",
                 parents=tuple(parents[i:i + MAX_PARENTS]), sam_ts=ts)
            for i in range(0, len(parents), MAX_PARENTS)]
