"""`stagewatch dashboards publish` against a local HTTP server that records every request.

NO REAL GRAFANA RUNS IN THIS SUITE. The server below (python http.server on 127.0.0.1, in a thread) is a
recorder with just enough state to answer like Grafana's HTTP API does for the calls we make (404 for a
missing folder or rule, 200 otherwise). What these tests prove is the exact sequence of Grafana API calls
and their payloads that grafana-client sends for us, and that a second publish updates by uid instead of
creating duplicates. Whether a real Grafana accepts those payloads is not tested here.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from dashboards import alerts, build
from dashboards.publish import PublishError, connect, publish
from stagewatch.cli import app

TOKEN = "glsa_test_token_123"


class FakeGrafana:
    """Records (method, path, json body, authorization) and keeps folders, dashboards and rules by uid."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.auth: list[str | None] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.rules: dict[str, dict[str, Any]] = {}
        self.groups: dict[tuple[str, str], dict[str, Any]] = {}

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "folders"]:
            if method == "GET" and len(parts) == 3:
                f = self.folders.get(parts[2])
                return (200, f) if f else (404, {"message": "folder not found"})
            if method == "POST" and len(parts) == 2:
                self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": len(self.folders) + 1}
                return 200, self.folders[body["uid"]]
            if method == "PUT" and len(parts) == 3:
                self.folders[parts[2]]["title"] = body["title"]
                return 200, self.folders[parts[2]]
        if path == "/api/dashboards/db" and method == "POST":
            uid = body["dashboard"]["uid"]
            version = self.dashboards.get(uid, {}).get("version", 0) + 1
            self.dashboards[uid] = {"body": body, "version": version}
            return 200, {"status": "success", "uid": uid, "version": version, "url": f"/d/{uid}"}
        if parts[:4] == ["api", "v1", "provisioning", "alert-rules"]:
            if method == "GET" and len(parts) == 5:
                r = self.rules.get(parts[4])
                return (200, r) if r else (404, {"message": "rule not found"})
            if method == "POST" and len(parts) == 4:
                self.rules[body["uid"]] = body
                return 201, body
            if method == "PUT" and len(parts) == 5:
                self.rules[parts[4]] = body
                return 200, body
        if parts[:4] == ["api", "v1", "provisioning", "folder"] and parts[5] == "rule-groups" and method == "PUT":
            self.groups[(parts[4], parts[6])] = body
            return 200, body
        return 404, {"message": f"not faked: {method} {path}"}


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            body = json.loads(raw) if raw else None
            fake.calls.append((self.command, self.path, body))
            fake.auth.append(self.headers.get("Authorization"))
            status, payload = fake.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _do

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _expected_dashboard_bodies() -> list[dict[str, Any]]:
    out = []
    for model in build.all_dashboards().values():
        d = build.to_json(model)
        d.pop("id", None)
        out.append({"dashboard": d, "folderUid": "stagewatch", "overwrite": True,
                    "message": "stagewatch dashboards publish"})
    return out


def test_first_publish_creates_then_second_updates_by_uid(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    rules = alerts.to_json(alerts.rules())
    rep = publish(connect(url, TOKEN))
    assert rep.folder == "created" and rep.rules_created == list(alerts.RULE_UIDS) and not rep.rules_updated
    dash_bodies = _expected_dashboard_bodies()
    group = {"title": "stagewatch", "folderUid": "stagewatch", "interval": 60, "rules": rules}
    assert fake.calls == [
        ("GET", "/api/folders/stagewatch", None),
        ("POST", "/api/folders", {"title": "stagewatch", "uid": "stagewatch"}),
        *[("POST", "/api/dashboards/db", b) for b in dash_bodies],
        *[c for r in rules for c in (("GET", f"/api/v1/provisioning/alert-rules/{r['uid']}", None),
                                     ("POST", "/api/v1/provisioning/alert-rules", r))],
        ("PUT", "/api/v1/provisioning/folder/stagewatch/rule-groups/stagewatch", group),
    ]
    assert set(fake.auth) == {f"Bearer {TOKEN}"}

    fake.calls.clear()
    rep = publish(connect(url, TOKEN))
    assert rep.folder == "unchanged" and rep.rules_updated == list(alerts.RULE_UIDS) and not rep.rules_created
    assert fake.calls == [
        ("GET", "/api/folders/stagewatch", None),
        *[("POST", "/api/dashboards/db", b) for b in dash_bodies],
        *[c for r in rules for c in (("GET", f"/api/v1/provisioning/alert-rules/{r['uid']}", None),
                                     ("PUT", f"/api/v1/provisioning/alert-rules/{r['uid']}", r))],
        ("PUT", "/api/v1/provisioning/folder/stagewatch/rule-groups/stagewatch", group),
    ]
    # still one folder, four dashboards (each saved twice, by uid), five rules
    assert list(fake.folders) == ["stagewatch"]
    assert sorted(fake.dashboards) == sorted(build.DASHBOARD_UIDS)
    assert {d["version"] for d in fake.dashboards.values()} == {2}
    assert sorted(fake.rules) == sorted(alerts.RULE_UIDS)


def test_renamed_folder_is_updated_not_duplicated(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    fake.folders["stagewatch"] = {"uid": "stagewatch", "title": "old name", "id": 7}
    publish(connect(url, TOKEN))
    assert fake.calls[:2] == [("GET", "/api/folders/stagewatch", None),
                              ("PUT", "/api/folders/stagewatch", {"title": "stagewatch", "overwrite": True})]


def test_cli_publish_uses_the_token_from_the_environment(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    res = CliRunner().invoke(app, ["dashboards", "publish", "--url", url, "--eviction-fraction", "0.7"],
                             env={"GRAFANA_TOKEN": TOKEN})
    assert res.exit_code == 0, res.output
    assert set(fake.auth) == {f"Bearer {TOKEN}"}
    storm = fake.rules[alerts.UID_EVICTION_STORM]
    assert storm["data"][2]["model"]["conditions"][0]["evaluator"]["params"] == [0.7]


def test_cli_publish_without_credentials_fails_with_a_sentence(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    res = CliRunner().invoke(app, ["dashboards", "publish", "--url", url], env={"GRAFANA_TOKEN": ""})
    assert res.exit_code == 2 and "GRAFANA_TOKEN" in res.output
    assert fake.calls == []
    with pytest.raises(PublishError):
        connect(url, "")
