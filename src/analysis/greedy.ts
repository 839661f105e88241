import { edgeWeights, slotWeights, type TrafficGraph, type TrafficMeasure } from './graph.js';

export interface SeedGreedyOptions {
  measure: TrafficMeasure;
  /**
   * threshold = factor x (mean traffic over the group's pairs that exchange anything).
   * Default 0.5: the seed only says "computed from the mean". With 1.0 a ring or a stencil, whose
   * pairs are nearly equal, breaks apart on measurement noise; 0.5 keeps a VM that talks at least
   * half as much as the group's typical pair, and still keeps out the weak cross-group links of
   * the seed's cg.A.8 and lu.A.8 traces.
   */
  factor?: number;
  /**
   * A pair whose two VMs already sit in different groups (the seed is silent). 'merge' (default):
   * the groups merge when the pair reaches both groups' thresholds, i.e. the link is as strong as
   * what holds each of them together; without this a VM left alone early on (threshold 0) could
   * never rejoin the group it obviously belongs to. 'ignore' is the literal reading.
   */
  splitPair?: 'merge' | 'ignore';
}

/**
 * The seed report's greedy detector, step by step: sort VM pairs by traffic, descending; a pair
 * of two ungrouped VMs forms a group; a pair with one grouped VM brings the other in when its
 * traffic reaches the group's threshold, else the other VM forms a group of its own whose
 * threshold is zero (no pair yet, so the mean is taken as 0).
 *
 * Ties (the seed is silent): equal traffic is ordered by the pair's VM names (first name, then
 * second) so that the result never depends on the collector's row order; "reaches" means >=, so
 * equal-weight patterns (all-to-all, ring) stay one group.
 * Pairs with a non-VM endpoint are skipped (a file server cannot move), pairs with no traffic too;
 * VMs that end in no pair are groups of one. Returns a group label per VM (index = VM node).
 */
export function seedGreedy(g: TrafficGraph, opts: SeedGreedyOptions): Int32Array {
  const factor = opts.factor ?? 0.5;
  const merge = (opts.splitPair ?? 'merge') === 'merge';
  const w = edgeWeights(g, opts.measure);
  const ws = slotWeights(g, opts.measure);
  const n = g.vmCount;
  let count = 0;
  for (let e = 0; e < g.edgeA.length; e++) if (g.edgeB[e]! < n && w[e]! > 0) count++;
  const order = new Int32Array(count);
  count = 0;
  for (let e = 0; e < g.edgeA.length; e++) if (g.edgeB[e]! < n && w[e]! > 0) order[count++] = e;
  const sorted = sortPairs(g, w, order, nameRanks(g));
  const group = new Int32Array(n).fill(-1);
  const members: number[][] = [];
  const sum: number[] = [];
  const pairs: number[] = [];
  const threshold = (k: number) => (pairs[k]! > 0 ? (factor * sum[k]!) / pairs[k]! : 0);
  // Adds v's traffic with the group's current members to the group's mean, then v itself.
  const join = (k: number, v: number) => {
    for (let s = g.offsets[v]!; s < g.offsets[v + 1]!; s++) {
      const u = g.neighbours[s]!;
      const x = ws[s]!;
      if (u < n && group[u] === k && x > 0) {
        sum[k]! += x;
        pairs[k]!++;
      }
    }
    group[v] = k;
    members[k]!.push(v);
  };
  const create = () => {
    members.push([]);
    sum.push(0);
    pairs.push(0);
    return members.length - 1;
  };

  for (const e of sorted) {
    const a = g.edgeA[e]!;
    const b = g.edgeB[e]!;
    const ga = group[a]!;
    const gb = group[b]!;
    const x = w[e]!;
    if (ga < 0 && gb < 0) {
      const k = create();
      join(k, a);
      join(k, b);
    } else if (ga < 0 || gb < 0) {
      const k = ga < 0 ? gb : ga;
      const free = ga < 0 ? a : b;
      join(x >= threshold(k) ? k : create(), free);
    } else if (ga !== gb && merge && x >= threshold(ga) && x >= threshold(gb)) {
      // Move the smaller group's members one by one; join() counts every pair that becomes internal.
      const [into, from] = members[ga]!.length >= members[gb]!.length ? [ga, gb] : [gb, ga];
      const moving = members[from]!;
      members[from] = [];
      // Re-joining counts the moving group's own pairs again from scratch, so its old sums are dropped.
      for (const v of moving) group[v] = -1;
      for (const v of moving) join(into, v);
    }
    // Same group: the pair was already counted in the mean when its second VM joined.
  }
  let next = members.length;
  for (let v = 0; v < n; v++) if (group[v]! < 0) group[v] = next++;
  return group;
}

