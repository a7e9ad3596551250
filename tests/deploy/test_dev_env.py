"""The env that `stagewatch dev up` / `dev env` print, without starting any server.

`eval "$(stagewatch dev up)"` is the README's first streaming line: the lines must be `export`ed (so
programs the shell starts see them) and shell-quoted (so no value can break or inject into the shell).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stagewatch import devservers
from stagewatch.cli_dev import dev_app

HOSTILE = "a b'c\"d$(touch pwned)`touch pwned2`;e\\f\n*g"


def _child_sees(lines: list[str], name: str, cwd: Path) -> str:
    """Eval `lines` in bash, then print $name from a CHILD process (sh), as a later command would."""
    script = 'eval "$LINES"; exec sh -c \'printf "%s" "$' + name + '"\''
    res = subprocess.run(["bash", "-c", script], env={"LINES": "\n".join(lines), "PATH": os.environ["PATH"]},
                         cwd=cwd, capture_output=True, text=True, check=True, timeout=30)
    return res.stdout


def test_export_lines_reach_child_processes_and_quote_every_value(tmp_path):
    env = {"STAGEWATCH_KAFKA": "127.0.0.1:19092", "HOSTILE_VALUE": HOSTILE, "EMPTY": ""}
    lines = devservers.export_lines(env)
    assert all(line.startswith("export ") for line in lines)
    for name, value in env.items():
        assert _child_sees(lines, name, tmp_path) == value
    assert not list(tmp_path.iterdir()), "a value was executed by the shell"


def _recorded_state(tmp_path: Path, monkeypatch) -> devservers.DevState:
    monkeypatch.setenv(devservers.CH_PASSWORD_ENV, "w p@ss'$x")
    monkeypatch.setenv(devservers.CH_RO_PASSWORD_ENV, "r\"o")
    state = devservers.DevState(dir=tmp_path / "dev", kafka={"pid": None, "port": 29092, "controller_port": 29093},
                                clickhouse={"pid": None, "tcp_port": 29000, "http_port": 28123})
    state.save()
    return state


def test_cli_env_formats(tmp_path, monkeypatch):
    state = _recorded_state(tmp_path, monkeypatch)
    runner = CliRunner()
    res = runner.invoke(dev_app, ["env", "--dir", str(state.dir), "--readonly"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "export STAGEWATCH_KAFKA", "export STAGEWATCH_STORE", "export STAGEWATCH_STORE_RO"]
    assert _child_sees(lines, "STAGEWATCH_STORE", tmp_path) == state.store_url
    assert _child_sees(lines, "STAGEWATCH_STORE_RO", tmp_path) == state.readonly_store_url
    assert _child_sees(lines, "STAGEWATCH_KAFKA", tmp_path) == "127.0.0.1:29092"

    res = runner.invoke(dev_app, ["env", "--dir", str(state.dir), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"STAGEWATCH_KAFKA": "127.0.0.1:29092", "STAGEWATCH_STORE": state.store_url}

    res = runner.invoke(dev_app, ["env", "--dir", str(state.dir), "--format", "yaml"])
    assert res.exit_code != 0 and "yaml" in res.output


def test_cli_env_of_an_empty_dir_prints_nothing_evaluable(tmp_path):
    runner = CliRunner()
    res = runner.invoke(dev_app, ["env", "--dir", str(tmp_path)])
    assert res.exit_code == 0 and res.stdout == ""
    res = runner.invoke(dev_app, ["env", "--dir", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == {}


@pytest.mark.parametrize("fmt", ["env", "json"])
def test_format_env_only_knows_its_formats(fmt):
    assert devservers.format_env({"A": "1"}, fmt)
    with pytest.raises(devservers.DevServerError, match="--format must be one of env, json"):
        devservers.format_env({"A": "1"}, "toml")


def test_dev_errors_are_printed_verbatim(tmp_path):
    """An error naming a path with rich markup in it ([bold]) is printed as is, not parsed as markup."""
    d = tmp_path / "odd[bold]dir"
    d.mkdir()
    (d / "state.json").write_text("{not json")
    res = CliRunner().invoke(dev_app, ["env", "--dir", str(d)])
    assert res.exit_code == 1
    text = res.output.replace("\n", "")  # rich may wrap a long path
    assert "odd[bold]dir" in text and "Cannot read" in text
