// bench/raft-core.ts — throughput of the pure Raft core, with nothing else in the way.
//
//   npm run bench:raft-core [-- --batches 64,256,1024 --runs 5 --entries 1000000]
//
// Three in-process nodes on MemoryLogStorage, driven by a tight synchronous loop: no I/O,
// no timers, no serialization. The leader takes 100-byte proposals through proposeBatch and
// keeps a few batches in flight; every Ready is "persisted" at once, its messages are handed
// straight to the receiver, its committed entries are counted as applied. A run ends when
// the leader has applied `entries` proposals; the figure is committed (leader-applied)
// entries per second. Each batch size runs `runs` times and reports the median, then one
// JSON line per batch size.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Message, NodeId, Ready } from '../src/raft/index.ts';
import { EntryType, MemoryLogStorage, RAFT_CONFIG_DEFAULTS, Raft, decodeConfChange } from '../src/raft/index.ts';
import { SeededRandom } from '../src/util/index.ts';

/** ENTRY_BYTES is the payload size of one proposal. */
const ENTRY_BYTES = 100;
/** NODE_COUNT is the cluster size. */
const NODE_COUNT = 3;
/** BATCHES_IN_FLIGHT_MAX is how many proposed-but-uncommitted batches the leader keeps. */
const BATCHES_IN_FLIGHT_MAX = 4;
/** COMPACT_EVERY_ENTRIES bounds the in-memory log: each node snapshots and compacts this often. */
const COMPACT_EVERY_ENTRIES = 65_536;
/** RUN_SECONDS_MAX bounds one run however slow the core is. */
const RUN_SECONDS_MAX = 30;
/** ELECTION_ROUNDS_MAX bounds the loop that elects the first leader. */
const ELECTION_ROUNDS_MAX = 1_000;

interface BenchNode {
  readonly id: NodeId;
  readonly raft: Raft;
  readonly storage: MemoryLogStorage;
  applied: number;
  lastSnapshot: number;
}

interface RunResult {
  readonly entries: number;
  readonly seconds: number;
  readonly entriesPerSecond: number;
}

function createCluster(seed: number): BenchNode[] {
  const voters = Array.from({ length: NODE_COUNT }, (_, i) => i + 1);
  return voters.map((id) => {
    const storage = new MemoryLogStorage();
    const raft = new Raft({ ...RAFT_CONFIG_DEFAULTS, id, storage, random: new SeededRandom(seed + id), voters });
    return { id, raft, storage, applied: 0, lastSnapshot: 0 };
  });
}

// Handles every pending Ready once; returns the leader's newly applied proposals.
function pump(nodes: readonly BenchNode[], queue: Message[], leaderId: NodeId): number {
  let appliedProposals = 0;
  for (const node of nodes) {
    if (!node.raft.hasReady()) continue;
    const ready: Ready = node.raft.ready();
    if (ready.snapshot !== undefined) node.storage.applySnapshot(ready.snapshot);
    node.storage.append(ready.entries);
    if (ready.hardState !== undefined) node.storage.setHardState(ready.hardState);
    for (const message of ready.messages) queue.push(message);
    for (const message of ready.messagesAfterPersist) queue.push(message);
    for (const entry of ready.committedEntries) {
      // The bootstrap membership arrives as committed ConfChange entries.
      if (entry.type === EntryType.ConfChange) node.raft.applyConfChange(decodeConfChange(entry.data));
      else if (node.id === leaderId && entry.type === EntryType.Normal && entry.data.byteLength > 0) appliedProposals += 1;
      node.applied = entry.index;
    }
    node.raft.advance(ready);
    if (node.applied - node.lastSnapshot >= COMPACT_EVERY_ENTRIES) {
      node.storage.createSnapshot(node.applied, node.raft.status().config, new Uint8Array(0));
      node.storage.compact(node.applied);
      node.lastSnapshot = node.applied;
    }
  }
  return appliedProposals;
}

