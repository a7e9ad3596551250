"""ClickHouse server store through clickhouse-driver (native protocol).

Inserts always pass rows to the driver: a literal INSERT ... VALUES statement hangs on 18.16.

Timeouts: the TCP connect and the protocol handshake each get `connect_timeout` (10 s), so a server
that accepts connections and never answers fails in seconds; queries get `send_receive_timeout`
(300 s: verify on a big store is slow). Both can be set in the URL:
`clickhouse://user:pass@host:9000/stagewatch?connect_timeout=5&send_receive_timeout=60`.
"""

from __future__ import annotations

import re
from typing import Any, Sequence
from urllib.parse import parse_qs, unquote, urlparse

from stagewatch.store.base import DATABASE, Store, StoreError

CONNECT_TIMEOUT_S = 10.0
SEND_RECEIVE_TIMEOUT_S = 300.0
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNKNOWN_DATABASE, _UNKNOWN_TABLE = 81, 60
_USAGE = "clickhouse://user:password@host:port/database"


def _brief(exc: Exception) -> str:
    """The server's message without its C++ stack trace."""
    text = str(exc)
    return text.split("Stack trace:")[0].strip().replace("\n", " ")


def _without_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _timeout(params: dict[str, list[str]], name: str, default: float, shown: str) -> float:
    if name not in params:
        return default
    raw = params[name][-1]
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise StoreError(f"{name}={raw!r} in the store URL {shown} is not a number of seconds > 0.")
    return value


class ClickHouseStore(Store):
    def __init__(self, url: str, *, connect_timeout: float | None = None,
                 send_receive_timeout: float | None = None) -> None:
        from clickhouse_driver import Client

        shown = _without_password(url)
        p = urlparse(url)
        if p.scheme not in ("clickhouse", "clickhouse+native"):
            raise StoreError(f"Store URL {shown!r} is not {_USAGE}.")
        try:
            port = p.port
        except ValueError:
            port = -1
        if port is not None and not 1 <= port <= 65535:
            raise StoreError(f"The port in the store URL {shown!r} is not a number from 1 to 65535 "
                             f"(the native port, 9000 by default): use {_USAGE}.")
        self.database = (p.path or "/").lstrip("/") or DATABASE
        if not _IDENTIFIER.match(self.database):
            raise StoreError(f"The database {self.database!r} in the store URL {shown!r} is not a plain name "
                             "(letters, digits, _): use " + _USAGE + ".")
        params = parse_qs(p.query)
        unknown = sorted(set(params) - {"connect_timeout", "send_receive_timeout"})
        if unknown:
            raise StoreError(f"Unknown option(s) {', '.join(unknown)} in the store URL {shown!r}: only "
                             "connect_timeout and send_receive_timeout (seconds) are understood.")
        self.connect_timeout = connect_timeout or _timeout(params, "connect_timeout", CONNECT_TIMEOUT_S, shown)
        self.send_receive_timeout = send_receive_timeout or _timeout(params, "send_receive_timeout",
                                                                     SEND_RECEIVE_TIMEOUT_S, shown)
        self.host = p.hostname or "127.0.0.1"
        self.port = port or 9000
        self.user = unquote(p.username) if p.username else "default"
        self._password = unquote(p.password) if p.password else ""
        self.url = f"clickhouse://{self.user}@{self.host}:{self.port}/{self.database}"
        self._kw = dict(host=self.host, port=self.port, user=self.user, password=self._password,
                        connect_timeout=self.connect_timeout, send_receive_timeout=self.send_receive_timeout)
        self._client = Client(database=self.database, **self._kw)

    def _connected(self, client: Any) -> Any:
        """`client`, connected: the handshake waits at most connect_timeout, then queries get their own."""
        if client.connection.connected:
            return client
        try:
            self._handshake(client)
        except Exception as exc:
            from clickhouse_driver import errors

            # a refused or silent server is not asked again (that would double the wait)
            unreachable = isinstance(exc, (errors.SocketTimeoutError, errors.NetworkError, OSError))
            if client is self._client and not unreachable and self._database_missing():
                raise self._no_database() from exc
            raise StoreError(f"Cannot reach ClickHouse at {self.host}:{self.port} (no answer within "
                             f"{self.connect_timeout:g} s, or refused): {_brief(exc)}. Check the --store URL and "
                             "that the server runs (`stagewatch dev up` starts one).") from exc
        return client

    def _handshake(self, client: Any) -> None:
        conn = client.connection
        conn.send_receive_timeout = self.connect_timeout
        try:
            conn.force_connect()
        except Exception:
            conn.disconnect()
            raise
        finally:
            conn.send_receive_timeout = self.send_receive_timeout
            conn.is_query_executing = False  # force_connect marks a query as started; execute() starts its own
        if conn.socket is not None:
            conn.socket.settimeout(self.send_receive_timeout)

    def _database_missing(self) -> bool:
        """After a failed handshake: does the server answer without our database, and lack it? (18.16 drops
        a connection to a missing database without saying why.)"""
        from clickhouse_driver import Client

        probe = Client(**self._kw)
        try:
            self._handshake(probe)
            rows = probe.execute("SELECT count() FROM system.databases WHERE name = %(db)s",
                                 {"db": self.database})
            return rows[0][0] == 0
        except Exception:
            return False
        finally:
            probe.disconnect()

    def _no_database(self) -> StoreError:
        return StoreError(f"There is no database {self.database} on {self.host}:{self.port}: check the --store URL, "
                          "or create it with a write command (`stagewatch replay FILE --store URL` or "
                          "`stagewatch worker`) as a user that may create databases.")

    def _failed(self, what: str, exc: Exception, sql: str = "") -> StoreError:
        """The driver's error as a sentence; a missing database or table says how to make it."""
        code = getattr(exc, "code", None)
        if code == _UNKNOWN_DATABASE:
            return self._no_database()
        if code == _UNKNOWN_TABLE:
            return StoreError(f"The database {self.database} on {self.host}:{self.port} has no stagewatch tables "
                              f"({_brief(exc)}): create them with a write command (`stagewatch replay FILE "
                              "--store URL` or `stagewatch worker`).")
        if code is None and not isinstance(exc, StoreError):
            return StoreError(f"{what} on {self.url} failed (no answer within {self.send_receive_timeout:g} s, or "
                              f"the connection broke): {_brief(exc) or type(exc).__name__}")
        return StoreError(f"{what} on {self.url} failed: {_brief(exc)}" + (f"\nSQL: {sql[:500]}" if sql else ""))

    def ensure_schema(self) -> None:
        from clickhouse_driver import Client

        boot = Client(**self._kw)
        try:
            self._connected(boot).execute(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Cannot create database {self.database} on {self.url}: {_brief(exc)}") from exc
        finally:
            boot.disconnect()
        self._versioned_schema()

    def _insert_rows(self, table: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._connected(self._client).execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", rows)
        except StoreError:
            raise
        except Exception as exc:
            raise self._failed(f"Insert into {table}", exc) from exc

    def query(self, sql: str) -> list[dict[str, Any]]:
        try:
            rows, cols = self._connected(self._client).execute(sql, with_column_types=True)
        except StoreError:
            raise
        except Exception as exc:
            raise self._failed("Query", exc, sql) from exc
        names = [c[0] for c in cols]
        return [dict(zip(names, r)) for r in rows]

    def command(self, sql: str) -> None:
        try:
            self._connected(self._client).execute(sql)
        except StoreError:
            raise
        except Exception as exc:
            raise self._failed("Statement", exc, sql) from exc

    def close(self) -> None:
        self._client.disconnect()
