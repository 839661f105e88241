import { buildGraph, type PairTraffic, type TrafficMeasure } from '../analysis/graph.js';
import { UserError } from '../util/errors.js';
import type { Environment } from './env.js';
import type { VmInfo } from './live.js';
import { optimise } from './optimise.js';
import { peersFor } from './patterns.js';
import { brokenBy } from './constraints.js';
import { buildProblem, UNITS, type Objective } from './problem.js';
import type { Rule } from './rules.js';
import type { Score } from './state.js';

export interface NewVm {
  name: string;
  memoryKiB: number;
  vcpus: number;
}

export interface ClusterSpec {
  vms: readonly NewVm[];
  /** Expected pattern as in the lab (idle, pairs, ring, groups:K, all, peers:...); VM i is the i-th listed. */
  pattern?: string;
  /** Or the traffic itself, e.g. measured on an earlier run; wins over `pattern`. */
  traffic?: readonly PairTraffic[];
  /** Per-peer rate assumed for a pattern. Default 100 messages/s of 1000 bytes. */
  messagesPerSecond?: number;
  bytesPerMessage?: number;
}

export interface InitialPlacement {
  objective: Objective;
  unit: string;
  assignment: { vm: string; host: string; site: string }[];
  score: Score;
  method: string;
  /** Soft rules (prefer, together) the placement could not keep, in words. */
  broken: string[];
}

export interface PlaceOptions {
  objective: Objective;
  /** How long the cluster is expected to run: weighs availability windows. Default 3600 s. */
  horizonSeconds?: number;
  now?: number;
  measure?: TrafficMeasure;
  /** The operator's rules: a placement that breaks a must or apart rule is refused, naming it. */
  rules?: readonly Rule[];
}

/**
 * `virt-cohort place`: hosts for a new virtual cluster (the seed's application manager). VMs
 * already running (`existing`) keep their hosts and use up capacity. The expected pattern gives
 * the traffic the groups are built from; with no pattern only hosting (price, speed, consolidation)
 * decides.
 */
export function placeCluster(spec: ClusterSpec, env: Environment, opts: PlaceOptions, existing: readonly VmInfo[] = []): InitialPlacement {
  if (spec.vms.length === 0) throw new UserError('the cluster lists no VMs: add at least one under "vms"');
  const names = new Set(existing.map((v) => v.name));
  for (const v of spec.vms) {
    if (names.has(v.name)) throw new UserError(`VM ${v.name} already exists (or is listed twice): give each new VM a unique name`);
    if (!(v.memoryKiB > 0) || !(v.vcpus > 0)) throw new UserError(`VM ${v.name} needs memory and vcpus above 0`);
    names.add(v.name);
  }
  const traffic = spec.traffic ?? patternTraffic(spec);
  const all = [...spec.vms.map((v) => ({ ...v, host: undefined, pinned: false })), ...existing.map((v) => ({ ...v, pinned: true }))];
  const g = buildGraph(
    traffic,
    all.map((v) => v.name),
  );
  const p = buildProblem(g, all, env, opts.objective, opts.horizonSeconds ?? 3600, opts.now ?? Date.now(), opts.rules ?? []);
  checkRoom(spec.vms, p.memCap, p.cpuCap, p.destination, existing);
  const best = optimise(p, opts.measure ?? 'bytes');
  const n = spec.vms.length;
  if (best.placement.host.subarray(0, n).some((h) => h < 0)) {
    throw new UserError(
      p.rules
        ? 'no placement both fits host by host and keeps every must and apart rule: free a host, add one, or relax a rule (virt-cohort rules lists them)'
        : 'the cluster fits in total capacity but not host by host (a VM is larger than any free host): use smaller VMs or free a host',
    );
  }
  const host = best.placement.host;
  const hard = spec.vms.flatMap((_, v) => brokenBy(p, v, host[v]!, host, { hardOnly: true, pairsOnce: true }).map((w) => `${spec.vms[v]!.name} on ${p.hostNames[host[v]!]}: ${w}`));
  if (hard.length) throw new UserError(`no placement keeps every rule: ${hard.join('; ')}: free or add hosts, or relax the rule`);
  const broken = spec.vms.flatMap((_, v) => brokenBy(p, v, host[v]!, host, { pairsOnce: true }).map((w) => `${spec.vms[v]!.name} on ${p.hostNames[host[v]!]}: ${w}`));
  return {
    objective: opts.objective,
    unit: UNITS[opts.objective],
    assignment: spec.vms.map((v, i) => {
      const h = best.placement.host[i]!;
      return { vm: v.name, host: p.hostNames[h]!, site: p.siteNames[p.hostSite[h]!]! };
    }),
    score: best.score,
    method: best.name,
    broken,
  };
}

function patternTraffic(spec: ClusterSpec): PairTraffic[] {
  if (!spec.pattern) return [];
  const rate = spec.messagesPerSecond ?? 100;
  const size = spec.bytesPerMessage ?? 1000;
  const n = spec.vms.length;
  const out: PairTraffic[] = [];
  for (let i = 1; i <= n; i++) {
    for (const j of peersFor(spec.pattern, i, n)) {
      if (j <= n) out.push({ src: spec.vms[i - 1]!.name, dst: spec.vms[j - 1]!.name, messages: rate, bytes: rate * size });
    }
  }
  return out;
}

function checkRoom(vms: readonly NewVm[], memCap: Float64Array, cpuCap: Float64Array, dest: Uint8Array, existing: readonly VmInfo[]): void {
  let mem = 0;
  let cpu = 0;
  memCap.forEach((m, h) => {
    if (dest[h]) {
      mem += m;
      cpu += cpuCap[h]!;
    }
  });
  for (const v of existing) {
    mem -= v.memoryKiB;
    cpu -= v.vcpus;
  }
  const needMem = vms.reduce((a, v) => a + v.memoryKiB, 0);
  const needCpu = vms.reduce((a, v) => a + v.vcpus, 0);
  if (needMem > mem || needCpu > cpu) {
    const gib = (k: number) => (k / 1048576).toFixed(1);
    throw new UserError(
      `the cluster needs ${gib(needMem)} GiB and ${needCpu} vCPUs but the available hosts have ${gib(Math.max(0, mem))} GiB and ${Math.max(0, cpu)} vCPUs free: remove VMs, shrink them, add hosts${needCpu > cpu ? ', or raise cpuOvercommit' : ''}${needMem > mem ? ', or keep less memory free per host (reserveMemoryMiB, --reserve-memory)' : ''}`,
    );
  }
}
