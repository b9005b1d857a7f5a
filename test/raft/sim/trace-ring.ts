// The simulator's trace: a bounded ring of recent events, printed when a run fails, and
// optionally a full stream of every event (--trace). Events are stored unformatted and
// the ring's slots are reused, because a run records tens of thousands of events and
// formats only the few it prints.

import type { Message } from '../../../src/raft/index.ts';
import { assertNever } from '../../../src/util/index.ts';

/** TRACE_RING_LINES is how many recent events a failure report shows. */
export const TRACE_RING_LINES = 60;

interface TraceSlot {
  step: number;
  verb: string;
  message: Message | undefined;
  text: string;
}

/** TraceRing keeps the last TRACE_RING_LINES events and streams all of them when asked to. */
export class TraceRing {
  private readonly slots: TraceSlot[] = [];
  private next = 0;
  private readonly stream: ((line: string) => void) | undefined;

  constructor(stream?: (line: string) => void) {
    this.stream = stream;
    for (let i = 0; i < TRACE_RING_LINES; i += 1) this.slots.push({ step: -1, verb: '', message: undefined, text: '' });
  }

  /** recordMessage notes what happened to a message (sent, delivered, dropped, ...). */
  recordMessage(step: number, verb: string, message: Message): void {
    this.record(step, verb, message, '');
  }

  /** recordText notes any other event (crash, role change, commit, conf change, ...). */
  recordText(step: number, text: string): void {
    this.record(step, '', undefined, text);
  }

  /** lines returns the recorded events, oldest first. */
  lines(): string[] {
    const out: string[] = [];
    for (let i = 0; i < TRACE_RING_LINES; i += 1) {
      const slot = this.slots[(this.next + i) % TRACE_RING_LINES] as TraceSlot;
      if (slot.step >= 0) out.push(formatSlot(slot));
    }
    return out;
  }

  private record(step: number, verb: string, message: Message | undefined, text: string): void {
    const slot = this.slots[this.next] as TraceSlot;
    slot.step = step;
    slot.verb = verb;
    slot.message = message;
    slot.text = text;
    this.next = (this.next + 1) % TRACE_RING_LINES;
    if (this.stream !== undefined) this.stream(formatSlot(slot));
  }
}

function formatSlot(slot: TraceSlot): string {
  const body = slot.message === undefined ? slot.text : `${slot.verb} ${formatMessage(slot.message)}`;
  return `[${String(slot.step).padStart(5)}] ${body}`;
}

/** formatMessage renders a message in one short line for the trace. */
export function formatMessage(message: Message): string {
  const head = `${message.from}->${message.to} ${message.type} t${message.term}`;
  switch (message.type) {
    case 'append': {
      const first = message.entries[0];
      const range = first === undefined ? 'none' : `${first.index}..${first.index + message.entries.length - 1}`;
      return `${head} prev=${message.index}/t${message.logTerm} entries=${range} commit=${message.commit}`;
    }
    case 'appendResponse':
      return message.reject
        ? `${head} REJECT index=${message.index} hint=${message.rejectHint}/t${message.logTerm}`
        : `${head} index=${message.index}`;
    case 'vote':
    case 'preVote':
      return `${head} last=${message.index}/t${message.logTerm}${message.leaderTransfer ? ' transfer' : ''}`;
    case 'voteResponse':
    case 'preVoteResponse':
      return `${head} ${message.reject ? 'REJECT' : 'grant'}`;
    case 'snapshot':
      return `${head} snap=${message.snapshot.metadata.index}/t${message.snapshot.metadata.term}`;
    case 'heartbeat':
      return `${head} commit=${message.commit}${message.context === undefined ? '' : ' ctx'}`;
    case 'heartbeatResponse':
      return `${head}${message.context === undefined ? '' : ' ctx'}`;
    case 'timeoutNow':
      return head;
    case 'readIndex':
      return `${head} ctx=${contextId(message.context)}`;
    case 'readIndexResponse':
      return `${head} ctx=${contextId(message.context)} index=${message.index}`;
    default:
      return assertNever(message, 'message');
  }
}

function contextId(context: Uint8Array): string {
  return Buffer.from(context).toString('hex');
}
