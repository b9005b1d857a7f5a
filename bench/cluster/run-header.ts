// The header of a cluster benchmark's report: how the run was started (the command, the commit
// and whether the tree had uncommitted changes), on what (cores, CPU, memory, the temporary
// folder's free space and file system, kernel, Node) and how busy the machine was before it.
// It is read once, before the benchmark starts any process of its own, so that the busy
// figure is other work; printRunHeader prints it first on the console, runHeaderMarkdown
// repeats it in the run's Markdown.
import { spawnSync } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';

import { REPOSITORY } from './launchers.ts';
import { loadAverage, machineBusyPercent } from './stats.ts';

const GIB = 2 ** 30;
const GIT_TIMEOUT_MS = 10_000;
/** DIRTY_NAMED_MAX bounds how many uncommitted paths the Markdown names. */
const DIRTY_NAMED_MAX = 12;

/** RunHeader is what a benchmark's report says of the run before its figures. */
export interface RunHeader {
  /** bench is the benchmark's name after `bench:` in its npm script ("migrate"). */
  readonly bench: string;
  readonly startedAt: Date;
  /** command runs the benchmark again as it was run: `npm run bench:NAME -- ARGS`. */
  readonly command: string;
  /** commit is HEAD's short hash ("unknown" when git does not answer). */
  readonly commit: string;
  /** dirtyFiles are the lines of `git status --porcelain`, one per uncommitted path. */
  readonly dirtyFiles: readonly string[];
  readonly machine: string;
  /** loadBefore is the load average before the run (loadAverage()). */
  readonly loadBefore: string;
  /** busyBeforePercent is how busy the CPUs were with other work before the run (0..100). */
  readonly busyBeforePercent: number;
}

function git(args: readonly string[]): string {
  const child = spawnSync('git', args, { cwd: REPOSITORY, encoding: 'utf8', timeout: GIT_TIMEOUT_MS });
  return child.status === 0 ? child.stdout.trim() : 'unknown';
}

/**
 * readRunHeader reads the header of the run of `bench:${bench}` now (it takes a second: it
 * samples how busy the CPUs are). Call it before the benchmark starts any process.
 */
export async function readRunHeader(bench: string): Promise<RunHeader> {
  const startedAt = new Date();
  const loadBefore = loadAverage();
  const busyBeforePercent = await machineBusyPercent();
  const commit = git(['rev-parse', '--short', 'HEAD']);
  const dirtyFiles = git(['status', '--porcelain']).split('\n').filter((line) => line.trim() !== '');
  const fsStat = statfsSync(tmpdir());
  const fsType = spawnSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).stdout.trim();
  const machine =
    `${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / GIB).toFixed(0)} GiB RAM, ` +
    `${((fsStat.bavail * fsStat.bsize) / 1e9).toFixed(0)} GB free on ${tmpdir()} (${fsType}), Linux ${release()}, Node ${process.version}`;
  const command = `npm run bench:${bench}${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  return { bench, startedAt, command, commit, dirtyFiles, machine, loadBefore, busyBeforePercent };
}

/** printRunHeader prints the header on the console, with `settings` (the run's sizes and options, one line) under the machine. */
export function printRunHeader(header: RunHeader, settings: string): void {
  console.log(`bench:${header.bench} ${header.startedAt.toISOString()}: ${header.command}`);
  console.log(`  commit ${header.commit}${header.dirtyFiles.length > 0 ? ` (with ${header.dirtyFiles.length} uncommitted change(s))` : ''}; ${header.machine}`);
  console.log(`  ${settings}`);
  console.log(`  load average ${header.loadBefore}, CPUs ${header.busyBeforePercent.toFixed(0)} % busy with other work`);
}

/**
 * runHeaderMarkdown is the header's Markdown list items for the results file: the commit (and
 * the first uncommitted paths), the machine, and the load before the run and now, at its end.
 */
export function runHeaderMarkdown(header: RunHeader): string[] {
  const paths = header.dirtyFiles.map((line) => line.trim().replace(/^\S+\s+/, ''));
  const dirty = paths.length <= DIRTY_NAMED_MAX ? paths.join(', ') : `${paths.slice(0, DIRTY_NAMED_MAX).join(', ')} and ${paths.length - DIRTY_NAMED_MAX} more`;
  return [
    `- **Commit:** \`${header.commit}\`${paths.length > 0 ? `, with uncommitted changes in the tree (${dirty})` : ', clean tree'}`,
    `- **Machine:** ${header.machine}`,
    `- **Load:** load average before ${header.loadBefore}, after ${loadAverage()}; CPUs ${header.busyBeforePercent.toFixed(0)} % busy with other work before the run (shared machine)`,
  ];
}
