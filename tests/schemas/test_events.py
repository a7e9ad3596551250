"""The contract: typed models, error messages that name the field, and the JSON Schema files."""

import json
from pathlib import Path

import jsonschema
import pytest

from schemas import export
from schemas.events import InvalidEvent, JobEvent, decode_event

JSON_DIR = Path(export.__file__).parent / "json"

GOOD_JOB = {"schema": "job-event/1", "event_id": "e1", "ts": "2017-06-20T11:25:00-05:00", "campaign": "c",
            "stage": "s", "job_id": "schedd#1.0", "type": "terminated", "exit_code": 0, "cpu_user_s": 1.5,
            "wall_s": 10, "cores": 2, "some_future_field": {"x": 1}}
GOOD_FILE = {"schema": "file-event/1", "event_id": "e2", "ts": 1497957900, "campaign": "c", "stage": "s",
             "file": "a.root", "type": "output_declared", "parents": ["in.root"]}


def test_good_events_decode_and_ts_is_unix_seconds():
    ev = decode_event(json.dumps(GOOD_JOB))
    assert isinstance(ev, JobEvent)
    assert ev.ts == 1497975900.0  # 11:25 at UTC-5
    assert decode_event(json.dumps(GOOD_FILE)).parents == ["in.root"]


@pytest.mark.parametrize("doc,field", [
    ({**GOOD_JOB, "type": "exploded"}, "type"),
    ({k: v for k, v in GOOD_JOB.items() if k != "job_id"}, "job_id"),
    ({**GOOD_JOB, "exit_code": "zero"}, "exit_code"),
    ({**GOOD_JOB, "ts": "2017-06-20T11:25:00"}, "ts"),
    ({**GOOD_JOB, "ts": "yesterday"}, "ts"),
    ({**GOOD_JOB, "cores": 0}, "cores"),
    ({**GOOD_JOB, "campaign": ""}, "campaign"),
    ({**GOOD_FILE, "parents": None}, "parents"),
    ({**GOOD_FILE, "parents": []}, "parents"),
    ({**GOOD_FILE, "schema": "file-event/2"}, "schema"),
    ({k: v for k, v in GOOD_FILE.items() if k != "schema"}, "schema"),
])
def test_invalid_events_name_the_field(doc, field):
    with pytest.raises(InvalidEvent) as info:
        decode_event(json.dumps(doc))
    assert field in str(info.value)


def test_not_json_and_not_an_object():
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        decode_event(b"{oops")
    with pytest.raises(InvalidEvent, match="object"):
        decode_event(b"[1, 2]")


def test_schema_files_are_generated_from_the_models():
    for name, text in export.files().items():
        assert (JSON_DIR / name).read_text() == text, f"run `python -m schemas.export` ({name} is stale)"


@pytest.mark.parametrize("doc,ok", [
    (GOOD_JOB, True), (GOOD_FILE, True),
    ({**GOOD_JOB, "type": "exploded"}, False),
    ({**GOOD_FILE, "parents": []}, False),
    ({k: v for k, v in GOOD_FILE.items() if k != "parents"}, False),
    ({**GOOD_FILE, "type": "consumed", "parents": None}, True),
])
def test_json_schema_files_agree_with_the_models(doc, ok):
    schema_name = "job-event-1" if doc.get("schema") == "job-event/1" else "file-event-1"
    schema = json.loads((JSON_DIR / f"{schema_name}.schema.json").read_text())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert (not errors) == ok
    try:
        decode_event(json.dumps(doc))
        assert ok
    except InvalidEvent:
        assert not ok


# ------------------------------------------------------------------------------------ bounds (issue 7)

from schemas import events as E  # noqa: E402


def _at(doc: dict, field: str, value) -> dict:
    return {**doc, field: value}


# (document, field, largest valid value, smallest too-large value, smallest valid, largest too-small)
NUMERIC_BOUNDS = [
    (GOOD_JOB, "exit_code", E.INT32_MAX, E.INT32_MAX + 1, E.INT32_MIN, E.INT32_MIN - 1),
    (GOOD_JOB, "signal", E.INT32_MAX, E.INT32_MAX + 1, E.INT32_MIN, E.INT32_MIN - 1),
    (GOOD_JOB, "cores", E.MAX_CORES, E.MAX_CORES + 1, 1, 0),
    (GOOD_JOB, "wall_s", E.MAX_WALL_S, E.MAX_WALL_S * (1 + 1e-9), 0, -1e-9),
    (GOOD_JOB, "cpu_user_s", E.MAX_CPU_S, E.MAX_CPU_S * (1 + 1e-9), 0, -1e-9),
    (GOOD_JOB, "cpu_sys_s", E.MAX_CPU_S, E.MAX_CPU_S * (1 + 1e-9), 0, -1e-9),
]
NAME_FIELDS = [(GOOD_JOB, f) for f in ("event_id", "campaign", "stage", "job_id", "submission", "site", "host")] + [
    (GOOD_FILE, f) for f in ("event_id", "campaign", "stage", "file", "submission", "job_id", "location")]


