/**
 * The interpreter's compact, cached form of one decoded instruction. iced-x86 decodes once
 * (src/x86/decode.ts); the interpreter then dispatches on `op` (a small integer) and reads
 * pre-resolved operand fields, never touching iced on the hot path.
 */

/** Dispatch codes: one per semantic family, not per encoding. */
export enum Op {
  UNSUPPORTED = 0,
  NOP, MOV, MOVZX, MOVSX, LEA,
  ADD, OR, ADC, SBB, AND, SUB, XOR, CMP, TEST,
  INC, DEC, NEG, NOT,
  SHL, SHR, SAR, ROL, ROR, RCL, RCR,
  IMUL1, IMUL2, IMUL3, MUL, DIV, IDIV,
  BT, BTS, BTR, BTC,
  XCHG, CMPXCHG, XADD,
  PUSH, POP, PUSHF, POPF, LAHF, SAHF,
  SETCC, CMOVCC, BSWAP,
  CBW, CWDE, CDQE, CWD, CDQ, CQO,
  CLC, STC, CMC, CLD, STD, CLI, STI,
  JMP, JMP_IND, JCC, CALL, CALL_IND, RET,
  INT3, IRETQ, HLT, PAUSE, FENCE, MFENCE, CPUID, SERIALIZE,
  VMCALL, VMMCALL, UD2,
  BSF, BSR, POPCNT,
  WRMSR, RDMSR, RDTSC,
  /** MOV to CRn (`r0` = n, `r1` = the source GPR): serializing (SDM 9.3.1 / 8.3). */
  MOV_TO_CR,
  /** MOV from CRn (`r0` = the destination GPR, `r1` = n). */
  MOV_FROM_CR,
  /** VERW r/m16: ZF = whether the selector names a segment writable at CPL; not serializing. */
  VERW,
}

/** Operand kinds. */
export const enum Opd {
  NONE = 0,
  /** General register, `r` is its number (Reg), read/written at the instruction's size. */
  REG = 1,
  /** AH, CH, DH, BH: bits 8..15 of register `r` (0..3). */
  REGH = 2,
  MEM = 3,
  IMM = 4,
}

/** Base-register value meaning "RIP-relative" (the address is precomputed in `disp`). */
export const BASE_RIP = 16;
/** No base or index register. */
export const NO_REG = -1;

export const enum Seg {
  NONE = 0,
  FS = 1,
  GS = 2,
}

export interface Insn {
  op: Op;
  /** Address of the first byte (canonical, as a signed JS number). */
  address: number;
  len: number;
  /** Address of the next instruction. */
  next: number;
  /** Operand size in bytes (1, 2, 4, 8). */
  size: number;
  /** Size of the source for MOVZX/MOVSX/MOVSXD. */
  srcSize: number;
  k0: Opd; r0: number;
  k1: Opd; r1: number;
  /** Immediate (the last immediate operand), as unsigned 32-bit halves, sign-extended to 64. */
  immLo: number; immHi: number;
  /** Memory operand: base and index register numbers (NO_REG, or BASE_RIP), scale, displacement. */
  base: number; index: number; scale: number;
  /** Signed displacement; for RIP-relative operands, the absolute target address. */
  disp: number;
  seg: Seg;
  /** Branch target (absolute) for direct CALL/JMP/Jcc. */
  target: number;
  /** Condition code 0..15 (x86 encoding order: O, NO, B, AE, E, NE, BE, A, S, NS, P, NP, L, GE, LE, G). */
  cc: number;
  lock: boolean;
  /** RET imm16: bytes to pop after the return address. */
  popBytes: number;
  /** The instruction's bytes, for hazards and error messages. */
  bytes: Uint8Array;
  /** iced's mnemonic name, for listings and errors. */
  mnemonic: string;
  /**
   * A specialised handler the machine layer attaches to hot instruction shapes (register ALU,
   * moves, branches); undefined = the general interpreter. Method syntax keeps the x86 layer free
   * of machine types.
   */
  fast?: FastHandler;
}

export interface FastHandler {
  run(ctx: object, cpu: object, insn: Insn): number;
}
