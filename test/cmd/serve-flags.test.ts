// parseServeFlags takes etcd's serve flags with etcd's defaults and refuses what etcd refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseServeFlags, SERVE_FLAGS_USAGE, UsageError } from '../../cmd/serve-flags.ts';

function refusal(args: readonly string[]): UsageError {
  try {
    parseServeFlags(args);
  } catch (error) {
    assert.ok(error instanceof UsageError, `expected a UsageError, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${JSON.stringify(args)} to be refused`);
}

test('no flags gives etcd defaults', () => {
  assert.deepEqual(parseServeFlags([]), {
    name: 'default',
    dataDir: 'default.etcd',
    listenClientUrls: ['http://localhost:2379'],
    advertiseClientUrls: ['http://localhost:2379'],
    listenPeerUrls: ['http://localhost:2380'],
    initialAdvertisePeerUrls: ['http://localhost:2380'],
    initialCluster: [{ name: 'default', peerUrls: ['http://localhost:2380'] }],
    initialClusterState: 'new',
    initialClusterToken: 'etcd-cluster',
    heartbeatIntervalMs: 100,
    electionTimeoutMs: 1000,
    maxRequestBytes: 1572864,
    snapshotCount: 10000,
    snapshotCatchupEntries: 5000,
    snapshotSendRateBytes: 104857600,
    snapshotSendRateBytesUnderLoad: 25165824,
    quotaBackendBytes: 0,
    integrityCheckEntries: 10000,
    integrityCheckIntervalMs: 60000,
    scrubIntervalMs: 86400000,
    scrubRateBytes: 16777216,
    repairCorruptState: false,
    unsafeNoStateDigest: false,
    logLevel: 'info',
    logFormat: 'json',
    zone: '',
    join: [],
    joinTimeoutMs: 0,
    listenMetricsUrls: [],
    metrics: 'basic',
  });
});

test('--listen-metrics-urls and --metrics are etcd\'s; bad values are refused naming the flag', () => {
  const options = parseServeFlags(['--listen-metrics-urls=http://127.0.0.1:2381,http://[::1]:2381', '--metrics', 'extensive']);
  assert.deepEqual(options.listenMetricsUrls, ['http://127.0.0.1:2381', 'http://[::1]:2381']);
  assert.equal(options.metrics, 'extensive');
  assert.equal(refusal(['--metrics=verbose']).flag, '--metrics');
  assert.match(refusal(['--metrics=verbose']).message, /must be basic or extensive/);
  assert.equal(refusal(['--listen-metrics-urls=ftp://x:1']).flag, '--listen-metrics-urls');
});

test('every flag is read, in both --flag=value and --flag value forms', () => {
  const options = parseServeFlags([
    '--name=n1',
    '--data-dir', '/var/lib/n1',
    '--listen-client-urls=http://127.0.0.1:12379,http://10.0.0.1:12379',
    '--advertise-client-urls', 'http://10.0.0.1:12379',
    '--listen-peer-urls=http://127.0.0.1:12380',
    '--initial-advertise-peer-urls', 'http://10.0.0.1:12380',
    '--initial-cluster=n1=http://10.0.0.1:12380,n2=http://10.0.0.2:12380,n3=http://10.0.0.3:12380',
    '--initial-cluster-state', 'existing',
    '--initial-cluster-token=tok',
    '--heartbeat-interval', '50',
    '--election-timeout=250',
    '--max-request-bytes', '1048576',
    '--snapshot-count=1000',
    '--snapshot-catchup-entries', '200',
    '--snapshot-send-rate-bytes=1048576',
    '--snapshot-send-rate-bytes-under-load', '262144',
    '--quota-backend-bytes', '8589934592',
    '--integrity-check-entries', '0',
    '--integrity-check-interval=5000',
    '--scrub-interval', '60000',
    '--scrub-rate-bytes=1024',
    '--repair-corrupt-state',
    '--unsafe-no-state-digest=true',
    '--log-level=debug',
    '--log-format', 'text',
    '--zone', 'eu-west-1a',
    '--listen-metrics-urls', 'http://127.0.0.1:12381',
    '--metrics=extensive',
  ]);
  assert.deepEqual(options, {
    name: 'n1',
    dataDir: '/var/lib/n1',
    listenClientUrls: ['http://127.0.0.1:12379', 'http://10.0.0.1:12379'],
    advertiseClientUrls: ['http://10.0.0.1:12379'],
    listenPeerUrls: ['http://127.0.0.1:12380'],
    initialAdvertisePeerUrls: ['http://10.0.0.1:12380'],
    initialCluster: [
      { name: 'n1', peerUrls: ['http://10.0.0.1:12380'] },
      { name: 'n2', peerUrls: ['http://10.0.0.2:12380'] },
      { name: 'n3', peerUrls: ['http://10.0.0.3:12380'] },
    ],
    initialClusterState: 'existing',
    initialClusterToken: 'tok',
    heartbeatIntervalMs: 50,
    electionTimeoutMs: 250,
    maxRequestBytes: 1048576,
    snapshotCount: 1000,
    snapshotCatchupEntries: 200,
    snapshotSendRateBytes: 1048576,
    snapshotSendRateBytesUnderLoad: 262144,
    quotaBackendBytes: 8589934592,
    integrityCheckEntries: 0,
    integrityCheckIntervalMs: 5000,
    scrubIntervalMs: 60000,
    scrubRateBytes: 1024,
    repairCorruptState: true,
    unsafeNoStateDigest: true,
    logLevel: 'debug',
    logFormat: 'text',
    // --join conflicts with the --initial-cluster* flags: serve-flags-join.test.ts reads it.
    zone: 'eu-west-1a',
    join: [],
    joinTimeoutMs: 0,
    listenMetricsUrls: ['http://127.0.0.1:12381'],
    metrics: 'extensive',
  });
});

test('the data dir defaults to ${name}.etcd and the initial cluster to this member alone', () => {
  const options = parseServeFlags(['--name', 'alpha', '--initial-advertise-peer-urls', 'http://127.0.0.1:3380']);
  assert.equal(options.dataDir, 'alpha.etcd');
  assert.deepEqual(options.initialCluster, [{ name: 'alpha', peerUrls: ['http://127.0.0.1:3380'] }]);
});

test('a name repeated in --initial-cluster collects several peer URLs', () => {
  const options = parseServeFlags([
    '--name', 'a',
    '--initial-advertise-peer-urls', 'http://127.0.0.1:2380,http://[::1]:2380',
    '--initial-cluster', 'a=http://127.0.0.1:2380,b=http://127.0.0.2:2380,a=http://[::1]:2380/',
  ]);
  assert.deepEqual(options.initialCluster, [
    { name: 'a', peerUrls: ['http://127.0.0.1:2380', 'http://[::1]:2380'] },
    { name: 'b', peerUrls: ['http://127.0.0.2:2380'] },
  ]);
});

test('Go single-dash flags work as in etcd, and the last occurrence wins', () => {
  const options = parseServeFlags(['-log-level=warn', '--log-level', 'error']);
  assert.equal(options.logLevel, 'error');
});

test('--quota-backend-bytes takes etcd\'s values: 0 (the 2 GiB default), a size, or a negative value (no quota)', () => {
  assert.equal(parseServeFlags(['--quota-backend-bytes=0']).quotaBackendBytes, 0);
  assert.equal(parseServeFlags(['--quota-backend-bytes', '-1']).quotaBackendBytes, -1);
  assert.equal(refusal(['--quota-backend-bytes', '2GiB']).flag, '--quota-backend-bytes');
  assert.equal(refusal(['--quota-backend-bytes', '1.5']).flag, '--quota-backend-bytes');
  assert.equal(refusal(['--quota-backend-bytes', '99999999999999999999']).flag, '--quota-backend-bytes');
});

test('an unknown flag is refused by name', () => {
  assert.equal(refusal(['--bogus=1']).flag, '--bogus');
  assert.equal(refusal(['--listen-metrics-url', 'http://x:1']).flag, '--listen-metrics-url');
});

test('a positional argument or a flag without its value is refused', () => {
  assert.equal(refusal(['extra']).flag, 'extra');
  assert.equal(refusal(['--name']).flag, '--name');
});

test('bad values are refused, naming the flag', () => {
  const cases: [string[], string][] = [
    [['--heartbeat-interval', 'abc'], '--heartbeat-interval'],
    [['--heartbeat-interval', '0'], '--heartbeat-interval'],
    [['--election-timeout', '-5'], '--election-timeout'],
    [['--election-timeout', '1.5'], '--election-timeout'],
    [['--max-request-bytes', '99999999999999999999'], '--max-request-bytes'],
    [['--max-request-bytes='], '--max-request-bytes'],
    [['--initial-cluster-state', 'weird'], '--initial-cluster-state'],
    [['--log-level', 'verbose'], '--log-level'],
    [['--log-format', 'pretty'], '--log-format'],
    [['--log-format='], '--log-format'],
    [['--name='], '--name'],
    [['--data-dir='], '--data-dir'],
    [['--initial-cluster-token='], '--initial-cluster-token'],
    [['--listen-client-urls', 'localhost:2379'], '--listen-client-urls'],
    [['--listen-client-urls', 'http://localhost'], '--listen-client-urls'],
    [['--listen-client-urls', 'http://localhost:99999'], '--listen-client-urls'],
    [['--listen-client-urls', 'http://localhost:2379/path'], '--listen-client-urls'],
    [['--listen-client-urls', 'unix://sock:1'], '--listen-client-urls'],
    [['--listen-client-urls', 'http://a:1,http://a:1'], '--listen-client-urls'],
    [['--advertise-client-urls', 'http://a:1,'], '--advertise-client-urls'],
    [['--listen-peer-urls', 'http://u:p@a:1'], '--listen-peer-urls'],
    [['--initial-advertise-peer-urls', 'ftp://a:1'], '--initial-advertise-peer-urls'],
    [['--initial-cluster', 'default'], '--initial-cluster'],
    [['--initial-cluster', '=http://localhost:2380'], '--initial-cluster'],
    [['--initial-cluster', 'default=http://localhost:2380,other=http://localhost:2380'], '--initial-cluster'],
  ];
  for (const [args, flag] of cases) {
    assert.equal(refusal(args).flag, flag, JSON.stringify(args));
  }
});

test('https URLs are refused: TLS is not supported yet', () => {
  const error = refusal(['--listen-client-urls', 'https://localhost:2379']);
  assert.equal(error.flag, '--listen-client-urls');
  assert.match(error.message, /TLS is not supported yet/);
});

test('an election timeout under 5 x the heartbeat is refused with etcd\'s wording', () => {
  const error = refusal(['--heartbeat-interval', '100', '--election-timeout', '400']);
  assert.equal(error.flag, '--election-timeout');
  assert.equal(error.message, '--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]');
  assert.equal(parseServeFlags(['--heartbeat-interval', '100', '--election-timeout', '500']).electionTimeoutMs, 500);
});

test('this member must be in --initial-cluster, at its advertised peer URLs', () => {
  const missing = refusal(['--name', 'foo', '--initial-cluster', 'bar=http://localhost:2380']);
  assert.equal(missing.flag, '--initial-cluster');
  assert.equal(missing.message, 'couldn\'t find local name "foo" in the initial cluster configuration');

  const elsewhere = refusal(['--initial-cluster', 'default=http://localhost:2381']);
  assert.equal(elsewhere.flag, '--initial-cluster');
  assert.match(elsewhere.message, /^--initial-cluster has default=http:\/\/localhost:2381 but missing from --initial-advertise-peer-urls=http:\/\/localhost:2380/);
});

test('--repair-corrupt-state is a bool flag: alone it is true, =false turns it off, another value is refused', () => {
  assert.equal(parseServeFlags(['--repair-corrupt-state']).repairCorruptState, true);
  assert.equal(parseServeFlags(['--repair-corrupt-state=false']).repairCorruptState, false);
  assert.throws(() => parseServeFlags(['--repair-corrupt-state=yes']), /must be true or false/);
  assert.throws(() => parseServeFlags(['--integrity-check-entries', '-1']), /--integrity-check-entries/);
});

test('--log-format is json by default, text on request, and takes etcd\'s console for text', () => {
  assert.equal(parseServeFlags([]).logFormat, 'json');
  assert.equal(parseServeFlags(['--log-format=json']).logFormat, 'json');
  assert.equal(parseServeFlags(['--log-format', 'text']).logFormat, 'text');
  assert.equal(parseServeFlags(['--log-format=console']).logFormat, 'text');
  assert.equal(parseServeFlags(['-log-format=text', '--log-format', 'json']).logFormat, 'json', 'the last occurrence wins');
  for (const bad of ['JSON', 'Text', 'logfmt', 'pretty', '']) {
    const error = refusal([`--log-format=${bad}`]);
    assert.equal(error.flag, '--log-format', bad);
    assert.equal(error.message, `invalid value ${JSON.stringify(bad)} for flag --log-format: must be json, text or console`);
  }
  // Not a key of the table of values: no prototype property passes for a format.
  assert.equal(refusal(['--log-format=toString']).flag, '--log-format');
});

test('--log-level takes etcd\'s levels and refuses others, naming the flag', () => {
  for (const level of ['debug', 'info', 'warn', 'error'] as const) assert.equal(parseServeFlags([`--log-level=${level}`]).logLevel, level);
  const error = refusal(['--log-level=fatal']);
  assert.equal(error.flag, '--log-level');
  assert.equal(error.message, 'invalid value "fatal" for flag --log-level: must be one of debug, info, warn, error');
});

test('the usage text documents --log-format and its values', () => {
  assert.match(SERVE_FLAGS_USAGE, /--log-format json\|text/);
  assert.match(SERVE_FLAGS_USAGE, /console/);
});
