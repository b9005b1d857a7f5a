// bench:integrity, the Merkle diff: bytes on the wire, round trips and seconds to find 1 and
// 100 differences among `keys` keys, between real `stratakv serve` processes.
//
// Three single-member clusters (each its own token, so three cluster ids: a cluster diff,
// content hashes, each member pins its applied state): A, B1 and B100 get the same `keys`
// keys (12-byte keys user/0000042, `valueBytes` values that depend only on the key's number),
// preloaded side by side through Txns of 128 puts. Then B1 gets one planted difference (a
// value rewritten) and B100 gets 100 (a third deleted: missing; a third added: extra; a third
// rewritten: different; at keys chosen by a seeded random), through ordinary puts and deletes.
// Every round runs diff(A, B1) and diff(A, B100) with the real DiffClient
// (bench/diff/measure.ts), order alternating, each member reached through a local TCP proxy
// that counts every byte of the connections (HTTP/2 framing and headers, connection set-up
// and goodbye included), beside DiffClient's own count of messages (protobuf + gRPC's 5-byte
// headers). Each diff must name exactly the planted keys. The seconds are DiffClient's,
// hello to release, through the proxy (one more local hop per call).
import { measureDiff, type DiffMeasurement } from '../diff/measure.ts';
import { SeededRandom } from '../../src/util/random.ts';
import { deleteKey, preloadTxns, putKey, startSolo, type SoloMember } from './members.ts';

/** DiffSample is one diff's cost. */
export interface DiffSample {
  readonly seconds: number;
  readonly messageBytesSent: number;
  readonly messageBytesReceived: number;
  readonly socketBytesSent: number;
  readonly socketBytesReceived: number;
  readonly calls: number;
  readonly rounds: number;
  readonly found: number;
}

/** DiffFigures: each side's diffs by round, and the preload. */
export interface DiffFigures {
  readonly keys: number;
  readonly valueBytes: number;
  readonly one: DiffSample[];
  readonly hundred: DiffSample[];
  preloadSeconds: number;
  plantedOne: readonly string[];
  plantedHundred: readonly string[];
}

/** DiffOptions: where, the state's size, the rounds, extra serve flags. */
export interface DiffPhaseOptions {
  readonly folder: string;
  readonly keys: number;
  readonly valueBytes: number;
  readonly rounds: number;
  readonly serveFlags: readonly string[];
  readonly log: (line: string) => void;
}

const PUTS_PER_TXN = 128;
const PRELOAD_CONCURRENCY = 8;
const PRELOAD_TIMEOUT_MS = 30 * 60_000;
const SEED = 13;
/** PLANT_DRAWS_MAX bounds the random draws that choose the planted keys (count ≤ 100 ≪ keys). */
const PLANT_DRAWS_MAX = 100_000;

/** diffKeyOf is key number `index` (user/0000042, as bench/diff/measure.ts names them). */
export function diffKeyOf(index: number): Buffer {
  return Buffer.from(`user/${String(index).padStart(7, '0')}`);
}

// diffValueOf fills `scratch` with bytes that depend only on `index` (xorshift32): equal on
// every cluster, not compressible to nothing.
function diffValueOf(index: number, scratch: Buffer): Buffer {
  let state = (index * 2654435761 + 1) >>> 0 || 1;
  for (let offset = 0; offset < scratch.byteLength; offset += 4) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    scratch.writeUInt32LE(state, offset);
  }
  return scratch;
}

