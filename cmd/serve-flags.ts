// The flags of `stratakv serve`. They are etcd's flags with etcd's names, meanings and
// defaults, so an operator's etcd command line (or systemd unit) works unchanged for the
// flags we support; the checks that etcd makes before it starts are made here with etcd's
// wording. A few flags are ours (marked so in SERVE_FLAGS_USAGE), --zone and --join among
// them. Anything we do not understand is refused by name rather than ignored: a flag that
// silently does nothing is how a cluster ends up configured differently from what its
// operator believes.

import { isZoneName, ZONE_NAME_BYTES_MAX } from '../src/node/membership.ts';
// Types only: main.ts parses these flags for every verb, and the client verbs should not load pino.
import type { LogFormat, LogLevel } from '../src/obs/index.ts';

/** UsageError is a malformed command line; `flag` names the flag (or argument) at fault. */
export class UsageError extends Error {
  override name = 'UsageError';
  /** The flag as the user would type it (for example `--election-timeout`), or the argument. */
  readonly flag: string;

  constructor(flag: string, message: string) {
    super(message);
    this.flag = flag;
  }
}

/** InitialClusterMember is one entry of --initial-cluster: a member name and its peer URLs. */
export interface InitialClusterMember {
  readonly name: string;
  /** In the order given; a name repeated in --initial-cluster contributes several URLs. */
  readonly peerUrls: readonly string[];
}

/** ServeOptions is the parsed, checked command line of `stratakv serve`. */
export interface ServeOptions {
  /** --name: this member's human-readable name. */
  readonly name: string;
  /** --data-dir: where this member keeps its log, snapshots and state (default `${name}.etcd`). */
  readonly dataDir: string;
  /** --listen-client-urls: where the etcd-compatible gRPC API listens. */
  readonly listenClientUrls: readonly string[];
  /** --advertise-client-urls: the client URLs this member publishes to the cluster. */
  readonly advertiseClientUrls: readonly string[];
  /** --listen-peer-urls: where peers reach this member. */
  readonly listenPeerUrls: readonly string[];
  /** --initial-advertise-peer-urls: the peer URLs this member publishes when bootstrapping. */
  readonly initialAdvertisePeerUrls: readonly string[];
  /** --initial-cluster: every member of the bootstrap cluster, including this one. */
  readonly initialCluster: readonly InitialClusterMember[];
  /** --initial-cluster-state: `new` bootstraps a cluster; `existing` joins one. */
  readonly initialClusterState: 'new' | 'existing';
  /** --initial-cluster-token: keeps two clusters bootstrapped from the same URLs apart. */
  readonly initialClusterToken: string;
  /** --heartbeat-interval in milliseconds. */
  readonly heartbeatIntervalMs: number;
  /** --election-timeout in milliseconds; at least 5 × the heartbeat interval. */
  readonly electionTimeoutMs: number;
  /** --max-request-bytes: the largest client request the server accepts. */
  readonly maxRequestBytes: number;
  /** --snapshot-count: applied entries that trigger a snapshot (etcd 3.6's default, 10,000). */
  readonly snapshotCount: number;
  /** --snapshot-catchup-entries: entries kept in the log before a snapshot at least (etcd: 5,000). */
  readonly snapshotCatchupEntries: number;
  /** --snapshot-send-rate-bytes: bytes per second the leader's snapshot sends share (ours; TiKV's 100 MiB/s). */
  readonly snapshotSendRateBytes: number;
  /** --snapshot-send-rate-bytes-under-load: the same while the leader serves client requests (ours; 24 MiB/s). */
  readonly snapshotSendRateBytesUnderLoad: number;
  /**
   * --quota-backend-bytes: past this size of the state machine on disk, Puts are refused and a
   * NOSPACE alarm is raised (etcd's meaning: 0 is the default, 2 GiB; negative disables it).
   */
  readonly quotaBackendBytes: number;
  /** --integrity-check-entries: applied entries between two cross-replica integrity checkpoints (ours; 0: none by count). */
  readonly integrityCheckEntries: number;
  /** --integrity-check-interval: milliseconds after which a checkpoint is proposed if the state changed (ours; 0: none by time). */
  readonly integrityCheckIntervalMs: number;
  /** --scrub-interval: milliseconds between two full re-reads of the state against its digest (ours; 0: never). */
  readonly scrubIntervalMs: number;
  /** --scrub-rate-bytes: bytes per second a scrub reads at most (ours). */
  readonly scrubRateBytes: number;
  /** --repair-corrupt-state: rebuild a state machine that fails its check at start from this member's snapshot and log (ours; off). */
  readonly repairCorruptState: boolean;
  /** --unsafe-no-state-digest: keep no state digest, for benchmarks that measure its cost only (ours; off). */
  readonly unsafeNoStateDigest: boolean;
  /** --log-level: the least severe level logged. */
  readonly logLevel: LogLevel;
  /** --log-format: `json` lines (etcd's default) or `text` for a terminal (etcd's `console` is accepted for it). */
  readonly logFormat: LogFormat;
  /** --zone: this member's zone label, published to the cluster (ours; '' for none). */
  readonly zone: string;
  /**
   * --join: client URLs of a running cluster (ours). The member waits, bootstrapping nothing,
   * until that cluster lists it (someone ran MemberAdd with its peer URLs), then starts as an
   * existing member with the member list and token it learned (cmd/serve-join.ts). Empty: not
   * joining. Given, the --initial-cluster* flags may not be, and initialClusterState is 'existing'.
   */
  readonly join: readonly string[];
  /** --join-timeout: milliseconds --join waits to be added before giving up (ours; 0: forever). */
  readonly joinTimeoutMs: number;
  /** --listen-metrics-urls: where /metrics, /health and the status page listen (empty: not served). */
  readonly listenMetricsUrls: readonly string[];
  /** --metrics: basic, or extensive (adds grpc_server_handling_seconds), as etcd's. */
  readonly metrics: 'basic' | 'extensive';
}

