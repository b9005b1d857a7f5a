// Unit tests of the Raft core's behaviours that the golden scripts do not spell out:
// persistence ordering, flow control, the uncommitted limit, learners, snapshots and
// lease reads. Each cites the rule it checks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, isStrataError } from '../../src/util/errors.ts';
import { SeededRandom } from '../../src/util/random.ts';
import type { Message } from '../../src/raft/index.ts';
import { EntryType, MemoryLogStorage, Raft, RAFT_CONFIG_DEFAULTS } from '../../src/raft/index.ts';
import { Harness, bytes } from './harness.ts';
import type { HarnessNode } from './harness.ts';

function electedCluster(options: ConstructorParameters<typeof Harness>[1] = {}, voters = [1, 2, 3], learners: number[] = []): Harness {
  const cluster = new Harness(voters, options, learners);
  cluster.processReady();
  cluster.node(1).raft.campaign();
  cluster.stabilize();
  assert.equal(cluster.leader(), 1);
  return cluster;
}

function throwsCode(action: () => unknown, code: string): void {
  assert.throws(action, (error: unknown) => isStrataError(error) && error.code === code);
}

describe('persistence ordering (thesis §10.2.1)', () => {
  test('the leader sends appends before its own write is durable, and commits without it when followers are a majority', () => {
    const cluster = electedCluster();
    const leader = cluster.node(1).raft;
    const { index } = leader.propose(bytes('x'));
    const ready = leader.ready();
    assert.deepEqual(ready.entries.map((entry) => entry.index), [index]);
    const appends = ready.messages.filter((message) => message.type === 'append');
    assert.equal(appends.length, 2, 'appends go out in Ready.messages, before persistence');
    assert.equal(ready.messagesAfterPersist.length, 0);
    // Followers persist and acknowledge while the leader's own write is still in flight.
    for (const message of appends) cluster.node(message.to).raft.step(message);
    cluster.processReady();
    const acks = cluster.mailbox.splice(0).filter((message) => message.to === 1);
    for (const message of acks) leader.step(message);
    assert.equal(leader.status().commit, index, 'two followers are a majority of three');
    cluster.persist(1, ready);
    leader.advance(ready);
  });

  test('the leader counts itself only after advance() says its entries are persisted', () => {
    const cluster = electedCluster();
    cluster.isolate(3);
    const leader = cluster.node(1).raft;
    const { index } = leader.propose(bytes('y'));
    const ready = leader.ready();
    for (const message of ready.messages) if (message.to === 2) cluster.node(2).raft.step(message);
    cluster.processReady();
    for (const message of cluster.mailbox.splice(0)) if (message.to === 1) leader.step(message);
    assert.equal(leader.status().commit, index - 1, 'one follower and an unpersisted leader are not a quorum');
    cluster.persist(1, ready);
    leader.advance(ready);
    assert.equal(leader.status().commit, index, 'after advance the leader counts itself');
  });

  test('vote requests leave at once; votes cast and acknowledgements wait for persistence', () => {
    const cluster = new Harness([1, 2, 3]);
    cluster.processReady();
    cluster.node(1).raft.campaign();
    const candidateReady = cluster.node(1).raft.ready();
    assert.ok(candidateReady.hardState !== undefined && candidateReady.hardState.vote === 1);
    assert.ok(candidateReady.mustSync);
    assert.equal(candidateReady.messages.filter((message) => message.type === 'vote').length, 2, 'vote requests go out while the self-vote is persisted');
    assert.equal(candidateReady.messagesAfterPersist.length, 0);
    const request = candidateReady.messages[0] as Message;
    // A granted vote arriving before the candidate's own vote is durable does not make it leader.
    const early = cluster.node(request.to).raft;
    early.step(request);
    const earlyReady = early.ready();
    const grant = earlyReady.messagesAfterPersist.find((message) => message.type === 'voteResponse');
    assert.ok(grant !== undefined);
    cluster.persist(request.to, earlyReady);
    early.advance(earlyReady);
    cluster.node(1).raft.step(grant);
    assert.equal(cluster.node(1).raft.status().role, 'candidate', 'a self-vote that is not persisted does not count');
    cluster.persist(1, candidateReady);
    cluster.node(1).raft.advance(candidateReady);
    assert.equal(cluster.node(1).raft.status().role, 'leader', 'once persisted, the self-vote and the grant are a quorum');
  });

  test('takeMessages hands out only what may leave before persistence, once', () => {
    const cluster = new Harness([1, 2, 3]);
    cluster.processReady();
    const candidate = cluster.node(1).raft;
    candidate.campaign();
    const early = candidate.takeMessages();
    assert.deepEqual(early.map((message) => message.type).sort(), ['vote', 'vote']);
    assert.deepEqual(candidate.takeMessages(), [], 'taken messages are not handed out again');
    const ready = candidate.ready();
    assert.equal(ready.messages.length, 0, 'the Ready no longer carries the taken vote requests');
    assert.ok(ready.hardState?.vote === 1 && ready.mustSync, 'the campaign is still persisted through the Ready');
    // A voter's answer promises a durable vote: takeMessages leaves it for messagesAfterPersist.
    const request = early[0] as Message;
    const voter = cluster.node(request.to).raft;
    voter.step(request);
    assert.deepEqual(voter.takeMessages(), []);
    assert.deepEqual(voter.ready().messagesAfterPersist.map((message) => message.type), ['voteResponse']);
  });

  test('a voter answers only after its vote is persisted', () => {
    const cluster = new Harness([1, 2, 3]);
    cluster.processReady();
    cluster.node(1).raft.campaign();
    const candidateReady = cluster.node(1).raft.ready();
    cluster.persist(1, candidateReady);
    cluster.node(1).raft.advance(candidateReady);
    const request = candidateReady.messages.find((message) => message.type === 'vote') as Message;
    const voter = cluster.node(request.to).raft;
    voter.step(request);
    const voterReady = voter.ready();
    assert.equal(voterReady.hardState?.vote, 1);
    assert.deepEqual(voterReady.messages, []);
    assert.deepEqual(voterReady.messagesAfterPersist.map((message) => message.type), ['voteResponse']);
    cluster.persist(request.to, voterReady);
    voter.advance(voterReady);
  });

  test('ready() may not be called twice without advance()', () => {
    const cluster = electedCluster();
    const leader = cluster.node(1).raft;
    leader.propose(bytes('z'));
    leader.ready();
    assert.equal(leader.hasReady(), false);
    assert.throws(() => leader.ready());
  });
});

