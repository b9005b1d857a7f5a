// The native addon on first use: `serve` and `dev` need it (the log's CRC32c, aligned I/O).
// `npm ci` builds it through the package's `prepare` script; when that did not run (npm ci
// --ignore-scripts, a copy without node_modules/.., an addon deleted by hand), the CLI builds
// it here once, with one line saying so, instead of dying with NATIVE_UNAVAILABLE.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { NATIVE_ADDON_PATH } from '../src/native/index.ts';

/** BUILD_NATIVE_SCRIPT is the project's own build of the addon (it names any missing tool). */
export const BUILD_NATIVE_SCRIPT = fileURLToPath(new URL('../scripts/build-native.sh', import.meta.url));
// node-gyp with -O3 on two cores takes about a minute; fetching Node 24 first can add one.
const BUILD_TIMEOUT_MS = 15 * 60 * 1000;

/** EnsureNativeAddonOptions names the addon and its build; the defaults are the real ones. */
export interface EnsureNativeAddonOptions {
  readonly addonPath?: string;
  readonly buildScript?: string;
  /** Where the one line about the build (and a failure) goes. */
  readonly say?: (line: string) => void;
}

/**
 * ensureNativeAddon builds the addon when it is missing and answers whether it is there now.
 * A build failure has already printed what was missing (scripts/build-native.sh names the
 * tool and the apt line); this adds one line saying what could not run without it.
 */
export function ensureNativeAddon(command: string, options: EnsureNativeAddonOptions = {}): boolean {
  const addonPath = options.addonPath ?? NATIVE_ADDON_PATH;
  const say = options.say ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (existsSync(addonPath)) return true;
  // A build named by STRATAKV_NATIVE_ADDON (debug, sanitizer) is the user's own: loading it
  // reports NATIVE_UNAVAILABLE with its path; building the default one would not help.
  if (options.addonPath === undefined && process.env.STRATAKV_NATIVE_ADDON !== undefined) return true;
  const buildScript = options.buildScript ?? BUILD_NATIVE_SCRIPT;
  say(`stratakv ${command}: the native addon is not built yet; building it now with ${buildScript} (once, about a minute)`);
  const result = spawnSync('bash', [buildScript, '--if-missing'], { stdio: ['ignore', 'inherit', 'inherit'], timeout: BUILD_TIMEOUT_MS });
  if (result.status === 0 && existsSync(addonPath)) return true;
  const how = result.error !== undefined ? result.error.message : result.signal !== null ? `ended by ${result.signal}` : `exit code ${String(result.status)}`;
  say(`stratakv ${command}: cannot run without the native addon (${addonPath}); its build failed (${how}), see above`);
  return false;
}
