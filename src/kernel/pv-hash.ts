/**
 * The PV lock hash table (kernel/locking/qspinlock_paravirt.h pv_hash/pv_unhash): a queue head
 * that halts records {lock, node} so the unlocker, seeing _Q_SLOW_VAL, can find whom to kick.
 *
 * The table is reached through the pointer `pv_lock_hash`, which only __pv_init_lock_hash() sets,
 * and that runs only when kvm_spinlock_init() enables PV spinlocks at boot (it is __init). On a
 * native boot the pointer stays NULL, and Linux's __pv_queued_spin_lock_slowpath, once a runtime
 * switch has made it reachable, faults in pv_hash() on the NULL table. A switch to PV must allocate
 * the table first (pvInitLockHash, a protocol's prepare step: src/patching/prepare.ts).
 */
import type { ServiceContext } from '../machine/service.ts';
import { MachineFault } from '../machine/errors.ts';
import { KernelBug } from './errors.ts';

export interface PvHashTable {
  /** &pv_lock_hash: the 8-byte pointer to the table, NULL until the table is allocated. */
  pointer: number;
  /** Where the allocation puts the table (zeroed memory nothing else uses). */
  table: number;
  entries: number;
  entrySize: number;
}

/**
 * The table's address, loaded from pv_lock_hash. NULL: touch it as Linux does (`&pv_lock_hash[0]`,
 * pv_lock_hash_bits being 0 too) and let the machine's page fault say where and why.
 */
function* tableOf(ctx: ServiceContext, t: PvHashTable, fn: 'pv_hash' | 'pv_unhash'): Generator<number, number, void> {
  const base = yield* ctx.load(t.pointer, 8);
  if (base !== 0) return base;
  try {
    yield* ctx.load(0, 8);
  } catch (e) {
    if (e instanceof MachineFault) throw new MachineFault(e.kind, e.cpu, e.rip, `${fn}: NULL pointer dereference at 0x0: pv_lock_hash was never allocated (a native boot; __pv_init_lock_hash runs only when PV spinlocks are enabled at boot)`);
    throw e;
  }
  throw new KernelBug(`${fn}: pv_lock_hash is NULL and address 0 is mapped`);
}

/**
 * __pv_init_lock_hash() at run time: allocate the table (zeroed, as alloc_large_system_hash's
 * HASH_ZERO) and publish it in pv_lock_hash; nothing when it exists already (a PV boot, or an
 * earlier switch). A plain store, as Linux's assignment: the switch that follows publishes its
 * INT3s with a locked instruction, which drains it first (x86-TSO).
 */
export function* pvInitLockHash(ctx: ServiceContext, t: PvHashTable): Generator<number, void, void> {
  if ((yield* ctx.load(t.pointer, 8)) !== 0) return;
  yield* ctx.store(t.pointer, 8, t.table);
}

function hashOf(lock: number, entries: number): number {
  // hash_ptr(): multiplicative hashing of the lock address (cache-line granular).
  return (Math.imul(Math.floor(lock / 64) >>> 0, 0x61c88647) >>> 0) % entries;
}

/** pv_hash(): claim a free entry for `lock` with cmpxchg; returns the entry's address. */
export function* pvHash(ctx: ServiceContext, t: PvHashTable, lock: number, node: number): Generator<number, number, void> {
  const base = yield* tableOf(ctx, t, 'pv_hash');
  const h = hashOf(lock, t.entries);
  for (let i = 0; i < t.entries; i++) {
    const entry = base + ((h + i) % t.entries) * t.entrySize;
    if ((yield* ctx.cmpxchg(entry, 8, 0, lock)) === 0) {
      yield* ctx.store(entry + 8, 8, node);
      return entry;
    }
  }
  // Linux: BUG() — the table is sized so that this cannot happen (one entry per CPU would do).
  throw new KernelBug(`pv_hash: no free entry for lock 0x${BigInt.asUintN(64, BigInt(lock)).toString(16)}`);
}

/** pv_unhash(): find and free the entry for `lock`; returns the node to kick. */
export function* pvUnhash(ctx: ServiceContext, t: PvHashTable, lock: number): Generator<number, number, void> {
  const base = yield* tableOf(ctx, t, 'pv_unhash');
  const h = hashOf(lock, t.entries);
  for (let i = 0; i < t.entries; i++) {
    const entry = base + ((h + i) % t.entries) * t.entrySize;
    if ((yield* ctx.load(entry, 8)) === lock) {
      const node = yield* ctx.load(entry + 8, 8);
      yield* ctx.store(entry, 8, 0);
      return node;
    }
  }
  throw new KernelBug(`pv_unhash: lock 0x${BigInt.asUintN(64, BigInt(lock)).toString(16)} is not in the hash table`);
}
