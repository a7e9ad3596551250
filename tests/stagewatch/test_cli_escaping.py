"""Names and reasons come from data: every command prints them verbatim (rich markup never parses them),
and a timestamp no calendar represents is printed as its number instead of crashing the whole output."""

from __future__ import annotations

import json
import sys
from unittest import mock

import pytest

from stagewatch.cli import main
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from tests.builders import file, job

CAMPAIGN, STAGE, JOB, FILE = "nova[/prod]", "s[red]x", "j[bold]", "f[/]"
SITE, REASON, HOST = "site[/]", "evicted [/x] by [bold red]", "h[link=x]"
T0 = 1497960000.0


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`stagewatch ARGS` through main() (its error handling included): exit code, stdout, stderr."""
    with mock.patch.object(sys, "argv", ["stagewatch", *args]):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def flat(text: str) -> str:
    """Output with rich's wrapping undone (a long stderr sentence is wrapped at 80 columns)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory) -> str:
    url = f"chdb:{tmp_path_factory.mktemp('hostile') / 'store'}"
    kw = dict(campaign=CAMPAIGN, stage=STAGE)
    events = [
        job(JOB, "submitted", T0, **kw),
        job(JOB, "started", T0 + 60, site=SITE, host=HOST, **kw),
        job(JOB, "evicted", T0 + 120, reason=REASON, **kw),
        file(FILE, "input_declared", T0, **kw),
    ]
    with open_store(url) as st:
        replay_events(st, events)
    return url


def test_read_commands_print_names_from_data_verbatim(capsys, hostile_store):
    code, out, err = run_cli(capsys, "status", "--store", hostile_store, "--as-of", str(T0 + 600))
    assert code == 0, err
    assert CAMPAIGN in out and STAGE in out

    sel = ["--campaign", CAMPAIGN, "--stage", STAGE, "--store", hostile_store]
    code, out, err = run_cli(capsys, "files", *sel)
    assert code == 0, err
    assert FILE in out and f"{CAMPAIGN} / {STAGE}" in out

    code, out, err = run_cli(capsys, "jobs", *sel)
    assert code == 0, err
    assert JOB in out and SITE in out

    code, out, err = run_cli(capsys, "job", JOB, *sel)
    assert code == 0, err
    assert f"{JOB}: attempts" in out and f"{JOB}: events" in out
    assert SITE in out and HOST in out and REASON in out

    code, out, err = run_cli(capsys, "missing-files", *sel)
    assert code == 0, err
    assert out == FILE + "\n"


def test_error_sentences_quote_names_verbatim(capsys, hostile_store):
    code, out, err = run_cli(capsys, "job", "nope[/x]", "--campaign", CAMPAIGN, "--stage", STAGE,
                             "--store", hostile_store)
    assert code == 2
    assert "nope[/x]" in flat(err) and f"{CAMPAIGN} / {STAGE}" in flat(err)


def test_replay_prints_an_invalid_reason_verbatim(capsys, tmp_path):
    lines = tmp_path / "in.jsonl"
    good = {"schema": "job-event/1", "event_id": "e1", "ts": T0, "campaign": "c", "stage": "s", "job_id": "1.0",
            "type": "submitted"}
    bad = dict(good, event_id="e2", type="[/x]")
    lines.write_text(json.dumps(bad) + "\n" + json.dumps(good) + "\n")
    code, out, err = run_cli(capsys, "replay", "-q", "--store", f"chdb:{tmp_path / 'store'}", str(lines))
    assert code == 0, err
    assert "[/x]" in err and "invalid" in err
    assert "1 new events" in flat(err)


@pytest.mark.parametrize("ts", [1e13, -1e13, 253402300800.0])  # year 318857, before year 1, 10000-01-01
def test_timestamps_no_calendar_holds_are_printed_as_numbers(capsys, tmp_path, ts):
    """A store may already hold such values (older contract, direct inserts): status and job still print."""
    url = f"chdb:{tmp_path / 'store'}"
    with open_store(url) as st:
        replay_events(st, [job("1.0", "submitted", T0), job("1.0", "started", T0 + 60),
                           job("1.0", "terminated", T0 + 120, exit_code=0, wall_s=60.0, cores=1)])
        (row,) = st.query("SELECT * FROM stage_numbers FINAL")
        st.insert("stage_numbers", [dict(row, last_progress_ts=ts, last_event_ts=ts, version=row["version"] + 1)])
        (att,) = st.query("SELECT * FROM job_attempts FINAL")
        st.insert("job_attempts", [dict(att, started_ts=ts, ended_ts=ts, version=att["version"] + 1)])
        (raw,) = st.query("SELECT * FROM raw_events WHERE type = 'submitted'")
        st.insert("raw_events", [dict(raw, ts=ts, event_id="far")])

    # --now: the stall clock only (--at would recount from the raw events, without the rows edited here)
    code, out, err = run_cli(capsys, "status", "--wide", "--store", url, "--now", str(T0 + 600))
    assert code == 0, err
    assert f"{ts:.0f}" in out

    code, out, err = run_cli(capsys, "status", "--store", url, "--now", str(ts))
    assert code == 0, err
    assert f"as of {ts:.0f} UTC" in out

    code, out, err = run_cli(capsys, "job", "1.0", "--campaign", "camp", "--stage", "stage1", "--store", url)
    assert code == 0, err
    assert out.count(f"{ts:.0f}") >= 3  # started, ended and the far event
    assert "2017-06-20" in out  # the other events still print as dates

    from stagewatch.report import build_report

    with open_store(url, create=False) as st:
        page = build_report(st, as_of=T0 + 600)
    assert f"{ts:.0f}" in page


def test_fmt_ts_is_total():
    from stagewatch.console import fmt_ts

    assert fmt_ts(T0) == "2017-06-20 12:00"
    for value in (1e13, -1e13, float("inf"), float("-inf"), float("nan"), 1e308):
        assert isinstance(fmt_ts(value), str)
    assert fmt_ts(None) == "-"


def test_publish_lists_an_invalid_line_verbatim(capsys):
    """publish's on_invalid prints the dead letter (its reason quotes the line) without parsing markup."""
    from stagewatch.cli_stream import _publisher

    pub = _publisher("127.0.0.1:1", "", None)  # the producer connects lazily: nothing is sent here
    pub.on_invalid("in.jsonl:3: Invalid enum value '[/x]' - at `$.type` [bold]")
    err = capsys.readouterr().err
    assert "in.jsonl:3: Invalid enum value '[/x]' - at `$.type` [bold]" in err
