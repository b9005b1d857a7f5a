// The image chaos members run in (issue 15): built FROM scratch out of local files, since no
// image registry is reachable. It holds exactly what `stratakv serve` needs: the Node binary of
// this process (Node 24 when started through scripts/node24.sh), every shared library `ldd`
// lists for it and for every native addon it may load (plus the loader), the project's
// package.json, cmd, src and proto, its production node_modules and the built addon.
//
// Two images, so that editing src does not resend 200 MB to the daemon:
//   stratakv-chaos-base:<hash>    node, libraries, node_modules (changes with `npm ci` or Node)
//   stratakv-chaos-member:<hash>  FROM that base; package.json, cmd, src, proto, the addon
// Each tag's hash is over its Dockerfile and its files' paths, sizes and mtimes, so an
// unchanged tree finds its image and builds nothing. Files are staged in a temporary folder by
// hard link (a copy across file systems), sent to the daemon as a tar through testcontainers'
// Docker client, and the folder is removed. Old tags are pruned: the newest IMAGES_KEPT members and
// the bases they use stay as the cache.

import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { dockerClient, withDeadline, type DockerClient } from './docker-engine.ts';

/** MEMBER_IMAGE_REPOSITORY names member images: `stratakv-chaos-member:<hash>`. */
export const MEMBER_IMAGE_REPOSITORY = 'stratakv-chaos-member';
/** BASE_IMAGE_REPOSITORY names base images: `stratakv-chaos-base:<hash>`. */
export const BASE_IMAGE_REPOSITORY = 'stratakv-chaos-base';
/** IMAGE_LABEL is set on both images: `base` or `member`. */
export const IMAGE_LABEL = 'stratakv.chaos.image';
const BASE_OF_MEMBER_LABEL = 'stratakv.chaos.base';
/** IMAGES_KEPT is how many member images pruning keeps (the newest, the one in use among them). */
export const IMAGES_KEPT = 2;
/** NODE_PATH_IN_IMAGE is where the Node binary is in the image (the members' ENTRYPOINT). */
export const NODE_PATH_IN_IMAGE = '/usr/local/bin/node';
/** APP_DIR_IN_IMAGE is the project's folder in the image, the members' working directory. */
export const APP_DIR_IN_IMAGE = '/app';

/** IMAGE_BUILD_TIMEOUT_MS bounds one image build (a cold base sends about 200 MB). */
export const IMAGE_BUILD_TIMEOUT_MS = 5 * 60_000;
const DOCKER_CALL_TIMEOUT_MS = 30_000;
const LDD_TIMEOUT_MS = 10_000;
const HASH_HEX_CHARS = 16;
const BUILD_OUTPUT_CHARS_MAX = 4_000;

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
// The project's parts a member runs (cmd/stratakv.js serve); tests, benches, docs stay out.
const PROJECT_FOLDERS = ['cmd', 'src', 'proto'];
const NATIVE_ADDON_DIR = 'native/build/Release';

// What ELF's e_machine is for each architecture Node reports, to skip other platforms' addons.
const ELF_MACHINE_OF_ARCH: Readonly<Record<string, number>> = { x64: 0x3e, arm64: 0xb7 };

/** ImageLog receives one line about what the build does. */
export type ImageLog = (line: string) => void;

type ImageInfo = Awaited<ReturnType<DockerClient['listImages']>>[number];

// One file of an image: where it comes from on the host, where it goes in the build context.
interface ContextFile {
  readonly source: string;
  readonly target: string;
}

// An image to build: its Dockerfile and the files beside it (symlinks are kept as symlinks).
interface ImagePlan {
  readonly repository: string;
  readonly dockerfile: string;
  readonly files: readonly ContextFile[];
  readonly symlinks: readonly { readonly target: string; readonly linkTo: string }[];
  readonly directories: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** What planning left out, and why; logged when the image is built. */
  readonly notes: readonly string[];
}

