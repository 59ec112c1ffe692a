/**
 * The code buffer of one block being compiled: registers as locals (`l<r>`/`h<r>`, the Int32Array
 * halves of src/machine/vcpu.ts), temporaries, the pending flags (flags.ts), exits and the fault
 * points that the block's `catch` uses to leave the vCPU exactly as the interpreter would.
 */
import { Opd, type Insn } from '../../x86/insn.ts';
import { sizeMask } from '../../x86/alu.ts';
import { materialize, type Pending } from './flags.ts';

/** Placeholder for the register write-back, filled in once every written register is known. */
export const WRITE_BACK = '@WB@';

export class BlockWriter {
  readonly lines: string[] = [];
  /** Registers the block reads or writes (loaded into locals at entry). */
  readonly used = new Set<number>();
  /** Registers the block writes (stored back at every exit). */
  readonly written = new Set<number>();
  private temps = 0;
  /** Flags of the last flag-writing instruction not yet folded into `F`. */
  pending: Pending | null = null;
  /** Per fault point (the block's `pc`), the statement that brings `F` up to date there. */
  readonly faultCases: string[] = [];

  constructor(
    /** The block's byte range [lo, hi): a store into it ends the block (self-modifying code). */
    readonly lo: number,
    readonly hi: number,
  ) {}

  emit(s: string): void {
    this.lines.push(s);
  }

  temp(): string {
    return `t${this.temps++}`;
  }

  tempCount(): number {
    return this.temps;
  }

  /** Assign `expr` to a fresh temporary; returns its name. */
  let(expr: string | number): string {
    const t = this.temp();
    this.emit(`${t} = ${expr};`);
    return t;
  }

  /** Fold the pending flags into `F` (codegen state and emitted code). */
  settle(): void {
    if (this.pending === null) return;
    this.emit(materialize(this.pending));
    this.pending = null;
  }

  /** The statement an exit or fault here needs to complete `F`, without changing codegen state. */
  settleText(): string {
    return this.pending === null ? '' : materialize(this.pending);
  }

  /** Mark a point a fault or a hook may leave from: sets `pc` so the `catch` settles `F` as here. */
  faultPoint(): void {
    this.faultCases.push(this.settleText());
    this.emit(`pc = ${this.faultCases.length - 1};`);
  }

  /** The exit to `rip` after the instructions counted in `n`. */
  exit(rip: number): string {
    return `{ ${this.settleText()} c.flags = F; ${WRITE_BACK} c.rip = ${rip}; c.retired = r0 + n; return n; }`;
  }

  /** Unsigned halves of register operand (`k` REG or REGH) at `size`, as expressions. */
  readReg(k: Opd, r: number, size: number): [string, string] {
    this.used.add(r);
    if (k === Opd.REGH) return [`((l${r} >>> 8) & 0xff)`, '0'];
    if (size === 8) return [`(l${r} >>> 0)`, `(h${r} >>> 0)`];
    if (size === 4) return [`(l${r} >>> 0)`, '0'];
    return [`(l${r} & ${sizeMask(size)})`, '0'];
  }

  /** Write unsigned halves `lo`/`hi` to a register operand at `size` (the interpreter's writeReg). */
  writeReg(k: Opd, r: number, size: number, lo: string, hi: string): void {
    this.used.add(r);
    this.written.add(r);
    if (k === Opd.REGH) this.emit(`l${r} = (l${r} & ~0xff00) | ((${lo} & 0xff) << 8);`);
    else if (size === 8) this.emit(`l${r} = ${lo} | 0; h${r} = ${hi} | 0;`);
    else if (size === 4) this.emit(`l${r} = ${lo} | 0; h${r} = 0;`);
    else if (size === 2) this.emit(`l${r} = (l${r} & ~0xffff) | (${lo} & 0xffff);`);
    else this.emit(`l${r} = (l${r} & ~0xff) | (${lo} & 0xff);`);
  }

  /** Immediate of `i` at `size` as unsigned halves (the interpreter's read of Opd.IMM). */
  imm(i: Insn, size: number): [string, string] {
    if (size === 8) return [String(i.immLo >>> 0), String(i.immHi >>> 0)];
    return [String((i.immLo & sizeMask(size)) >>> 0), '0'];
  }

  /** The function's source, write-back and declarations filled in. */
  source(body: string): string {
    const regs = [...this.used].sort((a, b) => a - b);
    const wb = [...this.written].sort((a, b) => a - b).map((r) => `LO[${r}] = l${r}; HI[${r}] = h${r};`).join(' ');
    const decl = [
      'const LO = c.lo, HI = c.hi, T = c.opB, r0 = c.retired;',
      'let F = c.flags, n = 0, pc = -1;',
      ...regs.map((r) => `let l${r} = LO[${r}], h${r} = HI[${r}];`),
      this.temps > 0 ? `let ${Array.from({ length: this.temps }, (_, k) => `t${k} = 0`).join(', ')};` : '',
    ];
    const cases = this.faultCases.map((s, k) => (s === '' ? '' : `case ${k}: ${s} break;`)).join(' ');
    return [
      ...decl,
      'try {',
      body,
      `} catch (e) { switch (pc) { ${cases} } c.flags = F; ${wb} c.retired = r0 + n; throw e; }`,
    ].join('\n').split(WRITE_BACK).join(wb);
  }
}
