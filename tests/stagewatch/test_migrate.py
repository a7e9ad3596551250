"""Stores outlive a version: an old store is upgraded by `stagewatch migrate` only, refused (with a sentence
naming it) by every other command, never misread; a newer store is refused by this stagewatch.

The old store is made from a frozen copy of the tables as they were before versions were recorded
(tests/stagewatch/fixtures/tables_v1.sql), on chDB and on the ClickHouse 18.16 server.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from ingest.simulator import PRESETS, simulate_many
from processors.engine import Engine
from processors.files import input_located_ts
from processors.forecast import stage_forecast, window_seconds
from stagewatch.reading import read_status
from stagewatch.replay import replay_events
from stagewatch.store import StoreError, open_store
from stagewatch.store import migrations
from stagewatch.store.chdb_store import ChdbStore
from stagewatch.verify import verify
from tests.stagewatch.test_cli_escaping import flat, run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "tables_v1.sql"
AS_OF = 1497960000.0
READ_ARGS = [["status"], ["verify"], ["missing-files", "--campaign", "x", "--stage", "y"]]


def v1_statements() -> list[str]:
    text = re.sub(r"--[^\n]*", "", FIXTURE.read_text())
    return [s.strip() for s in text.split(";") if s.strip()]


@pytest.fixture(scope="module")
def events():
    return list(simulate_many(PRESETS["tiny"](), 3))


def _columns(st) -> list[tuple[str, str, str]]:
    """Every table's columns in order (DESCRIBE: 18.16's system.columns has no position)."""
    out = []
    for table in sorted(_tables(st)):
        if not table.startswith("v_"):
            out += [(table, r["name"], r["type"]) for r in st.query(f"DESCRIBE TABLE {table}")]
    return out


def _tables(st) -> set[str]:
    return {r["name"] for r in st.query("SELECT name FROM system.tables WHERE database = currentDatabase()")}


def write_as_v1(st, events) -> None:
    """Replay as the stagewatch of version 1 wrote: only the columns its tables have (a column added since
    is not written; the values of the others are the same)."""
    for stmt in v1_statements():
        st.command(stmt)
    have: dict[str, list[str]] = {}
    for r in st.query("SELECT table, name FROM system.columns WHERE database = currentDatabase()"):
        have.setdefault(r["table"], []).append(r["name"])
    insert = st._insert_rows

    def old_insert(table, columns, rows):
        keep = [i for i, c in enumerate(columns) if c in have[table]]
        insert(table, [columns[i] for i in keep], [[row[i] for i in keep] for row in rows])

    st._insert_rows = old_insert
    st.pending_raw_row = None  # chDB's raw-row fast path knows only today's columns: rows as v1 wrote them
    replay_events(st, events)


@contextlib.contextmanager
def chdb_v1(tmp_path: Path, events) -> Iterator[str]:
    """A chDB store as stagewatch wrote it before versions: the v1 tables, replayed events, no schema_version."""
    path = tmp_path / "old"
    st = ChdbStore(str(path))  # directory, marker and database; no tables
    write_as_v1(st, events)
    st.close()
    yield f"chdb:{path}"


def admin_url(server, prefix: str) -> str:
    """A database of its own on the test server (the writer user may use only `stagewatch`): the dev
    server's administrative user, whose password the dev dir keeps."""
    from urllib.parse import quote

    from stagewatch.devservers.accounts import ch_passwords

    pw = ch_passwords(server.dir, roles=("admin",))["admin"]
    db = prefix + uuid.uuid4().hex[:10]
    return f"clickhouse://default:{quote(pw, safe='')}@{server.host}:{server.clickhouse['tcp_port']}/{db}"


def drop_database(url: str) -> None:
    from clickhouse_driver import Client

    from stagewatch.store.clickhouse_store import ClickHouseStore

    st = ClickHouseStore(url)
    boot = Client(**st._kw)
    try:
        boot.execute(f"DROP DATABASE IF EXISTS {st.database}")
    finally:
        boot.disconnect()


@contextlib.contextmanager
def server_v1(server, events) -> Iterator[str]:
    from clickhouse_driver import Client

    from stagewatch.store.clickhouse_store import ClickHouseStore

    url = admin_url(server, "mig_")
    st = ClickHouseStore(url)
    boot = Client(**st._kw)
    boot.execute(f"CREATE DATABASE {st.database}")
    boot.disconnect()
    try:
        write_as_v1(st, events)
        st.close()
        yield url
    finally:
        drop_database(url)


