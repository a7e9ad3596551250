"""Shared fixtures: the real servers are started by tests/servers.py and stopped by PID."""

from tests.servers import clickhouse_server, kafka_server  # noqa: F401
