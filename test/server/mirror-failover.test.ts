// A client given the endpoints of two clusters, one of them a read-only mirror: the mirror
// refuses linearizable reads and writes (MIRROR_READ_ONLY, as etcd's learners refuse reads),
// serves serializable reads and the copier's own reads (mirrorReader); with failOverOnMirror
// an EtcdClient passes over the refusals to the cluster that takes writes, and waits out a
// moment in which both refuse (a switch's pause) until its deadline.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { EtcdClient, MirrorClient } from '../../src/client/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { strataRefusal } from './refusals.ts';
import { serveMember, type Served } from './served-member.ts';

const STATE = new Uint8Array(Buffer.from('a mirror state'));

let mirrored: Served;
let primary: Served;

async function begin(served: Served): Promise<void> {
  const client = new MirrorClient({ endpoints: [served.endpoint], timeoutMs: 5_000 });
  try {
    await client.begin(STATE, { requireEmpty: false });
  } finally {
    client.close();
  }
}

async function end(served: Served): Promise<void> {
  const client = new MirrorClient({ endpoints: [served.endpoint], timeoutMs: 5_000 });
  try {
    await client.end(STATE);
  } finally {
    client.close();
  }
}

before(async () => {
  mirrored = await serveMember('mirrored');
  primary = await serveMember('primary');
  await begin(mirrored);
});

after(async () => {
  for (const served of [mirrored, primary]) {
    await served.server.close({ force: true });
    await served.member.stop();
  }
});

test('a mirror refuses linearizable reads, read-only Txns and writes; serves serializable reads and mirrorReader reads', async () => {
  const plain = new EtcdClient({ endpoints: [mirrored.endpoint], timeoutMs: 2_000 });
  const reader = new EtcdClient({ endpoints: [mirrored.endpoint], timeoutMs: 2_000, mirrorReader: true });
  try {
    const read = await strataRefusal(plain.get('k'));
    assert.equal(read.code, ErrorCode.MIRROR_READ_ONLY);
    assert.match(read.message, /linearizable reads go to the source cluster/);
    const txn = await strataRefusal(plain.txn({ type: 'txn', compare: [], success: [{ type: 'range', key: new Uint8Array(Buffer.from('k')) }], failure: [] }));
    assert.equal(txn.code, ErrorCode.MIRROR_READ_ONLY);
    assert.equal((await strataRefusal(plain.put('k', 'v'))).code, ErrorCode.MIRROR_READ_ONLY);
    assert.equal((await plain.get('k', { serializable: true })).kvs.length, 0);
    assert.equal((await reader.get('k')).kvs.length, 0, 'the copier reads its mirror linearizably');
    assert.equal((await reader.txn({ type: 'txn', compare: [], success: [{ type: 'range', key: new Uint8Array(Buffer.from('k')) }], failure: [] })).succeeded, true);
  } finally {
    plain.close();
    reader.close();
  }
});

test('without failOverOnMirror a refusal is the answer; with it, reads and writes go to the cluster that takes them', async () => {
  const strict = new EtcdClient({ endpoints: [mirrored.endpoint, primary.endpoint], timeoutMs: 2_000 });
  const following = new EtcdClient({ endpoints: [mirrored.endpoint, primary.endpoint], timeoutMs: 5_000, failOverOnMirror: true });
  try {
    assert.equal((await strataRefusal(strict.put('k', 'v'))).code, ErrorCode.MIRROR_READ_ONLY);
    const put = await following.put('k', 'written');
    assert.equal(put.header.memberId, BigInt(primary.member.node.memberId), 'the primary took it');
    const read = await following.get('k');
    assert.equal(Buffer.from(read.kvs[0]?.value ?? []).toString(), 'written');
  } finally {
    strict.close();
    following.close();
  }
});

test('while both clusters refuse (a switch), a following call waits until one takes it, within its deadline', async () => {
  await begin(primary);
  const following = new EtcdClient({ endpoints: [mirrored.endpoint, primary.endpoint], timeoutMs: 8_000, failOverOnMirror: true });
  try {
    const started = performance.now();
    const put = following.put('during', 'the pause');
    // The pause: both refuse for 600 ms (each refusal is one attempt; they do not use up the attempts).
    setTimeout(() => void end(mirrored), 600);
    const answer = await put;
    assert.equal(answer.header.memberId, BigInt(mirrored.member.node.memberId), 'the cluster that became writable took it');
    assert.ok(performance.now() - started >= 500, 'it waited for the pause');
    // Both refusing past the deadline: TIMEOUT (the last refusal as its cause).
    await begin(mirrored);
    const short = new EtcdClient({ endpoints: [mirrored.endpoint, primary.endpoint], timeoutMs: 700, failOverOnMirror: true });
    try {
      const refused = await strataRefusal(short.put('k', 'v'));
      assert.ok(isStrataError(refused, ErrorCode.TIMEOUT) || isStrataError(refused, ErrorCode.MIRROR_READ_ONLY), `${refused.code}: ${refused.message}`);
    } finally {
      short.close();
    }
  } finally {
    following.close();
    await end(primary);
  }
});
