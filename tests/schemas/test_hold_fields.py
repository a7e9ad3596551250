"""job-event/1's hold_code and hold_subcode (HTCondor's HoldReasonCode/SubCode): bounds agree between
the model and the JSON Schema file, and the values round-trip through the canonical encoding."""

import json

import pytest

from schemas import events as E
from schemas.events import InvalidEvent, decode_event, encode_event
from tests.schemas.test_events import GOOD_JOB, _at, _decodes, _json_schema_ok

HELD = {**GOOD_JOB, "type": "held", "reason": "Transfer output files failure", "hold_code": 12, "hold_subcode": 2}


@pytest.mark.parametrize("field,hi,too_hi,lo,too_lo", [
    ("hold_code", E.INT32_MAX, E.INT32_MAX + 1, 0, -1),
    ("hold_subcode", E.INT32_MAX, E.INT32_MAX + 1, E.INT32_MIN, E.INT32_MIN - 1),
])
def test_hold_bounds_agree_in_model_and_json_schema(field, hi, too_hi, lo, too_lo):
    for value, ok in ((hi, True), (lo, True), (too_hi, False), (too_lo, False), ("12", False), (1.5, False)):
        d = _at(HELD, field, value)
        assert _decodes(d) == ok, (field, value)
        assert _json_schema_ok(d) == ok, (field, value)


def test_hold_fields_round_trip_and_are_optional():
    ev = decode_event(json.dumps(HELD))
    assert (ev.hold_code, ev.hold_subcode) == (12, 2)
    again = decode_event(encode_event(ev))
    assert (again.hold_code, again.hold_subcode) == (12, 2)
    bare = decode_event(json.dumps({k: v for k, v in HELD.items() if not k.startswith("hold_")}))
    assert bare.hold_code is None and bare.hold_subcode is None
    assert b"hold_code" not in encode_event(bare)


def test_a_refused_hold_code_names_the_field():
    with pytest.raises(InvalidEvent, match="hold_code"):
        decode_event(json.dumps(_at(HELD, "hold_code", -3)))
