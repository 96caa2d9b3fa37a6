#!/usr/bin/env bash
# Debian's chromium + chromedriver for the browser test (no downloaded browser builds).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium/chromedriver missing: run 'sudo apt-get install chromium chromium-driver'" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