/**
 * buildMemberImage answers the tag of the member image for the project as it is on disk now,
 * building it (and its base) only when no image of that tag exists; then prunes older tags.
 * Needs ensureDockerEngine first. Rejects with what the daemon said when a build fails.
 */
export async function buildMemberImage(options: { readonly log: ImageLog }): Promise<string> {
  const { log } = options;
  const docker = await dockerClient();

  const basePlan = await planBaseImage();
  const baseTag = tagOf(basePlan);
  await ensureImage(docker, baseTag, basePlan, log);
  const memberPlan = planMemberImage(baseTag);
  const memberTag = tagOf(memberPlan);
  await ensureImage(docker, memberTag, memberPlan, log);
  await pruneImages(docker, memberTag, log);
  return memberTag;
}

async function ensureImage(docker: DockerClient, tag: string, plan: ImagePlan, log: ImageLog): Promise<void> {
  if (await imageExists(docker, tag)) {
    log(`image: ${tag} exists (${plan.files.length} files unchanged); not building`);
    return;
  }
  for (const note of plan.notes) log(`image: ${note}`);
  const startedAt = performance.now();
  const context = mkdtempSync(join(tmpdir(), 'stratakv-chaos-image-'));
  try {
    const stagedBytes = stageContext(context, plan);
    const stagedMs = performance.now() - startedAt;
    await buildImage(docker, context, tag, plan.labels);
    log(`image: built ${tag} in ${Math.round(performance.now() - startedAt)} ms (${plan.files.length} files, ${(stagedBytes / 1e6).toFixed(0)} MB, staged in ${Math.round(stagedMs)} ms)`);
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

// planBaseImage: the Node binary, its libraries and the addons' (with the loader), and the
// production node_modules.
async function planBaseImage(): Promise<ImagePlan> {
  const files: ContextFile[] = [];
  const symlinks: { target: string; linkTo: string }[] = [];
  files.push({ source: realpathSync(process.execPath), target: `rootfs${NODE_PATH_IN_IMAGE}` });

  for (const packageDir of productionPackageDirs()) {
    collectTree(join(PROJECT_ROOT, packageDir), `rootfs${APP_DIR_IN_IMAGE}/${packageDir}`, files, symlinks, { skipNodeModules: true });
  }
  const addons = [
    ...files.filter((file) => file.target.endsWith('.node')).map((file) => file.source),
    ...nativeAddonFiles().map((file) => file.source),
  ];
  const libraries = new Set<string>();
  const notes: string[] = [];
  for (const library of await sharedLibraries(process.execPath)) libraries.add(library);
  for (const addon of addons.filter(isHostElf)) {
    // An addon ldd cannot resolve here (a musl build, say) cannot be loaded by this host's Node
    // either, so its package does not use it: the image is no worse for leaving its needs out.
    try {
      for (const library of await sharedLibraries(addon)) libraries.add(library);
    } catch (error) {
      notes.push(`left out the libraries of ${relative(PROJECT_ROOT, addon)}, which this host cannot load either: ${(error as Error).message.split('\n')[0] ?? ''}`);
    }
  }
  for (const library of [...libraries].sort()) {
    files.push({ source: realpathSync(library), target: `rootfs${library}` });
  }
  const dockerfile = ['FROM scratch', 'COPY rootfs/ /', 'ENV PATH=/usr/local/bin', ''].join('\n');
  return { repository: BASE_IMAGE_REPOSITORY, dockerfile, files, symlinks, directories: ['rootfs/tmp'], labels: { [IMAGE_LABEL]: 'base' }, notes };
}

// planMemberImage: the project's own files, FROM the base.
function planMemberImage(baseTag: string): ImagePlan {
  const files: ContextFile[] = [{ source: join(PROJECT_ROOT, 'package.json'), target: 'app/package.json' }];
  const symlinks: { target: string; linkTo: string }[] = [];
  for (const folder of PROJECT_FOLDERS) collectTree(join(PROJECT_ROOT, folder), `app/${folder}`, files, symlinks, { skipNodeModules: false });
  files.push(...nativeAddonFiles());
  const dockerfile = [
    `FROM ${baseTag}`,
    `COPY app/ ${APP_DIR_IN_IMAGE}/`,
    `WORKDIR ${APP_DIR_IN_IMAGE}`,
    `ENTRYPOINT ["${NODE_PATH_IN_IMAGE}"]`,
    '',
  ].join('\n');
  return { repository: MEMBER_IMAGE_REPOSITORY, dockerfile, files, symlinks, directories: [], labels: { [IMAGE_LABEL]: 'member', [BASE_OF_MEMBER_LABEL]: baseTag }, notes: [] };
}

function nativeAddonFiles(): ContextFile[] {
  const folder = join(PROJECT_ROOT, NATIVE_ADDON_DIR);
  const names = existsSync(folder) ? readdirSync(folder).filter((name) => name.endsWith('.node')).sort() : [];
  if (names.length === 0) throw new Error(`no native addon in ${folder}: build it first (npm run build:native)`);
  return names.map((name) => ({ source: join(folder, name), target: `app/${NATIVE_ADDON_DIR}/${name}` }));
}

// productionPackageDirs lists the installed packages a production install has: the lock's
// entries that are not dev-only (optional ones for other platforms are not installed).
function productionPackageDirs(): string[] {
  const lockPath = join(PROJECT_ROOT, 'package-lock.json');
  const lock = JSON.parse(readFileSync(lockPath, 'utf8')) as { packages?: Record<string, { dev?: boolean; link?: boolean }> };
  if (lock.packages === undefined) throw new Error(`${lockPath} has no "packages" (lockfileVersion 2 or later is needed)`);
  const dirs = Object.entries(lock.packages)
    .filter(([path, entry]) => path.startsWith('node_modules/') && entry.dev !== true && entry.link !== true)
    .map(([path]) => path)
    .filter((path) => existsSync(join(PROJECT_ROOT, path)))
    .sort();
  if (dirs.length === 0) throw new Error(`no production packages installed under ${join(PROJECT_ROOT, 'node_modules')}: run npm ci`);
  return dirs;
}

// collectTree adds every file under `sourceDir` (recursively, in name order) to `files`;
// with skipNodeModules a nested node_modules is left out (its packages are entries of their own).
function collectTree(sourceDir: string, targetDir: string, files: ContextFile[], symlinks: { target: string; linkTo: string }[], options: { readonly skipNodeModules: boolean }): void {
  for (const entry of readdirSync(sourceDir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const source = join(sourceDir, entry.name);
    const target = `${targetDir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (options.skipNodeModules && entry.name === 'node_modules') continue;
      collectTree(source, target, files, symlinks, options);
    } else if (entry.isSymbolicLink()) {
      symlinks.push({ target, linkTo: readlinkSync(source) });
    } else if (entry.isFile()) {
      files.push({ source, target });
    }
  }
}

// isHostElf tells whether a file is an ELF object for this machine's architecture (addons
// prebuilt for other platforms are shipped by some packages and never loaded here).
function isHostElf(path: string): boolean {
  const header = Buffer.alloc(20);
  const fd = openSync(path, 'r');
  try {
    if (readSync(fd, header, 0, header.length, 0) < header.length) return false;
  } finally {
    closeSync(fd);
  }
  const isElf = header[0] === 0x7f && header.subarray(1, 4).toString('latin1') === 'ELF';
  return isElf && header.readUInt16LE(18) === ELF_MACHINE_OF_ARCH[process.arch];
}

// sharedLibraries answers the absolute paths `ldd` resolves for a binary (the loader included);
// it rejects when ldd fails or cannot find one of them on this host.
async function sharedLibraries(binary: string): Promise<string[]> {
  const output = await new Promise<string>((resolve, reject) => {
    execFile('ldd', [binary], { timeout: LDD_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`ldd ${binary} failed (${error.code === undefined ? error.message : `exit code ${String(error.code)}`}): ${(stderr.trim() || stdout.trim()).slice(0, 500)}`));
      else resolve(stdout);
    });
  });
  const libraries: string[] = [];
  const missing: string[] = [];
  for (const line of output.split('\n')) {
    const resolved = /=>\s+(\/\S+)\s/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (resolved?.[1] !== undefined) libraries.push(resolved[1]);
    const notFound = /^\s*(\S+)\s+=>\s+not found/.exec(line);
    if (notFound?.[1] !== undefined) missing.push(notFound[1]);
  }
  if (missing.length > 0) throw new Error(`ldd ${binary}: this host has no ${missing.join(', ')}`);
  if (libraries.length === 0) throw new Error(`ldd ${binary} listed no libraries: ${output.trim()}`);
  return libraries;
}

// tagOf names an image by a hash of its Dockerfile, labels and files (path, size, mtime).
function tagOf(plan: ImagePlan): string {
  const hash = createHash('sha256');
  hash.update(plan.dockerfile);
  hash.update(JSON.stringify(plan.labels));
  for (const file of plan.files) {
    const stats = statSync(file.source);
    hash.update(`${file.target}\0${stats.size}\0${stats.mtimeMs}\n`);
  }
  for (const link of plan.symlinks) hash.update(`${link.target}\0->${link.linkTo}\n`);
  for (const directory of plan.directories) hash.update(`${directory}/\n`);
  return `${plan.repository}:${hash.digest('hex').slice(0, HASH_HEX_CHARS)}`;
}

// stageContext lays the plan out in `context` (hard links where the file system allows);
// answers the bytes staged.
function stageContext(context: string, plan: ImagePlan): number {
  writeFileSync(join(context, 'Dockerfile'), plan.dockerfile);
  let bytes = 0;
  for (const file of plan.files) {
    const target = join(context, file.target);
    mkdirSync(dirname(target), { recursive: true });
    try {
      linkSync(file.source, target);
    } catch {
      copyFileSync(file.source, target);
    }
    bytes += lstatSync(target).size;
  }
  for (const link of plan.symlinks) {
    const target = join(context, link.target);
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync(link.linkTo, target);
  }
  for (const directory of plan.directories) mkdirSync(join(context, directory), { recursive: true });
  return bytes;
}

async function imageExists(docker: DockerClient, tag: string): Promise<boolean> {
  try {
    await withDeadline(docker.getImage(tag).inspect(), DOCKER_CALL_TIMEOUT_MS, `inspecting image ${tag}`);
    return true;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return false;
    throw new Error(`could not inspect image ${tag}: ${(error as Error).message}`, { cause: error });
  }
}

// buildImage sends `context` to the daemon as an uncompressed tar (made by tar(1), which every
// Debian has) and follows the build's output. dockerode's own context packing gzips it, which
// took 10 of the 15 s of a cold base build (160 MB, mostly the Node binary); a local daemon
// gains nothing from compression. This uses testcontainers' Docker client (dockerode) rather than
// GenericContainer.fromDockerfile().build(): that one reports a failed build only as "Failed to
// build image" (the daemon's reason goes to a debug log), has no deadline, and never settles if
// the daemon refuses the request.
async function buildImage(docker: DockerClient, context: string, tag: string, labels: Readonly<Record<string, string>>): Promise<void> {
  const abort = AbortSignal.timeout(IMAGE_BUILD_TIMEOUT_MS);
  let output = '';
  let failure: string | undefined;
  let imageId: string | undefined;
  const readLine = (line: string): void => {
    if (line.trim() === '') return;
    let message: { stream?: string; error?: string; errorDetail?: { message?: string }; aux?: { ID?: string } };
    try {
      message = JSON.parse(line) as typeof message;
    } catch {
      output += `${line}\n`;
      return;
    }
    if (message.stream !== undefined) output += message.stream;
    if (message.aux?.ID !== undefined) imageId = message.aux.ID;
    if (message.error !== undefined) failure = message.errorDetail?.message ?? message.error;
    if (output.length > BUILD_OUTPUT_CHARS_MAX) output = output.slice(-BUILD_OUTPUT_CHARS_MAX);
  };

  const tar = spawn('tar', ['-C', context, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'], signal: abort });
  let tarStderr = '';
  tar.stderr.on('data', (chunk: Buffer) => (tarStderr = (tarStderr + chunk.toString('utf8')).slice(-BUILD_OUTPUT_CHARS_MAX)));
  const tarDone = new Promise<string | undefined>((resolve) => {
    tar.once('error', (error) => resolve(`tar could not run: ${error.message}`));
    tar.once('close', (code, signal) => resolve(code === 0 ? undefined : `tar ended with ${code === null ? `signal ${String(signal)}` : `exit code ${code}`}: ${tarStderr.trim()}`));
  });
  try {
    const stream = await docker.buildImage(tar.stdout, { t: tag, labels: { ...labels }, rm: true, forcerm: true, abortSignal: abort });
    await new Promise<void>((resolve, reject) => {
      let pending = '';
      const onAbort = (): void => {
        (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
        reject(new Error(`timed out after ${IMAGE_BUILD_TIMEOUT_MS} ms`));
      };
      abort.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (chunk: Buffer) => {
        pending += chunk.toString('utf8');
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        lines.forEach(readLine);
      });
      stream.once('error', (error: Error) => {
        abort.removeEventListener('abort', onAbort);
        reject(error);
      });
      stream.once('end', () => {
        abort.removeEventListener('abort', onAbort);
        readLine(pending);
        resolve();
      });
    });
  } catch (error) {
    tar.kill('SIGKILL');
    const tarProblem = await tarDone;
    throw new Error(`building image ${tag} from ${context} failed: ${(error as Error).message}${tarProblem === undefined ? '' : ` (${tarProblem})`}\n${output}`, { cause: error });
  }
  const tarProblem = await tarDone;
  if (failure !== undefined) throw new Error(`building image ${tag} failed: ${failure}${tarProblem === undefined ? '' : ` (${tarProblem})`}\n${output}`);
  if (tarProblem !== undefined) throw new Error(`building image ${tag}: ${tarProblem}`);
  if (imageId === undefined && !(await imageExists(docker, tag))) throw new Error(`building image ${tag} ended without an image:\n${output}`);
}

// pruneImages removes member images beyond the newest IMAGES_KEPT (always keeping `current`)
// and base images no kept member is built on. An image a container still uses is left.
async function pruneImages(docker: DockerClient, current: string, log: ImageLog): Promise<void> {
  const list = async (repository: string): Promise<ImageInfo[]> =>
    (await docker.listImages({ filters: JSON.stringify({ reference: [repository] }), abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) })).sort((a, b) => b.Created - a.Created);
  const tagsOf = (image: ImageInfo, repository: string): string[] => (image.RepoTags ?? []).filter((tag) => tag.startsWith(`${repository}:`));

  const members = await list(MEMBER_IMAGE_REPOSITORY);
  const kept = new Set<string>([current]);
  for (const image of members) {
    for (const tag of tagsOf(image, MEMBER_IMAGE_REPOSITORY)) if (kept.size < IMAGES_KEPT) kept.add(tag);
  }
  const basesKept = new Set<string>();
  for (const image of members) {
    if (tagsOf(image, MEMBER_IMAGE_REPOSITORY).some((tag) => kept.has(tag))) {
      const base = image.Labels?.[BASE_OF_MEMBER_LABEL];
      if (base !== undefined) basesKept.add(base);
    }
  }
  const doomed = [
    ...members.flatMap((image) => tagsOf(image, MEMBER_IMAGE_REPOSITORY)).filter((tag) => !kept.has(tag)),
    ...(await list(BASE_IMAGE_REPOSITORY)).flatMap((image) => tagsOf(image, BASE_IMAGE_REPOSITORY)).filter((tag) => !basesKept.has(tag)),
  ];
  for (const tag of doomed) {
    try {
      await docker.getImage(tag).remove({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
      log(`image: removed old ${tag}`);
    } catch (error) {
      log(`image: left old ${tag} in place: ${(error as Error).message}`);
    }
  }
}
