"""bench/poms_pg.py: the POMS-style overview by joins gives stagewatch's numbers, and `compare` sees a difference."""

from __future__ import annotations

import copy
import time
from typing import Iterator

import psycopg
import pytest

from bench import poms_pg
from ingest.simulator import TALK_NOW
from stagewatch.reading import read_status
from stagewatch.store import open_store


def _fresh_db(pg, name: str) -> str:  # noqa: ANN001
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg.dsn.replace("dbname=poms", f"dbname={name}")


@pytest.fixture(scope="module")
def loaded(pg, chdb_store) -> Iterator[tuple[psycopg.Connection, dict]]:  # noqa: ANN001
    with psycopg.connect(_fresh_db(pg, "from_chdb")) as conn:
        poms_pg.create_schema(conn)
        counts = poms_pg.load_from_store(chdb_store, conn)
        yield conn, counts


def test_overview_equals_status(loaded, chdb_store) -> None:  # noqa: ANN001
    conn, counts = loaded
    rows = poms_pg.overview(conn)
    status = read_status(chdb_store, as_of=TALK_NOW)["stages"]
    assert len(rows) == len(status) == 4
    assert poms_pg.compare(rows, status) == []
    assert counts["jobs"] == sum(s["jobs"] for s in status)
    assert counts["dataset_files"] == sum(s["input_files"] for s in status)


def test_overview_equals_the_simulators_truth(loaded, truth) -> None:  # noqa: ANN001
    """Against the simulator's own ground truth too, so a mistake shared by both sides cannot hide."""
    conn, _ = loaded
    rows = {(r["campaign"], r["stage"]): r for r in poms_pg.overview(conn)}
    assert set(rows) == set(truth)
    for key, out in truth.items():
        r = rows[key]
        assert r["input_files"] == out.input_files, key
        assert r["files_located"] == len(out.located_files), key
        assert r["files_declared_not_located"] == out.file_buckets["declared_not_located"], key
        assert r["files_without_located_output"] == out.files_without_located_output, key
        assert r["jobs"] == out.jobs, key
        for state, n in out.job_states.items():
            assert r[f"jobs_{state}"] == n, (key, state)
    # the running stage has most of its dataset pending, as a year's open stages do
    running = [r for k, r in rows.items() if k[1].endswith("_running")]
    assert running and running[0]["input_files"] > 3 * running[0]["files_located"]


def test_tables_and_indexes_as_poms_declared(loaded) -> None:  # noqa: ANN001
    conn, _ = loaded
    idx = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {"idx_jobs_submission_id", "idx_jobs_by_jobsub_job_id", "job_files_file_name_idx",
            "pk_job_files", "idx_submissions_campaign_stage_id"} <= idx
    types = {r[0] for r in conn.execute("SELECT DISTINCT file_type FROM job_files")}
    assert types == {"input", "output"}
    statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM jobs")}
    assert statuses <= set(poms_pg.STATUS_OF.values()) and "Completed" in statuses


def test_compare_names_every_difference(loaded, chdb_store) -> None:  # noqa: ANN001
    conn, _ = loaded
    rows = poms_pg.overview(conn)
    status = read_status(chdb_store, as_of=TALK_NOW)["stages"]
    changed = copy.deepcopy(rows)
    changed[0]["files_located"] += 1
    diffs = poms_pg.compare(changed, status)
    assert len(diffs) == 1 and "files_located" in diffs[0] and changed[0]["stage"] in diffs[0]
    diffs = poms_pg.compare(rows[1:], status)
    assert diffs == [f"{rows[0]['campaign']}/{rows[0]['stage']}: only in stagewatch's status"]


def test_a_located_output_moves_the_poms_number(loaded, chdb_store) -> None:  # noqa: ANN001
    """The overview is computed at page load: flipping one output's located flag changes it at once."""
    conn, _ = loaded
    before = {(r["campaign"], r["stage"]): r["files_located"] for r in poms_pg.overview(conn)}
    with conn.transaction(force_rollback=True):
        (job_id, name) = conn.execute("SELECT job_id, file_name FROM job_files WHERE file_type = 'output' "
                                      "AND located ORDER BY file_name LIMIT 1").fetchone()
        conn.execute("UPDATE job_files SET located = false WHERE job_id = %s AND file_name = %s", (job_id, name))
        after = {(r["campaign"], r["stage"]): r["files_located"] for r in poms_pg.overview(conn)}
    assert sum(before.values()) - sum(after.values()) == 1


@pytest.mark.servers
def test_loads_from_the_clickhouse_server_too(pg, clickhouse_server, specs) -> None:  # noqa: ANN001
    """The loader's SQL runs on ClickHouse 18.16 (read-only user) and gives the same overview.

    The server is shared by the session's tests: these stages get campaign names of their own.
    """
    import msgspec

    from ingest.simulator import simulate_many
    from stagewatch.replay import replay_events
    from tests.bench.conftest import SEED

    tag = f"poms{time.time_ns()}-"
    with open_store(clickhouse_server.store_url) as w:
        replay_events(w, (msgspec.structs.replace(ev, campaign=tag + ev.campaign) for ev in simulate_many(specs, SEED)))
    with open_store(clickhouse_server.readonly_store_url, create=False) as ro, \
            psycopg.connect(_fresh_db(pg, f"from_server_{time.time_ns()}")) as conn:
        poms_pg.create_schema(conn)
        poms_pg.load_from_store(ro, conn)
        ours = [r for r in poms_pg.overview(conn) if r["campaign"].startswith(tag)]
        status = [s for s in read_status(ro, as_of=TALK_NOW)["stages"] if s["campaign"].startswith(tag)]
        assert len(ours) == len(status) == 4
        assert poms_pg.compare(ours, status) == []
