/**
 * iced-x86 → Insn: decode one instruction and resolve its operands into the interpreter's
 * compact form (src/x86/insn.ts). Runs once per instruction address and content; the decode
 * cache in src/machine/fetch.ts keeps the result.
 */
import { Decoder, DecoderOptions, Instruction, Mnemonic, MemorySize, OpKind, Register, Code } from 'iced-x86';
import { Op, Opd, Seg, BASE_RIP, NO_REG, type Insn } from './insn.ts';

const MNEMONIC_OP: ReadonlyMap<Mnemonic, Op> = new Map<Mnemonic, Op>([
  [Mnemonic.Nop, Op.NOP], [Mnemonic.Endbr64, Op.NOP],
  // Prefetches are hints with no architectural effect (SDM: PREFETCHh, PREFETCHW); Linux runs
  // prefetcht0 in its lock slowpaths where the CPU model lacks 3dnowprefetch.
  [Mnemonic.Prefetchw, Op.NOP], [Mnemonic.Prefetcht0, Op.NOP], [Mnemonic.Prefetcht1, Op.NOP],
  [Mnemonic.Prefetcht2, Op.NOP], [Mnemonic.Prefetchnta, Op.NOP],
  [Mnemonic.Mov, Op.MOV], [Mnemonic.Movzx, Op.MOVZX], [Mnemonic.Movsx, Op.MOVSX],
  [Mnemonic.Movsxd, Op.MOVSX], [Mnemonic.Lea, Op.LEA],
  [Mnemonic.Add, Op.ADD], [Mnemonic.Or, Op.OR], [Mnemonic.Adc, Op.ADC], [Mnemonic.Sbb, Op.SBB],
  [Mnemonic.And, Op.AND], [Mnemonic.Sub, Op.SUB], [Mnemonic.Xor, Op.XOR], [Mnemonic.Cmp, Op.CMP],
  [Mnemonic.Test, Op.TEST], [Mnemonic.Inc, Op.INC], [Mnemonic.Dec, Op.DEC], [Mnemonic.Neg, Op.NEG],
  [Mnemonic.Not, Op.NOT], [Mnemonic.Shl, Op.SHL], [Mnemonic.Sal, Op.SHL], [Mnemonic.Shr, Op.SHR],
  [Mnemonic.Sar, Op.SAR], [Mnemonic.Rol, Op.ROL], [Mnemonic.Ror, Op.ROR], [Mnemonic.Rcl, Op.RCL],
  [Mnemonic.Rcr, Op.RCR], [Mnemonic.Mul, Op.MUL], [Mnemonic.Div, Op.DIV], [Mnemonic.Idiv, Op.IDIV],
  [Mnemonic.Bt, Op.BT], [Mnemonic.Bts, Op.BTS], [Mnemonic.Btr, Op.BTR], [Mnemonic.Btc, Op.BTC],
  [Mnemonic.Xchg, Op.XCHG], [Mnemonic.Cmpxchg, Op.CMPXCHG], [Mnemonic.Xadd, Op.XADD],
  [Mnemonic.Push, Op.PUSH], [Mnemonic.Pop, Op.POP], [Mnemonic.Pushfq, Op.PUSHF],
  [Mnemonic.Popfq, Op.POPF], [Mnemonic.Lahf, Op.LAHF], [Mnemonic.Sahf, Op.SAHF],
  [Mnemonic.Bswap, Op.BSWAP], [Mnemonic.Cbw, Op.CBW], [Mnemonic.Cwde, Op.CWDE],
  [Mnemonic.Cdqe, Op.CDQE], [Mnemonic.Cwd, Op.CWD], [Mnemonic.Cdq, Op.CDQ], [Mnemonic.Cqo, Op.CQO],
  [Mnemonic.Clc, Op.CLC], [Mnemonic.Stc, Op.STC], [Mnemonic.Cmc, Op.CMC], [Mnemonic.Cld, Op.CLD],
  [Mnemonic.Std, Op.STD], [Mnemonic.Cli, Op.CLI], [Mnemonic.Sti, Op.STI],
  [Mnemonic.Jmp, Op.JMP], [Mnemonic.Call, Op.CALL], [Mnemonic.Ret, Op.RET],
  [Mnemonic.Int3, Op.INT3], [Mnemonic.Iretq, Op.IRETQ], [Mnemonic.Hlt, Op.HLT],
  [Mnemonic.Pause, Op.PAUSE], [Mnemonic.Lfence, Op.FENCE], [Mnemonic.Sfence, Op.FENCE],
  [Mnemonic.Mfence, Op.MFENCE], [Mnemonic.Cpuid, Op.CPUID], [Mnemonic.Serialize, Op.SERIALIZE],
  [Mnemonic.Vmcall, Op.VMCALL], [Mnemonic.Vmmcall, Op.VMMCALL], [Mnemonic.Ud2, Op.UD2],
  [Mnemonic.Wrmsr, Op.WRMSR], [Mnemonic.Rdtsc, Op.RDTSC], [Mnemonic.Rdmsr, Op.RDMSR], [Mnemonic.Bsf, Op.BSF], [Mnemonic.Bsr, Op.BSR], [Mnemonic.Popcnt, Op.POPCNT],
  [Mnemonic.Verw, Op.VERW],
]);

