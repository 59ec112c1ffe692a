/**
 * The PV lock hash table (qspinlock_paravirt.h pv_hash/pv_unhash): a queue head that halts
 * records {lock, node} so the unlocker, seeing _Q_SLOW_VAL, can find whom to kick.
 */
import type { ServiceContext } from '../machine/service.ts';
import { KernelBug } from './errors.ts';

export interface PvHashTable {
  base: number;
  entries: number;
  entrySize: number;
}

function hashOf(lock: number, entries: number): number {
  // hash_ptr(): multiplicative hashing of the lock address (cache-line granular).
  return (Math.imul(Math.floor(lock / 64) >>> 0, 0x61c88647) >>> 0) % entries;
}

/** pv_hash(): claim a free entry for `lock` with cmpxchg; returns the entry's address. */
export function* pvHash(ctx: ServiceContext, t: PvHashTable, lock: number, node: number): Generator<number, number, void> {
  const h = hashOf(lock, t.entries);
  for (let i = 0; i < t.entries; i++) {
    const entry = t.base + ((h + i) % t.entries) * t.entrySize;
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
  const h = hashOf(lock, t.entries);
  for (let i = 0; i < t.entries; i++) {
    const entry = t.base + ((h + i) % t.entries) * t.entrySize;
    if ((yield* ctx.load(entry, 8)) === lock) {
      const node = yield* ctx.load(entry + 8, 8);
      yield* ctx.store(entry, 8, 0);
      return node;
    }
  }
  throw new KernelBug(`pv_unhash: lock 0x${BigInt.asUintN(64, BigInt(lock)).toString(16)} is not in the hash table`);
}
