import { UserError } from '../util/errors.js';

/** One directed row of a collector answer: per-second averages over the span asked. */
export interface PairTraffic {
  src: string;
  dst: string;
  messages: number;
  bytes: number;
}

/** Which count drives group detection; placement always uses both (latency per message, bandwidth per byte). */
export type TrafficMeasure = 'messages' | 'bytes';

/**
 * Undirected traffic graph in compressed (CSR) form so that 10,000 VMs and 500k edges fit in a
 * few typed arrays. Nodes 0..vmCount-1 are the VMs in the order given; the rest are non-VM
 * endpoints (a file server, a gateway) that take part in placement as fixed nodes but never join
 * a group: they cannot be migrated.
 */
export interface TrafficGraph {
  readonly names: readonly string[];
  readonly index: ReadonlyMap<string, number>;
  readonly vmCount: number;
  /** Edge e joins edgeA[e] < edgeB[e]; both directions summed (the sensors count what each side receives). */
  readonly edgeA: Int32Array;
  readonly edgeB: Int32Array;
  readonly edgeMessages: Float64Array;
  readonly edgeBytes: Float64Array;
  /** Slots offsets[v]..offsets[v+1]-1 list v's neighbours and the edge id behind each. */
  readonly offsets: Int32Array;
  readonly neighbours: Int32Array;
  readonly slotEdge: Int32Array;
  /** The edge's counts per slot (slotMessages[s] = edgeMessages[slotEdge[s]]): read in CSR order, no gather. */
  readonly slotMessages: Float64Array;
  readonly slotBytes: Float64Array;
}

export function edgeWeights(g: TrafficGraph, measure: TrafficMeasure): Float64Array {
  return measure === 'bytes' ? g.edgeBytes : g.edgeMessages;
}

/** The same weights per CSR slot (index = slot, not edge). */
export function slotWeights(g: TrafficGraph, measure: TrafficMeasure): Float64Array {
  return measure === 'bytes' ? g.slotBytes : g.slotMessages;
}

export function isFixed(g: TrafficGraph, node: number): boolean {
  return node >= g.vmCount;
}

/**
 * Builds the graph from a collector answer. Every VM listed is a node even when idle, so an
 * idle VM still shows up as a group of its own. Self-traffic and rows between two non-VM
 * endpoints are dropped: no sensor sits between them, and nothing we move changes them.
 */
