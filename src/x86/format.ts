/**
 * Disassembly for people: iced-x86's formatter over a byte range. Used by listings, the CLI and
 * error messages; never on the interpreter's hot path.
 */
import { Decoder, DecoderOptions, Formatter, FormatterSyntax, Code } from 'iced-x86';

export type Syntax = 'gas' | 'intel';

export interface DisasmLine {
  /** Address of the instruction's first byte. */
  address: number;
  /** The instruction's bytes. */
  bytes: Uint8Array;
  /** Formatted text; `(bad)` for bytes that do not decode. */
  text: string;
  /** False when the bytes do not form a valid instruction. */
  valid: boolean;
}

function formatter(syntax: Syntax): Formatter {
  const f = new Formatter(syntax === 'gas' ? FormatterSyntax.Gas : FormatterSyntax.Intel);
  f.digitSeparator = '';
  f.firstOperandCharIndex = 0;
  // objdump-like: `call 0x100100`, `nopl 0(%rax)`.
  f.branchLeadingZeros = false;
  f.uppercaseHex = false;
  f.showZeroDisplacements = true;
  return f;
}

/** Decode `bytes` (located at `address`) into one line per instruction, front to back. */
export function disassemble(bytes: Uint8Array, address: number, syntax: Syntax = 'gas'): DisasmLine[] {
  const dec = new Decoder(64, bytes, DecoderOptions.None);
  dec.ip = BigInt.asUintN(64, BigInt(address));
  const fmt = formatter(syntax);
  const out: DisasmLine[] = [];
  let offset = 0;
  try {
    while (dec.canDecode) {
      const insn = dec.decode();
      const len = insn.length;
      const valid = insn.code !== Code.INVALID;
      out.push({
        address: address + offset,
        bytes: bytes.slice(offset, offset + len),
        text: valid ? fmt.format(insn) : '(bad)',
        valid,
      });
      insn.free();
      offset += len;
    }
  } finally {
    dec.free();
    fmt.free();
  }
  return out;
}

/** Lowercase hex of a byte array, space-separated (`c6 07 00`). */
export function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** An address as a 64-bit hex string (`0xffffffff81000000`), from its canonical signed form. */
export function hexAddress(address: number): string {
  return '0x' + BigInt.asUintN(64, BigInt(address)).toString(16);
}

/** One instruction's text, for error messages. */
export function formatOne(bytes: Uint8Array, address: number): string {
  const lines = disassemble(bytes, address);
  return lines.length > 0 ? lines[0]!.text : '(empty)';
}
