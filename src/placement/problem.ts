import type { TrafficGraph } from '../analysis/graph.js';
import type { OBJECTIVES } from '../config/schema.js';
import { UserError } from '../util/errors.js';
import { compileRules, penaltyFor, type Constraints } from './constraints.js';
import { averageRates, type Environment } from './env.js';
import type { Rule } from './rules.js';

/**
 * What a plan optimises. All three are rates (per second) plus one-off migration costs in the
 * same unit, so a move's payback time is always one-off / rate gain:
 * - time: seconds of run time lost per second. A message crossing sites waits the link's latency,
 *   a byte takes 8/bandwidth; a VM on a host of speed s computes 1/s times slower. A migration
 *   costs its transfer time (memory / bandwidth). Traffic inside a site is taken as free.
 * - cost: currency per second: hosting price + inter-site transfer price per GB. A migration costs
 *   its memory image at the link's transfer price. A hosting price with a schedule counts at its
 *   average over [now, now + horizon] (averageRates), so a change due within the horizon weighs in.
 * - resources (the administrator's view): every host in use costs 1, inter-site links cost the
 *   share of their bandwidth used (a host kept busy weighs one link kept full), a migration costs
 *   the link-seconds it takes. Consolidation frees hosts.
 */
export type Objective = (typeof OBJECTIVES)[number];

export const UNITS: Record<Objective, string> = {
  time: 's/s (run time lost per second)',
  cost: 'currency/s',
  resources: 'busy host or link per second',
};

export interface Problem {
  readonly graph: TrafficGraph;
  readonly objective: Objective;
  readonly nVm: number;
  readonly nHost: number;
  readonly nSite: number;
  readonly hostNames: readonly string[];
  readonly siteNames: readonly string[];
  readonly hostSite: Int32Array;
  /** Room for the VMs we manage (the host's other load already taken out). */
  readonly memCap: Float64Array;
  readonly cpuCap: Float64Array;
  /** 0: may not receive VMs (not reporting, expired, no capacity known). */
  readonly destination: Uint8Array;
  readonly vmMem: Float64Array;
  readonly vmCpu: Float64Array;
  readonly movable: Uint8Array;
  /** Host each VM runs on now, -1 for a VM not started yet (initial placement). */
  readonly origin: Int32Array;
  /** Site of each fixed endpoint (node - vmCount), -1 when unknown: its traffic is then ignored. */
  readonly endpointSite: Int32Array;
  /** Objective per second for 1 message/s (msgCoef) and 1 byte/s (byteCoef) between sites s,t at [s*nSite+t]. */
  readonly msgCoef: Float64Array;
  readonly byteCoef: Float64Array;
  /** Hosting rate of VM v on host h = hostFixed[h] + vcpus*hostPerCpu[h] + GiB*hostPerGiB[h]. */
  readonly hostFixed: Float64Array;
  readonly hostPerCpu: Float64Array;
  readonly hostPerGiB: Float64Array;
  readonly hostOpen: Float64Array;
  /** Migration of 1 KiB from site s to t: seconds, and one-off objective cost. */
  readonly migSecPerKiB: Float64Array;
  readonly migCostPerKiB: Float64Array;
  /** Share of the horizon a host stays available (1 = all of it). */
  readonly windowFrac: Float64Array;
  readonly horizonSeconds: number;
  /** The operator's rules over these VMs and hosts (constraints.ts); undefined when none applies. */
  readonly rules?: Constraints | undefined;
}

export interface ProblemVm {
  name: string;
  memoryKiB: number;
  vcpus: number;
  /** Current host, undefined for a VM to be placed for the first time. */
  host?: string | undefined;
  pinned?: boolean | undefined;
}

