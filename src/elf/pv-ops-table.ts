/**
 * The pv_ops table as the image initialises it (arch/x86/kernel/paravirt.c `struct
 * paravirt_patch_template pv_ops = { ... }`, all native functions on bare hardware), read from
 * the image's data. pv_ops is exported, so the export table names it even in a stripped vmlinux;
 * failing that, every `.parainstructions` site that is still `call *pv_ops+8*type(%rip)` points at it.
 * `_paravirt_nop` is not exported: it is the pointer most slots share whose code is a bare return.
 */
import { decodeKernelInsn } from './kernel-insn.ts';
import type { KernelImage } from './image.ts';
import { PV_OPS_SLOTS } from './pv-ops-slots.ts';
import type { ParaSite } from './tables.ts';

const MAX_SLOTS = 128;

export interface PvOpsTable {
  /** Address of pv_ops, or undefined when the image has none we can find. */
  readonly address: number | undefined;
  /** Initial pointer per slot (0 = NULL). */
  readonly slots: readonly number[];
  /** `_paravirt_nop`, when it could be identified. */
  readonly paravirtNop: number | undefined;
}

/** pv_ops from `call *disp32(%rip)` (ff 15) sites: the majority of target - 8*type. */
function pvOpsFromSites(image: KernelImage, sites: readonly ParaSite[]): number | undefined {
  const votes = new Map<number, number>();
  for (const p of sites) {
    const b = image.read(p.address, 6);
    if (b === undefined || b[0] !== 0xff || b[1] !== 0x15) continue;
    const disp = (b[2]! | (b[3]! << 8) | (b[4]! << 16) | (b[5]! << 24)) | 0;
    const base = p.address + 6 + disp - 8 * p.type;
    votes.set(base, (votes.get(base) ?? 0) + 1);
  }
  let best: number | undefined;
  let n = 0;
  for (const [base, c] of votes) if (c > n) [best, n] = [base, c];
  return best;
}

/** Whether the function at `addr` is a bare return (`ret`, or `jmp __x86_return_thunk` with RETHUNK). */
function isBareReturn(image: KernelImage, addr: number, returnThunk: number | undefined): boolean {
  const win = image.read(addr, 5) ?? image.read(addr, 1);
  if (win === undefined) return false;
  if (win[0] === 0xc3) return true;
  const insn = decodeKernelInsn(win, addr);
  return insn !== undefined && insn.op1 === 0xe9 && insn.branchTarget !== undefined && insn.branchTarget === returnThunk;
}

export function readPvOps(image: KernelImage, sites: readonly ParaSite[]): PvOpsTable {
  const address = image.symbols.addressOf('pv_ops') ?? pvOpsFromSites(image, sites);
  if (address === undefined) return { address, slots: [], paravirtNop: undefined };
  // Other versions have more slots (5.10: iret, usergs_sysret64, ...): read what the section holds, up to 128.
  const sec = image.sectionAt(address);
  const n = sec === undefined ? 0 : Math.min(MAX_SLOTS, Math.floor((sec.addr + sec.size - address) / 8));
  const raw = n < PV_OPS_SLOTS.length ? undefined : image.read(address, 8 * n);
  if (raw === undefined) return { address, slots: [], paravirtNop: undefined };
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const slots = Array.from({ length: n }, (_, i) => Number(v.getBigInt64(8 * i, true)));
  let paravirtNop = image.symbols.addressOf('_paravirt_nop');
  if (paravirtNop === undefined) {
    const returnThunk = image.symbols.addressOf('__x86_return_thunk');
    const counts = new Map<number, number>();
    for (const s of slots) if (s !== 0) counts.set(s, (counts.get(s) ?? 0) + 1);
    const ranked = [...counts].sort((a, b) => b[1] - a[1]);
    paravirtNop = ranked.find(([addr]) => isBareReturn(image, addr, returnThunk))?.[0];
  }
  return { address, slots, paravirtNop };
}