describe('flow control and batching', () => {
  test('a follower in replicate state gets at most maxInflightMessages appends until it acknowledges', () => {
    const cluster = electedCluster({ maxInflightMessages: 3 });
    const leader = cluster.node(1).raft;
    for (let i = 0; i < 10; i += 1) leader.propose(bytes(`p${i}`));
    const ready = leader.ready();
    const toTwo = ready.messages.filter((message) => message.type === 'append' && message.to === 2);
    assert.equal(toTwo.length, 3);
    cluster.mailbox.push(...ready.messages);
    cluster.persist(1, ready);
    leader.advance(ready);
    cluster.stabilize();
    assert.equal(cluster.appliedData(2).length, 10, 'acknowledgements free the window and the rest follows');
  });

  test('in-flight bytes bound the window too', () => {
    const cluster = electedCluster({ maxInflightBytes: 250 });
    const leader = cluster.node(1).raft;
    for (let i = 0; i < 10; i += 1) leader.propose(new Uint8Array(100));
    const ready = leader.ready();
    const toTwo = ready.messages.filter((message) => message.type === 'append' && message.to === 2);
    assert.equal(toTwo.length, 3, 'the window closes once 250 bytes are in flight (100 + 100 + 100)');
    cluster.mailbox.push(...ready.messages);
    cluster.persist(1, ready);
    leader.advance(ready);
    cluster.stabilize();
    assert.equal(cluster.node(2).applied.filter((entry) => entry.data.byteLength === 100).length, 10);
  });

  test('an append message carries at most maxEntriesBytesPerMessage of entries, but at least one', () => {
    const cluster = electedCluster({ maxEntriesBytesPerMessage: 300 });
    cluster.isolate(2);
    const leader = cluster.node(1).raft;
    for (let i = 0; i < 6; i += 1) leader.propose(new Uint8Array(100));
    leader.propose(new Uint8Array(1000));
    cluster.stabilize();
    cluster.heal();
    cluster.tick(1, 1);
    const delivered = cluster.stabilize();
    const catchUp = delivered.filter((message) => message.type === 'append' && message.to === 2 && message.entries.length > 0);
    assert.ok(catchUp.length >= 3, `catch-up is split into several messages, got ${catchUp.length}`);
    for (const message of catchUp) {
      if (message.type !== 'append') continue;
      const size = message.entries.reduce((sum, entry) => sum + entry.data.byteLength + 16, 0);
      assert.ok(message.entries.length === 1 || size <= 300, `message of ${size} bytes`);
    }
    assert.equal(cluster.node(2).raft.status().commit, cluster.node(1).raft.status().commit);
  });

  test('proposeBatch appends many entries under one call and one append per follower', () => {
    const cluster = electedCluster();
    const leader = cluster.node(1).raft;
    const result = leader.proposeBatch([bytes('a'), bytes('b'), bytes('c')]);
    assert.equal(result.lastIndex - result.firstIndex, 2);
    const ready = leader.ready();
    assert.equal(ready.messages.filter((message) => message.type === 'append' && message.to === 2).length, 1);
    cluster.mailbox.push(...ready.messages);
    cluster.persist(1, ready);
    leader.advance(ready);
    cluster.stabilize();
    assert.deepEqual(cluster.appliedData(3), ['a', 'b', 'c']);
  });

  test('the uncommitted-bytes limit refuses proposals with PROPOSAL_DROPPED instead of growing', () => {
    const cluster = electedCluster({ maxUncommittedBytes: 1000 });
    cluster.isolate(2);
    cluster.isolate(3);
    const leader = cluster.node(1).raft;
    leader.propose(new Uint8Array(600));
    throwsCode(() => leader.propose(new Uint8Array(600)), ErrorCode.PROPOSAL_DROPPED);
    leader.propose(new Uint8Array(300));
    cluster.heal();
    cluster.tick(1);
    cluster.stabilize();
    leader.propose(new Uint8Array(600));
  });
});