/** Indexes everything once so that the search touches only typed arrays. */
export function buildProblem(g: TrafficGraph, vms: readonly ProblemVm[], env: Environment, objective: Objective, horizonSeconds: number, now: number, rules: readonly Rule[] = []): Problem {
  if (vms.length !== g.vmCount || vms.some((v, i) => g.names[i] !== v.name)) {
    throw new Error('buildProblem: the graph must be built from the same VM list, in the same order');
  }
  if (!(horizonSeconds > 0)) throw new UserError(`the payback horizon must be above 0 seconds (got ${horizonSeconds})`);
  const siteNames = env.sites.map((s) => s.name);
  const siteIndex = new Map(siteNames.map((s, i) => [s, i] as const));
  const hostIndex = new Map(env.hosts.map((h, i) => [h.name, i] as const));
  const S = siteNames.length;
  const H = env.hosts.length;
  const hostSite = Int32Array.from(env.hosts, (h) => siteIndex.get(h.site)!);
  const origin = Int32Array.from(vms, (v) => {
    if (v.host === undefined) return -1;
    const h = hostIndex.get(v.host);
    if (h === undefined) throw new UserError(`VM ${v.name} runs on host ${v.host}, which is in no site: add "hosts": { "${v.host}": { "site": ... } } to the environment file`);
    return h;
  });
  const vmMem = Float64Array.from(vms, (v) => v.memoryKiB);
  const vmCpu = Float64Array.from(vms, (v) => v.vcpus);
  const running = new Float64Array(H);
  origin.forEach((h, v) => h >= 0 && (running[h]! += vmMem[v]!));
  const memCap = new Float64Array(H);
  const cpuCap = new Float64Array(H);
  const destination = new Uint8Array(H);
  const windowFrac = new Float64Array(H);
  env.hosts.forEach((h, i) => {
    const mem = h.memoryKiB === undefined ? 0 : h.memoryKiB - env.reserveMemoryKiB;
    const live = h.freeMemoryKiB === undefined ? Infinity : h.freeMemoryKiB - env.reserveMemoryKiB + running[i]!;
    memCap[i] = Math.max(0, Math.min(mem, live));
    cpuCap[i] = (h.vcpus ?? 0) * env.cpuOvercommit;
    const left = h.availableUntil === undefined ? Infinity : (h.availableUntil - now) / 1000;
    windowFrac[i] = Math.max(0, Math.min(1, left / horizonSeconds));
    destination[i] = h.reporting && h.memoryKiB !== undefined && h.vcpus !== undefined && left > 0 ? 1 : 0;
  });
  const endpointSite = new Int32Array(g.names.length - g.vmCount).fill(-1);
  for (let i = 0; i < endpointSite.length; i++) {
    const s = env.endpoints.get(g.names[g.vmCount + i]!);
    if (s !== undefined) endpointSite[i] = siteIndex.get(s)!;
  }
  const { latency, bps, pricePerByte } = siteLinks(env);
  const msgCoef = new Float64Array(S * S);
  const byteCoef = new Float64Array(S * S);
  const migSecPerKiB = new Float64Array(S * S);
  const migCostPerKiB = new Float64Array(S * S);
  for (let k = 0; k < S * S; k++) {
    const inter = Math.floor(k / S) !== k % S;
    migSecPerKiB[k] = (1024 * 8) / bps[k]!;
    if (objective === 'time') {
      msgCoef[k] = inter ? latency[k]! : 0;
      byteCoef[k] = inter ? 8 / bps[k]! : 0;
      migCostPerKiB[k] = migSecPerKiB[k]!;
    } else if (objective === 'cost') {
      byteCoef[k] = inter ? pricePerByte[k]! : 0;
      migCostPerKiB[k] = 1024 * pricePerByte[k]!;
    } else {
      byteCoef[k] = inter ? 8 / bps[k]! : 0;
      migCostPerKiB[k] = migSecPerKiB[k]!;
    }
  }
  const hostFixed = new Float64Array(H);
  const hostPerCpu = new Float64Array(H);
  const hostPerGiB = new Float64Array(H);
  const hostOpen = new Float64Array(H);
  env.hosts.forEach((h, i) => {
    if (objective === 'time') hostFixed[i] = 1 / h.speed - 1;
    else if (objective === 'cost') {
      const r = averageRates(h.price, now, now + horizonSeconds * 1000);
      hostFixed[i] = r.perVmHour / 3600;
      hostPerCpu[i] = r.perVcpuHour / 3600;
      hostPerGiB[i] = r.perGiBHour / 3600;
    } else hostOpen[i] = 1;
  });
  const p: Problem = {
    graph: g,
    objective,
    nVm: vms.length,
    nHost: H,
    nSite: S,
    hostNames: env.hosts.map((h) => h.name),
    siteNames,
    hostSite,
    memCap,
    cpuCap,
    destination,
    vmMem,
    vmCpu,
    movable: Uint8Array.from(vms, (v) => (v.pinned ? 0 : 1)),
    origin,
    endpointSite,
    msgCoef,
    byteCoef,
    hostFixed,
    hostPerCpu,
    hostPerGiB,
    hostOpen,
    migSecPerKiB,
    migCostPerKiB,
    windowFrac,
    horizonSeconds,
  };
  if (!rules.length) return p;
  return { ...p, rules: compileRules(rules, g.names.slice(0, g.vmCount), p.hostNames, hostSite, siteNames, penaltyFor(p)) };
}

/** Memory (KiB) and vCPUs each site's destination hosts offer, by site index. */
export function siteRoom(p: Problem): { mem: Float64Array; cpu: Float64Array } {
  const mem = new Float64Array(p.nSite);
  const cpu = new Float64Array(p.nSite);
  for (let h = 0; h < p.nHost; h++) {
    if (!p.destination[h]) continue;
    mem[p.hostSite[h]!]! += p.memCap[h]!;
    cpu[p.hostSite[h]!]! += p.cpuCap[h]!;
  }
  return { mem, cpu };
}

/** Between every two sites (index s*S+t, sites in the environment's order): latency (s), bits/s (a site's LAN inside it), price per byte. */
export function siteLinks(env: Environment): { latency: Float64Array; bps: Float64Array; pricePerByte: Float64Array } {
  const S = env.sites.length;
  const siteIndex = new Map(env.sites.map((s, i) => [s.name, i] as const));
  const latency = new Float64Array(S * S);
  const bps = new Float64Array(S * S);
  const pricePerByte = new Float64Array(S * S);
  env.sites.forEach((s, i) => (bps[i * S + i] = s.lanMbit * 1e6));
  for (const l of env.links) {
    const a = siteIndex.get(l.sites[0])!;
    const b = siteIndex.get(l.sites[1])!;
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      latency[x * S + y] = l.latencyMs / 1000;
      bps[x * S + y] = l.bandwidthMbit * 1e6;
      pricePerByte[x * S + y] = l.transferPricePerGB / 1e9;
    }
  }
  return { latency, bps, pricePerByte };
}
