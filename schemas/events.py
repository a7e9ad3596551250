"""The event contract: job-event/1 and file-event/1, as typed msgspec models.

Every adapter (JSON lines, Kafka, HTCondor logs, the simulator) produces or consumes exactly these
types, so validation happens once, here. The JSON Schema files in ``schemas/json/`` describe the same
contract for people and other languages; ``tests/schemas`` checks that the two agree.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Literal, Union

import msgspec

JOB_SCHEMA = "job-event/1"

# ---------------------------------------------------------------------------------------------- bounds
# Every value of the contract has explicit bounds, so that whatever arrives either fits the column it is
# stored in (schemas/sql/tables.sql) and every integer derived from it, or is a dead letter whose reason
# names the field and the bound. msgspec checks them in C while decoding (the hot path stays fast); the
# JSON Schema files carry the same numbers (generated from these models, checked by tests/schemas).

# The longest input line (one JSON message) accepted, in bytes: a bigger line is a dead letter, so no
# Kafka message, SQL statement or memory buffer grows with one input value.
MAX_LINE_BYTES = 1 << 20
# Names (event_id, campaign, stage, job_id, file, submission, site, host, location, each parent), in
# characters (as JSON Schema's maxLength counts them): at most 4 KiB of UTF-8.
MAX_NAME_CHARS = 1024
# Free text (a hold or eviction reason), in characters.
MAX_REASON_CHARS = 4096
# Input files one output can be made from (a merge job's inputs).
MAX_PARENTS = 1000
# Event time, Unix seconds: from 1990-01-01T00:00:00Z (nothing this tool counts is older) to at most
# FUTURE_SLACK_S after the ingesting machine's clock (checked at decode, with an injectable clock),
# and never after 2100-01-01T00:00:00Z whatever the clock says (DateTime columns end in 2106).
MIN_TS = 631152000.0
MAX_TS = 4102444800.0
FUTURE_SLACK_S = 86400.0
# A ts above this is almost surely milliseconds (1e11 s is the year 5138): the reason says so.
MILLISECONDS_HINT_TS = 1e11
# exit_code and signal are stored as Int32.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# HTCondor's HoldReasonCode (a small non-negative number: 1 user hold, 12 transfer output failed, ...)
# and HoldReasonSubCode (an errno, exit code or signal the code refines; any int): stored as Int32.
MIN_HOLD_CODE = 0
# Cores of a slot (stored as UInt16); one attempt's wall seconds (366 days); CPU seconds of one
# attempt (at most every core busy for the longest wall). So one attempt adds at most
# 366 d * 1024 cores = 3.2e13 core-wall ms and 6.5e16 CPU ms to the UInt64 sums.
MAX_CORES = 1024
MAX_WALL_S = 366 * 86400.0
MAX_CPU_S = MAX_WALL_S * MAX_CORES
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

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
OptionalName = Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)]
Reason = Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)]
Int32 = Annotated[int, msgspec.Meta(ge=INT32_MIN, le=INT32_MAX)]
WallSeconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_WALL_S)]
CpuSeconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_CPU_S)]
Cores = Annotated[int, msgspec.Meta(ge=1, le=MAX_CORES)]
HoldCode = Annotated[int, msgspec.Meta(ge=MIN_HOLD_CODE, le=INT32_MAX)]
Parents = Annotated[list[Name], msgspec.Meta(max_length=MAX_PARENTS)]
Timestamp = Union[datetime, Annotated[float, msgspec.Meta(ge=MIN_TS, le=MAX_TS)]]


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

    def keyed(self) -> DeadLetter:
        """This dead letter with a position no other record shares (the store keeps one row per (source,
        position)). A record without a position (events fed as objects: the replay's replay_events, the
        SAM and follow store writers) and a line of standard input (one source name, STDIN_SOURCE, for
        every input read from `-`: line 1 of the next input would replace line 1 of this one) are keyed by
        their bytes too (dead_letter_position); the same input read again gets the same keys."""
        if self.position and not (self.source == STDIN_SOURCE and self.position.isdigit()):
            return self
        key = dead_letter_position(raw_to_text(bytes(self.raw)), self.reason)
        return DeadLetter(self.source, f"{self.position} {key}" if self.position else key, self.reason, self.raw)


STDIN_SOURCE = "<stdin>"  # the source name of lines read from `-` (the replay, publish)
DERIVED_POSITION_PREFIX = "blake2b:"


def dead_letter_position(raw: str, reason: str) -> str:
    """The position of a dead letter that came without one: the blake2b digest of its stored bytes.

    `raw` is the dead_letter.raw text (raw_to_text: one text per byte string, so one digest per record); a
    record with no bytes at all is told apart by its reason. Stable across runs and processes (no counter,
    no clock): replaying the same input again writes the same keys.
    """
    data = raw.encode("utf-8", "surrogatepass") if raw else b"reason:" + reason.encode("utf-8", "surrogatepass")
    return DERIVED_POSITION_PREFIX + hashlib.blake2b(data, digest_size=16).hexdigest()


# How dead_letter.raw (a String column) keeps a record's exact bytes and stays readable in ad-hoc SQL:
# valid UTF-8 is stored as that text, byte for byte; anything else (and text that itself starts with
# the prefix) as RAW_HEX_PREFIX + hex of the bytes. The exact bytes in SQL, on ClickHouse 18.16 (which
# has no base64Decode) and on chDB alike:
#     if(startsWith(raw, 'hex:'), unhex(substring(raw, 5)), raw)
# One column, so stores created before this scheme keep working for writes with no migration.
RAW_HEX_PREFIX = "hex:"


def raw_to_text(raw: bytes) -> str:
    """The dead_letter.raw text of a record's bytes (exact: ``raw_from_text`` gives them back)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return RAW_HEX_PREFIX + raw.hex()
    return RAW_HEX_PREFIX + raw.hex() if text.startswith(RAW_HEX_PREFIX) else text


