/**
 * Static keys and static calls whose boot state the kernel decides from the CPU, the platform, the
 * command line or its configuration before user space runs, modelled by name (a System.map names
 * them; a stripped image keeps their defaults). Each decision cites the code that makes it.
 */
import type { KernelCommandLine } from './boot-cpu.ts';
import { featureByName } from './cpufeatures.ts';
import type { KernelImage } from './image.ts';

/** The kernel's .config (Debian ships it as /boot/config-<release>; get-kernel.sh keeps it beside vmlinux). */
export type KernelConfig = ReadonlyMap<string, string>;

export function parseKernelConfig(text: string): KernelConfig {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line.trim());
    if (m !== null) out.set(m[1]!, m[2]!);
  }
  return out;
}

export interface BootDecisions {
  jumpKeyAtBoot(key: number): boolean | undefined;
  staticCallAtBoot(key: number): number | undefined;
  /** Static calls the boot updated (static_call_update), whose trampolines follow: `__SCT__<name>` → function (0 = NULL). */
  readonly updatedStaticCalls: ReadonlyMap<string, number>;
  /** One line per decision, for `inspect` to show. */
  readonly notes: readonly string[];
}

type PreemptMode = 'none' | 'voluntary' | 'full';

/**
 * sched_dynamic_update() (kernel/sched/core.c, CONFIG_PREEMPT_DYNAMIC with
 * HAVE_PREEMPT_DYNAMIC_CALL): preempt_dynamic_init picks `preempt=` or the configured model and
 * points five static calls at their enabled or disabled function (__static_call_return0 or NULL).
 */
function preemptCalls(mode: PreemptMode): [name: string, enabled: boolean][] {
  return [
    ['cond_resched', mode !== 'full'],
    ['might_resched', mode === 'voluntary'],
    ['preempt_schedule', mode === 'full'],
    ['preempt_schedule_notrace', mode === 'full'],
    ['irqentry_exit_cond_resched', mode === 'full'],
  ];
}

const PREEMPT_ENABLED: Record<string, readonly string[]> = {
  cond_resched: ['__cond_resched'],
  might_resched: ['__cond_resched'],
  preempt_schedule: ['preempt_schedule_thunk'],
  preempt_schedule_notrace: ['preempt_schedule_notrace_thunk'],
  irqentry_exit_cond_resched: ['raw_irqentry_exit_cond_resched', 'irqentry_exit_cond_resched'],
};
/** The disabled function: __static_call_return0 for the two resched calls, NULL for the rest. */
const PREEMPT_DISABLED_RETURN0 = new Set(['cond_resched', 'might_resched']);

function preemptMode(cmdline: KernelCommandLine, config: KernelConfig | undefined): PreemptMode | undefined {
  const opt = cmdline.options.get('preempt');
  if (opt === 'none' || opt === 'voluntary' || opt === 'full') return opt;
  if (config === undefined) return undefined;
  if (config.get('CONFIG_PREEMPT_NONE') === 'y') return 'none';
  if (config.get('CONFIG_PREEMPT_VOLUNTARY') === 'y') return 'voluntary';
  if (config.get('CONFIG_PREEMPT') === 'y') return 'full';
  return undefined;
}

export function bootDecisions(image: KernelImage, features: ReadonlySet<number>, cmdline: KernelCommandLine, config: KernelConfig | undefined): BootDecisions {
  const keys = new Map<number, boolean>();
  const calls = new Map<number, number>();
  const updated = new Map<string, number>();
  const notes: string[] = [];
  const sym = (n: string): number | undefined => image.symbols.addressOf(n);

  // native_pv_lock_init() (arch/x86/kernel/paravirt.c): bare hardware drops the virt spinlock.
  const virtSpin = sym('virt_spin_lock_key');
  if (virtSpin !== undefined && !features.has(featureByName('HYPERVISOR')!.bit)) {
    keys.set(virtSpin, false);
    notes.push('virt_spin_lock_key: disabled (no X86_FEATURE_HYPERVISOR), native_pv_lock_init');
  }

  const dynamic = config?.get('CONFIG_PREEMPT_DYNAMIC') === 'y' || (config === undefined && sym('__SCK__preempt_schedule') !== undefined && cmdline.options.has('preempt'));
  const mode = dynamic ? preemptMode(cmdline, config) : undefined;
  const return0 = sym('__static_call_return0');
  if (mode !== undefined && return0 !== undefined) {
    for (const [name, enabled] of preemptCalls(mode)) {
      const key = sym(`__SCK__${name}`);
      const fn = enabled ? PREEMPT_ENABLED[name]!.map(sym).find((a) => a !== undefined) : PREEMPT_DISABLED_RETURN0.has(name) ? return0 : 0;
      if (key === undefined || fn === undefined) continue;
      calls.set(key, fn);
      updated.set(`__SCT__${name}`, fn);
    }
    notes.push(`preempt=${mode}: ${cmdline.options.has('preempt') ? 'command line' : 'CONFIG_PREEMPT_' + mode.toUpperCase()} (sched_dynamic_update)`);
  }
  return { jumpKeyAtBoot: (k) => keys.get(k), staticCallAtBoot: (k) => calls.get(k), updatedStaticCalls: updated, notes };
}
