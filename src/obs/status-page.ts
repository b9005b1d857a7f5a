// The member status page: the HTML a member's metrics URL answers at `/`.
//
// The page is complete and self-contained (inline CSS and script, no external resource, works
// offline) and is rendered on the server with the current StatusDocument, so it reads without
// JavaScript, in `curl`, and in `chromium --dump-dom`. Its script then refreshes it in place:
// every STATUS_PAGE_REFRESH_MS it fetches `status.json` (relative, same origin), renders the
// body again and swaps it in (one innerHTML assignment: no reload, no flicker), keeps an
// "updated N s ago" line ticking, and shows a stale warning when fetches fail.
//
// One renderer, two places. The functions between the markers below are written as plain,
// self-contained functions: they reference only each other and JavaScript built-ins (no
// imports, no module constants, no Date or locale, so the server and any browser produce the
// same text). The page's script is their source text (Function.prototype.toString) followed by
// the refresh loop, so the browser runs exactly the code the server ran. Under Node's type
// stripping the source text is the TypeScript with its types blanked out, which is plain
// JavaScript. test/obs/status-page.test.ts runs the page's script in a VM and checks that it
// renders the same HTML as the server: a renderer that reached outside the set would fail there.
//
// Every string from the document is escaped (member names come from flags, errors from peers),
// and the page carries a Content-Security-Policy that runs only its own script (by hash) and
// fetches only from its own origin: an injected `onerror=` would not run even if escaping
// were missed.

import { createHash } from 'node:crypto';
import { assert } from '../util/index.ts';
import type { MemberStatusRow, MigrationStatusView, StatusDocument } from './status-document.ts';

/** STATUS_PAGE_REFRESH_MS is how often the page's script fetches status.json. */
export const STATUS_PAGE_REFRESH_MS = 2000;

// ---- shared renderers: serialized into the page's script (see the file comment) ----

function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (character) => {
    switch (character) {
      case '&': return '&amp;';
      case '<': return '&lt;';
      case '>': return '&gt;';
      case '"': return '&quot;';
      default: return '&#39;';
    }
  });
}

/** clipText bounds a string from a peer or a flag, so one long error cannot push the table off the screen. */
function clipText(value: unknown, lengthMax: number): string {
  const text = value === undefined || value === null ? '' : String(value);
  return text.length > lengthMax ? `${text.slice(0, lengthMax - 1)}…` : text;
}

