/**
 * queued_spin_lock_slowpath, native and paravirt (Linux kernel/locking/qspinlock.c and
 * qspinlock_paravirt.h), as kernel services: coroutines that run on the vCPU and touch shared
 * state one access per step. The fast path and the unlock are real x86 at patch sites
 * (src/kernel/image.ts); this is what those sites call.
 */
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { MAX_NODES, PERCPU, QNODE, percpuBase } from './layout.ts';
import {
  Q_LOCKED_MASK, Q_LOCKED_PENDING_MASK, Q_LOCKED_VAL, Q_PENDING_MASK, Q_PENDING_VAL, Q_SLOW_VAL,
  Q_TAIL_MASK, VcpuState, decodeTail, encodeTail,
} from './qspinlock-word.ts';
import { pvHash, pvUnhash, type PvHashTable } from './pv-hash.ts';
import type { Hazard } from '../machine/events.ts';

/** What the slowpaths need to know about the image they run in. */
export interface SlowpathEnv {
  /** x86 stubs holding the `wait` and `kick` patch sites. */
  pvWaitStub: number;
  pvKickStub: number;
  hash: PvHashTable;
  /** SPIN_THRESHOLD: spins before a PV waiter halts (Linux: 1 << 15). */
  spinThreshold: number;
  stats: SlowpathStats;
  /** Told when a slowpath starts and ends (the atomic-switch oracle, src/kernel/atomic-switch.ts). */
  ops?: SlowpathObserver;
}

/** Sees every slowpath of either flavour start and end, per vCPU (they nest under interrupts). */
export interface SlowpathObserver {
  /** A slowpath of `flavor` starts on `lock` at `address`; a hazard stops the run. */
  slowpathEnter(cpu: number, lock: number, flavor: 'native' | 'pv', address: number): Hazard | undefined;
  slowpathExit(cpu: number): void;
  /** pv_kick(target) from `cpu` begins, and ends (a hazard stops the run). */
  kickBegin(cpu: number): void;
  kickEnd(cpu: number, target: number, address: number): Hazard | undefined;
}

export interface SlowpathStats {
  slowpaths: number;
  /** cpu_relax() iterations in slowpaths. */
  spins: number;
  /** pv_wait calls that went on to halt-check (the site may be a NOP under native ops). */
  waits: number;
  kicks: number;
}

export function newSlowpathStats(): SlowpathStats {
  return { slowpaths: 0, spins: 0, waits: 0, kicks: 0 };
}

function nodeAddress(cpu: number, idx: number): number {
  return percpuBase(cpu) + PERCPU.qnodes + idx * QNODE.size;
}

function* relax(ctx: ServiceContext, env: SlowpathEnv): Generator<number, void, void> {
  env.stats.spins++;
  yield* ctx.pause();
}

/** queued_spin_trylock(). */
function* trylock(ctx: ServiceContext, lock: number): Generator<number, boolean, void> {
  const v = yield* ctx.load(lock, 4);
  if (v !== 0) return false;
  return (yield* ctx.cmpxchg(lock, 4, 0, Q_LOCKED_VAL)) === 0;
}

/** pv_wait(ptr, val): through the `wait` patch site (NOPs under native ops). */
function* pvWait(ctx: ServiceContext, env: SlowpathEnv, ptr: number, val: number): Generator<number, void, void> {
  env.stats.waits++;
  yield* ctx.call(env.pvWaitStub, ptr, val);
}

function* pvKick(ctx: ServiceContext, env: SlowpathEnv, cpu: number): Generator<number, void, void> {
  env.stats.kicks++;
  env.ops?.kickBegin(ctx.cpu.id);
  yield* ctx.call(env.pvKickStub, cpu);
  yield* ctx.report(env.ops?.kickEnd(ctx.cpu.id, cpu, env.pvKickStub));
}

/** pv_wait_node(): spin on node->locked, then halt until the predecessor kicks us. */
function* pvWaitNode(ctx: ServiceContext, env: SlowpathEnv, node: number, prev: number): Generator<number, void, void> {
  for (;;) {
    for (let loop = env.spinThreshold; loop > 0; loop--) {
      if ((yield* ctx.load(node + QNODE.locked, 4)) !== 0) return;
      // pv_wait_early(): every 256 spins, give up early if the predecessor is not running.
      if ((loop & 0xff) === 0 && (yield* ctx.load(prev + QNODE.state, 1)) !== VcpuState.Running) break;
      yield* relax(ctx, env);
    }
    yield* ctx.xchg(node + QNODE.state, 1, VcpuState.Halted); // smp_store_mb
    if ((yield* ctx.load(node + QNODE.locked, 4)) === 0) yield* pvWait(ctx, env, node + QNODE.state, VcpuState.Halted);
    yield* ctx.cmpxchg(node + QNODE.state, 1, VcpuState.Halted, VcpuState.Running);
    if ((yield* ctx.load(node + QNODE.locked, 4)) !== 0) return;
  }
}