describe('roles and membership', () => {
  test('followers refuse proposals with NOT_LEADER naming the leader', () => {
    const cluster = electedCluster();
    assert.throws(
      () => cluster.node(2).raft.propose(bytes('no')),
      (error: unknown) => isStrataError(error, ErrorCode.NOT_LEADER) && error.details['leaderId'] === 1,
    );
  });

  test('learners are replicated to but never campaign and are never counted (thesis §4.2.1)', () => {
    const cluster = electedCluster({}, [1, 2, 3], [4]);
    const learner = cluster.node(4).raft;
    learner.campaign();
    cluster.tick(4, 100);
    assert.equal(learner.status().role, 'follower');
    cluster.isolate(2);
    cluster.isolate(3);
    const { index } = cluster.node(1).raft.propose(bytes('l'));
    cluster.stabilize();
    assert.equal(cluster.node(4).raft.logTermAt(index), cluster.node(1).raft.status().term, 'the learner has the entry');
    assert.ok(cluster.node(1).raft.status().commit < index, 'leader + learner are not a quorum');
  });

  test('a second configuration change while one is pending is refused with CONF_CHANGE_PENDING (thesis §4.1), one the driver retries by code', () => {
    const cluster = electedCluster();
    cluster.node(1).raft.proposeConfChange({ transition: 'auto', changes: [{ type: 'addLearner', nodeId: 4 }] });
    throwsCode(() => cluster.node(1).raft.proposeConfChange({ transition: 'auto', changes: [{ type: 'addLearner', nodeId: 5 }] }), ErrorCode.CONF_CHANGE_PENDING);
    cluster.stabilize();
    cluster.node(1).raft.proposeConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: 4 }] });
  });

  test('a removed leader hands leadership to a remaining voter once its removal is applied (thesis §4.2.2)', () => {
    const cluster = electedCluster();
    cluster.node(1).raft.proposeConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: 1 }] });
    cluster.stabilize();
    assert.equal(cluster.node(1).raft.status().role, 'follower');
    assert.deepEqual(cluster.node(2).raft.status().config.voters, [2, 3]);
    const leader = cluster.leader();
    assert.ok(leader === 2 || leader === 3, `a remaining voter leads, got ${leader}`);
    cluster.node(leader).raft.propose(bytes('after removal'));
    cluster.stabilize();
    assert.deepEqual(cluster.appliedData(leader === 2 ? 3 : 2), ['after removal']);
  });

  test('a removed leader hands over only once every remaining voter durably knows the removal is committed', () => {
    const cluster = electedCluster();
    const removal = cluster.node(1).raft.proposeConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: 1 }] });
    cluster.processReady();
    cluster.deliver();
    cluster.processReady();
    cluster.deliver();
    // The removal is committed and applied on 1, but 2 and 3 are cut off before they learn it.
    cluster.isolate(1);
    cluster.stabilize();
    assert.deepEqual(cluster.node(1).raft.status().config.voters, [2, 3]);
    assert.deepEqual(cluster.node(2).raft.status().config.voters, [1, 2, 3], '2 does not know the removal is committed');
    // 1 keeps leading, takes no proposals and serves no reads, and does not give up: were
    // it to stop, 2 and 3 could not elect without it.
    assert.equal(cluster.node(1).raft.status().role, 'leader');
    throwsCode(() => cluster.node(1).raft.propose(bytes('x')), ErrorCode.NOT_LEADER);
    throwsCode(() => cluster.node(1).raft.readIndex(bytes('r')), ErrorCode.NOT_LEADER);
    cluster.tick(1, 30);
    cluster.stabilize();
    assert.equal(cluster.node(1).raft.status().role, 'leader');
    cluster.heal();
    cluster.tick(1, 1);
    cluster.stabilize();
    assert.equal(cluster.node(1).raft.status().role, 'follower');
    for (const id of [2, 3]) {
      assert.ok(cluster.node(id).storage.initialState().hardState.commit >= removal.index, `node ${id} persisted the removal's commit`);
    }
    const leader = cluster.leader();
    assert.ok(leader === 2 || leader === 3, `a remaining voter leads, got ${leader}`);
    assert.deepEqual(cluster.node(2).raft.status().config.voters, [2, 3]);
    assert.deepEqual(cluster.node(3).raft.status().config.voters, [2, 3]);
  });

  test('a removed leader that one remaining voter never answers hands over to the quorum that did, after a bounded wait', () => {
    // 5 voters; 1 removes itself. Voter 5 hears nothing from 1 (as a member that stopped
    // listening to a removed peer), while 2, 3 and 4 follow 1 and so refuse to elect: waiting
    // for 5 forever would leave the cluster leaderless.
    const cluster = electedCluster({}, [1, 2, 3, 4, 5]);
    cluster.node(1).raft.proposeConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: 1 }] });
    cluster.processReady();
    cluster.deliver();
    cluster.processReady();
    cluster.deliver();
    cluster.isolate(5);
    cluster.stabilize();
    assert.deepEqual(cluster.node(1).raft.status().config.voters, [2, 3, 4, 5]);
    cluster.tick(1, RAFT_CONFIG_DEFAULTS.electionTicks);
    cluster.stabilize();
    assert.equal(cluster.node(1).raft.status().role, 'leader', 'within the bound it waits for every voter');
    for (let tick = 0; tick < 4 * RAFT_CONFIG_DEFAULTS.electionTicks && cluster.node(1).raft.status().role === 'leader'; tick += 1) {
      cluster.tick(1, 1);
      cluster.stabilize();
    }
    assert.equal(cluster.node(1).raft.status().role, 'follower');
    const leader = cluster.leader();
    assert.ok(leader !== undefined && [2, 3, 4].includes(leader), `an acknowledging voter leads, got ${leader}`);
    cluster.heal();
    cluster.node(leader).raft.propose(bytes('after hand-over'));
    // 5 missed appends while cut off: the leader's heartbeats bring it back to replicating.
    for (let tick = 0; tick < 4 * RAFT_CONFIG_DEFAULTS.electionTicks && cluster.appliedData(5).length === 0; tick += 1) {
      cluster.tick(leader, 1);
      cluster.stabilize();
    }
    assert.deepEqual(cluster.appliedData(5).slice(-1), ['after hand-over']);
    assert.deepEqual(cluster.node(5).raft.status().config.voters, [2, 3, 4, 5]);
  });
});

