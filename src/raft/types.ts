// The vocabulary of the Raft core: log entries, hard state, configurations, snapshots and
// the messages peers exchange. Everything here is plain data so the driver can encode it
// (msgpackr on the wire, CRC32c-framed records on disk) without knowing the core.
//
// Term, Index and NodeId are plain number aliases rather than branded types: index and term
// arithmetic is on nearly every line of the log code, and casts at each step would hide
// more mistakes than they catch. All three are non-negative safe integers; 0 means "none".

/** NodeId names a member of the cluster; 0 means no node. */
export type NodeId = number;
/** Term is a Raft term number. */
export type Term = number;
/** Index is a position in the Raft log; the first real entry has index 1. */
export type Index = number;

/** NO_NODE is the NodeId that means "nobody" (no vote cast, no leader known). */
export const NO_NODE: NodeId = 0;

/** EntryType says how the driver interprets an entry's data. */
export const EntryType = {
  /** Application data (or empty: the no-op a new leader appends). */
  Normal: 0,
  /** An encoded ConfChange; the driver passes it to applyConfChange() when committed. */
  ConfChange: 1,
} as const;
/** EntryType is the union of entry kinds. */
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** Entry is one record of the replicated log. */
export interface Entry {
  readonly term: Term;
  readonly index: Index;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** HardState is what a node must persist before it sends anything that depends on it. */
export interface HardState {
  readonly term: Term;
  /** The node voted for in `term`, or NO_NODE. */
  readonly vote: NodeId;
  /** The highest index known committed. It may be persisted lazily: it never goes back. */
  readonly commit: Index;
}

/** ConfState is a membership configuration, possibly joint (votersOutgoing non-empty). */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** The outgoing voters of a joint configuration; empty when not joint. */
  readonly votersOutgoing: readonly NodeId[];
  /** Voters of the outgoing config that become learners when the joint config is left. */
  readonly learnersNext: readonly NodeId[];
  /** Whether the leader leaves the joint configuration by itself once it is committed. */
  readonly autoLeave: boolean;
}

/** SnapshotMetadata says which log prefix a snapshot replaces. */
export interface SnapshotMetadata {
  readonly index: Index;
  readonly term: Term;
  readonly confState: ConfState;
}

/** Snapshot is the state machine's state at metadata.index, opaque to the core. */
export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
}

/** ConfChangeType is one kind of membership step. */
export type ConfChangeType = 'addVoter' | 'addLearner' | 'removeNode';

/** ConfChangeSingle adds or removes one node. */
export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
}

/**
 * ConfChangeTransition says how a change that needs joint consensus is left:
 * 'auto' lets the core choose (single-step when possible, else joint with automatic leave),
 * 'implicit' forces joint consensus and leaves it automatically, 'explicit' forces joint
 * consensus and waits for an empty ConfChange proposed by the application to leave it.
 */
export type ConfChangeTransition = 'auto' | 'implicit' | 'explicit';

/** ConfChange is a membership change; an empty `changes` list means "leave joint". */
export interface ConfChange {
  readonly transition: ConfChangeTransition;
  readonly changes: readonly ConfChangeSingle[];
  /** Opaque application context carried with the change (e.g. the new member's URLs). */
  readonly context?: Uint8Array;
}

/** Role is the part a node plays in its current term. */
export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** SoftState is volatile state the driver may want to observe; it is never persisted. */
export interface SoftState {
  readonly leaderId: NodeId;
  readonly role: Role;
}

/** ReadState answers a readIndex() request: serve the read once applied >= index. */
export interface ReadState {
  readonly index: Index;
  readonly context: Uint8Array;
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
}

/** AppendMessage carries entries after (logTerm, index), and the leader's commit index. */
export interface AppendMessage extends MessageBase {
  readonly type: 'append';
  readonly logTerm: Term;
  readonly index: Index;
  readonly entries: readonly Entry[];
  readonly commit: Index;
}

/** AppendResponseMessage acknowledges entries up to `index`, or rejects an append at `index`. */
export interface AppendResponseMessage extends MessageBase {
  readonly type: 'appendResponse';
  readonly index: Index;
  readonly reject: boolean;
  /** On reject: the follower's guess of the last index that may match (fast back-off, §5.3). */
  readonly rejectHint: Index;
  /** On reject: the follower's term at rejectHint. */
  readonly logTerm: Term;
}

/** VoteMessage asks for a vote (or, with type 'preVote', whether a vote would be granted). */
export interface VoteMessage extends MessageBase {
  readonly type: 'vote' | 'preVote';
  readonly logTerm: Term;
  readonly index: Index;
  /** Set when campaigning because the leader sent TimeoutNow: voters skip their lease check. */
  readonly leaderTransfer: boolean;
}

