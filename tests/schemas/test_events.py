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
