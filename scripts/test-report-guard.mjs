// Preloaded into every test file's process by run-tests.mjs (--import). A test file runs in a
// child process whose reports reach the runner as framed messages on its stdout; a frame written
// while something had replaced process.stdout.write (the in-process CLI, test helper runCli) is
// lost, and its test vanishes from the summary while the run still passes (the CI glitch of
// test/cli/bad-input.test.ts). The guard counts the frames written that never reached the real write and
// appends the count to the ledger file run-tests.mjs names (PVPATCH_TEST_LEDGER); the runner
// fails when any were lost. It counts only: what the replacement does with the frame is unchanged.
import { appendFileSync } from 'node:fs';

const ledger = process.env.PVPATCH_TEST_LEDGER;
// The node:test child protocol (v8-serializer reporter): each frame begins with V8's header, ff 0f.
const isFrame = (c) => c instanceof Uint8Array && c.length >= 2 && c[0] === 0xff && c[1] === 0x0f;

if (ledger !== undefined && process.env.NODE_TEST_CONTEXT === 'child-v8') {
  const stdout = process.stdout;
  const real = stdout.write;
  // A frame enters at the outermost write call (depth 1) and is delivered when the real write
  // gets it; a replacement that forwards it (runCli for writes not its own) loses nothing.
  let entered = 0;
  let delivered = 0;
  let depth = 0;
  const counted = (fn, isReal) => function (chunk, ...rest) {
    const frame = isFrame(chunk);
    if (frame && depth === 0) entered++;
    if (frame && isReal) delivered++;
    depth++;
    try {
      return fn.call(this, chunk, ...rest);
    } finally {
      depth--;
    }
  };
  const realCounted = counted(real, true);
  let current = realCounted;
  Object.defineProperty(stdout, 'write', {
    configurable: true,
    get: () => current,
    set: (fn) => { current = fn === realCounted ? realCounted : counted(fn, false); },
  });
  process.on('exit', () => {
    const lost = entered - delivered;
    if (lost > 0) appendFileSync(ledger, JSON.stringify({ file: process.argv[1], lost }) + '\n');
  });
}
