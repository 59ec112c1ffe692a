/** Typed errors of the real-kernel guest. */

/** The real kernel cannot be had, loaded or set up as asked (one line for the CLI). */
export class LinuxGuestError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'LinuxGuestError';
  }
}