const JCC = new Set<Mnemonic>([
  Mnemonic.Jo, Mnemonic.Jno, Mnemonic.Jb, Mnemonic.Jae, Mnemonic.Je, Mnemonic.Jne, Mnemonic.Jbe,
  Mnemonic.Ja, Mnemonic.Js, Mnemonic.Jns, Mnemonic.Jp, Mnemonic.Jnp, Mnemonic.Jl, Mnemonic.Jge,
  Mnemonic.Jle, Mnemonic.Jg,
]);
const SETCC = new Set<Mnemonic>([
  Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne,
  Mnemonic.Setbe, Mnemonic.Seta, Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp,
  Mnemonic.Setl, Mnemonic.Setge, Mnemonic.Setle, Mnemonic.Setg,
]);
const CMOVCC = new Set<Mnemonic>([
  Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne,
  Mnemonic.Cmovbe, Mnemonic.Cmova, Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp,
  Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg,
]);

/** Register → (number, size, high-byte?) for general registers. */
function gpr(reg: Register): { r: number; size: number; high: boolean } | undefined {
  if (reg >= Register.AL && reg <= Register.R15L) {
    const i = reg - Register.AL;
    if (i >= 4 && i <= 7) return { r: i - 4, size: 1, high: true }; // AH, CH, DH, BH
    if (i >= 8 && i <= 11) return { r: i - 4, size: 1, high: false }; // SPL, BPL, SIL, DIL
    return { r: i < 4 ? i : i - 4, size: 1, high: false };
  }
  if (reg >= Register.AX && reg <= Register.R15W) return { r: reg - Register.AX, size: 2, high: false };
  if (reg >= Register.EAX && reg <= Register.R15D) return { r: reg - Register.EAX, size: 4, high: false };
  if (reg >= Register.RAX && reg <= Register.R15) return { r: reg - Register.RAX, size: 8, high: false };
  return undefined;
}

function isImmediate(k: OpKind): boolean {
  return k === OpKind.Immediate8 || k === OpKind.Immediate16 || k === OpKind.Immediate32 ||
    k === OpKind.Immediate64 || k === OpKind.Immediate8to16 || k === OpKind.Immediate8to32 ||
    k === OpKind.Immediate8to64 || k === OpKind.Immediate32to64 || k === OpKind.Immediate8_2nd;
}

/** A canonical 64-bit address (bigint) as a signed JS number. */
export function addressFromU64(v: bigint): number {
  return Number(BigInt.asIntN(64, v));
}

function blank(address: number, bytes: Uint8Array, len: number, mnemonic: string): Insn {
  return {
    op: Op.UNSUPPORTED, address, len, next: address + len, size: 8, srcSize: 0,
    k0: Opd.NONE, r0: 0, k1: Opd.NONE, r1: 0, immLo: 0, immHi: 0,
    base: NO_REG, index: NO_REG, scale: 1, disp: 0, seg: Seg.NONE,
    target: 0, cc: 0, lock: false, popBytes: 0, bytes: bytes.slice(0, len), mnemonic,
  };
}

/**
 * The operand size an instruction works at: its first operand's (a register or memory), else its
 * first register operand's (e.g. `push imm`), else its memory size. `shl %cl,(mem)` is sized by
 * the memory, not by CL.
 */
function operandSize(ins: Instruction, memSize: number): number {
  if (ins.opCount > 0) {
    const k0 = ins.opKind(0);
    if (k0 === OpKind.Register) {
      const g = gpr(ins.opRegister(0));
      if (g) return g.size;
    } else if (k0 === OpKind.Memory && memSize > 0) return memSize;
  }
  for (let i = 0; i < ins.opCount; i++) {
    if (ins.opKind(i) === OpKind.Register) {
      const g = gpr(ins.opRegister(i));
      if (g) return g.size;
    }
  }
  return memSize || 8;
}

const MEM_BYTES: ReadonlyMap<MemorySize, number> = new Map<MemorySize, number>([
  [MemorySize.UInt8, 1], [MemorySize.Int8, 1], [MemorySize.UInt16, 2], [MemorySize.Int16, 2],
  [MemorySize.UInt32, 4], [MemorySize.Int32, 4], [MemorySize.UInt64, 8], [MemorySize.Int64, 8],
]);

/**
 * Decode the instruction at the start of `bytes` (located at `address`). Never throws for
 * unknown or invalid bytes: such instructions get `Op.UNSUPPORTED` and fail only if executed.
 */
export function decodeInsn(bytes: Uint8Array, address: number): Insn {
  const dec = new Decoder(64, bytes, DecoderOptions.None);
  dec.ip = BigInt.asUintN(64, BigInt(address));
  const ins = dec.decode();
  try {
    return translate(ins, bytes, address);
  } finally {
    ins.free();
    dec.free();
  }
}

