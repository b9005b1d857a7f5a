// Chaos members in Docker containers (issue 15): a network of the run's own, and one container
// per `stratakv serve` member on it, started through testcontainers, which the tests can kill
// (SIGKILL), stop (SIGTERM), pause (cgroup freezer), start again and remove.
//
// Addresses. The network is created with a subnet of ours (CHAOS_SUBNET_PREFIX.k.0/24, the
// first one free of Docker networks and host routes), and each member gets a fixed address on
// it (.10, .11, ...) through the container's endpoint config, so a member keeps its IP across
// kill and start, and nft rules written for it stay right. Without a fixed address Docker
// hands out the next free one on each start, and a member restarted after another took its old
// address comes back elsewhere. Callers should still read ip() after start() rather than keep
// a copy: the fixed address is this file's choice, not a promise of Docker's. Peers reach each
// other by member name (the network alias); the host reaches members by IP.
//
// Labels and cleanup. Everything this file creates carries testcontainers' labels
// (`org.testcontainers=true`) and ours: CHAOS_LABEL=<run id>, CHAOS_PID_LABEL=<pid of the
// creating process>. Ryuk (testcontainers' reaper) is off, so nothing is removed behind our
// back: ChaosNetwork.close() removes every container of its run (tracked or not: one whose
// start timed out too) and then the network; cleanupStaleChaos() removes what runs that died
// left behind. Each member's output is appended to a host file (logPath) as it comes, with a
// line for every start, kill, stop, pause and removal, so it outlives the container.
//
// Member states (MemberContainer.state): running → paused → running (pause, unpause);
// running → exited (kill, stop, or the process ending by itself); exited → running (start);
// any → removed (remove, or the network's close). Invariant: a follower reads the container's
// output exactly while it is started (running or paused); `state` is what this process last
// did or saw, inspectState() asks Docker.

import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';

import type { StartedNetwork, StartedTestContainer } from 'testcontainers';

import { dockerClient, loadTestcontainers, withDeadline, type DockerClient } from './docker-engine.ts';

/** CHAOS_LABEL marks containers and networks of the chaos harness; its value is the run id. */
export const CHAOS_LABEL = 'stratakv.chaos';
/** CHAOS_PID_LABEL is the PID of the process that created the container or network. */
export const CHAOS_PID_LABEL = 'stratakv.chaos.pid';
/** CHAOS_MEMBER_LABEL is the member name of a container. */
export const CHAOS_MEMBER_LABEL = 'stratakv.chaos.member';
/** TESTCONTAINERS_LABEL is the label testcontainers sets on everything it creates. */
export const TESTCONTAINERS_LABEL = 'org.testcontainers';
/** CHAOS_SUBNET_PREFIX is where chaos networks take their /24s (outside Docker's default pools). */
export const CHAOS_SUBNET_PREFIX = '10.213';
/** MEMBER_DATA_DIR is where a member's host data folder is mounted in its container. */
export const MEMBER_DATA_DIR = '/data';

/** DOCKER_CALL_TIMEOUT_MS bounds each call to the Docker API. */
export const DOCKER_CALL_TIMEOUT_MS = 30_000;
/** KILL_TIMEOUT_MS bounds the wait for a SIGKILLed container to be reported exited. */
export const KILL_TIMEOUT_MS = 10_000;
/** STOP_GRACE_MS is how long stop() lets a member handle SIGTERM before Docker sends SIGKILL. */
export const STOP_GRACE_MS = 10_000;
const FOLLOWER_END_TIMEOUT_MS = 2_000;
const SUBNET_ATTEMPTS_MAX = 16;
const FIRST_MEMBER_HOST_NUMBER = 10;
const LAST_MEMBER_HOST_NUMBER = 250;
const LOG_TAIL_CHARS = 4_000;
const SEEN_LINES_MAX = 1_000;

/** ChaosLog receives one line about what the harness does. */
export type ChaosLog = (line: string) => void;

/** MemberState is what a member container is doing, as far as this process knows. */
export type MemberState = 'running' | 'paused' | 'exited' | 'removed';

// ContainerHandle is one dockerode container.
type ContainerHandle = ReturnType<DockerClient['getContainer']>;

/**
 * ChaosNetwork is a Docker bridge network of one run, with a subnet of ours. close() removes
 * every container of the run and the network.
 */
