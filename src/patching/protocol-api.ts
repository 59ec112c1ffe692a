/**
 * Bring your own protocol: the stock patching protocols as named steps with hooks, and the shape
 * of a user's protocol module (`pvpatch run --protocol-file ./my-protocol.ts`). A protocol is one
 * of the stock protocols with some of its hooks overridden; every hook not given is the stock
 * one, so a variant differs from Linux's (or the RFC's, or the talk's) by exactly the hooks it
 * names. The stock protocols and the negative controls (src/patching/broken.ts) use the same hooks.
 *
 * text_poke_bp (Linux arch/x86/kernel/alternative.c, text_poke_bp_batch; src/kernel/text-poke-steps.ts):
 *  - `publish`: tp_vec and bp_desc with refs = 1 before any 0xCC is visible, so every trap finds the batch;
 *  - `int3`, `tails`, `firstBytes`: the three text writes (each site's first byte becomes 0xCC; the
 *    bytes behind it; the first byte) — the INT3 is the site-local barrier (seed 001) that lets a
 *    multi-byte instruction change while other CPUs run it;
 *  - `order`: the order of those three steps (Linux's: each write is then fetched only behind an INT3 every CPU has seen);
 *  - `sync`: how every CPU is serialized after a text step (text_poke_sync: IPI + serializing
 *    instruction on each, SDM 8.1.3, seed 003), called with the step it follows;
 *  - `release`: drop refs and wait for handlers still reading tp_vec;
 *  - `bpEmulation`: what the #BP handler does at a site (poke_int3_handler: emulate the new
 *    CALL/JMP/RET/NOP by editing the trap frame).
 *
 * v1 (RFC PATCH 15–19, seed 002; src/kernel/stop-machine.ts):
 *  - `ackOrder`: the order the primary waits for the secondaries' acknowledgements of each state;
 *  - `bpEmulation`: the #BP handler at a site being patched (drive the state machine, then return
 *    to the site without re-opening NMIs when in NMI context).
 *
 * v2 (seed 001 "so now v2"; src/patching/v2.ts):
 *  - `flipCondition`: when the patcher may try cmpxchg(word, 0, FLIPPED) (every vCPU passed the barrier);
 *  - `barrierPoint`: where a vCPU passes the global barrier (lockop_checkpoint, holding no lock).
 *
 * Every kind:
 *  - `prepare`: run on the patcher before the protocol writes anything, with the flavours it
 *    switches between: what the new ops need before any of them runs (src/patching/prepare.ts;
 *    the stock one allocates the PV lock hash a native boot never made).
 *
 * A module's default export is a ProtocolFactory (it receives this API at run time, so it needs
 * only a type import of this file and runs against whichever copy of pvpatch loads it), or a
 * Protocol value.
 */
import { TEXT_POKE_BP_STEPS, TextStep, textPoke, textPokeSync, writeLoc, type PokeBatch, type Step, type TextPokeBpSteps, type TextPokeStats } from '../kernel/text-poke-steps.ts';
import { pokeInt3Handler, type Int3Stats } from '../kernel/int3.ts';
import { V1_HOOKS, type V1Hooks, type V1Int3 } from '../kernel/stop-machine.ts';
import { V2_HOOKS, type V2Flip, type V2Hooks } from './v2-hooks.ts';
import { LOCKOP } from '../kernel/lockop-barrier.ts';
import { pvInitLockHash } from '../kernel/pv-hash.ts';
import { PREPARE, type PrepareHook, type SwitchPrepare } from './prepare.ts';
import { BP_DESC, Opcode, SYNC_ACKS, TP_LOC, TP_VEC, type TextPokeLoc } from '../kernel/text-poke-loc.ts';

export type { PokeBatch, Step, TextPokeBpSteps, TextPokeStats, Int3Stats, V1Hooks, V1Int3, V2Flip, V2Hooks, TextPokeLoc, PrepareHook, SwitchPrepare };

/** The stock protocols a module builds on (the names of `--protocol`). */
export const PROTOCOL_KINDS = ['text-poke-bp', 'v1', 'v2'] as const;
export type ProtocolKind = (typeof PROTOCOL_KINDS)[number];

/** text_poke_bp with some of its steps replaced. */
export interface TextPokeBpProtocol {
  kind: 'text-poke-bp';
  /** Shown in reports: say what differs from the stock protocol. */
  name: string;
  steps?: Partial<TextPokeBpSteps>;
  prepare?: PrepareHook;
}

