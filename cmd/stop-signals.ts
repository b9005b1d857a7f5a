// The signals that stop `serve` and `dev` gracefully: SIGINT (Ctrl-C), SIGTERM, SIGHUP (the
// terminal closed). The first one starts the stop; later ones are reported and ignored, never
// left to Node's default action, which would end the process in the middle of its stop (a
// leader without its hand-over, dev's members orphaned). Repeats are common: a terminal's
// Ctrl-C reaches the whole foreground process group, so under an older Node the launcher
// (cmd/stratakv.js) passes on a SIGINT that its child has already received itself, and GNU
// timeout forwards a signal both to its child and to its process group.

/** STOP_SIGNALS are the signals that stop a member or the dev cluster gracefully. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** StopSignal is one of STOP_SIGNALS. */
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** StopSignals settles `first` with the first stop signal; dispose() removes the listeners. */
export interface StopSignals {
  readonly first: Promise<StopSignal>;
  dispose(): void;
}

/**
 * listenForStopSignals listens for STOP_SIGNALS until disposed: the first settles `first`,
 * each later one calls `onRepeat` (to say that the stop is under way) and is otherwise ignored.
 */
export function listenForStopSignals(onRepeat: (signal: StopSignal) => void): StopSignals {
  let received: StopSignal | undefined;
  let settle: (signal: StopSignal) => void = () => {};
  const first = new Promise<StopSignal>((resolve) => (settle = resolve));
  const handlers = STOP_SIGNALS.map((signal) => {
    const handler = (): void => {
      if (received !== undefined) {
        onRepeat(signal);
        return;
      }
      received = signal;
      settle(signal);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return {
    first,
    dispose: () => {
      for (const [signal, handler] of handlers) process.off(signal, handler);
    },
  };
}