/** measureDiffs runs the diff phase (see the file comment); stops its members on every way out. */
export async function measureDiffs(options: DiffPhaseOptions): Promise<DiffFigures> {
  const { folder, keys, rounds, log } = options;
  const members: SoloMember[] = [];
  const figures: DiffFigures = { keys, valueBytes: options.valueBytes, one: [], hundred: [], preloadSeconds: 0, plantedOne: [], plantedHundred: [] };
  try {
    for (const name of ['diff-a', 'diff-b1', 'diff-b100']) members.push(await startSolo(folder, name, `bench-${name}-${process.pid}`, options.serveFlags));
    const [a, b1, b100] = members as [SoloMember, SoloMember, SoloMember];
    const started = performance.now();
    // 4 bytes per xorshift step: the scratch buffer is rounded up, the value cut to size.
    const scratchBytes = Math.ceil(options.valueBytes / 4) * 4;
    await Promise.all(
      members.map((member) => {
        const scratch = Buffer.alloc(scratchBytes);
        return preloadTxns({
          endpoint: member.endpoint,
          keys,
          putsPerTxn: PUTS_PER_TXN,
          concurrency: PRELOAD_CONCURRENCY,
          timeoutMs: PRELOAD_TIMEOUT_MS,
          keyOf: diffKeyOf,
          valueOf: (index) => diffValueOf(index, scratch).subarray(0, options.valueBytes),
          log,
          label: member.name,
        });
      }),
    );
    figures.preloadSeconds = (performance.now() - started) / 1000;
    log(`  preloaded ${keys} keys into each of the 3 clusters side by side in ${figures.preloadSeconds.toFixed(0)} s`);
    figures.plantedOne = await plant(b1.endpoint, keys, 1);
    figures.plantedHundred = await plant(b100.endpoint, keys, 100);
    log(`  planted 1 difference in ${b1.name} and ${figures.plantedHundred.length} in ${b100.name}`);
    const sides = [
      { target: b1, samples: figures.one, planted: figures.plantedOne, label: '1 difference' },
      { target: b100, samples: figures.hundred, planted: figures.plantedHundred, label: '100 differences' },
    ];
    for (let round = 0; round < rounds; round += 1) {
      for (const side of round % 2 === 0 ? sides : [...sides].reverse()) {
        const measured = await measureDiff({ endpoints: [a.grpcTarget], against: [side.target.grpcTarget], countSocketBytes: true });
        checkFound(measured, side.planted, side.label);
        const sample = sampleOf(measured);
        side.samples.push(sample);
        log(
          `  round ${round + 1}/${rounds} ${side.label.padEnd(15)}: ${sample.seconds.toFixed(3)} s, ${sample.calls} calls in ${sample.rounds} rounds, ` +
            `socket ${((sample.socketBytesSent + sample.socketBytesReceived) / 1024).toFixed(1)} KiB (${sample.socketBytesSent} sent, ${sample.socketBytesReceived} received), ` +
            `messages ${((sample.messageBytesSent + sample.messageBytesReceived) / 1024).toFixed(1)} KiB`,
        );
      }
    }
    return figures;
  } finally {
    for (const member of members) await member.stop();
  }
}

// plant makes `count` differences on the member at `endpoint` (see the file comment) and
// answers them as `stratakv diff` names them (`kind key`), sorted.
async function plant(endpoint: string, keys: number, count: number): Promise<string[]> {
  const random = new SeededRandom(SEED + count);
  const chosen = new Set<number>();
  for (let draw = 0; chosen.size < Math.min(count, keys); draw += 1) {
    if (draw >= PLANT_DRAWS_MAX) throw new Error(`plant: ${chosen.size} distinct keys after ${draw} draws`);
    chosen.add(random.intBelow(keys));
  }
  const planted: string[] = [];
  for (const [turn, index] of [...chosen].entries()) {
    const key = diffKeyOf(index);
    // One difference alone is a rewritten value (a replica's decayed key); among many, all three kinds.
    const kind = count === 1 ? 2 : turn % 3;
    if (kind === 0) {
      await deleteKey(endpoint, key);
      planted.push(`missing ${key.toString()}`);
    } else if (kind === 1) {
      await putKey(endpoint, Buffer.from(`${key.toString()}/extra`), Buffer.from('only in B'));
      planted.push(`extra ${key.toString()}/extra`);
    } else {
      await putKey(endpoint, key, Buffer.from(`changed ${index}`));
      planted.push(`different ${key.toString()}`);
    }
  }
  return planted.sort();
}

function checkFound(measured: DiffMeasurement, planted: readonly string[], label: string): void {
  const found = measured.report.differences.map((difference) => `${difference.kind} ${Buffer.from(difference.key).toString()}`).sort();
  if (found.length !== planted.length || found.some((item, index) => item !== planted[index])) {
    throw new Error(`the diff with ${label} found ${found.length} differences (${found.slice(0, 5).join(', ')}…), not the ${planted.length} planted (${planted.slice(0, 5).join(', ')}…)`);
  }
}

function sampleOf(measured: DiffMeasurement): DiffSample {
  return {
    seconds: measured.seconds,
    messageBytesSent: measured.bytesSent,
    messageBytesReceived: measured.bytesReceived,
    socketBytesSent: measured.socketBytesSent ?? Number.NaN,
    socketBytesReceived: measured.socketBytesReceived ?? Number.NaN,
    calls: measured.calls,
    rounds: measured.rounds,
    found: measured.differences,
  };
}
