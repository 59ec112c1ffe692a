/**
 * vCPUs ordered by the time of their earliest action, for the timed strategy (issue 12: a scan
 * of every action at every point made a step's cost grow with the vCPU count). An indexed binary
 * min-heap: updating one vCPU's time is O(log n), the earliest is at the root. Ties between equal
 * times are left to the caller (it collects them with `atMost`).
 */
export class TimeHeap {
  /** Heap order: vCPU ids. */
  private readonly heap: Int32Array;
  /** Per vCPU: its index in `heap`, -1 when not in it. */
  private readonly pos: Int32Array;
  /** Per vCPU: its time (meaningful while it is in the heap). */
  readonly time: Float64Array;
  private size = 0;

  constructor(n: number) {
    this.heap = new Int32Array(n);
    this.pos = new Int32Array(n).fill(-1);
    this.time = new Float64Array(n);
  }

  clear(): void {
    for (let i = 0; i < this.size; i++) this.pos[this.heap[i]!] = -1;
    this.size = 0;
  }

  /** Set vCPU `id`'s time (Infinity: it has no action, it leaves the heap). */
  set(id: number, t: number): void {
    const at = this.pos[id]!;
    if (t === Infinity) {
      if (at >= 0) this.remove(at);
      return;
    }
    this.time[id] = t;
    if (at < 0) {
      const i = this.size++;
      this.heap[i] = id;
      this.pos[id] = i;
      this.up(i);
    } else {
      this.up(at);
      this.down(this.pos[id]!);
    }
  }

  /** The earliest vCPU, or -1. */
  top(): number {
    return this.size > 0 ? this.heap[0]! : -1;
  }

  /** The earliest time of a vCPU other than `id` (Infinity: none). */
  earliestBut(id: number): number {
    if (this.size === 0) return Infinity;
    if (this.heap[0] !== id) return this.time[this.heap[0]!]!;
    let t = Infinity;
    if (this.size > 1) t = this.time[this.heap[1]!]!;
    if (this.size > 2) t = Math.min(t, this.time[this.heap[2]!]!);
    return t;
  }

  /** Append to `out` from `n` every vCPU whose time is at most `t`; returns the new count. */
  atMost(t: number, out: Int32Array, n: number): number {
    return this.collect(0, t, out, n);
  }

  private collect(i: number, t: number, out: Int32Array, n: number): number {
    if (i >= this.size) return n;
    const id = this.heap[i]!;
    if (this.time[id]! > t) return n;
    out[n++] = id;
    n = this.collect(2 * i + 1, t, out, n);
    return this.collect(2 * i + 2, t, out, n);
  }

  private less(a: number, b: number): boolean {
    const ta = this.time[a]!, tb = this.time[b]!;
    return ta < tb || (ta === tb && a < b);
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i]!, b = this.heap[j]!;
    this.heap[i] = b;
    this.heap[j] = a;
    this.pos[b] = i;
    this.pos[a] = j;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(this.heap[i]!, this.heap[parent]!)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < this.size && this.less(this.heap[l]!, this.heap[m]!)) m = l;
      if (r < this.size && this.less(this.heap[r]!, this.heap[m]!)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private remove(at: number): void {
    const id = this.heap[at]!;
    const last = --this.size;
    this.pos[id] = -1;
    if (at === last) return;
    const moved = this.heap[last]!;
    this.heap[at] = moved;
    this.pos[moved] = at;
    this.up(at);
    this.down(this.pos[moved]!);
  }
}
