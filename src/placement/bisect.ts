import { slotWeights, type TrafficGraph, type TrafficMeasure } from '../analysis/graph.js';
import { better, Heap, refine, type Balance, type Graph } from './cut.js';
import { siteRoom, type Problem } from './problem.js';

/**
 * Multilevel recursive bisection, after the ideas of METIS and KaHIP (our own code): the sites are
 * split into two sets of about equal room, the VM graph is cut in two with part sizes in the same
 * proportion, and both halves are cut again until each part has one site. Each cut is made on a
 * coarsened graph (heavy edges contracted first, so a dense group or a long band ends up as a few
 * heavy vertices) and refined at every level on the way back: whole subtrees, bands and halves of
 * a stencil change side together, which the single-VM local search cannot do.
 * Returns a site label per VM (a pinned VM: its own site) for packGroups; null when no site has room.
 */
export function bisectLabels(p: Problem, measure: TrafficMeasure): Int32Array | null {
  const { mem, cpu } = siteRoom(p);
  const g = p.graph;
  const labels = new Int32Array(p.nVm);
  const map = new Int32Array(g.names.length).fill(-1); // fixed endpoints stay at -1: their edges drop out
  const ids: number[] = [];
  for (let v = 0; v < p.nVm; v++) {
    const h = p.origin[v]!;
    if (p.movable[v] || h < 0) {
      map[v] = ids.push(v) - 1;
      continue;
    }
    // A pinned VM stays on its host: it takes room there and is left out of the cut.
    labels[v] = p.hostSite[h]!;
    if (p.destination[h]) {
      mem[labels[v]!]! -= p.vmMem[v]!;
      cpu[labels[v]!]! -= p.vmCpu[v]!;
    }
  }
  const sites = Array.from({ length: p.nSite }, (_, s) => s).filter((s) => mem[s]! > 0);
  if (sites.length === 0) return null;
  let seed = 12345;
  // Edge arrays of all graphs built below come from one arena, kept between calls while the garbage
  // collector leaves it: fresh arrays of this size cost page faults and full collections.
  const arena = spare?.deref() ?? { adj: new Int32Array(0), w: new Float64Array(0), used: 0 };
  spare = new WeakRef(arena);
  const work: Work = { arena, rnd: () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296 };
  arena.used = 0;
  const split = (part: Graph, ids: number[], group: number[]) => {
    if (part.n === 0 || group.length === 1) {
      for (const v of ids) labels[v] = group[0]!;
      return;
    }
    // Biggest site first into the half with less room: two halves of near-equal room.
    const halves: number[][] = [[], []];
    const room = [new Float64Array(2), new Float64Array(2)]; // [memory, vCPUs][half]
    for (const s of [...group].sort((a, b) => mem[b]! - mem[a]! || a - b)) {
      const i = room[0]![0]! <= room[0]![1]! ? 0 : 1;
      halves[i]!.push(s);
      room[0]![i]! += mem[s]!;
      room[1]![i]! += Math.max(0, cpu[s]!);
    }
    // The 3 % slack is shared out among the levels of cuts still to come, so the last parts still meet it.
    const mark = arena.used; // what is built from here on is freed when done with
    const side = bisect(part, balance(part, room, (1 + SLACK) ** (1 / Math.ceil(Math.log2(group.length))) - 1), work);
    for (const s of [0, 1]) {
      arena.used = mark;
      const map = new Int32Array(part.n).fill(-1);
      const sub: number[] = [];
      for (let v = 0; v < part.n; v++) if (side[v] === s) map[v] = sub.push(ids[v]!) - 1;
      split(contract(part, map, sub.length, work), sub, halves[s]!);
    }
  };
  // deg is not read when contracting, so the problem's graph can go in as it is.
  const w = slotWeights(g, measure);
  split(contract({ n: g.names.length, offsets: g.offsets, adj: g.neighbours, w, mem: p.vmMem, cpu: p.vmCpu, deg: p.vmMem }, map, ids.length, work, floors(g, w)), ids, sites);
  return labels;
}

