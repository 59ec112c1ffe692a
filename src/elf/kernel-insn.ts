/**
 * What Linux's `insn_decode_kernel()` tells the boot patcher about one instruction: its length,
 * its first opcode bytes after prefixes (`insn.opcode.bytes`), and for a relative branch its
 * target. Lengths and validity come from iced-x86; we never decode by hand.
 */
import { Decoder, DecoderOptions, Code, Register } from 'iced-x86';

export interface KernelInsn {
  readonly length: number;
  /** opcode.bytes[0] and [1] (0 when absent). */
  readonly op1: number;
  readonly op2: number;
  /** Target of a near relative branch (CALL/JMP/Jcc rel), else undefined. */
  readonly branchTarget: number | undefined;
}

/** What apply_relocation needs beyond KernelInsn (decoded only there: it costs a second WASM call). */
export interface KernelInsnOperands extends KernelInsn {
  /** insn.immediate (a branch's rel8/rel32 counts as one, as in Linux's decoder): offset and size in bytes (0 = none). */
  readonly immOffset: number;
  readonly immSize: number;
  /** insn.displacement: offset and size of the memory displacement (0 = none). */
  readonly dispOffset: number;
  readonly dispSize: number;
  /** insn_rip_relative: the memory operand is %rip-relative. */
  readonly ripRelative: boolean;
}

const LEGACY_PREFIXES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]);

/** Decode the instruction starting at bytes[0], located at `address`; undefined when invalid or cut short. */
export function decodeKernelInsn(bytes: Uint8Array, address: number): KernelInsn | undefined {
  return decode(bytes, address, false);
}

/** decodeKernelInsn with the immediate, displacement and %rip-relative facts apply_relocation uses. */
export function decodeKernelInsnOperands(bytes: Uint8Array, address: number): KernelInsnOperands | undefined {
  return decode(bytes, address, true) as KernelInsnOperands | undefined;
}

function decode(bytes: Uint8Array, address: number, operands: boolean): KernelInsn | KernelInsnOperands | undefined {
  if (bytes.length === 0) return undefined;
  const dec = new Decoder(64, bytes.subarray(0, 15), DecoderOptions.None);
  try {
    dec.ip = BigInt.asUintN(64, BigInt(address));
    const insn = dec.decode();
    try {
      if (insn.code === Code.INVALID) return undefined;
      let i = 0;
      while (i < insn.length && LEGACY_PREFIXES.has(bytes[i]!)) i++;
      if (i < insn.length && (bytes[i]! & 0xf0) === 0x40) i++; // REX
      const op1 = bytes[i] ?? 0;
      const op2 = op1 === 0x0f ? (bytes[i + 1] ?? 0) : 0;
      const isRelBranch = insn.isCallNear || insn.isJmpShortOrNear || insn.isJccShortOrNear;
      let extra = {};
      if (operands) {
        const c = dec.getConstantOffsets(insn);
        extra = { immOffset: c.immediateOffset, immSize: c.immediateSize, dispOffset: c.displacementOffset, dispSize: c.displacementSize, ripRelative: insn.memoryBase === Register.RIP };
        c.free();
      }
      return {
        ...extra,
        length: insn.length,
        op1,
        op2,
        branchTarget: isRelBranch ? Number(BigInt.asIntN(64, insn.nearBranchTarget)) : undefined,
      };
    } finally {
      insn.free();
    }
  } finally {
    dec.free();
  }
}
