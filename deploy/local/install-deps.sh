#!/usr/bin/env bash
# Install what `stagewatch dev up` needs on a Debian machine (no Docker):
#   * clickhouse-server + clickhouse-client (Debian's 18.16 packages)
#   * Java 17+ and Maven, only if missing (Maven assembles the Kafka 4.x jars
#     from Maven Central on the first `stagewatch dev up`)
#   * optionally (--with-kafka-jars) the Kafka jar cache itself.
#
# Idempotent: when everything is present it changes nothing and does not run
# apt-get at all. Needs root for apt-get (uses sudo when not root).
#
#   sudo deploy/local/install-deps.sh                  # or as root, e.g. in CI
#   deploy/local/install-deps.sh --with-kafka-jars     # also warm ~/.cache/stagewatch
set -euo pipefail

with_kafka_jars=0
for arg in "$@"; do
  case "$arg" in
    --with-kafka-jars) with_kafka_jars=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { echo "install-deps: $*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  SUDO=(__need_root__)
fi

java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v
  v=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
  [ "${v%%.*}" -ge 17 ] 2>/dev/null
}

pkgs=()
# clickhouse-server and clickhouse-client go together so their versions match.
if ! { [ -x /usr/sbin/clickhouse-server ] || command -v clickhouse-server >/dev/null 2>&1; } \
   || ! command -v clickhouse-client >/dev/null 2>&1; then
  pkgs+=(clickhouse-server clickhouse-client)
fi
java_ok || pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
# PostgreSQL for the POMS-style comparison of bench/scale_bench.py (and its tests in tests/bench/).
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || pkgs+=(postgresql)

if [ "${#pkgs[@]}" -eq 0 ]; then
  say "clickhouse-server, clickhouse-client, java 17+, mvn and postgresql are already installed; nothing to do."
else
  if [ "${SUDO[0]:-}" = "__need_root__" ]; then
    say "need root to install: ${pkgs[*]} (run this script as root or install sudo)"; exit 1
  fi
  say "installing: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${pkgs[@]}"
  # The Debian package may start a system-wide server on 9000/8123 where an init
  # system exists; stagewatch does not use it (it runs its own on 19000/18123).
fi

if [ "$with_kafka_jars" -eq 1 ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  repo=$(cd "$here/../.." && pwd)
  say "assembling the Kafka jars into the cache (Maven Central)"
  (cd "$repo" && python3 -m stagewatch.cli_dev prepare)
fi
