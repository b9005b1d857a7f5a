// The stratakv CLI: parses the verb and hands over to its command. `serve` and `dev` live in
// their own files and are loaded only when asked for, so the client verbs start quickly and
// the client verbs do not pay for the server's imports.
import { packageVersion } from './package-version.ts';
import { CLIENT_USAGE, isClientVerb, runClientVerb } from './client-verbs.ts';
import { parseServeFlags, SERVE_FLAGS_USAGE, UsageError } from './serve-flags.ts';
import { LOG_USAGE } from './log-usage.ts';
import { DIFF_USAGE } from './diff-usage.ts';
import { isStrataError } from '../src/util/errors.ts';

// The integrity verbs' help lines (integrity-verbs.ts keeps the same text; it is loaded on demand).
const INTEGRITY_USAGE_LINES = `  check [--endpoints E] [-w simple|json]  every member's state digest at one agreed index, and a verdict
  member rebuild --member NAME [--endpoints E]
                                       the member takes the leader's state; agreeing clears its CORRUPT alarm`;
import { SNAPSHOT_USAGE } from './snapshot-usage.ts';

const USAGE = `usage: stratakv <command> [flags]

commands:
  serve [flags]                        run a cluster member (etcd's flags; see below)
  dev [flags]                          run a local development cluster
${CLIENT_USAGE}
${SNAPSHOT_USAGE}
${LOG_USAGE}
${DIFF_USAGE}
${INTEGRITY_USAGE_LINES}
  migrate plan|run|status|rollback --endpoints E [--to NAME=PEER_URL,...]
                                       move the cluster onto new members (started with serve --join)
  migrate copy create|status|verify|cancel --from etcd://H:P --to H:P
                                       copy another cluster into a read-only mirror, with its revisions
  version                              print the stratakv version
  help                                 print this help

${SERVE_FLAGS_USAGE}

exit codes: 0 success, 1 failure, 2 usage error`;

/** EXIT_USAGE is the exit code for a malformed command line, as etcd uses it. */
export const EXIT_USAGE = 2;
/** EXIT_FAILURE is the exit code for an operating error. */
export const EXIT_FAILURE = 1;

function usageFailure(verb: string, error: UsageError): number {
  console.error(`stratakv ${verb}: ${error.message}\n(run "stratakv help" for usage)`);
  return EXIT_USAGE;
}

function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

