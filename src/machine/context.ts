/** What the interpreter needs from the machine around it (implemented by Machine). */
import type { Insn } from '../x86/insn.ts';
import type { Memory } from './memory.ts';
import type { Vcpu } from './vcpu.ts';
import type { Hazard, MachineEvent } from './events.ts';
import type { FetchContext } from './decode-cache.ts';

export type HypercallOutcome =
  /** Handled: continue after the instruction. */
  | 'done'
  /** Raise #UD in the guest. */
  | 'ud'
  /** Re-execute the same address (the host rewrote it, as KVM's emulator_fix_hypercall does). */
  | 'retry';

/** Where the host layer (src/host/) plugs in. */
export interface HostHooks {
  /** CPUID leaves the host defines (e.g. 0x40000000 and 0x40000001); undefined = built-in answer. */
  cpuid?(c: Vcpu, leaf: number, subleaf: number): readonly [number, number, number, number] | undefined;
  /** VMCALL (Intel) or VMMCALL (AMD); with no hook both raise #UD. */
  hypercall?(c: Vcpu, kind: 'vmcall' | 'vmmcall', insn: Insn): HypercallOutcome;
  /** The host descheduled `c` (true) or runs it again (false) by a scheduler decision: steal time's `preempted` byte. */
  preempt?(c: Vcpu, preempted: boolean): void;
}

export interface ExecContext extends FetchContext {
  readonly memory: Memory;
  /** Store buffers on (x86-TSO) or off (sequential consistency). */
  readonly tso: boolean;
  /** Interrupt descriptor table: vector → handler address (shared by all vCPUs, as in Linux). */
  readonly idt: ReadonlyMap<number, number>;
  readonly hooks: HostHooks;
  emit(e: MachineEvent): void;
  /** Whether the tracing-only events (service spans, IPIs, store-buffer depth) are wanted. */
  readonly tracing: boolean;
  /** Report a hazard; returns true when the run should stop. */
  hazard(h: Hazard): boolean;
  readonly step: number;
  /** An x2APIC ICR write (MSR 0x830): send an IPI or NMI (SDM Vol. 3 11.12.9). */
  sendIpi(from: number, icr: number, dest: number): void;
}

/** MSRs the machine models. */
export const enum Msr {
  X2APIC_EOI = 0x80b,
  X2APIC_ICR = 0x830,
  FS_BASE = 0xc0000100,
  GS_BASE = 0xc0000101,
}

/** __KERNEL_CS and __KERNEL_DS in Linux's GDT. */
export const KERNEL_CS = 0x10;
export const KERNEL_SS = 0x18;

/** Exception vectors the machine raises. */
export const enum Vector {
  DE = 0,
  NMI = 2,
  BP = 3,
  UD = 6,
}