export class ChaosNetwork {
  /** The Docker network's name (`stratakv-chaos-<run id>`). */
  readonly name: string;
  readonly id: string;
  /** The run id, the value of CHAOS_LABEL on everything of this run. */
  readonly runId: string;
  /** The subnet in CIDR form, for example 10.213.0.0/24. */
  readonly subnet: string;
  /** The host's address on the network (the bridge's). */
  readonly gatewayIp: string;
  readonly #started: StartedNetwork;
  readonly #docker: DockerClient;
  readonly #members = new Map<string, MemberContainer>();
  // Invariant: FIRST_MEMBER_HOST_NUMBER <= #nextHostNumber <= LAST_MEMBER_HOST_NUMBER + 1.
  #nextHostNumber = FIRST_MEMBER_HOST_NUMBER;
  #closing: Promise<void> | undefined;

  constructor(fields: { readonly started: StartedNetwork; readonly docker: DockerClient; readonly runId: string; readonly subnet: string; readonly gatewayIp: string }) {
    this.#started = fields.started;
    this.#docker = fields.docker;
    this.name = fields.started.getName();
    this.id = fields.started.getId();
    this.runId = fields.runId;
    this.subnet = fields.subnet;
    this.gatewayIp = fields.gatewayIp;
  }

  /** startedNetwork is testcontainers' handle, for GenericContainer.withNetwork. */
  get startedNetwork(): StartedNetwork {
    return this.#started;
  }

  /** members lists the member containers started on this network and not removed, by name. */
  get members(): ReadonlyMap<string, MemberContainer> {
    return this.#members;
  }

