#!/usr/bin/env bash
# Installs Debian's qemu-system-x86 for pvpatch's real-boot test tier (a TCG boot of the cached
# Debian kernel whose memory is compared with the reproduced boot patching). Best effort: the
# tier prints a skip reason when QEMU is missing. PVPATCH_NO_DOWNLOAD=1: install nothing.
set -uo pipefail
if command -v qemu-system-x86_64 >/dev/null 2>&1; then echo "setup-qemu: qemu-system-x86_64 present"; exit 0; fi
if [ "${PVPATCH_NO_DOWNLOAD:-}" = "1" ]; then
  echo "setup-qemu: qemu-system-x86_64 missing and PVPATCH_NO_DOWNLOAD=1 forbids installing it"; exit 1
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-qemu: cannot install qemu-system-x86 (need root and apt-get)"; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null 2>&1 ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends qemu-system-x86; }
command -v qemu-system-x86_64 >/dev/null 2>&1