def raw_from_text(text: str) -> bytes:
    """The exact bytes of a dead_letter.raw text (the inverse of ``raw_to_text``)."""
    if text.startswith(RAW_HEX_PREFIX):
        return bytes.fromhex(text[len(RAW_HEX_PREFIX):])
    return text.encode("utf-8")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ts_range_reason(ts: float, now: float) -> str:
    """Why a Unix-seconds ``ts`` is refused: the documented range, and a hint when it looks like ms."""
    high = min(now + FUTURE_SLACK_S, MAX_TS)
    reason = f"`ts` {ts!r} is outside {_iso(MIN_TS)} .. now + 1 day ({_iso(high)}), in Unix seconds"
    if ts > MILLISECONDS_HINT_TS:
        reason += "; is it in milliseconds?"
        if MIN_TS <= ts / 1000 <= high:
            reason += f" ({ts / 1000!r} s would be {_iso(ts / 1000)})"
    return reason


def _to_unix(ts: datetime | float) -> float:
    """Normalise an RFC 3339 time (with zone) or Unix seconds to Unix seconds, within the range."""
    if type(ts) is float:  # the common case: msgspec already checked MIN_TS <= ts <= MAX_TS
        return ts
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("`ts` needs a time zone (RFC 3339, e.g. 2017-06-20T11:25:00Z)")
        try:
            t = ts.timestamp()
        except (OverflowError, ValueError):  # year 1 with a positive offset, and the like
            t = -math.inf
        if not MIN_TS <= t <= MAX_TS:
            raise ValueError(f"`ts` {ts.isoformat()} is outside {_iso(MIN_TS)} .. now + 1 day")
        return t
    # Direct construction (tests, rows rebuilt from the store) may pass an int.
    if not math.isfinite(ts):
        raise ValueError("`ts` must be a finite number of Unix seconds")
    return float(ts)


# gc=False: an event holds only strings, numbers and a list of strings, so it can be in no reference cycle; the
# garbage collector then never tracks or scans the hundreds of thousands a replay keeps (less work, and 16 bytes
# less per event).
class JobEvent(msgspec.Struct, tag_field="schema", tag=JOB_SCHEMA, kw_only=True, omit_defaults=True, gc=False):
    """One HTCondor job-state transition of one job (one attempt's start or end, a hold, ...)."""

    event_id: Name
    ts: Timestamp
    campaign: Name
    stage: Name
    job_id: Name
    type: JobEventType
    submission: OptionalName | None = None
    exit_code: Int32 | None = None
    signal: Int32 | None = None
    cpu_user_s: CpuSeconds | None = None
    cpu_sys_s: CpuSeconds | None = None
    wall_s: WallSeconds | None = None
    cores: Cores | None = None
    reason: Reason | None = None
    site: OptionalName | None = None
    host: OptionalName | None = None
    hold_code: HoldCode | None = None  # for held: HTCondor's HoldReasonCode
    hold_subcode: Int32 | None = None  # for held: HTCondor's HoldReasonSubCode

    def __post_init__(self) -> None:
        self.ts = _to_unix(self.ts)

    @property
    def entity(self) -> str:
        return self.job_id


