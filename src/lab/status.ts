import { livePid } from '../util/process.js';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Registry, sensorLabel } from '../collector/registry.js';
import { connectChecked } from '../config/redis.js';
import { agentPaths, labRedisUrl } from './agents.js';
import type { LabState } from './state.js';
import { libvirtdPidFile } from './libvirtd.js';
import { requireLab } from './lab.js';
import { siteRate } from './network.js';
import { delayLineRunning } from './wan.js';
import { redisPing } from './redis.js';
import { listVms, type VmPlace } from './vm.js';
import { hosts, rootIp, siteName } from './topology.js';

export interface LabStatus {
  name: string;
  index: number;
  createdAt: string;
  upSeconds?: number;
  redis: { address: string; ok: boolean };
  sites: { name: string; link: string }[];
  hosts: { name: string; site: string; uri: string; dataIp: string; libvirtd: 'running' | 'down'; agent: 'running' | 'down'; sensor: string; spooled: number; vms: number }[];
  vms: VmPlace[];
}

export async function labStatus(name: string): Promise<LabStatus> {
  const lab = await requireLab(name);
  const vms = await listVms(lab).catch(() => [] as VmPlace[]);
  const sites = [];
  const sensors = await registeredSensors(lab);
  const delay = lab.delayMs === 0 ? 'no delay' : `delay ${lab.delayMs} ms${(await delayLineRunning(lab)) ? '' : ' (DELAY LINE DOWN: inter-site traffic is dropped; recreate the lab)'}`;
  for (let s = 1; s <= lab.sites; s++) sites.push({ name: siteName(s), link: `${await siteRate(lab, s)}, ${delay}` });
  return {
    name: lab.name,
    index: lab.index,
    createdAt: lab.createdAt,
    ...(lab.upSeconds !== undefined ? { upSeconds: lab.upSeconds } : {}),
    redis: { address: `${rootIp(lab)}:${lab.redisPort}`, ok: await redisPing(lab) },
    sites,
    hosts: await Promise.all(
      hosts(lab).map(async (h) => ({
        name: h.name,
        site: h.site,
        uri: h.uri,
        dataIp: h.dataIp,
        libvirtd: (await livePid(libvirtdPidFile(lab, h))) ? ('running' as const) : ('down' as const),
        agent: (await livePid(agentPaths(lab, h).pid)) ? ('running' as const) : ('down' as const),
        // What the agent counts with, as it published it; '-' until it has registered.
        sensor: sensors.get(h.name) ?? '-',
        // Reports waiting on the host's disk for Redis: 0 when all is well.
        spooled: (await readdir(join(agentPaths(lab, h).stateDir, 'spool')).catch(() => [])).filter((f) => f.endsWith('.json')).length,
        vms: vms.filter((v) => v.host === h.name).length,
      })),
    ),
    vms,
  };
}

/** Each lab host's sensor backend from the host registry in the lab's Redis (empty when Redis does not answer). */
async function registeredSensors(lab: LabState): Promise<Map<string, string>> {
  try {
    const redis = await connectChecked(labRedisUrl(lab), undefined, 2000);
    try {
      return new Map((await new Registry(redis).hosts()).map((h) => [h.host, sensorLabel(h)]));
    } finally {
      redis.disconnect();
    }
  } catch {
    return new Map();
  }
}
