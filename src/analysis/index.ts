import { cohesiveGroups, type CohesiveOptions, type GroupTree } from './cohesive.js';
import type { TrafficGraph, TrafficMeasure } from './graph.js';
import { groupsFromLabels, type Group, type GroupSplit } from './groups.js';
import { seedGreedy, type SeedGreedyOptions } from './greedy.js';
import { louvainGroups, type Capacity } from './refine.js';

export { buildGraph, type PairTraffic, type TrafficGraph, type TrafficMeasure } from './graph.js';
export type { Group, GroupSplit } from './groups.js';
export type { Capacity } from './refine.js';
export { checkCohesive, COHESIVE_DEFAULTS, type CohesiveOptions } from './cohesive.js';

export const GROUP_METHODS = ['cohesive', 'louvain', 'seed'] as const;
export type GroupMethod = (typeof GROUP_METHODS)[number];

export interface DetectOptions {
  method: GroupMethod;
  measure: TrafficMeasure;
  /** Seed only: see SeedGreedyOptions. */
  factor?: SeedGreedyOptions['factor'];
  splitPair?: SeedGreedyOptions['splitPair'];
  /** Louvain only: per-VM demand (index = VM node) and the largest host; without them no split. */
  demand?: readonly Capacity[];
  hostLimit?: Capacity;
  /** Cohesive only: the criterion's settings, and how many levels of splits to give each group (default 1). */
  cohesive?: CohesiveOptions;
  /**
   * The least traffic (bytes/s, inside the group) that makes a group of two or
   * more significant, given its members; without it every group is.
   */
  floor?: (members: readonly string[]) => number;
}

/**
 * The significance floor "relative to what moving would save": a group is
 * worth keeping together when its traffic inside, over the payback horizon,
 * is at least the memory of its smallest member, what the cheapest move that
 * could bring it together sends. `minBytes` (bytes/s) replaces it when given.
 */
export function paybackFloor(memoryKiB: ReadonlyMap<string, number>, horizonSeconds: number, minBytes?: number): (members: readonly string[]) => number {
  if (minBytes !== undefined) return () => minBytes;
  return (members) => (Math.min(...members.map((m) => memoryKiB.get(m) ?? 0)) * 1024) / horizonSeconds;
}

/** `virt-cohort groups`: the communication groups of the VMs in `g`, with their traffic. */
export function detectGroups(g: TrafficGraph, opts: DetectOptions): Group[] {
  const trees = opts.method === 'cohesive' ? cohesiveGroups(g, opts.measure, opts.cohesive) : undefined;
  const labels = trees ? treeLabels(g.vmCount, trees) : detectLabels(g, opts);
  const groups = groupsFromLabels(g, labels, opts.measure);
  const bytes = opts.measure === 'bytes' ? groups : groupsFromLabels(g, labels, 'bytes');
  const inBytes = new Map(bytes.map((x) => [x.members[0]!, x.internal]));
  for (const grp of groups) {
    const tree = trees?.[labels[g.index.get(grp.members[0]!)!]!];
    if (tree?.split) grp.split = splitOf(g, tree);
    grp.significant = grp.members.length > 1 && (!opts.floor || inBytes.get(grp.members[0]!)! >= opts.floor(grp.members));
  }
  return groups;
}

/** The tree below a group, by VM name. */
function splitOf(g: TrafficGraph, t: GroupTree): GroupSplit | undefined {
  if (!t.split) return undefined;
  const [a, b] = t.split.parts;
  const part = (p: GroupTree) => ({ members: p.nodes.map((v) => g.names[v]!).sort(), internal: p.internal, ...(p.split && { split: splitOf(g, p) }) });
  return { cut: t.split.cut, share: t.split.share, boundary: t.split.boundary, parts: [part(a), part(b)] };
}

function treeLabels(n: number, trees: readonly GroupTree[]): Int32Array {
  const labels = new Int32Array(n);
  trees.forEach((t, i) => {
    for (const v of t.nodes) labels[v] = i;
  });
  return labels;
}

export function detectLabels(g: TrafficGraph, opts: DetectOptions): Int32Array {
  if (opts.method === 'cohesive') return treeLabels(g.vmCount, cohesiveGroups(g, opts.measure, { ...opts.cohesive, depth: 0 }));
  if (opts.method === 'seed') {
    return seedGreedy(g, { measure: opts.measure, ...(opts.factor !== undefined && { factor: opts.factor }), ...(opts.splitPair && { splitPair: opts.splitPair }) });
  }
  const unlimited: Capacity = { memoryKiB: Infinity, vcpus: Infinity };
  const demand = opts.demand ?? Array.from({ length: g.vmCount }, () => ({ memoryKiB: 0, vcpus: 0 }));
  return louvainGroups(g, opts.measure, demand, opts.hostLimit ?? unlimited);
}
