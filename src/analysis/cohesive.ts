import { UserError } from '../util/errors.js';
import { slotWeights, type TrafficGraph, type TrafficMeasure } from './graph.js';
import { louvain, type Csr } from './louvain.js';

/**
 * Cohesive groups: sets of VMs that should not be split, each with the
 * cheapest way to split it anyway (a dendrogram), and the share of its
 * traffic that split would cut.
 *
 * The criterion is a conductance measured at the boundary. For a split of a
 * set into A and B, the boundary VMs are those with traffic across it, and
 *
 *     boundary share = traffic across / √(traffic of A's boundary VMs × of B's)
 *
 * (each VM's whole traffic with the VMs being grouped). The geometric mean keeps it
 * symmetric, and lets neither side's view dominate: a hub (a master, a
 * database) whose traffic is spread over several groups cannot glue them
 * together, while a VM whose only traffic goes to a hub of k such VMs scores
 * 1/√k and stays with it (up to k = 100). A set is two groups only if
 * its best split has a boundary share below `maxCut` (default 0.1): the VMs
 * on the cut keep at least 90 % of their traffic on their own side. Plain
 * conductance (over all of A's traffic) falls as a ring or a torus grows, so
 * it would split any large regular structure; at the boundary, a ring or a
 * chain scores 0.5 at every size, a 2-D torus 0.25, a 3-D torus 1/6, a
 * hypercube of dimension d 1/d (one group up to 512 VMs), an all-to-all about
 * 0.5, while two blocks joined by weak links, ladders cut along weak rungs and
 * farms that share only a master score their weak links' share.
 *
 * How the best split is found (it is a heuristic, as any graph partitioning):
 * 1. Noise: an edge below `noise` (default 0.05) times the strongest edge of
 *    either end is left out of the structure (it still counts as external
 *    traffic): a few stray packets must not glue groups together.
 * 2. Weak links: edges below `weak` (0.25) times the strongest edge of either
 *    end are set aside, and Louvain runs on what remains. Its communities are
 *    the units: none straddles a weak link, so a ladder is never cut across
 *    its chains when its rungs are weak.
 * 3. Units are merged, strongest boundary first, while the boundary share
 *    between two adjacent ones is at least `maxCut`, with weak links counted
 *    again. What cannot merge is a group; the last merge is its best split.
 * 4. Below the units, the same merging over Louvain at a finer resolution
 *    gives the rest of the tree.
 */
export interface CohesiveOptions {
  /** A set splits only where its boundary share is below this (0 < maxCut < 1). */
  maxCut?: number;
  /** Edges below this share of either end's strongest edge are noise (0 <= noise < 1). */
  noise?: number;
  /** Edges below this share of either end's strongest edge start as cuts (noise <= weak < 1). */
  weak?: number;
  /** Levels of splits computed below each group: 1 for its best split only, Infinity for the whole tree. */
  depth?: number;
}

export const COHESIVE_DEFAULTS = { maxCut: 0.1, noise: 0.05, weak: 0.25 } as const;

/** Refuses settings outside their range, saying which range. */
export function checkCohesive(o: CohesiveOptions): void {
  const { maxCut, noise, weak } = { ...COHESIVE_DEFAULTS, ...o };
  if (!(maxCut > 0 && maxCut < 1)) throw new UserError(`the split criterion (--max-cut) is ${maxCut}: give a share above 0 and below 1 (default ${COHESIVE_DEFAULTS.maxCut})`);
  if (!(noise >= 0 && noise < 1)) throw new UserError(`the noise level (--noise) is ${noise}: give a share from 0 up to below 1 (default ${COHESIVE_DEFAULTS.noise})`);
  if (!(weak >= noise && weak < 1)) throw new UserError(`the weak-link level is ${weak}: give a share from the noise level (${noise}) up to below 1 (default ${COHESIVE_DEFAULTS.weak})`);
}

/** A node of the dendrogram: VM node ids, the traffic among them, and its best split. */
export interface GroupTree {
  nodes: number[];
  internal: number;
  split?: Split;
}

export interface Split {
  /** Traffic between the two parts. */
  cut: number;
  /** cut / the set's internal traffic. */
  share: number;
  /** The boundary share (see above): below maxCut, the parts are groups of their own. */
  boundary: number;
  parts: [GroupTree, GroupTree];
}

export function cohesiveGroups(g: TrafficGraph, measure: TrafficMeasure, opts: CohesiveOptions = {}): GroupTree[] {
  return detect(g, measure, opts).trees;
}

