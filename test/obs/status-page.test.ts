// The member status page: what the server renders (every field, escaping, the migration panel,
// no migration, no leader), that the page's own script renders the same HTML as the server and
// marks itself stale when fetches fail (run in a VM), and, in headless Chromium, that the page
// refreshes itself from status.json.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import vm from 'node:vm';
import { renderStatusPage, STATUS_PAGE_REFRESH_MS } from '../../src/obs/index.ts';
import type { MemberStatusRow, StatusDocument } from '../../src/obs/index.ts';
import { CHROMIUM_MISSING, dumpDom, findChromium, screenshot } from './chromium.ts';
import { FIXTURE_COMMIT_INDEX, FIXTURE_PROGRESS_START, FIXTURE_PROGRESS_STEP, fixtureDocument } from './status-fixture.ts';

const HOSTILE = '<img src=x onerror=alert(1)>';

/** mainOf is the part of a page that the refresh replaces. */
function mainOf(page: string): string {
  const start = page.indexOf('<main id="status">');
  const end = page.indexOf('</main>');
  assert.ok(start >= 0 && end > start, 'the page has a <main id="status">');
  return page.slice(start + '<main id="status">'.length, end);
}

function scriptOf(page: string): string {
  const start = page.indexOf('<script>');
  const end = page.lastIndexOf('</script>');
  assert.ok(start >= 0 && end > start, 'the page has one inline script');
  return page.slice(start + '<script>'.length, end);
}

function rowOf(html: string, memberId: string): string {
  const at = html.indexOf(`<code>${memberId}</code>`);
  assert.ok(at >= 0, `member ${memberId} has a row`);
  return html.slice(html.lastIndexOf('<tr', at), html.indexOf('</tr>', at));
}

function withoutMigration(document: StatusDocument): StatusDocument {
  const { migration: _migration, ...rest } = document;
  return rest;
}

