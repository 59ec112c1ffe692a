#!/usr/bin/env bash
# Installs the optional system tools pvpatch's deeper test tiers use (a C compiler for the
# differential test against the real CPU). Each tier prints a skip reason when its tool is missing.
set -uo pipefail
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ ${#need[@]} -eq 0 ]; then echo "setup-system: all tools present"; exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: cannot install ${need[*]} (need root and apt-get); dependent tests will skip"
  exit 0
fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
