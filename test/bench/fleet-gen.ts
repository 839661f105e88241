/**
 * The fleet bench's planted-groups generator (test/bench/fleet.ts): a fleet of VMs on hosts of
 * several sites, in groups that talk a lot inside, light noise between groups, and peers that are
 * not VMs (shared services and addresses on the Internet). Each VM has PEERS directed pairs a
 * period, as its host's agent reports them (agent/pairs.ts: what a VM sends, to VMs and to outside
 * addresses, and what it receives from outside addresses; what it receives from a VM is the other
 * host's). Seeded: the same fleet and the same counts every run.
 */
import type { Report } from '../../src/collector/report.js';
import { rng } from './problems.js';

/** Directed pairs per VM and period: VM_PEERS to VMs (group mates first, then noise), then 2 sent outside, 1 received from outside. */
export const PEERS = 20;
const VM_PEERS = 17;
/** At most this many of a VM's VM peers are in its group; the rest are noise to VMs anywhere. */
const MATES = 12;
/** Group sizes: uniform in [MIN_GROUP, MAX_GROUP]. */
const MIN_GROUP = 8;
const MAX_GROUP = 40;
/** Shared services outside the fleet (file servers, databases) the VMs send to. */
const SERVICES = 500;
/** Each period, each noise or Internet peer of each VM is replaced with this probability. */
const CHURN = 0.01;
const GiB = 1048576;
export const VM_KIB = 2 * GiB;

export interface FleetShape {
  vms: number;
  vmsPerHost: number;
  sites: number;
  seed: number;
}

export interface SimHost {
  name: string;
  site: string;
  cpus: number;
  memoryKiB: number;
  /** Indexes of its VMs. */
  vms: number[];
}

/** The fleet and each VM's peer slots: member names, and messages per second and bytes per message. */
export interface Fleet {
  shape: FleetShape;
  sites: string[];
  hosts: SimHost[];
  vmNames: string[];
  /** The VM's own address (the directory's; peers named by VM name, as agents name known VMs). */
  vmAddr: string[];
  groups: number;
  /** PEERS members per VM, slot k of VM v at v * PEERS + k. */
  members: string[];
  rate: Float32Array;
  size: Float32Array;
  rand: () => number;
}

export const vmName = (v: number) => `vm-${String(v).padStart(6, '0')}`;
const internet = (r: () => number) => `198.${18 + Math.floor(r() * 2)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}`;
const service = (i: number) => `203.0.${113 + (i >> 8)}.${i & 255}`;

/** The fleet: groups of consecutive VMs, the VMs dealt to hosts at random (so the groups start split across hosts and sites). */
export function plantFleet(shape: FleetShape): Fleet {
  const r = rng(shape.seed);
  const n = shape.vms;
  const sites = Array.from({ length: shape.sites }, (_, i) => `site${String.fromCharCode(97 + i)}`);
  const hostCount = Math.ceil(n / shape.vmsPerHost);
  // 25 % more memory than the VMs need, so that the planner has room to move them.
  const hosts: SimHost[] = Array.from({ length: hostCount }, (_, h) => ({
    name: `host-${String(h).padStart(5, '0')}`,
    site: sites[h % sites.length]!,
    cpus: 64,
    memoryKiB: Math.ceil(shape.vmsPerHost * 1.25) * VM_KIB,
    vms: [],
  }));
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  order.forEach((v, i) => hosts[Math.floor(i / shape.vmsPerHost)]!.vms.push(v));
  const vmNames = Array.from({ length: n }, (_, v) => vmName(v));
  const vmAddr = Array.from({ length: n }, (_, v) => `10.${(v >> 16) & 255}.${(v >> 8) & 255}.${v & 255}`);
  const members: string[] = new Array(n * PEERS);
  const rate = new Float32Array(n * PEERS);
  const size = new Float32Array(n * PEERS);
  let groups = 0;
  for (let g0 = 0; g0 < n; groups++) {
    const g1 = Math.min(n, g0 + MIN_GROUP + Math.floor(r() * (MAX_GROUP - MIN_GROUP + 1)));
    for (let v = g0; v < g1; v++) fillSlots(v, g0, g1, n, r, vmNames, members, rate, size);
    g0 = g1;
  }
  return { shape, sites, hosts, vmNames, vmAddr, groups, members, rate, size, rand: r };
}

function fillSlots(v: number, g0: number, g1: number, n: number, r: () => number, names: string[], members: string[], rate: Float32Array, size: Float32Array): void {
  const me = names[v]!;
  const peers = new Set<number>([v]);
  const mates = Math.min(MATES, g1 - g0 - 1);
  while (peers.size <= mates) peers.add(g0 + Math.floor(r() * (g1 - g0)));
  while (peers.size <= VM_PEERS) peers.add(Math.floor(r() * n));
  peers.delete(v);
  let k = v * PEERS;
  for (const p of peers) {
    const inside = p >= g0 && p < g1;
    members[k] = `${me}>${names[p]}`;
    rate[k] = inside ? 20 + 180 * r() : 0.1 + 2 * r();
    size[k++] = inside ? 1000 + 8000 * r() : 200 + 800 * r();
  }
  members[k] = `${me}>${service(Math.floor(r() * SERVICES))}`;
  rate[k] = 1 + 20 * r();
  size[k++] = 500 + 1000 * r();
  members[k] = `${me}>${internet(r)}`;
  rate[k] = 0.1 + 5 * r();
  size[k++] = 200 + 1200 * r();
  members[k] = `${internet(r)}>${me}`;
  rate[k] = 0.1 + 5 * r();
  size[k] = 200 + 1200 * r();
}

/** The period's churn: a few noise and Internet peers replaced (new members for the pair dictionary). */
export function churn(f: Fleet): void {
  const r = f.rand;
  const n = f.vmNames.length;
  for (let v = 0; v < n; v++) {
    const me = f.vmNames[v]!;
    for (let k = MATES; k < PEERS; k++) {
      if (r() >= CHURN) continue;
      const at = v * PEERS + k;
      if (k < VM_PEERS) {
        const p = Math.floor(r() * n);
        const m = `${me}>${f.vmNames[p]}`;
        if (p !== v && !f.members.slice(v * PEERS, v * PEERS + PEERS).includes(m)) f.members[at] = m;
      } else if (k === VM_PEERS + 1) f.members[at] = `${me}>${internet(r)}`;
      else if (k === VM_PEERS + 2) f.members[at] = `${internet(r)}>${me}`;
    }
  }
}

/** One host's report of one period, as its agent builds it: each pair once, counts jittered ±10 %. */
export function hostReport(f: Fleet, h: SimHost, period: number, length: number): Report {
  const r = f.rand;
  const pairs: [string, number, number][] = [];
  for (const v of h.vms) {
    for (let k = v * PEERS; k < (v + 1) * PEERS; k++) {
      const msgs = Math.max(1, Math.round(f.rate[k]! * length * (0.9 + 0.2 * r())));
      pairs.push([f.members[k]!, msgs, Math.round(msgs * f.size[k]!)]);
    }
  }
  return {
    v: 1,
    host: h.name,
    site: h.site,
    period,
    length,
    from: period * 1000,
    to: (period + length) * 1000,
    pairs,
    overflow: { packets: 0, bytes: 0 },
    unknownTap: 0,
    vms: h.vms.map((v) => f.vmNames[v]!).sort(),
  };
}
