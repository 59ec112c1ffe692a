#!/usr/bin/env bash
# Fetches a real Debian kernel for pvpatch's real-kernel tier (issues 5, 11): downloads
# linux-image-<release>-unsigned with `apt-get download`, unpacks it, extracts vmlinux from the
# bzImage (src/elf/bzimage.ts, decompressing with the Debian tool) and keeps the .ko modules.
#
#   scripts/get-kernel.sh [--symbols] [--series 5.10|6.1|6.12] [--flavour cloud|generic] [--newest] [PACKAGE]
#       --series   the build of linux-image-<series>*-<flavour>-amd64-unsigned pinned in
#                  scripts/kernel-pins.txt, or the newest apt can download when the archive no
#                  longer serves the pinned one (default 6.1: bookworm; 6.12: bookworm-security/
#                  backports; 5.10: bullseye, read through a private apt list in the cache from the
#                  same Debian mirror)
#       --newest   ignore the pin and the cached release: the newest build apt can download
#       --flavour  cloud (default) or generic (Debian's plain amd64 flavour)
#       --symbols  also fetches linux-image-<release>-dbg (~300 MB) and keeps only a System.map from
#                  it: the KVM and Xen platforms and jump-label key names need static symbols.
#
# PVPATCH_NO_DOWNLOAD=1: use only what is cached; never download (exit 1 when the kernel is missing).
# Cache (outside git): ${PVPATCH_CACHE:-<repo>/.cache}/kernel/<release>/{vmlinux,vmlinuz,config,modules/}
# and kernel/current-<series>-<flavour> naming the last release fetched for that series
# (kernel/current too, for the default 6.1 cloud kernel). Prints the release directory on success.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
root="${PVPATCH_CACHE:-$repo/.cache}"
cache="$root/kernel"
mkdir -p "$cache/debs"

symbols=0
newest=0
series=6.1
flavour=cloud
pkg="${PVPATCH_KERNEL_PKG:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --symbols) symbols=1 ;;
    --newest) newest=1 ;;
    --series) series="${2:?--series wants a version like 6.12}"; shift ;;
    --flavour|--flavor) flavour="${2:?--flavour wants cloud or generic}"; shift ;;
    -*) echo "get-kernel: unknown option $1" >&2; exit 2 ;;
    *) pkg="$1" ;;
  esac
  shift
done
case "$flavour" in cloud) suffix='cloud-amd64' ;; generic) suffix='amd64' ;; *) echo "get-kernel: --flavour is cloud or generic, not $flavour" >&2; exit 2 ;; esac
[[ "$series" =~ ^[0-9]+\.[0-9]+$ ]] || { echo "get-kernel: --series wants a version like 6.12, not $series" >&2; exit 2; }

# 5.10 is bullseye's kernel: a private apt state (sources, lists, archives) in the cache, from the
# mirror the system already uses, so the system's apt configuration stays as it is.
apt_opts=()
if [ "$series" = "5.10" ]; then
  mirror="$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || true; } | grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]*/debian( |$)' | head -1 | tr -d ' ' || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"; mirror="${mirror%/}"
  a="$root/apt/bullseye"
  mkdir -p "$a/lists/partial" "$a/archives/partial"
  printf 'deb %s bullseye main\ndeb %s-security bullseye-security main\n' "$mirror" "$mirror" > "$a/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$a/sources.list" -o "Dir::Etc::SourceParts=-" -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a" -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=")
  [ -n "$(ls "$a/lists" 2>/dev/null | grep -v partial || true)" ] || apt-get "${apt_opts[@]}" update -qq >&2 || { echo "get-kernel: cannot read bullseye from $mirror" >&2; exit 1; }
fi

# The pinned build first (scripts/kernel-pins.txt): cached, or downloadable from the archive.
pin=""
if [ -z "$pkg" ] && [ "$newest" -eq 0 ]; then
  pin="$(awk -v s="$series" -v f="$flavour" '$1 == s && $2 == f { print $3 }' "$repo/scripts/kernel-pins.txt" 2>/dev/null || true)"
fi
if [ -n "$pin" ]; then
  pinned="linux-image-$pin-unsigned"
  if [ -f "$cache/$pin/READY" ]; then pkg="$pinned"
  elif [ "${PVPATCH_NO_DOWNLOAD:-}" != "1" ] && command -v apt-get >/dev/null && (cd "$cache/debs" && chmod 777 . 2>/dev/null; ls "$pinned"_*.deb >/dev/null 2>&1 || apt-get "${apt_opts[@]}" download "$pinned" >/dev/null 2>&1); then pkg="$pinned"
  elif [ "${PVPATCH_NO_DOWNLOAD:-}" != "1" ]; then echo "get-kernel: the pinned $pin (scripts/kernel-pins.txt) is no longer served; taking the newest $series $flavour build" >&2
  fi
