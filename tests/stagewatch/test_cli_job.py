"""`job ID` without --campaign/--stage when the id is unique; short aliases with did-you-mean for bucket,
state and sort names; '-' for missing values; human durations."""

from __future__ import annotations

import json
import re

import pytest

from stagewatch.cli import BUCKET_ALIASES, SORT_ALIASES, resolve_buckets, state_aliases
from stagewatch.console import cell, fmt_duration, resolve_choice
from stagewatch.reading import find_job
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from tests.builders import file, job
from tests.stagewatch.test_cli_escaping import flat, run_cli
from tests.stagewatch.test_views_tables import rendered

T0 = 1497960000.0


@pytest.fixture()
def store(tmp_path) -> str:
    url = f"chdb:{tmp_path / 'store'}"
    with open_store(url) as st:
        replay_events(st, [
            job("s#1.0", "submitted", T0), job("s#1.0", "started", T0 + 60, site="FNAL", cores=1),
            job("s#1.0", "terminated", T0 + 60 + 7980, exit_code=0, wall_s=7980.0, cpu_user_s=10.0, cpu_sys_s=1.0),
            job("s#2.0", "submitted", T0, stage="a"), job("s#2.0", "submitted", T0, stage="b"),
            job("s#4.0", "submitted", T0),
            job("s#3.0", "submitted", T0), job("s#3.0", "started", T0 + 5),
            job("s#3.0", "held", T0 + 50, reason="over [memory]", hold_code=34, hold_subcode=0),
            file("in.root", "input_declared", T0), file("in.root", "delivered", T0 + 61, job_id="s#1.0"),
            file("in.root", "failed", T0 + 90, job_id="s#1.0"),
        ])
    return url


def test_job_without_campaign_and_stage_when_unique(capsys, store):
    code, out, err = run_cli(capsys, "job", "s#1.0", "--store", store)
    assert code == 0, err
    assert "camp / stage1" in out and "2 h 13 min" in out  # the attempt's wall time, human
    code, out, err = run_cli(capsys, "job", "s#1.0", "--store", store, "--format", "json")
    doc = json.loads(out)
    assert (doc["campaign"], doc["stage"], doc["job_id"]) == ("camp", "stage1", "s#1.0")


def test_an_id_in_several_stages_is_exit_2_naming_them(capsys, store):
    code, out, err = run_cli(capsys, "job", "s#2.0", "--store", store)
    assert code == 2
    assert "--campaign camp --stage a" in flat(err) and "--campaign camp --stage b" in flat(err)
    code, out, err = run_cli(capsys, "job", "s#2.0", "--store", store, "--stage", "b")
    assert code == 0, err


def test_an_unknown_id_is_exit_2(capsys, store):
    code, out, err = run_cli(capsys, "job", "nope", "--store", store)
    assert code == 2 and "No job 'nope'" in flat(err)
    with open_store(store, create=False) as st:
        assert find_job(st, "s#1.0") == [("camp", "stage1")]
        assert find_job(st, "it's") == []


def test_held_jobs_show_their_hold(capsys, store):
    code, out, err = run_cli(capsys, "jobs", "--campaign", "camp", "--stage", "stage1", "--store", store,
                             "--state", "hold", "--at", str(T0 + 50 + 7980))
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if "s#3.0" in ln)
    assert "over [memory]" in line and "34/0" in line and "2 h 13 min" in line  # reason, code/subcode, held for
    assert "│ - " in line  # no site: missing values print as '-'


def test_missing_values_print_as_dash(capsys, store):
    code, out, err = run_cli(capsys, "jobs", "--campaign", "camp", "--stage", "stage1", "--store", store,
                             "--state", "idle")
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if "s#4.0" in ln)
    assert "│ - " in line or " - │" in line  # exit code, signal, cpu efficiency, site are missing
    assert cell("").plain == "-" and cell(None).plain == "-" and cell(0).plain == "0"


@pytest.mark.parametrize("given,want", [("failed", "files_failed"), ("FAILED", "files_failed"),
                                        ("in-flight", "files_in_flight"), ("files_pending", "files_pending"),
                                        ("declared", "files_declared_not_located"), ("located", "files_located")])
def test_bucket_aliases(given, want):
    assert resolve_buckets([given]) == [want]
    assert BUCKET_ALIASES[want] == want


def test_bucket_missing_is_every_bucket_but_located(capsys, store):
    assert "files_located" not in resolve_buckets(["missing"]) and len(resolve_buckets(["missing"])) == 5
    code, out, err = run_cli(capsys, "files", "--campaign", "camp", "--stage", "stage1", "--store", store,
                             "--bucket", "failed")
    assert code == 0, err
    assert "in.root" in out