/** VoteResponseMessage grants or refuses a vote or pre-vote. */
export interface VoteResponseMessage extends MessageBase {
  readonly type: 'voteResponse' | 'preVoteResponse';
  readonly reject: boolean;
  /**
   * On reject: the voter's commit index and the term of its entry there (0 when unknown). A
   * candidate whose log has that entry with that term shares the whole prefix (log
   * matching, §5.3) and may commit it: this is how a candidate that still counts a
   * removed node in its configuration learns that the removal was committed.
   */
  readonly commit: Index;
  readonly commitTerm: Term;
}

/** SnapshotMessage sends a snapshot to a follower whose next entries were compacted. */
export interface SnapshotMessage extends MessageBase {
  readonly type: 'snapshot';
  readonly snapshot: Snapshot;
}

/** HeartbeatMessage keeps followers from campaigning and carries a ReadIndex context. */
export interface HeartbeatMessage extends MessageBase {
  readonly type: 'heartbeat';
  readonly commit: Index;
  readonly context: Uint8Array | undefined;
}

/** HeartbeatResponseMessage answers a heartbeat, echoing its context. */
export interface HeartbeatResponseMessage extends MessageBase {
  readonly type: 'heartbeatResponse';
  readonly context: Uint8Array | undefined;
}

/** TimeoutNowMessage tells a caught-up voter to campaign at once (leader transfer). */
export interface TimeoutNowMessage extends MessageBase {
  readonly type: 'timeoutNow';
}

/** ReadIndexMessage forwards a follower's ReadIndex request to the leader. */
export interface ReadIndexMessage extends MessageBase {
  readonly type: 'readIndex';
  readonly context: Uint8Array;
}

/** ReadIndexResponseMessage returns the read index for a forwarded request. */
export interface ReadIndexResponseMessage extends MessageBase {
  readonly type: 'readIndexResponse';
  readonly index: Index;
  readonly context: Uint8Array;
}

/** Message is everything one node sends another. */
export type Message =
  | AppendMessage
  | AppendResponseMessage
  | VoteMessage
  | VoteResponseMessage
  | SnapshotMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | TimeoutNowMessage
  | ReadIndexMessage
  | ReadIndexResponseMessage;

/** MessageType is the union of message discriminants. */
export type MessageType = Message['type'];

/**
 * Ready is everything the driver must do for the core, handed out by ready() and
 * acknowledged by advance(). The driver's order:
 *   1. start persisting `snapshot`, `entries` and `hardState` (one fsync when mustSync);
 *   2. send `messages` at once — they never depend on this node's unpersisted state, which
 *      lets a leader replicate in parallel with its own write (Raft thesis §10.2.1);
 *   3. once persisted, send `messagesAfterPersist` (votes cast and acknowledgements);
 *   4. apply `committedEntries` (passing ConfChange entries to applyConfChange());
 *   5. call advance(ready).
 */
export interface Ready {
  /** Set when role or leader changed since the previous Ready. */
  readonly softState: SoftState | undefined;
  /** Set when term, vote or commit changed since the previous Ready. */
  readonly hardState: HardState | undefined;
  /** Entries to append to stable storage, replacing any stored suffix from entries[0].index. */
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader, to install into stable storage before entries. */
  readonly snapshot: Snapshot | undefined;
  /** Committed entries to apply, in order. Persist `entries` before applying these. */
  readonly committedEntries: readonly Entry[];
  /** Messages that may be sent before this Ready is persisted. */
  readonly messages: readonly Message[];
  /** Messages that must wait until this Ready is persisted. */
  readonly messagesAfterPersist: readonly Message[];
  /** Answers to readIndex() requests. */
  readonly readStates: readonly ReadState[];
  /** Whether persisting this Ready needs an fsync (new entries, term or vote). */
  readonly mustSync: boolean;
}

/** Logger is how the core reports what it does; the driver supplies one. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** SILENT_LOGGER discards everything; the simulator uses it. */
export const SILENT_LOGGER: Logger = { debug() {}, info() {}, warn() {} };

/** EMPTY_HARD_STATE is a fresh node's hard state. */
export const EMPTY_HARD_STATE: HardState = { term: 0, vote: NO_NODE, commit: 0 };

/** EMPTY_CONF_STATE is the configuration of a node that has not been bootstrapped. */
export const EMPTY_CONF_STATE: ConfState = {
  voters: [],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
};

/** ENTRY_OVERHEAD_BYTES approximates an entry's framing cost in size limits. */
export const ENTRY_OVERHEAD_BYTES = 16;

/** entrySizeBytes is the size an entry counts for in message and Ready byte limits. */
export function entrySizeBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/** isHardStateEqual compares two hard states field by field. */
export function isHardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
