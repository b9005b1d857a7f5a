// One stratakv run of bench:migrate: three members in zone a (the bench's stratakv launcher,
// `--zone=a`) loaded with the state; three members started with `stratakv serve --join` in
// zone b (ports from ports.ts, peers behind the zone proxy when there is a delay), waiting to be
// added; then, under the load (timeline.ts), `stratakv migrate run -w json` as a child process.
//
// The migration's step log carries each step's start and end from the migrate process's
// monotonic clock (performance.now(), not epoch time), so the child is started with a tiny
// --import that prints its performance.timeOrigin on stderr: origin + step time is the step's
// epoch time, the same base the load process stamps its puts with.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

import { probeJoiner } from '../../src/client/index.ts';
import { REPOSITORY, STRATAKV_ENTRY, stratakvLauncher, stratakvServeCommand } from '../cluster/launchers.ts';
import { collectOutput, sleep, startChild, stopChild, tailOf } from '../cluster/processes.ts';
import { hostPort } from '../cluster/rpc.ts';
import { readLogLines } from '../snapshot/members.ts';
import type { Interval } from './analysis.ts';
import { checkAcknowledged } from './acknowledged.ts';
import { reserveJoinPorts } from './ports.ts';
import { dbSizeOf, loadState, nicedCommand, type RunSettings, type SystemRun } from './state.ts';
import { MOVE_MS_MAX, runTimeline, type MoveOutcome } from './timeline.ts';
import { describeZoneBytes, openZone } from './zones.ts';

const NEW_MEMBERS = 3;
const JOIN_WAIT_ATTEMPTS_MAX = 150;
const JOIN_WAIT_PAUSE_MS = 200;
const OLD_EXIT_WAIT_MS = 30_000;
const TIME_ORIGIN_MARK = 'bench-migrate-time-origin';
const TIME_ORIGIN_IMPORT = `--import=data:text/javascript,process.stderr.write("${TIME_ORIGIN_MARK} "+performance.timeOrigin+"\\n")`;

interface JournalStep {
  readonly step: string;
  readonly startedAtMs: number;
  readonly doneAtMs: number;
  readonly detail: string;
}

