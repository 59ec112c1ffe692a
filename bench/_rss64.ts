// Child process for the machine bench: boot a 64-vCPU machine, run the lock loop, report RSS.
import { lockMachine, COUNTER } from './lock-machine.ts';
import { TimedChooser } from '../src/sched/timed.ts';

const iterations = Number(process.argv[2] ?? 200);
const m = lockMachine(64, iterations);
const r = m.run({ chooser: new TimedChooser({ seed: 1 }), maxInstructions: 1e9 });
const counter = Number(m.memory.readBytes(COUNTER, 4).reduce((a, b, i) => a + b * 2 ** (8 * i), 0));
process.stdout.write(JSON.stringify({ reason: r.reason, instructions: r.instructions, counter, expected: 64 * iterations, rss: process.memoryUsage().rss }) + '\n');
