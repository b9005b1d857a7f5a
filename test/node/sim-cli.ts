// sim-cli.ts — the seeded simulation of real RaftNodes (test/node/sim/) from the command line.
//
//   npm run sim:cluster -- --seeds N --from S [--trace] [--keep-going]
//
// Runs seeds S..S+N-1 (default: 100 seeds from 1) and stops at the first failure, printing
// the seed, the check that failed, the last trace lines and the command that replays it, and
// exits 1. --keep-going runs every seed and tallies the failures. --trace prints every trace
// line as it happens (use it with --seeds 1). A seed alone determines a run.
import { parseArgs } from 'node:util';
import { runClusterSimulation } from './sim/cluster-sim.ts';

const usage = 'usage: npm run sim:cluster -- [--seeds N] [--from S] [--trace] [--keep-going]';
/** PROGRESS_EVERY_SEEDS is how often a long run reports progress on stderr. */
const PROGRESS_EVERY_SEEDS = 100;

function count(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) {
    console.error(`sim:cluster: ${flag} must be a non-negative integer, got '${text}'\n${usage}`);
    process.exit(2);
  }
  return Number(text);
}

async function main(): Promise<number> {
  let values: { seeds?: string; from?: string; trace?: boolean; 'keep-going'?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: { seeds: { type: 'string' }, from: { type: 'string' }, trace: { type: 'boolean' }, 'keep-going': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (error) {
    console.error(`sim:cluster: ${(error as Error).message}\n${usage}`);
    return 2;
  }
  if (values.help === true) {
    console.log(usage);
    return 0;
  }
  const seeds = count(values.seeds, 100, '--seeds');
  const from = count(values.from, 1, '--from');
  // A rejection nobody handles is a bug (every promise the driver hands out is awaited by
  // someone): name the seed that caused it, so that it can be replayed.
  let currentSeed = from;
  process.on('unhandledRejection', (reason) => {
    console.log(`SIMULATION FAILED at seed ${currentSeed}\nunhandled rejection: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
    console.log(`replay: npm run sim:cluster -- --seeds 1 --from ${currentSeed} --trace`);
    process.exit(1);
  });
  const startedMs = performance.now();
  const failures: { seed: number; failure: string }[] = [];
  let unknownVerdicts = 0;
  let operations = 0;
  let snapshotsSaved = 0;
  let snapshotsInstalled = 0;
  let snapshotsRestoredWhileReceiving = 0;
  for (let seed = from; seed < from + seeds; seed += 1) {
    currentSeed = seed;
    const result = await runClusterSimulation(seed, values.trace === true ? { trace: (line) => void process.stdout.write(`${line}\n`) } : {});
    operations += result.stats.operations;
    snapshotsSaved += result.stats.snapshotsSaved;
    snapshotsInstalled += result.stats.snapshotsInstalled;
    snapshotsRestoredWhileReceiving += result.stats.snapshotsRestoredWhileReceiving;
    if (result.stats.linearizability === 'unknown') unknownVerdicts += 1;
    if (!result.ok) {
      const failure = result.failure ?? 'unknown failure';
      failures.push({ seed, failure });
      console.log(`SIMULATION FAILED at seed ${seed}\n${failure}\n-- last trace lines --\n${result.traceTail.slice(-60).join('\n')}`);
      console.log(`replay: npm run sim:cluster -- --seeds 1 --from ${seed} --trace`);
      if (values['keep-going'] !== true) return 1;
    }
    const done = seed - from + 1;
    if (done % PROGRESS_EVERY_SEEDS === 0) console.error(`sim:cluster: ${done}/${seeds} seeds, ${failures.length} failed`);
  }
  const seconds = (performance.now() - startedMs) / 1000;
  console.log(
    `seeds ${from}..${from + seeds - 1}: ${seeds - failures.length} passed, ${failures.length} failed; ` +
      `${operations} client operations; ${snapshotsSaved} snapshots saved, ${snapshotsInstalled} installed from a leader (${snapshotsRestoredWhileReceiving} restored while received); ${unknownVerdicts} histories too large to decide (unknown); ` +
      `${seconds.toFixed(1)} s, ${(seeds / seconds).toFixed(2)} seeds/s`,
  );
  if (failures.length > 0) console.log(`failed seeds: ${failures.map((entry) => entry.seed).join(' ')}`);
  return failures.length === 0 ? 0 : 1;
}

process.exitCode = await main();
