/**
 * Everything boot patching asks of the running kernel, decided before `alternative_instructions()`
 * runs: which features `boot_cpu_has()` reports, what each pv_ops slot points to, and where the
 * thunks are. Built from a platform, a CPU model and a command line (boot-cpu.ts, platforms.ts).
 */
import type { StaticCallEnv } from './apply-static-calls.ts';

/** What a pv_ops slot holds when apply_paravirt reads it (paravirt.c `paravirt_patch`). */
export type PvOpTarget =
  | { readonly kind: 'function'; readonly address: number; readonly name?: string }
  /** `_paravirt_nop`: the site becomes all NOPs. */
  | { readonly kind: 'nop' }
  /** NULL: the site calls paravirt_BUG. */
  | { readonly kind: 'bug'; readonly address: number };

export interface BootEnv {
  /** boot_cpu_has(bit), features and X86_BUG_* bits alike. */
  readonly features: ReadonlySet<number>;
  /** pv_ops[slot] at the time apply_paravirt runs. */
  pvOp(slot: number): PvOpTarget;
  /** `__x86_indirect_thunk_array` (the rax thunk; one 32-byte thunk per register). */
  readonly indirectThunkArray: number | undefined;
  /** `__x86_return_thunk`, the target objtool recorded at every .return_sites entry. */
  readonly returnThunk: number | undefined;
  /** `x86_return_thunk`, the thunk bugs.c chose (equal to returnThunk unless a mitigation set another). */
  readonly activeReturnThunk: number | undefined;
  /** Whether the chosen return thunk is its_return_thunk (then only lower-half-cacheline returns keep it). */
  readonly itsReturnThunk: boolean;
  /** Linux 5.10's native_patch: the inline native bytes for a slot and site length, when it writes any. */
  nativeInline?(slot: number, len: number): Uint8Array | undefined;
  /** BUG_func and nop_func (6.8+ alt_replace_call: a NULL pv_ops slot calls BUG_func, nop_func leaves no CALL). */
  readonly bugFunc: number | undefined;
  readonly nopFunc: number | undefined;
  /** What the platform put in the pv_ops slot at this address, when it overrides the image's pointer. */
  pvOpAt(slotAddress: number): number | undefined;
  /** No other CPU will come up (`nosmp`, `maxcpus=0|1`): alternative_instructions patches to UP. */
  readonly uniprocessor: boolean;
  /** `no5lvl` on the command line: LA57 is not used even when the CPU has it. */
  readonly no5lvl: boolean;
  /** `__fentry__`, the target of every ftrace site's CALL. */
  readonly fentry: number | undefined;
  /** What __static_call_transform needs beyond the sites. */
  readonly staticCalls: StaticCallEnv;
  /** A static key's `enabled` state when the boot decides it (CPU, platform, command line), else undefined: its image default. */
  jumpKeyAtBoot(key: number): boolean | undefined;
  /** A static call's function when the boot decides it (0 = NULL), else undefined: the key's image function. */
  staticCallAtBoot(key: number): number | undefined;
  /** Trampolines (`__SCT__<name>`) a boot-time static_call_update() re-aimed, with their function (0 = NULL). */
  readonly updatedStaticCalls: ReadonlyMap<string, number>;
  readonly notes: readonly string[];
}
