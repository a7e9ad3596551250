"""The entry point: known error classes are sentences (exit 1), real bugs keep their traceback; the
optional sub-commands are mounted; convert refuses what is not a job event log; worker paths are absolute."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import stagewatch.cli as cli
from tests.stagewatch.test_cli_escaping import flat, run_cli

LOGS = Path(__file__).resolve().parent.parent / "ingest" / "condor_logs"


def _known_errors():
    from ingest.kafka_io import KafkaError, KafkaUnavailable
    from ingest.lines import InputError
    from schemas.events import InvalidEvent

    return [InputError("in.bin looks like a PNG image, not JSON lines [/x]; convert it first."),
            KafkaError("Kafka at 127.0.0.1:1 did not answer within 10 s; is it running?"),
            KafkaUnavailable("no broker [bold]"),
            InvalidEvent("ts 1.7e12 is after 2026-12-04: milliseconds?")]


@pytest.mark.parametrize("exc", _known_errors(), ids=lambda e: type(e).__name__)
def test_known_error_classes_become_one_sentence(capsys, monkeypatch, exc):
    def app() -> None:
        raise exc

    monkeypatch.setattr(cli, "app", app)
    code, out, err = run_cli(capsys)
    assert code == 1
    assert flat(err) == f"error: {exc}"


def test_an_unexpected_exception_keeps_its_traceback(capsys, monkeypatch):
    def app() -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(KeyError):
        run_cli(capsys)


def test_sample_command_is_mounted(capsys):
    code, out, err = run_cli(capsys, "sample", "--help")
    assert code == 0 and "condor-log" in out


@pytest.fixture()
def not_a_log(tmp_path) -> Path:
    p = tmp_path / "notes.txt"
    p.write_text("just some text\nnot an HTCondor event\n")
    return p


def test_convert_refuses_a_file_that_is_not_a_job_event_log(capsys, tmp_path, not_a_log):
    out = tmp_path / "events.jsonl"
    code, stdout, err = run_cli(capsys, "convert", "condor-log", str(not_a_log), "--campaign", "c", "--stage", "s",
                                "--out", str(out))
    assert code == 1
    assert str(not_a_log) in flat(err) and "job event log" in flat(err)
    assert not out.exists()
    assert os.listdir(tmp_path) == ["notes.txt"]  # no temporary file left behind


def test_a_failed_convert_leaves_an_existing_out_file_alone(capsys, tmp_path, not_a_log):
    out = tmp_path / "events.jsonl"
    out.write_text("previous conversion\n")
    code, _, _ = run_cli(capsys, "convert", "condor-log", str(not_a_log), "--campaign", "c", "--stage", "s",
                         "--out", str(out))
    assert code == 1
    assert out.read_text() == "previous conversion\n"


def test_convert_to_an_unwritable_out_is_a_sentence(capsys, tmp_path):
    code, _, err = run_cli(capsys, "convert", "condor-log", str(LOGS / "all_types.log"), "--campaign", "c",
                           "--stage", "s", "--out", str(tmp_path / "no-such-dir" / "e.jsonl"))
    assert code == 2 and "Cannot write" in flat(err)


def test_convert_writes_out_whole(capsys, tmp_path):
    out = tmp_path / "e.jsonl"
    code, _, err = run_cli(capsys, "convert", "condor-log", str(LOGS / "all_types.log"), "--campaign", "c",
                           "--stage", "s", "--out", str(out))
    assert code == 0, err
    n = int(flat(err).split("converted ")[1].split()[0])
    assert n > 0 and len(out.read_text().splitlines()) == n
    assert sorted(os.listdir(tmp_path)) == ["e.jsonl"]


def test_worker_gets_an_absolute_workdir(capsys, tmp_path, monkeypatch):
    """faust.Worker changes into the workdir: a relative datadir under it would then not exist."""
    import processors.faust as faust_app
    import stagewatch.cli_stream as cli_stream

    seen = {}
    monkeypatch.setattr(cli_stream, "_check_kafka", lambda kafka, timeout_s=10.0: {})
    monkeypatch.setattr(faust_app, "run_worker", lambda cfg: seen.setdefault("cfg", cfg))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "worker", "--kafka", "127.0.0.1:1", "--store", "clickhouse://u@127.0.0.1:1/db")
    assert code == 0, err
    assert seen["cfg"].workdir == str(tmp_path / ".stagewatch-worker")
