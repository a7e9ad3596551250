"""A user's path from an HTCondor log to numbers: convert, replay, status (embedded store)."""

import json
from pathlib import Path

import pytest

from typer.testing import CliRunner

from stagewatch.cli import app

LOG = Path(__file__).resolve().parent.parent / "ingest" / "condor_logs" / "all_types.log"


def test_condor_log_to_status(tmp_path):
    runner = CliRunner()
    out = tmp_path / "events.jsonl"
    r = runner.invoke(app, ["convert", "condor-log", str(LOG), "--campaign", "c", "--stage", "s",
                            "--schedd", "sched1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    url = f"chdb:{tmp_path / 'store'}"
    for _ in range(2):  # converting/replaying the same log twice changes nothing
        r = runner.invoke(app, ["replay", "-q", "--store", url, str(out)])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["status", "--store", url, "--format", "json"])
    (s,) = json.loads(r.stdout)["stages"]
    assert (s["jobs"], s["jobs_removed"], s["jobs_completed"], s["jobs_completed_ok"]) == (2, 1, 1, 1)
    assert s["job_attempts"] == 3 and s["restarts"] == 1
    assert s["restarts_by_cause"]["reconnect_failed"] == 1
    # the reconnect_failed attempt: wall_s 1500 on the 4 cores of its execute event
    assert s["badput_core_hours"] == round(1500 * 4 / 3600, 2)
    r = runner.invoke(app, ["verify", "--store", url])
    assert r.exit_code == 0, r.output


def test_missing_log_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(app, ["convert", "condor-log", str(tmp_path / "nope.log"), "--campaign", "c",
                                 "--stage", "s"])
    assert r.exit_code != 0


def test_converting_a_file_that_is_not_a_job_event_log_says_so_and_exits_1(tmp_path):
    """Issue 7 section 4: zero events read is an error with one sentence, not "converted 0 job events"."""
    import os
    import subprocess
    import sys

    notalog = tmp_path / "notalog.txt"
    notalog.write_text('{"schema": "job-event/1"}\nsome text\n')
    out = tmp_path / "events.jsonl"
    r = subprocess.run([sys.executable, "-c", "from stagewatch.cli import main; main()", "convert", "condor-log",
                        str(notalog), "--campaign", "c", "--stage", "s", "--out", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "COLUMNS": "500"})
    assert r.returncode == 1, r.stdout + r.stderr
    said = " ".join((r.stdout + r.stderr).split())  # rich may wrap the line
    assert f"{notalog} has no HTCondor job events: is it a job event log (the submit file's `log = ...`)?" in said
    assert "Traceback" not in r.stderr
    assert not out.exists()  # no empty output left behind to be replayed as "nothing happened"


# ---------------------------------------------------------------------------------------------------
# The schedd-wide event log (issue 8 section 2)
# ---------------------------------------------------------------------------------------------------

LOGS = LOG.parent
SCHEDD_WIDE = [str(LOGS / "EventLog.old"), str(LOGS / "EventLog")]  # one rotation, cut between an event and its 028
ROUTE = ["--campaign-attr", "POMS4_CAMPAIGN_NAME", "--stage-attr", "POMS4_CAMPAIGN_STAGE_NAME",
         "--attr", "site=MATCH_GLIDEIN_Site", "--attr", "submission=POMS4_SUBMISSION_ID", "--schedd", "fifebatch1"]


def test_schedd_wide_log_and_its_rotation_to_numbers_per_stage(tmp_path, capsys):
    from tests.stagewatch.test_cli_escaping import flat, run_cli

    out = tmp_path / "events.jsonl"
    code, _, err = run_cli(capsys, "convert", "condor-log", *SCHEDD_WIDE, *ROUTE, "--out", str(out))
    assert code == 0, err
    said = flat(err)
    assert said.startswith(f"converted 12 job events from 2 files ({SCHEDD_WIDE[0]}, {SCHEDD_WIDE[1]}): "
                           "30 HTCondor events read, 12 job events written; 15 job ad (028) events; "
                           "1 jobs without the campaign/stage attributes skipped (3 events); "
                           "0 unparseable stretches skipped (0 bytes); 0 refused by the contract"), said
    assert not (tmp_path / "events.jsonl.dead-letters.jsonl").exists()  # none: no file
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {(x["job_id"], x["site"]) for x in lines if x["type"] == "started"} == {
        ("fifebatch1#500.0", "FNAL"), ("fifebatch1#500.1", "MWT2"), ("fifebatch1#500.1", "UCSD"),
        ("fifebatch1#501.0", "Nebraska")}
    assert {x["submission"] for x in lines} == {"1001", "1002"}
    url = f"chdb:{tmp_path / 'store'}"
    code, _, err = run_cli(capsys, "replay", "-q", "--store", url, str(out))
    assert code == 0, err
    code, stdout, _ = run_cli(capsys, "status", "--store", url, "--format", "json")
    by = {(s["campaign"], s["stage"]): s for s in json.loads(stdout)["stages"]}
    assert set(by) == {("nova_prod", "fd_mcgen"), ("nova_prod", "fd_reco")}
    mc, reco = by["nova_prod", "fd_mcgen"], by["nova_prod", "fd_reco"]
    assert (mc["jobs"], mc["jobs_completed"], mc["jobs_completed_ok"], mc["restarts"]) == (2, 2, 1, 1)
    assert mc["restarts_by_cause"]["evicted"] == 1
    assert (reco["jobs"], reco["jobs_idle"], reco["job_attempts"]) == (1, 1, 1)


def test_jobs_without_a_028_become_dead_letters_in_a_file_next_to_out(tmp_path, capsys):
    from tests.stagewatch.test_cli_escaping import flat, run_cli

    out = tmp_path / "events.jsonl"
    code, _, err = run_cli(capsys, "convert", "condor-log", str(LOG), "--campaign-attr", "POMS4_CAMPAIGN_NAME",
                           "--stage-attr", "POMS4_CAMPAIGN_STAGE_NAME", "--out", str(out))
    assert code == 0, err
    dl = tmp_path / "events.jsonl.dead-letters.jsonl"
    said = flat(err)
    assert "16 dead letters" in said and f"dead letters in {dl}" in said
    letters = [json.loads(x) for x in dl.read_text().splitlines()]
    assert len(letters) == 16 and out.read_text() == ""
    # 200.1's 028 comes 2 h 41 min after its first event: past the hold bound (3600 s of log time)
    assert all("no JobAdInformation (028) event of job 200." in x["reason"] and "within 3600 s (log time)"
               in x["reason"] for x in letters)
    assert letters[0]["source"] == str(LOG) and letters[0]["position"].startswith("byte ")
    assert json.loads(letters[0]["raw"])["type"] == "submitted"
    # a wider bound: 200.1's 028 arrives but does not carry the attributes (skipped, counted); 200.0 never has one
    code, _, err = run_cli(capsys, "convert", "condor-log", str(LOG), "--campaign-attr", "POMS4_CAMPAIGN_NAME",
                           "--stage-attr", "POMS4_CAMPAIGN_STAGE_NAME", "--max-hold-s", "86400", "--out", str(out))
    said = flat(err)
    assert code == 0 and "1 jobs without the campaign/stage attributes skipped (3 events); 13 dead letters" in said
    letters = [json.loads(x) for x in dl.read_text().splitlines()]
    assert len(letters) == 13 and all("200.0" in x["reason"] and "before the end of the log" in x["reason"]
                                      for x in letters)
    # --default-campaign/--default-stage keep them
    code, _, err = run_cli(capsys, "convert", "condor-log", str(LOG), "--campaign-attr", "POMS4_CAMPAIGN_NAME",
                           "--stage-attr", "POMS4_CAMPAIGN_STAGE_NAME", "--default-campaign", "c",
                           "--default-stage", "s", "--out", str(out))
    assert code == 0 and "dead letters" not in flat(err)
    assert len(out.read_text().splitlines()) == 16


@pytest.mark.parametrize("args,said", [
    (["--campaign", "c", "--campaign-attr", "A", "--stage", "s"], "--campaign and --campaign-attr"),
    (["--stage", "s"], "No campaign: pass --campaign NAME"),
    (["--campaign", "c" * 1025, "--stage", "s"], "--campaign must be 1 to 1,024 characters"),
    (["--campaign-attr", "A", "--stage-attr", "B", "--attr", "site"], "give NAME=ATTRIBUTE"),
    (["--campaign-attr", "A", "--stage-attr", "B", "--attr", "colour=X"], "'colour' is not one of"),
    (["--campaign", "c", "--stage", "s", "--schedd", "s" * 1010], "--schedd must be 1 to 1,002 characters"),
    (["--campaign", "c", "--stage", "s", "--default-stage", "d"], "--default-stage only applies with --stage-attr"),
    (["--campaign", "c", "--stage", "s", str(LOG)], f"{LOG} is the same file as {LOG}; give each file of the log once"),
])
def test_routing_options_are_usage_errors_before_anything_is_read(tmp_path, capsys, args, said):
    from tests.stagewatch.test_cli_escaping import flat, run_cli

    out = tmp_path / "events.jsonl"
    code, _, err = run_cli(capsys, "convert", "condor-log", str(LOG), *args, "--out", str(out))
    assert code == 2, err
    assert said in flat(err) and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("args,said", [
    (["--campaign", "c", "--campaign-attr", "A", "--stage", "s"], "--campaign and --campaign-attr"),
    (["--campaign-attr", "A", "--stage-attr", "B", "--default-campaign", "x" * 1025],
     "--default-campaign must be 1 to 1,024 characters"),
])
def test_tail_checks_the_routing_options_before_it_needs_kafka(tmp_path, capsys, monkeypatch, args, said):
    from tests.stagewatch.test_cli_escaping import flat, run_cli

    monkeypatch.delenv("STAGEWATCH_KAFKA", raising=False)
    code, _, err = run_cli(capsys, "tail", "condor-log", str(tmp_path / "EventLog"), *args)
    assert code == 2 and said in flat(err), err
    assert not list(tmp_path.iterdir())  # no checkpoint, nothing created
