// The status document: what a member's metrics URL answers at /status.json and what the status
// page at / shows. It is plain JSON (strings, numbers, booleans, arrays) so that the page's
// script can fetch it and render it with the same functions the server used (status-page.ts).
// Member ids are hex strings: a 64-bit id does not fit a JSON number.

/** StatusDocument is what /status.json answers and what the page shows. */
export interface StatusDocument {
  /** ISO time this member answered. */
  readonly generatedAt: string;
  /** The member that answered; its id in hex. */
  readonly self: { readonly id: string; readonly name: string };
  /** leaderId '' means no leader is known. */
  readonly cluster: { readonly id: string; readonly leaderId: string; readonly term: number; readonly revision: number; readonly version: string };
  readonly health: { readonly health: 'true' | 'false'; readonly reason: string };
  readonly members: readonly MemberStatusRow[];
  /** Active alarms, e.g. NOSPACE, CORRUPT. */
  readonly alarms: readonly { readonly memberId: string; readonly alarm: string }[];
  /** Absent: no migration running or recorded. */
  readonly migration?: MigrationStatusView;
}

/** MemberStatusRow is one member as the answering member sees it. Unreachable rows keep id, name and zone. */
export interface MemberStatusRow {
  readonly id: string;
  readonly name: string;
  /** '' = no zone. */
  readonly zone: string;
  readonly role: 'leader' | 'follower' | 'learner' | 'candidate' | 'unknown';
  readonly clientUrls: readonly string[];
  readonly reachable: boolean;
  readonly error?: string;
  readonly term?: number;
  readonly commitIndex?: number;
  readonly appliedIndex?: number;
  /** The leader's commit index minus this member's applied index. */
  readonly lagEntries?: number;
  readonly dbSizeBytes?: number;
  /** state: 'idle' | 'saving' | 'sending' | 'receiving' | 'backing-off' (another string is shown as it is). */
  readonly snapshot?: { readonly index: number; readonly state: string; readonly detail?: string };
  readonly alarms: readonly string[];
}

/** MigrationStatusView is a running or recorded migration, as the page shows it. */
export interface MigrationStatusView {
  readonly id: string;
  /** E.g. 'move' (learners → joint consensus → leader transfer → retire). */
  readonly kind: string;
  /** 'running' | 'paused' | 'done' | 'failed' | 'rolling-back' | 'rolled-back' (another string is shown as it is). */
  readonly state: string;
  /** The current step's name, e.g. 'catch-up'. */
  readonly phase: string;
  /** 1-based step of `steps`. */
  readonly step: number;
  readonly steps: number;
  /** Optional, added for the page: every step's name in order (length `steps`), drawn as a track of done / current / pending steps. Absent: the track shows numbers. */
  readonly stepNames?: readonly string[];
  /** E.g. entries, keys. */
  readonly progress?: { readonly done: number; readonly total: number; readonly unit: string };
  readonly detail?: string;
  readonly startedAt?: string;
  readonly updatedAt?: string;
}