function deliver(nodes: readonly BenchNode[], queue: Message[]): void {
  // Swap the queue out first: stepping produces messages for the next round.
  const batch = queue.splice(0, queue.length);
  for (const message of batch) (nodes[message.to - 1] as BenchNode).raft.step(message);
}

function electLeader(nodes: readonly BenchNode[], queue: Message[]): NodeId {
  // The core will not campaign before the bootstrap ConfChange entries are applied.
  pump(nodes, queue, 0);
  (nodes[0] as BenchNode).raft.campaign();
  for (let round = 0; round < ELECTION_ROUNDS_MAX; round += 1) {
    pump(nodes, queue, 0);
    deliver(nodes, queue);
    const leader = nodes.find((node) => node.raft.status().role === 'leader');
    if (leader !== undefined && leader.raft.status().commit >= leader.raft.status().lastIndex) return leader.id;
  }
  throw new Error(`no leader after ${ELECTION_ROUNDS_MAX} rounds`);
}

function runOnce(batchSize: number, entriesTarget: number, seed: number): RunResult {
  const nodes = createCluster(seed);
  const queue: Message[] = [];
  const leaderId = electLeader(nodes, queue);
  const leader = (nodes[leaderId - 1] as BenchNode).raft;
  const payloads = Array.from({ length: batchSize }, (_, i) => new Uint8Array(ENTRY_BYTES).fill(i & 0xff));
  let proposed = 0;
  let applied = 0;
  const started = performance.now();
  const deadline = started + RUN_SECONDS_MAX * 1000;
  // Bounded by the target and by the deadline (checked every 256 rounds to keep clock reads cheap).
  for (let round = 0; applied < entriesTarget; round += 1) {
    if (proposed - applied < BATCHES_IN_FLIGHT_MAX * batchSize && proposed < entriesTarget) {
      leader.proposeBatch(payloads);
      proposed += batchSize;
    }
    applied += pump(nodes, queue, leaderId);
    deliver(nodes, queue);
    if ((round & 0xff) === 0 && performance.now() > deadline) throw new Error(`run exceeded ${RUN_SECONDS_MAX} s`);
  }
  const seconds = (performance.now() - started) / 1000;
  return { entries: applied, seconds, entriesPerSecond: applied / seconds };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      batches: { type: 'string', default: '64,256,1024' },
      runs: { type: 'string', default: '5' },
      entries: { type: 'string', default: '1000000' },
    },
    strict: true,
  });
  const batches = values.batches.split(',').map(Number);
  const runs = Number(values.runs);
  const entries = Number(values.entries);
  if (batches.some((b) => !Number.isInteger(b) || b < 1 || b > 65_536) || !Number.isInteger(runs) || runs < 1 || runs > 100) {
    throw new Error('usage: --batches 64,256,1024 (1..65536 each) --runs 5 (1..100) --entries 1000000');
  }
  if (!Number.isInteger(entries) || entries < 1 || entries > 100_000_000) throw new Error('--entries must be in 1..1e8');
  // One untimed run warms up the JIT so the first measured run is not an outlier.
  runOnce(batches[0] as number, Math.min(entries, 50_000), 0);
  const lines: string[] = [];
  console.log(`raft-core: ${NODE_COUNT} nodes, ${ENTRY_BYTES}-byte entries, ${entries} entries a run, ${runs} runs, node ${process.version}`);
  console.log('batch   median entries/s   runs (entries/s)');
  for (const batch of batches) {
    const results: RunResult[] = [];
    for (let run = 0; run < runs; run += 1) results.push(runOnce(batch, entries, run + 1));
    const rates = results.map((r) => Math.round(r.entriesPerSecond));
    const rateMedian = Math.round(median(rates));
    console.log(`${String(batch).padStart(5)}   ${String(rateMedian).padStart(16)}   ${rates.join(' ')}`);
    lines.push(JSON.stringify({
      bench: 'raft-core',
      nodes: NODE_COUNT,
      entryBytes: ENTRY_BYTES,
      batch,
      entriesPerRun: entries,
      committedEntriesPerSecondMedian: rateMedian,
      runs: rates,
    }));
  }
  for (const line of lines) console.log(line);
}

main();
