/** One cut of a graph in two, improved: what bisect.ts refines at every level of its multilevel scheme. */

/** Undirected graph in CSR form (both directions stored), vertex weights memory and vCPUs, weighted degree. */
export type Graph = { n: number; offsets: Int32Array; adj: Int32Array; w: Float64Array; mem: Float64Array; cpu: Float64Array; deg: Float64Array };
/**
 * Side 0's memory target, and the limits [memory 0, memory 1, vCPUs 0, vCPUs 1, room 0, room 1]:
 * memory is balanced (the share plus slack), vCPUs and the sites' memory are hard limits.
 */
export type Balance = { target: number; limit: Float64Array };
/** [overload, cut]: which of two results is better. */
export const better = (a: number[], b: number[]) => a[0]! < b[0]! || (a[0] === b[0] && a[1]! < b[1]!);

/**
 * Boundary Fiduccia–Mattheyses: move the boundary vertex of best gain whose move keeps the other
 * side within its limits (or that leaves an overfull side), lock it, go on through losses for a
 * while, then go back to the best point seen (least overload, then least cut): this climbs over
 * ridges where every single move costs. Repeats while a pass gains. Returns [overload, cut].
 */
export function refine(g: Graph, part: Uint8Array, bal: Balance): number[] {
  const { n, offsets, adj, w, mem, cpu, deg } = g;
  const lim = bal.limit;
  const ext = new Float64Array(n); // weight to the other side
  const load = new Float64Array(4); // [memory 0, memory 1, vCPUs 0, vCPUs 1]
  let cut = 0;
  for (let v = 0; v < n; v++) {
    const side = part[v]!;
    load[side]! += mem[v]!;
    load[2 + side]! += cpu[v]!;
    let x = 0;
    for (let s = offsets[v]!; s < offsets[v + 1]!; s++) if (part[adj[s]!] !== side) x += w[s]!;
    ext[v] = x;
    cut += x / 2;
  }
  // v's memory and vCPUs over to side `to`.
  const shift = (v: number, to: number) => {
    load[to]! += mem[v]!;
    load[1 - to]! -= mem[v]!;
    load[2 + to]! += cpu[v]!;
    load[3 - to]! -= cpu[v]!;
  };
  const move = (v: number) => {
    const to = (part[v] = 1 - part[v]!);
    shift(v, to);
    cut -= 2 * ext[v]! - deg[v]!;
    ext[v] = deg[v]! - ext[v]!;
    for (let s = offsets[v]!; s < offsets[v + 1]!; s++) ext[adj[s]!]! += part[adj[s]!] === to ? -w[s]! : w[s]!;
  };
  const overfull = (s: number) => load[s]! > lim[s]! || load[2 + s]! > lim[2 + s]!;
  // A move from side s that fits the other side, or that lowers the load past hard limits (vCPUs,
  // room). Trading memory over the share on one side for the same on the other is not one: growing
  // a side would overshoot with a heavy coarse vertex instead of taking lighter ones.
  const allowed = (v: number, s: number) => {
    if (load[1 - s]! + mem[v]! <= lim[1 - s]! && load[3 - s]! + cpu[v]! <= lim[3 - s]!) return true;
    if (!overfull(s)) return false;
    const before = overload(2);
    shift(v, 1 - s);
    const after = overload(2);
    shift(v, s);
    return after < before;
  };
  // Past a hard limit weighs a thousand times more than past the memory share; from = 2: hard limits only.
  const overload = (from = 0) => {
    let over = 0;
    for (let i = from; i < 6; i++) if (load[i % 4]! > lim[i]!) over += ((i < 2 ? 1 : 1000) * (load[i % 4]! - lim[i]!)) / (lim[i]! || 1);
    return over;
  };
  const locked = new Uint8Array(n);
  const patience = Math.max(25, Math.min(100, n / 100));
  let bestOver = overload();
  for (let pass = 0; pass < 10; pass++) {
    const heaps = [new Heap(), new Heap()];
    for (let v = 0; v < n; v++) if (ext[v]! > 0) heaps[part[v]!]!.push(2 * ext[v]! - deg[v]!, v);
    const next = [0, 0];
    const trail: number[] = [];
    let bestCut = cut;
    let bestLen = 0;
    while (trail.length - bestLen < patience) {
      let pick = -1;
      let gain = -Infinity;
      for (let s = 0; s < 2; s++) {
        const heap = heaps[s]!;
        for (;;) {
          const v = heap.ids[0] ?? -1;
          if (v < 0) {
            // An overfull side without a movable boundary vertex gives up its next one (idle, or in another component).
            while (next[s]! < n && (part[next[s]!] !== s || locked[next[s]!])) next[s]!++;
            if (!overfull(s) || next[s]! === n) break;
            heap.push(2 * ext[next[s]!]! - deg[next[s]!]!, next[s]!++);
          } else if (locked[v] || part[v] !== s || heap.keys[0] !== 2 * ext[v]! - deg[v]! || !allowed(v, s)) {
            heap.pop(); // stale (moved, locked, gain changed since), or out of balance: skipped unless its gain changes
          } else {
            if (heap.keys[0]! > gain || (heap.keys[0] === gain && load[s]! > load[1 - s]!)) [pick, gain] = [v, heap.keys[0]!];
            break;
          }
        }
      }
      if (pick < 0) break;
      heaps[part[pick]!]!.pop();
      move(pick);
      locked[pick] = 1;
      trail.push(pick);
      for (let s = offsets[pick]!; s < offsets[pick + 1]!; s++) if (!locked[adj[s]!] && ext[adj[s]!]! > 0) heaps[part[adj[s]!]!]!.push(2 * ext[adj[s]!]! - deg[adj[s]!]!, adj[s]!);
      const over = overload();
      if (over < bestOver || (over === bestOver && cut < bestCut - 1e-9 * bestCut)) [bestOver, bestCut, bestLen] = [over, cut, trail.length];
    }
    for (let k = trail.length - 1; k >= bestLen; k--) move(trail[k]!);
    for (const v of trail) locked[v] = 0;
    if (bestLen === 0) break;
  }
  return [bestOver, cut];
}

/** Binary max-heap of (key, id); stale entries stay in, the reader skips them. */
export class Heap {
  readonly keys: number[] = [];
  readonly ids: number[] = [];
  push(key: number, id: number): void {
    let i = this.ids.length;
    for (let up = (i - 1) >> 1; i > 0 && this.keys[up]! < key; i = up, up = (i - 1) >> 1) this.set(i, this.keys[up]!, this.ids[up]!);
    this.set(i, key, id);
  }
  pop(): void {
    const key = this.keys.pop()!;
    const id = this.ids.pop()!;
    let i = 0;
    for (let c = 1; c < this.ids.length; i = c, c = 2 * i + 1) {
      if (c + 1 < this.ids.length && this.keys[c + 1]! > this.keys[c]!) c++;
      if (this.keys[c]! <= key) break;
      this.set(i, this.keys[c]!, this.ids[c]!);
    }
    if (this.ids.length > 0) this.set(i, key, id);
  }
  private set(i: number, key: number, id: number): void {
    this.keys[i] = key;
    this.ids[i] = id;
  }
}
