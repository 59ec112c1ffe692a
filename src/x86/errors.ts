/** Typed errors of the x86 layer. `userFacing` errors become one CLI line (src/cli/main.ts). */
import { hexBytes, hexAddress } from './format.ts';

/** The interpreter met an instruction outside the supported subset (DESIGN.md §2). */
export class UnsupportedInstruction extends Error {
  readonly userFacing = true;
  constructor(
    readonly address: number,
    readonly bytes: Uint8Array,
    readonly mnemonic: string,
  ) {
    super(`unsupported instruction '${mnemonic}' (bytes ${hexBytes(bytes)}) at ${hexAddress(address)}`);
    this.name = 'UnsupportedInstruction';
  }
}
