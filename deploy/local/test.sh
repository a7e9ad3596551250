#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run the whole suite.
# Servers (Kafka, ClickHouse 18.16) are started by the tests themselves and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -f deploy/local/install-deps.sh ]; then
  bash deploy/local/install-deps.sh
fi
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec python3 -m pytest -q "$@"
