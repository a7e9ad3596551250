"""The SAMWeb endpoints a poll uses, requested and parsed as samweb_client does (python/samweb_client/).

| call | request | answer |
|---|---|---|
| ``definition_files`` | ``GET /definitions/name/{DEF}/files/list?format=plain`` (``listFiles(defname=)``) | one file name a line |
| ``list_files`` | ``GET /files/list?format=plain&dims=...``, POST ``dims`` when long (``listFiles(dimensions)``) | one name a line |
| ``project_summary`` | ``GET /projects/name/{P}/summary?format=json&process_limit=0`` (POMS ``fetch_info``) | JSON object |
| ``metadata`` | ``POST /files/metadata`` form ``file_name``... ``locations=1`` (``getMultipleMetadata``) | JSON list of objects |
| ``locations`` | ``GET /files/locations?file_name=...`` (``locateFiles``) | JSON object name -> list of locations |

A body that is not that shape raises ``SamBadResponse`` naming the call: a poll never turns half an
answer into events.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator
from urllib.parse import urlencode

from ingest.sam.http import MAX_GET_URL, SamBadResponse, SamHttp, escape_component

#: File names per POST /files/metadata (a form body: no URL length limit; bounded response size).
METADATA_CHUNK = 500


def _plain_names(http: SamHttp, resp: Any, what: str) -> list[str]:
    """samweb_client's plain list: stripped non-empty lines; a line with spaces or markup is not a name."""
    ctype = resp.headers.get("Content-Type", "")
    if "html" in ctype:
        raise SamBadResponse(f"SAM answered {what} with HTML, not a plain file list; is --url the API root "
                             f"(…/sam/EXPERIMENT/api)? ({http.base_url})")
    names = []
    for n, line in enumerate(resp.text.splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if any(c.isspace() for c in name) or name[0] in "<{[":
            raise SamBadResponse(f"SAM's answer to {what} is not a plain file list (line {n}: {name[:80]!r}); "
                                 f"check --url ({http.base_url}).")
        names.append(name)
    return names


def _json(http: SamHttp, resp: Any, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise SamBadResponse(f"SAM's answer to {what} is not JSON ({resp.text[:80]!r}); check --url "
                             f"({http.base_url}).") from None


def definition_files(http: SamHttp, defname: str) -> list[str]:
    resp = http.get(f"/definitions/name/{escape_component(defname)}/files/list", params={"format": "plain"})
    return _plain_names(http, resp, f"the file list of definition {defname!r}")


def list_files(http: SamHttp, dims: str) -> list[str]:
    resp = http.dims("/files/list", dims, params={"format": "plain"})
    return _plain_names(http, resp, f"files/list for dimensions {dims[:200]!r}")


def project_summary(http: SamHttp, project: str) -> dict[str, Any]:
    resp = http.get(f"/projects/name/{escape_component(project)}/summary",
                    params={"format": "json", "process_limit": 0})
    body = _json(http, resp, f"the summary of project {project!r}")
    if not isinstance(body, dict):
        raise SamBadResponse(f"SAM's summary of project {project!r} is not a JSON object; check --url "
                             f"({http.base_url}).")
    return body


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def metadata(http: SamHttp, names: list[str]) -> list[dict[str, Any]]:
    """Metadata (parents, create_date, locations) of many files in one POST."""
    resp = http.post("/files/metadata", data={"file_name": names, "locations": 1})
    body = _json(http, resp, "files/metadata")
    if not isinstance(body, list) or not all(isinstance(md, dict) and isinstance(md.get("file_name"), str)
                                             for md in body):
        raise SamBadResponse("SAM's files/metadata answer is not a list of file metadata objects; check --url "
                             f"({http.base_url}).")
    return body


def location_chunks(names: Iterable[str], max_url: int = MAX_GET_URL) -> Iterator[list[str]]:
    """Split file names so that each GET /files/locations URL stays under SAM's GET length."""
    chunk: list[str] = []
    size = 0
    for name in names:
        piece = len(urlencode({"file_name": name})) + 1
        if chunk and size + piece > max_url:
            yield chunk
            chunk, size = [], 0
        chunk.append(name)
        size += piece
    if chunk:
        yield chunk


def locations(http: SamHttp, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    resp = http.get("/files/locations", params=[("file_name", n) for n in names])
    body = _json(http, resp, "files/locations")
    if not isinstance(body, dict) or not all(isinstance(v, list) for v in body.values()):
        raise SamBadResponse("SAM's files/locations answer is not an object of file name -> locations; check "
                             f"--url ({http.base_url}).")
    return body


def location_names(locs: Any) -> list[str]:
    """What samweb's ``locate-file`` prints for each location: ``location``, else ``full_path``."""
    out = []
    if not isinstance(locs, list):
        raise SamBadResponse("a file's locations are not a list in SAM's answer")
    for loc in locs:
        if isinstance(loc, dict):
            name = loc.get("location") or loc.get("full_path")
        elif isinstance(loc, str):
            name = loc
        else:
            name = None
        if not isinstance(name, str) or not name:
            raise SamBadResponse(f"a location in SAM's answer has neither `location` nor `full_path`: {loc!r:.100}")
        out.append(name)
    return out
