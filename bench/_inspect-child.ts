/**
 * Child process for bench/inspect.ts: runs `pvpatch inspect ... --json` exactly as a user would
 * and, on exit, reports its peak resident set size on stderr (process.resourceUsage().maxRSS, KiB).
 */
process.on('exit', () => {
  process.stderr.write(`\n${JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS })}\n`);
});
await import('../src/cli/entry.ts');
