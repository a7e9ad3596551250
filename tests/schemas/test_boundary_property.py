"""The contract boundary as a property: every input line is either counted or a dead letter.

hypothesis throws arbitrary bytes, arbitrary JSON (deep, huge, hostile) and valid-looking events with
out-of-range fields at decode_event, and files mixing such lines with good ones at replay (chDB),
publish (a recording producer) and the worker's steps (processors.stream, as the worker runs them):
nothing raises, every good line is counted exactly as the Engine counts the good lines alone, and
every bad line is a dead letter with its exact bytes.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.kafka_io import Topics
from ingest.publish import Publisher, publish_files
from processors.engine import Engine
from processors.stream import StageAggregator
from schemas import events as E
from schemas.events import FileEvent, InvalidEvent, JobEvent, decode_event, encode_event, raw_from_text
from tests.processors.test_stream import file_events as stream_file_events
from tests.processors.test_stream import job_events as stream_job_events
from tests.processors.test_stream import run_topology

T0 = 1_497_957_900.0  # good events happen at T0 + 0..20 s
AS_OF = T0 + 100.0
NOW = time.time()  # the clock of the decodes here, and replay's and publish's: a line bad here is bad there
_n = itertools.count()


def clock() -> float:
    return NOW


# --------------------------------------------------------------------------------------- strategies

@st.composite
def good_events(draw: Any) -> list[Any]:
    """A scenario of valid events (the streaming model's generators), moved to real times."""
    n = draw(st.integers(1, 25))
    evs = [draw(st.one_of(stream_job_events(i), stream_file_events(i))) for i in range(n)]
    return [msgspec.structs.replace(ev, ts=T0 + ev.ts % 1000) for ev in evs]  # whatever base time they use


# Values each field must refuse (all outside the contract's bounds or of the wrong type).
_LONG = st.integers(E.MAX_NAME_CHARS + 1, 300_000).map(lambda n: "n" * n)
_NAME_BAD = st.one_of(st.just(""), _LONG, st.integers(), st.lists(st.text(max_size=3), max_size=2))
_OPTIONAL_NAME_BAD = st.one_of(_LONG, st.integers(), st.just({"x": 1}))
_INT32_BAD = st.one_of(st.integers(max_value=E.INT32_MIN - 1), st.integers(min_value=E.INT32_MAX + 1),
                       st.just(1.5), st.just("0"))
_SECONDS_BAD = lambda hi: st.one_of(  # noqa: E731
    st.floats(max_value=-1e-6, allow_nan=False, allow_infinity=False),
    st.floats(min_value=hi * 1.000001, max_value=1.7e308), st.just("10"), st.just([1]))
_TS_BAD = st.one_of(
    st.floats(min_value=-1e300, max_value=E.MIN_TS - 1e-3),
    # (an hour past the bound: the real clock of replay and publish moves on while the test runs)
    st.floats(min_value=NOW + E.FUTURE_SLACK_S + 3600, max_value=1.7e308),
    st.integers(min_value=int(NOW + E.FUTURE_SLACK_S) + 3600, max_value=2**70),
    st.sampled_from(["9999-12-31T23:59:59Z", "10000-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00",
                     "1969-07-20T20:17:00Z", "2017-06-20T11:25:00", "yesterday", "2017-02-30T00:00:00Z"]),
    st.just(None), st.just(True))
BAD_VALUES: dict[str, Any] = {
    "schema": st.one_of(st.text(max_size=20).filter(lambda s: s not in (E.JOB_SCHEMA, E.FILE_SCHEMA)), _LONG),
    "event_id": _NAME_BAD, "campaign": _NAME_BAD, "stage": _NAME_BAD, "ts": _TS_BAD,
    "type": st.text(max_size=12).filter(lambda s: s not in E.JOB_EVENT_TYPES + E.FILE_EVENT_TYPES),
    # job-event/1
    "job_id": _NAME_BAD, "submission": _OPTIONAL_NAME_BAD, "exit_code": _INT32_BAD, "signal": _INT32_BAD,
    "cores": st.one_of(st.integers(max_value=0), st.integers(min_value=E.MAX_CORES + 1), st.just(2.5)),
    "wall_s": _SECONDS_BAD(E.MAX_WALL_S), "cpu_user_s": _SECONDS_BAD(E.MAX_CPU_S),
    "cpu_sys_s": _SECONDS_BAD(E.MAX_CPU_S),
    "reason": st.one_of(st.integers(E.MAX_REASON_CHARS + 1, 100_000).map(lambda n: "r" * n), st.just(7)),
    "site": _OPTIONAL_NAME_BAD, "host": _OPTIONAL_NAME_BAD,
    "hold_code": st.one_of(st.integers(max_value=-1), st.integers(min_value=E.INT32_MAX + 1), st.just(1.5),
                           st.just("0")),
    "hold_subcode": _INT32_BAD,
    # file-event/1
    "file": _NAME_BAD, "location": _OPTIONAL_NAME_BAD,
    "parents": st.one_of(st.just([""]), st.lists(st.just("p"), min_size=E.MAX_PARENTS + 1,
                                                  max_size=E.MAX_PARENTS + 5), st.just([_LONG_NAME := "p" * 1025]),
                         st.just("p")),
}
_JOB_FIELDS = set(JobEvent.__struct_fields__) | {"schema"}
_FILE_FIELDS = set(FileEvent.__struct_fields__) | {"schema"}


@st.composite
def out_of_range_event(draw: Any, base: Any) -> bytes:
    """A valid-looking event (a good one) with one field set to a value the contract refuses."""
    doc = json.loads(encode_event(base))
    fields = sorted(_JOB_FIELDS if isinstance(base, JobEvent) else _FILE_FIELDS)
    field = draw(st.sampled_from(fields))
    bad = _OPTIONAL_NAME_BAD if (field == "job_id" and isinstance(base, FileEvent)) else BAD_VALUES[field]
    doc[field] = draw(bad)
    return json.dumps(doc).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30)


