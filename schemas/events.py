"""The event contract: job-event/1 and file-event/1, as typed msgspec models.

Every adapter (JSON lines, Kafka, HTCondor logs, the simulator) produces or consumes exactly these
types, so validation happens once, here. The JSON Schema files in ``schemas/json/`` describe the same
contract for people and other languages; ``tests/schemas`` checks that the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, Union

import msgspec

JOB_SCHEMA = "job-event/1"

# The longest input line (one JSON message) the contract accepts, in bytes: a bigger line is a dead
# letter, so no Kafka message, SQL statement or memory buffer grows with one input value.
MAX_LINE_BYTES = 1 << 20
FILE_SCHEMA = "file-event/1"

JobEventType = Literal[
    "submitted",
    "started",
    "evicted",
    "shadow_exception",
    "disconnected",
    "reconnected",
    "reconnect_failed",
    "held",
    "released",
    "suspended",
    "unsuspended",
    "terminated",
    "removed",
]
FileEventType = Literal[
    "input_declared",
    "delivered",
    "consumed",
    "skipped",
    "failed",
    "output_declared",
    "output_located",
]

JOB_EVENT_TYPES: tuple[str, ...] = JobEventType.__args__  # type: ignore[attr-defined]
FILE_EVENT_TYPES: tuple[str, ...] = FileEventType.__args__  # type: ignore[attr-defined]

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Timestamp = Union[datetime, float]


class InvalidEvent(ValueError):
    """A record that does not satisfy the contract; the message names the field and the reason."""


@dataclass
class DeadLetter:
    """A rejected record, kept with where it came from and why (file:line or topic/partition/offset)."""

    source: str
    position: str
    reason: str
    raw: bytes

    def __str__(self) -> str:
        return f"{self.source}:{self.position}: {self.reason}"


def _to_unix(ts: datetime | float) -> float:
    """Normalise an RFC 3339 time (with zone) or Unix seconds to Unix seconds."""
    if type(ts) is float and ts - ts == 0.0:  # the common case, finite (inf - inf and nan - nan are nan)
        return ts
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("`ts` needs a time zone (RFC 3339, e.g. 2017-06-20T11:25:00Z)")
        return ts.timestamp()
    if not math.isfinite(ts):
        raise ValueError("`ts` must be a finite number of Unix seconds")
    return float(ts)


class JobEvent(msgspec.Struct, tag_field="schema", tag=JOB_SCHEMA, kw_only=True, omit_defaults=True):
    """One HTCondor job-state transition of one job (one attempt's start or end, a hold, ...)."""

    event_id: NonEmpty
    ts: Timestamp
    campaign: NonEmpty
    stage: NonEmpty
    job_id: NonEmpty
    type: JobEventType
    submission: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    cpu_user_s: NonNegative | None = None
    cpu_sys_s: NonNegative | None = None
    wall_s: NonNegative | None = None
    cores: Annotated[int, msgspec.Meta(ge=1)] | None = None
    reason: str | None = None
    site: str | None = None
    host: str | None = None

    def __post_init__(self) -> None:
        self.ts = _to_unix(self.ts)

    @property
    def entity(self) -> str:
        return self.job_id


class FileEvent(msgspec.Struct, tag_field="schema", tag=FILE_SCHEMA, kw_only=True, omit_defaults=True):
    """One fact about one file of a stage: declared as input, delivered, processed, output, located."""

    event_id: NonEmpty
    ts: Timestamp
    campaign: NonEmpty
    stage: NonEmpty
    file: NonEmpty
    type: FileEventType
    submission: str | None = None
    job_id: str | None = None
    parents: list[NonEmpty] | None = None
    location: str | None = None

    def __post_init__(self) -> None:
        self.ts = _to_unix(self.ts)
        if self.type == "output_declared" and not self.parents:
            raise ValueError("`parents` is required (a non-empty list of input file names) for output_declared")

    @property
    def entity(self) -> str:
        return self.file


Event = Union[JobEvent, FileEvent]

_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def decode_event(raw: bytes | str) -> Event:
    """Parse one JSON message; raise InvalidEvent naming the field and the reason."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(_explain(str(exc), raw)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None


def _explain(message: str, raw: bytes | str) -> str:
    """Make msgspec's tag errors speak the contract's words."""
    if "Object missing required field `schema`" in message:
        return "missing field `schema` (expected 'job-event/1' or 'file-event/1')"
    if message.startswith("Invalid value") and "`$.schema`" in message:
        return f"unknown `schema` ({message}); expected 'job-event/1' or 'file-event/1'"
    return message


def encode_event(event: Event) -> bytes:
    """Canonical JSON of an event (ts as Unix seconds), as stored in the raw events table."""
    return _encoder.encode(event)


def event_key(event: Event) -> bytes:
    """The Kafka key of an event: job_id for job events, file for file events."""
    return event.entity.encode()