  /** allocateAddress hands out the next member address of the subnet (.10, .11, ...). */
  allocateAddress(): string {
    if (this.#closing !== undefined) throw new Error(`network ${this.name} is closed`);
    if (this.#nextHostNumber > LAST_MEMBER_HOST_NUMBER) throw new Error(`network ${this.name} has no member address left (at most ${LAST_MEMBER_HOST_NUMBER - FIRST_MEMBER_HOST_NUMBER + 1})`);
    const address = hostAddress(this.subnet, this.#nextHostNumber);
    this.#nextHostNumber += 1;
    return address;
  }

  /** track records a member started on this network (startMemberContainer calls it). */
  track(member: MemberContainer): void {
    if (this.#members.has(member.name)) throw new Error(`network ${this.name} already has a member named ${member.name}`);
    this.#members.set(member.name, member);
  }

  /** untrack forgets a removed member. */
  untrack(member: MemberContainer): void {
    if (this.#members.get(member.name) === member) this.#members.delete(member.name);
  }

  /**
   * close removes every container of this run (the members, and any container carrying this
   * run's label) and then the network. It tries everything, then rejects naming what could not
   * be removed. Calling it again answers the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const failures: string[] = [];
    for (const member of [...this.#members.values()]) {
      try {
        await member.remove();
      } catch (error) {
        failures.push(`member ${member.name}: ${(error as Error).message}`);
      }
    }
    try {
      for (const info of await listByLabel(this.#docker, 'containers', `${CHAOS_LABEL}=${this.runId}`)) {
        await removeContainer(this.#docker.getContainer(info.id));
      }
    } catch (error) {
      failures.push(`containers labelled ${CHAOS_LABEL}=${this.runId}: ${(error as Error).message}`);
    }
    try {
      await removeNetwork(this.#docker, this.id);
    } catch (error) {
      failures.push(`network ${this.name}: ${(error as Error).message}`);
    }
    if (failures.length > 0) throw new Error(`closing chaos network ${this.name} left things behind:\n  ${failures.join('\n  ')}`);
  }
}

// How many networks this process has started: part of the run id, so two in one millisecond differ.
let networksStarted = 0;

/**
 * startChaosNetwork creates a bridge network for one run, on the first /24 of
 * CHAOS_SUBNET_PREFIX that no Docker network or host route uses, labelled for cleanup.
 * Needs ensureDockerEngine first.
 */
export async function startChaosNetwork(options: { readonly log: ChaosLog }): Promise<ChaosNetwork> {
  const testcontainers = await loadTestcontainers();
  const client = await testcontainers.getContainerRuntimeClient();
  const docker = client.container.dockerode;
  networksStarted += 1;
  const runId = `${process.pid}-${Date.now().toString(36)}${networksStarted}`;
  const name = `stratakv-chaos-${runId}`;
  const labels = { [TESTCONTAINERS_LABEL]: 'true', [CHAOS_LABEL]: runId, [CHAOS_PID_LABEL]: String(process.pid) };

  const taken = [...(await dockerSubnets(docker)), ...hostRouteSubnets()];
  const errors: string[] = [];
  for (let third = 0, attempts = 0; third <= 255 && attempts < SUBNET_ATTEMPTS_MAX; third += 1) {
    const subnet = `${CHAOS_SUBNET_PREFIX}.${third}.0/24`;
    if (taken.some((other) => subnetsOverlap(subnet, other))) continue;
    attempts += 1;
    let created;
    try {
      created = await withDeadline(client.network.create({
        Name: name,
        CheckDuplicate: true,
        Driver: 'bridge',
        Internal: false,
        Attachable: false,
        EnableIPv6: false,
        Labels: labels,
        IPAM: { Driver: 'default', Config: [{ Subnet: subnet, Gateway: hostAddress(subnet, 1) }] },
      }), DOCKER_CALL_TIMEOUT_MS, `creating network ${name} on ${subnet}`);
    } catch (error) {
      // Another run took this subnet between our look and our create: try the next one.
      errors.push(`${subnet}: ${(error as Error).message}`);
      continue;
    }
    const started = new testcontainers.StartedNetwork(client, name, created);
    const inspected = (await withDeadline(docker.getNetwork(created.id).inspect(), DOCKER_CALL_TIMEOUT_MS, `inspecting network ${name}`)) as { IPAM?: { Config?: { Subnet?: string; Gateway?: string }[] } };
    const config = inspected.IPAM?.Config?.find((entry) => entry.Subnet !== undefined && entry.Subnet.includes('.'));
    const actualSubnet = config?.Subnet ?? subnet;
    // Docker 20.10 may leave Gateway out of the inspected IPAM config: the bridge then takes the first host address.
    const gatewayIp = config?.Gateway ?? hostAddress(actualSubnet, 1);
    options.log(`network: ${name} on ${actualSubnet} (gateway ${gatewayIp})`);
    return new ChaosNetwork({ started, docker, runId, subnet: actualSubnet, gatewayIp });
  }
  throw new Error(`no free /24 under ${CHAOS_SUBNET_PREFIX}.0.0/16 for network ${name} after ${SUBNET_ATTEMPTS_MAX} attempts: ${errors.join('; ') || 'all taken'}`);
}

/** MemberContainerOptions describe one member container. */
export interface MemberContainerOptions {
  readonly network: ChaosNetwork;
  /** The member image's tag (buildMemberImage). */
  readonly image: string;
  /** The member's name: its network alias (peers use http://<name>:2380); the container is `<network>-<name>`. */
  readonly name: string;
  /** The arguments to node in /app, for example ['cmd/stratakv.js', 'serve', ...flags]. */
  readonly command: readonly string[];
  /** A host folder, bind-mounted at MEMBER_DATA_DIR (/data); created if missing. */
  readonly dataDir: string;
  /** A line of the member's output that says it is ready (for stratakv serve: its JSON `serving` line). */
  readonly readyLine: RegExp;
  /** How long a start may take until readyLine appears. */
  readonly startTimeoutMs: number;
  /** The host file the member's output is appended to; default `<dirname(dataDir)>/<name>.log`. */
  readonly logPath?: string;
  /** The member's address on the network; default the network's next one. */
  readonly ipv4Address?: string;
}

/**
 * startMemberContainer creates and starts a member container on the network, with a fixed
 * address and its data folder mounted, and waits until its output has a line matching
 * readyLine (not for ports: scratch images have no shell for testcontainers' port check).
 * On failure the container is gone (testcontainers removes it) and the error carries the
 * member's output.
 */
export async function startMemberContainer(options: MemberContainerOptions): Promise<MemberContainer> {
  const { network, name } = options;
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`member name ${JSON.stringify(name)} must be lower-case letters, digits and dashes (it is a DNS name)`);
  if (network.members.has(name)) throw new Error(`network ${network.name} already has a member named ${name}`);
  if (!Number.isSafeInteger(options.startTimeoutMs) || options.startTimeoutMs <= 0) throw new Error(`startTimeoutMs must be a positive integer, not ${options.startTimeoutMs}`);
  const testcontainers = await loadTestcontainers();
  const docker = await dockerClient();
  const ipv4Address = options.ipv4Address ?? network.allocateAddress();
  const logPath = options.logPath ?? join(dirname(options.dataDir), `${name}.log`);
  mkdirSync(options.dataDir, { recursive: true });
  mkdirSync(dirname(logPath), { recursive: true });
  const containerName = `${network.name}-${name}`;
  appendFileSync(logPath, harnessLine(`creating container ${containerName} (${options.image}) at ${ipv4Address}: node ${options.command.join(' ')}`));

  // withNetworkAliases would create the container on Docker's default bridge and connect it to
  // ours afterwards (two interfaces, and no way to give an address); an endpoint config at
  // creation puts it on our network only, with its alias and fixed address.
  class MemberGenericContainer extends testcontainers.GenericContainer {
    withFixedEndpoint(networkName: string, address: string, aliases: string[]): this {
      this.createOpts.NetworkingConfig = { EndpointsConfig: { [networkName]: { IPAMConfig: { IPv4Address: address }, Aliases: aliases } } };
      return this;
    }
  }
  const follower = new LogFollower(logPath);
  const container = new MemberGenericContainer(options.image)
    .withName(containerName)
    .withNetwork(network.startedNetwork)
    .withFixedEndpoint(network.name, ipv4Address, [name])
    .withCommand([...options.command])
    .withLabels({ [CHAOS_LABEL]: network.runId, [CHAOS_PID_LABEL]: String(process.pid), [CHAOS_MEMBER_LABEL]: name })
    .withBindMounts([{ source: options.dataDir, target: MEMBER_DATA_DIR, mode: 'rw' }])
    .withLogConsumer((stream) => follower.follow(stream))
    .withWaitStrategy(testcontainers.Wait.forLogMessage(options.readyLine))
    .withStartupTimeout(options.startTimeoutMs);

  const starting = container.start();
  let started: StartedTestContainer;
  try {
    started = await withDeadline(starting, options.startTimeoutMs + DOCKER_CALL_TIMEOUT_MS, `starting container ${containerName}`);
  } catch (error) {
    await follower.ended(FOLLOWER_END_TIMEOUT_MS);
    throw new Error(`member ${name} (container ${containerName}, ${ipv4Address}) did not start (ready line ${String(options.readyLine)}, start timeout ${options.startTimeoutMs} ms): ${(error as Error).message}\n--- its output (${logPath}) ends with:\n${follower.tail()}`, { cause: error });
  }
  const member = new MemberContainer({ started, handle: docker.getContainer(started.getId()), options: { ...options, logPath }, containerName, follower });
  await member.refreshAddress();
  network.track(member);
  return member;
}

/** MemberContainer is one member's container: kill, stop, pause, start again, its output. */
export class MemberContainer {
  /** The member name (its network alias). */
  readonly name: string;
  /** The Docker container's name. */
  readonly containerName: string;
  readonly id: string;
  /** The host folder mounted at /data. */
  readonly dataDir: string;
  /** The host file with everything the member printed, across restarts. */
  readonly logPath: string;
  readonly #handle: ContainerHandle;
  readonly #options: MemberContainerOptions;
  readonly #network: ChaosNetwork;
  #follower: LogFollower;
  #state: MemberState = 'running';
  #ip = '';
  #starts = 1;

  constructor(fields: { readonly started: StartedTestContainer; readonly handle: ContainerHandle; readonly options: MemberContainerOptions & { readonly logPath: string }; readonly containerName: string; readonly follower: LogFollower }) {
    this.#handle = fields.handle;
    this.#options = fields.options;
    this.#network = fields.options.network;
    this.#follower = fields.follower;
    this.name = fields.options.name;
    this.containerName = fields.containerName;
    this.id = fields.started.getId();
    this.dataDir = fields.options.dataDir;
    this.logPath = fields.options.logPath;
  }

  /** state is what this process last did to the container or saw of it (inspectState asks Docker). */
  get state(): MemberState {
    if (this.#state === 'running' && this.#follower.hasEnded()) this.#state = 'exited'; // it ended by itself
    return this.#state;
  }

  /** running tells whether the container runs and is not paused. */
  get running(): boolean {
    return this.state === 'running';
  }

  /** paused tells whether the container is frozen by pause(). */
  get paused(): boolean {
    return this.state === 'paused';
  }

  /**
   * ip answers the member's address on the chaos network as read after its last start. It is
   * fixed by startMemberContainer; still, read it after each start() rather than keep a copy.
   */
  ip(): string {
    return this.#ip;
  }

  /** inspectState asks Docker what the container is doing ('running', 'paused', 'exited', ...). */
  async inspectState(): Promise<string> {
    const info = await this.#handle.inspect({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
    return info.State.Status;
  }

  /** refreshAddress reads the container's current address on the network (start() does this). */
  async refreshAddress(): Promise<string> {
    const info = await this.#handle.inspect({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
    const address = info.NetworkSettings.Networks[this.#network.name]?.IPAddress;
    if (address === undefined || address === '') throw new Error(`member ${this.name} (container ${this.containerName}) has no address on network ${this.#network.name}`);
    this.#ip = address;
    return address;
  }

  /**
   * start starts the container again after kill() or stop() (or its own exit), on the same
   * data folder, and waits until its output since this start has a line matching readyLine;
   * then re-reads its address. On a timeout the container is left as it is.
   */
  async start(): Promise<void> {
    const state = this.state;
    if (state !== 'exited') throw new Error(`member ${this.name}: start() needs an exited container, not a ${state} one`);
    await this.#follower.ended(FOLLOWER_END_TIMEOUT_MS);
    this.#starts += 1;
    appendFileSync(this.logPath, harnessLine(`start #${this.#starts}`));
    await this.#handle.start({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
    const info = await this.#handle.inspect({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
    const follower = new LogFollower(this.logPath);
    this.#follower = follower;
    this.#state = 'running';
    const testcontainers = await loadTestcontainers();
    const client = await testcontainers.getContainerRuntimeClient();
    // Only what this start printed: since the StartedAt Docker just recorded, to the nanosecond.
    follower.follow(await client.container.logs(this.#handle, { since: dockerSince(info.State.StartedAt) }));
    try {
      await follower.waitForLine(this.#options.readyLine, this.#options.startTimeoutMs);
    } catch (error) {
      throw new Error(`member ${this.name} (container ${this.containerName}): start #${this.#starts} ${(error as Error).message}\n--- its output (${this.logPath}) ends with:\n${follower.tail()}`, { cause: error });
    }
    await this.refreshAddress();
  }

  /** kill sends SIGKILL (to a paused container too: it dies without running again) and waits until Docker reports it exited. */
  async kill(): Promise<void> {
    this.#requireStarted('kill');
    appendFileSync(this.logPath, harnessLine('SIGKILL'));
    try {
      await this.#handle.kill({ signal: 'SIGKILL', abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 409) throw new Error(`member ${this.name}: SIGKILL failed: ${(error as Error).message}`, { cause: error });
      // 409: it is not running (it exited by itself meanwhile).
    }
    await this.#waitUntilExited(KILL_TIMEOUT_MS);
  }

  /**
   * stop sends SIGTERM and waits up to graceMs (STOP_GRACE_MS by default) for the member to
   * exit, then Docker sends SIGKILL. A paused container is unpaused first, so it can handle SIGTERM.
   */
  async stop(options: { readonly graceMs?: number } = {}): Promise<void> {
    this.#requireStarted('stop');
    const graceMs = options.graceMs ?? STOP_GRACE_MS;
    if (this.#state === 'paused') await this.unpause();
    appendFileSync(this.logPath, harnessLine(`SIGTERM (SIGKILL after ${graceMs} ms)`));
    try {
      await this.#handle.stop({ t: Math.ceil(graceMs / 1000), abortSignal: AbortSignal.timeout(graceMs + DOCKER_CALL_TIMEOUT_MS) });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 304) throw new Error(`member ${this.name}: stop failed: ${(error as Error).message}`, { cause: error });
      // 304: already stopped.
    }
    await this.#waitUntilExited(KILL_TIMEOUT_MS);
  }

  /** pause freezes every process of the container (cgroup freezer): it stays up but answers nothing. */
  async pause(): Promise<void> {
    if (this.state !== 'running') throw new Error(`member ${this.name}: pause() needs a running container, not a ${this.state} one`);
    appendFileSync(this.logPath, harnessLine('pause'));
    await this.#handle.pause({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
    this.#state = 'paused';
  }

  /** unpause thaws a paused container. */
  async unpause(): Promise<void> {
    if (this.#state !== 'paused') throw new Error(`member ${this.name}: unpause() needs a paused container, not a ${this.state} one`);
    appendFileSync(this.logPath, harnessLine('unpause'));
    await this.#handle.unpause({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
    this.#state = 'running';
  }

  /**
   * waitForOutput resolves when the output of the current start has a line matching `pattern`
   * (a joining member's "serving" once it was added); rejects after timeoutMs, or when the
   * container exits first. Only a start's first lines are kept for a wait that begins late.
   */
  async waitForOutput(pattern: RegExp, timeoutMs: number): Promise<void> {
    this.#requireStarted('waitForOutput');
    try {
      await this.#follower.waitForLine(pattern, timeoutMs);
    } catch (error) {
      throw new Error(`member ${this.name} (container ${this.containerName}): ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * exitedWithin waits up to timeoutMs for the container to exit by itself (a removed member
   * stops on its own); answers whether it did. A paused container cannot exit: false at once.
   */
  async exitedWithin(timeoutMs: number): Promise<boolean> {
    const state = this.state;
    if (state === 'exited' || state === 'removed') return true;
    if (state === 'paused') return false;
    return this.#follower.ended(timeoutMs);
  }

  /** logs answers everything the member printed so far, across restarts, with the harness's lines (from logPath). */
  async logs(): Promise<string> {
    await this.#follower.settled();
    return readFileSync(this.logPath, 'utf8');
  }

  /** logTail answers the last `chars` characters of logs(), for a failure message. */
  async logTail(chars = LOG_TAIL_CHARS): Promise<string> {
    return (await this.logs()).slice(-chars);
  }

  /** remove removes the container (killing it if it runs); the data folder and log file stay. */
  async remove(): Promise<void> {
    if (this.#state === 'removed') return;
    appendFileSync(this.logPath, harnessLine('remove'));
    await removeContainer(this.#handle);
    this.#state = 'removed';
    this.#follower.stop();
    this.#network.untrack(this);
  }

  #requireStarted(action: string): void {
    const state = this.state;
    if (state !== 'running' && state !== 'paused') throw new Error(`member ${this.name}: ${action}() needs a started container, not a ${state} one`);
  }

  async #waitUntilExited(timeoutMs: number): Promise<void> {
    try {
      await this.#handle.wait({ condition: 'not-running', abortSignal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      throw new Error(`member ${this.name} (container ${this.containerName}) was not reported exited within ${timeoutMs} ms: ${(error as Error).message}`, { cause: error });
    }
    this.#state = 'exited';
    await this.#follower.ended(FOLLOWER_END_TIMEOUT_MS);
  }
}

/**
 * cleanupStaleChaos removes the containers, then the networks, that carry CHAOS_LABEL and were
 * made by a process that is no longer alive (runs that crashed) or by this one; those of other
 * live processes (a chaos run in parallel) are left. Answers how many of each it removed.
 */
export async function cleanupStaleChaos(options: { readonly log: ChaosLog }): Promise<{ readonly containers: number; readonly networks: number }> {
  const docker = await dockerClient();
  const isStale = (labels: Readonly<Record<string, string>> | undefined): boolean => {
    const pid = Number(labels?.[CHAOS_PID_LABEL]);
    return !Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isAlive(pid);
  };
  let containers = 0;
  let networks = 0;
  for (const info of await listByLabel(docker, 'containers', CHAOS_LABEL)) {
    if (!isStale(info.labels)) continue;
    await removeContainer(docker.getContainer(info.id));
    options.log(`cleanup: removed container ${info.name} (${CHAOS_LABEL}=${info.labels[CHAOS_LABEL] ?? '?'})`);
    containers += 1;
  }
  for (const info of await listByLabel(docker, 'networks', CHAOS_LABEL)) {
    if (!isStale(info.labels)) continue;
    await removeNetwork(docker, info.id);
    options.log(`cleanup: removed network ${info.name}`);
    networks += 1;
  }
  return { containers, networks };
}

/**
 * listChaosResources lists the names of the containers and networks with CHAOS_LABEL, of one
 * run when `runId` is given (for a test's final check), else of every run.
 */
export async function listChaosResources(runId?: string): Promise<{ readonly containers: readonly string[]; readonly networks: readonly string[] }> {
  const docker = await dockerClient();
  const label = runId === undefined ? CHAOS_LABEL : `${CHAOS_LABEL}=${runId}`;
  return {
    containers: (await listByLabel(docker, 'containers', label)).map((info) => info.name),
    networks: (await listByLabel(docker, 'networks', label)).map((info) => info.name),
  };
}

// LogFollower appends one start's output of a container to the host log file as it comes and
// answers waits for a line. Its stream ends when the container stops (or is removed).
class LogFollower {
  readonly #logPath: string;
  #stream: Readable | undefined;
  #pending = '';
  #tail = '';
  // The lines of this start seen so far (up to SEEN_LINES_MAX), for a wait that begins after its line came.
  readonly #seenLines: string[] = [];
  #ended = false;
  readonly #endWaiters = new Set<() => void>();
  readonly #lineWatchers = new Set<(line: string) => void>();

  constructor(logPath: string) {
    this.#logPath = logPath;
  }

  follow(stream: Readable): void {
    if (this.#stream !== undefined) throw new Error('a LogFollower follows one stream');
    this.#stream = stream;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => this.#take(chunk));
    stream.once('error', (error: Error) => {
      this.#take(`\n${harnessLine(`log stream failed: ${error.message}`)}`);
      this.#end();
    });
    stream.once('end', () => this.#end());
    stream.once('close', () => this.#end());
  }

  hasEnded(): boolean {
    return this.#ended;
  }

  /** ended waits (at most timeoutMs) for the stream to end; answers whether it did. */
  ended(timeoutMs: number): Promise<boolean> {
    if (this.#ended || this.#stream === undefined) return Promise.resolve(this.#ended);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#endWaiters.delete(done);
        resolve(this.#ended);
      };
      const timer = setTimeout(done, timeoutMs);
      this.#endWaiters.add(done);
    });
  }

  /** settled lets data already received be written (writes are synchronous, so nothing to wait for but a turn). */
  async settled(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
  }

  /** waitForLine resolves at the first line matching `pattern`; rejects if the stream ends first or after timeoutMs. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<void> {
    const matches = (line: string): boolean => {
      pattern.lastIndex = 0;
      return pattern.test(line);
    };
    if (this.#seenLines.some(matches)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const finish = (error?: Error): void => {
        clearTimeout(timer);
        this.#lineWatchers.delete(watch);
        this.#endWaiters.delete(onEnd);
        if (error === undefined) resolve();
        else reject(error);
      };
      const watch = (line: string): void => {
        if (matches(line)) finish();
      };
      const onEnd = (): void => finish(new Error(`the container exited before printing a line matching ${String(pattern)}`));
      const timer = setTimeout(() => finish(new Error(`printed no line matching ${String(pattern)} within ${timeoutMs} ms`)), timeoutMs);
      this.#lineWatchers.add(watch);
      if (this.#ended) onEnd();
      else this.#endWaiters.add(onEnd);
    });
  }

  /** tail answers the last characters this follower saw. */
  tail(): string {
    return this.#tail + this.#pending;
  }

  /** stop stops reading (the container is being removed). */
  stop(): void {
    this.#stream?.destroy();
    this.#end();
  }

  #take(chunk: string): void {
    appendFileSync(this.#logPath, chunk);
    this.#tail = (this.#tail + chunk).slice(-LOG_TAIL_CHARS);
    this.#pending += chunk;
    const lines = this.#pending.split('\n');
    this.#pending = lines.pop() ?? '';
    for (const line of lines) {
      if (this.#seenLines.length < SEEN_LINES_MAX) this.#seenLines.push(line);
      for (const watch of [...this.#lineWatchers]) watch(line);
    }
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const waiter of [...this.#endWaiters]) waiter();
  }
}

function harnessLine(text: string): string {
  return `${new Date().toISOString()} ----- stratakv-chaos: ${text}\n`;
}

// dockerSince turns Docker's StartedAt (RFC 3339 with nanoseconds) into the logs API's
// `since` (seconds.nanoseconds), without losing the digits a Date would drop.
function dockerSince(startedAt: string): string {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(startedAt);
  if (match === null) throw new Error(`unexpected StartedAt from Docker: ${startedAt}`);
  const seconds = Date.parse(`${match[1]}${match[3]}`) / 1000;
  if (!Number.isInteger(seconds)) throw new Error(`unexpected StartedAt from Docker: ${startedAt}`);
  return `${seconds}.${(match[2] ?? '0').padEnd(9, '0').slice(0, 9)}`;
}

async function removeContainer(handle: ContainerHandle): Promise<void> {
  try {
    await handle.remove({ force: true, v: true, abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return; // already gone
    throw new Error(`could not remove container ${handle.id}: ${(error as Error).message}`, { cause: error });
  }
}

async function removeNetwork(docker: DockerClient, id: string): Promise<void> {
  try {
    await docker.getNetwork(id).remove({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return; // already gone
    throw new Error(`could not remove network ${id}: ${(error as Error).message}`, { cause: error });
  }
}

interface LabelledResource {
  readonly id: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

// listByLabel lists every container (running or not) or network with `label` (`key` or `key=value`).
async function listByLabel(docker: DockerClient, kind: 'containers' | 'networks', label: string): Promise<LabelledResource[]> {
  const filters = JSON.stringify({ label: [label] });
  const abortSignal = AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS);
  if (kind === 'containers') {
    const infos = await docker.listContainers({ all: true, filters, abortSignal });
    return infos.map((info) => ({ id: info.Id, name: (info.Names[0] ?? info.Id).replace(/^\//, ''), labels: info.Labels }));
  }
  const infos = await docker.listNetworks({ filters, abortSignal });
  return infos.map((info) => ({ id: info.Id, name: info.Name, labels: info.Labels ?? {} }));
}

async function dockerSubnets(docker: DockerClient): Promise<string[]> {
  const networks = await docker.listNetworks({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) });
  return networks.flatMap((network) => (network.IPAM?.Config ?? []).map((config) => config.Subnet ?? '')).filter((subnet) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(subnet));
}

// hostRouteSubnets lists the IPv4 routes of this host (but the default route) as CIDR.
function hostRouteSubnets(): string[] {
  let table: string;
  try {
    table = readFileSync('/proc/net/route', 'utf8');
  } catch {
    return [];
  }
  const subnets: string[] = [];
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    const destination = fields[1];
    const mask = fields[7];
    if (destination === undefined || mask === undefined || mask === '00000000') continue;
    const toAddress = (hex: string): string => [3, 2, 1, 0].map((index) => parseInt(hex.slice(index * 2, index * 2 + 2), 16)).reverse().join('.');
    const maskBits = parseInt(mask, 16).toString(2).split('').filter((bit) => bit === '1').length;
    subnets.push(`${toAddress(destination)}/${maskBits}`);
  }
  return subnets;
}

function addressToNumber(address: string): number {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((part) => !Number.isInteger(part) || part < 0 || part > 255)) throw new Error(`not an IPv4 address: ${address}`);
  return parts.reduce((value, part) => value * 256 + part, 0);
}

function subnetRange(cidr: string): [number, number] {
  const [address, bitsText] = cidr.split('/');
  const bits = Number(bitsText);
  if (address === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) throw new Error(`not an IPv4 subnet: ${cidr}`);
  const size = 2 ** (32 - bits);
  const start = Math.floor(addressToNumber(address) / size) * size;
  return [start, start + size - 1];
}

function subnetsOverlap(a: string, b: string): boolean {
  const [aStart, aEnd] = subnetRange(a);
  const [bStart, bEnd] = subnetRange(b);
  return aStart <= bEnd && bStart <= aEnd;
}

// hostAddress answers the `hostNumber`th address of a subnet (1: the first host address).
function hostAddress(cidr: string, hostNumber: number): string {
  const [start, end] = subnetRange(cidr);
  const value = start + hostNumber;
  if (value >= end) throw new Error(`${cidr} has no host number ${hostNumber}`);
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
