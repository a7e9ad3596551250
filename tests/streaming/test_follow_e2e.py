"""Issue 8 end to end: a NOvA-like campaign followed from SAM and its schedds' event logs, through Kafka and a
worker, into the ClickHouse server, gives the numbers of its ground truth.

The campaign is the simulator's (two stages, 3,000 input files, their jobs with evictions, holds,
recoveries): SAM's snapshot of it (definitions, one project per submission, children with their parents
and locations) is served by the SAMWeb stand-in, and its jobs are written as two schedd-wide event logs
(028 events after each event, rotated once). `stagewatch follow` reads both, with another campaign's jobs
mixed into the logs, is killed (-9) mid-way and restarted; the numbers in ClickHouse equal the simulator's
ground truth. Then it is killed and restarted again: nothing changes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.simulator import TALK_NOW, StageSpec, simulate_many
from processors.engine import Engine
from stagewatch.reading import read_status
from tests.ingest.samweb_standin import SamStandin, follow_config, simulated_campaign, write_schedd_logs
from tests.streaming.conftest import CLI, wait_until

pytestmark = pytest.mark.servers

KEYS = ("input_files", "files_located", "files_declared_not_located", "files_consumed_no_output", "files_in_flight",
        "files_failed", "files_pending", "files_without_located_output", "completion_pct", "outputs_declared",
        "outputs_located", "jobs", "jobs_idle", "jobs_running", "jobs_held", "jobs_suspended", "jobs_completed",
        "jobs_completed_ok", "jobs_completed_failed", "jobs_removed", "job_attempts", "restarts", "restarts_by_cause")
AS_OF = 2_000_000_000.0  # SAM facts without a SAM time carry the time they were first seen (now)
DAY, HOUR = 86400.0, 3600.0


def nova_like(campaign: str) -> list[StageSpec]:
    return [
        StageSpec(campaign=campaign, stage="fd_mcgen", n_input_files=2000, n_jobs=2950, n_unlocated=21,
                  start_ts=TALK_NOW - 6 * DAY, batch_size=400, batch_interval_s=3 * HOUR, p_evict=0.08,
                  p_evict_silent=0.03, p_hold=0.03),
        StageSpec(campaign=campaign, stage="fd_reco", n_input_files=1000, n_unlocated=350, end="running",
                  end_ts=TALK_NOW, start_ts=TALK_NOW - 3 * DAY, batch_size=200, batch_interval_s=2 * HOUR),
    ]


def numbers_of(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["stage"]: {k: r[k] for k in KEYS} for r in rows}


def start_follow(config: Path, pipe: Any, cwd: Path) -> subprocess.Popen:
    log = open(cwd / "follow.log", "ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWATCH_")}
    return subprocess.Popen(CLI + ["--log-level", "INFO", "follow", "--config", str(config), "--kafka", pipe.kafka,
                                   "--topic-prefix", pipe.prefix], cwd=cwd, stdout=log, stderr=log, env=env)


def test_a_followed_campaign_equals_its_ground_truth(pipeline: Any, tmp_path: Path) -> None:
    p = pipeline()
    ours = list(simulate_many(nova_like(p.campaign), 1))
    theirs = [e for e in simulate_many(nova_like(p.campaign + "_other")[:1], 5) if type(e).__name__ == "JobEvent"]
    assert not {e.job_id for e in theirs} & {e.job_id for e in ours if type(e).__name__ == "JobEvent"}
    camp = simulated_campaign(ours, tier="artroot")
    logs = write_schedd_logs(simulated_campaign(ours + theirs).job_events, tmp_path / "logs")
    e = Engine()
    e.apply_all(camp.truth_events)
    expected = numbers_of(e.numbers(as_of=AS_OF))
    assert sum(n["input_files"] for n in expected.values()) == 3000
    assert expected["fd_mcgen"]["files_without_located_output"] == 21
    assert all(n["restarts"] > 0 for n in expected.values())
    with SamStandin(camp.scenario) as standin:
        config = follow_config(tmp_path / "campaign.toml", p.campaign, standin.base, camp, logs, interval=2.0,
                               sam_interval=2.0, output_dims="data_tier artroot")
        p.worker("w1")
        f0 = start_follow(config, p, tmp_path)
        f1 = f2 = None
        try:
            # kill -9 mid-way (SAM polled, the logs being read), then restart: nothing lost, nothing twice
            wait_until(lambda: standin.count("/files/metadata") >= 1, 60, "the first SAM poll")
            time.sleep(1.0)
            os.kill(f0.pid, signal.SIGKILL)
            f0.wait(10)
            f1 = start_follow(config, p, tmp_path)
            got: dict[str, Any] = {}

            def converged() -> bool:
                nonlocal got
                try:
                    got = numbers_of(read_status(p.store, campaign=p.campaign, as_of=AS_OF)["stages"])
                except Exception:
                    return False
                return got == expected

            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not converged():
                assert f1.poll() is None, (tmp_path / "follow.log").read_text()[-3000:]
                time.sleep(1.0)
            assert got == expected, {s: {k: (expected[s][k], got.get(s, {}).get(k)) for k in KEYS
                                         if expected[s][k] != got.get(s, {}).get(k)} for s in expected}
            # kill -9 and restart: the same facts again change nothing
            os.kill(f1.pid, signal.SIGKILL)
            f1.wait(10)
            polls = standin.count("/definitions/")
            f2 = start_follow(config, p, tmp_path)
            wait_until(lambda: standin.count("/definitions/") >= polls + 4, 60, "the restarted follower to poll SAM")
            time.sleep(3.0)
            assert converged(), got
            os.kill(f2.pid, signal.SIGTERM)
            assert f2.wait(60) == 0
        finally:
            for proc in (f0, f1, f2):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        text = (tmp_path / "follow.log").read_text()
        requests = [int(x) for x in re.findall(r"sam\.poll .*? requests=(\d+)", text)]
        print(f"\nSAM polls: {len(requests)}, requests per poll: min {min(requests)} max {max(requests)}")
        print("\n".join(line for line in text.splitlines() if line.startswith(("sam ", "condor ")))[-3000:])
        n_projects = max(len(st["projects"]) for st in camp.stages.values())
        assert max(requests) <= 1 + 5 * n_projects + 1 + 10  # bounded: no per-file request
        assert "other campaigns left out" in text
        assert p.campaign + "_other" not in {r["campaign"] for r in read_status(p.store, as_of=AS_OF)["stages"]}


def test_sam_poll_into_kafka_twice_counts_once(pipeline: Any, tmp_path: Path) -> None:
    """`sam poll --kafka` (one poll, then a second poller with its own checkpoint): the worker's numbers equal the
    SAM scenario's, the second poller's copies counting once."""
    from tests.ingest.samweb_standin import bucket_scenario

    p = pipeline()
    sc, expected = bucket_scenario(400, seed=8)
    w = p.worker("w1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWATCH_")}
    with SamStandin(sc) as standin:
        for ckpt in ("a.json", "b.json"):
            r = subprocess.run(CLI + ["sam", "poll", "--url", standin.base, "--definition", "nova_def", "--project",
                                      "nova_proj_1", "--project", "nova_proj_2_recovery", "--campaign", p.campaign,
                                      "--stage", "fd_reco", "--output-dims", "data_tier reco", "--once",
                                      "--checkpoint", ckpt, "--kafka", p.kafka, "--topic-prefix", p.prefix],
                               cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
            assert r.returncode == 0, r.stderr
    got: dict[str, Any] = {}

    def converged() -> bool:
        nonlocal got
        try:
            [row] = read_status(p.store, campaign=p.campaign, as_of=AS_OF)["stages"]
        except Exception:
            return False
        got = {k: row[k] for k in expected}
        return got == expected

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not converged():
        assert w.alive(), w.log()[-3000:]
        time.sleep(0.5)
    assert got == expected
