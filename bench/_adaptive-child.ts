/**
 * Child process for bench/adaptive.ts: runs one guest (argv[2]: JSON {kind, cfg}) through its
 * phases and prints the GuestRun as one JSON line, so the runs of a sweep can use every core.
 */
import { runGuest, type AdaptiveConfig, type GuestKind } from './_adaptive-guest.ts';

const { kind, cfg } = JSON.parse(process.argv[2]!) as { kind: GuestKind; cfg: AdaptiveConfig };
try {
  process.stdout.write(JSON.stringify(runGuest(kind, cfg)) + '\n');
} catch (e) {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
