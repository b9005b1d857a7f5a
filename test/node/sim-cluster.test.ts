// The seeded simulation of real RaftNodes (test/node/sim/cluster-sim.ts) over 500 seeds: each
// must keep every check in its fault phase and converge in its healed phase. A failure names
// the seed and the command that replays it exactly (npm run sim:cluster).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { runClusterSimulation } from './sim/cluster-sim.ts';

/** CLUSTER_SIM_SEEDS is how many seeds npm test runs (the issue asks for at least 500). */
const CLUSTER_SIM_SEEDS = 500;
const CHUNKS = 5;

for (let chunk = 0; chunk < CHUNKS; chunk += 1) {
  const from = 1 + (chunk * CLUSTER_SIM_SEEDS) / CHUNKS;
  const to = from + CLUSTER_SIM_SEEDS / CHUNKS - 1;
  test(`cluster simulation seeds ${from}..${to}`, async () => {
    for (let seed = from; seed <= to; seed += 1) {
      const result = await runClusterSimulation(seed);
      if (!result.ok) {
        assert.fail(`SIMULATION FAILED at seed ${seed}\n${result.failure ?? ''}\n-- last trace lines --\n${result.traceTail.slice(-40).join('\n')}\nreplay: npm run sim:cluster -- --seeds 1 --from ${seed} --trace`);
      }
    }
  });
}
