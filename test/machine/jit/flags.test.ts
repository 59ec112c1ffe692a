// Issue 12 item 2: lazy flags (src/machine/jit/flags.ts). Every condition code after every
// flag-writing instruction a block computes lazily (ADD, SUB, CMP, AND, OR, XOR, TEST, INC, DEC at
// 32 and 64 bits), on edge operands, read three ways inside one block (SETcc, CMOVcc, Jcc) and
// then whole at the block's exit: the compiled tier leaves what the interpreter leaves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine, type Tier } from '../../../src/machine/machine.ts';
import { Asm, rax, rbx, eax, ebx, cl, edx, esi } from '../../../src/x86/asm.ts';
import { Reg } from '../../../src/x86/registers.ts';

const CODE = 0x400000;
const CCS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'] as const;
const OPS = ['add', 'sub', 'cmp', 'and', 'or', 'xor', 'test', 'inc', 'dec'] as const;
const EDGES = [0n, 1n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x8000000000000000n, 0xffffffffffffffffn];

/** `op a, b; setcc cl; cmovcc esi, edx; jcc skip; inc edx; skip: hlt` with a = rax/eax, b = rbx/ebx. */
function program(op: (typeof OPS)[number], wide: boolean, cc: (typeof CCS)[number]): Uint8Array {
  const a = new Asm(CODE);
  const skip = a.label('skip');
  const [x, y] = wide ? [rax, rbx] : [eax, ebx];
  if (op === 'inc' || op === 'dec') a.ins(op, x);
  else a.ins(op, x, y);
  a.ins(`set${cc}`, cl).ins(`cmov${cc}`, esi, edx).jcc(cc, skip).ins('inc', edx).bind(skip).bytes([0xf4]);
  return a.assemble().bytes;
}

function base(code: Uint8Array, tier: Tier): Machine {
  const m = new Machine({ vcpus: 1, tier });
  m.memory.map(CODE, 0x1000, 'rx');
  m.memory.writeBytes(CODE, code);
  return m;
}

test('every condition after every lazily computed flag writer, on edge operands: the same on both tiers', () => {
  let cases = 0;
  for (const op of OPS) {
    for (const wide of [false, true]) {
      for (const cc of CCS) {
        const code = program(op, wide, cc);
        const boots = { interp: base(code, 'interp'), compiled: base(code, 'compiled') };
        for (const va of EDGES) {
          for (const vb of EDGES) {
            const out = (['interp', 'compiled'] as const).map((tier) => {
              const m = boots[tier].fork();
              const c = m.vcpus[0]!;
              c.rip = CODE;
              c.setReg64(Reg.RAX, va);
              c.setReg64(Reg.RBX, vb);
              c.setReg64(Reg.RDX, 0x1234n);
              c.flags = 0x2 | (va & 1n ? 1 : 0); // CF in: INC/DEC keep it
              const r = m.run({ maxInstructions: 100 });
              return { reason: r.reason, n: r.instructions, flags: c.flags, regs: Array.from({ length: 8 }, (_, i) => c.getReg64(i)), compiled: m.compiledInstructions };
            });
            assert.ok(out[1]!.compiled > 0);
            assert.deepEqual({ ...out[1]!, compiled: 0 }, { ...out[0]!, compiled: 0 }, `${op} ${wide ? 64 : 32}-bit, j${cc}, a=0x${va.toString(16)} b=0x${vb.toString(16)}`);
            cases++;
          }
        }
      }
    }
  }
  assert.equal(cases, OPS.length * 2 * CCS.length * EDGES.length ** 2);
});