/**
 * On a large graph, an edge lighter than a twentieth of both its ends' heaviest edges is left out
 * of the cut: such background traffic is cut about as much by any partition, yet it is most of the
 * edges of a noisy graph and would be carried through every level. The local search after packing
 * still counts it. Each node's floor (a twentieth of its heaviest edge); none on a small graph.
 */
function floors(g: TrafficGraph, w: Float64Array): Float64Array | undefined {
  const n = g.names.length;
  if (g.offsets[n]! <= LARGE) return undefined;
  const floor = new Float64Array(n);
  for (let v = 0; v < n; v++) for (let s = g.offsets[v]!; s < g.offsets[v + 1]!; s++) floor[v] = Math.max(floor[v]!, w[s]! / 20);
  return floor;
}

/** Coarsen until about this many vertices: few enough that several initial cuts cost nothing. */
const COARSEST = 100;
/** A part may take 3 % more than its share of the VMs, as far as its sites have the room. */
const SLACK = 0.03;
/** Tries per cut: 8 for graphs with up to an eighth of this many vertices and adjacency slots, fewer for larger ones, down to 1. */
const SMALL = 25_000;
/** Graphs with more adjacency slots than this are cut without their background traffic (see floors). */
const LARGE = 200_000;

/** Where graphs get their edge arrays (slots below `used` are taken), and the seeded random source. */
type Arena = { adj: Int32Array; w: Float64Array; used: number };
type Work = { arena: Arena; rnd: () => number };
let spare: WeakRef<Arena> | undefined;

/** Memory shares proportional to the halves' memory room; a side may take one VM over its share, else whole VMs may not add up. */
function balance(g: Graph, room: Float64Array[], slack: number): Balance {
  const [mem0, mem1] = room[0]!;
  const [cpu0, cpu1] = room[1]!;
  const total = g.mem.reduce((a, b) => a + b, 0);
  const heaviest = g.mem.reduce((a, b) => Math.max(a, b), 0);
  const target = (total * mem0!) / (mem0! + mem1!);
  const soft = (share: number, cap: number) => Math.max(share, Math.min(cap, Math.max(share * (1 + slack), share + heaviest)));
  const cpu = cpu0! + cpu1! > 0;
  return { target, limit: Float64Array.of(soft(target, mem0!), soft(total - target, mem1!), cpu ? cpu0! : Infinity, cpu ? cpu1! : Infinity, mem0!, mem1!) };
}

/**
 * Sides 0 and 1 of g: within the limits where possible, little weight between them. A random
 * matching can hide the best cut (merge across it), so a small graph gets a few independent tries.
 */
function bisect(g: Graph, bal: Balance, work: Work): Uint8Array {
  const maxMem = (1.5 * g.mem.reduce((a, b) => a + b, 0)) / COARSEST;
  let best: Uint8Array = new Uint8Array(g.n);
  let bestScore = [Infinity, Infinity];
  const mark = work.arena.used;
  const tries = g.offsets[g.n] === 0 ? 1 : Math.max(1, Math.min(8, Math.floor(SMALL / (g.n + g.offsets[g.n]!))));
  for (let t = 0; t < tries; t++) {
    work.arena.used = mark;
    const levels = [g];
    const maps: Int32Array[] = [];
    for (let c = coarsen(g, maxMem, work); c; c = coarsen(c.graph, maxMem, work)) {
      levels.push(c.graph);
      maps.push(c.map);
    }
    let part = initial(levels.at(-1)!, bal, work.rnd);
    let score = refine(levels.at(-1)!, part, bal);
    for (let l = levels.length - 2; l >= 0; l--) {
      const fine = new Uint8Array(levels[l]!.n);
      for (let v = 0; v < fine.length; v++) fine[v] = part[maps[l]![v]!]!;
      score = refine(levels[l]!, (part = fine), bal);
    }
    if (better(score, bestScore)) [best, bestScore] = [part, score];
  }
  return best;
}

