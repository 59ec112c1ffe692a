/**
 * The `pvpatch` command. Each sub-command is defined in src/cli/commands/definitions.ts and runs
 * from src/cli/commands/<name>.ts, loaded only when it runs. Errors that carry `userFacing`
 * become one line on stderr and exit 2; anything else is a bug and exits 70 with its message (and the stack only with PVPATCH_DEBUG=1).
 * With `--json` an error is also one JSON object on stdout, so a tool reading stdout sees it.
 *
 * `main(argv)` writes to the process's streams and returns the exit code (src/cli/entry.ts runs
 * it as the `pvpatch` process); `runCli(argv)` runs the same in-process and returns what it
 * printed, for the tests and the fuzz suite (thousands of cases cannot each pay a process start).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Command, CommanderError } from 'commander';
import { defineCommands, loadCommands } from './commands/definitions.ts';

/** The exit codes of the `pvpatch` command (README: Exit codes). */
export const EXIT = { ok: 0, found: 1, badInput: 2, internal: 70 } as const;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

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
    .configureOutput({ outputError: () => {} })
    .exitOverride();
  defineCommands(program);
  return program;
}

function isUserFacing(err: unknown): err is Error {
  return err instanceof Error && (err as { userFacing?: unknown }).userFacing === true;
}

/** Commander's message without its "error: " prefix, as one line. */
function commanderLine(err: CommanderError): string {
  return err.message.replace(/^error: /, '').split('\n')[0]!.trim();
}

/** The one stderr line (and with --json the stdout object) for a failed command. */
function reportError(line: string, code: number, json: boolean): void {
  process.stderr.write(`pvpatch: ${line}\n`);
  if (json) process.stdout.write(JSON.stringify({ error: { kind: code === EXIT.badInput ? 'bad-input' : 'internal', message: line }, exitCode: code }) + '\n');
}

/** `help <name>` for a name that is not a command: one line, not the whole help page. */
function unknownHelpTopic(program: Command, argv: readonly string[]): string | undefined {
  if (argv[0] !== 'help' || argv[1] === undefined) return undefined;
  const known = program.commands.map((c) => c.name());
  return known.includes(argv[1]) ? undefined : `no command '${argv[1]}' to show help for (commands: ${known.join(', ')})`;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const json = argv.includes('--json');
  const exitBefore = process.exitCode;
  process.exitCode = undefined;
  try {
    if (argv.length === 0) {
      // A bare `pvpatch` asks what there is: the help page, on stdout, not an error.
      process.stdout.write(program.helpInformation());
      return EXIT.ok;
    }
    const topic = unknownHelpTopic(program, argv);
    if (topic !== undefined) {
      reportError(topic, EXIT.badInput, json);
      return EXIT.badInput;
    }
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? EXIT.ok : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version exit 0 and have printed what was asked; anything else is a usage error.
      if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
      if (err.code === 'commander.help') return EXIT.ok;
      reportError(`${commanderLine(err)} (see pvpatch --help)`, EXIT.badInput, json);
      return EXIT.badInput;
    }
    if (isUserFacing(err)) {
      reportError(err.message.split('\n')[0]!, EXIT.badInput, json);
      return EXIT.badInput;
    }
    const msg = err instanceof Error ? err.message : String(err);
    reportError(`internal error: ${msg.split('\n')[0]}`, EXIT.internal, json);
    if (process.env.PVPATCH_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return EXIT.internal;
  } finally {
    process.exitCode = exitBefore;
  }
}

/**
 * Run the command in this process and return its exit code and output instead of exiting.
 * The commands print with process.stdout/stderr.write, so those are redirected for the call; the
 * redirect captures only writes made by this call (its async context, AsyncLocalStorage), and
 * passes on every other write of the process: the node test runner's reporter writes its reports
 * to stdout whenever its stream flows, which may be while a command awaits (a module import, a
 * worker pool), and a report captured here was a test missing from the run's summary.
 */
/**
 * The sinks of the runCli call whose async context a write comes from. One instance for the
 * process: every live AsyncLocalStorage is visited at each async resource's creation, so one per
 * call made a fuzz run of 2,000 commands quadratic (12 s became 87 s).
 */
const sinks = new AsyncLocalStorage<{ out: string[]; err: string[] }>();

export async function runCli(argv: string[]): Promise<CliResult> {
  await loadCommands();
  const out: string[] = [];
  const err: string[] = [];
  const stdoutWrite = process.stdout.write;
  const stderrWrite = process.stderr.write;
  const capture = (real: typeof process.stdout.write, stream: 'out' | 'err') => function (this: unknown, chunk: string | Uint8Array, ...rest: unknown[]) {
    const sink = sinks.getStore();
    if (sink === undefined) return (real as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    sink[stream].push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    cb?.();
    return true;
  } as typeof process.stdout.write;
  process.stdout.write = capture(stdoutWrite, 'out');
  process.stderr.write = capture(stderrWrite, 'err');
  try {
    const code = await sinks.run({ out, err }, () => main(argv));
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
  }
}
