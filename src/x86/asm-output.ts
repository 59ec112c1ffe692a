/**
 * The result of `Asm.assemble()`: bytes, label addresses and a listing for people.
 */
import { disassemble, hexBytes } from './format.ts';
import { AsmError } from './asm-operands.ts';

/** Signed canonical JS number for a 64-bit address (the form the machine uses). */
export function canonical(addr: bigint): number {
  return Number(BigInt.asIntN(64, addr));
}

/** Where one item of the block landed: [offset, end), and whether it is raw data. */
export interface Piece {
  offset: number;
  end: number;
  data: boolean;
}

/** The bytes of an assembled block and where its labels landed. */
export class Assembled {
  constructor(
    /** Address of the first byte (unsigned 64-bit). */
    readonly base: bigint,
    readonly bytes: Uint8Array,
    /** Label name -> absolute address (canonical signed number, as the machine uses). */
    readonly labels: Map<string, number>,
    private readonly pieces: readonly Piece[],
  ) {}

  /** Absolute address of label `name`, as the canonical signed number the machine uses. */
  address(name: string): number {
    const a = this.labels.get(name);
    if (a === undefined) throw new AsmError(`no label '${name}' in this block`);
    return a;
  }

  /** Absolute address of label `name` as unsigned 64-bit. */
  addressU64(name: string): bigint {
    return BigInt.asUintN(64, BigInt(this.address(name)));
  }

  /** Canonical signed form of `base`. */
  get baseAddress(): number {
    return canonical(this.base);
  }

  /** Disassembly with addresses, bytes and labels; data that is a Linux NOP reads as one. */
  listing(): string {
    const byOffset = new Map<number, string[]>();
    for (const [name, addr] of this.labels) {
      const off = Number(BigInt.asUintN(64, BigInt(addr) - this.base));
      byOffset.set(off, [...(byOffset.get(off) ?? []), name]);
    }
    const hex16 = (a: number) => BigInt.asUintN(64, BigInt(a)).toString(16).padStart(16, '0');
    const out: string[] = [];
    for (const p of this.pieces) {
      for (const name of byOffset.get(p.offset) ?? []) out.push(`${name}:`);
      byOffset.delete(p.offset);
      const chunk = this.bytes.subarray(p.offset, p.end);
      const addr = canonical(this.base + BigInt(p.offset));
      if (p.data) out.push(`  ${hex16(addr)}  ${hexBytes(chunk).padEnd(24)} ${nopText(chunk) ?? '.byte'}`);
      else for (const l of disassemble(chunk, addr)) out.push(`  ${hex16(l.address)}  ${hexBytes(l.bytes).padEnd(24)} ${l.text}`);
    }
    for (const names of byOffset.values()) for (const name of names) out.push(`${name}:`);
    return out.join('\n');
  }
}

/** The text of data that is exactly one valid instruction (a NOP from the table), else undefined. */
function nopText(chunk: Uint8Array): string | undefined {
  const lines = disassemble(chunk, 0);
  return lines.length === 1 && lines[0]!.valid ? lines[0]!.text : undefined;
}
