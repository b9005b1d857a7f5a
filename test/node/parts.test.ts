// The driver's parts on their own, on a VirtualClock: each settles what it holds exactly once
// (by result, deadline, signal or failAll), keeps its bounds, and never makes the Ready loop
// spin. Integration through RaftNode is in raft-node.test.ts and the seeded simulation.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { decodeMemberOperation, encodeMemberOperation } from '../../src/node/membership-changes.ts';
import { Membership } from '../../src/node/membership.ts';
import { ProposalTracker, PROPOSALS_HELD_MAX } from '../../src/node/proposal-tracker.ts';
import { ReadIndexTracker } from '../../src/node/read-index.ts';
import { ErrorCode, isStrataError, StrataError, VirtualClock } from '../../src/util/index.ts';

function outcome(promise: Promise<unknown>): { value: string | undefined } {
  const box: { value: string | undefined } = { value: undefined };
  promise.then(
    () => (box.value = 'ok'),
    (error: unknown) => (box.value = isStrataError(error) ? error.code : String(error)),
  );
  return box;
}

async function turn(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
}

describe('ProposalTracker', () => {
  test('a proposal moves taken → queued → taken → in flight and is settled once, by the entry applied at its index and term', async () => {
    const tracker = new ProposalTracker(new VirtualClock());
    const { proposal, outcome: answer } = tracker.create(new Uint8Array([1]), {}, 0);
    const seen = outcome(answer);
    tracker.queue(proposal);
    assert.equal(proposal.state, 'queued');
    const [taken] = tracker.takeQueued();
    assert.equal(taken, proposal);
    tracker.markInFlight(proposal, 7, 2);
    assert.deepEqual(tracker.stateCounts(), { taken: 0, queued: 0, held: 0, forwarding: 0, 'in-flight': 1 });
    // Another term's entry at index 7: ours was never committed and comes back to be routed.
    assert.equal(tracker.applied(7, 3, {}), proposal);
    assert.equal(proposal.state, 'taken');
    tracker.markInFlight(proposal, 9, 3);
    assert.equal(tracker.applied(9, 3, {}), undefined);
    await turn();
    assert.equal(seen.value, 'ok');
    assert.equal(proposal.state, 'settled');
    tracker.settle(proposal, new StrataError(ErrorCode.TIMEOUT, 'late'));
    assert.equal(tracker.unsettled, 0);
  });

  test('deadlines and signals settle a proposal in any state', async () => {
    const clock = new VirtualClock();
    const tracker = new ProposalTracker(clock);
    const held = tracker.create(new Uint8Array([1]), { timeoutMs: 50 }, 0);
    tracker.hold(held.proposal);
    const controller = new AbortController();
    const forwarded = tracker.create(new Uint8Array([2]), { signal: controller.signal }, 0);
    tracker.startForwarding(forwarded.proposal);
    const heldOutcome = outcome(held.outcome);
    const forwardedOutcome = outcome(forwarded.outcome);
    controller.abort();
    await clock.run({ untilMs: 100 });
    tracker.sweepDeadlines();
    await turn();
    assert.equal(heldOutcome.value, ErrorCode.TIMEOUT);
    assert.equal(forwardedOutcome.value, ErrorCode.CANCELED);
    assert.equal(tracker.unsettled, 0);
  });

  test('failAll settles everything and closes the tracker: a refusal answered afterwards is settled, not held', async () => {
    const tracker = new ProposalTracker(new VirtualClock());
    const forwarded = tracker.create(new Uint8Array([1]), {}, 0);
    tracker.startForwarding(forwarded.proposal);
    const queued = tracker.create(new Uint8Array([2]), {}, 0);
    tracker.queue(queued.proposal);
    const answers = [outcome(forwarded.outcome), outcome(queued.outcome)];
    tracker.failAll(new StrataError(ErrorCode.STOPPED, 'stopped'));
    const late = tracker.create(new Uint8Array([3]), {}, 0);
    const lateAnswer = outcome(late.outcome);
    tracker.hold(late.proposal);
    await turn();
    assert.deepEqual(answers.map((answer) => answer.value), [ErrorCode.STOPPED, ErrorCode.STOPPED]);
    assert.equal(lateAnswer.value, ErrorCode.STOPPED);
    assert.equal(tracker.isClosed, true);
    assert.equal(tracker.unsettled, 0);
  });

  test('the held queue is bounded: past PROPOSALS_HELD_MAX a write is refused with NO_LEADER', async () => {
    const tracker = new ProposalTracker(new VirtualClock());
    for (let index = 0; index < PROPOSALS_HELD_MAX; index += 1) {
      const { proposal, outcome: answer } = tracker.create(new Uint8Array([1]), {}, 0);
      answer.catch(() => undefined);
      tracker.hold(proposal);
    }
    const extra = tracker.create(new Uint8Array([1]), {}, 0);
    const extraAnswer = outcome(extra.outcome);
    tracker.hold(extra.proposal);
    await turn();
    assert.equal(extraAnswer.value, ErrorCode.NO_LEADER);
    assert.equal(tracker.stateCounts().held, PROPOSALS_HELD_MAX);
    tracker.failAll(new StrataError(ErrorCode.STOPPED, 'stopped'));
  });
});

