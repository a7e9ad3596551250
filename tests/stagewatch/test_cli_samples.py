"""`stagewatch sample condor-log`: a genuine HTCondor job event log for the README's tour, bundled with
the package (so it works from an empty directory, outside the checkout)."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tomllib
from pathlib import Path

import typer
from typer.testing import CliRunner

from ingest.condor_log import convert_log
from stagewatch import cli_samples

REPO = Path(__file__).resolve().parents[2]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a group, as in the main CLI
    cli_samples.register(app)
    return app


def test_condor_log_sample_is_a_job_event_log_the_converter_reads(tmp_path):
    out = tmp_path / "job.log"
    res = CliRunner().invoke(_app(), ["sample", "condor-log", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == (REPO / "tests" / "ingest" / "condor_logs" / "all_types.log").read_bytes()
    events = list(convert_log(out, campaign="c", stage="s", schedd="fifebatch1"))
    assert {e.job_id for e in events} == {"fifebatch1#200.0", "fifebatch1#200.1"}
    assert len(events) >= 15


def test_condor_log_sample_to_stdout_and_bad_out(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["sample", "condor-log"])
    assert res.exit_code == 0 and res.stdout_bytes == cli_samples.sample_bytes("condor-log")
    res = runner.invoke(_app(), ["sample", "condor-log", "--out", str(tmp_path)])
    assert res.exit_code != 0
    assert "is a directory" in str(res.exception)


def test_every_sample_ships_as_package_data():
    """Each sample lies in its package and matches a package-data glob of pyproject.toml (else a
    wheel install would lack it and `stagewatch sample` would fail outside the checkout)."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name, (package, resource, _) in cli_samples.SAMPLES.items():
        assert (REPO / package / resource).is_file(), name
        assert any(fnmatch.fnmatch(resource, glob) for glob in data.get(package, [])), (name, data)


def test_sample_command_runs_as_a_module_of_the_main_cli(tmp_path):
    """Through a fresh interpreter and the real main app, registered the way stagewatch.cli registers
    its optional modules (`register(app)`), from a directory that is not the checkout."""
    code = ("import sys; from stagewatch import cli, cli_samples\n"
            "if 'sample' not in [g.name for g in cli.app.registered_groups]: cli_samples.register(cli.app)\n"
            "sys.argv = ['stagewatch', 'sample', 'condor-log', '--out', 'job.log']; cli.main()")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "job.log").read_bytes() == cli_samples.sample_bytes("condor-log")
