/**
 * The trigger of the v2 lock-op switch: the host grants or revokes KVM_HINTS_REALTIME
 * (KvmHost.setRealtimeHint raises VECTOR.HINT on every vCPU); the guest's hint handler reads the
 * hints again, decides as kvm_spinlock_init() does (REALTIME → native, else PV when the host has
 * PV_UNHALT), and posts the wanted flavour in LOCKOP.pending. An interrupt handler may not patch
 * (it may have interrupted a lock holder), so it only schedules: the switcher's vCPU picks the
 * request up at its next lockop_checkpoint(), where it holds no lock, and runs v2 from there.
 */
import type { Guest, GuestComponent } from '../kernel/guest.ts';
import type { ServiceBody, ServiceContext } from '../machine/service.ts';
import { VECTOR } from '../kernel/layout.ts';
import { FLAVOR_CODE, LOCKOP, LOCKOP_SERVICE } from '../kernel/lockop-barrier.ts';
import { kvmSpinlockInit } from '../kernel/paravirt.ts';
import { CostClass } from '../machine/chooser.ts';
import { GuestConfigError } from '../kernel/errors.ts';

export interface TriggerStats {
  /** Hint interrupts handled, and the flavour each asked for. */
  hints: number;
  requests: string[];
}

/** The guest's hint handler: schedules the switch (any protocol) on a hint change. */
export class HintTrigger implements GuestComponent {
  readonly stats: TriggerStats = { hints: 0, requests: [] };

  /** Replace the guest's bare `iretq` hint handler with one that schedules the switch. */
  constructor(guest: Guest) {
    const host = guest.host;
    if (!host) throw new GuestConfigError('the KVM_HINTS_REALTIME trigger needs a KVM host');
    const stats = this.stats;
    const nCpus = guest.machine.vcpus.length;
    const nopvspin = guest.options.nopvspin ?? false;
    guest.machine.registerService(LOCKOP_SERVICE.hintHandler, 'kvm_hint_handler', function* (ctx: ServiceContext): ServiceBody {
      // CPUID(KVM_CPUID_FEATURES) is one serializing step (a VM exit).
      const decision = kvmSpinlockInit((leaf) => host.cpuid(ctx.cpu, leaf), nCpus, nopvspin);
      yield* ctx.work(CostClass.Serializing);
      stats.hints++;
      stats.requests.push(decision.flavor);
      yield* ctx.store(LOCKOP.pending, 4, FLAVOR_CODE[decision.flavor]);
      return yield* ctx.iret();
    });
    guest.machine.setIdt(VECTOR.HINT, LOCKOP_SERVICE.hintHandler);
    guest.install(this);
  }

  forkInto(fork: Guest): HintTrigger {
    const t = new HintTrigger(fork);
    t.stats.hints = this.stats.hints;
    t.stats.requests.push(...this.stats.requests);
    return t;
  }
}

/** Install the hint trigger on `guest`; its statistics. */
export function installHintTrigger(guest: Guest): TriggerStats {
  return new HintTrigger(guest).stats;
}
