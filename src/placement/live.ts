import { UserError } from '../util/errors.js';
import type { Environment, Host } from './env.js';

/** A running VM as the agents see it. `pinned`: libvirt metadata says never move it. */
export interface VmInfo {
  name: string;
  host: string;
  site: string;
  memoryKiB: number;
  vcpus: number;
  pinned?: boolean;
}

/** A host's live inventory as its agent publishes it. */
export interface HostInfo {
  name: string;
  site: string;
  cpus: number;
  memoryKiB: number;
  freeMemoryKiB: number;
}

/**
 * Merges the agents' inventory into the file's model: live capacity wins over the file (it is
 * measured), the file keeps what only it knows (speed, price, availability). A host that reports
 * but is not in the file is taken at speed 1 and price 0 in the site it says; its site must exist,
 * since links (latency, bandwidth) are only known per site. When `live` is given, file hosts that
 * sent nothing are kept (VMs may still be on them) but are not destinations this round.
 */
export function mergeLive(env: Environment, live: readonly HostInfo[] | undefined, notes: string[] = []): Environment {
  if (live === undefined) return env;
  const sites = new Set(env.sites.map((s) => s.name));
  const byName = new Map(env.hosts.map((h) => [h.name, h] as const));
  const hosts: Host[] = env.hosts.map((h) => ({ ...h, reporting: false }));
  const index = new Map(hosts.map((h, i) => [h.name, i] as const));
  for (const l of live) {
    if (!(l.cpus >= 0) || !(l.memoryKiB >= 0) || !(l.freeMemoryKiB >= 0)) {
      throw new UserError(`live inventory of host ${l.name} has negative or missing cpus/memory: check its agent`);
    }
    const known = byName.get(l.name);
    // A host the file describes otherwise is left out with a note: the command goes on with what is known.
    if (known && known.site !== l.site) {
      notes.push(`host ${l.name} reports site '${l.site}' but the environment file puts it in '${known.site}': it is left out (and its VMs) until they agree`);
      continue;
    }
    if (!sites.has(l.site)) {
      notes.push(`host ${l.name} reports site '${l.site}', which the environment file does not define: it is left out (and its VMs); add "sites": { "${l.site}": {} } and its links`);
      continue;
    }
    const merged: Host = {
      name: l.name,
      site: l.site,
      vcpus: l.cpus,
      memoryKiB: l.memoryKiB,
      freeMemoryKiB: l.freeMemoryKiB,
      speed: known?.speed ?? 1,
      price: known?.price ?? { perVmHour: 0, perVcpuHour: 0, perGiBHour: 0 },
      availableUntil: known?.availableUntil,
      reporting: true,
    };
    const i = index.get(l.name);
    if (i === undefined) {
      index.set(l.name, hosts.length);
      hosts.push(merged);
    } else hosts[i] = merged;
  }
  return Object.freeze({ ...env, hosts: Object.freeze(hosts) });
}

/** The largest room a group may need to fit in: the biggest live host of the environment. */
export function largestHost(env: Environment): { memoryKiB: number; vcpus: number } {
  let memoryKiB = 0;
  let vcpus = 0;
  for (const h of env.hosts) {
    if (!h.reporting || h.memoryKiB === undefined || h.vcpus === undefined) continue;
    memoryKiB = Math.max(memoryKiB, h.memoryKiB - env.reserveMemoryKiB);
    vcpus = Math.max(vcpus, h.vcpus * env.cpuOvercommit);
  }
  return { memoryKiB: memoryKiB > 0 ? memoryKiB : Infinity, vcpus: vcpus > 0 ? vcpus : Infinity };
}
