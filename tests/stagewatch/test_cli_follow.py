"""`stagewatch follow --config campaign.toml`: SAM stages and schedd-wide logs of one campaign, into a store."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.simulator import simulate_many, tiny
from processors.engine import Engine
from tests.ingest.samweb_standin import SamStandin, follow_config, simulated_campaign, write_schedd_logs

CLI = [sys.executable, "-c", "from stagewatch.cli import main; main()"]
KEYS = ("input_files", "files_located", "files_declared_not_located", "files_consumed_no_output", "files_in_flight",
        "files_failed", "files_pending", "outputs_declared", "outputs_located", "jobs", "jobs_idle", "jobs_running",
        "jobs_held", "jobs_suspended", "jobs_completed", "jobs_completed_ok", "jobs_removed", "job_attempts",
        "restarts", "restarts_by_cause")


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWATCH_")}
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def truth(events) -> dict:
    e = Engine()
    e.apply_all(events)
    return {n["stage"]: {k: n[k] for k in KEYS} for n in e.numbers(as_of=2e9)}


def got(store: str, cwd: Path, campaign: str) -> dict:
    r = run(["status", "--store", store, "--campaign", campaign, "--as-of", "2000000000", "--format", "json"], cwd)
    assert r.returncode == 0, r.stderr
    return {s["stage"]: {k: s[k] for k in KEYS} for s in json.loads(r.stdout)["stages"]}


@pytest.fixture
def campaign(tmp_path):
    """The tiny preset as campaign `nova_follow`, and another campaign's jobs in the same schedd logs."""
    ours = list(simulate_many([dataclasses.replace(s, campaign="nova_follow") for s in
                               tiny(duplicate_fraction=0.0, reorder_window_s=0.0)], 1))
    theirs = [e for e in simulate_many([dataclasses.replace(s, campaign="someone_else") for s in
                                        tiny(duplicate_fraction=0.0, reorder_window_s=0.0)], 7)
              if type(e).__name__ == "JobEvent"]
    assert not {e.job_id for e in theirs} & {e.job_id for e in ours if type(e).__name__ == "JobEvent"}
    camp = simulated_campaign(ours)
    mixed = simulated_campaign(ours + theirs).job_events
    logs = write_schedd_logs(mixed, tmp_path / "logs")
    with SamStandin(camp.scenario) as s:
        yield camp, s, follow_config(tmp_path / "campaign.toml", "nova_follow", s.base, camp, logs)


def test_once_into_a_store_gives_the_campaigns_numbers_and_again_changes_none(campaign, tmp_path):
    camp, standin, config = campaign
    expected = truth(camp.truth_events)
    assert set(expected) == {"mcgen", "reco"}
    r = run(["follow", "--config", str(config), "--once", "--store", "chdb:st"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert got("chdb:st", tmp_path, "nova_follow") == expected
    assert "of other campaigns left out" in r.stderr and "sam mcgen" in r.stderr and "sam reco" in r.stderr
    assert (tmp_path / "campaign.checkpoints").is_dir()
    other = [line for line in r.stderr.splitlines() if line.startswith("condor ")]
    assert other and all(" 0 of other campaigns" not in line for line in other)
    r = run(["follow", "--config", str(config), "--once", "--store", "chdb:st"], tmp_path)  # restart: nothing new
    assert r.returncode == 0, r.stderr
    assert got("chdb:st", tmp_path, "nova_follow") == expected
    r = run(["status", "--store", "chdb:st", "--campaign", "someone_else"], tmp_path)
    assert r.returncode == 2  # the other campaign's jobs were left out
    assert run(["verify", "--store", "chdb:st"], tmp_path).returncode == 0


def test_follows_until_sigterm_with_a_status_line_per_source_per_interval(campaign, tmp_path):
    camp, standin, config = campaign
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWATCH_")}
    proc = subprocess.Popen(CLI + ["follow", "--config", str(config), "--out", "events.jsonl"], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while standin.count("/definitions/") < 6 and time.time() < deadline:  # three polls of each stage
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    lines = stderr.splitlines()
    for source in ("sam mcgen:", "sam reco:", "condor fifebatch1.fnal.gov:", "condor fifebatch2.fnal.gov:"):
        assert sum(line.startswith(source) for line in lines) >= 2, (source, stderr[-2000:])
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len({e["event_id"] for e in events}) == len(events)
    assert {e["campaign"] for e in events} == {"nova_follow"}
    r = run(["replay", "-q", "--store", "chdb:st", "events.jsonl"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert got("chdb:st", tmp_path, "nova_follow") == truth(camp.truth_events)


@pytest.mark.parametrize("text,message", [
    (None, "No config at"),
    ("campaign = ", "not valid TOML"),
    ('campaign = "c"\ncampain = "x"\n[[condor]]\nlogs = ["x"]\n', "unknown key(s) campain"),
    ('campaign = "c"\n', "nothing to follow"),
    ('campaign = "c"\n[[stages]]\nname = "s"\ndefinition = "d"\n', "no SAM url"),
    ('campaign = "c"\n[[condor]]\nlogs = []\n', "non-empty list"),
    ('campaign = "c"\ninterval = "soon"\n[[condor]]\nlogs = ["x"]\n', "`interval` must be a"),
    ('[[condor]]\nlogs = ["x"]\n', "`campaign` is missing"),
    ('campaign = "c"\n[[condor]]\nlogs = ["x"]\ncampaign_attr = "A"\n', "No stage"),
    ('campaign = "c"\n[[stages]]\nname = "s"\ndefinition = "d e"\nurl = "http://x/api"\n', "not a SAM name"),
])
def test_config_errors_are_sentences(tmp_path, text, message):
    cfg = tmp_path / "c.toml"
    if text is not None:
        cfg.write_text(text)
    r = run(["follow", "--config", str(cfg), "--once", "--out", "x.jsonl"], tmp_path, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == (["c.toml"] if text is not None else [])  # nothing made


def test_a_sam_error_is_counted_and_the_logs_still_followed(campaign, tmp_path):
    camp, standin, config = campaign
    standin.scenario.query_limit = 5
    r = run(["follow", "--config", str(config), "--once", "--store", "chdb:st"], tmp_path)
    assert r.returncode == 1
    assert "query limit" in r.stderr and "1 errors" in r.stderr
    jobs = got("chdb:st", tmp_path, "nova_follow")
    assert {s: n["jobs"] for s, n in jobs.items()} == {s: n["jobs"] for s, n in truth(camp.truth_events).items()}


def test_a_per_submission_log_takes_the_configs_campaign_and_its_stage(tmp_path):
    sample = Path(__file__).resolve().parents[2] / "ingest" / "samples" / "condor_job.log"
    (tmp_path / "c.toml").write_text(f'campaign = "nova_x"\n[[condor]]\nlogs = ["{sample}"]\nstage = "keepup"\n'
                                     'schedd = "fifebatch1"\n')
    r = run(["follow", "--config", "c.toml", "--once", "--out", "ev.jsonl"], tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    conv = run(["convert", "condor-log", str(sample), "--campaign", "nova_x", "--stage", "keepup", "--schedd",
                "fifebatch1", "--out", "conv.jsonl"], tmp_path)
    assert conv.returncode == 0, conv.stderr
    got = sorted((tmp_path / "ev.jsonl").read_text().splitlines())
    assert got and got == sorted((tmp_path / "conv.jsonl").read_text().splitlines())
