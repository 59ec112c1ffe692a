/**
 * A scheduling adversary for v1 on the real kernel: while a vCPU sits in multi_cpu_stop (stopped
 * by stop_machine, IRQs off) with NMIs open, inject an NMI there, so its handler's real
 * _raw_spin_unlock meets the INT3 of an unlock site in the window (seeds 000, 002: the NMI is the
 * one thing stop_machine cannot stop). The inner chooser never picks an NMI itself.
 */
import { ActionKind, actionCpu, actionKind, type Chooser, type ChoiceKind, type CostClass, type SchedulingPoint } from '../../src/machine/chooser.ts';
import type { Vcpu } from '../../src/machine/vcpu.ts';
import { chooseWithoutNmis } from '../../src/patching/nmi-adversary.ts';

export class StopWindowNmiChooser implements Chooser {
  readonly name: string;
  injected = 0;
  private readonly filtered = new Int32Array(1024);
  private readonly map = new Int32Array(1024);

  /** `armed`: whether the INT3s are up now (the window within stop_machine where an NMI meets one). */
  constructor(private readonly inner: Chooser, private readonly armed: () => boolean, private readonly max = 4, private readonly stopper = 'multi_cpu_stop') {
    this.name = `nmi-in-stop-window(${inner.name})`;
  }

  next(point: SchedulingPoint): number {
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      if (actionKind(a) !== ActionKind.Nmi) continue;
      const c = point.vcpus[actionCpu(a)]!;
      if (this.injected < this.max && this.armed() && !c.nmiBlocked && !c.nmiPending && c.serviceFrames.at(-1)?.name === this.stopper) {
        this.injected++;
        return i;
      }
    }
    return chooseWithoutNmis(this.inner, point, this.filtered, this.map) ?? this.inner.next(point);
  }

  choose(kind: ChoiceKind, n: number): number {
    return this.inner.choose(kind, n);
  }

  observe(vcpu: Vcpu, kind: ActionKind, cost: CostClass): void {
    this.inner.observe?.(vcpu, kind, cost);
  }

  forced(a: number): boolean | void {
    return this.inner.forced?.(a);
  }
}
