"""A user's path from an HTCondor log to numbers: convert, replay, status (embedded store)."""

import json
from pathlib import Path

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
