import { readFile, rm } from 'node:fs/promises';
import { checkPeriodLength, DEFAULT_PERIOD_SECONDS } from '../util/period.js';
import { UserError } from '../util/errors.js';
import { run, sleep } from '../util/exec.js';
import { logger } from '../util/log.js';
import { ensureBpffs } from '../sensor/bpffs.js';
import type { SensorBackend } from '../sensor/index.js';
import { alive, livePid } from '../util/process.js';
import { installLabHooks, startAgents } from './agents.js';
import { startLibvirtd } from './libvirtd.js';
import { makeLabPki } from './pki.js';
import { createNetwork, labNetns, rootLinks } from './network.js';
import { requireCommands, requireRoot } from './preflight.js';
import { portFree, redisPidFile, startRedis } from './redis.js';
import { startDelayLine } from './wan.js';
import { labDir, listLabs, readState, writeState, type LabState } from './state.js';
import { checkShape, hosts, prefix, validateName, type LabSettings } from './topology.js';

const log = logger('lab');

export interface UpOptions {
  name: string;
  sites: number;
  hostsPerSite: number;
  delayMs: number;
  rateMbit: number;
  index?: number;
  redisPort?: number;
  /** Period of the lab's agents, seconds (default 30). */
  periodSeconds?: number;
  /** Start an agent on every lab host (default true). */
  agents?: boolean;
  /** Sensor backend of the lab's agents (default ebpf: a missing prerequisite fails loudly instead of falling back). */
  sensor?: SensorBackend;
}

export async function labUp(opts: UpOptions): Promise<LabState> {
  validateName(opts.name);
  checkShape(opts.sites, opts.hostsPerSite);
  if (!(opts.delayMs >= 0 && opts.delayMs <= 10_000)) throw new UserError(`--delay must be from 0 to 10000 ms (got ${opts.delayMs})`);
  if (!(opts.rateMbit > 0 && opts.rateMbit <= 100_000)) throw new UserError(`--rate must be from 1 to 100000 Mbit/s (got ${opts.rateMbit})`);
  try {
    checkPeriodLength(opts.periodSeconds ?? DEFAULT_PERIOD_SECONDS);
  } catch (err) {
    throw new UserError(`--period: ${(err as Error).message}`);
  }
  requireRoot('lab up');
  await requireCommands();
  await refuseIfPresent(opts.name);

  const index = opts.index ?? (await freeIndex());
  const redisPort = opts.redisPort ?? 16300 + index;
  if (!(await portFree(redisPort))) {
    throw new UserError(`port ${redisPort} for the lab's Redis is in use: pass --redis-port with a free port`);
  }
  if (opts.rateMbit < 1000) {
    log.warn(
      { rateMbit: opts.rateMbit },
      'inter-site links under 1000 Mbit/s: live migrations take long enough to hit a QEMU 7.2 TCG + virtio-net bug that corrupts guest memory (docs/measurements.md, the lab)',
    );
  }
  const started = Date.now();
  const state: LabState = {
    name: opts.name,
    index,
    sites: opts.sites,
    hostsPerSite: opts.hostsPerSite,
    delayMs: opts.delayMs,
    rateMbit: opts.rateMbit,
    redisPort,
    periodSeconds: opts.periodSeconds ?? DEFAULT_PERIOD_SECONDS,
    sensor: opts.sensor ?? 'ebpf',
    status: 'creating',
    createdAt: new Date().toISOString(),
    vms: {},
  };
  await writeState(state);
  try {
    await createNetwork(state);
    await startDelayLine(state);
    await startRedis(state);
    await installLabHooks(state);
    await makeLabPki(state);
    // Once, before four agents start at the same time: a second mount stacked on the first would hide its pins.
    if (state.sensor !== 'pcap') await ensureBpffs();
    await Promise.all(hosts(state).map((h) => startLibvirtd(state, h)));
    if (opts.agents !== false) await startAgents(state);
  } catch (err) {
    log.error({ err }, 'lab up failed; removing what it created');
    await labDown(opts.name);
    throw err;
  }
  state.status = 'up';
  state.upSeconds = (Date.now() - started) / 1000;
  await writeState(state);
  return state;
}