def _json_schema_ok(doc: dict) -> bool:
    schema_name = "job-event-1" if doc.get("schema") == "job-event/1" else "file-event-1"
    schema = json.loads((JSON_DIR / f"{schema_name}.schema.json").read_text())
    return not list(jsonschema.Draft202012Validator(schema).iter_errors(doc))


def _decodes(doc: dict, now: float = E.MAX_TS) -> bool:
    try:
        decode_event(json.dumps(doc), clock=lambda: now)
        return True
    except InvalidEvent:
        return False


@pytest.mark.parametrize("doc,field,hi,too_hi,lo,too_lo", NUMERIC_BOUNDS, ids=[b[1] for b in NUMERIC_BOUNDS])
def test_numeric_bounds_are_the_same_in_the_model_and_the_json_schema(doc, field, hi, too_hi, lo, too_lo):
    """Each bound, and one step past it, is accepted/refused alike by decode_event and the schema file."""
    for value, ok in ((hi, True), (lo, True), (too_hi, False), (too_lo, False)):
        d = _at(doc, field, value)
        assert _decodes(d) == ok, (field, value)
        assert _json_schema_ok(d) == ok, (field, value)


def test_a_refused_number_names_the_field_and_the_bound():
    with pytest.raises(InvalidEvent) as info:
        decode_event(json.dumps(_at(GOOD_JOB, "cores", 100000)))
    assert "cores" in str(info.value) and str(E.MAX_CORES) in str(info.value)
    with pytest.raises(InvalidEvent, match=r"exit_code"):
        decode_event(json.dumps(_at(GOOD_JOB, "exit_code", 2**40)))
    for huge in (1e20, 1e306):
        with pytest.raises(InvalidEvent, match=r"wall_s"):
            decode_event(json.dumps(_at(GOOD_JOB, "wall_s", huge)))


def test_bounds_keep_every_derived_integer_in_its_column():
    """One attempt at every maximum: its ms sums fit UInt64 with room for 100,000 more such attempts."""
    core_wall_ms = round(E.MAX_WALL_S * E.MAX_CORES * 1000)
    cpu_ms = round((E.MAX_CPU_S + E.MAX_CPU_S) * 1000)
    assert core_wall_ms * 100_000 < 2**64 and cpu_ms * 100 < 2**64
    assert E.MAX_CORES < 2**16 and E.MAX_TS < 2**32  # cores UInt16, toUInt32(ts) in event_time


@pytest.mark.parametrize("doc,field", NAME_FIELDS, ids=[f"{d['schema']}-{f}" for d, f in NAME_FIELDS])
def test_name_lengths_are_bounded_in_the_model_and_the_json_schema(doc, field):
    ok, too_long = _at(doc, field, "é" * E.MAX_NAME_CHARS), _at(doc, field, "x" * (E.MAX_NAME_CHARS + 1))
    assert _decodes(ok) and _json_schema_ok(ok)
    assert not _decodes(too_long) and not _json_schema_ok(too_long)
    with pytest.raises(InvalidEvent, match=rf"{field}.*|.*{field}"):
        decode_event(json.dumps(too_long))


def test_reason_and_parents_are_bounded():
    for doc, ok in ((_at(GOOD_JOB, "reason", "r" * E.MAX_REASON_CHARS), True),
                    (_at(GOOD_JOB, "reason", "r" * (E.MAX_REASON_CHARS + 1)), False),
                    (_at(GOOD_FILE, "parents", [f"p{i}" for i in range(E.MAX_PARENTS)]), True),
                    (_at(GOOD_FILE, "parents", [f"p{i}" for i in range(E.MAX_PARENTS + 1)]), False),
                    (_at(GOOD_FILE, "parents", ["x" * (E.MAX_NAME_CHARS + 1)]), False)):
        assert _decodes(doc) == ok and _json_schema_ok(doc) == ok


def test_ts_range_1990_to_now_plus_a_day_with_an_injectable_clock():
    now = 1_700_000_000.0
    assert decode_event(json.dumps(_at(GOOD_JOB, "ts", E.MIN_TS)), clock=lambda: now).ts == E.MIN_TS
    assert decode_event(json.dumps(_at(GOOD_JOB, "ts", now + 86400)), clock=lambda: now).ts == now + 86400
    for ts in (E.MIN_TS - 1, now + 86401, "1989-12-31T23:59:59Z", "2023-11-16T22:13:21Z"):
        with pytest.raises(InvalidEvent, match=r"`ts`.*1990-01-01T00:00:00Z"):
            decode_event(json.dumps(_at(GOOD_JOB, "ts", ts)), clock=lambda: now)
    # The same ts is fine once the clock has moved on: the upper bound is the clock's, not a constant.
    assert decode_event(json.dumps(_at(GOOD_JOB, "ts", now + 86401)), clock=lambda: now + 10).ts == now + 86401


