import type { PairTraffic } from '../../src/analysis/graph.js';

/**
 * The communication structures of parallel and multi-tier applications, as
 * collector rows (per-second messages and bytes, both directions), each with
 * the groups an operator expects: `groups` lists every expected group of two
 * or more VMs (VM names); `free` names VMs that may sit in any group or alone
 * (a master shared by farms). Used by the unit tests and the placement bench.
 */
export interface Topology {
  name: string;
  vms: string[];
  rows: PairTraffic[];
  groups: string[][];
  free?: string[];
}

/** Bytes per message on every edge: the detector sees bytes and messages in proportion. */
const MSG_BYTES = 4096;
export const vmName = (i: number) => `vm${i}`;

class Builder {
  readonly rows: PairTraffic[] = [];
  constructor(readonly n: number) {}
  get vms(): string[] {
    return Array.from({ length: this.n }, (_, i) => vmName(i));
  }
  /** `msgs` messages per second between a and b, half each way. */
  edge(a: number, b: number, msgs = 100): void {
    if (a === b) return;
    const m = msgs / 2;
    this.rows.push({ src: vmName(a), dst: vmName(b), messages: m, bytes: m * MSG_BYTES }, { src: vmName(b), dst: vmName(a), messages: m, bytes: m * MSG_BYTES });
  }
  all(): string[][] {
    return [this.vms];
  }
}

export function ring(n: number): Topology {
  const b = new Builder(n);
  for (let i = 0; i < n; i++) b.edge(i, (i + 1) % n);
  return { name: `ring ${n}`, vms: b.vms, rows: b.rows, groups: b.all() };
}

export function chain(n: number): Topology {
  const b = new Builder(n);
  for (let i = 0; i + 1 < n; i++) b.edge(i, i + 1);
  return { name: `chain ${n}`, vms: b.vms, rows: b.rows, groups: b.all() };
}

/** A d-dimensional stencil of side `side` (5-point in 2-D, 7-point in 3-D), with or without wrap-around. */
export function stencil(side: number, dims: 2 | 3, wrap: boolean): Topology {
  const n = side ** dims;
  const b = new Builder(n);
  for (let i = 0; i < n; i++) {
    for (let d = 0, stride = 1; d < dims; d++, stride *= side) {
      const x = Math.floor(i / stride) % side;
      if (x + 1 < side) b.edge(i, i + stride);
      else if (wrap && side > 2) b.edge(i, i - x * stride);
    }
  }
  return { name: `${dims}-D stencil ${Array(dims).fill(side).join('x')}${wrap ? ' (wrap)' : ''}`, vms: b.vms, rows: b.rows, groups: b.all() };
}

export function hypercube(dim: number): Topology {
  const n = 2 ** dim;
  const b = new Builder(n);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) if (!(i & (1 << d))) b.edge(i, i | (1 << d));
  return { name: `hypercube ${n}`, vms: b.vms, rows: b.rows, groups: b.all() };
}

/**
 * A radix-2 FFT's butterfly: in stage s every rank exchanges its half of the
 * data with rank ^ 2^s, the same volume at every stage. Its pairs are a
 * hypercube's; it is kept as its own entry because FFT codes are their own
 * family, here with messages half the size (bytes and messages disagree).
 */
export function butterfly(dim: number): Topology {
  const n = 2 ** dim;
  const b = new Builder(n);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) if (!(i & (1 << d))) b.edge(i, i | (1 << d), 100);
  return { name: `butterfly ${n}`, vms: b.vms, rows: b.rows, groups: b.all() };
}

export function binaryTree(n: number): Topology {
  const b = new Builder(n);
  for (let i = 1; i < n; i++) b.edge(i, (i - 1) >> 1);
  return { name: `binary tree ${n}`, vms: b.vms, rows: b.rows, groups: b.all() };
}

export function allToAll(n: number): Topology {
  const b = new Builder(n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) b.edge(i, j);
  return { name: `all-to-all ${n}`, vms: b.vms, rows: b.rows, groups: b.all() };
}

/** Stages of `width` VMs, each sending to every VM of the next stage: a chain of stages, one group. */
export function pipeline(stages: number, width: number): Topology {
  const b = new Builder(stages * width);
  for (let s = 0; s + 1 < stages; s++) for (let i = 0; i < width; i++) for (let j = 0; j < width; j++) b.edge(s * width + i, (s + 1) * width + j);
  return { name: `pipeline ${stages}x${width}`, vms: b.vms, rows: b.rows, groups: b.all() };
}

/** Two all-to-all blocks joined by one pair per member at `link` times a block edge's traffic. */
export function twoBlocks(size: number, link = 0.02): Topology {
  const b = new Builder(2 * size);
  for (const base of [0, size]) for (let i = 0; i < size; i++) for (let j = i + 1; j < size; j++) b.edge(base + i, base + j);
  for (let i = 0; i < size; i++) b.edge(i, size + i, 100 * link);
  const vms = b.vms;
  return { name: `two blocks of ${size}, linked at ${100 * link} %`, vms, rows: b.rows, groups: [vms.slice(0, size), vms.slice(size)] };
}

