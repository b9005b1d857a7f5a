// The seeded Raft simulation, part two: seeds 1001..2000 (see simulation.test.ts).
import { defineSeedRangeTests } from './sim/seed-range-tests.ts';

defineSeedRangeTests(1_001, 1_000);
