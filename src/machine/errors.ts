/** Typed errors of the machine layer; `userFacing` ones become one CLI line. */
import { hexAddress } from '../x86/format.ts';

export type FaultKind =
  | 'page-fault'
  | 'protection'
  | 'non-canonical'
  | 'unhandled-exception'
  | 'divide-error'
  | 'bad-state';

/** The guest did something the machine cannot continue from (no handler, unmapped memory, ...). */
export class MachineFault extends Error {
  readonly userFacing = true;
  constructor(
    readonly kind: FaultKind,
    readonly cpu: number,
    readonly rip: number,
    detail: string,
  ) {
    super(`vCPU ${cpu} at ${hexAddress(rip)}: ${detail}`);
    this.name = 'MachineFault';
  }
}

/** Misuse of the machine's API by a scenario or a test (bad mapping, bad vCPU number, ...). */
export class MachineConfigError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'MachineConfigError';
  }
}
