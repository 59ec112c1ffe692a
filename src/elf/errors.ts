/**
 * Typed errors for reading real kernel images. Each carries what a user needs to fix the input;
 * the CLI prints `userFacing` errors as one line (src/cli/main.ts).
 */

/** The file is not a well-formed x86-64 ELF64 object, or a part we need lies outside it. */
export class ElfError extends Error {
  readonly userFacing = true;
  constructor(
    /** The file (or a description of the bytes) being read. */
    readonly file: string,
    /** What is wrong, in the ELF specification's words. */
    readonly problem: string,
  ) {
    super(`${file}: not a usable x86-64 ELF file: ${problem}`);
    this.name = 'ElfError';
  }
}

/** A bzImage (vmlinuz) whose payload cannot be found or decompressed. */
export class BzImageError extends Error {
  readonly userFacing = true;
  constructor(readonly file: string, readonly problem: string) {
    super(`${file}: cannot extract vmlinux: ${problem}`);
    this.name = 'BzImageError';
  }
}

/** A patch-site table whose entries do not fit the layout Linux 6.1 uses. */
export class PatchTableError extends Error {
  readonly userFacing = true;
  constructor(readonly table: string, readonly problem: string) {
    super(`${table}: ${problem}`);
    this.name = 'PatchTableError';
  }
}

/** The user asked for something the image or the models cannot answer (unknown preset, feature, address). */
export class InspectError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'InspectError';
  }
}
