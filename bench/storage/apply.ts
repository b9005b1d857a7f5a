// The state machine's apply rate, for bench/storage.ts (filled in with the state machine).

/** benchApply measures entries applied per second into LevelDB. */
export function benchApply(options: { rounds: number; directory: () => string }): Promise<{ batch: number; entriesPerSecond: number[] }> {
  void options;
  return Promise.resolve({ batch: 0, entriesPerSecond: [0] });
}