/** The groups, and the graph without noise that their trees are cut on. */
function detect(g: TrafficGraph, measure: TrafficMeasure, opts: CohesiveOptions): { trees: GroupTree[]; denoised: Csr } {
  checkCohesive(opts);
  const { maxCut, noise, weak } = { ...COHESIVE_DEFAULTS, ...opts };
  const depth = opts.depth ?? 1;
  const { denoised, strong } = levels(g, slotWeights(g, measure), noise, weak);
  const units = louvain(strong);
  const trees = merge(denoised, bucket(units), maxCut);
  for (const t of trees) expand(denoised, t, depth);
  trees.sort((a, b) => b.internal - a.internal || b.nodes.length - a.nodes.length || a.nodes[0]! - b.nodes[0]!);
  return { trees, denoised };
}

/** Splits a tree node (in place) down to `depth` levels, where its merges did not already. */
function expand(csr: Csr, t: GroupTree, depth: number): void {
  if (depth <= 0 || t.nodes.length < 2) return;
  if (!t.split) {
    const sub = bisect(csr, t.nodes);
    if (sub) t.split = sub;
  }
  if (t.split) for (const p of t.split.parts) expand(csr, p, depth - 1);
}

/** The best split of a unit: Louvain at finer resolutions until it finds parts, merged down to two. */
function bisect(csr: Csr, nodes: number[]): Split | undefined {
  let parts: number[][] = [];
  const local = subgraph(csr, nodes);
  for (let resolution = 2; resolution <= 256 && parts.length < 2; resolution *= 2) {
    parts = bucket(louvain(local, { resolution })).map((p) => p.map((i) => nodes[i]!));
  }
  // No seam at any resolution (two VMs, or VMs with no traffic): one VM against the rest.
  if (parts.length < 2) parts = [nodes.slice(0, 1), nodes.slice(1)];
  const [root] = merge(csr, parts, -Infinity);
  return root?.split;
}

/**
 * Merges the sets `parts` (VM node lists), the pair with the highest boundary
 * share first, while it is at least `maxCut`; each round merges a matching.
 * Returns the resulting trees.
 */
function merge(csr: Csr, parts: number[][], maxCut: number): GroupTree[] {
  const group = new Int32Array(csr.n).fill(-1);
  let trees: GroupTree[] = parts.map((nodes) => ({ nodes, internal: 0 }));
  for (;;) {
    trees.forEach((t, i) => {
      for (const v of t.nodes) group[v] = i;
    });
    const G = trees.length;
    const internal = new Float64Array(G);
    // Per ordered pair (A, B) of adjacent sets: traffic from A's VMs to B, and those VMs' traffic within A ∪ B.
    const cut = new Map<number, number>();
    const vol = new Map<number, number>();
    const acc = new Float64Array(G);
    const touched: number[] = [];
    for (let a = 0; a < G; a++) {
      for (const v of trees[a]!.nodes) {
        for (let s = csr.offsets[v]!; s < csr.offsets[v + 1]!; s++) {
          const b = group[csr.targets[s]!]!;
          if (b < 0) continue;
          if (acc[b] === 0) touched.push(b);
          acc[b]! += csr.weights[s]!;
        }
        const own = acc[a]!;
        internal[a]! += own / 2;
        let all = 0;
        for (const b of touched) all += acc[b]!;
        for (const b of touched) {
          if (b !== a) {
            const k = a * G + b;
            cut.set(k, (cut.get(k) ?? 0) + acc[b]!);
            vol.set(k, (vol.get(k) ?? 0) + all);
          }
          acc[b] = 0;
        }
        touched.length = 0;
      }
    }
    trees.forEach((t, i) => (t.internal = internal[i]!));
    const pairs: { a: number; b: number; cut: number; boundary: number }[] = [];
    for (const [k, c] of cut) {
      const a = Math.floor(k / G);
      const b = k % G;
      if (a > b) continue;
      const boundary = c / Math.sqrt(vol.get(k)! * vol.get(b * G + a)!);
      if (boundary >= maxCut) pairs.push({ a, b, cut: c, boundary });
    }
    // Sets with no traffic between them join only when everything must (a dendrogram's root).
    if (maxCut === -Infinity && !pairs.length && G > 1) pairs.push({ a: 0, b: 1, cut: 0, boundary: 0 });
    if (!pairs.length) return trees;
    pairs.sort((x, y) => y.boundary - x.boundary || x.a - y.a || x.b - y.b);
    const used = new Uint8Array(G);
    const next: GroupTree[] = [];
    for (const p of pairs) {
      if (used[p.a] || used[p.b]) continue;
      used[p.a] = used[p.b] = 1;
      const [A, B] = [trees[p.a]!, trees[p.b]!];
      const sum = A.internal + B.internal + p.cut;
      next.push({ nodes: [...A.nodes, ...B.nodes], internal: sum, split: { cut: p.cut, share: sum > 0 ? p.cut / sum : 0, boundary: p.boundary, parts: [A, B] } });
    }
    trees.forEach((t, i) => {
      if (!used[i]) next.push(t);
    });
    trees = next;
  }
}

