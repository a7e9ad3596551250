"""bench/scale_bench.py end to end at tiny scale, and its checks and statistics."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from bench import scale_bench, scale_procs, scale_steps


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.servers
def test_runs_end_to_end_at_tiny_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    assert scale_bench.main(["--jobs", "600", "--runs", "2", "--cache", str(tmp_path / "cache"),
                             "--json", str(out)]) == 0
    text = capsys.readouterr().out
    fig = json.loads(out.read_text())
    assert fig["lines"] > 0 and fig["jobs"] > 0 and fig["input_files"] > fig["jobs"]
    for name in ("chdb", "server"):
        st = fig["stores"][name]
        assert st["lines"] == fig["lines"] and st["invalid"] == 0 and st["disk_bytes"] > 0
        assert {"status", "status --wide/--format json", "files --bucket files_failed", "files --bucket files_pending",
                "jobs --sort restarts --limit 50", "missing-files"} <= set(st["timings"])
        assert any(k.startswith("job ") for k in st["timings"])
        assert all(t["runs"] == 2 and 0 < t["median_ms"] <= t["p95_ms"] for t in st["timings"].values())
        panels = st["panels"]
        assert any(k.startswith("overview panel Stages") for k in panels)
        assert any(k.startswith("stage panel Stage numbers") for k in panels)
        assert st["peak_rss_mib"] > 0
        assert {"raw_events", "job_state", "file_state", "stage_numbers"} <= set(st["parts"])
    assert fig["stores"]["server"]["server_peak_rss_mib"] > 0
    assert fig["stores"]["server"]["server_cpu_s"] > 0
    assert all(fig["stores"][n]["cpu_s"] > 0 and fig["stores"][n]["events_per_cpu_s"] > 0 for n in ("chdb", "server"))
    poms = fig["poms"]
    assert poms["counts"]["jobs"] == fig["jobs"] and poms["ratio_chdb"] > 0 and poms["ratio_server"] > 0
    assert "check: status on chDB equals status on the ClickHouse server: same numbers" in text
    assert "check: the POMS-style overview equals stagewatch's status: same numbers" in text
    # the two replays ran at the same time, each in its own process; then reads, POMS: one step each
    steps = {r["step"]: r for r in fig["steps"]}
    assert list(steps) == ["simulate", "replay chdb", "replay server", "reads chdb", "reads server", "poms load",
                           "poms reads"]
    a, b = steps["replay chdb"], steps["replay server"]
    assert a["started"] < b["ended"] and b["started"] < a["ended"]
    assert fig["stores"]["chdb"]["replay_peak_rss_mib"] > 0 and fig["stores"]["server"]["replay_peak_rss_mib"] > 0
    assert re.search(r"total wall time +[\d.]+ = [\d.]+ min", text)
    assert poms["overview"]["runs"] == 2 and "ratio: stagewatch `status --wide/--format json` on chdb" in text
    # nothing left behind: servers stopped by pid, work directory removed
    work = Path(re.search(r"stores and servers under (\S+)", text).group(1))
    assert not work.exists()
    ch_pid = int(re.search(r"ClickHouse 18.16 server on port \d+ \(pid (\d+)\)", text).group(1))
    pg_pid = int(re.search(r"PostgreSQL on port \d+ \(pid (\d+)\)", text).group(1))
    assert not _pid_alive(ch_pid) and not _pid_alive(pg_pid)
    # the cached lines are reused by the next run
    assert list((tmp_path / "cache").glob("scale-600-3-1.jsonl"))


@pytest.mark.servers
def test_stream_with_one_and_two_workers_at_tiny_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    assert scale_bench.main(["--jobs", "300", "--runs", "1", "--skip", "server,poms,panels", "--stream",
                             "--partitions", "2", "--cache", str(tmp_path), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    fig = json.loads(out.read_text())
    for n in (1, 2):
        assert fig[f"stream_{n}"]["events_per_s"] > 0 and len(fig[f"stream_{n}"]["peak_rss_mib"]) == n
        assert f"check: status after {n} worker(s) equals the embedded replay's: same numbers" in text


def test_unknown_skip_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        scale_bench.main(["--skip", "chdb,nope"])
    assert exc.value.code == 2
    assert "unknown step(s) nope; choose from chdb, server, poms, panels" in capsys.readouterr().err


def test_a_difference_fails_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    a = [{"campaign": "c", "stage": "s", "jobs": 3, "files_located": 1}]
    b = [{"campaign": "c", "stage": "s", "jobs": 3, "files_located": 2}, {"campaign": "c", "stage": "t", "jobs": 0}]
    diffs = scale_bench.status_diffs(a, b, "chDB", "server")
    assert diffs == ["c/t: only in server", "c/s files_located: chDB 1 != server 2"]
    with pytest.raises(scale_bench.BenchFailure, match=r"CHECK FAILED: x: 2 difference\(s\)"):
        scale_bench.fail_if(diffs, "x")
    scale_bench.fail_if([], "y")
    assert "check: y: same numbers" in capsys.readouterr().out


def test_median_and_nearest_rank_p95() -> None:
    s = scale_steps.stats_ms([i / 1000 for i in range(20, 0, -1)])  # 1..20 ms, any order
    assert s == {"median_ms": pytest.approx(10.5), "p95_ms": pytest.approx(19.0), "runs": 20}
    assert scale_steps.stats_ms([0.005])["p95_ms"] == pytest.approx(5.0)


class _FakeClock:
    """A clock that only a query moves: each call of the timed function takes ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.calls = 0.0, step, 0

    def __call__(self) -> float:
        return self.now

    def query(self) -> int:
        self.now += self.step
        self.calls += 1
        return self.calls


