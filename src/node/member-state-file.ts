// <data-dir>/member/identity.json: who this member is, written once when the member first
// starts. On later starts the file wins over flags (as etcd ignores --initial-cluster once
// its data directory exists), and a different --name is refused rather than silently
// starting a second identity on the same data.

import { join } from 'node:path';
import { ErrorCode, StrataError } from '../util/errors.ts';
import { readJsonStateFile, writeJsonStateFile } from './json-state-file.ts';
import type { InitialMember } from './membership.ts';

/** MemberIdentity is what identity.json holds. */
export interface MemberIdentity {
  readonly memberId: number;
  readonly clusterId: number;
  readonly name: string;
  /** The --initial-cluster the member first started with (names and peer URLs of bootstrap ids). */
  readonly initialMembers: readonly InitialMember[];
}

/** identityPath is where a data directory keeps the member's identity. */
export function identityPath(dataDir: string): string {
  return join(dataDir, 'member', 'identity.json');
}

/** readMemberIdentity reads identity.json, or returns undefined when the member never started. */
export function readMemberIdentity(dataDir: string): MemberIdentity | undefined {
  const path = identityPath(dataDir);
  const value = readJsonStateFile(path);
  if (value === undefined) return undefined;
  const identity = value as Partial<MemberIdentity> | null;
  if (
    identity === null ||
    typeof identity !== 'object' ||
    typeof identity.memberId !== 'number' ||
    typeof identity.clusterId !== 'number' ||
    typeof identity.name !== 'string' ||
    !Array.isArray(identity.initialMembers)
  ) {
    throw new StrataError(ErrorCode.CORRUPTION, `${path} does not describe a member (memberId, clusterId, name, initialMembers)`, { details: { path } });
  }
  return identity as MemberIdentity;
}

/** writeMemberIdentity writes identity.json durably: temporary file, fsync, rename, directory fsync. */
export function writeMemberIdentity(dataDir: string, identity: MemberIdentity): void {
  writeJsonStateFile(identityPath(dataDir), identity);
}
