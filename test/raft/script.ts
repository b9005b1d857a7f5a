// A scripted test language for the Raft core (after etcd-io/raft's datadriven tests). A
// script file holds commands and, under each, the output it must produce:
//
//   > campaign 1
//   1 becomes preCandidate at term 0
//   ...
//
// Run with UPDATE_GOLDEN=1 to rewrite the expected output, then review the diff. Lines
// starting with '#' are comments and are kept.

import { isStrataError } from '../../src/util/errors.ts';
import type { ConfChange, ConfChangeSingle, ConfChangeTransition, Entry, Message, NodeId } from '../../src/raft/index.ts';
import { EntryType, decodeConfChange } from '../../src/raft/index.ts';
import { Harness, bytes } from './harness.ts';
import type { HarnessOptions } from './harness.ts';

const TEXT = new TextDecoder();

function describeEntry(entry: Entry): string {
  if (entry.type === EntryType.ConfChange) {
    const change = decodeConfChange(entry.data);
    const parts = change.changes.map((single) => `${single.type[0]}${single.nodeId}`);
    return `${entry.term}/${entry.index} conf[${change.transition}${parts.length > 0 ? ' ' + parts.join(' ') : ' leave'}]`;
  }
  return `${entry.term}/${entry.index} ${JSON.stringify(TEXT.decode(entry.data))}`;
}

/** describeMessage renders one message on one line. */
export function describeMessage(message: Message): string {
  const head = `${message.from}->${message.to} ${message.type} term=${message.term}`;
  switch (message.type) {
    case 'append':
      return `${head} logTerm=${message.logTerm} index=${message.index} commit=${message.commit} entries=[${message.entries.map(describeEntry).join(', ')}]`;
    case 'appendResponse':
      return message.reject
        ? `${head} index=${message.index} reject hint=${message.rejectHint} hintTerm=${message.logTerm}`
        : `${head} index=${message.index}`;
    case 'vote':
    case 'preVote':
      return `${head} logTerm=${message.logTerm} index=${message.index}${message.leaderTransfer ? ' transfer' : ''}`;
    case 'voteResponse':
    case 'preVoteResponse':
      return `${head}${message.reject ? ' reject' : ''}`;
    case 'snapshot':
      return `${head} snapshot=${message.snapshot.metadata.term}/${message.snapshot.metadata.index} voters=${message.snapshot.metadata.confState.voters.join(',')}`;
    case 'heartbeat':
      return `${head} commit=${message.commit}${message.context === undefined ? '' : ` ctx=${TEXT.decode(message.context)}`}`;
    case 'heartbeatResponse':
      return `${head}${message.context === undefined ? '' : ` ctx=${TEXT.decode(message.context)}`}`;
    case 'timeoutNow':
      return head;
    case 'readIndex':
      return `${head} ctx=${TEXT.decode(message.context)}`;
    case 'readIndexResponse':
      return `${head} index=${message.index} ctx=${TEXT.decode(message.context)}`;
  }
}

function parseIds(text: string | undefined): NodeId[] {
  if (text === undefined || text === '') return [];
  return text.split(',').map((part) => Number(part));
}

function parseFlags(args: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (const arg of args) {
    const [key, value] = arg.split('=');
    flags.set(key as string, value ?? 'true');
  }
  return flags;
}

function parseChanges(args: string[]): ConfChangeSingle[] {
  return args
    .filter((arg) => /^[vlr]\d+$/.test(arg))
    .map((arg): ConfChangeSingle => {
      const nodeId = Number(arg.slice(1));
      const type = arg[0] === 'v' ? 'addVoter' : arg[0] === 'l' ? 'addLearner' : 'removeNode';
      return { type, nodeId };
    });
}

/** ScriptRunner executes script commands against a Harness and renders their output. */
export class ScriptRunner {
  private harness: Harness | undefined;
  private lastRoles = new Map<NodeId, string>();

  private get cluster(): Harness {
    if (this.harness === undefined) throw new Error('the script must start with add-nodes');
    return this.harness;
  }

