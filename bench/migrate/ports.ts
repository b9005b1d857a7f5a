// Ports for members that bind late: a `stratakv serve --join` member binds its client port
// only once it has been added, so a port-0 probe made when it starts could be taken by then.
// They come from JOIN_PORTS, a range no test uses (test/integration/migrate.test.ts uses
// 21600-21799), each probed free at the time; the range is walked from a point that depends on
// the PID, so two benches at once are unlikely to collide.
import { createServer } from 'node:net';

/** JOIN_PORTS is bench:migrate's own range. */
export const JOIN_PORTS = { first: 22_000, last: 22_199 } as const;

let cursor = 0;

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** reserveJoinPorts answers `count` distinct ports of JOIN_PORTS that are free now (bounded walk of the range). */
export async function reserveJoinPorts(count: number): Promise<number[]> {
  const size = JOIN_PORTS.last - JOIN_PORTS.first + 1;
  if (!(count >= 1 && count <= size)) throw new Error(`reserveJoinPorts: bad count ${count}`);
  const ports: number[] = [];
  for (let step = 0; step < size && ports.length < count; step += 1) {
    cursor += 1;
    const port = JOIN_PORTS.first + ((process.pid + cursor) % size);
    if (await portIsFree(port)) ports.push(port);
  }
  if (ports.length < count) throw new Error(`only ${ports.length} of ${count} ports free in ${JOIN_PORTS.first}-${JOIN_PORTS.last}`);
  return ports;
}
