/** The `pvpatch` process: run the command on this process's arguments and exit with its code. */
import { main } from './main.ts';

// `pvpatch inspect ... | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
process.exitCode = await main(process.argv.slice(2));