def test_typos_are_exit_2_with_did_you_mean(capsys, store):
    sel = ["--campaign", "camp", "--stage", "stage1", "--store", store]
    code, out, err = run_cli(capsys, "files", *sel, "--bucket", "faild")
    assert code == 2 and "did you mean 'files_failed'" in flat(err)
    code, out, err = run_cli(capsys, "jobs", *sel, "--state", "runing")
    assert code == 2 and "did you mean 'running'" in flat(err)
    code, out, err = run_cli(capsys, "jobs", *sel, "--sort", "badptu")
    assert code == 2 and "did you mean 'badput'" in flat(err)
    code, out, err = run_cli(capsys, "jobs", *sel, "--sort", "zzz")
    assert code == 2 and "choose one of restarts, badput, last" in flat(err)


def test_state_and_sort_aliases(capsys, store):
    assert state_aliases()["ok"] == "completed_ok" and state_aliases()["jobs_held"] == "held"
    assert resolve_choice("Recent", SORT_ALIASES, "--sort") == "last"
    code, out, err = run_cli(capsys, "jobs", "--campaign", "camp", "--stage", "stage1", "--store", store,
                             "--state", "ok", "--format", "json")
    assert code == 0, err
    assert [r["job_id"] for r in json.loads(out)] == ["s#1.0"]


@pytest.mark.parametrize("seconds,text", [(None, "-"), (0, "0 s"), (45, "45 s"), (60, "1 min"),
                                          (7980, "2 h 13 min"), (7999, "2 h 13 min"), (3 * 86400 + 5, "3 d"),
                                          (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"), (-90, "-1 min 30 s")])
def test_durations_are_human(seconds, text):
    assert fmt_duration(seconds) == text


@pytest.mark.servers
def test_find_job_on_the_server(clickhouse_server):
    with open_store(clickhouse_server.store_url) as srv:
        for t in ("raw_events", "job_state", "job_attempts", "file_state", "stage_numbers", "dead_letter"):
            srv.command(f"TRUNCATE TABLE IF EXISTS {t}")
        replay_events(srv, [job("s#2.0", "submitted", T0, stage="a"), job("s#2.0", "submitted", T0, stage="b"),
                            job("it's\\#1", "submitted", T0, stage="a")])
        assert find_job(srv, "s#2.0") == [("camp", "a"), ("camp", "b")]
        assert find_job(srv, "it's\\#1") == [("camp", "a")]
        assert find_job(srv, "nope") == []



def _rendered(table, width: int) -> list[str]:
    return rendered(table, width).splitlines()


REASON = "Job has gone over memory limit of 2000 megabytes. Peak usage: 2481 megabytes."
HELD = [{"job_id": f"fifebatch2.fnal.gov#17324126.{i}", "held_ts": T0 - 3600 * i, "hold_code": 34,
         "hold_subcode": 0, "site": "OSG-Nebraska", "hold_reason": REASON, "state": "held", "attempts": 2,
         "restarts": 1, "exit_code": None, "signal": None, "cpu_efficiency_pct": 91.5, "badput_core_hours": 1.25,
         "last_ts": T0 - 60} for i in range(100, 103)]


def _values_whole(lines: list[str], row: dict, shown: list[str]) -> None:
    line = next(ln for ln in lines if row["job_id"] in ln)  # the id whole, on its row's first line
    for v in shown:
        assert v in line, (v, line)


@pytest.mark.parametrize("width", [200, 120, 100, 80, 60])
def test_held_jobs_fit_the_terminal_ids_and_times_whole(width):
    """As `condor_q -hold`: the id, times, code and site on one line each; only the hold reason wraps (every
    word of it still shown); a column that does not fit is left out and named, never folded. At 120 columns
    every column is shown."""
    from stagewatch.cli import held_table

    lines = _rendered(held_table(HELD, "held", now=T0, width=width), width)
    text = "\n".join(lines)
    assert max(len(ln) for ln in lines) <= width
    named = re.search(r"Not shown at this width: (.*?) \(--format json", " ".join(text.split()))
    hidden = named.group(1).split(", ") if named else []
    shows = {h: h not in hidden for h in ("held for", "code/sub", "site")}  # the caption names those left out
    for r in HELD:
        _values_whole(lines, r, [fmt_duration(T0 - r["held_ts"])] * shows["held for"]
                      + ["34/0"] * shows["code/sub"] + ["OSG-Nebraska"] * shows["site"])
    words = " ".join(ln.split("│")[-2] for ln in lines if ln.count("│") > 2).split()  # the reason comes last
    assert " ".join(words).count(REASON) == len(HELD)
    assert ("Not shown at this width" in text) == (not all(shows.values()))
    assert all(shows.values()) or width < 120


@pytest.mark.parametrize("width", [250, 120, 80])
def test_jobs_list_fits_the_terminal_ids_whole(width):
    from stagewatch.cli import jobs_table

    lines = _rendered(jobs_table(HELD, "jobs", now=T0, width=width), width)
    text = " ".join(lines)
    assert max(len(ln) for ln in lines) <= width
    for r in HELD:
        _values_whole(lines, r, ["held"])
    assert ("Not shown at this width" in text) == (width < 250)
