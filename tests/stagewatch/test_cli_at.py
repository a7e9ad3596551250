"""`--at TIME` on status, files, jobs and missing-files: the numbers as they stood at TIME (exactly the
events with ts <= TIME, TIME also the stall clock), equal to replaying only those events into an empty
store; `--now` moves only the stall clock; `--as-of` is an alias of `--at`."""

from __future__ import annotations

import json
import os
import re

import pytest

from ingest.simulator import PRESETS, simulate_many
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from tests.stagewatch.test_cli_escaping import flat, run_cli


@pytest.fixture(scope="module")
def events():
    return list(simulate_many(PRESETS["tiny"](), 3))


@pytest.fixture(scope="module")
def full_store(tmp_path_factory, events):
    url = f"chdb:{tmp_path_factory.mktemp('at') / 'full'}"
    with open_store(url) as st:
        replay_events(st, events)
    return url


def moments(events):
    ts = sorted(e.ts for e in events)
    return [ts[len(ts) // 4], ts[len(ts) // 2], ts[-1] - 1]


def cli_json(capsys, *args):
    code, out, err = run_cli(capsys, *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_at_equals_replaying_only_the_events_up_to_then(capsys, tmp_path, events, full_store):
    for i, t in enumerate(moments(events)):
        prefix = f"chdb:{tmp_path / f'prefix{i}'}"
        with open_store(prefix) as st:
            replay_events(st, [e for e in events if e.ts <= t])
        at = cli_json(capsys, "status", "--store", full_store, "--at", str(t))
        want = cli_json(capsys, "status", "--store", prefix, "--now", str(t))
        assert at["stages"] == want["stages"] and at["as_of"] == t and at["at"] == t
        now = cli_json(capsys, "status", "--store", full_store, "--now", str(t))
        assert now["stages"] != want["stages"]  # --now counts every event: only the clock moved
        assert cli_json(capsys, "status", "--store", full_store, "--as-of", str(t))["stages"] == want["stages"]
        for s in want["stages"]:
            sel = ["--campaign", s["campaign"], "--stage", s["stage"]]
            assert (cli_json(capsys, "files", *sel, "--store", full_store, "--at", str(t))
                    == cli_json(capsys, "files", *sel, "--store", prefix))
            assert (cli_json(capsys, "jobs", *sel, "--store", full_store, "--at", str(t), "--limit", "1000")
                    == cli_json(capsys, "jobs", *sel, "--store", prefix, "--limit", "1000"))
            assert (cli_json(capsys, "missing-files", *sel, "--store", full_store, "--at", str(t))["files"]
                    == cli_json(capsys, "missing-files", *sel, "--store", prefix)["files"])
            # reads raw_events: the ephemeral store writes them when this query first names the table
            by = ("--by", "submission")
            assert (cli_json(capsys, "missing-files", *sel, *by, "--store", full_store, "--at", str(t))["submissions"]
                    == cli_json(capsys, "missing-files", *sel, *by, "--store", prefix)["submissions"])
        # every stage at once: stages done at t (read as they are) next to stages replayed up to t
        assert (cli_json(capsys, "sites", "--store", full_store, "--at", str(t))
                == cli_json(capsys, "sites", "--store", prefix))


def test_at_table_says_the_moment_and_last_progress_is_not_after_it(capsys, events, full_store):
    t = moments(events)[1]
    code, out, err = run_cli(capsys, "status", "--store", full_store, "--at", str(t))
    assert code == 0, err
    assert "ago" in out and "as of " in out
    for s in cli_json(capsys, "status", "--store", full_store, "--at", str(t))["stages"]:
        assert s["last_progress_ts"] is None or s["last_progress_ts"] <= t  # nothing counted after TIME
        assert s["last_event_ts"] <= t


def test_time_option_errors_are_usage_sentences(capsys, full_store):
    code, out, err = run_cli(capsys, "status", "--store", full_store, "--at", "1", "--now", "2")
    assert code == 2 and "not both" in flat(err)
    code, out, err = run_cli(capsys, "status", "--store", full_store, "--at", "1", "--as-of", "2")
    assert code == 2 and "alias" in flat(err)
    code, out, err = run_cli(capsys, "status", "--store", full_store, "--at", "yesterday")
    assert code == 2 and "--at 'yesterday'" in flat(err)
    code, out, err = run_cli(capsys, "files", "--campaign", "x", "--stage", "y", "--store", full_store,
                             "--at", "2017-06-20T12:00:00")
    assert code == 2 and "no time zone" in flat(err)


def test_at_creates_nothing(capsys, tmp_path):
    missing = tmp_path / "nothing"
    code, out, err = run_cli(capsys, "status", "--store", f"chdb:{missing}", "--at", "1497960000")
    assert code == 1 and not os.path.exists(missing)


def test_as_of_help_says_it_is_an_alias(capsys):
    code, out, err = run_cli(capsys, "status", "--help")
    text = flat(re.sub("[│╭╮╰╯─]", " ", out))
    assert "alias of --at" in text and "--now" in text


def test_at_before_the_first_event_says_so(capsys, events, full_store):
    first = min(e.ts for e in events)
    code, out, err = run_cli(capsys, "status", "--store", full_store, "--at", str(first - 3600))
    assert code == 1 and "No events of the selected stages at or before" in flat(err)


def test_watch_with_json_needs_exit_when_done(capsys, full_store):
    code, out, err = run_cli(capsys, "status", "--store", full_store, "--watch", "5", "--format", "json")
    assert code == 2 and "--exit-when-done" in flat(err)
