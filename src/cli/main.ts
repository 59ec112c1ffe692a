/**
 * The `pvpatch` command. Each sub-command lives in src/cli/commands/<name>.ts and exports
 * `register(program)`. Errors that carry `userFacing` become one line on stderr and exit 2;
 * anything else is a bug and exits 70 with its message (and the stack only with PVPATCH_DEBUG=1).
 */
import { Command, CommanderError } from 'commander';
import { register as registerRun } from './commands/run.ts';
import { register as registerInspect } from './commands/inspect.ts';
import { register as registerCheck } from './commands/check.ts';
import { register as registerMerge } from './commands/merge.ts';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('pvpatch')
    .description(
      'A lab for runtime patching of paravirtualized kernel code on SMP x86-64:\n' +
        'simulate a guest on real x86 machine code, switch its pv-ops, verify and measure.',
    )
    .version('0.1.0')
    // Usage errors are one line, like every other bad input.
    .configureOutput({ outputError: (str, write) => write(`pvpatch: ${str.replace(/^error: /, '').trim()} (see pvpatch --help)\n`) })
    .exitOverride();
  registerRun(program);
  registerInspect(program);
  registerCheck(program);
  registerMerge(program);
  return program;
}

function isUserFacing(err: unknown): err is Error {
  return err instanceof Error && (err as { userFacing?: unknown }).userFacing === true;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (or help/version, which exit 0).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (isUserFacing(err)) {
      process.stderr.write(`pvpatch: ${err.message}\n`);
      return 2;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`pvpatch: internal error: ${msg}\n`);
    if (process.env.PVPATCH_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return 70;
  }
}

const code = await main(process.argv.slice(2));
process.exitCode = code;
