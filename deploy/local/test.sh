#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run the whole suite.
# Servers (Kafka, ClickHouse 18.16) are started by the tests themselves and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
for script in deploy/local/install-deps.sh deploy/local/install-deps-*.sh; do
  if [ -f "$script" ]; then
    bash "$script"
  fi
done
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
exec python3 -m pytest -q "$@"