async function refuseIfPresent(name: string): Promise<void> {
  const state = await readState(name);
  const leftovers = [...(await labNetns(name)), ...(await rootLinks(name))];
  if (state || leftovers.length) {
    const what = state ? `is already ${state.status === 'up' ? 'up' : 'half created'}` : `has leftovers (${leftovers.join(', ')})`;
    throw new UserError(`lab '${name}' ${what}: see 'virt-cohort lab status --name ${name}', or remove it with 'virt-cohort lab down --name ${name}' first, ` + `or pick another name with --name`);
  }
}

/** The first 10.L.0.0/16 that no other lab and no address or route of this machine uses. */
async function freeIndex(): Promise<number> {
  const taken = new Set((await listLabs()).map((l) => l.index));
  const routes = (await run('ip', ['-4', 'route', 'show', 'table', 'all'])) + (await run('ip', ['-4', '-o', 'addr']));
  for (let i = 101; i < 250; i++) {
    if (!taken.has(i) && !routes.includes(`10.${i}.`)) return i;
  }
  throw new UserError('no free 10.L.0.0/16 range left for a lab (101..249 are used): remove a lab with virt-cohort lab down');
}

/**
 * Removes everything the lab may have created, whether `lab up` finished or
 * crashed: processes by the pids found in the lab's namespaces and pid files,
 * then namespaces, links, BPF pins and state, all found by the lab's prefix.
 * Returns what it removed.
 */
export async function labDown(name: string): Promise<string[]> {
  validateName(name);
  requireRoot('lab down');
  const removed: string[] = [];
  const namespaces = await labNetns(name);
  const pids = new Set<number>();
  for (const ns of namespaces) {
    const out = await run('ip', ['netns', 'pids', ns]);
    for (const p of out.split('\n')) if (p.trim()) pids.add(Number(p));
  }
  const redis = await livePid(redisPidFile(name));
  if (redis && (await isProgram(redis, 'redis-server'))) pids.add(redis);
  if (pids.size) {
    await killAll([...pids]);
    removed.push(`${pids.size} processes`);
  }
  for (const ns of namespaces) {
    await run('ip', ['netns', 'del', ns]);
    removed.push(`netns ${ns}`);
  }
  for (const link of await rootLinks(name)) {
    // A veth whose peer was in a deleted namespace may vanish while we look.
    const gone = await run('ip', ['link', 'del', link]).then(
      () => false,
      (err: Error) => {
        if (/Cannot find device/.test(err.message)) return true;
        throw err;
      },
    );
    if (!gone) removed.push(`link ${link}`);
  }
  const pins = await run('sh', ['-c', `ls -d /sys/fs/bpf/${prefix(name)}-* 2>/dev/null || true`]);
  for (const pin of pins.split('\n').filter(Boolean)) {
    await rm(pin, { recursive: true, force: true });
    removed.push(`bpf pin ${pin}`);
  }
  if (await readState(name)) removed.push(`state ${labDir(name)}`);
  await rm(labDir(name), { recursive: true, force: true });
  return removed;
}

async function isProgram(pid: number, program: string): Promise<boolean> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes(program);
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL whatever is still there after 5 s. */
async function killAll(pids: number[]): Promise<void> {
  for (const p of pids) if (alive(p)) process.kill(p, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) await sleep(100);
  for (const p of pids) if (alive(p)) process.kill(p, 'SIGKILL');
  const last = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < last) await sleep(50);
}

export async function requireLab(name: string): Promise<LabState> {
  validateName(name);
  const state = await readState(name);
  if (!state) {
    const others = (await listLabs()).map((l) => l.name);
    throw new UserError(`lab '${name}' is not up: start it with 'virt-cohort lab up --name ${name}'` + (others.length ? ` (labs that are up: ${others.join(', ')}; choose one with --name)` : ''));
  }
  if (state.status !== 'up') {
    throw new UserError(`lab '${name}' is half created (lab up did not finish): run 'virt-cohort lab down --name ${name}', then lab up again`);
  }
  return state;
}

export type { LabSettings };