@st.composite
def deep_json(draw: Any) -> bytes:
    depth = draw(st.integers(500, 20_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    inner = opener * depth + b"0" + closer * depth
    wrap = draw(st.sampled_from([b"%s", b'{"schema":"job-event/1","x":%s}', b'{"schema":"file-event/1","parents":%s}']))
    return wrap.replace(b"%s", inner)


HUGE_LINES = [b'{"schema":"job-event/1","pad":"' + b"x" * E.MAX_LINE_BYTES + b'"}', b"[" * (E.MAX_LINE_BYTES + 7)]


def hostile_line(base: Any) -> Any:
    """Any line that is not a valid event: bytes, JSON, deep, huge, or a good event gone out of range."""
    return st.one_of(
        st.binary(min_size=1, max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        deep_json(),
        st.sampled_from(HUGE_LINES),
        out_of_range_event(base), out_of_range_event(base), out_of_range_event(base),
    )


def _line_safe(raw: bytes) -> bytes:
    """A hostile line as one non-blank line of a text file (no newline; no NUL, which would make the
    whole file binary and refused up front, as tests/ingest/test_lines.py checks)."""
    raw = raw.replace(b"\n", b" ").replace(b"\r", b" ").replace(b"\x00", b"?").strip()
    return raw or b"?"


@st.composite
def mixed_files(draw: Any) -> tuple[list[Any], list[bytes], list[bool]]:
    """(good events, lines, is_good per line): good lines with hostile lines anywhere between them."""
    good = draw(good_events())
    hostile = [_line_safe(draw(hostile_line(draw(st.sampled_from(good))))) for _ in range(draw(st.integers(1, 8)))]
    # Random JSON can be a valid event (hypothesis draws the contract's own words): keep only bad lines.
    hostile = [h for h in hostile if isinstance(decode_or_reason(h), str)] or [b"not json"]
    tagged = [(encode_event(ev), True) for ev in good] + [(h, False) for h in hostile]
    order = draw(st.permutations(range(len(tagged))))
    lines = [tagged[i][0] for i in order]
    return good, lines, [tagged[i][1] for i in order]


# ----------------------------------------------------------------------------------------- checks

def fits_the_columns(ev: Any) -> None:
    """An accepted event fits its ClickHouse columns and every integer the engine derives from it."""
    assert E.MIN_TS <= ev.ts <= NOW + E.FUTURE_SLACK_S and math.isfinite(ev.ts)
    names = [ev.event_id, ev.campaign, ev.stage, ev.entity, ev.submission or "", ev.job_id or ""]
    if isinstance(ev, JobEvent):
        names += [ev.site or "", ev.host or ""]
        assert len(ev.reason or "") <= E.MAX_REASON_CHARS
        for v in (ev.exit_code, ev.signal):
            assert v is None or E.INT32_MIN <= v <= E.INT32_MAX
        assert ev.cores is None or 1 <= ev.cores <= E.MAX_CORES
        wall, cpu = ev.wall_s or 0.0, (ev.cpu_user_s or 0.0) + (ev.cpu_sys_s or 0.0)
        assert 0 <= round(wall * (ev.cores or 1) * 1000) < 2**50 and 0 <= round(cpu * 1000) < 2**57
    else:
        names += [ev.location or "", *(ev.parents or [])]
        assert len(ev.parents or []) <= E.MAX_PARENTS
    assert all(len(n) <= E.MAX_NAME_CHARS for n in names)
    assert all(n for n in (ev.event_id, ev.campaign, ev.stage, ev.entity))


def decode_or_reason(raw: bytes) -> Any:
    """The event, or the InvalidEvent's reason; any other exception fails the test."""
    try:
        ev = decode_event(raw, clock=clock)
    except InvalidEvent as exc:
        assert str(exc) and len(str(exc)) <= E.MAX_DEAD_LETTER_REASON_CHARS
        return str(exc)
    fits_the_columns(ev)
    return ev


# ------------------------------------------------------------------------------------- decode_event

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_an_event_or_invalid(raw: bytes) -> None:
    decode_or_reason(raw)


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), deep_json(), st.sampled_from(HUGE_LINES)))
def test_arbitrary_json_is_an_event_or_invalid(raw: bytes) -> None:
    decode_or_reason(raw)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_valid_looking_events_with_an_out_of_range_field_are_invalid(data: Any) -> None:
    base = data.draw(st.sampled_from(data.draw(good_events())))
    raw = data.draw(out_of_range_event(base))
    assert isinstance(decode_or_reason(raw), str), raw[:300]


