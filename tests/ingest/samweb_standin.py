"""A SAMWeb stand-in: an HTTP server on a free loopback port answering the documented SAMWeb API paths.

It answers exactly what ingest/sam uses, with the parameters and formats samweb_client sends and
parses (python/samweb_client/files.py, projects.py, definitions.py, http_client_requests.py):

* ``GET  {BASE}/definitions/name/{DEF}/files/list?format=plain``           -> text, a name a line
* ``GET  {BASE}/files/list?format=plain&dims=...`` or POST form ``dims``    -> text, a name a line
  (dims: ``project_name P and consumed_status a,b``, ``ischildof:( defname:D )`` optionally
  ``and ( field value [and field value ...] )`` over the files' metadata; anything else is 400
  DimensionError, as SAM answers a dimension it cannot parse)
* ``GET  {BASE}/projects/name/{P}/summary?format=json``                     -> JSON (fixture shape)
* ``POST {BASE}/files/metadata`` form ``file_name`` (repeated), ``locations`` -> JSON list (fixture shape)
* ``GET  {BASE}/files/locations?file_name=...`` (repeated)                  -> JSON {name: [locations]}
* ``GET  {BASE}/files/name/{F}/locations``, ``.../lineage/children``         -> JSON list

Errors as SAM sends them: JSON ``{"error", "message"}`` with 4xx (unknown definition/project 404),
a GET longer than ``max_get_url`` is 414, a list longer than ``query_limit`` is the query-limit
answer. ``faults`` injects answers in front of the real ones (status, body, delay) for a path prefix,
and ``requests`` records every request (method, path, params) so tests can count them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FIXTURES = Path(__file__).parent / "sam_fixtures"


def fixture(name: str) -> Any:
    data = json.loads((FIXTURES / name).read_text())
    if isinstance(data, dict):
        data.pop("_comment", None)
    return data


@dataclass
class Fault:
    prefix: str  # path after BASE, e.g. "/files/metadata"
    status: int = 500
    body: str = "Internal Server Error"
    content_type: str = "text/plain"
    delay_s: float = 0.0
    times: int = 1


@dataclass
class Scenario:
    """What SAM knows. files: name -> metadata (file_id, create_date, parents, locations, data_tier ...)."""

    experiment: str = "nova"
    definitions: dict[str, list[str]] = field(default_factory=dict)
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {start_time, status: {file: s}}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    query_limit: int | None = None
    query_limit_status: int = 400
    query_limit_json: bool = True
    max_get_url: int = 8000

    def children_of(self, parents: set[str]) -> list[str]:
        return sorted(n for n, md in self.files.items() if parents & set(md.get("parents") or ()))


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the tests kill -9 pollers) is no error of the stand-in's."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class SamStandin:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.headers: list[dict[str, str]] = []  # of each request, in the same order
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/sam/{self.scenario.experiment}/api"

    def __enter__(self) -> "SamStandin":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for _, p, _ in self.requests if p.startswith(prefix))

    # ---------------------------------------------------------------------------------------- server
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                standin._serve(self, "GET")

            def do_POST(self) -> None:
                standin._serve(self, "POST")

        return Handler

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        params = parse_qs(parts.query, keep_blank_values=True)
        if method == "POST":
            n = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(n).decode() if n else ""
            for k, v in parse_qs(body, keep_blank_values=True).items():
                params.setdefault(k, []).extend(v)
        prefix = f"/sam/{self.scenario.experiment}/api"
        path = parts.path
        if not path.startswith(prefix):
            return self._send(h, 404, "text/html", "<html><body>Not Found</body></html>")
        path = path[len(prefix):]
        with self.lock:
            self.requests.append((method, path, params))
            self.headers.append(dict(h.headers.items()))
            fault = next((f for f in self.faults if path.startswith(f.prefix) and f.times > 0), None)
            if fault:
                fault.times -= 1
        if fault:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            return self._send(h, fault.status, fault.content_type, fault.body)
        if method == "GET" and len(h.path) > self.scenario.max_get_url:
            return self._send(h, 414, "text/plain", "Request-URI Too Long")
        try:
            status, ctype, body = self._answer(method, path, params)
        except _Err as e:
            status, ctype, body = e.status, "application/json", json.dumps(e.body)
        self._send(h, status, ctype, body)

    def _send(self, h: BaseHTTPRequestHandler, status: int, ctype: str, body: str) -> None:
        data = body.encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype + ("; charset=utf-8" if "json" in ctype or "text" in ctype else ""))
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # --------------------------------------------------------------------------------------- answers
    def _answer(self, method: str, path: str, params: dict[str, list[str]]) -> tuple[int, str, str]:
        sc = self.scenario
        m = re.fullmatch(r"/definitions/name/([^/]+)/files/list", path)
        if m and method == "GET":
            d = unquote(m.group(1))
            if d not in sc.definitions:
                raise _Err(404, _err("definition_not_found", DEFINITION=d))
            return self._plain(sc.definitions[d], params)
        if path == "/files/list":
            dims = (params.get("dims") or [""])[-1]
            return self._plain(self._dims(dims), params)
        m = re.fullmatch(r"/projects/name/([^/]+)/summary", path)
        if m and method == "GET":
            return 200, "application/json", json.dumps(self._summary(unquote(m.group(1))))
        if path == "/files/metadata" and method == "POST":
            names = params.get("file_name", [])
            with_locs = bool(params.get("locations"))
            return 200, "application/json", json.dumps([self._metadata(n, with_locs) for n in names
                                                        if n in sc.files])
        if path == "/files/locations" and method == "GET":
            return 200, "application/json", json.dumps({n: self._locations(n) for n in params.get("file_name", [])
                                                        if n in sc.files})
        m = re.fullmatch(r"/files/name/([^/]+)/(locations|lineage/children)", path)
        if m and method == "GET":
            name = unquote(m.group(1))
            if name not in sc.files:
                raise _Err(404, {"error": "FileNotFound", "message": f"File {name} not found"})
            if m.group(2) == "locations":
                return 200, "application/json", json.dumps(self._locations(name))
            return 200, "application/json", json.dumps([{"file_name": c, "file_id": sc.files[c].get("file_id", 0)}
                                                        for c in sc.children_of({name})])
        return 404, "text/html", "<html><body>Not Found</body></html>"

    def _plain(self, names: list[str], params: dict[str, list[str]]) -> tuple[int, str, str]:
        sc = self.scenario
        if sc.query_limit is not None and len(names) > sc.query_limit:
            if sc.query_limit_json:
                return sc.query_limit_status, "application/json", json.dumps(_err("query_limit", LIMIT=str(sc.query_limit)))
            return sc.query_limit_status, "text/plain", fixture("errors.json")["query_limit_text"].replace(
                "LIMIT", str(sc.query_limit))
        if (params.get("format") or ["plain"])[-1] == "json":
            return 200, "application/json", json.dumps(names)
        return 200, "text/plain", "".join(n + "\n" for n in names)

    def _dims(self, dims: str) -> list[str]:
        sc = self.scenario
        m = re.fullmatch(r"project_name (\S+) and consumed_status (\S+)", dims)
        if m:
            project = sc.projects.get(m.group(1))
            if project is None:
                return []
            wanted = set(m.group(2).split(","))
            return sorted(f for f, s in project["status"].items() if s in wanted)
        m = re.fullmatch(r"ischildof:\( defname:(\S+) \)(?: and \( (.+) \))?", dims)
        if m:
            if m.group(1) not in sc.definitions:
                raise _Err(404, _err("definition_not_found", DEFINITION=m.group(1)))
            kids = sc.children_of(set(sc.definitions[m.group(1)]))
            if m.group(2):
                conds = []
                for cond in m.group(2).split(" and "):
                    kv = cond.split()
                    if len(kv) != 2:
                        raise _Err(400, _err("dimension_error", DIMS=dims))
                    conds.append(kv)
                kids = [k for k in kids if all(str(sc.files[k].get(f)) == v for f, v in conds)]
            return kids
        raise _Err(400, _err("dimension_error", DIMS=dims))

    def _summary(self, name: str) -> dict[str, Any]:
        project = self.scenario.projects.get(name)
        if project is None:
            raise _Err(404, _err("project_not_found", PROJECT=name))
        s = fixture("project_summary.json")
        s["project_name"] = name
        s["project_start_time"] = project.get("start_time", s["project_start_time"])
        s["definition_name"] = project.get("definition", "")
        counts = {k: 0 for k in s["file_counts"]}
        for status in project["status"].values():
            counts[status] = counts.get(status, 0) + 1
        s["file_counts"] = counts
        s["processes"][0]["counts"] = {k: counts.get(k, 0) for k in s["processes"][0]["counts"]}
        return s

    def _metadata(self, name: str, with_locations: bool) -> dict[str, Any]:
        sc = self.scenario
        f = sc.files[name]
        md = fixture("file_metadata.json")
        md.update({k: v for k, v in f.items() if k not in ("parents", "locations")})
        md["file_name"] = name
        md["parents"] = [{"file_name": p, "file_id": sc.files.get(p, {}).get("file_id", 0)}
                         for p in f.get("parents") or ()]
        if with_locations:
            md["locations"] = self._locations(name)
        else:
            md.pop("locations", None)
        return md

    def _locations(self, name: str) -> list[dict[str, Any]]:
        out = []
        for loc in self.scenario.files[name].get("locations") or ():
            out.append({"location": loc, "full_path": loc.split("(")[0], "location_type": "tape"
                        if loc.startswith("enstore:") else "disk", "label": ""})
        return out


class _Err(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


def _err(kind: str, **subst: str) -> dict[str, str]:
    e = dict(fixture("errors.json")[kind])
    for k, v in subst.items():
        e["message"] = e["message"].replace(k, v)
    return e


# ------------------------------------------------------------------------------------------ scenarios
BUCKETS = ("files_located", "files_declared_not_located", "files_consumed_no_output", "files_in_flight",
           "files_failed", "files_pending")


def bucket_scenario(n_inputs: int, *, seed: int = 1, definition: str = "nova_def", tier: str = "reco",
                    projects: tuple[str, str] = ("nova_proj_1", "nova_proj_2_recovery"),
                    storage: str = "enstore:/pnfs/nova/archive") -> tuple[Scenario, dict[str, int]]:
    """A SAM scenario in which each input file is given a bucket and SAM is made to say so.

    Every way SAM can put a file in a bucket occurs: a recovery project delivering again what the first
    project failed, statuses that mean the same bucket (completed ~ consumed, transferred ~ delivered,
    skipped/unconsumed/cancelled ~ failed), merged outputs with two parents, children outside
    --output-dims (logs: not outputs), unknown status (pending). Returns the scenario and the numbers
    the stage must show (computed from the intent, not by the code under test).
    """
    import random

    rng = random.Random(seed)
    p1, p2 = projects
    inputs = [f"fd_genie_r{10000 + i // 64:08d}_s{i % 64:02d}.raw.root" for i in range(n_inputs)]
    sc = Scenario(definitions={definition: list(inputs)},
                  projects={p1: {"start_time": "2017-06-06T12:00:00+00:00", "status": {}, "definition": definition},
                            p2: {"start_time": "2017-06-09T12:00:00+00:00", "status": {}, "definition": definition}})
    for i, f in enumerate(inputs):
        sc.files[f] = {"file_id": 1_000_000 + i, "data_tier": "raw"}
    expected = {b: 0 for b in BUCKETS}
    outputs_declared = outputs_located = 0
    s1, s2 = sc.projects[p1]["status"], sc.projects[p2]["status"]
    pending_merge: list[str] = []
    for i, f in enumerate(inputs):
        bucket = BUCKETS[rng.randrange(6)]
        expected[bucket] += 1
        variant = rng.randrange(3)
        child = f.replace(".raw.root", f".{tier}.root")
        if bucket in ("files_located", "files_declared_not_located"):
            s1[f] = "consumed" if variant else "completed"
            if variant == 2 and bucket == "files_located" and not pending_merge:
                pending_merge.append(f)  # the next located file is merged with this one
                sc.files[child] = {"file_id": 2_000_000 + i, "data_tier": tier, "parents": [f],
                                   "create_date": "2017-06-07T08:00:00+00:00",
                                   "locations": [f"{storage}/{i % 7}(vp{i:05d}@ts4500f1)"]}
                outputs_declared += 1
                outputs_located += 1
                continue
            if bucket == "files_located" and pending_merge:
                first = pending_merge.pop()
                merged = first.replace(".raw.root", f".{tier}.root")
                sc.files[merged]["parents"].append(f)  # one output of two inputs
                continue
            sc.files[child] = {"file_id": 2_000_000 + i, "data_tier": tier, "parents": [f],
                               "create_date": "2017-06-07T08:00:00+00:00",
                               "locations": [f"{storage}/{i % 7}(vp{i:05d}@ts4500f1)"]
                               if bucket == "files_located" else []}
            outputs_declared += 1
            outputs_located += bucket == "files_located"
            if variant == 1:  # its log file is a child too, outside --output-dims
                sc.files[f + ".log"] = {"file_id": 3_000_000 + i, "data_tier": "log", "parents": [f],
                                        "locations": [f"{storage}/logs"]}
        elif bucket == "files_consumed_no_output":
            s1[f] = "consumed"
            if variant == 1:
                sc.files[f + ".log"] = {"file_id": 3_000_000 + i, "data_tier": "log", "parents": [f],
                                        "locations": [f"{storage}/logs"]}
        elif bucket == "files_in_flight":
            if variant == 0:
                s1[f] = "delivered"
            elif variant == 1:
                s1[f] = "transferred"
            else:
                s1[f], s2[f] = "failed", "delivered"  # the recovery project has it now
        elif bucket == "files_failed":
            s1[f] = ("failed", "skipped", "unconsumed")[variant]
            if variant == 2:
                s2[f] = "cancelled"
        else:  # pending
            if variant == 1:
                s1[f] = "unknown"
    expected["input_files"] = n_inputs
    expected["files_without_located_output"] = n_inputs - expected["files_located"]
    expected["outputs_declared"] = outputs_declared
    expected["outputs_located"] = outputs_located
    return sc, expected


# ------------------------------------------------------------------------ a simulated campaign as SAM + logs
_TYPE_ORDER = {"delivered": 0, "consumed": 1, "skipped": 2, "failed": 3}


def _iso(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


@dataclass
class SimulatedCampaign:
    """A simulated campaign as a production team sees it: SAM's view of its files and its schedds' logs."""

    scenario: Scenario
    stages: dict[str, dict[str, Any]]  # stage -> {definition, projects}
    job_events: dict[str, list[Any]]  # schedd -> its jobs' events in ts order (duplicates removed)
    truth_events: list[Any]  # the events whose numbers the followed campaign must show


def simulated_campaign(events: list[Any], *, tier: str = "reco") -> SimulatedCampaign:
    """SAM's snapshot at the end of the simulated stream, and the job events per schedd.

    Each submission is a SAM project (started at its first file event); a file's status in a project is
    its latest consumption event of that submission. Outputs are the children of their parents, with
    create_date the declaration's ts and the locations located. SAM cannot locate a file that was never
    declared, so the truth leaves out locations of outputs that were never declared (none of the file
    buckets depends on them)."""
    from schemas.events import FileEvent, JobEvent

    seen: set[str] = set()
    uniq = []
    for e in events:
        if e.event_id not in seen:
            seen.add(e.event_id)
            uniq.append(e)
    sc = Scenario()
    stages: dict[str, dict[str, Any]] = {}
    latest: dict[tuple[str, str, str], tuple[float, int, str]] = {}
    starts: dict[tuple[str, str], float] = {}
    declared: set[str] = set()
    jobs: dict[str, list[Any]] = {}
    for e in uniq:
        if isinstance(e, JobEvent):
            jobs.setdefault(e.job_id.split("#")[0], []).append(e)
            continue
        assert isinstance(e, FileEvent)
        st = stages.setdefault(e.stage, {"definition": f"{e.campaign}_{e.stage}_input", "projects": []})
        if e.type == "input_declared":
            sc.definitions.setdefault(st["definition"], []).append(e.file)
            sc.files.setdefault(e.file, {"data_tier": "raw"})
        elif e.type in _TYPE_ORDER:
            project = f"{e.stage}_sub{e.submission}"
            starts[(e.stage, project)] = min(starts.get((e.stage, project), e.ts), e.ts)
            key = (e.stage, project, e.file)
            cand = (e.ts, _TYPE_ORDER[e.type], e.type)
            if key not in latest or cand > latest[key]:
                latest[key] = cand
        elif e.type == "output_declared":
            md = sc.files.setdefault(e.file, {"data_tier": tier, "locations": []})
            md["parents"] = sorted(set(md.get("parents") or ()) | set(e.parents or ()))
            md["create_date"] = _iso(e.ts)
            md["data_tier"] = tier
            declared.add(e.file)
        elif e.type == "output_located":
            md = sc.files.setdefault(e.file, {"data_tier": tier, "locations": []})
            md.setdefault("locations", []).append(e.location)
    for (stage, project), t in sorted(starts.items(), key=lambda kv: kv[1]):
        sc.projects[project] = {"start_time": _iso(t), "status": {}, "definition": stages[stage]["definition"]}
        stages[stage]["projects"].append(project)
    for (stage, project, f), (_, _, typ) in latest.items():
        sc.projects[project]["status"][f] = typ
    for md in sc.files.values():
        md.setdefault("locations", [])
    truth = [e for e in uniq if not (isinstance(e, FileEvent) and e.type == "output_located" and e.file not in declared)]
    for evs in jobs.values():
        evs.sort(key=lambda e: e.ts)
    return SimulatedCampaign(sc, stages, jobs, truth)


def write_schedd_logs(job_events: dict[str, list[Any]], directory: Path) -> dict[str, list[Path]]:
    """Each schedd's events as a schedd-wide EVENT_LOG with 028 after every event, rotated once
    (the first half in EventLog.old): schedd -> [EventLog.old, EventLog]."""
    from ingest.condor.writer import write_event_log

    out = {}
    for schedd, evs in job_events.items():
        d = directory / schedd
        d.mkdir(parents=True, exist_ok=True)
        half = len(evs) // 2
        with open(d / "EventLog.old", "w") as f:
            write_event_log(evs[:half], f)
        with open(d / "EventLog", "w") as f:
            write_event_log(evs[half:], f)
        out[schedd] = [d / "EventLog.old", d / "EventLog"]
    return out


def follow_config(path: Path, campaign: str, base: str, camp: SimulatedCampaign, logs: dict[str, list[Path]], *,
                  interval: float = 1.0, sam_interval: float = 1.0, output_dims: str | None = None) -> Path:
    """A `stagewatch follow` config for the simulated campaign."""
    lines = [f'campaign = "{campaign}"', f"interval = {interval}", f"sam_interval = {sam_interval}",
             "poll_s = 0.2", "", "[sam]", f'url = "{base}"', "timeout = 10", ""]
    for stage, st in camp.stages.items():
        lines += ["[[stages]]", f'name = "{stage}"', f'definition = "{st["definition"]}"',
                  "projects = [" + ", ".join(f'"{p}"' for p in st["projects"]) + "]"]
        if output_dims:
            lines.append(f'output_dims = "{output_dims}"')
        lines.append("")
    for schedd, files in logs.items():
        lines += ["[[condor]]", "logs = [" + ", ".join(f'"{p}"' for p in files) + "]", f'schedd = "{schedd}"',
                  'campaign_attr = "POMS4_CAMPAIGN_NAME"', 'stage_attr = "POMS4_CAMPAIGN_STAGE_NAME"',
                  'attrs = { submission = "POMS4_SUBMISSION_ID", site = "MATCH_GLIDEIN_Site" }', ""]
    path.write_text("\n".join(lines))
    return path
