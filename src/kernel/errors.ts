/** Typed errors of the guest kernel layer. */

/** The guest kernel hit a BUG(): its own invariants broke (what Linux would panic on). */
export class KernelBug extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(`kernel BUG: ${message}`);
    this.name = 'KernelBug';
  }
}

/** A guest or host configuration that cannot be built. */
export class GuestConfigError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'GuestConfigError';
  }
}
