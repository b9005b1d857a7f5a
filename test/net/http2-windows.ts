// http2-windows.ts — what HTTP/2 windows a server grants, read with plain node:http2 (tests).

import http2 from 'node:http2';

/** SETTLE_MS_MAX bounds the wait for a server's second SETTINGS frame and its WINDOW_UPDATE. */
const SETTLE_MS_MAX = 2_000;

/**
 * serverWindows connects to `url` and answers the stream window the server advertises and the
 * connection window it grants, once both reach `expectedBytes` or SETTLE_MS_MAX passed (a
 * server may raise them after its first SETTINGS frame, as src/transport/http2-window.ts does).
 */
export async function serverWindows(url: string, expectedBytes: number): Promise<{ streamWindowBytes: number; connectionWindowBytes: number }> {
  const session = http2.connect(url);
  let streamWindowBytes = 0;
  session.on('remoteSettings', (settings: http2.Settings) => {
    streamWindowBytes = settings.initialWindowSize ?? streamWindowBytes;
  });
  session.on('error', () => {});
  try {
    const deadline = Date.now() + SETTLE_MS_MAX;
    const connectionWindowBytes = (): number => session.state.remoteWindowSize ?? 0;
    while ((streamWindowBytes < expectedBytes || connectionWindowBytes() < expectedBytes) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return { streamWindowBytes, connectionWindowBytes: connectionWindowBytes() };
  } finally {
    session.destroy();
  }
}