// runSnapshot runs `stratakv snapshot <verb>`: loaded on demand (it pulls in the snapshot
// format and the storage), with Ctrl-C (any stop signal) cancelling it so that a save removes
// FILE.part and a restore what it built, and the progress bar on stderr when it is a terminal.
async function runSnapshot(args: readonly string[]): Promise<number> {
  const [snapshotVerb, ...rest] = args;
  if (snapshotVerb === undefined || wantsHelp(args)) {
    console.log(SNAPSHOT_USAGE);
    return snapshotVerb === undefined ? EXIT_USAGE : 0;
  }
  const { isSnapshotVerb, runSnapshotVerb } = await import('./snapshot-verbs.ts');
  if (!isSnapshotVerb(snapshotVerb)) {
    console.error(`stratakv snapshot: unknown command ${JSON.stringify(snapshotVerb)}\n\n${SNAPSHOT_USAGE}`);
    return EXIT_USAGE;
  }
  const { listenForStopSignals } = await import('./stop-signals.ts');
  const controller = new AbortController();
  const signals = listenForStopSignals(() => undefined);
  void signals.first.then(() => controller.abort());
  try {
    return await runSnapshotVerb(snapshotVerb, rest, {
      out: (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
      ...(process.stderr.isTTY ? { progress: (text: string) => process.stderr.write(text) } : {}),
      signal: controller.signal,
    });
  } finally {
    signals.dispose();
  }
}

/** main runs the CLI with the given arguments and returns the process exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const [verb, ...rest] = args;
  try {
    switch (verb) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        return verb === undefined ? EXIT_USAGE : 0;
      case 'version':
      case '--version':
        if (rest.length > 0) {
          console.error(`stratakv version: unexpected argument ${JSON.stringify(rest[0])}`);
          return EXIT_USAGE;
        }
        console.log(`stratakv ${packageVersion()} (node ${process.versions.node})`);
        return 0;
      case 'serve': {
        if (wantsHelp(rest)) {
          console.log(SERVE_FLAGS_USAGE);
          return 0;
        }
        const options = parseServeFlags(rest);
        // Loaded on demand: the client verbs should not pay for the server's imports (nor pino's).
        const { createLogger, grpcLogSink } = await import('../src/obs/index.ts');
        // From here on a member's every line is a log line, in the format asked for: grpc-js's too.
        const logger = createLogger({ name: options.name, level: options.logLevel, format: options.logFormat });
        (await import('@grpc/grpc-js')).setLogger(grpcLogSink(logger));
        if (!(await import('./native-addon.ts')).ensureNativeAddon('serve', { say: (line) => logger.warn(line) })) return EXIT_FAILURE;
        const { runServe } = await import('./serve.ts');
        try {
          return await runServe(options, logger);
        } catch (error) {
          // A refusal to start (a state machine that fails its integrity check, a data dir of
          // another member) is an operating error: its message, not a stack trace.
          if (!isStrataError(error)) throw error;
          logger.error(error.message, { code: error.code, ...(Object.keys(error.details).length === 0 ? {} : { details: error.details }) });
          return EXIT_FAILURE;
        }
      }
      case 'dev': {
        if (!wantsHelp(rest) && !(await import('./native-addon.ts')).ensureNativeAddon('dev')) return EXIT_FAILURE;
        const { runDev } = await import('./dev.ts');
        return await runDev(rest);
      }
      case 'snapshot':
        return await runSnapshot(rest);
      case 'log': {
        // Loaded on demand, like snapshot: it pulls in the stream's client and the log's decoders.
        const { runLogCommand } = await import('./log-verb.ts');
        return await runLogCommand(rest);
      }
      case 'diff': {
        // Loaded on demand, like log: it pulls in the diff's client.
        const { runDiffCommand } = await import('./diff-verb.ts');
        return await runDiffCommand(rest);
      }
      case 'migrate': {
        // Loaded on demand, like diff: it pulls in the migration's clients.
        const { MIGRATE_USAGE, runMigrateCommand } = await import('./migrate-verb.ts');
        if (wantsHelp(rest) || rest.length === 0) {
          console.log(MIGRATE_USAGE);
          return rest.length === 0 ? EXIT_USAGE : 0;
        }
        const interrupt = new AbortController();
        const onSignal = (): void => interrupt.abort();
        // SIGTERM too: `migrate copy create` follows its source until stopped, and a
        // supervisor stops it with SIGTERM; the copier then ends its batch and exits cleanly.
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          return await runMigrateCommand(rest, {
            out: (line) => process.stdout.write(`${line}\n`),
            err: (text) => process.stderr.write(text),
            isTerminal: process.stderr.isTTY,
            signal: interrupt.signal,
            readLine: readStdinLine,
          });
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      }
      case 'check':
      case 'member': {
        const { INTEGRITY_USAGE, runCheckVerb, runMemberVerb } = await import('./integrity-verbs.ts');
        if (wantsHelp(rest)) {
          console.log(INTEGRITY_USAGE);
          return 0;
        }
        const io = { out: (line: string) => process.stdout.write(`${line}\n`), err: (line: string) => process.stderr.write(`${line}\n`) };
        try {
          return verb === 'check' ? await runCheckVerb(rest, io) : await runMemberVerb(rest, io);
        } catch (error) {
          if (error instanceof UsageError) throw error;
          if (isStrataError(error)) {
            console.error(`stratakv ${verb}: ${error.message}`);
            return EXIT_FAILURE;
          }
          throw error;
        }
      }
      default:
        if (isClientVerb(verb)) {
          if (wantsHelp(rest)) {
            console.log(CLIENT_USAGE);
            return 0;
          }
          return await runClientVerb(verb, rest, {
            out: (line) => process.stdout.write(`${line}\n`),
            err: (line) => process.stderr.write(`${line}\n`),
          });
        }
        console.error(`stratakv: unknown command ${JSON.stringify(verb)}\n\n${USAGE}`);
        return EXIT_USAGE;
    }
  } catch (error) {
    if (error instanceof UsageError) return usageFailure(verb ?? '', error);
    throw error;
  }
}

/** readStdinLine reads one line of standard input (undefined at its end): an operator's answer to a prompt. */
async function readStdinLine(): Promise<string | undefined> {
  const { createInterface } = await import('node:readline');
  const lines = createInterface({ input: process.stdin, terminal: false });
  try {
    for await (const line of lines) return line;
    return undefined;
  } finally {
    lines.close();
  }
}