/** SERVE_DEFAULTS are etcd's defaults for the flags `serve` takes. */
export const SERVE_DEFAULTS = {
  name: 'default',
  listenClientUrls: 'http://localhost:2379',
  advertiseClientUrls: 'http://localhost:2379',
  listenPeerUrls: 'http://localhost:2380',
  initialAdvertisePeerUrls: 'http://localhost:2380',
  initialClusterState: 'new',
  initialClusterToken: 'etcd-cluster',
  heartbeatIntervalMs: 100,
  electionTimeoutMs: 1000,
  maxRequestBytes: 1572864,
  snapshotCount: 10_000,
  snapshotCatchupEntries: 5_000,
  snapshotSendRateBytes: 100 * 1024 * 1024,
  snapshotSendRateBytesUnderLoad: 24 * 1024 * 1024,
  quotaBackendBytes: 0,
  integrityCheckEntries: 10_000,
  integrityCheckIntervalMs: 60_000,
  scrubIntervalMs: 24 * 60 * 60 * 1000,
  scrubRateBytes: 16 * 1024 * 1024,
  logLevel: 'info',
  logFormat: 'json',
  zone: '',
  joinTimeoutMs: 0,
  metrics: 'basic',
} as const;

/** SERVE_FLAGS_USAGE describes the flags of `stratakv serve` for the help text. */
export const SERVE_FLAGS_USAGE = `serve flags (etcd's names and defaults; --flag=value or --flag value):
  --name NAME                          member name (default "default")
  --data-dir DIR                       data directory (default "\${name}.etcd")
  --listen-client-urls URLS            client API listen URLs (default http://localhost:2379)
  --advertise-client-urls URLS         client URLs published to the cluster (default http://localhost:2379)
  --listen-peer-urls URLS              peer listen URLs (default http://localhost:2380)
  --initial-advertise-peer-urls URLS   peer URLs published when bootstrapping (default http://localhost:2380)
  --initial-cluster NAME=URL,...       bootstrap members (default "\${name}=\${initial-advertise-peer-urls}")
  --initial-cluster-state new|existing (default new)
  --initial-cluster-token TOKEN        (default "etcd-cluster")
  --heartbeat-interval MS              (default 100)
  --election-timeout MS                at least 5 x heartbeat (default 1000)
  --max-request-bytes BYTES            (default 1572864)
  --snapshot-count N                   applied entries that trigger a snapshot (default 10000)
  --snapshot-catchup-entries N         entries kept before a snapshot at least (default 5000)
  --snapshot-send-rate-bytes BYTES     per-second rate the leader's snapshot sends share (default 104857600)
  --snapshot-send-rate-bytes-under-load BYTES
                                       the same while the leader serves clients (default 25165824)
  --quota-backend-bytes BYTES          refuse Puts and raise NOSPACE past this size on disk
                                       (default 0: 2 GiB; negative: no quota)
  --integrity-check-entries N          entries between two cross-replica digest checkpoints (default 10000; 0: none)
  --integrity-check-interval MS        a checkpoint after this long if the state changed (default 60000; 0: none)
  --scrub-interval MS                  re-read the whole state against its digest this often (default 86400000; 0: never)
  --scrub-rate-bytes BYTES             bytes per second a scrub reads at most (default 16777216)
  --repair-corrupt-state[=true]        when the state fails its check at start, move it aside and rebuild it
                                       from this member's snapshot and log (default false: refuse to start)
  --unsafe-no-state-digest[=true]      keep no state digest (benchmarks only: nothing can be verified, and a
                                       member started without it later refuses this data)
  --log-level debug|info|warn|error    (default info)
  --listen-metrics-urls URLS           serve /metrics (Prometheus), /health and the status page (/)
                                       on these URLs too (default none; the client URLs always answer
                                       /health and /version)
  --metrics basic|extensive            extensive adds per-method gRPC latency histograms (default basic)
  --log-format json|text               one JSON object per line on stderr, as etcd's (default json);
                                       text: "time level [name] message {fields}" for a terminal
                                       (console, etcd's name for it, is accepted too)
  --zone NAME                          this member's zone label, shown by "stratakv members" (ours;
                                       1-63 of A-Z a-z 0-9 . _ -; default none)
  --join CLIENT_URLS                   join the running cluster at these client URLs (ours): wait,
                                       serving nothing, until it adds this member (member add with
                                       --initial-advertise-peer-urls), then start from the member
                                       list and token it answers; not with --initial-cluster* flags;
                                       ignored once the data dir holds this member's state
  --join-timeout MS                    give up waiting to be added after MS (default 0: wait forever)
  URLs are http://host:port, comma-separated; TLS (https) is not supported yet.`;

