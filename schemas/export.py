"""Write the JSON Schema files of the contract from the typed models (`python -m schemas.export`).

The models in schemas/events.py are the source; the files in schemas/json/ are generated from them
and a test fails when they drift, so the two can never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import FILE_SCHEMA, JOB_SCHEMA, MAX_TS, MIN_TS, FileEvent, JobEvent

OUT = Path(__file__).parent / "json"

DESCRIPTIONS = {
    "schema": "Contract name and version.",
    "event_id": "The same for every copy of one real-world event; copies are counted once.",
    "ts": "Event time: RFC 3339 with a zone (e.g. 2017-06-20T11:25:00Z) or Unix seconds.",
    "campaign": "Campaign name, e.g. nova_prod_mc.",
    "stage": "Campaign stage name, e.g. fd_mcgen_cry_fhc_all.",
    "submission": "Submission (e.g. a POMS submission id), optional.",
    "job_id": "HTCondor job id, unique within its stage (e.g. schedd#123.0).",
    "file": "File name (as in the data catalogue).",
    "parents": "For output_declared: the input files this output was made from (required).",
    "location": "For output_located: where the file is, optional.",
    "exit_code": "For terminated: the job's exit code.",
    "signal": "For terminated: the signal that killed the job, if any.",
    "cpu_user_s": "CPU user seconds of this attempt.",
    "cpu_sys_s": "CPU system seconds of this attempt.",
    "wall_s": "Wall seconds of this attempt.",
    "cores": "Cores of the slot (default 1).",
    "reason": "For held, evicted and the like: HTCondor's reason text, optional.",
    "hold_code": "For held: HTCondor's HoldReasonCode (e.g. 12 transfer output failed), optional.",
    "hold_subcode": "For held: HTCondor's HoldReasonSubCode (an errno, exit code or signal), optional.",
}


def schema_for(model: type, name: str, title: str) -> dict[str, Any]:
    generated = msgspec.json.schema(model)
    body = generated["$defs"][model.__name__]
    props = body["properties"]
    # The static bounds only (1990 .. 2100): "now + 1 day" is checked at decode, with the ingesting clock.
    props["ts"] = {"anyOf": [{"type": "string", "format": "date-time"},
                             {"type": "number", "minimum": MIN_TS, "maximum": MAX_TS}]}
    for key, text in DESCRIPTIONS.items():
        if key in props:
            props[key]["description"] = text
    body["required"] = sorted(set(body.get("required", [])) | {"schema"})
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://stagewatch.invalid/schemas/{name}.schema.json",
        "title": title,
        **{k: v for k, v in body.items() if k != "title"},
        "additionalProperties": True,
    }
    if model is FileEvent:
        out["allOf"] = [{
            "if": {"properties": {"type": {"const": "output_declared"}}},
            "then": {"required": ["parents"], "properties": {"parents": {"type": "array", "minItems": 1}}},
        }]
    return out


def files() -> dict[str, str]:
    return {
        "job-event-1.schema.json": json.dumps(schema_for(JobEvent, "job-event-1", JOB_SCHEMA), indent=2) + "\n",
        "file-event-1.schema.json": json.dumps(schema_for(FileEvent, "file-event-1", FILE_SCHEMA), indent=2) + "\n",
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in files().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
