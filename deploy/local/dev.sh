#!/usr/bin/env bash
# Thin wrapper around `stagewatch dev` that works without installing the package:
#
#   eval "$(deploy/local/dev.sh up)"        # start Kafka + ClickHouse, export their addresses
#   deploy/local/dev.sh status
#   deploy/local/dev.sh down
#
# All options of `stagewatch dev <command> --help` apply (--dir, --only, ports).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m stagewatch.cli_dev "$@"
