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
}

export function edgeWeights(g: TrafficGraph, measure: TrafficMeasure): Float64Array {
  return measure === 'bytes' ? g.edgeBytes : g.edgeMessages;
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
  const src = new Int32Array(pairs.length);
  const dst = new Int32Array(pairs.length);
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!;
    if (!(p.messages >= 0) || !(p.bytes >= 0) || !Number.isFinite(p.messages) || !Number.isFinite(p.bytes)) {
      throw new UserError(`traffic ${p.src} -> ${p.dst} has messages=${p.messages} bytes=${p.bytes}: counts must be finite and >= 0`);
    }
    src[i] = nodeOf(p.src, index, names);
    dst[i] = nodeOf(p.dst, index, names);
  }
  const n = names.length;
  // One numeric key per unordered pair: a Map over numbers is several times faster than string keys.
  const edgeOf = new Map<number, number>();
  const a = new Int32Array(pairs.length);
  const b = new Int32Array(pairs.length);
  const msgs = new Float64Array(pairs.length);
  const bytes = new Float64Array(pairs.length);
  let m = 0;
  for (let i = 0; i < pairs.length; i++) {
    const s = src[i]!;
    const d = dst[i]!;
    if (s === d || (s >= vmCount && d >= vmCount)) continue;
    const lo = s < d ? s : d;
    const hi = s < d ? d : s;
    const key = lo * n + hi;
    let e = edgeOf.get(key);
    if (e === undefined) {
      e = m++;
      edgeOf.set(key, e);
      a[e] = lo;
      b[e] = hi;
    }
    msgs[e]! += pairs[i]!.messages;
    bytes[e]! += pairs[i]!.bytes;
  }
  return fromEdges(names, index, vmCount, a.slice(0, m), b.slice(0, m), msgs.slice(0, m), bytes.slice(0, m));
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
  for (let e = 0; e < edgeA.length; e++) {
    const x = edgeA[e]!;
    const y = edgeB[e]!;
    neighbours[fill[x]!] = y;
    slotEdge[fill[x]!++] = e;
    neighbours[fill[y]!] = x;
    slotEdge[fill[y]!++] = e;
  }
  return { names, index, vmCount, edgeA, edgeB, edgeMessages, edgeBytes, offsets, neighbours, slotEdge };
}
