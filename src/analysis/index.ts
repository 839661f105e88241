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

export interface Traffic {
  messages: number;
  bytes: number;
}

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
   * Whether a group of two or more, with this traffic inside (per second), is
   * worth keeping together (see placement/significance.ts); without it every group is.
   */
  significant?: (members: readonly string[], inside: Traffic) => boolean;
  /** Groups found not significant are returned as their VMs, each alone. */
  dissolve?: boolean;
}

/** `virt-cohort groups`: the communication groups of the VMs in `g`, with their traffic. */
export function detectGroups(g: TrafficGraph, opts: DetectOptions): Group[] {
  const trees = opts.method === 'cohesive' ? cohesiveGroups(g, opts.measure, opts.cohesive) : undefined;
  const labels = trees ? treeLabels(g.vmCount, trees) : detectLabels(g, opts);
  const groups = groupsFromLabels(g, labels, opts.measure);
  const other = new Map(groupsFromLabels(g, labels, opts.measure === 'bytes' ? 'messages' : 'bytes').map((x) => [x.members[0]!, x.internal]));
  for (const grp of groups) {
    const tree = trees?.[labels[g.index.get(grp.members[0]!)!]!];
    if (tree?.split) grp.split = splitOf(g, tree);
    const o = other.get(grp.members[0]!)!;
    const inside = opts.measure === 'bytes' ? { bytes: grp.internal, messages: o } : { bytes: o, messages: grp.internal };
    grp.significant = grp.members.length > 1 && (!opts.significant || opts.significant(grp.members, inside));
  }
  if (!opts.dissolve || groups.every((grp) => grp.significant || grp.members.length === 1)) return groups;
  let next = g.vmCount;
  for (const grp of groups) if (!grp.significant) for (const m of grp.members) labels[g.index.get(m)!] = next++;
  return groupsFromLabels(g, labels, opts.measure).map((grp) => {
    const was = groups.find((x) => x.members.includes(grp.members[0]!))!;
    return grp.members.length > 1 ? { ...grp, significant: true, ...(was.split && { split: was.split }) } : { ...grp, significant: false };
  });
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
