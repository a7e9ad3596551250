"""The README's first command, on a small preset: simulate, replay into chDB, print the overview."""

import json

from typer.testing import CliRunner

from ingest.simulator import PRESETS, expected_outcomes, simulate_many
from stagewatch.cli import app


def test_demo_prints_overview_and_leaves_a_queryable_store(tmp_path):
    url = f"chdb:{tmp_path / 'demo'}"
    runner = CliRunner()
    r = runner.invoke(app, ["demo", "--store", url, "--preset", "tiny"])
    assert r.exit_code == 0, r.output
    assert "Located" in r.stdout and "docs/glossary.md" in r.stdout
    r = runner.invoke(app, ["status", "--store", url, "--format", "json"])
    stages = json.loads(r.stdout)["stages"]
    truth = expected_outcomes(PRESETS["tiny"](), 1)
    assert len(stages) == len(truth)
    for s in stages:
        t = truth[(s["campaign"], s["stage"])]
        assert s["input_files"] - s["files_located"] == s["files_without_located_output"]
        assert s["files_located"] == len(t.located_files)
        assert s["jobs"] == t.jobs and s["input_files"] == t.input_files


def test_unknown_preset_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(app, ["demo", "--store", f"chdb:{tmp_path / 'x'}", "--preset", "nope"])
    assert r.exit_code != 0


def test_demo_shows_a_progress_bar_with_counts_and_rate_on_a_terminal(tmp_path, monkeypatch):
    """Not a bare spinner: the events simulated and replayed so far, of how many, and how fast."""
    import io
    import re

    from rich.console import Console

    import stagewatch.cli as cli

    buf = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=buf, force_terminal=True, width=160, color_system=None))
    r = CliRunner().invoke(app, ["demo", "--store", f"chdb:{tmp_path / 'demo'}", "--preset", "tiny"])
    assert r.exit_code == 0, r.output
    shown = buf.getvalue()
    total = sum(1 for _ in simulate_many(PRESETS["tiny"](), 1))
    assert re.search(rf"100%\s+{total:,}/{total:,} events\s+[\d,]+/s", shown), shown[-500:]


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, capsys):
    r = CliRunner().invoke(app, ["demo", "--store", f"chdb:{tmp_path / 'demo'}", "--preset", "tiny"])
    assert r.exit_code == 0
    assert "━" not in r.stderr and "%" not in r.stderr.replace("99.0%", "")


def test_verify_shows_its_progress_on_a_terminal_and_still_verifies(tmp_path, monkeypatch):
    import io
    import re

    from rich.console import Console

    import stagewatch.cli as cli

    url = f"chdb:{tmp_path / 'demo'}"
    assert CliRunner().invoke(app, ["demo", "--store", url, "--preset", "tiny"]).exit_code == 0
    buf = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=buf, force_terminal=True, width=160, color_system=None))
    r = CliRunner().invoke(app, ["verify", "--store", url])
    assert r.exit_code == 0, r.output
    shown = buf.getvalue()
    assert re.search(r"100%\s+(\d+)/\1 queries\s+[\d,]+/s", shown), shown[-500:]
    assert "verify ok" in shown


def test_simulate_to_a_file_shows_its_progress_on_a_terminal(tmp_path, monkeypatch):
    import io
    import re

    from rich.console import Console

    import stagewatch.cli as cli

    buf = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=buf, force_terminal=True, width=160, color_system=None))
    out = tmp_path / "tiny.jsonl"
    r = CliRunner().invoke(app, ["simulate", "tiny", "--out", str(out)])
    assert r.exit_code == 0, r.output
    n = len(out.read_text().splitlines())
    assert re.search(rf"100%\s+{n:,}/{n:,} events\s+[\d,]+/s", buf.getvalue()), buf.getvalue()[-500:]
