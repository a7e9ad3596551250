"""Two processes creating the schema at the same moment must both succeed (workers start together)."""

import pytest

from stagewatch.store import open_store
from stagewatch.store.base import StoreError

pytestmark = pytest.mark.servers


def test_view_created_concurrently_is_not_an_error(clickhouse_server):
    with open_store(clickhouse_server.store_url) as a, open_store(clickhouse_server.store_url) as b:
        real_command = b.command

        def racing_command(sql):
            # another process re-creates the view just before this one does
            if sql.startswith("CREATE VIEW"):
                try:
                    a.command(sql)
                except StoreError:
                    pass
            real_command(sql)

        b.command = racing_command
        b.ensure_schema()
        assert b.query("SELECT count() AS n FROM v_file_recount")[0]["n"] >= 0