// Leader 1 commits `proposals` entries while 3 is cut off, snapshots and compacts its log
// past them, then the network heals: 3 can only catch up from the snapshot.
function followerBehindSnapshot(proposals: number): { cluster: Harness; leaderNode: HarnessNode; applied: number } {
  const cluster = electedCluster();
  cluster.isolate(3);
  const leaderNode = cluster.node(1);
  for (let i = 0; i < proposals; i += 1) leaderNode.raft.propose(bytes(`s${i}`));
  cluster.stabilize();
  const applied = leaderNode.raft.status().applied;
  leaderNode.storage.createSnapshot(applied, leaderNode.raft.status().config, bytes('state'));
  leaderNode.storage.compact(applied);
  cluster.heal();
  return { cluster, leaderNode, applied };
}

describe('snapshots', () => {
  test('a follower whose next entries are compacted gets the snapshot and rebuilds its log and configuration', () => {
    const { cluster, leaderNode, applied } = followerBehindSnapshot(5);
    cluster.tick(1);
    const delivered = cluster.stabilize();
    assert.ok(delivered.some((message) => message.type === 'snapshot' && message.to === 3));
    const follower = cluster.node(3);
    assert.equal(follower.storage.snapshot().metadata.index, applied);
    assert.deepEqual(follower.raft.status().config.voters, [1, 2, 3]);
    assert.equal(leaderNode.raft.status().progress.get(3)?.state, 'replicate');
    leaderNode.raft.propose(bytes('after'));
    cluster.stabilize();
    assert.equal(follower.raft.status().commit, leaderNode.raft.status().commit);
  });

  test('a failed snapshot report sends the follower back to probing and a new snapshot follows', () => {
    const { cluster, leaderNode, applied } = followerBehindSnapshot(1);
    cluster.tick(1);
    let snapshotMessage: Message | undefined;
    for (let round = 0; round < 10 && snapshotMessage === undefined; round += 1) {
      cluster.processReady();
      snapshotMessage = cluster.mailbox.find((message) => message.type === 'snapshot');
      if (snapshotMessage === undefined) cluster.deliver();
    }
    assert.ok(snapshotMessage !== undefined, 'the leader sends a snapshot');
    cluster.mailbox = cluster.mailbox.filter((message) => message !== snapshotMessage);
    assert.equal(leaderNode.raft.status().progress.get(3)?.state, 'snapshot');
    leaderNode.raft.reportSnapshot(3, false);
    assert.equal(leaderNode.raft.status().progress.get(3)?.state, 'probe');
    cluster.tick(1);
    cluster.stabilize();
    assert.equal(cluster.node(3).storage.snapshot().metadata.index, applied);
  });
});

