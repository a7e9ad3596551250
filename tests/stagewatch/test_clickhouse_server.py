"""The same pipeline on the real ClickHouse 18.16 server: numbers, drill-down, verify, read-only user."""

import pytest

from ingest.simulator import PRESETS, simulate_many
from processors.engine import Engine
from stagewatch.reading import read_missing_files, read_status
from stagewatch.replay import replay_events
from stagewatch.store import StoreError, open_store
from stagewatch.verify import verify

pytestmark = pytest.mark.servers
AS_OF = 1497960000.0  # 2017-06-20 12:00 UTC, the talk's "now"


@pytest.fixture(scope="module")
def events():
    return list(simulate_many(PRESETS["tiny"](), 7))


@pytest.fixture(scope="module")
def loaded(clickhouse_server, events):
    with open_store(clickhouse_server.store_url) as st:
        st.command("TRUNCATE TABLE IF EXISTS raw_events")
        for t in ("job_state", "job_attempts", "file_state", "stage_numbers", "dead_letter"):
            st.command(f"TRUNCATE TABLE IF EXISTS {t}")
        replay_events(st, events[: len(events) // 2])
        replay_events(st, events[len(events) // 3:])  # overlapping second replay: duplicates change nothing
    return clickhouse_server


def test_status_on_server_equals_engine_and_chdb(loaded, events, tmp_path):
    e = Engine()
    e.apply_all(events)
    want = e.numbers(as_of=AS_OF)
    with open_store(loaded.store_url) as st:
        got = read_status(st, as_of=AS_OF)["stages"]
    assert got == want
    with open_store(f"chdb:{tmp_path / 'c'}") as st:
        replay_events(st, events)
        assert read_status(st, as_of=AS_OF)["stages"] == want
        chdb_missing = {(s["campaign"], s["stage"]): read_missing_files(st, s["campaign"], s["stage"]) for s in want}
    with open_store(loaded.store_url) as st:
        for s in want:
            missing = read_missing_files(st, s["campaign"], s["stage"])
            assert len(missing) == s["files_without_located_output"]
            assert missing == chdb_missing[(s["campaign"], s["stage"])]


def test_verify_passes_on_server_and_catches_a_wrong_number(loaded):
    with open_store(loaded.store_url) as st:
        assert verify(st).ok
        (row,) = st.query("SELECT * FROM stage_numbers FINAL ORDER BY campaign, stage LIMIT 1")
        bad = dict(row, files_located=row["files_located"] + 1, version=row["version"] + 10**9)
        st.insert("stage_numbers", [bad])
        try:
            report = verify(st)
            assert not report.ok
            assert any("files_located" in d for d in report.differences)
        finally:
            st.insert("stage_numbers", [dict(row, version=row["version"] + 2 * 10**9)])
        assert verify(st).ok


def test_readonly_user_reads_but_cannot_write(loaded):
    with open_store(loaded.readonly_store_url, create=False) as ro:
        assert read_status(ro, as_of=AS_OF)["stages"]
        with pytest.raises(StoreError):
            ro.insert("dead_letter", [{"received_ts": 1.0, "source": "x", "position": "1", "reason": "r",
                                       "raw": "x"}])
        with pytest.raises(StoreError):
            ro.command("CREATE TABLE stagewatch.nope (a UInt8) ENGINE = Memory")


def _other_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def test_readonly_user_runs_every_read_command(loaded, capsys):
    from tests.stagewatch.test_cli_escaping import run_cli

    ro = loaded.readonly_store_url
    with open_store(ro, create=False) as st:
        (one,) = st.query("SELECT campaign, stage, job_id FROM job_state FINAL ORDER BY campaign, stage, job_id "
                          "LIMIT 1")
    sel = ["--campaign", one["campaign"], "--stage", one["stage"], "--store", ro]
    for args in (["status", "--store", ro], ["status", "--format", "json", *sel], ["files", *sel], ["jobs", *sel],
                 ["job", one["job_id"], *sel], ["missing-files", *sel], ["verify", "--store", ro], ["verify", *sel]):
        code, out, err = run_cli(capsys, *args)
        assert code == 0, (args, err)
        assert "readonly" not in err
    code, out, err = run_cli(capsys, "jobs", "--campaign", one["campaign"], "--stage", "nope", "--store", ro)
    assert code == 2 and "Known stages" in " ".join(err.split())


@pytest.mark.parametrize("user", ["writer", "readonly"])
def test_read_commands_never_create_a_database(loaded, capsys, user):
    from tests.stagewatch.test_cli_escaping import run_cli

    base = loaded.store_url if user == "writer" else loaded.readonly_store_url
    typo = _other_database(base, "stagewatch_typo")
    for args in (["status"], ["verify"], ["missing-files", "--campaign", "c", "--stage", "s"]):
        code, out, err = run_cli(capsys, *args, "--store", typo)
        assert code == 1, (args, err)
        assert "There is no database stagewatch_typo" in " ".join(err.split())
    with open_store(loaded.store_url, create=False) as st:
        assert st.query("SELECT count() AS n FROM system.databases WHERE name = 'stagewatch_typo'")[0]["n"] == 0
