#!/usr/bin/env bash
# Installs Debian's chromium for the report's browser test (test/trace/report-browser.test.ts,
# driven by playwright-core). Best effort: the test prints a skip reason when chromium is missing.
# PVPATCH_NO_DOWNLOAD=1 skips the download.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then echo "setup-chromium: /usr/bin/chromium present"; exit 0; fi
if [ "${PVPATCH_NO_DOWNLOAD:-}" = "1" ]; then echo "setup-chromium: PVPATCH_NO_DOWNLOAD=1, not installing chromium"; exit 1; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-chromium: cannot install chromium (need root and apt-get)"; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
[ -x /usr/bin/chromium ]
