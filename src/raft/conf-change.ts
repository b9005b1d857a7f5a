// Membership changes: the encoding of a ConfChange inside a log entry, and the "changer"
// that computes the next configuration from the current one (after etcd-io/raft's
// confchange/). Joint consensus is Raft thesis §4.3 / paper §6; single-step changes are
// thesis §4.1 (one voter at a time).

import { ErrorCode, StrataError } from '../util/errors.ts';
import type { Progress } from './progress.ts';
import type { ProgressTracker, TrackerConfig } from './tracker.ts';
import type { ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfState, Index, NodeId } from './types.ts';

const CONF_CHANGE_FORMAT_VERSION = 1;
const CONF_CHANGE_TYPES: readonly ConfChangeType[] = ['addVoter', 'addLearner', 'removeNode'];
const CONF_CHANGE_TRANSITIONS: readonly ConfChangeTransition[] = ['auto', 'implicit', 'explicit'];

/** encodeConfChange turns a ConfChange into the data of a ConfChange log entry. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  const encoded = {
    v: CONF_CHANGE_FORMAT_VERSION,
    t: change.transition,
    c: change.changes.map((single) => [single.type, single.nodeId]),
    x: change.context === undefined ? null : Array.from(change.context),
  };
  return new TextEncoder().encode(JSON.stringify(encoded));
}

/** decodeConfChange reads the data of a ConfChange entry; malformed data is an INVALID_ARGUMENT. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(data));
  } catch (cause) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'conf change entry is not valid JSON', { cause });
  }
  const record = parsed as { v?: unknown; t?: unknown; c?: unknown; x?: unknown };
  if (typeof record !== 'object' || record === null || record.v !== CONF_CHANGE_FORMAT_VERSION) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'conf change entry has an unknown format version');
  }
  if (!CONF_CHANGE_TRANSITIONS.includes(record.t as ConfChangeTransition) || !Array.isArray(record.c)) {
    throw new StrataError(ErrorCode.INVALID_ARGUMENT, 'conf change entry has a bad transition or change list');
  }
  const changes: ConfChangeSingle[] = [];
  for (const item of record.c as unknown[]) {
    const [type, nodeId] = Array.isArray(item) ? item : [];
    if (!CONF_CHANGE_TYPES.includes(type as ConfChangeType) || !Number.isSafeInteger(nodeId) || (nodeId as number) < 0) {
      throw new StrataError(ErrorCode.INVALID_ARGUMENT, `conf change entry has a bad change ${JSON.stringify(item)}`);
    }
    changes.push({ type: type as ConfChangeType, nodeId: nodeId as NodeId });
  }
  const base = { transition: record.t as ConfChangeTransition, changes };
  if (Array.isArray(record.x)) return { ...base, context: Uint8Array.from(record.x as number[]) };
  return base;
}

/** isLeaveJoint tells whether a change is the empty change that leaves a joint configuration. */
export function isLeaveJoint(change: ConfChange): boolean {
  return change.changes.length === 0;
}

/**
 * needsJoint tells whether a change must go through joint consensus: more than one change,
 * or an explicitly requested transition.
 */
export function needsJoint(change: ConfChange): boolean {
  return change.changes.length > 1 || change.transition !== 'auto';
}

/** autoLeaveOf tells whether a joint configuration entered by `change` leaves itself. */
export function autoLeaveOf(change: ConfChange): boolean {
  return change.transition !== 'explicit';
}

/** ChangeResult is the next configuration and, for every node that keeps a Progress, whether it is a learner. */
export interface ChangeResult {
  readonly config: TrackerConfig;
  readonly members: ReadonlyMap<NodeId, boolean>;
}

// A mutable working copy of a configuration; nothing shared is touched until it validates.
interface Working {
  incoming: Set<NodeId>;
  outgoing: Set<NodeId>;
  learners: Set<NodeId>;
  learnersNext: Set<NodeId>;
  members: Map<NodeId, boolean>; // id -> isLearner, for every node that keeps a Progress
}

function refuse(message: string): never {
  throw new StrataError(ErrorCode.CONF_CHANGE_REFUSED, message);
}

function workingCopy(tracker: ProgressTracker): Working {
  const members = new Map<NodeId, boolean>();
  for (const [id, progress] of tracker.progress) members.set(id, progress.isLearner);
  return {
    incoming: new Set(tracker.config.voters.incoming),
    outgoing: new Set(tracker.config.voters.outgoing),
    learners: new Set(tracker.config.learners),
    learnersNext: new Set(tracker.config.learnersNext),
    members,
  };
}

function makeVoter(working: Working, id: NodeId): void {
  working.members.set(id, false);
  working.learners.delete(id);
  working.learnersNext.delete(id);
  working.incoming.add(id);
}

function makeLearner(working: Working, id: NodeId): void {
  if (working.members.get(id) === true) return;
  working.incoming.delete(id);
  working.learners.delete(id);
  working.learnersNext.delete(id);
  // A node that still votes in the outgoing half cannot be a learner yet: it becomes one
  // when the joint configuration is left (learnersNext), so the two sets stay disjoint.
  if (working.outgoing.has(id)) {
    working.members.set(id, false);
    working.learnersNext.add(id);
  } else {
    working.members.set(id, true);
    working.learners.add(id);
  }
}

function removeNode(working: Working, id: NodeId): void {
  if (!working.members.has(id)) return;
  working.incoming.delete(id);
  working.learners.delete(id);
  working.learnersNext.delete(id);
  // Outgoing voters keep their progress until the joint configuration is left.
  if (!working.outgoing.has(id)) working.members.delete(id);
}