def _check_upgrade(capsys, url: str, fresh_url: str, events) -> None:
    engine = Engine()
    engine.apply_all(events)
    want = engine.numbers(as_of=AS_OF)

    # every command refuses the old store, and the refusal writes nothing
    for args in READ_ARGS + [["replay", "-"]]:
        code, out, err = run_cli(capsys, *args, "--store", url)
        assert code == 1, (args, out, err)
        assert "stagewatch migrate" in flat(err) and "schema version 1" in flat(err), err
    with pytest.raises(StoreError, match="stagewatch migrate"):
        open_store(url, create=False)
    with pytest.raises(StoreError, match="stagewatch migrate"):
        open_store(url)
    with open_store(url, create=False, check=False) as st:
        assert migrations.VERSION_TABLE not in _tables(st)  # nothing was written by the refusals

    code, out, err = run_cli(capsys, "migrate", "--store", url)
    assert code == 0, err
    assert "from schema version 1 to" in flat(out)
    with open_store(url, create=False) as st:
        assert migrations.stored_version(st) == migrations.CURRENT_VERSION
        assert read_status(st, as_of=AS_OF)["stages"] == want
        assert verify(st).ok  # every row, input_located_ts included: rewritten from the raw events (step 4)
        # the forecast reads the precomputed located times: the same as the Engine's, in a window that counts
        as_of = _busiest_located_moment(engine)
        got = {(s["campaign"], s["stage"]): (s["located_rate_per_h"], s["eta"])
               for s in read_status(st, as_of=as_of, forecast=True)["stages"]}
        expect = {k: tuple(stage_forecast(s, as_of, window_seconds(6)).values()) for k, s in engine.stages.items()}
        assert got == expect and any(rate > 0 for rate, _ in got.values()), (got, expect)
        migrated = (_columns(st), _tables(st))
    with open_store(fresh_url) as fresh:  # (chDB: one data path per process at a time)
        assert migrated == (_columns(fresh), _tables(fresh))  # a migrated store has exactly a new store's columns
    code, out, err = run_cli(capsys, "migrate", "--store", url)
    assert code == 0 and "nothing to do" in flat(out)
    code, out, err = run_cli(capsys, "status", "--store", url)
    assert code == 0, err


def _busiest_located_moment(engine: Engine) -> float:
    """A moment whose 6-hour window holds located inputs (the median input located time)."""
    times = sorted(t for s in engine.stages.values() for name, ent in s.files.items()
                   if ent.view.is_input and (t := input_located_ts(name, s.outputs_of(name))) is not None)
    assert times, "the scenario locates no input"
    return times[len(times) // 2]


def test_chdb_store_of_version_1_is_refused_then_migrated(capsys, tmp_path, events):
    with chdb_v1(tmp_path, events) as url:
        _check_upgrade(capsys, url, f"chdb:{tmp_path / 'fresh'}", events)


@pytest.mark.servers
def test_server_store_of_version_1_is_refused_then_migrated(capsys, clickhouse_server, events):
    with server_v1(clickhouse_server, events) as url:
        fresh_url = admin_url(clickhouse_server, "fresh_")
        try:
            _check_upgrade(capsys, url, fresh_url, events)
        finally:
            drop_database(fresh_url)


def _newer(st) -> None:
    st.insert(migrations.VERSION_TABLE, [[migrations.CURRENT_VERSION + 1, 0.0, "stagewatch from the future"]],
              ("version", "applied_ts", "applied_by"))


def test_a_newer_store_is_refused_by_every_command(capsys, tmp_path, events):
    url = f"chdb:{tmp_path / 's'}"
    with open_store(url) as st:
        replay_events(st, events[:50])
        _newer(st)
    for args in READ_ARGS + [["replay", "-"], ["migrate"]]:
        code, out, err = run_cli(capsys, *args, "--store", url)
        assert code == 1, (args, out, err)
        assert "newer stagewatch" in flat(err) and "upgrade stagewatch" in flat(err), err
    with open_store(url, create=False, check=False) as st:
        assert migrations.stored_version(st) == migrations.CURRENT_VERSION + 1


@pytest.mark.servers
def test_a_newer_server_store_is_refused(clickhouse_server, events):
    url = admin_url(clickhouse_server, "newer_")
    try:
        with open_store(url) as st:
            _newer(st)
            for create in (False, True):
                with pytest.raises(StoreError, match="newer stagewatch"):
                    open_store(url, create=create)
            with pytest.raises(StoreError, match="newer stagewatch"):
                migrations.migrate(st, st._apply_ddl)
    finally:
        drop_database(url)


def test_a_new_store_records_the_current_version(tmp_path):
    with open_store(f"chdb:{tmp_path / 's'}") as st:
        assert migrations.stored_version(st) == migrations.CURRENT_VERSION
    with open_store(f"chdb:{tmp_path / 's'}", create=False) as st:  # and reads accept it
        assert migrations.stored_version(st) == migrations.CURRENT_VERSION


def test_an_interrupted_migration_is_finished_by_running_it_again(capsys, tmp_path, events):
    with chdb_v1(tmp_path, events[:100]) as url:
        with open_store(url, create=False, check=False) as st:
            for step in migrations.STEPS:  # every op ran, no version row written (killed before the record)
                for op in step.ops:
                    op.run(st)
            assert migrations.stored_version(st) == migrations.BASE_VERSION
        code, out, err = run_cli(capsys, "migrate", "--store", url)
        assert code == 0, err
        with open_store(url, create=False) as st:
            assert migrations.stored_version(st) == migrations.CURRENT_VERSION


def test_add_column_runs_once(tmp_path):
    with open_store(f"chdb:{tmp_path / 's'}") as st:
        op = migrations.AddColumn("dead_letter", "note_for_test", "String", after="reason")
        op.run(st)
        op.run(st)  # ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the op checks itself
        names = [r["name"] for r in st.query("DESCRIBE TABLE dead_letter")]
        assert names.count("note_for_test") == 1 and names[names.index("reason") + 1] == "note_for_test"


def test_steps_are_numbered_from_the_base_version():
    assert [s.version for s in migrations.STEPS] == list(
        range(migrations.BASE_VERSION + 1, migrations.CURRENT_VERSION + 1))
