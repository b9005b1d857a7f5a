// A process of its own that holds the zone proxies of bench:migrate (test/net/tcp-proxy.ts): one
// proxy per new member's peer port, each adding the same delay one way, so that the peer links
// to the new zone carry a zone's latency and the bench's own event loop carries none of the
// bytes (three learners' snapshots pass through here). Started by zones.ts with the delay and
// the target ports; it answers the proxies' ports over IPC and runs until it is disconnected or
// sent SIGTERM, then closes every proxy and exits.
import { startTcpProxy, type TcpProxy } from '../../test/net/tcp-proxy.ts';

/** ZoneProxyReady is the message with the proxies' ports, in the order of the targets. */
export interface ZoneProxyReady {
  readonly type: 'ready';
  readonly ports: readonly number[];
}

/** ZoneProxyStats is the bytes each proxy carried, sent on "stats". */
export interface ZoneProxyStats {
  readonly type: 'stats';
  readonly bytes: readonly { readonly up: number; readonly down: number }[];
}

const [delayText, ...targetTexts] = process.argv.slice(2);
const delayMsOneWay = Number(delayText);
const targets = targetTexts.map(Number);
if (!(Number.isInteger(delayMsOneWay) && delayMsOneWay >= 0 && delayMsOneWay <= 10_000)) throw new Error(`zone-proxy: bad delay ${delayText}`);
if (targets.length === 0 || targets.some((port) => !(Number.isInteger(port) && port > 0 && port < 65_536))) throw new Error('zone-proxy: bad target ports');

const proxies: TcpProxy[] = [];
let closing = false;
async function closeAll(): Promise<void> {
  if (closing) return;
  closing = true;
  await Promise.all(proxies.map((proxy) => proxy.close()));
  process.exit(0);
}
process.once('SIGTERM', () => void closeAll());
process.once('disconnect', () => void closeAll());
process.on('message', (message: { type: string }) => {
  if (message.type === 'stats') process.send?.({ type: 'stats', bytes: proxies.map((proxy) => ({ up: proxy.stats().bytesUp, down: proxy.stats().bytesDown })) } satisfies ZoneProxyStats);
});
for (const [index, targetPort] of targets.entries()) {
  proxies.push(await startTcpProxy({ targetHost: '127.0.0.1', targetPort, delayMsOneWay, seed: index + 1 }));
}
process.send?.({ type: 'ready', ports: proxies.map((proxy) => proxy.port) } satisfies ZoneProxyReady);