function nameRanks(g: TrafficGraph): Int32Array {
  const ids = Array.from({ length: g.vmCount }, (_, i) => i);
  ids.sort((x, y) => (g.names[x]! < g.names[y]! ? -1 : g.names[x]! > g.names[y]! ? 1 : 0));
  const rank = new Int32Array(g.vmCount);
  ids.forEach((v, r) => (rank[v] = r));
  return rank;
}

/**
 * The pairs by traffic, descending, equal traffic by the pair's names (lower-ranked name first,
 * then the other). A stable LSD radix sort on 11-bit digits of the high half of the weights'
 * bits (a positive double's bits order like the number) does the bulk; the runs it leaves equal
 * (same high half: a few pairs, or many in regular patterns such as a ring or a stencil) are then
 * sorted by the full weight and the names. Same order as a comparator sort over everything, since
 * no two pairs share both keys, at a fraction of its cost on 500k edges.
 */
function sortPairs(g: TrafficGraph, w: Float64Array, order: Int32Array, rank: Int32Array): Int32Array {
  const m = order.length;
  if (m === 0) return order;
  const lowFirst = new Uint32Array(new Float64Array([1]).buffer)[1] === 0x3ff00000; // little-endian
  const all = new Uint32Array(w.buffer, w.byteOffset, w.length * 2);
  const h = lowFirst ? 1 : 0;
  // Inverted high halves, so that ascending digits mean descending weights.
  const high = new Uint32Array(m);
  for (let k = 0; k < m; k++) high[k] = ~all[2 * order[k]! + h]! >>> 0;
  let cur = new Int32Array(m);
  for (let k = 0; k < m; k++) cur[k] = k;
  let tmp = new Int32Array(m);
  const counts = new Int32Array(2049);
  for (const shift of [0, 11, 22]) {
    if (radixPass(cur, tmp, high, shift, counts)) {
      const t = cur;
      cur = tmp;
      tmp = t;
    }
  }
  const out = new Int32Array(m);
  for (let i = 0; i < m; i++) out[i] = order[cur[i]!]!;
  const n = g.vmCount;
  let tie: Float64Array | null = null;
  for (let i = 0; i < m; ) {
    const hi = all[2 * out[i]! + h]!;
    let j = i + 1;
    while (j < m && all[2 * out[j]! + h] === hi) j++;
    if (j - i > 1) {
      const t = (tie ??= new Float64Array(g.edgeA.length));
      for (let k = i; k < j; k++) {
        const e = out[k]!;
        const ra = rank[g.edgeA[e]!]!;
        const rb = rank[g.edgeB[e]!]!;
        t[e] = ra < rb ? ra * n + rb : rb * n + ra;
      }
      const before = (x: number, y: number) => w[y]! - w[x]! || t[x]! - t[y]!;
      if (j - i <= 16) {
        for (let k = i + 1; k < j; k++) {
          const e = out[k]!;
          let l = k - 1;
          while (l >= i && before(out[l]!, e) > 0) {
            out[l + 1] = out[l]!;
            l--;
          }
          out[l + 1] = e;
        }
      } else out.subarray(i, j).sort(before);
    }
    i = j;
  }
  return out;
}

/** One stable counting pass of `from` into `to` on an 11-bit digit of key[item]; false (nothing written) when all digits are equal. */
function radixPass(from: Int32Array, to: Int32Array, key: Uint32Array, shift: number, counts: Int32Array): boolean {
  const m = from.length;
  counts.fill(0);
  for (let k = 0; k < m; k++) counts[((key[k]! >>> shift) & 2047) + 1]!++;
  if (counts[((key[0]! >>> shift) & 2047) + 1] === m) return false;
  for (let d = 0; d < 2048; d++) counts[d + 1]! += counts[d]!;
  for (let i = 0; i < m; i++) {
    const k = from[i]!;
    to[counts[(key[k]! >>> shift) & 2047]!++] = k;
  }
  return true;
}