def test_time_budget_stops_timing_a_slow_query() -> None:
    clock = _FakeClock(10.0)  # a 10 s query, a 35 s budget, 20 runs asked
    stats, result = scale_steps.timed(clock.query, 20, 35.0, clock=clock)
    # warm-up (10 s) + 3 timed runs: the third ends past the budget, and timing stops there
    assert clock.calls == 4 and result == 4
    assert stats["runs"] == 3 and stats["budget_hit"] is True
    assert stats["median_ms"] == pytest.approx(10_000.0) and stats["seconds"] == pytest.approx(40.0)


def test_a_query_slower_than_the_budget_is_still_timed_once() -> None:
    clock = _FakeClock(100.0)
    stats, _ = scale_steps.timed(clock.query, 20, 60.0, clock=clock)
    assert clock.calls == 2 and stats["runs"] == 1 and stats["budget_hit"] is True
    assert stats["median_ms"] == pytest.approx(100_000.0)


def test_a_fast_query_makes_every_run() -> None:
    clock = _FakeClock(0.01)
    stats, _ = scale_steps.timed(clock.query, 20, 60.0, clock=clock)
    assert clock.calls == 21 and stats["runs"] == 20 and stats["budget_hit"] is False


def test_step_table_shows_each_step_and_the_total_against_the_goal(capsys: pytest.CaptureFixture[str]) -> None:
    steps = scale_procs.Steps()
    steps.add("simulate", 0.0, 2.0, "cached: x.jsonl")
    steps.add("replay chdb", 2.0, 600.0, "in parallel")
    steps.add("replay server", 2.0, 1500.0, "in parallel")
    steps.print_table(1600.0, 1_000_000)
    text = capsys.readouterr().out
    assert re.search(r"replay chdb +598\.0 +2\.0 +600\.0  in parallel", text)
    assert re.search(r"replay server +1498\.0 +2\.0 +1500\.0", text)
    assert "total wall time" in text and "1600.0 = 26.7 min (goal at 1,000,000 jobs: under 30 min: met)" in text
    steps.print_table(1800.5, 1_000_000)
    assert "30.0 min (goal at 1,000,000 jobs: under 30 min: NOT met)" in capsys.readouterr().out
    steps.print_table(600.0, 100_000)  # a smaller run is not judged against the goal
    assert "10.0 min (goal at 1,000,000 jobs: under 30 min: this run: 100,000 jobs)" in capsys.readouterr().out


def test_goals_are_printed_next_to_both_status_views() -> None:
    assert scale_bench.goal_ms(scale_steps.STATUS) == scale_bench.goal_ms(scale_steps.STATUS_WIDE) == 50.0
    assert scale_bench.goal_ms("missing-files") == 200.0


@pytest.mark.servers
def test_budget_and_step_table_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """chDB only (no server needed, but slow): a budget of a microsecond times every query exactly once."""
    out = tmp_path / "figures.json"
    assert scale_bench.main(["--jobs", "300", "--runs", "5", "--skip", "server,poms,panels", "--time-budget-s",
                             "0.000001", "--cache", str(tmp_path), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    fig = json.loads(out.read_text())
    timings = fig["stores"]["chdb"]["timings"]
    assert {scale_steps.STATUS, scale_steps.STATUS_WIDE} <= set(timings)
    assert all(t["runs"] == 1 and t["budget_hit"] for t in timings.values())
    assert "1 run(s), stopped by the time budget  [goal < 50 ms" in text
    assert [r["step"] for r in fig["steps"]] == ["simulate", "replay chdb", "reads chdb"]
    assert 0 < fig["wall_s"] < 600 and "total wall time" in text


def test_simulating_in_two_processes_writes_the_same_lines_as_one(tmp_path: Path) -> None:
    """The parts are merged in simulate_many's order: byte for byte the single-process stream."""
    from bench.scale_campaigns import scale_specs
    from ingest.simulator import simulate_many
    from schemas.events import encode_event

    out = tmp_path / "two.jsonl"
    n = scale_bench.generate(12_000, 3.0, 5, out, parts=2)  # 2 stages: a finished and a running one
    expected = b"".join(encode_event(ev) + b"\n" for ev in simulate_many(scale_specs(12_000, 3.0), 5))
    got = out.read_bytes()
    assert n == expected.count(b"\n") and got == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.jsonl"]  # parts and temporary file removed


def test_a_ratio_below_ten_keeps_its_digits() -> None:
    assert scale_bench.fmt_ratio(520.4) == "520x" and scale_bench.fmt_ratio(0.381) == "0.38x"
    assert scale_bench.fmt_ratio(3.04) == "3x" and scale_bench.fmt_ratio(12.6) == "13x"


def test_a_step_ends_when_its_process_exits_not_when_its_result_is_read() -> None:
    """Two children at once: the first to finish is not stamped with the time the other one took."""
    import time

    child = scale_procs.Child("bad", "time", "-", "-", "-", "-")  # exits 1 at once: "-" is no run count
    while child.proc.poll() is None:
        time.sleep(0.05)
    time.sleep(2.0)  # the result is read 2 s after the process exited
    t_read = scale_procs.since_start()
    with pytest.raises(scale_procs.BenchFailure, match=r"step time \(bad\) failed \(exit 1\)"):
        child.result()
    assert child.ended is not None and child.ended < t_read - 1.5


def test_cpu_seconds_of_a_process_grow_with_its_work_and_are_zero_when_it_is_gone() -> None:
    import time

    before = scale_procs.cpu_seconds(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert scale_procs.cpu_seconds(os.getpid()) - before >= 0.2
    assert scale_procs.cpu_seconds(2**22 + 12345) == 0.0  # above the kernel's pid_max: no such process
