// A copy from a stratakv source over the wire: two single in-memory members (RaftNodeBackend)
// served by startEtcdServer, a source that takes client writes and a target kept a mirror,
// called with the real MirrorClient, EtcdClient and LogStreamClient. The source's view is
// pinned (DiffPin through MirrorClient.pin) and read page by page with Admin.MirrorScan while a
// client keeps writing: every page is the state at the pin. The target is filled from the
// pages, then replays the source's log after the pin through MirrorWrite's replay, and ends
// with the source's keys, counters, revision and state digest. The index the answers carry
// names the entry that applied each write. Then refusals: a pin that is gone, malformed
// scans and replays (INVALID_ARGUMENT naming the wire field), client writes on the mirror.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { AdminCalls, EtcdClient, LogStreamClient, MirrorClient } from '../../src/client/index.ts';
import type { MirrorScanPage, PinnedMirrorView } from '../../src/client/index.ts';
import { EntryType } from '../../src/raft/index.ts';
import type { KeyValue, MirrorPut } from '../../src/storage/index.ts';
import { decodeKvCommand, digestRootsEqual, encodeKvCommand, encodePackedCommands, isKvCommand } from '../../src/storage/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { strataRefusal } from './refusals.ts';
import { serveMember, type Served } from './served-member.ts';

const b = (text: string): Uint8Array => new Uint8Array(Buffer.from(text));
const text = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? []).toString();
const EVERY = { key: b('\0'), rangeEnd: b('\0') };

let source: Served;
let target: Served;
let mirror: MirrorClient;
let sourceKv: EtcdClient;
let targetKv: EtcdClient;

before(async () => {
  source = await serveMember('source');
  target = await serveMember('target');
  // The target's mirror calls go through the endpoint list; the source's pin calls name their member.
  mirror = new MirrorClient({ endpoints: [target.endpoint], timeoutMs: 5_000 });
  sourceKv = new EtcdClient({ endpoints: [source.endpoint], timeoutMs: 5_000 });
  // A mirror serves linearizable reads only to a caller that says it reads a mirror (as the copier).
  targetKv = new EtcdClient({ endpoints: [target.endpoint], timeoutMs: 5_000, mirrorReader: true });
});

after(async () => {
  mirror.close();
  sourceKv.close();
  targetKv.close();
  for (const served of [source, target]) {
    await served.server.close({ force: true });
    await served.member.stop();
  }
});

const describeKv = (kv: Pick<KeyValue, 'key' | 'value' | 'createRevision' | 'modRevision' | 'version' | 'lease'>): string =>
  `${text(kv.key)}=${text(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}/${kv.lease}`;

async function everything(client: EtcdClient): Promise<{ kvs: string[]; revision: number }> {
  const answer = await client.get(EVERY.key, { rangeEnd: EVERY.rangeEnd });
  return { kvs: answer.kvs.map(describeKv), revision: answer.header.revision };
}

// scanAll reads every key of a pinned view in pages of `limit`, running `between` before each page.
async function scanAll(pin: PinnedMirrorView, limit: number, between: () => Promise<void>): Promise<MirrorScanPage[]> {
  const pages: MirrorScanPage[] = [];
  let from = new Uint8Array(0);
  for (let more = true; more; ) {
    await between();
    const page = await mirror.scan(source.endpoint, { pinId: pin.pinId, key: from, rangeEnd: EVERY.rangeEnd, limit });
    pages.push(page);
    more = page.more;
    const last = page.puts[page.puts.length - 1];
    if (last !== undefined) from = Uint8Array.of(...last.key, 0);
    assert.ok(pages.length < 1_000, 'the scan ends');
  }
  return pages;
}

// kvCommandsOf reads the source's log from `fromIndex` to its commit index: the data of the
// entries that carry KV commands, as a copier replays them.
async function kvCommandsOf(fromIndex: number): Promise<Uint8Array[]> {
  const log = new LogStreamClient({ endpoints: [source.endpoint] });
  const commands: Uint8Array[] = [];
  try {
    for await (const event of log.stream({ fromIndex, toIndex: source.member.node.streamCommittedIndex() })) {
      assert.ok(!event.type.startsWith('snapshot'), 'the log after the pin is not compacted');
      if (event.type !== 'entries') continue;
      for (const entry of event.entries) if (entry.type === EntryType.Normal && entry.data.byteLength > 0 && isKvCommand(entry.data)) commands.push(entry.data);
    }
  } finally {
    log.close();
  }
  return commands;
}

