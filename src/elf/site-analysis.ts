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
 *   shape can be rewritten, but a return address saved inside the site still breaks it.
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
  /** Protocols that can switch this site safely (all three when the forms are equal). */
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

function emulatable(f: SiteForm): boolean {
  return f.clean && f.insns.length === 1 && EMULATED.test(f.insns[0]!.text);
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
  const tpb = emulatable(n) && emulatable(p);
  const protocols: SwitchProtocol[] = [];
  if (tpb && hazards.length === 0) protocols.push('text_poke_bp');
  if (hazards.length === 0) protocols.push('v1');
  if (isLockOp(slot) || (hazards.length === 0 && tpb)) protocols.push('v2');
  const reason =
    hazards.length > 0
      ? `a CALL in the ${hazards[0]!.callIn} form returns to offset ${hazards[0]!.returnOffset}, inside \`${hazards[0]!.inside}\` of the other form`
      : !tpb
        ? `the ${emulatable(n) ? 'paravirt' : 'native'} form is ${emulatable(n) ? p.insns.length : n.insns.length} instructions; INT3 emulation handles one CALL/JMP/RET/NOP`
        : 'single emulatable instruction in both forms';
  return { ...base, returnHazards: hazards, textPokeBpEmulates: tpb, protocols, reason };
}
