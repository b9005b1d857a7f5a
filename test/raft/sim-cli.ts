// sim-cli.ts — run the seeded Raft simulator from the command line.
//
//   npm run sim -- --seeds N --from S [--trace] [--keep-going]
//
// Runs seeds S..S+N-1 (default: 100 seeds from 1), stops at the first failure, prints the
// failing seed, the broken invariant, the last trace lines and the command that replays the
// seed exactly, and exits 1. --keep-going runs every seed and tallies the failures by
// invariant (still exiting 1 if any failed). --trace prints every trace line of every run
// as it happens (use it with --seeds 1). A seed alone determines a run: there are no other
// knobs, so a seed that failed in `npm test` fails the same way here.
import { parseArgs } from 'node:util';
import { formatFailure, formatSummary, runSeedRange } from './sim/seed-range.ts';

/** PROGRESS_EVERY_SEEDS is how often a long run reports progress on stderr. */
const PROGRESS_EVERY_SEEDS = 1_000;

const usage = 'usage: npm run sim -- [--seeds N] [--from S] [--trace] [--keep-going]';

function parseCount(text: string, flag: string): number {
  if (!/^\d+$/.test(text)) {
    console.error(`sim: ${flag} must be a non-negative integer, got '${text}'\n${usage}`);
    process.exit(2);
  }
  return Number(text);
}

function main(): void {
  let values: {
    seeds?: string;
    from?: string;
    trace?: boolean;
    'keep-going'?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      options: {
        seeds: { type: 'string' },
        from: { type: 'string' },
        trace: { type: 'boolean' },
        'keep-going': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (error) {
    console.error(`sim: ${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
  if (values.help === true) {
    console.log(usage);
    return;
  }
  const count = parseCount(values.seeds ?? '100', '--seeds');
  const from = parseCount(values.from ?? '1', '--from');
  const stream = values.trace === true ? (line: string): void => void process.stdout.write(`${line}\n`) : undefined;
  let done = 0;
  const summary = runSeedRange({
    from,
    count,
    keepGoing: values['keep-going'] === true,
    ...(stream === undefined ? {} : { stream }),
    onResult: () => {
      done += 1;
      if (done % PROGRESS_EVERY_SEEDS === 0) process.stderr.write(`sim: ${done}/${count} seeds\n`);
    },
  });
  if (summary.failure !== undefined) {
    console.error(formatFailure(summary.failure));
    console.error(formatSummary(summary));
    process.exitCode = 1;
    return;
  }
  console.log(formatSummary(summary));
}

main();
