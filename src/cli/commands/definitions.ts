/**
 * The definitions of the `pvpatch` sub-commands: names, arguments, options and their help. Each
 * action imports its command's module only when it runs (issue 12: `pvpatch --help` must not load
 * the machine, the guest or iced-x86's decoder, ~0.3 s of start-up); the bundle splits them into
 * chunks (scripts/build.mjs). So this file imports nothing heavier than commander and name lists.
 */
import { Option, type Command } from 'commander';
import type { SeededStrategyName } from '../../check/seeded.ts';
import { CPU_MODELS } from '../../elf/cpu-models.ts';
import { PLATFORMS } from '../../elf/platform-names.ts';
import { SWITCH_PROTOCOLS } from '../../patching/switch-protocols.ts';
import { STOCK_VARIANT_NAMES } from '../../patching/variant-names.ts';
import type { RunFlags } from './run.ts';
import type { CheckFlags } from './check.ts';
import type { InspectFlags } from './inspect.ts';
import type { ReportFlags } from './report.ts';

export type CheckStrategyName = SeededStrategyName | 'dpor';
export const CHECK_STRATEGIES: readonly CheckStrategyName[] = ['random', 'pct', 'dpor'];

/** Where a pmemsave of physical 16 MiB (CONFIG_PHYSICAL_START) sits with nokaslr: __START_KERNEL_map + 16 MiB. */
export const DEFAULT_DUMP_BASE = '0xffffffff81000000';

