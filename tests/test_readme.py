"""The README's shell blocks, run as written, the way a new user pastes them.

Every ```bash block of README.md belongs to a section this module knows; a new block without a test
fails `test_every_bash_block_is_tested`. The tours run exactly as written (one `bash` process per block,
`set -e`, the installed `stagewatch` command, a user's environment without any STAGEWATCH_* variable),
in order, in one new empty directory:

* "On a fresh machine": `pip install -e .` and `bash deploy/local/test.sh` cannot run inside a test (the
  one installs this checkout, the other runs this very suite), so the test checks that the CI entry
  point (.ci/run) runs deploy/local/test.sh and that it installs the checkout (`pip install -e`) and
  runs the tests; `stagewatch demo` then runs from an empty directory and its output is checked against
  the README's description of it.
* "Using it": the embedded tour, on chDB.
* "Streaming on real servers": `stagewatch dev up` on the DEFAULT ports, as a user runs it (the test
  is skipped, naming the holder, if something else holds one of them), a worker and a log follower in
  the background, then `dev down`. Whatever happens, the test stops what the block left running: the
  block's own processes by pid (its process group) and the servers by the pids `dev down` reads from
  the dev dir's state.json; then it checks the ports are free.
* "Benchmarks": the scripts are started with `--help` from the checkout (a real run takes minutes and
  is a measurement, not a test).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagewatch import devservers

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

FRESH, EMBEDDED, STREAMING, BENCH = "On a fresh machine", "Using it", "Streaming on real servers", "Benchmarks"
DEFAULT_PORTS = {
    devservers.DEFAULT_KAFKA_PORT: "Kafka listener", devservers.DEFAULT_KAFKA_CONTROLLER_PORT: "Kafka controller",
    devservers.DEFAULT_CH_PORT: "ClickHouse native", devservers.DEFAULT_CH_HTTP_PORT: "ClickHouse HTTP",
}
TOUR_TIMEOUT_S = 300
STREAM_TIMEOUT_S = 600


def bash_blocks(text: str) -> list[tuple[str, str]]:
    """(heading, body) of every ```bash block, the heading being the nearest `#`-heading above it."""
    blocks = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            heading = m.group(1).strip()
        if line.strip() == "```bash":
            body = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append((heading, "\n".join(body) + "\n"))
        i += 1
    return blocks


def block(heading: str) -> str:
    found = [body for h, body in bash_blocks(README.read_text()) if h == heading]
    assert len(found) == 1, f"README.md should have exactly one ```bash block under {heading!r}, has {len(found)}"
    return found[0]


