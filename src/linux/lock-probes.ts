/**
 * The oracles of the real-kernel guest, driven by instruction probes on the real code (DESIGN.md
 * §6; the probes write nothing, so the kernel runs exactly as it would):
 * - mutual exclusion: a probe at the entry of `_raw_spin_lock` / `_raw_spin_lock_irqsave` notes
 *   the lock (rdi) and the stack pointer; a probe at each of the function's returns (`ret`, or the
 *   `jmp __x86_return_thunk` RETHUNK leaves) with the same stack pointer says the caller now holds
 *   it; a probe at the entry of `_raw_spin_unlock` / `_irqrestore` says it lets go. A lock held by
 *   another CPU, or let go by one that does not hold it, is a violation.
 * - halts and kicks: the `hlt` of native_safe_halt / native_halt reached from kvm_wait, and the
 *   entry of kvm_kick_cpu (rdi = the CPU kicked). A vCPU still halted there when the run ends is
 *   a lost wake-up (LinuxGuest.lostWakeups).
 * Each probed function's execution count is kept too (`pvpatch run --json` prints them).
 */
import type { Insn } from '../x86/insn.ts';
import { Op } from '../x86/insn.ts';
import { Reg } from '../x86/registers.ts';
import type { Machine, Probe } from '../machine/machine.ts';
import type { Vcpu } from '../machine/vcpu.ts';
import type { OracleHazard } from '../machine/events.ts';
import { decodeInsn } from '../x86/decode.ts';
import { hexAddress } from '../x86/format.ts';
import type { LinuxKernel } from './kernel.ts';
import { symbolOf } from './kernel.ts';
import type { PatchedText } from '../elf/patched-text.ts';
import { load, type Halves } from '../machine/access.ts';
import { NMI_MASK } from '../kernel/preempt-count.ts';
import { mergeProbes } from './switch-probes.ts';

export const MUTUAL_EXCLUSION = 'mutual-exclusion';
export type LockOracleName = typeof MUTUAL_EXCLUSION;

export interface MutualExclusionData {
  readonly lock: number;
  /** The CPU that holds it (or undefined: nobody, for a release). */
  readonly holder: number | undefined;
  readonly event: 'acquire' | 'release';
}

/** The real functions whose executions are counted (entries probed). */
export const COUNTED_FUNCTIONS = [
  '_raw_spin_lock', '_raw_spin_unlock', '_raw_spin_lock_irqsave', '_raw_spin_unlock_irqrestore',
  'native_queued_spin_lock_slowpath', '__pv_queued_spin_lock_slowpath', 'pv_hash',
  '__raw_callee_save___pv_queued_spin_unlock', '__pv_queued_spin_unlock_slowpath',
  'kvm_wait', 'kvm_kick_cpu', '__raw_callee_save___kvm_vcpu_is_preempted',
] as const;
export type CountedFunction = (typeof COUNTED_FUNCTIONS)[number];

const LOCKS = ['_raw_spin_lock', '_raw_spin_lock_irqsave'] as const;
const UNLOCKS = ['_raw_spin_unlock', '_raw_spin_unlock_irqrestore'] as const;

/** The return instructions of the function at `start`: `ret`, or a `jmp` to a return thunk. */
export function functionReturns(text: PatchedText, kernel: LinuxKernel, start: number): number[] {
  const thunks = new Set(['__x86_return_thunk', 'srso_return_thunk', 'srso_alias_return_thunk', 'retbleed_return_thunk', 'its_return_thunk'].map((n) => kernel.image.symbols.addressOf(n)).filter((a) => a !== undefined));
  const out: number[] = [];
  let at = start;
  // Linear decode to the next symbol: these functions are straight-line code with no data in them.
  for (let n = 0; n < 256; n++) {
    if (at !== start && kernel.image.symbols.nameAt(at) !== undefined) break;
    const insn = decodeInsn(text.window(at, 15)!, at);
    if (insn.op === Op.RET || (insn.op === Op.JMP && thunks.has(insn.target))) out.push(at);
    at += insn.len;
  }
  return out;
}

export interface LockProbeState {
  /** Per lock address, the CPU holding it. */
  readonly holder: Map<number, number>;
  /** Per CPU, the lock and unlock calls in progress: [rsp at entry, lock, 1 for a lock call / 0 for an unlock, the vCPU's clock at entry]. */
  readonly pending: [number, number, number, number][][];
  /** Cycles from each lock call's entry to its return with the lock held (the lock's wait), in order. */
  readonly waits: number[];
  readonly counts: Record<CountedFunction, number>;
  /** HLTs executed in kvm_wait's halts, kicks sent. */
  halts: number;
  kicks: number;
  /** kvm_wait entered with in_nmi() true (Linux 6.1's kvm_wait returns at once there). */
  waitsInNmi: number;
  /** HLTs executed inside an NMI handler (NMIs blocked at the CPU): what that return prevents. */
  haltsInNmi: number;
}

/** No vCPU is inside a real lock or unlock function (locks may be held): a point where stop_machine could run. */
export function quiescent(s: LockProbeState): boolean {
  return s.pending.every((p) => p.length === 0);
}

export function newLockProbeState(cpus: number): LockProbeState {
  return {
    holder: new Map(),
    pending: Array.from({ length: cpus }, () => []),
    waits: [],
    counts: Object.fromEntries(COUNTED_FUNCTIONS.map((f) => [f, 0])) as Record<CountedFunction, number>,
    halts: 0,
    kicks: 0,
    waitsInNmi: 0,
    haltsInNmi: 0,
  };
}

