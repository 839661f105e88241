import { after, before } from 'node:test';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { Registry, type HostRecord } from '../../src/collector/registry.js';
import type { Report } from '../../src/collector/report.js';
import { TestRedis } from '../helpers/redis.js';

export const L = 30;

export function hostRecord(site = 'site-a'): HostRecord {
  return { site, uri: 'qemu:///system', cpus: 4, memoryKiB: 8 << 20, freeMemoryKiB: 4 << 20, vms: 1, sensor: 'ebpf', periodSeconds: L };
}

export function report(host: string, period: number, pairs: [string, number, number][]): Report {
  return {
    v: 1,
    host,
    site: 'site-a',
    period,
    length: L,
    from: period * 1000,
    to: (period + L) * 1000,
    pairs,
    overflow: { packets: 0, bytes: 0 },
    unknownTap: 0,
    vms: [],
  };
}

/** Registers `host` as first seen at `firstSeen` and last seen at `lastSeen` (ms), on the connection of `on` (a Store, say). */
export async function host(on: { redis: Redis }, name: string, firstSeen: number, lastSeen: number): Promise<void> {
  const registry = new Registry(on.redis);
  await registry.registerHost(name, hostRecord(), firstSeen);
  await registry.registerHost(name, hostRecord(), lastSeen);
}

/** Sets L-second periods in vc:{vc}:settings; returns the period that holds `now` (ms). */
export async function periodNow(redis: Redis, now: number): Promise<number> {
  await redis.hset(K.settings, 'periodSeconds', L);
  return Math.floor(now / 1000 / L) * L;
}

/** A private Redis for the test file and a connection to it: started before the file's tests, stopped after them. */
export function fileRedis(): { server: TestRedis; redis: Redis } {
  const r = {} as { server: TestRedis; redis: Redis };
  before(async () => {
    r.server = await TestRedis.start();
    r.redis = new Redis(r.server.url);
  });
  after(async () => {
    r.redis.disconnect();
    await r.server.close();
  });
  return r;
}

/** A host of 8 CPUs and 8 GiB (6 free), as the plan, rules and manager tests register it. */
export function liveHost(site: string, uri = 'qemu:///system', migrateUri = ''): HostRecord {
  return { site, uri, migrateUri, cpus: 8, memoryKiB: 8 << 20, freeMemoryKiB: 6 << 20, vms: 2, sensor: 'ebpf', periodSeconds: L };
}

/**
 * Registers `hosts` as first seen an hour ago, and returns the call that marks them seen 10 min
 * from now: made after the reports are written, it keeps them live for the whole test.
 */
export async function registerHosts(redis: Redis, hosts: readonly (readonly [name: string, site: string, uri?: string])[]): Promise<() => Promise<void>> {
  const registry = new Registry(redis);
  await redis.hset(K.settings, 'periodSeconds', L);
  const all = async (at: number) => {
    for (const [h, s, uri] of hosts) await registry.registerHost(h, liveHost(s, uri), at);
  };
  await all(Date.now() - 3_600_000);
  return () => all(Date.now() + 600_000);
}