const FLAG_NAMES = [
  'name',
  'data-dir',
  'listen-client-urls',
  'advertise-client-urls',
  'listen-peer-urls',
  'initial-advertise-peer-urls',
  'initial-cluster',
  'initial-cluster-state',
  'initial-cluster-token',
  'heartbeat-interval',
  'election-timeout',
  'max-request-bytes',
  'snapshot-count',
  'snapshot-catchup-entries',
  'snapshot-send-rate-bytes',
  'snapshot-send-rate-bytes-under-load',
  'quota-backend-bytes',
  'integrity-check-entries',
  'integrity-check-interval',
  'scrub-interval',
  'scrub-rate-bytes',
  'repair-corrupt-state',
  'unsafe-no-state-digest',
  'log-level',
  'log-format',
  'zone',
  'join',
  'join-timeout',
  'listen-metrics-urls',
  'metrics',
] as const;
type FlagName = (typeof FLAG_NAMES)[number];

// --log-level's values (src/obs's LogLevel), least severe first.
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
// --log-format's values; etcd 3.5+ spells the text one `console` (zap's encoder name).
const LOG_FORMAT_OF_FLAG: Readonly<Record<string, LogFormat>> = { json: 'json', text: 'text', console: 'text' };

/** parseLogLevel reads a --log-level value (`flag` names the flag for the UsageError). */
export function parseLogLevel(flag: string, text: string): LogLevel {
  const level = LOG_LEVELS.find((candidate) => candidate === text);
  if (level === undefined) throw new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: must be one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

/** parseLogFormat reads a --log-format value (`flag` names the flag for the UsageError). */
export function parseLogFormat(flag: string, text: string): LogFormat {
  const format = Object.hasOwn(LOG_FORMAT_OF_FLAG, text) ? LOG_FORMAT_OF_FLAG[text] : undefined;
  if (format === undefined) throw new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: must be json, text or console`);
  return format;
}

// Go's bool flags: `--flag` alone is true; a value must be given as `--flag=value`.
const BOOLEAN_FLAGS: readonly FlagName[] = ['repair-corrupt-state', 'unsafe-no-state-digest'];

/** URLS_PER_FLAG_MAX bounds one URL list flag, so a runaway script cannot make us bind thousands of sockets. */
export const URLS_PER_FLAG_MAX = 64;
/** INITIAL_CLUSTER_MEMBERS_MAX bounds --initial-cluster; Raft clusters past a few dozen voters make no sense. */
export const INITIAL_CLUSTER_MEMBERS_MAX = 64;

function isFlagName(name: string): name is FlagName {
  return (FLAG_NAMES as readonly string[]).includes(name);
}

/**
 * parseServeFlags turns the arguments after `serve` into ServeOptions, applying etcd's
 * defaults and etcd's checks. It throws a UsageError naming the flag on any bad input.
 */
export function parseServeFlags(args: readonly string[]): ServeOptions {
  const given = collectFlags(args);
  const name = given.get('name') ?? SERVE_DEFAULTS.name;
  if (name === '') throw new UsageError('--name', '--name must not be empty');
  const dataDir = given.get('data-dir') ?? `${name}.etcd`;
  if (dataDir === '') throw new UsageError('--data-dir', '--data-dir must not be empty');

  const listenClientUrls = parseUrlList('--listen-client-urls', given.get('listen-client-urls') ?? SERVE_DEFAULTS.listenClientUrls);
  const advertiseClientUrls = parseUrlList('--advertise-client-urls', given.get('advertise-client-urls') ?? SERVE_DEFAULTS.advertiseClientUrls);
  const listenPeerUrls = parseUrlList('--listen-peer-urls', given.get('listen-peer-urls') ?? SERVE_DEFAULTS.listenPeerUrls);
  const initialAdvertisePeerUrls = parseUrlList(
    '--initial-advertise-peer-urls',
    given.get('initial-advertise-peer-urls') ?? SERVE_DEFAULTS.initialAdvertisePeerUrls,
  );
  // etcd: when --initial-cluster is not given, the cluster is this member alone, at its
  // advertised peer URLs (InitialClusterFromName). With the default name that is etcd's
  // documented default, "default=http://localhost:2380".
  const initialCluster = parseInitialCluster(
    given.get('initial-cluster') ?? initialAdvertisePeerUrls.map((url) => `${name}=${url}`).join(','),
  );

  const state = given.get('initial-cluster-state') ?? SERVE_DEFAULTS.initialClusterState;
  if (state !== 'new' && state !== 'existing') {
    throw new UsageError('--initial-cluster-state', `invalid value ${JSON.stringify(state)} for flag --initial-cluster-state: must be new or existing`);
  }
  const initialClusterToken = given.get('initial-cluster-token') ?? SERVE_DEFAULTS.initialClusterToken;
  if (initialClusterToken === '') throw new UsageError('--initial-cluster-token', '--initial-cluster-token must not be empty');

  const heartbeatIntervalMs = parsePositiveInteger('--heartbeat-interval', given.get('heartbeat-interval'), SERVE_DEFAULTS.heartbeatIntervalMs);
  const electionTimeoutMs = parsePositiveInteger('--election-timeout', given.get('election-timeout'), SERVE_DEFAULTS.electionTimeoutMs);
  if (5 * heartbeatIntervalMs > electionTimeoutMs) {
    // etcd's wording (embed.Config.Validate).
    throw new UsageError(
      '--election-timeout',
      `--election-timeout[${electionTimeoutMs}ms] should be at least as 5 times as --heartbeat-interval[${heartbeatIntervalMs}ms]`,
    );
  }
  const maxRequestBytes = parsePositiveInteger('--max-request-bytes', given.get('max-request-bytes'), SERVE_DEFAULTS.maxRequestBytes);

  const snapshotCount = parsePositiveInteger('--snapshot-count', given.get('snapshot-count'), SERVE_DEFAULTS.snapshotCount);
  const snapshotCatchupEntries = parsePositiveInteger('--snapshot-catchup-entries', given.get('snapshot-catchup-entries'), SERVE_DEFAULTS.snapshotCatchupEntries);
  const snapshotSendRateBytes = parsePositiveInteger('--snapshot-send-rate-bytes', given.get('snapshot-send-rate-bytes'), SERVE_DEFAULTS.snapshotSendRateBytes);
  const snapshotSendRateBytesUnderLoad = parsePositiveInteger(
    '--snapshot-send-rate-bytes-under-load',
    given.get('snapshot-send-rate-bytes-under-load'),
    SERVE_DEFAULTS.snapshotSendRateBytesUnderLoad,
  );

  const quotaBackendBytes = parseInteger('--quota-backend-bytes', given.get('quota-backend-bytes'), SERVE_DEFAULTS.quotaBackendBytes);

  const integrityCheckEntries = parseNonNegativeInteger('--integrity-check-entries', given.get('integrity-check-entries'), SERVE_DEFAULTS.integrityCheckEntries);
  const integrityCheckIntervalMs = parseNonNegativeInteger('--integrity-check-interval', given.get('integrity-check-interval'), SERVE_DEFAULTS.integrityCheckIntervalMs);
  const scrubIntervalMs = parseNonNegativeInteger('--scrub-interval', given.get('scrub-interval'), SERVE_DEFAULTS.scrubIntervalMs);
  const scrubRateBytes = parsePositiveInteger('--scrub-rate-bytes', given.get('scrub-rate-bytes'), SERVE_DEFAULTS.scrubRateBytes);
  const repairText = given.get('repair-corrupt-state') ?? 'false';
  if (repairText !== 'true' && repairText !== 'false') {
    throw new UsageError('--repair-corrupt-state', `invalid value ${JSON.stringify(repairText)} for flag --repair-corrupt-state: must be true or false`);
  }

  const noDigestText = given.get('unsafe-no-state-digest') ?? 'false';
  if (noDigestText !== 'true' && noDigestText !== 'false') {
    throw new UsageError('--unsafe-no-state-digest', `invalid value ${JSON.stringify(noDigestText)} for flag --unsafe-no-state-digest: must be true or false`);
  }

  const logLevel = parseLogLevel('--log-level', given.get('log-level') ?? SERVE_DEFAULTS.logLevel);
  const logFormat = parseLogFormat('--log-format', given.get('log-format') ?? SERVE_DEFAULTS.logFormat);

  const zone = given.get('zone') ?? SERVE_DEFAULTS.zone;
  if (given.has('zone') && !isZoneName(zone)) {
    throw new UsageError('--zone', `invalid value ${JSON.stringify(zone)} for flag --zone: 1 to ${ZONE_NAME_BYTES_MAX} characters of A-Z a-z 0-9 . _ -`);
  }

  const joinText = given.get('join');
  const join = joinText === undefined ? [] : parseUrlList('--join', joinText);
  if (joinText !== undefined) {
    // The cluster answers these; given too, they could only disagree with it.
    for (const flag of ['initial-cluster', 'initial-cluster-state', 'initial-cluster-token'] as const) {
      if (given.has(flag)) throw new UsageError(`--${flag}`, `--${flag} cannot be used with --join: a joining member learns the cluster's members and token from it`);
    }
  }
  const joinTimeoutMs = parseNonNegativeInteger('--join-timeout', given.get('join-timeout'), SERVE_DEFAULTS.joinTimeoutMs);
  if (given.has('join-timeout') && joinText === undefined) throw new UsageError('--join-timeout', '--join-timeout needs --join');

  const metricsText = given.get('listen-metrics-urls');
  const listenMetricsUrls = metricsText === undefined || metricsText === '' ? [] : parseUrlList('--listen-metrics-urls', metricsText);
  const metrics = given.get('metrics') ?? SERVE_DEFAULTS.metrics;
  if (metrics !== 'basic' && metrics !== 'extensive') {
    throw new UsageError('--metrics', `invalid value ${JSON.stringify(metrics)} for flag --metrics: must be basic or extensive`);
  }

  checkLocalMember(name, initialCluster, initialAdvertisePeerUrls);

  return {
    name,
    dataDir,
    listenClientUrls,
    advertiseClientUrls,
    listenPeerUrls,
    initialAdvertisePeerUrls,
    initialCluster,
    // A joining member never bootstraps a cluster, even before it has learned the real one.
    initialClusterState: joinText === undefined ? state : 'existing',
    initialClusterToken,
    heartbeatIntervalMs,
    electionTimeoutMs,
    maxRequestBytes,
    snapshotCount,
    snapshotCatchupEntries,
    snapshotSendRateBytes,
    snapshotSendRateBytesUnderLoad,
    quotaBackendBytes,
    integrityCheckEntries,
    integrityCheckIntervalMs,
    scrubIntervalMs,
    scrubRateBytes,
    repairCorruptState: repairText === 'true',
    unsafeNoStateDigest: noDigestText === 'true',
    logLevel,
    logFormat,
    zone,
    join,
    joinTimeoutMs,
    listenMetricsUrls,
    metrics,
  };
}

