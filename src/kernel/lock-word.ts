/**
 * What a lock implementation means by its lock word (DESIGN.md §6; seed 000: a runtime switch is
 * possible only if "both implementations agree what an unlocked spinlock looks like", the
 * objection to switching between a ticket lock and test-and-set). Before a switch flips, the
 * protocol checks that the new implementation reads every state the old one writes (unlocked,
 * locked) as the old one means it, and the other way round (code of both runs across the flip:
 * the inlined fast path, ops in flight), and that both read every lock word in memory now the
 * same way. Native and PV qspinlock share one word (qspinlock-word.ts): they always agree.
 */
import { hexAddress } from '../x86/format.ts';
import { Q_LOCKED_MASK, Q_LOCKED_VAL } from './qspinlock-word.ts';

export type LockMeaning = 'unlocked' | 'locked';
const MEANINGS: readonly LockMeaning[] = ['unlocked', 'locked'];

export interface LockWordModel {
  readonly name: string;
  /** The word the implementation leaves for a free lock, and for one taken with no waiters. */
  encode(m: LockMeaning): number;
  /** How its lock and unlock code read a word. */
  read(word: number): LockMeaning;
}

/** Linux's qspinlock (native and PV): locked while the locked byte is non-zero (_Q_SLOW_VAL too). */
export const QSPINLOCK: LockWordModel = {
  name: 'qspinlock',
  encode: (m) => (m === 'unlocked' ? 0 : Q_LOCKED_VAL),
  read: (w) => ((w & Q_LOCKED_MASK) !== 0 ? 'locked' : 'unlocked'),
};

const hex = (w: number) => `0x${(w >>> 0).toString(16)}`;

/**
 * Where `from` and `to` disagree on what a lock word means, as one line; undefined when they
 * agree on both canonical states and on every word in `words` (lock address -> word now).
 */
export function lockWordDisagreement(from: LockWordModel, to: LockWordModel, words: ReadonlyMap<number, number>): string | undefined {
  for (const [writer, reader] of [[from, to], [to, from]] as const) {
    for (const m of MEANINGS) {
      const w = writer.encode(m);
      const seen = reader.read(w);
      if (seen !== m) return `${reader.name} reads ${writer.name}'s ${m} word ${hex(w)} as ${seen}`;
    }
  }
  for (const [lock, w] of words) {
    const a = from.read(w), b = to.read(w);
    if (a !== b) return `the lock at ${hexAddress(lock)} holds ${hex(w)}: ${from.name} reads it as ${a}, ${to.name} as ${b}`;
  }
  return undefined;
}
