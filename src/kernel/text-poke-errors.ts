/** Typed errors of text_poke_bp and its INT3 handler. */
import { hexAddress } from '../x86/format.ts';

/** A batch that text_poke_bp cannot take (Linux: a BUG_ON in text_poke_loc_init). */
export class TextPokeError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(`text_poke_bp: ${message}`);
    this.name = 'TextPokeError';
  }
}

/**
 * poke_int3_handler() trapped on a site whose new instruction it cannot emulate (Linux: BUG() in
 * the opcode switch). The vCPU is stopped at the INT3 with nothing it may legally execute.
 */
export class Int3EmulationError extends Error {
  readonly userFacing = true;
  constructor(
    readonly cpu: number,
    readonly address: number,
    readonly insn: string,
  ) {
    super(`poke_int3_handler: vCPU ${cpu} trapped at ${hexAddress(address)} whose new instruction '${insn}' cannot be emulated (only CALL, JMP, RET and NOPs can)`);
    this.name = 'Int3EmulationError';
  }
}