export function copyLockProbeState(s: LockProbeState): LockProbeState {
  return { holder: new Map(s.holder), pending: s.pending.map((p) => p.map((e) => [e[0], e[1], e[2], e[3]] as [number, number, number, number])), waits: [...s.waits], counts: { ...s.counts }, halts: s.halts, kicks: s.kicks, waitsInNmi: s.waitsInNmi, haltsInNmi: s.haltsInNmi };
}

function violation(cpu: number, address: number, message: string, data: MutualExclusionData): OracleHazard<LockOracleName, MutualExclusionData> {
  return { kind: 'oracle', oracle: MUTUAL_EXCLUSION, cpu, address, message, data };
}

/** The probe addresses the oracle needs (fixed by the booted text), computed once per boot. */
export interface LockProbeSites {
  readonly entries: ReadonlyMap<number, CountedFunction>;
  /** The returns of _raw_spin_lock* and of _raw_spin_unlock*. */
  readonly lockReturns: readonly number[];
  readonly unlockReturns: readonly number[];
  /** The HLT of native_safe_halt and native_halt. */
  readonly halts: readonly number[];
  /** __preempt_count's per-CPU offset (%gs-relative), for in_nmi(). */
  readonly preemptCount: number;
}

export function lockProbeSites(text: PatchedText, kernel: LinuxKernel): LockProbeSites {
  const entries = new Map<number, CountedFunction>();
  for (const f of COUNTED_FUNCTIONS) entries.set(symbolOf(kernel, f), f);
  const lockReturns = LOCKS.flatMap((f) => functionReturns(text, kernel, symbolOf(kernel, f)));
  const unlockReturns = UNLOCKS.flatMap((f) => functionReturns(text, kernel, symbolOf(kernel, f)));
  const halts: number[] = [];
  for (const f of ['native_safe_halt', 'native_halt']) {
    let at = symbolOf(kernel, f);
    for (let n = 0; n < 16; n++) {
      const insn = decodeInsn(text.window(at, 15)!, at);
      if (insn.op === Op.HLT) { halts.push(at); break; }
      at += insn.len;
    }
  }
  return { entries, lockReturns, unlockReturns, halts, preemptCount: symbolOf(kernel, '__preempt_count') };
}

/**
 * Register the probes on `m` over `s` (a boot, and again over a copy on every fork), with `extra`
 * probes (switch-probes.ts) run after the lock probes at a shared address.
 */
export function installLockProbes(m: Machine, sites: LockProbeSites, s: LockProbeState, extra: readonly (readonly [number, Probe])[] = []): void {
  const probes: [number, Probe][] = [];
  const rsp = (c: Vcpu) => c.getAddr(Reg.RSP);
  const word: Halves = { lo: 0, hi: 0 };
  // in_nmi() as the vCPU sees its own __preempt_count (its store buffer included).
  const inNmi = (c: Vcpu): boolean => {
    load(m.memory, c, c.gsBase + sites.preemptCount, 4, word);
    return (word.lo & NMI_MASK) !== 0;
  };
  for (const [at, f] of sites.entries) {
    const isLock = (LOCKS as readonly string[]).includes(f);
    const isUnlock = (UNLOCKS as readonly string[]).includes(f);
    probes.push([at, (c: Vcpu, _i: Insn) => {
      s.counts[f]++;
      const lock = c.getAddr(Reg.RDI);
      if (isLock) s.pending[c.id]!.push([rsp(c), lock, 1, c.time]);
      else if (isUnlock) {
        s.pending[c.id]!.push([rsp(c), lock, 0, c.time]);
        const holder = s.holder.get(lock);
        if (holder !== c.id) return violation(c.id, at, `vCPU ${c.id} releases lock ${hexAddress(lock)}, which ${holder === undefined ? 'nobody holds' : `vCPU ${holder} holds`}`, { lock, holder, event: 'release' });
        s.holder.delete(lock);
      } else if (f === 'kvm_kick_cpu') s.kicks++;
      else if (f === 'kvm_wait' && inNmi(c)) s.waitsInNmi++;
      return undefined;
    }]);
  }
  for (const at of sites.lockReturns) {
    probes.push([at, (c: Vcpu) => {
      const p = s.pending[c.id]!;
      const top = p[p.length - 1];
      if (top === undefined || top[0] !== rsp(c) || top[2] !== 1) return undefined;
      p.pop();
      s.waits.push(c.time - top[3]);
      const lock = top[1];
      const holder = s.holder.get(lock);
      if (holder !== undefined) return violation(c.id, at, `vCPU ${c.id} acquires lock ${hexAddress(lock)}, which vCPU ${holder} holds`, { lock, holder, event: 'acquire' });
      s.holder.set(lock, c.id);
      return undefined;
    }]);
  }
  for (const at of sites.unlockReturns) {
    probes.push([at, (c: Vcpu) => {
      const p = s.pending[c.id]!;
      const top = p[p.length - 1];
      if (top !== undefined && top[0] === rsp(c) && top[2] === 0) p.pop();
      return undefined;
    }]);
  }
  for (const at of sites.halts) {
    probes.push([at, (c: Vcpu) => {
      s.halts++;
      if (c.nmiBlocked) s.haltsInNmi++;
      return undefined;
    }]);
  }
  m.probeMany(mergeProbes([...probes, ...extra]));
}