/**
 * Heavy-edge matching: each vertex, in random order, pairs with the unmatched neighbour it
 * exchanges most with. When many are left alone (leaves around a hub, idle VMs), those sharing
 * their heaviest neighbour pair up, and idle ones with each other, else a star never shrinks.
 * No merged vertex outweighs maxMem, so the coarsest graph can still be cut in balance.
 * Null when the graph is small or hardly shrinks any more.
 */
function coarsen(g: Graph, maxMem: number, work: Work): { graph: Graph; map: Int32Array } | null {
  const { n, offsets, adj, w, mem } = g;
  if (n <= COARSEST) return null;
  const match = new Int32Array(n).fill(-1);
  // Fewest neighbours first (ties at random): a leaf merges with its parent before the parent is taken.
  const order = permutation(n, work.rnd, offsets);
  let alone = 0;
  for (const v of order) {
    if (match[v]! >= 0) continue;
    let best = -1;
    for (let s = offsets[v]!, heaviest = 0; s < offsets[v + 1]!; s++) {
      const u = adj[s]!;
      if (match[u]! < 0 && u !== v && w[s]! > heaviest && mem[v]! + mem[u]! <= maxMem) {
        best = u;
        heaviest = w[s]!;
      }
    }
    if (best < 0) alone++;
    else {
      match[v] = best;
      match[best] = v;
    }
  }
  // Low-degree vertices sharing their heaviest neighbour (leaves, idle VMs at n) pair up; not
  // higher ones: two children of a tree's root merged would hide the root's cut.
  const waiting = new Int32Array(n + 1).fill(-1);
  for (let i = 0; i < n && alone > 0.1 * n; i++) {
    const v = order[i]!;
    if (match[v]! >= 0 || offsets[v + 1]! - offsets[v]! > 2) continue;
    let key = n;
    for (let s = offsets[v]!, heaviest = 0; s < offsets[v + 1]!; s++) if (w[s]! > heaviest) [key, heaviest] = [adj[s]!, w[s]!];
    const u = waiting[key]!;
    if (u >= 0 && mem[u]! + mem[v]! <= maxMem) [match[u], match[v], waiting[key]] = [v, u, -1];
    else waiting[key] = v;
  }
  const map = new Int32Array(n).fill(-1);
  let cn = 0;
  for (let v = 0; v < n; v++) if (map[v]! < 0) map[v] = map[match[v]! >= 0 ? match[v]! : v] = cn++;
  return cn > 0.95 * n ? null : { graph: contract(g, map, cn, work), map };
}

/** The graph whose vertex x merges the vertices v with map[v] = x (-1: left out), parallel edges summed, loops, idle edges and edges below both ends' floor dropped. */
function contract(g: Graph, map: Int32Array, cn: number, work: Work, floor?: Float64Array): Graph {
  const { offsets, adj, w } = g;
  const start = new Int32Array(cn + 1);
  for (let v = 0; v < map.length; v++) if (map[v]! >= 0) start[map[v]! + 1]!++;
  for (let x = 0; x < cn; x++) start[x + 1]! += start[x]!;
  const members = new Int32Array(start[cn]!);
  const fill = start.slice(0, cn);
  for (let v = 0; v < map.length; v++) if (map[v]! >= 0) members[fill[map[v]!]!++] = v;
  const arena = work.arena;
  const base = arena.used;
  if (base + members.reduce((sum, v) => sum + offsets[v + 1]! - offsets[v]!, 0) > arena.adj.length) {
    // Grown into new arrays: graphs built before keep theirs; the slots below base are left unused.
    const size = 2 * (base + offsets[g.n]!);
    [arena.adj, arena.w] = [new Int32Array(size), new Float64Array(size)];
  }
  const c: Graph = { n: cn, offsets: new Int32Array(cn + 1), adj: arena.adj, w: arena.w, mem: new Float64Array(cn), cpu: new Float64Array(cn), deg: new Float64Array(cn) };
  const at = new Int32Array(cn).fill(-1); // where the row being built holds each neighbour
  const { adj: cadj, w: cw } = c; // locals: the loop below runs once per slot of g
  let k = base;
  for (let x = 0; x < cn; x++) {
    const row = k;
    let deg = 0;
    for (let i = start[x]!; i < start[x + 1]!; i++) {
      const v = members[i]!;
      const least = floor ? floor[v]! : 0;
      c.mem[x]! += g.mem[v]!;
      c.cpu[x]! += g.cpu[v]!;
      for (let s = offsets[v]!, end = offsets[v + 1]!; s < end; s++) {
        const u = adj[s]!;
        const y = map[u]!;
        const ws = w[s]!;
        if (y < 0 || y === x || !(ws > 0) || (floor && ws < Math.min(least, floor[u]!))) continue;
        deg += ws;
        const a = at[y]!;
        if (a >= row) cw[a]! += ws;
        else {
          at[y] = k;
          cadj[k] = y;
          cw[k++] = ws;
        }
      }
    }
    c.deg[x] = deg;
    c.offsets[x + 1] = k - base;
  }
  arena.used = k;
  return { ...c, adj: arena.adj.subarray(base, k), w: arena.w.subarray(base, k) };
}