export function defineCommands(program: Command): void {
  program
    .command('run')
    .description('run a scenario (the bundled default when none is given) and report hazards')
    .argument('[scenario]', 'scenario file (YAML or JSON)')
    .addOption(new Option('--strategy <name>', 'scheduling strategy').choices(['timed', 'random', 'pct', 'replay', 'first']))
    .option('--seed <n>', 'seed for the strategy (default: the scenario\'s, else 1)')
    .option('--seeds <n>', 'sweep n seeds from --seed, each a fork of one boot; report failing seeds with the command that replays each')
    .addOption(new Option('--protocol <name>', 'guest scenarios with a switch: the patching protocol (default: the scenario\'s, else v2)').choices([...SWITCH_PROTOCOLS]))
    .option('--protocol-file <file>', 'guest scenarios with a switch: a protocol module (.ts or .js) built on the protocol API (see examples/README.md)')
    .addOption(new Option('--variant <name>', 'guest scenarios with a switch: a stock broken variant of the protocol instead (a negative control)').choices(STOCK_VARIANT_NAMES))
    .option('--corrupt-site <n>', 'guest scenarios: rewrite site n\'s NOP padding first, so the switch meets bytes it does not expect')
    .option('--schedule <string>', 'replay this schedule string (implies --strategy replay)')
    .option('--schedule-file <file>', 'replay the schedule in this file (any length; implies --strategy replay)')
    .option('--schedule-out <file>', 'write the run\'s schedule string to a file')
    .option('--trace-out <file>', 'write the run\'s events as Chrome/Perfetto trace JSON (open in ui.perfetto.dev)')
    .option('--report <file>', 'write a self-contained HTML report of the run (swimlanes, the violating step, phases)')
    .option('--max-instructions <n>', 'stop after n instructions')
    .option('--show-sites', 'guest scenarios: list every patched pv-op site with its bytes')
    .option('--json', 'print one JSON object instead of text')
    .addOption(new Option('--tier <tier>', 'how guest code executes: compiled basic blocks (default) or the reference interpreter; same results either way').choices(['interp', 'compiled']))
    .action(async (file: string | undefined, flags: RunFlags) => {
      const { runCommand } = await import('./run.ts');
      process.exitCode = await runCommand(file, flags);
    });

  program
    .command('inspect')
    .description('read a real vmlinux / bzImage / module: patch-site tables, reproduced boot patching, runtime-switch judgement')
    .argument('<image>', 'vmlinux, bzImage (vmlinuz) or module (.ko)')
    .addOption(new Option('--platform <platform>', 'platform boot patching is reproduced for').choices([...PLATFORMS]).default('bare-metal'))
    .option('--features <spec>', `CPU preset and changes, e.g. Skylake-Client or EPYC,-avx2,+pcid (presets: ${CPU_MODELS.map((c) => c.name).join(', ')})`, 'Skylake-Client')
    .option('--cmdline <text>', 'kernel command line options that change patching, e.g. "mitigations=off nopvspin"', '')
    .option('--symbols <file>', 'System.map or unstripped vmlinux (needed by kvm, kvm-realtime and xen-pv on a stripped image)')
    .option('--vmlinux <file>', 'for a module: the vmlinux it belongs to (default: one found beside it in the cache)')
    .option('--site <address>', 'show one site: original and patched bytes with disassembly')
    .option('--analyze [platform]', 'judge every pv_ops site for switching between bare metal and a paravirt platform (default kvm)')
    .option('--diff', 'print every byte that boot patching changes')
    .option('--json', 'one JSON object: tables, boot setup, every site {table, address, length, original, patched}')
    .option('--compare <dump>', "compare the reproduced .text with a running kernel's memory (QMP pmemsave or raw bytes): every differing byte classified")
    .option('--dump-base <address>', "virtual address of the dump's first byte (pmemsave from 16 MiB with nokaslr)", DEFAULT_DUMP_BASE)
    .option('--emit-text <file>', 'write the reproduced .text bytes to a file (atomically)')
    .action(async (image: string, flags: InspectFlags) => {
      const { inspectCommand } = await import('./inspect.ts');
      inspectCommand(image, flags);
    });

  program
    .command('report')
    .description('write one self-contained HTML report of a run or check JSON (and benchmark JSON files)')
    .argument('[input]', 'the JSON of pvpatch run --json or pvpatch check --json')
    .option('-o, --output <file>', 'the HTML file to write')
    .option('--bench <file...>', 'benchmark JSON files (npm run bench -- <name> --json) to plot with their spread')
    .action(async (input: string | undefined, flags: ReportFlags) => {
      const { reportCommand } = await import('./report.ts');
      process.exitCode = reportCommand(input, flags);
    });

  program
    .command('check')
    .description('explore a scenario\'s interleavings: what was explored, the verdict, a shrunk replayable counterexample')
    .argument('[scenario]', 'scenario file (YAML or JSON); default: the bundled default')
    .addOption(new Option('--strategy <name>', 'exploration strategy (default random)').choices([...CHECK_STRATEGIES]))
    .addOption(new Option('--protocol <name>', 'guest scenarios with a switch: the patching protocol (default: the scenario\'s)').choices([...SWITCH_PROTOCOLS]))
    .addOption(new Option('--variant <name>', 'guest scenarios with a switch: a stock broken variant of the protocol instead (a negative control)').choices(STOCK_VARIANT_NAMES))
    .option('--protocol-file <file>', 'guest scenarios with a switch: a protocol module (.ts or .js) built on the protocol API (see examples/README.md)')
    .option('--preemptions <k>', 'dpor: the preemption bound; pct: priority change points (bug depth k+1, default 2)')
    .option('--depth <n>', 'instructions per execution at most (default: the scenario\'s run.maxInstructions)')
    .option('--executions <n>', 'run n executions (default 1000; 20000 with --strategy dpor on a machine scenario); execution i uses seed --seed + i')
    .option('--budget <seconds>', 'run for this much wall-clock time instead (the count then depends on the machine)')
    .option('--workers <n>', 'worker threads for random and pct (default: the cores; dpor runs in one); the result is the same for any n')
    .option('--shard <i/n>', 'run only executions i, i+n, i+2n, ... (join the shards\' --json files with pvpatch merge)')
    .option('--seed <s>', 'seed of execution 0 (default 1)')
    .option('--expect <condition>', 'a herd-style final condition over observed values, e.g. \'exists (0:rax=0 /\\ 1:rax=0)\'')
    .option('--schedule-file <file>', 'check this one recorded schedule (and shrink it if it fails)')
    .option('--schedule-out <file>', 'write the counterexample\'s schedule here (the replay command reads it)')
    .option('--json', 'print one JSON object: verdict, executions, states, counterexample {schedule, replay, steps, preemptions}')
    .action(async (file: string | undefined, flags: CheckFlags) => {
      const { checkCommand } = await import('./check.ts');
      process.exitCode = await checkCommand(file, flags);
    });

  program
    .command('merge')
    .description('join the --json files of check --shard 0/n .. n-1/n into the unsharded result')
    .argument('<files...>', 'shard JSON files (every shard of one exploration)')
    .option('--json', 'print one JSON object (as check --json)')
    .action(async (files: string[], flags: { json?: boolean }) => {
      const { mergeCommand } = await import('./merge.ts');
      process.exitCode = await mergeCommand(files, flags);
    });
}

/**
 * Load every command module now (the in-process CLI, runCli, does before it redirects stdout: a
 * first dynamic import waits on file reads, and whatever else writes to stdout meanwhile, such as
 * the test runner's reports, must not land in the captured output).
 */
export async function loadCommands(): Promise<void> {
  await Promise.all([import('./run.ts'), import('./inspect.ts'), import('./report.ts'), import('./check.ts'), import('./merge.ts')]);
}
