// The lifecycle hooks an embedder gets (RaftNodeHooks; README "Lifecycle hooks"): started,
// became leader / follower, snapshot saved and installed, alarm raised and cleared, a migration
// step applied, stopping — each on the members where it happened, in a 3-member cluster on a
// virtual clock.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { RaftNodeHooks } from '../../src/node/index.ts';
import { leaderOf, put, startCluster } from './fixture.ts';


test('every lifecycle hook fires where and when its event happens', async () => {
  const events: string[] = [];
  const hooks: RaftNodeHooks = {
    onStarted: ({ memberId }) => events.push(`started ${memberId.toString(16)}`),
    onRoleChange: ({ role, leaderId }) => events.push(`role ${role} leader=${leaderId === 0 ? 'none' : 'known'}`),
    onSnapshotSaved: ({ index }) => events.push(`snapshot saved ${index}`),
    onSnapshotInstalled: ({ index }) => events.push(`snapshot installed ${index}`),
    onAlarm: (change) => events.push(`alarm ${change.action} ${change.alarm}`),
    onMigrationStep: ({ version, record }) => events.push(`migration step ${version} ${record ?? 'cleared'}`),
    onStopping: () => events.push('stopping'),
  };
  const { nodes, driver } = await startCluster({ nodeOptions: { hooks }, snapshotPolicy: { snapshotCount: 20, catchUpEntries: 5 } });
  const count = (prefix: string): number => events.filter((event) => event.startsWith(prefix)).length;
  assert.equal(count('started '), 3, 'every member started');
  assert.equal(count('role leader'), 1, 'one member became leader');
  assert.ok(count('role follower leader=known') >= 2, 'the others follow a known leader');

  const leader = leaderOf(nodes);
  for (let index = 0; index < 30; index += 1) await driver.settle(put(leader, `k${index}`, `v${index}`));
  await driver.until('every member saved a snapshot', () => count('snapshot saved ') >= 3);

  await driver.settle(leader.changeAlarm('activate', leader.memberId, 'NOSPACE', { timeoutMs: 5_000 }));
  await driver.until('every member applied the alarm', () => count('alarm activate NOSPACE') === 3);
  await driver.settle(leader.changeAlarm('deactivate', leader.memberId, 'NOSPACE', { timeoutMs: 5_000 }));
  await driver.until('every member applied the disarm', () => count('alarm deactivate NOSPACE') === 3);

  await driver.settle(leader.writeMigrationJournal(0, '{"step":"add-learners"}', { timeoutMs: 5_000 }));
  await driver.until('every member applied the journal write', () => count('migration step 1 {"step":"add-learners"}') === 3);

  const follower = nodes.find((node) => node !== leader);
  assert.ok(follower !== undefined);
  await driver.settle(follower.stop());
  assert.equal(count('stopping'), 1, 'the stopped member said so first');
  assert.equal(count('snapshot installed '), 0, 'no member was behind a snapshot here');
});