def commands(body: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = body.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(" ".join(words))
    return out


def user_env() -> dict[str, str]:
    """A new user's environment: this one minus every STAGEWATCH_* variable (no dev dir, no store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEWATCH_")}
    env.pop("PYTHONPATH", None)  # the installed command, as the README says (pip install -e .)
    return env


@pytest.fixture(scope="module")
def stagewatch_command() -> str:
    path = shutil.which("stagewatch")
    if not path:
        pytest.fail("The `stagewatch` command is not installed; run `pip install -e .` (deploy/local/test.sh does).")
    return path


def _group_members(pgid: int) -> list[int]:
    """Live pids whose process group is ``pgid`` (read from /proc; the block's background jobs)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(proc.name))
    return pids


def run_block(body: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run one block in its own `bash` (set -e) and session; on return nothing of it runs any more.

    Background jobs (`stagewatch worker &`) share the block's process group (a script has no job
    control); those still alive when bash ends (e.g. after a failed command) or times out are stopped
    by pid. Output goes to files, not pipes: a background job holding a pipe open must not make a
    finished block look like a hanging one.
    """
    out_path, err_path = cwd.parent / f"{cwd.name}.stdout", cwd.parent / f"{cwd.name}.stderr"
    with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
        proc = subprocess.Popen(["bash", "-c", "set -e\n" + body], cwd=cwd, env=user_env(), text=True,
                                stdout=out_f, stderr=err_f, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        deadline = time.monotonic() + 30
        while (left := _group_members(proc.pid)) and time.monotonic() < deadline:
            sig = signal.SIGTERM if time.monotonic() < deadline - 10 else signal.SIGKILL
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(0.5)
        proc.wait()
    assert not _group_members(proc.pid), "processes of the block survived SIGKILL"
    out, err = out_path.read_text(), err_path.read_text()
    if timed_out:
        pytest.fail(f"the block did not finish within {timeout:.0f} s.\n--- stdout (end)\n{out[-3000:]}\n"
                    f"--- stderr (end)\n{err[-6000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _explain(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\n--- stdout (end)\n{res.stdout[-3000:]}\n--- stderr (end)\n{res.stderr[-6000:]}"


# --------------------------------------------------------------------------------------------------


def test_every_bash_block_is_tested():
    headings = [h for h, _ in bash_blocks(README.read_text())]
    assert sorted(headings) == sorted([FRESH, EMBEDDED, STREAMING, BENCH]), (
        f"README.md's ```bash blocks are under {headings}; a new block needs a test in tests/test_readme.py")


def test_fresh_machine_block_is_what_ci_runs(stagewatch_command, tmp_path):
    cmds = commands(block(FRESH))
    assert cmds == ["pip install -e . && stagewatch demo", "bash deploy/local/test.sh"], cmds
    ci = commands((REPO / ".ci" / "run").read_text())
    assert "exec bash deploy/local/test.sh" in ci, ci
    script = commands((REPO / "deploy" / "local" / "test.sh").read_text())
    installs = [c for c in script if re.search(r"\bpip install\b.*(^|\s)-e \.(\[[a-z,]+\])?(\s|$)", c)]
    assert installs, f"deploy/local/test.sh does not install the checkout (pip install -e .): {script}"
    assert any(re.search(r"-m pytest\b", c) for c in script[script.index(installs[0]):]), script

    # The demo, from an empty directory, as the README describes it.
    res = run_block("stagewatch demo\n", tmp_path, TOUR_TIMEOUT_S)
    assert res.returncode == 0, _explain(res)
    assert "fd_mcgen_cry_fhc_all" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 120  # the compact overview fits 120 columns
    row = next(line for line in res.stdout.splitlines() if "fd_mcgen_cry_fhc_all" in line)
    assert re.search(r"\b29,690/30,000 99\.0%\s+310\s", row), row  # 310 input files without a located output
    assert "STALLED" in res.stdout  # the stalled stage
    js = run_block("stagewatch status --store chdb:stagewatch-demo --format json --now 2017-06-20T12:00:00Z\n",
                   tmp_path, TOUR_TIMEOUT_S)
    talk = next(s for s in json.loads(js.stdout)["stages"] if s["stage"] == "fd_mcgen_cry_fhc_all")
    assert (talk["input_files"], talk["jobs"], talk["files_without_located_output"]) == (30_000, 44_248, 310)
    n = int(re.search(r"([\d,]+) events", res.stderr).group(1).replace(",", ""))
    assert 350_000 <= n <= 362_000, res.stderr  # "about 356,000 events"
    # the next command the demo suggests runs as printed and shows what the demo showed (its stall clock)
    hint = re.search(r"Next: `(stagewatch status [^`]*)`", " ".join(res.stderr.split())).group(1)
    assert " --now 2017-06-20T" in hint, hint
    again = run_block(hint + "\n", tmp_path, TOUR_TIMEOUT_S)
    assert again.returncode == 0, _explain(again)
    assert again.stdout.count("STALLED") == res.stdout.count("STALLED") == 1, again.stdout


@pytest.fixture(scope="module")
def tour(stagewatch_command, tmp_path_factory):
    """The embedded tour, run once in a new empty directory that the streaming tour continues in."""
    d = tmp_path_factory.mktemp("readme-tour")
    assert not any(d.iterdir())
    return d, run_block(block(EMBEDDED), d, TOUR_TIMEOUT_S)


def test_embedded_tour(tour):
    d, res = tour
    assert res.returncode == 0, _explain(res)
    assert "wrote 356124 events of preset nova-talk" in res.stderr
    assert len((d / "talk.jsonl").read_text().splitlines()) == 356_124
    assert "converted 16 job events from job.log" in res.stderr
    assert "0 invalid" in res.stderr
    missing = (d / "recover.txt").read_text().splitlines()
    assert len(missing) == 310 == len(set(missing))  # "the 310 files"
    for stage in ("fd_mcgen_cry_fhc_all", "fd_reco_cry_fhc_all", "fd_data_period1", "fd_keepup_raw2root", "condor"):
        assert stage in res.stdout, stage
    assert "fifebatch1#200.0: attempts (sample / condor)" in res.stdout and "removed" in res.stdout
    assert "files_failed" in res.stdout
    dims = (d / "recover.dims").read_text().splitlines()  # the same 310 files as SAM dimensions strings
    assert dims and all(line.startswith("file_name ") and len(line) <= 1024 for line in dims)
    assert sorted(n for line in dims for n in line[len("file_name "):].split(", ")) == sorted(missing)
    assert "as of 2017-06-20 12:00 UTC" in res.stdout  # status --at
    assert "verify ok: 5 stage(s)" in res.stderr


def test_streaming_tour(tour):
    d, embedded = tour
    if embedded.returncode != 0:
        pytest.fail("the embedded tour failed first; the streaming tour continues from it:\n" + _explain(embedded))
    taken = {port: what for port, what in DEFAULT_PORTS.items() if not devservers.port_free(port)}
    if taken:
        pytest.skip("the README's `stagewatch dev up` uses the default ports, and these are taken: " + ", ".join(
            f"{p} ({what}) by {devservers.port_owner(p) or 'an unknown process'}" for p, what in taken.items()))
    dev_dir = d / devservers.DEFAULT_DIR
    try:
        res = run_block(block(STREAMING), d, STREAM_TIMEOUT_S)
    finally:
        outcome = devservers.down(dev_dir)  # a no-op after the block's own `dev down`
        busy = [p for p in DEFAULT_PORTS if not devservers.port_free(p)]
        assert not busy, f"ports {busy} still taken after dev down ({outcome})"
    assert res.returncode == 0, _explain(res)
    assert "verify ok: 5 stage(s)" in res.stderr, _explain(res)
    assert "published 356,124 events" in res.stderr
    assert "published 16 events" in res.stderr  # the log follower, stopped by SIGTERM, says what it sent
    assert "kafka: stopped" in res.stdout and "clickhouse: stopped" in res.stdout
    assert (d / "embedded.json").read_text().count('"campaign"') == 5
    state = devservers.DevState.load(dev_dir)
    assert state.kafka["port"] == devservers.DEFAULT_KAFKA_PORT  # the defaults a user gets
    assert state.clickhouse["tcp_port"] == devservers.DEFAULT_CH_PORT
    assert not state.kafka["pid"] and not state.clickhouse["pid"]


def test_benchmark_commands_start_from_the_checkout():
    cmds = commands(block(BENCH))
    assert cmds and all(c.startswith("python bench/") for c in cmds), cmds
    for c in cmds:
        script = c.split()[1]
        res = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "usage" in res.stdout, (c, res.stderr[-2000:])