@pytest.mark.parametrize("ts", [1.7e12, 1497957900123, 1e18])
def test_ts_in_milliseconds_is_refused_with_a_hint(ts):
    with pytest.raises(InvalidEvent) as info:
        decode_event(json.dumps(_at(GOOD_JOB, "ts", ts)))
    assert "milliseconds?" in str(info.value)


def test_ts_in_milliseconds_hint_gives_the_seconds():
    with pytest.raises(InvalidEvent, match=r"1497957900.123 s would be 2017-06-20T11:25:00Z"):
        decode_event(json.dumps(_at(GOOD_JOB, "ts", 1497957900123)))


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "10000-01-01T00:00:00Z",
                                "2017-02-30T00:00:00Z", 1e400, -1e400])
def test_ts_beyond_any_calendar_is_a_dead_letter_not_a_crash(ts):
    raw = json.dumps(GOOD_JOB).replace('"2017-06-20T11:25:00-05:00"', json.dumps(ts) if isinstance(ts, str)
                                       else repr(ts).replace("inf", "1e400"))
    with pytest.raises(InvalidEvent, match="ts"):
        decode_event(raw)


@pytest.mark.parametrize("depth", [100, 999, 1000, 100_000])
def test_deep_nesting_is_invalid_never_recursion_error(depth):
    for inner in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        for raw in (inner, b'{"schema":"job-event/1","x":' + inner + b"}",
                    b'{"schema":"file-event/1","event_id":"e","ts":1497957900,"campaign":"c","stage":"s",'
                    b'"file":"f","type":"consumed","extra":' + inner + b"}"):
            try:
                decode_event(raw)
            except InvalidEvent as exc:
                assert depth < 1000 or "nested" in str(exc) or "Expected `object`" in str(exc)


def test_deep_nesting_reason_says_nested():
    with pytest.raises(InvalidEvent, match="nested too deeply"):
        decode_event(b'{"schema":"job-event/1","x":' + b"[" * 5000 + b"]" * 5000 + b"}")


def test_a_line_over_the_limit_is_refused_before_parsing_with_its_limit():
    line = json.dumps({**GOOD_JOB, "pad": "x" * E.MAX_LINE_BYTES}).encode()
    with pytest.raises(InvalidEvent, match=f"{E.MAX_LINE_BYTES:,} bytes"):
        decode_event(line)
    with pytest.raises(InvalidEvent, match="bytes"):
        decode_event(line.decode())  # the same for str input, counted in UTF-8 bytes
    with pytest.raises(InvalidEvent, match="bytes"):
        decode_event(json.dumps({**GOOD_JOB, "pad": "é" * (E.MAX_LINE_BYTES // 2 + 1)}, ensure_ascii=False))


def test_reasons_quoting_values_are_bounded():
    with pytest.raises(InvalidEvent) as info:
        decode_event(json.dumps({**GOOD_JOB, "schema": "y" * 500_000}))
    assert "schema" in str(info.value) and len(str(info.value)) <= E.MAX_DEAD_LETTER_REASON_CHARS


def test_any_exception_inside_decoding_becomes_invalid_event(monkeypatch):
    """Whatever a hostile input makes msgspec or __post_init__ raise, callers only ever see InvalidEvent."""
    class Boom:
        def __init__(self, exc):
            self.exc = exc

        def decode(self, raw):
            raise self.exc

    for exc in (OverflowError("x"), MemoryError(), TypeError("y"), RecursionError(), UnicodeDecodeError(
            "utf-8", b"\xff", 0, 1, "bad")):
        monkeypatch.setattr(E, "_decoder", Boom(exc))
        with pytest.raises(InvalidEvent):
            decode_event(b"{}")


@pytest.mark.parametrize("raw", [b"not json", b"", b"\xff\xfe\x00garbage", "é ünïcödé".encode(), b"hex:41",
                                 b"hex:", b"\x00", "hex:é".encode(), bytes(range(256))])
def test_dead_letter_raw_text_keeps_the_exact_bytes(raw):
    text = E.raw_to_text(raw)
    assert E.raw_from_text(text) == raw
    if not raw.startswith(b"hex:"):
        try:
            assert text == raw.decode("utf-8")  # readable as it was whenever it is text
        except UnicodeDecodeError:
            assert text == "hex:" + raw.hex()


def test_dead_letter_row_keeps_the_exact_bytes():
    from processors.rows import dead_letter_row

    raw = b'{"a": "\xff\xfe"}'
    row = dead_letter_row(E.DeadLetter("f.jsonl", "3", "why", raw), 1.0)
    assert E.raw_from_text(row["raw"]) == raw and "\ufffd" not in row["raw"]
    assert dead_letter_row(E.DeadLetter("f", "1", "r", b"not json"), 1.0)["raw"] == "not json"


def test_ts_static_bounds_are_in_the_json_schema_too():
    assert not _json_schema_ok(_at(GOOD_JOB, "ts", E.MIN_TS - 1))
    assert not _json_schema_ok(_at(GOOD_JOB, "ts", E.MAX_TS + 1))
