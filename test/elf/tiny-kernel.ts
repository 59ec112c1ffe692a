/**
 * A tiny linked "vmlinux" with one site in each table, laid out like Linux 6.1's: a pv unlock
 * site `call *pv_ops+0x280(%rip)` (.parainstructions, slot 80) wrapped by ALT_NOT(PVUNLOCK)
 * `movb $0,(%rdi)` (.altinstructions), a `jmp __x86_return_thunk` (.return_sites), a
 * `call __x86_indirect_thunk_rax` (.retpoline_sites), pv_ops in .data, and an export table
 * naming pv_ops, the thunks and its_return_thunk, as a stripped Debian vmlinux has, and a
 * linux_banner in .rodata.
 */
import { buildElf, Packer, SHF, SHT, concat } from './elf-builder.ts';

export const T = 0xffffffff81000000n;
const D = 0xffffffff82000000n;
const K = 0xffffffff82100000n; // __ksymtab
const KS = 0xffffffff82110000n; // __ksymtab_strings
const P = 0xffffffff83000000n; // .parainstructions
const A = 0xffffffff83001000n; // .altinstructions
const R = 0xffffffff83002000n; // .altinstr_replacement
const RP = 0xffffffff83003000n; // .retpoline_sites
const RS = 0xffffffff83004000n; // .return_sites
const RO = 0xffffffff82200000n; // .rodata (linux_banner)

export const SITE_PV = Number(BigInt.asIntN(64, T));
export const SITE_RET = SITE_PV + 0x20;
export const SITE_RETPOLINE = SITE_PV + 0x40;
const NATIVE_UNLOCK = 0x100;
const NOP_FN = 0x180;
const RETURN_THUNK = 0x200;
const ITS_RETURN_THUNK = 0x260; // upper half of a cacheline, as retpoline.S aligns it
const THUNK_ARRAY = 0x300;

const rel = (from: bigint, to: bigint): number => Number(to - from);

/** linux_banner as init/version-timestamp.c prints it; the version picks the table layouts. */
export const TINY_BANNER = 'Linux version 6.1.0-tiny-amd64 (pvpatch@tests) (gcc 12) #1 SMP Debian 6.1.176-1';

export function tinyKernel(banner = TINY_BANNER): Uint8Array {
  const text = new Uint8Array(0x600).fill(0xcc);
  const put = (off: number, b: Packer): void => text.set(b.done(), off);
  // call *pv_ops+8*80(%rip)
  put(0, new Packer().u8(0xff).u8(0x15).s32(rel(T + 6n, D + 8n * 80n)));
  put(0x20, new Packer().u8(0xe9).s32(RETURN_THUNK - (0x20 + 5)));
  put(0x40, new Packer().u8(0xe8).s32(THUNK_ARRAY - (0x40 + 5)));
  put(NATIVE_UNLOCK, new Packer().raw([0xc6, 0x07, 0x00, 0xc3]));
  put(NOP_FN, new Packer().u8(0xc3));
  put(RETURN_THUNK, new Packer().raw([0xc3, 0xcc]));
  put(ITS_RETURN_THUNK, new Packer().raw([0xc3, 0xcc]));

  const pvOps = new Packer();
  for (let i = 0; i < 84; i++) pvOps.u64(i === 80 ? T + BigInt(NATIVE_UNLOCK) : T + BigInt(NOP_FN));

  const names = ['pv_ops', '__x86_return_thunk', '__x86_indirect_thunk_rax', 'its_return_thunk'];
  const targets = [D, T + BigInt(RETURN_THUNK), T + BigInt(THUNK_ARRAY), T + BigInt(ITS_RETURN_THUNK)];
  let strs = '';
  const ksym = new Packer();
  names.forEach((n, i) => {
    const field = K + BigInt(12 * i);
    ksym.s32(rel(field, targets[i]!)).s32(rel(field + 4n, KS + BigInt(strs.length))).s32(0);
    strs += `${n}\0`;
  });

  const para = new Packer().u64(T).u8(80).u8(6).raw([0, 0, 0, 0, 0, 0]);
  const alt = new Packer().s32(rel(A, T)).s32(rel(A + 4n, R)).u16(0x8000 | (8 * 32 + 20)).u8(6).u8(3);
  const repl = new Packer().raw([0xc6, 0x07, 0x00]);
  return buildElf(2, [
    { name: '.text', type: SHT.PROGBITS, flags: SHF.ALLOC | SHF.EXEC, addr: T, data: text },
    { name: '.data', type: SHT.PROGBITS, flags: SHF.ALLOC | SHF.WRITE, addr: D, data: pvOps.done() },
    { name: '__ksymtab', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: K, data: ksym.done() },
    { name: '__ksymtab_strings', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: KS, data: new TextEncoder().encode(strs) },
    { name: '.parainstructions', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: P, data: para.done() },
    { name: '.altinstructions', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: A, data: alt.done() },
    { name: '.altinstr_replacement', type: SHT.PROGBITS, flags: SHF.ALLOC | SHF.EXEC, addr: R, data: repl.done() },
    { name: '.retpoline_sites', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: RP, data: new Packer().s32(rel(RP, T + 0x40n)).done() },
    { name: '.return_sites', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: RS, data: concat([new Packer().s32(rel(RS, T + 0x20n)).done()]) },
    { name: '.rodata', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: RO, data: new TextEncoder().encode(`${banner}\n\0`) },
  ]);
}
