/**
 * Child process for bench/inspect.ts: runs `pvpatch inspect ... --json` exactly as a user would
 * and, on exit, reports its peak resident set size (process.resourceUsage().maxRSS, KiB) and its
 * CPU time (user + system, µs: on a loaded machine the wall clock mostly measures the others) on stderr.
 */
process.on('exit', () => {
  const u = process.resourceUsage();
  process.stderr.write(`\n${JSON.stringify({ maxRssKiB: u.maxRSS, cpuMicros: u.userCPUTime + u.systemCPUTime })}\n`);
});
await import('../src/cli/entry.ts');