/** collectFlags reads `--flag=value`, `--flag value` (and Go's single-dash forms); the last occurrence wins, as in etcd. */
function collectFlags(args: readonly string[]): Map<FlagName, string> {
  const given = new Map<FlagName, string>();
  for (let index = 0; index < args.length; index++) {
    const argument = args[index] ?? '';
    if (!argument.startsWith('-') || argument === '-' || argument === '--') {
      throw new UsageError(argument, `serve takes no arguments, only flags: unexpected ${JSON.stringify(argument)}`);
    }
    const body = argument.replace(/^--?/, '');
    const equals = body.indexOf('=');
    const flagName = equals === -1 ? body : body.slice(0, equals);
    if (!isFlagName(flagName)) {
      throw new UsageError(`--${flagName}`, `unknown flag --${flagName}`);
    }
    let value: string;
    if (equals !== -1) {
      value = body.slice(equals + 1);
    } else if (BOOLEAN_FLAGS.includes(flagName)) {
      value = 'true';
    } else {
      const next = args[index + 1];
      if (next === undefined) throw new UsageError(`--${flagName}`, `flag needs an argument: --${flagName}`);
      value = next;
      index++;
    }
    given.set(flagName, value);
  }
  return given;
}

function parsePositiveInteger(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^[0-9]+$/.test(text)) throw new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: not a positive integer`);
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: must be a positive integer`);
  }
  return value;
}