/** runStratakv runs one stratakv move (see the file comment); every process it started is stopped on the way out. */
export async function runStratakv(settings: RunSettings, serveFlags: readonly string[]): Promise<SystemRun> {
  const { log } = settings;
  const cluster = await stratakvLauncher({ serveFlags: [...serveFlags, '--zone=a'] }).start();
  const joiners: { name: string; child: ChildProcess; logPath: string; endpoint: string; peerUrl: string }[] = [];
  let zone: Awaited<ReturnType<typeof openZone>> | undefined;
  try {
    let leader = await cluster.leader();
    log(`  ${cluster.description}; leader ${leader.name}`);
    const loaded = await loadState(cluster.members, leader, settings.keys, settings.valueBytes, log);
    leader = await cluster.leader();
    const dbSizeBytes = await dbSizeOf(leader.endpoint);

    const ports = await reserveJoinPorts(2 * NEW_MEMBERS);
    const peerPorts = Array.from({ length: NEW_MEMBERS }, (_, index) => ports[2 * index + 1] ?? 0);
    zone = await openZone(peerPorts, settings.zoneDelayMs);
    const oldEndpoints = cluster.members.map((member) => hostPort(member.endpoint));
    const folder = cluster.folder;
    if (folder === undefined) throw new Error('the stratakv launcher gave no cluster folder for the new members');
    for (let index = 0; index < NEW_MEMBERS; index += 1) {
      const name = `b${index + 1}`;
      const clientUrl = `http://127.0.0.1:${ports[2 * index] ?? 0}`;
      const peerUrl = zone.advertisePeerUrls[index] ?? '';
      const logPath = join(folder, `${name}.log`);
      const { command, args } = stratakvServeCommand([
        '--name', name,
        '--data-dir', join(folder, `${name}.data`),
        '--listen-client-urls', clientUrl,
        '--advertise-client-urls', clientUrl,
        '--listen-peer-urls', `http://127.0.0.1:${peerPorts[index] ?? 0}`,
        '--initial-advertise-peer-urls', peerUrl,
        `--join=${cluster.members.map((member) => member.endpoint).join(',')}`,
        '--zone=b',
        ...serveFlags,
      ]);
      const niced = nicedCommand(settings.newMembersNice, command, args);
      joiners.push({ name, child: startChild(niced.command, niced.args, logPath, { cwd: REPOSITORY }), logPath, endpoint: hostPort(clientUrl), peerUrl });
    }
    for (const joiner of joiners) {
      let waiting = false;
      for (let attempt = 0; attempt < JOIN_WAIT_ATTEMPTS_MAX && !waiting; attempt += 1) {
        if (joiner.child.exitCode !== null) throw new Error(`${joiner.name} exited while waiting to be added:\n${tailOf(joiner.logPath)}`);
        waiting = (await probeJoiner(joiner.peerUrl, 1_000)).waiting;
        if (!waiting) await sleep(JOIN_WAIT_PAUSE_MS);
      }
      if (!waiting) throw new Error(`${joiner.name} did not answer Join.Waiting at ${joiner.peerUrl}:\n${tailOf(joiner.logPath)}`);
    }
    log(`  ${NEW_MEMBERS} members started with --join in zone b${settings.zoneDelayMs > 0 ? `, their peer ports behind ${settings.zoneDelayMs} ms one way` : ''}, waiting to be added`);
    const to = joiners.map((joiner) => `${joiner.name}=${joiner.peerUrl}`).join(',');
    const keyPrefix = `load/${Date.now().toString(36)}`;
    const logOffsets = cluster.members.map((member) => readLogLines(member.logPath ?? '').length);

    const timeline = await runTimeline({
      load: settings.load,
      loadEndpoints: oldEndpoints,
      watchEndpoints: [...oldEndpoints, ...joiners.map((joiner) => joiner.endpoint)],
      keyPrefix,
      warmupMs: settings.warmupMs,
      beforeMs: settings.beforeMs,
      move: () => migrate(oldEndpoints, to, log),
      watched: () => [
        ...cluster.members.map((member) => ({ group: 'old members', pid: member.pid })),
        ...joiners.map((joiner) => ({ group: 'new members', pid: joiner.child.pid ?? 0 })),
        ...(zone?.pid === undefined ? [] : [{ group: 'zone proxy', pid: zone.pid }]),
      ],
      log,
    });

    const notes: string[] = [];
    // Did the old members stop by themselves? They should have once removed.
    const exitDeadline = performance.now() + OLD_EXIT_WAIT_MS;
    const oldPids = cluster.members.map((member) => member.pid);
    const stillRunning = (): number[] => oldPids.filter((pid) => isRunning(pid));
    while (stillRunning().length > 0 && performance.now() < exitDeadline) await sleep(200);
    const running = stillRunning();
    const oldMembers = running.length === 0 ? `all ${oldPids.length} old members exited by themselves` : `${running.length} of ${oldPids.length} old members still running ${OLD_EXIT_WAIT_MS / 1000} s after the move`;
    // What the members' logs say of snapshots during the move: sends, snapshots taken, snapshots installed.
    const logged = [
      ...cluster.members.map((member, index) => ({ name: member.name, path: member.logPath ?? '', from: logOffsets[index] ?? 0 })),
      ...joiners.map((joiner) => ({ name: joiner.name, path: joiner.logPath, from: 0 })),
    ];
    for (const { name, path, from } of logged) {
      const lines = readLogLines(path)
        .slice(from)
        .filter((line) => line.atMs >= timeline.moveFromMs - 1_000 && line.atMs <= timeline.moveToMs && line.message.includes('snapshot'));
      const byMessage = new Map<string, string[]>();
      for (const line of lines) {
        const bytes = Number(line.fields['bytes']);
        const ms = Number(line.fields['ms']);
        const what = [Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(0)} MiB` : '', Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : '', line.fields['index'] !== undefined ? `index ${String(line.fields['index'])}` : '']
          .filter((part) => part !== '')
          .join(' ');
        byMessage.set(line.message, [...(byMessage.get(line.message) ?? []), `${what}${what === '' ? '' : ' '}at ${((line.atMs - timeline.moveFromMs) / 1000).toFixed(0)} s`]);
      }
      if (byMessage.size > 0) notes.push(`${name}'s log during the move: ${[...byMessage].map(([message, items]) => `"${message}" ×${items.length} (${items.join('; ')})`).join(', ')}`);
    }
    const acknowledged = await checkAcknowledged(joiners.map((joiner) => joiner.endpoint), keyPrefix, timeline.report);
    notes.push(...(await describeZoneBytes(zone)));
    return {
      system: 'stratakv',
      description: `${cluster.description} in zone a → 3 members started with --join in zone b`,
      keys: settings.keys,
      valueBytes: settings.valueBytes,
      preloadSeconds: loaded.seconds,
      dbSizeBytes,
      timeline,
      acknowledged,
      oldMembers,
      notes,
    };
  } finally {
    await Promise.all(joiners.map((joiner) => stopChild(joiner.child)));
    await zone?.close();
    await cluster.stop();
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// migrate runs `stratakv migrate run -w json` and reads its step log.
async function migrate(endpoints: readonly string[], to: string, log: (line: string) => void): Promise<MoveOutcome> {
  const args = [TIME_ORIGIN_IMPORT, STRATAKV_ENTRY, 'migrate', 'run', `--endpoints=${endpoints.join(',')}`, `--to=${to}`, '-w', 'json'];
  log(`  running: stratakv migrate run --endpoints=${endpoints.join(',')} --to=${to} -w json`);
  const child = spawn(process.execPath, args, { cwd: REPOSITORY, stdio: ['ignore', 'pipe', 'pipe'] });
  const { stdout, stderr } = await collectOutput(child, MOVE_MS_MAX);
  const originMatch = new RegExp(`${TIME_ORIGIN_MARK} ([0-9.]+)`).exec(stderr);
  const originMs = originMatch === null ? Number.NaN : Number(originMatch[1]);
  const lastLine = stdout.trim().split('\n').pop() ?? '';
  let answer: { result?: string; error?: string; code?: string; record?: { log?: JournalStep[] } } = {};
  try {
    answer = JSON.parse(lastLine) as typeof answer;
  } catch {
    answer = {};
  }
  const journal = answer.record?.log ?? [];
  // Step times are the migrate process's performance.now() (see the file comment); epoch times pass as they are.
  const toEpoch = (ms: number): number => (ms > 1e12 ? ms : originMs + ms);
  const steps: Interval[] = journal.map((item) => ({ name: item.step, fromMs: toEpoch(item.startedAtMs), toMs: toEpoch(item.doneAtMs) }));
  const added = steps.find((step) => step.name === 'add-learners');
  const caughtUp = steps.find((step) => step.name === 'catch-up');
  const catchUp = added !== undefined && caughtUp !== undefined ? [{ name: 'add-learners + catch-up', fromMs: added.fromMs, toMs: caughtUp.toMs }] : [];
  const ok = child.exitCode === 0 && answer.result === 'done';
  const notes = journal.map((item) => `${item.step} ${((item.doneAtMs - item.startedAtMs) / 1000).toFixed(1)} s: ${item.detail}`);
  if (!Number.isFinite(originMs)) notes.push('the migrate process printed no time origin: step times are not placed on the load\'s time line');
  if (!ok) notes.push(`migrate exited with code ${child.exitCode} signal ${child.signalCode}; stdout: ${stdout.slice(-2_000)}; stderr: ${stderr.slice(-2_000)}`);
  return {
    ok,
    ...(ok ? {} : { error: answer.error ?? `exit code ${child.exitCode}, signal ${child.signalCode}` }),
    steps,
    catchUp,
    notes,
  };
}