describe('ReadIndexTracker', () => {
  test('a read is served once its read index is applied, not before', async () => {
    const reads = new ReadIndexTracker(new VirtualClock(), 10);
    const served = outcome(reads.wait({}));
    let context: Uint8Array = new Uint8Array();
    reads.askPending({ readIndex: (asked) => void (context = asked) }, 1);
    reads.onReadStates([{ index: 5, context }]);
    reads.onApplied(4);
    await turn();
    assert.equal(served.value, undefined, 'not before applied >= read index');
    reads.onApplied(5);
    await turn();
    assert.equal(served.value, 'ok');
  });

  test('a core that refuses to ask (a removed leader handing over) does not make the loop spin: reads wait for the next tick', async () => {
    const clock = new VirtualClock();
    const reads = new ReadIndexTracker(clock, 10);
    const answer = outcome(reads.wait({ timeoutMs: 100 }));
    let asks = 0;
    const refusing = { readIndex: (): void => {
      asks += 1;
      throw new StrataError(ErrorCode.NOT_LEADER, 'handing over');
    } };
    reads.askPending(refusing, 1);
    assert.equal(reads.hasPending, false, 'no work until a tick or a leader change');
    reads.askPending(refusing, 1);
    assert.equal(asks, 1);
    reads.onTick(2);
    assert.equal(reads.hasPending, true);
    await clock.run({ untilMs: 200 });
    reads.onTick(3);
    await turn();
    assert.equal(answer.value, ErrorCode.TIMEOUT);
  });

  test('failAll rejects reads in every phase and refuses later ones', async () => {
    const reads = new ReadIndexTracker(new VirtualClock(), 10);
    const pending = outcome(reads.wait({}));
    const asked = outcome(reads.wait({}));
    reads.askPending({ readIndex: () => undefined }, 1);
    const waiting = outcome(reads.wait({}));
    reads.failAll(new StrataError(ErrorCode.STOPPED, 'stopped'));
    const late = outcome(reads.wait({}));
    await turn();
    assert.deepEqual([pending.value, asked.value, waiting.value, late.value], [ErrorCode.STOPPED, ErrorCode.STOPPED, ErrorCode.STOPPED, ErrorCode.STOPPED]);
    assert.equal(reads.unsettled, 0);
  });
});

describe('Membership', () => {
  const initial = [
    { id: 1, name: 'a', peerUrls: ['http://a:2380'] },
    { id: 2, name: 'b', peerUrls: ['http://b:2380'] },
    { id: 3, name: 'c', peerUrls: ['http://c:2380'] },
  ];
  const conf = (voters: number[], extra: { learners?: number[]; votersOutgoing?: number[] } = {}) => ({
    voters,
    learners: extra.learners ?? [],
    votersOutgoing: extra.votersOutgoing ?? [],
    learnersNext: [],
    autoLeave: false,
  });

  test('follows the configuration: a voter removed by a joint change stays until the joint configuration is left', () => {
    const membership = new Membership(initial);
    assert.deepEqual(membership.applyConfChange({ transition: 'auto', changes: [{ type: 'addVoter', nodeId: 1 }] }, undefined, conf([1, 2, 3])), { added: [1, 2, 3], removed: [] });
    const context = { peerUrls: ['http://d:2380'], name: '' };
    assert.deepEqual(membership.applyConfChange({ transition: 'auto', changes: [{ type: 'addLearner', nodeId: 4 }] }, context, conf([1, 2, 3], { learners: [4] })), { added: [4], removed: [] });
    assert.deepEqual(membership.get(4), { id: 4, name: '', peerUrls: ['http://d:2380'], clientUrls: [], isLearner: true, zone: '' });
    const swap = { transition: 'explicit' as const, changes: [{ type: 'addVoter' as const, nodeId: 4 }, { type: 'removeNode' as const, nodeId: 1 }] };
    assert.deepEqual(membership.applyConfChange(swap, undefined, conf([2, 3, 4], { votersOutgoing: [1, 2, 3] })), { added: [], removed: [] });
    assert.equal(membership.get(1)?.name, 'a');
    assert.equal(membership.get(4)?.isLearner, false);
    assert.equal(membership.isRemoved(1), false);
    assert.deepEqual(membership.applyConfChange({ transition: 'auto', changes: [] }, undefined, conf([2, 3, 4])), { added: [], removed: [1] });
    assert.equal(membership.isRemoved(1), true);
    assert.deepEqual(membership.list().map((member) => member.id), [2, 3, 4]);
  });

  test('a change the core ignored changes nothing', () => {
    const membership = new Membership(initial);
    membership.applyConfChange({ transition: 'auto', changes: [{ type: 'addVoter', nodeId: 1 }] }, undefined, conf([1, 2, 3]));
    assert.deepEqual(membership.applyConfChange({ transition: 'auto', changes: [{ type: 'removeNode', nodeId: 9 }] }, undefined, conf([1, 2, 3])), { added: [], removed: [] });
    assert.deepEqual(membership.list().map((member) => member.id), [1, 2, 3]);
  });
});

describe('member peer requests', () => {
  test('replace and leave travel intact; malformed ones are refused', () => {
    const replace = { op: 'replace' as const, promote: [4], remove: [1, 2], leave: 'explicit' as const };
    assert.deepEqual(decodeMemberOperation(encodeMemberOperation(replace)), replace);
    assert.deepEqual(decodeMemberOperation(encodeMemberOperation({ op: 'leave' })), { op: 'leave' });
    for (const bad of [{ op: 'replace', promote: [4], remove: [1] }, { op: 'replace', promote: ['x'], remove: [], leave: 'auto' }, { op: 'swap' }]) {
      assert.throws(() => decodeMemberOperation(encodeMemberOperation(bad as never)), (error) => isStrataError(error, ErrorCode.INVALID_ARGUMENT));
    }
  });
});