describe('reads', () => {
  test('lease-based reads answer at once on a leader with check-quorum', () => {
    const cluster = electedCluster({ checkQuorum: true, readOnlyOption: 'leaseBased' });
    const leader = cluster.node(1);
    leader.raft.readIndex(bytes('lease'));
    cluster.processReady();
    assert.deepEqual(leader.readStates.map((state) => state.index), [leader.raft.status().commit]);
    assert.equal(cluster.mailbox.filter((message) => message.type === 'heartbeat').length, 0, 'no heartbeat round');
  });

  test('lease-based reads without check-quorum are refused at configuration time', () => {
    throwsCode(
      () =>
        new Raft({
          ...RAFT_CONFIG_DEFAULTS,
          checkQuorum: false,
          readOnlyOption: 'leaseBased',
          id: 1,
          storage: new MemoryLogStorage(),
          random: new SeededRandom(1),
        }),
      ErrorCode.INVALID_ARGUMENT,
    );
  });

  test('a new leader that is the only voter still waits for an entry of its term before serving reads (thesis §6.4)', () => {
    // The previous leader, in a larger configuration, may have committed entries this node
    // has not heard were committed; its own no-op settles the commit index first.
    const cluster = new Harness([1]);
    cluster.processReady();
    const node = cluster.node(1);
    node.raft.campaign();
    const campaignReady = node.raft.ready();
    cluster.persist(1, campaignReady);
    node.raft.advance(campaignReady);
    assert.equal(node.raft.status().role, 'leader');
    node.raft.readIndex(bytes('early'));
    const ready = node.raft.ready();
    assert.deepEqual(ready.readStates, [], 'no read before the no-op of this term commits');
    cluster.persist(1, ready);
    node.raft.advance(ready);
    cluster.processReady();
    const { commit, lastIndex } = node.raft.status();
    assert.equal(commit, lastIndex);
    assert.deepEqual(node.readStates.map((state) => state.index), [commit]);
  });

  test('readIndex on a node that knows no leader fails with NOT_LEADER', () => {
    const cluster = new Harness([1, 2, 3]);
    throwsCode(() => cluster.node(2).raft.readIndex(bytes('r')), ErrorCode.NOT_LEADER);
  });
});

