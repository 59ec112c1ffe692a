/**
 * The emulation oracle (DESIGN.md §6): an instruction an INT3 handler emulates at a site must be
 * the site's old or its new instruction, never a third. text_poke_bp's poke_int3_handler emulates
 * the new one from tp_vec (text_poke_loc_init's opcode and displacement, decided once before the
 * batch is published); v2's handler emulates the old or the new op. Either way the vCPU does what
 * one of the two versions of the site would do, which is what makes the INT3 a barrier (seed 001);
 * an emulation that matches neither (a stale or miscomputed tp_vec entry, the wrong flavour) runs
 * code that no version of the kernel contains.
 *
 * Instructions are compared by what they do, not by their bytes: a CALL or JMP by its kind and
 * target (an emulated CALL may push the end of the whole site, skipping its NOP padding), a NOP of
 * n bytes as a jump over itself (Linux emulates NOP2/NOP5 as JMP +0), RET as RET, anything else
 * by its bytes.
 */
import { decodeInsn } from '../x86/decode.ts';
import { formatOne, hexAddress } from '../x86/format.ts';
import { Opcode } from './text-poke-loc.ts';

/** What an emulated (or decoded) instruction makes the vCPU do. */
export type Emulation =
  | { kind: 'call' | 'jmp'; target: number }
  | { kind: 'ret' }
  | { kind: 'other'; bytes: readonly number[] };

/** The first instruction of `bytes` at `address`, as an Emulation. */
export function emulationOf(bytes: Uint8Array, address: number): Emulation {
  const insn = decodeInsn(bytes, address);
  const b = insn.bytes;
  const rel32 = () => (b[1]! | (b[2]! << 8) | (b[3]! << 16) | (b[4]! << 24)) | 0;
  if (b[0] === Opcode.CALL && insn.len === 5) return { kind: 'call', target: address + 5 + rel32() };
  if (b[0] === Opcode.JMP32 && insn.len === 5) return { kind: 'jmp', target: address + 5 + rel32() };
  if (b[0] === Opcode.JMP8 && insn.len === 2) return { kind: 'jmp', target: address + 2 + ((b[1]! << 24) >> 24) };
  if (b[0] === Opcode.RET && insn.len === 1) return { kind: 'ret' };
  if (/^nop/.test(formatOne(b, address))) return { kind: 'jmp', target: address + insn.len };
  return { kind: 'other', bytes: Array.from(b) };
}

function same(a: Emulation, b: Emulation): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'ret') return true;
  if (a.kind === 'other') return b.kind === 'other' && a.bytes.length === b.bytes.length && a.bytes.every((x, i) => x === b.bytes[i]);
  return (b as { target: number }).target === a.target;
}

function describe(e: Emulation): string {
  if (e.kind === 'ret') return 'ret';
  if (e.kind === 'other') return e.bytes.map((x) => x.toString(16).padStart(2, '0')).join(' ');
  return `${e.kind} ${hexAddress(e.target)}`;
}

/** An INT3 handler emulated, at a site, an instruction that is neither its old nor its new one. */
export class ForeignEmulationError extends Error {
  readonly userFacing = true;
  constructor(
    readonly cpu: number,
    readonly address: number,
    readonly emulated: string,
    readonly old: string,
    readonly new_: string,
  ) {
    super(`emulation oracle: vCPU ${cpu}'s INT3 handler emulated '${emulated}' at ${hexAddress(address)}, which is neither the site's old instruction '${old}' nor its new one '${new_}'`);
    this.name = 'ForeignEmulationError';
  }
}

/** A site under a barrier: its old and new bytes, and what each does (decoded on first need). */
interface BarrierSite {
  readonly old: Uint8Array;
  readonly new: Uint8Array;
  emulations?: readonly [Emulation, Emulation];
}

function sameBytes(a: ArrayLike<number>, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The old and new bytes of every site an INT3 barrier covers now. */
export class EmulationOracle {
  private readonly sites = new Map<number, BarrierSite>();

  /** A barrier goes up at `address`: the site holds `old` and will hold `new_`. */
  expect(address: number, old: ArrayLike<number>, new_: ArrayLike<number>): void {
    this.sites.set(address, { old: Uint8Array.from(old), new: Uint8Array.from(new_) });
  }

  /** The barrier at `address` is down (no handler can meet it any more). */
  forget(address: number): void {
    this.sites.delete(address);
  }

  /** Throw ForeignEmulationError unless `e` is what the old or the new instruction at `address` does. */
  check(cpu: number, address: number, e: Emulation): void {
    const s = this.sites.get(address);
    if (s === undefined) return; // the handler's own BUG checks report an unknown site
    // Decoded once per barrier, not per INT3 hit: a v2 switch under load takes thousands of hits (issue 12).
    const [old, nu] = (s.emulations ??= [emulationOf(s.old, address), emulationOf(s.new, address)]);
    if (same(e, old) || same(e, nu)) return;
    throw new ForeignEmulationError(cpu, address, describe(e), describe(old), describe(nu));
  }

  /**
   * check() of the emulation of `bytes` (a handler that emulates a whole site's bytes, e.g. the v2
   * lock-op handler). Bytes equal to the site's old or new bytes emulate as those do, by
   * definition, so only other bytes are decoded.
   */
  checkBytes(cpu: number, address: number, bytes: Uint8Array): void {
    const s = this.sites.get(address);
    if (s === undefined || sameBytes(bytes, s.old) || sameBytes(bytes, s.new)) return;
    this.check(cpu, address, emulationOf(bytes, address));
  }
}
