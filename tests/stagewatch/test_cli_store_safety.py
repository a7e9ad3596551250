"""Commands never destroy or invent stores: the demo deletes only its own store, and read commands
create nothing (a typo in a path is an error naming it)."""

from __future__ import annotations

import json
import os

import pytest

from stagewatch.replay import replay_events
from stagewatch.store import StoreError, open_store
from stagewatch.store.chdb_store import MARKER, read_marker
from tests.builders import file, job
from tests.stagewatch.test_cli_escaping import flat, run_cli

READ_COMMANDS = [
    ["status"],
    ["files", "--campaign", "camp", "--stage", "stage1"],
    ["jobs", "--campaign", "camp", "--stage", "stage1"],
    ["job", "1.0", "--campaign", "camp", "--stage", "stage1"],
    ["missing-files", "--campaign", "camp", "--stage", "stage1"],
    ["verify"],
]


def _small_store(url: str) -> None:
    with open_store(url) as st:
        replay_events(st, [job("1.0", "submitted", 1e9), file("a", "input_declared", 1e9)])


def test_demo_refuses_to_delete_a_directory_it_did_not_create(capsys, tmp_path):
    victim = tmp_path / "thesis"
    victim.mkdir()
    (victim / "chapter1.tex").write_text("years of work")
    code, out, err = run_cli(capsys, "demo", "--store", f"chdb:{victim}", "--preset", "tiny")
    assert code == 2
    assert str(victim) in flat(err) and "refusing" in flat(err)
    assert (victim / "chapter1.tex").read_text() == "years of work"
    assert sorted(os.listdir(victim)) == ["chapter1.tex"]


def test_demo_refuses_to_delete_a_real_store(capsys, tmp_path):
    url = f"chdb:{tmp_path / 'real'}"
    _small_store(url)
    code, out, err = run_cli(capsys, "demo", "--store", url, "--preset", "tiny")
    assert code == 2 and "refusing" in flat(err)
    with open_store(url, create=False) as st:
        assert st.query("SELECT count() AS n FROM raw_events")[0]["n"] == 2


def test_demo_twice_in_its_own_store_never_touches_stagewatch_data(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STAGEWATCH_STORE", raising=False)
    _small_store("chdb:./stagewatch-data")  # real work, in the default store
    before = sorted((p.relative_to(tmp_path / "stagewatch-data"), p.stat().st_mtime_ns)
                    for p in (tmp_path / "stagewatch-data").rglob("*"))
    for _ in range(2):
        code, out, err = run_cli(capsys, "demo", "--preset", "tiny")
        assert code == 0, err
        assert "Located" in out
    assert read_marker(str(tmp_path / "stagewatch-demo"))["kind"] == "demo"
    after = sorted((p.relative_to(tmp_path / "stagewatch-data"), p.stat().st_mtime_ns)
                   for p in (tmp_path / "stagewatch-data").rglob("*"))
    assert after == before
    code, out, err = run_cli(capsys, "status", "--store", "chdb:./stagewatch-demo", "--format", "json")
    assert code == 0, err
    fresh = json.loads(out)["stages"]
    code, out, err = run_cli(capsys, "demo", "--preset", "tiny", "--keep")  # adds: duplicates change nothing
    assert code == 0, err
    code, out, err = run_cli(capsys, "status", "--store", "chdb:./stagewatch-demo", "--format", "json")
    assert [(s["campaign"], s["stage"], s["jobs"]) for s in json.loads(out)["stages"]] == \
        [(s["campaign"], s["stage"], s["jobs"]) for s in fresh]


def test_a_created_store_carries_a_marker(tmp_path):
    path = tmp_path / "s"
    _small_store(f"chdb:{path}")
    marker = json.loads((path / MARKER).read_text())
    assert marker["kind"] == "store" and marker["format"] == 1 and marker["created_by"].startswith("stagewatch")


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: a[0])
def test_read_commands_never_create_a_store(capsys, tmp_path, args):
    typo = tmp_path / "stagewatch-dta"
    code, out, err = run_cli(capsys, *args, "--store", f"chdb:{typo}")
    assert code == 1
    assert f"No store at {typo}" in flat(err) and "stagewatch replay" in flat(err)
    assert not typo.exists()


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: a[0])
def test_read_commands_refuse_a_directory_that_is_not_a_store(capsys, tmp_path, args):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    code, out, err = run_cli(capsys, *args, "--store", f"chdb:{d}")
    assert code == 1 and "is not a stagewatch store" in flat(err)
    assert sorted(os.listdir(d)) == ["notes.txt"]


def test_read_commands_work_on_an_existing_store(capsys, tmp_path):
    url = f"chdb:{tmp_path / 's'}"
    _small_store(url)
    for args in READ_COMMANDS:
        code, out, err = run_cli(capsys, *args, "--store", url)
        assert code == 0, (args, err)


def test_a_store_made_before_markers_is_still_read_and_adopted_by_a_write(tmp_path):
    path = tmp_path / "old"
    _small_store(f"chdb:{path}")
    (path / MARKER).unlink()
    with open_store(f"chdb:{path}", create=False) as st:
        assert st.query("SELECT count() AS n FROM raw_events")[0]["n"] == 2
    assert not (path / MARKER).exists()  # a read changes nothing
    with open_store(f"chdb:{path}"):
        pass
    assert read_marker(str(path))["kind"] == "store"


def test_writes_refuse_a_non_empty_directory_that_is_not_a_store(tmp_path):
    d = tmp_path / "home"
    d.mkdir()
    (d / ".bashrc").write_text("x")
    with pytest.raises(StoreError, match="not a stagewatch store and not empty"):
        open_store(f"chdb:{d}")
    assert sorted(os.listdir(d)) == [".bashrc"]


def test_real_events_replayed_into_the_demo_store_protect_it(capsys, tmp_path):
    url = f"chdb:{tmp_path / 'demo'}"
    code, _, err = run_cli(capsys, "demo", "--store", url, "--preset", "tiny")
    assert code == 0, err
    events = tmp_path / "mine.jsonl"
    events.write_text('{"schema":"job-event/1","event_id":"mine","ts":1e9,"campaign":"me","stage":"s",'
                      '"job_id":"1.0","type":"submitted"}\n')
    code, _, err = run_cli(capsys, "replay", "-q", "--store", url, str(events))
    assert code == 0, err
    assert read_marker(str(tmp_path / "demo"))["kind"] == "store"
    code, _, err = run_cli(capsys, "demo", "--store", url, "--preset", "tiny")
    assert code == 2 and "refusing" in flat(err)
    code, out, err = run_cli(capsys, "missing-files", "--campaign", "me", "--stage", "s", "--store", url)
    assert code == 0, err