function parseNonNegativeInteger(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (text === '0') return 0;
  return parsePositiveInteger(flag, text, fallback);
}

/** parseInteger reads a flag that may be negative or 0 (etcd's int64 flags, such as --quota-backend-bytes). */
function parseInteger(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^-?[0-9]+$/.test(text) || !Number.isSafeInteger(value)) throw new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: not an integer`);
  return value;
}

/** parseUrlList checks a comma-separated list of http://host:port URLs and answers them normalized. */
function parseUrlList(flag: string, text: string): string[] {
  const parts = text.split(',').map((part) => part.trim());
  if (parts.length > URLS_PER_FLAG_MAX) throw new UsageError(flag, `${flag} has ${parts.length} URLs, more than ${URLS_PER_FLAG_MAX}`);
  const urls: string[] = [];
  for (const part of parts) {
    const url = parseHttpUrl(flag, part);
    if (urls.includes(url)) throw new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: duplicate URL ${url}`);
    urls.push(url);
  }
  return urls;
}

/** parseHttpUrl accepts exactly http://host:port (an optional trailing slash) and answers it without the slash. */
export function parseHttpUrl(flag: string, text: string): string {
  const invalid = (why: string): UsageError => new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: ${why}`);
  if (text === '') throw invalid('empty URL');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(text)?.[1]?.toLowerCase();
  if (scheme === 'https' || scheme === 'unixs') throw invalid('TLS is not supported yet; use http://');
  if (scheme !== 'http') throw invalid('URL must be http://host:port');
  const match = /^http:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})\/?$/i.exec(text);
  if (match === null) throw invalid('URL must be http://host:port (no path, query or credentials)');
  const host = match[1] ?? '';
  const port = Number(match[2]);
  if (port < 1 || port > 65535) throw invalid(`port ${port} is out of range`);
  return `http://${host}:${port}`;
}