function translate(ins: Instruction, bytes: Uint8Array, address: number): Insn {
  const len = ins.length;
  if (ins.code === Code.INVALID) return blank(address, bytes, Math.max(1, Math.min(len, bytes.length)), '(bad)');
  const mn = ins.mnemonic;
  const name = Mnemonic[mn]?.toLowerCase() ?? '?';
  const out = blank(address, bytes, len, name);
  let op = MNEMONIC_OP.get(mn);
  if (op === undefined) {
    if (JCC.has(mn)) op = Op.JCC;
    else if (SETCC.has(mn)) op = Op.SETCC;
    else if (CMOVCC.has(mn)) op = Op.CMOVCC;
    else if (mn === Mnemonic.Imul) op = ins.opCount === 1 ? Op.IMUL1 : ins.opCount === 2 ? Op.IMUL2 : Op.IMUL3;
    else return out;
  }
  out.cc = ins.conditionCode > 0 ? ins.conditionCode - 1 : 0;
  out.lock = ins.hasLockPrefix;
  // String instructions, REP forms and far branches are outside the subset.
  if (ins.hasRepPrefix || ins.hasRepnePrefix) {
    if (!(op === Op.PAUSE || op === Op.NOP || op === Op.POPCNT || op === Op.RET)) return out;
  }
  const memSize = MEM_BYTES.get(ins.memorySize) ?? 0;
  out.size = operandSize(ins, memSize);
  let slot = 0;
  for (let i = 0; i < ins.opCount; i++) {
    const k = ins.opKind(i);
    if (k === OpKind.Register) {
      const reg = ins.opRegister(i);
      if (op === Op.MOV && reg >= Register.CR0 && reg <= Register.CR15) {
        // MOV to/from a control register: the GPR is the other operand, always 64-bit here.
        const n = reg - Register.CR0;
        if (slot === 0) { op = Op.MOV_TO_CR; out.r0 = n; } else { op = Op.MOV_FROM_CR; out.r1 = n; }
        slot++;
        continue;
      }
      const g = gpr(reg);
      if (!g) return out; // segment/debug/vector registers: unsupported
      if (op === Op.MOV_TO_CR) { out.k1 = Opd.REG; out.r1 = g.r; }
      else if (op === Op.MOV_FROM_CR) { out.k0 = Opd.REG; out.r0 = g.r; }
      else if (slot === 0) { out.k0 = g.high ? Opd.REGH : Opd.REG; out.r0 = g.r; }
      else if (slot === 1) { out.k1 = g.high ? Opd.REGH : Opd.REG; out.r1 = g.r; if (op === Op.MOVZX || op === Op.MOVSX) out.srcSize = g.size; }
      slot++;
    } else if (k === OpKind.Memory) {
      const base = ins.memoryBase;
      const index = ins.memoryIndex;
      if (base === Register.RIP) {
        out.base = BASE_RIP;
        out.disp = addressFromU64(ins.memoryDisplacementU64);
      } else {
        if (base !== Register.None) {
          const g = gpr(base);
          if (!g || g.size !== 8) return out; // 32-bit addressing is outside the subset
          out.base = g.r;
        }
        out.disp = Number(BigInt.asIntN(64, ins.memoryDisplacementU64));
      }
      if (index !== Register.None) {
        const g = gpr(index);
        if (!g || g.size !== 8) return out;
        out.index = g.r;
        out.scale = ins.memoryIndexScale;
      }
      const seg = ins.segmentPrefix;
      out.seg = seg === Register.GS ? Seg.GS : seg === Register.FS ? Seg.FS : Seg.NONE;
      if (slot === 0) out.k0 = Opd.MEM; else out.k1 = Opd.MEM;
      if (slot === 1 && (op === Op.MOVZX || op === Op.MOVSX)) out.srcSize = memSize;
      slot++;
    } else if (isImmediate(k)) {
      const v = BigInt.asUintN(64, ins.immediate(i));
      out.immLo = Number(v & 0xffffffffn);
      out.immHi = Number(v >> 32n);
      if (slot === 0) out.k0 = Opd.IMM; else if (slot === 1) out.k1 = Opd.IMM;
      slot++;
      if (op === Op.RET) out.popBytes = out.immLo & 0xffff;
    } else if (k === OpKind.NearBranch64) {
      out.target = addressFromU64(ins.nearBranch64);
    } else {
      return out; // far branches, string operands, ...
    }
  }
  if (op === Op.JMP && out.k0 !== Opd.NONE) op = Op.JMP_IND;
  if (op === Op.CALL && out.k0 !== Opd.NONE) op = Op.CALL_IND;
  // push imm32 pushes 8 bytes (sign-extended); stack operations default to 64-bit operands.
  if ((op === Op.PUSH || op === Op.POP || op === Op.CALL_IND || op === Op.JMP_IND) && out.k0 === Opd.IMM) out.size = 8;
  if (op === Op.MOVSX && mn === Mnemonic.Movsxd) out.srcSize = out.srcSize || 4;
  if ((op === Op.MOVZX || op === Op.MOVSX) && out.srcSize === 0) out.srcSize = memSize;
  out.op = op;
  return out;
}