/** pv_kick_node(): if the next waiter halted, hash the lock and mark it slow; the unlock kicks. */
function* pvKickNode(ctx: ServiceContext, env: SlowpathEnv, lock: number, next: number): Generator<number, void, void> {
  if ((yield* ctx.cmpxchg(next + QNODE.state, 1, VcpuState.Halted, VcpuState.Hashed)) !== VcpuState.Halted) return;
  yield* ctx.store(lock, 1, Q_SLOW_VAL);
  yield* pvHash(ctx, env.hash, lock, next);
}

/** pv_wait_head_or_lock(): at the queue head, spin for the lock, then hash it and halt. */
function* pvWaitHeadOrLock(ctx: ServiceContext, env: SlowpathEnv, lock: number, node: number): Generator<number, number, void> {
  let hashed = (yield* ctx.load(node + QNODE.state, 1)) === VcpuState.Hashed;
  for (;;) {
    yield* ctx.store(node + QNODE.state, 1, VcpuState.Running);
    yield* ctx.store(lock + 1, 1, 1); // set_pending
    for (let loop = env.spinThreshold; loop > 0; loop--) {
      // trylock_clear_pending(): !locked && cmpxchg(locked_pending, PENDING, LOCKED)
      if ((yield* ctx.load(lock, 1)) === 0 && (yield* ctx.cmpxchg(lock, 2, Q_PENDING_VAL, Q_LOCKED_VAL)) === Q_PENDING_VAL) {
        return ((yield* ctx.load(lock, 4)) | Q_LOCKED_VAL) >>> 0;
      }
      yield* relax(ctx, env);
    }
    yield* ctx.store(lock + 1, 1, 0); // clear_pending
    if (!hashed) {
      const entry = yield* pvHash(ctx, env.hash, lock, node);
      hashed = true;
      if ((yield* ctx.xchg(lock, 1, Q_SLOW_VAL)) === 0) {
        // The lock was free and now we own it: set the locked byte back to _Q_LOCKED_VAL, unhash.
        yield* ctx.store(lock, 1, Q_LOCKED_VAL);
        yield* ctx.store(entry, 8, 0);
        return ((yield* ctx.load(lock, 4)) | Q_LOCKED_VAL) >>> 0;
      }
    }
    yield* ctx.store(node + QNODE.state, 1, VcpuState.Hashed);
    yield* pvWait(ctx, env, lock, Q_SLOW_VAL);
  }
}

/** The MCS queue part, shared by both flavours (`pv` adds the paravirt hooks). */
function* queue(ctx: ServiceContext, env: SlowpathEnv, lock: number, pv: boolean): Generator<number, void, void> {
  const cpu = ctx.cpu.id;
  const node0 = nodeAddress(cpu, 0);
  const idx = yield* ctx.load(node0 + QNODE.count, 4); // __this_cpu_inc(qnodes[0].mcs.count)
  yield* ctx.store(node0 + QNODE.count, 4, idx + 1);
  {
    if (idx >= MAX_NODES) {
      // More nesting than nodes (NMI inside NMI...): spin on trylock (qspinlock.c).
      while (!(yield* trylock(ctx, lock))) yield* relax(ctx, env);
      return;
    }
    const node = nodeAddress(cpu, idx);
    const tail = encodeTail(cpu, idx);
    yield* ctx.store(node + QNODE.locked, 4, 0);
    yield* ctx.store(node + QNODE.next, 8, 0);
    if (pv) {
      yield* ctx.store(node + QNODE.cpu, 4, cpu); // pv_init_node
      yield* ctx.store(node + QNODE.state, 1, VcpuState.Running);
    }
    if (yield* trylock(ctx, lock)) return;
    const old = ((yield* ctx.xchg(lock + 2, 2, tail >>> 16)) << 16) >>> 0; // xchg_tail
    let next = 0;
    if ((old & Q_TAIL_MASK) !== 0) {
      const p = decodeTail(old);
      const prev = nodeAddress(p.cpu, p.idx);
      yield* ctx.store(prev + QNODE.next, 8, node);
      if (pv) yield* pvWaitNode(ctx, env, node, prev);
      while ((yield* ctx.load(node + QNODE.locked, 4)) === 0) yield* relax(ctx, env); // arch_mcs_spin_lock_contended
      next = yield* ctx.load(node + QNODE.next, 8);
    }
    let val = pv ? yield* pvWaitHeadOrLock(ctx, env, lock, node) : 0;
    if (val === 0) {
      // atomic_cond_read_acquire(&lock->val, !(VAL & _Q_LOCKED_PENDING_MASK))
      for (;;) {
        val = yield* ctx.load(lock, 4);
        if ((val & Q_LOCKED_PENDING_MASK) === 0) break;
        yield* relax(ctx, env);
      }
    }
    // locked: claim the lock; if we are the last in the queue, also clear the tail.
    if (((val & Q_TAIL_MASK) >>> 0) === tail) {
      if ((yield* ctx.cmpxchg(lock, 4, val, Q_LOCKED_VAL)) === val) return;
    }
    yield* ctx.store(lock, 1, Q_LOCKED_VAL); // set_locked
    while (next === 0) {
      next = yield* ctx.load(node + QNODE.next, 8);
      if (next === 0) yield* relax(ctx, env);
    }
    yield* ctx.store(next + QNODE.locked, 4, 1); // arch_mcs_spin_unlock_contended
    if (pv) yield* pvKickNode(ctx, env, lock, next);
  }
}

