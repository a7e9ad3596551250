#!/usr/bin/env bash
# Install what the HTML-report tests need on a Debian machine: Debian's headless-capable `chromium`
# (tests/dashboards/test_report.py opens `stagewatch report` output in it, takes a screenshot and
# checks the console). Nothing is downloaded outside Debian's packages.
#
# Idempotent: when chromium is already installed it changes nothing and does not run apt-get.
# Needs root for apt-get (uses sudo when not root).
#
#   sudo deploy/local/install-deps-report.sh
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  "") ;;
  *) echo "install-deps-report.sh: unknown option $1" >&2; exit 2 ;;
esac

say() { echo "install-deps-report: $*" >&2; }

if command -v chromium >/dev/null 2>&1; then
  say "chromium is already installed ($(chromium --version 2>/dev/null | head -1)); nothing to do."
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  say "need root to install chromium (run this script as root or install sudo)"; exit 1
fi

say "installing: chromium fonts-liberation"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends chromium fonts-liberation
chromium --version >&2