export function buildGraph(pairs: readonly PairTraffic[], vms: readonly string[]): TrafficGraph {
  const index = new Map<string, number>();
  const names: string[] = [];
  for (const vm of vms) {
    if (index.has(vm)) throw new UserError(`VM '${vm}' is listed twice: give each VM once`);
    index.set(vm, names.length);
    names.push(vm);
  }
  const vmCount = names.length;
  const R = pairs.length;
  // Each row as an unordered pair lo < hi, or lo = -1 when dropped. Consecutive rows often share
  // a name (a pair comes as a -> b then b -> a), so the last two lookups are remembered.
  const lo = new Int32Array(R);
  const hi = new Int32Array(R);
  let name1 = '';
  let node1 = -1;
  let name2 = '';
  let node2 = -1;
  for (let i = 0; i < R; i++) {
    const p = pairs[i]!;
    if (!(p.messages >= 0) || !(p.bytes >= 0) || !Number.isFinite(p.messages) || !Number.isFinite(p.bytes)) {
      throw new UserError(`traffic ${p.src} -> ${p.dst} has messages=${p.messages} bytes=${p.bytes}: counts must be finite and >= 0`);
    }
    const s = node1 >= 0 && p.src === name1 ? node1 : node2 >= 0 && p.src === name2 ? node2 : nodeOf(p.src, index, names);
    const d = node1 >= 0 && p.dst === name1 ? node1 : node2 >= 0 && p.dst === name2 ? node2 : nodeOf(p.dst, index, names);
    name1 = p.src;
    node1 = s;
    name2 = p.dst;
    node2 = d;
    if (s === d || (s >= vmCount && d >= vmCount)) {
      lo[i] = -1;
      continue;
    }
    lo[i] = Math.min(s, d);
    hi[i] = Math.max(s, d);
  }
  const n = names.length;
  // Rows bucketed by their lower node (stable), then within a bucket a mark per higher node finds
  // the first row of each pair: flat arrays instead of a Map over half a million pair keys.
  const start = new Int32Array(n + 1);
  for (let i = 0; i < R; i++) if (lo[i]! >= 0) start[lo[i]! + 1]!++;
  for (let v = 0; v < n; v++) start[v + 1]! += start[v]!;
  const byLo = new Int32Array(start[n]!);
  const fill = start.slice(0, n);
  for (let i = 0; i < R; i++) if (lo[i]! >= 0) byLo[fill[lo[i]!]!++] = i;
  const first = new Int32Array(R);
  const mark = new Int32Array(n).fill(-1);
  for (let v = 0; v < n; v++) {
    for (let k = start[v]!; k < start[v + 1]!; k++) {
      const i = byLo[k]!;
      const h = hi[i]!;
      if (mark[h]! < 0) mark[h] = i;
      first[i] = mark[h]!;
    }
    for (let k = start[v]!; k < start[v + 1]!; k++) mark[hi[byLo[k]!]!] = -1;
  }
  // Edge ids in order of first appearance, counts summed in row order.
  let m = 0;
  for (let i = 0; i < R; i++) if (lo[i]! >= 0 && first[i] === i) m++;
  const edge = first; // reused: a row's edge id overwrites its first row once that is known
  const a = new Int32Array(m);
  const b = new Int32Array(m);
  const msgs = new Float64Array(m);
  const bytes = new Float64Array(m);
  m = 0;
  for (let i = 0; i < R; i++) {
    if (lo[i]! < 0) continue;
    const f = first[i]!;
    let e: number;
    if (f === i) {
      e = m++;
      a[e] = lo[i]!;
      b[e] = hi[i]!;
    } else e = edge[f]!;
    edge[i] = e;
    msgs[e]! += pairs[i]!.messages;
    bytes[e]! += pairs[i]!.bytes;
  }
  return fromEdges(names, index, vmCount, a, b, msgs, bytes);
}

function nodeOf(name: string, index: Map<string, number>, names: string[]): number {
  let i = index.get(name);
  if (i === undefined) {
    i = names.length;
    index.set(name, i);
    names.push(name);
  }
  return i;
}

/** Builds the CSR adjacency from an edge list; edges with no traffic at all are left out. */
export function fromEdges(
  names: readonly string[],
  index: ReadonlyMap<string, number>,
  vmCount: number,
  edgeA: Int32Array,
  edgeB: Int32Array,
  edgeMessages: Float64Array,
  edgeBytes: Float64Array,
): TrafficGraph {
  const n = names.length;
  const degree = new Int32Array(n + 1);
  for (let e = 0; e < edgeA.length; e++) {
    degree[edgeA[e]!]!++;
    degree[edgeB[e]!]!++;
  }
  const offsets = new Int32Array(n + 1);
  for (let v = 0; v < n; v++) offsets[v + 1] = offsets[v]! + degree[v]!;
  const fill = offsets.slice(0, n);
  const neighbours = new Int32Array(offsets[n]!);
  const slotEdge = new Int32Array(offsets[n]!);
  const slotMessages = new Float64Array(offsets[n]!);
  const slotBytes = new Float64Array(offsets[n]!);
  for (let e = 0; e < edgeA.length; e++) {
    const x = edgeA[e]!;
    const y = edgeB[e]!;
    const msg = edgeMessages[e]!;
    const byt = edgeBytes[e]!;
    let s = fill[x]!++;
    neighbours[s] = y;
    slotEdge[s] = e;
    slotMessages[s] = msg;
    slotBytes[s] = byt;
    s = fill[y]!++;
    neighbours[s] = x;
    slotEdge[s] = e;
    slotMessages[s] = msg;
    slotBytes[s] = byt;
  }
  return { names, index, vmCount, edgeA, edgeB, edgeMessages, edgeBytes, offsets, neighbours, slotEdge, slotMessages, slotBytes };
}
