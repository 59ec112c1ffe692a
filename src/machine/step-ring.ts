/**
 * The last steps of a traced run (Machine.tracing): which vCPU did what at which address, kept in
 * a fixed ring so a trace can show the instructions around the violating step of a run of any
 * length without one event per step. Typed arrays: the hot loop writes four numbers.
 */
export const enum StepKind {
  Instruction = 0,
  Drain = 1,
  Nmi = 2,
  Irq = 3,
  /** The host descheduled the vCPU (a scheduler decision), or ran it again. */
  Preempt = 4,
  Resume = 5,
}

export interface RecentStep {
  step: number;
  cpu: number;
  kind: StepKind;
  /** RIP before the step (the instruction or service it ran). */
  rip: number;
}

export class StepRing {
  private readonly steps: Float64Array;
  private readonly rips: Float64Array;
  private readonly cpus: Int16Array;
  private readonly kinds: Uint8Array;
  private next = 0;
  private count = 0;

  constructor(readonly capacity = 1024) {
    this.steps = new Float64Array(capacity);
    this.rips = new Float64Array(capacity);
    this.cpus = new Int16Array(capacity);
    this.kinds = new Uint8Array(capacity);
  }

  push(step: number, cpu: number, kind: StepKind, rip: number): void {
    const i = this.next;
    this.steps[i] = step;
    this.cpus[i] = cpu;
    this.kinds[i] = kind;
    this.rips[i] = rip;
    this.next = (i + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /** Oldest first. */
  entries(): RecentStep[] {
    const out: RecentStep[] = [];
    const start = (this.next - this.count + this.capacity) % this.capacity;
    for (let k = 0; k < this.count; k++) {
      const i = (start + k) % this.capacity;
      out.push({ step: this.steps[i]!, cpu: this.cpus[i]!, kind: this.kinds[i]! as StepKind, rip: this.rips[i]! });
    }
    return out;
  }
}
