/**
 * Runtime constants (Linux 6.11+, arch/x86/include/asm/runtime-const.h): `mov $0x0123456789abcdef,
 * %reg` and `shr $12, %reg` whose immediates runtime_const_init() overwrites at boot with a value
 * the kernel computes then. USER_PTR_MAX (arch_cpu_finalize_init) is TASK_SIZE_MAX, which depends
 * only on 5-level paging: (1 << 47) - PAGE_SIZE, or (1 << 56) - PAGE_SIZE with LA57. The dentry
 * hash (d_hash_shift, dentry_hashtable) is sized and allocated from the machine's memory at boot:
 * left as it is and reported as a run-time value.
 */
import type { PatchedText } from './patched-text.ts';
import type { RuntimeConst } from './tables.ts';

export type RuntimeConstOutcome = 'fixed' | 'run-time-value' | 'outside-text';

const PAGE_SIZE = 4096n;

/** The value a constant gets at boot, when it does not depend on memory or allocation. */
export function runtimeConstValue(symbol: string, la57: boolean): bigint | undefined {
  if (symbol === 'USER_PTR_MAX') return (1n << (la57 ? 56n : 47n)) - PAGE_SIZE;
  return undefined;
}

export function applyRuntimeConsts(consts: readonly RuntimeConst[], text: PatchedText, la57: boolean): RuntimeConstOutcome[][] {
  return consts.map((c) =>
    c.sites.map((addr): RuntimeConstOutcome => {
      const size = c.kind === 'ptr' ? 8 : 1;
      if (text.read(addr, size) === undefined) return 'outside-text';
      const v = runtimeConstValue(c.symbol, la57);
      if (v === undefined) return 'run-time-value';
      const bytes = new Uint8Array(size);
      new DataView(bytes.buffer).setBigUint64(0, v, true);
      text.write(addr, size === 8 ? bytes : bytes.subarray(0, 1));
      return 'fixed';
    }),
  );
}
