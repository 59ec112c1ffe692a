/**
 * The kernel's memory while it patches itself: a writable copy of each loaded section, made on the
 * first write (copy-on-write), so reading an unpatched 50 MB image costs no copy. Boot patching
 * (`text_poke_early`) writes here; the original image stays as it was for comparison.
 */
import type { KernelImage, ImageSection } from './image.ts';

export class PatchedText {
  private readonly copies = new Map<ImageSection, Uint8Array>();

  constructor(readonly image: KernelImage) {}

  private bytesOf(s: ImageSection): Uint8Array {
    return this.copies.get(s) ?? s.bytes;
  }

  /** Current bytes at [addr, addr+len) (a view), or undefined outside one loaded section. */
  read(addr: number, len: number): Uint8Array | undefined {
    const s = this.image.sectionAt(addr);
    if (s === undefined || addr + len > s.addr + s.size) return undefined;
    const off = addr - s.addr;
    return this.bytesOf(s).subarray(off, off + len);
  }

  /** Up to `len` bytes at `addr`, fewer at the end of a section (for decoding a 15-byte window). */
  window(addr: number, len: number): Uint8Array | undefined {
    const s = this.image.sectionAt(addr);
    if (s === undefined) return undefined;
    const off = addr - s.addr;
    return this.bytesOf(s).subarray(off, Math.min(s.size, off + len));
  }

  /** text_poke_early: overwrite [addr, addr+bytes.length). Returns false outside a loaded section. */
  write(addr: number, bytes: Uint8Array): boolean {
    const s = this.image.sectionAt(addr);
    if (s === undefined || addr + bytes.length > s.addr + s.size) return false;
    let copy = this.copies.get(s);
    if (copy === undefined) {
      copy = s.bytes.slice();
      this.copies.set(s, copy);
    }
    copy.set(bytes, addr - s.addr);
    return true;
  }
}

/** A run of consecutive bytes that boot patching changed. */
export interface ChangedRun {
  readonly address: number;
  readonly original: Uint8Array;
  readonly patched: Uint8Array;
}

/** Every changed byte, as maximal runs in address order. */
export function changedRuns(text: PatchedText): ChangedRun[] {
  const out: ChangedRun[] = [];
  for (const s of text.image.sections) {
    const now = text.read(s.addr, s.size);
    if (now === undefined || now.buffer === s.bytes.buffer) continue; // never written: no copy was made
    let i = 0;
    while (i < s.size) {
      if (now[i] === s.bytes[i]) {
        i++;
        continue;
      }
      const start = i;
      while (i < s.size && now[i] !== s.bytes[i]) i++;
      out.push({ address: s.addr + start, original: s.bytes.subarray(start, i), patched: now.subarray(start, i) });
    }
  }
  return out;
}
