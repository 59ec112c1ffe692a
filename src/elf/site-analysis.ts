/**
 * Can this site be switched at run time between its native and its paravirt form, and how?
 *
 * - Instruction boundaries of each form: a CPU can be stopped (interrupt, NMI, vCPU preemption)
 *   only at a boundary, and a CALL leaves its return address on the stack. If a CALL in one form
 *   returns to an offset that is not a boundary of the other form, a CPU sleeping inside the
 *   called function (a PV unlock's kick, a PV slowpath's halt) returns into the middle of an
 *   instruction after the switch: seed 001's hazard (`call` + `66 90` vs `c6 07 00` + `0f 1f 40 00`,
 *   the return lands on offset 5, inside the 4-byte NOP).
 * - text_poke_bp (Linux 6.1 alternative.c) writes INT3, the tail, then the first byte, and its
 *   INT3 handler emulates only the *new* single instruction (CALL, JMP, RET, NOP, INT3): a form that
 *   is more than one instruction cannot be emulated, and a CPU already past the first byte of a
 *   multi-instruction form would run a torn mix.
 * - v1 (RFC 15/26, seed 002): stop_machine lock-step; every CPU is parked at a known place, so any
 *   shape can be rewritten, but a return address saved inside the site still breaks it, and a
 *   vCPU parked inside a PV slowpath keeps PV lock state (seed 000's objection).
 * - v2 (seed 001): an INT3 barrier per lock-op site plus a global barrier that waits until no CPU
 *   is inside a slowpath lock-op; that is exactly what makes the return hazard safe, for the
 *   pv_lock_ops sites it counts.
 */
import { disassemble } from '../x86/format.ts';
import { pvOpsSlotName } from './pv-ops-slots.ts';

export type SwitchProtocol = 'text_poke_bp' | 'v1' | 'v2';

export interface FormInsn {
  readonly offset: number;
  readonly length: number;
  readonly text: string;
  readonly isCall: boolean;
}

export interface SiteForm {
  readonly bytes: Uint8Array;
  readonly insns: readonly FormInsn[];
  /** Offsets where an instruction starts, plus the site length. */
  readonly boundaries: readonly number[];
  /** False when the bytes do not decode into whole instructions within the site. */
  readonly clean: boolean;
}

export interface ReturnHazard {
  /** The form holding the CALL. */
  readonly callIn: 'native' | 'paravirt';
  /** Offset of the return address inside the site. */
  readonly returnOffset: number;
  /** The instruction of the other form that the return lands inside. */
  readonly inside: string;
}

export interface SiteJudgement {
  readonly address: number;
  readonly length: number;
  readonly native: SiteForm;
  readonly paravirt: SiteForm;
  readonly differs: boolean;
  readonly returnHazards: readonly ReturnHazard[];
  /** Whether text_poke_bp's INT3 handler could emulate the new form in each direction. */
  readonly textPokeBpEmulates: boolean;
  /** Protocols that can switch this site safely (all three when the forms are equal; v2 only for lock ops). */
  readonly protocols: readonly SwitchProtocol[];
  readonly reason: string;
}

/** Decode a site's form into instructions that must end inside the site. */
export function siteForm(bytes: Uint8Array, address: number): SiteForm {
  const insns: FormInsn[] = [];
  let off = 0;
  let clean = true;
  const lines = disassemble(bytes, address);
  for (const line of lines) {
    if (!line.valid || off + line.bytes.length > bytes.length) {
      clean = false;
      break;
    }
    insns.push({ offset: off, length: line.bytes.length, text: line.text, isCall: /^call/.test(line.text) });
    off += line.bytes.length;
  }
  if (off !== bytes.length) clean = false;
  return { bytes, insns, boundaries: [...insns.map((i) => i.offset), bytes.length], clean };
}

const EMULATED = /^(call|jmp|ret|nop|int3)/;

/**
 * text_poke_bp rewrites one instruction: the forms must have the same boundaries and differ in
 * exactly one instruction, and that instruction must be one the INT3 handler emulates
 * (int3_emulate_call/jmp/ret, NOPs as a jump to the next instruction) in both directions.
 */
function onePokeableInstruction(a: SiteForm, b: SiteForm): boolean {
  if (!a.clean || !b.clean || a.insns.length !== b.insns.length) return false;
  let changed = 0;
  for (let i = 0; i < a.insns.length; i++) {
    const x = a.insns[i]!;
    const y = b.insns[i]!;
    if (x.offset !== y.offset || x.length !== y.length) return false;
    const same = a.bytes.subarray(x.offset, x.offset + x.length).every((v, k) => v === b.bytes[x.offset + k]);
    if (same) continue;
    if (++changed > 1 || !EMULATED.test(x.text) || !EMULATED.test(y.text)) return false;
  }
  return changed === 1;
}

function returnHazards(callIn: 'native' | 'paravirt', from: SiteForm, to: SiteForm): ReturnHazard[] {
  const out: ReturnHazard[] = [];
  for (const i of from.insns) {
    if (!i.isCall) continue;
    const ret = i.offset + i.length;
    if (ret >= from.bytes.length || to.boundaries.includes(ret)) continue;
    const inside = to.insns.find((j) => j.offset < ret && ret < j.offset + j.length);
    out.push({ callIn, returnOffset: ret, inside: inside?.text ?? '(undecodable bytes)' });
  }
  return out;
}

/** The pv_lock_ops slots, which v2 counts (seed 001: the five lock ops). */
function isLockOp(slot: number | undefined): boolean {
  return slot !== undefined && pvOpsSlotName(slot).startsWith('lock.');
}

/** Judge one site given its two boot-patched forms. `slot` = pv_ops type for .parainstructions sites. */
export function judgeSite(address: number, native: Uint8Array, paravirt: Uint8Array, slot?: number): SiteJudgement {
  const n = siteForm(native, address);
  const p = siteForm(paravirt, address);
  const differs = native.length !== paravirt.length || native.some((b, i) => b !== paravirt[i]);
  const base = { address, length: native.length, native: n, paravirt: p, differs };
  if (!differs) {
    return { ...base, returnHazards: [], textPokeBpEmulates: true, protocols: ['text_poke_bp', 'v1', 'v2'], reason: 'both platforms patch the same bytes' };
  }
  const hazards = [...returnHazards('native', n, p), ...returnHazards('paravirt', p, n)];
  const tpb = onePokeableInstruction(n, p);
  const hazardText = hazards.length > 0 ? `a CALL in the ${hazards[0]!.callIn} form returns to offset ${hazards[0]!.returnOffset}, inside \`${hazards[0]!.inside}\` of the other form` : undefined;
  let protocols: SwitchProtocol[];
  let reason: string;
  if (isLockOp(slot)) {
    // Seeds 000/001: the five lock ops must change together, and a vCPU may sit in a slowpath
    // (halted in pv_wait with PV lock state) across the switch; only v2 counts those.
    protocols = ['v2'];
    reason = hazardText ?? 'pv_lock_ops are inter-dependent and may be in flight in a slowpath: needs the counting barrier of v2';
  } else if (hazardText !== undefined) {
    protocols = [];
    reason = hazardText;
  } else if (tpb) {
    protocols = ['text_poke_bp', 'v1'];
    reason = 'one emulatable instruction changes, at the same boundaries in both forms';
  } else {
    protocols = ['v1'];
    reason = `the forms differ in more than one instruction (${n.insns.length} vs ${p.insns.length}); INT3 emulation handles one CALL/JMP/RET/NOP`;
  }
  return { ...base, returnHazards: hazards, textPokeBpEmulates: tpb, protocols, reason };
}