@settings(max_examples=100, deadline=None)
@given(good_events())
def test_good_events_round_trip(evs: list[Any]) -> None:
    for ev in evs:
        assert decode_or_reason(encode_event(ev)) == ev


# ---------------------------------------------------------------------------------------------- replay

@pytest.fixture(scope="module")
def store(tmp_path_factory: Any) -> Any:
    from stagewatch.store import open_store

    st_ = open_store(f"chdb:{tmp_path_factory.mktemp('boundary') / 'store'}")
    yield st_
    st_.close()


def _with_campaign(evs: list[Any], lines: list[bytes], campaign: str) -> tuple[list[Any], list[bytes]]:
    """The same scenario under a fresh campaign name (the chDB store is shared by the examples)."""
    evs = [msgspec.structs.replace(ev, campaign=campaign) for ev in evs]
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            out.append(line)
            continue
        if isinstance(doc, dict) and doc.get("campaign") == "c":
            doc["campaign"] = campaign
            line = json.dumps(doc).encode() if len(line) <= E.MAX_LINE_BYTES else line
        out.append(line)
    return evs, out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mixed_files())
def test_replay_counts_every_good_line_and_dead_letters_every_bad_one(store: Any, scenario: Any) -> None:
    from stagewatch.reading import read_status
    from stagewatch.replay import replay_paths

    good, lines, is_good = scenario
    campaign = f"b{next(_n)}"
    good, lines = _with_campaign(good, lines, campaign)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{campaign}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        report = replay_paths(store, [str(path)])
        bad_positions = sorted(str(i + 1) for i, ok in enumerate(is_good) if not ok)
        assert sorted(dl.position for dl in report.invalid) == bad_positions
        expected = Engine()
        expected.apply_all(good)
        got = read_status(store, campaign=campaign, as_of=AS_OF)["stages"]
        assert got == expected.numbers(as_of=AS_OF)
        rows = store.query(f"SELECT position, raw FROM dead_letter FINAL WHERE source = '{path}' ORDER BY position")
        assert sorted(r["position"] for r in rows) == bad_positions
        by_pos = {str(i + 1): line for i, line in enumerate(lines)}
        for r in rows:
            assert raw_from_text(r["raw"]) == by_pos[r["position"]][:E.MAX_LINE_BYTES + 1]