describe('a copy from a stratakv source', () => {
  let pin: PinnedMirrorView;
  let atPin: { kvs: string[]; revision: number };
  let writes = 0;
  // A client of the source that keeps writing: puts, overwrites, deletes and Txns.
  const write = async (): Promise<void> => {
    for (let i = 0; i < 3; i += 1) {
      writes += 1;
      const key = `key-${(writes * 7) % 23}`;
      if (writes % 5 === 0) await sourceKv.delete(b(key));
      else if (writes % 7 === 0) await sourceKv.txn({ type: 'txn', compare: [{ target: 'version', result: 'greater', key: b(key), number: 1 }], success: [{ type: 'put', key: b(key), value: b(`txn-${writes}`) }], failure: [{ type: 'deleteRange', key: b(key) }] });
      else await sourceKv.put(b(key), b(`value-${writes}`));
    }
  };

  test('MirrorScan pages of a pinned view are the state at the pin while a client keeps writing', async () => {
    for (let i = 0; i < 30; i += 1) await write();
    pin = await mirror.pin(source.endpoint);
    // Nothing wrote between the pin and this read.
    atPin = await everything(sourceKv);
    assert.equal(pin.revision, atPin.revision);
    assert.ok(pin.index >= 1);
    const pages = await scanAll(pin, 4, write);
    assert.ok(pages.length > 3, 'several pages');
    for (const page of pages) {
      assert.deepEqual([page.revision, page.index, page.header.memberId, page.header.endpoint], [pin.revision, pin.index, source.member.node.memberId, source.endpoint]);
      assert.ok(page.puts.length <= 4);
    }
    assert.deepEqual(pages.flatMap((page) => page.puts.map(describeKv)), atPin.kvs);
    assert.notDeepEqual((await everything(sourceKv)).kvs, atPin.kvs, 'the source went on meanwhile');
    // One key; the default limit.
    const first = atPin.kvs[0]?.split('=')[0] ?? '';
    const one = await mirror.scan(source.endpoint, { pinId: pin.pinId, key: b(first), rangeEnd: new Uint8Array(0) });
    assert.deepEqual([one.puts.map(describeKv), one.more], [[atPin.kvs[0]], false]);
  });

  test('the target filled from the pages, then replaying the log after the pin, is the source: keys, counters, revision, digest', async () => {
    const begun = await mirror.begin(b('copy:scan'), { requireEmpty: true });
    const pages = await scanAll(pin, 1_000, async () => undefined);
    const puts: MirrorPut[] = pages.flatMap((page) => page.puts);
    const filled = await mirror.apply({ expectState: b('copy:scan'), state: b('copy:replay-0'), revision: pin.revision, puts, deletes: [] });
    assert.deepEqual((await everything(targetKv)).kvs, atPin.kvs);
    assert.ok(filled.index > begun.index, `indexes increase: ${begun.index} then ${filled.index}`);

    for (let i = 0; i < 10; i += 1) await write();
    const commands = await kvCommandsOf(pin.index + 1);
    assert.ok(commands.length >= 30, `the writes after the pin are in the log: ${commands.length}`);
    let state = 'copy:replay-0';
    let lastIndex = filled.index;
    for (let start = 0, chunk = 1; start < commands.length; start += chunk, chunk += 3) {
      const next = `copy:replay-${start + chunk}`;
      const answer = await mirror.replay({ expectState: b(state), state: b(next), commands: commands.slice(start, start + chunk) });
      assert.equal(answer.type, 'mirrorReplay');
      assert.equal(text(answer.state), next);
      assert.ok(answer.index > lastIndex, 'each write answers a later entry');
      lastIndex = answer.index;
      state = next;
    }
    assert.deepEqual(await everything(targetKv), await everything(sourceKv));
    assert.ok(digestRootsEqual(target.member.node.stateDigest().digest, source.member.node.stateDigest().digest), 'equal state digests');

    // The index of the last answer names the entry that applied it, and a read is served at or after it.
    const log = new LogStreamClient({ endpoints: [target.endpoint] });
    try {
      for await (const event of log.stream({ fromIndex: lastIndex, toIndex: lastIndex })) {
        if (event.type !== 'entries') continue;
        const [entry] = event.entries;
        assert.ok(entry !== undefined && isKvCommand(entry.data));
        const request = decodeKvCommand(entry.data).request;
        assert.ok(request.type === 'mirrorReplay' && text(request.state) === state, `entry ${lastIndex} is the last replay`);
      }
    } finally {
      log.close();
    }
    const read = await mirror.read();
    assert.ok(read.index >= lastIndex, `MirrorRead at ${read.index}, after the replay's ${lastIndex}`);
    assert.equal(text(read.state), state);
  });

  test('client writes on the mirror are still refused; reads are served', async () => {
    await assert.rejects(targetKv.put(b('key-1'), b('client')), (error) => isStrataError(error, ErrorCode.MIRROR_READ_ONLY));
    assert.ok((await everything(targetKv)).kvs.length > 0);
  });

  test('a pin that is gone, or never was, is INVALID_ARGUMENT naming pin_id', async () => {
    await mirror.release(source.endpoint, pin.pinId);
    await mirror.release(source.endpoint, pin.pinId);
    for (const pinId of [pin.pinId, 'a999999']) {
      const error = await strataRefusal(mirror.scan(source.endpoint, { pinId, key: EVERY.key, rangeEnd: EVERY.rangeEnd }));
      assert.equal(error.code, ErrorCode.INVALID_ARGUMENT);
      assert.equal(error.details['field'], 'pin_id');
    }
  });
});