function formatCount(value: unknown): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  return String(Math.trunc(value)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function formatBytes(value: unknown): string {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${scaled} B` : `${scaled.toFixed(scaled < 10 ? 1 : 0)} ${units[unit]}`;
}

/** formatTime shows an ISO UTC time as `2025-12-06 18:23:41 UTC`; anything else as it is. No Date: the browser's zone must not change the text. */
function formatTime(value: unknown): string {
  const text = clipText(value, 64);
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(text) ? `${text.slice(0, 10)} ${text.slice(11, 19)} UTC` : text;
}

function memberLabel(document: StatusDocument, memberId: string): string {
  const member = document.members.find((row) => row.id === memberId);
  return member === undefined || member.name === '' ? memberId : member.name;
}

function pageTitle(document: StatusDocument): string {
  const health = document.health.health === 'true' ? 'healthy' : 'UNHEALTHY';
  const leader = document.cluster.leaderId === '' ? 'no leader' : `leader ${memberLabel(document, document.cluster.leaderId)}`;
  const migration = document.migration === undefined ? '' : ` · migration ${document.migration.state} ${document.migration.step}/${document.migration.steps}`;
  return clipText(`stratakv · ${health} · ${leader}${migration}`, 160);
}

function renderTile(label: string, valueHtml: string, tone: string): string {
  return `<div class="tile${tone === '' ? '' : ` tone-${tone}`}"><div class="label">${escapeHtml(label)}</div><div class="value">${valueHtml}</div></div>`;
}

function renderHeader(document: StatusDocument): string {
  const healthy = document.health.health === 'true';
  const reason = clipText(document.health.reason, 200);
  const healthHtml = `<span class="dot"></span>${healthy ? 'healthy' : 'unhealthy'}${reason === '' ? '' : `<div class="reason">${escapeHtml(reason)}</div>`}`;
  const leaderId = document.cluster.leaderId;
  const leader = document.members.find((row) => row.id === leaderId);
  const leaderHtml = leaderId === '' ? 'no leader'
    : `★ ${escapeHtml(clipText(memberLabel(document, leaderId), 64))}${leader === undefined || leader.zone === '' ? '' : `<div class="reason">zone ${escapeHtml(clipText(leader.zone, 40))}</div>`}`;
  const voters = document.members.filter((row) => row.role !== 'learner').length;
  const learners = document.members.length - voters;
  const unreachable = document.members.filter((row) => !row.reachable).length;
  const notes = [learners === 0 ? '' : `+ ${learners} learner${learners === 1 ? '' : 's'}`, unreachable === 0 ? '' : `${unreachable} unreachable`].filter((note) => note !== '');
  const membersHtml = `${voters} voter${voters === 1 ? '' : 's'}${notes.length === 0 ? '' : `<div class="reason">${notes.join(' · ')}</div>`}`;
  return '<header class="summary">'
    + renderTile('Health', healthHtml, healthy ? 'ok' : 'bad')
    + renderTile('Leader', leaderHtml, leaderId === '' ? 'bad' : '')
    + renderTile('Term', formatCount(document.cluster.term), '')
    + renderTile('Revision', formatCount(document.cluster.revision), '')
    + renderTile('Members', membersHtml, unreachable === 0 ? '' : 'warn')
    + renderTile('Cluster', `<code>${escapeHtml(clipText(document.cluster.id, 32))}</code><div class="reason">version ${escapeHtml(clipText(document.cluster.version, 32))}</div>`, '')
    + '</header>';
}

function renderAlarms(document: StatusDocument): string {
  const alarmsShownMax = 32;
  if (document.alarms.length === 0) return '';
  const items = document.alarms.slice(0, alarmsShownMax).map((alarm) =>
    `<li><span class="pill tone-bad">${escapeHtml(clipText(alarm.alarm, 32))}</span> on <b>${escapeHtml(clipText(memberLabel(document, alarm.memberId), 64))}</b> <code>${escapeHtml(clipText(alarm.memberId, 32))}</code></li>`);
  const more = document.alarms.length > alarmsShownMax ? `<li>… and ${document.alarms.length - alarmsShownMax} more</li>` : '';
  const count = document.alarms.length;
  return `<section class="alarms"><h2>⚠ ${count} active alarm${count === 1 ? '' : 's'}</h2><ul>${items.join('')}${more}</ul></section>`;
}

function toneOfMigrationState(state: string): string {
  switch (state) {
    case 'running': return 'info';
    case 'done': return 'ok';
    case 'failed': return 'bad';
    case 'paused':
    case 'rolling-back': return 'warn';
    default: return 'muted';
  }
}

function renderStepTrack(migration: MigrationStatusView): string {
  const stepsShownMax = 16;
  const steps = Math.max(0, Math.min(stepsShownMax, Math.trunc(migration.steps)));
  const names = migration.stepNames !== undefined && migration.stepNames.length === migration.steps ? migration.stepNames : undefined;
  let items = '';
  for (let step = 1; step <= steps; step += 1) {
    const finished = migration.state === 'done' || migration.state === 'rolled-back';
    const where = finished || step < migration.step ? 'done' : step === migration.step ? (migration.state === 'failed' ? 'failed' : 'current') : 'pending';
    const name = names === undefined ? String(step) : `${step}. ${clipText(names[step - 1], 40)}`;
    items += `<li class="step-${where}">${escapeHtml(name)}</li>`;
  }
  return `<ol class="track">${items}</ol>`;
}

function renderProgress(progress: { readonly done: number; readonly total: number; readonly unit: string }): string {
  const fraction = progress.total > 0 ? Math.min(1, Math.max(0, progress.done / progress.total)) : 0;
  const percent = Math.floor(fraction * 100);
  return `<div class="progress"><div class="bar"><div class="fill" style="width:${(fraction * 100).toFixed(1)}%"></div></div>`
    + `<div class="figures"><b>${formatCount(progress.done)}</b> / ${formatCount(progress.total)} ${escapeHtml(clipText(progress.unit, 32))} · <b>${percent}%</b></div></div>`;
}

function renderMigration(migration: MigrationStatusView | undefined): string {
  if (migration === undefined) return '<section class="panel migration"><h2>Migration</h2><p class="muted">No migration running or recorded.</p></section>';
  const times = [
    migration.startedAt === undefined ? '' : `started ${escapeHtml(formatTime(migration.startedAt))}`,
    migration.updatedAt === undefined ? '' : `updated ${escapeHtml(formatTime(migration.updatedAt))}`,
  ].filter((text) => text !== '').join(' · ');
  return '<section class="panel migration">'
    + `<div class="migration-head"><h2>Migration <span class="kind">${escapeHtml(clipText(migration.kind, 32))}</span></h2>`
    + `<span class="pill tone-${toneOfMigrationState(migration.state)}">${escapeHtml(clipText(migration.state, 32))}</span>`
    + `<span class="phase">step ${formatCount(migration.step)} of ${formatCount(migration.steps)} · <b>${escapeHtml(clipText(migration.phase, 64))}</b></span>`
    + `<code class="muted">${escapeHtml(clipText(migration.id, 40))}</code></div>`
    + renderStepTrack(migration)
    + (migration.progress === undefined ? '' : renderProgress(migration.progress))
    + (migration.detail === undefined || migration.detail === '' ? '' : `<p class="detail">${escapeHtml(clipText(migration.detail, 400))}</p>`)
    + (times === '' ? '' : `<p class="muted small">${times}</p>`)
    + '</section>';
}

function toneOfRole(role: string): string {
  switch (role) {
    case 'leader': return 'ok';
    case 'follower': return 'plain';
    case 'learner': return 'accent';
    case 'candidate': return 'warn';
    default: return 'muted';
  }
}

function toneOfSnapshotState(state: string): string {
  switch (state) {
    case 'idle': return 'plain';
    case 'saving':
    case 'sending':
    case 'receiving': return 'info';
    case 'backing-off': return 'warn';
    default: return 'muted';
  }
}

/** lagTone marks a member's lag: a healthy follower trails by a few entries; hundreds means it is falling behind, ten thousand that it is catching up from far. */
function lagTone(lagEntries: number | undefined): string {
  const lagWarnEntries = 100;
  const lagBadEntries = 10_000;
  if (lagEntries === undefined) return '';
  if (lagEntries >= lagBadEntries) return 'lag-bad';
  if (lagEntries >= lagWarnEntries) return 'lag-warn';
  return lagEntries === 0 ? 'muted' : '';
}

function renderMemberRow(row: MemberStatusRow, document: StatusDocument): string {
  const urlsShownMax = 4;
  const isLeader = row.role === 'leader' || (document.cluster.leaderId !== '' && row.id === document.cluster.leaderId);
  const isSelf = row.id === document.self.id;
  const classes = [row.reachable ? '' : 'unreachable', isLeader ? 'is-leader' : '', isSelf ? 'is-self' : ''].filter((name) => name !== '').join(' ');
  const nameHtml = row.name === '' ? '<i class="muted">(unnamed)</i>' : `<b>${escapeHtml(clipText(row.name, 64))}</b>`;
  const urls = row.clientUrls.slice(0, urlsShownMax).map((url) => escapeHtml(clipText(url, 80))).join(', ');
  const memberCell = `<td>${isLeader ? '<span class="star" title="leader">★</span> ' : ''}${nameHtml}${isSelf ? ' <span class="tag">this member</span>' : ''}`
    + `${urls === '' ? '' : `<div class="urls">${urls}</div>`}</td>`;
  const alarmsHtml = row.alarms.length === 0 ? '<span class="muted">—</span>' : row.alarms.slice(0, 8).map((alarm) => `<span class="pill tone-bad">${escapeHtml(clipText(alarm, 32))}</span>`).join(' ');
  let figures: string;
  if (!row.reachable) {
    figures = `<td colspan="6" class="error">unreachable${row.error === undefined || row.error === '' ? '' : `: ${escapeHtml(clipText(row.error, 200))}`}</td>`;
  } else {
    const snapshot = row.snapshot;
    const snapshotHtml = snapshot === undefined ? '<span class="muted">—</span>'
      : `<span class="pill tone-${toneOfSnapshotState(snapshot.state)}">${escapeHtml(clipText(snapshot.state, 24))}</span> <span class="muted">@ ${formatCount(snapshot.index)}</span>`
        + (snapshot.detail === undefined || snapshot.detail === '' ? '' : `<div class="urls">${escapeHtml(clipText(snapshot.detail, 80))}</div>`);
    figures = `<td class="num">${formatCount(row.term)}</td><td class="num">${formatCount(row.commitIndex)}</td><td class="num">${formatCount(row.appliedIndex)}</td>`
      + `<td class="num ${lagTone(row.lagEntries)}">${formatCount(row.lagEntries)}</td><td class="num">${formatBytes(row.dbSizeBytes)}</td><td>${snapshotHtml}</td>`;
  }
  return `<tr${classes === '' ? '' : ` class="${classes}"`}>${memberCell}<td><code>${escapeHtml(clipText(row.id, 32))}</code></td>`
    + `<td>${row.zone === '' ? '<span class="muted">—</span>' : escapeHtml(clipText(row.zone, 40))}</td>`
    + `<td><span class="pill tone-${toneOfRole(row.role)}">${escapeHtml(clipText(row.role, 16))}</span></td>${figures}<td>${alarmsHtml}</td></tr>`;
}

function renderMembers(document: StatusDocument): string {
  const membersShownMax = 64;
  const rows = document.members.slice(0, membersShownMax).map((row) => renderMemberRow(row, document)).join('');
  const more = document.members.length > membersShownMax ? `<tr><td colspan="11" class="muted">… and ${document.members.length - membersShownMax} more</td></tr>` : '';
  const empty = document.members.length === 0 ? '<tr><td colspan="11" class="muted">No members known.</td></tr>' : '';
  return '<section class="panel"><h2>Members</h2><table class="members"><thead><tr>'
    + '<th>Member</th><th>ID</th><th>Zone</th><th>Role</th><th class="num">Term</th><th class="num">Commit</th><th class="num">Applied</th>'
    + '<th class="num">Lag</th><th class="num">DB size</th><th>Snapshot</th><th>Alarms</th>'
    + `</tr></thead><tbody>${rows}${more}${empty}</tbody></table></section>`;
}

function renderFooter(document: StatusDocument): string {
  return `<footer>Answered by <b>${escapeHtml(clipText(document.self.name, 64))}</b> <code>${escapeHtml(clipText(document.self.id, 32))}</code>`
    + ` at ${escapeHtml(formatTime(document.generatedAt))} · <a href="status.json">status.json</a> · <a href="metrics">metrics</a></footer>`;
}

/** renderStatusBody renders everything the refresh replaces: the summary, alarms, migration, members and footer. */
function renderStatusBody(document: StatusDocument): string {
  return renderHeader(document) + renderAlarms(document) + renderMigration(document.migration) + renderMembers(document) + renderFooter(document);
}

// ---- end of the shared renderers ----

/** PageElement and PageDocument are the little of the DOM the refresh loop uses (the project's lib has no DOM types). */
interface PageElement {
  innerHTML: string;
  textContent: string | null;
  className: string;
  hidden: boolean;
}
interface PageDocument {
  title: string;
  getElementById(id: string): PageElement | null;
}

/**
 * runStatusPage is the page's refresh loop; it runs only in the browser, serialized like the
 * renderers. One fetch at a time (the next is scheduled when the last settles), each bounded by
 * a timeout; a failed or malformed answer leaves the last good body in place, marked stale.
 */
function runStatusPage(page: PageDocument, refreshMs: number): void {
  const fetchTimeoutMs = 5000;
  const staleAfterMs = 3 * refreshMs;
  const status = page.getElementById('status');
  const freshness = page.getElementById('freshness');
  const staleBanner = page.getElementById('stale');
  if (status === null || freshness === null || staleBanner === null) return;
  let lastGoodMs = Date.now();
  let failures = 0;
  let lastError = '';
  const showFreshness = (): void => {
    const ageMs = Date.now() - lastGoodMs;
    const ageText = `${Math.max(0, Math.round(ageMs / 1000))} s ago`;
    const stale = failures > 0 || ageMs > staleAfterMs;
    freshness.textContent = `${stale ? '● stale' : '● live'} · updated ${ageText}`;
    freshness.className = stale ? 'freshness is-stale' : 'freshness';
    status.className = stale ? 'is-stale' : '';
    staleBanner.hidden = !stale;
    staleBanner.textContent = stale
      ? `⚠ Cannot refresh from this member: ${lastError === '' ? 'no answer yet' : lastError}${failures > 1 ? ` (${failures} attempts failed)` : ''}. The figures below are from ${ageText} and may be out of date.`
      : '';
  };
  const refresh = async (): Promise<void> => {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), fetchTimeoutMs);
    try {
      const response = await fetch('status.json', { cache: 'no-store', signal: abort.signal, headers: { accept: 'application/json' } });
      if (!response.ok) throw new Error(`status.json answered HTTP ${response.status}`);
      const next = (await response.json()) as StatusDocument;
      // Render before touching the page: a malformed answer throws here and leaves the last good body.
      const html = renderStatusBody(next);
      status.innerHTML = html;
      page.title = pageTitle(next);
      lastGoodMs = Date.now();
      failures = 0;
      lastError = '';
    } catch (error) {
      failures += 1;
      const message = error instanceof Error ? error.message : String(error);
      lastError = abort.signal.aborted ? `status.json did not answer within ${fetchTimeoutMs / 1000} s` : message === 'Failed to fetch' ? 'status.json is unreachable' : message;
    } finally {
      clearTimeout(timer);
    }
    showFreshness();
    setTimeout(() => void refresh(), refreshMs);
  };
  freshness.textContent = '● live · updated 0 s ago';
  setInterval(showFreshness, 1000);
  setTimeout(() => void refresh(), refreshMs);
}

const SHARED_RENDERERS: readonly ((...args: never[]) => unknown)[] = [
  escapeHtml, clipText, formatCount, formatBytes, formatTime, memberLabel, pageTitle, renderTile, renderHeader, renderAlarms,
  toneOfMigrationState, renderStepTrack, renderProgress, renderMigration, toneOfRole, toneOfSnapshotState, lagTone,
  renderMemberRow, renderMembers, renderFooter, renderStatusBody,
];

/** PAGE_SCRIPT is the page's whole script; it does not depend on the document, so its CSP hash is computed once. */
const PAGE_SCRIPT = `(function () {\n"use strict";\n${SHARED_RENDERERS.map((render) => render.toString()).join('\n')}\n`
  + `(${runStatusPage.toString()})(document, ${STATUS_PAGE_REFRESH_MS});\n})();`;
assert(!/<\/script|<!--/i.test(PAGE_SCRIPT), 'the status page script must not close its own <script> element');
const PAGE_SCRIPT_HASH = createHash('sha256').update(PAGE_SCRIPT, 'utf8').digest('base64');
const CONTENT_SECURITY_POLICY = `default-src 'none'; script-src 'sha256-${PAGE_SCRIPT_HASH}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'`;

const PAGE_STYLE = `
:root { --text:#1f2328; --muted:#656d76; --line:#d8dee4; --panel:#fff; --page:#f3f5f7;
  --ok:#1a7f37; --ok-bg:#dafbe1; --bad:#cf222e; --bad-bg:#ffebe9; --warn:#9a6700; --warn-bg:#fff8c5;
  --info:#0969da; --info-bg:#ddf4ff; --accent:#8250df; --accent-bg:#fbefff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--text); font: 14px/1.4 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", system-ui, sans-serif; }
code { font: 12px/1.3 ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace; }
.topbar { display: flex; align-items: center; justify-content: space-between; padding: 8px 20px; background: #24292f; color: #f6f8fa; }
.brand { font-weight: 700; font-size: 15px; letter-spacing: .02em; }
.brand span { font-weight: 400; color: #aeb6bf; }
.freshness { font-size: 13px; color: #8ddb8c; }
.freshness.is-stale { color: #ffb3ad; font-weight: 700; }
.stale { margin: 12px 20px 0; padding: 10px 14px; border: 1px solid var(--bad); border-radius: 8px; background: var(--bad-bg); color: var(--bad); font-weight: 700; }
main { padding: 14px 20px 20px; }
main.is-stale { opacity: .5; filter: grayscale(1); }
.summary { display: grid; grid-template-columns: 1.4fr 1.2fr .7fr 1fr 1.1fr 1.4fr; gap: 10px; margin-bottom: 14px; }
.tile { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 0; }
.tile .label { font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); }
.tile .value { font-size: 22px; font-weight: 700; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.tile .value code { font-size: 14px; font-weight: 400; }
.tile .reason { font-size: 12px; font-weight: 400; color: var(--muted); }
.tile.tone-ok { background: var(--ok-bg); border-color: var(--ok); } .tile.tone-ok .value { color: var(--ok); }
.tile.tone-bad { background: var(--bad-bg); border-color: var(--bad); } .tile.tone-bad .value, .tile.tone-bad .reason { color: var(--bad); }
.tile.tone-warn { background: var(--warn-bg); border-color: var(--warn); }
.dot { display: inline-block; width: 12px; height: 12px; border-radius: 50%; background: currentColor; margin-right: 8px; vertical-align: 2px; }
.alarms { margin-bottom: 14px; padding: 10px 14px; border: 2px solid var(--bad); border-radius: 8px; background: var(--bad-bg); color: var(--bad); }
.alarms h2 { margin: 0 0 4px; font-size: 16px; }
.alarms ul { margin: 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap; gap: 6px 24px; color: var(--text); }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 14px; }
.panel h2 { margin: 0 0 8px; font-size: 15px; }
.panel.migration p { margin: 6px 0 0; }
.migration-head { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
.migration-head h2 { margin: 0; }
.kind { color: var(--info); }
.phase { font-size: 16px; }
.track { display: flex; gap: 4px; list-style: none; padding: 0; margin: 10px 0; }
.track li { flex: 1; min-width: 0; padding: 4px 6px; font-size: 12px; border-radius: 4px; background: #eaeef2; color: var(--muted); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; text-align: center; }
.track li.step-done { background: var(--ok-bg); color: var(--ok); }
.track li.step-current { background: var(--info); color: #fff; font-weight: 700; }
.track li.step-failed { background: var(--bad); color: #fff; font-weight: 700; }
.progress { display: flex; align-items: center; gap: 14px; }
.bar { flex: 1; height: 16px; border-radius: 8px; background: #eaeef2; overflow: hidden; }
.fill { height: 100%; background: linear-gradient(90deg, #0969da, #218bff); }
.figures { font-variant-numeric: tabular-nums; white-space: nowrap; font-size: 15px; }
.detail { color: var(--text); }
.small { font-size: 12px; }
.muted { color: var(--muted); }
table.members { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
.members th { text-align: left; font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); border-bottom: 2px solid var(--line); padding: 6px 8px; }
.members td { border-bottom: 1px solid var(--line); padding: 7px 8px; vertical-align: top; }
.members .num { text-align: right; }
.members tr.is-leader td { background: #f6fef8; }
.members tr.unreachable td { color: var(--muted); background: #f6f8fa; }
.members tr.unreachable td.error { color: var(--bad); font-style: italic; }
.members tr.unreachable .pill { opacity: .6; }
.urls { font-size: 11px; color: var(--muted); overflow-wrap: anywhere; }
.star { color: #d4a72c; }
.tag { font-size: 11px; padding: 0 6px; border: 1px solid var(--line); border-radius: 10px; color: var(--muted); }
.pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid transparent; }
.pill.tone-ok { background: var(--ok-bg); color: var(--ok); border-color: var(--ok); }
.pill.tone-bad { background: var(--bad); color: #fff; }
.pill.tone-warn { background: var(--warn-bg); color: var(--warn); border-color: var(--warn); }
.pill.tone-info { background: var(--info-bg); color: var(--info); border-color: var(--info); }
.pill.tone-accent { background: var(--accent-bg); color: var(--accent); border-color: var(--accent); }
.pill.tone-plain { background: #f6f8fa; color: var(--text); border-color: var(--line); }
.pill.tone-muted { background: #f6f8fa; color: var(--muted); }
td.lag-warn { background: var(--warn-bg); color: var(--warn); font-weight: 700; }
td.lag-bad { background: var(--bad-bg); color: var(--bad); font-weight: 700; }
footer { color: var(--muted); font-size: 12px; }
footer a { color: var(--info); }
`;

/** renderStatusPage renders the complete status page for `document` (see the file comment). */
export function renderStatusPage(document: StatusDocument): string {
  assert(typeof document === 'object' && document !== null, 'renderStatusPage needs a StatusDocument');
  assert(Array.isArray(document.members), 'StatusDocument.members must be an array');
  assert(Array.isArray(document.alarms), 'StatusDocument.alarms must be an array');
  return '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    + '<meta name="viewport" content="width=device-width, initial-scale=1">'
    + `<meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}">`
    + `<title>${escapeHtml(pageTitle(document))}</title><style>${PAGE_STYLE}</style></head>\n<body>`
    + `<div class="topbar"><div class="brand">stratakv <span>member status</span></div>`
    + `<div id="freshness" class="freshness">as of ${escapeHtml(formatTime(document.generatedAt))}<noscript> · reload to update</noscript></div></div>`
    + '<div id="stale" class="stale" hidden></div>'
    + `<main id="status">${renderStatusBody(document)}</main>\n`
    + `<script>${PAGE_SCRIPT}</script>\n</body></html>\n`;
}

