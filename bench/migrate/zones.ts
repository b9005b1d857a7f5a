// The new zone's peer latency for bench:migrate: with a delay, each new member's peers reach it
// through a proxy (zone-proxy-process.ts, its own process) that holds every chunk that long in
// each direction, as test/integration/migrate.test.ts does; without one, directly. Either way
// the answer is the peer URL to advertise for each new member.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

import { stopChild, trackChild } from '../cluster/processes.ts';
import type { ZoneProxyReady, ZoneProxyStats } from './zone-proxy-process.ts';

const READY_TIMEOUT_MS = 30_000;
const STATS_TIMEOUT_MS = 5_000;

/** Zone is the new zone's peer links: the URL to advertise per new member, and how to end it. */
export interface Zone {
  readonly delayMsOneWay: number;
  readonly advertisePeerUrls: readonly string[];
  /** pid is the proxy process's (undefined without proxies), for its CPU time. */
  readonly pid: number | undefined;
  /** bytes answers what each proxy carried (both directions); empty without proxies. */
  bytes(): Promise<readonly { readonly up: number; readonly down: number }[]>;
  close(): Promise<void>;
}

/** openZone answers the peer URLs for members listening on `peerPorts`, behind proxies when `delayMsOneWay` > 0. */
export async function openZone(peerPorts: readonly number[], delayMsOneWay: number): Promise<Zone> {
  if (delayMsOneWay === 0) {
    return { delayMsOneWay, advertisePeerUrls: peerPorts.map((port) => `http://127.0.0.1:${port}`), pid: undefined, bytes: () => Promise.resolve([]), close: () => Promise.resolve() };
  }
  const child: ChildProcess = fork(join(import.meta.dirname, 'zone-proxy-process.ts'), [String(delayMsOneWay), ...peerPorts.map(String)], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  trackChild(child);
  let ports: readonly number[];
  try {
    ports = await new Promise<readonly number[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the zone proxies did not start within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      child.once('message', (message: ZoneProxyReady) => {
        clearTimeout(timer);
        resolve(message.ports);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the zone proxy process exited (code ${code})`));
      });
    });
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return {
    delayMsOneWay,
    advertisePeerUrls: ports.map((port) => `http://127.0.0.1:${port}`),
    pid: child.pid,
    bytes: () =>
      new Promise((resolve) => {
        if (!child.connected) return resolve([]);
        const timer = setTimeout(() => resolve([]), STATS_TIMEOUT_MS);
        const onMessage = (message: ZoneProxyStats): void => {
          if (message.type !== 'stats') return;
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve(message.bytes);
        };
        child.on('message', onMessage);
        child.send({ type: 'stats' });
      }),
    async close() {
      if (child.connected) child.disconnect();
      await stopChild(child);
    },
  };
}

/** describeZoneBytes is the run's notes on what the zone's proxies carried: none without proxies. */
export async function describeZoneBytes(zone: Zone): Promise<string[]> {
  const carried = await zone.bytes();
  if (carried.length === 0) return [];
  return [`zone proxies carried ${carried.map((bytes) => `${((bytes.up + bytes.down) / 2 ** 20).toFixed(0)} MiB`).join(', ')} (both ways, per new member)`];
}
