"""An unknown campaign or stage is a usage error (exit 2) naming the known ones, never a silent empty answer
(a recovery script reading `missing-files` must not conclude nothing is missing); capped lists say so."""

from __future__ import annotations

import json

import pytest

from stagewatch.replay import replay_events
from stagewatch.store import open_store
from tests.builders import file, job
from tests.stagewatch.test_cli_escaping import flat, run_cli

T0 = 1497960000.0


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    url = f"chdb:{tmp_path_factory.mktemp('names') / 'store'}"
    events = []
    for campaign, stage in (("nova_prod5_mc", "fd_mcgen_cry_fhc_all"), ("nova_prod5_mc", "fd_reco_cry_fhc_all"),
                            ("dune_mc", "gen")):
        events += [file(f"{stage}.root", "input_declared", T0, campaign=campaign, stage=stage)]
        events += [job(f"{i}.0", "submitted", T0 + i, campaign=campaign, stage=stage) for i in range(3)]
    # an empty drill-down of a known stage stays a success: no files without output here
    events += [file("x.root", "input_declared", T0, campaign="dune_mc", stage="done"),
               file("x.out", "output_declared", T0 + 1, campaign="dune_mc", stage="done", parents=["x.root"]),
               file("x.out", "output_located", T0 + 2, campaign="dune_mc", stage="done", location="tape")]
    events += [job(f"{i}.0", "submitted", T0 + i, campaign="big", stage="many") for i in range(60)]
    with open_store(url) as st:
        replay_events(st, events)
    return url


def _sel(campaign: str, stage: str, store: str) -> list[str]:
    return ["--campaign", campaign, "--stage", stage, "--store", store]


COMMANDS = {
    "missing-files": lambda sel: ["missing-files", *sel],
    "files": lambda sel: ["files", *sel],
    "jobs": lambda sel: ["jobs", *sel],
    "job": lambda sel: ["job", "1.0", *sel],
    "status": lambda sel: ["status", *sel],
    "verify": lambda sel: ["verify", *sel],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_stage_is_exit_2_with_did_you_mean(capsys, store, command):
    code, out, err = run_cli(capsys, *COMMANDS[command](_sel("nova_prod5_mc", "fd_mcgen_cry_fhc_al", store)))
    assert code == 2, (out, err)
    text = flat(err)
    assert "No stage 'fd_mcgen_cry_fhc_al'" in text
    assert "did you mean 'fd_mcgen_cry_fhc_all'" in text
    assert "'fd_reco_cry_fhc_all'" in text  # the known stages of that campaign are listed
    assert "'gen'" not in text  # not those of other campaigns
    assert out == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_campaign_is_exit_2_with_did_you_mean(capsys, store, command):
    code, out, err = run_cli(capsys, *COMMANDS[command](_sel("nova_prod5", "fd_mcgen_cry_fhc_all", store)))
    assert code == 2, (out, err)
    text = flat(err)
    assert "No campaign 'nova_prod5'" in text and "did you mean 'nova_prod5_mc'" in text
    assert "'dune_mc'" in text


@pytest.mark.parametrize("args", [["status", "--stage", "gne"], ["verify", "--stage", "gne"],
                                  ["status", "--campaign", "dune"], ["verify", "--campaign", "dune"]])
def test_status_and_verify_check_a_single_filter(capsys, store, args):
    code, out, err = run_cli(capsys, *args, "--store", store)
    assert code == 2, (out, err)
    assert "did you mean" in flat(err)


def test_status_json_with_an_unknown_stage_is_an_error_too(capsys, store):
    code, out, err = run_cli(capsys, "status", "--stage", "nope", "--format", "json", "--store", store)
    assert code == 2 and out == ""


def test_known_stage_with_an_empty_answer_is_a_success(capsys, store):
    code, out, err = run_cli(capsys, "missing-files", *_sel("dune_mc", "done", store))
    assert code == 0, err
    assert out == ""
    code, out, err = run_cli(capsys, "jobs", *_sel("dune_mc", "done", store), "--format", "json")
    assert code == 0, err
    assert json.loads(out) == []


def test_a_capped_jobs_list_says_so(capsys, store):
    code, out, err = run_cli(capsys, "jobs", *_sel("big", "many", store), "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 50  # the JSON shape scripts rely on is unchanged
    assert "showing 50 of 60 jobs; --limit N for more" in flat(err)

    code, out, err = run_cli(capsys, "jobs", *_sel("big", "many", store), "--limit", "10")
    assert code == 0, err
    assert "showing 10 of 60 jobs" in flat(err) and "10 of 60" in out

    code, out, err = run_cli(capsys, "jobs", *_sel("big", "many", store), "--limit", "60", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 60
    assert "showing" not in err

    code, out, err = run_cli(capsys, "jobs", *_sel("big", "many", store), "--state", "idle", "--limit", "59")
    assert code == 0 and "showing 59 of 60 jobs" in flat(err)


def test_a_capped_files_list_says_so(capsys, tmp_path):
    """`files --limit N`: the first N by name, the total on stderr; without it every file, as before."""
    url = f"chdb:{tmp_path / 'store'}"
    names = [f"f{i:03d}.root" for i in range(30)]
    with open_store(url) as st:
        replay_events(st, [file(n, "input_declared", T0, campaign="c", stage="s") for n in reversed(names)])
    code, out, err = run_cli(capsys, "files", *_sel("c", "s", url), "--limit", "7", "--format", "json")
    assert code == 0, err
    assert [r["file"] for r in json.loads(out)] == names[:7]
    assert "showing 7 of 30 files; --limit N for more" in flat(err)
    code, out, err = run_cli(capsys, "files", *_sel("c", "s", url), "--limit", "7")
    assert code == 0 and "7 of 30 input files" in flat(out)
    code, out, err = run_cli(capsys, "files", *_sel("c", "s", url), "--format", "json")
    assert code == 0 and len(json.loads(out)) == 30 and "showing" not in err
    code, out, err = run_cli(capsys, "files", *_sel("c", "s", url), "--limit", "30", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 30 and "showing" not in err


def test_verify_of_a_stage_with_raw_events_only_reports_it(capsys, tmp_path):
    """An interrupted replay can leave raw events without a stage row: verify must name that stage's
    differences (exit 1), not call the stage unknown."""
    url = f"chdb:{tmp_path / 'store'}"
    with open_store(url) as st:
        replay_events(st, [job("1.0", "submitted", T0)])
        (raw,) = st.query("SELECT * FROM raw_events")
        st.insert("raw_events", [dict(raw, campaign="ghost", stage="g", event_id="ghost-1")])
    code, out, err = run_cli(capsys, "verify", "--campaign", "ghost", "--stage", "g", "--store", url)
    assert code == 1, (out, err)
    assert "verify failed" in err and "ghost" in out
