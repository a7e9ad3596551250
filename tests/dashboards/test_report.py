"""`stagewatch report`: the self-contained HTML page, opened in headless Chromium (Debian's `chromium`,
installed by deploy/local/install-deps-report.sh).

Chromium runs with no network (a host resolver that resolves nothing, background networking off), takes a
screenshot, and dumps the DOM after the page's script ran: the charts must be there as SVG and the console
must be silent (Chromium logs every console message and uncaught error as a CONSOLE line on stderr).
Without chromium the browser tests are skipped locally and fail under CI (CI must run the install script).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from processors.numbers import NUMBERS_BY_NAME
from stagewatch.report import build_report, collect
from stagewatch.report_static import CHARTS_PER_STAGE
from tests.dashboards import scenarios
from tests.dashboards.conftest import Loaded

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (run deploy/local/install-deps-report.sh)")


def chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is missing: run deploy/local/install-deps-report.sh"
    profile = tmp / f"profile-{time.monotonic_ns()}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
           "--window-size=1400,1600", *extra, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def test_report_data_are_the_status_numbers(chdb_loaded: Loaded) -> None:
    data = collect(chdb_loaded.store, campaign=scenarios.PROBLEM)
    by = {s["stage"]: s for s in data["stages"]}
    assert sorted(by) == ["reco", "storm", "stuck"]
    assert [b["value"] for b in by["reco"]["buckets"]] == [2, 0, 1, 1, 1, 1]
    assert {r["name"]: r["value"] for r in by["storm"]["restarts"]}["evicted"] == 8
    assert sum(v for _, v in by["reco"]["located_per_hour"]) == by["reco"]["files_located"] == 2
    assert sum(v for _, v in by["reco"]["completed_per_hour"]) == by["reco"]["jobs_completed"] == 4
    assert by["stuck"]["stalled"] and not by["storm"]["stalled"]


def test_report_is_self_contained(chdb_loaded: Loaded) -> None:
    page = build_report(chdb_loaded.store)
    # nothing to fetch: no external scripts, styles, images, fonts or imports
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    # hover definitions: every number column header carries its glossary definition
    for name in ("input_files", "files_located", "completion_pct", "jobs_running", "restarts", "stalled"):
        assert f'data-number="{name}"' in page
        assert html.escape(NUMBERS_BY_NAME[name].definition) in page
    assert 'class="stalled"' in page  # the stuck stage's row


@needs_chromium
def test_report_renders_in_headless_chromium(chdb_loaded: Loaded, tmp_path: Path) -> None:
    out = tmp_path / "overview.html"
    out.write_text(build_report(chdb_loaded.store), encoding="utf-8")
    shot = tmp_path / "overview.png"
    res = chromium(out, tmp_path, f"--screenshot={shot}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert console_lines(res.stderr) == []
    keep = os.environ.get("STAGEWATCH_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)

    dom = chromium(out, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and console_lines(dom.stderr) == []
    n_stages = len(collect(chdb_loaded.store)["stages"])
    assert f'data-charts-rendered="{CHARTS_PER_STAGE * n_stages}"' in dom.stdout  # the script ran to its end
    assert dom.stdout.count("<svg") == CHARTS_PER_STAGE * n_stages
    assert dom.stdout.count('class="series"') >= n_stages  # progress lines drawn
    assert "STALLED" in dom.stdout


@needs_chromium
def test_report_as_of_beyond_any_date_renders(chdb_loaded: Loaded, tmp_path: Path) -> None:
    """An --as-of no JavaScript Date holds (year 318857) still draws every chart; the charts keep the stages'
    own time scale (they end a little after each stage's last event), so their ticks are dates."""
    out = tmp_path / "far.html"
    out.write_text(build_report(chdb_loaded.store, as_of=1e13), encoding="utf-8")
    dom = chromium(out, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and console_lines(dom.stderr) == [], dom.stderr[-2000:]
    n_stages = len(collect(chdb_loaded.store)["stages"])
    assert f'data-charts-rendered="{CHARTS_PER_STAGE * n_stages}"' in dom.stdout
    assert dom.stdout.count('class="series"') >= n_stages  # progress still drawn (series clamped to DateTime)
    assert ">time (Unix seconds)<" not in dom.stdout and ">time (UTC)<" in dom.stdout
    assert not re.search(r'class="tick-x">\d{11,}<', dom.stdout)


@needs_chromium
def test_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The console check above can fail: a page whose script throws is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>null.boom();</script></body></html>")
    res = chromium(bad, tmp_path, "--dump-dom")
    assert any("Uncaught TypeError" in ln for ln in console_lines(res.stderr))


def test_cli_report_writes_the_page(tmp_path: Path) -> None:
    """`stagewatch report --store ... --out ...`, in a subprocess: chDB allows one store path per process and
    this package's store is open in this one."""
    import subprocess as sp
    import sys

    store = tmp_path / "store"
    out = tmp_path / "overview.html"
    code = ("import sys, time; from stagewatch.store import open_store; from tests.dashboards import scenarios; "
            "st = open_store('chdb:' + sys.argv[1]); scenarios.load(st, scenarios.build(time.time())); st.close()")
    root = Path(__file__).resolve().parents[2]
    sp.run([sys.executable, "-c", code, str(store)], check=True, cwd=root, timeout=300)
    res = sp.run([sys.executable, "-c", "from stagewatch.cli import main; main()", "report", "--store", f"chdb:{store}", "--out", str(out),
                  "--campaign", scenarios.PROBLEM], capture_output=True, text=True, cwd=root, timeout=300)
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert page.count('<article class="stage') == 3 and "dash-healthy" not in page.split("<script")[0]
