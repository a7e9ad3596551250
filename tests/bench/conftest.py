"""A PostgreSQL server (bench/postgres_server.py) and a small simulated year in chDB, shared by this package.

Package-scoped: chDB allows one data path per process at a time, so the store is closed when this
package's tests are done.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from bench import postgres_server
from bench.scale_campaigns import scale_specs
from ingest.simulator import expected_outcomes, preset, simulate_many
from stagewatch.replay import replay_events
from stagewatch.store import open_store
from stagewatch.store.base import Store

SEED = 7


@pytest.fixture(scope="package")
def specs() -> list:
    """The tiny preset (every delivery effect) and a two-stage bench year (a finished and a running stage)."""
    return preset("tiny") + scale_specs(3000)


@pytest.fixture(scope="package")
def truth(specs: list) -> dict:
    return expected_outcomes(specs, SEED)


@pytest.fixture(scope="package")
def chdb_store(tmp_path_factory: pytest.TempPathFactory, specs: list) -> Iterator[Store]:
    st = open_store(f"chdb:{tmp_path_factory.mktemp('bench-chdb') / 'data'}")
    try:
        replay_events(st, simulate_many(specs, SEED))
        yield st
    finally:
        st.close()


@pytest.fixture(scope="package")
def pg() -> Iterator[postgres_server.PostgresServer]:
    with postgres_server.running_postgres() as server:
        yield server