/**
 * Greedy graph growing from several random seeds, side 0 and side 1 in turn: the side takes, one
 * at a time, the vertex that adds least to the cut until it reaches its share (a new seed when the
 * component is used up); each cut is refined, the best (overload first, then cut) kept.
 */
function initial(g: Graph, bal: Balance, rnd: () => number): Uint8Array {
  const { n, offsets, adj, w, mem, cpu, deg } = g;
  let best = new Uint8Array(n);
  let bestScore = [Infinity, Infinity];
  for (let t = 0; t < (n <= 4 * COARSEST ? 8 : 2); t++) {
    const grow = t % 2;
    const target = grow === 0 ? bal.target : mem.reduce((a, b) => a + b, 0) - bal.target;
    const part = new Uint8Array(n).fill(1 - grow);
    const skip = new Uint8Array(n);
    const conn = new Float64Array(n);
    const heap = new Heap();
    const order = permutation(n, rnd);
    const load = [0, 0];
    for (let next = 0; load[0]! < target; ) {
      let v = -1;
      for (; v < 0 && heap.ids.length > 0; heap.pop()) if (part[heap.ids[0]!] !== grow && !skip[heap.ids[0]!] && heap.keys[0] === 2 * conn[heap.ids[0]!]! - deg[heap.ids[0]!]!) v = heap.ids[0]!;
      for (; v < 0 && next < n; next++) if (part[order[next]!] !== grow && !skip[order[next]!]) v = order[next]!;
      if (v < 0) break;
      if (load[0]! + mem[v]! > bal.limit[grow]! || load[1]! + cpu[v]! > bal.limit[2 + grow]!) {
        skip[v] = 1; // would overfill this side: it stays on the other
        continue;
      }
      part[v] = grow;
      load[0]! += mem[v]!;
      load[1]! += cpu[v]!;
      for (let s = offsets[v]!; s < offsets[v + 1]!; s++) if (part[adj[s]!] !== grow && !skip[adj[s]!]) heap.push(2 * (conn[adj[s]!]! += w[s]!) - deg[adj[s]!]!, adj[s]!);
    }
    const score = refine(g, part, bal);
    if (better(score, bestScore)) [best, bestScore] = [part, score];
  }
  return best;
}

/** 0..n-1 in random order; with `offsets`, then stably by number of neighbours (a counting sort). */
function permutation(n: number, rnd: () => number, offsets?: Int32Array): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = Math.floor(rnd() * (i + 1));
    a[i] = a[j]!;
    a[j] = i;
  }
  if (!offsets) return a;
  const start = new Int32Array(n + 1);
  for (let v = 0; v < n; v++) start[offsets[v + 1]! - offsets[v]!]!++;
  for (let d = 0, sum = 0; d <= n; d++) [start[d], sum] = [sum, sum + start[d]!];
  const out = new Int32Array(n);
  for (const v of a) out[start[offsets[v + 1]! - offsets[v]!]!++] = v;
  return out;
}