fi
# Otherwise a release already cached for this series stays the series' kernel (dumps and tests are keyed by it).
pointer="$cache/current-$series-$flavour"
[ -f "$pointer" ] || { [ "$series" = "6.1" ] && [ "$flavour" = cloud ] && pointer="$cache/current"; }
if [ -z "$pkg" ] && [ "$newest" -eq 0 ] && [ -f "$pointer" ] && [ -f "$cache/$(cat "$pointer")/READY" ]; then pkg="linux-image-$(cat "$pointer")-unsigned"; fi
if [ -z "$pkg" ]; then
  command -v apt-cache >/dev/null || { echo "get-kernel: apt-cache not found (not Debian?)" >&2; exit 1; }
  re="^linux-image-${series//./\\.}[.-][0-9][^ ]*-${suffix}-unsigned\$"
  candidates() {
    apt-cache "${apt_opts[@]}" search --names-only "$re" | awk '{print $1}' |
      { if [ "$flavour" = cloud ]; then cat; else grep -vE -- '-(rt|cloud)-amd64-unsigned$' || true; fi; } | sort -rV
  }
  list="$(candidates)"
  if [ -z "$list" ] && [ "$(id -u)" -eq 0 ]; then apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || true; list="$(candidates)"; fi
  [ -n "$list" ] || { echo "get-kernel: no linux-image-$series*-$suffix-unsigned in the apt index" >&2; exit 1; }
  # Newest first; an index can list a package its pool no longer serves (bullseye-security after LTS).
  chmod 777 "$cache/debs" 2>/dev/null || true
  for p in $list; do
    if (cd "$cache/debs" && { ls "$p"_*.deb >/dev/null 2>&1 || apt-get "${apt_opts[@]}" download "$p" >/dev/null 2>&1; }); then pkg="$p"; break; fi
    echo "get-kernel: $p is listed but cannot be downloaded; trying an older one" >&2
  done
  [ -n "$pkg" ] || { echo "get-kernel: none of the listed linux-image-$series*-$suffix-unsigned packages can be downloaded" >&2; exit 1; }
fi
release="${pkg#linux-image-}"; release="${release%-unsigned}"
dir="$cache/$release"
mark_current() {
  echo "$release" > "$cache/current-$series-$flavour"
  if [ "$series" = "6.1" ] && [ "$flavour" = cloud ]; then echo "$release" > "$cache/current"; fi
}
download() { (cd "$cache/debs" && { ls "$1"_*.deb >/dev/null 2>&1 || apt-get "${apt_opts[@]}" download "$1" >&2; }); }
want_symbols() {
  [ "$symbols" -eq 1 ] && [ ! -f "$dir/System.map" ] || return 0
  [ "${PVPATCH_NO_DOWNLOAD:-}" != "1" ] || { echo "get-kernel: PVPATCH_NO_DOWNLOAD=1: not downloading linux-image-$release-dbg (~280 MB) for System.map" >&2; return 1; }
  local dbg="linux-image-$release-dbg" tmpd
  download "$dbg"
  tmpd="$(mktemp -d "$cache/.dbg.XXXXXX")"
  dpkg-deb --fsys-tarfile "$(ls -1 "$cache/debs/${dbg}"_*.deb | tail -1)" | tar -x -C "$tmpd" "./usr/lib/debug/boot/vmlinux-$release"
  (cd "$repo" && node --import tsx scripts/extract-symbols.ts "$tmpd/usr/lib/debug/boot/vmlinux-$release" "$dir/System.map" >&2)
  rm -rf "$tmpd"
  rm -f "$cache/debs/${dbg}"_*.deb   # 300 MB; the System.map is all we keep
}
symbols_or_warn() { want_symbols || echo "get-kernel: could not make System.map from linux-image-$release-dbg (kvm/xen-pv platforms will need --symbols)" >&2; }
if [ -f "$dir/READY" ]; then mark_current; symbols_or_warn; echo "$dir"; exit 0; fi

if [ "${PVPATCH_NO_DOWNLOAD:-}" = "1" ]; then
  echo "get-kernel: $release is not cached and PVPATCH_NO_DOWNLOAD=1 forbids downloading it (~80 MB)" >&2; exit 1
fi
chmod 777 "$cache/debs" 2>/dev/null || true   # apt-get download drops to user _apt when it can
if ! download "$pkg"; then
  [ "$(id -u)" -eq 0 ] && apt-get "${apt_opts[@]}" update -qq >&2 && download "$pkg"
fi
deb="$(ls -1 "$cache/debs/${pkg}"_*.deb | tail -1)"

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
mark_current
symbols_or_warn
echo "$dir"
