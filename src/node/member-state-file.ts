// <data-dir>/member/identity.json: who this member is, written once when the member first
// starts. On later starts the file wins over flags (as etcd ignores --initial-cluster once
// its data directory exists), and a different --name is refused rather than silently
// starting a second identity on the same data.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ErrorCode, StrataError } from '../util/errors.ts';
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
  if (!existsSync(path)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new StrataError(ErrorCode.CORRUPTION, `${path} is not valid JSON`, { cause: error, details: { path } });
  }
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
  const path = identityPath(dataDir);
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.tmp`;
  const fd = openSync(temporary, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(identity, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  const directory = openSync(dirname(path), 'r');
  try {
    fsyncSync(directory);
  } finally {
    closeSync(directory);
  }
}
