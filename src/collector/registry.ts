import type { Redis } from 'ioredis';
import { K } from './keys.js';
import type { HostRecord } from './store.js';

/** A host as the registry holds it (vc:host:H), read back: what its agent wrote, and what the registry adds. */
export interface HostEntry extends HostRecord {
  host: string;
  /** Unix ms; 0 when the hash lacks it. */
  firstSeen: number;
  lastSeen: number;
  /** Set by `virt-cohort host drain`: the manager empties it and plans nothing onto it. */
  draining: boolean;
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

/** A host's sensor backend for a person: `pcap (fallback)` when libpcap was not asked for. */
export const sensorLabel = (h: Pick<HostEntry, 'sensor' | 'sensorNote'>) => (h.sensor || '?') + (h.sensorNote ? ' (fallback)' : '');

const num = (v: string | undefined) => (v === undefined || v === '' ? 0 : Number(v));

/** Every member of the set `index` with its hash (`key(member)`), in one round trip, sorted by name. */
async function readAll(redis: Redis, index: string, key: (name: string) => string): Promise<[string, Record<string, string>][]> {
  const names = (await redis.smembers(index)).sort();
  if (!names.length) return [];
  const tx = redis.pipeline();
  for (const n of names) tx.hgetall(key(n));
  const out = await tx.exec();
  return names.map((n, i) => {
    const [err, raw] = out![i]!;
    if (err) throw err;
    return [n, raw as Record<string, string>];
  });
}

export async function readHosts(redis: Redis): Promise<HostEntry[]> {
  return (await readAll(redis, K.hosts, K.host)).map(([host, r]) => ({
    host, site: r.site ?? '', uri: r.uri ?? '', cpus: num(r.cpus), memoryKiB: num(r.memoryKiB),
    freeMemoryKiB: num(r.freeMemoryKiB), vms: num(r.vms), sensor: r.sensor ?? '', sensorNote: r.sensorNote ?? '', periodSeconds: num(r.periodSeconds),
    migrateUri: r.migrateUri ?? '', firstSeen: num(r.firstSeen), lastSeen: num(r.lastSeen), draining: r.draining === '1',
  }));
}

export async function readVms(redis: Redis): Promise<VmEntry[]> {
  return (await readAll(redis, K.vms, K.vm)).map(([name, r]) => ({
    name, uuid: r.uuid ?? '', host: r.host ?? '', site: r.site ?? '', state: r.state ?? '', mac: r.mac ?? '',
    addresses: r.addresses ? r.addresses.split(',') : [], memoryKiB: num(r.memoryKiB), vcpus: num(r.vcpus), since: num(r.since),
    pinned: r.pinned === '1', optOut: r.optOut === '1',
  }));
}

/** Cluster-wide settings (vc:settings); absent fields are undefined. */
export async function readSettings(redis: Redis): Promise<{ periodSeconds?: number; retention?: number }> {
  const [p, r] = await redis.hmget(K.settings, 'periodSeconds', 'retention');
  return { ...(p ? { periodSeconds: Number(p) } : {}), ...(r ? { retention: Number(r) } : {}) };
}

/** The directory's state of each VM named (running, arriving, stopped; '' when unknown), in one round trip. */
export async function vmStates(redis: Redis, names: string[]): Promise<Map<string, string>> {
  if (!names.length) return new Map();
  const tx = redis.pipeline();
  for (const n of names) tx.hget(K.vm(n), 'state');
  const out = await tx.exec();
  return new Map(names.map((n, i) => {
    const [err, state] = out![i]!;
    if (err) throw err;
    return [n, (state as string | null) ?? ''];
  }));
}
