import { spawn } from 'node:child_process';
import { mkdir, open, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';
import type { SensorBackend } from '../sensor/index.js';
import { AGENT_NODE_FLAGS } from '../agent/config.js';
import { DEFAULT_PERIOD_SECONDS } from '../util/period.js';
import { installHook } from '../agent/hook.js';
import type { RoutePolicy } from '../manager/trust.js';
import { waitFor } from '../util/exec.js';
import { alive, livePid } from '../util/process.js';
import { hostDir } from './state.js';
import { hosts, labMigrateUri, prefix, rootIp, type LabHost, type LabSettings } from './topology.js';

const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');

/** Where each lab host keeps its agent's socket, state, log and pid; and its own BPF pin root. */
export function agentPaths(lab: LabSettings, h: LabHost) {
  const dir = hostDir(lab.name, h.name);
  return {
    socket: join(dir, 'agent.sock'),
    stateDir: join(dir, 'agent'),
    log: join(dir, 'agent.log'),
    pid: join(dir, 'agent.pid'),
    pinRoot: `/sys/fs/bpf/${prefix(lab.name)}-${h.name}`,
    hooksDir: join(dir, 'etc/libvirt/hooks'),
  };
}

export const labRedisUrl = (lab: LabSettings) => `redis://${rootIp(lab)}:${lab.redisPort}`;

/**
 * The routes a lab's agents register (startAgent: --libvirt-uri and
 * --migrate-uri), from its topology: the lab's manager vouches for exactly those.
 */
export function labRoutes(lab: LabSettings): RoutePolicy {
  return {
    hostRoutes: Object.fromEntries(hosts(lab).map((h) => [h.name, { uri: h.uri, migrateUri: labMigrateUri(h) }])),
    hostUris: [],
    migrateNetworks: [],
  };
}

/** Before libvirtd starts (it reads hooks only then): the hook, pointed at this host's agent socket. */
export async function installLabHooks(lab: LabSettings): Promise<void> {
  for (const h of hosts(lab)) {
    const p = agentPaths(lab, h);
    await installHook(p.hooksDir, p.socket);
  }
}

/** The agent of one lab host, inside the host's network namespace (its taps, its libvirt, the lab's Redis). */
/** `env`: added to the agent's environment (the chaos bench runs one under libfaketime). */
export async function startAgent(lab: LabSettings & { periodSeconds?: number; sensor?: SensorBackend }, h: LabHost, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<number> {
  const p = agentPaths(lab, h);
  await mkdir(p.stateDir, { recursive: true });
  const out = await open(p.log, 'a');
  const child = spawn(
    'nsenter',
    [
      `--net=/run/netns/${h.netns}`,
      '--',
      process.execPath,
      ...AGENT_NODE_FLAGS,
      CLI,
      'agent',
      '--host',
      h.name,
      '--site',
      h.site,
      '--libvirt-uri',
      h.uri,
      '--redis',
      labRedisUrl(lab),
      '--period',
      String(lab.periodSeconds ?? DEFAULT_PERIOD_SECONDS),
      '--reconcile',
      '5',
      '--socket',
      p.socket,
      '--state-dir',
      p.stateDir,
      '--pin-root',
      p.pinRoot,
      '--migrate-uri',
      labMigrateUri(h),
      '--sensor',
      lab.sensor ?? 'ebpf',
      // The lab's tests read the readable zsets of every period of a run (an outage of 2 minutes is 24 periods of 5 s):
      // keep them all, not the newest 5 of agent.zsetPeriods.
      '--zset-periods',
      '100000',
      ...extra,
    ],
    { detached: true, stdio: ['ignore', out.fd, out.fd], env: { ...process.env, ...env } },
  );
  await out.close();
  child.unref();
  const pid = child.pid!;
  await writeFile(p.pid, `${pid}\n`);
  await waitFor(
    `the agent of lab host ${h.name} (log: ${p.log})`,
    async () => {
      if (!alive(pid)) throw new Error(`the agent of lab host ${h.name} exited at start; see ${p.log}`);
      return (await livePid(p.pid)) && (await socketUp(p.socket)) ? true : undefined;
    },
    30_000,
    100,
  );
  return pid;
}

async function socketUp(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isSocket(),
    () => false,
  );
}

export async function startAgents(lab: LabSettings & { periodSeconds?: number; sensor?: SensorBackend }): Promise<void> {
  await Promise.all(hosts(lab).map((h) => startAgent(lab, h)));
}