/** parseInitialCluster reads name=url,name=url; a name may repeat to give a member several URLs. */
function parseInitialCluster(text: string): InitialClusterMember[] {
  const flag = '--initial-cluster';
  const byName = new Map<string, string[]>();
  const seenUrls = new Map<string, string>();
  for (const rawEntry of text.split(',')) {
    const entry = rawEntry.trim();
    const equals = entry.indexOf('=');
    if (equals <= 0) throw new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: ${JSON.stringify(entry)} is not name=url`);
    const memberName = entry.slice(0, equals);
    const url = parseHttpUrl(flag, entry.slice(equals + 1));
    const owner = seenUrls.get(url);
    if (owner !== undefined) {
      throw new UsageError(flag, `invalid value ${JSON.stringify(text)} for flag ${flag}: URL ${url} is given for ${owner} and for ${memberName}`);
    }
    seenUrls.set(url, memberName);
    let urls = byName.get(memberName);
    if (urls === undefined) {
      if (byName.size >= INITIAL_CLUSTER_MEMBERS_MAX) throw new UsageError(flag, `${flag} has more than ${INITIAL_CLUSTER_MEMBERS_MAX} members`);
      urls = [];
      byName.set(memberName, urls);
    }
    urls.push(url);
  }
  return [...byName].map(([memberName, peerUrls]) => ({ name: memberName, peerUrls }));
}

/** checkLocalMember makes etcd's bootstrap check: this member is in the cluster at exactly its advertised peer URLs. */
function checkLocalMember(name: string, initialCluster: readonly InitialClusterMember[], advertisePeerUrls: readonly string[]): void {
  const local = initialCluster.find((member) => member.name === name);
  if (local === undefined) {
    throw new UsageError('--initial-cluster', `couldn't find local name ${JSON.stringify(name)} in the initial cluster configuration`);
  }
  const inCluster = [...local.peerUrls].sort();
  const advertised = [...advertisePeerUrls].sort();
  if (inCluster.join(',') !== advertised.join(',')) {
    const listed = local.peerUrls.map((url) => `${name}=${url}`).join(',');
    throw new UsageError(
      '--initial-cluster',
      `--initial-cluster has ${listed} but missing from --initial-advertise-peer-urls=${advertisePeerUrls.join(',')} ` +
        `(resolved urls: ${JSON.stringify(advertised.join(','))} != ${JSON.stringify(inCluster.join(','))})`,
    );
  }
}
