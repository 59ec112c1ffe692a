/**
 * A tiny linked "vmlinux" with the boot writes beyond alternative_instructions(), laid out as
 * Linux lays them out: three jump labels (an objtool-NOPed unlikely branch on a false key, one on
 * a true key, a likely branch), two static call sites (a call of `foo`, a NULL tail call), an
 * ftrace `call __fentry__`, a static-call trampoline, the keys in .data, and the names a
 * System.map would give (BOOT_NAMES).
 */
import { buildElf, Packer, SHF, SHT } from './elf-builder.ts';
import { TINY_BANNER } from './tiny-kernel.ts';

export const T = 0xffffffff81000000n;
const D = 0xffffffff82000000n; // .data: the keys
const J = 0xffffffff83000000n; // __jump_table
const S = 0xffffffff83001000n; // .static_call_sites
const M = 0xffffffff83002000n; // __mcount_loc
const RO = 0xffffffff82200000n;
export const n = (b: bigint): number => Number(BigInt.asIntN(64, b));

const KEY_OFF = D; // static_key { enabled = 0 }
const KEY_ON = D + 0x10n; // static_key { enabled = 1 }
const SCK_FOO = D + 0x20n; // static_call_key { func = foo }
const SCK_NULL = D + 0x30n; // static_call_key { func = NULL }
const FOO = T + 0x100n;
const FENTRY = T + 0x180n;
const TRAMP = T + 0x1c0n;

export function bootImage(): Uint8Array {
  const text = new Uint8Array(0x200).fill(0xcc);
  const at = (off: number, bytes: number[]): void => text.set(bytes, off);
  const rel = (from: bigint, to: bigint): number[] => {
    const d = Number(to - from);
    return [d & 0xff, (d >> 8) & 0xff, (d >> 16) & 0xff, (d >>> 24) & 0xff];
  };
  at(0x00, [0x66, 0x90]); // A: objtool-NOPed static_branch_unlikely(KEY_OFF)
  at(0x08, [0x0f, 0x1f, 0x44, 0x00, 0x00]); // B: static_branch_unlikely(KEY_ON): must become JMP
  at(0x10, [0xeb, 0x06]); // C: static_branch_likely(KEY_OFF): stays JMP
  at(0x40, [0xe8, ...rel(T + 0x45n, TRAMP)]); // static_call(foo)
  at(0x50, [0xe9, ...rel(T + 0x55n, TRAMP)]); // static_call tail call of a NULL key
  at(0x60, [0xe8, ...rel(T + 0x65n, FENTRY)]); // call __fentry__
  at(0x100, [0xc3]);
  at(0x180, [0xc3]);
  at(0x1c0, [0xe9, ...rel(T + 0x1c5n, FOO), 0x0f, 0xb9, 0xcc]); // __SCT__foo: jmp foo; ud1
  const data = new Packer().u32(0).u32(0).u64(0n).u32(1).u32(0).u64(0n).u64(FOO).u64(0n).u64(0n).u64(0n).done();
  const jump = new Packer();
  const entry = (field: bigint, code: bigint, target: bigint, key: bigint, flags: bigint): void => {
    jump.s32(Number(code - field)).s32(Number(target - (field + 4n))).u64(BigInt.asUintN(64, key + flags - (field + 8n)));
  };
  entry(J, T, T + 0x20n, KEY_OFF, 2n); // objtool NOPs this, not a branch
  entry(J + 16n, T + 8n, T + 0x30n, KEY_ON, 2n);
  entry(J + 32n, T + 0x10n, T + 0x18n, KEY_OFF, 1n); // branch (likely)
  const sites = new Packer().s32(Number(T + 0x40n - S)).s32(Number(SCK_FOO - (S + 4n))).s32(Number(T + 0x50n - (S + 8n))).s32(Number(SCK_NULL + 1n - (S + 12n)));
  return buildElf(2, [
    { name: '.text', type: SHT.PROGBITS, flags: SHF.ALLOC | SHF.EXEC, addr: T, data: text },
    { name: '.data', type: SHT.PROGBITS, flags: SHF.ALLOC | SHF.WRITE, addr: D, data },
    { name: '.rodata', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: RO, data: new TextEncoder().encode(`${TINY_BANNER}\n\0`) },
    { name: '__jump_table', type: SHT.PROGBITS, flags: SHF.ALLOC | SHF.WRITE, addr: J, data: jump.done() },
    { name: '.static_call_sites', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: S, data: sites.done() },
    { name: '__mcount_loc', type: SHT.PROGBITS, flags: SHF.ALLOC, addr: M, data: new Packer().u64(T + 0x60n).done() },
  ]);
}


/** The names a System.map gives the image's keys, functions and trampoline. */
export const BOOT_NAMES: readonly (readonly [string, number])[] = [
  ['key_off', n(KEY_OFF)], ['key_on', n(KEY_ON)], ['__SCK__foo', n(SCK_FOO)], ['__SCK__bar', n(SCK_NULL)],
  ['foo', n(FOO)], ['__fentry__', n(FENTRY)], ['__SCT__foo', n(TRAMP)],
];
