// The worker entry tinypool loads (plain JavaScript): register tsx's loader in this thread, as
// bin/pvpatch.js does for the main one, then hand over to the TypeScript worker.
import { register } from 'tsx/esm/api';
register();
const worker = await import('./check-worker.ts');
export default worker.default;
