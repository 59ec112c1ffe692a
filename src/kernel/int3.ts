/**
 * poke_int3_handler() (Linux 6.x arch/x86/kernel/alternative.c) as the #BP handler service: a vCPU
 * that executes the 0xCC text_poke_bp put on a site's first byte traps here (RIP in the frame = the
 * byte after the 0xCC). The handler takes a reference on the batch, binary-searches it for the
 * site and emulates the *new* instruction by editing the frame, so the vCPU never executes a site
 * whose bytes are half old, half new (seed 001: the INT3 barrier).
 */
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { Reg } from '../x86/registers.ts';
import { formatOne, hexAddress } from '../x86/format.ts';
import { KernelBug } from './errors.ts';
import { Int3EmulationError } from './text-poke-errors.ts';
import { BP_DESC, Opcode, TP_LOC } from './text-poke-loc.ts';
import { TEXT_BASE } from './layout.ts';
import type { EmulationOracle } from './emulation-oracle.ts';

export interface Int3Stats {
  /** INT3 traps the handler emulated. */
  int3Hits: number;
}

const INT3_INSN_SIZE = 1;

/** try_get_desc(): atomic_inc_not_zero(&bp_desc.refs); false once the patcher has dropped the batch. */
function* tryGetDesc(ctx: ServiceContext): Generator<number, boolean, void> {
  for (;;) {
    const refs = yield* ctx.load(BP_DESC.refs, 4);
    if (refs === 0) return false;
    if ((yield* ctx.cmpxchg(BP_DESC.refs, 4, refs, refs + 1)) === refs) return true;
  }
}

/** put_desc(): smp_mb__before_atomic(); atomic_dec(&bp_desc.refs) (a locked op orders both). */
function* putDesc(ctx: ServiceContext): Generator<number, void, void> {
  yield* ctx.fetchAdd(BP_DESC.refs, 4, -1);
}

/** __inline_bsearch over tp_vec (sorted by address): the entry's address, or 0 when absent. */
function* bsearch(ctx: ServiceContext, vec: number, nr: number, ip: number): Generator<number, number, void> {
  let lo = 0, hi = nr;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const tp = vec + mid * TP_LOC.size;
    const addr = TEXT_BASE + ((yield* ctx.load(tp + TP_LOC.relAddr, 4)) | 0);
    if (ip < addr) hi = mid;
    else if (ip > addr) lo = mid + 1;
    else return tp;
  }
  return 0;
}

/**
 * The handler. DESIGN.md §6: it never meets an address it does not know — an INT3 outside the
 * batch, or with no batch published, is a kernel BUG here (Linux would fall through to do_int3's
 * other users and then die()).
 */
export function* pokeInt3Handler(ctx: ServiceContext, stats: Int3Stats, oracle?: EmulationOracle): ServiceBody {
  const frame = ctx.cpu.getAddr(Reg.RSP); // regs: RIP, CS, RFLAGS, RSP, SS
  const ip = (yield* ctx.load(frame, 8)) - INT3_INSN_SIZE;
  if (!(yield* tryGetDesc(ctx))) throw new KernelBug(`vCPU ${ctx.cpu.id}: int3 at ${hexAddress(ip)} with no text_poke_bp batch published`);
  // The non-zero refcount we read orders these loads after the patcher's writes of the batch.
  const vec = yield* ctx.load(BP_DESC.vec, 8);
  const nr = yield* ctx.load(BP_DESC.nrEntries, 4);
  const tp = yield* bsearch(ctx, vec, nr, ip);
  if (tp === 0) {
    yield* putDesc(ctx);
    throw new KernelBug(`vCPU ${ctx.cpu.id}: int3 at ${hexAddress(ip)}, which is not in the text_poke_bp batch`);
  }
  const len = yield* ctx.load(tp + TP_LOC.len, 1);
  const opcode = yield* ctx.load(tp + TP_LOC.opcode, 1);
  const disp = (yield* ctx.load(tp + TP_LOC.disp, 4)) | 0;
  const next = ip + len;
  // The emulation oracle: what follows must be the site's old or new instruction.
  if (opcode === Opcode.CALL || opcode === Opcode.JMP32 || opcode === Opcode.JMP8) oracle?.check(ctx.cpu.id, ip, { kind: opcode === Opcode.CALL ? 'call' : 'jmp', target: next + disp });
  else if (opcode === Opcode.RET) oracle?.check(ctx.cpu.id, ip, { kind: 'ret' });
  switch (opcode) {
    case Opcode.CALL: // int3_emulate_call(): push the return address, jump
      yield* ctx.store(frame, 8, next + disp);
      yield* putDesc(ctx);
      stats.int3Hits++;
      return yield* ctx.iret({ push: next });
    case Opcode.JMP32:
    case Opcode.JMP8: // int3_emulate_jmp() (NOP2/NOP5 are JMP +0)
      yield* ctx.store(frame, 8, next + disp);
      yield* putDesc(ctx);
      stats.int3Hits++;
      return yield* ctx.iret();
    case Opcode.RET: // int3_emulate_ret(): the frame's RIP is replaced by the popped return address
      yield* ctx.store(frame, 8, next);
      yield* putDesc(ctx);
      stats.int3Hits++;
      return yield* ctx.iret({ pop: true });
    default: {
      // BUG(): e.g. the native unlock `movb $0,(%rdi)` — a store, not control flow (seed 001).
      const lo = yield* ctx.load(tp + TP_LOC.text, 4), hi = yield* ctx.load(tp + TP_LOC.text + 4, 4);
      const text = Uint8Array.from({ length: len }, (_, i) => ((i < 4 ? lo : hi) >>> (8 * (i % 4))) & 0xff);
      yield* putDesc(ctx);
      throw new Int3EmulationError(ctx.cpu.id, ip, formatOne(text, ip));
    }
  }
}