# --------------------------------------------------------------------------------------------- publish

class _Recorder:
    """The producer side of Publisher, in memory (the real SafeProducer's limits are tested in
    tests/streaming/test_publish.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.on_too_large: Any = None

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        self.sent.append((topic, value, key))

    def poll(self, timeout_s: float = 0.0) -> int:
        return 0

    def flush(self, timeout_s: float = 60.0) -> int:
        return len(self.sent)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mixed_files())
def test_publish_sends_every_good_line_and_dead_letters_every_bad_one(scenario: Any) -> None:
    good, lines, is_good = scenario
    prod = _Recorder()
    pub = Publisher(prod, Topics())  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mixed.jsonl"
        path.write_bytes(b"\n".join(lines))
        rep = publish_files(pub, [str(path)])
    assert rep.lines == len(lines) and rep.published == len(good)
    events = [decode_event(v, clock=clock) for t, v, _ in prod.sent if t != Topics().dead_letter]
    assert events == [ev for ev, ok in zip((decode_or_reason(line) for line in lines), is_good) if ok]
    assert all(k == ev.entity.encode() for (t, _, k), ev in zip(
        [s for s in prod.sent if s[0] != Topics().dead_letter], events))
    assert [d.position for d in rep.invalid] == [str(i + 1) for i, ok in enumerate(is_good) if not ok]
    dead = [v for t, v, _ in prod.sent if t == Topics().dead_letter]
    assert dead == [line[:len(v)] for line, v, in zip([ln for ln, ok in zip(lines, is_good) if not ok], dead)]


# ------------------------------------------------------------------------------------------ worker step

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mixed_files(), st.integers(0, 2**32), st.integers(1, 4))
def test_worker_steps_count_the_good_lines_whatever_lies_between(scenario: Any, seed: int, partitions: int) -> None:
    """What the worker does with each message (decode: an event or a dead letter; then the stream
    steps) gives the Engine's numbers of the good lines alone."""
    good, lines, is_good = scenario
    decoded = [decode_or_reason(line) for line in lines]
    events = [d for d in decoded if not isinstance(d, str)]
    assert [not isinstance(d, str) for d in decoded] == is_good  # exactly the good lines got through
    assert sorted(events, key=lambda e: e.event_id) == sorted(good, key=lambda e: e.event_id)
    deliveries = random.Random(seed).sample(events, len(events))
    topo = run_topology(events, deliveries, seed, partitions, 0.2)
    expected = Engine()
    expected.apply_all(good)
    assert topo.stage.numbers(AS_OF) == expected.numbers(as_of=AS_OF)
    rebuilt = StageAggregator()
    rebuilt.load(topo.stage_table.values())
    assert rebuilt.numbers(AS_OF) == expected.numbers(as_of=AS_OF)
