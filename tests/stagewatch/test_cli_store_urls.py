"""A bad --store is one sentence and a quick exit, never a traceback or a five-minute hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from stagewatch.cli import main; main()"]
REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("STAGEWATCH_STORE", None)
    t0 = time.monotonic()
    res = subprocess.run(CLI + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    return res, time.monotonic() - t0


def one_sentence(res: subprocess.CompletedProcess) -> str:
    assert res.returncode in (1, 2), (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    text = " ".join(res.stderr.split())
    assert text.startswith(("store error:", "error:")), text
    return text


@pytest.fixture()
def a_file(tmp_path) -> Path:
    f = tmp_path / "plain.txt"
    f.write_text("not a store")
    return f


CASES = {
    "port out of range": ("clickhouse://u:p@127.0.0.1:99999/stagewatch", "not a number from 1 to 65535"),
    "port not a number": ("clickhouse://u@127.0.0.1:notaport/stagewatch", "not a number from 1 to 65535"),
    "database not a name": ("clickhouse://u@127.0.0.1:9000/a;DROP", "is not a plain name"),
    "bad option": ("clickhouse://u@127.0.0.1:9000/db?timeout=3", "Unknown option(s) timeout"),
    "bad timeout": ("clickhouse://u@127.0.0.1:9000/db?connect_timeout=-1", "is not a number of seconds"),
    "malformed host": ("clickhouse://[::1/db", "is malformed"),
    "unknown scheme": ("postgres://h/db", "Unknown store"),
    "empty chdb path": ("chdb:", "names no directory"),
}


@pytest.mark.parametrize("command", [["status"], ["replay", "-"]], ids=["read", "write"])
@pytest.mark.parametrize("case", CASES)
def test_malformed_store_url_is_one_sentence(tmp_path, case, command):
    url, words = CASES[case]
    res, took = run([*command, "--store", url], tmp_path)
    text = one_sentence(res)
    assert words in text, text
    assert ":p@" not in text  # the password is never printed


def test_chdb_path_that_is_a_file(tmp_path, a_file):
    for command in (["status"], ["replay", "-"]):
        res, _ = run([*command, "--store", f"chdb:{a_file}"], tmp_path)
        assert "is a file, not a directory" in one_sentence(res)
    assert a_file.read_text() == "not a store"


def test_chdb_path_that_cannot_be_created(tmp_path, a_file):
    res, _ = run(["replay", "-", "--store", f"chdb:{a_file}/sub"], tmp_path)
    assert "Cannot create the store directory" in one_sentence(res)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_chdb_path_in_an_unwritable_directory(tmp_path):  # pragma: no cover - CI runs as root
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    res, _ = run(["replay", "-", "--store", f"chdb:{ro}/store"], tmp_path)
    assert "Cannot create the store directory" in one_sentence(res)


@pytest.fixture()
def silent_server():
    """A port that accepts TCP connections (the kernel completes the handshake) and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.mark.parametrize("command", [["status"], ["replay", "-"]], ids=["read", "write"])
def test_a_server_that_never_answers_fails_within_the_connect_timeout(tmp_path, silent_server, command):
    res, took = run([*command, "--store", f"clickhouse://u@127.0.0.1:{silent_server}/stagewatch"], tmp_path,
                    timeout=120)
    text = one_sentence(res)
    assert f"Cannot reach ClickHouse at 127.0.0.1:{silent_server}" in text and "10 s" in text, text
    assert took < 40, took  # 10 s connect timeout plus interpreter start-up, not 300 s


def test_connect_timeout_from_the_url(tmp_path, silent_server):
    res, took = run(["status", "--store", f"clickhouse://u@127.0.0.1:{silent_server}/stagewatch?connect_timeout=1"],
                    tmp_path)
    assert "no answer within 1 s" in one_sentence(res)
    assert took < 20, took
