// makePlan's rules, without a cluster: the steps of a plan, and every refusal the issue names
// (an unreachable or unstarted new member, an unhealthy cluster, another migration in
// progress, a majority of the new voters in one zone when a spread is required).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { ReplicationInfo } from '../../src/client/index.ts';
import type { JoinProbe, MigrationRecord, PlanInput } from '../../src/migrate/index.ts';
import { decodeRecord, encodeRecord, makePlan, MOVE_STEPS } from '../../src/migrate/index.ts';

const url = (name: string): string => `http://${name}.test:2380`;

function replication(overrides: Partial<ReplicationInfo> = {}): ReplicationInfo {
  const members = [1, 2, 3].map((id) => ({ id, name: `a${id}`, peerUrls: [url(`a${id}`)], clientUrls: [`http://a${id}.test:2379`], isLearner: false, zone: 'a' }));
  return {
    leaderId: 1,
    term: 2,
    commitIndex: 100,
    lastIndex: 100,
    appliedIndex: 100,
    voters: [1, 2, 3],
    learners: [],
    votersOutgoing: [],
    autoLeave: false,
    members,
    peers: [2, 3].map((id) => ({ id, isLearner: false, match: 100, next: 101, state: 'replicate', recentActive: true, snapshot: undefined, rttMs: 1, appliedIndex: 100 })),
    endpoint: 'a1.test:2379',
    ...overrides,
  };
}

const targets = ['b1', 'b2', 'b3'].map((name) => ({ name, peerUrls: [url(name)] }));

function input(overrides: Partial<PlanInput> = {}): PlanInput {
  const probes = new Map<string, JoinProbe>(targets.map((target) => [target.name, { waiting: true, name: target.name, zone: 'b' }]));
  return { replication: replication(), alarms: [], journal: undefined, targets, probes, requireZoneSpread: false, nowMs: 1_000, newId: () => 'id1', ...overrides };
}

describe('makePlan', () => {
  test('a healthy cluster and three waiting members: every step, none done, a warning that zone b holds the majority', () => {
    const plan = makePlan(input());
    assert.deepEqual(plan.refusals, []);
    assert.deepEqual(plan.steps.map((step) => step.step), [...MOVE_STEPS]);
    assert.ok(plan.steps.every((step) => !step.done));
    assert.match(plan.steps[0]?.does ?? '', /b1 \(http:\/\/b1\.test:2380, zone b\)/);
    assert.equal(plan.warnings.length, 1);
    assert.ok(plan.record !== undefined);
    assert.deepEqual(plan.record.from.map((spec) => spec.id), [1, 2, 3]);
    assert.equal(plan.record.next, 'add-learners');
    // The record survives the journal's encoding.
    assert.deepEqual(decodeRecord(encodeRecord(plan.record)), plan.record);
  });

  test('with --zone-spread, a majority of the new voters in one zone refuses the plan; spread over three zones passes', () => {
    assert.equal(makePlan(input({ requireZoneSpread: true })).refusals.length, 1);
    const spread = new Map<string, JoinProbe>(targets.map((target, at) => [target.name, { waiting: true, name: target.name, zone: `z${at}` }]));
    assert.deepEqual(makePlan(input({ requireZoneSpread: true, probes: spread })).refusals, []);
  });

  test('refusals: a new member not started, a name that does not match, a voter unreachable, an alarm', () => {
    const probes = new Map<string, JoinProbe>([
      ['b1', { waiting: false, reason: 'connection refused' }],
      ['b2', { waiting: true, name: 'other', zone: 'b' }],
      ['b3', { waiting: true, name: 'b3', zone: 'b' }],
    ]);
    const unhealthy = replication({ peers: [{ id: 2, isLearner: false, match: 10, next: 11, state: 'probe', recentActive: false, snapshot: undefined, rttMs: undefined, appliedIndex: undefined }] });
    const plan = makePlan(input({ probes, replication: unhealthy, alarms: [{ memberId: '2', alarm: 'NOSPACE' }] }));
    const text = plan.refusals.join('\n');
    assert.match(text, /b1 .* not started or not reachable \(connection refused\)/);
    assert.match(text, /named other, not b2/);
    assert.match(text, /voter a2 .* not reachable/);
    assert.match(text, /voter a3 .* not reachable/);
    assert.match(text, /alarm NOSPACE/);
  });

  test('a name or peer URL given twice, or a peer URL of an old member, is refused', () => {
    const twice = makePlan(input({ targets: [...targets, { name: 'b1', peerUrls: [url('b9')] }, { name: 'b4', peerUrls: [url('b2')] }] }));
    assert.match(twice.refusals.join('\n'), /b1 is named twice/);
    assert.match(twice.refusals.join('\n'), /b2\.test:2380 is given twice/);
    const taken = makePlan(input({ targets: [{ name: 'x', peerUrls: [url('a2'), url('x')] }] }));
    assert.match(taken.refusals.join('\n'), /used by member a2/);
  });

  test('another migration in progress refuses other targets, and the same targets resume it at its step', () => {
    const first = makePlan(input()).record as MigrationRecord;
    const midway: MigrationRecord = { ...first, next: 'swap-voters' };
    const other = makePlan(input({ journal: midway, targets: [{ name: 'c1', peerUrls: [url('c1')] }] }));
    assert.match(other.refusals.join('\n'), /another migration \(id1\) is in progress/);
    const same = makePlan(input({ journal: midway }));
    assert.equal(same.resuming, true);
    assert.deepEqual(same.refusals, []);
    assert.deepEqual(same.steps.filter((step) => step.done).map((step) => step.step), ['add-learners', 'catch-up', 'verify-before']);
    const resumeOnly = makePlan(input({ journal: midway, targets: [] }));
    assert.equal(resumeOnly.resuming, true);
    const finished = makePlan(input({ journal: { ...first, next: undefined }, targets: [] }));
    assert.match(finished.refusals.join('\n'), /no migration is in progress/);
  });

  test('a malformed journal record is refused with what is wrong', () => {
    assert.throws(() => decodeRecord('{"format":9}'), /format 9/);
    assert.throws(() => decodeRecord('not json'), /not JSON/);
    const record = makePlan(input()).record as MigrationRecord;
    assert.throws(() => decodeRecord(JSON.stringify({ ...record, next: 'dance' })), /next step "dance"/);
  });
});
