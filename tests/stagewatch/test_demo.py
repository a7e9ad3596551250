"""The README's first command, on a small preset: simulate, replay into chDB, print the overview."""

import json

from typer.testing import CliRunner

from ingest.simulator import PRESETS, expected_outcomes
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
