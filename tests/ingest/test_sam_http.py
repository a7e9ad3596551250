"""The SAMWeb client's error paths, request shapes and auth, against the stand-in server."""

from __future__ import annotations

import pytest

from ingest.sam import (SamBadResponse, SamError, SamHttp, SamHttpError, SamPoller, SamQueryLimit, SamSource,
                        SamUnavailable)
from ingest.sam.http import Auth
from tests.ingest.samweb_standin import Fault, SamStandin, bucket_scenario


def make(standin: SamStandin, ckpt=None, *, dims: str | None = "data_tier reco", sleeps: list | None = None,
         **kw) -> SamPoller:
    sleeps = [] if sleeps is None else sleeps
    http = SamHttp(standin.base, sleep=sleeps.append, **kw)
    src = SamSource(standin.base, "nova_def", "c", "s", ("nova_proj_1", "nova_proj_2_recovery"), dims)
    return SamPoller(src, http, ckpt)


@pytest.fixture
def standin():
    sc, expected = bucket_scenario(60, seed=2)
    with SamStandin(sc) as s:
        s.expected = expected
        yield s


def test_5xx_then_success_is_retried_with_backoff(standin, tmp_path):
    standin.faults.append(Fault("/definitions/", status=503, body="Service Unavailable", times=2))
    standin.faults.append(Fault("/files/metadata", status=502, body="Bad Gateway", times=1))
    sleeps: list[float] = []
    p = make(standin, tmp_path / "ck.json", sleeps=sleeps)
    res = p.poll()
    assert res.retries == 3
    assert sleeps == [1.0, 2.0, 1.0]
    assert res.events and res.requests == standin.count()


def test_5xx_every_time_fails_after_bounded_retries_and_emits_nothing(standin, tmp_path):
    standin.faults.append(Fault("/projects/", status=500, body="Internal Server Error", times=100))
    p = make(standin, tmp_path / "ck.json", retries=2)
    with pytest.raises(SamUnavailable, match="after 3 attempts"):
        p.poll()
    assert standin.count("/projects/name/nova_proj_1/summary") == 3
    assert not (tmp_path / "ck.json").exists()  # the failed poll left no state behind
    standin.faults.clear()
    assert p.poll().events  # the next poll works


def test_4xx_is_not_retried_and_says_what_sam_said(standin):
    p = SamPoller(SamSource(standin.base, "no_such_def", "c", "s"), SamHttp(standin.base, sleep=lambda s: None), None)
    with pytest.raises(SamHttpError, match="404 \\(DefinitionNotFound\\).*Definition no_such_def not found") as exc:
        p.poll()
    assert exc.value.code == 404
    assert standin.count("/definitions/") == 1


def test_timeout_is_retried(standin):
    standin.faults.append(Fault("/files/list", status=200, body="", delay_s=1.5, times=1))
    p = make(standin, read_timeout_s=0.3)
    res = p.poll()
    assert res.retries == 1 and res.events


def test_timeout_every_time_is_unavailable(standin):
    standin.faults.append(Fault("/definitions/", status=200, body="", delay_s=1.0, times=10))
    p = make(standin, read_timeout_s=0.2, retries=1)
    with pytest.raises(SamUnavailable, match="no answer within 0.2 s"):
        p.poll()


@pytest.mark.parametrize("status,json_body", [(400, True), (500, False), (200, False)])
def test_query_limit_is_an_error_the_user_sees_never_retried(standin, status, json_body):
    standin.scenario.query_limit = 20
    standin.scenario.query_limit_status = status
    standin.scenario.query_limit_json = json_body
    p = make(standin)
    with pytest.raises(SamQueryLimit, match="query limit.*narrow the definition or --output-dims"):
        p.poll()
    assert standin.count("/definitions/") == 1  # not retried


@pytest.mark.parametrize("prefix,body,ctype,error", [
    ("/files/metadata", "this is not json", "application/json", "not JSON"),
    ("/files/metadata", '{"file_name": "x"}', "application/json", "not a list of file metadata"),
    ("/definitions/", "<html><body>Welcome</body></html>", "text/html", "HTML"),
    ("/definitions/", "some words with spaces\n", "text/plain", "not a plain file list"),
    ("/projects/", "[1, 2]", "application/json", "not a JSON object"),
    ("/files/metadata", '[{"file_name": "x", "parents": "a.raw"}]', "application/json", "parents of 'x'"),
    ("/files/metadata", '[{"file_name": "x", "parents": ["fd_genie_r00010000_s00.raw.root"], "locations": "tape"}]',
     "application/json",
     "locations are not a list"),
    ("/files/list", "{\"a\": 1}\n", "text/plain", "not a plain file list"),
])
def test_malformed_bodies_are_errors_and_emit_nothing(standin, tmp_path, prefix, body, ctype, error):
    standin.faults.append(Fault(prefix, status=200, body=body, content_type=ctype, times=1))
    p = make(standin, tmp_path / "ck.json")
    with pytest.raises(SamBadResponse, match=error):
        p.poll()
    assert not (tmp_path / "ck.json").exists()


