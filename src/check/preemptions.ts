/**
 * Counting what makes a schedule hard to read (CHESS's preemption bound): a preemption is a switch
 * from vCPU A to vCPU B at a point where A could have stepped on; a switch because A halted or
 * blocked is not one, nor a switch away from a vCPU whose last instruction was PAUSE (a yield, as
 * DPOR's bound counts it in src/check/dpor-chooser.ts). Store drains are the memory system's, not a vCPU switch; injections (NMIs,
 * IRQs) are counted apart. A wrapper around any chooser, so it counts exactly what the run did.
 */
import { ActionKind, action, actionCpu, actionKind, type Chooser, type ChoiceKind, type CostClass, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';

export class CountingChooser implements Chooser {
  readonly name: string;
  preemptions = 0;
  injections = 0;
  /** The vCPU of the last step (-1: none yet). */
  private last = -1;
  readonly continueWith?: (vcpu: Vcpu) => boolean;
  readonly burst?: (vcpu: Vcpu) => number;
  readonly observe?: (vcpu: Vcpu, kind: ActionKind, cost: CostClass) => void;
  readonly idle?: (vcpus: readonly Vcpu[]) => boolean;

  constructor(private readonly inner: Chooser) {
    this.name = inner.name;
    // Optional hooks stay absent when the inner chooser has none: the machine's fast paths test for them.
    if (inner.continueWith) this.continueWith = (c) => inner.continueWith!(c);
    if (inner.burst) this.burst = (c) => inner.burst!(c);
    if (inner.observe) this.observe = (c, k, cost) => inner.observe!(c, k, cost);
    if (inner.idle) this.idle = (v) => inner.idle!(v);
  }

  private took(a: number, point: SchedulingPoint | undefined): void {
    const k = actionKind(a);
    if (k === ActionKind.Nmi || k === ActionKind.Irq) { this.injections++; return; }
    if (k !== ActionKind.Step) return;
    const cpu = actionCpu(a);
    const prev = this.last >= 0 ? point?.vcpus[this.last] : undefined;
    if (point !== undefined && prev !== undefined && cpu !== this.last && prev.lastPause !== prev.retired - 1) {
      const stay = action(this.last, ActionKind.Step);
      for (let i = 0; i < point.count; i++) if (point.actions[i] === stay) { this.preemptions++; break; }
    }
    this.last = cpu;
  }

  next(point: SchedulingPoint): number {
    const i = this.inner.next(point);
    this.took(point.actions[i]!, point);
    return i;
  }

  forced(a: number): void {
    this.inner.forced?.(a);
    this.took(a, undefined);
  }

  choose(kind: ChoiceKind, n: number): number {
    return this.inner.choose(kind, n);
  }
}
