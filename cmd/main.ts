// The stratakv CLI: parses the verb and hands over to its command. Verbs that need a
// running server (serve, dev, put, get, …) arrive with the cluster issue; until then they
// are reported as not available rather than pretending to work.
import { readFileSync } from 'node:fs';

const USAGE = `usage: stratakv <command> [flags]

commands:
  version     print the stratakv version
  help        print this help

exit codes: 0 success, 1 failure, 2 usage error`;

/** EXIT_USAGE is the exit code for a malformed command line, as etcd uses it. */
export const EXIT_USAGE = 2;

function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

/** main runs the CLI with the given arguments and returns the process exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const [verb, ...rest] = args;
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
    default:
      console.error(`stratakv: unknown command ${JSON.stringify(verb)}\n\n${USAGE}`);
      return EXIT_USAGE;
  }
}