  run(command: string): string[] {
    const [verb, ...args] = command.trim().split(/\s+/);
    const out: string[] = [];
    const report = (action: () => void): void => {
      try {
        action();
      } catch (error) {
        if (isStrataError(error)) out.push(`error ${error.code}`);
        else throw error;
      }
    };
    switch (verb) {
      case 'add-nodes': {
        const flags = parseFlags(args);
        const numeric = (name: string): number | undefined => (flags.has(name) ? Number(flags.get(name)) : undefined);
        const options: HarnessOptions = {
          preVote: flags.has('prevote'),
          checkQuorum: flags.has('checkquorum') || flags.has('lease'),
          readOnlyOption: flags.has('lease') ? 'leaseBased' : 'safe',
          ...(numeric('inflight') === undefined ? {} : { maxInflightMessages: numeric('inflight') as number }),
          ...(numeric('msgbytes') === undefined ? {} : { maxEntriesBytesPerMessage: numeric('msgbytes') as number }),
          ...(numeric('uncommitted') === undefined ? {} : { maxUncommittedBytes: numeric('uncommitted') as number }),
        };
        this.harness = new Harness(parseIds(flags.get('voters')), options, parseIds(flags.get('learners')));
        for (const id of parseIds(flags.get('empty'))) this.harness.addNode(id, []);
        // Persist and apply the bootstrap entries, as a node's first Ready does.
        this.harness.processReady();
        break;
      }
      case 'campaign':
        this.cluster.node(Number(args[0])).raft.campaign();
        break;
      case 'tick': {
        const count = Number(args[1] ?? 1);
        for (const id of parseIds(args[0])) this.cluster.tick(id, count);
        break;
      }
      case 'propose':
        report(() => {
          const { index, term } = this.cluster.node(Number(args[0])).raft.propose(bytes(args[1] ?? ''));
          out.push(`proposed at ${term}/${index}`);
        });
        break;
      case 'propose-conf-change':
        report(() => {
          const flags = parseFlags(args.slice(1));
          const change: ConfChange = {
            transition: (flags.get('transition') ?? 'auto') as ConfChangeTransition,
            changes: parseChanges(args.slice(1)),
          };
          const { index, term } = this.cluster.node(Number(args[0])).raft.proposeConfChange(change);
          out.push(`proposed conf change at ${term}/${index}`);
        });
        break;
      case 'transfer-leader':
        report(() => this.cluster.node(Number(args[0])).raft.transferLeader(Number(args[1])));
        break;
      case 'read-index':
        report(() => this.cluster.node(Number(args[0])).raft.readIndex(bytes(args[1] ?? '')));
        break;
      case 'read-states': {
        const node = this.cluster.node(Number(args[0]));
        for (const state of node.readStates) out.push(`read ${TEXT.decode(state.context)} at index ${state.index}`);
        node.readStates = [];
        break;
      }
      case 'process-ready':
        this.cluster.processReady();
        break;
      case 'deliver': {
        const flags = parseFlags(args);
        const to = flags.has('to') ? Number(flags.get('to')) : undefined;
        const drop = flags.has('drop');
        this.cluster.processReady();
        const selected = (message: Message): boolean => to === undefined || message.to === to;
        let delivered: Message[];
        if (drop) {
          delivered = this.cluster.mailbox.filter(selected);
          this.cluster.mailbox = this.cluster.mailbox.filter((message) => !selected(message));
        } else {
          delivered = this.cluster.deliver(selected);
        }
        for (const message of delivered) {
          const dropped = drop || this.cluster.cut.has(`${message.from}->${message.to}`);
          out.push(`${dropped ? 'dropped ' : ''}${describeMessage(message)}`);
        }
        break;
      }
      case 'stabilize':
        for (const message of this.cluster.stabilize()) {
          const dropped = this.cluster.cut.has(`${message.from}->${message.to}`);
          out.push(`${dropped ? 'dropped ' : ''}${describeMessage(message)}`);
        }
        break;
      case 'isolate':
        this.cluster.isolate(Number(args[0]));
        break;
      case 'cut':
        for (const pair of args) this.cluster.cut.add(pair);
        break;
      case 'heal':
        this.cluster.heal();
        break;
      case 'restart':
        this.cluster.restart(Number(args[0]));
        break;
      case 'compact': {
        const node = this.cluster.node(Number(args[0]));
        const index = Number(args[1]);
        node.storage.createSnapshot(index, node.raft.status().config, bytes(`snapshot@${index}`));
        node.storage.compact(index);
        out.push(`node ${node.id} log starts at ${node.storage.firstIndex()}`);
        break;
      }
      case 'log': {
        const node = this.cluster.node(Number(args[0]));
        const status = node.raft.status();
        for (let index = node.storage.firstIndex(); index <= status.lastIndex; index += 1) {
          const term = node.raft.logTermAt(index);
          out.push(`${term}/${index}`);
        }
        break;
      }
      case 'applied':
        for (const id of parseIds(args[0])) out.push(`${id}: ${JSON.stringify(this.cluster.appliedData(id))}`);
        break;
      case 'status':
        for (const node of this.cluster.nodes.values()) {
          const s = node.raft.status();
          const config = s.config.votersOutgoing.length > 0 ? `voters=(${s.config.voters}) && (${s.config.votersOutgoing})` : `voters=(${s.config.voters})`;
          const learners = s.config.learners.length > 0 ? ` learners=(${s.config.learners})` : '';
          out.push(
            `${s.id} ${s.role} term=${s.term} lead=${s.leaderId} vote=${s.vote} commit=${s.commit} applied=${s.applied} last=${s.lastIndex} ${config}${learners}`,
          );
        }
        break;
      default:
        throw new Error(`unknown script command ${JSON.stringify(verb)}`);
    }
    // Report role changes after every command: they are what most scripts are about.
    if (this.harness !== undefined) {
      for (const node of this.harness.nodes.values()) {
        const s = node.raft.status();
        const role = `${s.role}@${s.term}`;
        if (this.lastRoles.get(node.id) !== role) {
          if (this.lastRoles.has(node.id)) out.push(`~ ${node.id} is ${s.role} at term ${s.term}`);
          this.lastRoles.set(node.id, role);
        }
      }
    }
    return out;
  }
}

/** runScript runs a script file's commands and returns the file as it should read. */
export function runScript(text: string): string {
  const runner = new ScriptRunner();
  const lines = text.split('\n');
  const result: string[] = [];
  let index = 0;
  while (index < lines.length) {
    const line = lines[index] as string;
    index += 1;
    if (line.startsWith('> ')) {
      result.push(line);
      // Skip the old expected output of this command.
      while (index < lines.length && !(lines[index] as string).startsWith('> ') && !(lines[index] as string).startsWith('#') && (lines[index] as string) !== '') index += 1;
      result.push(...runner.run(line.slice(2)));
    } else {
      result.push(line);
    }
  }
  return result.join('\n');
}
