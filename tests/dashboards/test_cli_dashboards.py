"""stagewatch/cli_dashboards.py: `report` is a read command, and values are printed verbatim (rich markup escaped).

`report` runs in a subprocess (chDB allows one store path per process, and this package's store is open in
this one); `dashboards build/publish` run in-process through typer's runner.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from stagewatch.cli import app
from tests.dashboards import scenarios

ROOT = Path(__file__).resolve().parents[2]
MARKUP = "x[/y] [red]z"  # `[/y]` makes rich raise MarkupError; `[red]` would silently vanish


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from stagewatch.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def _store_with_scenario(path: Path) -> None:
    code = ("import sys, time; from stagewatch.store import open_store; from tests.dashboards import scenarios; "
            "st = open_store('chdb:' + sys.argv[1]); scenarios.load(st, scenarios.build(time.time())); st.close()")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT, timeout=300)


def test_report_never_creates_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-store"
    out = tmp_path / "overview.html"
    res = _cli("report", "--store", f"chdb:{missing}", "--out", str(out))
    assert res.returncode != 0
    assert str(missing) in " ".join(res.stderr.split()) and "Traceback" not in res.stderr
    assert not missing.exists() and not out.exists()


def test_report_unknown_campaign_and_markup_in_paths(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _store_with_scenario(store)
    res = _cli("report", "--store", f"chdb:{store}", "--out", str(tmp_path / "a.html"), "--campaign", "dash-problen")
    assert res.returncode == 2 and scenarios.PROBLEM in res.stderr and not (tmp_path / "a.html").exists()
    (tmp_path / "x[").mkdir()
    out = tmp_path / "x[" / "y] [red]z.html"  # the path reads x[/y] [red]z.html
    res = _cli("report", "--store", f"chdb:{store}", "--out", str(out), "--campaign", scenarios.HOSTILE,
               "--as-of", str(int(time.time())))
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in " ".join(res.stderr.split())  # verbatim, markup and all
    assert out.read_text(encoding="utf-8").count('<article class="stage') == 1


def test_report_into_a_missing_directory_is_a_sentence(tmp_path: Path) -> None:
    out = tmp_path / "no-such-dir" / "overview.html"
    res = _cli("report", "--store", f"chdb:{tmp_path / 'store'}", "--out", str(out))
    assert res.returncode == 1 and "does not exist" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "store").exists()


def test_report_campaign_beyond_the_name_bound_is_a_sentence(tmp_path: Path) -> None:
    """Checked before anything is read: no SQL or message grows with a 100 KB argument."""
    out = tmp_path / "a.html"
    res = _cli("report", "--store", f"chdb:{tmp_path / 'store'}", "--out", str(out), "--campaign", "c" * 100_000)
    assert res.returncode == 2 and "100,000 characters" in res.stderr and len(res.stderr) < 1000
    assert not out.exists() and not (tmp_path / "store").exists()


def test_build_prints_paths_verbatim(tmp_path: Path) -> None:
    out = tmp_path / MARKUP
    res = CliRunner().invoke(app, ["dashboards", "build", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"into {out}." in " ".join(res.output.split())


def test_publish_error_prints_the_url_verbatim(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:1/{MARKUP}"  # nothing listens on port 1: the connection is refused
    res = CliRunner().invoke(app, ["dashboards", "publish", "--url", url], env={"GRAFANA_TOKEN": "t"})
    assert res.exit_code == 1 and f"publishing to {url} failed" in " ".join(res.output.split()), res.output


def test_report_moment_and_window_options_are_checked_first(tmp_path: Path) -> None:
    """--at with --now, --at with --as-of, a bad time or a non-positive --rate-window: exit 2 with a sentence,
    before any store is opened (nothing created, no page written)."""
    out = tmp_path / "a.html"
    base = ["report", "--store", f"chdb:{tmp_path / 'store'}", "--out", str(out)]
    for extra, words in ((["--at", "1e9", "--now", "1e9"], "--at TIME already sets the stall clock"),
                         (["--at", "1e9", "--as-of", "1e9"], "--as-of is an alias of --at"),
                         (["--at", "yesterday"], "neither Unix seconds nor an RFC 3339 time"),
                         (["--rate-window", "0"], "--rate-window 0 is not a number of hours")):
        res = _cli(*base, *extra)
        assert res.returncode == 2 and words in " ".join(res.stderr.split()), (extra, res.stderr)
        assert "Traceback" not in res.stderr
    assert not out.exists() and not (tmp_path / "store").exists()
