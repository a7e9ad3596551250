"""`stagewatch holds` (and the held-jobs SQL): top hold reasons per stage with counts, codes and held since,
`--limit`, `--at`, escaping; on chDB and ClickHouse 18.16."""

from __future__ import annotations

import itertools
import uuid
import json

import pytest

from stagewatch import reading
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from tests.builders import job
from tests.stagewatch.test_cli_escaping import flat, run_cli

_n = itertools.count()
_RUN = f"ch{uuid.uuid4().hex[:6]}_"  # campaigns unique per module and run: the 18.16 server is shared by the session
T = 1_500_000_000.0
HOSTILE = "[red]disk[/] full 'x'"


def events(campaign: str) -> list:
    kw = dict(campaign=campaign)
    out = []
    for i in range(3):  # three jobs held for memory (code 34 / 0), the first held twice
        out += [job(f"m{i}", "started", T, site="FNAL", **kw),
                job(f"m{i}", "held", T + 100 + i, reason="memory", hold_code=34, hold_subcode=0, **kw)]
    out += [job("m0", "held", T + 500, reason="memory", hold_code=34, hold_subcode=0, **kw)]
    out += [job("d1", "started", T, **kw), job("d1", "held", T + 50, reason=HOSTILE, **kw),  # no codes
            job("r1", "started", T, **kw), job("r1", "held", T + 10, reason="memory", hold_code=34, hold_subcode=0, **kw),
            job("r1", "released", T + 20, **kw),  # released: not held any more
            job("o1", "started", T, stage="other", **kw), job("o1", "held", T + 30, reason="memory", hold_code=34,
                                                              hold_subcode=1, stage="other", **kw)]
    return out


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.servers)], scope="module")
def loaded(request, tmp_path_factory):
    campaign = f"{_RUN}holds{next(_n)}"
    if request.param == "chdb":
        url = f"chdb:{tmp_path_factory.mktemp('cli-holds') / 'store'}"
    else:
        url = request.getfixturevalue("clickhouse_server").store_url
    with open_store(url) as st:
        replay_events(st, events(campaign))
        held = reading.read_held_jobs(st, campaign, "stage1", limit=10)
    return url, campaign, held


def test_json_counts_codes_and_held_since(loaded, capsys):
    url, campaign, _ = loaded
    code, out, err = run_cli(capsys, "holds", "--store", url, "--campaign", campaign, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)["holds"]
    assert [(r["stage"], r["hold_reason"], r["hold_code"], r["hold_subcode"], r["jobs_held"], r["held_since_ts"])
            for r in rows] == [
        ("other", "memory", 34, 1, 1, T + 30),
        ("stage1", "memory", 34, 0, 3, T + 100),  # m0 held since its first hold, not the second
        ("stage1", HOSTILE, None, None, 1, T + 50),
    ]


def test_limit_per_stage_and_at(loaded, capsys):
    url, campaign, _ = loaded
    _, out, _ = run_cli(capsys, "holds", "--store", url, "--campaign", campaign, "--limit", "1", "--format", "json")
    assert [(r["stage"], r["jobs_held"]) for r in json.loads(out)["holds"]] == [("other", 1), ("stage1", 3)]
    _, out, _ = run_cli(capsys, "holds", "--store", url, "--campaign", campaign, "--stage", "stage1",
                        "--at", repr(T + 15), "--format", "json")
    assert [(r["hold_reason"], r["jobs_held"]) for r in json.loads(out)["holds"]] == [("memory", 1)]  # r1, before release


def test_table_is_escaped_and_unknown_names_are_usage_errors(loaded, capsys):
    url, campaign, _ = loaded
    code, out, err = run_cli(capsys, "holds", "--store", url, "--campaign", campaign, "--stage", "stage1")
    assert code == 0, err
    assert HOSTILE in out and "memory" in out and "34" in out
    code, _, err = run_cli(capsys, "holds", "--store", url, "--campaign", campaign + "x")
    assert code == 2 and campaign in flat(err)


def test_held_jobs_list_longest_held_first(loaded):
    _, _, held = loaded
    assert [(j["job_id"], j["hold_reason"], j["hold_code"], j["held_ts"]) for j in held] == [
        ("d1", HOSTILE, None, T + 50), ("m0", "memory", 34, T + 100), ("m1", "memory", 34, T + 101),
        ("m2", "memory", 34, T + 102)]