describe('elections', () => {
  test('the only voter does not lead until its new term and vote are persisted (§5.2, Figure 2)', () => {
    // Otherwise it could lead, crash before the term reaches the disk, restart in the old
    // term and lead the same term again with a different log.
    const cluster = new Harness([1], {}, [2]);
    cluster.processReady();
    const node = cluster.node(1);
    node.raft.campaign();
    assert.equal(node.raft.status().role, 'candidate');
    const ready = node.raft.ready();
    assert.deepEqual(ready.hardState, { term: 2, vote: 1, commit: 2 });
    assert.equal(ready.messages.length, 0, 'nothing goes to the learner before the term is durable');
    cluster.restart(1); // crash: the Ready was never persisted
    assert.equal(cluster.node(1).raft.status().term, 1);
    cluster.processReady(); // re-apply the committed configuration entries
    cluster.node(1).raft.campaign();
    cluster.processReady();
    assert.equal(cluster.node(1).raft.status().role, 'leader');
    assert.equal(cluster.node(1).raft.status().term, 2, 'term 2 is led once, by this incarnation');
  });
});

describe('commit learned from a vote refusal', () => {
  test('a candidate that still counts a removed node learns the removal committed from its refusal', () => {
    // 2 leads {1,2}, removes itself (committed with 1's ack, but 1 never hears the commit),
    // appends one more entry only locally, applies its removal, then restarts: it can no
    // longer campaign, and its longer log makes it refuse 1. Its refusal carries its
    // commit point, which 1's log matches, so 1 commits the removal and leads alone.
    const cluster = new Harness([1, 2]);
    cluster.processReady();
    cluster.node(2).raft.campaign();
    cluster.stabilize();
    assert.equal(cluster.leader(), 2);
    const leader = cluster.node(2).raft;
    const removal = leader.proposeConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: 2 }] });
    cluster.processReady();
    cluster.deliver(); // the append reaches 1
    cluster.processReady();
    cluster.deliver((message) => message.to === 2); // 1's ack reaches 2: the removal commits
    leader.propose(bytes('only on 2'));
    cluster.isolate(2);
    cluster.stabilize(); // 2 applies its removal; nothing reaches 1 any more
    assert.deepEqual(cluster.node(2).raft.status().config.voters, [1]);
    assert.ok(cluster.node(1).raft.status().commit < removal.index);
    cluster.restart(2);
    cluster.heal();
    cluster.processReady();
    cluster.node(1).raft.campaign();
    cluster.stabilize();
    assert.ok(cluster.node(1).raft.status().commit >= removal.index, '1 learned the commit from the refusal');
    assert.deepEqual(cluster.node(1).raft.status().config.voters, [1]);
    cluster.node(1).raft.campaign();
    cluster.stabilize();
    assert.equal(cluster.leader(), 1);
  });
});

describe('restart', () => {
  test('a restarted node recovers term, vote, log and configuration from storage', () => {
    const cluster = electedCluster();
    cluster.node(1).raft.propose(bytes('kept'));
    cluster.stabilize();
    const before = cluster.node(2).raft.status();
    cluster.restart(2);
    cluster.processReady();
    const after = cluster.node(2).raft.status();
    assert.equal(after.term, before.term);
    assert.equal(after.vote, before.vote);
    assert.equal(after.lastIndex, before.lastIndex);
    assert.deepEqual(after.config.voters, [1, 2, 3]);
    assert.ok(cluster.node(2).applied.some((entry) => entry.type === EntryType.Normal && new TextDecoder().decode(entry.data) === 'kept'));
  });
});
