import { TimedChooser } from '../src/sched/timed.ts';
import { Machine } from '../src/machine/machine.ts';
import { lockMachine } from './lock-machine.ts';
import { aluLoop } from './programs.ts';
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
for (let k = 0; k < 3; k++) for (const tier of ['interp', 'compiled'] as const) {
  const m = lockMachine(4, 50_000, tier);
  let t0 = cpu();
  let r = m.run({ chooser: new TimedChooser({ seed: 1 }), maxInstructions: 1e10 });
  let s = cpu() - t0;
  const four = (r.instructions / s / 1e6).toFixed(2);
  const m1 = new Machine({ vcpus: 1, tier });
  m1.memory.map(0x400000, 0x1000, 'rx');
  m1.memory.writeBytes(0x400000, aluLoop(2_000_000));
  m1.vcpu(0).rip = 0x400000;
  t0 = cpu();
  r = m1.run({ maxInstructions: 1e10 });
  s = cpu() - t0;
  console.log(tier, 'four', four, 'single', (r.instructions / s / 1e6).toFixed(2), 'M/s (cpu time)');
}
