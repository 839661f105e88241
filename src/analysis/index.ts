import type { TrafficGraph, TrafficMeasure } from './graph.js';
import { groupsFromLabels, type Group } from './groups.js';
import { seedGreedy, type SeedGreedyOptions } from './greedy.js';
import { louvainGroups, type Capacity } from './refine.js';

export { buildGraph, type PairTraffic, type TrafficGraph, type TrafficMeasure } from './graph.js';
export type { Group } from './groups.js';
export type { Capacity } from './refine.js';

export type GroupMethod = 'seed' | 'louvain';

export interface DetectOptions {
  method: GroupMethod;
  measure: TrafficMeasure;
  /** Seed only: see SeedGreedyOptions. */
  factor?: SeedGreedyOptions['factor'];
  splitPair?: SeedGreedyOptions['splitPair'];
  /** Louvain only: per-VM demand (index = VM node) and the largest host; without them no split. */
  demand?: readonly Capacity[];
  hostLimit?: Capacity;
}

/** `virt-cohort groups`: the communication groups of the VMs in `g`, with their traffic. */
export function detectGroups(g: TrafficGraph, opts: DetectOptions): Group[] {
  return groupsFromLabels(g, detectLabels(g, opts), opts.measure);
}

export function detectLabels(g: TrafficGraph, opts: DetectOptions): Int32Array {
  if (opts.method === 'seed') {
    return seedGreedy(g, { measure: opts.measure, ...(opts.factor !== undefined && { factor: opts.factor }), ...(opts.splitPair && { splitPair: opts.splitPair }) });
  }
  const unlimited: Capacity = { memoryKiB: Infinity, vcpus: Infinity };
  const demand = opts.demand ?? Array.from({ length: g.vmCount }, () => ({ memoryKiB: 0, vcpus: 0 }));
  return louvainGroups(g, opts.measure, demand, opts.hostLimit ?? unlimited);
}
