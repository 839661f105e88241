import { edgeWeights, type TrafficGraph, type TrafficMeasure } from './graph.js';

/** A communication group as shown to users: its VMs and the traffic that holds it together. */
export interface Group {
  members: string[];
  /** Traffic (per second, in the measure asked) between members of this group. */
  internal: number;
  /** Traffic between members and anything outside the group, fixed endpoints included. */
  external: number;
  /** Two or more VMs whose traffic inside is above the significance floor (see detectGroups). */
  significant?: boolean;
  /** The cheapest split of the group (cohesive method), and recursively of its parts. */
  split?: GroupSplit;
}

export interface GroupSplit {
  /** Traffic between the two parts, in the group's measure. */
  cut: number;
  /** cut / the group's internal traffic: what splitting it would cost. */
  share: number;
  /** The cut over the boundary VMs' traffic: below the criterion, the parts would be groups of their own. */
  boundary: number;
  parts: [GroupPart, GroupPart];
}

export interface GroupPart {
  members: string[];
  internal: number;
  split?: GroupSplit;
}

/** Turns per-VM labels (any integers) into groups, largest internal traffic first, then by first member's name. */
export function groupsFromLabels(g: TrafficGraph, labels: Int32Array, measure: TrafficMeasure): Group[] {
  const w = edgeWeights(g, measure);
  const byLabel = new Map<number, number>();
  const out: Group[] = [];
  const slot = new Int32Array(g.vmCount);
  for (let v = 0; v < g.vmCount; v++) {
    let k = byLabel.get(labels[v]!);
    if (k === undefined) {
      k = out.length;
      byLabel.set(labels[v]!, k);
      out.push({ members: [], internal: 0, external: 0 });
    }
    slot[v] = k;
    out[k]!.members.push(g.names[v]!);
  }
  for (let e = 0; e < g.edgeA.length; e++) {
    const a = g.edgeA[e]!;
    const b = g.edgeB[e]!;
    const ga = slot[a]!;
    if (b < g.vmCount && slot[b] === ga) out[ga]!.internal += w[e]!;
    else {
      out[ga]!.external += w[e]!;
      if (b < g.vmCount) out[slot[b]!]!.external += w[e]!;
    }
  }
  for (const grp of out) grp.members.sort();
  return out.sort((x, y) => y.internal - x.internal || y.members.length - x.members.length || cmp(x.members[0]!, y.members[0]!));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Labels 0..k-1 in order of first appearance, so two labelings can be compared as partitions. */
export function normalise(labels: Int32Array): Int32Array {
  const map = new Map<number, number>();
  return labels.map((l) => {
    let k = map.get(l);
    if (k === undefined) map.set(l, (k = map.size));
    return k;
  });
}
