/**
 * The kernel version an image was built from, read from the image itself: `linux_banner`
 * (init/version-timestamp.c: "Linux version <UTS_RELEASE> (<builder>) (<compiler>) #<n> ...")
 * for a vmlinux, `vermagic=<UTS_RELEASE> SMP ...` in `.modinfo` for a module
 * (include/linux/vermagic.h). Debian's UTS_RELEASE is the ABI name (6.1.0-50-cloud-amd64);
 * the upstream stable version follows "Debian " in the banner (6.1.176-1), so both are kept.
 */
import type { KernelImage } from './image.ts';

export interface KernelVersion {
  /** UTS_RELEASE, e.g. `6.12.117+deb12-cloud-amd64`. */
  readonly release: string;
  readonly major: number;
  readonly minor: number;
  /** Stable sublevel: from the Debian package version when the banner has one, else from the release. */
  readonly sublevel: number;
  /** Where it was read: the banner line or the vermagic string. */
  readonly source: string;
}

const BANNER = 'Linux version ';

function latin1(bytes: Uint8Array): string {
  return new TextDecoder('latin1').decode(bytes);
}

/** Parse a release (`5.10.0-43-cloud-amd64`) and, when given, the banner's `Debian 5.10.251-5`. */
export function parseKernelVersion(release: string, source: string): KernelVersion | undefined {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  if (m === null) return undefined;
  const deb = /Debian (\d+)\.(\d+)\.(\d+)/.exec(source);
  const sameSeries = deb !== null && Number(deb[1]) === Number(m[1]) && Number(deb[2]) === Number(m[2]);
  return {
    release,
    major: Number(m[1]),
    minor: Number(m[2]),
    sublevel: sameSeries ? Number(deb[3]) : Number(m[3] ?? 0),
    source,
  };
}

/** The banner string at `linux_banner`, or the first "Linux version " in a read-only section. */
function bannerText(image: KernelImage): string | undefined {
  const at = image.symbols.addressOf('linux_banner');
  const fromSymbol = at === undefined ? undefined : image.sectionAt(at);
  const candidates = fromSymbol !== undefined ? [fromSymbol] : image.sections.filter((s) => !s.executable && (s.name === '.rodata' || s.name.startsWith('.rodata')));
  const needle = new TextEncoder().encode(BANNER);
  for (const s of candidates) {
    let i = fromSymbol !== undefined ? at! - s.addr : 0;
    for (;;) {
      i = s.bytes.indexOf(needle[0]!, i);
      if (i < 0 || i + needle.length > s.size) break;
      if (needle.every((b, k) => s.bytes[i + k] === b)) {
        const end = s.bytes.indexOf(0, i);
        return latin1(s.bytes.subarray(i, end < 0 ? Math.min(s.size, i + 512) : Math.min(end, i + 512))).trim();
      }
      if (fromSymbol !== undefined) break;
      i++;
    }
  }
  return undefined;
}

/** `vermagic=` in a module's .modinfo. */
function vermagic(image: KernelImage): string | undefined {
  const s = image.section('.modinfo');
  if (s === undefined) return undefined;
  for (const entry of latin1(s.bytes).split('\0')) if (entry.startsWith('vermagic=')) return entry.slice('vermagic='.length);
  return undefined;
}

/** The version the image declares, or undefined when it carries neither a banner nor a vermagic. */
export function readKernelVersion(image: KernelImage): KernelVersion | undefined {
  if (image.kind === 'module') {
    const v = vermagic(image);
    return v === undefined ? undefined : parseKernelVersion(v.split(' ')[0]!, `vermagic=${v}`);
  }
  const banner = bannerText(image);
  if (banner === undefined) return undefined;
  return parseKernelVersion(banner.slice(BANNER.length).split(' ')[0]!, banner);
}

/** `6.12.117` (the series and stable sublevel). */
export function versionString(v: KernelVersion): string {
  return `${v.major}.${v.minor}.${v.sublevel}`;
}

/** a >= b, comparing major.minor only. */
export function seriesAtLeast(v: KernelVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}