function applyChanges(working: Working, changes: readonly ConfChangeSingle[]): void {
  for (const change of changes) {
    if (change.nodeId === 0) continue;
    switch (change.type) {
      case 'addVoter':
        makeVoter(working, change.nodeId);
        break;
      case 'addLearner':
        makeLearner(working, change.nodeId);
        break;
      case 'removeNode':
        removeNode(working, change.nodeId);
        break;
    }
  }
  if (working.incoming.size === 0) refuse('a configuration change may not remove all voters');
}

function checkInvariants(working: Working): void {
  for (const id of [...working.incoming, ...working.outgoing, ...working.learners, ...working.learnersNext]) {
    if (!working.members.has(id)) refuse(`node ${id} has no progress`);
  }
  for (const id of working.learnersNext) {
    if (!working.outgoing.has(id)) refuse(`node ${id} is in learnersNext but not an outgoing voter`);
    if (working.members.get(id) === true) refuse(`node ${id} is in learnersNext but already a learner`);
  }
  for (const id of working.learners) {
    if (working.incoming.has(id) || working.outgoing.has(id)) refuse(`node ${id} is both learner and voter`);
    if (working.members.get(id) !== true) refuse(`learner ${id} is not marked as learner`);
  }
}

function finish(working: Working, autoLeave: boolean): ChangeResult {
  checkInvariants(working);
  return {
    config: {
      voters: { incoming: working.incoming, outgoing: working.outgoing },
      learners: working.learners,
      learnersNext: working.learnersNext,
      autoLeave,
    },
    members: working.members,
  };
}

/**
 * installConfChange makes a computed configuration the tracker's. Members that are new get
 * a Progress starting at `nextIndex`; with `fresh`, every member does (restore from a
 * snapshot, where nothing the tracker knew still holds).
 */
export function installConfChange(tracker: ProgressTracker, result: ChangeResult, nextIndex: Index, fresh: boolean): void {
  const progress = new Map<NodeId, Progress>();
  for (const [id, isLearner] of result.members) {
    const existing = fresh ? undefined : tracker.progress.get(id);
    if (existing === undefined) {
      const created = tracker.newProgress(Math.max(1, nextIndex), isLearner);
      // A new member counts as active so check-quorum does not step the leader down at once.
      created.recentActive = true;
      progress.set(id, created);
    } else {
      existing.isLearner = isLearner;
      progress.set(id, existing);
    }
  }
  tracker.config = result.config;
  tracker.progress = progress;
}

/**
 * computeConfChange returns the configuration that applying `change` to the tracker's
 * configuration yields, or throws CONF_CHANGE_REFUSED when the change is invalid there.
 * The tracker itself is not modified: installConfChange() does that.
 */
export function computeConfChange(tracker: ProgressTracker, change: ConfChange): ChangeResult {
  const working = workingCopy(tracker);
  const joint = working.outgoing.size > 0;
  if (isLeaveJoint(change)) {
    if (!joint) refuse('cannot leave a joint configuration: not in one');
    for (const id of working.learnersNext) {
      working.learners.add(id);
      working.members.set(id, true);
    }
    working.learnersNext.clear();
    for (const id of working.outgoing) {
      if (!working.incoming.has(id) && !working.learners.has(id)) working.members.delete(id);
    }
    working.outgoing.clear();
    return finish(working, false);
  }
  if (joint) refuse('configuration is joint: leave it before changing again');
  if (needsJoint(change)) {
    for (const id of working.incoming) working.outgoing.add(id);
    applyChanges(working, change.changes);
    return finish(working, autoLeaveOf(change));
  }
  applyChanges(working, change.changes);
  // A single step may change at most one voter, or a majority could be lost in between.
  let changedVoters = 0;
  for (const id of working.incoming) if (!tracker.config.voters.incoming.has(id)) changedVoters += 1;
  for (const id of tracker.config.voters.incoming) if (!working.incoming.has(id)) changedVoters += 1;
  if (changedVoters > 1) refuse('more than one voter changed without entering a joint configuration');
  return finish(working, false);
}

/**
 * restoreConfState rebuilds a tracker configuration from a ConfState (snapshot or restart):
 * the outgoing half first as a simple config, then the incoming half as a joint change.
 */
export function restoreConfState(confState: ConfState): ChangeResult {
  const outgoingChanges: ConfChangeSingle[] = confState.votersOutgoing.map((nodeId) => ({ type: 'addVoter', nodeId }));
  const incomingChanges: ConfChangeSingle[] = [
    ...confState.voters.map((nodeId): ConfChangeSingle => ({ type: 'addVoter', nodeId })),
    ...confState.learners.map((nodeId): ConfChangeSingle => ({ type: 'addLearner', nodeId })),
    ...confState.learnersNext.map((nodeId): ConfChangeSingle => ({ type: 'addLearner', nodeId })),
  ];
  // Build from scratch: the restored configuration replaces whatever the tracker had.
  const working: Working = {
    incoming: new Set(),
    outgoing: new Set(),
    learners: new Set(),
    learnersNext: new Set(),
    members: new Map(),
  };
  if (outgoingChanges.length === 0) {
    if (incomingChanges.length > 0) applyChanges(working, incomingChanges);
    return finish(working, false);
  }
  applyChanges(working, outgoingChanges);
  for (const id of working.incoming) working.outgoing.add(id);
  working.incoming.clear();
  for (const change of incomingChanges) {
    if (change.type === 'addVoter') makeVoter(working, change.nodeId);
    else makeLearner(working, change.nodeId);
  }
  return finish(working, confState.autoLeave);
}
