/** One-paragraph, human descriptions of hazards and stop reasons for the terminal. */
import type { Hazard } from '../machine/events.ts';
import { disassemble, hexAddress, hexBytes } from '../x86/format.ts';

function writerName(w: number): string {
  return w === -1 ? 'the loader' : w === -2 ? 'the host' : `vCPU ${w}`;
}

export function describeHazard(h: Hazard): string {
  if (h.kind === 'cmc-unsynchronized') {
    const bytes = Uint8Array.from(h.bytes);
    const text = disassemble(bytes, h.address)[0]?.text ?? '(bad)';
    const who = [...new Set(h.unsynchronized.map((b) => writerName(b.writer)))].join(', ');
    const offs = h.unsynchronized.map((b) => `+${b.offset}`).join(' ');
    return (
      `cmc-unsynchronized: vCPU ${h.cpu} fetched ${hexAddress(h.address)} [${hexBytes(bytes)}] ${text}\n` +
      `  bytes ${offs} were written by ${who} after vCPU ${h.cpu}'s last serializing instruction ` +
      `(SDM 8.1.3: the executing CPU must serialize before running modified code)`
    );
  }
  // An oracle above the machine words its own finding (e.g. src/kernel/atomic-switch.ts).
  if (h.kind === 'oracle') return `${h.oracle}: ${h.message}`;
  return (
    `return-into-rewritten: vCPU ${h.cpu} returned to ${hexAddress(h.returnAddress)}, ` +
    `which held [${hexBytes(Uint8Array.from(h.before))}] when the return address was pushed and now holds ` +
    `[${hexBytes(Uint8Array.from(h.after))}], the middle of a rewritten instruction (seed 001)`
  );
}
