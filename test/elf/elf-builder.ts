/**
 * Builds tiny x86-64 ELF64 files at run time for the reader's tests: the file header, the given
 * sections' bytes, a .shstrtab and the section header table. Enough to make a "vmlinux" (ET_EXEC
 * with addressed sections) or a "module" (ET_REL with .symtab and .rela.* sections).
 */

export interface SectionSpec {
  name: string;
  type: number;
  flags?: number;
  addr?: bigint;
  data: Uint8Array;
  link?: number;
  info?: number;
  align?: number;
  entsize?: number;
}

export const SHT = { PROGBITS: 1, SYMTAB: 2, STRTAB: 3, RELA: 4, NOBITS: 8 } as const;
export const SHF = { WRITE: 1, ALLOC: 2, EXEC: 4 } as const;

/** `sections` get indices 1..n (index 0 is the null section); .shstrtab is appended last. */
export function buildElf(type: 1 | 2, sections: SectionSpec[]): Uint8Array {
  const names: number[] = [];
  let shstr = '\0';
  for (const s of [...sections, { name: '.shstrtab' }]) {
    names.push(shstr.length);
    shstr += `${s.name}\0`;
  }
  const all: SectionSpec[] = [...sections, { name: '.shstrtab', type: SHT.STRTAB, data: new TextEncoder().encode(shstr) }];
  let off = 64;
  const offsets = all.map((s) => {
    off = Math.ceil(off / 8) * 8;
    const at = off;
    if (s.type !== SHT.NOBITS) off += s.data.length;
    return at;
  });
  const shoff = Math.ceil(off / 8) * 8;
  const out = new Uint8Array(shoff + 64 * (all.length + 1));
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  v.setUint16(16, type, true);
  v.setUint16(18, 62, true); // EM_X86_64
  v.setUint32(20, 1, true);
  v.setBigUint64(0x28, BigInt(shoff), true);
  v.setUint16(0x34, 64, true);
  v.setUint16(0x3a, 64, true);
  v.setUint16(0x3c, all.length + 1, true);
  v.setUint16(0x3e, all.length, true);
  all.forEach((s, i) => {
    if (s.type !== SHT.NOBITS) out.set(s.data, offsets[i]!);
    const h = shoff + 64 * (i + 1);
    v.setUint32(h, names[i]!, true);
    v.setUint32(h + 4, s.type, true);
    v.setBigUint64(h + 8, BigInt(s.flags ?? 0), true);
    v.setBigUint64(h + 16, s.addr ?? 0n, true);
    v.setBigUint64(h + 24, BigInt(offsets[i]!), true);
    v.setBigUint64(h + 32, BigInt(s.data.length), true);
    v.setUint32(h + 40, s.link ?? 0, true);
    v.setUint32(h + 44, s.info ?? 0, true);
    v.setBigUint64(h + 48, BigInt(s.align ?? 1), true);
    v.setBigUint64(h + 56, BigInt(s.entsize ?? 0), true);
  });
  return out;
}

/** Little-endian packing for table entries. */
export class Packer {
  private readonly bytes: number[] = [];
  u8(x: number): this {
    this.bytes.push(x & 0xff);
    return this;
  }
  u16(x: number): this {
    return this.u8(x).u8(x >> 8);
  }
  s32(x: number): this {
    return this.u16(x & 0xffff).u16((x >> 16) & 0xffff);
  }
  u32(x: number): this {
    return this.s32(x | 0);
  }
  u64(x: bigint): this {
    const v = BigInt.asUintN(64, x);
    return this.u32(Number(v & 0xffffffffn)).u32(Number(v >> 32n));
  }
  raw(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.u8(b[i]!);
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** Elf64_Sym: name offset, info, other, shndx, value, size. */
export function sym(name: number, info: number, shndx: number, value: bigint, size = 0n): Uint8Array {
  return new Packer().u32(name).u8(info).u8(0).u16(shndx).u64(value).u64(size).done();
}

/** Elf64_Rela: offset, info = sym << 32 | type, addend. */
export function rela(offset: number, symbol: number, type: number, addend: bigint): Uint8Array {
  return new Packer().u64(BigInt(offset)).u32(type).u32(symbol).u64(addend).done();
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
