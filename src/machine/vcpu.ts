/**
 * One virtual CPU: registers as exact 64-bit values (two 32-bit halves each, DESIGN.md §2),
 * RFLAGS, interrupt state, its x86-TSO store buffer and its record of pushed return addresses.
 */
import { Reg, RFLAGS_FIXED, Flag } from '../x86/registers.ts';
import { MachineConfigError } from './errors.ts';
import { newAluOut, type AluOut } from '../x86/alu.ts';
import type { ServiceFrame } from './service.ts';

/** One buffered store (x86-TSO: FIFO, forwarded to the owning vCPU's loads). */
export interface BufferedStore {
  addr: number;
  size: number;
  lo: number;
  hi: number;
  /** The vCPU's clock when the store was issued (for time-based drain policies). */
  time: number;
}

/** A pushed return address and what was at it, for the return-into-rewritten check. */
export interface ReturnRecord {
  returnAddress: number;
  /** Text write sequence number when it was pushed. */
  pushedAt: number;
  /** Bytes of the instruction that started at the return address then. */
  bytes: Uint8Array;
}

export class Vcpu {
  /** Low and high 32-bit halves of the 16 GPRs (Reg order). Hot path: accessed directly. */
  readonly lo = new Int32Array(16);
  readonly hi = new Int32Array(16);
  rip = 0;
  /** RFLAGS (bits 0..21; bit 1 always set). */
  flags = RFLAGS_FIXED;
  gsBase = 0;
  fsBase = 0;
  /** Control registers CR0..CR15 as 32-bit halves (CR3 may carry bit 63, PCID's no-flush). */
  readonly crLo = new Uint32Array(16);
  readonly crHi = new Uint32Array(16);

  halted = false;
  /** NMIs are blocked from delivery until the next IRET (SDM 6.7.1). */
  nmiBlocked = false;
  /** An NMI arrived while blocked (the CPU latches one). */
  nmiPending = false;
  /** Pending fixed-vector interrupts (IRQs, IPIs), highest vector first. */
  readonly pendingIrqs: number[] = [];
  /** STI and MOV SS block interrupts for one instruction. */
  interruptShadow = false;

  /** Text write sequence number at this vCPU's last serializing event. */
  serializedSeq = 0;

  /** FIFO store buffer; `sbHead` indexes the oldest entry. */
  readonly storeBuffer: BufferedStore[] = [];
  /** Return addresses on the stack, by stack slot address. */
  readonly returns = new Map<number, ReturnRecord>();

  /**
   * A kick arrived while the vCPU was not halted (KVM's pv_unhalted): its next HLT returns at once,
   * so a kick that races ahead of the waiter's HLT is not lost.
   */
  pvUnhalted = false;
  /** Descheduled by the host: the vCPU does not advance (src/host/). */
  preempted = false;
  /** Kernel services running on this vCPU, innermost last. */
  readonly serviceFrames: ServiceFrame[] = [];

  /** Clock in cycles; owned by the scheduling strategy (the machine only copies it into stores). */
  time = 0;
  /** Instructions retired. */
  retired = 0;
  /** `retired` at the last PAUSE. */
  lastPause = -1e9;

  /** Interpreter scratch (operands and ALU result); reused so the hot path allocates nothing. */
  readonly opA = { lo: 0, hi: 0 };
  readonly opB = { lo: 0, hi: 0 };
  readonly alu: AluOut = newAluOut();

  constructor(readonly id: number) {}

  /** Executed PAUSE within the last few instructions: spinning, a hint for strategies (like shuttle's is_yielding). */
  get spinning(): boolean {
    return this.retired - this.lastPause < 8;
  }

  get interruptsEnabled(): boolean {
    return (this.flags & Flag.IF) !== 0;
  }

  setReg64(r: Reg, v: bigint): void {
    checkReg(r);
    const u = BigInt.asUintN(64, v);
    this.lo[r] = Number(u & 0xffffffffn) | 0;
    this.hi[r] = Number(u >> 32n) | 0;
  }

  getReg64(r: Reg): bigint {
    checkReg(r);
    return (BigInt(this.hi[r]! >>> 0) << 32n) | BigInt(this.lo[r]! >>> 0);
  }

  /** A register holding an address, as a canonical signed number. */
  getAddr(r: Reg): number {
    return this.hi[r]! * 4294967296 + (this.lo[r]! >>> 0);
  }

  setAddr(r: Reg, addr: number): void {
    this.lo[r] = addr | 0;
    this.hi[r] = Math.floor(addr / 4294967296) | 0;
  }

  /** Copy of the architectural state (for forks). */
  copyFrom(o: Vcpu): void {
    if (o.serviceFrames.length > 0) throw new MachineConfigError(`cannot fork: vCPU ${o.id} is inside kernel service '${o.serviceFrames.at(-1)!.name}'`);
    this.preempted = o.preempted;
    this.pvUnhalted = o.pvUnhalted;
    this.lo.set(o.lo);
    this.hi.set(o.hi);
    this.rip = o.rip;
    this.flags = o.flags;
    this.gsBase = o.gsBase;
    this.fsBase = o.fsBase;
    this.crLo.set(o.crLo);
    this.crHi.set(o.crHi);
    this.halted = o.halted;
    this.nmiBlocked = o.nmiBlocked;
    this.nmiPending = o.nmiPending;
    this.pendingIrqs.length = 0;
    this.pendingIrqs.push(...o.pendingIrqs);
    this.interruptShadow = o.interruptShadow;
    this.serializedSeq = o.serializedSeq;
    this.lastPause = o.lastPause;
    this.storeBuffer.length = 0;
    for (const s of o.storeBuffer) this.storeBuffer.push({ ...s });
    this.returns.clear();
    for (const [k, v] of o.returns) this.returns.set(k, v);
    this.time = o.time;
    this.retired = o.retired;
  }
}

function checkReg(r: number): void {
  if (!Number.isInteger(r) || r < 0 || r > 15) throw new MachineConfigError(`no general register number ${r}`);
}