/** release: __this_cpu_dec(qnodes[0].mcs.count). */
function* releaseNode(ctx: ServiceContext): Generator<number, void, void> {
  const node0 = nodeAddress(ctx.cpu.id, 0);
  const count = yield* ctx.load(node0 + QNODE.count, 4);
  yield* ctx.store(node0 + QNODE.count, 4, count - 1);
}

/** native_queued_spin_lock_slowpath(lock, val): pending bit, then the MCS queue. */
export function* nativeSlowpath(ctx: ServiceContext, env: SlowpathEnv): ServiceBody {
  yield* ctx.report(env.ops?.slowpathEnter(ctx.cpu.id, ctx.arg(0), 'native', ctx.address));
  try {
    env.stats.slowpaths++;
    const lock = ctx.arg(0);
    let val = ctx.arg(1) >>> 0;
    if (val === Q_PENDING_VAL) val = yield* ctx.load(lock, 4); // wait for a pending->locked hand-over (_Q_PENDING_LOOPS = 1)
    if ((val & ~Q_LOCKED_MASK) === 0) {
      val = yield* ctx.fetchOr(lock, 4, Q_PENDING_VAL); // queued_fetch_set_pending_acquire
      if ((val & ~Q_LOCKED_MASK) === 0) {
        if ((val & Q_LOCKED_MASK) !== 0) {
          while ((yield* ctx.load(lock, 1)) !== 0) yield* relax(ctx, env); // smp_cond_load_acquire(&lock->locked, !VAL)
        }
        yield* ctx.store(lock, 2, Q_LOCKED_VAL); // clear_pending_set_locked
        return;
      }
      if ((val & Q_PENDING_MASK) === 0) yield* ctx.store(lock + 1, 1, 0); // undo our pending bit
    }
    yield* queue(ctx, env, lock, false);
    yield* releaseNode(ctx);
  } finally {
    env.ops?.slowpathExit(ctx.cpu.id);
  }
}

/** __pv_queued_spin_lock_slowpath(lock, val): straight to the queue, halting instead of spinning forever. */
export function* pvSlowpath(ctx: ServiceContext, env: SlowpathEnv): ServiceBody {
  yield* ctx.report(env.ops?.slowpathEnter(ctx.cpu.id, ctx.arg(0), 'pv', ctx.address));
  try {
    env.stats.slowpaths++;
    yield* queue(ctx, env, ctx.arg(0), true);
    yield* releaseNode(ctx);
  } finally {
    env.ops?.slowpathExit(ctx.cpu.id);
  }
}

/** __pv_queued_spin_unlock_slowpath(lock, locked): the lock was hashed; unhash, release, kick. */
export function* pvUnlockSlowpath(ctx: ServiceContext, env: SlowpathEnv): ServiceBody {
  const lock = ctx.arg(0);
  const locked = ctx.arg(1) & 0xff;
  if (locked !== Q_SLOW_VAL) return; // WARN in Linux: a bogus unlock
  const node = yield* pvUnhash(ctx, env.hash, lock);
  yield* ctx.store(lock, 1, 0); // smp_store_release(&lock->locked, 0)
  const cpu = yield* ctx.load(node + QNODE.cpu, 4);
  yield* pvKick(ctx, env, cpu);
}