describe('malformed calls name the wire field', () => {
  const raw = new AdminCalls(['MirrorWrite', 'MirrorScan']);
  after(() => raw.close());
  const invalidField = async (name: 'MirrorWrite' | 'MirrorScan', request: object): Promise<unknown> => {
    const error = await strataRefusal(raw.call(target.endpoint, name, request, 5_000));
    assert.equal(error.code, ErrorCode.INVALID_ARGUMENT, error.message);
    return error.details['field'];
  };
  const one = encodeKvCommand({ id: 1, request: { type: 'put', key: b('k'), value: b('v') } });

  test('a replay whose commands do not hold command_count, or hold a mirror command or a non-command', async () => {
    const packed = encodePackedCommands([one]);
    const replay = (fields: object): object => ({ replay: { expect_state: b('x'), state: b('y'), ...fields } });
    // A count the bytes cannot hold (a command takes at least one), then one they end inside.
    assert.equal(await invalidField('MirrorWrite', replay({ commands: packed, command_count: packed.byteLength + 1 })), 'replay.command_count');
    assert.equal(await invalidField('MirrorWrite', replay({ commands: packed, command_count: 2 })), 'replay.commands');
    assert.equal(await invalidField('MirrorWrite', replay({ commands: Buffer.concat([packed, Buffer.from([0])]), command_count: 1 })), 'replay.commands');
    assert.equal(await invalidField('MirrorWrite', replay({ commands: packed.subarray(0, packed.byteLength - 1), command_count: 1 })), 'replay.commands');
    assert.equal(await invalidField('MirrorWrite', replay({ commands: Buffer.alloc(10_001), command_count: 10_001 })), 'replay.command_count');
    const begin = encodeKvCommand({ id: 1, request: { type: 'mirrorBegin', state: b('s'), requireEmpty: false } });
    assert.equal(await invalidField('MirrorWrite', replay({ commands: encodePackedCommands([one, begin]), command_count: 2 })), 'replay.commands[1]');
    assert.equal(await invalidField('MirrorWrite', replay({ commands: encodePackedCommands([Uint8Array.of(2, 0)]), command_count: 1 })), 'replay.commands[0]');
    assert.equal(await invalidField('MirrorWrite', replay({ state: Buffer.alloc(8 * 1024 + 1) })), 'replay.state');
  });

  test('a scan with a bad limit, no pin id or a key that is too long', async () => {
    assert.equal(await invalidField('MirrorScan', { pin_id: 'a1', key: b('a'), limit: 10_001 }), 'limit');
    assert.equal(await invalidField('MirrorScan', { key: b('a') }), 'pin_id');
    assert.equal(await invalidField('MirrorScan', { pin_id: 'a1', key: Buffer.alloc(1536 * 1024 + 1) }), 'key');
    assert.equal(await invalidField('MirrorScan', { pin_id: 'a1', timeout_ms: 60_001 }), 'timeout_ms');
  });
});
