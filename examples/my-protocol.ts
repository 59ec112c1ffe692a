// A protocol of your own: Linux's text_poke_bp with one step changed. The batch writes an INT3 on
// each site's first byte, syncs every CPU, writes the tails, syncs, writes the first bytes and
// syncs (arch/x86/kernel/alternative.c, text_poke_bp_batch). This variant drops the sync after the
// INT3: the patcher serializes itself only, and goes straight on to the tails. Is that safe?
//
//   pvpatch run examples/retarget-slowpath.yaml --protocol-file examples/my-protocol.ts --seeds 20
//
// It is not: a vCPU that has not serialized since the 0xCC went in may fetch the site once the
// tail behind it has changed. A first byte changed to 0xCC is a legal fetch only while the rest of
// the instruction is one the CPU is synchronized with (Intel SDM 8.1.3); here neither the old
// instruction nor the INT3 is, and the machine reports cmc-unsynchronized
// (examples/retarget-slowpath.yaml, seed 3; test/examples/my-protocol.test.ts).
//
// Only a type import: pvpatch hands the API to this function when it loads the file, so the
// module runs against whichever pvpatch loads it (the sources or the bundled CLI).
import type { ProtocolFactory } from '../src/patching/protocol-api.ts';

const protocol: ProtocolFactory = ({ TEXT_POKE_BP_STEPS, TextStep }) => ({
  kind: 'text-poke-bp',
  name: 'text_poke_bp without the sync after the INT3',
  steps: {
    // `sync(batch, after)`: called after each text step that wrote something.
    *sync(batch, after) {
      if (after === TextStep.Int3) {
        batch.stats.syncs++;
        yield* batch.ctx.serialize(); // this CPU only: no IPI, no wait for the others
        return;
      }
      yield* TEXT_POKE_BP_STEPS.sync(batch, after);
    },
  },
});

export default protocol;
