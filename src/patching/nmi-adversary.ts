/**
 * A scheduling adversary for the nested-NMI case (seeds 000, 002): whenever a vCPU is inside the
 * #BP handler with NMIs blocked (an INT3 met in an NMI handler) and no NMI is latched yet, inject
 * one into it; otherwise defer to `inner`. On x86 that NMI stays latched until the next IRET — which,
 * if it is the INT3's, lets it nest inside the first NMI handler.
 */
import { ActionKind, actionCpu, actionKind, type Chooser, type ChoiceKind, type CostClass, type SchedulingPoint } from '../machine/chooser.ts';
import type { Vcpu } from '../machine/vcpu.ts';

/**
 * `inner`'s choice among the point's actions that are not NMI injections (an adversary that keeps
 * the NMI budget for its own moments), as an index into `point.actions`; undefined when every
 * action is one. `filtered` and `map` are scratch arrays of at least `point.count` entries. The
 * inner chooser sees a point of other actions, so it is told nothing changed that it may rely on.
 */
export function chooseWithoutNmis(inner: Chooser, point: SchedulingPoint, filtered: Int32Array, map: Int32Array): number | undefined {
  let n = 0;
  for (let j = 0; j < point.count; j++) {
    if (actionKind(point.actions[j]!) === ActionKind.Nmi) continue;
    filtered[n] = point.actions[j]!;
    map[n++] = j;
  }
  if (n === 0) return undefined;
  return map[inner.next({ actions: filtered, count: n, vcpus: point.vcpus, step: point.step, changed: -1, budget: point.budget })]!;
}

export class NmiInInt3Chooser implements Chooser {
  readonly name: string;
  /** NMIs this adversary injected. */
  injected = 0;

  private randomNmis = 0;
  /** The inner chooser's last point was a filtered one. */
  private filteredLast = false;
  private readonly filtered = new Int32Array(1024);
  private readonly map = new Int32Array(1024);

  /** `randomNmis`: how many NMIs `inner` may inject where it likes; the rest of the budget is kept for the adversary. */
  constructor(private readonly inner: Chooser, private readonly maxRandomNmis = 2, private readonly int3Handler = 'poke_int3_native') {
    this.name = `nmi-in-int3(${inner.name})`;
  }

  next(point: SchedulingPoint): number {
    for (let i = 0; i < point.count; i++) {
      const a = point.actions[i]!;
      if (actionKind(a) !== ActionKind.Nmi) continue;
      const c = point.vcpus[actionCpu(a)]!;
      if (c.nmiBlocked && !c.nmiPending && c.serviceFrames.at(-1)?.name === this.int3Handler) {
        this.injected++;
        return i;
      }
    }
    // After a filtered point the inner chooser saw other actions: it must rebuild what it keeps.
    const i = this.inner.next(this.filteredLast ? { ...point, changed: -1 } : point);
    this.filteredLast = false;
    if (actionKind(point.actions[i]!) !== ActionKind.Nmi) return i;
    if (this.randomNmis < this.maxRandomNmis) {
      this.randomNmis++;
      return i;
    }
    // Keep the rest of the NMI budget: let `inner` choose among the other actions.
    const j = chooseWithoutNmis(this.inner, point, this.filtered, this.map);
    if (j === undefined) return i;
    this.filteredLast = true;
    return j;
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

  get stopped() {
    return this.inner.stopped;
  }

  idle(vcpus: readonly Vcpu[]): boolean {
    return this.inner.idle?.(vcpus) ?? false;
  }
}
