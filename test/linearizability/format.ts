// Text for people: one line per operation, and a verdict as lines that a failing seed prints
// under its replay command. Every list is capped, because a failing run can hold many
// thousands of operations and only the few around the violation help.
//
// An operation line reads `#7 client=2 read("k") -> "a" [10, 12]`: its index in the history,
// the client, the call and what it observed, and its interval. Values are JSON strings;
// `absent` is a key with no value; an unknown operation's interval is `[10, ∞)`.

import { assert, assertNever } from '../../src/util/index.ts';
import type { History, Operation } from './history.ts';
import type { Verdict } from './verdict.ts';

/** HISTORY_LINES_MAX is how many operations formatHistory prints unless told otherwise. */
export const HISTORY_LINES_MAX = 200;
/** PREFIX_LINES_MAX is how many steps of the longest linearizable prefix formatVerdict prints (the last ones). */
export const PREFIX_LINES_MAX = 20;

/** formatValue prints a value as a JSON string, or `absent` for null. */
export function formatValue(value: string | null): string {
  return value === null ? 'absent' : JSON.stringify(value);
}

/** formatOperation prints one operation as a line, named by its index in the history. */
export function formatOperation(operation: Operation, index: number): string {
  const key = JSON.stringify(operation.key);
  const outcome = operation.outcome;
  let call: string;
  let result: string;
  switch (operation.kind) {
    case 'read':
      call = `read(${key})`;
      result = operation.outcome.status === 'ok' ? `-> ${formatValue(operation.outcome.value)}` : '';
      break;
    case 'write':
      call = `write(${key}, ${formatValue(operation.value)})`;
      result = operation.outcome.status === 'ok' ? 'ok' : '';
      break;
    case 'cas':
      call = `cas(${key}, ${formatValue(operation.expected)} -> ${formatValue(operation.value)})`;
      result = operation.outcome.status === 'ok' ? (operation.outcome.succeeded ? 'succeeded' : 'failed') : '';
      break;
    case 'delete':
      call = `delete(${key})`;
      result = operation.outcome.status === 'ok'
        ? (operation.outcome.deleted === undefined ? 'ok' : `deleted=${operation.outcome.deleted}`)
        : '';
      break;
    default:
      return assertNever(operation, 'operation kind');
  }
  let interval: string;
  switch (outcome.status) {
    case 'ok':
      interval = `[${outcome.responseTime === operation.invokeTime ? operation.invokeTime : `${operation.invokeTime}, ${outcome.responseTime}`}]`;
      break;
    case 'fail':
      result = 'fail';
      interval = `[${operation.invokeTime}, ${outcome.responseTime}]`;
      break;
    case 'unknown':
      result = outcome.giveUpTime === undefined ? 'unknown' : `unknown (gave up at ${outcome.giveUpTime})`;
      interval = `[${operation.invokeTime}, ∞)`;
      break;
    default:
      return assertNever(outcome, 'outcome status');
  }
  return `#${index} client=${operation.client} ${call} ${result} ${interval}`;
}

/** FormatHistoryOptions selects and bounds what formatHistory prints. */
export interface FormatHistoryOptions {
  /** key prints only that key's operations. */
  readonly key?: string;
  /** linesMax caps the operation lines; HISTORY_LINES_MAX by default. */
  readonly linesMax?: number;
}

/** formatHistory prints operations in invocation order (ties in history order), one a line, capped. */
export function formatHistory(history: History, options: FormatHistoryOptions = {}): string[] {
  const linesMax = options.linesMax ?? HISTORY_LINES_MAX;
  assert(Number.isInteger(linesMax) && linesMax >= 0, 'linesMax must be a non-negative integer');
  const indices: number[] = [];
  history.forEach((operation, index) => {
    if (options.key === undefined || operation.key === options.key) indices.push(index);
  });
  indices.sort((a, b) => (history[a]?.invokeTime ?? 0) - (history[b]?.invokeTime ?? 0) || a - b);
  const lines = indices.slice(0, linesMax).map((index) => formatOperation(history[index] as Operation, index));
  if (indices.length > linesMax) lines.push(`... ${indices.length - linesMax} more operations not shown`);
  return lines;
}

/** formatVerdict prints a verdict as lines: the result, and for a violation what to look at. */
export function formatVerdict(verdict: Verdict): string[] {
  switch (verdict.result) {
    case 'linearizable':
      return [`linearizable (${verdict.steps} search steps)`];
    case 'unknown':
      return [`unknown: ${verdict.reason} (${verdict.steps} search steps)`];
    case 'not-linearizable': {
      const explanation = verdict.explanation;
      const lines = [`not linearizable: key ${JSON.stringify(verdict.key)} (${verdict.steps} search steps)`, `  ${explanation.summary}`];
      const prefix = explanation.prefix;
      const shown = prefix.slice(Math.max(0, prefix.length - PREFIX_LINES_MAX));
      lines.push(`  longest linearizable prefix found: ${prefix.length} operations${shown.length < prefix.length ? `, the last ${shown.length} shown` : ''}`);
      for (const step of shown) lines.push(`    ${formatOperation(step.operation, step.index)}   => ${formatValue(step.valueAfter)}`);
      lines.push(`  value after the prefix: ${formatValue(explanation.valueAfterPrefix)}`);
      lines.push('  could not be placed next:');
      lines.push(`    ${formatOperation(explanation.blocked.operation, explanation.blocked.index)}`);
      if (explanation.valuesRefused.length > 0) {
        lines.push(`  values the key held wherever it was tried: ${explanation.valuesRefused.map(formatValue).join(', ')}`);
      }
      lines.push(`  operations on the key concurrent with it: ${explanation.concurrent.length + explanation.concurrentOmitted}`);
      for (const other of explanation.concurrent) lines.push(`    ${formatOperation(other.operation, other.index)}`);
      if (explanation.concurrentOmitted > 0) lines.push(`    ... ${explanation.concurrentOmitted} more not shown`);
      const blocked = explanation.blocked.operation;
      if (blocked.kind === 'read' && blocked.outcome.status === 'ok' && blocked.outcome.value !== null) {
        lines.push(`  operations that wrote the value it saw: ${explanation.writers.length + explanation.writersOmitted}`);
        for (const writer of explanation.writers) lines.push(`    ${formatOperation(writer.operation, writer.index)}`);
        if (explanation.writersOmitted > 0) lines.push(`    ... ${explanation.writersOmitted} more not shown`);
      }
      return lines;
    }
    default:
      return assertNever(verdict, 'verdict');
  }
}
