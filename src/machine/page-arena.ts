/**
 * Host buffers for guest pages, cut from shared slabs (issue 12, item 4). Every execution of an
 * exploration copies or creates a few pages: a stack, a data page, a rewritten text page and its
 * per-byte write tracking (about 60 KiB). A typed array of its own costs V8 an external allocation
 * and its GC accounting each time, microseconds per page and tens per execution; a view into a
 * slab costs a tenth of a microsecond. A slab stays alive while any page cut from it does, so a
 * long-lived fork holds at most a slab's worth beyond its own pages.
 */

/** Bytes per slab at most: a few executions' worth of copied pages. */
export const SLAB_BYTES = 256 * 1024;
/**
 * Bytes of an arena's first slab; each next one doubles, up to SLAB_BYTES. A machine that is never
 * forked (and the throwaway memory a fork's constructor makes) then pays for what it touches,
 * not for a quarter of a megabyte.
 */
export const FIRST_SLAB_BYTES = 16 * 1024;

/** Zeroed buffers for one lineage of memories (a machine and its forks); never reused once handed out. */
export class PageArena {
  private slab: ArrayBuffer | undefined;
  private at = 0;
  private nextSlab = FIRST_SLAB_BYTES;

  /** Where `bytes` zeroed bytes start (8-aligned), in the slab `this.slab` is left pointing at. */
  private take(bytes: number): number {
    const size = (bytes + 7) & ~7;
    if (size > SLAB_BYTES / 4) {
      this.slab = undefined;
      this.at = 0;
      return -1;
    }
    if (this.slab === undefined || this.at + size > this.slab.byteLength) {
      while (this.nextSlab < size) this.nextSlab *= 2;
      this.slab = new ArrayBuffer(this.nextSlab);
      this.nextSlab = Math.min(2 * this.nextSlab, SLAB_BYTES);
      this.at = 0;
    }
    const offset = this.at;
    this.at += size;
    return offset;
  }

  bytes(n: number): Uint8Array {
    const o = this.take(n);
    return o < 0 ? new Uint8Array(n) : new Uint8Array(this.slab!, o, n);
  }

  int16(n: number): Int16Array {
    const o = this.take(2 * n);
    return o < 0 ? new Int16Array(n) : new Int16Array(this.slab!, o, n);
  }

  float64(n: number): Float64Array {
    const o = this.take(8 * n);
    return o < 0 ? new Float64Array(n) : new Float64Array(this.slab!, o, n);
  }
}
