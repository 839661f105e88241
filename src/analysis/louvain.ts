/**
 * Louvain modularity maximisation (Blondel et al. 2008) on a weighted undirected graph in CSR form.
 *
 * Written here rather than taken from graphology-communities-louvain: the planner must handle
 * 10,000 VMs and 500k edges in well under a second, and a graphology Graph allocates objects per
 * node and per edge before the first move; on typed arrays the whole run is a few passes over
 * flat memory. The capacity refinement also needs to rerun it on sub-graphs cheaply.
 * Deterministic: nodes are visited in index order and ties keep the current community.
 */
export interface Csr {
  n: number;
  offsets: Int32Array;
  targets: Int32Array;
  /** Weight per slot; each undirected edge appears in both endpoints' slots, self-loops once. */
  weights: Float64Array;
}

export interface LouvainOptions {
  /** Modularity resolution: above 1 favours smaller communities. Default 1. */
  resolution?: number;
  /** Stop a level when a full pass improves modularity by less than this share of 2m. */
  tolerance?: number;
}

export function louvain(graph: Csr, opts: LouvainOptions = {}): Int32Array {
  const gamma = opts.resolution ?? 1;
  const tol = opts.tolerance ?? 1e-7;
  let g = graph;
  const labels = new Int32Array(graph.n);
  for (let v = 0; v < graph.n; v++) labels[v] = v;
  for (let level = 0; level < 32; level++) {
    const { comm, moved } = moveNodes(g, gamma, tol);
    if (!moved) break;
    const { renumbered, count } = renumber(comm);
    for (let v = 0; v < graph.n; v++) labels[v] = renumbered[labels[v]!]!;
    if (count === g.n) break;
    g = aggregate(g, renumbered, count);
  }
  return labels;
}

function moveNodes(g: Csr, gamma: number, tol: number): { comm: Int32Array; moved: boolean } {
  const { n, offsets, targets, weights } = g;
  const k = new Float64Array(n);
  let m2 = 0;
  for (let v = 0; v < n; v++) {
    let s = 0;
    for (let i = offsets[v]!; i < offsets[v + 1]!; i++) s += weights[i]!;
    k[v] = s;
    m2 += s;
  }
  const comm = new Int32Array(n);
  const tot = new Float64Array(n);
  for (let v = 0; v < n; v++) {
    comm[v] = v;
    tot[v] = k[v]!;
  }
  if (m2 === 0) return { comm, moved: false };
  const linkTo = new Float64Array(n);
  const touched = new Int32Array(n);
  let movedAny = false;
  for (let pass = 0; pass < 64; pass++) {
    let gain = 0;
    let moves = 0;
    for (let v = 0; v < n; v++) {
      const kv = k[v]!;
      if (kv === 0) continue;
      const own = comm[v]!;
      let nt = 0;
      linkTo[own] = 0;
      touched[nt++] = own;
      for (let i = offsets[v]!; i < offsets[v + 1]!; i++) {
        const u = targets[i]!;
        if (u === v) continue;
        const c = comm[u]!;
        if (linkTo[c] === 0 && c !== own) touched[nt++] = c;
        linkTo[c]! += weights[i]!;
      }
      tot[own]! -= kv;
      const scale = (gamma * kv) / m2;
      let best = own;
      let bestGain = linkTo[own]! - tot[own]! * scale;
      const stay = bestGain;
      for (let t = 1; t < nt; t++) {
        const c = touched[t]!;
        const dq = linkTo[c]! - tot[c]! * scale;
        if (dq > bestGain) {
          bestGain = dq;
          best = c;
        }
      }
      tot[best]! += kv;
      if (best !== own) {
        comm[v] = best;
        moves++;
        gain += bestGain - stay;
      }
      for (let t = 0; t < nt; t++) linkTo[touched[t]!] = 0;
    }
    if (moves > 0) movedAny = true;
    if (moves === 0 || gain < tol * m2) break;
  }
  return { comm, moved: movedAny };
}

function renumber(comm: Int32Array): { renumbered: Int32Array; count: number } {
  const map = new Int32Array(comm.length).fill(-1);
  let count = 0;
  const renumbered = new Int32Array(comm.length);
  for (let v = 0; v < comm.length; v++) {
    const c = comm[v]!;
    if (map[c]! < 0) map[c] = count++;
    renumbered[v] = map[c]!;
  }
  return { renumbered, count };
}

function aggregate(g: Csr, comm: Int32Array, count: number): Csr {
  // Bucket nodes by community, then sum each community's slots per target community.
  const start = new Int32Array(count + 1);
  for (let v = 0; v < g.n; v++) start[comm[v]! + 1]!++;
  for (let c = 0; c < count; c++) start[c + 1]! += start[c]!;
  const fill = start.slice(0, count);
  const members = new Int32Array(g.n);
  for (let v = 0; v < g.n; v++) members[fill[comm[v]!]!++] = v;
  const offsets = new Int32Array(count + 1);
  // At most one slot per slot of the finer graph.
  const targets = new Int32Array(g.targets.length);
  const weights = new Float64Array(g.targets.length);
  let slots = 0;
  const acc = new Float64Array(count);
  const seen = new Uint8Array(count);
  const list = new Int32Array(count);
  for (let c = 0; c < count; c++) {
    let nl = 0;
    for (let m = start[c]!; m < start[c + 1]!; m++) {
      const v = members[m]!;
      for (let i = g.offsets[v]!; i < g.offsets[v + 1]!; i++) {
        const d = comm[g.targets[i]!]!;
        if (!seen[d]) {
          seen[d] = 1;
          list[nl++] = d;
        }
        acc[d]! += g.weights[i]!;
      }
    }
    for (let t = 0; t < nl; t++) {
      const d = list[t]!;
      targets[slots] = d;
      weights[slots++] = acc[d]!;
      acc[d] = 0;
      seen[d] = 0;
    }
    offsets[c + 1] = slots;
  }
  return { n: count, offsets, targets: targets.slice(0, slots), weights: weights.slice(0, slots) };
}

/** Modularity of a partition, for tests and the benchmark. */
export function modularity(g: Csr, labels: Int32Array, gamma = 1): number {
  let m2 = 0;
  const tot = new Map<number, number>();
  let inside = 0;
  for (let v = 0; v < g.n; v++) {
    for (let i = g.offsets[v]!; i < g.offsets[v + 1]!; i++) {
      const w = g.weights[i]!;
      m2 += w;
      tot.set(labels[v]!, (tot.get(labels[v]!) ?? 0) + w);
      if (labels[g.targets[i]!] === labels[v]) inside += w;
    }
  }
  if (m2 === 0) return 0;
  let q = inside / m2;
  for (const t of tot.values()) q -= gamma * (t / m2) ** 2;
  return q;
}
