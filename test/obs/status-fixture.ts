// A status document as a member would answer it in the middle of a move to another zone: the
// three old voters in eu-west-1a, the three new members added as learners in eu-west-1b and
// catching up, one of them not answering. `refresh` advances the catch-up, the way successive
// answers to /status.json would.
import type { MemberStatusRow, StatusDocument } from '../../src/obs/index.ts';

/** FIXTURE_PROGRESS_START and FIXTURE_PROGRESS_STEP: the catch-up's entries done at refresh 0, and added per refresh. */
export const FIXTURE_PROGRESS_START = 612_345;
export const FIXTURE_PROGRESS_STEP = 50_000;
/** FIXTURE_COMMIT_INDEX is the leader's commit index (the catch-up's total). */
export const FIXTURE_COMMIT_INDEX = 1_204_880;

const MOVE_STEP_NAMES = ['add-learners', 'catch-up', 'verify-before', 'swap-voters', 'transfer-leader', 'leave-joint', 'remove-old', 'verify-after'];

/** fixtureDocument is the document a member answers at its `refresh`-th answer (0: the page itself). */
export function fixtureDocument(refresh: number): StatusDocument {
  const done = Math.min(FIXTURE_COMMIT_INDEX, FIXTURE_PROGRESS_START + refresh * FIXTURE_PROGRESS_STEP);
  const second = String(41 + 2 * refresh).padStart(2, '0');
  const commitIndex = FIXTURE_COMMIT_INDEX;
  const voter = (name: string, id: string, at: number, role: MemberStatusRow['role'], applied: number, snapshotState: string, snapshotDetail?: string): MemberStatusRow => ({
    id, name, zone: 'eu-west-1a', role, clientUrls: [`http://10.0.1.${at}:2379`], reachable: true,
    term: 7, commitIndex, appliedIndex: applied, lagEntries: commitIndex - applied, dbSizeBytes: 222_298_112 + at * 1_048_576,
    snapshot: { index: 1_200_000, state: snapshotState, ...(snapshotDetail === undefined ? {} : { detail: snapshotDetail }) }, alarms: [],
  });
  return {
    generatedAt: `2025-12-06T18:23:${second}.512Z`,
    self: { id: '8e9e05c52164694d', name: 'm1' },
    cluster: { id: 'cdf818194e3a8c32', leaderId: '8e9e05c52164694d', term: 7, revision: 1_183_442, version: '0.1.0' },
    health: { health: 'true', reason: '' },
    members: [
      voter('m1', '8e9e05c52164694d', 11, 'leader', commitIndex, 'sending', 'to n2: chunk 41 of 64'),
      voter('m2', '91bc3c398fb3c146', 12, 'follower', commitIndex - 3, 'idle'),
      voter('m3', 'fd422379fda50e48', 13, 'follower', commitIndex, 'idle'),
      {
        id: '4a1f6e0c27d9b315', name: 'n1', zone: 'eu-west-1b', role: 'learner', clientUrls: ['http://10.0.2.21:2379'], reachable: true,
        term: 7, commitIndex, appliedIndex: done, lagEntries: commitIndex - done, dbSizeBytes: 148_897_792,
        snapshot: { index: 600_000, state: 'idle' }, alarms: [],
      },
      {
        id: 'b7c2d90e5f3a6184', name: 'n2', zone: 'eu-west-1b', role: 'learner', clientUrls: ['http://10.0.2.22:2379'], reachable: true,
        term: 7, commitIndex: 0, appliedIndex: 0, lagEntries: commitIndex, dbSizeBytes: 4096,
        snapshot: { index: 1_200_000, state: 'receiving', detail: 'chunk 41 of 64 from m1' }, alarms: [],
      },
      {
        id: 'e03d5b8a9c1f7246', name: 'n3', zone: 'eu-west-1b', role: 'learner', clientUrls: ['http://10.0.2.23:2379'], reachable: false,
        error: 'connect ECONNREFUSED 10.0.2.23:2379', alarms: [],
      },
    ],
    alarms: [],
    migration: {
      id: 'mig-5f2c81a0', kind: 'move', state: 'running', phase: 'catch-up', step: 2, steps: MOVE_STEP_NAMES.length, stepNames: MOVE_STEP_NAMES,
      progress: { done, total: commitIndex, unit: 'entries' },
      detail: 'learners n1, n2, n3 (eu-west-1b) catching up to the leader\'s commit index',
      startedAt: '2025-12-06T18:21:07.000Z', updatedAt: `2025-12-06T18:23:${second}.000Z`,
    },
  };
}