/**
 * The VM-only graph without its noise, and without its weak links too, in one
 * pass over the traffic graph's slots: an edge is compared with the strongest
 * edge at either end. Fixed endpoints (a file server every group talks to)
 * and self-traffic are left out, as in refine.ts's vmCsr.
 */
function levels(g: TrafficGraph, w: Float64Array, noise: number, weak: number): { denoised: Csr; strong: Csr } {
  const n = g.vmCount;
  const strongest = new Float64Array(n);
  for (let v = 0; v < n; v++) {
    for (let s = g.offsets[v]!; s < g.offsets[v + 1]!; s++) if (g.neighbours[s]! < n && w[s]! > strongest[v]!) strongest[v] = w[s]!;
  }
  const m = g.offsets[n]!;
  const dOff = new Int32Array(n + 1);
  const dTo = new Int32Array(m);
  const dW = new Float64Array(m);
  const sOff = new Int32Array(n + 1);
  const sTo = new Int32Array(m);
  const sW = new Float64Array(m);
  let d = 0;
  let k = 0;
  for (let v = 0; v < n; v++) {
    const sv = strongest[v]!;
    for (let s = g.offsets[v]!; s < g.offsets[v + 1]!; s++) {
      const u = g.neighbours[s]!;
      const x = w[s]!;
      if (u >= n || u === v || !(x > 0)) continue;
      const top = sv > strongest[u]! ? sv : strongest[u]!;
      if (x < noise * top) continue;
      dTo[d] = u;
      dW[d++] = x;
      if (x < weak * top) continue;
      sTo[k] = u;
      sW[k++] = x;
    }
    dOff[v + 1] = d;
    sOff[v + 1] = k;
  }
  return {
    denoised: { n, offsets: dOff, targets: dTo.subarray(0, d), weights: dW.subarray(0, d) },
    strong: { n, offsets: sOff, targets: sTo.subarray(0, k), weights: sW.subarray(0, k) },
  };
}

function subgraph(csr: Csr, nodes: number[]): Csr {
  const local = new Map(nodes.map((v, i) => [v, i]));
  const offsets = new Int32Array(nodes.length + 1);
  const targets: number[] = [];
  const weights: number[] = [];
  nodes.forEach((v, i) => {
    for (let s = csr.offsets[v]!; s < csr.offsets[v + 1]!; s++) {
      const u = local.get(csr.targets[s]!);
      if (u === undefined) continue;
      targets.push(u);
      weights.push(csr.weights[s]!);
    }
    offsets[i + 1] = targets.length;
  });
  return { n: nodes.length, offsets, targets: Int32Array.from(targets), weights: Float64Array.from(weights) };
}

function bucket(labels: Int32Array): number[][] {
  const by = new Map<number, number[]>();
  labels.forEach((l, v) => {
    const list = by.get(l);
    if (list) list.push(v);
    else by.set(l, [v]);
  });
  return [...by.values()];
}

/**
 * Labels per VM node (the planner's groups): each group as one label, split
 * along its tree, cheapest split first, until `fits` says its part fits;
 * `split` says whether capacity forced any split.
 */
export function cohesiveLabels(g: TrafficGraph, measure: TrafficMeasure, fits: (nodes: number[]) => boolean = () => true, opts: CohesiveOptions = {}): { labels: Int32Array; split: boolean } {
  const { trees, denoised: csr } = detect(g, measure, { ...opts, depth: 0 });
  const labels = new Int32Array(g.vmCount).fill(-1);
  let next = 0;
  let split = false;
  const stack = [...trees];
  while (stack.length) {
    const t = stack.pop()!;
    const big = t.nodes.length > 1 && !fits(t.nodes);
    if (big) expand(csr, t, 1);
    if (big && t.split) {
      split = true;
      stack.push(...t.split.parts);
    } else {
      for (const v of t.nodes) labels[v] = next;
      next++;
    }
  }
  for (let v = 0; v < labels.length; v++) if (labels[v]! < 0) labels[v] = next++;
  return { labels, split };
}
