import { edgeWeights, slotWeights, type TrafficGraph, type TrafficMeasure } from './graph.js';
import { louvain, type Csr } from './louvain.js';

/** What one VM needs and what one place (a host, or a site) can hold. */
export interface Capacity {
  memoryKiB: number;
  vcpus: number;
}

/**
 * The VM-only sub-graph on the chosen measure. Fixed endpoints are left out on purpose: a file
 * server shared by every group is a hub that would glue all groups into one community, while
 * its pull is a placement question (be near it), handled by the placement objective.
 */
export function vmCsr(g: TrafficGraph, measure: TrafficMeasure, keep?: Int32Array): Csr {
  const w = slotWeights(g, measure);
  const nodes = keep ?? Int32Array.from({ length: g.vmCount }, (_, i) => i);
  const local = new Int32Array(g.names.length).fill(-1);
  nodes.forEach((v, i) => (local[v] = i));
  const offsets = new Int32Array(nodes.length + 1);
  let cap = 0;
  for (const v of nodes) cap += g.offsets[v + 1]! - g.offsets[v]!;
  const targets = new Int32Array(cap);
  const weights = new Float64Array(cap);
  let k = 0;
  for (let i = 0; i < nodes.length; i++) {
    const v = nodes[i]!;
    for (let s = g.offsets[v]!; s < g.offsets[v + 1]!; s++) {
      const u = local[g.neighbours[s]!]!;
      const x = w[s]!;
      if (u >= 0 && x > 0) {
        targets[k] = u;
        weights[k++] = x;
      }
    }
    offsets[i + 1] = k;
  }
  return { n: nodes.length, offsets, targets: targets.subarray(0, k), weights: weights.subarray(0, k) };
}

/** Louvain communities of the VMs, then split until each fits `limit` (see refineUnderCapacity). */
export function louvainGroups(g: TrafficGraph, measure: TrafficMeasure, demand: readonly Capacity[], limit: Capacity): Int32Array {
  return refineUnderCapacity(g, measure, louvain(vmCsr(g, measure)), demand, limit);
}

/**
 * Splits every community whose memory or vCPUs exceed `limit` (the largest host, so that a group
 * can move as one): first by Louvain at doubled resolution on the community's own sub-graph,
 * which finds its natural seams; where there are none (a clique, all-to-all) by growing parts
 * greedily from the heaviest VM, always adding the outside VM most connected to the part.
 * A single VM larger than the limit stays alone; placement will report that it fits nowhere.
 */
export function refineUnderCapacity(g: TrafficGraph, measure: TrafficMeasure, labels: Int32Array, demand: readonly Capacity[], limit: Capacity): Int32Array {
  const out = new Int32Array(labels.length);
  let next = 0;
  const queue: { nodes: Int32Array; resolution: number }[] = bucket(labels).map((nodes) => ({ nodes, resolution: 1 }));
  while (queue.length > 0) {
    const { nodes, resolution } = queue.pop()!;
    if (fits(nodes, demand, limit) || nodes.length === 1) {
      for (const v of nodes) out[v] = next;
      next++;
      continue;
    }
    const parts = resolution <= 64 ? bucket(louvain(vmCsr(g, measure, nodes), { resolution: resolution * 2 })).map((p) => p.map((i) => nodes[i]!)) : [];
    const split = parts.length > 1 ? parts : greedyParts(g, measure, nodes, demand, limit);
    for (const p of split) queue.push({ nodes: p, resolution: parts.length > 1 ? resolution * 2 : Infinity });
  }
  return out;
}

function fits(nodes: Int32Array, demand: readonly Capacity[], limit: Capacity): boolean {
  let mem = 0;
  let cpu = 0;
  for (const v of nodes) {
    mem += demand[v]!.memoryKiB;
    cpu += demand[v]!.vcpus;
  }
  return mem <= limit.memoryKiB && cpu <= limit.vcpus;
}

function bucket(labels: Int32Array): Int32Array[] {
  const by = new Map<number, number[]>();
  labels.forEach((l, v) => {
    const list = by.get(l);
    if (list) list.push(v);
    else by.set(l, [v]);
  });
  return [...by.values()].map((l) => Int32Array.from(l));
}

function greedyParts(g: TrafficGraph, measure: TrafficMeasure, nodes: Int32Array, demand: readonly Capacity[], limit: Capacity): Int32Array[] {
  const w = edgeWeights(g, measure);
  const inSet = new Map<number, boolean>();
  for (const v of nodes) inSet.set(v, false);
  const parts: Int32Array[] = [];
  const link = new Map<number, number>();
  let left = nodes.length;
  while (left > 0) {
    // Start from the remaining VM with the most memory: big items first packs tighter.
    let seed = -1;
    for (const v of nodes) if (!inSet.get(v) && (seed < 0 || demand[v]!.memoryKiB > demand[seed]!.memoryKiB)) seed = v;
    const part: number[] = [];
    let mem = 0;
    let cpu = 0;
    link.clear();
    let cur = seed;
    while (cur >= 0) {
      part.push(cur);
      inSet.set(cur, true);
      left--;
      mem += demand[cur]!.memoryKiB;
      cpu += demand[cur]!.vcpus;
      link.delete(cur);
      for (let s = g.offsets[cur]!; s < g.offsets[cur + 1]!; s++) {
        const u = g.neighbours[s]!;
        if (inSet.get(u) === false) link.set(u, (link.get(u) ?? 0) + w[g.slotEdge[s]!]!);
      }
      cur = -1;
      let best = -1;
      for (const [u, x] of link) {
        if (x > best && mem + demand[u]!.memoryKiB <= limit.memoryKiB && cpu + demand[u]!.vcpus <= limit.vcpus) {
          best = x;
          cur = u;
        }
      }
      if (cur < 0) {
        // Nothing connected fits any more: top the part up with unconnected VMs that still fit.
        for (const v of nodes) {
          if (!inSet.get(v) && mem + demand[v]!.memoryKiB <= limit.memoryKiB && cpu + demand[v]!.vcpus <= limit.vcpus) {
            cur = v;
            break;
          }
        }
      }
    }
    parts.push(Int32Array.from(part));
  }
  return parts;
}
