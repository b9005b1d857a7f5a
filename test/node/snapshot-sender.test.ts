// SnapshotSender's shared rate: n sends at once each run at 1/n of the leader's rate, and a
// send speeds up when another ends (asked again before each chunk). The transport here only
// records what each send was given and settles when the test says so.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SnapshotSender } from '../../src/node/snapshot-sender.ts';
import { encodeSnapshotDescriptor } from '../../src/node/snapshot-descriptor.ts';
import type { NodeId, SnapshotMessage } from '../../src/raft/index.ts';
import { SILENT_LOGGER } from '../../src/raft/index.ts';
import { MemorySnapshotStore } from '../../src/snapshot/index.ts';
import type { SnapshotInfo } from '../../src/snapshot/index.ts';
import type { SnapshotSendOptions, Transport } from '../../src/transport/index.ts';
import { VirtualClock } from '../../src/util/index.ts';

const CONF = { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const RATE_BYTES_PER_SECOND = 24 * 1024 * 1024;

interface RecordedSend {
  readonly to: NodeId;
  readonly options: SnapshotSendOptions;
  settle(): void;
}

function recordingTransport(sends: RecordedSend[]): Transport {
  const transport: Partial<Transport> = {
    sendSnapshot: (message, _payload, options = {}) =>
      new Promise<void>((resolve) => {
        sends.push({ to: message.to, options, settle: resolve });
      }),
  };
  return transport as Transport;
}

function messageFor(to: NodeId, info: SnapshotInfo): SnapshotMessage {
  const data = encodeSnapshotDescriptor({ snapshotId: info.id, byteLength: info.byteLength, sha256: info.sha256, membership: { members: [], removed: [], published: [] } });
  return { type: 'snapshot', from: 1, to, term: 2, snapshot: { metadata: { index: info.index, term: 2, confState: CONF }, data } };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  for (let attempt = 0; attempt < 200 && !condition(); attempt += 1) await new Promise((resolve) => setImmediate(resolve));
  assert.ok(condition(), what);
}

const rateOf = (send: RecordedSend | undefined): number => {
  const rate = send?.options.bytesPerSecond;
  assert.ok(typeof rate === 'function', 'the sender passes its rate as a function, asked before each chunk');
  return rate();
};

test("two sends at once share the leader's rate, and the one left runs at all of it", async () => {
  const clock = new VirtualClock();
  const snapshots = new MemorySnapshotStore({ clock });
  const info = await snapshots.create({
    metadata: { index: 10, term: 2, confState: CONF, revision: 10, members: new Uint8Array(0) },
    async *records() {
      yield [{ key: new TextEncoder().encode('k'), value: new Uint8Array(64) }];
    },
  });
  const sends: RecordedSend[] = [];
  const reports: [NodeId, boolean][] = [];
  const sender = new SnapshotSender({
    transport: recordingTransport(sends),
    snapshots,
    logger: SILENT_LOGGER,
    clock,
    sendsMax: 2,
    bytesPerSecond: () => RATE_BYTES_PER_SECOND,
    leaseMs: 60_000,
    report: (peer, ok) => reports.push([peer, ok]),
  });
  const first = sender.sendAndWait(messageFor(2, info));
  await until('the first send reaches the transport', () => sends.length === 1);
  assert.equal(rateOf(sends[0]), RATE_BYTES_PER_SECOND, 'one send alone runs at the whole rate');
  const second = sender.sendAndWait(messageFor(3, info));
  await until('the second send reaches the transport', () => sends.length === 2);
  assert.equal(rateOf(sends[0]), RATE_BYTES_PER_SECOND / 2);
  assert.equal(rateOf(sends[1]), RATE_BYTES_PER_SECOND / 2);
  // A third is over sendsMax: refused at once (Raft asks again later), the rate unchanged.
  assert.equal(await sender.sendAndWait(messageFor(4, info)), false);
  assert.equal(rateOf(sends[1]), RATE_BYTES_PER_SECOND / 2);
  sends[0]?.settle();
  assert.equal(await first, true);
  assert.equal(rateOf(sends[1]), RATE_BYTES_PER_SECOND, 'the send left speeds up');
  sends[1]?.settle();
  assert.equal(await second, true);
  assert.deepEqual(reports, [[4, false], [2, true], [3, true]]);
});
