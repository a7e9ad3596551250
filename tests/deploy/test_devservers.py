"""Real-server tests of stagewatch.devservers (Kafka 4.x KRaft + ClickHouse 18.16).

Nothing is mocked: the module starts both servers once in a temp dir on free
ports, and the last test brings them down again. Order matters (pytest keeps
file order): the outage test stops/starts ClickHouse, the down test is last.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import unquote, urlencode, urlparse

import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import Error as CHError
from clickhouse_driver.errors import ServerException
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from stagewatch import devservers
from stagewatch.cli_dev import dev_app
from tests.servers import free_ports

pytestmark = pytest.mark.servers

REPO = Path(__file__).resolve().parents[2]
READONLY = 164  # DB::ErrorCodes::READONLY
DATABASE_ACCESS_DENIED = 291


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    d = tmp_path_factory.mktemp("dev")
    k, kc, ch, chh = free_ports(4)
    t0 = time.monotonic()
    state = devservers.up(d, kafka_port=k, kafka_controller_port=kc, ch_port=ch, ch_http_port=chh)
    print(f"\nup (both servers) took {time.monotonic() - t0:.1f} s: kafka {state.kafka['startup_seconds']} s, "
          f"clickhouse {state.clickhouse['startup_seconds']} s")
    yield state
    devservers.down(d)  # no-op when test_down_leaves_nothing_running already ran
    for port in (k, kc, ch, chh):
        assert devservers.port_free(port)


def _client(url: str) -> Client:
    c = Client.from_url(url)
    c.connection.connect_timeout = 3
    c.connection.send_receive_timeout = 20
    return c


def _http(dev, query: str, user: str, password: str, **params: str) -> tuple[int, str]:
    qs = urlencode({"query": query, **params})
    req = urllib.request.Request(f"{dev.clickhouse_http_url}/?{qs}", headers={
        "X-ClickHouse-User": user, "X-ClickHouse-Key": password})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _proc_cmdlines_mentioning(text: str) -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                out.append(f"{proc.name}: {cmd}")
    return out


def test_up_records_state_and_writes_private_config(dev):
    raw = json.loads((dev.dir / "state.json").read_text())
    for name, markers in (("kafka", ["kafka.Kafka", str(dev.dir)]), ("clickhouse", ["clickhouse", str(dev.dir)])):
        pid = raw[name]["pid"]
        assert devservers.pid_alive(pid)
        cmd = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
        assert all(m in cmd for m in markers), cmd
        assert raw[name]["started_at"]
    assert raw["kafka"]["version"] == devservers.KAFKA_VERSION
    assert raw["kafka"]["version"].startswith("4.")

    secrets_env = dev.dir / "secrets.env"
    users_xml = dev.dir / "clickhouse" / "users.xml"
    assert stat.S_IMODE(secrets_env.stat().st_mode) == 0o600
    assert stat.S_IMODE(users_xml.stat().st_mode) == 0o600
    pw = devservers.ch_passwords(dev.dir)
    users = users_xml.read_text()
    assert pw["writer"] not in users and pw["readonly"] not in users
    assert devservers.sha256(pw["writer"]) in users
    config = (dev.dir / "clickhouse" / "config.xml").read_text()
    assert config.lstrip().startswith("<?xml") and "<yandex>" in config
    assert "<listen_host>127.0.0.1</listen_host>" in config
    assert "<interserver_http_port>" not in config
    props = (dev.dir / "kafka" / "server.properties").read_text()
    assert "process.roles=broker,controller" in props
    assert f"PLAINTEXT://127.0.0.1:{dev.kafka['port']}" in props


def test_env_lines_are_evaluable(dev):
    lines = dev.env_lines()
    assert lines[0] == f"export STAGEWATCH_KAFKA=127.0.0.1:{dev.kafka['port']}"
    name, _, url = lines[1].removeprefix("export ").partition("=")
    assert name == "STAGEWATCH_STORE" and len(lines) == 2
    assert url == dev.store_url  # URL-escaped passwords need no shell quoting
    u = urlparse(url)
    assert (u.scheme, u.username, u.hostname, u.port, u.path) == (
        "clickhouse", "stagewatch", "127.0.0.1", dev.clickhouse["tcp_port"], "/stagewatch")
    assert unquote(u.password) == devservers.ch_passwords(dev.dir)["writer"]


def test_eval_of_cli_up_exports_to_child_processes(dev):
    """What the README does: `eval "$(stagewatch dev up)"`, then a program started afterwards (a child
    of the shell, like `stagewatch topics create`) must see both variables. Plain NAME=value lines
    (no export) set shell variables that children never see."""
    stagewatch = shutil.which("stagewatch")
    assert stagewatch, "the `stagewatch` command is not installed; run `pip install -e .`"
    script = ('eval "$(stagewatch dev up --dir "$DEVDIR" -q)"; '
              'sh -c \'printf "%s|%s" "$STAGEWATCH_KAFKA" "$STAGEWATCH_STORE"\'')
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DEVDIR": str(dev.dir)}
    res = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{dev.kafka_bootstrap}|{dev.store_url}"
    # --format json: the same variables as one object, for scripts.
    res = subprocess.run([stagewatch, "dev", "up", "--dir", str(dev.dir), "-q", "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"STAGEWATCH_KAFKA": dev.kafka_bootstrap, "STAGEWATCH_STORE": dev.store_url}


def test_kafka_produce_and_consume(dev):
    topic = f"devservers-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": dev.kafka_bootstrap})
    producer.produce(topic, key=b"k1", value=b'{"hello": "stagewatch"}')
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": dev.kafka_bootstrap, "group.id": f"g-{topic}",
                        "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        msg = None
        while time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None or m.error():
                continue
            msg = m
            break
    finally:
        consumer.close()
    assert msg is not None, "no message consumed within 60 s"
    assert (msg.key(), msg.value()) == (b"k1", b'{"hello": "stagewatch"}')
    md = AdminClient({"bootstrap.servers": dev.kafka_bootstrap}).list_topics(timeout=10)
    assert topic in md.topics and list(md.brokers) == [1]


def test_clickhouse_writer_creates_inserts_selects(dev):
    w = _client(dev.store_url)
    w.execute("CREATE TABLE IF NOT EXISTS t_dev (a UInt32, s String) ENGINE = MergeTree ORDER BY a")
    # 18.16: rows go as data (a literal `VALUES (...)` statement hangs this server).
    w.execute("INSERT INTO t_dev (a, s) VALUES", [(1, "x"), (2, "y"), (3, "z")])
    assert w.execute("SELECT count(), sum(a) FROM t_dev") == [(3, 6)]
    assert w.execute("SELECT currentDatabase()") == [("stagewatch",)]
    # The writer is confined to its database.
    with pytest.raises(ServerException) as exc:
        w.execute("CREATE DATABASE other_db")
    assert exc.value.code == DATABASE_ACCESS_DENIED
    w.disconnect()


def test_clickhouse_readonly_user_can_only_read(dev):
    w = _client(dev.store_url)
    w.execute("CREATE TABLE IF NOT EXISTS t_ro (a UInt32) ENGINE = MergeTree ORDER BY a")
    w.execute("INSERT INTO t_ro (a) VALUES", [(7,)])
    w.disconnect()
    r = _client(dev.readonly_store_url)
    assert r.execute("SELECT sum(a) FROM t_ro") == [(7,)]
    for statement, params in (("INSERT INTO t_ro (a) VALUES", [(8,)]),
                              ("CREATE TABLE t_ro2 (a UInt32) ENGINE = Memory", None),
                              ("DROP TABLE t_ro", None),
                              ("SET max_threads = 1", None)):
        with pytest.raises(ServerException) as exc:
            r.execute(statement, params) if params else r.execute(statement)
        assert exc.value.code == READONLY, statement
    assert r.execute("SELECT sum(a) FROM t_ro") == [(7,)]
    # Native protocol: 18.16 ignores per-query settings from a readonly=1 user.
    assert r.execute("SELECT value FROM system.settings WHERE name = 'readonly'", settings={"readonly": 0}) == [("1",)]
    r.disconnect()
    # HTTP (what Grafana uses): SELECT works, but sending any setting is refused.
    ro_pw = devservers.ch_passwords(dev.dir)["readonly"]
    assert _http(dev, "SELECT sum(a) FROM stagewatch.t_ro", "stagewatch_ro", ro_pw) == (200, "7")
    status, body = _http(dev, "SELECT 1", "stagewatch_ro", ro_pw, max_threads="1")
    assert status == 500 and "Code: 164" in body
    # A wrong password is refused.
    bad = Client("127.0.0.1", port=dev.clickhouse["tcp_port"], user="stagewatch_ro", password="wrong",
                 connect_timeout=3)
    with pytest.raises(ServerException):
        bad.execute("SELECT 1")


def test_status_and_cli_report_running(dev):
    report = devservers.status(dev.dir)
    for name in ("kafka", "clickhouse"):
        assert report[name]["state"] == "running"
        assert report[name]["listening"] is True
    assert report["kafka"]["address"] == dev.kafka_bootstrap
    runner = CliRunner()
    res = runner.invoke(dev_app, ["status", "--dir", str(dev.dir), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["clickhouse"]["pid"] == dev.clickhouse["pid"]
    res = runner.invoke(dev_app, ["status", "--dir", str(dev.dir)])
    assert res.exit_code == 0 and "running" in res.stdout
    res = runner.invoke(dev_app, ["env", "--dir", str(dev.dir), "--readonly"])
    assert res.stdout.splitlines() == dev.env_lines() + [f"export STAGEWATCH_STORE_RO={dev.readonly_store_url}"]


def test_up_again_keeps_the_running_servers(dev):
    t0 = time.monotonic()
    again = devservers.up(dev.dir)
    assert time.monotonic() - t0 < 5
    assert again.kafka["pid"] == dev.kafka["pid"] and again.clickhouse["pid"] == dev.clickhouse["pid"]


def test_taken_ports_are_reported_and_nothing_starts(dev, tmp_path):
    (free,) = free_ports(1)
    with pytest.raises(devservers.PortTakenError) as exc:
        devservers.up(tmp_path / "k", only="kafka", kafka_port=dev.kafka["port"], kafka_controller_port=free)
    msg = str(exc.value)
    assert f"Port {dev.kafka['port']}" in msg and "already taken" in msg and "--kafka-port" in msg
    assert str(dev.kafka["pid"]) in msg  # names the owner
    with pytest.raises(devservers.PortTakenError, match="--ch-port"):
        devservers.up(tmp_path / "c", only="clickhouse", ch_port=dev.clickhouse["tcp_port"], ch_http_port=free)
    for sub in ("k", "c"):
        st = devservers.DevState.load(tmp_path / sub)
        assert st.kafka is None and st.clickhouse is None


def test_clickhouse_outage_stop_and_start(dev):
    w = _client(dev.store_url)
    w.execute("CREATE TABLE IF NOT EXISTS t_outage (a UInt32) ENGINE = MergeTree ORDER BY a")
    w.execute("INSERT INTO t_outage (a) VALUES", [(i,) for i in range(100)])
    w.disconnect()
    old_pid, ports = dev.clickhouse["pid"], (dev.clickhouse["tcp_port"], dev.clickhouse["http_port"])

    assert devservers.stop_clickhouse(dev) == "SIGTERM"
    assert not devservers.pid_alive(old_pid)
    assert all(devservers.port_free(p) for p in ports)
    with pytest.raises((CHError, OSError, EOFError)):
        _client(dev.store_url).execute("SELECT 1")
    report = devservers.status(dev.dir)
    assert report["clickhouse"]["state"] == "stopped" and report["kafka"]["state"] == "running"

    t0 = time.monotonic()
    devservers.start_clickhouse(dev)
    print(f"\nclickhouse restart took {time.monotonic() - t0:.1f} s")
    assert dev.clickhouse["pid"] != old_pid
    assert (dev.clickhouse["tcp_port"], dev.clickhouse["http_port"]) == ports
    assert _client(dev.store_url).execute("SELECT count() FROM t_outage") == [(100,)]


def test_stale_and_foreign_pids_are_handled(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    k, kc, ch, chh = free_ports(4)
    state = devservers.DevState(dir=tmp_path)
    state.kafka = {"pid": dead.pid, "port": k, "controller_port": kc, "started_at": "x"}
    state.clickhouse = {"pid": os.getpid(), "tcp_port": ch, "http_port": chh, "started_at": "x"}
    state.save()
    report = devservers.status(tmp_path)
    assert report["kafka"]["state"] == "stale"
    assert report["clickhouse"]["state"] == "foreign"  # alive, but not a server of this dir
    res = CliRunner().invoke(dev_app, ["status", "--dir", str(tmp_path)])
    assert res.exit_code == 0 and "stale" in res.stdout and "foreign" in res.stdout
    assert devservers.down(tmp_path) == {"kafka": "already-dead", "clickhouse": "not-ours"}
    assert devservers.pid_alive(os.getpid())  # the foreign pid was left alone
    report = devservers.status(tmp_path)
    assert report["kafka"]["state"] == report["clickhouse"]["state"] == "stopped"
    assert devservers.down(tmp_path) == {"kafka": "not-running", "clickhouse": "not-running"}


def test_cli_up_and_down_clickhouse_only(tmp_path):
    ch, chh = free_ports(2)
    runner = CliRunner()
    res = runner.invoke(dev_app, ["up", "--dir", str(tmp_path), "--only", "clickhouse",
                                  "--ch-port", str(ch), "--ch-http-port", str(chh), "-q"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("export STAGEWATCH_STORE=clickhouse://stagewatch:")
    state = devservers.DevState.load(tmp_path)
    assert state.kafka is None
    pid = state.clickhouse["pid"]
    assert _client(lines[0].split("=", 1)[1]).execute("SELECT 1") == [(1,)]  # URL-escaped: needs no unquoting
    res = runner.invoke(dev_app, ["down", "--dir", str(tmp_path), "-q"])
    assert res.exit_code == 0 and "clickhouse: stopped" in res.stdout
    assert not devservers.pid_alive(pid)
    assert devservers.port_free(ch) and devservers.port_free(chh)
    res = runner.invoke(dev_app, ["up", "--dir", str(tmp_path), "--only", "nope"])
    assert res.exit_code != 0


def test_passwords_from_env_are_used_and_url_escaped(tmp_path, monkeypatch):
    monkeypatch.setenv(devservers.CH_PASSWORD_ENV, "p@ss/w:rd %1")
    monkeypatch.setenv(devservers.CH_RO_PASSWORD_ENV, "ro#pw?")
    state = devservers.DevState(dir=tmp_path, clickhouse={"tcp_port": 19000})
    assert state.store_url == "clickhouse://stagewatch:p%40ss%2Fw%3Ard%20%251@127.0.0.1:19000/stagewatch"
    assert unquote(urlparse(state.readonly_store_url).password) == "ro#pw?"
    # Env-given passwords are not written to disk; the admin one is generated.
    pw = devservers.ch_passwords(tmp_path, create=True)
    stored = (tmp_path / "secrets.env").read_text()
    assert "p@ss" not in stored and pw["admin"] in stored


def test_fixtures_start_free_ports_and_clean_up(tmp_path):
    """Run tests.servers' fixtures in a child pytest, the way tests/conftest.py uses them."""
    out = tmp_path / "seen.json"
    (tmp_path / "test_child.py").write_text(textwrap.dedent("""
        import json, os
        from clickhouse_driver import Client
        from confluent_kafka.admin import AdminClient
        from stagewatch import devservers
        from tests.servers import kafka_server, clickhouse_server  # noqa: F401

        def test_both(kafka_server, clickhouse_server):
            assert kafka_server.clickhouse is None and clickhouse_server.kafka is None
            md = AdminClient({"bootstrap.servers": kafka_server.kafka_bootstrap}).list_topics(timeout=10)
            assert md.brokers
            assert Client.from_url(clickhouse_server.store_url).execute("SELECT 1") == [(1,)]
            devservers.stop_clickhouse(clickhouse_server)      # an outage test in the middle
            devservers.start_clickhouse(clickhouse_server)
            json.dump({"pids": [kafka_server.kafka["pid"], clickhouse_server.clickhouse["pid"]],
                       "ports": [kafka_server.kafka["port"], kafka_server.kafka["controller_port"],
                                 clickhouse_server.clickhouse["tcp_port"], clickhouse_server.clickhouse["http_port"]]},
                      open(os.environ["SEEN"], "w"))
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEEN": str(out)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_child.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    seen = json.loads(out.read_text())
    assert not any(devservers.pid_alive(p) for p in seen["pids"])
    assert all(devservers.port_free(p) for p in seen["ports"])
    assert devservers.DEFAULT_KAFKA_PORT not in seen["ports"]


def test_down_leaves_nothing_running(dev):
    pids = [dev.kafka["pid"], dev.clickhouse["pid"]]
    ports = [dev.kafka["port"], dev.kafka["controller_port"], dev.clickhouse["tcp_port"], dev.clickhouse["http_port"]]
    t0 = time.monotonic()
    assert devservers.down(dev.dir) == {"kafka": "SIGTERM", "clickhouse": "SIGTERM"}
    print(f"\ndown took {time.monotonic() - t0:.1f} s")
    assert not any(devservers.pid_alive(p) for p in pids)
    assert all(devservers.port_free(p) for p in ports)
    assert _proc_cmdlines_mentioning(str(dev.dir)) == []
    raw = json.loads((dev.dir / "state.json").read_text())
    assert raw["kafka"]["pid"] is None and raw["clickhouse"]["pid"] is None
    report = devservers.status(dev.dir)
    assert report["kafka"]["state"] == report["clickhouse"]["state"] == "stopped"
