// The real etcdctl (v3 API) against our server over one real in-memory RaftNode. The expected outputs are
// what etcdctl 3.4.23 prints against a single-node etcd 3.4.23 for the same commands
// (checked by hand against /usr/bin/etcd), with our ids, version and sizes in place of etcd's.
// Without etcdctl the test skips, except in CI where it fails.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';

import type { EtcdServer, RaftNodeBackend } from '../../src/server/index.ts';
import { startEtcdServer } from '../../src/server/index.ts';
import { ETCDCTL_TIMEOUT_MS, etcdctlMissing } from '../client/etcd-process.ts';
import type { SingleMember } from './single-member.ts';
import { freeClientUrl, startSingleMember } from './single-member.ts';

const missing = etcdctlMissing();
let member: SingleMember;
let backend: RaftNodeBackend;
let server: EtcdServer;
let endpoint = '';

before(async () => {
  if (missing !== undefined) return;
  const clientUrl = await freeClientUrl();
  member = await startSingleMember({ name: 'one', peerUrls: ['http://127.0.0.1:2380'], clientUrls: [clientUrl] });
  backend = member.backend;
  server = await startEtcdServer({ backend, listenUrls: [clientUrl], maxRequestBytes: 1.5 * 1024 * 1024 });
  endpoint = (server.urls[0] ?? '').replace('http://', '');
});

after(async () => {
  if (missing !== undefined) return;
  await server.close({ force: true });
  await member.stop();
});

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function etcdctl(args: readonly string[], stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      'etcdctl',
      ['--endpoints', endpoint, '--dial-timeout=5s', '--command-timeout=5s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: ETCDCTL_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
    );
    child.stdin?.end(stdin ?? '');
  });
}

async function ok(args: readonly string[], stdin?: string): Promise<string> {
  const run = await etcdctl(args, stdin);
  assert.equal(run.code, 0, `etcdctl ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}

const hex = (id: number): string => id.toString(16);

test('put, get (prefix, limit, json), del', { skip: missing }, async () => {
  assert.equal(await ok(['put', 'a', '1']), 'OK\n');
  assert.equal(await ok(['put', 'b', '2']), 'OK\n');
  assert.equal(await ok(['put', 'c', '3']), 'OK\n');
  assert.equal(await ok(['get', 'a']), 'a\n1\n');
  assert.equal(await ok(['get', '', '--prefix', '--keys-only']), 'a\n\nb\n\nc\n\n');
  assert.equal(await ok(['get', '', '--from-key', '--sort-by=MODIFY', '--order=DESCEND', '--keys-only']), 'c\n\nb\n\na\n\n');
  const limited = JSON.parse(await ok(['get', '', '--prefix', '--limit', '2', '-w', 'json']));
  const info = backend.header();
  assert.deepEqual(limited.header, { cluster_id: info.clusterId, member_id: info.memberId, revision: 4, raft_term: 2 });
  assert.deepEqual(
    limited.kvs,
    [
      { key: 'YQ==', create_revision: 2, mod_revision: 2, version: 1, value: 'MQ==' },
      { key: 'Yg==', create_revision: 3, mod_revision: 3, version: 1, value: 'Mg==' },
    ],
  );
  assert.equal(limited.more, true);
  assert.equal(limited.count, 3);
  assert.equal(await ok(['get', 'a', 'c', '--print-value-only']), '1\n2\n');
  assert.equal(await ok(['del', 'a', '--prev-kv']), '1\na\n1\n');
  assert.equal(await ok(['get', 'a']), '');
});

test('txn from stdin: compares, success ops, failure ops', { skip: missing }, async () => {
  assert.equal(await ok(['txn'], 'value("b") = "2"\n\nput d 4\nget b\n\nput e 5\n\n'), 'SUCCESS\n\nOK\n\nb\n2\n');
  assert.equal(await ok(['txn'], 'mod("b") > "100"\n\nput d 4\n\nput e 5\nget e\n\n'), 'FAILURE\n\nOK\n\ne\n5\n');
  const json = JSON.parse(await ok(['txn', '-w', 'json'], 'version("e") = "1"\n\nget e\n\n\n'));
  assert.equal(json.succeeded, true);
  assert.deepEqual(json.responses[0].Response.ResponseRange.header, { revision: json.header.revision });
});

test('refusals print etcd\'s error', { skip: missing }, async () => {
  const empty = await etcdctl(['put', '', 'x']);
  assert.equal(empty.code, 1);
  assert.match(empty.stderr, /Error: etcdserver: key is not provided/);
  const future = await etcdctl(['get', 'a', '--rev=1000']);
  assert.equal(future.code, 1);
  assert.match(future.stderr, /Error: etcdserver: mvcc: required revision is a future revision/);
  const duplicate = await etcdctl(['txn'], '\nput k 1\nput k 2\n\n\n');
  assert.equal(duplicate.code, 1);
  assert.match(duplicate.stderr, /Error: etcdserver: duplicate key given in txn request/);
});

test('member list and endpoint status', { skip: missing }, async () => {
  const { memberId, clusterId } = backend.header();
  assert.equal(await ok(['member', 'list']), `${hex(memberId)}, started, one, http://127.0.0.1:2380, http://${endpoint}, false\n`);
  const status = await backend.status();
  assert.equal(
    await ok(['endpoint', 'status']),
    `${endpoint}, ${hex(memberId)}, ${status.version}, 0 B, true, false, 2, ${status.raftIndex}, ${status.raftAppliedIndex}, \n`,
  );
  const added = await ok(['member', 'add', 'two', '--peer-urls=http://127.0.0.1:2480', '--learner']);
  assert.match(added, new RegExp(`^Member +[0-9a-f]+ added to cluster +${hex(clusterId)}\n`));
  assert.match(added, /ETCD_INITIAL_CLUSTER="two=http:\/\/127.0.0.1:2480,one=http:\/\/127.0.0.1:2380"/);
  const list = JSON.parse(await ok(['member', 'list', '-w', 'json']));
  assert.equal(list.members.length, 2);
});
