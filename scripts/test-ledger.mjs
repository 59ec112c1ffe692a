// A node:test reporter (run-tests.mjs adds it beside spec) that writes one JSON object: every
// test the files enqueued and every test that reported a result. A test file runs in a child
// process whose reports reach the runner through its stdout; a report written while something in
// the child had redirected stdout (the in-process CLI, test helper runCli) was lost, and the test
// vanished from the summary while the run still passed. run-tests.mjs compares the two sets.
const key = (d) => `${d.file ?? '?'}:${d.line ?? 0}:${d.column ?? 0}:${d.nesting ?? 0}:${d.name}`;

export default async function* ledger(source) {
  const enqueued = new Set();
  const reported = new Set();
  for await (const { type, data } of source) {
    if (type === 'test:enqueue') enqueued.add(key(data));
    else if (type === 'test:pass' || type === 'test:fail') reported.add(key(data));
  }
  yield JSON.stringify({ enqueued: [...enqueued], reported: [...reported] }) + '\n';
}
