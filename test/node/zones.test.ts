// Zone labels (--zone): a member publishes its zone with its name and client URLs, the member
// table keeps it, snapshots carry it, and what was written before zones existed still reads.
// Also the member's read-only view that Admin.ClusterInfo answers (removed ids, the token).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Packr } from 'msgpackr';
import { RaftNode } from '../../src/node/index.ts';
import { Membership } from '../../src/node/membership.ts';
import { decodeNodeCommand, encodeNodeCommand } from '../../src/node/node-command.ts';
import { decodeMembershipState, encodeMembershipState } from '../../src/node/snapshot-descriptor.ts';
import { toWireClusterInfo } from '../../src/server/index.ts';
import { NODE_COMMAND_FORMAT } from '../../src/storage/index.ts';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { ELECTION_MS, leaderOf, peerUrl, startCluster, track } from './fixture.ts';

const encoder = new TextEncoder();
const raw = (value: unknown): Uint8Array => {
  const json = encoder.encode(JSON.stringify(value));
  return Uint8Array.of(NODE_COMMAND_FORMAT, ...json);
};

describe('the publish command', () => {
  test('carries a zone; without one it is byte for byte the command written before zones existed', () => {
    const withZone = { type: 'publish', memberId: 7, name: 'n1', clientUrls: ['http://n1:2379'], zone: 'eu-west-1a' } as const;
    assert.deepEqual(decodeNodeCommand(encodeNodeCommand(withZone)), withZone);
    const old = { type: 'publish', memberId: 7, name: 'n1', clientUrls: ['http://n1:2379'] } as const;
    assert.deepEqual(encodeNodeCommand(old), raw(old));
    const decoded = decodeNodeCommand(raw(old));
    assert.deepEqual(decoded, old);
    assert.equal('zone' in decoded, false);
  });

  test('an empty zone reads as none; a zone that is not a string is CORRUPTION', () => {
    assert.deepEqual(decodeNodeCommand(raw({ type: 'publish', memberId: 7, name: 'n1', clientUrls: [], zone: '' })), { type: 'publish', memberId: 7, name: 'n1', clientUrls: [] });
    for (const zone of [1, null, ['a'], {}]) {
      assert.throws(() => decodeNodeCommand(raw({ type: 'publish', memberId: 7, name: 'n1', clientUrls: [], zone })), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION), JSON.stringify(zone));
    }
  });
});

describe('the member table', () => {
  const bootstrap = { transition: 'auto' as const, changes: [{ type: 'addVoter' as const, nodeId: 1 }, { type: 'addVoter' as const, nodeId: 2 }] };
  const confState = { voters: [1, 2], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
  const table = (): Membership => {
    const membership = new Membership([
      { id: 1, name: 'n1', peerUrls: ['http://n1:2380'] },
      { id: 2, name: 'n2', peerUrls: ['http://n2:2380'] },
    ]);
    membership.applyConfChange(bootstrap, undefined, confState);
    return membership;
  };

  test('a member has no zone until it publishes one; each publish states it again', () => {
    const membership = table();
    assert.equal(membership.get(1)?.zone, '');
    membership.applyPublish({ type: 'publish', memberId: 1, name: 'n1', clientUrls: ['http://n1:2379'], zone: 'a' });
    assert.equal(membership.get(1)?.zone, 'a');
    membership.applyPublish({ type: 'publish', memberId: 1, name: 'n1', clientUrls: ['http://n1:2379'], zone: 'b' });
    assert.equal(membership.get(1)?.zone, 'b');
    // A publish without a zone (the member restarted without --zone, or an older member) clears it.
    membership.applyPublish({ type: 'publish', memberId: 1, name: 'n1', clientUrls: ['http://n1:2379'] });
    assert.equal(membership.get(1)?.zone, '');
  });

  test('removed ids are listed, newest last', () => {
    const membership = table();
    membership.applyConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: 2 }] }, undefined, { ...confState, voters: [1] });
    assert.deepEqual(membership.removedIds(), [2]);
    assert.equal(membership.get(2), undefined);
  });

  test('a snapshot carries zones as a sixth field of a member, only when it has one; older tables read with no zone', () => {
    const membership = table();
    membership.applyPublish({ type: 'publish', memberId: 1, name: 'n1', clientUrls: ['http://n1:2379'], zone: 'a' });
    const state = membership.exportState();
    const decoded = decodeMembershipState(encodeMembershipState(state));
    assert.deepEqual(decoded.members, state.members);
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const members = ((packr.unpack(encodeMembershipState(state)) as unknown[])[1] as unknown[][])[0] as unknown[][];
    assert.deepEqual(members.map((member) => member.length), [6, 5]);
    // A table as snapshots wrote it before zones existed.
    const old = packr.pack([1, [[[1, 'n1', ['http://n1:2380'], ['http://n1:2379'], false]], [], [1]]]);
    assert.deepEqual(decodeMembershipState(old).members, [{ id: 1, name: 'n1', peerUrls: ['http://n1:2380'], clientUrls: ['http://n1:2379'], isLearner: false, zone: '' }]);
    const bad = packr.pack([1, [[[1, 'n1', [], [], false, 7]], [], []]]);
    assert.throws(() => decodeMembershipState(bad), (error: unknown) => isStrataError(error, ErrorCode.CORRUPTION));
  });
});

describe('members publish their zones', () => {
  test('every member sees each one\'s zone; a learner added later publishes its own; ClusterInfo answers them with the token', async () => {
    const { nodes, options, driver } = await startCluster({ nodeOptions: { zone: 'a' } });
    const leader = leaderOf(nodes);
    const zonesOf = (node: RaftNode): string[] => node.members().map((member) => member.zone);
    await driver.until('every member published zone a', () => nodes.every((node) => zonesOf(node).join() === 'a,a,a'));

    const added = await driver.settle(leader.addMember([peerUrl('n4')], true));
    const cluster = [1, 2, 3, 4].map((index) => ({ name: `n${index}`, peerUrls: [peerUrl(`n${index}`)] }));
    const learner = track(await RaftNode.start({ ...options('n4', 'existing', cluster), zone: 'b' }), driver);
    await driver.until('the learner\'s zone is known everywhere', () => [...nodes, learner].every((node) => node.members().find((member) => member.id === added.member.id)?.zone === 'b'));

    const wire = toWireClusterInfo(learner);
    assert.equal(wire.cluster_token, 'node-test');
    assert.equal(wire.cluster_id, learner.clusterId);
    assert.equal(wire.member_id, learner.memberId);
    assert.equal(wire.leader_id, leader.memberId);
    assert.deepEqual(wire.members.map((member) => [member.zone, member.is_learner]).sort(), [['a', false], ['a', false], ['a', false], ['b', true]]);

    const victim = nodes.find((node) => node !== leader);
    assert.ok(victim !== undefined);
    await driver.settle(leader.removeMember(victim.memberId));
    await driver.settle(victim.whenStopped(), 10 * ELECTION_MS);
    assert.deepEqual(toWireClusterInfo(leader).removed_ids, [victim.memberId]);
  });

  test('a zone that is not 1 to 63 of A-Z a-z 0-9 . _ - is refused at start', async () => {
    const { options } = await startCluster({ size: 1 });
    for (const zone of ['has space', 'x'.repeat(64), 'a/b']) {
      await assert.rejects(RaftNode.start({ ...options('n9', 'existing', []), zone }), (error: unknown) => isStrataError(error, ErrorCode.INVALID_ARGUMENT) && /--zone/.test(error.message), zone);
    }
  });
});