def test_malformed_locations_answer(standin, tmp_path):
    p = make(standin, tmp_path / "ck.json")
    p.poll()
    p.commit()
    standin.faults.append(Fault("/files/locations", status=200, body='{"x": "not a list"}',
                                content_type="application/json"))
    with pytest.raises(SamBadResponse, match="files/locations"):
        p.poll()


def test_long_dimensions_go_in_a_post_body(standin):
    long_dims = " and ".join(["data_tier reco"] * 80)  # > 1,024 characters
    assert len(long_dims) > 1024
    res = make(standin, dims=long_dims).poll()
    posts = [(m, params) for m, path, params in standin.requests if path == "/files/list" and m == "POST"]
    assert len(posts) == 1 and posts[0][1]["dims"][0].endswith(f"( {long_dims} )")
    short = make(standin).poll()
    assert {e.event_id for e in res.events} == {e.event_id for e in short.events}


def test_bulk_locations_stay_under_the_get_length(standin, tmp_path):
    standin.scenario.max_get_url = 4200
    for f in standin.scenario.files.values():
        if f.get("data_tier") == "reco":
            f["locations"] = []
    p = make(standin, tmp_path / "ck.json")
    p.poll()
    p.commit()
    unlocated = len(p.ckpt.declared)
    for name, f in standin.scenario.files.items():
        if f.get("data_tier") == "reco":
            f["locations"] = [f"dcache:/pnfs/{name}"]
    res = p.poll()
    p.commit()
    gets = [params for m, path, params in standin.requests if path == "/files/locations"]
    assert sum(len(g["file_name"]) for g in gets[-len(gets):]) == unlocated
    assert res.by_type == {"output_located": unlocated}


def test_token_and_certificate_are_sent_as_samweb_client_sends_them(standin, tmp_path, monkeypatch):
    tok = tmp_path / "bt"
    tok.write_text("eyJhbGciOi.token.sig\n")
    auth = Auth.discover(standin.base, env={"BEARER_TOKEN_FILE": str(tok), "X509_USER_PROXY": "/tmp/x509up_u1"})
    assert auth.token == "eyJhbGciOi.token.sig" and auth.cert == "/tmp/x509up_u1"
    http = SamHttp(standin.base, auth=Auth(token=auth.token))
    http.get("/definitions/name/nova_def/files/list", params={"format": "plain"})
    assert standin.headers[-1]["Authorization"] == "Bearer eyJhbGciOi.token.sig"
    assert standin.headers[-1]["Accept"] == "application/json"
    assert Auth.discover(standin.base, env={}).token is None  # reads need none
    assert Auth.discover(standin.base, cert="/p/cert.pem", key="/p/key.pem", env={}).cert == ("/p/cert.pem",
                                                                                                "/p/key.pem")
    assert Auth.discover(standin.base, env={"X509_USER_CERT": "c", "X509_USER_KEY": "k"}).cert == ("c", "k")
    with pytest.raises(SamError, match="Cannot read the bearer token file"):
        Auth.discover(standin.base, token_file=str(tmp_path / "missing"), env={})


def test_connection_refused_is_unavailable():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    http = SamHttp(f"http://127.0.0.1:{port}/sam/nova/api", retries=1, sleep=lambda s: None)
    with pytest.raises(SamUnavailable, match="cannot connect"):
        http.get("/definitions/name/x/files/list")
    assert http.requests_made == 2


def test_not_an_http_url_is_a_sentence():
    with pytest.raises(SamError, match="not an http\\(s\\) URL"):
        SamHttp("samweb.fnal.gov/sam/nova/api")


def test_query_limit_words_inside_json_data_are_data(standin, tmp_path):
    for name, md in standin.scenario.files.items():
        if md.get("data_tier") == "reco":
            md["description"] = "made before we hit the query limit of the old server"
    res = make(standin, tmp_path / "ck.json").poll()
    assert res.by_type.get("output_declared", 0) > 0