/** Two all-to-all blocks whose every cross pair carries `link` times a block edge (many weak links). */
export function crossBlocks(size: number, link = 0.05): Topology {
  const b = new Builder(2 * size);
  for (const base of [0, size]) for (let i = 0; i < size; i++) for (let j = i + 1; j < size; j++) b.edge(base + i, base + j);
  for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) b.edge(i, size + j, 100 * link);
  const vms = b.vms;
  return { name: `two blocks of ${size}, all pairs across at ${100 * link} %`, vms, rows: b.rows, groups: [vms.slice(0, size), vms.slice(size)] };
}

/** Two chains of `len` joined rung by rung at `rung` times a chain edge: the chains are the groups. */
export function ladder(len: number, rung = 0.1): Topology {
  const b = new Builder(2 * len);
  for (let i = 0; i + 1 < len; i++) {
    b.edge(i, i + 1);
    b.edge(len + i, len + i + 1);
  }
  for (let i = 0; i < len; i++) b.edge(i, len + i, 100 * rung);
  const vms = b.vms;
  return { name: `ladder 2x${len}, rungs at ${100 * rung} %`, vms, rows: b.rows, groups: [vms.slice(0, len), vms.slice(len)] };
}

/**
 * `farms` farms of `workers` VMs that exchange all-to-all among themselves and
 * share one master (vm0), which sends each worker `toMaster` times a farm edge.
 * The farms are the groups; the master may join any of them or stay alone.
 */
export function masterWorker(farms: number, workers: number, toMaster = 0.05): Topology {
  const b = new Builder(1 + farms * workers);
  const groups: string[][] = [];
  for (let f = 0; f < farms; f++) {
    const base = 1 + f * workers;
    for (let i = 0; i < workers; i++) {
      b.edge(0, base + i, 100 * toMaster);
      for (let j = i + 1; j < workers; j++) b.edge(base + i, base + j);
    }
    groups.push(Array.from({ length: workers }, (_, i) => vmName(base + i)));
  }
  return { name: `master and ${farms} farms of ${workers}`, vms: b.vms, rows: b.rows, groups, free: [vmName(0)] };
}

/** Independent jobs: `jobs` rings of `size`, nothing between them. */
export function independent(jobs: number, size: number): Topology {
  const b = new Builder(jobs * size);
  const groups: string[][] = [];
  for (let j = 0; j < jobs; j++) {
    for (let i = 0; i < size; i++) b.edge(j * size + i, j * size + ((i + 1) % size));
    groups.push(Array.from({ length: size }, (_, i) => vmName(j * size + i)));
  }
  return { name: `${jobs} independent rings of ${size}`, vms: b.vms, rows: b.rows, groups };
}

/**
 * The same structure under noise: one random pair per VM, each carrying
 * `level` times the mean edge of the structure (seeded, so runs repeat).
 */
export function withNoise(t: Topology, level = 0.02, seed = 1): Topology {
  let x = seed >>> 0 || 1;
  const rnd = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
  const mean = t.rows.reduce((s, r) => s + r.messages, 0) / Math.max(1, t.rows.length);
  const rows = [...t.rows];
  const n = t.vms.length;
  for (let k = 0; k < n; k++) {
    const a = Math.floor(rnd() * n);
    const c = Math.floor(rnd() * n);
    if (a === c) continue;
    const m = mean * level * (0.5 + rnd());
    rows.push({ src: t.vms[a]!, dst: t.vms[c]!, messages: m, bytes: m * MSG_BYTES });
  }
  return { ...t, name: `${t.name} + noise`, rows };
}

/** The corpus: every structure at a small and a large size (4 to about 1,000 VMs), each also under noise. */
export function corpus(large = true): Topology[] {
  const base: Topology[] = [
    ring(4),
    ring(16),
    chain(4),
    chain(16),
    stencil(4, 2, true),
    stencil(4, 2, false),
    stencil(3, 3, true),
    stencil(3, 3, false),
    hypercube(3),
    hypercube(5),
    butterfly(4),
    binaryTree(15),
    allToAll(8),
    pipeline(4, 3),
    twoBlocks(4),
    twoBlocks(4, 0.1),
    crossBlocks(4, 0.05),
    ladder(4),
    ladder(12),
    masterWorker(3, 4),
    independent(3, 4),
  ];
  if (large) {
    base.push(ring(1000), chain(1000), stencil(32, 2, true), stencil(31, 2, false), stencil(10, 3, true), stencil(10, 3, false), hypercube(9), butterfly(9), binaryTree(1023), allToAll(64));
    base.push(pipeline(10, 10), twoBlocks(100, 0.005), ladder(500), masterWorker(8, 16), independent(10, 100));
  }
  return [...base, ...base.map((t, i) => withNoise(t, 0.02, i + 1))];
}
