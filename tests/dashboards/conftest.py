"""Stores holding the known scenario (tests/dashboards/scenarios.py), on chDB and on the ClickHouse 18.16 server.

Package-scoped: chDB allows one data path per process at a time, so the chDB store is closed when this
package's tests are done (other packages open their own). Queries on the server go through the
READ-ONLY user, the one Grafana's data source uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import pytest

from stagewatch.store import open_store
from stagewatch.store.base import Store
from tests.dashboards import scenarios


@dataclass
class Loaded:
    backend: str
    store: Store  # read with this one (read-only user on the server)
    scenario: scenarios.Scenario


@pytest.fixture(scope="package")
def scenario() -> scenarios.Scenario:
    return scenarios.build(time.time())


@pytest.fixture(scope="package")
def chdb_loaded(tmp_path_factory: pytest.TempPathFactory, scenario: scenarios.Scenario) -> Iterator[Loaded]:
    st = open_store(f"chdb:{tmp_path_factory.mktemp('dash-chdb') / 'data'}")
    scenarios.load(st, scenario)
    try:
        yield Loaded("chdb", st, scenario)
    finally:
        st.close()


@pytest.fixture(scope="package")
def server_loaded(clickhouse_server, scenario: scenarios.Scenario) -> Iterator[Loaded]:  # noqa: ANN001
    writer = open_store(clickhouse_server.store_url)
    try:
        scenarios.load(writer, scenario)
    finally:
        writer.close()
    ro = open_store(clickhouse_server.readonly_store_url, create=False)
    try:
        yield Loaded("clickhouse-18.16", ro, scenario)
    finally:
        ro.close()


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.servers)])
def loaded(request: pytest.FixtureRequest) -> Loaded:
    """The scenario on each backend in turn."""
    return request.getfixturevalue("chdb_loaded" if request.param == "chdb" else "server_loaded")