describe('renderStatusPage', () => {
  it('is a complete page with no external resource, and its script is the one its CSP allows', () => {
    const page = renderStatusPage(fixtureDocument(0));
    assert.match(page, /^<!doctype html>/);
    assert.match(page, /<\/html>\n$/);
    assert.doesNotMatch(page, /<(link|img|iframe)\b|\bsrc=|@import|url\(/i, 'nothing is loaded from elsewhere');
    const policy = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(page)?.[1];
    assert.ok(policy !== undefined);
    const hash = createHash('sha256').update(scriptOf(page), 'utf8').digest('base64');
    assert.ok(policy.includes(`script-src 'sha256-${hash}'`), policy);
    assert.ok(policy.includes("connect-src 'self'"), policy);
    assert.match(page, /fetch\('status\.json'/, 'the script fetches status.json relative to the page');
  });

  it('shows every field of a member row', () => {
    const row: MemberStatusRow = {
      id: 'a1b2c3d4e5f60718', name: 'edge-7', zone: 'us-east-2c', role: 'follower', clientUrls: ['http://10.9.8.7:2379', 'http://10.9.8.7:12379'],
      reachable: true, term: 12, commitIndex: 7_654_321, appliedIndex: 7_654_000, lagEntries: 321, dbSizeBytes: 3 * 1024 * 1024 * 1024 + 512 * 1024 * 1024,
      snapshot: { index: 7_000_000, state: 'saving', detail: 'block 3 of 9' }, alarms: ['NOSPACE'],
    };
    const base = fixtureDocument(0);
    const html = mainOf(renderStatusPage({ ...base, members: [...base.members, row] }));
    const cells = rowOf(html, row.id);
    for (const text of ['edge-7', 'a1b2c3d4e5f60718', 'us-east-2c', 'follower', '>12<', '7,654,321', '7,654,000', '>321<', '3.5 GiB', 'saving', '7,000,000', 'block 3 of 9', 'NOSPACE', 'http://10.9.8.7:2379', 'http://10.9.8.7:12379']) {
      assert.ok(cells.includes(text), `the row shows ${text}: ${cells}`);
    }
    assert.match(cells, /class="num lag-warn">321</, 'a lag of hundreds of entries is highlighted');
    assert.match(cells, /pill tone-bad">NOSPACE</, 'alarms are red');
    assert.match(rowOf(html, '4a1f6e0c27d9b315'), /class="num lag-bad">/, 'a learner far behind is highlighted more');
  });

  it('marks the leader and this member, and greys an unreachable member with its error', () => {
    const html = mainOf(renderStatusPage(fixtureDocument(0)));
    assert.match(rowOf(html, '8e9e05c52164694d'), /<tr class="is-leader is-self">.*★.*this member/s);
    const unreachable = rowOf(html, 'e03d5b8a9c1f7246');
    assert.match(unreachable, /<tr class="unreachable">/);
    assert.ok(unreachable.includes('n3') && unreachable.includes('eu-west-1b'), 'an unreachable row keeps its name and zone');
    assert.ok(unreachable.includes('unreachable: connect ECONNREFUSED 10.0.2.23:2379'));
    assert.match(html, /tile tone-ok.*healthy/s);
    assert.match(html, /Leader<\/div><div class="value">★ m1/);
  });

  it('escapes every string it shows', () => {
    const base = fixtureDocument(1);
    const hostile: StatusDocument = {
      ...base,
      self: { id: HOSTILE, name: HOSTILE },
      cluster: { ...base.cluster, id: HOSTILE, version: HOSTILE, leaderId: HOSTILE },
      health: { health: 'false', reason: HOSTILE },
      members: base.members.map((row) => ({ ...row, id: HOSTILE, name: HOSTILE, zone: HOSTILE, clientUrls: [HOSTILE], error: HOSTILE, alarms: [HOSTILE], ...(row.snapshot === undefined ? {} : { snapshot: { index: 1, state: HOSTILE, detail: HOSTILE } }) })),
      alarms: [{ memberId: HOSTILE, alarm: HOSTILE }],
      migration: { id: HOSTILE, kind: HOSTILE, state: HOSTILE, phase: HOSTILE, step: 1, steps: 2, stepNames: [HOSTILE, HOSTILE], progress: { done: 1, total: 2, unit: HOSTILE }, detail: HOSTILE, startedAt: HOSTILE, updatedAt: HOSTILE, },
      generatedAt: HOSTILE,
    };
    const page = renderStatusPage(hostile);
    assert.ok(!page.includes('<img'), 'no markup from the document reaches the page');
    assert.ok(!page.includes(HOSTILE));
    assert.ok(page.includes('&lt;img src=x onerror=alert(1)&gt;'));
    const quoted = renderStatusPage({ ...base, members: base.members.map((row) => ({ ...row, name: `m" onmouseover="alert(1)' x='` })) });
    assert.ok(!quoted.includes('" onmouseover="'), 'quotes are escaped too');
    assert.ok(quoted.includes('m&quot; onmouseover=&quot;alert(1)&#39; x=&#39;'));
  });

  it('shows a migration: kind, state, step k of n, the step track and the progress with its percentage', () => {
    const base = fixtureDocument(0);
    const html = mainOf(renderStatusPage({ ...base, migration: { ...base.migration!, progress: { done: 250, total: 1000, unit: 'keys' } } }));
    assert.match(html, /Migration <span class="kind">move<\/span>/);
    assert.match(html, /pill tone-info">running</);
    assert.match(html, /step 2 of 8 · <b>catch-up<\/b>/);
    assert.match(html, /<li class="step-done">1\. add-learners<\/li><li class="step-current">2\. catch-up<\/li><li class="step-pending">3\. verify-before<\/li>/);
    assert.match(html, /style="width:25\.0%"/);
    assert.match(html, /<b>250<\/b> \/ 1,000 keys · <b>25%<\/b>/);
    assert.match(html, /started 2025-12-06 18:21:07 UTC · updated 2025-12-06 18:23:41 UTC/);
    const finished = mainOf(renderStatusPage({ ...base, migration: { ...base.migration!, state: 'done', step: 8, progress: { done: 5, total: 5, unit: 'steps' } } }));
    assert.doesNotMatch(finished, /step-current|step-pending/, 'a finished migration has every step done');
    assert.match(finished, /<b>100%<\/b>/);
    const failed = mainOf(renderStatusPage({ ...base, migration: { ...base.migration!, state: 'failed', step: 3 } }));
    assert.match(failed, /pill tone-bad">failed<.*<li class="step-failed">3\. verify-before/s);
  });

  it('says when no migration is running or recorded', () => {
    const html = mainOf(renderStatusPage(withoutMigration(fixtureDocument(0))));
    assert.match(html, /No migration running or recorded\./);
    assert.doesNotMatch(html, /class="progress"|class="track"/);
  });

  it('shows a cluster with no leader and its alarms prominently', () => {
    const base = fixtureDocument(0);
    const page = renderStatusPage({
      ...base,
      cluster: { ...base.cluster, leaderId: '' },
      health: { health: 'false', reason: 'no leader' },
      members: base.members.map((row) => ({ ...row, role: row.role === 'leader' ? 'candidate' : row.role })),
      alarms: [{ memberId: '91bc3c398fb3c146', alarm: 'NOSPACE' }],
    });
    const html = mainOf(page);
    assert.match(html, /tile tone-bad"><div class="label">Health<\/div><div class="value"><span class="dot"><\/span>unhealthy<div class="reason">no leader<\/div>/);
    assert.match(html, /tile tone-bad"><div class="label">Leader<\/div><div class="value">no leader</);
    assert.doesNotMatch(html, /is-leader|★/, 'no member is marked leader');
    assert.match(html, /<section class="alarms"><h2>⚠ 1 active alarm<\/h2><ul><li><span class="pill tone-bad">NOSPACE<\/span> on <b>m2<\/b>/);
    assert.match(page, /<title>stratakv · UNHEALTHY · no leader · migration running 2\/8<\/title>/);
  });
});

/** FakeElement and the VM harness run the page's script without a browser: timers are collected and fired by hand. */
interface FakeElement { innerHTML: string; textContent: string | null; className: string; hidden: boolean }

function loadPageInVm(page: string, answer: () => Promise<{ ok: boolean; status: number; json: () => Promise<unknown> }>) {
  const elements: Record<string, FakeElement> = {
    status: { innerHTML: mainOf(page), textContent: null, className: '', hidden: false },
    freshness: { innerHTML: '', textContent: 'as of …', className: 'freshness', hidden: false },
    stale: { innerHTML: '', textContent: '', className: 'stale', hidden: true },
  };
  const timeouts: { run: () => void; delayMs: number }[] = [];
  const intervals: { run: () => void; delayMs: number }[] = [];
  const fakeDocument = { title: '', getElementById: (id: string) => elements[id] ?? null };
  const fetches: string[] = [];
  const context = vm.createContext({
    document: fakeDocument,
    setTimeout: (run: () => void, delayMs: number) => timeouts.push({ run, delayMs }),
    clearTimeout: () => undefined,
    setInterval: (run: () => void, delayMs: number) => intervals.push({ run, delayMs }),
    AbortController,
    fetch: (url: string) => {
      fetches.push(url);
      return answer();
    },
  });
  vm.runInContext(scriptOf(page), context, { timeout: 1000 });
  /** refresh fires the pending refresh timer and lets its fetch settle. */
  const refresh = async (): Promise<void> => {
    const refreshTimer = timeouts.findLast((timer) => timer.delayMs === STATUS_PAGE_REFRESH_MS);
    assert.ok(refreshTimer !== undefined, 'a refresh is scheduled');
    timeouts.length = 0;
    refreshTimer.run();
    for (let turn = 0; turn < 10 && !timeouts.some((timer) => timer.delayMs === STATUS_PAGE_REFRESH_MS); turn += 1) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { elements, fakeDocument, fetches, intervals, refresh };
}

describe('the status page script (in a VM)', () => {
  it('renders a fetched document exactly as the server does, then marks itself stale when fetches fail', async () => {
    const first = fixtureDocument(0);
    const second = fixtureDocument(1);
    let failWith: number | undefined;
    const harness = loadPageInVm(renderStatusPage(first), () => Promise.resolve(failWith === undefined
      ? { ok: true, status: 200, json: () => Promise.resolve(JSON.parse(JSON.stringify(second)) as unknown) }
      : { ok: false, status: failWith, json: () => Promise.reject(new Error('no body')) }));
    assert.equal(harness.intervals.length, 1, 'one ticker for "updated N s ago"');
    assert.equal(harness.elements['freshness']!.textContent, '● live · updated 0 s ago');

    await harness.refresh();
    assert.deepEqual(harness.fetches, ['status.json']);
    const serverRendered = mainOf(renderStatusPage(second));
    assert.notEqual(serverRendered, mainOf(renderStatusPage(first)));
    assert.equal(harness.elements['status']!.innerHTML, serverRendered, 'the page script renders exactly what the server renders');
    assert.equal(harness.fakeDocument.title, 'stratakv · healthy · leader m1 · migration running 2/8');
    assert.equal(harness.elements['stale']!.hidden, true);

    failWith = 503;
    await harness.refresh();
    assert.equal(harness.elements['status']!.innerHTML, serverRendered, 'a failed fetch keeps the last good body');
    assert.equal(harness.elements['status']!.className, 'is-stale');
    assert.equal(harness.elements['stale']!.hidden, false);
    assert.match(harness.elements['stale']!.textContent ?? '', /Cannot refresh from this member: status\.json answered HTTP 503\./);
    assert.match(harness.elements['freshness']!.textContent ?? '', /^● stale · updated \d+ s ago$/);

    failWith = undefined;
    await harness.refresh();
    assert.equal(harness.elements['stale']!.hidden, true, 'a good fetch clears the warning');
    assert.equal(harness.elements['status']!.className, '');
  });

  it('keeps the last good body when status.json answers something that is not a status document', async () => {
    const first = fixtureDocument(0);
    const harness = loadPageInVm(renderStatusPage(first), () => Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve({ hello: 'world' }) }));
    await harness.refresh();
    assert.equal(harness.elements['status']!.innerHTML, mainOf(renderStatusPage(first)));
    assert.equal(harness.elements['stale']!.hidden, false);
  });
});

/** PageServer serves the page at / and fixtureDocument(n) at the n-th /status.json (from 1); or fails every status.json with `failStatus`. */
async function startPageServer(options: { failStatus?: number } = {}) {
  let statusRequests = 0;
  const server = createServer((request, response) => {
    if (request.url === '/') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end(renderStatusPage(fixtureDocument(0)));
    } else if (request.url === '/status.json') {
      statusRequests += 1;
      if (options.failStatus !== undefined) {
        response.writeHead(options.failStatus, { 'content-type': 'text/plain' });
        response.end('unavailable');
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      response.end(JSON.stringify(fixtureDocument(statusRequests)));
    } else {
      response.writeHead(404);
      response.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    statusRequests: () => statusRequests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe('the status page in headless Chromium', { skip: findChromium() === undefined ? CHROMIUM_MISSING : false }, () => {
  it('shows the members and the migration progress, and refreshes itself from status.json', async () => {
    const server = await startPageServer();
    try {
      // 7 s of virtual time: refreshes at 2, 4 and 6 s.
      const dom = await dumpDom(server.url, { budgetMs: 7000 });
      assert.ok(server.statusRequests() >= 2, `the page fetched status.json ${server.statusRequests()} times`);
      for (const name of ['m1', 'm2', 'm3', 'n1', 'n2', 'n3']) assert.match(dom, new RegExp(`<b>${name}</b>`), `member ${name} appears`);
      assert.match(dom, /step 2 of 8 · <b>catch-up<\/b>/);
      const shown = /<b>([\d,]+)<\/b> \/ ([\d,]+) entries · <b>(\d+)%<\/b>/.exec(dom);
      assert.ok(shown !== null, 'the progress appears');
      const done = Number(shown[1]!.replaceAll(',', ''));
      assert.equal(shown[2], '1,204,880');
      assert.ok(done >= FIXTURE_PROGRESS_START + 2 * FIXTURE_PROGRESS_STEP, `the progress shown (${done}) is from the second refresh or later`);
      assert.equal(done, FIXTURE_PROGRESS_START + server.statusRequests() * FIXTURE_PROGRESS_STEP, 'the page shows the last answer');
      assert.equal(Number(shown[3]), Math.floor((done / FIXTURE_COMMIT_INDEX) * 100));
      assert.match(dom, /id="freshness" class="freshness">● live · updated \d+ s ago</);
      assert.match(dom, /id="stale" class="stale" hidden=""/);
    } finally {
      await server.close();
    }
  });

  it('warns that the figures are stale when status.json fails', async () => {
    const server = await startPageServer({ failStatus: 503 });
    try {
      const dom = await dumpDom(server.url, { budgetMs: 5000 });
      assert.ok(server.statusRequests() >= 2);
      assert.match(dom, /<div id="stale" class="stale">⚠ Cannot refresh from this member: status\.json answered HTTP 503 \(\d+ attempts failed\)\./);
      assert.match(dom, /<main id="status" class="is-stale">/);
      assert.match(dom, /<b>n1<\/b>/, 'the last good figures stay');
    } finally {
      await server.close();
    }
  });

  it('kills Chromium and says so when a call outlives its timeout', async () => {
    const server = await startPageServer();
    try {
      await assert.rejects(dumpDom(server.url, { budgetMs: 60_000, timeoutMs: 100 }), /timed out after 100 ms \(killed process group \d+\)/);
    } finally {
      await server.close();
    }
  });

  it('takes a screenshot of the page', async () => {
    const server = await startPageServer();
    // UPDATE_STATUS_PAGE_PNG=1 rewrites the reviewed picture in docs/ (see src/obs/README.md).
    const directory = process.env['UPDATE_STATUS_PAGE_PNG'] === '1' ? undefined : await mkdtemp(join(tmpdir(), 'stratakv-status-page-'));
    const path = directory === undefined ? 'docs/status-page-fixture.png' : join(directory, 'status-page.png');
    try {
      assert.deepEqual(await screenshot(server.url, path, { width: 1280, height: 800, budgetMs: 500 }), { widthPx: 1280, heightPx: 800 });
    } finally {
      await server.close();
      if (directory !== undefined) await rm(directory, { recursive: true, force: true });
    }
  });
});