class FileEvent(msgspec.Struct, tag_field="schema", tag=FILE_SCHEMA, kw_only=True, omit_defaults=True, gc=False):
    """One fact about one file of a stage: declared as input, delivered, processed, output, located."""

    event_id: Name
    ts: Timestamp
    campaign: Name
    stage: Name
    file: Name
    type: FileEventType
    submission: OptionalName | None = None
    job_id: OptionalName | None = None
    parents: Parents | None = None
    location: OptionalName | None = None

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
_ts_only = msgspec.json.Decoder(dict[str, Any])

# A reason longer than this is cut: msgspec quotes offending values, which the line bound alone
# would let grow to 1 MiB (dead-letter reasons travel as Kafka headers and are printed).
MAX_DEAD_LETTER_REASON_CHARS = 1000


_future_bound = 0.0  # time.time() + FUTURE_SLACK_S when last looked at: only a later ts reads the clock again
_FAST_MAX_LEN = MAX_LINE_BYTES // 4  # a str's UTF-8 has at most 4 bytes a character


def decode_event(raw: bytes | str, clock: Callable[[], float] | None = None) -> Event:
    """Parse one JSON message; raise InvalidEvent naming the field and the reason, and nothing else.

    Whatever the bytes, the only exception is InvalidEvent: callers (replay, publish, the worker)
    dead-letter it and go on, so no input can stop them (a worker that crashed on a message would
    crash on it again after every restart). ``clock`` gives "now" for the ``ts`` upper bound (default
    ``time.time``, read only when a ts passes the bound last computed from it).

    The common case costs one comparison after msgspec's C decoder (this is replay's hot path): the
    line length and the clock are looked at only when the line is long or the ts is new.
    """
    try:
        ev: Event = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        _check_size(raw)
        raise InvalidEvent(_cut(_explain(str(exc), raw, clock or time.time))) from None
    except msgspec.DecodeError as exc:
        _check_size(raw)
        raise InvalidEvent(_cut(f"not valid JSON: {exc}")) from None
    except RecursionError:
        raise InvalidEvent("JSON nested too deeply (hundreds of levels of arrays or objects); an event is a flat "
                           "object") from None
    except Exception as exc:  # anything else a hostile input could trigger: still only a dead letter
        raise InvalidEvent(_cut(f"could not be read ({type(exc).__name__}: {exc})")) from None
    if ev.ts > _future_bound or len(raw) > _FAST_MAX_LEN or clock is not None:  # type: ignore[operator]
        _check_accepted(ev, raw, clock)
    return ev


def _check_size(raw: bytes | str) -> None:
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_LINE_BYTES:
        raise InvalidEvent(f"the line is longer than {MAX_LINE_BYTES:,} bytes (the contract's limit for one "
                           f"message); split it or shorten its values")


def _check_accepted(ev: Event, raw: bytes | str, clock: Callable[[], float] | None) -> None:
    """The checks msgspec cannot make: the whole line's size, and ts <= now + 1 day."""
    global _future_bound
    _check_size(raw)
    ts: float = ev.ts  # type: ignore[assignment]
    if clock is None:
        if ts > _future_bound:
            now = time.time()
            _future_bound = now + FUTURE_SLACK_S
            if ts > _future_bound:
                raise InvalidEvent(ts_range_reason(ts, now))
    else:
        now = clock()
        if ts > now + FUTURE_SLACK_S:
            raise InvalidEvent(ts_range_reason(ts, now))


def _cut(reason: str) -> str:
    if len(reason) <= MAX_DEAD_LETTER_REASON_CHARS:
        return reason
    tail = f"... ({len(reason):,} characters)"
    return reason[:MAX_DEAD_LETTER_REASON_CHARS - len(tail)] + tail


def _explain(message: str, raw: bytes | str, clock: Callable[[], float]) -> str:
    """Make msgspec's errors speak the contract's words."""
    if "Object missing required field `schema`" in message:
        return "missing field `schema` (expected 'job-event/1' or 'file-event/1')"
    if message.startswith("Invalid value") and "`$.schema`" in message:
        return f"unknown `schema` ({message}); expected 'job-event/1' or 'file-event/1'"
    if message.endswith("- at `$.ts`") and ("Expected `float` >=" in message or "Expected `float` <=" in message):
        try:
            ts = _ts_only.decode(raw).get("ts")
        except Exception:
            ts = None
        if isinstance(ts, (int, float)):
            return ts_range_reason(float(ts), clock())
    return message
def encode_event(event: Event) -> bytes:
    """Canonical JSON of an event (ts as Unix seconds), as stored in the raw events table."""
    return _encoder.encode(event)


def event_key(event: Event) -> bytes:
    """The Kafka key of an event: job_id for job events, file for file events."""
    return event.entity.encode()
