// The seeded Raft simulation, part one: seeds 1..1000 (3- and 5-node clusters, drawn per
// seed). A failure prints its seed and `npm run sim -- --seeds 1 --from <seed> --trace`.
// Part two (simulation-seeds-1001.test.ts) runs the next thousand in a second file so the
// test runner can spread them over two cores.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { runSimulation } from './sim/cluster-simulation.ts';
import { defineSeedRangeTests } from './sim/seed-range-tests.ts';

test('a seed replays exactly: two runs of one seed produce the same trace', () => {
  const traceHash = (seed: number): string => {
    const hash = createHash('sha256');
    const result = runSimulation(seed, (line) => hash.update(line).update('\n'));
    return `${hash.digest('hex')} ${JSON.stringify(result.stats)}`;
  };
  for (const seed of [7, 8]) assert.equal(traceHash(seed), traceHash(seed), `seed ${seed} is not deterministic`);
});

defineSeedRangeTests(1, 1_000);