/** v1 with some of its hooks replaced. */
export interface V1Protocol {
  kind: 'v1';
  name: string;
  hooks?: Partial<V1Hooks>;
  prepare?: PrepareHook;
}

/** v2 with some of its hooks replaced. */
export interface V2Protocol {
  kind: 'v2';
  name: string;
  hooks?: Partial<V2Hooks>;
  prepare?: PrepareHook;
}

export type Protocol = TextPokeBpProtocol | V1Protocol | V2Protocol;

/** Everything a protocol module may build from, handed to its factory at run time. */
export const PROTOCOL_API = {
  TEXT_POKE_BP_STEPS,
  V1_HOOKS,
  V2_HOOKS,
  TextStep,
  textPoke,
  textPokeSync,
  writeLoc,
  pokeInt3Handler,
  PREPARE,
  pvInitLockHash,
  /** Guest data the stock steps use (tp_vec, bp_desc, the SYNC acknowledgements, v2's words). */
  layout: { BP_DESC, TP_VEC, TP_LOC, SYNC_ACKS, LOCKOP, Opcode },
} as const;
export type ProtocolApi = typeof PROTOCOL_API;

/** A module's default export: a function of the API that returns the protocol. */
export type ProtocolFactory = (api: ProtocolApi) => Protocol;

/** The stock protocols as Protocol values (no hook overridden). */
export const STOCK_PROTOCOLS: Record<ProtocolKind, Protocol> = {
  'text-poke-bp': { kind: 'text-poke-bp', name: 'text_poke_bp' },
  v1: { kind: 'v1', name: 'v1 stop_machine' },
  v2: { kind: 'v2', name: 'v2 barrier' },
};

/** The full step table of a text_poke_bp protocol: its overrides over Linux's. */
export function textPokeBpSteps(p: TextPokeBpProtocol): TextPokeBpSteps {
  return { ...TEXT_POKE_BP_STEPS, ...p.steps };
}

/** The protocol's prepare step: its own, else the stock one. */
export function prepareOf(p: Protocol): PrepareHook {
  return p.prepare ?? PREPARE;
}

export function v1Hooks(p: V1Protocol): V1Hooks {
  return { ...V1_HOOKS, ...p.hooks };
}

export function v2Hooks(p: V2Protocol): V2Hooks {
  return { ...V2_HOOKS, ...p.hooks };
}

/** The hooks each kind may override (every one a function but text_poke_bp's `order`). */
const HOOKS: Record<ProtocolKind, { field: 'steps' | 'hooks'; names: readonly string[] }> = {
  'text-poke-bp': { field: 'steps', names: Object.keys(TEXT_POKE_BP_STEPS) },
  v1: { field: 'hooks', names: Object.keys(V1_HOOKS) },
  v2: { field: 'hooks', names: Object.keys(V2_HOOKS) },
};

/** Why `x` is not a Protocol (one line), or undefined when it is one. */
export function protocolShapeError(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null) return 'the protocol is not an object';
  const p = x as Record<string, unknown>;
  if (typeof p.kind !== 'string' || !(PROTOCOL_KINDS as readonly string[]).includes(p.kind)) return `kind must be one of ${PROTOCOL_KINDS.join(', ')}, not ${JSON.stringify(p.kind)}`;
  if (typeof p.name !== 'string' || p.name === '') return 'name must be a non-empty string';
  if (p.prepare !== undefined && typeof p.prepare !== 'function') return 'prepare must be a function';
  const { field, names } = HOOKS[p.kind as ProtocolKind];
  const other = field === 'steps' ? 'hooks' : 'steps';
  if (p[other] !== undefined) return `a ${p.kind} protocol overrides '${field}', not '${other}'`;
  const given = p[field];
  if (given === undefined) return undefined;
  if (typeof given !== 'object' || given === null) return `${field} must be an object`;
  for (const [k, v] of Object.entries(given)) {
    if (!names.includes(k)) return `${field}.${k} is not a ${p.kind} hook (the hooks: ${names.join(', ')})`;
    if (k === 'order') {
      const steps = Object.values(TextStep) as string[];
      if (!Array.isArray(v) || v.some((s) => !steps.includes(s as string))) return `steps.order must be a list of ${steps.join(', ')}`;
    } else if (typeof v !== 'function') return `${field}.${k} must be a function`;
  }
  return undefined;
}
