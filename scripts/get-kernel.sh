#!/usr/bin/env bash
# Fetches a real Debian kernel for pvpatch's real-kernel tier (issue 5): downloads
# linux-image-<release>-unsigned with `apt-get download`, unpacks it, extracts vmlinux from the
# bzImage (src/elf/bzimage.ts, decompressing with the Debian tool) and keeps the .ko modules.
#
#   scripts/get-kernel.sh [--symbols] [PACKAGE]
#       PACKAGE default: newest linux-image-6.1.0-*-cloud-amd64-unsigned
#       --symbols also fetches linux-image-<release>-dbg (~280 MB) and keeps only a System.map from
#       it: the KVM and Xen platforms need the names of static functions they put into pv_ops.
#
# PVPATCH_NO_DOWNLOAD=1: use only what is cached; never download (exit 1 when the kernel is missing).
# Cache (outside git): ${PVPATCH_CACHE:-<repo>/.cache}/kernel/<release>/{vmlinux,vmlinuz,config,modules/}
# and kernel/current naming the last release fetched. Prints the release directory on success.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${PVPATCH_CACHE:-$repo/.cache}/kernel"
mkdir -p "$cache/debs"

symbols=0
if [ "${1:-}" = "--symbols" ]; then symbols=1; shift; fi
pkg="${1:-${PVPATCH_KERNEL_PKG:-}}"
if [ -z "$pkg" ]; then
  command -v apt-cache >/dev/null || { echo "get-kernel: apt-cache not found (not Debian?)" >&2; exit 1; }
  pick() { apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -1; }
  pkg="$(pick)"
  if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; pkg="$(pick)"; fi
  [ -n "$pkg" ] || { echo "get-kernel: no linux-image-6.1.0-*-cloud-amd64-unsigned in the apt index" >&2; exit 1; }
fi
release="${pkg#linux-image-}"; release="${release%-unsigned}"
dir="$cache/$release"
want_symbols() {
  [ "$symbols" -eq 1 ] && [ ! -f "$dir/System.map" ] || return 0
  [ "${PVPATCH_NO_DOWNLOAD:-}" != "1" ] || { echo "get-kernel: PVPATCH_NO_DOWNLOAD=1: not downloading linux-image-$release-dbg (~280 MB) for System.map" >&2; return 1; }
  local dbg="linux-image-$release-dbg" tmpd
  (cd "$cache/debs" && { ls "${dbg}"_*.deb >/dev/null 2>&1 || apt-get download "$dbg" >&2; })
  tmpd="$(mktemp -d "$cache/.dbg.XXXXXX")"
  dpkg-deb --fsys-tarfile "$(ls -1 "$cache/debs/${dbg}"_*.deb | tail -1)" | tar -x -C "$tmpd" "./usr/lib/debug/boot/vmlinux-$release"
  (cd "$repo" && node --import tsx scripts/extract-symbols.ts "$tmpd/usr/lib/debug/boot/vmlinux-$release" "$dir/System.map" >&2)
  rm -rf "$tmpd"
  rm -f "$cache/debs/${dbg}"_*.deb   # 280 MB; the System.map is all we keep
}
symbols_or_warn() { want_symbols || echo "get-kernel: could not make System.map from linux-image-$release-dbg (kvm/xen-pv platforms will need --symbols)" >&2; }
if [ -f "$dir/READY" ]; then echo "$release" > "$cache/current"; symbols_or_warn; echo "$dir"; exit 0; fi

if [ "${PVPATCH_NO_DOWNLOAD:-}" = "1" ]; then
  echo "get-kernel: $release is not cached and PVPATCH_NO_DOWNLOAD=1 forbids downloading it (~80 MB)" >&2; exit 1
fi
cd "$cache/debs"
chmod 777 . 2>/dev/null || true   # apt-get download drops to user _apt when it can
deb="$(ls -1 "${pkg}"_*.deb 2>/dev/null | tail -1 || true)"
if [ -z "$deb" ]; then
  apt-get download "$pkg" >&2 || { [ "$(id -u)" -eq 0 ] && apt-get update -qq >&2 && apt-get download "$pkg" >&2; }
  deb="$(ls -1 "${pkg}"_*.deb | tail -1)"
fi

tmp="$(mktemp -d "$cache/.unpack.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root"
mkdir -p "$tmp/out"
cp "$tmp/root/boot/vmlinuz-$release" "$tmp/out/vmlinuz"
cp "$tmp/root/boot/config-$release" "$tmp/out/config"
mv "$tmp/root/lib/modules/$release/kernel" "$tmp/out/modules"
cd "$repo"
node --import tsx scripts/extract-vmlinux.ts "$tmp/out/vmlinuz" "$tmp/out/vmlinux" >&2
echo "$deb" > "$tmp/out/READY"
rm -rf "$dir"
mv "$tmp/out" "$dir"
echo "$release" > "$cache/current"
symbols_or_warn
echo "$dir"
