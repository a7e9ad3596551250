"""Local development servers: a real Kafka broker and a real ClickHouse server.

``stagewatch dev up`` starts, on 127.0.0.1 only:

* Apache Kafka (single KRaft node, broker+controller), run from jars that Maven
  assembles from Maven Central (:mod:`.kafka`);
* Debian's ``clickhouse-server`` 18.16, with a config and users file generated
  from ``deploy/local/clickhouse/*.xml.in`` into the dev dir (:mod:`.clickhouse`).

What both share lives in :mod:`.common` (names, errors, templates), :mod:`.processes`
(pids, spawning, stopping), :mod:`.ports`, :mod:`.state` (``state.json``, the env lines)
and :mod:`.accounts` (ClickHouse users and passwords); :mod:`.control` runs ``up``,
``down`` and ``status`` over both.

Everything a run owns lives in one directory (default ``./.stagewatch-dev``,
``--dir`` / ``STAGEWATCH_DEV_DIR``)::

    state.json           pids, ports, start times
    secrets.env          generated ClickHouse passwords (mode 0600)
    kafka/               server.properties, data/, logs/
    clickhouse/          config.xml, users.xml, data/, tmp/, logs/, ...

Processes are only ever stopped by the pid recorded in ``state.json``, and
only after ``/proc/<pid>/cmdline`` confirms that the pid still runs the server
this directory started.
"""

from stagewatch.devservers.accounts import (
    CH_ADMIN_PASSWORD_ENV, CH_DATABASE, CH_PASSWORD_ENV, CH_RO_PASSWORD_ENV, CH_RO_USER, CH_WRITER_USER,
    ch_passwords, sha256,
)
from stagewatch.devservers.clickhouse import (
    CH_START_TIMEOUT, DEFAULT_CH_HTTP_PORT, DEFAULT_CH_PORT, clickhouse_binary, start_clickhouse, stop_clickhouse,
)
from stagewatch.devservers.common import (
    DEFAULT_DIR, DEPLOY_DIR, DIR_ENV, HOST, STOP_TIMEOUT, DevServerError, PortTakenError, resolve_dir,
)
from stagewatch.devservers.control import SERVERS, down, status, up
from stagewatch.devservers.kafka import (
    CACHE_ENV, DEFAULT_KAFKA_CONTROLLER_PORT, DEFAULT_KAFKA_PORT, KAFKA_START_TIMEOUT, KAFKA_VERSION, cache_root,
    ensure_kafka_lib, kafka_lib_dir, start_kafka, stop_kafka,
)
from stagewatch.devservers.ports import port_free, port_listening, port_owner
from stagewatch.devservers.processes import pid_alive
from stagewatch.devservers.state import ENV_FORMATS, DevState, export_lines, format_env

__all__ = [
    "DevServerError", "PortTakenError", "DevState", "up", "down", "status", "start_kafka", "stop_kafka",
    "start_clickhouse", "stop_clickhouse", "ensure_kafka_lib", "kafka_lib_dir", "cache_root", "clickhouse_binary",
    "ch_passwords", "sha256", "resolve_dir", "port_free", "port_listening", "port_owner", "pid_alive",
    "export_lines", "format_env", "ENV_FORMATS", "SERVERS", "HOST", "KAFKA_VERSION", "DEFAULT_KAFKA_PORT",
    "DEFAULT_KAFKA_CONTROLLER_PORT", "DEFAULT_CH_PORT", "DEFAULT_CH_HTTP_PORT", "DEFAULT_DIR", "DIR_ENV",
    "CACHE_ENV", "DEPLOY_DIR", "STOP_TIMEOUT", "KAFKA_START_TIMEOUT", "CH_START_TIMEOUT", "CH_DATABASE",
    "CH_WRITER_USER", "CH_RO_USER", "CH_PASSWORD_ENV", "CH_RO_PASSWORD_ENV", "CH_ADMIN_PASSWORD_ENV",
]
