import type { HostEntry, VmEntry } from '../../src/collector/registry.js';
import { addPeriod, TRACE_VERSION, type Trace } from '../../src/replay/trace.js';

/**
 * Generated traces with phases, from a seed (nothing stored): the corpus of
 * test/bench/replay.ts beside the traces recorded from the lab. Each scenario
 * gives, for every period, the rates between VMs (and endpoints that are not
 * VMs); the generator turns them into per-period counts with ±10 % jitter, on
 * 2 sites × 2 hosts, every group split across the sites at the start.
 */
export interface Flow {
  src: string;
  dst: string;
  /** Messages per second, and bytes per message. */
  rate: number;
  size: number;
}

export interface Scenario {
  name: string;
  vms: number;
  periods: number;
  /** The flows of period k (0-based) of `periods`; `r` is the scenario's seeded generator. */
  flows(k: number, r: () => number): Flow[];
  /** Endpoints that are not VMs, by site (a file server). */
  endpoints?: Record<string, string>;
  /** Memory per VM, MiB (default 2048). */
  vmMiB?: number;
  /** Hosts per site (default 2) and each host's memory (GiB, default: room for 60 % of the VMs per site). */
  hostsPerSite?: number;
  hostGiB?: number;
}

export const PERIOD = 30;
/** 2026-11-02T00:00:00Z: the generated day starts at midnight. */
export const T0 = 1_793_577_600;
export const vm = (i: number) => `vm${String(i).padStart(2, '0')}`;

/** xorshift32 in [0, 1). */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** Both directions of a conversation, `rate` messages/s each way. */
export function talk(a: string, b: string, rate: number, size = 1024): Flow[] {
  return [
    { src: a, dst: b, rate, size },
    { src: b, dst: a, rate, size },
  ];
}

/** Every pair of `members` talking. */
export function clique(members: string[], rate: number, size = 1024): Flow[] {
  return members.flatMap((a, i) => members.slice(i + 1).flatMap((b) => talk(a, b, rate, size)));
}

/** The trace of a scenario, built in memory from `seed`. */
export function generate(s: Scenario, seed: number): Trace {
  const r = rng(seed);
  const perSite = s.hostsPerSite ?? 2;
  const sites = ['a', 'b'];
  const vmKiB = (s.vmMiB ?? 2048) * 1024;
  const hostKiB = (s.hostGiB ?? Math.ceil((0.6 * s.vms * vmKiB) / perSite / 1048576)) * 1048576 + 1048576;
  const hostNames = sites.flatMap((site) => Array.from({ length: perSite }, (_, i) => `${site}${i + 1}`));
  // VM i on host i mod hosts: consecutive VMs (the groups) alternate between the sites.
  const order = [...hostNames].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1)) || x.localeCompare(y));
  const placed = Array.from({ length: s.vms }, (_, i) => order[i % order.length]!);
  const end = (T0 + s.periods * PERIOD) * 1000;
  const hosts: HostEntry[] = hostNames.map((h) => ({
    host: h,
    site: h[0]!,
    uri: `qemu+tcp://${h}/system`,
    cpus: 64,
    memoryKiB: hostKiB,
    freeMemoryKiB: hostKiB - placed.filter((p) => p === h).length * vmKiB,
    vms: placed.filter((p) => p === h).length,
    sensor: 'ebpf',
    sensorNote: '',
    periodSeconds: PERIOD,
    migrateUri: '',
    firstSeen: T0 * 1000,
    lastSeen: end,
    draining: false,
  }));
  const vms: VmEntry[] = placed.map((h, i) => ({
    name: vm(i),
    uuid: '',
    host: h,
    site: h[0]!,
    state: 'running',
    mac: '',
    addresses: [],
    memoryKiB: vmKiB,
    vcpus: 2,
    since: T0 * 1000,
    pinned: false,
    optOut: false,
    rules: '',
  }));
  const env = {
    sites: { a: { price: { perVmHour: 0.1, perVcpuHour: 0, perGiBHour: 0 } }, b: { price: { perVmHour: 0.08, perVcpuHour: 0, perGiBHour: 0 } } },
    hosts: Object.fromEntries(hostNames.map((h) => [h, { site: h[0] }])),
    links: [{ sites: ['a', 'b'], latencyMs: 20, bandwidthMbit: 1000, transferPricePerGB: 0.02 }],
    endpoints: s.endpoints ?? {},
    cpuOvercommit: 4,
    reserveMemoryMiB: 0,
  };
  const tr: Trace = {
    version: TRACE_VERSION,
    recordedAt: end,
    source: `generated: ${s.name}, seed ${seed}`,
    periodSeconds: PERIOD,
    names: [],
    periods: [],
    hosts,
    vms,
    environments: [{ at: T0 * 1000, file: env, defaults: { latencyMs: 20, bandwidthMbit: 1000 }, source: 'generated' }],
    migrations: [],
  };
  const index = new Map<string, number>();
  for (let k = 0; k < s.periods; k++) {
    const sum = new Map<string, { src: string; dst: string; messages: number; bytes: number }>();
    for (const f of s.flows(k, r)) {
      const msgs = Math.round(f.rate * PERIOD * (0.9 + 0.2 * r()));
      if (msgs <= 0 || f.src === f.dst) continue;
      const key = `${f.src}>${f.dst}`;
      const cur = sum.get(key) ?? { src: f.src, dst: f.dst, messages: 0, bytes: 0 };
      cur.messages += msgs;
      cur.bytes += msgs * f.size;
      sum.set(key, cur);
    }
    addPeriod(tr, index, T0 + k * PERIOD, [...sum.values()], hostNames);
  }
  return tr;
}
