import type { Redis } from 'ioredis';
import { K } from './keys.js';

/** A host as the registry holds it (vc:host:H), read back. */
export interface HostEntry {
  host: string;
  site: string;
  uri: string;
  cpus: number;
  memoryKiB: number;
  freeMemoryKiB: number;
  vms: number;
  sensor: string;
  periodSeconds: number;
  /** Unix ms; 0 when the hash lacks it. */
  firstSeen: number;
  lastSeen: number;
}

/** A VM as the directory holds it (vc:vm:NAME), read back. */
export interface VmEntry {
  name: string;
  uuid: string;
  host: string;
  site: string;
  state: string;
  mac: string;
  addresses: string[];
  memoryKiB: number;
  vcpus: number;
  since: number;
  /** Domain metadata: never migrate (pinned), not counted (optOut, also never migrated). */
  pinned: boolean;
  optOut: boolean;
}

const num = (v: string | undefined) => (v === undefined || v === '' ? 0 : Number(v));

export async function readHosts(redis: Redis): Promise<HostEntry[]> {
  const names = (await redis.smembers(K.hosts)).sort();
  if (!names.length) return [];
  const tx = redis.pipeline();
  for (const h of names) tx.hgetall(K.host(h));
  const out = await tx.exec();
  return names.map((host, i) => {
    const [err, raw] = out![i]!;
    if (err) throw err;
    const r = raw as Record<string, string>;
    return {
      host, site: r.site ?? '', uri: r.uri ?? '', cpus: num(r.cpus), memoryKiB: num(r.memoryKiB),
      freeMemoryKiB: num(r.freeMemoryKiB), vms: num(r.vms), sensor: r.sensor ?? '', periodSeconds: num(r.periodSeconds),
      firstSeen: num(r.firstSeen), lastSeen: num(r.lastSeen),
    };
  });
}

export async function readVms(redis: Redis): Promise<VmEntry[]> {
  const names = (await redis.smembers(K.vms)).sort();
  if (!names.length) return [];
  const tx = redis.pipeline();
  for (const v of names) tx.hgetall(K.vm(v));
  const out = await tx.exec();
  return names.map((name, i) => {
    const [err, raw] = out![i]!;
    if (err) throw err;
    const r = raw as Record<string, string>;
    return {
      name, uuid: r.uuid ?? '', host: r.host ?? '', site: r.site ?? '', state: r.state ?? '', mac: r.mac ?? '',
      addresses: r.addresses ? r.addresses.split(',') : [], memoryKiB: num(r.memoryKiB), vcpus: num(r.vcpus), since: num(r.since),
      pinned: r.pinned === '1', optOut: r.optOut === '1',
    };
  });
}

/** Cluster-wide settings (vc:settings); absent fields are undefined. */
export async function readSettings(redis: Redis): Promise<{ periodSeconds?: number; retention?: number }> {
  const [p, r] = await redis.hmget(K.settings, 'periodSeconds', 'retention');
  return { ...(p ? { periodSeconds: Number(p) } : {}), ...(r ? { retention: Number(r) } : {}) };
}
